//! The route dispatcher fed whole requests: method, path, query, headers and body, on a
//! node in open trust mode (so ARK's unsigned protocol reaches its parsers) over a
//! store in a temp dir. The caller is a non-loopback address without the admin token,
//! as on the internet; nothing here connects anywhere.
//!
//! Input: the first line is `METHOD target`, then `name: value` header lines up to an
//! empty line, then the body.
#![no_main]

use std::net::SocketAddr;
use std::rc::Rc;

use argh::FromArgs;
use ark_lattice::cli::Args;
use ark_lattice::config::Config;
use ark_lattice::http::Request;
use ark_lattice::server::{App, dispatch};
use libfuzzer_sys::fuzz_target;

fn app() -> Rc<App> {
    let dir = std::env::temp_dir().join(format!("ark-lattice-fuzz-routes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp state dir");
    let dir = dir.to_str().expect("UTF-8 temp dir").to_owned();
    let argv = [
        "--data-dir",
        dir.as_str(),
        "serve",
        "--trust",
        "open",
        "--no-discovery",
    ];
    let args = Args::from_args(&["ark-lattice"], &argv).expect("flags parse");
    let config = Config::from_args(&args, &|_| None).expect("config");
    let app = App::open(&config).expect("app on a temp store");
    // Long-polls answer at once instead of holding the fuzzer for 25 s.
    app.request_shutdown();
    app
}

thread_local! {
    static APP: Rc<App> = app();
}

fn request(data: &[u8]) -> Request {
    let (head, body) = match data.windows(2).position(|pair| pair == b"\n\n") {
        Some(end) => (&data[..end], &data[end + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let first = lines.next().unwrap_or("");
    let (method, target) = first.split_once(' ').unwrap_or((first, "/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.to_vec(),
        remote_addr: SocketAddr::from(([192, 0, 2, 7], 40_000)),
        secure: false,
        parking: Default::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    APP.with(|app| {
        let response = futures_lite::future::block_on(dispatch(app.clone(), request(data)));
        assert!(
            (100..600).contains(&response.status),
            "status {}",
            response.status
        );
    });
});
