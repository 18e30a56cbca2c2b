//! The lattice store and local CLI (issue: "The lattice store and the local CLI").

use std::collections::{BTreeMap, BTreeSet};

use miniserde::json::Value;

use crate::util::{Lattice, TempDir, array, count, field, records_of, shared_data, text};

#[test]
fn importing_ark_sqlite_export_gives_its_469_nodes_and_type_counts() {
    let Some(path) = shared_data("ark-lattice-nodes.json") else {
        return;
    };
    let lattice = Lattice::new("sqlite-export");
    let run = lattice.import(&path).ok();
    assert_eq!(
        run.stdout.trim(),
        "imported 469, updated 0, unchanged 0, invalid 0"
    );
    let stats = lattice.stats();
    assert_eq!(count(field(&stats, "nodes")), 469);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (_, node_type, _) in records_of("ark-lattice-nodes.json").unwrap() {
        *expected.entry(node_type).or_default() += 1;
    }
    assert_eq!(expected.get("command_node"), Some(&109));
    assert_eq!(expected.get("library_node"), Some(&104));
    let by_type = field(&stats, "by_type");
    for (node_type, expected_count) in &expected {
        assert_eq!(
            count(field(by_type, node_type)),
            *expected_count,
            "{node_type}"
        );
    }
}

#[test]
fn topic_files_add_their_union_with_categories_from_topic_names() {
    let Some(nodes) = shared_data("ark-lattice-nodes.json") else {
        return;
    };
    let lattice = Lattice::new("topics");
    lattice.import(&nodes).ok();
    let mut expected_ids: BTreeSet<String> = records_of("ark-lattice-nodes.json")
        .unwrap()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let mut topic_of = BTreeMap::new();
    for name in [
        "code-lattice-complete-nodes.json",
        "security-pentesting-nodes.json",
    ] {
        let records = records_of(name).unwrap();
        assert!(records.len() == 300 || records.len() == 50);
        for (id, _, topic) in records {
            expected_ids.insert(id.clone());
            topic_of.insert(id, topic.unwrap());
        }
        lattice.import(&shared_data(name).unwrap()).ok();
    }
    let stats = lattice.stats();
    assert_eq!(count(field(&stats, "nodes")), expected_ids.len() as u64);
    let hashes = lattice.hashes();
    assert_eq!(
        hashes.keys().cloned().collect::<BTreeSet<_>>(),
        expected_ids
    );
    for id in ["c_hello_world", "nmap_basic_scan"] {
        let node = lattice.run(&["get", id, "--json"]).ok().json();
        assert_eq!(text(field(&node, "category")), topic_of[id], "{id}");
    }
}

#[test]
fn topic_files_alone_import_350_nodes() {
    let Some(complete) = shared_data("code-lattice-complete-nodes.json") else {
        return;
    };
    let security = shared_data("security-pentesting-nodes.json").unwrap();
    let lattice = Lattice::new("topics-alone");
    let run = lattice
        .run(&[
            "import",
            complete.to_str().unwrap(),
            security.to_str().unwrap(),
        ])
        .ok();
    assert_eq!(
        run.stdout.trim(),
        "imported 350, updated 0, unchanged 0, invalid 0"
    );
}

#[test]
fn export_then_import_into_a_fresh_store_keeps_every_hash() {
    let Some(nodes) = shared_data("ark-lattice-nodes.json") else {
        return;
    };
    let security = shared_data("security-pentesting-nodes.json").unwrap();
    let source = Lattice::new("export-source");
    source.import(&nodes).ok();
    source.import(&security).ok();
    source
        .run(&[
            "add",
            "--json",
            r#"{"id":"extra_fields","type":"t","value":"v","stars":5,"meta":{"a":[1,2.5,"x"]}}"#,
        ])
        .ok();
    let original = source.hashes();
    // ark-rows is ARK's table shape, which fills ARK's column defaults (usage_count 0,
    // success_rate 1.0); the three native formats are lossless.
    for format in ["json", "ndjson", "topics"] {
        let file = source.dir.path.join(format!("export.{format}"));
        source
            .run(&["export", "--format", format, "-o", file.to_str().unwrap()])
            .ok();
        let fresh = Lattice::new(&format!("export-{format}"));
        let run = fresh.import(&file).ok();
        assert!(
            run.stdout.contains(&format!("imported {}", original.len())),
            "{format}: {}",
            run.stdout
        );
        let imported = fresh.hashes();
        let differing: Vec<&String> = original
            .keys()
            .filter(|id| imported.get(*id) != original.get(*id))
            .collect();
        assert!(
            differing.is_empty() && imported.len() == original.len(),
            "format {format}: {differing:?}"
        );
    }
    // The native export types list fields as arrays, ARK's rows as JSON strings.
    let native = source.run(&["export"]).ok().json();
    let first = &array(&native)[0];
    assert!(matches!(field(first, "capabilities"), Value::Array(_)));
    let rows = source.run(&["export", "--format", "ark-rows"]).ok().json();
    assert!(matches!(
        field(&array(&rows)[0], "capabilities"),
        Value::String(_)
    ));
}

#[test]
fn reimport_is_a_no_op_and_an_edit_gets_a_newer_version() {
    let Some(nodes) = shared_data("ark-lattice-nodes.json") else {
        return;
    };
    let lattice = Lattice::new("reimport");
    lattice.import(&nodes).ok();
    let seq = count(field(&lattice.stats(), "last_seq"));
    let run = lattice.import(&nodes).ok();
    assert_eq!(
        run.stdout.trim(),
        "imported 0, updated 0, unchanged 469, invalid 0"
    );
    assert_eq!(count(field(&lattice.stats(), "last_seq")), seq);

    let before = lattice
        .run(&["get", "accelerate_launch", "--json"])
        .ok()
        .json();
    lattice
        .run(&[
            "add",
            "--id",
            "accelerate_launch",
            "--type",
            "command_node",
            "--value",
            "Edited",
        ])
        .ok();
    let after = lattice
        .run(&["get", "accelerate_launch", "--json"])
        .ok()
        .json();
    assert_eq!(text(field(&after, "value")), "Edited");
    assert!(count(field(&after, "seq")) > count(field(&before, "seq")));
    let clock = |node: &Value| -> (u64, u64) {
        let version = text(field(node, "version"));
        let (clock, _) = version.split_once('@').unwrap();
        let (millis, counter) = clock.split_once('.').unwrap();
        (millis.parse().unwrap(), counter.parse().unwrap())
    };
    assert!(clock(&after) > clock(&before));
}

#[test]
fn delete_leaves_a_tombstone_and_get_reports_not_found() {
    let lattice = Lattice::new("delete");
    lattice
        .run(&["add", "--id", "gone", "--type", "t", "--value", "v"])
        .ok();
    let run = lattice.run(&["delete", "gone"]).ok();
    assert!(run.stdout.contains("deleted gone"));
    let run = lattice.run(&["get", "gone"]);
    assert_eq!(run.code, 4);
    assert!(
        run.stderr.contains("not found") && run.stderr.contains("deleted at"),
        "{}",
        run.stderr
    );
    let stats = lattice.stats();
    assert_eq!(
        (
            count(field(&stats, "nodes")),
            count(field(&stats, "tombstones"))
        ),
        (0, 1)
    );
    // Repeating the delete is not an error (issue #16); tests/it/restarts.rs has more.
    assert_eq!(lattice.run(&["delete", "gone"]).code, 0);
}

/// One bad input: file contents, the text its error must contain, and how many of its
/// records are valid.
struct BadInput {
    name: &'static str,
    contents: &'static str,
    error: &'static str,
    valid: u64,
}

#[test]
fn invalid_inputs_are_reported_and_only_valid_records_change_the_store() {
    let cases = [
        BadInput {
            name: "truncated.json",
            contents: "[\n{\"id\":\"a\",\"type\":\"t\",\"value\":\"v\"},\n{\"id\":",
            // Read as a stream (issue #13): the record before the break is imported.
            error: "line 3",
            valid: 1,
        },
        BadInput {
            name: "garbage.json",
            contents: "{\"id\":\"a\",\"type\":\"t\",\"value\":\"v\"} trailing",
            error: "garbage.json",
            valid: 0,
        },
        BadInput {
            name: "number.json",
            contents: "42",
            error: "number",
            valid: 0,
        },
        BadInput {
            name: "empty.json",
            contents: "  \n",
            error: "empty",
            valid: 0,
        },
        BadInput {
            name: "missing-id.json",
            contents: r#"[{"type":"t","value":"v"},{"id":"ok1","type":"t","value":"v"}]"#,
            error: "`id`: is missing",
            valid: 1,
        },
        BadInput {
            name: "missing-type.json",
            contents: r#"[{"id":"x","value":"v"},{"id":"ok2","type":"t","value":"v"}]"#,
            error: "`type`: is missing",
            valid: 1,
        },
        BadInput {
            name: "missing-value.json",
            contents: r#"[{"id":"x","type":"t"}]"#,
            error: "`value`: is missing",
            valid: 0,
        },
        BadInput {
            name: "wrong-type.json",
            contents: r#"[{"id":"x","type":"t","value":"v","capabilities":5}]"#,
            error: "`capabilities`",
            valid: 0,
        },
        BadInput {
            name: "long-id.json",
            contents: concat!(
                r#"[{"id":""#,
                "iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii",
                r#"","type":"t","value":"v"}]"#
            ),
            error: "1 to 200",
            valid: 0,
        },
        BadInput {
            name: "bad-time.json",
            contents: r#"[{"id":"x","type":"t","value":"v","created_at":"last tuesday"}]"#,
            error: "`created_at`",
            valid: 0,
        },
        BadInput {
            name: "bad-line.ndjson",
            contents: "{\"id\":\"n1\",\"type\":\"t\",\"value\":\"v\"}\n{\"id\":\n{\"id\":\"n2\",\"type\":\"t\",\"value\":\"v\"}\n",
            error: "line 2",
            valid: 2,
        },
        BadInput {
            name: "topics-no-nodes.json",
            contents: r#"{"meta":{},"topics":[{"name":"x","nodes":7}]}"#,
            error: "nodes",
            valid: 0,
        },
        BadInput {
            // List text that is no JSON array of strings is kept as text (ARK's rows
            // hold such text); a list given as an array must hold strings.
            name: "list-items.json",
            contents: r#"[{"id":"x","type":"t","value":"v","examples":[1,2]}]"#,
            error: "`examples`",
            valid: 0,
        },
    ];
    let lattice = Lattice::new("invalid");
    lattice
        .run(&["add", "--id", "keep", "--type", "t", "--value", "v"])
        .ok();
    let keep_hash = lattice.hashes()["keep"].clone();
    let mut expected_nodes = 1;
    for case in &cases {
        let path = lattice.dir.file(case.name, case.contents);
        let run = lattice.import(&path);
        assert_ne!(run.code, 0, "{}: should fail", case.name);
        assert!(
            run.stderr.contains(case.error),
            "{}: stderr was {}",
            case.name,
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        expected_nodes += case.valid;
        assert_eq!(
            count(field(&lattice.stats(), "nodes")),
            expected_nodes,
            "{}",
            case.name
        );
    }
    let invalid_utf8 = lattice.dir.path.join("latin1.json");
    std::fs::write(
        &invalid_utf8,
        b"[{\"id\":\"caf\xe9\",\"type\":\"t\",\"value\":\"v\"}]",
    )
    .unwrap();
    let run = lattice.import(&invalid_utf8);
    assert!(
        run.code != 0 && run.stderr.contains("UTF-8"),
        "{}",
        run.stderr
    );
    assert_eq!(lattice.hashes()["keep"], keep_hash);
}

#[test]
fn a_record_error_names_file_position_and_id() {
    let lattice = Lattice::new("record-error");
    let path = lattice.dir.file(
        "mixed.json",
        r#"[{"id":"a","type":"t","value":"v"},{"id":"b","type":"t"}]"#,
    );
    let run = lattice.import(&path);
    assert_eq!(run.code, 5, "exit code 5 means some records were invalid");
    assert!(
        run.stderr.contains("mixed.json") && run.stderr.contains("\"b\""),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("imported 1") && run.stdout.contains("invalid 1"),
        "{}",
        run.stdout
    );
}

#[test]
fn stdin_import_and_queries() {
    let lattice = Lattice::new("stdin");
    let ndjson = concat!(
        "{\"id\":\"py_hello\",\"type\":\"template_node\",\"value\":\"Hello in Python\",\"language\":\"python\",\"capabilities\":[\"print\"]}\n",
        "{\"id\":\"sh_ls\",\"type\":\"command_node\",\"value\":\"List files\",\"language\":\"bash\",\"category\":\"Shell\"}\n",
    );
    lattice
        .run_with_stdin(&["import", "-"], ndjson.as_bytes())
        .ok();
    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["query", "--json"];
        full.extend_from_slice(args);
        let result = lattice.run(&full).ok().json();
        array(field(&result, "nodes"))
            .iter()
            .map(|node| text(field(node, "id")).to_owned())
            .collect()
    };
    assert_eq!(ids(&["--language", "python"]), ["py_hello"]);
    assert_eq!(ids(&["--search", "LIST"]), ["sh_ls"]);
    assert_eq!(ids(&["--capability", "print"]), ["py_hello"]);
    assert_eq!(
        ids(&["--category", "Shell", "--type", "command_node"]),
        ["sh_ls"]
    );
    assert!(ids(&["--type", "nothing"]).is_empty());
    let list = lattice.run(&["list", "--type", "command_node"]).ok();
    assert!(list.stdout.contains("sh_ls") && list.stdout.contains("1 node(s)"));
}

#[test]
fn add_validates_its_flags() {
    let lattice = Lattice::new("add");
    let run = lattice.run(&["add", "--id", "x"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--type") && run.stderr.contains("--value"),
        "{}",
        run.stderr
    );
    let run = lattice.run(&["add", "--json", "{not json"]);
    assert_eq!(run.code, 2);
    let run = lattice.run(&["add", "--id", "bad\tid", "--type", "t", "--value", "v"]);
    assert!(
        run.code == 2 && run.stderr.contains("control"),
        "{}",
        run.stderr
    );
    let run = lattice
        .run(&[
            "add",
            "--id",
            "x",
            "--type",
            "t",
            "--value",
            "v",
            "--capabilities",
            "a",
            "--capabilities",
            "b",
        ])
        .ok();
    assert_eq!(run.stdout.trim(), "added x");
    let node = lattice
        .run(&["get", "x", "--json", "--provenance"])
        .ok()
        .json();
    assert_eq!(array(field(&node, "capabilities")).len(), 2);
    assert!(text(field(field(&node, "provenance"), "origin")).len() == 64);
    assert_eq!(
        lattice
            .run(&[
                "add",
                "--id",
                "x",
                "--type",
                "t",
                "--value",
                "v",
                "--capabilities",
                "a",
                "--capabilities",
                "b"
            ])
            .ok()
            .stdout
            .trim(),
        "unchanged x"
    );
}

#[test]
fn a_busy_or_unusable_state_dir_gets_a_clear_error() {
    let lattice = Lattice::new("busy");
    lattice
        .run(&["add", "--id", "x", "--type", "t", "--value", "v"])
        .ok();
    {
        let store_path = lattice.data_dir().join("lattice.redb");
        let _held = redb_holder(&store_path);
        let run = lattice.run(&["stats"]);
        assert_eq!(run.code, 3, "{}", run.stderr);
        assert!(run.stderr.contains("in use"), "{}", run.stderr);
    }
    let not_a_dir = TempDir::new("not-a-dir");
    let file = not_a_dir.file("file", "x");
    let run = std::process::Command::new(crate::util::binary())
        .args(["--data-dir", file.to_str().unwrap(), "stats"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
}

/// Holds the store open in this process, as a running server would.
fn redb_holder(path: &std::path::Path) -> ark_lattice::store::Store {
    ark_lattice::store::Store::open(
        path,
        &Default::default(),
        ark_lattice::model::InstanceId([0; 32]),
    )
    .unwrap()
}

#[test]
fn kill_during_import_loses_at_most_the_open_batch() {
    let lattice = Lattice::new("kill");
    let mut ndjson = String::new();
    let total = 30_000;
    for i in 0..total {
        ndjson.push_str(&format!(
            "{{\"id\":\"n{i:06}\",\"type\":\"t\",\"value\":\"value {i}\",\"content\":\"{}\"}}\n",
            "x".repeat(200)
        ));
    }
    let path = lattice.dir.file("big.ndjson", &ndjson);
    let mut child = lattice
        .command(&["import", path.to_str().unwrap()])
        .spawn()
        .unwrap();
    // Let it commit some batches, then kill it without warning.
    let data = lattice.data_dir().join("lattice.redb");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::metadata(&data).map(|meta| meta.len()).unwrap_or(0) < 1_000_000
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let nodes = count(field(&lattice.stats(), "nodes"));
    assert!(nodes <= total, "{nodes}");
    assert!(
        nodes % 2000 == 0 || nodes == total,
        "committed batches are whole: {nodes}"
    );
    // The store is usable and the import completes on a second run.
    let run = lattice.import(&path).ok();
    assert!(
        run.stdout.contains(&format!("unchanged {nodes}")),
        "{}",
        run.stdout
    );
    assert_eq!(count(field(&lattice.stats(), "nodes")), total);
}

/// `add` through a running server goes to `PUT /api/lattice/nodes/{id}` (issue 15):
/// the CLI prints what it prints on the store itself, and every malformed, mismatched,
/// deep or oversized body is refused with a message naming what was wrong, the store
/// unchanged.
#[test]
fn add_through_the_server_prints_the_same_and_bad_bodies_change_nothing() {
    use crate::util::{Node, http};
    let node = Node::start("put-node");
    let added = node.run(&["add", "--id", "a/b c", "--type", "t", "--value", "v"]);
    assert_eq!(added.ok().stdout, "added a/b c\n");
    let again = node.run(&["add", "--id", "a/b c", "--type", "t", "--value", "v"]);
    assert_eq!(again.ok().stdout, "unchanged a/b c\n");
    let missing = node.run(&["add", "--id", "x", "--type", "t"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge_value = format!(
        r#"{{"id":"big","type":"t","value":"{}"}}"#,
        "v".repeat(3 * 1024 * 1024)
    );
    for (path, body, names) in [
        (
            "/api/lattice/nodes/x",
            r#"{"id":"y","type":"t","value":"v"}"#,
            "`id`",
        ),
        ("/api/lattice/nodes/x", "{not json", "request body"),
        ("/api/lattice/nodes/x", r#"[1,2]"#, "request body"),
        ("/api/lattice/nodes/x", r#"{"id":"x","type":"t"}"#, "value"),
        ("/api/lattice/nodes/x", deep.as_str(), "request body"),
        ("/api/lattice/nodes/big", huge_value.as_str(), "value"),
    ] {
        let reply = http(
            node.address(),
            "PUT",
            path,
            &[("Content-Type", "application/json")],
            Some(body),
        );
        assert!(
            reply.status == 400 || reply.status == 413,
            "{path} {}: {} {}",
            &body[..body.len().min(40)],
            reply.status,
            reply.body
        );
        if reply.status == 400 {
            assert!(reply.body.contains(names), "{names}: {}", reply.body);
        }
    }
    let listed = node.run(&["list", "--json"]).ok().json();
    assert_eq!(count(field(&listed, "count")), 1, "only the one added node");
}

/// `gc` through a running server goes to `POST /api/lattice/gc` (issue 15): it prints
/// what it prints on the store itself, and a body without a whole number of days, or
/// one that is not JSON at all, is refused naming what was wrong, purging nothing.
#[test]
fn gc_through_the_server_prints_the_same_and_bad_bodies_purge_nothing() {
    use crate::util::{Node, http};
    let node = Node::start("gc-route");
    node.run(&["add", "--id", "a", "--type", "t", "--value", "v"])
        .ok();
    node.run(&["delete", "a"]).ok();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for (body, names) in [
        ("{}", "older_than_days"),
        (r#"{"older_than_days":-1}"#, "older_than_days"),
        (r#"{"older_than_days":"zero"}"#, "older_than_days"),
        (r#"{"older_than_days":1.5}"#, "older_than_days"),
        (r#"{"older_than_days":1e400}"#, "request body"),
        ("{not json", "request body"),
        ("[0]", "request body"),
        (deep.as_str(), "request body"),
    ] {
        let reply = http(
            node.address(),
            "POST",
            "/api/lattice/gc",
            &[("Content-Type", "application/json")],
            Some(body),
        );
        assert_eq!(
            reply.status,
            400,
            "{}: {}",
            &body[..body.len().min(40)],
            reply.body
        );
        assert!(reply.body.contains(names), "{names}: {}", reply.body);
    }
    let stats = node.run(&["stats", "--json"]).ok().json();
    assert_eq!(count(field(&stats, "tombstones")), 1, "nothing purged");
    let missing = node.run(&["gc"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert_eq!(
        missing.stderr,
        "error: gc needs --tombstones-older-than DAYS (tombstones are kept by default)\n"
    );
    let kept = node.run(&["gc", "--tombstones-older-than", "1"]).ok();
    assert_eq!(
        kept.stdout,
        "purged 0 tombstone(s) of deletes older than 1 day(s)\n"
    );
    let purged = node
        .run(&["gc", "--tombstones-older-than", "0", "--json"])
        .ok();
    assert_eq!(
        purged.stdout,
        "{\"older_than_days\":0,\"purged_tombstones\":1}\n"
    );
}

/// `get` through a running server reads `GET /api/lattice/records/{id}` (issue 15): a
/// tombstone answers which delete it is, an id never stored or one no node can have is
/// not found, and the CLI prints what it prints on the store itself.
#[test]
fn get_through_the_server_tells_a_tombstone_from_a_record_never_stored() {
    use crate::util::{Node, http};
    let node = Node::start("get-record");
    node.run(&["add", "--id", "a/b c", "--type", "t", "--value", "v"])
        .ok();
    node.run(&["add", "--id", "gone", "--type", "t", "--value", "v"])
        .ok();
    node.run(&["delete", "gone"]).ok();
    let long = format!("/api/lattice/records/{}", "x".repeat(100_000));
    for (path, status, names) in [
        ("/api/lattice/records/a%2Fb%20c", 200, "\"provenance\""),
        ("/api/lattice/records/gone", 200, "\"deleted_at\""),
        ("/api/lattice/records/never", 404, "never"),
        ("/api/lattice/records/%FF%FE", 404, "not found"),
        ("/api/lattice/records/", 404, ""),
        (long.as_str(), 404, ""),
    ] {
        let reply = http(node.address(), "GET", path, &[], None);
        assert!(
            reply.status == status || (path.len() > 1000 && reply.status == 431),
            "{}: {} {}",
            &path[..path.len().min(60)],
            reply.status,
            reply.body
        );
        assert!(reply.body.contains(names), "{names}: {}", reply.body);
    }
    let live = node.run(&["get", "a/b c"]).ok();
    assert!(
        live.stdout.starts_with("id            a/b c\n"),
        "{}",
        live.stdout
    );
    let gone = node.run(&["get", "gone", "--json"]);
    assert_eq!(gone.code, 4, "{}", gone.stderr);
    assert!(gone.stdout.contains("\"deleted_at\""), "{}", gone.stdout);
    assert!(
        gone.stderr.starts_with("error: node \"gone\" (deleted at "),
        "{}",
        gone.stderr
    );
    let empty = node.run(&["get", ""]);
    assert_eq!(
        (empty.code, empty.stderr.as_str()),
        (4, "error: node \"\" not found\n")
    );
}
