//! `/invite/<token>`: the invitee picks a username (unless the invite
//! names one) and a password, and is signed in (or, under a `required`
//! second-factor policy, sets one up first).

use rouille::{Request, Response};

use super::{gone, token_in, too_many};
use crate::accounts::links::LinkTurn;
use crate::accounts::{AccountError, Created, links::Accepted};
use crate::auth::proxy::Client;
use crate::users::links::Invite;
use crate::users::password::PasswordError;
use crate::users::{UserError, Username};
use crate::web::csrf::{anonymous_csrf, check_anonymous_csrf, with_csrf_cookie};
use crate::web::error::Result;
use crate::web::form::Form;
use crate::web::respond::{capitalise, html, see_other};
use crate::web::state::{State, with_session};
use crate::web::views::{self, InviteView};

const PREFIX: &str = "/invite/";
const WHAT: &str = "Invitation";
const GONE: &str = "This invite link does not work: it may have been used up, revoked, or have expired. Ask for a new one.";

/// The live invite in the path, or the answer to give instead (throttled,
/// or the link does not work: counted against the address).
fn live_invite(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<std::result::Result<(String, Invite), Response>> {
    let accounts = state.accounts_for(request, client);
    let guard = state.guard();
    let attempt = match accounts.link_attempt(&guard, client.ip, "invite")? {
        LinkTurn::Go(attempt) => attempt,
        LinkTurn::Wait(wait) => return Ok(Err(too_many(WHAT, wait))),
    };
    let token = token_in(request, PREFIX);
    match state.users.find_invite(&token, crate::clock::now())? {
        Some(invite) => Ok(Ok((token, invite))),
        None => {
            accounts.link_failed(&guard, attempt, client.ip, "invite")?;
            Ok(Err(gone(WHAT, GONE)))
        }
    }
}

/// The invite's page, with what was typed and why it was refused.
fn page(
    state: &State,
    request: &Request,
    client: &Client,
    (token, invite): (&str, &Invite),
    username: &str,
    error: Option<(u16, &str)>,
) -> Result<Response> {
    let (csrf, cookie) = anonymous_csrf(state, request, client);
    let groups: Vec<String> = state
        .users
        .groups()?
        .into_iter()
        .filter(|g| invite.groups.contains(&g.id))
        .map(|g| g.name)
        .collect();
    let action = format!("{PREFIX}{token}");
    let markup = views::invite_page(&InviteView {
        csrf: &csrf,
        action: &action,
        username,
        preset: invite.user.as_ref().map(|(_, name)| name.as_str()),
        groups: &groups,
        error: error.map(|(_, m)| m),
    });
    let status = error.map_or(200, |(s, _)| s);
    Ok(with_csrf_cookie(
        html(markup).with_status_code(status),
        cookie,
    ))
}

/// `GET /invite/<token>`.
pub(super) fn get_invite(state: &State, request: &Request, client: &Client) -> Result<Response> {
    match live_invite(state, request, client)? {
        Ok((token, invite)) => page(state, request, client, (&token, &invite), "", None),
        Err(answer) => Ok(answer),
    }
}

/// `POST /invite/<token>`: the account, and the sign-in.
pub(super) fn post_invite(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let (token, invite) = match live_invite(state, request, client)? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let typed = form.get("username").unwrap_or("");
    let refuse = |status: u16, message: &str| {
        page(
            state,
            request,
            client,
            (&token, &invite),
            typed,
            Some((status, message)),
        )
    };
    // The name (unless the invite names one) and the password, checked
    // before any bcrypt runs.
    let name = if invite.user.is_some() {
        None
    } else {
        match Username::parse(typed) {
            Ok(n) => Some(n),
            Err(e) => return refuse(400, &capitalise(&e.to_string())),
        }
    };
    let password = form.get("password").unwrap_or("");
    if password != form.get("password2").unwrap_or("") {
        return refuse(400, "The two passwords do not match.");
    }
    if let Err(e) = crate::users::password::validate(password) {
        return refuse(400, &capitalise(&e.to_string()));
    }
    if let Some(n) = &name
        && state.users.find_by_name(n.as_str())?.is_some()
    {
        return refuse(409, "That username is taken.");
    }
    with_session(state, request, client, |session| {
        let accepted = state.accounts_for(request, client).accept_invite(
            session,
            &token,
            name.as_ref().map(Username::as_str),
            password,
            state.two_factor,
            client.ip,
        );
        match accepted {
            Ok(Accepted::Done(_, Created::SignedIn)) => Ok(see_other("/?done=registered")),
            Ok(Accepted::Done(_, Created::Enrol)) => Ok(see_other("/login/enrol")),
            // Used up by someone else a moment ago: no guess, not counted.
            Ok(Accepted::Unusable) => Ok(gone(WHAT, GONE)),
            Ok(Accepted::Taken) => refuse(409, "That username is taken."),
            Err(AccountError::User(
                e @ (UserError::InvalidName(_)
                | UserError::Password(PasswordError::TooShort | PasswordError::TooLong)),
            )) => refuse(400, &capitalise(&e.to_string())),
            Err(e) => Err(e.into()),
        }
    })
}
