//! Format detection and error reporting, on hand-written inputs and on ARK's real data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

const SOURCE: &str = "in.json";

/// Renders the outcome of parsing `input` as one line: the document error, or the
/// format followed by each record as `id` or `id/category` when valid and as its error
/// message when not, separated by ` | `.
fn render(input: &[u8]) -> String {
    match parse_bytes(SOURCE, input) {
        Err(error) => error.to_string(),
        Ok(document) => {
            let records: Vec<String> = document
                .records
                .iter()
                .map(|record| match record {
                    Ok(node) => match &node.category {
                        Some(category) => format!("{}/{category}", node.id),
                        None => node.id.clone(),
                    },
                    Err(error) => error.to_string(),
                })
                .collect();
            format!("{}: {}", document.format, records.join(" | "))
        }
    }
}

/// The same rendering of what [`RecordStream`] hands out, read in small pieces. A
/// document that breaks off partway renders as its error alone, as a whole-document
/// parse reports it.
fn render_stream(input: &[u8]) -> String {
    let reader = std::io::BufReader::with_capacity(7, input);
    let stream = match RecordStream::new(SOURCE, reader) {
        Ok(stream) => stream,
        Err(error) => return error.to_string(),
    };
    let format = stream.format();
    let mut records = Vec::new();
    for item in stream {
        match item {
            Err(error) => return error.to_string(),
            Ok(Ok(node)) => records.push(match &node.category {
                Some(category) => format!("{}/{category}", node.id),
                None => node.id.clone(),
            }),
            Ok(Err(error)) => records.push(error.to_string()),
        }
    }
    format!("{format}: {}", records.join(" | "))
}

/// Checks a whole-document parse, and that streaming reads the same records and the
/// same error at the same place.
fn check(input: impl AsRef<[u8]>, expected: &str) {
    let input = input.as_ref();
    assert_eq!(
        render(input),
        expected,
        "input: {:?}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(
        render_stream(input),
        expected,
        "streamed input: {:?}",
        String::from_utf8_lossy(input)
    );
}

fn record(id: &str) -> String {
    format!(r#"{{"id":"{id}","type":"template_node","value":"v"}}"#)
}

#[test]
fn each_format_is_detected() {
    check(record("a"), "single JSON object: a");
    check(
        format!("[{}, {}]", record("a"), record("b")),
        "JSON array: a | b",
    );
    check("[]", "JSON array: ");
    check(
        format!("{}\n\n{}\r\n{}\n", record("a"), record("b"), record("c")),
        "NDJSON: a | b | c",
    );
    check(
        r#"{"meta": {"schema_version": "5.0.0"}, "topics": [
            {"name": "Web", "description": "d", "nodes": [
                {"id": "a", "type": "t", "value": "v"},
                {"id": "b", "type": "t", "value": "v", "category": "Own"}]},
            {"name": "Empty", "nodes": []}]}"#,
        "topics document: a/Web | b/Own",
    );
    // A record may carry an unknown field named `topics`; its `id` says it is a record.
    check(
        r#"{"id": "a", "type": "t", "value": "v", "topics": []}"#,
        "single JSON object: a",
    );
}

#[test]
fn a_pretty_printed_object_is_one_document() {
    check(
        "{\n  \"id\": \"a\",\n  \"type\": \"t\",\n  \"value\": \"v\"\n}\n",
        "single JSON object: a",
    );
    check(
        "\u{feff}[\n  {\"id\": \"a\", \"type\": \"t\", \"value\": \"v\"}\n]",
        "JSON array: a",
    );
}

#[test]
fn arrays_split_into_elements_only_where_the_json_says() {
    check(
        r#"[{"id": "a]", "type": "t", "value": "v"}, {"id": "b\"],{", "type": "t", "value": "v"}]"#,
        r#"JSON array: a] | b"],{"#,
    );
    check(
        r#"[{"id": "a", "type": "t", "value": "v", "x": [[], {"y": [1, 2]}]}]"#,
        "JSON array: a",
    );
    check("  [ \n ]  \n", "JSON array: ");
    check(
        "[1, {}]",
        "JSON array: in.json: record 1: field `(record)`: is not a JSON object \
         | in.json: record 2: field `id`: is missing",
    );
    check(
        format!("[{},]", record("a")),
        "in.json: malformed JSON at line 1, column 48: expected a value, found ']'",
    );
    check(
        "[,]",
        "in.json: malformed JSON at line 1, column 2: expected a value or ']', found ','",
    );
    check(
        "[{]}",
        "in.json: malformed JSON at line 1, column 3: expected a string key or '}', found ']'",
    );
    check(
        format!("[{}] [{}]", record("a"), record("b")),
        "in.json: malformed JSON at line 1, column 49: expected end of input, found '['",
    );
}

#[test]
fn ndjson_skips_bad_lines_and_keeps_the_rest() {
    // Blank lines and indentation count, streamed or not.
    for (before_bad_line, line, column) in [("\n", 2, 19), ("\n\n\n  ", 4, 21)] {
        check(
            format!(
                "{}{before_bad_line}{{\"id\": \"b\", \"type\"\n{}",
                record("a"),
                record("c")
            ),
            &format!(
                "NDJSON: a | in.json: line {line}: malformed JSON at column {column}: \
                 expected ':', found end of input | c"
            ),
        );
    }
    // The first line itself is the broken one.
    check(
        format!("{{\"id\": \"a\",\n{}\n{}", record("b"), record("c")),
        "NDJSON: in.json: line 1: malformed JSON at column 12: \
         expected a string key, found end of input | b | c",
    );
    check(
        format!("{}\n[1]\n{}", record("a"), record("c")),
        "NDJSON: a | in.json: line 2: field `(record)`: is not a JSON object | c",
    );
}

#[test]
fn invalid_inputs_give_their_documented_error() {
    let long_id = "x".repeat(201);
    let cases: Vec<(Vec<u8>, String)> = vec![
        (b"".to_vec(), "in.json: the document is empty".into()),
        (b" \n\t\r\n".to_vec(), "in.json: the document is empty".into()),
        (
            b"[\n  {\"id\": \"a\",\n   \"type\": \"t\"".to_vec(),
            "in.json: malformed JSON at line 3, column 15: \
             expected ',' or '}', found end of input"
                .into(),
        ),
        (
            format!("{}\n]", record("a")).into_bytes(),
            "NDJSON: a | in.json: line 2: malformed JSON at column 1: \
             expected a value, found ']'"
                .into(),
        ),
        (
            b"[{\"id\": \"a\", \"type\": \"t\", \"value\": \"v\"}] x".to_vec(),
            "in.json: malformed JSON at line 1, column 42: expected end of input, found 'x'"
                .into(),
        ),
        (
            b"{\n  \"id\": \"a\",\n  \"value\": 'v'\n}".to_vec(),
            "in.json: malformed JSON at line 3, column 12: expected a value, found '\\''"
                .into(),
        ),
        (
            b"42".to_vec(),
            "in.json: a JSON number is not a record, an array of records or a topics document"
                .into(),
        ),
        (
            b"\"text\"".to_vec(),
            "in.json: a JSON string is not a record, an array of records or a topics document"
                .into(),
        ),
        (
            format!(
                r#"[{}, {{"type": "t", "value": "v"}}, {{"id": "c", "value": "v"}}, {{"id": "d", "type": "t"}}, {}]"#,
                record("a"),
                record("e")
            )
            .into_bytes(),
            "JSON array: a | in.json: record 2: field `id`: is missing \
             | in.json: record 3 (id \"c\"): field `type`: is missing \
             | in.json: record 4 (id \"d\"): field `value`: is missing | e"
                .into(),
        ),
        (
            br#"[{"id": "a", "type": "t", "value": "v", "usage_count": "many"}]"#.to_vec(),
            "JSON array: in.json: record 1 (id \"a\"): field `usage_count`: \
             must be a number, got a string"
                .into(),
        ),
        (
            format!(r#"{{"id": "{long_id}", "type": "t", "value": "v"}}"#).into_bytes(),
            format!(
                "single JSON object: in.json: record 1 (id \"{}…\"): \
                 field `id`: must be 1 to 200 characters, got 201",
                &long_id[..200]
            ),
        ),
        (
            b"[{\"id\": \"a\"},\n {\"id\": \"b\xff\"}]".to_vec(),
            "in.json: invalid UTF-8 at byte 24 (line 2)".into(),
        ),
        (
            br#"{"meta": {}, "topics": [{"name": "Web", "nodes": {"id": "a"}}]}"#.to_vec(),
            "in.json: topic \"Web\": `nodes` must be an array, got an object".into(),
        ),
        (
            br#"{"meta": {}, "topics": [{"name": "Web"}]}"#.to_vec(),
            "in.json: topic \"Web\": `nodes` is missing".into(),
        ),
        (
            br#"{"topics": {"Web": []}}"#.to_vec(),
            "in.json: `topics` must be an array, got an object".into(),
        ),
        (
            br#"{"topics": [{"nodes": []}]}"#.to_vec(),
            "in.json: topic 1: `name` is missing".into(),
        ),
        (
            br#"{"topics": [[]]}"#.to_vec(),
            "in.json: topic 1 must be an object, got an array".into(),
        ),
        (
            format!(
                r#"{{"topics": [{{"name": "{}", "nodes": [{}]}}]}}"#,
                "T".repeat(201),
                record("a")
            )
            .into_bytes(),
            format!(
                "topics document: in.json: topic \"{}\" node 1 (id \"a\"): \
                 field `category`: is 201 bytes, the limit is 200",
                "T".repeat(201)
            ),
        ),
        // Found by the `import_stream` fuzz target: a complete array on the first line
        // followed by more lines is a broken array, streamed or not, not NDJSON whose
        // every line is refused.
        (
            b"[]\n\n]\n\nd\n\n\t\t\"{d\"  <<li,".to_vec(),
            "in.json: malformed JSON at line 3, column 1: expected end of input, found ']'"
                .into(),
        ),
        (
            format!("[{}]\n{}", record("a"), record("b")).into_bytes(),
            "in.json: malformed JSON at line 2, column 1: expected end of input, found '{'"
                .into(),
        ),
    ];
    assert!(cases.len() >= 10);
    for (input, expected) in cases {
        check(input, &expected);
    }
}

fn shared_data(file: &str) -> Option<Vec<u8>> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "shared", "data", file]
        .iter()
        .collect();
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            eprintln!("skipped: cannot read {}: {error}", path.display());
            None
        }
    }
}

/// Parses a shared data file and checks that every record is valid.
fn read_shared(file: &str, format: Format) -> Option<Document> {
    let document = parse_bytes(file, &shared_data(file)?).unwrap();
    assert_eq!(document.format, format);
    let errors: Vec<String> = document.errors().map(ToString::to_string).collect();
    assert_eq!(errors, Vec::<String>::new());
    Some(document)
}

#[test]
fn ark_sqlite_export_reads_every_row() {
    let Some(document) = read_shared("ark-lattice-nodes.json", Format::Array) else {
        return;
    };
    let mut type_counts = BTreeMap::new();
    for node in document.nodes() {
        *type_counts.entry(node.node_type.as_str()).or_insert(0) += 1;
    }
    assert_eq!(document.records.len(), 469);
    assert_eq!(
        type_counts,
        BTreeMap::from([
            ("command_node", 109),
            ("library_node", 104),
            ("template_node", 97),
            ("pattern_node", 66),
            ("framework_node", 46),
            ("component_node", 26),
            ("compiler_node", 21),
        ])
    );
    let first = document.nodes().next().unwrap();
    assert_eq!(first.id, "accelerate_launch");
    assert_eq!(
        first.capabilities,
        ["multi_device", "mixed_precision", "distributed"]
    );
}

#[test]
fn ark_topics_files_take_their_category_from_the_topic() {
    for (file, node_count, topic_count) in [
        ("code-lattice-complete-nodes.json", 300, 20),
        ("security-pentesting-nodes.json", 50, 5),
    ] {
        let Some(document) = read_shared(file, Format::Topics) else {
            return;
        };
        assert_eq!(document.records.len(), node_count, "{file}");
        let text = String::from_utf8(shared_data(file).unwrap()).unwrap();
        let Ok(miniserde::json::Value::Object(root)) = miniserde::json::from_str(&text) else {
            panic!("{file} is not an object");
        };
        let Some(miniserde::json::Value::Array(topics)) = root.get("topics") else {
            panic!("{file} has no topics");
        };
        assert_eq!(topics.len(), topic_count, "{file}");
        let mut expected_categories = Vec::new();
        for topic in topics.iter() {
            let miniserde::json::Value::Object(topic) = topic else {
                panic!("{file}: a topic is not an object");
            };
            let (
                Some(miniserde::json::Value::String(name)),
                Some(miniserde::json::Value::Array(nodes)),
            ) = (topic.get("name"), topic.get("nodes"))
            else {
                panic!("{file}: a topic lacks name or nodes");
            };
            expected_categories.extend(std::iter::repeat_n(name.as_str(), nodes.len()));
        }
        let categories: Vec<&str> = document
            .nodes()
            .map(|node| node.category.as_deref().unwrap())
            .collect();
        assert_eq!(categories, expected_categories, "{file}");
    }
}

#[test]
fn large_ndjson_and_arrays_parse_in_one_pass() {
    // Release builds read 100k records in well under a second; this debug-build test
    // only guards against a per-record rescan of the whole text, which would take
    // minutes at this size.
    let lines: Vec<String> = (0..20_000)
        .map(|index| {
            format!(
                r#"{{"id":"n{index}","type":"template_node","value":"v","capabilities":["a","b"],"content":"{}"}}"#,
                "x".repeat(300)
            )
        })
        .collect();
    let ndjson = lines.join("\n");
    let array = format!("[{}]", lines.join(",\n"));
    for (text, format) in [(ndjson, Format::Ndjson), (array, Format::Array)] {
        let started = std::time::Instant::now();
        let document = parse_document(SOURCE, &text).unwrap();
        assert_eq!(document.format, format);
        assert_eq!(document.nodes().count(), 20_000);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{format} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_streamed_element_longer_than_the_bound_stops_the_document() {
    let mut input = br#"[{"id":"a","type":"t","value":""#.to_vec();
    input.resize(input.len() + MAX_ELEMENT_BYTES + 1, b'x');
    input.extend_from_slice(br#""}]"#);
    let items: Vec<StreamItem> = RecordStream::new(SOURCE, &input[..]).unwrap().collect();
    assert_eq!(items.len(), 1);
    let error = items[0].as_ref().unwrap_err().to_string();
    assert_eq!(
        error,
        "in.json: malformed JSON at line 1, column 2: record 1 is longer than 24 MiB"
    );
}
