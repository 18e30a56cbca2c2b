//! Checks received records' author signatures: one record against its author's key
//! ([`check_signature`]), a page of records read from the wire and checked on two
//! threads at once ([`check_page`]), and such a page checked apart from the node's
//! thread while it goes on ([`check_apart`]). Which key is the author's when a record
//! does not carry it, and whether a checked record is accepted, is left to the `Syncer`.
//!
//! # Implementation
//!
//! Checking an Ed25519 signature costs about twice what signing does, and a first copy
//! checks one for every record of the peer's lattice: about two thirds of the copying
//! node's CPU time for 100k records (issue 13). A page of at least [`TWO_THREADS_MIN`]
//! records is read and checked by two threads taking chunks of [`CHUNK_RECORDS`] in
//! turn; the second is a scoped thread that ends with the check. The steady-state pull
//! checks its pages so on the node's thread; the first copy runs the whole check on a
//! thread of its own, so the next page is checked while the store is written, and the
//! store and everything else stays on the node's one thread. A node that cannot start
//! a thread checks on the thread it has.

use std::sync::atomic::{AtomicUsize, Ordering};

use miniserde::json::{Array, Value};

use crate::model::{ClaimedContent, ContentHash, RecordClaim, SignatureFormat, encode_node};
use crate::protocol::record_from_wire;
use crate::store::{Body, RemoteRecord};
use crate::trust::{PublicKey, RecordError, Signature, verify_record, verify_record_v1};

/// Pages with fewer records are checked on the calling thread alone: starting a
/// thread costs about as much as checking a few signatures.
pub const TWO_THREADS_MIN: usize = 64;

/// The records the threads of [`check_page`] take at a time: about a millisecond of
/// work, small enough that neither waits long for the other at the end.
const CHUNK_RECORDS: usize = 16;

/// A record of a page after [`check_page`].
#[derive(Debug)]
pub enum Checked {
    /// Its signature verified with the key it carried (or it is unsigned and `open`).
    Verified(RemoteRecord),
    /// It carried no author key: the caller finds the key and calls [`check_signature`].
    NeedsKey(RemoteRecord),
    /// Malformed, forged, or signed in a way that is never accepted; the reason.
    Refused(String),
}

/// Reads each value of a page as a wire record and checks the signature of those that
/// carry their author's key, on two threads when the page is large.
/// `context(index)` names record `index` (from 0) in reasons; `open` accepts unsigned
/// records (open trust mode). The answer is in the order of `values`.
pub(crate) fn check_page(
    values: &[Value],
    context: &(dyn Fn(usize) -> String + Sync),
    open: bool,
) -> Vec<Checked> {
    let check_from = |first: usize, values: &[Value]| -> Vec<Checked> {
        values
            .iter()
            .enumerate()
            .map(|(offset, value)| check_value(value, &context(first + offset), open))
            .collect()
    };
    if values.len() < TWO_THREADS_MIN {
        return check_from(0, values);
    }
    // Both threads take chunks in turn until none is left, so they finish within a
    // chunk of each other even when one of them gets less of the CPU than the other.
    let chunks: Vec<&[Value]> = values.chunks(CHUNK_RECORDS).collect();
    let next = AtomicUsize::new(0);
    let take_chunks = || {
        let mut checked = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(chunk) = chunks.get(index) else {
                return checked;
            };
            checked.push((index, check_from(index * CHUNK_RECORDS, chunk)));
        }
    };
    let mut checked = std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("ark-verify".into())
            .spawn_scoped(scope, take_chunks);
        // With no thread to be had (a process limit), this thread takes every chunk.
        let mut checked = take_chunks();
        if let Ok(helper) = helper {
            match helper.join() {
                Ok(rest) => checked.extend(rest),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        checked
    });
    checked.sort_unstable_by_key(|(index, _)| *index);
    checked.into_iter().flat_map(|(_, chunk)| chunk).collect()
}

/// A page's records being read and checked on a thread of their own ([`check_apart`]),
/// while the node's thread goes on with other work.
#[derive(Debug)]
pub struct CheckingPage {
    answer: smol::channel::Receiver<(Array, Vec<Checked>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CheckingPage {
    /// The page's values and what [`check_page`] made of them, in the same order.
    pub async fn checked(mut self) -> (Array, Vec<Checked>) {
        if let Ok(answer) = self.answer.recv().await {
            return answer;
        }
        // The thread ended without answering: it panicked. The panic goes on here, where
        // the sync that asked is contained.
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => unreachable!("a check thread drops its sender only by answering or panicking"),
        }
    }
}

/// Starts [`check_page`] on `values` on a thread of its own and returns at once; the
/// caller awaits [`CheckingPage::checked`]. The first copy checks the next page this way
/// while it applies the one before (issue 13). A node that cannot start the thread
/// checks the page here and now.
pub(crate) fn check_apart(
    values: Array,
    context: impl Fn(usize) -> String + Send + Sync + 'static,
    open: bool,
) -> CheckingPage {
    let (sender, answer) = smol::channel::bounded(1);
    let work = move || {
        let checked = check_page(&values, &context, open);
        // The receiver is gone only when the sync that asked gave up; nothing to do.
        let _ = sender.try_send((values, checked));
    };
    let shared = std::sync::Arc::new(std::sync::Mutex::new(Some(work)));
    let on_thread = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("ark-verify".into())
        .spawn(move || {
            let work = on_thread.lock().ok().and_then(|mut work| work.take());
            if let Some(work) = work {
                work();
            }
        });
    let thread = match spawned {
        Ok(thread) => Some(thread),
        Err(_) => {
            // No thread to be had (a process limit): the work is still in `shared`.
            let work = shared.lock().ok().and_then(|mut work| work.take());
            if let Some(work) = work {
                work();
            }
            None
        }
    };
    CheckingPage { answer, thread }
}

/// One value of a page: read as a wire record, its signature checked when it carries
/// its author's key.
fn check_value(value: &Value, context: &str, open: bool) -> Checked {
    let (record, author_key) = match record_from_wire(value, context) {
        Ok(read) => read,
        Err(error) => return Checked::Refused(error.to_string()),
    };
    let Some(text) = author_key else {
        return Checked::NeedsKey(record);
    };
    let key = match PublicKey::from_base64(&text) {
        Ok(key) => key,
        Err(error) => return Checked::Refused(format!("{context}: author key: {error}")),
    };
    match check_signature(record, Some(key), open, context) {
        Ok(record) => Checked::Verified(record),
        Err(reason) => Checked::Refused(reason),
    }
}

/// Checks `record`'s signature with its author's `key` (`None`: not known here), and
/// notes the key in the record once it verified. In `open` trust mode an unsigned
/// record, or one whose author's key is unknown, passes unchecked.
pub(crate) fn check_signature(
    mut record: RemoteRecord,
    key: Option<PublicKey>,
    open: bool,
    context: &str,
) -> Result<RemoteRecord, String> {
    match (record.signature, key) {
        (Some(signature), Some(key)) => {
            let bytes = Signature::from_bytes(&signature.bytes)
                .map_err(|error| format!("{context}: {error}"))?;
            let refused = |error: RecordError| format!("{context} ({:?}): {error}", record.id);
            match (signature.format, &record.body) {
                (SignatureFormat::V2, body) => {
                    let content = match body {
                        Body::Live(node) => {
                            ClaimedContent::Live(ContentHash::of(&encode_node(node)))
                        }
                        Body::Deleted { deleted_at } => ClaimedContent::Deleted {
                            deleted_at: *deleted_at,
                        },
                    };
                    let claim = RecordClaim {
                        id: &record.id,
                        content,
                        version: record.version,
                        base: record.base,
                    };
                    verify_record(&key, &claim, &bytes).map_err(refused)?;
                }
                // An older node's signature pins a live record's content, id
                // included, but not its base: the base is dropped, so at worst a
                // clean update is logged as a conflict, never a conflict hidden.
                (SignatureFormat::V1, Body::Live(node)) => {
                    verify_record_v1(&key, &encode_node(node), &record.version, &bytes)
                        .map_err(refused)?;
                    record.base = None;
                }
                // A format 1 tombstone signs the hash of nothing: it could be moved
                // onto any id, so it never deletes anything here.
                (SignatureFormat::V1, Body::Deleted { .. }) => {
                    return Err(format!(
                        "{context} ({:?}): a delete signed in format 1 (by an older node) does not name the record it deletes; it is refused until its author signs it in format 2",
                        record.id
                    ));
                }
            }
            record.author_key = Some(*key.as_bytes());
        }
        _ if open => {}
        (Some(_), None) => {
            return Err(format!(
                "{context} ({:?}): signed by an author whose key we do not have",
                record.id
            ));
        }
        (None, _) => return Err(format!("{context} ({:?}): unsigned record", record.id)),
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, RecordSignature, Version};
    use crate::protocol::record_to_wire;
    use crate::store::{Record, RecordMeta};
    use crate::trust::{KeyPair, sign_record};

    /// What a page holds at `index`: most records signed and carrying their key, every
    /// 7th forged, every 11th without its key, every 13th not a record at all.
    fn page(key: &KeyPair, count: u64) -> Vec<Value> {
        let origin = key.public_key().instance_id();
        let key_text = key.public_key().to_base64();
        (0..count)
            .map(|index| {
                if index % 13 == 12 {
                    return Value::String("no record".into());
                }
                let version = Version {
                    hlc: Hlc::from_parts(1_000 + index, 0),
                    origin,
                };
                let id = format!("n{index}");
                let claim = RecordClaim {
                    id: &id,
                    content: ClaimedContent::Deleted { deleted_at: 500 },
                    version,
                    base: None,
                };
                let mut bytes = *sign_record(key, &claim).expect("sign").as_bytes();
                if index % 7 == 6 {
                    bytes[0] ^= 1;
                }
                let record = Record {
                    id,
                    meta: RecordMeta {
                        version,
                        base: None,
                        seq: index,
                        hash: ContentHash::of(b""),
                        updated_at: None,
                        signature: Some(RecordSignature::v2(bytes)),
                    },
                    body: Body::Deleted { deleted_at: 500 },
                };
                let carried = (index % 11 != 10).then_some(key_text.as_str());
                record_to_wire(&record, carried)
            })
            .collect()
    }

    /// What each record of [`page`] must come out as.
    fn expected(index: u64) -> &'static str {
        match index {
            _ if index % 13 == 12 => "refused",
            _ if index % 11 == 10 => "needs key",
            _ if index % 7 == 6 => "refused",
            _ => "verified",
        }
    }

    fn kinds(checked: &[Checked]) -> Vec<(String, &'static str)> {
        checked
            .iter()
            .enumerate()
            .map(|(index, checked)| match checked {
                Checked::Verified(record) => (record.id.clone(), "verified"),
                Checked::NeedsKey(record) => (record.id.clone(), "needs key"),
                Checked::Refused(_) => (format!("n{index}"), "refused"),
            })
            .collect()
    }

    fn context(index: usize) -> String {
        format!("record {}", index + 1)
    }

    #[test]
    fn a_page_on_two_threads_comes_back_in_its_order_with_each_record_judged_alone() {
        let key = KeyPair::generate().expect("key");
        for count in [
            0,
            1,
            TWO_THREADS_MIN as u64 - 1,
            TWO_THREADS_MIN as u64,
            500,
        ] {
            let values = page(&key, count);
            let checked = check_page(&values, &context, false);
            let wanted: Vec<(String, &str)> = (0..count)
                .map(|index| (format!("n{index}"), expected(index)))
                .collect();
            assert_eq!(kinds(&checked), wanted, "a page of {count}");
            // Each reason names its own record, wherever its chunk was checked.
            for (index, checked) in checked.iter().enumerate() {
                if let Checked::Refused(reason) = checked {
                    assert!(
                        reason.starts_with(&format!("record {}", index + 1)),
                        "record {}: {reason}",
                        index + 1
                    );
                }
            }
            if let Some(Checked::Verified(record)) = checked.first() {
                assert_eq!(record.author_key, Some(*key.public_key().as_bytes()));
            }
        }
    }

    #[test]
    fn a_page_checked_apart_gives_back_its_values_and_the_same_answer() {
        let key = KeyPair::generate().expect("key");
        let values = page(&key, 300);
        let alone = kinds(&check_page(&values, &context, false));
        let (returned, checked) = futures_lite::future::block_on(
            check_apart(Array::from_iter(values.clone()), context, false).checked(),
        );
        assert_eq!(
            miniserde::json::to_string(&returned),
            miniserde::json::to_string(&Array::from_iter(values))
        );
        assert_eq!(kinds(&checked), alone);
    }

    #[test]
    fn a_panic_while_checking_apart_reaches_the_caller() {
        let key = KeyPair::generate().expect("key");
        let values = Array::from_iter(page(&key, 100));
        let panicking = |index: usize| -> String {
            assert!(index < 50, "a context that panics at record {}", index + 1);
            context(index)
        };
        let outcome = std::panic::catch_unwind(|| {
            futures_lite::future::block_on(check_apart(values, panicking, false).checked())
        });
        let panic = outcome.expect_err("the panic is not lost");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("a context that panics"), "{message}");
    }
}
