//! `/reset/<token>`: the user sets a new password (and, when the link asks,
//! goes on to set up a new second factor), which ends their other
//! sessions; then this browser goes on as a sign-in with that password
//! would (see `accounts::links`).

use rouille::{Request, Response};

use super::{gone, token_in, too_many};
use crate::accounts::AccountError;
use crate::accounts::links::{AfterReset, LinkTurn};
use crate::auth::proxy::Client;
use crate::users::links::ResetLink;
use crate::users::password::PasswordError;
use crate::users::{User, UserError};
use crate::web::csrf::{anonymous_csrf, check_anonymous_csrf, with_csrf_cookie};
use crate::web::error::Result;
use crate::web::form::Form;
use crate::web::respond::{capitalise, html, see_other};
use crate::web::signed_in::signing_in;
use crate::web::state::State;
use crate::web::views::{self, ResetView};

const PREFIX: &str = "/reset/";
const WHAT: &str = "Reset link";
const GONE: &str = "This reset link does not work: it may have been used, replaced by a newer one, revoked, or have expired. Ask an administrator for a new one.";

/// The live link in the path and its user, or the answer to give instead.
fn live_link(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<std::result::Result<(String, ResetLink, User), Response>> {
    let accounts = state.accounts_for(request, client);
    let guard = state.guard();
    let attempt = match accounts.link_attempt(&guard, client.ip, "reset_link")? {
        LinkTurn::Go(attempt) => attempt,
        LinkTurn::Wait(wait) => return Ok(Err(too_many(WHAT, wait))),
    };
    let token = token_in(request, PREFIX);
    match state.users.find_reset_link(&token, crate::clock::now())? {
        Some((link, user)) => Ok(Ok((token, link, user))),
        None => {
            accounts.link_failed(&guard, attempt, client.ip, "reset_link")?;
            Ok(Err(gone(WHAT, GONE)))
        }
    }
}

fn page(
    state: &State,
    request: &Request,
    client: &Client,
    (token, link): (&str, &ResetLink),
    error: Option<(u16, &str)>,
) -> Response {
    let (csrf, cookie) = anonymous_csrf(state, request, client);
    let action = format!("{PREFIX}{token}");
    let markup = views::reset_page(&ResetView {
        csrf: &csrf,
        action: &action,
        username: &link.username,
        new_factor: link.new_factor,
        error: error.map(|(_, m)| m),
    });
    with_csrf_cookie(
        html(markup).with_status_code(error.map_or(200, |(s, _)| s)),
        cookie,
    )
}

/// `GET /reset/<token>`.
pub(super) fn get_reset(state: &State, request: &Request, client: &Client) -> Result<Response> {
    Ok(match live_link(state, request, client)? {
        Ok((token, link, _)) => page(state, request, client, (&token, &link), None),
        Err(answer) => answer,
    })
}

/// `POST /reset/<token>`: the new password.
pub(super) fn post_reset(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let (token, link, _) = match live_link(state, request, client)? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let refuse = |message: &str| {
        page(
            state,
            request,
            client,
            (&token, &link),
            Some((400, message)),
        )
    };
    let password = form.get("password").unwrap_or("");
    if password != form.get("password2").unwrap_or("") {
        return Ok(refuse("The two passwords do not match."));
    }
    if let Err(e) = crate::users::password::validate(password) {
        return Ok(refuse(&capitalise(&e.to_string())));
    }
    signing_in(
        state,
        request,
        client,
        " via=reset_link",
        |session, finished| {
            match state.accounts_for(request, client).reset_with_link(
                session,
                &token,
                password,
                state.two_factor,
                client.ip,
            ) {
                Ok(Some(AfterReset::Finished(f))) => {
                    *finished = Some(f);
                    Ok(see_other("/?done=password-set"))
                }
                Ok(Some(AfterReset::SecondStep)) => Ok(see_other("/login/second")),
                Ok(Some(AfterReset::Enrol)) => Ok(see_other("/login/enrol")),
                // Used (or replaced) a moment ago.
                Ok(None) => Ok(gone(WHAT, GONE)),
                Err(AccountError::User(
                    e @ UserError::Password(PasswordError::TooShort | PasswordError::TooLong),
                )) => Ok(refuse(&capitalise(&e.to_string()))),
                Err(e) => Err(e.into()),
            }
        },
    )
}
