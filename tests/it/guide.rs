//! The four "Multi-Instance Scenarios" of ARK's federation guide, run with the guide's
//! commands and environment on fresh state dirs (issue 12). What differs from the
//! guide, and why:
//!
//! - `FEDERATION_PORT=0` and `federation start --bind 127.0.0.1`: test servers listen on
//!   a free loopback port, never on 9000 of every interface;
//! - each instance trusts the keys of the instances that push to it (`trust add`), a
//!   step the guide's unsigned protocol did not have (`add-peer` does it for the peer
//!   added; the rest is one command per pair);
//! - LAN beacons go by unicast to loopback, as in `observe.rs`, and the scenario that
//!   waits for auto-sync sets the guide's `FEDERATION_SYNC_INTERVAL` to 1000.

use std::net::UdpSocket;
use std::time::Duration;

use miniserde::json::Value;

use crate::util::{Lattice, Run, array, count, eventually, field, shared_data, text};

/// One ARK instance of a scenario: a state dir and the environment the guide exports.
struct Instance {
    lattice: Lattice,
    env: Vec<(String, String)>,
}

impl Instance {
    fn new(name: &str, env: &[(&str, &str)]) -> Instance {
        Instance {
            lattice: Lattice::new(name),
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        }
    }

    /// `./bin/ark-lattice ARGS` with the instance's environment.
    fn run(&self, args: &[&str]) -> Run {
        let mut command = self.lattice.command(args);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let output = command.output().expect("run ark-lattice");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `federation start`, as the guide runs it; the URL it listens on.
    fn start(&self) -> String {
        let run = self
            .run(&["federation", "start", "--bind", "127.0.0.1"])
            .ok();
        assert!(
            run.stdout.contains("Federation server started on port"),
            "{}",
            run.stdout
        );
        self.url()
    }

    fn status(&self) -> Value {
        self.run(&["federation", "status", "--json"]).ok().json()
    }

    fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            count(field(&self.status(), "listenPort"))
        )
    }

    /// Trusts `other`'s key for syncing with this instance.
    fn trust(&self, other: &Instance) {
        let key = text(field(&other.status(), "publicKey")).to_owned();
        self.run(&["trust", "add", &key]).ok();
    }

    fn has(&self, id: &str) -> bool {
        self.run(&["get", id]).code == 0
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.run(&["federation", "stop"]);
    }
}

/// Nodes to import: the shared security nodes, or a small file in their shape.
fn security_nodes(instance: &Instance) -> (String, String) {
    if let Some(path) = shared_data("security-pentesting-nodes.json") {
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value = miniserde::json::from_str(&text).unwrap();
        // ARK's topics document: {"meta", "topics": [{"name", "nodes": [...]}]}; or an
        // array of nodes.
        let first = match &value {
            Value::Array(items) => text_of(&items[0]),
            Value::Object(_) => match field(&value, "topics") {
                Value::Array(topics) => match field(&topics[0], "nodes") {
                    Value::Array(nodes) => text_of(&nodes[0]),
                    _ => panic!("a topic without nodes"),
                },
                _ => panic!("topics is not a list"),
            },
            _ => panic!("unexpected shape"),
        };
        return (path.to_str().unwrap().to_owned(), first);
    }
    let path = instance.lattice.dir.file(
        "security-pentesting-nodes.json",
        r#"[{"id":"sec_nmap_scan","type":"security_node","value":"Nmap scan","language":"bash"}]"#,
    );
    (
        path.to_str().unwrap().to_owned(),
        "sec_nmap_scan".to_owned(),
    )
}

fn text_of(node: &Value) -> String {
    text(field(node, "id")).to_owned()
}

fn sync_succeeded(run: &Run) {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("failed"), "{}", run.stdout);
    assert!(!run.stdout.contains("no peers"), "{}", run.stdout);
}

/// Scenario 1: developer laptop and cloud server add each other, enable auto-sync
/// (60 s), and an import on the laptop reaches the cloud by `federation sync`.
#[test]
fn scenario_1_developer_laptop_and_cloud_server() {
    let local = Instance::new(
        "guide1-local",
        &[("ARK_INSTANCE_TYPE", "local"), ("FEDERATION_PORT", "0")],
    );
    let cloud = Instance::new(
        "guide1-cloud",
        &[("ARK_INSTANCE_TYPE", "cloud"), ("FEDERATION_PORT", "0")],
    );
    let local_url = local.start();
    let cloud_url = cloud.start();
    cloud.run(&["federation", "add-peer", &local_url]).ok();
    local.run(&["federation", "add-peer", &cloud_url]).ok();
    for instance in [&local, &cloud] {
        instance.run(&["federation", "auto-sync", "--start"]).ok();
        let status = instance.status();
        assert!(matches!(field(&status, "autoSync"), Value::Bool(true)));
        assert_eq!(count(field(&status, "syncInterval")), 60_000);
    }
    let (file, id) = security_nodes(&local);
    local.run(&["import", &file]).ok();
    sync_succeeded(&local.run(&["federation", "sync"]));
    assert!(cloud.has(&id), "the cloud has {id}");
}

/// Scenario 2: developer A discovers B and C on the LAN, adds them, enables auto-sync,
/// and a node A adds reaches B and C without a manual sync.
#[test]
fn scenario_2_office_network_with_multiple_developers() {
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let developer = |name: &str, own: usize| {
        let others: Vec<String> = (0..3)
            .filter(|index| *index != own)
            .map(|index| format!("127.0.0.1:{}", ports[index]))
            .collect();
        Instance::new(
            name,
            &[
                ("ARK_INSTANCE_TYPE", "local"),
                ("FEDERATION_PORT", "0"),
                ("FEDERATION_SYNC_INTERVAL", "1000"),
                ("FEDERATION_DISCOVERY", "true"),
                ("FEDERATION_BEACON_PORT", &ports[own].to_string()),
                ("FEDERATION_BEACON_UNICAST", &others.join(",")),
                ("FEDERATION_BEACON_INTERVAL", "1"),
            ],
        )
    };
    let a = developer("guide2-a", 0);
    let b = developer("guide2-b", 1);
    let c = developer("guide2-c", 2);
    let (_, b_url, c_url) = (a.start(), b.start(), c.start());
    let found = eventually(Duration::from_secs(20), || {
        let run = a.run(&["federation", "discover"]).ok();
        run.stdout.contains(&b_url) && run.stdout.contains(&c_url)
    });
    assert!(found, "{}", a.run(&["federation", "discover"]).stdout);
    a.run(&["federation", "add-peer", &b_url]).ok();
    a.run(&["federation", "add-peer", &c_url]).ok();
    b.trust(&a);
    c.trust(&a);
    a.run(&["federation", "auto-sync", "--start"]).ok();
    a.run(&[
        "add",
        "--id",
        "react_use_debounce",
        "--type",
        "hook_node",
        "--value",
        "useDebounce",
    ])
    .ok();
    let reached = eventually(Duration::from_secs(30), || {
        b.has("react_use_debounce") && c.has("react_use_debounce")
    });
    assert!(reached, "auto-sync did not reach B and C");
}

/// Scenario 3: a Raspberry Pi with only `FEDERATION_HUB_URL` pulls the hub's library,
/// works offline, and syncs its own node back.
#[test]
fn scenario_3_edge_computing_with_raspberry_pi() {
    let hub = Instance::new(
        "guide3-hub",
        &[("ARK_INSTANCE_TYPE", "cloud"), ("FEDERATION_PORT", "0")],
    );
    let hub_url = hub.start();
    hub.run(&[
        "add",
        "--id",
        "python_mqtt_client",
        "--type",
        "library_node",
        "--value",
        "MQTT",
    ])
    .ok();
    let pi = Instance::new(
        "guide3-pi",
        &[
            ("ARK_INSTANCE_TYPE", "pi"),
            ("FEDERATION_HUB_URL", &hub_url),
            ("FEDERATION_PORT", "0"),
        ],
    );
    pi.start();
    hub.trust(&pi);
    pi.trust(&hub);
    sync_succeeded(&pi.run(&["federation", "sync"]));
    assert!(
        pi.has("python_mqtt_client"),
        "the initial sync from the hub"
    );
    pi.run(&[
        "add",
        "--id",
        "pi_gpio_blink",
        "--type",
        "template_node",
        "--value",
        "Blink",
    ])
    .ok();
    sync_succeeded(&pi.run(&["federation", "sync"]));
    assert!(hub.has("pi_gpio_blink"), "the Pi's node reached the hub");
}

/// Scenario 4: a US hub (`FEDERATION_MODE=hub` alone), an EU hub in p2p mode with the
/// US hub as its hub and the AP hub as a peer, and a regional developer pointing at
/// the EU hub: the developer's node reaches all three hubs.
#[test]
fn scenario_4_multi_region_deployment() {
    let us = Instance::new(
        "guide4-us",
        &[("FEDERATION_MODE", "hub"), ("FEDERATION_PORT", "0")],
    );
    let us_url = us.start();
    let status = us.status();
    assert_eq!(text(field(&status, "federationMode")), "hub");
    let ap = Instance::new(
        "guide4-ap",
        &[
            ("FEDERATION_MODE", "p2p"),
            ("FEDERATION_HUB_URL", &us_url),
            ("FEDERATION_PORT", "0"),
        ],
    );
    let ap_url = ap.start();
    let eu = Instance::new(
        "guide4-eu",
        &[
            ("FEDERATION_MODE", "p2p"),
            ("FEDERATION_HUB_URL", &us_url),
            ("FEDERATION_PORT", "0"),
        ],
    );
    let eu_url = eu.start();
    eu.run(&["federation", "add-peer", &us_url]).ok();
    eu.run(&["federation", "add-peer", &ap_url]).ok();
    let developer = Instance::new(
        "guide4-dev",
        &[("FEDERATION_HUB_URL", &eu_url), ("FEDERATION_PORT", "0")],
    );
    developer.start();
    us.trust(&eu);
    ap.trust(&eu);
    eu.trust(&developer);
    developer.trust(&eu);
    developer
        .run(&[
            "add",
            "--id",
            "eu_gdpr_helper",
            "--type",
            "template_node",
            "--value",
            "GDPR",
        ])
        .ok();
    sync_succeeded(&developer.run(&["federation", "sync"]));
    assert!(eu.has("eu_gdpr_helper"));
    let answer = eu.run(&["federation", "sync", "--json"]).ok().json();
    let peers: Vec<&str> = array(field(&answer, "result"))
        .iter()
        .map(|result| text(field(result, "peer")))
        .collect();
    assert_eq!(peers.len(), 2, "the US hub once, and the AP hub: {peers:?}");
    assert!(us.has("eu_gdpr_helper") && ap.has("eu_gdpr_helper"));
}

/// `auto-sync --start|--stop` (and `on|off`) outlive a restart, interval included, and
/// `federation start` takes serve's flags, as the guide and its error messages say.
#[test]
fn auto_sync_settings_outlive_a_restart_and_start_takes_serves_flags() {
    let node = Instance::new("guide-settings", &[("FEDERATION_PORT", "0")]);
    let saved = node
        .run(&["federation", "auto-sync", "--start", "--interval", "5000"])
        .ok();
    assert!(saved.stdout.contains("auto-sync is on"), "{}", saved.stdout);
    node.run(&[
        "federation",
        "start",
        "--bind",
        "127.0.0.1",
        "--port-fallback",
        "--mode",
        "p2p",
        "--no-discovery",
    ])
    .ok();
    let status = node.status();
    assert!(matches!(field(&status, "autoSync"), Value::Bool(true)));
    assert_eq!(count(field(&status, "syncInterval")), 5000);
    node.run(&["federation", "auto-sync", "off"]).ok();
    node.run(&["federation", "stop"]).ok();
    node.start();
    let status = node.status();
    assert!(matches!(field(&status, "autoSync"), Value::Bool(false)));
    assert_eq!(count(field(&status, "syncInterval")), 5000);
    let bad = node.run(&["federation", "start", "--no-such-flag"]);
    assert_ne!(bad.code, 0);
    let both = node.run(&["federation", "auto-sync", "--start", "--stop"]);
    assert_eq!(both.code, 2, "{}", both.stderr);
}
