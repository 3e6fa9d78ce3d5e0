//! Signing in with a password (`/login`: the form and the attempt) and
//! signing out (`/logout`: the confirm page and the POST that ends the
//! session).

use rouille::{Request, Response};

use crate::accounts::{AccountError, AfterPassword, Attempt};
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::web::csrf::{
    anonymous_csrf, check_anonymous_csrf, check_session_csrf, with_csrf_cookie,
};
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::redirects::{safe_next, signed_in_next};
use crate::web::respond::{LOGGED_OUT_CLEARS, html, see_other, throttled};
use crate::web::signed_in::{current_user, signing_in, viewer};
use crate::web::state::{State, with_session};
use crate::web::views::{self, LoginView};

/// The generic message for every failed sign-in: it must not tell an
/// unknown user from a wrong password or a disabled account.
const LOGIN_FAILED: &str = "Wrong username or password.";

/// The `next` query parameter. nginx cannot percent-encode the URL it
/// sends along (`?next=$scheme://$host$request_uri`), so a `next` that is
/// the last parameter and holds a raw `http(s)://` URL is taken whole,
/// `&` and all.
fn next_param(request: &Request) -> Option<String> {
    let query = request.raw_query_string();
    let raw = query
        .strip_prefix("next=")
        .or_else(|| query.find("&next=").map(|i| &query[i + "&next=".len()..]))?;
    if raw.starts_with("http://") || raw.starts_with("https://") {
        return Some(raw.to_owned());
    }
    request.get_param("next")
}

pub(super) fn get_login(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let next = next_param(request);
    let next = safe_next(state, next.as_deref());
    with_session(state, request, client, |session| {
        if current_user(state, session)?.is_some() {
            return Ok(see_other(&signed_in_next(state, session, client, &next)?));
        }
        let error = match request.get_param("passkey").as_deref() {
            Some("failed") => Some("That passkey could not sign you in."),
            Some("throttled") => Some("Too many failed attempts. Try again later."),
            _ => None,
        };
        Ok(login_form(state, request, client, &next, "", error))
    })
}

/// The login page, reusing the browser's CSRF cookie or setting a new one.
fn login_form(
    state: &State,
    request: &Request,
    client: &Client,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let (token, cookie) = anonymous_csrf(state, request, client);
    // Signing in for an OpenID Connect client: name it, and take its
    // `login_hint` for the username unless one was typed.
    let oidc = crate::web::sso::authorization_in(state, next);
    let username = match &oidc {
        Some((_, Some(hint))) if username.is_empty() => hint.as_str(),
        _ => username,
    };
    let page = html(views::login_page(&LoginView {
        next,
        csrf: &token,
        username,
        error,
        registration: state.allow_registration,
        app: oidc.as_ref().map(|(name, _)| name.as_str()),
    }));
    with_csrf_cookie(page, cookie)
}

pub(super) fn post_login(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let username = crate::users::trim_spaces(form.get("username").unwrap_or(""));
    let password = form.get("password").unwrap_or("");
    let remember = form.get("remember").is_some_and(|v| !v.is_empty());
    let next = safe_next(state, form.get("next"));
    let (accounts, guard) = (state.accounts_for(request, client), state.guard());
    match accounts.attempt_sign_in(&guard, username, password, client.ip) {
        Err(AccountError::UsernameTooLong) => {
            Err(WebError::BadRequest("The username is too long."))
        }
        Err(e) => Err(e.into()),
        Ok(Attempt::Throttled(wait)) => {
            let (secs, message) = throttled(wait);
            Ok(
                login_form(state, request, client, &next, username, Some(&message))
                    .with_status_code(429)
                    .with_additional_header("Retry-After", secs.to_string()),
            )
        }
        Ok(Attempt::Failed) => {
            Ok(
                login_form(state, request, client, &next, username, Some(LOGIN_FAILED))
                    .with_status_code(401),
            )
        }
        Ok(Attempt::Verified(verified)) => {
            let response = signing_in(
                state,
                request,
                client,
                "",
                |session, finished| match accounts.after_password(
                    session,
                    verified,
                    remember,
                    &next,
                    state.two_factor,
                )? {
                    AfterPassword::Finished(done) => {
                        *finished = Some(done);
                        Ok(see_other(&signed_in_next(state, session, client, &next)?))
                    }
                    AfterPassword::SecondStep => Ok(see_other("/login/second")),
                    AfterPassword::Enrol => Ok(see_other("/login/enrol")),
                },
            )?;
            Ok(response)
        }
    }
}

pub(super) fn get_logout(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        let (Some(user), Some(key)) = (current_user(state, session)?, session.key()) else {
            return Ok(see_other("/login"));
        };
        let token = csrf::session_token(state.engine().signer(), &key);
        Ok(html(views::logout_page(&viewer(&user), &token)))
    })
}

pub(super) fn post_logout(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    with_session(state, request, client, |session| {
        let Some(key) = session.key() else {
            return Ok(see_other("/login"));
        };
        check_session_csrf(state, &key, &form)?;
        let user = current_user(state, session)?;
        // Signing out of gatehouse signs out of every OpenID Connect
        // client this session signed in to: their tokens stop now, and
        // those that asked are told (in the background, or by the frames
        // of the signed-out page).
        let frames = crate::web::sso::end(state, session);
        session.destroy()?;
        if let Some(user) = user {
            state.accounts_for(request, client).signed_out(&user);
        }
        Ok(crate::web::sso::signed_out(
            &frames,
            "/login",
            LOGGED_OUT_CLEARS,
        ))
    })
}
