//! [`LanPeers`]: the peers heard on the LAN, by instance id, with when they were first
//! and last heard. Pure bookkeeping: callers pass the time and the beacon's check.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::beacon::{Beacon, Verification};
use crate::protocol::CAPABILITY_HTTPS;

/// One peer heard by beacon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanPeer {
    pub beacon: Beacon,
    /// Where to reach it: the packet's source address and the beacon's port. The
    /// source is what the network shows; the beacon's `address` is only what the sender
    /// thinks it is (often wrong behind Docker or with several interfaces).
    pub url: String,
    pub source: SocketAddr,
    /// Its beacon was signed by the key that hashes to its id.
    pub signed: bool,
    pub first_seen: u64,
    pub last_seen: u64,
}

/// What hearing a beacon changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A peer not listed before (or listed and expired).
    New,
    /// A listed peer, heard again.
    Again,
    /// Not taken: the reason.
    Refused(String),
}

#[derive(Debug)]
pub struct LanPeers {
    peers: BTreeMap<String, LanPeer>,
    max_peers: usize,
}

impl LanPeers {
    /// An empty table that keeps at most `max_peers` peers.
    pub fn new(max_peers: usize) -> LanPeers {
        LanPeers {
            peers: BTreeMap::new(),
            max_peers: max_peers.max(1),
        }
    }

    /// Records a beacon from `source` heard at `now` (ms).
    ///
    /// A beacon with a bad signature is refused. Once a peer id has been heard signed,
    /// unsigned beacons under that id are refused too, so anyone on the LAN cannot
    /// redirect a verified peer to another address by sending ARK's unsigned form; and
    /// a signed beacon older than the last one is refused as a replay.
    pub fn hear(
        &mut self,
        beacon: Beacon,
        verification: &Verification,
        source: SocketAddr,
        now: u64,
    ) -> Heard {
        let signed = match verification {
            Verification::Signed => true,
            Verification::Unsigned => false,
            Verification::Invalid(reason) => {
                return Heard::Refused(format!("bad signature: {reason}"));
            }
        };
        if let Some(known) = self.peers.get(&beacon.peer_id) {
            if known.signed && !signed {
                return Heard::Refused(format!(
                    "unsigned beacon for {}, which signs its beacons",
                    beacon.peer_id
                ));
            }
            if signed && known.signed && beacon.timestamp < known.beacon.timestamp {
                return Heard::Refused(format!(
                    "beacon from {} older than one already heard",
                    beacon.peer_id
                ));
            }
        }
        let secure = beacon
            .capabilities
            .iter()
            .any(|capability| capability == CAPABILITY_HTTPS);
        let url = crate::http::node_base_url(secure, source.ip(), beacon.port);
        let first_seen = self.peers.get(&beacon.peer_id).map(|peer| peer.first_seen);
        if first_seen.is_none() && self.peers.len() >= self.max_peers {
            self.make_room();
        }
        let heard = if first_seen.is_some() {
            Heard::Again
        } else {
            Heard::New
        };
        self.peers.insert(
            beacon.peer_id.clone(),
            LanPeer {
                beacon,
                url,
                source,
                signed,
                first_seen: first_seen.unwrap_or(now),
                last_seen: now,
            },
        );
        heard
    }

    /// Drops the peer heard least recently, preferring an unsigned one: a signed
    /// beacon at least proves its sender holds the key its id names.
    fn make_room(&mut self) {
        let oldest = |signed: bool| {
            self.peers
                .iter()
                .filter(|(_, peer)| peer.signed == signed)
                .min_by_key(|(_, peer)| peer.last_seen)
                .map(|(id, _)| id.clone())
        };
        if let Some(id) = oldest(false).or_else(|| oldest(true)) {
            self.peers.remove(&id);
        }
    }

    /// The peer listed under `peer_id`.
    pub fn get(&self, peer_id: &str) -> Option<&LanPeer> {
        self.peers.get(peer_id)
    }

    /// Removes and returns the peers not heard for more than `max_age` ms.
    pub fn expire(&mut self, now: u64, max_age: u64) -> Vec<LanPeer> {
        let stale: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, peer)| now.saturating_sub(peer.last_seen) > max_age)
            .map(|(id, _)| id.clone())
            .collect();
        stale
            .iter()
            .filter_map(|id| self.peers.remove(id))
            .collect()
    }

    /// Every listed peer, by id: at most the table's cap.
    pub fn list(&self) -> Vec<LanPeer> {
        self.peers.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::BadSignature;
    use crate::trust::KeyPair;

    fn signed(timestamp: u64, port: u16) -> Beacon {
        let key = KeyPair::from_seed([3; 32]).unwrap();
        Beacon::signed(&key, "pi", "10.0.0.2", port, &[], timestamp)
    }

    fn source() -> SocketAddr {
        "10.0.0.2:8103".parse().unwrap()
    }

    #[test]
    fn peers_are_new_then_heard_again_then_expire() {
        let mut peers = LanPeers::new(16);
        let beacon = signed(1_000, 9000);
        assert_eq!(
            peers.hear(beacon.clone(), &Verification::Signed, source(), 1_000),
            Heard::New
        );
        assert_eq!(
            peers.hear(signed(2_000, 9000), &Verification::Signed, source(), 2_000),
            Heard::Again
        );
        let listed = peers.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].url, "http://10.0.0.2:9000");
        assert_eq!((listed[0].first_seen, listed[0].last_seen), (1_000, 2_000));
        assert!(peers.expire(5_000, 3_000).is_empty());
        let expired = peers.expire(5_001, 3_000);
        assert_eq!(expired.len(), 1);
        assert!(peers.is_empty());
        assert_eq!(
            peers.hear(beacon, &Verification::Signed, source(), 6_000),
            Heard::New
        );
    }

    #[test]
    fn a_beacon_of_a_node_serving_https_gives_an_https_url() {
        let mut peers = LanPeers::new(16);
        let key = KeyPair::from_seed([4; 32]).unwrap();
        let beacon = Beacon::signed(&key, "hub", "10.0.0.2", 9443, &[CAPABILITY_HTTPS], 1);
        peers.hear(beacon, &Verification::Signed, source(), 1);
        peers.hear(signed(1, 9000), &Verification::Signed, source(), 1);
        let mut urls: Vec<String> = peers.list().into_iter().map(|peer| peer.url).collect();
        urls.sort();
        assert_eq!(urls, ["http://10.0.0.2:9000", "https://10.0.0.2:9443"]);
    }

    #[test]
    fn forged_unsigned_and_replayed_beacons_are_refused() {
        let mut peers = LanPeers::new(16);
        let invalid = Verification::Invalid(BadSignature::NotPeerIdsKey);
        assert!(matches!(
            peers.hear(signed(1, 9000), &invalid, source(), 1),
            Heard::Refused(_)
        ));
        peers.hear(signed(5_000, 9000), &Verification::Signed, source(), 5_000);
        let mut forged = signed(6_000, 9000);
        forged.public_key = None;
        forged.signature = None;
        let attacker: SocketAddr = "10.0.0.66:8103".parse().unwrap();
        assert!(matches!(
            peers.hear(forged, &Verification::Unsigned, attacker, 6_000),
            Heard::Refused(_)
        ));
        assert!(matches!(
            peers.hear(signed(4_000, 9001), &Verification::Signed, attacker, 6_000),
            Heard::Refused(_)
        ));
        assert_eq!(peers.list()[0].url, "http://10.0.0.2:9000");
    }

    #[test]
    fn a_flood_of_made_up_ids_stays_within_the_cap_and_keeps_signed_peers() {
        let mut peers = LanPeers::new(8);
        peers.hear(signed(1, 9000), &Verification::Signed, source(), 1);
        for index in 0..10_000u64 {
            let mut fake = signed(index, 9000);
            fake.peer_id = format!("{index:064x}");
            fake.public_key = None;
            fake.signature = None;
            let heard = peers.hear(fake, &Verification::Unsigned, source(), 2 + index);
            assert_eq!(heard, Heard::New);
        }
        assert_eq!(peers.len(), 8);
        let signed_id = signed(1, 9000).peer_id;
        assert!(peers.get(&signed_id).is_some(), "the signed peer was kept");
    }
}
