//! SD-card wear: bytes a node writes to its state dir when it syncs, run through the
//! real release binary with two nodes of 10k synthetic nodes each. Measures the
//! receiving node's writes per sync of 100 changed records and per sync with nothing
//! changed, an idle pair with auto-sync off as the control, then the pair restarted
//! with `FEDERATION_AUTO_SYNC=true` and a short interval, idle for a while. Prints the
//! measured figures, then (labelled as such) extrapolations to one hour.
//!
//! Disk writes are `write_bytes` of `/proc/PID/io` (bytes the process sent towards the
//! block layer). Where that reads 0 (some sandboxes), the figures fall back to `wchar`
//! minus the bytes the node wrote to sockets (counted by proxies), which is the bytes
//! passed to file writes; the store file's growth is printed either way.
//!
//! Reproduce: `make bench` (or `cargo bench --bench wear`). `ARK_BENCH_NODES`,
//! `ARK_BENCH_RUNS` (syncs per manual measurement), `ARK_BENCH_IDLE_SECS` and
//! `ARK_BENCH_INTERVAL_MS` (the auto-sync run) change the setup.

mod support;

use std::time::{Duration, Instant};

use support::{
    CountingProxy, Io, Server, TempDir, Traffic, cli, cli_json, env_number, field_u64, human_bytes,
    import_nodes, median_u64, scattered, sync_result,
};

/// The default auto-sync interval (`DEFAULT_SYNC_INTERVAL_MS`), for the extrapolation.
const DEFAULT_INTERVAL_SECS: f64 = 300.0;
const UPDATES_PER_SYNC: usize = 100;
const CONTROL_SECS: u64 = 5;

/// Two nodes that list each other as peers, each reached through a counting proxy.
struct Pair {
    a: Server,
    b: Server,
    /// Carries traffic to A (B's syncs) and to B (A's syncs).
    to_a: CountingProxy,
    to_b: CountingProxy,
}

impl Pair {
    /// Bytes each node wrote to sockets, from the proxies: (A, B).
    fn socket_writes(to_a: &Traffic, to_b: &Traffic) -> (u64, u64) {
        (
            to_b.to_server + to_a.to_client,
            to_a.to_server + to_b.to_client,
        )
    }
}

/// A node's writes over a stretch of time.
#[derive(Debug, Clone, Copy, Default)]
struct Written {
    write_bytes: u64,
    /// `wchar` minus socket writes: bytes passed to file writes.
    file_wchar: u64,
    store_growth: i64,
    syscw: u64,
}

fn written(before: &Io, after: &Io, socket_bytes: u64, store_growth: i64) -> Written {
    let io = after.since(before);
    Written {
        write_bytes: io.write_bytes,
        file_wchar: io.wchar.saturating_sub(socket_bytes),
        store_growth,
        syscw: io.syscw,
    }
}

/// What one manual sync wrote on each side.
#[derive(Debug, Clone, Copy)]
struct SyncWrites {
    syncer: Written,
    answerer: Written,
}

/// Successful and failed syncs this node has run (its federation stats).
fn syncs(server: &Server) -> (u64, u64) {
    let status = cli_json(&server.data_dir, &["federation", "status", "--json"]);
    (
        field_u64(&status, &["stats", "successfulSyncs"]),
        field_u64(&status, &["stats", "failedSyncs"]),
    )
}

/// One node syncs by hand with the other: what each wrote, and the nodes received.
fn manual_sync(pair: &Pair, a_syncs: bool) -> (SyncWrites, u64) {
    let (syncer, answerer) = if a_syncs {
        (&pair.a, &pair.b)
    } else {
        (&pair.b, &pair.a)
    };
    let traffic = (pair.to_a.traffic(), pair.to_b.traffic());
    let (syncer_io, answerer_io) = (syncer.io().unwrap(), answerer.io().unwrap());
    let (syncer_store, answerer_store) = (syncer.store_bytes(), answerer.store_bytes());
    let answer = cli_json(&syncer.data_dir, &["federation", "sync", "--json"]);
    let received = field_u64(sync_result(&answer), &["nodesReceived"]);
    let (a_sockets, b_sockets) = Pair::socket_writes(
        &pair.to_a.traffic().since(&traffic.0),
        &pair.to_b.traffic().since(&traffic.1),
    );
    let (syncer_sockets, answerer_sockets) = if a_syncs {
        (a_sockets, b_sockets)
    } else {
        (b_sockets, a_sockets)
    };
    let growth = |server: &Server, before: u64| server.store_bytes() as i64 - before as i64;
    let writes = SyncWrites {
        syncer: written(
            &syncer_io,
            &syncer.io().unwrap(),
            syncer_sockets,
            growth(syncer, syncer_store),
        ),
        answerer: written(
            &answerer_io,
            &answerer.io().unwrap(),
            answerer_sockets,
            growth(answerer, answerer_store),
        ),
    };
    (writes, received)
}

/// Both nodes' writes and syncs over `seconds` of doing nothing.
struct Idle {
    seconds: f64,
    a: Written,
    b: Written,
    a_syncs: u64,
    b_syncs: u64,
    failed_syncs: u64,
    wire_bytes: u64,
}

fn idle(pair: &Pair, seconds: u64) -> Idle {
    // Status calls go through the nodes' sockets; none falls inside the window.
    let (a_before, a_failed_before) = syncs(&pair.a);
    let (b_before, b_failed_before) = syncs(&pair.b);
    let traffic = (pair.to_a.traffic(), pair.to_b.traffic());
    let io = (pair.a.io().unwrap(), pair.b.io().unwrap());
    let stores = (pair.a.store_bytes(), pair.b.store_bytes());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let io_after = (pair.a.io().unwrap(), pair.b.io().unwrap());
    let elapsed = started.elapsed().as_secs_f64();
    let traffic = (
        pair.to_a.traffic().since(&traffic.0),
        pair.to_b.traffic().since(&traffic.1),
    );
    let stores_after = (pair.a.store_bytes(), pair.b.store_bytes());
    let (a_after, a_failed_after) = syncs(&pair.a);
    let (b_after, b_failed_after) = syncs(&pair.b);
    let (a_sockets, b_sockets) = Pair::socket_writes(&traffic.0, &traffic.1);
    Idle {
        seconds: elapsed,
        a: written(
            &io.0,
            &io_after.0,
            a_sockets,
            stores_after.0 as i64 - stores.0 as i64,
        ),
        b: written(
            &io.1,
            &io_after.1,
            b_sockets,
            stores_after.1 as i64 - stores.1 as i64,
        ),
        a_syncs: a_after - a_before,
        b_syncs: b_after - b_before,
        failed_syncs: (a_failed_after - a_failed_before) + (b_failed_after - b_failed_before),
        wire_bytes: traffic.0.to_server
            + traffic.0.to_client
            + traffic.1.to_server
            + traffic.1.to_client,
    }
}

fn main() {
    let node_count = env_number("ARK_BENCH_NODES", 10_000) as usize;
    let runs = env_number("ARK_BENCH_RUNS", 5).max(1) as usize;
    let idle_secs = env_number("ARK_BENCH_IDLE_SECS", 30).max(1);
    let interval_ms = env_number("ARK_BENCH_INTERVAL_MS", 1000).max(100);
    support::binary();
    let work = TempDir::new("wear");
    let (a_dir, b_dir) = (work.path.join("a"), work.path.join("b"));
    let interval = interval_ms.to_string();
    let manual = [
        ("FEDERATION_AUTO_SYNC", "false"),
        ("FEDERATION_SYNC_INTERVAL", interval.as_str()),
    ];
    let a = Server::start_quiet(&a_dir, &manual);
    let b = Server::start_quiet(&b_dir, &manual);
    let (to_a, to_b) = (CountingProxy::start(a.port), CountingProxy::start(b.port));
    import_nodes(&work.path, &a_dir, 0..node_count, 0);
    cli(&b_dir, &["federation", "add-peer", &to_a.url()]);
    cli(&a_dir, &["federation", "add-peer", &to_b.url()]);
    let mut pair = Pair { a, b, to_a, to_b };
    // B takes everything, A takes its echo, B catches up: both checkpoints current.
    manual_sync(&pair, false);
    manual_sync(&pair, true);
    manual_sync(&pair, false);

    let mut changed: Vec<SyncWrites> = Vec::new();
    for round in 0..runs {
        import_nodes(
            &work.path,
            &a_dir,
            scattered(UPDATES_PER_SYNC, node_count, 11 + 7 * round),
            round as u32 + 1,
        );
        let (writes, received) = manual_sync(&pair, false);
        assert_eq!(received, UPDATES_PER_SYNC as u64);
        changed.push(writes);
    }
    // A takes the echo of the updates so that nothing is left to move.
    manual_sync(&pair, true);
    manual_sync(&pair, false);
    let unchanged: Vec<SyncWrites> = (0..runs)
        .map(|_| {
            let (writes, received) = manual_sync(&pair, false);
            assert_eq!(received, 0);
            writes
        })
        .collect();
    let control = idle(&pair, CONTROL_SECS);

    // The pair as deployed with auto-sync: the same stores, restarted with the setting.
    let Pair { a, b, to_a, to_b } = pair;
    a.stop();
    b.stop();
    let auto = [
        ("FEDERATION_AUTO_SYNC", "true"),
        ("FEDERATION_SYNC_INTERVAL", interval.as_str()),
    ];
    let a = Server::start_quiet(&a_dir, &auto);
    let b = Server::start_quiet(&b_dir, &auto);
    to_a.retarget(a.port);
    to_b.retarget(b.port);
    pair = Pair { a, b, to_a, to_b };
    // Wait for a couple of auto-syncs each, so the window starts in the steady state.
    // The counts are stored, so they carry on from before the restart.
    let warm_up = Instant::now();
    let (a_start, b_start) = (syncs(&pair.a).0, syncs(&pair.b).0);
    while syncs(&pair.a).0 < a_start + 2 || syncs(&pair.b).0 < b_start + 2 {
        assert!(
            warm_up.elapsed() < Duration::from_millis(interval_ms * 10 + 10_000),
            "auto-sync did not run"
        );
        std::thread::sleep(Duration::from_millis(interval_ms / 4));
    }
    let auto_idle = idle(&pair, idle_secs);

    report(
        node_count,
        runs,
        interval_ms,
        &changed,
        &unchanged,
        &control,
        &auto_idle,
    );
}

fn report(
    node_count: usize,
    runs: usize,
    interval_ms: u64,
    changed: &[SyncWrites],
    unchanged: &[SyncWrites],
    control: &Idle,
    auto: &Idle,
) {
    let every = [changed, unchanged]
        .iter()
        .flat_map(|rows| rows.iter().flat_map(|row| [&row.syncer, &row.answerer]))
        .chain([&control.a, &control.b, &auto.a, &auto.b])
        .copied()
        .collect::<Vec<Written>>();
    let block_layer = every.iter().any(|written| written.write_bytes > 0);
    let bytes = |written: &Written| {
        if block_layer {
            written.write_bytes
        } else {
            written.file_wchar
        }
    };
    let method = if block_layer {
        "write_bytes of /proc/PID/io (bytes sent towards the block layer)"
    } else {
        "wchar of /proc/PID/io minus socket writes (write_bytes reads 0 on this machine)"
    };
    let median_of = |rows: &[SyncWrites], get: &dyn Fn(&SyncWrites) -> u64| {
        median_u64(&rows.iter().map(get).collect::<Vec<_>>())
    };

    println!(
        "wear benchmark: bytes written by a node's server process, both nodes holding {node_count} synthetic nodes"
    );
    println!("disk writes: {method}");
    println!(
        "reproduce: cargo bench --bench wear  (ARK_BENCH_NODES={node_count} ARK_BENCH_RUNS={runs} \
         ARK_BENCH_IDLE_SECS={:.0} ARK_BENCH_INTERVAL_MS={interval_ms})",
        auto.seconds.round()
    );
    println!();
    println!("measured:");
    println!();
    println!(
        "| what                                                      | syncs | disk writes | per sync    | file wchar/sync | write calls/sync | store growth |"
    );
    println!(
        "|-----------------------------------------------------------|-------|-------------|-------------|-----------------|------------------|--------------|"
    );
    // The last field: whether the row is the syncing side (else the answering one).
    let manual_rows: [(&str, &[SyncWrites], bool); 4] = [
        (
            "B syncs 100 changed records from A (receiver, median)",
            changed,
            true,
        ),
        ("A answering those syncs (sender, median)", changed, false),
        ("B syncs, nothing changed (median)", unchanged, true),
        ("A answering those syncs (median)", unchanged, false),
    ];
    for (name, rows, syncing_side) in manual_rows {
        let side = move |row: &SyncWrites| {
            if syncing_side {
                row.syncer
            } else {
                row.answerer
            }
        };
        let disk = median_of(rows, &|row| bytes(&side(row)));
        println!(
            "| {name:<57} | {:>5} | {:>11} | {:>11} | {:>15} | {:>16} | {:>12} |",
            1,
            disk,
            human_bytes(disk as f64),
            human_bytes(median_of(rows, &|row| side(row).file_wchar) as f64),
            median_of(rows, &|row| side(row).syscw),
            median_of(rows, &|row| side(row).store_growth.max(0) as u64),
        );
    }
    for (name, written, node_syncs) in [
        (
            format!("idle {:.0} s, auto-sync off (control): A", control.seconds),
            &control.a,
            control.a_syncs,
        ),
        (
            format!("idle {:.0} s, auto-sync off (control): B", control.seconds),
            &control.b,
            control.b_syncs,
        ),
        (
            format!(
                "idle {:.0} s, auto-sync every {interval_ms} ms: A",
                auto.seconds
            ),
            &auto.a,
            auto.a_syncs,
        ),
        (
            format!(
                "idle {:.0} s, auto-sync every {interval_ms} ms: B",
                auto.seconds
            ),
            &auto.b,
            auto.b_syncs,
        ),
    ] {
        let per_sync = |value: u64| {
            if node_syncs > 0 {
                human_bytes(value as f64 / node_syncs as f64)
            } else {
                "-".to_owned()
            }
        };
        println!(
            "| {name:<57} | {node_syncs:>5} | {:>11} | {:>11} | {:>15} | {:>16} | {:>12} |",
            bytes(written),
            per_sync(bytes(written)),
            per_sync(written.file_wchar),
            if node_syncs > 0 {
                format!("{:.0}", written.syscw as f64 / node_syncs as f64)
            } else {
                format!("{} in all", written.syscw)
            },
            written.store_growth,
        );
    }
    println!();
    println!(
        "syncs: syncs the node ran itself (its own stats); a node's writes also include answering its peer's syncs. \
         failed syncs in the auto-sync window: {}; wire bytes in it (both directions, both nodes): {}",
        auto.failed_syncs, auto.wire_bytes
    );

    // Per node, from the auto-sync window.
    let node_syncs = (auto.a_syncs + auto.b_syncs) as f64 / 2.0;
    let node_bytes = (bytes(&auto.a) + bytes(&auto.b)) as f64 / 2.0;
    let per_sync = if node_syncs > 0.0 {
        node_bytes / node_syncs
    } else {
        0.0
    };
    let measured_interval = if node_syncs > 0.0 {
        auto.seconds / node_syncs
    } else {
        0.0
    };
    let wire_per_sync = if node_syncs > 0.0 {
        auto.wire_bytes as f64 / 2.0 / node_syncs
    } else {
        0.0
    };
    println!();
    println!(
        "extrapolated, not measured: one idle node, from the auto-sync window's mean of A and B \
         ({} per sync of its own, {:.1} syncs, one every {measured_interval:.2} s measured; {} on the wire per sync)",
        human_bytes(per_sync),
        node_syncs,
        human_bytes(wire_per_sync)
    );
    println!();
    println!(
        "| interval (extrapolation)           | syncs/hour | disk writes/hour | disk writes/day | wire bytes/hour |"
    );
    println!(
        "|------------------------------------|------------|------------------|-----------------|-----------------|"
    );
    for (name, seconds) in [
        (
            format!("{DEFAULT_INTERVAL_SECS:.0} s (the default)"),
            DEFAULT_INTERVAL_SECS,
        ),
        (
            format!("{measured_interval:.2} s (as measured)"),
            measured_interval,
        ),
    ] {
        if seconds <= 0.0 {
            continue;
        }
        let per_hour = 3600.0 / seconds;
        println!(
            "| {name:<34} | {per_hour:>10.0} | {:>16} | {:>15} | {:>15} |",
            human_bytes(per_sync * per_hour),
            human_bytes(per_sync * per_hour * 24.0),
            human_bytes(wire_per_sync * per_hour),
        );
    }
}
