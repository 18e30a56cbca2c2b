//! Talking to the running server from the CLI: calling its control API by route (found
//! through `server.json`), and sending each store command to its route.

use miniserde::json::{self, Object, Value};

use crate::cli::Command;
use crate::config::Config;
use crate::error::Error;
use crate::http::{ClientConfig, ClientError, ClientRequest};
use crate::model::{Node, Shape};
use crate::protocol::{Fields, Route, parse_object};
use crate::service::{Output, ServerInfo};
use crate::store::WriteSummary;

/// Calls the control API of the running server and returns its JSON answer.
pub(crate) fn call(
    config: &Config,
    server: &ServerInfo,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Object, Error> {
    let url = format!("{}{path}", server.base_url());
    let mut request = match body {
        Some(body) => ClientRequest::post(
            &url,
            "application/json",
            json::to_string(&body).into_bytes(),
        ),
        None => ClientRequest::get(&url),
    };
    request.method = method.to_owned();
    // The server is on this machine: compressing its answer (an export page is 1 MB)
    // would cost both sides more CPU time than it saves on loopback.
    request = request.with_header("accept-encoding", "identity");
    if let Some(token) = &config.admin_token {
        request = request.with_header("x-ark-admin-token", token);
    }
    let client_config = ClientConfig {
        // A sync of every peer can take a while on slow links.
        request_timeout: std::time::Duration::from_secs(600),
        ..ClientConfig::default()
    };
    let client = server.client(client_config)?;
    let response = smol::block_on(client.send(request)).map_err(|error| {
        let may_have_applied = was_sent(&error);
        let message = if may_have_applied {
            format!(
                "lost the answer of the running server (pid {}): {error}",
                server.pid
            )
        } else {
            format!(
                "cannot reach the running server (pid {}): {error}",
                server.pid
            )
        };
        Error::Server {
            message,
            may_have_applied,
        }
    })?;
    let answer = parse_object(
        &response.body,
        &format!("the server's answer to {method} {path}"),
    )?;
    if response.status != 200 {
        let message = match answer.get("error") {
            Some(Value::String(message)) => message.clone(),
            _ => format!("status {}", response.status),
        };
        let message = match response.status {
            400 | 404 => message,
            _ => format!("the server refused {method} {path}: {message}"),
        };
        return Err(Error::Refused {
            status: response.status,
            message,
        });
    }
    Ok(answer)
}

/// Calls a route of the control API (one without a parameter).
pub(crate) fn call_route(
    config: &Config,
    server: &ServerInfo,
    route: Route,
    body: Option<Value>,
) -> Result<Object, Error> {
    call(config, server, route.method(), route.path(), body)
}

/// Whether a failed request may have reached the server: everything after the
/// connection was made counts, since the server may have read the whole request and
/// committed before the connection broke (issue #16: 10 of 31 calls cut by a kill had
/// been applied).
fn was_sent(error: &ClientError) -> bool {
    match error {
        ClientError::Url(_)
        | ClientError::InvalidRequest { .. }
        | ClientError::Resolve { .. }
        | ClientError::Connect { .. }
        | ClientError::ConnectTimeout { .. }
        // The TLS handshake comes before any byte of the request.
        | ClientError::Tls { .. } => false,
        ClientError::Timeout { .. }
        | ClientError::ConnectionLost { .. }
        | ClientError::MalformedResponse { .. }
        | ClientError::BodyTooLarge { .. }
        | ClientError::BadGzip { .. } => true,
    }
}

/// The most node JSON sent in one `POST /api/lattice/nodes`: well inside the server's
/// body limit (4 MiB by default, the same for every caller), so an import of any size
/// travels as a stream of bounded requests, and the server's loop runs other requests
/// between them.
const IMPORT_REQUEST_BYTES: usize = 1024 * 1024;

/// `import` into the store a running server holds: the files are read and checked
/// here, and the valid nodes sent in requests of at most [`IMPORT_REQUEST_BYTES`]
/// (issue 10: one request with every file needed a 256 MiB body limit for loopback).
fn forward_import(
    config: &Config,
    server: &ServerInfo,
    import: &crate::cli::Import,
    out: &mut Output,
) -> Result<(), Error> {
    let mut err = Output::stderr();
    let mut write = |batch: &[Node]| -> Result<WriteSummary, Error> {
        let mut totals = WriteSummary::default();
        let mut pending: Vec<Value> = Vec::new();
        let mut pending_bytes = 0;
        let mut send = |nodes: Vec<Value>| -> Result<(), Error> {
            let body = Value::Object(
                [(
                    "nodes".to_owned(),
                    Value::Array(nodes.into_iter().collect()),
                )]
                .into_iter()
                .collect(),
            );
            let answer = call(
                config,
                server,
                Route::WriteNodes.method(),
                Route::WriteNodes.path(),
                Some(body),
            )?;
            let fields = Fields::new(&answer, "the server's answer");
            let count = |name| fields.u64(name).map_err(Error::Wire);
            totals.created += count("created")?;
            totals.updated += count("updated")?;
            totals.unchanged += count("unchanged")?;
            Ok(())
        };
        for node in batch {
            let value = Value::Object(node.to_json(Shape::Native));
            let size = json::to_string(&value).len();
            if !pending.is_empty() && pending_bytes + size > IMPORT_REQUEST_BYTES {
                send(std::mem::take(&mut pending))?;
                pending_bytes = 0;
            }
            pending_bytes += size;
            pending.push(value);
        }
        if !pending.is_empty() {
            send(pending)?;
        }
        Ok(totals)
    };
    crate::service::import_with(
        import,
        config.verbose,
        &crate::service::read_input,
        out,
        &mut err,
        &mut write,
    )
}

/// Runs a store command on the running server that holds the store, and prints its
/// answer exactly as if it had run here. Input files are read here and `export -o` is
/// written here: the server may not reach the caller's files.
pub(crate) fn forward(
    config: &Config,
    server: &ServerInfo,
    command: &Command,
    out: &mut Output,
) -> Result<(), Error> {
    match command {
        Command::Import(import) => forward_import(config, server, import, out),
        Command::Trust(trust) => super::trust::run_on_server(&trust.command, config, server, out),
        Command::Export(args) => super::export::on_server(config, server, args, out),
        Command::Verify(args) => {
            let report = super::verify::on_server(config, server, args)?;
            super::verify::render(&report, args.json, out)
        }
        _ => super::lattice::run_on_server(command, config, server, out),
    }
}

/// Whether the command asked for JSON output (`--json` as a switch; `add --json`
/// carries the record instead).
pub(crate) fn wants_json(command: &Command) -> bool {
    use crate::cli::TrustCommand;
    match command {
        Command::Import(args) => args.json,
        Command::Get(args) => args.json,
        Command::Delete(args) => args.json,
        Command::List(args) => args.json,
        Command::Query(args) => args.json,
        Command::Stats(args) => args.json,
        Command::Conflicts(args) => args.json,
        Command::Gc(args) => args.json,
        Command::Verify(args) => args.json,
        Command::Trust(trust) => match &trust.command {
            TrustCommand::List(args) => args.json,
            TrustCommand::Pending(args) => args.json,
            TrustCommand::Add(_) | TrustCommand::Remove(_) | TrustCommand::Accept(_) => false,
        },
        Command::Add(_)
        | Command::Export(_)
        | Command::Serve(_)
        | Command::Federation(_)
        | Command::Keygen(_) => false,
    }
}
