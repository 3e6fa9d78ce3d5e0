//! The gatehouse session's side of single sign-on: the `sid` that names
//! it to every OpenID Connect client it signed in to, ending those
//! clients' grants when the session ends, and the signed-out page that
//! tells them in the browser (front-channel logout). Shared by the sign-in area
//! (signing out), the JSON API (its sign-out) and the provider's
//! endpoints (which issue codes under the `sid` and end it on
//! RP-initiated logout).

use rouille::Response;

use super::error::Result;
use super::respond::{html, see_other};
use super::state::State;
use super::views;
use crate::oidc::logout::FrontChannel;
use crate::session::Session;

/// The session data key that holds the session's `sid`.
///
/// A value of its own, kept in the session's data, and never the session
/// id: the id changes at sign-in (a fixation defence) and must never reach
/// an app, while every token and ID token of one sign-in names one `sid`
/// for as long as the session lives. Under the reserved prefix, so an
/// app's script cannot write itself another session's `sid` through the
/// session-data API.
pub(super) const SID: &str = crate::session::keys::OIDC_SID;

/// The session's `sid`, made and kept on first need (the first code
/// issued under it): a session that never signs in to a client stores
/// nothing more.
///
/// # Errors
///
/// When the session cannot take the new value.
pub(super) fn sid(session: &Session<'_>) -> Result<String> {
    if let Some(sid) = session.get::<String>(SID) {
        return Ok(sid);
    }
    let sid = crate::oidc::grants::new_sid();
    session.insert(SID, &sid)?;
    Ok(sid)
}

/// Ends the OpenID Connect grants of `session` (its tokens stop working
/// at once), before the session itself ends: signing out of gatehouse
/// signs out of every client it signed in to. Those with a
/// `backchannel_logout_uri` are sent a logout token (in the background);
/// the front-channel logout frames of those with a
/// `frontchannel_logout_uri` are returned, for [`signed_out`] to show. A
/// session that never signed in to a client has no `sid` and nothing to
/// end.
///
/// A failure is logged and the sign-out goes on: a user who asked to
/// sign out must be signed out of gatehouse even when the grants could
/// not be deleted just now (they still expire, and the reaper removes
/// them).
pub(super) fn end(state: &State, session: &Session<'_>) -> Vec<FrontChannel> {
    let (Some(provider), Some(sid)) = (&state.oidc, session.get::<String>(SID)) else {
        return Vec::new();
    };
    match provider.end_session(&sid) {
        Ok(frames) => frames,
        Err(e) => {
            crate::logging::line(&format!(
                "oidc end of session failed detail={}",
                crate::logging::quote(&e.to_string())
            ));
            Vec::new()
        }
    }
}

/// The answer once this browser's session ended: with no front-channel
/// logout `frames`, a `303` to `next`; else the signed-out page, which
/// loads each frame hidden and then goes on to `next` (when the frames
/// have loaded, or after a few seconds). Its `Content-Security-Policy` is
/// the strict one of every page with `frame-src` naming exactly the
/// frames' origins, on this one response; its script is a file of ours
/// (`'self'`), nothing inline. `clear` is the `Clear-Site-Data` value.
pub(super) fn signed_out(frames: &[FrontChannel], next: &str, clear: &str) -> Response {
    if frames.is_empty() {
        return see_other(next).with_additional_header("Clear-Site-Data", clear.to_owned());
    }
    let mut origins: Vec<&str> = frames.iter().map(|f| f.origin.as_str()).collect();
    origins.sort_unstable();
    origins.dedup();
    let shown: Vec<(&str, &str)> = frames
        .iter()
        .map(|f| (f.client_name.as_str(), f.url.as_str()))
        .collect();
    html(views::signed_out_page(&shown, next))
        .with_unique_header("Cache-Control", "no-store")
        .with_additional_header("Clear-Site-Data", clear.to_owned())
        .with_unique_header("Content-Security-Policy", super::csp_with_frames(&origins))
}

/// When `next` is an authorization request to this server's provider (the
/// round trip through the sign-in page), the client's name and the
/// request's `login_hint`: the sign-in page names the app the password
/// goes on to, and fills in the username the app suggested. Anything else
/// (no provider, another path, an unknown client) is `None`.
pub(super) fn authorization_in(state: &State, next: &str) -> Option<(String, Option<String>)> {
    let provider = state.oidc.as_ref()?;
    let query = next
        .strip_prefix(crate::oidc::discovery::AUTHORIZE)?
        .strip_prefix('?')?;
    let form = super::form::Form::parse(query.as_bytes()).ok()?;
    let client = provider.client(form.get("client_id")?).ok().flatten()?;
    // A hint is only a suggestion, shown in a form field: a username's
    // length at most, and no control characters.
    let hint = form
        .get("login_hint")
        .filter(|h| h.len() <= 64 && !h.chars().any(char::is_control))
        .map(str::to_owned);
    Some((client.name.clone(), hint))
}
