//! The users on `/admin`: creating one, and what an administrator may do
//! to one (a new password, disable and enable, administrator rights, a
//! reset of their second factors, delete with a confirm step). The rules
//! (the last administrator, who may override whose factors) are
//! `accounts`'.

use rouille::{Request, Response};

use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::session::Session;
use crate::users::User;
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::respond::html;
use crate::web::signed_in::{SignedIn, viewer};
use crate::web::state::{State, with_session};
use crate::web::views;

use super::act::{Outcome, act, outcome, refused};
use super::page::admin;

pub(super) fn get_delete_user(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    with_session(state, request, client, |session| {
        let s = match admin(state, session, request)? {
            Ok(s) => s,
            Err(redirect) => return Ok(redirect),
        };
        let name = request.get_param("username").unwrap_or_default();
        let target = state.users.find_by_name(&name)?.ok_or(WebError::NotFound)?;
        let token = csrf::session_token(state.engine().signer(), &s.key);
        Ok(html(views::delete_user_page(
            &viewer(&s.user),
            &target.username,
            &token,
        )))
    })
}

/// `POST /admin/users`: a new user.
pub(super) fn post_create(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, |_, _, form| {
        let is_admin = form.get("admin").is_some_and(|v| !v.is_empty());
        let created = state.accounts().create_user(
            form.get("username").unwrap_or(""),
            form.get("password").unwrap_or(""),
            is_admin,
        );
        outcome(created, "user-created")
    })
}

/// Runs an action on the user the form names, once [`act`]'s checks
/// passed (404 for no such user).
fn on_user(
    state: &State,
    request: &Request,
    client: &Client,
    action: impl FnOnce(&Session<'_>, &SignedIn, &User, &Form) -> Result<Outcome>,
) -> Result<Response> {
    act(state, request, client, |session, s, form| {
        let target = state
            .users
            .find_by_name(form.get("username").unwrap_or(""))?
            .ok_or(WebError::NotFound)?;
        action(session, s, &target, form)
    })
}

/// `POST /admin/users/password`: a new password; their sessions end.
pub(super) fn post_password(state: &State, request: &Request, client: &Client) -> Result<Response> {
    on_user(state, request, client, |session, _, target, form| {
        let accounts = state.accounts();
        outcome(
            accounts.may_override(session, target).and_then(|()| {
                accounts.set_password(target, form.get("password").unwrap_or(""), Some(session))
            }),
            "password-reset",
        )
    })
}

/// `POST /admin/users/disable`: signed out everywhere, and kept out.
pub(super) fn post_disable(state: &State, request: &Request, client: &Client) -> Result<Response> {
    on_user(state, request, client, |_, s, target, _| {
        outcome(
            state.accounts().disable(Some(&s.user), target, false),
            "user-disabled",
        )
    })
}

/// `POST /admin/users/enable`.
pub(super) fn post_enable(state: &State, request: &Request, client: &Client) -> Result<Response> {
    on_user(state, request, client, |_, _, target, _| {
        outcome(state.accounts().enable(target), "user-enabled")
    })
}

/// `POST /admin/users/grant-admin`.
pub(super) fn post_grant_admin(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    on_user(state, request, client, |_, _, target, _| {
        outcome(state.accounts().grant_admin(target), "admin-granted")
    })
}

/// `POST /admin/users/revoke-admin`.
pub(super) fn post_revoke_admin(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    on_user(state, request, client, |session, _, target, _| {
        outcome(
            state.accounts().revoke_admin(target, Some(session)),
            "admin-revoked",
        )
    })
}

/// `POST /admin/users/reset-2fa`: their second factors go, and their
/// sessions end.
pub(super) fn post_reset_2fa(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    on_user(state, request, client, |session, _, target, _| {
        let accounts = state.accounts();
        outcome(
            accounts
                .may_override(session, target)
                .and_then(|()| accounts.reset_second_factors(target)),
            "factors-reset",
        )
    })
}

/// `POST /admin/users/delete`, from the confirm step only.
pub(super) fn post_delete(state: &State, request: &Request, client: &Client) -> Result<Response> {
    on_user(state, request, client, |_, s, target, form| {
        if form.get("confirm") == Some("yes") {
            outcome(
                state.accounts().delete(Some(&s.user), target, false),
                "user-deleted",
            )
        } else {
            Ok(refused(400, "Deleting a user needs the confirm step."))
        }
    })
}
