//! Integration tests: each runs the real `ark-lattice` binary against temp state dirs.

mod cross_origin;
mod delta;
mod fake_ark;
mod federation;
mod flood;
mod held;
mod lattice;
mod observe;
mod signatures;
mod trust;
mod util;
mod workflows;
