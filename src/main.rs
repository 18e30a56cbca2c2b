//! The `ark-lattice` binary: parses the command line into a `Config`, runs the command,
//! and turns an error into one line on stderr and a non-zero exit code.

use ark_lattice::cli::Args;
use ark_lattice::commands::{self, Output};
use ark_lattice::config::Config;

fn main() {
    let args: Args = argh::from_env();
    if args.version {
        println!("ark-lattice {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let env = |name: &str| std::env::var(name).ok();
    let result = Config::from_args(&args, &env).and_then(|config| {
        let mut out = Output::stdout();
        commands::run(args, &config, &mut out)
    });
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(error.exit_code());
    }
}
