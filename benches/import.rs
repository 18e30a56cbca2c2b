//! Import throughput: 100k synthetic nodes shaped like ARK's data (about 400 bytes
//! each) parsed and written through the store in import-sized batches, then imported
//! again unchanged. Prints a table of medians over several runs.
//!
//! Reproduce: `make bench` (or `cargo bench --bench import`). `ARK_BENCH_NODES` and
//! `ARK_BENCH_RUNS` change the size and the number of runs.

use std::time::Instant;

use ark_lattice::config::IMPORT_BATCH;
use ark_lattice::input;
use ark_lattice::model::InstanceId;
use ark_lattice::store::{Store, StoreOptions};

fn synthetic_ndjson(count: usize) -> String {
    let mut text = String::with_capacity(count * 420);
    let types = [
        "command_node",
        "library_node",
        "template_node",
        "pattern_node",
    ];
    let languages = ["python", "bash", "rust", "go"];
    for i in 0..count {
        text.push_str(&format!(
            "{{\"id\":\"bench_node_{i:07}\",\"type\":\"{}\",\"language\":\"{}\",\"category\":\"Category_{}\",\
             \"value\":\"Synthetic template number {i} for the import benchmark\",\
             \"capabilities\":\"[\\\"cap_a\\\",\\\"cap_{}\\\"]\",\"dependencies\":\"[\\\"dep_{}\\\"]\",\"examples\":\"[]\",\
             \"content\":\"run --flag {i} --input data.csv --output result.json && echo done {}\",\
             \"linked_agents\":\"[]\",\"created_at\":\"2025-11-09 10:22:32\",\"updated_at\":\"2025-11-09 10:22:32\",\
             \"usage_count\":0,\"success_rate\":1.0}}\n",
            types[i % 4],
            languages[i % 4],
            i % 20,
            i % 7,
            i % 13,
            "x".repeat(40)
        ));
    }
    text
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let count = env_number("ARK_BENCH_NODES", 100_000);
    let runs = env_number("ARK_BENCH_RUNS", 3).max(1);
    let text = synthetic_ndjson(count);
    let (mut parse, mut write, mut reimport, mut sizes) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        let dir =
            std::env::temp_dir().join(format!("ark-bench-import-{}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("lattice.redb");
        let mut store = Store::open(&path, &StoreOptions::default(), InstanceId([7; 32])).unwrap();

        let started = Instant::now();
        let document = input::parse_document("bench.ndjson", &text).unwrap();
        let nodes: Vec<_> = document.nodes().cloned().collect();
        assert_eq!(nodes.len(), count);
        parse.push(started.elapsed().as_secs_f64());

        let started = Instant::now();
        for batch in nodes.chunks(IMPORT_BATCH) {
            store.write_nodes(batch, 1_800_000_000_000).unwrap();
        }
        write.push(started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut unchanged = 0;
        for batch in nodes.chunks(IMPORT_BATCH) {
            unchanged += store
                .write_nodes(batch, 1_800_000_000_001)
                .unwrap()
                .unchanged;
        }
        assert_eq!(unchanged as usize, count);
        reimport.push(started.elapsed().as_secs_f64());

        drop(store);
        sizes.push(std::fs::metadata(&path).unwrap().len() as f64);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (parse, write, reimport, size) = (
        median(&mut parse),
        median(&mut write),
        median(&mut reimport),
        median(&mut sizes),
    );
    println!(
        "import benchmark: {count} nodes, {} bytes of NDJSON, batches of {IMPORT_BATCH}, median of {runs} runs",
        text.len()
    );
    println!();
    println!("| step                         | seconds | nodes/s   |");
    println!("|------------------------------|---------|-----------|");
    println!(
        "| parse + validate             | {parse:7.3} | {:9.0} |",
        count as f64 / parse
    );
    println!(
        "| write to store (new)         | {write:7.3} | {:9.0} |",
        count as f64 / write
    );
    println!(
        "| parse + write (import)       | {:7.3} | {:9.0} |",
        parse + write,
        count as f64 / (parse + write)
    );
    println!(
        "| re-import, all unchanged     | {reimport:7.3} | {:9.0} |",
        count as f64 / reimport
    );
    println!();
    println!(
        "| store on disk                | {:.1} MiB ({:.0} bytes/node; input {:.0} bytes/node) |",
        size / 1_048_576.0,
        size / count as f64,
        text.len() as f64 / count as f64
    );
}
