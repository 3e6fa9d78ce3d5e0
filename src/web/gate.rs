//! The gate: forward auth for nginx (`/auth/verify`) and for Caddy and
//! Traefik (`/auth/forward`), and the built-in reverse proxy that serves
//! apps under a path prefix or on their own host name.
//!
//! The proxy streams bodies both ways, never forwards gatehouse's own
//! cookies, strips every identity header a client sent (`Remote-*`,
//! `X-Forwarded-*`, `X-Gatehouse-Identity`) and sets its own, optionally
//! signed so an upstream can tell a forged identity from a real one.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rouille::{Request, Response, ResponseBody};
use sha2::Sha256;

use super::handlers::{Result, current_user, encode, html, see_other};
use super::{State, WebError, views, with_session};
use crate::auth::apps::App;
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::users::User;

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Identity headers only gatehouse may set: a client's copies are dropped.
fn is_identity_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("remote-")
        || n.starts_with("x-forwarded-")
        || n == "forwarded"
        || n == "x-real-ip"
        || n == "x-gatehouse-identity"
}

/// The groups header value for a user.
fn groups(user: &User) -> &'static str {
    if user.is_admin { "admins" } else { "" }
}

/// The URL the original request was for, as a forwarding proxy reports it.
struct Forwarded {
    host: Option<String>,
    uri: String,
    proto: String,
}

fn forwarded(request: &Request, client: &Client) -> Forwarded {
    let host = request
        .header("X-Forwarded-Host")
        .or_else(|| request.header("Host"))
        .map(|h| h.split(',').next().unwrap_or("").trim().to_owned())
        .filter(|h| !h.is_empty());
    let uri = request
        .header("X-Forwarded-Uri")
        .or_else(|| request.header("X-Original-URI"))
        .unwrap_or("/")
        .to_owned();
    let proto = request
        .header("X-Forwarded-Proto")
        .map(|p| {
            p.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|p| p == "http" || p == "https")
        .unwrap_or_else(|| if client.https { "https" } else { "http" }.to_owned());
    Forwarded { host, uri, proto }
}

/// The verdict on a forwarded request: who, and whether they may pass.
enum Verdict {
    Allowed(User),
    NotSignedIn,
    Forbidden,
}

fn judge(state: &State, user: Option<User>, app: Option<&App>) -> Verdict {
    match user {
        None => Verdict::NotSignedIn,
        Some(u) if state.apps.allows(app, &u.username, u.is_admin) => Verdict::Allowed(u),
        Some(_) => Verdict::Forbidden,
    }
}

fn identity(response: Response, user: &User) -> Response {
    response
        .with_additional_header("Remote-User", user.username.clone())
        .with_additional_header("Remote-Name", user.username.clone())
        .with_additional_header("Remote-Groups", groups(user))
}

/// Runs `f` with the forwarded target and the verdict on it.
fn forward_auth(
    state: &State,
    request: &Request,
    client: &Client,
    f: impl FnOnce(&Forwarded, Verdict) -> Response,
) -> Result<Response> {
    let target = forwarded(request, client);
    with_session(state, request, client, |session| {
        let path = target.uri.split('?').next().unwrap_or("/");
        let app = state.apps.for_request(target.host.as_deref(), path);
        Ok(f(&target, judge(state, current_user(state, session)?, app)))
    })
}

/// `GET /auth/verify`: nginx `auth_request`. `200` with the identity
/// headers, `401` when not signed in, `403` when not allowed. Read-only.
pub(super) fn get_verify(state: &State, request: &Request, client: &Client) -> Result<Response> {
    forward_auth(state, request, client, |_, verdict| match verdict {
        Verdict::Allowed(user) => identity(Response::text("ok"), &user),
        Verdict::NotSignedIn => Response::text("not signed in").with_status_code(401),
        Verdict::Forbidden => Response::text("not allowed").with_status_code(403),
    })
}

/// Where a browser goes to sign in, coming back to `next` afterwards.
fn login_url(state: &State, request: &Request, client: &Client, next: &str) -> String {
    let base = state.public_url.clone().unwrap_or_else(|| {
        let host = request.header("Host").unwrap_or("localhost");
        format!("{}://{host}", if client.https { "https" } else { "http" })
    });
    format!("{base}/login?next={}", encode(next))
}

/// `GET /auth/forward`: Caddy `forward_auth` and Traefik `ForwardAuth`.
/// Like `/auth/verify`, but a browser that is not signed in is redirected
/// to the sign-in page, which sends it back to the original URL afterwards.
pub(super) fn get_forward(state: &State, request: &Request, client: &Client) -> Result<Response> {
    forward_auth(state, request, client, |target, verdict| match verdict {
        Verdict::Allowed(user) => identity(Response::text("ok"), &user),
        Verdict::NotSignedIn => {
            let original = match &target.host {
                Some(h) => format!("{}://{h}{}", target.proto, target.uri),
                None => target.uri.clone(),
            };
            Response::redirect_302(login_url(state, request, client, &original))
        }
        Verdict::Forbidden => forbidden_page(),
    })
}

fn forbidden_page() -> Response {
    html(views::error_page(
        403,
        "You are signed in, but this app is not open to you. Ask an administrator.",
    ))
    .with_status_code(403)
}

/// The app the built-in proxy serves this request for, if any. gatehouse's
/// own sign-in pages and assets stay reachable on an app's host.
pub(super) fn proxied_app<'s>(state: &'s State, request: &Request) -> Option<&'s App> {
    let raw = request.raw_url();
    let path = raw.split('?').next().unwrap_or("/");
    if let Some(app) = request.header("Host").and_then(|h| state.apps.by_host(h)) {
        let own = ["/login", "/logout"].contains(&path) || path.starts_with("/assets/");
        if app.upstream.is_some() && !own {
            return Some(app);
        }
    }
    state
        .apps
        .by_path(path)
        .filter(|a| a.upstream.is_some() && a.prefix.is_some())
}

/// Serves a request through the built-in proxy.
pub(super) fn proxy(
    state: &State,
    request: &Request,
    client: &Client,
    app: &App,
) -> Result<Response> {
    let raw = request.raw_url().to_owned();
    let by_prefix = app
        .prefix
        .as_deref()
        .filter(|p| raw.starts_with(*p) || raw.split('?').next() == Some(p.trim_end_matches('/')));
    let on_host = request
        .header("Host")
        .and_then(|h| state.apps.by_host(h))
        .is_some_and(|a| a.name == app.name);
    let (prefix, rest) = match by_prefix {
        Some(p) if !on_host => {
            let Some(rest) = raw
                .strip_prefix(p.trim_end_matches('/'))
                .filter(|r| r.starts_with('/'))
            else {
                // `/apps/wiki` -> `/apps/wiki/`, so relative links resolve.
                return Ok(Response::redirect_301(format!(
                    "{p}{}",
                    raw.split_once('?')
                        .map(|(_, q)| format!("?{q}"))
                        .unwrap_or_default()
                )));
            };
            (Some(p), rest.to_owned())
        }
        _ => (None, raw.clone()),
    };
    with_session(state, request, client, |session| {
        let user = match judge(state, current_user(state, session)?, Some(app)) {
            Verdict::Allowed(user) => user,
            Verdict::NotSignedIn => {
                let wants_html = request
                    .header("Accept")
                    .is_some_and(|a| a.contains("text/html"));
                if !wants_html {
                    return Ok(Response::text("not signed in").with_status_code(401));
                }
                let next = if on_host {
                    let host = request.header("Host").unwrap_or("");
                    format!(
                        "{}://{host}{raw}",
                        if client.https { "https" } else { "http" }
                    )
                } else {
                    raw.clone()
                };
                let target = if on_host {
                    login_url(state, request, client, &next)
                } else {
                    format!("/login?next={}", encode(&next))
                };
                return Ok(see_other(&target));
            }
            Verdict::Forbidden => return Ok(forbidden_page()),
        };
        if let Some(protocol) = upgrade_protocol(request) {
            // Cross-site WebSocket hijacking: a page elsewhere must not
            // open the app's socket with the user's cookie.
            super::api::same_origin(state, request)?;
            let headers = upstream_headers(state, request, client, app, &user, prefix);
            return Ok(
                match super::tunnel::open(
                    app,
                    request.method(),
                    &rest,
                    protocol,
                    &headers,
                    state.proxy_timeout,
                ) {
                    Ok(response) => response,
                    Err(e) => tunnel_failed(app, &e),
                },
            );
        }
        forward(state, request, client, app, &user, prefix, &rest)
    })
}

/// The signed identity header: `v1;user=..;groups=..;ts=..;sig=..`, the
/// signature an HMAC-SHA256 with the app's key over everything before `;sig=`.
pub fn identity_header(key: &[u8], user: &str, groups: &str, unix_secs: u64) -> String {
    let payload = format!("v1;user={user};groups={groups};ts={unix_secs}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{payload};sig={sig}")
}

/// The headers an upstream gets: the client's, less hop-by-hop headers,
/// forged identity headers and gatehouse's own cookies, plus the identity
/// and forwarding headers gatehouse vouches for.
fn upstream_headers(
    state: &State,
    request: &Request,
    client: &Client,
    app: &App,
    user: &User,
    prefix: Option<&str>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let own_cookies = [state.engine().options().cookie.name.as_str(), csrf::COOKIE];
    for (name, value) in request.headers() {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) || is_identity_header(name) {
            continue;
        }
        if lower == "cookie" {
            // gatehouse's cookies are its own business, not the upstream's.
            let kept: Vec<&str> = value
                .split(';')
                .map(str::trim)
                .filter(|c| {
                    !own_cookies
                        .iter()
                        .any(|own| c.split('=').next() == Some(*own))
                })
                .collect();
            if !kept.is_empty() {
                out.push(("Cookie".to_owned(), kept.join("; ")));
            }
            continue;
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    let host = request.header("Host").unwrap_or("");
    for (name, value) in [
        ("Remote-User", user.username.clone()),
        ("Remote-Name", user.username.clone()),
        ("Remote-Groups", groups(user).to_owned()),
        ("X-Forwarded-For", client.ip.to_string()),
        (
            "X-Forwarded-Proto",
            if client.https { "https" } else { "http" }.to_owned(),
        ),
        ("X-Forwarded-Host", host.to_owned()),
    ] {
        out.push((name.to_owned(), value));
    }
    if let Some(p) = prefix {
        out.push((
            "X-Forwarded-Prefix".to_owned(),
            p.trim_end_matches('/').to_owned(),
        ));
    }
    if let Some(key) = &app.identity_key {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        out.push((
            "X-Gatehouse-Identity".to_owned(),
            identity_header(key, &user.username, groups(user), now),
        ));
    }
    out
}

/// Whether the client asks to switch protocols (WebSocket): `Connection:
/// upgrade` with an `Upgrade` protocol; returns the protocol.
fn upgrade_protocol(request: &Request) -> Option<&str> {
    let asks = request.header("Connection").is_some_and(|c| {
        c.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    request.header("Upgrade").filter(|_| asks)
}

fn forward(
    state: &State,
    request: &Request,
    client: &Client,
    app: &App,
    user: &User,
    prefix: Option<&str>,
    rest: &str,
) -> Result<Response> {
    let upstream = app.upstream.as_ref().ok_or(WebError::NotFound)?;
    let url = format!("http://{}{}{}", upstream.authority, upstream.base, rest);
    let mut builder = ureq::http::Request::builder()
        .method(request.method())
        .uri(&url);
    for (name, value) in upstream_headers(state, request, client, app, user, prefix) {
        builder = builder.header(name, value);
    }
    let length = request
        .header("Content-Length")
        .and_then(|l| l.trim().parse::<u64>().ok());
    let chunked = request
        .header("Transfer-Encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if let Some(l) = length {
        builder = builder.header("Content-Length", l.to_string());
    }
    let result = if length.unwrap_or(0) > 0 || chunked {
        let Some(mut body) = request.data() else {
            return Err(WebError::BadRequest("the request body was already read"));
        };
        let req = builder
            .body(ureq::SendBody::from_reader(&mut body))
            .map_err(|_| WebError::BadRequest("a request header cannot be forwarded"))?;
        state.proxy.run(req)
    } else {
        let req = builder
            .body(())
            .map_err(|_| WebError::BadRequest("a request header cannot be forwarded"))?;
        state.proxy.run(req)
    };
    let upstream_response = match result {
        Ok(r) => r,
        Err(e) => return Ok(upstream_failed(app, &e)),
    };
    let status = upstream_response.status().as_u16();
    let mut headers = Vec::new();
    let mut size = None;
    for (name, value) in upstream_response.headers() {
        let lower = name.as_str();
        if lower == "content-length" {
            size = value.to_str().ok().and_then(|v| v.parse::<usize>().ok());
            continue;
        }
        if HOP_BY_HOP.contains(&lower) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            headers.push((name.as_str().to_owned().into(), v.to_owned().into()));
        }
    }
    let reader = upstream_response.into_body().into_reader();
    let data = match size {
        Some(n) => ResponseBody::from_reader_and_size(reader, n),
        None => ResponseBody::from_reader(reader),
    };
    Ok(Response {
        status_code: status,
        headers,
        data,
        upgrade: None,
    })
}

fn upstream_failed(app: &App, error: &ureq::Error) -> Response {
    failed(
        app,
        &error.to_string(),
        matches!(error, ureq::Error::Timeout(_)),
    )
}

fn tunnel_failed(app: &App, error: &std::io::Error) -> Response {
    let timed_out = matches!(
        error.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    );
    failed(app, &error.to_string(), timed_out)
}

/// The 502 or 504 page for an upstream that failed, and its log line.
fn failed(app: &App, error: &str, timed_out: bool) -> Response {
    crate::logging::line(&format!(
        "proxy error app={} error={}",
        crate::logging::quote(&app.name),
        crate::logging::quote(error)
    ));
    let (status, message) = if timed_out {
        (
            504,
            "The app did not answer in time. Try again in a moment; if it keeps happening, tell whoever runs it.",
        )
    } else {
        (
            502,
            "The app is not reachable right now. Try again in a moment; if it keeps happening, tell whoever runs it.",
        )
    };
    html(views::error_page(status, message)).with_status_code(status)
}

/// The HTTP client the proxy forwards with: no redirects followed, statuses
/// passed through, bodies untouched, `timeout` to wait for an answer.
pub fn client(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .allow_non_standard_methods(true)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_recv_response(Some(timeout))
        .user_agent(ureq::config::AutoHeaderValue::None)
        .accept(ureq::config::AutoHeaderValue::None)
        .accept_encoding(ureq::config::AutoHeaderValue::None)
        .max_idle_connections_per_host(32)
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_header_is_signed_over_its_fields() {
        let key = b"an identity key that is long enough";
        let h = identity_header(key, "alice", "admins", 1_800_000_000);
        let (payload, sig) = h.split_once(";sig=").expect("sig");
        assert_eq!(payload, "v1;user=alice;groups=admins;ts=1800000000");
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
        mac.update(payload.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).expect("b64"))
            .expect("valid signature");
        assert_ne!(identity_header(key, "mallory", "admins", 1_800_000_000), h);
    }

    #[test]
    fn client_identity_headers_are_recognised() {
        for h in [
            "Remote-User",
            "remote-groups",
            "X-Forwarded-For",
            "Forwarded",
            "X-Real-IP",
            "X-Gatehouse-Identity",
        ] {
            assert!(is_identity_header(h), "{h}");
        }
        assert!(!is_identity_header("Accept"));
    }
}
