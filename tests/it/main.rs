//! Integration tests: each runs the real `ark-lattice` binary against temp state dirs.

mod ark;
mod attacks;
mod auto_sync;
mod code_shape;
mod crash;
mod cross_origin;
mod delta;
mod export;
mod fake_ark;
mod federation;
mod first_copy;
mod flood;
mod guide;
mod held;
mod hostile;
mod hostile_input;
mod integrity;
mod lattice;
mod long_polls;
mod observe;
mod pki;
mod raw_http;
mod restarts;
mod routes;
mod settings;
mod signatures;
mod soak;
#[cfg(feature = "tls")]
mod tls;
mod trust;
mod util;
mod workflows;
