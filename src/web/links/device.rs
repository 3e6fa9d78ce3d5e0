//! Signing a new device in with a sign-in link (`/login/link/<token>`) or
//! its code (`/login/code`), made on `/account` by a signed-in user: once,
//! as them, with the methods their session signed in with (see
//! `accounts::links`). Codes are short: every one that does not work
//! counts against the address in the sign-in throttle.

use rouille::{Request, Response};

use super::{gone, token_in, too_many};
use crate::accounts::links::{LinkSignIn, LinkTurn};
use crate::auth::proxy::Client;
use crate::web::csrf::{anonymous_csrf, check_anonymous_csrf, with_csrf_cookie};
use crate::web::error::Result;
use crate::web::form::Form;
use crate::web::respond::{html, see_other, throttled};
use crate::web::signed_in::signing_in;
use crate::web::state::State;
use crate::web::views::{self, CodeView, LinkView};

const PREFIX: &str = "/login/link/";
const WHAT: &str = "Sign-in link";
const GONE: &str = "This sign-in link does not work: it may have been used, revoked, or have expired (they last five minutes). Make a new one on the device where you are signed in.";
const WRONG_CODE: &str = "That code is unknown, used or expired. Check it, or make a new one.";

fn code_page(
    state: &State,
    request: &Request,
    client: &Client,
    code: &str,
    error: Option<(u16, &str)>,
) -> Response {
    let (csrf, cookie) = anonymous_csrf(state, request, client);
    let markup = views::code_page(&CodeView {
        csrf: &csrf,
        code,
        error: error.map(|(_, m)| m),
    });
    with_csrf_cookie(
        html(markup).with_status_code(error.map_or(200, |(s, _)| s)),
        cookie,
    )
}

/// `GET /login/code`.
pub(super) fn get_code(state: &State, request: &Request, client: &Client) -> Result<Response> {
    Ok(code_page(state, request, client, "", None))
}

/// Signs this browser in with `secret` (a link's token or a code); `wrong`
/// answers one that does not work.
fn sign_in(
    state: &State,
    request: &Request,
    client: &Client,
    secret: &str,
    wrong: impl Fn() -> Response,
    throttled_page: impl Fn(std::time::Duration) -> Response,
) -> Result<Response> {
    let agent = request.header("User-Agent").unwrap_or("");
    signing_in(
        state,
        request,
        client,
        " via=link",
        |session, finished| match state.accounts_for(request, client).sign_in_with_link(
            &state.guard(),
            session,
            secret,
            client.ip,
            agent,
        )? {
            LinkSignIn::Finished(f) => {
                *finished = Some(f);
                Ok(see_other("/"))
            }
            LinkSignIn::Unknown => Ok(wrong()),
            LinkSignIn::Throttled(wait) => Ok(throttled_page(wait)),
        },
    )
}

/// `POST /login/code`: the code typed.
pub(super) fn post_code(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let code = form.get("code").unwrap_or("");
    // Kept to fill the field again only when it is short enough to be one.
    let refill = if code.len() <= 16 { code } else { "" };
    sign_in(
        state,
        request,
        client,
        code,
        || code_page(state, request, client, refill, Some((400, WRONG_CODE))),
        |wait| {
            let (secs, message) = throttled(wait);
            code_page(state, request, client, refill, Some((429, &message)))
                .with_unique_header("Retry-After", secs.to_string())
        },
    )
}

/// `GET /login/link/<token>`: who it signs in, and one button.
pub(super) fn get_link(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let accounts = state.accounts_for(request, client);
    let guard = state.guard();
    let attempt = match accounts.link_attempt(&guard, client.ip, "link")? {
        LinkTurn::Go(attempt) => attempt,
        LinkTurn::Wait(wait) => return Ok(too_many(WHAT, wait)),
    };
    let token = token_in(request, PREFIX);
    // Only a link's token opens this page: a code goes to `/login/code`.
    let found = if crate::users::links::well_formed(&token) {
        state.users.find_signin_link(&token, crate::clock::now())?
    } else {
        None
    };
    let Some((_, user)) = found else {
        accounts.link_failed(&guard, attempt, client.ip, "link")?;
        return Ok(gone(WHAT, GONE));
    };
    let (csrf, cookie) = anonymous_csrf(state, request, client);
    let action = format!("{PREFIX}{token}");
    Ok(with_csrf_cookie(
        html(views::link_page(&LinkView {
            csrf: &csrf,
            action: &action,
            username: &user.username,
        })),
        cookie,
    ))
}

/// `POST /login/link/<token>`: signed in, once.
pub(super) fn post_link(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let token = token_in(request, PREFIX);
    if !crate::users::links::well_formed(&token) {
        let accounts = state.accounts_for(request, client);
        let guard = state.guard();
        let attempt = match accounts.link_attempt(&guard, client.ip, "link")? {
            LinkTurn::Go(attempt) => attempt,
            LinkTurn::Wait(wait) => return Ok(too_many(WHAT, wait)),
        };
        accounts.link_failed(&guard, attempt, client.ip, "link")?;
        return Ok(gone(WHAT, GONE));
    }
    sign_in(
        state,
        request,
        client,
        &token,
        || gone(WHAT, GONE),
        |wait| too_many(WHAT, wait),
    )
}
