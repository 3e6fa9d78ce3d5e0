//! Where a visitor goes next: gatehouse's own origin, the safe targets a
//! `next` may name (a local path, or an app's host), and where a signed-in
//! visitor of the sign-in page goes (on to the second step when `next`
//! leads into an app that needs one).

use rouille::Request;

use super::error::Result;
use super::principal;
use super::respond::encode;
use super::state::State;
use crate::accounts::Subject;
use crate::auth::access::{self, Decision};
use crate::auth::proxy::Client;
use crate::auth::redirect;
use crate::identity::{Principal, Target};
use crate::session::Session;

/// gatehouse's own origin as the browser sees it: `public_url`, else the
/// scheme and `Host` of this request (`None` without a `Host`).
pub(super) fn origin(state: &State, request: &Request, client: &Client) -> Option<String> {
    if let Some(url) = &state.public_url {
        return Some(url.clone());
    }
    let host = request.header("Host")?;
    Some(format!("{}://{host}", client.scheme()))
}

/// Where to go after signing in: a local path, or a URL on a configured
/// app's host (or gatehouse's public URL); anything else is `/`.
pub(super) fn safe_next(state: &State, next: Option<&str>) -> String {
    let public_host = state
        .public_url
        .as_deref()
        .and_then(redirect::split_absolute)
        .map(|(authority, _)| authority.to_ascii_lowercase());
    redirect::target(next, |host| {
        state.apps.is_app_host(host) || public_host.as_deref() == Some(host)
    })
    .to_owned()
}

/// Where a signed-in visitor of `/login` goes: to the second step when
/// the one access decision says `next` (a local path or a URL on an app's
/// host) needs a second factor this session has not given.
///
/// # Errors
///
/// Store errors.
pub(super) fn signed_in_next(
    state: &State,
    session: &Session<'_>,
    client: &Client,
    next: &str,
) -> Result<String> {
    let who = principal::of_session(state, session)?;
    Ok(match next_decision(state, who.as_ref(), client, next) {
        Some(Decision::SecondFactor) => format!("/login/second?next={}", encode(next)),
        _ => next.to_owned(),
    })
}

/// What the access decision makes of a browser's `GET` of `next` (a local
/// path or a URL on an app's host); `None` when `next` has no normal form.
fn next_decision(
    state: &State,
    who: Option<&Principal>,
    client: &Client,
    next: &str,
) -> Option<Decision> {
    // The browser keeps a fragment to itself: the request it makes has none.
    let next = next.split('#').next().unwrap_or(next);
    // `http://vault.lan?x` is the path `/` of vault.lan, as for the
    // redirect that follows.
    let (host, path) = match redirect::split_absolute(next) {
        Some((authority, rest)) if rest.starts_with('/') => (Some(authority), rest.to_owned()),
        Some((authority, rest)) => (Some(authority), format!("/{rest}")),
        None => (None, next.to_owned()),
    };
    let parsed = crate::auth::path::Target::parse(&path).ok()?;
    let raw = path.split('?').next().unwrap_or(&path);
    let host = host.map(str::to_ascii_lowercase);
    let app = state.apps.for_request(host.as_deref(), &parsed, raw).ok()?;
    let seen = match app {
        Some(a) => state.apps.path_seen(a, host.as_deref(), &parsed.path),
        None => parsed.path.as_str(),
    };
    let target = Target {
        app: app.map(|a| a.name.as_str()),
        path: seen,
        method: "GET",
        client: client.ip,
    };
    Some(access::decide(state.apps.rules_for(app), who, &target).decision)
}

/// Where a second step goes when done: the pending sign-in's `next`, or
/// (adding a factor to a signed-in session) the `next` asked for.
pub(super) fn next_of(state: &State, subject: &Subject, asked: Option<&str>) -> String {
    match &subject.pending {
        Some(p) => p.next.clone(),
        None => safe_next(state, asked),
    }
}
