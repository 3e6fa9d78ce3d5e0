//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): a
//! relying party sends the browser here to sign the user out. The
//! gatehouse session ends, and with it the grants of every client it
//! signed in to (their tokens stop working at once; those that asked are
//! sent a logout token); the browser then goes to the
//! `post_logout_redirect_uri` only when the client named (by `client_id`
//! or the hint's `aud`) registered it exactly, else to the sign-in page,
//! by way of the signed-out page when clients registered front-channel
//! logout URIs (it loads them in hidden frames first).
//!
//! Signing out is a state change a link from anywhere must not make:
//! it happens at once only when `id_token_hint` is an ID token gatehouse
//! signed for this very session (its `sid`); otherwise the user confirms
//! with one button (a form with the session's CSRF token).

use rouille::{Request, Response};

use super::provider;
use crate::auth::proxy::Client;
use crate::oidc::logout::FrontChannel;
use crate::web::csrf::check_session_csrf;
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::respond::{LOGGED_OUT_CLEARS, html, see_other};
use crate::web::signed_in::{current_user, viewer};
use crate::web::sso::signed_out;
use crate::web::state::{State, with_session};
use crate::web::{sso, views};

/// The parameters carried from the relying party to the confirmation.
const CARRIED: [&str; 4] = [
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
];

/// `GET` the end-session endpoint.
pub(super) fn get_end_session(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    let form = Form::parse(request.raw_query_string().as_bytes())?;
    end_session(state, request, client, &form, false)
}

/// `POST` the end-session endpoint: a relying party's form, or the
/// confirmation (`confirm`, with the session's CSRF token).
pub(super) fn post_end_session(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    let form = Form::from_request(request)?;
    let confirmed = form.get("confirm").is_some();
    end_session(state, request, client, &form, confirmed)
}

fn end_session(
    state: &State,
    request: &Request,
    client: &Client,
    form: &Form,
    confirmed: bool,
) -> Result<Response> {
    let provider = provider(state)?;
    let hint = form.get("id_token_hint");
    let hint_claims = hint.and_then(|t| provider.keys().verify(t).ok());
    if hint.is_some() && hint_claims.is_none() {
        // A hint that is not ours is a client's mistake or a forgery:
        // nothing is ended and nowhere is redirected.
        return Err(WebError::BadRequest(
            "The id_token_hint is not a token this server signed.",
        ));
    }
    let target = form.get("post_logout_redirect_uri").and_then(|uri| {
        provider.post_logout_redirect(form.get("client_id"), hint, uri, form.get("state"))
    });
    let hint_sid = hint_claims
        .as_ref()
        .and_then(|c| c.get("sid"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    // Where the browser goes once signed out: the client's page (told to
    // drop only the cookies: its storage is the client's business), or
    // the sign-in page; by way of the signed-out page when clients are
    // to be told in the browser (front-channel logout).
    let done = |target: &Option<String>, frames: &[FrontChannel]| match target {
        Some(url) => signed_out(frames, url, "\"cookies\""),
        None => signed_out(frames, "/login", LOGGED_OUT_CLEARS),
    };
    with_session(state, request, client, |session| {
        let Some(user) = current_user(state, session)? else {
            // Nobody is signed in here: nothing to end (the grants of a
            // session ended when it did).
            return Ok(match &target {
                Some(url) => see_other(url),
                None => see_other("/login"),
            });
        };
        let Some(key) = session.key() else {
            return Ok(see_other("/login"));
        };
        let this_session = hint_sid.is_some() && hint_sid == session.get::<String>(sso::SID);
        if confirmed {
            check_session_csrf(state, &key, form)?;
        } else if !this_session {
            let token = crate::auth::csrf::session_token(state.engine().signer(), &key);
            let fields: Vec<(&str, &str)> = CARRIED
                .iter()
                .filter_map(|name| form.get(name).map(|v| (*name, v)))
                .collect();
            return Ok(html(views::end_session_page(
                &viewer(&user),
                &token,
                crate::oidc::discovery::END_SESSION,
                &fields,
            ))
            .with_unique_header("Cache-Control", "no-store"));
        }
        crate::logging::line(&format!(
            "oidc end_session user={} client={}",
            crate::logging::quote(&user.username),
            crate::logging::quote(form.get("client_id").unwrap_or("-"))
        ));
        let frames = sso::end(state, session);
        session.destroy()?;
        state
            .accounts()
            .at(crate::web::state::origin(request, client).via("oidc"))
            .signed_out(&user);
        Ok(done(&target, &frames))
    })
}
