//! The route table (`protocol::ROUTES`) against a running node: every route is counted
//! under its own label in `/metrics` (issue 15: reconcile, fetch, `/manifest`,
//! `/discover` and `/sync` were counted as `route="other"`), and `/openapi.json` lists
//! every route under its path and method.

use ark_lattice::protocol::{OTHER_LABEL, ROUTES, Route};
use miniserde::json::Value;

use crate::util::{Node, http};

/// The `route` labels of `ark_lattice_http_requests_total` in a `/metrics` text.
fn labels(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("ark_lattice_http_requests_total{route=\""))
        .filter_map(|rest| rest.split_once('"').map(|(label, _)| label.to_owned()))
        .collect()
}

#[test]
fn every_route_of_the_table_has_its_own_metrics_label() {
    let node = Node::start("routes-metrics");
    let address = node.address();
    let json = [("content-type", "application/json")];
    for route in ROUTES {
        // The event stream never ends and shutdown stops the node: they are asked with
        // a method they do not take, which is counted under the same label (labels name
        // paths, whatever the method).
        let method = match route {
            Route::Events | Route::Shutdown => "PUT",
            _ => route.method(),
        };
        let body = (method == "POST").then_some("{}");
        let reply = http(address, method, &route.path_with("x"), &json, body);
        assert!(reply.status > 0, "{method} {}", route.path());
    }
    let metrics = http(address, "GET", Route::Metrics.path(), &[], None).body;
    let labels = labels(&metrics);
    for route in ROUTES {
        assert!(
            labels.iter().any(|label| label == route.path()),
            "{} has no label of its own in /metrics:\n{metrics}",
            route.path()
        );
    }
    assert!(
        !labels.iter().any(|label| label == OTHER_LABEL),
        "a route of the table was counted as {OTHER_LABEL}:\n{metrics}"
    );
    // A path outside the table is `other`, not a series of its own.
    http(address, "GET", "/wp-admin/setup.php", &[], None);
    let metrics = http(address, "GET", Route::Metrics.path(), &[], None).body;
    assert!(labels_of_status(&metrics, OTHER_LABEL, "404"), "{metrics}");
    assert!(!metrics.contains("wp-admin"), "{metrics}");
}

fn labels_of_status(metrics: &str, label: &str, status: &str) -> bool {
    metrics.contains(&format!(
        "ark_lattice_http_requests_total{{route=\"{label}\",status=\"{status}\"}}"
    ))
}

#[test]
fn openapi_lists_every_route_of_the_table() {
    let node = Node::start("routes-openapi");
    let reply = http(node.address(), "GET", Route::OpenApi.path(), &[], None);
    assert_eq!(reply.status, 200);
    let Value::Object(document) = reply.json() else {
        panic!("not an object: {}", reply.body)
    };
    let Some(Value::Object(paths)) = document.get("paths") else {
        panic!("no paths: {}", reply.body)
    };
    for route in ROUTES {
        let listed = matches!(
            paths.get(route.path()),
            Some(Value::Object(methods)) if methods.contains_key(&route.method().to_ascii_lowercase())
        );
        assert!(
            listed,
            "{} {} is not in /openapi.json",
            route.method(),
            route.path()
        );
    }
    let page = http(node.address(), "GET", Route::Docs.path(), &[], None).body;
    for route in ROUTES {
        assert!(
            page.contains(route.path()),
            "{} is not in /docs",
            route.path()
        );
    }
}
