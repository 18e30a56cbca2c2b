//! The command line as argh structs, and nothing else: validation and defaults live in
//! `config`, behaviour in `commands`.

use argh::FromArgs;

/// Keep a Code Lattice in an embedded store and federate it with other ARK instances.
#[derive(FromArgs, Debug)]
#[argh(
    note = "Environment: LATTICE_PATH (state dir), ARK_INSTANCE_TYPE (local|cloud|pi),
ARK_CACHE_MB (store cache). Flags win over environment, environment over defaults.

Exit codes: 0 ok, 1 failure, 2 bad usage or configuration, 3 store in use by
another process, 4 record not found, 5 import finished with invalid records."
)]
pub struct Args {
    /// state directory holding the store and the instance key (default:
    /// $LATTICE_PATH, else ./ark-lattice-data)
    #[argh(option)]
    pub data_dir: Option<String>,

    /// store page cache in MiB (default: $ARK_CACHE_MB, else 16)
    #[argh(option)]
    pub cache_mb: Option<u64>,

    /// log each step to stderr (also DEBUG=ark:*)
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// print the version and exit
    #[argh(switch)]
    pub version: bool,

    #[argh(subcommand)]
    pub command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Import(Import),
    Export(Export),
    Add(Add),
    Get(Get),
    Delete(Delete),
    List(List),
    Query(QueryArgs),
    Stats(Stats),
    Conflicts(Conflicts),
}

/// Import nodes from ARK topic files, JSON arrays (sqlite3 -json exports included) or NDJSON.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "import",
    example = "ark-lattice import ../shared/data/ark-lattice-nodes.json",
    example = "sqlite3 -json lattice.db 'select * from nodes' | ark-lattice import -",
    note = "Invalid records are reported with file, position and reason and skipped;\nthe valid ones are imported. Re-importing unchanged records changes nothing."
)]
pub struct Import {
    /// files to read; `-` reads standard input
    #[argh(positional, greedy)]
    pub files: Vec<String>,

    /// print the summary as JSON
    #[argh(switch)]
    pub json: bool,
}

/// Export nodes losslessly as a JSON array, NDJSON, or ARK's topics format.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "export",
    example = "ark-lattice export -o lattice.json",
    example = "ark-lattice export --format topics --type command_node"
)]
pub struct Export {
    /// json (default), ndjson, topics or ark-rows (ARK's SQLite row shape)
    #[argh(option, default = "String::from(\"json\")")]
    pub format: String,

    /// only nodes of this type (repeatable)
    #[argh(option, long = "type")]
    pub types: Vec<String>,

    /// write to this file instead of standard output
    #[argh(option, short = 'o')]
    pub output: Option<String>,
}

/// Add a node, or replace the one with the same id.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "add",
    example = "ark-lattice add --id py_hello --type template_node --value 'Hello in Python' --language python --content 'print(\"hello\")'",
    example = "ark-lattice add --json '{{\"id\":\"x\",\"type\":\"pattern_node\",\"value\":\"X\"}}'"
)]
pub struct Add {
    /// node id (1-200 characters)
    #[argh(option)]
    pub id: Option<String>,
    /// node type, e.g. template_node
    #[argh(option, long = "type")]
    pub node_type: Option<String>,
    /// short description
    #[argh(option)]
    pub value: Option<String>,
    /// programming language
    #[argh(option)]
    pub language: Option<String>,
    /// category
    #[argh(option)]
    pub category: Option<String>,
    /// the code or command itself
    #[argh(option)]
    pub content: Option<String>,
    /// a capability (repeatable)
    #[argh(option)]
    pub capabilities: Vec<String>,
    /// a dependency (repeatable)
    #[argh(option)]
    pub dependencies: Vec<String>,
    /// an example (repeatable)
    #[argh(option)]
    pub examples: Vec<String>,
    /// a linked agent (repeatable)
    #[argh(option)]
    pub linked_agents: Vec<String>,
    /// the whole record as a JSON object instead of the flags above
    #[argh(option)]
    pub json: Option<String>,
}

/// Show one node.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "get",
    example = "ark-lattice get accelerate_launch --json"
)]
pub struct Get {
    /// node id
    #[argh(positional)]
    pub id: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// show who wrote the current version and when
    #[argh(switch)]
    pub provenance: bool,
}

/// Delete a node, leaving a tombstone so the delete reaches peers.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "delete",
    example = "ark-lattice delete accelerate_launch"
)]
pub struct Delete {
    /// node id
    #[argh(positional)]
    pub id: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// List nodes in id order.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "list",
    example = "ark-lattice list --type command_node --limit 10"
)]
pub struct List {
    /// only nodes of this type
    #[argh(option, long = "type")]
    pub node_type: Option<String>,
    /// at most this many (default 50; 0 for all)
    #[argh(option, default = "50")]
    pub limit: usize,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Find nodes by type, language, category, capability or text.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "query",
    example = "ark-lattice query --language python --capability distributed",
    example = "ark-lattice query --search nmap --json"
)]
pub struct QueryArgs {
    /// node type
    #[argh(option, long = "type")]
    pub node_type: Option<String>,
    /// language
    #[argh(option)]
    pub language: Option<String>,
    /// category
    #[argh(option)]
    pub category: Option<String>,
    /// a capability the node lists
    #[argh(option)]
    pub capability: Option<String>,
    /// text in the id or value (case-insensitive)
    #[argh(option)]
    pub search: Option<String>,
    /// at most this many (default 50; 0 for all)
    #[argh(option, default = "50")]
    pub limit: usize,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Counts by type, language and category, and the store size.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stats", example = "ark-lattice stats --json")]
pub struct Stats {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Show the conflict log: versions that lost to a concurrent edit, kept so nothing is lost.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "conflicts",
    example = "ark-lattice conflicts --limit 5"
)]
pub struct Conflicts {
    /// at most this many, newest first (default 50)
    #[argh(option, default = "50")]
    pub limit: usize,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}
