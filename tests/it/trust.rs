//! Signed federation (issue: "Signed federation: keys, provenance, trust tiers, ARK's
//! Python service API and the hub registry"), against real `serve` processes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use ark_lattice::model::{
    ClaimedContent, ContentHash, Hlc, Node, RecordClaim, RecordSignature, Version, encode_node,
};
use ark_lattice::protocol::record_to_wire;
use ark_lattice::store::{Body, Record, RecordMeta};
use ark_lattice::trust::{KeyPair, sign_record, sign_request};
use miniserde::json::{self, Value};

use crate::util::{Lattice, array, count, field, shared_data, text};

/// A `serve` process on 127.0.0.1, killed on drop: the tests' one launcher
/// ([`crate::util::Node`]) with what the trust tests ask of a node.
pub struct Server(crate::util::Node);

impl std::ops::Deref for Server {
    type Target = crate::util::Node;

    fn deref(&self) -> &crate::util::Node {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut crate::util::Node {
        &mut self.0
    }
}

impl Server {
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server(crate::util::Node::start_with(name, env, args))
    }

    pub fn start_on(lattice: Lattice, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server(crate::util::Node::serve(lattice, env, args))
    }

    /// Adds a [`fake_peer`] on `port` as a peer, pinning its key.
    pub fn add_fake_peer(&self, port: u16, key: &KeyPair) {
        self.lattice
            .run(&[
                "federation",
                "add-peer",
                &format!("http://127.0.0.1:{port}"),
                "--pubkey",
                &key.public_key().to_base64(),
            ])
            .ok();
    }

    pub fn status(&self) -> Value {
        self.lattice
            .run(&["federation", "status", "--json"])
            .ok()
            .json()
    }

    pub fn public_key(&self) -> String {
        text(field(&self.status(), "publicKey")).to_owned()
    }

    pub fn fingerprint(&self) -> String {
        text(field(&self.status(), "fingerprint")).to_owned()
    }

    pub fn instance_id(&self) -> String {
        text(field(&self.status(), "instanceId")).to_owned()
    }

    /// Runs `federation sync --json` and returns the first peer result.
    pub fn sync(&self) -> Value {
        let run = self.lattice.run(&["federation", "sync", "--json"]);
        let answer = run.json();
        array(field(&answer, "result"))[0].clone()
    }

    pub fn node_count(&self) -> u64 {
        count(field(&self.lattice.stats(), "nodes"))
    }

    /// Kills the process and hands back its state dir.
    pub fn stop(self) -> Lattice {
        let Server(mut node) = self;
        node.kill();
        std::mem::replace(&mut node.lattice, Lattice::new("stopped"))
    }
}

/// A raw HTTP/1.1 request to 127.0.0.1:`port`; returns status and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (u16, String) {
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect(server).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let reply = crate::raw_http::exchange(stream, server, method, path, &headers, body)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
    (reply.status, reply.body)
}

pub fn signed(
    key: &KeyPair,
    audience: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let headers = sign_request(key, method, path, body, now, audience).unwrap();
    headers
        .pairs()
        .iter()
        .map(|(name, value)| (*name, value.to_string()))
        .collect()
}

fn python_with_nacl() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import nacl.signing"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !ok {
        eprintln!(
            "skipped: python3 with PyNaCl is missing (pip install pynacl; .ci/run installs it)"
        );
    }
    ok
}

fn script() -> String {
    format!(
        "{}/tests/it/scripts/ark_python_client.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn keygen_prints_pynacl_compatible_keys_both_ways() {
    let lattice = Lattice::new("keygen");
    let run = lattice.run(&["keygen"]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("Private Key: ") && lines[1].starts_with("Public Key: "),
        "{}",
        run.stdout
    );
    let seed = lines[0]["Private Key: ".len()..].trim().to_owned();
    let public = lines[1]["Public Key: ".len()..].trim().to_owned();
    // Our seed as ARK_FED_PRIVKEY gives an instance with that public key.
    let status = lattice
        .command(&["federation", "status", "--json"])
        .env("ARK_FED_PRIVKEY", &seed)
        .output()
        .unwrap();
    let status: Value = json::from_str(&String::from_utf8_lossy(&status.stdout)).unwrap();
    assert_eq!(text(field(&status, "publicKey")), public);
    if !python_with_nacl() {
        return;
    }
    // PyNaCl derives the same public key from our seed...
    let derived = Command::new("python3")
        .args(["-c", &format!("import base64,nacl.signing;print(base64.b64encode(bytes(nacl.signing.SigningKey(base64.b64decode('{seed}')).verify_key)).decode())")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&derived.stdout).trim(), public);
    // ...and a PyNaCl key works here.
    let generated = Command::new("python3")
        .args([&script(), "-", "-", "keygen"])
        .output()
        .unwrap();
    let generated = String::from_utf8_lossy(&generated.stdout).into_owned();
    let python_seed = generated.lines().next().unwrap()["Private Key: ".len()..]
        .trim()
        .to_owned();
    let python_public = generated.lines().nth(1).unwrap()["Public Key: ".len()..]
        .trim()
        .to_owned();
    let other = Lattice::new("keygen-python");
    let status = other
        .command(&["federation", "status", "--json"])
        .env("ARK_FED_PRIVKEY", &python_seed)
        .output()
        .unwrap();
    let status: Value = json::from_str(&String::from_utf8_lossy(&status.stdout)).unwrap();
    assert_eq!(text(field(&status, "publicKey")), python_public);
}

#[test]
fn a_key_file_others_can_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let lattice = Lattice::new("key-mode");
    lattice.run(&["stats"]).ok();
    let key = lattice.data_dir().join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = lattice.run(&["stats"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("chmod 600"), "{}", run.stderr);
}

#[test]
fn python_client_registers_signed_manifests_and_expires_after_the_ttl() {
    if !python_with_nacl() {
        return;
    }
    let hub = Server::start("python-hub", &["--peer-ttl", "2"], &[]);
    let client = KeyPair::generate().unwrap();
    let seed = client.seed_base64();
    let register = |mode: &str| -> (u16, String) {
        let out = Command::new("python3")
            .args([&script(), &hub.url(), &seed, mode])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let (status, body) = out.split_once('\n').unwrap();
        (status.trim().parse().unwrap(), body.trim().to_owned())
    };
    // Signed correctly but not trusted: 403, and the key waits as pending.
    let (status, body) = register("register");
    assert_eq!(status, 403, "{body}");
    let pending = hub.lattice.run(&["trust", "pending", "--json"]).ok().json();
    assert_eq!(
        text(field(&array(field(&pending, "keys"))[0], "publicKey")),
        client.public_key().to_base64()
    );
    hub.lattice
        .run(&["trust", "accept", &client.public_key().fingerprint()])
        .ok();
    let (status, body) = register("register");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"registered\"") && body.contains("ark-python-Zürich-α"),
        "{body}"
    );
    // One byte changed after signing.
    let (status, body) = register("tamper");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid signature"), "{body}");
    let (status, body) = http(hub.port, "GET", "/discover", b"", &[]);
    assert_eq!(status, 200);
    let discovered: Value = json::from_str(&body).unwrap();
    assert_eq!(count(field(&discovered, "count")), 1, "{body}");
    assert_eq!(
        text(field(&array(field(&discovered, "peers"))[0], "node_id")),
        "ark-python-Zürich-α"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let (_, body) = http(hub.port, "GET", "/discover", b"", &[]);
    let discovered: Value = json::from_str(&body).unwrap();
    assert_eq!(
        count(field(&discovered, "count")),
        0,
        "expired after the TTL: {body}"
    );
    // Missing fields.
    let (status, body) = http(hub.port, "POST", "/manifest", br#"{"manifest":{}}"#, &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("missing fields"));
}

#[test]
fn delta_sync_returns_exactly_the_records_whose_hash_differs() {
    let Some(data) = shared_data("ark-lattice-nodes.json") else {
        return;
    };
    let lattice = Lattice::new("delta");
    lattice.import(&data).ok();
    let hashes = lattice.hashes();
    let client = KeyPair::generate().unwrap();
    lattice
        .run(&[
            "trust",
            "add",
            &client.public_key().to_base64(),
            "--tier",
            "sandbox",
        ])
        .ok();
    let server = Server::start_on(lattice, &[], &[]);
    // The caller has every record but five: three with another hash, two missing.
    let mut expected = Vec::new();
    let mut entries = Vec::new();
    for (index, (id, hash)) in hashes.iter().enumerate() {
        match index % 97 {
            1 => {
                entries.push(format!(
                    r#"{{"id":"{id}","hash":"sha256:{}"}}"#,
                    "0".repeat(64)
                ));
                expected.push(id.clone());
            }
            2 => expected.push(id.clone()),
            _ => entries.push(format!(r#"{{"id":"{id}","hash":"{hash}"}}"#)),
        }
    }
    let body = format!(
        r#"{{"manifest_hash":"sha256:{}","nodes":[{}]}}"#,
        "1".repeat(64),
        entries.join(",")
    );
    let (status, answer) = http(
        server.port,
        "POST",
        "/sync",
        body.as_bytes(),
        &signed(
            &client,
            &server.instance_id(),
            "POST",
            "/sync",
            body.as_bytes(),
        ),
    );
    assert_eq!(status, 200, "{answer}");
    let answer: Value = json::from_str(&answer).unwrap();
    let mut got: Vec<String> = array(field(&answer, "nodes"))
        .iter()
        .map(|node| text(field(node, "id")).to_owned())
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(count(field(&answer, "delta_count")), expected.len() as u64);
    // Unsigned: served to this host's callers, as the control API is (the guide's
    // `curl localhost:9001/sync`); refused from elsewhere (through a proxy), from a web
    // page of another site, and without the JSON content type a page cannot send
    // unasked. An unsigned push is refused from this host too.
    let json = ("content-type", "application/json".to_owned());
    let (status, answer) = http(
        server.port,
        "POST",
        "/sync",
        body.as_bytes(),
        std::slice::from_ref(&json),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        http(server.port, "GET", "/federation/nodes", b"", &[]).0,
        200
    );
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("origin", "https://pages.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let headers = [json.clone(), (name, value.to_owned())];
        let (status, answer) = http(server.port, "POST", "/sync", body.as_bytes(), &headers);
        assert_eq!(status, 401, "{name}: {answer}");
    }
    let (status, _) = http(server.port, "POST", "/sync", body.as_bytes(), &[]);
    assert_eq!(status, 401);
    let push = br#"{"nodes":[{"id":"unsigned","type":"t","value":"v"}]}"#;
    let (status, answer) = http(server.port, "POST", "/federation/sync", push, &[json]);
    assert_eq!(status, 401, "{answer}");
}

#[test]
fn a_record_reaches_spoke_b_through_the_hub_with_its_authors_signature() {
    let hub = Server::start("hub", &[], &[]);
    // Spoke keys are made first, so the hub trusts them before their first heartbeat.
    let spoke_lattice = |name: &str| -> Lattice {
        let lattice = Lattice::new(name);
        std::fs::create_dir_all(lattice.data_dir()).unwrap();
        let key_file = lattice.data_dir().join("identity.key");
        let run = lattice
            .run(&["keygen", "--out", key_file.to_str().unwrap()])
            .ok();
        let public = run.stdout.lines().next().unwrap()["Public Key: ".len()..]
            .trim()
            .to_owned();
        hub.lattice
            .run(&["trust", "add", &public, "--name", name])
            .ok();
        lattice
    };
    let hub_url = hub.url();
    let env = [
        ("FEDERATION_MODE", "hub"),
        ("FEDERATION_HUB_URL", hub_url.as_str()),
    ];
    let spoke_a = Server::start_on(spoke_lattice("spoke-a"), &[], &env);
    let spoke_b = Server::start_on(spoke_lattice("spoke-b"), &[], &env);
    for spoke in [&spoke_a, &spoke_b] {
        spoke
            .lattice
            .run(&["federation", "add-peer", &hub.url()])
            .ok();
    }
    spoke_a
        .lattice
        .run(&[
            "add",
            "--id",
            "from_a",
            "--type",
            "template_node",
            "--value",
            "written on A",
        ])
        .ok();
    let pushed = spoke_a.sync();
    assert!(
        matches!(field(&pushed, "success"), Value::Bool(true)),
        "{}",
        json::to_string(&pushed)
    );
    let pulled = spoke_b.sync();
    assert!(
        matches!(field(&pulled, "success"), Value::Bool(true)),
        "{}",
        json::to_string(&pulled)
    );
    let record = spoke_b
        .lattice
        .run(&["get", "from_a", "--json", "--provenance"])
        .ok()
        .json();
    let provenance = field(&record, "provenance");
    assert_eq!(text(field(provenance, "origin")), spoke_a.instance_id());
    assert!(matches!(field(provenance, "signed"), Value::Bool(true)));
    // The hub forwarded the author's version and content unchanged.
    let at_a = spoke_a
        .lattice
        .run(&["get", "from_a", "--json"])
        .ok()
        .json();
    assert_eq!(
        text(field(&record, "version")),
        text(field(&at_a, "version"))
    );
    assert_eq!(text(field(&record, "hash")), text(field(&at_a, "hash")));
    // Both spokes registered their signed manifests at start; each finds the other
    // through the hub's registry.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(hub.port, "GET", "/discover", b"", &[]);
        let registry: Value = json::from_str(&body).unwrap();
        if count(field(&registry, "count")) == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "spokes did not register: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let found = spoke_a
        .lattice
        .run(&["federation", "discover", "--json"])
        .ok()
        .json();
    let urls: Vec<&str> = array(field(&found, "peers"))
        .iter()
        .map(|peer| text(field(peer, "url")))
        .collect();
    assert!(urls.contains(&spoke_b.url().as_str()), "{urls:?}");
}

/// A peer that serves `records` (wire JSON) as its whole changes feed, as `peer_key`.
pub fn fake_peer(peer_key: &KeyPair, records: &[String]) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let public = peer_key.public_key();
    let info = format!(
        r#"{{"instanceId":"{}","instanceName":"fake-peer","protocols":["ark-federation-v1","ark-lattice-v2"],"epoch":"00","publicKey":"{}"}}"#,
        public.instance_id().to_hex(),
        public.to_base64()
    );
    let changes = format!(
        r#"{{"instanceId":"{}","epoch":"00","records":[{}],"last_seq":1,"more":false}}"#,
        public.instance_id().to_hex(),
        records.join(",")
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().take(32) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 8192];
            let read = stream.read(&mut buffer).unwrap_or(0);
            let head = String::from_utf8_lossy(&buffer[..read]).into_owned();
            let body = if head.starts_with("GET /federation/info") {
                info.clone()
            } else if head.starts_with("GET /federation/v2/changes") {
                changes.clone()
            } else {
                r#"{"want":[]}"#.to_owned()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A hub that relays a record its author signed, with the value changed.
fn tampering_hub(author: &KeyPair, hub_key: &KeyPair) -> u16 {
    let node = Node {
        id: "tampered".into(),
        node_type: "t".into(),
        value: "what the author wrote".into(),
        ..Node::default()
    };
    let version = Version {
        hlc: Hlc::from_parts(1_700_000_000_000, 0),
        origin: author.public_key().instance_id(),
    };
    let claim = RecordClaim {
        id: "tampered",
        content: ClaimedContent::Live(ContentHash::of(&encode_node(&node))),
        version,
        base: None,
    };
    let signature = sign_record(author, &claim).unwrap();
    let altered = Node {
        value: "what the hub says".into(),
        ..node
    };
    let record = Record {
        id: "tampered".into(),
        meta: RecordMeta {
            version,
            base: None,
            seq: 1,
            hash: ContentHash::of(&encode_node(&altered)),
            updated_at: None,
            signature: Some(RecordSignature::v2(*signature.as_bytes())),
        },
        body: Body::Live(altered),
    };
    let record = json::to_string(&record_to_wire(
        &record,
        Some(&author.public_key().to_base64()),
    ));
    fake_peer(hub_key, &[record])
}

#[test]
fn a_hub_that_alters_a_record_is_caught() {
    let author = KeyPair::generate().unwrap();
    let hub_key = KeyPair::generate().unwrap();
    let port = tampering_hub(&author, &hub_key);
    let spoke = Lattice::new("tamper-spoke");
    spoke
        .run(&[
            "federation",
            "add-peer",
            &format!("http://127.0.0.1:{port}"),
            "--pubkey",
            &hub_key.public_key().to_base64(),
        ])
        .ok();
    let run = spoke.run(&["federation", "sync", "--json"]);
    let answer = run.json();
    let result = &array(field(&answer, "result"))[0];
    let rejected = array(field(result, "rejected"));
    assert_eq!(rejected.len(), 1, "{}", run.stdout);
    assert!(text(&rejected[0]).contains("signature"), "{}", run.stdout);
    assert_eq!(
        spoke.run(&["get", "tampered"]).code,
        4,
        "nothing unverified is stored"
    );
}

#[test]
fn tiers_limit_what_peers_may_do_and_replays_are_refused() {
    let origin = Server::start("tiers-origin", &[], &[]);
    origin
        .lattice
        .run(&["add", "--id", "shared", "--type", "t", "--value", "v"])
        .ok();
    let sandbox = Server::start("tiers-sandbox", &[], &[]);
    let external = Server::start("tiers-external", &[], &[]);
    origin
        .lattice
        .run(&["trust", "add", &sandbox.public_key(), "--tier", "sandbox"])
        .ok();
    origin
        .lattice
        .run(&["trust", "add", &external.public_key(), "--tier", "external"])
        .ok();
    for peer in [&sandbox, &external] {
        peer.lattice
            .run(&["federation", "add-peer", &origin.url()])
            .ok();
    }
    // The sandbox peer pulls, but its own write is refused on push.
    sandbox
        .lattice
        .run(&["add", "--id", "from_sandbox", "--type", "t", "--value", "v"])
        .ok();
    let result = sandbox.sync();
    assert_eq!(
        count(field(&result, "nodesReceived")),
        1,
        "{}",
        json::to_string(&result)
    );
    assert!(
        text(field(&result, "error")).contains("does not allow push"),
        "{}",
        json::to_string(&result)
    );
    assert_eq!(origin.lattice.run(&["get", "from_sandbox"]).code, 4);
    // The external peer may not even pull.
    let result = external.sync();
    assert!(
        text(field(&result, "error")).contains("403"),
        "{}",
        json::to_string(&result)
    );
    assert_eq!(external.lattice.run(&["get", "shared"]).code, 4);
    // A signed request replayed verbatim is refused the second time.
    let caller = KeyPair::generate().unwrap();
    origin
        .lattice
        .run(&["trust", "add", &caller.public_key().to_base64()])
        .ok();
    let path = "/federation/v2/changes?after=0";
    let headers = signed(&caller, &origin.instance_id(), "GET", path, b"");
    assert_eq!(http(origin.port, "GET", path, b"", &headers).0, 200);
    let (status, body) = http(origin.port, "GET", path, b"", &headers);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("nonce") || body.contains("replay"), "{body}");
    // Nor can an instance that received it replay it to a third one that trusts the
    // caller too: the request names the instance it was for.
    sandbox
        .lattice
        .run(&["trust", "add", &caller.public_key().to_base64()])
        .ok();
    let (status, body) = http(sandbox.port, "GET", path, b"", &headers);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("addressed to instance"), "{body}");
    // A request naming no instance may read info, not pull.
    let anonymous = signed(&caller, "", "GET", path, b"");
    let (status, body) = http(origin.port, "GET", path, b"", &anonymous);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("names no audience"), "{body}");
}

/// `trust` through a running server goes to `/api/trust/*` (issue 15): a body without
/// a key, with a key that is not one, an unknown tier or a name that is not text, and a
/// reference that names no key, are refused naming what was wrong; nothing is trusted.
#[test]
fn trust_routes_refuse_bad_requests_and_trust_nothing() {
    use crate::util::{Node, http};
    let node = Node::start("trust-routes");
    let key = KeyPair::generate().unwrap().public_key().to_base64();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies = [
        ("{}".to_owned(), 400, "public_key"),
        (r#"{"public_key":"AAAA"}"#.to_owned(), 400, "public key"),
        (
            format!(r#"{{"public_key":"{key}","tier":"root"}}"#),
            400,
            "tier",
        ),
        (format!(r#"{{"public_key":"{key}","name":5}}"#), 400, "name"),
        (deep.clone(), 400, "request body"),
    ];
    for (body, status, names) in &bodies {
        let reply = http(
            node.address(),
            "POST",
            "/api/trust/keys",
            &[("Content-Type", "application/json")],
            Some(body),
        );
        assert_eq!(
            reply.status,
            *status,
            "{}: {}",
            &body[..body.len().min(40)],
            reply.body
        );
        assert!(reply.body.contains(names), "{names}: {}", reply.body);
    }
    for (method, path, status) in [
        ("POST", "/api/trust/accept/SHA256%3A0000", 404),
        ("DELETE", "/api/trust/keys/nobody", 404),
        ("DELETE", "/api/trust/keys/", 404),
    ] {
        let reply = http(
            node.address(),
            method,
            path,
            &[("Content-Type", "application/json")],
            Some("{}"),
        );
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
    }
    let listed = node.run(&["trust", "list", "--json"]).ok();
    assert_eq!(listed.stdout, "{\"count\":0,\"keys\":[]}\n");
    let trusted = node.run(&["trust", "add", &key, "--name", "a/b"]).ok();
    assert!(
        trusted.stdout.starts_with("trusted SHA256:"),
        "{}",
        trusted.stdout
    );
    let removed = node.run(&["trust", "remove", &key]).ok();
    assert!(
        removed.stdout.starts_with("removed SHA256:"),
        "{}",
        removed.stdout
    );
}
