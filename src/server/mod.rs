//! The federation node: `ark-lattice serve`. One application thread runs an async
//! executor that serves HTTP, runs outgoing syncs and fires timers.
//!
//! # Implementation
//!
//! `serve` opens the [`App`], binds the listener, writes `server.json` (pid and port,
//! how the CLI finds the server), tells systemd it is ready, and runs its tasks on a
//! `LocalExecutor`: the HTTP server, the auto-sync loop, the systemd watchdog, the LAN
//! beacon, the event-stream keep-alive and the `--on-event` hooks. At idle nothing
//! runs between timer ticks. SIGTERM, SIGINT or `POST /api/server/shutdown`
//! stops accepting, lets in-flight requests finish, and removes `server.json`; every
//! store write is a synchronous transaction, so none is left half done. With
//! `--tls-cert` it serves HTTPS only, and SIGHUP re-reads the certificate and key.

mod app;
mod ark_api;
mod auth;
mod control;
mod delta_api;
mod docs;
mod lan;
mod metrics;
mod peer_api;
mod python_api;
mod routes;
mod shared_pages;
mod status_page;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use futures_lite::{StreamExt, future};
use smol::{LocalExecutor, Timer};

use crate::service::SERVER_FILE;
use crate::service::{events, join_all};
pub use app::App;
/// The route dispatcher, for the fuzz target that feeds it arbitrary requests.
pub use routes::handle as dispatch;
pub use routes::{ApiError, control_allowed};

use crate::config::Config;
use crate::error::Error;
use crate::http::Transport;
use crate::model::unix_millis_now;
use crate::sync::{AutoSyncSchedule, FailureKind, retry_delay};
use crate::systemd::Notifier;

/// How many ports after the configured one `--port-fallback` tries.
const PORT_FALLBACK_TRIES: u16 = 10;

/// Runs the server until a signal or a shutdown request.
pub fn serve(config: &Config) -> Result<(), Error> {
    // A plain open trusts the file, and a page damaged outside redb would stop the node
    // at the first request that reads it, under systemd again and again: check first.
    crate::service::check_before_serving(config)?;
    let app = App::open(config)?;
    crate::service::storage_panics_are_handled_elsewhere();
    allow_open_files(&config.federation.limits);
    // The executor lives as long as the process; leaking it lets tasks be `'static`.
    let executor: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
    smol::block_on(executor.run(run(executor, app)))
}

/// Raises this process's soft limit of open files (never past the hard limit) to what
/// the connection caps may hold, plus room for the store, the outgoing syncs and the
/// beacon. systemd starts services with a soft limit of 1,024, below a hub's 256
/// connections and 2,048 long-polls (issue 13); a server at its limit only waits until
/// a connection closes.
fn allow_open_files(limits: &crate::http::ServerLimits) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let wanted = (limits.max_connections + limits.max_long_polls + 256) as u64;
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if limit.current.is_some_and(|current| current < wanted) {
        limit.current = Some(wanted.min(hard));
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            eprintln!("warning: cannot raise the open-file limit to {wanted}: {error}");
        }
    }
}

async fn run(executor: &'static LocalExecutor<'static>, app: Rc<App>) -> Result<(), Error> {
    let federation = app.instance().config().federation.clone();
    let listener = bind(federation.bind, federation.port, federation.port_fallback).await?;
    let local = listener.local_addr().map_err(|source| Error::Io {
        action: "cannot read the listening address".into(),
        source,
    })?;
    app.instance().set_listen_port(local.port());
    let transport = transport(app.instance().config())?;
    // The beacon socket is bound before the server says it runs, so a node started
    // right after this one is heard: its first beacon would otherwise find no socket
    // here, and the next comes a beacon interval later (60 s).
    let lan_task = lan::start(executor, &app);
    announce(&app, local, &transport);
    // Written after the warnings: `federation start` waits for this file, then shows
    // the warnings this start wrote to the log.
    let server_file = app.instance().config().data_dir.join(SERVER_FILE);
    write_server_file(&server_file, local, &transport)?;
    let notifier = Notifier::from_env();
    if let Err(error) = notifier.ready() {
        eprintln!("warning: could not notify systemd: {error}");
    }
    let mut tasks = spawn_timers(executor, &app, &notifier);
    tasks.extend(lan_task);
    let hangups = reload_on_hangup(transport.clone(), server_file.clone(), local)?;
    tasks.push(executor.spawn(hangups));
    let shutdown = shutdown_signal(app.clone())?;
    let handler_app = app.clone();
    let handler = move |request| metrics::counted(handler_app.clone(), request);
    // The accept loop runs as a task of its own, not inside the executor's main future:
    // the executor polls its main future only between batches of 200 task runs, so a
    // handler that yields between chunks of work (a large push) would otherwise keep
    // new connections waiting for 200 of its chunks (issue 10).
    let prepare = move |stream| {
        let transport = transport.clone();
        async move { transport.prepare(stream).await }
    };
    let served = executor
        .spawn(crate::http::serve_streams(
            executor,
            listener,
            federation.limits,
            app.instance().wire().clone(),
            handler,
            shutdown,
            prepare,
        ))
        .await;
    let _ = notifier.stopping();
    drop(tasks);
    app.flush_pending_callers();
    if let Err(error) = app.instance().syncer().flush() {
        eprintln!("warning: could not save the last sync statistics: {error}");
    }
    let _ = std::fs::remove_file(&server_file);
    served.map_err(|source| Error::Io {
        action: "the HTTP server stopped".into(),
        source,
    })?;
    eprintln!("Federation server stopped");
    Ok(())
}

/// Says on stderr that the server runs, where and how, and warns of settings that do
/// not do what they may seem to.
fn announce(app: &App, local: std::net::SocketAddr, transport: &Transport) {
    let federation = &app.instance().config().federation;
    eprintln!(
        "Federation server started on port {}{} ({} {}, mode {}, store {})",
        local.port(),
        match transport {
            Transport::Plain => String::new(),
            #[cfg(feature = "tls")]
            Transport::Tls(tls) => format!(
                " with HTTPS (certificate {}, {})",
                tls.cert_path().display(),
                tls.fingerprint()
            ),
        },
        app.instance().instance_name(),
        app.instance().key().public_key().fingerprint(),
        federation.mode,
        app.instance().config().store_path().display()
    );
    if app.instance().config().federation.trust == crate::config::TrustMode::Open {
        eprintln!(
            "warning: FEDERATION_TRUST=open: unsigned callers are served as core peers and unsigned records accepted; use this only on a trusted LAN with old ARK peers"
        );
    }
    if app.instance().config().federation.auto_sync && !app.instance().auto_sync() {
        // Only a flag or FEDERATION_AUTO_SYNC=true turns the setting on, so it was asked
        // for, and the saved `auto-sync --stop` wins: say so rather than stay silent.
        eprintln!(
            "notice: auto-sync stays off: `federation auto-sync --stop` saved that, and it wins over FEDERATION_AUTO_SYNC and --auto-sync; switch it on with `ark-lattice federation auto-sync --start`"
        );
    }
    if app.instance().config().redis_url_ignored {
        eprintln!(
            "notice: REDIS_URL is ignored; state lives in the embedded store at {}",
            app.instance().config().store_path().display()
        );
    }
}

/// The node's own loops: auto-sync, `--watch`, the hub heartbeat, the `--on-event`
/// hooks, the pending-trust flush, event-stream keep-alives and the systemd watchdog.
fn spawn_timers(
    executor: &'static LocalExecutor<'static>,
    app: &Rc<App>,
    notifier: &Notifier,
) -> Vec<smol::Task<()>> {
    let sync_app = app.clone();
    let mut tasks: Vec<smol::Task<()>> = vec![executor.spawn(supervised("auto-sync", move || {
        auto_sync_loop(sync_app.clone())
    }))];
    if app.instance().config().federation.watch {
        let watch_app = app.clone();
        tasks.push(executor.spawn(supervised("watch", move || {
            watch_loop(executor, watch_app.clone())
        })));
    }
    if let Some(hub) = app.instance().config().federation.hub_url.clone() {
        let heartbeat_app = app.clone();
        tasks.push(executor.spawn(supervised("hub heartbeat", move || {
            heartbeat_loop(heartbeat_app.clone(), hub.clone())
        })));
    }
    if let Some(command) = &app.instance().config().on_event {
        tasks.push(
            app.instance()
                .events()
                .start_hooks(executor, command.clone()),
        );
    }
    let pending_app = app.clone();
    tasks.push(executor.spawn(supervised("pending trust flush", move || {
        let pending_app = pending_app.clone();
        async move {
            loop {
                Timer::after(crate::config::PENDING_FLUSH_INTERVAL).await;
                pending_app.flush_pending_callers();
            }
        }
    })));
    let keep_alive_app = app.clone();
    tasks.push(executor.spawn(async move {
        loop {
            Timer::after(events::KEEP_ALIVE).await;
            keep_alive_app.instance().events().keep_alive();
        }
    }));
    if let Some(interval) = notifier.watchdog_interval() {
        let watchdog = Notifier::from_env();
        tasks.push(executor.spawn(async move {
            loop {
                Timer::after(interval).await;
                let _ = watchdog.watchdog();
            }
        }));
    }
    tasks
}

/// Ends when a shutdown is requested (`POST /api/server/shutdown`) or a TERM or INT
/// signal comes, after telling held long-polls and event streams to end.
fn shutdown_signal(app: Rc<App>) -> Result<impl Future<Output = ()>, Error> {
    let signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int]);
    let mut signals = signals.map_err(|source| Error::Io {
        action: "cannot watch for signals".into(),
        source,
    })?;
    let app = app.clone();
    Ok(async move {
        if app.shutdown_requested() {
            return;
        }
        let listener = app.shutdown_listener();
        future::or(listener, async {
            signals.next().await;
        })
        .await;
        eprintln!("shutting down: finishing in-flight requests");
        // Held long-polls wait on this; without it a signal left them to their
        // timeout (issue 10: 10 s to stop with one held).
        app.request_shutdown();
        // Event streams never finish by themselves; ending them lets shutdown proceed.
        app.instance().events().close_subscribers();
    })
}

async fn bind(
    ip: std::net::IpAddr,
    port: u16,
    fallback: bool,
) -> Result<smol::net::TcpListener, Error> {
    let tries = if fallback && port != 0 {
        PORT_FALLBACK_TRIES
    } else {
        1
    };
    let mut last_error = None;
    for offset in 0..tries {
        let Some(candidate) = port.checked_add(offset) else {
            break;
        };
        match listen((ip, candidate).into()) {
            Ok(listener) => {
                if offset > 0 {
                    eprintln!(
                        "warning: port {port} is in use; listening on {candidate} instead (--port-fallback)"
                    );
                }
                return Ok(listener);
            }
            Err(error) => last_error = Some((candidate, error)),
        }
    }
    let (candidate, error) = last_error.expect("at least one try");
    if error.kind() == std::io::ErrorKind::AddrInUse {
        return Err(Error::PortInUse {
            ip,
            port: candidate,
            fallback,
        });
    }
    Err(Error::Io {
        action: format!("cannot listen on {ip}:{candidate}"),
        source: error,
    })
}

/// Plain HTTP, or HTTPS with the configured certificate (read here, so a bad file
/// stops the start with its name); a CA file for `https://` peers is read here too.
fn transport(config: &Config) -> Result<Transport, Error> {
    #[cfg(feature = "tls")]
    config
        .tls
        .peer_trust
        .check_ca_file()
        .map_err(|error| Error::Config(format!("--ca-file (ARK_CA_FILE): {error}")))?;
    match &config.tls.server_files {
        None => Ok(Transport::Plain),
        #[cfg(feature = "tls")]
        Some((cert, key)) => crate::http::ServerTls::load(cert, key)
            .map(|tls| Transport::Tls(Rc::new(tls)))
            .map_err(|error| {
                Error::Config(format!(
                    "--tls-cert/--tls-key (ARK_TLS_CERT, ARK_TLS_KEY): {error}"
                ))
            }),
        #[cfg(not(feature = "tls"))]
        Some(_) => unreachable!("config refuses --tls-cert without the tls feature"),
    }
}

/// Re-reads the certificate and key on every SIGHUP, so a renewed certificate needs no
/// restart; a file that does not load leaves the old certificate in use. `server.json`
/// is rewritten with the new fingerprint, which the CLI pins. Without TLS a SIGHUP only
/// says so: its default action would end the process, and systemd would take that for
/// a clean exit and not restart it.
#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
fn reload_on_hangup(
    transport: Transport,
    server_file: PathBuf,
    local: SocketAddr,
) -> Result<impl Future<Output = ()>, Error> {
    let mut hangups =
        async_signal::Signals::new([async_signal::Signal::Hup]).map_err(|source| Error::Io {
            action: "cannot watch for SIGHUP".into(),
            source,
        })?;
    Ok(async move {
        while hangups.next().await.is_some() {
            match &transport {
                Transport::Plain => {
                    eprintln!("SIGHUP: nothing to reload (no --tls-cert; serving plain HTTP)")
                }
                #[cfg(feature = "tls")]
                Transport::Tls(tls) => match tls.reload() {
                    Ok(fingerprint) => {
                        if let Err(error) = write_server_file(&server_file, local, &transport) {
                            eprintln!("warning: {error}");
                        }
                        eprintln!(
                            "SIGHUP: reloaded the TLS certificate {} ({fingerprint})",
                            tls.cert_path().display()
                        );
                    }
                    Err(error) => eprintln!(
                        "warning: SIGHUP: could not reload the TLS certificate, keeping the \
                         one in use ({}): {error}",
                        tls.fingerprint()
                    ),
                },
            }
        }
    })
}

/// Connections the kernel completes and queues before we accept them. std's 128 fills
/// within milliseconds when one address opens thousands of connections (issue 10), and
/// then everyone's SYNs are dropped and retried a second later; the accept loop takes
/// them off the queue as fast as they come, so a deeper queue only absorbs bursts. The
/// kernel caps it at `net.core.somaxconn` (4096 on current Linux).
const LISTEN_BACKLOG: i32 = 1024;

/// A listening TCP socket with [`LISTEN_BACKLOG`], set up as std's `bind` does
/// (`SO_REUSEADDR`, dual-stack for `::`).
fn listen(addr: SocketAddr) -> std::io::Result<smol::net::TcpListener> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let socket = rustix::net::socket(family, SocketType::STREAM, None)?;
    sockopt::set_socket_reuseaddr(&socket, true)?;
    rustix::net::bind(&socket, &addr)?;
    rustix::net::listen(&socket, LISTEN_BACKLOG)?;
    smol::net::TcpListener::try_from(std::net::TcpListener::from(socket))
}

/// Writes `server.json` atomically: the pid, where to reach the server and, for HTTPS,
/// the certificate's fingerprint (the CLI pins it, whatever name the certificate has).
fn write_server_file(path: &Path, local: SocketAddr, transport: &Transport) -> Result<(), Error> {
    let tls = match transport {
        Transport::Plain => String::new(),
        #[cfg(feature = "tls")]
        Transport::Tls(tls) => format!(",\"tls\":\"{}\"", tls.fingerprint()),
    };
    let text = format!(
        "{{\"pid\":{},\"port\":{},\"bind\":\"{}\",\"started_at\":{}{tls}}}\n",
        std::process::id(),
        local.port(),
        local.ip(),
        unix_millis_now()
    );
    let temporary: PathBuf = path.with_extension("json.partial");
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|source| Error::File {
            path: path.to_owned(),
            source,
        })
}

/// Runs the loop `start` makes, and starts it again [`crate::config::BACKOFF_BASE`]
/// after a panic (logged and counted by [`crate::panics::contained`]). A panic in a
/// task otherwise ends it silently: auto-sync would stop for good after one round met
/// a damaged store page (issue 10).
async fn supervised<F: Future<Output = ()>>(what: &'static str, start: impl Fn() -> F) {
    while crate::panics::contained(what, start()).await.is_err() {
        Timer::after(crate::config::BACKOFF_BASE).await;
    }
}

/// Syncs with the mode's targets at start, then every interval (±10% jitter) and a
/// second after each local write, while auto-sync is on; a peer whose sync failed is
/// retried after a wait set by the kind of failure (`sync::retry_delay`: an unreachable
/// peer from 5 s, a failing one from 30 s, doubling, capped at 15 minutes; a refusing
/// one at the next round). The decisions are
/// [`AutoSyncSchedule`]'s; this loop waits and runs the syncs.
async fn auto_sync_loop(app: Rc<App>) {
    let mut schedule = AutoSyncSchedule::default();
    let mut interval_ms = app.instance().sync_interval_ms();
    loop {
        let changed = app.instance().settings_changed().listen();
        if !app.instance().auto_sync() || !app.instance().federation_enabled() {
            changed.await;
            // Switched on (or federation started again): a round at once.
            schedule.round_now();
            continue;
        }
        let wake = schedule.next_wake(Instant::now());
        let local_change = app.instance().store().borrow().local_changed().listen();
        let woken = future::or(
            async {
                changed.await;
                Some(true)
            },
            future::or(
                async {
                    Timer::at(wake).await;
                    Some(false)
                },
                async {
                    local_change.await;
                    None
                },
            ),
        )
        .await;
        let Some(woken) = woken else {
            // A write of our own: pushed within a second rather than at the next
            // interval (the guide: "Developer A adds new React hooks, automatically
            // syncs to B and C"); the second gathers a burst of writes into one round.
            Timer::after(crate::config::LOCAL_CHANGE_SYNC_DELAY).await;
            schedule.round_now();
            continue;
        };
        if woken {
            // A new interval applies from now, starting with a round.
            if app.instance().sync_interval_ms() != interval_ms {
                interval_ms = app.instance().sync_interval_ms();
                schedule.round_now();
            }
            continue;
        }
        let targets = match app.instance().sync_targets() {
            Ok(targets) => targets,
            Err(error) => {
                eprintln!("warning: auto-sync cannot list peers: {error}");
                // Not at once again: the next try waits like a failed sync.
                Timer::after(crate::config::BACKOFF_BASE).await;
                continue;
            }
        };
        let interval = std::time::Duration::from_millis(interval_ms);
        let due: Vec<String> = schedule
            .due(Instant::now(), &targets, interval, fastrand::f64())
            .into_iter()
            // A watched peer is synced by its long-poll already.
            .filter(|url| !app.instance().syncer().is_syncing(url))
            .collect();
        let results = join_all(due.iter().map(|url| app.instance().sync_peer(url))).await;
        let now = Instant::now();
        for (url, result) in due.iter().zip(results) {
            let failures = match app.instance().syncer().peer(url) {
                Ok(Some(peer)) => peer.failures,
                _ => u32::from(!result.success),
            };
            schedule.record(
                url,
                failures,
                result.failure.unwrap_or(FailureKind::Other),
                interval,
                now,
                fastrand::f64(),
            );
        }
    }
}

/// `--watch`: keeps one long-poll task per sync target, started as targets appear.
async fn watch_loop(executor: &'static LocalExecutor<'static>, app: Rc<App>) {
    let watched: Rc<std::cell::RefCell<std::collections::BTreeSet<String>>> = Rc::default();
    loop {
        match app.instance().sync_targets() {
            Ok(targets) => {
                for url in targets {
                    if watched.borrow_mut().insert(url.clone()) {
                        let (app, watched) = (app.clone(), watched.clone());
                        executor
                            .spawn(async move {
                                watch_peer(&app, &url).await;
                                watched.borrow_mut().remove(&url);
                            })
                            .detach();
                    }
                }
            }
            Err(error) => eprintln!("warning: watch cannot list peers: {error}"),
        }
        let changed = app.instance().settings_changed().listen();
        future::or(changed, async {
            Timer::after(std::time::Duration::from_secs(5)).await;
        })
        .await;
    }
}

/// Syncs with one peer over and over, each sync's first pull held open by the peer
/// until something changes there, so a change arrives within about a second. Failures
/// wait by their kind (`sync::retry_delay`: exponential with jitter, or the sync
/// interval after a refusal); the task ends when the peer is removed.
async fn watch_peer(app: &App, url: &str) {
    loop {
        if !app
            .instance()
            .sync_targets()
            .is_ok_and(|targets| targets.iter().any(|target| target == url))
        {
            return;
        }
        if !app.instance().federation_enabled() {
            Timer::after(std::time::Duration::from_secs(1)).await;
            continue;
        }
        let started = std::time::Instant::now();
        let result = app
            .instance()
            .syncer()
            .sync_peer_waiting(url, Some(crate::config::WATCH_WAIT))
            .await;
        let failures = app
            .instance()
            .syncer()
            .peer(url)
            .ok()
            .flatten()
            .map_or(0, |peer| peer.failures);
        let pause = if !result.success {
            retry_delay(
                result.failure.unwrap_or(FailureKind::Other),
                failures,
                std::time::Duration::from_millis(app.instance().sync_interval_ms()),
                fastrand::f64(),
            )
        } else if started.elapsed() < std::time::Duration::from_millis(500)
            && result.nodes_received + result.nodes_sent == 0
        {
            // A peer that answers at once without news (one that does not hold
            // requests) is asked again after a pause, not in a busy loop.
            std::time::Duration::from_secs(1)
        } else {
            std::time::Duration::ZERO
        };
        if !pause.is_zero() {
            Timer::after(pause).await;
        }
    }
}

/// Registers our signed manifest at the hub at start and every heartbeat, so the hub's
/// `/discover` lists this spoke while it is alive.
async fn heartbeat_loop(app: Rc<App>, hub: String) {
    let mut failing = false;
    loop {
        let url = crate::protocol::Route::Manifest.url(&hub);
        let result = match python_api::signed_manifest(&app, false) {
            Ok(body) => {
                let request = crate::http::ClientRequest::post(
                    &url,
                    "application/json",
                    miniserde::json::to_string(&body).into_bytes(),
                );
                match app.instance().syncer().client.send(request).await {
                    Ok(response) if response.status == 200 => Ok(()),
                    Ok(response) => Err(format!(
                        "{url} answered {}: {}",
                        response.status,
                        String::from_utf8_lossy(&response.body)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    )),
                    Err(error) => Err(error.to_string()),
                }
            }
            Err(error) => Err(error.message),
        };
        match result {
            Ok(()) => {
                if failing || app.instance().config().verbose {
                    eprintln!("ark:federation registered at hub {hub}");
                }
                failing = false;
            }
            Err(error) => {
                // Said once per outage, not every minute.
                if !failing {
                    eprintln!("warning: cannot register at hub: {error}");
                }
                failing = true;
            }
        }
        Timer::after(crate::config::HEARTBEAT_INTERVAL).await;
    }
}
