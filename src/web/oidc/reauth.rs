//! A fresh sign-in for an app that asks for one: `prompt=login`, or a
//! `max_age` the session's sign-in is older than (OpenID Connect Core
//! §3.1.2.1). The signed-in user gives their password again here and the
//! authorization request goes on, its `auth_time` now. Signing out and in
//! again would do it too, but would end the grants of every other app the
//! session signed in to; this renews only when the password was last
//! given (the session's `REAUTH_AT`, as the admin pages' "confirm your
//! password" does). Checked and throttled like a sign-in.

use rouille::{Request, Response};

use super::provider;
use crate::accounts::{Check, Purpose, REAUTH_AT};
use crate::auth::proxy::Client;
use crate::oidc::discovery::AUTHORIZE;
use crate::web::csrf::check_session_csrf;
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::respond::{html, see_other, throttled};
use crate::web::signed_in::{SignedIn, signed_in, viewer};
use crate::web::state::{State, with_session};
use crate::web::views;

/// The longest `next` taken (the authorization request's round trip is
/// shorter).
const MAX_NEXT: usize = 2048;

/// `GET /oidc/reauth?next=...`: the password form. A signed-out visitor
/// signs in instead (which is fresh anyway).
pub(super) fn get_reauth(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let next = request.get_param("next").unwrap_or_default();
    with_session(state, request, client, |session| {
        let me = match signed_in(state, session, request)? {
            Ok(me) => me,
            Err(to_sign_in) => return Ok(to_sign_in),
        };
        let (next, app) = checked(state, &next)?;
        Ok(page(state, &me, &next, &app, 200, None))
    })
}

/// `POST /oidc/reauth`: the password; right, and the request goes on.
pub(super) fn post_reauth(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    with_session(state, request, client, |session| {
        let me = match signed_in(state, session, request)? {
            Ok(me) => me,
            Err(to_sign_in) => return Ok(to_sign_in),
        };
        check_session_csrf(state, &me.key, &form)?;
        let (next, app) = checked(state, form.get("next").unwrap_or(""))?;
        let password = form.get("reauth_password").unwrap_or("");
        let check = state.accounts_for(request, client).confirm_password(
            &state.guard(),
            &me.user,
            password,
            client.ip,
            Purpose::SignInAgain,
        )?;
        match check {
            Check::Confirmed => {
                session.insert(REAUTH_AT, crate::clock::now())?;
                Ok(see_other(&next))
            }
            Check::Throttled(wait) => {
                let (secs, message) = throttled(wait);
                Ok(page(state, &me, &next, &app, 429, Some(&message))
                    .with_unique_header("Retry-After", secs.to_string()))
            }
            Check::Wrong => Ok(page(
                state,
                &me,
                &next,
                &app,
                403,
                Some("That password is not right."),
            )),
        }
    })
}

/// `next` when it is an authorization request of a known client (so the
/// page goes nowhere else, and names the app), with the client's name.
fn checked(state: &State, next: &str) -> Result<(String, String)> {
    let refuse = || WebError::BadRequest("This page is reached from an app's sign-in.");
    let provider = provider(state)?;
    // ASCII only: the request comes back in a `Location`, which carries
    // nothing else (a request's own values arrive percent-encoded).
    if next.len() > MAX_NEXT || !next.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse());
    }
    let query = next
        .strip_prefix(AUTHORIZE)
        .and_then(|q| q.strip_prefix('?'))
        .ok_or_else(refuse)?;
    let form = Form::parse(query.as_bytes()).map_err(|_| refuse())?;
    let client = form
        .get("client_id")
        .and_then(|id| provider.client(id).ok().flatten())
        .ok_or_else(refuse)?;
    Ok((next.to_owned(), client.name.clone()))
}

fn page(
    state: &State,
    me: &SignedIn,
    next: &str,
    app: &str,
    status: u16,
    error: Option<&str>,
) -> Response {
    let token = crate::auth::csrf::session_token(state.engine().signer(), &me.key);
    html(views::reauth_page(&views::ReauthView {
        viewer: &viewer(&me.user),
        app,
        next,
        csrf: &token,
        error,
    }))
    .with_status_code(status)
    .with_unique_header("Cache-Control", "no-store")
}
