//! Finding the server that runs on a state dir: the `server.json` it writes (pid, port,
//! bind address, certificate fingerprint), and whether that process still serves.

use std::net::IpAddr;

use crate::config::Config;
use crate::error::Error;
use crate::http::{ClientConfig, HttpClient, WireStats};
use crate::protocol::{Fields, parse_object};

/// The state file a running server writes into the state dir: how the CLI finds it.
pub(crate) const SERVER_FILE: &str = "server.json";

/// A server found through its `server.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerInfo {
    pub pid: u32,
    pub port: u16,
    pub bind: IpAddr,
    /// The fingerprint of the server's certificate when it serves HTTPS.
    pub tls: Option<String>,
}

impl ServerInfo {
    /// Where the CLI reaches the server: loopback when it listens on every address,
    /// otherwise the one address it listens on (127.0.0.2 is loopback too, but a server
    /// bound there is not reached at 127.0.0.1).
    pub(crate) fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match self.bind {
            ip if ip.is_unspecified() => format!("{scheme}://127.0.0.1:{}", self.port),
            IpAddr::V4(ip) => format!("{scheme}://{ip}:{}", self.port),
            IpAddr::V6(ip) => format!("{scheme}://[{ip}]:{}", self.port),
        }
    }

    /// A client for the server: an HTTPS server is trusted by the fingerprint it wrote
    /// to `server.json`, since its certificate names the host peers use, not loopback.
    pub(crate) fn client(&self, config: ClientConfig) -> Result<HttpClient, Error> {
        let client = HttpClient::new(config, WireStats::new());
        match &self.tls {
            None => Ok(client),
            #[cfg(feature = "tls")]
            Some(fingerprint) => {
                let pin = crate::http::Fingerprint::parse(fingerprint).map_err(|reason| {
                    Error::Server {
                        message: format!("server.json: {reason}"),
                        may_have_applied: false,
                    }
                })?;
                Ok(client.with_trust(crate::http::PeerTrust::Pinned(vec![pin])))
            }
            #[cfg(not(feature = "tls"))]
            Some(_) => Err(Error::Server {
                message:
                    "the running server speaks HTTPS, and this ark-lattice was built without TLS"
                        .into(),
                may_have_applied: false,
            }),
        }
    }
}

/// The server running on this state dir, if any. A `server.json` left behind by a
/// process that is gone (kill -9) does not count, nor one whose pid now belongs to a
/// process that is not an ark-lattice server (pids are reused, after a reboot too).
pub(crate) fn running_server(config: &Config) -> Option<ServerInfo> {
    let text = std::fs::read(config.data_dir.join(SERVER_FILE)).ok()?;
    let object = parse_object(&text, "server.json").ok()?;
    let fields = Fields::new(&object, "server.json");
    let info = ServerInfo {
        pid: u32::try_from(fields.u64("pid").ok()?).ok()?,
        port: u16::try_from(fields.u64("port").ok()?).ok()?,
        bind: fields.str("bind").ok()?.parse().ok()?,
        tls: fields.str("tls").ok().map(str::to_owned),
    };
    is_serving(info.pid).then_some(info)
}

/// Whether `pid` is a live process whose command line has the `serve` subcommand.
/// A zombie has an empty command line, so it does not count either.
fn is_serving(pid: u32) -> bool {
    std::fs::read(std::path::PathBuf::from(format!("/proc/{pid}/cmdline")))
        .is_ok_and(|cmdline| cmdline.split(|byte| *byte == 0).any(|arg| arg == b"serve"))
}
