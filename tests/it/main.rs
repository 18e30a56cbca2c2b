//! Integration tests: each runs the real `ark-lattice` binary against temp state dirs.

mod ark;
mod delta;
mod fake_ark;
mod federation;
mod guide;
mod lattice;
mod observe;
mod trust;
mod util;
