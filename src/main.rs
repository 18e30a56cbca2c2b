//! The `ark-lattice` binary: parses the command line, runs the command, and turns an
//! error into a message on stderr and a non-zero exit code.

fn main() {
    println!("ark-lattice {}", env!("CARGO_PKG_VERSION"));
}
