//! ark-lattice keeps a Code Lattice (code-template records) in an embedded store and
//! federates it with other ARK instances. See ARCHITECTURE.md for the code map.

pub mod model;
pub mod systemd;
