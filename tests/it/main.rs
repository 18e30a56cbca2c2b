//! Integration tests: each runs the real `ark-lattice` binary against temp state dirs.

mod auto_sync;
mod crash;
mod delta;
mod fake_ark;
mod federation;
mod integrity;
mod lattice;
mod observe;
mod restarts;
mod soak;
mod trust;
mod util;
