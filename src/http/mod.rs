//! The HTTP layer: a hardened HTTP/1.1 server and a keep-alive client, both on hyper and
//! smol, single-threaded, with gzip, byte counters and (feature `tls`) HTTPS. Routes,
//! handlers and the sync protocol live elsewhere and see only the plain types
//! re-exported here.

mod admission;
mod body;
mod client;
mod client_types;
mod gzip;
mod message;
mod server;
mod stream;
#[cfg(feature = "tls")]
mod tls;
mod url;
mod wire;

pub use admission::Parking;
pub use client::HttpClient;
pub use client_types::{ClientConfig, ClientError, ClientRequest, ClientResponse};
pub(crate) use gzip::accepts_gzip;
// Public for the `gzip` fuzz target.
pub use gzip::{GunzipError, gunzip_limited, gzip_text_and_raw};
pub use message::{
    Body, BodySender, BodyStream, ClientGone, Request, Response, SharedBody, TrySendError,
    percent_decode, percent_encode,
};
pub use server::{ServerLimits, is_loopback, serve, serve_streams};
pub use stream::{MaybeTls, Secured, Transport};
#[cfg(feature = "tls")]
pub use tls::{Fingerprint, PeerTrust, ServerTls, TlsError};
pub use url::{PeerUrl, UrlError, UrlProblem, node_base_url};
pub use wire::{CountingStream, WireStats};
