//! The one place that reads flags and environment variables. Everything is read once
//! into a validated [`Config`]; every default lives here.

use std::fmt;
use std::path::PathBuf;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::cli::{Args, Command, Serve};
use crate::error::Error;
use crate::http::{ClientConfig, PeerUrl, ServerLimits};
#[cfg(feature = "tls")]
use crate::http::{Fingerprint, PeerTrust};
use crate::model::{LIMITS, RECORD_ENVELOPE_BYTES};

/// The state dir when neither `--data-dir` nor `LATTICE_PATH` is given.
pub const DEFAULT_DATA_DIR: &str = "ark-lattice-data";
/// The store file inside the state dir.
pub const STORE_FILE: &str = "lattice.redb";
/// redb page cache when neither `--cache-mb` nor `ARK_CACHE_MB` is given.
pub const DEFAULT_CACHE_MB: u64 = 16;
/// How long `serve` and store commands wait for a store another process holds (a CLI
/// command finishing, a server starting) when `ARK_STORE_WAIT` is not given.
pub const DEFAULT_STORE_WAIT_SECS: u64 = 30;
/// The largest `ARK_CLOCK_OFFSET_MS`, either way: a day.
pub const MAX_CLOCK_OFFSET_MILLIS: i64 = 24 * 60 * 60 * 1000;
/// The largest `ARK_STORE_WAIT`, `--peer-ttl` and `--max-clock-skew`: a day. Larger
/// values meant nothing an operator could want, and overflowed the clock arithmetic
/// (a wait of 2^64 - 1 seconds panicked at its deadline).
pub const MAX_SETTING_SECS: u64 = 24 * 60 * 60;
/// Records per import transaction: one fsync per batch, not per record.
pub const IMPORT_BATCH: usize = 2000;

/// The federation port when neither `--port` nor `FEDERATION_PORT` is given (ARK's).
pub const DEFAULT_PORT: u16 = 9000;
/// Auto-sync interval when neither `--sync-interval` nor `FEDERATION_SYNC_INTERVAL` is
/// given: ARK's one minute, in milliseconds.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 60_000;
/// Versions further ahead of our clock than this are refused.
pub const DEFAULT_MAX_CLOCK_SKEW_SECS: u64 = 300;
/// Records and bytes per sync batch, each batch one transaction and one checkpoint.
/// Bytes are counted by `model::wire_record_bytes`; a batch stops once it holds
/// `SYNC_BATCH_BYTES`, so it carries at most that plus one record.
pub const SYNC_BATCH_RECORDS: usize = 500;
pub const SYNC_BATCH_BYTES: usize = 1024 * 1024;

// The record limits, one set (issue 10): any record valid for import fits a push and a
// pull page, so no accepted record can wedge a sync. The chain, checked by the test
// `record_limits_fit_every_message`:
//
//   record JSON      <= LIMITS.record_json_bytes                       2 MiB
//   record on wire   <= MAX_RECORD_WIRE_BYTES (+ envelope, id again)   2 MiB + 1202
//   push body        <= MAX_PUSH_BODY_BYTES   (a batch + one record)   3 MiB + 2226
//                    <= the smallest --max-body-kb accepted            3075 KiB
//                    <= ServerLimits::default().max_body_bytes         4 MiB
//   pull/fetch page  <= MAX_PAGE_BYTES + MAX_RECORD_WIRE_BYTES + 1 KiB 10 MiB + 2226
//                    <= ClientConfig::default().max_response_bytes     16 MiB

/// The most bytes one valid record takes on the v2 wire: its JSON at the limit, the
/// envelope, and the id a second time (200 characters of up to 4 bytes, quoted).
pub const MAX_RECORD_WIRE_BYTES: usize =
    LIMITS.record_json_bytes + RECORD_ENVELOPE_BYTES + 4 * LIMITS.id_chars + 2;
/// What a push body's own fields (`instanceId`, brackets) add to its records, rounded up.
pub const MESSAGE_ENVELOPE_BYTES: usize = 1024;
/// The largest push body this node sends: a batch of [`SYNC_BATCH_BYTES`] plus the one
/// record that crossed it. A server must accept bodies this large.
pub const MAX_PUSH_BODY_BYTES: usize =
    SYNC_BATCH_BYTES + MAX_RECORD_WIRE_BYTES + MESSAGE_ENVELOPE_BYTES;
/// The most `max_bytes` a `changes` or `fetch` request may ask for.
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
const _: () = assert!(SYNC_BATCH_BYTES <= MAX_PAGE_BYTES);
/// How long auto-sync waits after a local write before it pushes: a burst of writes
/// (an import's batches, a script's adds) goes out in one round.
pub const LOCAL_CHANGE_SYNC_DELAY: Duration = Duration::from_secs(1);
/// Backoff after failed syncs with a peer: doubling from the base, capped.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
pub const BACKOFF_CAP: Duration = Duration::from_secs(15 * 60);
/// The base of the backoff after a peer answered 5xx or 429: it is up but failing or
/// overloaded, and asking every few seconds adds to its load.
pub const BACKOFF_PEER_FAILING_BASE: Duration = Duration::from_secs(30);

/// The lowest bandwidth cap accepted, bytes per second: below it a single request head
/// takes seconds.
pub const MIN_RATE: u64 = 1024;
/// How long a watched peer's long-poll is held (`--watch`); under the client's request
/// timeout and the server's limit.
pub const WATCH_WAIT: Duration = Duration::from_secs(20);

/// How long a registered spoke stays in the hub's `/discover` without a heartbeat
/// (ARK's Python service used 120 s).
pub const DEFAULT_PEER_TTL_SECS: u64 = 120;
/// How often a spoke re-registers its manifest at its hub.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);

/// Which callers the peer endpoints serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustMode {
    /// Our endpoints need requests signed by a trusted key, and records must carry
    /// valid author signatures. The default.
    Strict,
    /// Unsigned callers are served as core peers and unsigned records accepted: ARK's
    /// Node.js protocol, for trusted LANs with old ARK peers (`FEDERATION_TRUST=open`).
    Open,
}

/// Where the instance key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `identity.key` in the state dir, made on first use.
    StateDir,
    /// `--key-file PATH`.
    File(PathBuf),
    /// `ARK_FED_PRIVKEY`: a base64 seed, as ARK's PyNaCl snippet prints it.
    Seed(String),
}
/// ARK's Python federation beacon: multicast group, UDP port and interval.
pub const DEFAULT_BEACON_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 0, 1);
pub const DEFAULT_BEACON_PORT: u16 = 8103;
pub const DEFAULT_BEACON_INTERVAL_SECS: u64 = 60;
/// A peer whose beacon was not heard for this many intervals has expired (ARK's 300 s
/// at its 60 s interval).
pub const BEACON_EXPIRY_INTERVALS: u32 = 5;
/// Most peers kept from LAN beacons. Anyone on the LAN can send beacons under made-up
/// ids (issue 10: 10,000 of them), so the table is capped; beyond it the peer heard
/// least recently (unsigned ones first) makes room.
pub const MAX_LAN_PEERS: usize = 256;
/// Most pending trust entries (keys that signed a request but nobody accepted) kept in
/// the store; beyond it the ones seen least recently are dropped. Unknown keys are
/// written in one transaction every `PENDING_FLUSH_INTERVAL`, not one per request.
pub const MAX_PENDING_TRUST: usize = 256;
pub const PENDING_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// The open registry (`--open-registration`): most spokes registered at once, and the
/// bound on what `/discover` lists for one (the manifest without its node list, plus
/// its key, fingerprint, URL and times, and a comma), so `/discover` stays under
/// `MAX_REGISTRATIONS × MAX_REGISTRATION_BYTES` (2 MiB).
pub const MAX_REGISTRATIONS: usize = 512;
pub const MAX_REGISTRATION_BYTES: usize = 4096;
/// The held table's bounds (`sync::held_room`; `ARK_MAX_HELD_RECORDS`,
/// `ARK_MAX_HELD_MB`): records received but held back (author not trusted yet, clock
/// ahead). Beyond either, the oldest are dropped and fetched again once there is room.
pub const DEFAULT_MAX_HELD_RECORDS: usize = 100_000;
pub const DEFAULT_MAX_HELD_MB: u64 = 64;

/// ARK's federation modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FederationMode {
    /// Sync with every peer.
    P2p,
    /// With a hub URL, a spoke: sync only with the hub. Without one, this instance is
    /// the hub (the guide's cloud hub sets `FEDERATION_MODE=hub` alone): it syncs with
    /// every peer and keeps the registry of spokes.
    Hub,
    /// The hub and direct peers.
    Hybrid,
}

impl FederationMode {
    pub fn parse(text: &str) -> Result<FederationMode, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "p2p" | "peer" | "peer-to-peer" => Ok(FederationMode::P2p),
            "hub" | "hub-spoke" | "hub-and-spoke" => Ok(FederationMode::Hub),
            "hybrid" => Ok(FederationMode::Hybrid),
            other => Err(format!(
                "federation mode {other:?} is not p2p, hub or hybrid"
            )),
        }
    }
}

impl fmt::Display for FederationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FederationMode::P2p => "p2p",
            FederationMode::Hub => "hub",
            FederationMode::Hybrid => "hybrid",
        })
    }
}

/// ARK's instance types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceType {
    Local,
    Cloud,
    Pi,
}

impl InstanceType {
    pub fn parse(text: &str) -> Result<InstanceType, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(InstanceType::Local),
            "cloud" => Ok(InstanceType::Cloud),
            "pi" => Ok(InstanceType::Pi),
            other => Err(format!("instance type {other:?} is not local, cloud or pi")),
        }
    }
}

impl fmt::Display for InstanceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceType::Local => "local",
            InstanceType::Cloud => "cloud",
            InstanceType::Pi => "pi",
        })
    }
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub cache_bytes: usize,
    pub instance_type: InstanceType,
    /// Display name (`ARK_NODE_ID`); `ARK-{type}-{id prefix}` when unset.
    pub node_name: Option<String>,
    /// `ARK_ADMIN_TOKEN`: lets non-loopback callers use the control API.
    pub admin_token: Option<String>,
    pub verbose: bool,
    /// What the federation layer needs, also when the CLI syncs without a server.
    pub federation: FederationConfig,
    pub key_source: KeySource,
    /// `ARK_FED_PUBKEY`: a key trusted as core from the start (e.g. the hub's).
    pub trusted_key: Option<String>,
    /// `REDIS_URL` was set; it is ignored (state lives in the store), said once.
    pub redis_url_ignored: bool,
    /// LAN beacons (`serve` flags and `FEDERATION_DISCOVERY`/`FEDERATION_BEACON_*`).
    pub discovery: DiscoveryConfig,
    /// `--on-event` / `FEDERATION_ON_EVENT`: a shell command run for each event.
    pub on_event: Option<String>,
    pub tls: TlsConfig,
    /// `ARK_STORE_WAIT` (seconds): how long to wait for a store held by another process.
    pub store_wait: Duration,
    /// `ARK_CLOCK_OFFSET_MS`: milliseconds added to this process's wall clock, so tests
    /// can run a node whose clock is ahead (or behind) without touching the machine's.
    pub clock_offset_millis: i64,
}

/// HTTPS settings: which certificates `https://` peers may present (`--ca-file`,
/// `--tls-pin`; default the system's CAs) and the server's own (`serve --tls-cert`,
/// `--tls-key`; default none, plain HTTP).
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    #[cfg(feature = "tls")]
    pub peer_trust: PeerTrust,
    /// The server's certificate chain and private key files.
    pub server_files: Option<(PathBuf, PathBuf)>,
}

impl TlsConfig {
    pub(crate) fn from_flags(
        args: &Args,
        serve: &Serve,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TlsConfig, Error> {
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let ca_file = args.ca_file.clone().or_else(|| env("ARK_CA_FILE"));
        let pins: Vec<String> = if args.tls_pin.is_empty() {
            env("ARK_TLS_PIN")
                .map(|text| text.split(',').map(str::to_owned).collect())
                .unwrap_or_default()
        } else {
            args.tls_pin.clone()
        };
        let cert = serve.tls_cert.clone().or_else(|| env("ARK_TLS_CERT"));
        let key = serve.tls_key.clone().or_else(|| env("ARK_TLS_KEY"));
        let server_files = match (cert, key) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::Config(
                    "--tls-cert (ARK_TLS_CERT) needs --tls-key (ARK_TLS_KEY)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::Config(
                    "--tls-key (ARK_TLS_KEY) needs --tls-cert (ARK_TLS_CERT)".into(),
                ));
            }
        };
        #[cfg(feature = "tls")]
        {
            let peer_trust = match (ca_file, pins.is_empty()) {
                (Some(_), false) => {
                    return Err(Error::Config(
                        "give either a CA file (--ca-file, ARK_CA_FILE) or pinned \
                         certificates (--tls-pin, ARK_TLS_PIN), not both"
                            .into(),
                    ));
                }
                (Some(path), true) => PeerTrust::CaFile(PathBuf::from(path)),
                (None, false) => PeerTrust::Pinned(
                    pins.iter()
                        .map(|pin| Fingerprint::parse(pin))
                        .collect::<Result<_, _>>()
                        .map_err(|reason| {
                            Error::Config(format!("--tls-pin (ARK_TLS_PIN): {reason}"))
                        })?,
                ),
                (None, true) => PeerTrust::SystemRoots,
            };
            Ok(TlsConfig {
                peer_trust,
                server_files,
            })
        }
        #[cfg(not(feature = "tls"))]
        {
            if ca_file.is_some() || !pins.is_empty() || server_files.is_some() {
                return Err(Error::Config(
                    "this ark-lattice was built without TLS (cargo feature `tls`): \
                     --ca-file, --tls-pin, --tls-cert and --tls-key are not available"
                        .into(),
                ));
            }
            Ok(TlsConfig { server_files })
        }
    }
}

/// LAN discovery settings. Defaults: on for `local` and `pi` instances, off for `cloud`
/// ones (which never multicast); group 239.255.0.1, port 8103, every 60 s, the
/// kernel's choice of interface, no unicast targets.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    pub enabled: bool,
    pub group: Ipv4Addr,
    pub port: u16,
    /// The interface to multicast on; unspecified lets the kernel choose by route.
    pub interface: Ipv4Addr,
    /// When not empty, beacons go to these addresses instead of the group, and the
    /// socket joins no group.
    pub unicast: Vec<SocketAddr>,
    pub interval: Duration,
}

/// Federation settings (from `serve` flags and `FEDERATION_*` variables).
#[derive(Debug, Clone)]
pub struct FederationConfig {
    pub bind: IpAddr,
    pub port: u16,
    pub port_fallback: bool,
    pub mode: FederationMode,
    pub hub_url: Option<String>,
    pub auto_sync: bool,
    pub sync_interval: Duration,
    pub max_clock_skew: Duration,
    pub limits: ServerLimits,
    pub client: ClientConfig,
    pub trust: TrustMode,
    /// A reverse proxy on this host forwards every request: being local no longer
    /// opens the control API (`--behind-proxy`, `ARK_BEHIND_PROXY`).
    pub behind_proxy: bool,
    /// Accept `POST /manifest` from keys we do not trust (ARK's Python behaviour).
    pub open_registration: bool,
    pub peer_ttl: Duration,
    /// Keep a long-poll open to every sync target (`--watch`).
    pub watch: bool,
    /// Bandwidth caps in bytes per second (`--max-send-rate`, `--max-recv-rate`).
    pub max_send_rate: Option<u64>,
    pub max_recv_rate: Option<u64>,
    /// The held table's bounds: records, bytes (`sync::held_room`).
    pub max_held_records: usize,
    pub max_held_bytes: usize,
}

impl Config {
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join(STORE_FILE)
    }

    /// Builds the config from parsed flags and an environment lookup (`std::env::var`
    /// in `main`, a table in tests).
    pub fn from_args(args: &Args, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| env("LATTICE_PATH").filter(|path| !path.is_empty()))
            // systemd's StateDirectory= (the unit in systemd/ sets it).
            .or_else(|| env("STATE_DIRECTORY").filter(|path| !path.is_empty()))
            .unwrap_or_else(|| DEFAULT_DATA_DIR.to_owned());
        if data_dir.trim().is_empty() {
            return Err(Error::Config("--data-dir is empty".into()));
        }
        let cache_mb = match (args.cache_mb, env("ARK_CACHE_MB")) {
            (Some(flag), _) => flag,
            (None, Some(text)) => text.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "ARK_CACHE_MB={text:?} is not a whole number of MiB"
                ))
            })?,
            (None, None) => DEFAULT_CACHE_MB,
        };
        if !(1..=65_536).contains(&cache_mb) {
            return Err(Error::Config(format!(
                "--cache-mb (ARK_CACHE_MB): a store cache of {cache_mb} MiB is outside 1..=65536"
            )));
        }
        let instance_type = match env("ARK_INSTANCE_TYPE").filter(|text| !text.is_empty()) {
            Some(text) => InstanceType::parse(&text)
                .map_err(|reason| Error::Config(format!("ARK_INSTANCE_TYPE: {reason}")))?,
            None => InstanceType::Local,
        };
        let default_serve = Serve::default();
        // `federation start` takes serve's flags, and reports a bad one before it starts.
        let serve_flags = match &args.command {
            Some(Command::Serve(flags)) => flags,
            Some(Command::Federation(federation)) => match &federation.command {
                crate::cli::FederationCommand::Start(start) => &start.serve,
                _ => &default_serve,
            },
            _ => &default_serve,
        };
        let federation = FederationConfig::from_flags(serve_flags, env)?;
        let tls = TlsConfig::from_flags(args, serve_flags, env)?;
        let discovery = DiscoveryConfig::from_flags(serve_flags, env, instance_type)?;
        let on_event = serve_flags
            .on_event
            .clone()
            .or_else(|| env("FEDERATION_ON_EVENT"))
            .filter(|command| !command.trim().is_empty());
        let debug = env("DEBUG").unwrap_or_default();
        let verbose = args.verbose
            || debug
                .split(',')
                .any(|scope| scope.trim().starts_with("ark:"));
        Ok(Config {
            data_dir: PathBuf::from(data_dir),
            cache_bytes: (cache_mb * 1024 * 1024) as usize,
            instance_type,
            node_name: node_name(env("ARK_NODE_ID"))?,
            admin_token: env("ARK_ADMIN_TOKEN").filter(|token| !token.is_empty()),
            verbose,
            federation,
            key_source: match (
                &args.key_file,
                env("ARK_FED_PRIVKEY").filter(|seed| !seed.trim().is_empty()),
            ) {
                (Some(path), _) => KeySource::File(PathBuf::from(path)),
                (None, Some(seed)) => KeySource::Seed(seed.trim().to_owned()),
                (None, None) => KeySource::StateDir,
            },
            trusted_key: env("ARK_FED_PUBKEY")
                .map(|key| key.trim().to_owned())
                .filter(|key| !key.is_empty()),
            redis_url_ignored: env("REDIS_URL").is_some_and(|url| !url.is_empty()),
            discovery,
            on_event,
            tls,
            store_wait: store_wait(env("ARK_STORE_WAIT"))?,
            clock_offset_millis: match env("ARK_CLOCK_OFFSET_MS") {
                Some(text) => text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|offset: &i64| offset.abs() <= MAX_CLOCK_OFFSET_MILLIS)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "ARK_CLOCK_OFFSET_MS={text:?} is not a number of milliseconds within ±{MAX_CLOCK_OFFSET_MILLIS}"
                        ))
                    })?,
                None => 0,
            },
        })
    }

    /// The name shown to peers: `ARK_NODE_ID`, else ARK's `ARK-{type}-{id prefix}`.
    pub(crate) fn instance_name(&self, instance_short_id: &str) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(|| format!("ARK-{}-{instance_short_id}", self.instance_type))
    }
}

/// `ARK_STORE_WAIT`, from 0 to [`MAX_SETTING_SECS`] seconds.
fn store_wait(value: Option<String>) -> Result<Duration, Error> {
    let seconds = match value {
        Some(text) => text
            .trim()
            .parse()
            .ok()
            .filter(|seconds| *seconds <= MAX_SETTING_SECS)
            .ok_or_else(|| {
                Error::Config(format!(
                    "ARK_STORE_WAIT={text:?} is not a whole number of seconds from 0 to {MAX_SETTING_SECS}"
                ))
            })?,
        None => DEFAULT_STORE_WAIT_SECS,
    };
    Ok(Duration::from_secs(seconds))
}

/// `ARK_NODE_ID`, the name peers, status pages and logs show: blank is unset; a
/// control character (which would forge lines in logs and listings) or a name longer
/// than an id may be is refused.
fn node_name(value: Option<String>) -> Result<Option<String>, Error> {
    let Some(name) = value.filter(|name| !name.trim().is_empty()) else {
        return Ok(None);
    };
    if name.chars().any(char::is_control) || name.chars().count() > MAX_NODE_NAME_CHARS {
        return Err(Error::Config(format!(
            "ARK_NODE_ID={name:?} is not a name of 1 to {MAX_NODE_NAME_CHARS} characters without control characters"
        )));
    }
    Ok(Some(name))
}

/// The longest `ARK_NODE_ID`, in characters (as a record id).
const MAX_NODE_NAME_CHARS: usize = 200;

/// The environment as `serve`'s settings read it: blank values count as unset, and a
/// value that does not parse is an error naming the variable.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    fn invalid(name: &str, value: &str, expected: &str) -> Error {
        Error::Config(format!("{name}={value:?} is not {expected}"))
    }

    /// A switch: on with its flag, else as the variable says (`true`/`false`, ...).
    fn switch(&self, flag: bool, name: &str) -> Result<bool, Error> {
        if flag {
            return Ok(true);
        }
        match self.get(name) {
            None => Ok(false),
            Some(text) => {
                parse_bool(&text).ok_or_else(|| Env::invalid(name, &text, "true or false"))
            }
        }
    }

    /// A number: its flag, else the variable, else `None`.
    fn number<T: std::str::FromStr>(
        &self,
        flag: Option<T>,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, Error> {
        match (flag, self.get(name)) {
            (Some(value), _) => Ok(Some(value)),
            (None, Some(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Env::invalid(name, &text, expected)),
            (None, None) => Ok(None),
        }
    }

    /// A bound of the held table: the variable, from 1 to 10⁹, else `default`.
    fn held_bound(&self, name: &str, default: u64) -> Result<u64, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|value| (1..=1_000_000_000).contains(value))
                .ok_or_else(|| Env::invalid(name, &text, "a whole number from 1 to 1000000000")),
        }
    }

    /// A rate limit in bytes per second, at least [`MIN_RATE`].
    fn rate(&self, flag: Option<u64>, name: &str) -> Result<Option<u64>, Error> {
        match self.number(flag, name, "a number of bytes per second")? {
            Some(rate) if rate < MIN_RATE => Err(Error::Config(format!(
                "a rate of {rate} bytes/s ({name}) is below the {MIN_RATE} bytes/s minimum"
            ))),
            rate => Ok(rate),
        }
    }
}

impl FederationConfig {
    /// Reads `serve`'s flags over the `FEDERATION_*` environment over the defaults.
    pub(crate) fn from_flags(
        flags: &Serve,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FederationConfig, Error> {
        let env = Env(env);
        let port = env
            .number(flags.port, "FEDERATION_PORT", "a port number (0-65535)")?
            .unwrap_or(DEFAULT_PORT);
        let bind_text = flags.bind.clone().unwrap_or_else(|| "0.0.0.0".to_owned());
        let bind: IpAddr = bind_text
            .parse()
            .map_err(|_| Error::Config(format!("--bind {bind_text:?} is not an IP address")))?;
        let mode = match flags.mode.clone().or_else(|| env.get("FEDERATION_MODE")) {
            Some(text) => FederationMode::parse(&text)
                .map_err(|reason| Error::Config(format!("--mode (FEDERATION_MODE): {reason}")))?,
            None => FederationMode::P2p,
        };
        let hub_url = match flags
            .hub_url
            .clone()
            .or_else(|| env.get("FEDERATION_HUB_URL"))
        {
            Some(url) => Some(normalize_peer_url(&url).map_err(|reason| {
                Error::Config(format!("--hub-url (FEDERATION_HUB_URL): {reason}"))
            })?),
            None => None,
        };
        let auto_sync = env.switch(flags.auto_sync, "FEDERATION_AUTO_SYNC")?;
        let interval_ms = env
            .number(
                flags.sync_interval,
                "FEDERATION_SYNC_INTERVAL",
                "a number of milliseconds",
            )?
            .unwrap_or(DEFAULT_SYNC_INTERVAL_MS);
        if interval_ms < 100 {
            return Err(Error::Config(format!(
                "--sync-interval (FEDERATION_SYNC_INTERVAL): {interval_ms} ms is below the 100 ms minimum"
            )));
        }
        let limits = server_limits(flags)?;
        let trust = trust_mode(flags.trust.clone().or_else(|| env.get("FEDERATION_TRUST")))?;
        let watch = env.switch(flags.watch, "FEDERATION_WATCH")?;
        let max_send_rate = env.rate(flags.max_send_rate, "FEDERATION_MAX_SEND_RATE")?;
        let max_recv_rate = env.rate(flags.max_recv_rate, "FEDERATION_MAX_RECV_RATE")?;
        let max_held_records =
            env.held_bound("ARK_MAX_HELD_RECORDS", DEFAULT_MAX_HELD_RECORDS as u64)? as usize;
        let max_held_bytes = (env.held_bound("ARK_MAX_HELD_MB", DEFAULT_MAX_HELD_MB)? as usize)
            .saturating_mul(1024 * 1024);
        let peer_ttl = flags.peer_ttl.unwrap_or(DEFAULT_PEER_TTL_SECS);
        if !(1..=MAX_SETTING_SECS).contains(&peer_ttl) {
            return Err(Error::Config(format!(
                "--peer-ttl must be from 1 to {MAX_SETTING_SECS} seconds"
            )));
        }
        let max_clock_skew = flags.max_clock_skew.unwrap_or(DEFAULT_MAX_CLOCK_SKEW_SECS);
        if max_clock_skew > MAX_SETTING_SECS {
            return Err(Error::Config(format!(
                "--max-clock-skew must be at most {MAX_SETTING_SECS} seconds"
            )));
        }
        let behind_proxy = env.switch(flags.behind_proxy, "ARK_BEHIND_PROXY")?;
        let limits = limits_behind_proxy(limits, behind_proxy);
        Ok(FederationConfig {
            trust,
            behind_proxy,
            open_registration: flags.open_registration,
            peer_ttl: Duration::from_secs(peer_ttl),
            watch,
            max_send_rate,
            max_recv_rate,
            max_held_records,
            max_held_bytes,
            bind,
            port,
            port_fallback: flags.port_fallback,
            mode,
            hub_url,
            auto_sync,
            sync_interval: Duration::from_millis(interval_ms),
            max_clock_skew: Duration::from_secs(max_clock_skew),
            limits,
            client: ClientConfig::default(),
        })
    }
}

/// `FEDERATION_TRUST` or `--trust`: strict (the default; `signed` is its old name) or
/// open.
fn trust_mode(text: Option<String>) -> Result<TrustMode, Error> {
    match text {
        None => Ok(TrustMode::Strict),
        Some(text) => match text.trim().to_ascii_lowercase().as_str() {
            "strict" | "signed" => Ok(TrustMode::Strict),
            "open" => Ok(TrustMode::Open),
            _ => Err(Env::invalid("FEDERATION_TRUST", &text, "strict or open")),
        },
    }
}

/// The limits as they apply with or without a proxy in front.
fn limits_behind_proxy(limits: ServerLimits, behind_proxy: bool) -> ServerLimits {
    ServerLimits {
        uncapped_loopback: !behind_proxy,
        // Behind a proxy every caller arrives from the proxy's address, so a share
        // per address would cap the whole node; the proxy (which buffers request
        // heads) is where callers are told apart. Body limits are the same as ever.
        max_connections_per_address: if behind_proxy {
            limits.max_connections
        } else {
            limits.max_connections_per_address
        },
        max_long_polls_per_address: if behind_proxy {
            limits.max_long_polls
        } else {
            limits.max_long_polls_per_address
        },
        ..limits
    }
}

/// The connection and body limits of `serve`'s flags over the defaults.
fn server_limits(flags: &Serve) -> Result<ServerLimits, Error> {
    let defaults = ServerLimits::default();
    let limits = ServerLimits {
        max_connections: flags.max_connections.unwrap_or(defaults.max_connections),
        max_connections_per_address: flags
            .max_connections_per_address
            .unwrap_or(defaults.max_connections_per_address),
        max_long_polls: flags.max_long_polls.unwrap_or(defaults.max_long_polls),
        max_long_polls_per_address: flags
            .max_long_polls
            .map_or(defaults.max_long_polls_per_address, |total| {
                total.min(defaults.max_long_polls_per_address)
            }),
        max_body_bytes: flags
            .max_body_kb
            .map_or(defaults.max_body_bytes, |kb| kb * 1024),
        ..defaults
    };
    if limits.max_connections == 0 || limits.max_connections_per_address == 0 {
        return Err(Error::Config(
            "--max-connections and --max-connections-per-address must be above 0".into(),
        ));
    }
    if limits.max_body_bytes < MAX_PUSH_BODY_BYTES {
        return Err(Error::Config(format!(
            "--max-body-kb must be at least {}: peers push up to {MAX_PUSH_BODY_BYTES} bytes at once (a batch and one record of the largest size)",
            MAX_PUSH_BODY_BYTES.div_ceil(1024)
        )));
    }
    Ok(limits)
}

impl DiscoveryConfig {
    /// Reads `serve`'s beacon flags over the `FEDERATION_DISCOVERY`/`FEDERATION_BEACON_*`
    /// environment over the defaults, for an instance of `instance_type`.
    pub(crate) fn from_flags(
        flags: &Serve,
        env: &dyn Fn(&str) -> Option<String>,
        instance_type: InstanceType,
    ) -> Result<DiscoveryConfig, Error> {
        let env = Env(env);
        let requested = env
            .get("FEDERATION_DISCOVERY")
            .map(|text| {
                parse_bool(&text)
                    .ok_or_else(|| Env::invalid("FEDERATION_DISCOVERY", &text, "true or false"))
            })
            .transpose()?;
        let port = env
            .number(
                flags.beacon_port,
                "FEDERATION_BEACON_PORT",
                "a port number (0-65535)",
            )?
            .unwrap_or(DEFAULT_BEACON_PORT);
        let group = match flags
            .beacon_group
            .clone()
            .or_else(|| env.get("FEDERATION_BEACON_GROUP"))
        {
            Some(text) => text
                .trim()
                .parse::<Ipv4Addr>()
                .ok()
                .filter(Ipv4Addr::is_multicast)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "--beacon-group (FEDERATION_BEACON_GROUP): {text:?} is not an IPv4 multicast address (224.0.0.0/4)"
                    ))
                })?,
            None => DEFAULT_BEACON_GROUP,
        };
        let interface = match flags
            .beacon_interface
            .clone()
            .or_else(|| env.get("FEDERATION_BEACON_INTERFACE"))
        {
            Some(text) => text.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "--beacon-interface (FEDERATION_BEACON_INTERFACE): {text:?} is not an IPv4 address"
                ))
            })?,
            None => Ipv4Addr::UNSPECIFIED,
        };
        let unicast = beacon_unicast(flags, &env)?;
        let interval_secs = env
            .number(
                flags.beacon_interval,
                "FEDERATION_BEACON_INTERVAL",
                "a number of seconds",
            )?
            .unwrap_or(DEFAULT_BEACON_INTERVAL_SECS);
        if interval_secs == 0 {
            return Err(Error::Config(
                "--beacon-interval (FEDERATION_BEACON_INTERVAL) must be at least 1 second".into(),
            ));
        }
        // A cloud VM's LAN is its provider's network: announcing ourselves there is
        // pointless at best, so a cloud instance never multicasts. Unicast targets are
        // explicit, so they are allowed.
        let enabled = if flags.no_discovery {
            false
        } else if instance_type == InstanceType::Cloud && unicast.is_empty() {
            if requested == Some(true) {
                return Err(Error::Config(
                    "FEDERATION_DISCOVERY=true on a cloud instance: cloud instances never multicast; give --beacon-unicast targets or set ARK_INSTANCE_TYPE=local".into(),
                ));
            }
            false
        } else {
            requested.unwrap_or(true)
        };
        Ok(DiscoveryConfig {
            enabled,
            group,
            port,
            interface,
            unicast,
            interval: Duration::from_secs(interval_secs),
        })
    }

    /// How long a peer stays listed after its last beacon.
    pub(crate) fn expiry(&self) -> Duration {
        self.interval * BEACON_EXPIRY_INTERVALS
    }
}

/// `--beacon-unicast` (repeated), else `FEDERATION_BEACON_UNICAST` (comma-separated).
fn beacon_unicast(flags: &Serve, env: &Env<'_>) -> Result<Vec<SocketAddr>, Error> {
    let unicast_texts: Vec<String> = if flags.beacon_unicast.is_empty() {
        env.get("FEDERATION_BEACON_UNICAST")
            .map(|list| list.split(',').map(|item| item.trim().to_owned()).collect())
            .unwrap_or_default()
    } else {
        flags.beacon_unicast.clone()
    };
    unicast_texts
        .iter()
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse::<SocketAddr>().map_err(|_| {
                Error::Config(format!(
                    "--beacon-unicast (FEDERATION_BEACON_UNICAST): {text:?} is not ip:port, e.g. 127.0.0.1:8103"
                ))
            })
        })
        .collect()
}

/// Validates a peer URL and writes it one way (`http[s]://host:port`, no trailing slash),
/// so the same peer is never listed twice.
pub fn normalize_peer_url(text: &str) -> Result<String, String> {
    let url = PeerUrl::parse(text.trim()).map_err(|error| error.to_string())?;
    let path = url.path_and_query().trim_end_matches('/');
    Ok(format!("{}://{}{path}", url.scheme(), url.authority()))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argh::FromArgs;

    fn config(argv: &[&str], env: &[(&str, &str)]) -> Result<Config, Error> {
        let args = Args::from_args(&["ark-lattice"], argv).expect("flags parse");
        let lookup = |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        };
        Config::from_args(&args, &lookup)
    }

    /// Issue 10: a valid 6.4 MB record made every later push answer 413, and a 17.5 MB
    /// one wedged pulls. Every limit a record passes through is derived from one.
    #[test]
    fn record_limits_fit_every_message() {
        assert_eq!(MAX_RECORD_WIRE_BYTES, 2 * 1024 * 1024 + 1202);
        assert_eq!(MAX_PUSH_BODY_BYTES, 3 * 1024 * 1024 + 2226);
        assert!(MAX_PUSH_BODY_BYTES <= ServerLimits::default().max_body_bytes);
        let largest_page = MAX_PAGE_BYTES + MAX_RECORD_WIRE_BYTES + MESSAGE_ENVELOPE_BYTES;
        assert!(largest_page <= ClientConfig::default().max_response_bytes);
    }

    #[test]
    fn body_limits_below_the_largest_push_are_refused() {
        let error = config(&["serve", "--max-body-kb", "3074"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--max-body-kb must be at least 3075"),
            "{error}"
        );
        let config = config(&["serve", "--max-body-kb", "3075"], &[]).unwrap();
        assert_eq!(config.federation.limits.max_body_bytes, 3075 * 1024);
    }

    #[test]
    fn flags_win_over_environment_over_defaults() {
        let defaults = config(&[], &[]).unwrap();
        assert_eq!(defaults.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(defaults.cache_bytes, 16 << 20);
        assert_eq!(defaults.instance_type, InstanceType::Local);
        let from_env = config(
            &[],
            &[
                ("LATTICE_PATH", "/srv/ark"),
                ("ARK_CACHE_MB", "4"),
                ("ARK_INSTANCE_TYPE", "pi"),
            ],
        )
        .unwrap();
        assert_eq!(from_env.data_dir, PathBuf::from("/srv/ark"));
        assert_eq!(from_env.cache_bytes, 4 << 20);
        assert_eq!(from_env.instance_type, InstanceType::Pi);
        let federation = &from_env.federation;
        assert_eq!(
            (federation.port, federation.mode, federation.auto_sync),
            (DEFAULT_PORT, FederationMode::P2p, false)
        );
        let from_flags = config(
            &["--data-dir", "here", "--cache-mb", "2"],
            &[("LATTICE_PATH", "/srv/ark"), ("ARK_CACHE_MB", "4")],
        )
        .unwrap();
        assert_eq!(from_flags.data_dir, PathBuf::from("here"));
        assert_eq!(from_flags.cache_bytes, 2 << 20);
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let error = config(&[], &[("ARK_CACHE_MB", "lots")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("ARK_CACHE_MB"), "{error}");
        let error = config(&[], &[("ARK_INSTANCE_TYPE", "mainframe")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ARK_INSTANCE_TYPE") && error.contains("mainframe"),
            "{error}"
        );
        let error = config(&["--cache-mb", "0"], &[]).unwrap_err().to_string();
        assert!(error.contains("0 MiB"), "{error}");
    }

    /// Every variable this config reads, set to garbage (or out of range), is refused
    /// with a message that names it; none is silently ignored or taken as a default.
    #[test]
    fn every_variable_with_a_bad_value_is_refused_by_name() {
        let serve = ["serve"];
        for (name, value) in [
            ("ARK_CACHE_MB", "lots"),
            ("ARK_CACHE_MB", "0"),
            ("ARK_CACHE_MB", "99999999"),
            ("ARK_INSTANCE_TYPE", "mainframe"),
            ("ARK_NODE_ID", "evil\nFederation server started"),
            ("ARK_NODE_ID", &"n".repeat(201)),
            ("ARK_STORE_WAIT", "soon"),
            ("ARK_STORE_WAIT", "18446744073709551615"),
            ("ARK_STORE_WAIT", "86401"),
            ("ARK_CLOCK_OFFSET_MS", "5s"),
            ("ARK_TLS_PIN", "sha256:beef"),
            ("ARK_MAX_HELD_RECORDS", "0"),
            ("ARK_MAX_HELD_MB", "many"),
            ("ARK_BEHIND_PROXY", "2"),
            ("FEDERATION_PORT", "99999"),
            ("FEDERATION_MODE", "star"),
            ("FEDERATION_HUB_URL", "hub.lan:9000"),
            ("FEDERATION_AUTO_SYNC", "maybe"),
            ("FEDERATION_SYNC_INTERVAL", "5"),
            ("FEDERATION_SYNC_INTERVAL", "-1"),
            ("FEDERATION_TRUST", "lax"),
            ("FEDERATION_WATCH", "sometimes"),
            ("FEDERATION_MAX_SEND_RATE", "1"),
            ("FEDERATION_MAX_RECV_RATE", "fast"),
            ("FEDERATION_DISCOVERY", "perhaps"),
            ("FEDERATION_BEACON_PORT", "65536"),
            ("FEDERATION_BEACON_GROUP", "10.0.0.1"),
            ("FEDERATION_BEACON_INTERFACE", "eth0"),
            ("FEDERATION_BEACON_UNICAST", "127.0.0.1"),
            ("FEDERATION_BEACON_INTERVAL", "0"),
        ] {
            let error = match config(&serve, &[(name, value)]) {
                Ok(_) => panic!("{name}={value:?} was accepted"),
                Err(error) => error.to_string(),
            };
            assert!(error.contains(name), "{name}={value:?}: {error}");
        }
        let error = config(&serve, &[("ARK_TLS_CERT", "/etc/cert.pem")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("ARK_TLS_KEY"), "{error}");
        for flags in [
            ["serve", "--peer-ttl", "18446744073709551615"],
            ["serve", "--max-clock-skew", "86401"],
        ] {
            let error = config(&flags, &[]).unwrap_err().to_string();
            assert!(error.contains(flags[1]), "{error}");
        }
    }

    #[test]
    fn federation_settings_come_from_ark_variables() {
        let env = [
            ("FEDERATION_PORT", "9100"),
            ("FEDERATION_MODE", "hybrid"),
            ("FEDERATION_HUB_URL", "http://hub.lan:9000/"),
            ("FEDERATION_AUTO_SYNC", "true"),
            ("FEDERATION_SYNC_INTERVAL", "60000"),
        ];
        let federation = config(&[], &env).unwrap().federation;
        assert_eq!(federation.port, 9100);
        assert_eq!(federation.mode, FederationMode::Hybrid);
        assert_eq!(federation.hub_url.as_deref(), Some("http://hub.lan:9000"));
        assert!(federation.auto_sync);
        assert_eq!(federation.sync_interval, Duration::from_secs(60));
        // The guide's hub sets the mode alone; its spokes set the hub's URL alone.
        let hub = config(&[], &[("FEDERATION_MODE", "hub")])
            .unwrap()
            .federation;
        assert_eq!((hub.mode, hub.hub_url), (FederationMode::Hub, None));
        let spoke = config(&[], &[("FEDERATION_HUB_URL", "http://hub:9000")])
            .unwrap()
            .federation;
        assert_eq!(spoke.mode, FederationMode::P2p);
        assert_eq!(spoke.sync_interval, Duration::from_millis(60_000));
        let error = config(&[], &[("FEDERATION_PORT", "99999")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("FEDERATION_PORT"), "{error}");
        let hub = config(
            &[],
            &[
                ("FEDERATION_HUB_URL", "https://hub"),
                ("FEDERATION_MODE", "hub"),
            ],
        );
        if cfg!(feature = "tls") {
            let hub_url = hub.unwrap().federation.hub_url;
            assert_eq!(hub_url.as_deref(), Some("https://hub"));
        } else {
            let error = hub.unwrap_err().to_string();
            assert!(error.contains("TLS"), "{error}");
        }
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_settings() {
        let tls = |argv: &[&str], env: &[(&str, &str)]| config(argv, env).map(|c| c.tls);
        let plain = tls(&[], &[]).unwrap();
        assert_eq!(plain.peer_trust, PeerTrust::SystemRoots);
        assert_eq!(plain.server_files, None);
        assert_eq!(
            tls(&[], &[("ARK_CA_FILE", "/etc/ark/ca.pem")])
                .unwrap()
                .peer_trust,
            PeerTrust::CaFile("/etc/ark/ca.pem".into())
        );
        let pin = format!("sha256:{}", "ab".repeat(32));
        let other = format!("sha256:{}", "cd".repeat(32));
        let pins = tls(&[], &[("ARK_TLS_PIN", &format!("{pin}, {other}"))]).unwrap();
        assert_eq!(
            pins.peer_trust,
            PeerTrust::Pinned(vec![
                Fingerprint::parse(&pin).unwrap(),
                Fingerprint::parse(&other).unwrap()
            ])
        );
        // The flag wins over the variable.
        let flag = tls(&["--tls-pin", &other], &[("ARK_TLS_PIN", &pin)]).unwrap();
        let expected = vec![Fingerprint::parse(&other).unwrap()];
        assert_eq!(flag.peer_trust, PeerTrust::Pinned(expected));
        let served = tls(
            &["serve", "--tls-cert", "/c.pem"],
            &[("ARK_TLS_KEY", "/k.pem")],
        )
        .unwrap();
        assert_eq!(
            served.server_files,
            Some(("/c.pem".into(), "/k.pem".into()))
        );

        let error = |argv: &[&str], env: &[(&str, &str)]| tls(argv, env).unwrap_err().to_string();
        let both = error(&["--ca-file", "/ca.pem", "--tls-pin", &pin], &[]);
        assert!(both.contains("not both"), "{both}");
        let bad_pin = error(&["--tls-pin", "sha256:abc"], &[]);
        assert!(
            bad_pin.contains("--tls-pin") && bad_pin.contains("64 hex"),
            "{bad_pin}"
        );
        let no_key = error(&[], &[("ARK_TLS_CERT", "/c.pem")]);
        assert!(no_key.contains("needs --tls-key"), "{no_key}");
        let no_cert = error(&["serve", "--tls-key", "/k.pem"], &[]);
        assert!(no_cert.contains("needs --tls-cert"), "{no_cert}");
    }

    #[test]
    fn peer_urls_are_written_one_way() {
        assert_eq!(
            normalize_peer_url("http://10.0.0.5:9000/"),
            Ok("http://10.0.0.5:9000".into())
        );
        assert!(
            normalize_peer_url(" http://pi.local ")
                .unwrap()
                .starts_with("http://pi.local")
        );
        if cfg!(feature = "tls") {
            assert_eq!(
                normalize_peer_url("HTTPS://Hub.Example:443/"),
                Ok("https://hub.example".into())
            );
        }
        assert!(normalize_peer_url("ftp://x").is_err());
        assert!(normalize_peer_url("not a url").is_err());
    }

    #[test]
    fn discovery_is_on_for_local_and_pi_and_never_multicasts_on_cloud() {
        let discovery =
            |argv: &[&str], env: &[(&str, &str)]| config(argv, env).map(|c| c.discovery);
        let local = discovery(&[], &[]).unwrap();
        assert!(local.enabled);
        assert_eq!(
            (local.group, local.port, local.interval),
            (DEFAULT_BEACON_GROUP, 8103, Duration::from_secs(60))
        );
        assert_eq!(local.expiry(), Duration::from_secs(300));
        assert!(
            discovery(&[], &[("ARK_INSTANCE_TYPE", "pi")])
                .unwrap()
                .enabled
        );
        assert!(
            !discovery(&[], &[("ARK_INSTANCE_TYPE", "cloud")])
                .unwrap()
                .enabled
        );
        assert!(
            !discovery(&[], &[("FEDERATION_DISCOVERY", "false")])
                .unwrap()
                .enabled
        );
        assert!(
            !discovery(&["serve", "--no-discovery"], &[])
                .unwrap()
                .enabled
        );
        let error = discovery(
            &[],
            &[
                ("ARK_INSTANCE_TYPE", "cloud"),
                ("FEDERATION_DISCOVERY", "true"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("never multicast"), "{error}");
        let unicast = discovery(
            &[
                "serve",
                "--beacon-unicast",
                "127.0.0.1:9999",
                "--beacon-interval",
                "2",
            ],
            &[("ARK_INSTANCE_TYPE", "cloud")],
        )
        .unwrap();
        assert!(unicast.enabled);
        assert_eq!(unicast.unicast, vec!["127.0.0.1:9999".parse().unwrap()]);
        assert_eq!(unicast.expiry(), Duration::from_secs(10));
        let error = discovery(&["serve", "--beacon-group", "10.0.0.1"], &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("multicast"), "{error}");
        let on_event = config(&[], &[("FEDERATION_ON_EVENT", "logger -t ark")]).unwrap();
        assert_eq!(on_event.on_event.as_deref(), Some("logger -t ark"));
    }

    #[test]
    fn debug_scope_turns_on_verbose_logging() {
        assert!(config(&[], &[("DEBUG", "ark:federation")]).unwrap().verbose);
        assert!(!config(&[], &[("DEBUG", "express")]).unwrap().verbose);
    }

    #[test]
    fn store_wait_and_clock_offset_are_read_and_checked() {
        let defaults = config(&[], &[]).unwrap();
        assert_eq!(
            defaults.store_wait,
            Duration::from_secs(DEFAULT_STORE_WAIT_SECS)
        );
        assert_eq!(defaults.clock_offset_millis, 0);
        let set = config(
            &[],
            &[("ARK_STORE_WAIT", "0"), ("ARK_CLOCK_OFFSET_MS", "-180000")],
        )
        .unwrap();
        assert_eq!(set.store_wait, Duration::ZERO);
        assert_eq!(set.clock_offset_millis, -180_000);
        for (name, value) in [
            ("ARK_STORE_WAIT", "soon"),
            ("ARK_CLOCK_OFFSET_MS", "5s"),
            ("ARK_CLOCK_OFFSET_MS", "86400001"),
        ] {
            let error = config(&[], &[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
    }
}
