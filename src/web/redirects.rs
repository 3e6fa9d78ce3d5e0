//! Where a visitor goes next: gatehouse's own origin, the safe targets a
//! `next` may name (a local path, or an app's host), and where a signed-in
//! visitor of the sign-in page goes (on to the second step when `next`
//! leads into an app that needs one).

use rouille::Request;

use super::respond::encode;
use super::signed_in::session_methods;
use super::state::State;
use crate::accounts::Subject;
use crate::auth::proxy::Client;
use crate::auth::redirect;
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
/// `next` leads into an app that needs one this session has not given.
pub(super) fn signed_in_next(state: &State, session: &Session<'_>, next: &str) -> String {
    if next_needs_second_factor(state, next)
        && !crate::accounts::two_factors(&session_methods(session))
    {
        format!("/login/second?next={}", encode(next))
    } else {
        next.to_owned()
    }
}

/// Whether `next` (a local path or a URL on an app's host) leads into an
/// app that needs a second factor.
pub(super) fn next_needs_second_factor(state: &State, next: &str) -> bool {
    // The browser keeps a fragment to itself: the request it makes has none.
    let next = next.split('#').next().unwrap_or(next);
    // `http://vault.lan?x` is the path `/` of vault.lan, as for the
    // redirect that follows.
    let (host, path) = match redirect::split_absolute(next) {
        Some((authority, rest)) if rest.starts_with('/') => (Some(authority), rest.to_owned()),
        Some((authority, rest)) => (Some(authority), format!("/{rest}")),
        None => (None, next.to_owned()),
    };
    let Ok(target) = crate::auth::path::Target::parse(&path) else {
        return false;
    };
    let raw = path.split('?').next().unwrap_or(&path);
    let host = host.map(str::to_ascii_lowercase);
    matches!(
        state.apps.for_request(host.as_deref(), &target, raw),
        Ok(Some(app)) if app.two_factor
    )
}

/// Where a second step goes when done: the pending sign-in's `next`, or
/// (adding a factor to a signed-in session) the `next` asked for.
pub(super) fn next_of(state: &State, subject: &Subject, asked: Option<&str>) -> String {
    match &subject.pending {
        Some(p) => p.next.clone(),
        None => safe_next(state, asked),
    }
}
