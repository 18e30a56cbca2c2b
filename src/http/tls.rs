//! TLS for the HTTP layer (cargo feature `tls`): how the client decides to trust a peer's
//! certificate, the server's certificate and key that a SIGHUP reloads, and the messages
//! that say why a handshake failed. Reading flags and environment is left to `config`.
//!
//! # Implementation
//!
//! rustls with ring as its crypto provider (ARCHITECTURE.md, "TLS", has the measurements
//! behind that choice). The client trusts one of three things, never a mix:
//!
//! - the system's CA bundle, read from the first of the usual paths that has any
//!   certificate (Raspberry Pi OS and Debian ship it in `ca-certificates`), so the
//!   binary carries no root list of its own that would go stale;
//! - a CA file (`--ca-file`), for a hub whose certificate a private CA signed;
//! - pinned SHA-256 fingerprints of end-entity certificates (`--tls-pin`), for a hub with
//!   a self-signed certificate. A pinned certificate is trusted as it is: its name and
//!   dates are not checked, only that the peer holds its key.
//!
//! The client's rustls config is built on first use of an `https://` URL, so a node that
//! only speaks plain HTTP never needs a CA bundle.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::model::format_rfc3339;

/// Where the system keeps its CA bundle, most common first: Debian, Ubuntu, Raspberry
/// Pi OS, Arch and Alpine with `ca-certificates`; Fedora and RHEL; openSUSE; Alpine and
/// the BSDs without it.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Which certificates the client accepts from `https://` peers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PeerTrust {
    /// CAs in the system's bundle ([`SYSTEM_CA_BUNDLES`]).
    #[default]
    SystemRoots,
    /// CAs in this PEM file only (`--ca-file`, `ARK_CA_FILE`).
    CaFile(PathBuf),
    /// End-entity certificates with these fingerprints only (`--tls-pin`, `ARK_TLS_PIN`).
    Pinned(Vec<Fingerprint>),
}

impl PeerTrust {
    /// Reads a CA file now, so a node whose `--ca-file` does not load says so at start
    /// rather than at its first `https://` sync. The system bundle is not required
    /// here: a node with only `http://` peers needs none.
    pub fn check_ca_file(&self) -> Result<(), TlsError> {
        match self {
            PeerTrust::CaFile(path) => roots_from(path).map(drop),
            PeerTrust::SystemRoots | PeerTrust::Pinned(_) => Ok(()),
        }
    }
}

/// The SHA-256 of a certificate's DER bytes, written `sha256:<64 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(certificate_der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(certificate_der).into())
    }

    /// Reads `sha256:<hex>`, bare hex, or the `AA:BB:..` form `openssl x509 -fingerprint
    /// -sha256` prints; case does not matter.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        let hex = lower
            .strip_prefix("sha256:")
            .or_else(|| lower.strip_prefix("sha256 fingerprint="))
            .unwrap_or(&lower);
        let digits: Vec<u8> = hex.bytes().filter(|byte| *byte != b':').collect();
        let mut bytes = [0u8; 32];
        let valid = digits.len() == 64
            && digits.chunks(2).zip(bytes.iter_mut()).all(|(pair, out)| {
                let high = (pair[0] as char).to_digit(16);
                let low = (pair[1] as char).to_digit(16);
                match (high, low) {
                    (Some(high), Some(low)) => {
                        *out = (high * 16 + low) as u8;
                        true
                    }
                    _ => false,
                }
            });
        if valid {
            Ok(Fingerprint(bytes))
        } else {
            Err(format!(
                "certificate fingerprint {trimmed:?} is not sha256: and 64 hex digits"
            ))
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A certificate, key or CA file that could not be used.
#[derive(Debug)]
pub enum TlsError {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    /// The file has no PEM certificate (or no key) in it.
    Empty {
        path: PathBuf,
        what: &'static str,
    },
    /// rustls refused the certificate and key (for example, they do not match).
    Refused {
        path: PathBuf,
        detail: String,
    },
    NoSystemRoots,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            TlsError::Empty { path, what } => {
                write!(f, "{} has no PEM {what} in it", path.display())
            }
            TlsError::Refused { path, detail } => {
                write!(f, "{}: {detail}", path.display())
            }
            TlsError::NoSystemRoots => write!(
                f,
                "no CA certificates found in {}: install ca-certificates, or name the CA \
                 with --ca-file (ARK_CA_FILE) or pin the certificate with --tls-pin \
                 (ARK_TLS_PIN)",
                SYSTEM_CA_BUNDLES.join(", ")
            ),
        }
    }
}

impl std::error::Error for TlsError {}

// rustls marks ring's provider deprecated because ring has no post-quantum key exchange.
// That needs aws-lc-rs, whose C build (cmake, a C cross toolchain) and size the release
// targets cannot afford; see "TLS" in ARCHITECTURE.md.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The largest certificate, key or CA file read. Debian's whole CA bundle is about
/// 220 KB; a path naming something endless (`/dev/zero`) was read until the node was
/// killed for its memory, at start or at a SIGHUP.
const MAX_PEM_FILE_BYTES: u64 = 8 << 20;

/// Reads a PEM file: a regular file (a FIFO would block the node's one thread until
/// something writes to it) of at most [`MAX_PEM_FILE_BYTES`].
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let read_error = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    if !std::fs::metadata(path).map_err(read_error)?.is_file() {
        return Err(read_error(io::Error::other("it is not a regular file")));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(read_error(io::Error::other(format!(
            "it is larger than {} MiB, which no certificate, key or CA file is",
            MAX_PEM_FILE_BYTES >> 20
        ))));
    }
    Ok(bytes)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    // A bundle may hold the odd certificate rustls cannot parse; it is skipped, as the
    // system's own TLS libraries do.
    let found: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if found.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(found)
}

fn roots_from(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certificates(path)?);
    if added == 0 {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "CA certificate usable as a trust anchor",
        });
    }
    Ok(roots)
}

fn system_roots() -> Result<rustls::RootCertStore, TlsError> {
    SYSTEM_CA_BUNDLES
        .iter()
        .find_map(|path| roots_from(Path::new(path)).ok())
        .ok_or(TlsError::NoSystemRoots)
}

/// The rustls client settings for `trust`; reads the CA file or the system bundle.
pub(crate) fn client_config(trust: &PeerTrust) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let mut config = match trust {
        PeerTrust::SystemRoots => builder
            .with_root_certificates(system_roots()?)
            .with_no_client_auth(),
        PeerTrust::CaFile(path) => builder
            .with_root_certificates(roots_from(path)?)
            .with_no_client_auth(),
        PeerTrust::Pinned(pins) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pins: pins.clone(),
                provider,
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts exactly the pinned end-entity certificates, and checks that the peer holds
/// the key of the one it sent.
#[derive(Debug)]
struct PinnedVerifier {
    pins: Vec<Fingerprint>,
    provider: Arc<CryptoProvider>,
}

/// A certificate whose fingerprint was not among the pins.
#[derive(Debug)]
struct NotPinned(Fingerprint);

impl fmt::Display for NotPinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "certificate {} is not pinned", self.0)
    }
}

impl std::error::Error for NotPinned {}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of(end_entity);
        if self.pins.contains(&presented) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(NotPinned(presented))),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, certificate, signature, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, certificate, signature, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a TLS handshake with `url` failed, in words an operator can act on. `error` is
/// what the TLS stream returned; rustls's own error travels inside it.
pub(crate) fn describe_handshake_error(url: &str, error: &io::Error) -> String {
    let Some(tls_error) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS handshake with {url} failed: {error}");
    };
    let certificate = |problem: String| format!("the certificate of {url} {problem}");
    match tls_error {
        rustls::Error::InvalidCertificate(problem) => match problem {
            CertificateError::Expired => certificate("has expired".into()),
            CertificateError::ExpiredContext { time, not_after } => certificate(format!(
                "expired at {} (the time here is {})",
                unix_time(*not_after),
                unix_time(*time)
            )),
            CertificateError::NotValidYet => {
                certificate("is not valid yet (is the clock here right?)".into())
            }
            CertificateError::NotValidYetContext { time, not_before } => certificate(format!(
                "is not valid before {} (the time here is {}; is the clock right?)",
                unix_time(*not_before),
                unix_time(*time)
            )),
            CertificateError::NotValidForName => {
                certificate("is not valid for this host name".into())
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => certificate(format!(
                "is not valid for {:?}: it names {}",
                expected.to_str(),
                if presented.is_empty() {
                    "no host at all".to_owned()
                } else {
                    presented
                        .iter()
                        .map(|name| plain_name(name))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )),
            CertificateError::UnknownIssuer => certificate(
                "is self-signed or signed by a CA that is not trusted here: name the CA \
                 with --ca-file (ARK_CA_FILE), or pin the certificate with --tls-pin \
                 (ARK_TLS_PIN)"
                    .into(),
            ),
            CertificateError::Other(other) => match other.0.downcast_ref::<NotPinned>() {
                Some(NotPinned(presented)) => certificate(format!(
                    "has fingerprint {presented}, which is not among the pinned ones \
                     (--tls-pin, ARK_TLS_PIN)"
                )),
                None => certificate(format!("was refused: {other}")),
            },
            other => certificate(format!("was refused: {other:?}")),
        },
        rustls::Error::InvalidMessage(_) => format!(
            "{url} did not answer in TLS: is it a plain http:// peer, or a port for \
             something else? ({tls_error})"
        ),
        rustls::Error::AlertReceived(alert) => {
            format!("{url} refused the TLS handshake ({alert:?})")
        }
        other => format!("TLS handshake with {url} failed: {other}"),
    }
}

/// `hub.example` out of rustls's `DnsName("hub.example")`, `10.0.0.5` out of
/// `IpAddress(10.0.0.5)`; anything else as it is.
fn plain_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })
        .unwrap_or(presented)
}

fn unix_time(time: UnixTime) -> String {
    format_rfc3339(time.as_secs().saturating_mul(1000))
}

/// The server's certificate chain and key, read from two PEM files, and the rustls
/// settings made from them. [`ServerTls::reload`] reads the files again.
#[derive(Debug)]
pub struct ServerTls {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RefCell<(Arc<rustls::ServerConfig>, Fingerprint)>,
}

impl ServerTls {
    /// Reads `cert_path` (the certificate, then any intermediates) and `key_path`
    /// (PKCS#8, PKCS#1 or SEC1 PEM).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<ServerTls, TlsError> {
        let current = server_config(cert_path, key_path)?;
        Ok(ServerTls {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RefCell::new(current),
        })
    }

    /// Reads both files again. New connections use the new certificate; open ones keep
    /// the old. On an error the old certificate stays in use.
    pub fn reload(&self) -> Result<Fingerprint, TlsError> {
        let fresh = server_config(&self.cert_path, &self.key_path)?;
        let fingerprint = fresh.1;
        *self.current.borrow_mut() = fresh;
        Ok(fingerprint)
    }

    /// The fingerprint of the certificate in use, for `--tls-pin` on the other side.
    pub fn fingerprint(&self) -> Fingerprint {
        self.current.borrow().1
    }

    pub(crate) fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub(crate) fn acceptor(&self) -> futures_rustls::TlsAcceptor {
        futures_rustls::TlsAcceptor::from(Arc::clone(&self.current.borrow().0))
    }
}

fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Arc<rustls::ServerConfig>, Fingerprint), TlsError> {
    let chain = certificates(cert_path)?;
    let fingerprint = Fingerprint::of(&chain[0]);
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Empty {
        path: key_path.to_owned(),
        what: "private key",
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Refused {
            path: cert_path.to_owned(),
            detail: format!("with the key in {}: {error}", key_path.display()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_in_every_written_form() {
        let expected = Fingerprint::of(b"certificate");
        let hex = expected.to_string()["sha256:".len()..].to_owned();
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap().to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        for text in [
            expected.to_string(),
            hex.clone(),
            format!(" SHA256:{} ", hex.to_ascii_uppercase()),
            colons.clone(),
            format!("sha256 Fingerprint={colons}"),
            format!("SHA256 Fingerprint={colons}"),
        ] {
            assert_eq!(Fingerprint::parse(&text), Ok(expected), "{text:?}");
        }
        for bad in [
            "",
            "sha256:",
            &hex[1..],
            &format!("{hex}00"),
            &hex.replace('a', "g"),
        ] {
            let error = Fingerprint::parse(bad).unwrap_err();
            assert!(error.contains("64 hex digits"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn presented_names_read_plainly() {
        assert_eq!(plain_name("DnsName(\"hub.example\")"), "hub.example");
        assert_eq!(plain_name("IpAddress(10.0.0.5)"), "10.0.0.5");
        assert_eq!(plain_name("URI(x)"), "URI(x)");
    }

    #[test]
    fn unreadable_and_empty_files_are_named() {
        let missing = Path::new("/nonexistent/ca.pem");
        let error = client_config(&PeerTrust::CaFile(missing.to_owned())).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
        // Not a regular file: /dev/zero was read until the node ran out of memory.
        let error = ServerTls::load(Path::new("/dev/null"), Path::new("/dev/null")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read /dev/null: it is not a regular file"
        );
        let empty = std::env::temp_dir().join(format!("ark-tls-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, b"").unwrap();
        let error = ServerTls::load(&empty, &empty).unwrap_err();
        let _ = std::fs::remove_file(&empty);
        assert_eq!(
            error.to_string(),
            format!("{} has no PEM certificate in it", empty.display())
        );
    }
}
