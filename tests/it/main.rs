//! Integration tests: each runs the real `ark-lattice` binary against temp state dirs.

mod ark;
mod attacks;
mod auto_sync;
mod crash;
mod delta;
mod fake_ark;
mod federation;
mod guide;
mod hostile;
mod hostile_input;
mod integrity;
mod lattice;
mod observe;
mod pki;
mod restarts;
mod soak;
#[cfg(feature = "tls")]
mod tls;
mod trust;
mod util;
