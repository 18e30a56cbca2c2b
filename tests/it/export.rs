//! `export` and `verify` with a server holding the store: the CLI asks its
//! `GET /api/lattice/export` (a page at a time) and `GET /api/lattice/verify`, and
//! prints what it prints without a server, byte for byte. The routes refuse malformed
//! parameters by name, and an export of 100,000 records keeps the server's memory
//! bounded.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::attacks::memory_and_threads;
use crate::util::{Lattice, Node, Run, TempDir, array, count, field, http, text};

/// NDJSON of `count` records of three types, with ids that need escaping in a URL.
fn records(count: usize) -> String {
    let mut text = String::new();
    for index in 0..count {
        let id = match index % 5 {
            0 => format!("rec {index:06}+plus"),
            1 => format!("rec-{index:06}/ü"),
            _ => format!("rec-{index:06}"),
        };
        let category = if index % 4 == 0 {
            String::new()
        } else {
            format!(r#","category":"cat{}""#, index % 2)
        };
        text.push_str(&format!(
            r#"{{"id":"{id}","type":"t{}","value":"value {index} {}","language":"python","content":"print({index})"{category}}}"#,
            index % 3,
            "x".repeat(200)
        ));
        text.push('\n');
    }
    text
}

fn lattice_with(name: &str, record_count: usize) -> Lattice {
    let lattice = Lattice::new(name);
    let input = TempDir::new(&format!("{name}-input"));
    let path = input.file("records.ndjson", &records(record_count));
    let run = lattice.import(&path).ok();
    assert!(
        run.stdout
            .starts_with(&format!("imported {record_count}, ")),
        "{}",
        run.stdout
    );
    lattice
}

/// The topics document says when it was made; nothing else differs between two runs.
fn without_export_time(stdout: &str) -> String {
    let mut value: miniserde::json::Value = miniserde::json::from_str(stdout.trim()).unwrap();
    if let miniserde::json::Value::Object(document) = &mut value
        && let Some(miniserde::json::Value::Object(meta)) = document.get_mut("meta")
    {
        meta.remove("exported_at");
    }
    miniserde::json::to_string(&value)
}

#[test]
fn export_and_verify_through_the_server_print_what_they_print_without_one() {
    // 2,500 records: three pages of the CLI's 1,000.
    let lattice = lattice_with("export-same", 2500);
    let output_dir = TempDir::new("export-same-output");
    let file = output_dir.path.join("out.json");
    let file_arg = file.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["export"],
        vec!["export", "--format", "ndjson"],
        vec!["export", "--format", "ark-rows"],
        vec!["export", "--format", "topics"],
        vec![
            "export", "--format", "ndjson", "--type", "t2", "--type", "t0",
        ],
        vec!["export", "--type", "no_such_type"],
        vec!["export", "--format", "yaml"],
        vec!["export", "--format", "ndjson", "-o", file_arg],
        vec!["verify"],
        vec!["verify", "--json"],
    ];
    let run_all = |lattice: &Lattice| -> Vec<(Run, Option<String>)> {
        commands
            .iter()
            .map(|args| {
                let _ = std::fs::remove_file(&file);
                let run = lattice.run(args);
                (run, std::fs::read_to_string(&file).ok())
            })
            .collect()
    };
    let here = run_all(&lattice);
    assert_eq!(here[1].0.stdout.lines().count(), 2500);
    assert_eq!(here[4].0.stdout.lines().count(), 1667);
    assert_eq!(here[5].0.stdout, "[]\n");
    assert_eq!(here[6].0.code, 2, "{}", here[6].0.stderr);
    assert_eq!(here[7].1.as_deref(), Some(here[1].0.stdout.as_str()));

    let node = Node::serve(lattice, &[], &[]);
    let served = run_all(&node.lattice);
    for ((args, (here, here_file)), (served, served_file)) in
        commands.iter().zip(&here).zip(&served)
    {
        let what = args.join(" ");
        assert_eq!(served.code, here.code, "{what}: {}", served.stderr);
        if args.contains(&"topics") {
            assert_eq!(
                without_export_time(&served.stdout),
                without_export_time(&here.stdout),
                "{what}"
            );
        } else {
            assert!(served.stdout == here.stdout, "{what}: the output differs");
        }
        assert_eq!(served.stderr, here.stderr, "{what}");
        assert_eq!(served_file, here_file, "{what}");
    }
    // The server's own check: every record read and signed here.
    let report = served[9].0.json();
    assert_eq!(count(field(field(&report, "records"), "signed")), 2500);
    let skipped = node
        .run(&["verify", "--skip-page-check", "--json"])
        .ok()
        .json();
    assert_eq!(text(field(field(&skipped, "pages"), "status")), "skipped");
    assert!(node.is_running(), "{}", node.log());
}

#[test]
fn export_pages_follow_ids_and_malformed_parameters_are_refused_by_name() {
    let node = Node::serve(lattice_with("export-pages", 12), &[], &[]);
    let get = |path: &str| http(node.address(), "GET", path, &[], None);

    // Pages of 5: 5, 5, 2, each starting after the last id of the one before.
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/api/lattice/export?limit=5".to_owned();
        if let Some(after) = &after {
            path.push_str(&format!("&after={}", percent_encode(after)));
        }
        let reply = get(&path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let page = reply.json();
        let nodes = array(field(&page, "nodes"));
        assert!(nodes.len() <= 5);
        ids.extend(nodes.iter().map(|node| text(field(node, "id")).to_owned()));
        assert_eq!(count(field(&page, "left_out")), 0);
        pages += 1;
        match field(&page, "next") {
            miniserde::json::Value::String(next) => after = Some(next.clone()),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "every id once, in order");
    assert_eq!(ids.len(), 12);
    let typed = get("/api/lattice/export?type=t1").json();
    assert_eq!(array(field(&typed, "nodes")).len(), 4);
    let listed = get("/api/lattice/nodes?type=t1&limit=0");
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        listed.body.matches("\"id\"").count() >= 4,
        "{}",
        listed.body
    );
    assert_eq!(get("/api/v2/federation/conflicts?limit=0").status, 200);

    let long_number = format!("/api/lattice/export?limit={}", "9".repeat(10_000));
    for (path, named) in [
        ("/api/lattice/export?limit=abc", r#""limit" "abc""#),
        ("/api/lattice/export?limit=0", r#""limit" "0""#),
        ("/api/lattice/export?limit=-1", r#""limit" "-1""#),
        ("/api/lattice/export?limit=10001", r#""limit" "10001""#),
        ("/api/lattice/export?limit=", r#""limit" """#),
        (long_number.as_str(), r#""limit" "999"#),
        ("/api/lattice/export?type=", r#""type" is empty"#),
        (
            "/api/lattice/export?format=ndjson",
            r#"unknown query parameter "format""#,
        ),
        (
            "/api/lattice/export?after=a&after=b",
            r#""after" is given more than once"#,
        ),
        ("/api/lattice/export?%FF=1", "unknown query parameter"),
        (
            "/api/lattice/verify?skip_page_check=yes",
            r#""skip_page_check" "yes""#,
        ),
        (
            "/api/lattice/verify?limit=5",
            r#"unknown query parameter "limit""#,
        ),
        // The listings took a malformed limit as the default, and ignored an unknown
        // parameter, before they read their parameters as export does.
        ("/api/lattice/nodes?limit=abc", r#""limit" "abc""#),
        ("/api/lattice/nodes?limit=-1", r#""limit" "-1""#),
        (
            "/api/lattice/nodes?typ=t1",
            r#"unknown query parameter "typ""#,
        ),
        (
            "/api/lattice/nodes?type=t1&type=t2",
            r#""type" is given more than once"#,
        ),
        (
            "/api/v2/federation/conflicts?limit=many",
            r#""limit" "many""#,
        ),
        (
            "/api/v2/federation/conflicts?since=0",
            r#"unknown query parameter "since""#,
        ),
    ] {
        let reply = get(path);
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        let message = text(field(&reply.json(), "error")).to_owned();
        assert!(
            message.contains(named),
            "{}: {message}",
            &path[..path.len().min(80)]
        );
    }
    // The control API's guard holds for the new routes too: a page of another origin
    // is refused before any handler runs.
    for path in ["/api/lattice/export", "/api/lattice/verify"] {
        for header in [
            ("Origin", "http://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ] {
            let reply = http(node.address(), "GET", path, &[header], None);
            assert_eq!(reply.status, 403, "{path} {header:?}: {}", reply.body);
        }
    }
    assert!(node.is_running(), "{}", node.log());
}

/// The server stops answering between two pages (here: `server.json` points the CLI at
/// a stand-in that answers the first page and then refuses connections). The export
/// ends with an error saying it is incomplete after the first page's node, written
/// once; it is not started again, which would write the first page a second time.
#[test]
fn an_export_cut_between_pages_says_it_is_incomplete_and_writes_nothing_twice() {
    let node = Node::serve(lattice_with("export-cut", 3), &[], &[]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stand_in_port = listener.local_addr().unwrap().port();
    let stand_in = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let body =
            r#"{"nodes":[{"id":"first","type":"t","value":"v"}],"next":"first","left_out":0}"#;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // The listener closes here: the next page's connection is refused.
        String::from_utf8_lossy(&head).into_owned()
    });
    let server_file = node.server_file();
    let info = std::fs::read_to_string(&server_file).unwrap();
    let redirected = info.replace(
        &format!("\"port\":{}", node.port),
        &format!("\"port\":{stand_in_port}"),
    );
    assert_ne!(redirected, info, "server.json names the port: {info}");
    std::fs::write(&server_file, redirected).unwrap();

    let run = node.run_with_env(
        &["export", "--format", "ndjson"],
        &[("ARK_STORE_WAIT", "3")],
    );
    let head = stand_in.join().unwrap();
    assert!(
        head.starts_with("GET /api/lattice/export?limit=1000 "),
        "{head}"
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("the export is incomplete: 1 node(s) were written, then cannot reach"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(
        run.stdout.starts_with(r#"{"capabilities""#),
        "{}",
        run.stdout
    );
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// How many records the big export test exports; ARK_IT_EXPORT_RECORDS to change it
/// (100,000 by default: about 30 s of import in a debug build).
fn big_export_count() -> usize {
    std::env::var("ARK_IT_EXPORT_RECORDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000)
}

#[test]
fn a_100k_export_through_the_server_keeps_its_memory_bounded() {
    let total = big_export_count();
    let lattice = Lattice::new("export-big");
    let input = TempDir::new("export-big-input");
    let path = input.path.join("records.ndjson");
    std::fs::File::create(&path)
        .and_then(|mut file| file.write_all(records(total).as_bytes()))
        .unwrap();
    lattice.import(&path).ok();
    drop(input);
    let node = Node::serve(lattice, &[], &[]);
    let (peak_before, _, _) = memory_and_threads(node.pid());

    // The server answers other requests between the pages of the export.
    let address = node.address();
    let probe = std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            let asked = Instant::now();
            assert_eq!(http(address, "GET", "/health", &[], None).status, 200);
            slowest = slowest.max(asked.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        slowest
    });
    let started = Instant::now();
    let export = node.run(&["export", "--format", "ndjson"]).ok();
    let took = started.elapsed();
    let slowest_health = probe.join().unwrap();
    let (peak_after, rss_after, _) = memory_and_threads(node.pid());

    assert_eq!(export.stdout.lines().count(), total);
    let export_kib = export.stdout.len() as u64 / 1024;
    let growth = peak_after.saturating_sub(peak_before);
    println!(
        "export of {total} records ({} MiB) through the server in {:.1} s: server peak RSS {} -> {} MiB (now {} MiB), slowest /health meanwhile {} ms",
        export_kib / 1024,
        took.as_secs_f64(),
        peak_before / 1024,
        peak_after / 1024,
        rss_after / 1024,
        slowest_health.as_millis()
    );
    // A page is about 1 MiB of nodes; the whole export never sits in the server. Wide
    // margins: allocator slack and redb's cache grow with what was read.
    assert!(
        growth < 32 * 1024 && growth < export_kib / 2 + 8 * 1024,
        "the server's peak grew {growth} KiB for an export of {export_kib} KiB"
    );
    assert!(
        slowest_health < Duration::from_secs(5),
        "/health waited {slowest_health:?} during the export"
    );
}
