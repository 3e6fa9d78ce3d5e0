//! The HTTP surface: the entry point every request goes through (route,
//! map errors, security headers, log) and the HTTPS redirect listener. The
//! only code that builds `Response`s.
//!
//! The areas, one per feature; each declares its paths once, in its own
//! table, and never imports another area:
//!
//! | area | owns |
//! | --- | --- |
//! | `signin/` | `/login` (password, second step, enrolment, passkey sign-in) and `/logout` |
//! | `account/` | `/account`: one's sessions, password and second factors |
//! | `admin/` | `/admin`: users, every session, the password an action asks for again |
//! | `api/` | the JSON API (`/api/...`) and its OpenAPI document |
//! | `setup.rs` | first run (`/setup`) and sign-up (`/register`) |
//! | `links/` | the pages links that stand in for e-mail open: invites (`/invite/<token>`), reset links (`/reset/<token>`), sign-in links for a new device (`/login/link/<token>`, `/login/code`) |
//! | `dashboard.rs` | the start page (`/`) |
//! | `ops.rs` | `/healthz` and `/metrics` |
//! | `oidc/` | the OpenID Provider's endpoints (discovery, JWKS, authorize, token, userinfo, revoke, introspect, end_session), thin over `crate::oidc` |
//! | `gate/` | forward auth (`/auth/verify`, `/auth/forward`), the built-in reverse proxy (with `tunnel.rs`, its upgraded connections), the identity headers both send |
//!
//! What the areas share:
//!
//! | module | owns |
//! | --- | --- |
//! | `router` | the route tables' type and the one dispatch: `405` with `Allow`, fetch metadata, a form's token first |
//! | `state` | the state every request thread shares, and `with_session` |
//! | `sso` | the session's `sid` for OpenID Connect clients, and ending their grants at sign-out |
//! | `principal` | who is asking: the one place a request's principal is built |
//! | `signed_in` | the signed-in user of this request |
//! | `csrf` | the anonymous and session CSRF checks, the `Origin` check |
//! | `redirects` | gatehouse's origin, safe `next` targets, where a signed-in user goes |
//! | `respond` | the small answers: a page, a `303`, notices, sentences |
//! | `paging` | a page of a long list |
//! | `device` | the device a session was made on, and the session rows lists show |
//! | `totp`, `passkeys` | what sign-in and `/account` share of second factors |
//! | `views/` | the HTML: the layout, the partials, one file of pages per area |
//! | `form` | request bodies: the size cap and the strict form parser |
//! | `error` | [`WebError`], mapped to a status and a page in one place |
//! | `assets` | the stylesheet, icon and passkey script, compiled in |
//! | `metrics` | the Prometheus counters |
//! | `layer` | the session layer (and CSRF tokens) the library offers any rouille app |
//!
//! Files depend one way: this file holds the list of the areas' tables
//! (`router` dispatches on it); the areas use the shared modules; the
//! views import no area (`src/layers.rs` checks all of it).

mod account;
mod admin;
pub mod api;
mod assets;
mod csrf;
mod dashboard;
mod device;
pub mod error;
pub mod form;
pub mod gate;
pub mod layer;
mod links;
pub mod metrics;
mod oidc;
mod ops;
mod paging;
mod passkeys;
mod principal;
mod redirects;
mod respond;
mod router;
mod setup;
mod signed_in;
mod signin;
mod sso;
mod state;
mod totp;
mod tunnel;
pub mod views;

use std::net::IpAddr;
use std::time::Instant;

use rouille::{Request, Response};

pub use error::WebError;
pub use principal::principal_for;
#[doc(hidden)]
pub use router::Token as FormToken;
pub use state::{Health, State, Unhealthy, with_session};
pub use tunnel::Tunnels;

use crate::auth::proxy;
use crate::auth::proxy::Client;
use crate::logging;

/// Every area's routes: each path is declared once, in its area's table.
const ROUTES: &[&[router::Route]] = &[
    signin::ROUTES,
    setup::ROUTES,
    links::ROUTES,
    dashboard::ROUTES,
    account::ROUTES,
    admin::ROUTES,
    api::ROUTES,
    gate::ROUTES,
    oidc::ROUTES,
    ops::ROUTES,
    assets::ROUTES,
];

/// Every form route's path and the token it takes (for the test that
/// walks them all).
#[doc(hidden)]
pub fn form_routes() -> impl Iterator<Item = (&'static str, FormToken)> {
    ROUTES
        .iter()
        .flat_map(|table| table.iter())
        .filter(|r| r.post.is_some())
        .filter_map(|r| Some((r.path, r.token?)))
}

const CSP: &str = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The policy of the pages whose forms send the browser on, by redirects,
/// to an app or an OpenID Connect client (the sign-in, its second step and
/// enrolment, `/oidc/reauth`, `/oidc/end_session`): browsers hold
/// `form-action` against every redirect a form's answer leads to, so
/// `'self'` would stop the sign-in short of the app.
const CSP_SENDS_ON: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of the signed-out page that loads the clients'
/// front-channel logout frames: [`CSP`] with `frame-src` naming exactly
/// `origins` (each checked when the client was read: a scheme, a host of
/// letters, digits, `-` and `.`, a port), on that one response; every
/// other page may frame nothing but itself.
fn csp_with_frames(origins: &[&str]) -> String {
    format!("{CSP}; frame-src {}", origins.join(" "))
}

/// The paths of those pages.
const SENDS_ON: &[&str] = &[
    "/login",
    "/login/second",
    "/login/enrol",
    "/oidc/reauth",
    "/oidc/end_session",
];

/// The paths whose last segment is a secret (a link's token): their
/// answers carry `Referrer-Policy: no-referrer` (a link on the page, or a
/// redirect, must not hand the token to another site, or to another page
/// here), and every log line names them without the token.
const TOKEN_PATHS: &[&str] = &["/invite/", "/reset/", "/login/link/"];

/// The token path `path` is under, if any; matched without regard to case
/// on the path as routed (decoded) and as sent, so no spelling of a
/// token's path puts the token in the log.
#[inline]
fn token_path(path: &str) -> Option<&'static str> {
    TOKEN_PATHS.iter().copied().find(|prefix| {
        path.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    })
}

/// `path` as log lines name it: a token path without its token.
#[inline]
pub(super) fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    match token_path(path) {
        Some(prefix) => std::borrow::Cow::Owned(format!("{prefix}[token]")),
        None => std::borrow::Cow::Borrowed(path),
    }
}

/// The token path `request` is under, as sent or as routed (decoded:
/// only a path with a `%` can differ, so the common one is not decoded).
#[inline]
fn request_token_path(request: &Request) -> Option<&'static str> {
    let sent = path_of(request);
    token_path(sent).or_else(|| {
        sent.contains('%')
            .then(|| token_path(&request.url()))
            .flatten()
    })
}

/// `request`'s path as log lines name it (see [`logged_path`]): a request
/// whose path is, or decodes to, a token path is named by that path,
/// tokenless.
#[inline]
fn path_for_log(request: &Request) -> std::borrow::Cow<'_, str> {
    match request_token_path(request) {
        Some(prefix) => std::borrow::Cow::Owned(format!("{prefix}[token]")),
        None => std::borrow::Cow::Borrowed(path_of(request)),
    }
}

/// The words of the token paths ([`TOKEN_PATHS`]).
const TOKEN_WORDS: &[&[u8]] = &[b"invite", b"reset", b"link"];

/// Where in `path` a token path's word first shows, however the path is
/// spelt (`//invite/..`, `/./login/link/..`, `/x/../reset/..`,
/// `/invite;x/..`, `/%2Finvite/..`): the end of the word.
#[inline]
fn token_word_end(path: &str) -> Option<usize> {
    let bytes = path.as_bytes();
    (0..bytes.len())
        .filter_map(|i| {
            TOKEN_WORDS.iter().find_map(|word| {
                let end = i + word.len();
                bytes
                    .get(i..end)
                    .is_some_and(|w| w.eq_ignore_ascii_case(word))
                    .then_some(end)
            })
        })
        .next()
}

/// `request`'s path as the request log names it: as [`path_for_log`],
/// and for an answer of gatehouse's own that found no route (`400`,
/// `404`) under any other spelling of a token path, cut after the word
/// (`//invite[token]`): such a path routes nowhere, so its token shows
/// nothing but what was sent, and must not reach the log either.
#[inline]
fn path_for_request_log(
    request: &Request,
    proxied: bool,
    status: u16,
) -> std::borrow::Cow<'_, str> {
    let path = path_for_log(request);
    if proxied || !matches!(status, 400 | 404) || matches!(path, std::borrow::Cow::Owned(_)) {
        return path;
    }
    match token_word_end(&path) {
        Some(end) => std::borrow::Cow::Owned(format!("{}[token]", &path[..end])),
        None => path,
    }
}

/// Answers one request: route, map errors, add security headers, log.
#[inline]
pub fn handle(state: &State, request: &Request) -> Response {
    let started = Instant::now();
    let client = client(state, request);
    // Proxied answers are the upstream's: its headers are left as they are.
    let (result, proxied) = match gate::proxied_app(state, request) {
        Ok(Some(p)) => (gate::proxy(state, request, &client, &p), true),
        // gatehouse's own routes: one body cap for all of them, at the entry.
        Ok(None) => (
            match form::cap_body(request) {
                Ok(None) => router::route(state, request, &client, ROUTES),
                Ok(Some(buffered)) => router::route(state, &buffered, &client, ROUTES),
                Err(e) => Err(e),
            },
            false,
        ),
        Err(e) => (Err(e), false),
    };
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            match &e {
                WebError::Internal(detail) => {
                    state.metrics.db_error();
                    logging::line(&format!(
                        "error path={} detail={}",
                        logging::quote(&path_for_log(request)),
                        logging::quote(detail)
                    ));
                }
                WebError::Unavailable(detail) => {
                    state.metrics.db_error();
                    logging::line(&format!(
                        "backend unavailable path={} detail={}",
                        logging::quote(&path_for_log(request)),
                        logging::quote(detail)
                    ));
                }
                _ => {}
            }
            if path_of(request).starts_with("/api/") {
                api::error_response(&e)
            } else if oidc::for_programs(path_of(request)) {
                oidc::program_error(e)
            } else {
                e.into_response()
            }
        }
    };
    let response = if proxied {
        response
    } else {
        with_security_headers(response, SENDS_ON.contains(&path_of(request)))
    };
    let response = if !proxied
        && (request_token_path(request).is_some()
            || (matches!(response.status_code, 400 | 404)
                && token_word_end(path_of(request)).is_some()))
    {
        response.with_unique_header("Referrer-Policy", "no-referrer")
    } else {
        response
    };
    let response = with_hsts(state, response);
    state
        .metrics
        .request(response.status_code, started.elapsed());
    if state.log_requests && !is_watchdog_probe(request) {
        // Pushed piece by piece: `write!` with a float and an address cost
        // about 3,000 instructions a request (issue 22).
        let mut line = String::with_capacity(96);
        line.push_str("request method=");
        logging::push_quoted(&mut line, request.method());
        line.push_str(" path=");
        logging::push_quoted(
            &mut line,
            &path_for_request_log(request, proxied, response.status_code),
        );
        line.push_str(" status=");
        logging::push_number(&mut line, u64::from(response.status_code));
        line.push_str(" ms=");
        logging::push_millis(&mut line, started.elapsed());
        line.push_str(" ip=");
        logging::push_ip(&mut line, client.ip);
        logging::request_line(&line);
    }
    response
}

/// The `User-Agent` of the systemd watchdog's probe.
pub const WATCHDOG_USER_AGENT: &str = "gatehouse-watchdog";

/// The systemd watchdog's own `GET /healthz` (see `app::watchdog`), sent
/// over loopback every few seconds: not logged, or it would be most of the
/// journal. Only that path from a loopback address, so the exemption hides
/// nothing a client elsewhere does.
#[inline]
fn is_watchdog_probe(request: &Request) -> bool {
    request.url() == "/healthz"
        && request.remote_addr().ip().is_loopback()
        && request.header("User-Agent") == Some(WATCHDOG_USER_AGENT)
}

/// The request path without the query string (which may carry tokens).
#[inline]
fn path_of(request: &Request) -> &str {
    let raw = request.raw_url();
    raw.split_once('?').map_or(raw, |(p, _)| p)
}

#[inline]
fn client(state: &State, request: &Request) -> Client {
    let peer: IpAddr = request.remote_addr().ip();
    // rouille 3.6 builds every `Request` with `https: false`, even over
    // TLS, so the listener's own kind decides. When it speaks HTTPS the
    // request came over TLS whatever a proxy's header says, and cookies
    // set on it are always `Secure`.
    let direct_https = state.https || request.is_secure();
    let forwarded_for = forwarded_for(request);
    let mut client = proxy::client(
        peer,
        direct_https,
        forwarded_for.as_deref(),
        request.header("X-Forwarded-Proto"),
        &state.trusted_proxies,
    );
    client.https |= state.https;
    client
}

/// Every `X-Forwarded-For` line of `request`, in order, as one list (RFC
/// 9110 §5.3): a proxy that adds a line of its own instead of appending to
/// the client's (HAProxy's `option forwardfor`) put the address it vouches
/// for in the last line, and reading only the first let a client choose
/// its own address for the throttle (a hostile pass).
#[inline]
fn forwarded_for(request: &Request) -> Option<std::borrow::Cow<'_, str>> {
    let mut lines = request
        .headers()
        .filter(|(k, _)| k.eq_ignore_ascii_case("X-Forwarded-For"))
        .map(|(_, v)| v);
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return Some(std::borrow::Cow::Borrowed(first));
    };
    let mut joined = format!("{first},{second}");
    for line in lines {
        joined.push(',');
        joined.push_str(line);
    }
    Some(std::borrow::Cow::Owned(joined))
}

/// Adds `Strict-Transport-Security` when gatehouse itself serves HTTPS
/// (behind a proxy that terminates TLS, the proxy sends its own). A
/// proxied app's own header is left as it is.
#[inline]
fn with_hsts(state: &State, response: Response) -> Response {
    let Some(value) = &state.hsts else {
        return response;
    };
    let has = response
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Strict-Transport-Security"));
    if has {
        response
    } else {
        response.with_additional_header("Strict-Transport-Security", value.clone())
    }
}

/// The whole of the `redirect_http` listener: `301` to the same path and
/// query over HTTPS, at `public_url` when set, else at the request's host
/// on the HTTPS port. Nothing else is ever served there.
pub fn redirect_to_https(request: &Request, public_url: Option<&str>, https_port: u16) -> Response {
    let raw = request.raw_url();
    // Origin-form only ("/path?query"); anything else goes to the root.
    let path = if raw.starts_with('/') && !raw.starts_with("//") {
        raw
    } else {
        "/"
    };
    let base = match public_url {
        Some(url) if url.starts_with("https://") => url.trim_end_matches('/').to_owned(),
        _ => {
            let Some(host) = request.header("Host").and_then(host_without_port) else {
                return Response::text(
                    "HTTPS only: this address answers with redirects, and needs a Host header.\n",
                )
                .with_status_code(400);
            };
            if https_port == 443 {
                format!("https://{host}")
            } else {
                format!("https://{host}:{https_port}")
            }
        }
    };
    Response::text("")
        .with_status_code(301)
        .with_unique_header("Location", format!("{base}{path}"))
        .with_additional_header("Cache-Control", "no-store")
}

/// The host part of a `Host` header when it is a plain name, an IPv4
/// address or a bracketed IPv6 address (a redirect must not carry anything
/// a client could use to break out of the URL).
#[inline]
fn host_without_port(header: &str) -> Option<&str> {
    let header = header.trim();
    let host = if header.starts_with('[') {
        let end = header.find(']')?;
        let rest = &header[end + 1..];
        if !(rest.is_empty() || rest.starts_with(':')) {
            return None;
        }
        let inner = &header[1..end];
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        &header[..=end]
    } else {
        let host = header.split(':').next()?;
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            return None;
        }
        host
    };
    Some(host)
}

#[inline]
fn with_security_headers(mut response: Response, sends_on: bool) -> Response {
    let has =
        |r: &Response, name: &str| r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has(&response, "Cache-Control") {
        response = response.with_additional_header("Cache-Control", "no-store");
    }
    response = response.with_additional_header("X-Content-Type-Options", "nosniff");
    // The page policies matter only where a browser renders a page; leaving
    // them off plain-text and JSON answers keeps the hot `/auth/verify`
    // answer small.
    let html = response
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("Content-Type") && v.starts_with("text/html"));
    if html {
        // A handler that set its own policy (the signed-out page, which
        // frames the clients' logout URIs) chose it from [`CSP`].
        if !has(&response, "Content-Security-Policy") {
            response = response.with_additional_header(
                "Content-Security-Policy",
                if sends_on { CSP_SENDS_ON } else { CSP },
            );
        }
        response = response
            .with_additional_header("Referrer-Policy", "same-origin")
            .with_additional_header("X-Frame-Options", "DENY");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_is_declared_once_and_each_route_takes_a_method() {
        let mut seen = std::collections::BTreeSet::new();
        for route in ROUTES.iter().flat_map(|table| table.iter()) {
            assert!(seen.insert(route.path), "{} is declared twice", route.path);
            assert!(!route.allow().is_empty(), "{} takes no method", route.path);
            if route.token.is_some() {
                assert!(route.post.is_some(), "{}: a token but no form", route.path);
            }
            if route.fetch == router::Fetch::TokenPage {
                assert!(
                    route.get.is_some(),
                    "{}: a token page with no GET",
                    route.path
                );
            }
        }
    }
}
