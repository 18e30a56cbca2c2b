//! How a sync with one peer begins: whether its checkpoints still hold, what its
//! `/federation/info` answer says to do (ARK's Python service, ARK's Node.js protocol, or
//! an ark-lattice peer to sync by the feed, a first copy or reconciliation), and what
//! a checkpoint that stopped matching the peer resets.
//!
//! # Implementation
//!
//! A sync goes `Checkpointed` (the feed both ways, when the checkpoints hold) or, with
//! none, or after [`restart`], asks `/federation/info`; [`on_info`] reads the answer
//! into [`AfterInfo`]; an ark-lattice peer whose store epoch we have no checkpoint for
//! is then copied or reconciled ([`without_checkpoint`]). The caller reads what these
//! take from the store (repair and drop counts, our record count) and passes it in.

use crate::config::TrustMode;
use crate::model::InstanceId;
use crate::protocol::{
    InstanceInfo, PROTOCOL_RECONCILE, PROTOCOL_V2, Route, WireError, parse_object,
};
use crate::trust::PublicKey;

use super::super::client::{SyncError, UnsignedService};
use super::super::peer::PeerState;
use super::copy::{FirstContact, first_contact};

/// What the store said, before a sync begins, about the checkpoints' validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sync) struct StoreCounts {
    /// Our store's repair count (its `repairs()`).
    pub repairs: u64,
    /// Our count of held records dropped for room (`sync::held_room`).
    pub held_drops: u64,
}

/// Drops the checkpoint (the epoch) when it lies past records we no longer hold:
/// damaged records moved aside since it was set, or held records dropped for room that
/// there is room for again (`refetch_due`). Returns why, for the log.
pub(in crate::sync) fn check_checkpoint(
    url: &str,
    state: &mut PeerState,
    counts: StoreCounts,
    refetch_due: bool,
) -> Option<String> {
    if !state.has_checkpoint() {
        return None;
    }
    let reason = if state.repairs != counts.repairs {
        format!(
            "damaged records were moved aside since the checkpoints with {url} were set; reconciling"
        )
    } else if refetch_due {
        format!(
            "held records were dropped for room since the checkpoints with {url} were set, and there is room again; reconciling to fetch them again"
        )
    } else {
        return None;
    };
    state.epoch = None;
    Some(reason)
}

/// The peer is not the store the checkpoints belong to: both start over.
pub(in crate::sync) fn restart(state: &mut PeerState) {
    state.epoch = None;
    state.pull_seq = 0;
    state.push_seq = 0;
}

/// What the peer's `/federation/info` answer says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sync) enum AfterInfo {
    /// ARK's Python federation service (no such route): its unsigned `/sync`.
    Python,
    /// ARK's Node.js peer: its plain JSON protocol.
    Legacy { peer_id: String },
    /// An ark-lattice peer.
    Lattice(LatticePeer),
}

/// An ark-lattice peer as its info shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sync) struct LatticePeer {
    /// Its key, which its instance id is the hash of.
    pub key: PublicKey,
    /// Pin `key` (trust it as core) if nothing is known of it: the peer was added
    /// offline to be trusted at the first contact.
    pub pin_key: bool,
    pub epoch: String,
    /// Its count of records, for choosing a first copy.
    pub node_count: Option<u64>,
    /// Whether the checkpoints hold for its store epoch (the feed both ways), or it must
    /// be copied or reconciled first.
    pub checkpointed: bool,
}

/// Reads the peer's answer to `GET /federation/info` (`status` and `body`) into what to
/// do, and updates `state` with what it says (protocol, name, id; checkpoints that no
/// longer belong to it start over).
pub(in crate::sync) fn on_info(
    url: &str,
    state: &mut PeerState,
    our_id: &InstanceId,
    trust_mode: TrustMode,
    counts: StoreCounts,
    (status, body): (u16, &[u8]),
) -> Result<AfterInfo, SyncError> {
    let info_url = Route::Info.url(url);
    if status == 404 {
        // ARK's Python federation service (a hub in the guide) has no such route.
        if trust_mode == TrustMode::Strict {
            return Err(SyncError::NeedsOpenTrust {
                url: url.to_owned(),
                service: UnsignedService::Python,
            });
        }
        state.protocol = Some("python".into());
        return Ok(AfterInfo::Python);
    }
    if !(200..300).contains(&status) {
        return Err(SyncError::Status {
            request: format!("GET {info_url}"),
            status,
            detail: String::new(),
        });
    }
    let info = parse_object(body, &format!("peer info from {info_url}"))?;
    let info = InstanceInfo::from_json(&info, &format!("peer info from {url}"))?;
    let peer_id = info.instance_id.clone();
    if peer_id == our_id.to_hex() {
        return Err(SyncError::Itself {
            url: url.to_owned(),
        });
    }
    state.instance_name = Some(info.instance_name.clone()).filter(|name| !name.is_empty());
    if state.instance_id.as_deref() != Some(peer_id.as_str()) {
        state.pull_seq = 0;
        state.push_seq = 0;
        state.legacy_pushed_until = 0;
        state.instance_id = Some(peer_id.clone());
    }
    if !info.speaks(PROTOCOL_V2) {
        if trust_mode == TrustMode::Strict {
            return Err(SyncError::NeedsOpenTrust {
                url: url.to_owned(),
                service: UnsignedService::Legacy,
            });
        }
        state.protocol = Some("legacy".into());
        return Ok(AfterInfo::Legacy { peer_id });
    }
    // An ark-lattice peer's id is the hash of its key, so the key it shows must match.
    let context = format!("peer info from {url}");
    let missing = |name: &str| WireError::missing(&context, name);
    let key = PublicKey::from_base64(
        info.lattice
            .public_key
            .as_deref()
            .ok_or_else(|| missing("publicKey"))?,
    )
    .map_err(|error| WireError::bad_value(&context, "publicKey", error))?;
    if key.instance_id().to_hex() != peer_id {
        return Err(SyncError::KeyMismatch {
            url: url.to_owned(),
        });
    }
    let pin_key = std::mem::take(&mut state.pin_at_first_contact);
    let epoch = info.lattice.epoch.clone().ok_or_else(|| missing("epoch"))?;
    state.protocol = Some("v2".into());
    if state.epoch.as_deref() != Some(epoch.as_str()) && !info.speaks(PROTOCOL_RECONCILE) {
        // A peer without reconciliation is synced by its whole feed, once (and again
        // after damaged records were moved aside here).
        state.epoch = Some(epoch.clone());
        state.pull_seq = 0;
        state.push_seq = 0;
        state.repairs = counts.repairs;
        state.held_drops = counts.held_drops;
    }
    Ok(AfterInfo::Lattice(LatticePeer {
        key,
        pin_key,
        checkpointed: state.epoch.as_deref() == Some(epoch.as_str()),
        epoch,
        node_count: info.lattice.node_count,
    }))
}

/// No checkpoint for the peer's store: first contact, a restored or wiped store, or a
/// reconciliation or copy cut short. A store that holds little of the peer's copies
/// its feed (resumably); others reconcile the two sets instead of pulling and offering
/// everything. Either sets both checkpoints when done; until then there are none.
pub(in crate::sync) fn without_checkpoint(
    state: &mut PeerState,
    peer: &LatticePeer,
    local_records: u64,
) -> FirstContact {
    state.epoch = None;
    state.pull_seq = 0;
    state.push_seq = 0;
    let mode = first_contact(
        local_records,
        peer.node_count,
        state.copy.as_ref(),
        &peer.epoch,
    );
    if mode == FirstContact::Reconcile {
        state.copy = None;
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LatticeInfo;
    use crate::sync::FailureKind;
    use crate::trust::KeyPair;
    use miniserde::json;

    const URL: &str = "http://peer.test:9000";
    const COUNTS: StoreCounts = StoreCounts {
        repairs: 2,
        held_drops: 1,
    };

    fn key() -> KeyPair {
        KeyPair::from_seed([7; 32]).unwrap()
    }

    fn our_id() -> InstanceId {
        KeyPair::from_seed([8; 32])
            .unwrap()
            .public_key()
            .instance_id()
    }

    fn checkpointed() -> PeerState {
        PeerState {
            instance_id: Some(key().public_key().instance_id().to_hex()),
            protocol: Some("v2".into()),
            epoch: Some("e1".into()),
            pull_seq: 30,
            push_seq: 20,
            repairs: 2,
            ..PeerState::new(URL, 0)
        }
    }

    /// The info an ark-lattice peer with `key()` answers, speaking `protocols`.
    fn info(epoch: &str, protocols: &[&str]) -> Vec<u8> {
        let info = InstanceInfo {
            instance_id: key().public_key().instance_id().to_hex(),
            instance_name: "peer".into(),
            lattice: LatticeInfo {
                protocols: protocols.iter().map(|name| (*name).to_owned()).collect(),
                epoch: Some(epoch.into()),
                public_key: Some(key().public_key().to_base64()),
                node_count: Some(1_000),
                ..LatticeInfo::default()
            },
            ..InstanceInfo::default()
        };
        json::to_string(&info.to_json()).into_bytes()
    }

    fn read(
        state: &mut PeerState,
        trust_mode: TrustMode,
        answer: (u16, &[u8]),
    ) -> Result<AfterInfo, SyncError> {
        on_info(URL, state, &our_id(), trust_mode, COUNTS, answer)
    }

    fn lattice(after: Result<AfterInfo, SyncError>) -> LatticePeer {
        match after {
            Ok(AfterInfo::Lattice(peer)) => peer,
            other => panic!("not an ark-lattice peer: {other:?}"),
        }
    }

    #[test]
    fn checkpoints_past_records_we_no_longer_hold_are_dropped() {
        let mut state = checkpointed();
        assert_eq!(check_checkpoint(URL, &mut state, COUNTS, false), None);
        assert!(state.has_checkpoint());
        // Damaged records moved aside since.
        let moved = StoreCounts {
            repairs: 3,
            ..COUNTS
        };
        let reason = check_checkpoint(URL, &mut state, moved, false).unwrap();
        assert!(reason.contains("moved aside"), "{reason}");
        assert!(!state.has_checkpoint());
        // Held records dropped for room, and there is room again.
        let mut state = checkpointed();
        let reason = check_checkpoint(URL, &mut state, COUNTS, true).unwrap();
        assert!(reason.contains("dropped for room"), "{reason}");
        assert_eq!(state.epoch, None);
        // Without a checkpoint there is nothing to drop.
        assert_eq!(check_checkpoint(URL, &mut state, moved, true), None);
    }

    #[test]
    fn a_restart_drops_both_checkpoints() {
        let mut state = checkpointed();
        restart(&mut state);
        assert_eq!((state.epoch, state.pull_seq, state.push_seq), (None, 0, 0));
    }

    #[test]
    fn the_same_store_epoch_keeps_the_checkpoints() {
        let mut state = checkpointed();
        let body = info("e1", &[PROTOCOL_V2, PROTOCOL_RECONCILE]);
        let peer = lattice(read(&mut state, TrustMode::Strict, (200, &body)));
        assert!(peer.checkpointed && !peer.pin_key);
        assert_eq!(peer.key, key().public_key());
        assert_eq!((state.pull_seq, state.push_seq), (30, 20));
        assert_eq!(state.instance_name.as_deref(), Some("peer"));
    }

    #[test]
    fn a_new_store_epoch_is_copied_or_reconciled_without_checkpoints() {
        let mut state = checkpointed();
        let body = info("e2", &[PROTOCOL_V2, PROTOCOL_RECONCILE]);
        let peer = lattice(read(&mut state, TrustMode::Strict, (200, &body)));
        assert!(!peer.checkpointed);
        assert_eq!(peer.epoch, "e2");
        // We hold 100 records, the peer 1,000: far behind, so the feed is copied.
        assert_eq!(
            without_checkpoint(&mut state, &peer, 100),
            FirstContact::Copy
        );
        assert_eq!(
            (state.epoch.as_deref(), state.pull_seq, state.push_seq),
            (None, 0, 0)
        );
        // Holding 600, the sets are reconciled and a copy of another epoch is dropped.
        state.copy = Some(super::super::copy::CopyProgress::new("e0"));
        assert_eq!(
            without_checkpoint(&mut state, &peer, 600),
            FirstContact::Reconcile
        );
        assert_eq!(state.copy, None);
    }

    #[test]
    fn a_peer_without_reconciliation_is_read_from_the_start_of_its_feed() {
        let mut state = checkpointed();
        let body = info("e2", &[PROTOCOL_V2]);
        let peer = lattice(read(&mut state, TrustMode::Strict, (200, &body)));
        assert!(peer.checkpointed);
        assert_eq!((state.epoch.as_deref(), state.pull_seq), (Some("e2"), 0));
        assert_eq!((state.repairs, state.held_drops), (2, 1));
    }

    #[test]
    fn another_instance_at_the_url_starts_over_and_a_pinned_key_is_asked_for() {
        let mut state = PeerState {
            instance_id: Some("ff".repeat(32)),
            pin_at_first_contact: true,
            ..checkpointed()
        };
        let body = info("e1", &[PROTOCOL_V2, PROTOCOL_RECONCILE]);
        let peer = lattice(read(&mut state, TrustMode::Strict, (200, &body)));
        assert!(peer.pin_key);
        assert!(!state.pin_at_first_contact, "pinned once");
        assert_eq!((state.pull_seq, state.push_seq), (0, 0));
        assert_eq!(
            state.instance_id,
            Some(key().public_key().instance_id().to_hex())
        );
    }

    #[test]
    fn info_that_cannot_be_used_fails_with_its_reason() {
        fn check(answer: (u16, &[u8]), expected: &str, kind: FailureKind) {
            let mut state = checkpointed();
            let error = read(&mut state, TrustMode::Strict, answer).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
            assert_eq!(error.kind(), kind, "{error}");
        }
        check((503, b""), "answered 503", FailureKind::PeerFailing);
        check((401, b""), "answered 401", FailureKind::Refused);
        check((200, b"{\"instanceId\":"), "peer info", FailureKind::Other);
        check((404, b""), "FEDERATION_TRUST=open", FailureKind::Other);
        check(
            (200, &info("e1", &[])),
            "unsigned protocol",
            FailureKind::Other,
        );
        // In strict mode ARK's unsigned services are refused by which one they are.
        for (answer, expected) in [
            ((404, &b""[..]), UnsignedService::Python),
            ((200, &info("e1", &[])[..]), UnsignedService::Legacy),
        ] {
            let error = read(&mut checkpointed(), TrustMode::Strict, answer).unwrap_err();
            assert!(
                matches!(error, SyncError::NeedsOpenTrust { service, .. } if service == expected),
                "{error:?}"
            );
        }
        // Info naming our own id: this instance itself.
        let mut other = json::from_str::<miniserde::json::Object>(
            std::str::from_utf8(&info("e1", &[PROTOCOL_V2])).unwrap(),
        )
        .unwrap();
        other.insert(
            "instanceId".into(),
            miniserde::json::Value::String(our_id().to_hex()),
        );
        check(
            (200, json::to_string(&other).as_bytes()),
            "this instance itself",
            FailureKind::Other,
        );
        let error = read(
            &mut checkpointed(),
            TrustMode::Strict,
            (200, json::to_string(&other).as_bytes()),
        )
        .unwrap_err();
        assert!(matches!(error, SyncError::Itself { .. }), "{error:?}");
        // Info whose key is not the one its id names.
        other.insert(
            "instanceId".into(),
            miniserde::json::Value::String("cd".repeat(32)),
        );
        let error = read(
            &mut checkpointed(),
            TrustMode::Strict,
            (200, json::to_string(&other).as_bytes()),
        )
        .unwrap_err();
        assert!(matches!(error, SyncError::KeyMismatch { .. }), "{error:?}");
    }

    #[test]
    fn in_open_mode_arks_services_are_synced_their_own_way() {
        let mut state = PeerState::new(URL, 0);
        let python = read(&mut state, TrustMode::Open, (404, b"not found"));
        assert_eq!(python.unwrap(), AfterInfo::Python);
        assert_eq!(state.protocol.as_deref(), Some("python"));
        let mut state = PeerState::new(URL, 0);
        let legacy = read(&mut state, TrustMode::Open, (200, &info("e1", &[])));
        let peer_id = key().public_key().instance_id().to_hex();
        assert_eq!(legacy.unwrap(), AfterInfo::Legacy { peer_id });
        assert_eq!(state.protocol.as_deref(), Some("legacy"));
    }
}
