//! Negentropy messages, both as a server answering `POST /federation/v2/reconcile` and
//! as a client receiving an answer, against a set of 300 records.
#![no_main]

use ark_lattice::model::{ContentHash, Hlc, InstanceId, Version};
use ark_lattice::store::{TypeFilter, VersionEntry, VersionSnapshot};
use ark_lattice::sync::reconcile::ReconcileSet;
use libfuzzer_sys::fuzz_target;

fn build() -> ReconcileSet {
    let entries = (0..300u64)
        .map(|index| VersionEntry {
            id: format!("record-{index}"),
            version: Version {
                hlc: Hlc((1_706_702_400_000 + index * 977) << 16),
                origin: InstanceId([(index % 7) as u8; 32]),
            },
            hash: ContentHash([(index % 251) as u8; 32]),
        })
        .collect();
    let snapshot = VersionSnapshot {
        entries,
        last_seq: 300,
    };
    ReconcileSet::build(snapshot, TypeFilter::all()).expect("a set of 300")
}

thread_local! {
    static SET: ReconcileSet = build();
}

fuzz_target!(|data: &[u8]| {
    SET.with(|set| {
        let _ = set.answer(data);
        if let Ok((mut initiator, _first)) = set.initiate() {
            let _ = initiator.receive(data);
        }
    });
});
