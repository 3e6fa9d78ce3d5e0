//! `/admin/invites`: every invite (who made it, uses left, expiry),
//! revocable, and the form that makes one; its link is shown once, on the
//! page the form answers with. Both are recorded in the audit log as the
//! administrator's (`accounts::links`).

use rouille::{Request, Response};

use crate::accounts::AccountError;
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::users::links::NewInvite;
use crate::users::{UserError, Username};
use crate::web::error::{Result, WebError};
use crate::web::redirects::origin;
use crate::web::respond::{capitalise, html, notice};
use crate::web::signed_in::{SignedIn, viewer};
use crate::web::state::State;
use crate::web::views::{self, AdminInvitesView};

use super::act::{Outcome, Section, act, as_admin, refused};

/// The invites section: where its actions go back to.
const INVITES: Section = Section {
    path: "/admin/invites",
    refused: |state, s, message| render(state, s, None, Some(message), None),
};

const DAY: clock::Millis = 24 * 60 * 60 * 1000;

fn render(
    state: &State,
    s: &SignedIn,
    notice: Option<&str>,
    error: Option<&str>,
    made: Option<&str>,
) -> Result<Response> {
    let token = csrf::session_token(state.engine().signer(), &s.key);
    Ok(html(views::admin_invites_page(&AdminInvitesView {
        viewer: viewer(&s.user),
        invites: state.users.invites()?,
        groups: state
            .users
            .groups()?
            .into_iter()
            .filter(|g| !g.is_admins())
            .map(|g| g.name)
            .collect(),
        csrf: &token,
        notice,
        error,
        made,
        now: clock::now(),
    })))
}

/// `GET /admin/invites`.
pub(super) fn get_invites(state: &State, request: &Request, client: &Client) -> Result<Response> {
    as_admin(state, request, client, |s| {
        render(state, s, notice(request), None, None)
    })
}

/// The expiries the form offers.
fn expiry(value: Option<&str>) -> Option<clock::Millis> {
    let days = match value? {
        "1d" => 1,
        "7d" => 7,
        "30d" => 30,
        _ => return None,
    };
    Some(clock::now().saturating_add(days * DAY))
}

/// `POST /admin/invites`: a new invite, its link shown once.
pub(super) fn post_create(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, &INVITES, |_, s, form| {
        let Some(uses) = form
            .get("uses")
            .map(str::trim)
            .filter(|u| u.len() <= 4)
            .and_then(|u| u.parse::<u32>().ok())
        else {
            return Ok(refused(400, "An invite may be used 1 to 1000 times."));
        };
        let Some(expires_at) = expiry(form.get("expires")) else {
            return Ok(refused(400, "The expiry is not one the form offers."));
        };
        let groups: Vec<String> = form
            .get("groups")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        let user = match form
            .get("username")
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(name) => match Username::parse(name) {
                Ok(name) => Some(name),
                Err(e) => return Ok(refused(400, &capitalise(&e.to_string()))),
            },
            None => None,
        };
        let new = NewInvite {
            created_by: s.user.username.clone(),
            expires_at,
            uses,
            groups,
            user,
        };
        let accounts = state.accounts_for(request, client).by(&s.user);
        match accounts.create_invite(&new, clock::now()) {
            Ok((token, _)) => {
                let url = format!(
                    "{}/invite/{token}",
                    origin(state, request, client).unwrap_or_default()
                );
                Ok(Outcome::Page(render(
                    state,
                    s,
                    Some("The invite has been made."),
                    None,
                    Some(&url),
                )?))
            }
            Err(AccountError::User(UserError::InvalidLink(m) | UserError::InvalidName(m))) => {
                Ok(refused(400, &capitalise(m)))
            }
            Err(AccountError::User(UserError::NoSuchGroup)) => {
                Ok(refused(400, "There is no such group."))
            }
            Err(AccountError::User(UserError::Taken)) => {
                Ok(refused(409, "That username is taken."))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// `POST /admin/invites/revoke`.
pub(super) fn post_revoke(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, &INVITES, |_, s, form| {
        let id = form
            .get("id")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(WebError::NotFound)?;
        let accounts = state.accounts_for(request, client).by(&s.user);
        match accounts.revoke_invite(id) {
            Ok(()) => Ok(Outcome::Done("invite-revoked")),
            Err(AccountError::User(UserError::NoSuchLink)) => Err(WebError::NotFound),
            Err(e) => Err(e.into()),
        }
    })
}
