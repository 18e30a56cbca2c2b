//! Restarts a script can rely on (issue #16): `serve` and CLI commands wait (bounded)
//! for a store another process holds, a CLI call whose answer was lost says whether it
//! may have been applied, repeating a mutation is safe, and `conflicts --limit 0`
//! means all.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Lattice, Node, Run, array, bool_of, count, field, text};

/// A CLI command that holds the store until [`Holder::release`]: `import -` opens the
/// store, then reads standard input to its end.
struct Holder(Child);

impl Holder {
    fn start(lattice: &Lattice) -> Holder {
        let child = lattice
            .command(&["import", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn import");
        let holder = Holder(child);
        // The store is held once a command that may not wait is refused.
        let mut last = String::new();
        let held = crate::util::eventually(Duration::from_secs(20), || {
            let output = lattice
                .command(&["stats", "--json"])
                .env("ARK_STORE_WAIT", "0")
                .output()
                .unwrap();
            last = format!(
                "{:?}: {}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            );
            output.status.code() == Some(3)
        });
        assert!(held, "the import never held the store; stats said {last}");
        holder
    }

    /// Feeds one record and ends the input; the import commits and exits.
    fn release(mut self, id: &str) -> Run {
        let mut stdin = self.0.stdin.take().unwrap();
        writeln!(
            stdin,
            r#"{{"id":"{id}","type":"template_node","value":"held"}}"#
        )
        .unwrap();
        drop(stdin);
        Run::from(self.0.wait_with_output().unwrap())
    }
}

#[test]
fn serve_waits_for_a_store_a_cli_command_holds() {
    let lattice = Lattice::new("serve-waits");
    lattice
        .run(&["add", "--id", "before", "--type", "t", "--value", "v"])
        .ok();
    let holder = Holder::start(&lattice);
    // The import ends a second after serve started waiting.
    let releasing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        holder.release("from_the_held_import")
    });
    let started = Instant::now();
    let node = Node::serve(lattice, &[], &[]);
    let waited = started.elapsed();
    let import = releasing.join().unwrap();
    assert_eq!(import.code, 0, "{}", import.stderr);
    assert!(
        node.log()
            .contains("is held by another ark-lattice process; waiting up to 30 s"),
        "{}",
        node.log()
    );
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    let hashes = node.hashes();
    assert!(hashes.contains_key("before") && hashes.contains_key("from_the_held_import"));
}

#[test]
fn serve_gives_up_after_the_wait_and_refuses_a_store_another_server_holds() {
    let lattice = Lattice::new("serve-gives-up");
    let holder = Holder::start(&lattice);
    let started = Instant::now();
    let run = lattice.run_with_env(
        &["serve", "--port", "0", "--bind", "127.0.0.1"],
        &[("ARK_STORE_WAIT", "1")],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(run.stderr.contains("waiting up to 1 s"), "{}", run.stderr);
    assert!(run.stderr.contains("is in use"), "{}", run.stderr);
    holder.release("x").ok();

    // A second server on a served store does not wait: that is a mistake, not a restart.
    let node = Node::serve(lattice, &[], &[]);
    let started = Instant::now();
    let run = node.run(&["serve", "--port", "0", "--bind", "127.0.0.1"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("already serves this store on port {}", node.port)),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn cli_commands_wait_for_a_held_store_and_for_a_starting_server() {
    let lattice = Lattice::new("cli-waits");
    let holder = Holder::start(&lattice);
    let waiting_add = lattice
        .command(&["add", "--id", "waited", "--type", "t", "--value", "v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let gives_up = lattice.run_with_env(&["stats"], &[("ARK_STORE_WAIT", "1")]);
    assert_eq!(gives_up.code, 3, "{}", gives_up.stderr);
    assert!(gives_up.stderr.contains("waiting up to 1 s"));
    // A server starts while the store is still held: whichever of it and the waiting
    // `add` gets the store first, the other waits for it, and the `add` then runs
    // either here or on the server once that listens.
    let releasing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        holder.release("released")
    });
    let node = Node::serve(lattice, &[], &[]);
    assert_eq!(releasing.join().unwrap().code, 0);
    let add = Run::from(waiting_add.wait_with_output().unwrap());
    assert_eq!(add.code, 0, "{}", add.stderr);
    assert!(add.stderr.contains("waiting up to"), "{}", add.stderr);
    let hashes = node.hashes();
    assert!(hashes.contains_key("waited") && hashes.contains_key("released"));
}

#[test]
fn deleting_a_deleted_record_succeeds_and_says_so() {
    fn check(lattice: &Lattice) {
        lattice
            .run(&["add", "--id", "gone", "--type", "t", "--value", "v"])
            .ok();
        let first = lattice.run(&["delete", "gone", "--json"]).ok().json();
        assert_eq!(text(field(&first, "deleted")), "gone");
        assert!(!bool_of(field(&first, "already_deleted")));
        let again = lattice.run(&["delete", "gone", "--json"]).ok().json();
        assert!(bool_of(field(&again, "already_deleted")));
        let again = lattice.run(&["delete", "gone"]).ok();
        assert!(
            again.stdout.contains("gone was already deleted"),
            "{}",
            again.stdout
        );
        // Repeating the delete wrote nothing: one tombstone, one change.
        let stats = lattice.stats();
        assert_eq!(count(field(&stats, "tombstones")), 1);
        assert_eq!(count(field(&stats, "last_seq")), 2);
        // `get --json` shows which delete it is, still as "not found".
        let get = lattice.run(&["get", "gone", "--json"]);
        assert_eq!(get.code, 4);
        let tombstone = get.json();
        assert!(text(field(&tombstone, "version")).contains('@'));
        assert!(get.stderr.contains("deleted at"), "{}", get.stderr);
        // An id never written is still not found.
        let missing = lattice.run(&["delete", "never_there"]);
        assert_eq!(missing.code, 4, "{}", missing.stderr);
        // A repeated add of the same content changes nothing either.
        for _ in 0..2 {
            lattice
                .run(&["add", "--id", "again", "--type", "t", "--value", "same"])
                .ok();
        }
        assert_eq!(count(field(&lattice.stats(), "last_seq")), 3);
    }
    check(&Lattice::new("delete-twice-local"));
    let node = Node::start("delete-twice-served");
    check(&node);
    let answer = crate::util::http(
        node.address(),
        "DELETE",
        "/api/lattice/nodes/gone",
        &[],
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(bool_of(field(&answer.json(), "already_deleted")));
}

/// The CLI finds the server through `server.json`; pointing it at a listener that
/// reads the request and closes cuts the call after it was sent, and at a closed port
/// before anything was sent.
#[test]
fn a_cut_cli_call_says_whether_it_may_have_been_applied() {
    let node = Node::start("cut-call");
    let server_file = node.server_file();
    let real = std::fs::read_to_string(&server_file).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let cut_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buffer);
            drop(stream);
        }
    });
    let pointing_at = |port: u16| {
        std::fs::write(
            &server_file,
            real.replace(
                &format!("\"port\":{}", node.port),
                &format!("\"port\":{port}"),
            ),
        )
        .unwrap();
    };

    pointing_at(cut_port);
    let run = node.run_with_env(&["delete", "x", "--json"], &[("ARK_STORE_WAIT", "1")]);
    assert_eq!(run.code, 7, "{}", run.stderr);
    let answer = run.json();
    assert!(bool_of(field(&answer, "may_have_applied")));
    assert!(text(field(&answer, "error")).contains("lost the answer"));
    assert!(
        run.stderr.contains("it may have been applied"),
        "{}",
        run.stderr
    );

    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    pointing_at(closed_port);
    let started = Instant::now();
    let run = node.run_with_env(&["stats", "--json"], &[("ARK_STORE_WAIT", "1")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!bool_of(field(&run.json(), "may_have_applied")));
    assert!(
        run.stderr.contains("cannot reach the running server"),
        "{}",
        run.stderr
    );
    // It retried for the wait before giving up.
    assert!(started.elapsed() >= Duration::from_secs(1));

    std::fs::write(&server_file, real).unwrap();
    node.run(&["stats"]).ok();
}

#[test]
fn conflicts_limit_zero_lists_all_and_count_is_the_total() {
    let a = Node::start("conflicts-a");
    let b = Node::start("conflicts-b");
    a.add_peer(&b.url());
    b.add_peer(&a.url());
    let ids = ["c1", "c2", "c3"];
    for id in ids {
        a.run(&["add", "--id", id, "--type", "t", "--value", "on a"])
            .ok();
    }
    for id in ids {
        b.run(&["add", "--id", id, "--type", "t", "--value", "on b"])
            .ok();
    }
    a.sync();
    b.sync();
    let holder = if count(field(&a.stats(), "conflicts")) > 0 {
        &a
    } else {
        &b
    };
    let total = count(field(&holder.stats(), "conflicts"));
    assert_eq!(
        total, 3,
        "each of the three ids lost one version on one side"
    );
    let all = holder
        .run(&["conflicts", "--limit", "0", "--json"])
        .ok()
        .json();
    assert_eq!(count(field(&all, "count")), total);
    assert_eq!(array(field(&all, "conflicts")).len() as u64, total);
    let one = holder
        .run(&["conflicts", "--limit", "1", "--json"])
        .ok()
        .json();
    assert_eq!(count(field(&one, "count")), total);
    assert_eq!(array(field(&one, "conflicts")).len(), 1);
    let plain = holder.run(&["conflicts", "--limit", "2"]).ok();
    assert!(
        plain.stdout.contains("2 of 3 conflict(s) shown"),
        "{}",
        plain.stdout
    );
    let api = crate::util::http(
        holder.address(),
        "GET",
        "/api/federation/conflicts?limit=0",
        &[],
        None,
    );
    assert_eq!(array(field(&api.json(), "conflicts")).len() as u64, total);
}
