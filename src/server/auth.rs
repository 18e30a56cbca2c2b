//! Who is calling: checks the signed-request headers of peer calls against the trust
//! store and the route's access level.
//!
//! Our peer endpoints need a request signed by a trusted key whose tier allows the
//! route (`info` < `pull` < `push`). An unknown signing key is remembered as pending and
//! refused, so the operator can accept it after comparing fingerprints. The nonce of a
//! request is remembered (replay guard) only once the key's tier allows the route, so
//! refused keys cannot fill the guard and lock trusted peers out. Unsigned calls
//! (ARK's Node.js peers) are served only in `FEDERATION_TRUST=open`, as core peers; in
//! that mode an unknown signing key is served as core too (and still listed as pending).
//!
//! In strict mode an unsigned read (`info` or `pull`: `/sync`, `/federation/nodes`) is
//! still served to the callers the control API serves (this host, or the admin token),
//! refused when a web page of another origin sent it: they can read the whole lattice
//! through `/api/` already, and the guide's `curl localhost:9001/sync` then works as
//! written (issue 12). An unsigned push is refused from everywhere: records need an
//! author's signature here.

use super::app::App;
use super::routes::{ApiError, control_allowed, cross_origin_refusal, token_presented};
use crate::config::TrustMode;
use crate::http::Request;
use crate::model::{InstanceId, unix_millis_now};
use crate::sync::trust_book;
use crate::trust::{Access, HEADER_SIGNATURE, RequestError, Tier, verify_request};

/// An authorised caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caller {
    /// `None` for an unsigned caller in open mode.
    pub instance_id: Option<InstanceId>,
    pub tier: Tier,
}

fn access_name(access: Access) -> &'static str {
    match access {
        Access::Info => "info",
        Access::Pull => "pull",
        Access::Push => "push",
    }
}

/// Whether an unsigned caller is one the control API would serve: on this host (not
/// through a proxy) or with the admin token, and not a web page of another origin.
fn local_reader(app: &App, request: &Request) -> bool {
    let federation = &app.instance().config().federation;
    let admin_token = app.instance().config().admin_token.as_deref();
    control_allowed(
        request,
        federation.bind,
        federation.behind_proxy,
        admin_token,
    ) && cross_origin_refusal(request, token_presented(request, admin_token)).is_none()
}

/// Checks that the caller of `request` may use a route needing `access`.
pub(crate) fn authorize(app: &App, request: &Request, access: Access) -> Result<Caller, ApiError> {
    if request.header(HEADER_SIGNATURE).is_none() {
        return unsigned_caller(app, request, access);
    }
    let path_and_query = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    let now = unix_millis_now();
    let verified = verify_request(
        |name| request.header(name),
        &request.method,
        &path_and_query,
        &request.body,
        &app.replay_guard(),
        now,
    )
    .map_err(|error| ApiError {
        status: 401,
        message: format!("signed request refused: {error}"),
    })?;
    check_audience(app, request, &verified.audience, access)?;
    let tier = trust_book::note_caller(
        &mut app.instance().store().borrow_mut(),
        &mut app.pending_callers(),
        verified.public_key,
        now,
    )?;
    // Open mode serves anyone as core, signed or not; a key given a tier keeps it.
    let tier = tier
        .or((app.instance().config().federation.trust == TrustMode::Open).then_some(Tier::Core));
    let Some(tier) = tier else {
        // The message reaches the caller's operator: it names the node where the key
        // must be accepted (this one), by name and fingerprint, and the whole command.
        return Err(ApiError {
            status: 403,
            message: format!(
                "key {} is not trusted by {} (key {}); if it is expected, run on that node: ark-lattice trust accept {}",
                verified.public_key.fingerprint(),
                app.instance().instance_name(),
                app.instance().key().public_key().fingerprint(),
                verified.public_key.fingerprint()
            ),
        });
    };
    if !tier.allows(access) {
        return Err(ApiError {
            status: 403,
            message: format!(
                "key {} is trusted as {}, which does not allow {} access",
                verified.public_key.fingerprint(),
                tier.name(),
                access_name(access)
            ),
        });
    }
    verified
        .accept_once(&mut app.replay_guard(), now)
        .map_err(|error| ApiError {
            status: match &error {
                RequestError::Replay(replay) if replay.is_busy() => 429,
                _ => 401,
            },
            message: format!("signed request refused: {error}"),
        })?;
    Ok(Caller {
        instance_id: Some(verified.instance_id),
        tier,
    })
}

/// The caller of a request without a signature: core in open mode, a reader from this
/// host in strict mode, else refused.
fn unsigned_caller(app: &App, request: &Request, access: Access) -> Result<Caller, ApiError> {
    match app.instance().config().federation.trust {
        TrustMode::Open => Ok(Caller {
            instance_id: None,
            tier: Tier::Core,
        }),
        TrustMode::Strict if access != Access::Push && local_reader(app, request) => Ok(Caller {
            instance_id: None,
            tier: Tier::Sandbox,
        }),
        TrustMode::Strict => Err(ApiError {
            status: 401,
            message: format!(
                "{} {} needs a request signed by a trusted peer (unsigned reads are served to this host's callers only); ARK's unsigned protocol is served only with FEDERATION_TRUST=open",
                request.method, request.path
            ),
        }),
    }
}

/// A signed request names the instance it is for (`x-ark-audience`); it must be this
/// one, or absent on a read of the info.
fn check_audience(
    app: &App,
    request: &Request,
    audience: &str,
    access: Access,
) -> Result<(), ApiError> {
    // A request names the instance it is for, so it cannot be replayed to another;
    // without a name (a caller that has not read our info yet) it may only read info.
    let own_id = app.instance().instance_id_hex();
    if audience.is_empty() && access != Access::Info {
        return Err(ApiError {
            status: 401,
            message: format!(
                "signed request refused: {} {} names no audience (header x-ark-audience)",
                request.method, request.path
            ),
        });
    }
    let names_us = audience.len() >= crate::sync::AUDIENCE_DIGITS
        && own_id.starts_with(&audience.to_ascii_lowercase());
    if !audience.is_empty() && !names_us {
        return Err(ApiError {
            status: 401,
            message: format!(
                "signed request refused: it is addressed to instance {}, not this one",
                audience
            ),
        });
    }
    Ok(())
}
