//! What the trust rules make of one received record whose signature checked out:
//! accept it, or hold it for a reason that can go away (`sync::held`). The author's tier
//! and `now` are passed in; the caller reads the tier only when
//! [`TrustRules::asks_author_tier`] says it decides.

use crate::config::TrustMode;
use crate::model::{InstanceId, format_rfc3339};
use crate::store::RemoteRecord;
use crate::trust::Tier;

use super::super::held::HoldReason;

/// The settings a received record is judged by.
#[derive(Debug, Clone)]
pub(in crate::sync) struct TrustRules {
    pub trust_mode: TrustMode,
    /// Our instance: our own records come back from peers and are always ours to take.
    pub our_id: InstanceId,
    pub max_clock_skew_millis: u64,
}

/// Why a record is held, for people and for the held table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sync) struct Hold {
    pub reason: HoldReason,
    pub message: String,
}

impl TrustRules {
    /// Whether the author's tier decides: in strict mode, for a record by another
    /// instance that no core peer delivered.
    pub(crate) fn asks_author_tier(&self, origin: &InstanceId, delivered_by_core: bool) -> bool {
        self.trust_mode == TrustMode::Strict && !delivered_by_core && *origin != self.our_id
    }

    /// Accepts `record` (`None`) or says why it is held. `author_tier` is the tier of its
    /// author when [`TrustRules::asks_author_tier`], else anything; `context` and
    /// `author_fingerprint` name the record and its author in the message (the
    /// fingerprint is a hash: made only for a record that is held).
    pub(crate) fn judge(
        &self,
        record: &RemoteRecord,
        context: &str,
        author_fingerprint: &dyn Fn() -> String,
        author_tier: Option<Tier>,
        delivered_by_core: bool,
        now: u64,
    ) -> Option<Hold> {
        if self.asks_author_tier(&record.version.origin, delivered_by_core)
            && author_tier != Some(Tier::Core)
        {
            return Some(Hold {
                reason: HoldReason::UntrustedAuthor,
                message: format!(
                    "{context} ({:?}): its author {} is not trusted for writing here; held until it is",
                    record.id,
                    author_fingerprint()
                ),
            });
        }
        if record.version.hlc.millis() > now.saturating_add(self.max_clock_skew_millis) {
            return Some(Hold {
                reason: HoldReason::ClockAhead,
                message: format!(
                    "{context} ({:?}): version clock {} is more than {} s ahead of ours; held until our clock catches up",
                    record.id,
                    format_rfc3339(record.version.hlc.millis()),
                    self.max_clock_skew_millis / 1000
                ),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, Version};
    use crate::store::Body;

    const NOW: u64 = 1_800_000_000_000;

    fn fingerprint() -> String {
        "SHA256:abc".into()
    }

    fn rules(trust_mode: TrustMode) -> TrustRules {
        TrustRules {
            trust_mode,
            our_id: InstanceId([1; 32]),
            max_clock_skew_millis: 60_000,
        }
    }

    fn record(origin: u8, millis: u64) -> RemoteRecord {
        RemoteRecord {
            id: "n1".into(),
            version: Version {
                hlc: Hlc::from_parts(millis, 0),
                origin: InstanceId([origin; 32]),
            },
            base: None,
            hash: None,
            signature: None,
            author_key: None,
            body: Body::Deleted { deleted_at: millis },
        }
    }

    fn check(
        rules: &TrustRules,
        record: &RemoteRecord,
        tier: Option<Tier>,
        by_core: bool,
        expected: Option<HoldReason>,
    ) {
        let verdict = rules.judge(record, "record 1", &fingerprint, tier, by_core, NOW);
        assert_eq!(
            verdict.as_ref().map(|hold| hold.reason),
            expected,
            "{verdict:?}"
        );
    }

    #[test]
    fn an_untrusted_author_is_held_unless_a_core_peer_delivered_it() {
        let strict = rules(TrustMode::Strict);
        let theirs = record(2, NOW);
        let held = Some(HoldReason::UntrustedAuthor);
        check(&strict, &theirs, None, false, held);
        check(&strict, &theirs, Some(Tier::Sandbox), false, held);
        check(&strict, &theirs, Some(Tier::Core), false, None);
        check(&strict, &theirs, None, true, None);
        // Our own records and open mode never ask.
        check(&strict, &record(1, NOW), None, false, None);
        check(&rules(TrustMode::Open), &theirs, None, false, None);
        assert!(strict.asks_author_tier(&theirs.version.origin, false));
        assert!(!strict.asks_author_tier(&theirs.version.origin, true));
        let message = strict
            .judge(&theirs, "record 1", &fingerprint, None, false, NOW)
            .unwrap()
            .message;
        assert!(message.contains("SHA256:abc is not trusted"), "{message}");
    }

    #[test]
    fn a_version_ahead_of_our_clock_by_more_than_the_skew_is_held() {
        let open = rules(TrustMode::Open);
        check(&open, &record(2, NOW + 60_000), None, false, None);
        let ahead = Some(HoldReason::ClockAhead);
        check(&open, &record(2, NOW + 60_001), None, false, ahead);
        // The same record passes once the clock passed in has caught up.
        let later = open.judge(
            &record(2, NOW + 60_001),
            "r",
            &fingerprint,
            None,
            false,
            NOW + 1,
        );
        assert_eq!(later, None);
    }
}
