//! A stand-in for ARK's Node.js federation server, for tests of the legacy protocol:
//! `/federation/info` without `protocols`, `/federation/nodes` with SQLite rows, and
//! `POST /federation/sync` recorded for the test to inspect.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miniserde::json::{self, Value};

use crate::util::{array, field, text};

/// A request the fake ARK peer received.
pub struct Received {
    method: String,
    path: String,
    body: Value,
}

/// Stands in for ARK's Node.js server: `/federation/info` without `protocols`,
/// `/federation/nodes` with SQLite rows, `POST /federation/sync` recorded.
pub struct FakeArk {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

const FAKE_ARK_ROWS: &str = r#"[
  {"id":"ark_only_one","type":"command_node","language":"bash","category":"Shell",
   "value":"List files","capabilities":"[\"list\",\"files\"]","dependencies":"[]",
   "examples":"[\"ls -la\"]","content":"ls -la","linked_agents":"[]",
   "created_at":"2025-11-09 10:22:32","updated_at":"2025-11-09 10:22:32",
   "usage_count":3,"success_rate":1.0},
  {"id":"ark_only_two","type":"library_node","language":"python","category":null,
   "value":"Requests","capabilities":"[]","dependencies":"[\"requests\"]",
   "examples":"[]","content":null,"linked_agents":"[]",
   "created_at":"2025-11-10 08:00:00","updated_at":"2025-11-10 08:00:00",
   "usage_count":0,"success_rate":1.0}
]"#;

impl FakeArk {
    pub fn start() -> FakeArk {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        // The thread ends with the test binary; it only ever answers this test.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || fake_ark_connection(stream, port, &log));
            }
        });
        FakeArk { port, received }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<(String, String)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|request| (request.method.clone(), request.path.clone()))
            .collect()
    }

    /// The `nodes` of every `POST /federation/sync`, in order.
    pub fn pushes(&self) -> Vec<(String, Vec<Value>)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|request| request.path == "/federation/sync")
            .map(|request| {
                (
                    text(field(&request.body, "instanceId")).to_owned(),
                    array(field(&request.body, "nodes")).to_vec(),
                )
            })
            .collect()
    }
}

/// Answers the requests on one connection, one at a time, until the client closes it.
fn fake_ark_connection(mut stream: TcpStream, port: u16, log: &Mutex<Vec<Received>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut pending = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
                break end;
            }
            let mut buffer = [0; 8192];
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => pending.extend_from_slice(&buffer[..read]),
            }
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let target = request_line.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let length: usize = header("content-length")
            .and_then(|length| length.parse().ok())
            .unwrap_or(0);
        pending.drain(..head_end + 4);
        while pending.len() < length {
            let mut buffer = [0; 65536];
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => pending.extend_from_slice(&buffer[..read]),
            }
        }
        let mut body: Vec<u8> = pending.drain(..length).collect();
        // Express's body parser inflates gzip request bodies; so does this fake.
        if header("content-encoding").is_some_and(|coding| coding.contains("gzip")) {
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut inflated)
                .unwrap();
            body = inflated;
        }
        let path = target.split('?').next().unwrap_or_default().to_owned();
        let body_json: Value = if body.is_empty() {
            Value::Null
        } else {
            json::from_str(&String::from_utf8_lossy(&body)).unwrap_or(Value::Null)
        };
        let (status, answer) = match (method.as_str(), path.as_str()) {
            ("GET", "/federation/info") => (
                200,
                format!(
                    r#"{{"instanceId":"ark-fake-1","instanceName":"ARK-local-fake","instanceType":"local","federationMode":"p2p","listenPort":{port},"hubUrl":null,"autoSync":false,"syncInterval":300000,"peers":[],"activePeers":[],"stats":{{"totalSyncs":0,"successfulSyncs":0,"failedSyncs":0,"nodesReceived":0,"nodesShared":0,"conflictsResolved":0}},"timestamp":1762680000000}}"#
                ),
            ),
            ("GET", "/federation/nodes") => (
                200,
                format!(r#"{{"instanceId":"ark-fake-1","count":2,"nodes":{FAKE_ARK_ROWS}}}"#),
            ),
            ("POST", "/federation/sync") => {
                let total = match &body_json {
                    Value::Object(object) => match object.get("nodes") {
                        Some(Value::Array(nodes)) => nodes.len(),
                        _ => 0,
                    },
                    _ => 0,
                };
                (
                    200,
                    format!(r#"{{"imported":{total},"conflicts":0,"total":{total}}}"#),
                )
            }
            _ => (404, r#"{"error":"Not found"}"#.to_owned()),
        };
        log.lock().unwrap().push(Received {
            method: method.clone(),
            path,
            body: body_json,
        });
        let reason = if status == 200 { "OK" } else { "Not Found" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nX-Powered-By: Express\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
