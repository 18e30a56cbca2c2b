//! The command line as argh structs, and nothing else: validation and defaults live in
//! `config`, behaviour in `commands`.

use argh::FromArgs;

/// Keep a Code Lattice in an embedded store and federate it with other ARK instances.
#[derive(FromArgs, Debug)]
#[argh(
    note = "Environment: LATTICE_PATH (state dir), ARK_INSTANCE_TYPE (local|cloud|pi),
ARK_CACHE_MB (store cache), ARK_CA_FILE and ARK_TLS_PIN (https:// peers).
Flags win over environment, environment over defaults.

Exit codes: 0 ok, 1 failure, 2 bad usage or configuration, 3 store in use by
another process, 4 record not found, 5 import finished with invalid records,
6 the store is damaged (see `verify`), 7 the running server may have applied a
request whose answer was lost."
)]
pub struct Args {
    /// state directory holding the store and the instance key (default:
    /// $LATTICE_PATH, else $STATE_DIRECTORY, else ./ark-lattice-data)
    #[argh(option)]
    pub data_dir: Option<String>,

    /// store page cache in MiB (default: $ARK_CACHE_MB, else 16)
    #[argh(option)]
    pub cache_mb: Option<u64>,

    /// log each step to stderr (also DEBUG=ark:*)
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// the instance key file (default: $ARK_FED_PRIVKEY as a base64 seed, else
    /// identity.key in the state dir, made on first use)
    #[argh(option)]
    pub key_file: Option<String>,

    /// trust only the CAs in this PEM file for https:// peers and hubs, instead of
    /// the system's (default: $ARK_CA_FILE)
    #[argh(option)]
    pub ca_file: Option<String>,

    /// trust https:// peers by the SHA-256 fingerprint of their certificate
    /// (sha256:<hex>, as `serve --tls-cert` prints it; repeatable) instead of by CA
    /// (default: $ARK_TLS_PIN, comma-separated)
    #[argh(option)]
    pub tls_pin: Vec<String>,

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
    Verify(Verify),
    Conflicts(Conflicts),
    Gc(Gc),
    Serve(Serve),
    Federation(Federation),
    Keygen(Keygen),
    Trust(TrustArgs),
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

/// Check the whole store: redb's check of every page, then every record's content hash,
/// id and signature. Damaged records are moved aside (kept in the store's `damaged`
/// table) so the next sync fetches them again from a peer. Exits with 6 on damage.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "verify",
    example = "ark-lattice verify --json",
    note = "While `serve` holds the store, the check runs in the server and pauses it for as long as the check takes."
)]
pub struct Verify {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// skip redb's page check and only read the records (what `verify` runs in a child
    /// process when the page check failed, so a damaged page cannot stop the report)
    #[argh(switch)]
    pub skip_page_check: bool,
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

/// Purge tombstones of old deletes. Tombstones are kept by default, because a peer that
/// has not seen a delete yet would otherwise hand the deleted record back.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "gc",
    example = "ark-lattice gc --tombstones-older-than 90",
    note = "Only purge tombstones older than the longest time any peer may stay offline:\na peer that still holds the live record and syncs after the purge brings it\nback (it resurrects), since nothing here says it was deleted any more."
)]
pub struct Gc {
    /// purge tombstones of deletes older than this many days
    #[argh(option)]
    pub tombstones_older_than: Option<u64>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Run the federation node in the foreground: HTTP on one thread, syncs and timers on
/// the same loop. SIGTERM/SIGINT shut it down gracefully.
#[derive(FromArgs, Debug, Default)]
#[argh(
    subcommand,
    name = "serve",
    example = "ark-lattice serve --port 9000",
    example = "FEDERATION_MODE=hub FEDERATION_HUB_URL=http://hub.lan:9000 ark-lattice serve",
    note = "Environment: FEDERATION_PORT, FEDERATION_MODE (p2p|hub|hybrid),\nFEDERATION_HUB_URL, FEDERATION_AUTO_SYNC, FEDERATION_SYNC_INTERVAL (ms),\nFEDERATION_DISCOVERY, FEDERATION_BEACON_PORT, FEDERATION_BEACON_GROUP,\nFEDERATION_BEACON_INTERVAL (s), FEDERATION_ON_EVENT, ARK_ADMIN_TOKEN, ARK_NODE_ID.\nFlags win over environment."
)]
pub struct Serve {
    /// port to listen on (default: $FEDERATION_PORT, else 9000)
    #[argh(option)]
    pub port: Option<u16>,
    /// address to listen on (default 0.0.0.0)
    #[argh(option)]
    pub bind: Option<String>,
    /// serve HTTPS with this PEM certificate chain (with --tls-key; re-read on SIGHUP)
    /// (default: $ARK_TLS_CERT, else plain HTTP)
    #[argh(option)]
    pub tls_cert: Option<String>,
    /// the PEM private key of --tls-cert (default: $ARK_TLS_KEY)
    #[argh(option)]
    pub tls_key: Option<String>,
    /// when the port is busy, try the next ones instead of failing
    #[argh(switch)]
    pub port_fallback: bool,
    /// p2p, hub or hybrid (default: $FEDERATION_MODE, else p2p)
    #[argh(option)]
    pub mode: Option<String>,
    /// the hub's URL for hub and hybrid modes (default: $FEDERATION_HUB_URL)
    #[argh(option)]
    pub hub_url: Option<String>,
    /// sync with peers periodically (default: $FEDERATION_AUTO_SYNC, else off)
    #[argh(switch)]
    pub auto_sync: bool,
    /// auto-sync interval in milliseconds (default: $FEDERATION_SYNC_INTERVAL, else 60000)
    #[argh(option)]
    pub sync_interval: Option<u64>,
    /// refuse versions more than this many seconds ahead of our clock (default 300)
    #[argh(option)]
    pub max_clock_skew: Option<u64>,
    /// most concurrent HTTP connections; beyond it the longest-stalled connection of
    /// the busiest address is closed (default 256)
    #[argh(option)]
    pub max_connections: Option<usize>,
    /// most concurrent HTTP connections from one address (an IPv6 /64 counts as one);
    /// beyond it that address's longest-stalled connection is closed (default 32)
    #[argh(option)]
    pub max_connections_per_address: Option<usize>,
    /// most long-polls (peers waiting for changes, as `--watch` does) held at once
    /// besides the HTTP connections above; beyond it a long-poll counts as one of
    /// them (default 2048, at most 256 from one address)
    #[argh(option)]
    pub max_long_polls: Option<usize>,
    /// largest request body in KiB; larger gets 413 (default 4096)
    #[argh(option)]
    pub max_body_kb: Option<usize>,
    /// strict (signed, trusted callers only; default) or open (also ARK's unsigned
    /// protocol, for trusted LANs) (default: $FEDERATION_TRUST)
    #[argh(option)]
    pub trust: Option<String>,
    /// a reverse proxy on this host forwards requests here: local callers need the admin
    /// token too (requests with Forwarded/X-Forwarded-For/X-Real-IP always do)
    #[argh(switch)]
    pub behind_proxy: bool,
    /// accept manifests at POST /manifest from keys we do not trust, as ARK's Python
    /// service did
    #[argh(switch)]
    pub open_registration: bool,
    /// seconds a registered spoke stays in /discover without a heartbeat (default 120)
    #[argh(option)]
    pub peer_ttl: Option<u64>,
    /// do not announce this node or listen for others on the LAN (default: on for
    /// local and pi instances, never on cloud ones; also FEDERATION_DISCOVERY=false)
    #[argh(switch)]
    pub no_discovery: bool,
    /// UDP port of the LAN beacon (default: $FEDERATION_BEACON_PORT, else 8103)
    #[argh(option)]
    pub beacon_port: Option<u16>,
    /// multicast group of the LAN beacon (default: $FEDERATION_BEACON_GROUP, else
    /// 239.255.0.1)
    #[argh(option)]
    pub beacon_group: Option<String>,
    /// IPv4 address of the interface to multicast on (default: the kernel's choice)
    #[argh(option)]
    pub beacon_interface: Option<String>,
    /// send beacons to this address (ip:port) instead of the multicast group
    /// (repeatable; for networks without multicast, and for tests)
    #[argh(option)]
    pub beacon_unicast: Vec<String>,
    /// seconds between beacons (default: $FEDERATION_BEACON_INTERVAL, else 60)
    #[argh(option)]
    pub beacon_interval: Option<u64>,
    /// run this shell command for each federation event, with the event as JSON on
    /// its standard input (default: $FEDERATION_ON_EVENT)
    #[argh(option)]
    pub on_event: Option<String>,
    /// keep a long-poll open to every peer, so their changes arrive within about a
    /// second (default: $FEDERATION_WATCH, else off)
    #[argh(switch)]
    pub watch: bool,
    /// send at most this many bytes per second to peers; loopback callers such as the
    /// CLI are not capped (default: $FEDERATION_MAX_SEND_RATE, else no cap)
    #[argh(option)]
    pub max_send_rate: Option<u64>,
    /// receive at most this many bytes per second (default:
    /// $FEDERATION_MAX_RECV_RATE, else no cap)
    #[argh(option)]
    pub max_recv_rate: Option<u64>,
}

/// Manage federation: the background server, peers and syncs.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "federation",
    example = "ark-lattice federation start",
    example = "ark-lattice federation status"
)]
pub struct Federation {
    #[argh(subcommand)]
    pub command: FederationCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum FederationCommand {
    Start(Box<FederationStart>),
    Stop(FederationStop),
    Status(FederationStatus),
    Sync(FederationSync),
    AddPeer(AddPeer),
    RemovePeer(RemovePeer),
    ListPeers(ListPeers),
    Discover(Discover),
    AutoSync(AutoSync),
}

/// Start `serve` in the background unless it is already running. It takes every flag
/// of `serve` (`--port`, `--port-fallback`, `--mode`, `--no-discovery`, ...) and passes
/// them on; `ark-lattice serve --help` lists them.
#[derive(Debug)]
pub struct FederationStart {
    /// The flags, read as `serve` reads them, so a bad one is reported here.
    pub serve: Serve,
    /// The flags as given, for the server started in the background.
    pub args: Vec<String>,
}

impl FromArgs for FederationStart {
    fn from_args(command_name: &[&str], args: &[&str]) -> Result<Self, argh::EarlyExit> {
        let serve = Serve::from_args(command_name, args).map_err(|mut early_exit| {
            // `--help` describes serve; say what start does with its flags.
            early_exit.output = early_exit.output.replacen(
                "Run the federation node in the foreground:",
                "Start the federation node in the background with these flags (as `serve`):",
                1,
            );
            early_exit
        })?;
        Ok(FederationStart {
            serve,
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        })
    }
}

impl argh::SubCommand for FederationStart {
    const COMMAND: &'static argh::CommandInfo = &argh::CommandInfo {
        name: "start",
        short: &'\0',
        description: "Start the federation server in the background; takes serve's flags.",
    };
}

/// Stop the background server gracefully.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop", example = "ark-lattice federation stop")]
pub struct FederationStop {}

/// Show the instance, its peers and sync statistics.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "status",
    example = "ark-lattice federation status --json"
)]
pub struct FederationStatus {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Sync now with one peer, or with every peer the mode selects.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "sync",
    example = "ark-lattice federation sync",
    example = "ark-lattice federation sync --peer http://192.168.1.20:9000"
)]
pub struct FederationSync {
    /// only this peer
    #[argh(option)]
    pub peer: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Add a peer by URL (http://host:port) and pin its public key.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "add-peer",
    example = "ark-lattice federation add-peer http://192.168.1.20:9000",
    example = "ark-lattice federation add-peer http://hub.lan:9000 --pubkey mWlY68JAew/ikr0FFKmUfI82TsYwxBCeFVmKp/KgMXs= --tier core",
    note = "The peer's key is fetched from its /federation/info (or given with --pubkey)\nand trusted with the tier (default core). Compare the printed fingerprint\nwith `ark-lattice federation status` on the peer."
)]
pub struct AddPeer {
    /// the peer's URL
    #[argh(positional)]
    pub url: String,
    /// the peer's public key (base64); checked against what the peer reports
    #[argh(option)]
    pub pubkey: Option<String>,
    /// core (two-way sync, default), sandbox (may pull) or external (info only)
    #[argh(option)]
    pub tier: Option<String>,
    /// exchange only nodes of this type with the peer, both ways (repeatable; default
    /// all types); given for a known peer, it replaces the peer's list
    #[argh(option, long = "types")]
    pub types: Vec<String>,
}

/// Remove a peer.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "remove-peer",
    example = "ark-lattice federation remove-peer http://192.168.1.20:9000"
)]
pub struct RemovePeer {
    /// the peer's URL
    #[argh(positional)]
    pub url: String,
}

/// List peers with their state and last sync.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "list-peers",
    example = "ark-lattice federation list-peers"
)]
pub struct ListPeers {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// List peers known to our peers and hub, and peers on the LAN: those whose beacons the
/// running server heard and, with --scan, those answering on the local /24.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "discover",
    example = "ark-lattice federation discover",
    example = "ark-lattice federation discover --scan --add"
)]
pub struct Discover {
    /// add what was found as peers (unsigned ARK beacons are listed, not added)
    #[argh(switch)]
    pub add: bool,
    /// also probe every address of the local /24 for /federation/info
    #[argh(switch)]
    pub scan: bool,
    /// the network to scan instead of this machine's /24, e.g. 192.168.1.0/24
    #[argh(option)]
    pub subnet: Option<String>,
    /// the port to probe (default: this instance's federation port)
    #[argh(option)]
    pub scan_port: Option<u16>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Turn auto-sync on or off. The setting and interval outlive a restart.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "auto-sync",
    example = "ark-lattice federation auto-sync --start",
    example = "ark-lattice federation auto-sync off"
)]
pub struct AutoSync {
    /// turn it on (as `on`)
    #[argh(switch)]
    pub start: bool,
    /// turn it off (as `off`)
    #[argh(switch)]
    pub stop: bool,
    /// sync every this many milliseconds from now on
    #[argh(option)]
    pub interval: Option<u64>,
    /// on or off (or use --start/--stop)
    #[argh(positional)]
    pub state: Option<String>,
}

/// Make an Ed25519 key pair, printed as ARK's PyNaCl snippet printed it.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "keygen",
    example = "ark-lattice keygen",
    example = "ark-lattice keygen --out /etc/ark-lattice/identity.key",
    note = "Private Key is the base64 32-byte seed (ARK_FED_PRIVKEY), Public Key the base64\n32-byte verify key, both compatible with PyNaCl's SigningKey/VerifyKey."
)]
pub struct Keygen {
    /// write the key to this file (mode 0600) instead of printing the private key
    #[argh(option)]
    pub out: Option<String>,
}

/// Manage trusted keys: who may sync with this instance, and how.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "trust",
    example = "ark-lattice trust pending",
    example = "ark-lattice trust accept SHA256:4ea5-047e-57e7-ecc5"
)]
pub struct TrustArgs {
    #[argh(subcommand)]
    pub command: TrustCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum TrustCommand {
    Add(TrustAdd),
    List(TrustList),
    Remove(TrustRemove),
    Pending(TrustPending),
    Accept(TrustAccept),
}

/// Trust a public key.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "add",
    example = "ark-lattice trust add mWlY68JAew/ikr0FFKmUfI82TsYwxBCeFVmKp/KgMXs= --name hub --tier core"
)]
pub struct TrustAdd {
    /// base64 Ed25519 public key
    #[argh(positional)]
    pub pubkey: String,
    /// a name to show
    #[argh(option)]
    pub name: Option<String>,
    /// core (default), sandbox or external
    #[argh(option)]
    pub tier: Option<String>,
}

/// List trusted keys.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list", example = "ark-lattice trust list --json")]
pub struct TrustList {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Stop trusting a key (by fingerprint, instance id or public key).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "remove",
    example = "ark-lattice trust remove SHA256:4ea5-047e-57e7-ecc5"
)]
pub struct TrustRemove {
    /// fingerprint, instance id (prefix) or base64 key
    #[argh(positional)]
    pub key: String,
}

/// List keys that signed requests to us but are not trusted yet.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pending", example = "ark-lattice trust pending")]
pub struct TrustPending {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Trust a pending key after comparing its fingerprint.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "accept",
    example = "ark-lattice trust accept SHA256:4ea5-047e-57e7-ecc5"
)]
pub struct TrustAccept {
    /// fingerprint, instance id (prefix) or base64 key
    #[argh(positional)]
    pub key: String,
    /// core (default), sandbox or external
    #[argh(option)]
    pub tier: Option<String>,
}
