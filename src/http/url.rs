//! Peer URLs: `http[s]://host[:port][/path][?query]` and nothing more. Resolving the
//! host, connecting and TLS are left to the client.
//!
//! A full URL parser would be a large dependency for the one shape peers use. A binary
//! built without the `tls` feature refuses `https://` with an explanation instead of
//! failing at connect time.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The base URL of a node heard at `ip` serving on `port`, `https://` when it serves
/// HTTPS: how beacons, scans and the hub's registry name a node (issue 14: a node with
/// `--tls-cert` answers TLS only, so an `http://` URL for it never works).
pub fn node_base_url(secure: bool, ip: IpAddr, port: u16) -> String {
    let scheme = if secure { "https" } else { "http" };
    match ip.to_canonical() {
        IpAddr::V6(ip) => format!("{scheme}://[{ip}]:{port}"),
        IpAddr::V4(ip) => format!("{scheme}://{ip}:{port}"),
    }
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUrl {
    /// `https://`: the connection is TLS.
    secure: bool,
    /// A name or an IP address; an IPv6 address without its brackets.
    host: String,
    port: u16,
    /// Path and query, always starting with `/`; the fragment is dropped.
    path_and_query: String,
}

impl PeerUrl {
    /// Parses `http[s]://host[:port][/path][?query][#fragment]`; the port defaults to 80
    /// or 443.
    pub fn parse(url: &str) -> Result<PeerUrl, UrlError> {
        let error = |problem| UrlError {
            url: url.to_owned(),
            problem,
        };
        let trimmed = url.trim();
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            return Err(error(UrlProblem::MissingScheme));
        };
        let secure = scheme.eq_ignore_ascii_case("https");
        if secure && !cfg!(feature = "tls") {
            return Err(error(UrlProblem::Https));
        }
        if !secure && !scheme.eq_ignore_ascii_case("http") {
            return Err(error(UrlProblem::UnsupportedScheme(scheme.to_owned())));
        }

        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(error(UrlProblem::UserInfo));
        }

        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((address, after)) = bracketed.split_once(']') else {
                return Err(error(UrlProblem::InvalidHost));
            };
            if address.parse::<Ipv6Addr>().is_err() {
                return Err(error(UrlProblem::InvalidHost));
            }
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return Err(error(UrlProblem::InvalidHost)),
                },
            };
            (address, port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(error(UrlProblem::MissingHost));
        }
        let is_host_char =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
        if !host.chars().all(is_host_char) {
            return Err(error(UrlProblem::InvalidHost));
        }
        let port = match port {
            None => default_port(secure),
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(error(UrlProblem::InvalidPort)),
            },
        };

        // Visible ASCII only, as in a request line: anything else is sent
        // percent-encoded. Non-ASCII whitespace let `normalize_peer_url` trim a URL it
        // had written itself, so the same peer could be stored twice (fuzz target
        // `peer_url`).
        if !path_and_query.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(error(UrlProblem::InvalidPath));
        }
        let path_and_query = match path_and_query {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_owned(),
        };
        Ok(PeerUrl {
            secure,
            host: host.to_ascii_lowercase(),
            port,
            path_and_query,
        })
    }

    /// Whether this is an `https://` URL.
    pub(crate) fn is_secure(&self) -> bool {
        self.secure
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.secure { "https" } else { "http" }
    }

    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path and query, starting with `/`.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The value for a `Host` header: the host, bracketed if IPv6, and the port unless it
    /// is the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port(self.secure) {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme(),
            self.authority(),
            self.path_and_query
        )
    }
}

fn default_port(secure: bool) -> u16 {
    if secure { 443 } else { 80 }
}

/// A URL that [`PeerUrl::parse`] refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    pub url: String,
    pub problem: UrlProblem,
}

/// What was wrong with a peer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    MissingScheme,
    Https,
    UnsupportedScheme(String),
    UserInfo,
    MissingHost,
    InvalidHost,
    InvalidPort,
    InvalidPath,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.url;
        match &self.problem {
            UrlProblem::MissingScheme => {
                write!(f, "peer url {url:?} must start with http:// or https://")
            }
            UrlProblem::Https => write!(
                f,
                "peer url {url:?} uses https, but this ark-lattice was built without TLS \
                 (cargo feature `tls`): use a release binary, or reach the peer over http://"
            ),
            UrlProblem::UnsupportedScheme(scheme) => write!(
                f,
                "peer url {url:?} has scheme {scheme:?}; only http:// and https:// are supported"
            ),
            UrlProblem::UserInfo => write!(f, "peer url {url:?} must not contain user:password@"),
            UrlProblem::MissingHost => write!(f, "peer url {url:?} has no host"),
            UrlProblem::InvalidHost => write!(f, "peer url {url:?} has an invalid host"),
            UrlProblem::InvalidPort => write!(f, "peer url {url:?} has an invalid port (1-65535)"),
            UrlProblem::InvalidPath => {
                write!(
                    f,
                    "peer url {url:?} has spaces, control or non-ASCII characters in its path (percent-encode them)"
                )
            }
        }
    }
}

impl std::error::Error for UrlError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: Result<(&str, u16, &str), UrlProblem>) {
        let parsed = PeerUrl::parse(url);
        let parsed = parsed
            .as_ref()
            .map(|url| (url.host(), url.port(), url.path_and_query()))
            .map_err(|error| error.problem.clone());
        assert_eq!(parsed, expected, "{url:?}");
    }

    #[test]
    fn accepted_shapes() {
        check("http://pi.local", Ok(("pi.local", 80, "/")));
        check("http://Pi.Local:8080/", Ok(("pi.local", 8080, "/")));
        check(
            "http://10.0.0.5:7000/api/nodes?since_seq=5",
            Ok(("10.0.0.5", 7000, "/api/nodes?since_seq=5")),
        );
        check("HTTP://host?x=1", Ok(("host", 80, "/?x=1")));
        check("http://[::1]:9000/a#frag", Ok(("::1", 9000, "/a")));
        check("http://[fe80::1]", Ok(("fe80::1", 80, "/")));
        check("  http://host/  ", Ok(("host", 80, "/")));
    }

    /// Found by `make fuzz` (target `peer_url`, crash-b4678302): a path ending in a
    /// no-break space normalised to a URL that normalised again to another.
    #[test]
    fn fuzz_peer_url_crash_b4678302_non_ascii_path() {
        let crash = "http://p/\u{fffd}`\u{a0}\u{a0}\u{81}\u{a0}/";
        check(crash, Err(UrlProblem::InvalidPath));
        check("http://p/caf\u{e9}", Err(UrlProblem::InvalidPath));
        check("http://p/caf%C3%A9", Ok(("p", 80, "/caf%C3%A9")));
        let normal = crate::config::normalize_peer_url(" http://p/a/\u{a0}").unwrap();
        assert_eq!(normal, "http://p/a");
        assert_eq!(crate::config::normalize_peer_url(&normal), Ok(normal));
    }

    #[test]
    fn https() {
        if cfg!(feature = "tls") {
            check("https://hub.example", Ok(("hub.example", 443, "/")));
            check(
                "HTTPS://hub.example:8443/x",
                Ok(("hub.example", 8443, "/x")),
            );
            let url = PeerUrl::parse("https://hub.example:443/").unwrap();
            assert!(url.is_secure());
            assert_eq!(url.authority(), "hub.example");
            assert_eq!(url.to_string(), "https://hub.example/");
            let url = PeerUrl::parse("https://hub.example:80/").unwrap();
            assert_eq!(url.to_string(), "https://hub.example:80/");
        } else {
            check("https://peer.example", Err(UrlProblem::Https));
            let message = PeerUrl::parse("https://peer.example")
                .unwrap_err()
                .to_string();
            assert!(message.contains("without TLS"), "{message}");
        }
        assert!(!PeerUrl::parse("http://a/").unwrap().is_secure());
        let v4: IpAddr = "10.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(node_base_url(false, v4, 9000), "http://10.0.0.2:9000");
        assert_eq!(node_base_url(true, mapped, 9000), "https://10.0.0.2:9000");
        assert_eq!(node_base_url(true, v6, 443), "https://[fe80::1]:443");
        for url in [node_base_url(true, v4, 1), node_base_url(true, v6, 1)] {
            assert!(PeerUrl::parse(&url).unwrap().is_secure(), "{url}");
        }
    }

    #[test]
    fn refused_shapes() {
        check("host:80", Err(UrlProblem::MissingScheme));
        check(
            "ftp://host",
            Err(UrlProblem::UnsupportedScheme("ftp".into())),
        );
        check("http://user:pw@host", Err(UrlProblem::UserInfo));
        check("http://", Err(UrlProblem::MissingHost));
        check("http://:80/", Err(UrlProblem::MissingHost));
        check("http://ho st/", Err(UrlProblem::InvalidHost));
        check("http://[::1/", Err(UrlProblem::InvalidHost));
        check("http://[zz::1]/", Err(UrlProblem::InvalidHost));
        check("http://host:0/", Err(UrlProblem::InvalidPort));
        check("http://host:99999/", Err(UrlProblem::InvalidPort));
        check("http://host:8a/", Err(UrlProblem::InvalidPort));
        check("http://host/a b", Err(UrlProblem::InvalidPath));
    }

    #[test]
    fn authority_for_the_host_header() {
        let url = |text| PeerUrl::parse(text).unwrap().authority();
        assert_eq!(url("http://a:80/"), "a");
        assert_eq!(url("http://a:81/"), "a:81");
        assert_eq!(url("http://[::1]:81/"), "[::1]:81");
        assert_eq!(url("http://[::1]/"), "[::1]");
    }
}
