//! `/admin/users`: every user, a page at a time, with what an
//! administrator may do to one (a new password, disable and enable,
//! administrator rights, removing their second factors and deleting them,
//! each after a confirm step, a reset link with which they set a new
//! password themselves); and creating one. The rules (the last
//! administrator, who may override whose factors) are `accounts`'.

use rouille::{Request, Response};

use crate::accounts::AccountError;
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::session::Session;
use crate::users::User;
use crate::users::source::Vouch;
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::paging::{page_param, paged};
use crate::web::respond::{capitalise, html, notice};
use crate::web::signed_in::{SignedIn, viewer};
use crate::web::state::State;
use crate::web::views::{self, ResetLinkView, UserRow, UsersView};

use super::act::{Outcome, Section, act, as_admin, outcome, refused};

/// The users section: where its actions go back to.
const USERS: Section = Section {
    path: "/admin/users",
    refused: |state, s, message| render(state, s, 1, None, Some(message)),
};

fn render(
    state: &State,
    s: &SignedIn,
    page: usize,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response> {
    let now = clock::now();
    let users = state.users.list()?;
    let records = state.engine().store().list(None, now)?;
    let mut per_user = std::collections::HashMap::new();
    for r in &records {
        if let Some(id) = r.user_id {
            *per_user.entry(id).or_insert(0usize) += 1;
        }
    }
    let summaries = state.users.factors().summaries()?;
    let resets: std::collections::HashMap<_, _> = state
        .users
        .reset_links()?
        .into_iter()
        .map(|r| (r.user_id, r.expires_at))
        .collect();
    let (page_users, pager) = paged(users.iter().collect(), page);
    let rows = page_users
        .into_iter()
        .map(|u| {
            let profile = state
                .users
                .profile(u.id)?
                .unwrap_or_else(crate::users::source::Profile::local);
            Ok(UserRow {
                username: u.username.clone(),
                is_admin: u.is_admin,
                disabled: u.disabled,
                created_at: u.created_at,
                sessions: per_user.get(&u.id).copied().unwrap_or(0),
                is_viewer: u.id == s.user.id,
                factors: summaries.get(&u.id).map(describe).unwrap_or_default(),
                directory: profile.source != crate::users::source::Source::Local,
                display_name: profile.display_name,
                email: profile.email,
                email_verified: profile.email_verified,
                reset_link: resets.get(&u.id).copied(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let token = csrf::session_token(state.engine().signer(), &s.key);
    Ok(html(views::users_page(&UsersView {
        viewer: viewer(&s.user),
        users: rows,
        pager,
        csrf: &token,
        notice,
        error,
        now,
    })))
}

/// `GET /admin/users`.
pub(super) fn get_users(state: &State, request: &Request, client: &Client) -> Result<Response> {
    as_admin(state, request, client, |s| {
        render(
            state,
            s,
            page_param(request, "page")?,
            notice(request),
            None,
        )
    })
}

/// The user a form or a query names (404 for no such user). Only a name
/// that could be a user's is looked up: PostgreSQL refuses a NUL in text
/// (a `500` once), and no user has one.
fn named_user(state: &State, name: &str) -> Result<User> {
    if crate::users::Username::parse(name).is_err() {
        return Err(WebError::NotFound);
    }
    state.users.find_by_name(name)?.ok_or(WebError::NotFound)
}

/// The confirm step of an action that cannot be undone, for the user the
/// query names (404 for no such user).
fn confirm_step(
    state: &State,
    request: &Request,
    client: &Client,
    page: fn(views::Viewer<'_>, &str, &str) -> maud::Markup,
) -> Result<Response> {
    as_admin(state, request, client, |s| {
        let name = request.get_param("username").unwrap_or_default();
        let target = named_user(state, &name)?;
        let token = csrf::session_token(state.engine().signer(), &s.key);
        Ok(html(page(viewer(&s.user), &target.username, &token)))
    })
}

/// `GET /admin/users/delete`: the confirm step.
pub(super) fn get_delete_user(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    confirm_step(state, request, client, views::delete_user_page)
}

/// `GET /admin/users/reset-2fa`: the confirm step.
pub(super) fn get_reset_2fa(state: &State, request: &Request, client: &Client) -> Result<Response> {
    confirm_step(state, request, client, views::reset_factors_page)
}

/// `POST /admin/users`: a new user.
pub(super) fn post_create(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, &USERS, |_, s, form| {
        let is_admin = form.get("admin").is_some_and(|v| !v.is_empty());
        let created = admin_accounts(state, request, client, s).create_user(
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
    act(state, request, client, &USERS, |session, s, form| {
        let target = named_user(state, form.get("username").unwrap_or(""))?;
        action(session, s, &target, form)
    })
}

/// `POST /admin/users/password`: a new password; their sessions end.
pub(super) fn post_password(state: &State, request: &Request, client: &Client) -> Result<Response> {
    on_user(state, request, client, |session, s, target, form| {
        let accounts = admin_accounts(state, request, client, s);
        outcome(
            accounts.may_override(session, target).and_then(|()| {
                accounts.set_password(target, form.get("password").unwrap_or(""), Some(session))
            }),
            "password-reset",
        )
    })
}

/// `POST /admin/users/names`: a local user's display name and e-mail
/// address (empty: none); the box says whether the administrator checked
/// the address (apps are told it is verified), new or the one the user
/// typed.
pub(super) fn post_names(state: &State, request: &Request, client: &Client) -> Result<Response> {
    on_user(state, request, client, |_, _, target, form| {
        let given = |field: &str| form.get(field).map(str::trim).filter(|v| !v.is_empty());
        outcome(
            state
                .users
                .set_names(
                    target.id,
                    given("display_name"),
                    given("email"),
                    Vouch::Checked(form.get("verified").is_some()),
                )
                .map_err(crate::accounts::AccountError::from),
            "names-saved",
        )
    })
}

/// `POST /admin/users/disable`: signed out everywhere, and kept out.
pub(super) fn post_disable(state: &State, request: &Request, client: &Client) -> Result<Response> {
    on_user(state, request, client, |_, s, target, _| {
        outcome(
            admin_accounts(state, request, client, s).disable(Some(&s.user), target, false),
            "user-disabled",
        )
    })
}

/// `POST /admin/users/enable`.
pub(super) fn post_enable(state: &State, request: &Request, client: &Client) -> Result<Response> {
    on_user(state, request, client, |_, s, target, _| {
        outcome(
            admin_accounts(state, request, client, s).enable(target),
            "user-enabled",
        )
    })
}

/// `POST /admin/users/grant-admin`.
pub(super) fn post_grant_admin(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    on_user(state, request, client, |_, s, target, _| {
        outcome(
            admin_accounts(state, request, client, s).grant_admin(target),
            "admin-granted",
        )
    })
}

/// `POST /admin/users/revoke-admin`.
pub(super) fn post_revoke_admin(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    on_user(state, request, client, |session, s, target, _| {
        outcome(
            admin_accounts(state, request, client, s).revoke_admin(target, Some(session)),
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
    on_user(state, request, client, |session, s, target, _| {
        let accounts = admin_accounts(state, request, client, s);
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
                admin_accounts(state, request, client, s).delete(Some(&s.user), target, false),
                "user-deleted",
            )
        } else {
            Ok(refused(400, "Deleting a user needs the confirm step."))
        }
    })
}

/// The account operations for an administrator's action, recorded as
/// theirs, from this request.
fn admin_accounts<'s>(
    state: &'s State,
    request: &Request,
    client: &Client,
    s: &SignedIn,
) -> crate::accounts::Accounts<'s> {
    state.accounts_for(request, client).by(&s.user)
}

/// What the admin list says of a user's second factors.
fn describe(s: &crate::users::factors::Summary) -> Vec<String> {
    let mut out = Vec::new();
    if s.totp {
        out.push("authenticator app".to_owned());
    }
    match s.passkeys {
        0 => {}
        1 => out.push("1 passkey".to_owned()),
        n => out.push(format!("{n} passkeys")),
    }
    if s.recovery_left > 0 {
        out.push(format!("{} recovery codes", s.recovery_left));
    }
    out
}

/// The reset-link page for `target`, with a link just made shown once.
fn reset_link_page(
    state: &State,
    s: &SignedIn,
    target: &User,
    made: Option<(&str, clock::Millis, bool)>,
) -> Result<Response> {
    let token = csrf::session_token(state.engine().signer(), &s.key);
    Ok(html(views::reset_link_page(&ResetLinkView {
        viewer: viewer(&s.user),
        username: &target.username,
        has_factor: state.users.factors().summary(target.id)?.any(),
        csrf: &token,
        made,
        now: clock::now(),
    })))
}

/// `GET /admin/users/reset-link?username=...`: the form for a reset link
/// (404 for no such user).
pub(super) fn get_reset_link(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    as_admin(state, request, client, |s| {
        let name = request.get_param("username").unwrap_or_default();
        reset_link_page(state, s, &named_user(state, &name)?, None)
    })
}

/// The expiries the reset-link form offers.
fn reset_expiry(value: Option<&str>) -> Option<clock::Millis> {
    const MINUTE: clock::Millis = 60 * 1000;
    let minutes = match value.unwrap_or("1h") {
        "15m" => 15,
        "1h" => 60,
        "4h" => 4 * 60,
        "24h" => 24 * 60,
        _ => return None,
    };
    Some(clock::now().saturating_add(minutes * MINUTE))
}

/// `POST /admin/users/reset-link`: a reset link for the user (replacing
/// theirs), shown once. Whoever may set the user's password here may make
/// one: for a user with a second factor, an administrator who gave one.
pub(super) fn post_reset_link(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    on_user(state, request, client, |session, s, target, form| {
        if let Err(e) = state.accounts().may_override(session, target) {
            return outcome(Err::<(), _>(e), "");
        }
        let Some(expires_at) = reset_expiry(form.get("expires")) else {
            return Ok(refused(400, "The expiry is not one the form offers."));
        };
        let new_factor = form.get("new_factor").is_some_and(|v| !v.is_empty());
        let made = admin_accounts(state, request, client, s).create_reset_link(
            target,
            &s.user.username,
            expires_at,
            new_factor,
            clock::now(),
        );
        match made {
            Ok((token, link)) => {
                let url = format!(
                    "{}/reset/{token}",
                    crate::web::redirects::origin(state, request, client).unwrap_or_default()
                );
                Ok(Outcome::Page(reset_link_page(
                    state,
                    s,
                    target,
                    Some((&url, link.expires_at, link.new_factor)),
                )?))
            }
            Err(AccountError::User(crate::users::UserError::InvalidLink(m))) => {
                Ok(refused(400, &capitalise(m)))
            }
            Err(AccountError::User(crate::users::UserError::NotFound)) => Ok(refused(
                409,
                "The user's password changed meanwhile: make the link again.",
            )),
            Err(e) => outcome(Err::<(), _>(e), ""),
        }
    })
}

/// `POST /admin/users/reset-link/revoke`: the user's waiting reset link.
pub(super) fn post_revoke_reset_link(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    on_user(
        state,
        request,
        client,
        |_, s, target, _| match admin_accounts(state, request, client, s).revoke_reset_link(target)
        {
            Ok(()) => Ok(Outcome::Done("reset-link-revoked")),
            Err(AccountError::User(crate::users::UserError::NoSuchLink)) => Err(WebError::NotFound),
            Err(e) => Err(e.into()),
        },
    )
}
