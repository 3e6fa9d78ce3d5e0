//! Forward auth: `/auth/verify` for nginx's `auth_request` and
//! `/auth/forward` for Caddy's `forward_auth` and Traefik's `ForwardAuth`.
//! What a trusted proxy says about the original request (believed only
//! from `trusted_proxies`), the app it is for, the one access decision on
//! it, and the answer: `200` with the identity headers, `401` (or a
//! redirect to sign in), `403`.

use rouille::{Request, Response};

use super::{Asked, ask, forbidden_page, identity, login_url};
use crate::auth::access::Decision;
use crate::auth::path::Target;
use crate::auth::proxy::Client;
use crate::web::error::Result;
use crate::web::state::{State, with_session};

/// The request a forwarding proxy asks about.
struct Forwarded<'r> {
    host: Option<String>,
    target: Target,
    /// The path as the proxy reported it, before normalising.
    raw_path: String,
    proto: String,
    /// The original request's method (`X-Forwarded-Method`, else this
    /// request's own; the rules compare it without regard to case).
    method: &'r str,
}

/// The headers a forwarding proxy describes the original request with.
const FORWARD_AUTH_HEADERS: &[&str] = &[
    "X-Forwarded-Host",
    "X-Forwarded-Uri",
    "X-Forwarded-Proto",
    "X-Forwarded-Method",
    "X-Original-URI",
];

/// Why forward auth will not judge a request: said in its `403` and logged.
struct Refusal(String);

impl Refusal {
    /// The answer: `403`, the one refusal nginx's `auth_request` passes on
    /// as it is (any status but `2xx`, `401` and `403` becomes a `500`).
    #[inline]
    fn response(&self, request: &Request) -> Response {
        crate::logging::line(&format!(
            "forward auth refused peer={} reason={}",
            request.remote_addr().ip(),
            crate::logging::quote(&self.0)
        ));
        Response::text(self.0.clone()).with_status_code(403)
    }
}

/// Reads what the proxy says about the original request. Those headers
/// are believed only from `trusted_proxies`: nginx's `auth_request` passes
/// the client's own headers on, so a client's `X-Forwarded-Uri:
/// /apps/wiki/` would otherwise be judged instead of the page it asked for.
/// A peer that is not trusted but sends them is refused outright, rather
/// than judged on its own `Host`, so a proxy left out of `trusted_proxies`
/// fails closed. A forwarded target with no normal form (a `#`, an encoded
/// slash, `..` above the root, ... see [`crate::auth::path`]) is refused
/// too: the upstream might read it otherwise than gatehouse would judge it.
#[inline]
fn forwarded<'r>(
    state: &State,
    request: &'r Request,
    client: &Client,
) -> std::result::Result<Forwarded<'r>, Refusal> {
    let peer = request.remote_addr().ip();
    let trusted = state
        .trusted_proxies
        .iter()
        .any(|n| crate::auth::proxy::contains(n, peer));
    let untrusted = FORWARD_AUTH_HEADERS
        .iter()
        .find(|h| !trusted && request.header(h).is_some());
    if let Some(h) = untrusted {
        return Err(Refusal(format!(
            "{h} is believed only from an address in trusted_proxies"
        )));
    }
    // Not even looked up from a peer that is not trusted (it sent none of
    // them, or was refused above): the hot path of a direct check.
    let header = |name: &str| if trusted { request.header(name) } else { None };
    let host = header("X-Forwarded-Host")
        .or_else(|| request.header("Host"))
        .map(|h| h.split(',').next().unwrap_or("").trim().to_owned())
        .filter(|h| !h.is_empty());
    let uri = header("X-Forwarded-Uri")
        .or_else(|| header("X-Original-URI"))
        .unwrap_or("/");
    let target = Target::parse(uri)
        .map_err(|e| Refusal(format!("the forwarded target is refused: {}", e.message())))?;
    let proto = header("X-Forwarded-Proto")
        .map(|p| {
            p.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|p| p == "http" || p == "https")
        .unwrap_or_else(|| client.scheme().to_owned());
    let method = header("X-Forwarded-Method").map_or(request.method(), str::trim);
    Ok(Forwarded {
        host,
        target,
        raw_path: uri.split('?').next().unwrap_or(uri).to_owned(),
        proto,
        method,
    })
}

/// Runs `f` with the forwarded target and what the rules make of it.
#[inline]
fn forward_auth(
    state: &State,
    request: &Request,
    client: &Client,
    f: impl FnOnce(&Forwarded<'_>, Asked) -> Response,
) -> Result<Response> {
    let forwarded = match forwarded(state, request, client) {
        Ok(forwarded) => forwarded,
        Err(refusal) => return Ok(refusal.response(request)),
    };
    let host = forwarded.host.as_deref();
    let app = match state
        .apps
        .for_request(host, &forwarded.target, &forwarded.raw_path)
    {
        Ok(app) => app,
        Err(e) => {
            let why = format!("the forwarded target is refused: {}", e.message());
            return Ok(Refusal(why).response(request));
        }
    };
    let path = match app {
        Some(a) => state.apps.path_seen(a, host, &forwarded.target.path),
        None => forwarded.target.path.as_str(),
    };
    with_session(state, request, client, |session| {
        let asked = ask(state, request, session, app, path, forwarded.method, client)?;
        Ok(f(&forwarded, asked))
    })
}

/// `200` with the identity headers (none for a request let through
/// without anyone signed in).
#[inline]
fn allowed(asked: &Asked) -> Response {
    let mut response = Response::text("ok");
    match &asked.who {
        Some(who) => {
            for (name, value) in identity::headers(who) {
                response = response.with_additional_header(name, value);
            }
        }
        // Nobody (a `bypass` rule): the same headers, empty. A proxy that
        // copies them (Caddy's `copy_headers`) otherwise fills in its own
        // placeholder text, `{http.reverse_proxy.header.Remote-User}`, and
        // the app saw that as a user's name (a hostile pass); an empty one
        // is what nginx's recipe sends too.
        None => {
            for name in identity::NAMES {
                response = response.with_additional_header(name, "");
            }
        }
    }
    response
}

/// `GET /auth/verify`: nginx `auth_request`. `200` with the identity
/// headers, `401` when not signed in (or without the second factor the
/// app needs), `403` when not allowed. Read-only.
#[inline]
pub(super) fn get_verify(state: &State, request: &Request, client: &Client) -> Result<Response> {
    forward_auth(state, request, client, |_, asked| {
        if let Some(refusal) = asked.sessionless_refusal() {
            return refusal;
        }
        match asked.verdict.decision {
            Decision::Allow => allowed(&asked),
            Decision::SignIn | Decision::SecondFactor => {
                Response::text("not signed in").with_status_code(401)
            }
            Decision::Deny => Response::text("not allowed").with_status_code(403),
        }
    })
}

/// `GET /auth/forward`: Caddy `forward_auth` and Traefik `ForwardAuth`.
/// Like `/auth/verify`, but a browser that is not signed in is redirected
/// to the sign-in page (which sends a session without the second factor
/// an app needs on to the second step), and back to the original URL
/// afterwards.
pub(super) fn get_forward(state: &State, request: &Request, client: &Client) -> Result<Response> {
    forward_auth(state, request, client, |forwarded, asked| {
        if let Some(refusal) = asked.sessionless_refusal() {
            return refusal;
        }
        match asked.verdict.decision {
            Decision::Allow => allowed(&asked),
            Decision::SignIn | Decision::SecondFactor => {
                let target = &forwarded.target;
                let original = match &forwarded.host {
                    Some(h) => format!("{}://{h}{}", forwarded.proto, target.path_and_query()),
                    None => target.path_and_query(),
                };
                Response::redirect_302(login_url(state, request, client, &original))
            }
            Decision::Deny => forbidden_page(),
        }
    })
}
