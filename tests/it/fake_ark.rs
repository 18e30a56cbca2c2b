//! A stand-in for ARK's Node.js federation server, for tests of the legacy protocol:
//! `/federation/info` without `protocols`, `/federation/nodes` with the rows of its
//! table, and `POST /federation/sync` recorded for the test to inspect and received as
//! ARK's `receiveNodes` does: the body parsed as raw JSON (a gzip body is a 400), ten
//! columns kept of each row, `usage_count` 0, `success_rate` 1.0 and both timestamps
//! set at receipt, and an update only when the row's `updated_at` is newer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miniserde::json::{self, Value};

use crate::util::{array, field, text};

/// A request a fake ARK service received.
pub struct Received {
    method: String,
    path: String,
    body: Value,
    status: u16,
}

/// Stands in for ARK's Node.js server: `/federation/info` without `protocols`,
/// `/federation/nodes` with SQLite rows, `POST /federation/sync` recorded.
pub struct FakeArk {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    table: Arc<Mutex<Vec<Value>>>,
}

/// The ten columns ARK's `_insertNode` and `_updateNode` write.
const COLUMNS: [&str; 10] = [
    "id",
    "type",
    "language",
    "category",
    "value",
    "capabilities",
    "dependencies",
    "examples",
    "content",
    "linked_agents",
];

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
        FakeArk::with_rows(FAKE_ARK_ROWS)
    }

    /// A fake whose table holds `rows` (a JSON array of ARK rows).
    pub fn with_rows(rows: &str) -> FakeArk {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let rows: Value = json::from_str(rows).unwrap();
        let table = Arc::new(Mutex::new(array(&rows).to_vec()));
        let (log, shared) = (received.clone(), table.clone());
        // The thread ends with the test binary; it only ever answers this test.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, table) = (log.clone(), shared.clone());
                std::thread::spawn(move || fake_ark_connection(stream, port, &log, &table));
            }
        });
        FakeArk {
            port,
            received,
            table,
        }
    }

    /// The row with `id` in ARK's table.
    pub fn row(&self, id: &str) -> Option<Value> {
        let table = self.table.lock().unwrap();
        table
            .iter()
            .find(|row| text(field(row, "id")) == id)
            .cloned()
    }

    /// An edit made at ARK: sets one column and `updated_at` to now.
    pub fn edit(&self, id: &str, column: &str, value: &str) {
        let mut table = self.table.lock().unwrap();
        let row = table
            .iter_mut()
            .find(|row| text(field(row, "id")) == id)
            .expect("the row exists");
        let Value::Object(object) = row else { panic!() };
        object.insert(column.into(), Value::String(value.into()));
        object.insert("updated_at".into(), Value::String(sqlite_now()));
    }

    /// Statuses of the `POST /federation/sync` requests, in order.
    pub fn push_statuses(&self) -> Vec<u16> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|request| request.path == "/federation/sync")
            .map(|request| request.status)
            .collect()
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
fn fake_ark_connection(
    stream: TcpStream,
    port: u16,
    log: &Mutex<Vec<Received>>,
    table: &Mutex<Vec<Value>>,
) {
    serve_connection(stream, log, &|method, path, parsed| {
        node_answer(port, table, method, path, parsed)
    });
}

/// How a fake answers `(method, path, JSON body)`: status and body.
type Responder<'a> = dyn Fn(&str, &str, Option<&Value>) -> (u16, String) + 'a;

/// Answers the requests on one connection with `answer(method, path, body)`, logging
/// each, until the client closes it.
pub fn serve_connection(mut stream: TcpStream, log: &Mutex<Vec<Received>>, answer: &Responder<'_>) {
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
        let body: Vec<u8> = pending.drain(..length).collect();
        let path = target.split('?').next().unwrap_or_default().to_owned();
        // ARK's server reads the raw bytes as text and JSON.parse()s them: a gzip body
        // is not JSON, and ARK answers 400 with the parser's message.
        let parsed: Option<Value> = std::str::from_utf8(&body)
            .ok()
            .and_then(|text| json::from_str(text).ok());
        let body_json = parsed.clone().unwrap_or(Value::Null);
        let (status, answer) = answer(&method, &path, parsed.as_ref());
        log.lock().unwrap().push(Received {
            method: method.clone(),
            path,
            body: body_json,
            status,
        });
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            _ => "Internal Server Error",
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nX-Powered-By: Express\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// ARK's `receiveNodes`: insert new rows, update a known one when its `updated_at` (or
/// `created_at`) text is greater, or equal with the greater instance id.
fn receive_nodes(table: &Mutex<Vec<Value>>, nodes: &[Value], sender: &str) -> String {
    let mut table = table.lock().unwrap();
    let (mut imported, mut conflicts) = (0, 0);
    let time = |row: &Value| -> String {
        for name in ["updated_at", "created_at"] {
            if let Value::Object(object) = row {
                if let Some(Value::String(stamp)) = object.get(name) {
                    return stamp.clone();
                }
            }
        }
        String::new()
    };
    for node in nodes {
        let id = text(field(node, "id")).to_owned();
        let kept = |row: &mut miniserde::json::Object| {
            for column in COLUMNS {
                let value = match node {
                    Value::Object(object) => object.get(column).cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                // `node.language || null`: empty text and absent fields are NULL.
                let value = match value {
                    Value::String(text) if text.is_empty() && column != "value" => Value::Null,
                    other => other,
                };
                row.insert(column.into(), value);
            }
        };
        match table.iter_mut().find(|row| text(field(row, "id")) == id) {
            Some(existing) => {
                let (theirs, ours) = (time(node), time(existing));
                if theirs > ours || (theirs == ours && sender > "ark-fake-1") {
                    let Value::Object(row) = existing else {
                        panic!()
                    };
                    kept(row);
                    conflicts += 1;
                }
            }
            None => {
                let mut row = miniserde::json::Object::new();
                kept(&mut row);
                row.insert(
                    "usage_count".into(),
                    Value::Number(miniserde::json::Number::U64(0)),
                );
                row.insert(
                    "success_rate".into(),
                    Value::Number(miniserde::json::Number::F64(1.0)),
                );
                row.insert("created_at".into(), Value::String(sqlite_now()));
                row.insert("updated_at".into(), Value::String(sqlite_now()));
                table.push(Value::Object(row));
                imported += 1;
            }
        }
    }
    format!(
        r#"{{"imported":{imported},"conflicts":{conflicts},"total":{}}}"#,
        nodes.len()
    )
}

/// SQLite's `CURRENT_TIMESTAMP`: UTC `YYYY-MM-DD HH:MM:SS`.
fn sqlite_now() -> String {
    ark_lattice::model::format_sqlite(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    )
}

/// ARK's Node.js federation server's routes.
fn node_answer(
    port: u16,
    table: &Mutex<Vec<Value>>,
    method: &str,
    path: &str,
    parsed: Option<&Value>,
) -> (u16, String) {
    match (method, path) {
        ("GET", "/federation/info") => (
            200,
            format!(
                r#"{{"instanceId":"ark-fake-1","instanceName":"ARK-local-fake","instanceType":"local","federationMode":"p2p","listenPort":{port},"hubUrl":null,"autoSync":false,"syncInterval":60000,"peers":[],"activePeers":[],"stats":{{"totalSyncs":0,"successfulSyncs":0,"failedSyncs":0,"nodesReceived":0,"nodesShared":0,"conflictsResolved":0}},"timestamp":1762680000000}}"#
            ),
        ),
        ("GET", "/federation/nodes") => {
            let rows = Value::Array(table.lock().unwrap().iter().cloned().collect());
            let count = array(&rows).len();
            (
                200,
                format!(
                    r#"{{"instanceId":"ark-fake-1","count":{count},"nodes":{}}}"#,
                    json::to_string(&rows)
                ),
            )
        }
        ("POST", "/federation/sync") => match parsed {
            None => (
                400,
                r#"{"error":"Unexpected token in JSON at position 0"}"#.to_owned(),
            ),
            Some(request) => match request {
                Value::Object(object) => match object.get("nodes") {
                    Some(Value::Array(nodes)) => {
                        let sender = match object.get("instanceId") {
                            Some(Value::String(id)) => id.clone(),
                            _ => String::new(),
                        };
                        (200, receive_nodes(table, nodes, &sender))
                    }
                    _ => (
                        200,
                        r#"{"instanceId":"ark-fake-1","timestamp":1762680000000,"nodes":[]}"#
                            .to_owned(),
                    ),
                },
                _ => (400, r#"{"error":"not an object"}"#.to_owned()),
            },
        },
        _ => (404, r#"{"error":"Not found"}"#.to_owned()),
    }
}

/// Stands in for ARK's Python federation service (FastAPI + Redis): `POST /manifest`
/// stores the manifest's fields in a Redis hash, which takes scalars only (a list or
/// object is a 500), `POST /sync` answers the nodes whose hash differs, each with its
/// bare hex SHA-256, and there is no `/federation/*` (404).
pub struct FakePython {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

const FAKE_PYTHON_NODES: &str = r#"[
  {"id":"py_one","type":"framework_node","value":"Flask basic","language":"python",
   "capabilities":["web"],"updated_at":"2025-11-09 10:22:32"},
  {"id":"py_two","type":"component_node","value":"React form","language":"javascript",
   "updated_at":"2025-11-09 10:22:32"}
]"#;

impl FakePython {
    pub fn start() -> FakePython {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve_connection(stream, &log, &python_answer));
            }
        });
        FakePython { port, received }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `(method, path, status)` of every request, in order.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|request| (request.method.clone(), request.path.clone(), request.status))
            .collect()
    }
}

fn python_answer(method: &str, path: &str, parsed: Option<&Value>) -> (u16, String) {
    use sha2::Digest;
    match (method, path, parsed) {
        ("POST", "/manifest", Some(body)) => {
            let manifest = field(body, "manifest");
            let Value::Object(fields) = manifest else {
                return (400, r#"{"detail":"missing fields"}"#.to_owned());
            };
            if fields.is_empty() {
                return (400, r#"{"detail":"missing fields"}"#.to_owned());
            }
            if fields
                .values()
                .any(|value| matches!(value, Value::Array(_) | Value::Object(_)))
            {
                // redis-py: "Invalid input of type: 'list'".
                return (500, "Internal Server Error".to_owned());
            }
            let node_id = match fields.get("node_id") {
                Some(Value::String(id)) => id.clone(),
                _ => String::new(),
            };
            (
                200,
                format!(
                    r#"{{"status":"registered","node_id":{}}}"#,
                    json::to_string(&node_id)
                ),
            )
        }
        ("POST", "/sync", Some(body)) => {
            let known: Vec<(String, String)> = match field(body, "nodes") {
                Value::Array(entries) => entries
                    .iter()
                    .map(|entry| {
                        (
                            text(field(entry, "id")).to_owned(),
                            text(field(entry, "hash")).to_owned(),
                        )
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let nodes: Value = json::from_str(FAKE_PYTHON_NODES).unwrap();
            let mut delta = Vec::new();
            for node in array(&nodes) {
                let hash = ark_lattice::model::hex(&sha2::Sha256::digest(
                    json::to_string(node).as_bytes(),
                ));
                let id = text(field(node, "id")).to_owned();
                if !known.contains(&(id, hash.clone())) {
                    let Value::Object(mut with_hash) = node.clone() else {
                        panic!()
                    };
                    with_hash.insert("hash".into(), Value::String(hash));
                    delta.push(Value::Object(with_hash));
                }
            }
            (
                200,
                format!(
                    r#"{{"delta_count":{},"nodes":{}}}"#,
                    delta.len(),
                    json::to_string(&Value::Array(delta.into_iter().collect()))
                ),
            )
        }
        ("GET", "/discover", _) => (200, r#"{"peers":[],"count":0}"#.to_owned()),
        _ => (404, r#"{"detail":"Not Found"}"#.to_owned()),
    }
}
