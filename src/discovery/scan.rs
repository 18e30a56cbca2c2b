//! The subnet scan: `GET /federation/info` on every address of a small network, many
//! at once with a short connect timeout, so a /24 takes about two seconds even when
//! nothing answers (ARK's Node.js scan tried one address at a time, a second each).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_lite::future;

use crate::http::{ClientConfig, ClientError, ClientRequest, HttpClient, node_base_url};
use crate::protocol::{InstanceInfo, parse_object};
use crate::trust::PublicKey;

/// Probes in flight at once: a /24 in two rounds of connect timeouts at most.
pub const SCAN_CONCURRENCY: usize = 128;

/// The settings of the scan's client: an address that does not answer is given up
/// after a second; one that accepts has a little longer to answer.
pub fn scan_client_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_millis(1000),
        request_timeout: Duration::from_millis(1500),
        max_response_bytes: 256 * 1024,
        max_idle_per_host: 0,
        ..ClientConfig::default()
    }
}

/// A network to scan, `a.b.c.d/N` with N from 24 to 32, or an address (its /24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(text: &str) -> Result<Subnet, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, prefix),
            None => (text.trim(), "24"),
        };
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("subnet {text:?}: {address:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|prefix| (24..=32).contains(prefix))
            .ok_or_else(|| {
                format!("subnet {text:?}: only /24 to /32 are scanned (at most 254 addresses)")
            })?;
        Ok(Subnet::of(address, prefix))
    }

    /// The /`prefix` network holding `address`.
    pub fn of(address: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.clamp(24, 32);
        let mask = u32::MAX << (32 - u32::from(prefix));
        Subnet {
            network: Ipv4Addr::from(u32::from(address) & mask),
            prefix,
        }
    }

    /// The host addresses: all but the network and broadcast addresses (for /31 and
    /// /32, which have none, every address).
    pub fn hosts(&self) -> Vec<Ipv4Addr> {
        let size = 1u32 << (32 - u32::from(self.prefix));
        let base = u32::from(self.network);
        let range = if size <= 2 { 0..size } else { 1..size - 1 };
        range.map(|offset| Ipv4Addr::from(base + offset)).collect()
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An address that answered `/federation/info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanHit {
    pub url: String,
    pub instance_id: String,
    pub instance_name: Option<String>,
    pub fingerprint: Option<String>,
    /// The key it publishes hashes to its instance id (ark-lattice peers); ARK's
    /// Node.js instances publish no key.
    pub verified: bool,
    pub protocols: Vec<String>,
}

/// Reads a `/federation/info` answer.
pub fn read_info(url: &str, body: &[u8]) -> Option<ScanHit> {
    let object = parse_object(body, "peer info").ok()?;
    let info = InstanceInfo::from_json(&object, "peer info").ok()?;
    let verified = info
        .lattice
        .public_key
        .as_deref()
        .and_then(|key| PublicKey::from_base64(key).ok())
        .is_some_and(|key| key.instance_id().to_hex() == info.instance_id);
    Some(ScanHit {
        url: url.to_owned(),
        instance_name: Some(info.instance_name).filter(|name| !name.is_empty()),
        instance_id: info.instance_id,
        fingerprint: info.lattice.fingerprint,
        verified,
        protocols: info.lattice.protocols,
    })
}

/// Asks every host for `/federation/info` on `port`, `concurrency` at a time, and
/// returns those that answered like a federation node, in address order.
pub async fn scan(
    client: &HttpClient,
    hosts: &[Ipv4Addr],
    port: u16,
    concurrency: usize,
) -> Vec<ScanHit> {
    let next = Cell::new(0usize);
    let hits: RefCell<Vec<(usize, ScanHit)>> = RefCell::new(Vec::new());
    let worker = || async {
        loop {
            let index = next.get();
            let Some(host) = hosts.get(index) else {
                return;
            };
            next.set(index + 1);
            // A node serving HTTPS (`serve --tls-cert`) drops a plain request at once;
            // only then is it asked again over TLS, so a host that answers nothing
            // costs one attempt.
            for secure in [false, true] {
                let url = node_base_url(secure, IpAddr::V4(*host), port);
                let request = ClientRequest::get(&format!("{url}/federation/info"));
                match client.send(request).await {
                    Ok(response) => {
                        if response.status == 200 {
                            if let Some(hit) = read_info(&url, &response.body) {
                                hits.borrow_mut().push((index, hit));
                            }
                        }
                        break;
                    }
                    Err(
                        ClientError::ConnectionLost { .. } | ClientError::MalformedResponse { .. },
                    ) => {}
                    Err(_) => break,
                }
            }
        }
    };
    let workers: Vec<_> = (0..concurrency.clamp(1, hosts.len().max(1)))
        .map(|_| worker())
        .collect();
    join_all(workers).await;
    let mut hits = hits.into_inner();
    hits.sort_by_key(|(index, _)| *index);
    hits.into_iter().map(|(_, hit)| hit).collect()
}

/// Polls every future on this task until all are done.
async fn join_all<F: Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    future::poll_fn(|context| {
        for slot in futures.iter_mut() {
            if let Some(future) = slot {
                if future.as_mut().poll(context).is_ready() {
                    *slot = None;
                }
            }
        }
        if futures.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_to_their_hosts() {
        fn check(text: &str, expected: Result<(&str, usize), &str>) {
            match (Subnet::parse(text), expected) {
                (Ok(subnet), Ok((network, hosts))) => {
                    assert_eq!(subnet.to_string(), network, "{text}");
                    assert_eq!(subnet.hosts().len(), hosts, "{text}");
                }
                (Err(error), Err(expected)) => assert!(error.contains(expected), "{error}"),
                (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
            }
        }
        check("192.168.1.0/24", Ok(("192.168.1.0/24", 254)));
        check("192.168.1.77", Ok(("192.168.1.0/24", 254)));
        check("10.1.2.3/30", Ok(("10.1.2.0/30", 2)));
        check("10.1.2.3/32", Ok(("10.1.2.3/32", 1)));
        check("10.0.0.0/16", Err("only /24"));
        check("pi.local/24", Err("not an IPv4 address"));
        let hosts = Subnet::parse("127.0.0.0/24").unwrap().hosts();
        assert_eq!(hosts.first(), Some(&Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(hosts.last(), Some(&Ipv4Addr::new(127, 0, 0, 254)));
    }

    #[test]
    fn info_answers_are_verified_by_their_key() {
        let key = crate::trust::KeyPair::from_seed([9; 32])
            .unwrap()
            .public_key();
        let ours = format!(
            r#"{{"instanceId":"{}","publicKey":"{}","fingerprint":"{}","protocols":["ark-lattice-v2"]}}"#,
            key.instance_id().to_hex(),
            key.to_base64(),
            key.fingerprint()
        );
        let hit = read_info("http://10.0.0.2:9000", ours.as_bytes()).unwrap();
        assert!(hit.verified);
        assert_eq!(hit.protocols, vec!["ark-lattice-v2".to_owned()]);
        let ark = read_info("http://10.0.0.3:9000", br#"{"instanceId":"ark-1"}"#).unwrap();
        assert!(!ark.verified);
        assert!(read_info("http://10.0.0.4:9000", b"<html>").is_none());
    }
}
