//! The `ark-lattice` binary: parses the command line into a `Config`, runs the command,
//! and turns an error into one line on stderr and a non-zero exit code.

use argh::FromArgs;
use ark_lattice::cli::Args;
use ark_lattice::commands;
use ark_lattice::config::Config;
use ark_lattice::service::{self, Output};

const STDIN_PATH: &str = "/dev/stdin";

fn main() {
    // argh takes any argument starting with `-` for a flag, so the conventional `-`
    // for standard input is passed on as the path that means the same on Linux.
    let argv: Vec<String> = std::env::args()
        .map(|arg| {
            if arg == "-" {
                STDIN_PATH.to_owned()
            } else {
                arg
            }
        })
        .collect();
    let strings: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = match Args::from_args(&strings[..1], &strings[1..]) {
        Ok(args) => args,
        Err(early_exit) => {
            let help = early_exit.status.is_ok();
            if help {
                println!("{}", early_exit.output);
            } else {
                eprintln!("{}", early_exit.output);
            }
            std::process::exit(if help {
                0
            } else {
                ark_lattice::error::exit::USAGE
            });
        }
    };
    if args.version {
        println!("ark-lattice {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let env = |name: &str| std::env::var(name).ok();
    let result = Config::from_args(&args, &env).and_then(|config| {
        let mut out = Output::stdout();
        service::exit_on_storage_panic(&config);
        commands::run(args, &config, &mut out)
    });
    if let Err(error) = result {
        if !matches!(error, ark_lattice::error::Error::Reported { .. }) {
            eprintln!("error: {error}");
        }
        std::process::exit(error.exit_code());
    }
}
