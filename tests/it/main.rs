//! Integration tests: each runs the real `ark-lattice` binary against temp state dirs.

mod delta;
mod lattice;
mod trust;
mod util;
