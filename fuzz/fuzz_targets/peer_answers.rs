//! Answers our client reads from peers and hubs (ARK's `/federation/info`, discover,
//! `receiveNodes`, `/federation/nodes`, the Python service's `/sync`) and from a
//! running server (the control API's answers the CLI reads back): each as the typed
//! message in `protocol`; a push's offer, the answer to it and the push's answer; the
//! answers that carry records to a pulling node (a changes page, read borrowed and taken
//! owned; a fetch answer; each written owned); and the control API's `export` page,
//! `verify` report and its lattice and trust answers (`service::StoredRecord`,
//! `NodeList`, `Deleted`, `Added`, `StatsReport`, `ConflictList`, `Purged`,
//! `TrustList`, `TrustChange`).
//! An answer that reads must write JSON that reads back to the
//! same JSON, so no field changes on a trip through the node.
#![no_main]

use ark_lattice::protocol::{
    AutoSyncAnswer, ChangesPage, DeltaAnswer, DiscoverAnswer, FetchAnswer, InstanceInfo,
    LatticeStatus, NodeList, Offer, OfferAnswer, PeerAddAnswer, PeerDirectory, PeerRemoved,
    PushAnswer, ReceiveResult, SyncAnswer, WireError, parse_object,
};
use ark_lattice::service::{
    Added, ConflictList, Deleted, ExportPage, NodeList as NodeListView, Purged, StatsReport,
    StoredRecord, TrustChange, TrustList, VerifyReport,
};
use libfuzzer_sys::fuzz_target;
use miniserde::json::{Array, Object, Value};

/// Reads `object` as a `T`; if it reads, its JSON must read again and write the same.
fn check<T>(
    object: &Object,
    read: fn(&Object, &str) -> Result<T, WireError>,
    write: fn(&T) -> Value,
) {
    let Ok(message) = read(object, "fuzz answer") else {
        return;
    };
    let written = miniserde::json::to_string(&write(&message));
    let again = parse_object(written.as_bytes(), "written answer")
        .unwrap_or_else(|error| panic!("our own JSON does not read: {error}: {written}"));
    let again = read(&again, "written answer")
        .unwrap_or_else(|error| panic!("our own answer does not read back: {error}: {written}"));
    assert_eq!(
        miniserde::json::to_string(&write(&again)),
        written,
        "an answer changed on a trip through its JSON"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(object) = parse_object(data, "fuzz answer") else {
        return;
    };
    check(&object, InstanceInfo::from_json, InstanceInfo::to_json);
    check(&object, PeerDirectory::from_json, PeerDirectory::to_json);
    check(&object, ReceiveResult::from_json, ReceiveResult::to_json);
    check(&object, NodeList::from_json, NodeList::to_json);
    check(&object, DeltaAnswer::from_json, DeltaAnswer::to_json);
    check(&object, LatticeStatus::from_json, LatticeStatus::to_json);
    check(&object, SyncAnswer::from_json, SyncAnswer::to_json);
    check(&object, PeerAddAnswer::from_json, PeerAddAnswer::to_json);
    check(&object, PeerRemoved::from_json, PeerRemoved::to_json);
    check(&object, AutoSyncAnswer::from_json, AutoSyncAnswer::to_json);
    check(&object, DiscoverAnswer::from_json, DiscoverAnswer::to_json);
    check(
        &object,
        |object, _| Offer::read(object),
        |offer| Value::Object(offer.clone().into_object()),
    );
    check(
        &object,
        |object, _| OfferAnswer::read(object),
        |answer| Value::Object(answer.clone().into_object()),
    );
    check(
        &object,
        |object, _| PushAnswer::read(object),
        |answer| Value::Object(answer.clone().into_object()),
    );
    // The feed's answers are read borrowing their records and written owning them:
    // the owned copy of what was read must write what reads back the same.
    check(
        &object,
        |object, _| ChangesPage::read(object).map(owned_page),
        |page| Value::Object(page.clone().into_object()),
    );
    check(
        &object,
        |object, _| ChangesPage::take(object.clone()),
        |page| Value::Object(page.clone().into_object()),
    );
    check(
        &object,
        |object, _| FetchAnswer::read(object).map(owned_answer),
        |answer| Value::Object(answer.clone().into_object()),
    );
    check(&object, ExportPage::from_json, ExportPage::to_json);
    // The control API's lattice and trust answers, as the CLI reads them back.
    check(&object, StoredRecord::from_json, StoredRecord::to_json);
    check(&object, NodeListView::from_json, NodeListView::to_json);
    check(&object, Deleted::from_json, Deleted::to_json);
    check(&object, Added::from_json, Added::to_json);
    check(&object, StatsReport::from_json, StatsReport::to_json);
    check(&object, ConflictList::from_json, ConflictList::to_json);
    check(&object, Purged::from_json, Purged::to_json);
    check(&object, TrustList::from_json, TrustList::to_json);
    check(&object, TrustChange::from_json, TrustChange::to_json);
    check(&object, VerifyReport::from_json, VerifyReport::to_json);
});

fn owned_page(page: ChangesPage<&[Value]>) -> ChangesPage<Array> {
    ChangesPage {
        instance_id: page.instance_id,
        epoch: page.epoch,
        records: page.records.to_vec().into_iter().collect(),
        last_seq: page.last_seq,
        more: page.more,
    }
}

fn owned_answer(answer: FetchAnswer<&[Value]>) -> FetchAnswer<Array> {
    FetchAnswer {
        records: answer.records.to_vec().into_iter().collect(),
        more: answer.more,
        missing: answer.missing,
        ranked: answer.ranked,
    }
}
