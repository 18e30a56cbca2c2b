//! `Node::from_json` behind the JSON reader every input path uses. An accepted record
//! must read back unchanged from both shapes it is written in (ours and ARK's row), and
//! its canonical bytes must decode to it, and its counted JSON size must be exact.
#![no_main]

use ark_lattice::model::{Node, Shape, decode_node, encode_node, parse_json};
use libfuzzer_sys::fuzz_target;
use miniserde::json::{self, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = parse_json(text) else {
        return;
    };
    let Ok(node) = Node::from_json(&value) else {
        return;
    };
    let native = json::to_string(&Value::Object(node.to_json(Shape::Native)));
    // The record limit is counted without writing the JSON; it must be the length.
    assert_eq!(node.json_bytes(), native.len(), "json_bytes of {native}");
    let reread = Node::from_json(&parse_json(&native).expect("our JSON parses"))
        .expect("an accepted record reads back from our shape");
    assert_eq!(reread, node, "native round trip of {native}");
    let row = Value::Object(node.to_json(Shape::ArkRow));
    let from_row = Node::from_json(&row).expect("an accepted record reads back from ARK's row");
    assert_eq!(from_row.id, node.id);
    assert_eq!(from_row.capabilities, node.capabilities);
    // `updated_at` says when, not what: the canonical bytes leave it out.
    let content = Node {
        updated_at: None,
        ..node.clone()
    };
    assert_eq!(decode_node(&encode_node(&node)), Ok(content));
});
