//! `import`'s document reader: format detection, the array splitter, NDJSON, topics.
//! Every node it accepts must survive its canonical bytes and its own JSON.
#![no_main]

use ark_lattice::input::parse_bytes;
use ark_lattice::model::{Node, Shape, decode_node, encode_node};
use libfuzzer_sys::fuzz_target;
use miniserde::json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(document) = parse_bytes("fuzz input", data) else {
        return;
    };
    for node in document.nodes() {
        // `updated_at` says when, not what: the canonical bytes leave it out.
        let content = Node {
            updated_at: None,
            ..node.clone()
        };
        assert_eq!(
            decode_node(&encode_node(node)),
            Ok(content),
            "canonical round trip"
        );
        let json = Value::Object(node.to_json(Shape::Native));
        let again = Node::from_json(&json).expect("an accepted node reads back from its JSON");
        assert_eq!(again.id, node.id);
    }
});
