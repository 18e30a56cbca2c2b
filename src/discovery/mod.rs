//! Finding peers on the LAN: ARK's UDP multicast beacon (signed in our form), the
//! list of peers heard, and the concurrent subnet scan. Running the beacon on the
//! server's executor and turning what it hears into events is left to `server`.
//!
//! # Implementation
//!
//! Every node sends its [`Beacon`] at start and every interval (60 s) to
//! 239.255.0.1:8103, and answers a newcomer's beacon with its own at once (at most
//! once a second), so two nodes find each other within moments of the second one
//! starting instead of a minute later. Beacons are read by [`LanPeers`], which refuses
//! bad signatures, unsigned beacons under an id heard signed before, and replays.

mod beacon;
mod registry;
mod scan;
mod socket;

pub use beacon::{BadSignature, Beacon, BeaconError, MAX_BEACON_BYTES, Verification};
pub use registry::{Heard, LanPeer, LanPeers};
pub use scan::{SCAN_CONCURRENCY, ScanHit, Subnet, read_info, scan, scan_client_config};
pub use socket::{destinations, local_ipv4, open};
