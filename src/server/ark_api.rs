//! ARK's backend routes, `/api/federation/*`, answering what ARK's CLI and scripts read
//! (`protocol::ControlAnswer`). They run the same operations as our own routes under
//! `/api/v2/federation/*` (`control`), whose richer answers our CLI reads.
//!
//! As ARK's backend does, a failure answers 500 `{error}`; the one exception is
//! `peers/add` without `peerUrl`, 400 `{error: "peerUrl is required"}`.

use miniserde::json::Value;

use super::app::App;
use super::routes::ApiError;
use crate::config::normalize_peer_url;
use crate::http::{Request, percent_decode};
use crate::protocol::{ControlAnswer, Fields, PeerSyncReport, Route, SyncReport, parse_object};
use crate::service::{self, AddPeer, DiscoverOptions};

/// Answers an ARK route, or `None` when `route` is not one of ARK's. `parameter` is
/// the route's `{url}`, still percent-encoded.
pub(crate) async fn handle(
    app: &App,
    request: &Request,
    route: Route,
    parameter: Option<&str>,
) -> Option<Result<Value, ApiError>> {
    let answer = match route {
        Route::ArkStatus => status(app),
        Route::ArkStart => {
            app.instance().set_federation_enabled(true);
            Ok(ControlAnswer::Started {
                port: u64::from(app.instance().listen_port()),
                instance_id: app.instance().instance_id_hex(),
                instance_name: app.instance().instance_name(),
            })
        }
        Route::ArkStop => {
            app.instance().set_federation_enabled(false);
            Ok(ControlAnswer::Stopped)
        }
        Route::ArkPeers => peers(app),
        Route::ArkAddPeer => {
            let url = match peer_url(request) {
                Ok(Some(url)) => url,
                Ok(None) => return Some(Err(ApiError::bad_request("peerUrl is required"))),
                Err(error) => return Some(Err(error)),
            };
            add_peer(app, request, &url).await
        }
        Route::ArkRemovePeer => remove_peer(app, &percent_decode(parameter.unwrap_or_default())),
        Route::ArkSyncNow => match peer_url(request) {
            Ok(peer) => sync(app, peer.as_deref()).await,
            Err(error) => Err(error),
        },
        Route::ArkDiscoverPeers => discover(app).await,
        Route::ArkAutoSyncStart => service::set_auto_sync(app.instance(), true, None)
            .map(|answer| ControlAnswer::AutoSyncStarted {
                interval: answer.sync_interval_ms,
            })
            .map_err(ApiError::from),
        Route::ArkAutoSyncStop => service::set_auto_sync(app.instance(), false, None)
            .map(|_| ControlAnswer::AutoSyncStopped)
            .map_err(ApiError::from),
        _ => return None,
    };
    Some(
        answer
            .map(|answer| answer.to_json())
            .map_err(|error| ApiError {
                status: 500,
                message: error.message,
            }),
    )
}

/// `peerUrl` of the request body, if the body has one.
fn peer_url(request: &Request) -> Result<Option<String>, ApiError> {
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let body = parse_object(&request.body, "request body")?;
    // ARK's `if (!peerUrl)`: empty text is no URL either.
    Ok(Fields::new(&body, "request body")
        .opt_str("peerUrl")?
        .filter(|url| !url.is_empty())
        .map(str::to_owned))
}

fn status(app: &App) -> Result<ControlAnswer, ApiError> {
    Ok(ControlAnswer::Status {
        info: Box::new(app.instance().info_at(crate::model::unix_millis_now())?),
        is_running: app.instance().listen_port() != 0 && app.instance().federation_enabled(),
    })
}

/// The peers as the instance info lists them, kept in memory while unchanged.
fn peers(app: &App) -> Result<ControlAnswer, ApiError> {
    let info = app.instance().info_at(crate::model::unix_millis_now())?;
    Ok(ControlAnswer::Peers {
        peers: info.peers,
        active_peers: info.active_peers,
    })
}

fn total_peers(app: &App) -> Result<u64, ApiError> {
    Ok(service::list_peers(app.instance())?.peers.len() as u64)
}

/// Our `pubkey` and `tier` may come along, as on our own route.
async fn add_peer(app: &App, request: &Request, url: &str) -> Result<ControlAnswer, ApiError> {
    let body = parse_object(&request.body, "request body")?;
    let fields = Fields::new(&body, "request body");
    let add = AddPeer {
        url,
        pubkey: fields.opt_str("pubkey")?,
        tier: fields.opt_str("tier")?,
        types: &[],
    };
    service::add_peer(app.instance(), add).await?;
    Ok(ControlAnswer::PeerChanged {
        added: true,
        peer_url: normalize_peer_url(url).unwrap_or_else(|_| url.to_owned()),
        total_peers: total_peers(app)?,
    })
}

fn remove_peer(app: &App, url: &str) -> Result<ControlAnswer, ApiError> {
    service::remove_peer(app.instance(), url)?;
    Ok(ControlAnswer::PeerChanged {
        added: false,
        peer_url: normalize_peer_url(url).unwrap_or_else(|_| url.to_owned()),
        total_peers: total_peers(app)?,
    })
}

/// ARK's `syncWithAllPeers` (a list) or `syncWithPeer` (its counts; a failure is 500).
async fn sync(app: &App, peer: Option<&str>) -> Result<ControlAnswer, ApiError> {
    let targets = match peer {
        Some(peer) => vec![
            normalize_peer_url(peer)
                .map_err(|reason| ApiError::bad_request(format!("peer URL: {reason}")))?,
        ],
        None => app.instance().sync_targets()?,
    };
    let results = service::join_all(targets.iter().map(|url| app.instance().sync_peer(url))).await;
    let reports: Vec<PeerSyncReport> = results
        .into_iter()
        .map(|result| PeerSyncReport {
            peer_url: result.peer,
            sent: result.nodes_sent,
            received: result.nodes_received,
            error: if result.success {
                None
            } else {
                Some(result.error.unwrap_or_else(|| "sync failed".into()))
            },
        })
        .collect();
    if peer.is_none() {
        return Ok(ControlAnswer::Synced(SyncReport::All(reports)));
    }
    let one = reports.into_iter().next().unwrap_or_default();
    if let Some(error) = one.error {
        return Err(ApiError {
            status: 500,
            message: error,
        });
    }
    Ok(ControlAnswer::Synced(SyncReport::One(one)))
}

/// ARK's `discoverPeers` adds every node it finds; here, every one that can be synced
/// with (see `control::discover`).
async fn discover(app: &App) -> Result<ControlAnswer, ApiError> {
    let options = DiscoverOptions {
        add: true,
        ..DiscoverOptions::default()
    };
    let answer = service::discover(app.instance(), &options).await?;
    Ok(ControlAnswer::Discovered {
        peers: answer.added_peers,
        total_peers: total_peers(app)?,
    })
}
