//! The `/admin` page: every user (with what they may be done to) and every
//! session, a page of each at a time; rendered again, with the message,
//! after a refused action. Administrators only.

use rouille::{Request, Response};

use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::session::Session;
use crate::web::device::session_rows;
use crate::web::error::{Result, WebError};
use crate::web::paging::{page_param, paged};
use crate::web::respond::{html, notice};
use crate::web::signed_in::{SignedIn, signed_in, viewer};
use crate::web::state::{State, with_session};
use crate::web::views::{self, AdminView, UserRow};

/// The signed-in administrator, a redirect for anonymous visitors, or 403.
pub(super) fn admin(
    state: &State,
    session: &Session<'_>,
    request: &Request,
) -> Result<std::result::Result<SignedIn, Response>> {
    match signed_in(state, session, request)? {
        Ok(s) if s.user.is_admin => Ok(Ok(s)),
        Ok(_) => Err(WebError::Forbidden),
        Err(redirect) => Ok(Err(redirect)),
    }
}

/// Which page of each admin list to show.
#[derive(Clone, Copy)]
pub(super) struct Pages {
    users: usize,
    sessions: usize,
}

impl Pages {
    pub(super) const FIRST: Self = Self {
        users: 1,
        sessions: 1,
    };

    fn of(request: &Request) -> Result<Self> {
        Ok(Self {
            users: page_param(request, "users_page")?,
            sessions: page_param(request, "sessions_page")?,
        })
    }
}

pub(super) fn render(
    state: &State,
    s: &SignedIn,
    pages: Pages,
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
    let (page_users, users_pager) = paged(users.iter().collect(), pages.users);
    let (page_records, sessions_pager) = paged(records, pages.sessions);
    let rows = page_users
        .into_iter()
        .map(|u| UserRow {
            username: u.username.clone(),
            is_admin: u.is_admin,
            disabled: u.disabled,
            created_at: u.created_at,
            sessions: per_user.get(&u.id).copied().unwrap_or(0),
            is_viewer: u.id == s.user.id,
            factors: summaries.get(&u.id).map(describe).unwrap_or_default(),
        })
        .collect();
    let name_of = |id: Option<i64>| {
        id.and_then(|id| users.iter().find(|u| u.id == id))
            .map(|u| u.username.clone())
    };
    let token = csrf::session_token(state.engine().signer(), &s.key);
    Ok(html(views::admin_page(&AdminView {
        viewer: viewer(&s.user),
        users: rows,
        users_pager,
        sessions: session_rows(&page_records, &s.key, name_of),
        sessions_pager,
        csrf: &token,
        notice,
        error,
        now,
    })))
}

pub(super) fn get_admin(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        match admin(state, session, request)? {
            Ok(s) => render(state, &s, Pages::of(request)?, notice(request), None),
            Err(redirect) => Ok(redirect),
        }
    })
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
