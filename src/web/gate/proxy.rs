//! The built-in reverse proxy: serves apps under a path prefix or on
//! their own host name.
//!
//! The proxy forwards exactly the normalised target it matched the app
//! on, under the app's configured upstream. It streams bodies both ways,
//! never forwards gatehouse's own cookies nor lets an upstream set them,
//! strips every identity header a client sent (`Remote-*`,
//! `X-Forwarded-*`, `X-Gatehouse-Identity`, in any case and with `_` for
//! `-`) and sets its own (see `identity.rs`).

use std::time::Duration;

use rouille::{Request, Response, ResponseBody};

use super::identity::{self, canonical, is_identity_header};
use super::inflight::{Asker, Refused};
use super::{ask, forbidden_page, login_url};
use crate::auth::access::Decision;
use crate::auth::apps::App;
use crate::auth::csrf;
use crate::auth::path::Target;
use crate::auth::proxy::Client;
use crate::identity::Principal;
use crate::web::csrf::same_origin;
use crate::web::error::{Result, WebError};
use crate::web::respond::{encode, html, see_other};
use crate::web::state::{State, with_session};
use crate::web::views;

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

/// Whether a client header may go on to an upstream: not hop-by-hop (also
/// those the `Connection` header names), not an identity header in any
/// spelling, and (unless `underscores` allows them) no `_` in its name, as
/// nginx does by default.
fn passes_on(name: &str, connection_tokens: &[String], underscores: bool) -> bool {
    let c = canonical(name);
    (underscores || !name.contains('_'))
        && !HOP_BY_HOP.contains(&c.as_str())
        && !connection_tokens.contains(&c)
        && !is_identity_header(&c)
}

/// A request the built-in proxy serves: the app, the normalised target it
/// was matched on, and the prefix it came under (`None`: the app's host).
pub(in crate::web) struct Proxied<'s> {
    app: &'s App,
    target: Target,
    prefix: Option<&'s str>,
}

/// Whether `path` (normalised) is gatehouse's own on every host, an app's
/// host included, rather than the app's:
///
/// - `/auth/verify` and `/auth/forward`: a proxy asks them. Caddy's
///   `forward_auth` keeps the browser's `Host`, so for an app whose host
///   the built-in proxy also serves, the check itself went to the app,
///   which answered `200` and let everyone in.
/// - `/login` and everything under `/login/` (the second step, enrolment,
///   passkeys), `/logout` and `/assets/`: the sign-in a browser is sent to
///   on the app's own host when `public_url` is not set, with the pages'
///   styles and script.
///
/// Nothing else: an app keeps its own `/auth/callback`, `/register`,
/// `/account`, `/api/...` (many apps have such routes).
fn on_every_host(path: &str) -> bool {
    matches!(
        path,
        "/login" | "/logout" | "/auth/verify" | "/auth/forward"
    ) || path.starts_with("/login/")
        || path.starts_with("/assets/")
}

/// The app the built-in proxy serves this request for, if any. gatehouse's
/// own routes a proxy or a browser signing in asks for stay gatehouse's on
/// an app's host ([`on_every_host`]).
///
/// Every decision is made on the normalised target, which is also what is
/// forwarded.
///
/// # Errors
///
/// `400` for a target with no normal form (`@host:port/x`, `%2f`, `..`
/// above the app, control characters...): never forwarded, never guessed.
pub(in crate::web) fn proxied_app<'s>(
    state: &'s State,
    request: &Request,
) -> Result<Option<Proxied<'s>>> {
    let raw = request.raw_url();
    if raw == "*" {
        // `OPTIONS *` asks about gatehouse itself.
        return Ok(None);
    }
    let target = Target::parse(raw).map_err(|e| WebError::BadRequest(e.message()))?;
    let path = target.path.as_str();
    let on_host = request
        .header("Host")
        .and_then(|h| state.apps.by_host(h))
        .filter(|app| app.upstream.is_some() && !on_every_host(path));
    if let Some(app) = on_host {
        return Ok(Some(Proxied {
            app,
            target,
            prefix: None,
        }));
    }
    let raw_path = raw.split('?').next().unwrap_or(raw);
    let app = state
        .apps
        .by_target(&target, raw_path)
        .map_err(|e| WebError::BadRequest(e.message()))?;
    Ok(app.filter(|a| a.upstream.is_some()).and_then(|app| {
        app.prefix.as_deref().map(|prefix| Proxied {
            app,
            target,
            prefix: Some(prefix),
        })
    }))
}

/// Serves a request through the built-in proxy.
pub(in crate::web) fn proxy(
    state: &State,
    request: &Request,
    client: &Client,
    proxied: &Proxied<'_>,
) -> Result<Response> {
    let Proxied {
        app,
        target,
        prefix,
    } = proxied;
    let app: &App = app;
    let prefix = *prefix;
    let query = target
        .query
        .as_ref()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    // What is forwarded is built from the normalised path alone: the part
    // under the prefix, or all of it on the app's host.
    let rest = match prefix {
        Some(p) => {
            // Matched on the prefix, so under it (in any case, for an app
            // that says `case_insensitive`).
            let rest = app.after_prefix(&target.path).unwrap_or("");
            if rest.is_empty() {
                // `/apps/wiki` -> `/apps/wiki/`, so relative links resolve.
                return Ok(Response::redirect_301(format!("{p}{query}")));
            }
            format!("{rest}{query}")
        }
        None => target.path_and_query(),
    };
    let on_host = prefix.is_none();
    with_session(state, request, client, |session| {
        let path = app.path_seen(&target.path);
        let asked = ask(
            state,
            request,
            session,
            Some(app),
            path,
            request.method(),
            client,
        )?;
        if let Some(refusal) = asked.sessionless_refusal() {
            return Ok(refusal);
        }
        match asked.verdict.decision {
            Decision::Allow => {}
            Decision::SignIn | Decision::SecondFactor => {
                let wants_html = request
                    .header("Accept")
                    .is_some_and(|a| a.contains("text/html"));
                if !wants_html {
                    return Ok(Response::text("not signed in").with_status_code(401));
                }
                let asked = target.path_and_query();
                let next = if on_host {
                    let host = request.header("Host").unwrap_or("");
                    format!("{}://{host}{asked}", client.scheme())
                } else {
                    asked
                };
                let target = if on_host {
                    login_url(state, request, client, &next)
                } else {
                    format!("/login?next={}", encode(&next))
                };
                return Ok(see_other(&target));
            }
            Decision::Deny => return Ok(forbidden_page()),
        }
        let who = asked.who.as_ref();
        // Waiting on the upstream (for an answer, or for the head of a
        // WebSocket's `101`) holds a request thread: an asker may hold only
        // some of them. Once a tunnel is open it runs on threads of its own.
        let asker = Asker::of(who.map(|p| p.user.id), client.ip);
        let _slot = match state.forwarding.claim(asker) {
            Ok(slot) => slot,
            Err(refused) => return Ok(too_many_waiting(app, asker, &refused)),
        };
        let response = if let Some(protocol) = upgrade_protocol(request) {
            // Cross-site WebSocket hijacking: a page elsewhere must not
            // open the app's socket with the user's cookie.
            same_origin(state, request)?;
            let headers = upstream_headers(state, request, client, app, who, prefix);
            match crate::web::tunnel::open(
                &state.tunnels,
                who.map(|p| p.user.id),
                app,
                request.method(),
                &rest,
                protocol,
                &headers,
                state.proxy_timeout,
            ) {
                Ok(response) => response,
                Err(e) => tunnel_failed(app, &e),
            }
        } else {
            forward(state, request, client, app, who, prefix, &rest)?
        };
        Ok(without_own_cookies(state, response))
    })
}

/// The answer when a request may not wait on an upstream now: `429` for
/// an asker with as many waiting as one may, `503` when as many wait as
/// the threads allow; either way soon tried again.
fn too_many_waiting(app: &App, asker: Asker, refused: &Refused) -> Response {
    let (status, why) = match refused {
        Refused::Asker => (
            429,
            "too many of your requests are waiting on this app's answers",
        ),
        Refused::Full => (503, "too many requests are waiting on apps' answers"),
    };
    let who = match asker {
        Asker::User(id) => format!("user_id={id}"),
        Asker::Address(ip) => format!("ip={}", crate::logging::ip_text(ip)),
    };
    crate::logging::line(&format!(
        "proxy refused app={} {who} status={status} reason={}",
        crate::logging::quote(&app.name),
        crate::logging::quote(why)
    ));
    Response::text(why)
        .with_status_code(status)
        .with_additional_header("Retry-After", "1")
}

/// Drops `Set-Cookie` for gatehouse's own cookies (the session cookie,
/// whatever it is called, and the CSRF cookie) from an upstream's answer,
/// whatever its `Domain` or `Path`: an app must not sign a browser in or
/// out of gatehouse, or plant a session it chose (fixation).
fn without_own_cookies(state: &State, mut response: Response) -> Response {
    let session = state.engine().options().cookie.name.as_str();
    let own = |value: &str| {
        let name = set_cookie_name(value);
        name.eq_ignore_ascii_case(session) || name.eq_ignore_ascii_case(csrf::COOKIE)
    };
    response.headers.retain(|(name, value)| {
        if name.eq_ignore_ascii_case("Set-Cookie") && own(value) {
            crate::logging::line(&format!(
                "proxy dropped cookie cookie={}",
                crate::logging::quote(value.split('=').next().unwrap_or("").trim())
            ));
            return false;
        }
        true
    });
    response
}

/// The name a browser files a `Set-Cookie` value under, as it will send it
/// back in `Cookie`. A cookie without a name (`=gatehouse_session=x`, or no
/// `=` at all) is sent back as its value alone, that is as
/// `gatehouse_session=x`: its name is then the one inside the value.
fn set_cookie_name(value: &str) -> &str {
    let pair = value.split(';').next().unwrap_or("");
    match pair.split_once('=') {
        Some((name, _)) if !name.trim().is_empty() => name.trim(),
        Some((_, rest)) => rest
            .trim_start_matches(|c: char| c == '=' || c.is_whitespace())
            .split(['=', ';'])
            .next()
            .unwrap_or("")
            .trim(),
        None => pair.trim(),
    }
}

/// The headers an upstream gets: the client's, less hop-by-hop headers,
/// forged identity headers (in any spelling), names with `_` (unless
/// allowed), gatehouse's own cookies and the token or password it took,
/// plus the identity and forwarding
/// headers gatehouse vouches for.
fn upstream_headers(
    state: &State,
    request: &Request,
    client: &Client,
    app: &App,
    who: Option<&Principal>,
    prefix: Option<&str>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let own_cookies = [state.engine().options().cookie.name.as_str(), csrf::COOKIE];
    let connection_tokens: Vec<String> = request
        .headers()
        .filter(|(n, _)| canonical(n) == "connection")
        .flat_map(|(_, v)| v.split(','))
        .map(|t| canonical(t.trim()))
        .filter(|t| !t.is_empty())
        .collect();
    for (name, value) in request.headers() {
        if !passes_on(name, &connection_tokens, state.proxy_underscore_headers) {
            continue;
        }
        if canonical(name) == "cookie" {
            // gatehouse's cookies are its own business, not the upstream's.
            let kept: Vec<&str> = value
                .split(';')
                .map(str::trim)
                .filter(|c| {
                    !own_cookies
                        .iter()
                        .any(|own| c.split('=').next().map(str::trim) == Some(*own))
                })
                .collect();
            if !kept.is_empty() {
                out.push(("Cookie".to_owned(), kept.join("; ")));
            }
            continue;
        }
        // A token or password that gatehouse took is gatehouse's: the
        // upstream gets the identity headers instead, never the secret.
        if canonical(name) == "authorization" && who.is_some_and(Principal::sessionless) {
            continue;
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    let host = request.header("Host").unwrap_or("");
    if let Some(who) = who {
        for (name, value) in identity::headers(who) {
            out.push((name.to_owned(), value));
        }
    }
    for (name, value) in [
        ("X-Forwarded-For", crate::logging::ip_text(client.ip)),
        ("X-Forwarded-Proto", client.scheme().to_owned()),
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
    if let Some(signed) = who.and_then(|who| identity::signed(app, who)) {
        out.push(("X-Gatehouse-Identity".to_owned(), signed));
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

/// Forwards one request to `app`'s upstream: `path` (normalised, with its
/// query) under the configured upstream, and nothing else.
fn forward(
    state: &State,
    request: &Request,
    client: &Client,
    app: &App,
    who: Option<&Principal>,
    prefix: Option<&str>,
    path: &str,
) -> Result<Response> {
    let upstream = app.upstream.as_ref().ok_or(WebError::NotFound)?;
    let url = format!("http://{}{}{}", upstream.authority, upstream.base, path);
    let mut builder = ureq::http::Request::builder()
        .method(request.method())
        .uri(&url);
    for (name, value) in upstream_headers(state, request, client, app, who, prefix) {
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
        let Some(body) = request.data() else {
            return Err(WebError::BadRequest("the request body was already read"));
        };
        let mut body = Upload::new(body, if chunked { None } else { length });
        let req = builder
            .body(ureq::SendBody::from_reader(&mut body))
            .map_err(|_| WebError::BadRequest("a request header cannot be forwarded"))?;
        let result = state.proxy.run(req);
        if let Some(why) = body.broken {
            // The client stopped sending: whatever the upstream made of the
            // short body, the request ends here.
            crate::logging::line(&format!(
                "proxy upload cut off app={} error={}",
                crate::logging::quote(&app.name),
                crate::logging::quote(&why)
            ));
            return Ok(Response::text("the request body was cut off").with_status_code(400));
        }
        result
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
        Some(n) => ResponseBody::from_reader_and_size(
            ToTheEnd {
                inner: reader,
                left: n,
            },
            n,
        ),
        None => ResponseBody::from_reader(reader),
    };
    Ok(Response {
        status_code: status,
        headers,
        data,
        upgrade: None,
    })
}

/// An upstream's body of known length, read once more when its last byte
/// has been taken. The answer's writer stops at `Content-Length`, so the
/// HTTP client never saw its body end and closed the upstream connection
/// instead of keeping it for the next request: every proxied request paid
/// a new TCP connection (`socket`, `connect`, `close` and the option calls
/// around them; issue 22).
struct ToTheEnd<R> {
    inner: R,
    left: usize,
}

impl<R: std::io::Read> std::io::Read for ToTheEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.saturating_sub(n);
        if self.left == 0 && n > 0 {
            // The client checks the length: this sees the end (0), or an
            // error for a body longer than declared, which the writer,
            // done with this body, never asks about.
            let _ = self.inner.read(&mut [0u8; 1]);
        }
        Ok(n)
    }
}

/// A client's upload on its way to the upstream. A body that ends before
/// its `Content-Length`, or fails to read, is an error here (and is
/// remembered), not a quiet end of stream: told "end" early, the HTTP
/// client waited for bytes that never came, spinning its thread forever.
struct Upload<R> {
    inner: R,
    /// Bytes still owed by `Content-Length`, if there is one.
    owed: Option<u64>,
    /// Why the body broke off, if it did.
    broken: Option<String>,
}

impl<R: std::io::Read> Upload<R> {
    fn new(inner: R, length: Option<u64>) -> Self {
        Self {
            inner,
            owed: length,
            broken: None,
        }
    }
}

impl<R: std::io::Read> std::io::Read for Upload<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(why) = &self.broken {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                why.clone(),
            ));
        }
        if buf.is_empty() || self.owed == Some(0) {
            return Ok(0);
        }
        match self.inner.read(buf) {
            Ok(0) if self.owed.is_some() => {
                let why = format!(
                    "the client closed with {} bytes of its body unsent",
                    self.owed.unwrap_or(0)
                );
                self.broken = Some(why.clone());
                Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why))
            }
            Ok(n) => {
                if let Some(owed) = &mut self.owed {
                    *owed = owed.saturating_sub(n as u64);
                }
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.broken = Some(e.to_string());
                Err(e)
            }
        }
    }
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
    fn client_identity_headers_are_recognised_in_any_spelling() {
        for h in [
            "Remote-User",
            "remote-groups",
            "Remote_User",
            "REMOTE_GROUPS",
            "X-Forwarded-For",
            "X_Forwarded_For",
            "x-forwarded_host",
            "Forwarded",
            "X-Real-IP",
            "X_Real_Ip",
            "X-Gatehouse-Identity",
            "x_gatehouse_identity",
        ] {
            assert!(is_identity_header(&canonical(h)), "{h}");
            assert!(!passes_on(h, &[], true), "{h}");
        }
        assert!(!is_identity_header(&canonical("Accept")));
    }

    #[test]
    fn underscores_and_connection_listed_headers_stay_behind() {
        assert!(passes_on("Accept", &[], false));
        assert!(!passes_on("My_Header", &[], false));
        assert!(passes_on("My_Header", &[], true));
        assert!(!passes_on("Transfer_Encoding", &[], true));
        assert!(!passes_on("Content_Length", &[], true));
        assert!(!passes_on("X-Secret", &["x-secret".to_owned()], false));
    }

    #[test]
    fn a_nameless_set_cookie_is_filed_under_the_name_in_its_value() {
        for (value, name) in [
            ("gatehouse_session=x; Path=/", "gatehouse_session"),
            (" gatehouse_session =x", "gatehouse_session"),
            ("=gatehouse_session=x; Path=/", "gatehouse_session"),
            (" = gatehouse_session=x", "gatehouse_session"),
            ("==gatehouse_session=x", "gatehouse_session"),
            ("gatehouse_session", "gatehouse_session"),
            ("gatehouse_session; Path=/", "gatehouse_session"),
            ("theirs=gatehouse_session", "theirs"),
            ("=", ""),
        ] {
            assert_eq!(set_cookie_name(value), name, "{value:?}");
        }
    }

    #[test]
    fn the_forward_auth_checks_and_the_sign_in_are_gatehouses_on_every_host() {
        for own in [
            "/auth/verify",
            "/auth/forward",
            "/login",
            "/login/second",
            "/login/enrol/passkey/options",
            "/logout",
            "/assets/style.css",
        ] {
            assert!(on_every_host(own), "{own}");
        }
        for app in [
            "/",
            "/auth/",
            "/auth/callback",
            "/auth/verifyx",
            "/loginx",
            "/logout/x",
            "/register",
            "/account",
            "/api/login",
            "/setup",
            "/assets",
        ] {
            assert!(!on_every_host(app), "{app}");
        }
    }

    #[test]
    fn a_short_upload_is_an_error_not_an_end() {
        use std::io::Read as _;
        let mut whole = Upload::new(&b"0123456789"[..], Some(10));
        let mut buf = Vec::new();
        whole.read_to_end(&mut buf).expect("complete");
        assert_eq!(buf.len(), 10);
        assert!(whole.broken.is_none());

        let mut short = Upload::new(&b"0123"[..], Some(10));
        let e = short.read_to_end(&mut Vec::new()).expect_err("cut off");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(short.broken.is_some());
        assert!(short.read(&mut [0; 4]).is_err(), "and it stays broken");
    }
}
