//! `/admin/sessions`: every live session, a page at a time; an
//! administrator may end any one (their own signs them out).

use rouille::{Request, Response};

use crate::accounts::{Ended, Owner};
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::web::device::session_rows;
use crate::web::error::Result;
use crate::web::paging::{page_param, paged};
use crate::web::respond::{html, notice};
use crate::web::signed_in::{SignedIn, viewer};
use crate::web::state::State;
use crate::web::views::{self, SessionsView};

use super::act::{Outcome, Section, act, as_admin};

/// The sessions section: where its actions go back to.
const SESSIONS: Section = Section {
    path: "/admin/sessions",
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
    let (page_records, pager) = paged(records, page);
    let name_of = |id: Option<i64>| {
        id.and_then(|id| users.iter().find(|u| u.id == id))
            .map(|u| u.username.clone())
    };
    let token = csrf::session_token(state.engine().signer(), &s.key);
    Ok(html(views::sessions_page(&SessionsView {
        viewer: viewer(&s.user),
        sessions: session_rows(&page_records, &s.key, name_of),
        pager,
        csrf: &token,
        notice,
        error,
        now,
    })))
}

/// `GET /admin/sessions`.
pub(super) fn get_sessions(state: &State, request: &Request, client: &Client) -> Result<Response> {
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

/// `POST /admin/sessions/end`.
pub(super) fn post_end_session(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    act(state, request, client, &SESSIONS, |session, s, form| {
        let handle = form.get("handle").unwrap_or("");
        Ok(
            match state
                .accounts_for(request, client)
                .by(&s.user)
                .end_session(session, Owner::Anyone, handle)?
            {
                Ended::This => Outcome::SignedOut,
                Ended::Other => Outcome::Done("session-ended"),
            },
        )
    })
}
