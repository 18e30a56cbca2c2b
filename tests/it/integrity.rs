//! Store integrity (issue 10): a flipped bit inside a record, 4 KiB of garbage in one
//! store page and a 0-byte store file, each done to a real store file and met by the
//! real binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use miniserde::json::Value;

use crate::util::{Lattice, Node, Run, array, count, field, text};

/// A value no other bytes of the store contain, so the record is found in the file.
const NEEDLE: &str = "needle-for-the-integrity-test";

fn store_file(lattice: &Lattice) -> PathBuf {
    lattice.data_dir().join("lattice.redb")
}

/// Where `needle` is in the file; it must be there exactly once.
fn find_once(path: &Path, needle: &str) -> usize {
    let found = find_all(path, needle);
    assert_eq!(found.len(), 1, "{needle:?} is in the store {found:?}");
    found[0]
}

/// Every place `needle` is in the file.
fn find_all(path: &Path, needle: &str) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle.as_bytes())
        .map(|(at, _)| at)
        .collect()
}

/// Overwrites `bytes` at `at` in place, as damage on disk would (a server may have the
/// file open).
fn overwrite(path: &Path, at: usize, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(at as u64)).unwrap();
    file.write_all(bytes).unwrap();
}

/// Flips one bit of the byte after the start of [`NEEDLE`]: `e` -> `g`.
fn flip_needle_bit(path: &Path) {
    let at = find_once(path, NEEDLE) + 1;
    overwrite(path, at, &[b'e' ^ 0x02]);
}

/// A store with 200 records, one of which holds [`NEEDLE`].
fn lattice_with_needle(name: &str) -> Lattice {
    let lattice = Lattice::new(name);
    let mut ndjson = String::new();
    for i in 0..200 {
        let value = if i == 7 {
            NEEDLE.to_owned()
        } else {
            format!("value {i}")
        };
        ndjson.push_str(&format!(
            r#"{{"id":"record-{i}","type":"framework_node","value":"{value}","language":"rust"}}"#
        ));
        ndjson.push('\n');
    }
    let path = lattice.dir.file("records.ndjson", &ndjson);
    lattice.import(&path).ok();
    lattice
}

/// Runs `serve` on the state dir and waits (bounded) for it to exit on its own.
fn serve_expecting_exit(lattice: &Lattice) -> Run {
    let mut child = lattice
        .command(&["serve", "--port", "0", "--bind", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "serve kept running on a damaged store: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_clear_damage_error(run: &Run, path: &Path, what: &str) {
    assert_eq!(run.code, 6, "{what}: {}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&path.display().to_string()),
        "{what} does not name the file: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("stack backtrace"),
        "{what} ended in a panic: {}",
        run.stderr
    );
}

#[test]
fn a_flipped_bit_in_a_record_is_not_served_and_comes_back_from_a_peer() {
    let a = Node::serve(lattice_with_needle("integrity-flip-a"), &[], &[]);
    let b = Lattice::new("integrity-flip-b");
    b.run(&["federation", "add-peer", &a.url()]).ok();
    let status = b.run(&["federation", "status", "--json"]).ok().json();
    a.run(&["trust", "add", text(field(&status, "publicKey"))])
        .ok();
    b.run(&["federation", "sync"]).ok();
    let good = a.hashes();
    // `verify` on a store a server holds runs in the server.
    let report = a.run(&["verify", "--json"]).ok().json();
    assert!(matches!(field(&report, "ok"), Value::Bool(true)));
    assert_eq!(count(field(field(&report, "records"), "signed")), 200);
    assert_eq!(b.hashes(), good);

    // `e` -> `g`: the record still decodes, only its hash tells.
    flip_needle_bit(&store_file(&b));

    // Not served: left out of an export, with a report naming the record.
    let export = b.run(&["export", "--format", "ndjson"]);
    assert_eq!(export.code, 6, "{}", export.stderr);
    assert!(
        export.stderr.contains("left out 1 damaged"),
        "{}",
        export.stderr
    );
    assert!(!export.stdout.contains("record-7\""), "{}", export.stdout);
    assert!(!export.stdout.contains("needlg"), "{}", export.stdout);
    assert!(
        export.stderr.contains("\"record-7\"") && export.stderr.contains("hash"),
        "{}",
        export.stderr
    );
    assert_eq!(export.stdout.lines().count(), 199);
    // Counted, and moved aside so a read by id finds nothing.
    assert_eq!(count(field(&b.stats(), "damaged")), 1);
    assert_eq!(b.run(&["get", "record-7"]).code, 4);

    // The next sync reconciles past its checkpoint and brings the record back.
    let result = b.run(&["federation", "sync", "--json"]).ok().json();
    let result = &array(field(&result, "result"))[0];
    assert_eq!(count(field(result, "nodesReceived")), 1);
    assert_eq!(b.hashes(), good);
    let record = b.run(&["get", "record-7", "--json"]).ok().json();
    assert_eq!(text(field(&record, "value")), NEEDLE);
    // The store passes every check again; the damaged bytes are kept aside.
    let verify = b.run(&["verify", "--json"]).ok().json();
    assert!(matches!(field(&verify, "ok"), Value::Bool(true)));
    let records = field(&verify, "records");
    assert_eq!(count(field(records, "moved_aside_before")), 1);
    assert_eq!(count(field(records, "signed")), 200);
}

/// A store with [`NEEDLE`]'s record damaged by one flipped bit, `e` -> `g`.
fn lattice_with_flipped_bit(name: &str) -> Lattice {
    let lattice = lattice_with_needle(name);
    flip_needle_bit(&store_file(&lattice));
    lattice
}

#[test]
fn verify_names_a_flipped_record_and_moves_it_aside() {
    let lattice = lattice_with_flipped_bit("integrity-verify");
    let run = lattice.run(&["verify", "--json"]);
    assert_eq!(run.code, 6, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert!(matches!(field(&report, "ok"), Value::Bool(false)));
    assert_eq!(text(field(field(&report, "pages"), "status")), "damaged");
    let damaged = array(field(field(&report, "records"), "damaged"));
    assert_eq!(damaged.len(), 1, "{}", run.stdout);
    assert_eq!(text(field(&damaged[0], "table")), "nodes");
    assert_eq!(text(field(&damaged[0], "id")), "record-7");
    // Moving the record aside rewrote its page: the pages check clean again.
    assert_eq!(
        text(field(field(&report, "pages_after_moving_aside"), "status")),
        "clean"
    );
    let again = lattice.run(&["verify"]).ok();
    assert!(again.stdout.contains("damaged     0"), "{}", again.stdout);
}

#[test]
fn serve_moves_a_flipped_record_aside_before_it_starts() {
    // redb's page checksums see the flip: serve reads the records, moves the damaged one
    // aside (which rewrites its page) and starts on a store that checks clean.
    let node = Node::serve(lattice_with_flipped_bit("integrity-serve"), &[], &[]);
    let log = node.log();
    assert!(log.contains("failed redb's page check"), "{log}");
    assert!(log.contains("\"record-7\" in table nodes"), "{log}");
    assert!(log.contains("1 damaged record(s) moved aside"), "{log}");
    let stats = node.stats();
    assert_eq!(count(field(&stats, "nodes")), 199);
    assert_eq!(count(field(&stats, "damaged")), 1);
    let metrics = crate::util::http(node.address(), "GET", "/metrics", &[], None);
    assert!(
        metrics.body.contains("ark_lattice_store_damaged_records 1"),
        "{}",
        metrics.body
    );
}

/// Overwrites the 4 KiB page holding [`NEEDLE`] with garbage; returns where it starts.
fn garble_needle_page(path: &Path) -> usize {
    let page = find_once(path, NEEDLE) / 4096 * 4096;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    overwrite(path, page, &garbage);
    page
}

#[test]
fn four_kib_of_garbage_in_a_store_page_is_a_clear_error_not_an_abort() {
    let lattice = lattice_with_needle("integrity-garbage");
    let path = store_file(&lattice);
    garble_needle_page(&path);

    // Commands that read the damaged page end with one line naming the file. `stats`
    // reads only counts kept elsewhere in release builds, so it may also just answer;
    // it must not abort.
    let stats = lattice.run(&["stats"]);
    if stats.code != 0 {
        assert_clear_damage_error(&stats, &path, "stats");
    }
    assert_clear_damage_error(&lattice.run(&["list", "--limit", "0"]), &path, "list");
    assert_clear_damage_error(&lattice.run(&["export"]), &path, "export");
    let serve = serve_expecting_exit(&lattice);
    assert_clear_damage_error(&serve, &path, "serve");
    assert!(
        serve.stderr.contains("ark-lattice verify"),
        "{}",
        serve.stderr
    );
    assert!(!serve.stderr.contains("Federation server started"));
    let verify = lattice.run(&["verify", "--json"]);
    assert_clear_damage_error(&verify, &path, "verify");
}

#[test]
fn a_zero_byte_store_file_is_refused_with_advice_not_replaced() {
    let lattice = Lattice::new("integrity-empty");
    lattice.run(&["stats"]).ok();
    let path = store_file(&lattice);
    std::fs::write(&path, b"").unwrap();

    for run in [lattice.run(&["stats"]), serve_expecting_exit(&lattice)] {
        assert_clear_damage_error(&run, &path, "stats/serve");
        assert!(
            run.stderr.contains("empty file (0 bytes)"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("federation sync"), "{}", run.stderr);
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_record_damaged_under_a_running_server_is_not_served_counted_and_fetched_again() {
    let a = Node::serve(lattice_with_needle("integrity-live-a"), &[], &[]);
    let mut b = Node::start("integrity-live-b");
    b.add_peer(&a.url());
    a.trust(&b);
    b.sync();
    let good = a.hashes();
    assert_eq!(b.hashes(), good);
    // A new process, so no page of the record is in redb's cache; then the bit flips
    // on disk under it.
    b.restart();
    flip_needle_bit(&store_file(&b));

    let reply = crate::util::http(b.address(), "GET", "/api/lattice/nodes/record-7", &[], None);
    assert_ne!(reply.status, 200, "{}", reply.body);
    assert!(!reply.body.contains("needlg"), "{}", reply.body);
    assert!(reply.body.contains("damaged"), "{}", reply.body);
    // Moved aside after that request: forwarded commands no longer find it.
    assert_eq!(b.run(&["get", "record-7"]).code, 4);
    let metrics = crate::util::http(b.address(), "GET", "/metrics", &[], None).body;
    assert!(
        metrics.contains("ark_lattice_damaged_records_found_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ark_lattice_store_damaged_records 1"),
        "{metrics}"
    );
    assert!(
        b.log().contains("\"record-7\" in table nodes"),
        "{}",
        b.log()
    );

    let result = b.sync();
    let result = &array(field(&result, "result"))[0];
    assert_eq!(count(field(result, "nodesReceived")), 1);
    assert_eq!(b.hashes(), good);
}

/// A sample of `/metrics`.
fn metric(node: &Node, name: &str) -> f64 {
    let metrics = crate::util::http(node.address(), "GET", "/metrics", &[], None).body;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
}

#[test]
fn a_garbled_store_page_under_a_running_node_fails_only_what_reads_it() {
    // Issue 10: "4 KiB of garbage in one store page: `serve` starts, then aborts on the
    // first request". Here the page is garbled under a node that is serving (after a
    // restart, so redb has none of it cached), and redb panics on it.
    let mut a = Node::serve(lattice_with_needle("integrity-garbled-a"), &[], &[]);
    let b = Node::start("integrity-garbled-b");
    a.add_peer(&b.url());
    a.restart();
    b.add_peer(&a.url());
    let path = store_file(&a);
    let page = garble_needle_page(&path);
    // A record whose bytes lie outside the garbled page, to show reads elsewhere work.
    let elsewhere = (100..200)
        .find(|i| {
            let found = find_all(&path, &format!("value {i}"));
            !found.is_empty() && found.iter().all(|at| at / 4096 != page / 4096)
        })
        .expect("a record outside the garbled page");

    let reply = crate::util::http(a.address(), "GET", "/api/lattice/nodes/record-7", &[], None);
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(reply.body.contains("internal error"), "{}", reply.body);
    assert!(
        a.log().contains("GET /api/lattice/nodes/record-7 panicked"),
        "{}",
        a.log()
    );
    // A write that meets the page fails the same way.
    let update = format!(
        r#"{{"nodes":[{{"id":"record-7","type":"framework_node","value":"{NEEDLE} again"}}]}}"#
    );
    let reply = crate::util::http(
        a.address(),
        "POST",
        "/api/lattice/nodes",
        &[],
        Some(&update),
    );
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(metric(&a, "ark_lattice_http_panics_total") >= 2.0);

    // Everything else is still answered.
    for _ in 0..3 {
        let health = crate::util::http(a.address(), "GET", "/health", &[], None);
        assert_eq!(health.status, 200, "{}", health.body);
        let route = format!("/api/lattice/nodes/record-{elsewhere}");
        let other = crate::util::http(a.address(), "GET", &route, &[], None);
        assert_eq!(other.status, 200, "{}", other.body);
    }

    // A sync this node runs (its first with b reads every record) fails with a clear
    // error, counted; the next one is not wedged behind it ("already running").
    for _ in 0..2 {
        let run = a.run(&["federation", "sync", "--json"]);
        assert_ne!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let output = format!("{}{}", run.stdout, run.stderr);
        assert!(output.contains("ark-lattice verify"), "{output}");
        assert!(!output.contains("already running"), "{output}");
    }
    assert!(metric(&a, "ark_lattice_task_panics_total") >= 2.0);
    // A peer's sync with this node is answered an error, not a cut connection.
    let run = b.run(&["federation", "sync", "--json"]);
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(output.contains("500"), "{output}");
    assert!(a.is_running(), "{}", a.log());
    assert_eq!(
        crate::util::http(a.address(), "GET", "/health", &[], None).status,
        200
    );

    // `verify`, run while the node serves (in the node) and after it stopped, names
    // the file and exits non-zero; a new `serve` refuses the store with exit code 6,
    // which the systemd unit does not restart: no crash loop.
    let live = a.run(&["verify"]);
    assert_ne!(live.code, 0, "{}\n{}", live.stdout, live.stderr);
    let said = format!("{}{}", live.stdout, live.stderr);
    assert!(said.contains(&path.display().to_string()), "{said}");
    assert!(a.is_running(), "{}", a.log());
    a.kill();
    assert_clear_damage_error(&a.run(&["verify"]), &path, "verify");
    assert_clear_damage_error(&serve_expecting_exit(&a), &path, "serve");
}
