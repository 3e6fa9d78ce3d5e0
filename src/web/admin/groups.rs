//! `/admin/groups`: every group (create, rename, delete after a confirm
//! step) and one group's members (add, remove). The rules (`admins` is
//! kept, its last enabled member stays) are `accounts`'; a refusal is
//! shown on the groups page with 409.

use rouille::{Request, Response};

use crate::accounts::AccountError;
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::users::UserError;
use crate::users::groups::Group;
use crate::web::error::{Result, WebError};
use crate::web::respond::{html, notice};
use crate::web::signed_in::{SignedIn, viewer};
use crate::web::state::State;
use crate::web::views::{self, GroupRow, GroupsView, MemberRow, MembersView};

use super::act::{Outcome, Section, act, as_admin, outcome, refused};

/// The groups section: where its actions go back to.
const GROUPS: Section = Section {
    path: "/admin/groups",
    refused: |state, s, message| render(state, s, None, Some(message)),
};

fn render(
    state: &State,
    s: &SignedIn,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response> {
    let groups = state
        .users
        .groups()?
        .into_iter()
        .map(|g| GroupRow {
            builtin: g.is_admins(),
            name: g.name,
            members: g.members,
            created_at: g.created_at,
        })
        .collect();
    let token = csrf::session_token(state.engine().signer(), &s.key);
    Ok(html(views::groups_page(&GroupsView {
        viewer: viewer(&s.user),
        groups,
        csrf: &token,
        notice,
        error,
        now: clock::now(),
    })))
}

/// `GET /admin/groups`.
pub(super) fn get_groups(state: &State, request: &Request, client: &Client) -> Result<Response> {
    as_admin(state, request, client, |s| {
        render(state, s, notice(request), None)
    })
}

/// The group the query or form names (404 for none).
fn named(state: &State, name: Option<&str>) -> Result<Group> {
    state
        .users
        .find_group(name.unwrap_or(""))?
        .ok_or(WebError::NotFound)
}

/// `GET /admin/groups/members?group=NAME`.
pub(super) fn get_members(state: &State, request: &Request, client: &Client) -> Result<Response> {
    as_admin(state, request, client, |s| {
        let group = named(state, request.get_param("group").as_deref())?;
        let members = state
            .users
            .members(&group)?
            .into_iter()
            .map(|u| MemberRow {
                is_viewer: u.id == s.user.id,
                disabled: u.disabled,
                username: u.username,
            })
            .collect();
        let token = csrf::session_token(state.engine().signer(), &s.key);
        Ok(html(views::members_page(&MembersView {
            viewer: viewer(&s.user),
            group: &group.name,
            members,
            csrf: &token,
            notice: notice(request),
        })))
    })
}

/// `GET /admin/groups/delete?group=NAME`: the confirm step.
pub(super) fn get_delete_group(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    as_admin(state, request, client, |s| {
        let group = named(state, request.get_param("group").as_deref())?;
        let token = csrf::session_token(state.engine().signer(), &s.key);
        Ok(html(views::delete_group_page(
            viewer(&s.user),
            &group.name,
            &token,
        )))
    })
}

/// An account operation on groups as an admin page outcome: a taken name
/// is shown with 409, a missing group or user is 404; the rest as
/// [`outcome`] says.
fn group_outcome<T>(
    result: std::result::Result<T, AccountError>,
    done: &'static str,
) -> Result<Outcome> {
    match result {
        Err(AccountError::User(UserError::GroupTaken)) => {
            Ok(refused(409, "A group with that name already exists."))
        }
        Err(AccountError::User(UserError::NoSuchGroup | UserError::NotFound)) => {
            Err(WebError::NotFound)
        }
        other => outcome(other, done),
    }
}

/// `POST /admin/groups`: a new group.
pub(super) fn post_create(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, &GROUPS, |_, s, form| {
        group_outcome(
            state
                .accounts_for(request, client)
                .by(&s.user)
                .create_group(form.get("name").unwrap_or("")),
            "group-created",
        )
    })
}

/// `POST /admin/groups/rename`.
pub(super) fn post_rename(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, &GROUPS, |_, s, form| {
        group_outcome(
            state
                .accounts_for(request, client)
                .by(&s.user)
                .rename_group(
                    form.get("group").unwrap_or(""),
                    form.get("name").unwrap_or(""),
                ),
            "group-renamed",
        )
    })
}

/// `POST /admin/groups/delete`, from the confirm step only.
pub(super) fn post_delete(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, &GROUPS, |_, s, form| {
        if form.get("confirm") == Some("yes") {
            group_outcome(
                state
                    .accounts_for(request, client)
                    .by(&s.user)
                    .delete_group(form.get("group").unwrap_or("")),
                "group-deleted",
            )
        } else {
            Ok(refused(400, "Deleting a group needs the confirm step."))
        }
    })
}

/// Runs a change of a group's members, then answers on that group's page.
fn on_member(
    state: &State,
    request: &Request,
    client: &Client,
    done: &'static str,
    change: impl FnOnce(
        &crate::accounts::Accounts<'_>,
        &crate::session::Session<'_>,
        &Group,
        &crate::users::User,
    ) -> std::result::Result<bool, AccountError>,
) -> Result<Response> {
    act(state, request, client, &GROUPS, |session, s, form| {
        let group = named(state, form.get("group"))?;
        let target = state
            .users
            .find_by_name(form.get("username").unwrap_or(""))?
            .ok_or(WebError::NotFound)?;
        let accounts = state.accounts_for(request, client).by(&s.user);
        match group_outcome(change(&accounts, session, &group, &target), done)? {
            Outcome::Done(code) => Ok(Outcome::DoneAt(
                format!("/admin/groups/members?group={}", group.name),
                code,
            )),
            other => Ok(other),
        }
    })
}

/// `POST /admin/groups/add`: a user into a group.
pub(super) fn post_add(state: &State, request: &Request, client: &Client) -> Result<Response> {
    on_member(
        state,
        request,
        client,
        "member-added",
        |accounts, _, group, target| accounts.add_to_group(&group.name, target),
    )
}

/// `POST /admin/groups/remove`: a user out of a group (the last enabled
/// administrator stays in `admins`).
pub(super) fn post_remove(state: &State, request: &Request, client: &Client) -> Result<Response> {
    on_member(
        state,
        request,
        client,
        "member-removed",
        |accounts, session, group, target| {
            accounts.remove_from_group(&group.name, target, Some(session), false)
        },
    )
}
