//! Request routing: method and path to handler, the control-API guard (who may call,
//! and refusing web pages of other origins), CORS for ARK's peer routes, and turning
//! handler results into JSON responses.

use std::net::IpAddr;
use std::rc::Rc;

use miniserde::json::{self, Number, Object, Value};

use super::app::App;
use super::{control, delta_api, peer_api, python_api};
use crate::error::Error;
use crate::http::{Request, Response, is_loopback};
use crate::protocol::{Route, WireError, accepts_compact_page};
use crate::store::StoreError;

/// The message of [`ApiError::no_route`], answered with the request's path.
const NO_ROUTE: &str = "Not Found";

/// A handler failure: the HTTP status and a message for `{"error": ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
        }
    }

    /// A route this server does not have: ARK's 404 `{error: "Not Found", path}`.
    pub(crate) fn no_route() -> ApiError {
        ApiError {
            status: 404,
            message: NO_ROUTE.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 404,
            message: message.into(),
        }
    }
}

impl From<WireError> for ApiError {
    fn from(error: WireError) -> ApiError {
        ApiError::bad_request(error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError {
            status: 500,
            message: error.to_string(),
        }
    }
}

/// By the same rule as a service operation's failure (`OpError`): a wrong request is a
/// 400, what it names not being there a 404, anything else a 500.
impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        ApiError::from(crate::service::OpError::from(error))
    }
}

pub fn text(value: &str) -> Value {
    Value::String(value.to_owned())
}

pub fn number(n: u64) -> Value {
    Value::Number(Number::U64(n))
}

pub fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect::<Object>(),
    )
}

fn respond(result: Result<Value, ApiError>, path: &str) -> Response {
    match result {
        Ok(value) => Response::json(200, json::to_string(&value)),
        Err(error) if error.status == 404 && error.message == NO_ROUTE => {
            Response::json(404, json::to_string(&crate::protocol::not_found(path)))
        }
        Err(error) => Response::error(error.status, &error.message),
    }
}

/// With `-v`, one `ark:http` line per request answered.
fn log_request(app: &App, request: &Request, status: u16) {
    if app.instance().config().verbose {
        eprintln!(
            "ark:http {} {} {} -> {status}",
            request.remote_addr, request.method, request.path
        );
    }
}

fn respond_with(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|error| Response::error(error.status, &error.message))
}

/// `GET /api/federation/events`: Server-Sent Events, one JSON event per `data` line.
/// A reconnecting client's `Last-Event-ID` replays the recent events it missed.
fn event_stream(app: &App, request: &Request) -> Response {
    let last_id = request
        .header("last-event-id")
        .and_then(|id| id.trim().parse().ok());
    match app.instance().events().subscribe(last_id) {
        Ok(body) => Response::new(200, body)
            .with_header("content-type", "text/event-stream")
            .with_header("cache-control", "no-store")
            .with_header("x-accel-buffering", "no"),
        Err(_) => Response::error(
            503,
            &format!(
                "{} event streams are open already; close one and retry",
                super::events::MAX_SUBSCRIBERS
            ),
        )
        .with_header("retry-after", "5"),
    }
}

/// ARK's Node.js server used the `cors` middleware with its defaults; ARK's peer
/// routes keep it. The control API (`/api/...`) answers no CORS at all, so no web page
/// of another origin can read it (issue 11).
fn with_cors(response: Response) -> Response {
    response
        .with_header("access-control-allow-origin", "*")
        .with_header(
            "access-control-allow-methods",
            "GET,HEAD,PUT,PATCH,POST,DELETE",
        )
        .with_header(
            "access-control-allow-headers",
            "Content-Type, Authorization, X-Ark-Admin-Token",
        )
}

/// Only callers on this host, or callers presenting the admin token, may use `/api/`.
/// Callers on this host come from loopback, or, when the server listens on one address
/// only (`bound`), from that address: the CLI has to connect there, and no other host
/// can open a connection from an address of ours.
///
/// A request a reverse proxy forwarded (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`)
/// comes from anywhere, however local the connection; so does every request when the
/// server runs `--behind-proxy` (a proxy that adds no such header). Those need the token.
pub fn control_allowed(
    request: &Request,
    bound: IpAddr,
    behind_proxy: bool,
    admin_token: Option<&str>,
) -> bool {
    let proxied = behind_proxy
        || ["forwarded", "x-forwarded-for", "x-real-ip"]
            .iter()
            .any(|name| request.header(name).is_some());
    if !proxied
        && (is_loopback(&request.remote_addr)
            || (!bound.is_unspecified() && request.remote_addr.ip() == bound))
    {
        return true;
    }
    token_presented(request, admin_token)
}

/// Whether the request carries the admin token (`X-Ark-Admin-Token` or a bearer
/// `Authorization`), compared in constant time.
pub(crate) fn token_presented(request: &Request, admin_token: Option<&str>) -> bool {
    let Some(expected) = admin_token else {
        return false;
    };
    let presented = request.header("x-ark-admin-token").or_else(|| {
        request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
    });
    presented.is_some_and(|presented| constant_time_eq(presented.as_bytes(), expected.as_bytes()))
}

/// Why a control-API request that passed [`control_allowed`] is still refused: it
/// looks like a web page of another origin made the operator's browser send it (issue
/// 11: a `text/plain` POST from any page ran `add`). Browsers say where a request comes
/// from (`Sec-Fetch-Site`, `Origin`), cannot send a cross-origin `application/json`
/// POST without a preflight (which gets no CORS answer here), and a page that rebinds
/// its DNS name to 127.0.0.1 still sends its own name as `Host`.
pub(crate) fn cross_origin_refusal(request: &Request, token: bool) -> Option<String> {
    if let Some(site) = request.header("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return Some(format!(
                "it was sent by a web page of another site (Sec-Fetch-Site: {site})"
            ));
        }
    }
    let host = request.header("host").unwrap_or("");
    if let Some(origin) = request.header("origin") {
        let own = ["http://", "https://"].iter().any(|scheme| {
            origin
                .strip_prefix(scheme)
                .is_some_and(|rest| !host.is_empty() && rest.eq_ignore_ascii_case(host))
        });
        if !own {
            return Some(format!(
                "its Origin {origin:?} is not this node's own (Host {host:?})"
            ));
        }
    }
    if token {
        return None;
    }
    if !host_is_an_address(host) {
        return Some(format!(
            "Host {host:?} is not localhost or an IP address; other names need the admin token"
        ));
    }
    // A page can send GET, HEAD and POST without a preflight; every other method needs
    // one, which gets no CORS answer here. So a POST must say it is JSON, which a page
    // cannot say without a preflight either.
    let state_changing = request.method == "POST";
    let content_type = request.header("content-type").unwrap_or("");
    let json = content_type
        .split(';')
        .next()
        .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json"));
    if state_changing && !json {
        return Some(format!(
            "{} needs Content-Type: application/json (got {content_type:?}) or the admin token",
            request.method
        ));
    }
    None
}

/// `localhost` or an IP literal, with or without a port: names a DNS-rebinding page
/// cannot own.
fn host_is_an_address(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// Addresses warned about at most; beyond them the warning would only fill the log.
const TOKEN_WARNINGS: usize = 64;

/// Logs, once per address, a control-API request that carries the admin token over
/// plain HTTP from another machine: anyone on the path has read the token.
fn warn_if_token_in_clear(app: &App, request: &Request) {
    if !token_in_clear(request) {
        return;
    }
    let address = request.remote_addr.ip();
    if app.first_token_in_clear_from(address, TOKEN_WARNINGS) {
        eprintln!(
            "warning: {address} sent the admin token over plain HTTP to {}: it travels in \
             clear; serve HTTPS (--tls-cert) or put a TLS proxy in front",
            request.path
        );
    }
}

/// Whether `request` carries the admin token over plain HTTP from another machine.
fn token_in_clear(request: &Request) -> bool {
    let has_token = request.header("x-ark-admin-token").is_some()
        || request
            .header("authorization")
            .is_some_and(|value| value.starts_with("Bearer "));
    has_token && !request.secure && !is_loopback(&request.remote_addr)
}

/// `control_allowed` with this server's settings.
fn is_privileged(app: &App, request: &Request) -> bool {
    let federation = &app.instance().config().federation;
    control_allowed(
        request,
        federation.bind,
        federation.behind_proxy,
        app.instance().config().admin_token.as_deref(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Routes one request: the route table (`protocol::Route`) names the route, and this
/// picks its handler.
pub async fn handle(app: Rc<App>, request: Request) -> Response {
    let method = request.method.as_str();
    let path = request.path.trim_end_matches('/');
    let route = Route::find(method, path).map(|(route, _)| route);
    if path.starts_with("/api/") || path == "/api" {
        warn_if_token_in_clear(&app, &request);
        if !is_privileged(&app, &request) {
            return Response::error(
                403,
                "the control API is only for loopback callers or callers with the admin token (ARK_ADMIN_TOKEN)",
            );
        }
        let token = token_presented(&request, app.instance().config().admin_token.as_deref());
        if let Some(reason) = cross_origin_refusal(&request, token) {
            return Response::error(403, &format!("control API request refused: {reason}"));
        }
        if method == "OPTIONS" {
            return Response::error(403, "the control API answers no cross-origin requests");
        }
        if route == Some(Route::Events) {
            return event_stream(&app, &request);
        }
        return respond(control::handle(&app, &request).await, &request.path);
    }
    if method == "OPTIONS" {
        return with_cors(Response::new(204, crate::http::Body::Full(Vec::new())));
    }
    match route {
        Some(Route::StatusPage) => {
            let privileged = is_privileged(&app, &request);
            return respond_with(super::status_page::render(&app, privileged));
        }
        Some(Route::Metrics) => return respond_with(super::metrics::render(&app)),
        Some(Route::Docs) => return super::docs::page(),
        Some(Route::OpenApi) => return with_cors(super::docs::openapi()),
        _ => {}
    }
    if path.starts_with("/federation/") && !app.instance().federation_enabled() {
        return with_cors(Response::error(
            503,
            "federation is stopped on this instance",
        ));
    }
    match route {
        Some(Route::Manifest) => return with_cors(python_api::register(&app, &request)),
        Some(Route::Info) => {
            let response = match peer_api::info_json(&app) {
                Ok(json) => Response::json(200, json),
                Err(error) => Response::error(error.status, &error.message),
            };
            log_request(&app, &request, response.status);
            return with_cors(response);
        }
        Some(Route::Reconcile) => return delta_api::reconcile(&app, &request),
        Some(Route::Changes) if accepts_compact_page(request.header("accept")) => {
            let response = respond_with(delta_api::compact_changes(&app, &request).await);
            log_request(&app, &request, response.status);
            return response;
        }
        Some(Route::Changes) => {
            let response = respond_with(delta_api::changes(&app, &request).await);
            log_request(&app, &request, response.status);
            return response;
        }
        _ => {}
    }
    let result = match route {
        Some(Route::PythonDiscover) => python_api::discover(&app),
        Some(Route::PythonSync) => python_api::delta(&app, &request),
        Some(Route::OwnManifest) => python_api::own_manifest(&app, &request),
        Some(Route::Nodes) => peer_api::nodes(&app, &request),
        Some(Route::ArkSync) => peer_api::sync(&app, &request).await,
        Some(Route::ArkDiscover) => peer_api::discover(&app, &request),
        Some(Route::Fetch) => delta_api::fetch(&app, &request),
        Some(Route::Offer) => peer_api::offer(&app, &request),
        Some(Route::Push) => peer_api::push(&app, &request).await,
        Some(Route::Health) => Ok(object([
            ("status", text("ok")),
            ("instanceId", text(&app.instance().instance_id_hex())),
        ])),
        _ => Err(ApiError::no_route()),
    };
    log_request(
        &app,
        &request,
        result.as_ref().map_or_else(|error| error.status, |_| 200),
    );
    // Our signed peer protocol is never called from a browser; its answers skip the
    // CORS headers, about 170 bytes on every request of a metered link.
    if path.starts_with("/federation/v2/") && path != Route::OwnManifest.path() {
        return respond(result, &request.path);
    }
    with_cors(respond(result, &request.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server listening on every address.
    const ANY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

    fn request(remote: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/api/federation/status".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            body: Vec::new(),
            remote_addr: remote.parse().unwrap(),
            secure: false,
            parking: Default::default(),
        }
    }

    #[test]
    fn the_admin_token_in_clear_is_noticed_only_over_plain_http_from_elsewhere() {
        let token = [("x-ark-admin-token", "secret")];
        let bearer = [("authorization", "Bearer secret")];
        assert!(token_in_clear(&request("10.0.0.5:5000", &token)));
        assert!(token_in_clear(&request("10.0.0.5:5000", &bearer)));
        assert!(!token_in_clear(&request("10.0.0.5:5000", &[])));
        assert!(!token_in_clear(&request("127.0.0.1:5000", &token)));
        let secure = Request {
            secure: true,
            ..request("10.0.0.5:5000", &token)
        };
        assert!(!token_in_clear(&secure));
    }

    #[test]
    fn control_api_is_for_loopback_or_the_admin_token() {
        assert!(control_allowed(
            &request("127.0.0.1:5000", &[]),
            ANY,
            false,
            None
        ));
        assert!(control_allowed(
            &request("[::1]:5000", &[]),
            ANY,
            false,
            None
        ));
        assert!(!control_allowed(
            &request("10.0.0.5:5000", &[]),
            ANY,
            false,
            None
        ));
        assert!(!control_allowed(
            &request("10.0.0.5:5000", &[]),
            ANY,
            false,
            Some("secret")
        ));
        assert!(!control_allowed(
            &request("10.0.0.5:5000", &[("x-ark-admin-token", "wrong")]),
            ANY,
            false,
            Some("secret")
        ));
        assert!(control_allowed(
            &request("10.0.0.5:5000", &[("x-ark-admin-token", "secret")]),
            ANY,
            false,
            Some("secret")
        ));
        assert!(control_allowed(
            &request("10.0.0.5:5000", &[("authorization", "Bearer secret")]),
            ANY,
            false,
            Some("secret")
        ));
        assert!(!control_allowed(
            &request("10.0.0.5:5000", &[("authorization", "Bearer secret")]),
            ANY,
            false,
            None
        ));
    }

    #[test]
    fn a_server_bound_to_one_address_trusts_callers_from_that_address() {
        let bound: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(control_allowed(
            &request("192.0.2.2:5000", &[]),
            bound,
            false,
            None
        ));
        assert!(control_allowed(
            &request("127.0.0.1:5000", &[]),
            bound,
            false,
            None
        ));
        assert!(!control_allowed(
            &request("192.0.2.3:5000", &[]),
            bound,
            false,
            None
        ));
        // Listening on every address, the CLI calls over loopback; nothing else is trusted.
        assert!(!control_allowed(
            &request("192.0.2.2:5000", &[]),
            ANY,
            false,
            None
        ));
    }

    #[test]
    fn requests_through_a_reverse_proxy_need_the_token() {
        let forwarded = request("127.0.0.1:5000", &[("x-forwarded-for", "203.0.113.9")]);
        assert!(!control_allowed(&forwarded, ANY, false, None));
        assert!(!control_allowed(
            &request("127.0.0.1:5000", &[("forwarded", "for=203.0.113.9")]),
            ANY,
            false,
            None
        ));
        assert!(!control_allowed(
            &request("127.0.0.1:5000", &[("x-real-ip", "203.0.113.9")]),
            ANY,
            false,
            None
        ));
        // A proxy that adds no header: --behind-proxy.
        assert!(!control_allowed(
            &request("127.0.0.1:5000", &[]),
            ANY,
            true,
            None
        ));
        let with_token = request(
            "127.0.0.1:5000",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-ark-admin-token", "secret"),
            ],
        );
        assert!(control_allowed(&with_token, ANY, false, Some("secret")));
        assert!(control_allowed(&with_token, ANY, true, Some("secret")));
    }

    fn control_call(method: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            path: "/api/lattice/nodes".into(),
            ..request("127.0.0.1:5000", headers)
        }
    }

    #[test]
    fn control_calls_from_web_pages_of_other_origins_are_refused() {
        fn check(method: &str, headers: &[(&str, &str)], token: bool, expected: Option<&str>) {
            let refusal = cross_origin_refusal(&control_call(method, headers), token);
            match (refusal, expected) {
                (None, None) => {}
                (Some(reason), Some(expected)) => {
                    assert!(reason.contains(expected), "{headers:?}: {reason}")
                }
                (refusal, expected) => panic!("{headers:?}: {refusal:?}, expected {expected:?}"),
            }
        }
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:9000");
        // The CLI: JSON, an address as Host, no Origin.
        check("POST", &[json, host], false, None);
        check("GET", &[host], false, None);
        check(
            "POST",
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("host", "[::1]:9000"),
            ],
            false,
            None,
        );
        check("POST", &[json, ("host", "localhost:9000")], false, None);
        // What a page can send without a preflight: a form or text/plain POST.
        check(
            "POST",
            &[("content-type", "text/plain"), host],
            false,
            Some("needs Content-Type: application/json"),
        );
        check(
            "POST",
            &[("content-type", "application/x-www-form-urlencoded"), host],
            false,
            Some("needs Content-Type"),
        );
        check("POST", &[host], false, Some("needs Content-Type"));
        // Other methods need a preflight, which no page gets an answer to.
        check("DELETE", &[host], false, None);
        // The token makes the content type free, not the origin.
        check("POST", &[("content-type", "text/plain"), host], true, None);
        check(
            "POST",
            &[json, host, ("origin", "https://evil.example")],
            true,
            Some("Origin"),
        );
        check(
            "POST",
            &[json, host, ("origin", "https://evil.example")],
            false,
            Some("is not this node's own"),
        );
        check(
            "POST",
            &[json, host, ("origin", "null")],
            false,
            Some("Origin"),
        );
        check(
            "POST",
            &[json, host, ("origin", "http://127.0.0.1:9000")],
            false,
            None,
        );
        check(
            "GET",
            &[host, ("sec-fetch-site", "cross-site")],
            false,
            Some("Sec-Fetch-Site: cross-site"),
        );
        check(
            "GET",
            &[host, ("sec-fetch-site", "same-site")],
            false,
            Some("another site"),
        );
        check(
            "GET",
            &[host, ("sec-fetch-site", "same-origin")],
            false,
            None,
        );
        check("GET", &[host, ("sec-fetch-site", "none")], false, None);
        // A page whose DNS name was rebound to 127.0.0.1 sends its own name.
        check(
            "GET",
            &[("host", "evil.example:9000")],
            false,
            Some("is not localhost or an IP address"),
        );
        check("GET", &[("host", "evil.example:9000")], true, None);
    }
}
