//! The sans-IO sync core: state machines that take the peer's answers (pages, offer
//! and push answers, errors) and the store's outcomes, and say what to ask next and
//! what to apply, hold or send. No I/O and no clock: `now` and whatever was read from
//! the store are passed in. The async drivers (`sync::delta` for ark-lattice peers,
//! `sync::legacy` for ARK's Node.js peers and Python service) move the bytes over HTTP
//! and make the store calls; these machines decide.

mod ark;
mod copy;
mod fetch;
#[cfg(test)]
mod garbage;
mod pull;
mod push;
mod python;
mod rounds;
mod start;
mod text_map;
mod verdict;

pub(super) use ark::{ArkSync, seen_key};
pub(super) use copy::{CopyFeed, CopyPage, CopyProgress, FirstContact, PageError, PageStep};
pub(super) use fetch::FetchQueue;
pub(super) use pull::PullFeed;
pub(super) use push::{ChangesRead, PulledVersions, PushFeed, apply_push_answer, push_batches};
pub(super) use python::{PythonPull, hashes_key};
pub(super) use rounds::{Rounds, push_slices, still_to_push, versions_to_push};
pub(super) use start::{
    AfterInfo, LatticePeer, StoreCounts, check_checkpoint, on_info, restart, without_checkpoint,
};
pub(super) use verdict::TrustRules;
