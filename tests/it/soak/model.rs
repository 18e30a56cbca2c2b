//! What the soak test knows: every write a node acknowledged (its version and the
//! version the writer held when it wrote, so ancestry is known), and the invariants
//! checked against the nodes' final state.

use std::collections::{BTreeMap, BTreeSet};

/// A version as the CLI prints it, `<millis>.<counter>@<origin hex>`, ordered as the
/// store orders versions: clock, then origin.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub millis: u64,
    pub counter: u64,
    pub origin: String,
}

impl Version {
    pub fn parse(text: &str) -> Version {
        let (clock, origin) = text.split_once('@').expect("a version has an origin");
        let (millis, counter) = clock.split_once('.').expect("a version has a counter");
        Version {
            millis: millis.parse().expect("version millis"),
            counter: counter.parse().expect("version counter"),
            origin: origin.to_owned(),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}@{}", self.millis, self.counter, &self.origin[..8])
    }
}

/// What a node holds for one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Live { version: Version, value: String },
    Deleted { version: Version },
}

impl Held {
    pub fn version(&self) -> &Version {
        match self {
            Held::Live { version, .. } | Held::Deleted { version } => version,
        }
    }
}

/// One acknowledged write.
#[derive(Debug, Clone)]
pub struct Write {
    pub id: String,
    pub node: usize,
    pub held: Held,
    /// What the writer held for the id just before: the write descends from it.
    pub parent: Option<Version>,
}

#[derive(Default)]
pub struct Model {
    pub writes: BTreeMap<Version, Write>,
    /// The newest version each node has handed out, by node index.
    newest_by_node: BTreeMap<usize, Version>,
}

impl Model {
    /// Records a write the node acknowledged; what is wrong with it, if anything.
    pub fn record(&mut self, write: Write) -> Result<(), String> {
        let version = write.held.version().clone();
        if let Some(earlier) = self.writes.get(&version) {
            return Err(format!(
                "version {version} handed out twice: to {:?} on node {} and to {:?} on node {}",
                earlier.held, earlier.node, write.held, write.node
            ));
        }
        let problem = match self.newest_by_node.get(&write.node) {
            Some(newest)
                if (newest.millis, newest.counter) >= (version.millis, version.counter) =>
            {
                Some(format!(
                    "node {} handed out {version} after {newest}: its clock went back",
                    write.node
                ))
            }
            _ => None,
        };
        self.newest_by_node.insert(write.node, version.clone());
        self.writes.insert(version, write);
        problem.map_or(Ok(()), Err)
    }

    /// `version` and every version it was written over, back to the first write.
    fn history_of(&self, version: &Version, into: &mut BTreeSet<Version>) {
        let mut current = Some(version.clone());
        while let Some(at) = current {
            if !into.insert(at.clone()) {
                return;
            }
            current = self.writes.get(&at).and_then(|write| write.parent.clone());
        }
    }

    /// Every write of `id`, oldest first, with the version it was written over.
    fn history(&self, id: &str) -> String {
        let lines: Vec<String> = self
            .writes
            .values()
            .filter(|write| write.id == id)
            .map(|write| {
                let what = match &write.held {
                    Held::Live { value, .. } => format!("{value:?}"),
                    Held::Deleted { .. } => "delete".to_owned(),
                };
                let over = write
                    .parent
                    .as_ref()
                    .map_or("nothing".to_owned(), ToString::to_string);
                format!(
                    "  {} on node {} over {over}: {what}",
                    write.held.version(),
                    write.node
                )
            })
            .collect();
        lines.join("\n")
    }

    /// Checks the final state every node agreed on (`finals`: id → what it holds) and
    /// the union of the nodes' conflict logs (losing versions). One line per violation.
    pub fn check(
        &self,
        finals: &BTreeMap<String, Held>,
        logged_losers: &BTreeSet<Version>,
    ) -> Vec<String> {
        let mut violations = Vec::new();
        let mut by_id: BTreeMap<&str, Vec<&Write>> = BTreeMap::new();
        for write in self.writes.values() {
            by_id.entry(write.id.as_str()).or_default().push(write);
        }
        for (id, held) in finals {
            if !by_id.contains_key(id.as_str()) {
                violations.push(format!(
                    "{id}: holds {held:?}, which no acknowledged write made"
                ));
            }
        }
        for (id, writes) in by_id {
            let Some(last) = finals.get(id) else {
                violations.push(format!(
                    "{id}: {} acknowledged write(s), but the nodes hold nothing for it",
                    writes.len()
                ));
                continue;
            };
            let newest = writes
                .iter()
                .map(|write| write.held.version())
                .max()
                .expect("at least one write");
            if last.version() != newest {
                violations.push(format!(
                    "{id}: the nodes hold {} but the newest acknowledged write is {newest}",
                    last.version()
                ));
            }
            match self.writes.get(last.version()) {
                Some(write) if &write.held == last => {}
                _ => violations.push(format!("{id}: holds {last:?}, not what was written")),
            }
            if let Held::Live { version, .. } = last {
                for write in &writes {
                    if matches!(write.held, Held::Deleted { .. }) && write.held.version() > version
                    {
                        violations.push(format!(
                            "{id}: a delete ({}) came back to life as {version}",
                            write.held.version()
                        ));
                    }
                }
            }
            // Kept: in the history of what won, or of a version some conflict log
            // keeps (a version its own author wrote over is no loser itself).
            let mut kept = BTreeSet::new();
            self.history_of(last.version(), &mut kept);
            for loser in logged_losers {
                if self.writes.get(loser).is_some_and(|write| write.id == id) {
                    self.history_of(loser, &mut kept);
                }
            }
            // Deletes all carry the same (empty) content, so a delete that lost to a
            // newer concurrent delete is no conflict: its effect is kept by the other,
            // and what its author wrote before it is kept as much as it is.
            let is_delete = |version: &Version| {
                matches!(
                    self.writes.get(version).map(|write| &write.held),
                    Some(Held::Deleted { .. })
                )
            };
            if let Some(newest_delete) = kept.iter().filter(|v| is_delete(v)).max().cloned() {
                for write in &writes {
                    let version = write.held.version();
                    if is_delete(version) && *version < newest_delete {
                        self.history_of(version, &mut kept);
                    }
                }
            }
            for write in writes {
                let version = write.held.version();
                if !kept.contains(version) {
                    violations.push(format!(
                        "{id}: acknowledged write {version} on node {} is neither in the history of the final version nor in that of a logged conflict; {id} was written as:\n{}",
                        write.node,
                        self.history(id)
                    ));
                }
            }
        }
        violations
    }
}
