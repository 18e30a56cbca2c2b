//! The route table: every HTTP route this node serves, written once. The server's
//! dispatch, the `/metrics` route labels, `/docs` and `/openapi.json`, and the client
//! side (sync, discovery, the CLI talking to a running server) all read it, so a route
//! cannot be served without a label, documented under another path, or called by a
//! path the server does not know.
//!
//! A path ending in `{id}` or `{url}` takes the rest of the request path as that
//! parameter; every other path matches exactly (trailing slashes ignored).

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who reaches the port.
    Public,
    /// Peers; signed requests from trusted keys, or anyone with `FEDERATION_TRUST=open`.
    Peer,
    /// This host (loopback) or the admin token.
    Control,
}

/// Defines [`Route`] and [`ROUTES`] from one list: variant, method, path, who may call
/// it, and whether `HEAD` is answered as `GET`.
macro_rules! route_table {
    ($($(#[$doc:meta])* $name:ident = $method:literal $path:literal $access:ident $head:literal;)*) => {
        /// One route: a method and a path.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Route {
            $($(#[$doc])* $name,)*
        }

        /// Every route, in the order `/docs` lists them.
        pub const ROUTES: &[Route] = &[$(Route::$name,)*];

        impl Route {
            pub const fn method(self) -> &'static str {
                match self {
                    $(Route::$name => $method,)*
                }
            }

            /// The path, with `{id}` or `{url}` for a parameter.
            pub const fn path(self) -> &'static str {
                match self {
                    $(Route::$name => $path,)*
                }
            }

            pub const fn access(self) -> Access {
                match self {
                    $(Route::$name => Access::$access,)*
                }
            }

            /// Whether `HEAD` is answered as `GET` (pages a browser or probe may check).
            const fn answers_head(self) -> bool {
                match self {
                    $(Route::$name => $head,)*
                }
            }
        }
    };
}

route_table! {
    StatusPage = "GET" "/" Public true;
    Docs = "GET" "/docs" Public true;
    OpenApi = "GET" "/openapi.json" Public true;
    Health = "GET" "/health" Public false;
    Metrics = "GET" "/metrics" Public true;
    // ARK's Node.js federation server.
    Info = "GET" "/federation/info" Public false;
    Nodes = "GET" "/federation/nodes" Peer false;
    ArkSync = "POST" "/federation/sync" Peer false;
    ArkDiscover = "GET" "/federation/discover" Peer false;
    // ARK's Python federation service.
    Manifest = "POST" "/manifest" Peer false;
    PythonDiscover = "GET" "/discover" Peer false;
    PythonSync = "POST" "/sync" Peer false;
    // Our signed protocol.
    OwnManifest = "GET" "/federation/v2/manifest" Peer false;
    Changes = "GET" "/federation/v2/changes" Peer false;
    Offer = "POST" "/federation/v2/offer" Peer false;
    Push = "POST" "/federation/v2/push" Peer false;
    Reconcile = "POST" "/federation/v2/reconcile" Peer false;
    Fetch = "POST" "/federation/v2/fetch" Peer false;
    // ARK's backend API.
    ArkStatus = "GET" "/api/federation/status" Control false;
    ArkStart = "POST" "/api/federation/start" Control false;
    ArkStop = "POST" "/api/federation/stop" Control false;
    ArkPeers = "GET" "/api/federation/peers" Control false;
    ArkAddPeer = "POST" "/api/federation/peers/add" Control false;
    ArkRemovePeer = "DELETE" "/api/federation/peers/{url}" Control false;
    ArkSyncNow = "POST" "/api/federation/sync" Control false;
    ArkDiscoverPeers = "POST" "/api/federation/discover" Control false;
    ArkAutoSyncStart = "POST" "/api/federation/auto-sync/start" Control false;
    ArkAutoSyncStop = "POST" "/api/federation/auto-sync/stop" Control false;
    Events = "GET" "/api/federation/events" Control false;
    ArkConflicts = "GET" "/api/federation/conflicts" Control false;
    // Our control API, read by our CLI.
    Status = "GET" "/api/v2/federation/status" Control false;
    Start = "POST" "/api/v2/federation/start" Control false;
    Stop = "POST" "/api/v2/federation/stop" Control false;
    Peers = "GET" "/api/v2/federation/peers" Control false;
    AddPeer = "POST" "/api/v2/federation/peers/add" Control false;
    RemovePeer = "DELETE" "/api/v2/federation/peers/{url}" Control false;
    SyncNow = "POST" "/api/v2/federation/sync" Control false;
    DiscoverPeers = "POST" "/api/v2/federation/discover" Control false;
    AutoSyncStart = "POST" "/api/v2/federation/auto-sync/start" Control false;
    AutoSyncStop = "POST" "/api/v2/federation/auto-sync/stop" Control false;
    Conflicts = "GET" "/api/v2/federation/conflicts" Control false;
    LatticeStats = "GET" "/api/lattice/stats" Control false;
    QueryNodes = "GET" "/api/lattice/nodes" Control false;
    WriteNodes = "POST" "/api/lattice/nodes" Control false;
    GetNode = "GET" "/api/lattice/nodes/{id}" Control false;
    GetRecord = "GET" "/api/lattice/records/{id}" Control false;
    PutNode = "PUT" "/api/lattice/nodes/{id}" Control false;
    DeleteNode = "DELETE" "/api/lattice/nodes/{id}" Control false;
    Gc = "POST" "/api/lattice/gc" Control false;
    Export = "GET" "/api/lattice/export" Control false;
    Verify = "GET" "/api/lattice/verify" Control false;
    TrustedKeys = "GET" "/api/trust/keys" Control false;
    TrustKey = "POST" "/api/trust/keys" Control false;
    AcceptKey = "POST" "/api/trust/accept/{id}" Control false;
    RemoveKey = "DELETE" "/api/trust/keys/{id}" Control false;
    Shutdown = "POST" "/api/server/shutdown" Control false;
}

/// The `/metrics` label of requests that match no route's path.
pub const OTHER_LABEL: &str = "other";

impl Route {
    /// The route `method` and `path` (no query) ask for, and its parameter if its path
    /// has one. `None` for a path or method this node does not serve.
    pub fn find<'a>(method: &str, path: &'a str) -> Option<(Route, Option<&'a str>)> {
        ROUTES.iter().find_map(|route| {
            let method_matches = route.method() == method
                || (method == "HEAD" && route.answers_head() && route.method() == "GET");
            if !method_matches {
                return None;
            }
            route.matches(path).map(|parameter| (*route, parameter))
        })
    }

    /// `Some(parameter)` (`Some(None)` for a path without one) when `path` is this
    /// route's path; trailing slashes are ignored.
    fn matches(self, path: &str) -> Option<Option<&str>> {
        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.is_empty() { "/" } else { trimmed };
        match self.parameter_prefix() {
            Some(prefix) => path
                .strip_prefix(prefix)
                .filter(|parameter| !parameter.is_empty())
                .map(Some),
            None => (path == self.path()).then_some(None),
        }
    }

    /// For a path ending in a `{parameter}`, the text before it.
    fn parameter_prefix(self) -> Option<&'static str> {
        let path = self.path();
        path.ends_with('}')
            .then(|| path.rfind('{').map(|start| &path[..start]))
            .flatten()
    }

    /// The `/metrics` label of a request path, whatever its method: the path of the
    /// route it names (with `{id}`/`{url}` for the parameter), or [`OTHER_LABEL`]. A
    /// fixed string, so no client can make up new series.
    pub(crate) fn label_of(path: &str) -> &'static str {
        ROUTES
            .iter()
            .find(|route| route.matches(path).is_some())
            .map_or(OTHER_LABEL, |route| route.path())
    }

    /// The URL of this route on the node at `base` (`http://host:port`, no trailing
    /// slash). For a route with a parameter, see [`Route::url_with`].
    pub fn url(self, base: &str) -> String {
        debug_assert!(
            self.parameter_prefix().is_none(),
            "{self:?} takes a parameter"
        );
        format!("{base}{}", self.path())
    }

    /// The path of a route with a parameter, the parameter (already percent-encoded)
    /// put in its place.
    pub fn path_with(self, parameter: &str) -> String {
        match self.parameter_prefix() {
            Some(prefix) => format!("{prefix}{parameter}"),
            None => self.path().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_find_their_route_and_parameter() {
        fn check(method: &str, path: &str, expected: Option<(Route, Option<&str>)>) {
            assert_eq!(Route::find(method, path), expected, "{method} {path}");
        }
        check("GET", "/", Some((Route::StatusPage, None)));
        check("GET", "", Some((Route::StatusPage, None)));
        check("HEAD", "/", Some((Route::StatusPage, None)));
        check("HEAD", "/health", None);
        check("GET", "/federation/info/", Some((Route::Info, None)));
        check("POST", "/federation/info", None);
        check("GET", "/api/lattice/nodes", Some((Route::QueryNodes, None)));
        check(
            "POST",
            "/api/lattice/nodes",
            Some((Route::WriteNodes, None)),
        );
        check(
            "GET",
            "/api/lattice/nodes/",
            Some((Route::QueryNodes, None)),
        );
        check(
            "GET",
            "/api/lattice/nodes/a%2Fb",
            Some((Route::GetNode, Some("a%2Fb"))),
        );
        check(
            "DELETE",
            "/api/v2/federation/peers/http%3A%2F%2Fx",
            Some((Route::RemovePeer, Some("http%3A%2F%2Fx"))),
        );
        check("GET", "/wp-admin/setup.php", None);
    }

    #[test]
    fn route_labels_are_fixed_strings() {
        fn check(path: &str, expected: &str) {
            assert_eq!(Route::label_of(path), expected, "{path}");
        }
        check("/", "/");
        check("", "/");
        check("/federation/info/", "/federation/info");
        check("/federation/v2/reconcile", "/federation/v2/reconcile");
        check("/manifest", "/manifest");
        check(
            "/api/federation/peers/http%3A%2F%2Fx",
            "/api/federation/peers/{url}",
        );
        check("/api/lattice/nodes/some-id", "/api/lattice/nodes/{id}");
        check("/wp-admin/setup.php", OTHER_LABEL);
    }

    #[test]
    fn every_route_is_found_by_its_own_method_and_path() {
        for route in ROUTES {
            let path = route.path_with("x");
            assert_eq!(
                Route::find(route.method(), &path).map(|(found, _)| found),
                Some(*route),
                "{} {path}",
                route.method()
            );
            assert_eq!(Route::label_of(&path), route.path());
        }
    }

    #[test]
    fn urls_are_built_from_the_table() {
        assert_eq!(
            Route::Changes.url("http://10.0.0.5:9000"),
            "http://10.0.0.5:9000/federation/v2/changes"
        );
        assert_eq!(
            Route::RemovePeer.path_with("http%3A%2F%2Fx"),
            "/api/v2/federation/peers/http%3A%2F%2Fx"
        );
    }
}
