//! The randomized convergence test (issue #16): five real nodes — a mesh of three, one
//! of them also the hub of two spokes — under random adds, updates and deletes on a
//! shared pool of ids, random syncs, kill -9 (also in the middle of a write or a sync),
//! a partition that heals, and one node's clock ahead within the skew limit. After each
//! quiet period every node must hold the same thing, and the invariants in
//! [`model::Model::check`] must hold.
//!
//! Seeded and reproducible: the seed is printed (and named in a failure);
//! `ARK_SOAK_SEED=N` replays its sequence of operations (kill timing against in-flight
//! requests still varies). `make test` runs a short version; `make soak` a long one
//! (`ARK_SOAK_OPS`, `ARK_SOAK_EPOCH_OPS`, `ARK_SOAK_CLOCK_AHEAD_MS`), both print a table.

mod model;
mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Node, Run, array, bool_of, field, text};
use model::{Held, Model, Version, Write};
use proxy::LinkProxy;

/// Operations in `make test`; `make soak` asks for more.
const SHORT_OPERATIONS: usize = 300;
/// Operations between quiet periods.
const DEFAULT_EPOCH: usize = 75;
/// How far ahead the one fast clock runs, within the default 300 s skew limit.
const DEFAULT_CLOCK_AHEAD_MS: u64 = 5_000;
/// Ids the writes draw from: few enough that nodes often edit the same one.
const ID_POOL: usize = 20;
/// Sync rounds a quiet period may take before the nodes count as not converging.
const MAX_ROUNDS: usize = 6;

const HUB: usize = 0;
const CLOCK_AHEAD_NODE: usize = 2;
const MESH: [usize; 3] = [0, 1, 2];
const SPOKES: [usize; 2] = [3, 4];
const NAMES: [&str; 5] = ["hub", "mesh-1", "mesh-2", "spoke-3", "spoke-4"];

/// splitmix64: small, seedable, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len())])
    }
}

struct Settings {
    seed: u64,
    operations: usize,
    epoch: usize,
    clock_ahead_ms: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str| {
            std::env::var(name).ok().map(|text| {
                text.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
            })
        };
        let seed = number("ARK_SOAK_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
        Settings {
            seed,
            operations: number("ARK_SOAK_OPS").map_or(SHORT_OPERATIONS, |ops| ops as usize),
            epoch: number("ARK_SOAK_EPOCH_OPS").map_or(DEFAULT_EPOCH, |ops| ops.max(1) as usize),
            clock_ahead_ms: number("ARK_SOAK_CLOCK_AHEAD_MS").unwrap_or(DEFAULT_CLOCK_AHEAD_MS),
        }
    }

    fn replay(&self) -> String {
        format!(
            "ARK_SOAK_SEED={} ARK_SOAK_OPS={} ARK_SOAK_EPOCH_OPS={} ARK_SOAK_CLOCK_AHEAD_MS={}",
            self.seed, self.operations, self.epoch, self.clock_ahead_ms
        )
    }
}

/// What the run did, for the table.
#[derive(Default)]
struct Tally {
    operations: usize,
    writes: usize,
    kills: usize,
    kills_mid_write: usize,
    kills_mid_sync: usize,
    syncs: usize,
    partitions: usize,
    store_opens: usize,
    quiet_periods: usize,
    rounds_max: usize,
    converge: Vec<Duration>,
    /// Losing versions in the conflict logs at the last quiet period.
    logged_conflicts: usize,
}

struct SoakNode {
    node: Node,
    env: Vec<(String, String)>,
}

impl SoakNode {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = self.node.command(args);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }

    fn cli(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("run ark-lattice");
        Run::from(output)
    }
}

fn spawn_piped(mut command: std::process::Command) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ark-lattice")
}

struct Soak {
    settings: Settings,
    rng: Rng,
    nodes: Vec<SoakNode>,
    links: Vec<LinkProxy>,
    model: Model,
    tally: Tally,
    violations: Vec<String>,
    /// The wall clock when the current operation started, unix milliseconds.
    step_started: u64,
}

fn wall_clock_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Soak {
    fn start(settings: Settings) -> Soak {
        let env_of = |index: usize, hub_url: Option<&str>| {
            let mut env = Vec::new();
            if index == CLOCK_AHEAD_NODE {
                env.push((
                    "ARK_CLOCK_OFFSET_MS".to_owned(),
                    settings.clock_ahead_ms.to_string(),
                ));
            }
            if let Some(hub_url) = hub_url {
                env.push(("FEDERATION_MODE".to_owned(), "hub".to_owned()));
                env.push(("FEDERATION_HUB_URL".to_owned(), hub_url.to_owned()));
            }
            env
        };
        let start = |index: usize, env: Vec<(String, String)>| {
            let pairs: Vec<(&str, &str)> = env
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            let node = Node::start_with(&format!("soak-{}", NAMES[index]), &pairs, &[]);
            SoakNode { node, env }
        };
        let mut nodes: Vec<SoakNode> = MESH
            .iter()
            .map(|&index| start(index, env_of(index, None)))
            .collect();
        let mut links = Vec::new();
        for &from in &MESH {
            for &to in &MESH {
                if from != to {
                    links.push(LinkProxy::new(from, to, nodes[to].node.port));
                }
            }
        }
        for &spoke in &SPOKES {
            let link = LinkProxy::new(spoke, HUB, nodes[HUB].node.port);
            nodes.push(start(spoke, env_of(spoke, Some(&link.url()))));
            links.push(link);
        }
        for link in &links {
            if MESH.contains(&link.from) {
                nodes[link.from]
                    .cli(&["federation", "add-peer", &link.url()])
                    .ok();
            } else {
                nodes[HUB].node.trust(&nodes[link.from].node);
                nodes[link.from].node.trust(&nodes[HUB].node);
            }
        }
        Soak {
            rng: Rng(settings.seed),
            settings,
            nodes,
            links,
            model: Model::default(),
            tally: Tally::default(),
            violations: Vec::new(),
            step_started: 0,
        }
    }

    fn violation(&mut self, step: usize, what: String) {
        self.violations.push(format!("step {step}: {what}"));
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&index| self.nodes[index].node.is_running())
            .collect()
    }

    fn stopped(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&index| !self.nodes[index].node.is_running())
            .collect()
    }

    /// What `node` holds for `id`, read with `get --json`.
    fn held(&self, node: usize, id: &str) -> Result<Option<Held>, String> {
        let run = self.nodes[node].cli(&["get", id, "--json"]);
        match run.code {
            0 => {
                let record = run.json();
                Ok(Some(Held::Live {
                    version: Version::parse(text(field(&record, "version"))),
                    value: text(field(&record, "value")).to_owned(),
                }))
            }
            4 if run.stdout.trim().is_empty() => Ok(None),
            4 => Ok(Some(Held::Deleted {
                version: Version::parse(text(field(&run.json(), "version"))),
            })),
            code => Err(format!(
                "get {id} on {} exited {code}: {}",
                NAMES[node], run.stderr
            )),
        }
    }

    fn record(&mut self, step: usize, id: &str, node: usize, held: Held, parent: Option<Version>) {
        self.tally.writes += 1;
        // The fast clock is in effect: a version is at least the wall clock plus the
        // offset when the operation started.
        if node == CLOCK_AHEAD_NODE
            && held.version().millis < self.step_started + self.settings.clock_ahead_ms
        {
            self.violation(
                step,
                format!(
                    "{} wrote {} although its clock runs {} ms ahead of {}",
                    NAMES[node],
                    held.version(),
                    self.settings.clock_ahead_ms,
                    self.step_started
                ),
            );
        }
        let write = Write {
            id: id.to_owned(),
            node,
            held,
            parent,
        };
        if let Err(problem) = self.model.record(write) {
            self.violation(step, problem);
        }
    }

    /// An add or update (a value unique to this step) or a delete on `node`.
    fn write(&mut self, step: usize, node: usize, id: &str, delete: bool) {
        let before = match self.held(node, id) {
            Ok(before) => before,
            Err(problem) => return self.violation(step, problem),
        };
        let parent = before.as_ref().map(|held| held.version().clone());
        if delete {
            let run = self.nodes[node].cli(&["delete", id, "--json"]);
            match (run.code, &before) {
                (0, _) if bool_of(field(&run.json(), "already_deleted")) => {
                    if !matches!(before, Some(Held::Deleted { .. })) {
                        self.violation(
                            step,
                            format!(
                                "{id} on {}: `already deleted` but it held {before:?}",
                                NAMES[node]
                            ),
                        );
                    }
                }
                (0, _) => match self.held(node, id) {
                    Ok(Some(held @ Held::Deleted { .. })) => {
                        self.record(step, id, node, held, parent)
                    }
                    other => self.violation(
                        step,
                        format!("{id} on {}: deleted, then reads {other:?}", NAMES[node]),
                    ),
                },
                (4, None) => {}
                (code, _) => self.violation(
                    step,
                    format!(
                        "delete {id} on {} (holding {before:?}) exited {code}: {}",
                        NAMES[node], run.stderr
                    ),
                ),
            }
            return;
        }
        let value = format!("written at step {step} on {}", NAMES[node]);
        let run =
            self.nodes[node].cli(&["add", "--id", id, "--type", "soak_node", "--value", &value]);
        if run.code != 0 {
            return self.violation(
                step,
                format!(
                    "add {id} on {} exited {}: {}",
                    NAMES[node], run.code, run.stderr
                ),
            );
        }
        match self.held(node, id) {
            Ok(Some(held @ Held::Live { .. })) if matches!(&held, Held::Live { value: got, .. } if *got == value) => {
                self.record(step, id, node, held, parent)
            }
            other => self.violation(
                step,
                format!(
                    "{id} on {}: added {value:?}, then reads {other:?}",
                    NAMES[node]
                ),
            ),
        }
    }

    /// kill -9, then the store must open (a CLI command opens it in-process).
    fn kill(&mut self, step: usize, node: usize) {
        self.nodes[node].node.kill();
        self.tally.kills += 1;
        let run = self.nodes[node].cli(&["stats", "--json"]);
        if run.code == 0 {
            self.tally.store_opens += 1;
        } else {
            self.violation(
                step,
                format!(
                    "the store of {} does not open after kill -9 (exit {}): {}",
                    NAMES[node], run.code, run.stderr
                ),
            );
        }
    }

    fn restart(&mut self, node: usize) {
        self.nodes[node].node.restart();
        let port = self.nodes[node].node.port;
        for link in self.links.iter().filter(|link| link.to == node) {
            link.point_to(port);
        }
    }

    /// An add sent to `node`'s server, which is killed while it may be in flight. The
    /// answer decides what must be true afterwards: acknowledged (0) means applied,
    /// "may have applied" (6) either, "not sent" (1) not applied.
    fn kill_mid_write(&mut self, step: usize, node: usize, id: &str) {
        let before = match self.held(node, id) {
            Ok(before) => before,
            Err(problem) => return self.violation(step, problem),
        };
        let value = format!("written at step {step} on {} as it was killed", NAMES[node]);
        let child = spawn_piped(self.nodes[node].command(&[
            "add",
            "--id",
            id,
            "--type",
            "soak_node",
            "--value",
            &value,
        ]));
        std::thread::sleep(Duration::from_millis(self.rng.below(25) as u64));
        self.tally.kills_mid_write += 1;
        self.kill(step, node);
        let run = Run::from(child.wait_with_output().unwrap());
        let after = match self.held(node, id) {
            Ok(after) => after,
            Err(problem) => return self.violation(step, problem),
        };
        let applied = matches!(&after, Some(Held::Live { value: got, .. }) if *got == value);
        match (run.code, applied) {
            (0, true) | (7, _) | (1, false) => {}
            (code, applied) => self.violation(
                step,
                format!(
                    "add cut by a kill of {} exited {code} but applied={applied}: {}",
                    NAMES[node], run.stderr
                ),
            ),
        }
        if let (true, Some(held)) = (applied, after) {
            let parent = before.map(|held| held.version().clone());
            self.record(step, id, node, held, parent);
        }
    }

    /// `federation sync` on `node`; a sync that fails (a peer down or cut off) is fine.
    fn sync(&mut self, step: usize, node: usize) -> Duration {
        let started = Instant::now();
        let run = self.nodes[node].cli(&["federation", "sync", "--json"]);
        self.tally.syncs += 1;
        if run.code != 0 && run.code != 1 {
            self.violation(
                step,
                format!(
                    "sync on {} exited {}: {}",
                    NAMES[node], run.code, run.stderr
                ),
            );
        }
        started.elapsed()
    }

    /// A sync on `node` with one side killed in the middle of it.
    fn kill_mid_sync(&mut self, step: usize, node: usize) {
        let child = spawn_piped(self.nodes[node].command(&["federation", "sync", "--json"]));
        std::thread::sleep(Duration::from_millis(self.rng.below(60) as u64));
        let peers: Vec<usize> = self
            .links
            .iter()
            .filter(|link| link.from == node && self.nodes[link.to].node.is_running())
            .map(|link| link.to)
            .collect();
        let victim = if self.rng.below(2) == 0 {
            node
        } else {
            self.rng.pick(&peers).unwrap_or(node)
        };
        self.tally.kills_mid_sync += 1;
        self.tally.syncs += 1;
        self.kill(step, victim);
        let run = Run::from(child.wait_with_output().unwrap());
        if ![0, 1, 7].contains(&run.code) {
            self.violation(
                step,
                format!(
                    "sync on {} cut by a kill of {} exited {}: {}",
                    NAMES[node], NAMES[victim], run.code, run.stderr
                ),
            );
        }
    }

    /// Cuts every link between a random group of one or two nodes and the rest.
    fn partition(&mut self) {
        let size = 1 + self.rng.below(2);
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        for index in (1..order.len()).rev() {
            order.swap(index, self.rng.below(index + 1));
        }
        let side: BTreeSet<usize> = order[..size].iter().copied().collect();
        for link in &self.links {
            if side.contains(&link.from) != side.contains(&link.to) {
                link.block();
            }
        }
        self.tally.partitions += 1;
    }

    fn heal(&self) {
        for link in &self.links {
            link.heal();
        }
    }

    fn step(&mut self, step: usize) {
        self.step_started = wall_clock_millis();
        let id = format!("soak_{:02}", self.rng.below(ID_POOL));
        let roll = self.rng.below(100);
        let running = self.running();
        let any = self.rng.below(self.nodes.len());
        match (roll, self.rng.pick(&running)) {
            (0..=44, _) => self.write(step, any, &id, false),
            (45..=56, _) => self.write(step, any, &id, true),
            (57..=76, Some(node)) => {
                self.sync(step, node);
            }
            (77..=81, Some(node)) => self.kill_mid_write(step, node, &id),
            (82..=86, Some(node)) => self.kill_mid_sync(step, node),
            (87..=91, Some(node)) => self.kill(step, node),
            _ => {
                if let Some(node) = self.rng.pick(&self.stopped()) {
                    self.restart(node);
                }
            }
        }
        self.tally.operations += 1;
    }

    /// Heals, restarts every node, syncs in rounds until all hold the same, and checks
    /// the invariants.
    fn quiet(&mut self, step: usize) {
        self.heal();
        for node in self.stopped() {
            self.restart(node);
        }
        self.tally.quiet_periods += 1;
        let mut syncing = Duration::ZERO;
        let mut last_difference = String::new();
        for round in 1..=MAX_ROUNDS {
            for node in [SPOKES[0], SPOKES[1], MESH[0], MESH[1], MESH[2]] {
                syncing += self.sync(step, node);
            }
            match self.agreed_state() {
                Ok(finals) => {
                    self.tally.rounds_max = self.tally.rounds_max.max(round);
                    self.tally.converge.push(syncing);
                    let losers = self.logged_losers();
                    self.tally.logged_conflicts = losers.len();
                    for problem in self.model.check(&finals, &losers) {
                        self.violation(step, problem);
                    }
                    return;
                }
                Err(difference) => last_difference = difference,
            }
        }
        self.violation(
            step,
            format!("not identical after {MAX_ROUNDS} sync rounds: {last_difference}"),
        );
    }

    /// What every node holds for every id of the pool, if all hold the same.
    fn agreed_state(&self) -> Result<BTreeMap<String, Held>, String> {
        let live: Vec<BTreeMap<String, Version>> = (0..self.nodes.len())
            .map(|node| {
                let listing = self.nodes[node]
                    .cli(&["list", "--limit", "0", "--json"])
                    .ok()
                    .json();
                array(field(&listing, "nodes"))
                    .iter()
                    .map(|record| {
                        (
                            text(field(record, "id")).to_owned(),
                            Version::parse(text(field(record, "version"))),
                        )
                    })
                    .collect()
            })
            .collect();
        for node in 1..live.len() {
            if live[node] != live[0] {
                return Err(describe(NAMES[0], &live[0], NAMES[node], &live[node]));
            }
        }
        let mut finals = BTreeMap::new();
        for slot in 0..ID_POOL {
            let id = format!("soak_{slot:02}");
            let mut seen: Option<Option<Held>> = None;
            for (node, name) in NAMES.iter().enumerate() {
                let held = self.held(node, &id)?;
                match &seen {
                    Some(first) if first != &held => {
                        return Err(format!(
                            "{id}: {} holds {first:?}, {name} holds {held:?}",
                            NAMES[0]
                        ));
                    }
                    Some(_) => {}
                    None => seen = Some(held),
                }
            }
            if let Some(Some(held)) = seen {
                finals.insert(id, held);
            }
        }
        Ok(finals)
    }

    /// The losing versions in every node's conflict log.
    fn logged_losers(&self) -> BTreeSet<Version> {
        let mut losers = BTreeSet::new();
        for node in &self.nodes {
            let log = node
                .cli(&["conflicts", "--limit", "0", "--json"])
                .ok()
                .json();
            for entry in array(field(&log, "conflicts")) {
                losers.insert(Version::parse(text(field(entry, "loser_version"))));
            }
        }
        losers
    }

    fn table(&self, elapsed: Duration) -> String {
        let mut converge = self.tally.converge.clone();
        converge.sort();
        let median = converge
            .get(converge.len() / 2)
            .copied()
            .unwrap_or_default();
        let max = converge.last().copied().unwrap_or_default();
        let t = &self.tally;
        format!(
            "soak seed {} ({:.1} s; replay: {})\n\
             | operations | acknowledged writes | kills (mid-write, mid-sync) | syncs | partitions healed | stores opened after a kill | quiet periods | rounds to converge (max) | time to converge (median / max) | versions in conflict logs | invariant violations |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n\
             | {} | {} | {} ({}, {}) | {} | {} | {} of {} | {} | {} | {:.2} s / {:.2} s | {} | {} |",
            self.settings.seed,
            elapsed.as_secs_f64(),
            self.settings.replay(),
            t.operations,
            t.writes,
            t.kills,
            t.kills_mid_write,
            t.kills_mid_sync,
            t.syncs,
            t.partitions,
            t.store_opens,
            t.kills,
            t.quiet_periods,
            t.rounds_max,
            median.as_secs_f64(),
            max.as_secs_f64(),
            t.logged_conflicts,
            self.violations.len()
        )
    }
}

/// What differs between two nodes' live records, at most five lines of it.
fn describe(
    left: &str,
    a: &BTreeMap<String, Version>,
    right: &str,
    b: &BTreeMap<String, Version>,
) -> String {
    let ids: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let lines: Vec<String> = ids
        .into_iter()
        .filter(|id| a.get(*id) != b.get(*id))
        .take(5)
        .map(|id| {
            format!(
                "{id}: {left} {:?}, {right} {:?}",
                a.get(id).map(ToString::to_string),
                b.get(id).map(ToString::to_string)
            )
        })
        .collect();
    lines.join("; ")
}

#[test]
fn random_operations_kills_and_a_partition_converge_with_every_invariant() {
    let settings = Settings::from_env();
    eprintln!(
        "soak seed {} (replay: {})",
        settings.seed,
        settings.replay()
    );
    let started = Instant::now();
    let mut soak = Soak::start(settings);
    let (operations, epoch) = (soak.settings.operations, soak.settings.epoch);
    let mut partition = None;
    for step in 0..operations {
        if step % epoch == 0 {
            // One partition per quiet-to-quiet stretch, healed inside it or at its end.
            let start = step + soak.rng.below(epoch / 2 + 1);
            partition = Some((start, start + 1 + soak.rng.below(epoch / 2 + 1)));
        }
        match partition {
            Some((start, _)) if start == step => soak.partition(),
            Some((_, end)) if end == step => soak.heal(),
            _ => {}
        }
        soak.step(step);
        if (step + 1) % epoch == 0 || step + 1 == operations {
            soak.quiet(step);
        }
    }
    let table = soak.table(started.elapsed());
    println!("{table}");
    assert!(
        soak.violations.is_empty(),
        "{table}\n{} violation(s), the first 20:\n{}",
        soak.violations.len(),
        soak.violations
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
