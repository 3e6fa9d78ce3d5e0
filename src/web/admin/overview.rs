//! `/admin`, the overview: how many users (administrators, disabled, with
//! a second factor) and live sessions there are, and the way to each
//! section. Administrators only.

use rouille::{Request, Response};

use crate::auth::proxy::Client;
use crate::clock;
use crate::web::error::Result;
use crate::web::respond::{html, notice};
use crate::web::signed_in::viewer;
use crate::web::state::State;
use crate::web::views::{self, OverviewView};

use super::act::as_admin;

/// `GET /admin`.
pub(super) fn get_overview(state: &State, request: &Request, client: &Client) -> Result<Response> {
    as_admin(state, request, client, |s| {
        let users = state.users.list()?;
        let summaries = state.users.factors().summaries()?;
        let records = state.engine().store().list(None, clock::now())?;
        Ok(html(views::overview_page(&OverviewView {
            viewer: viewer(&s.user),
            users: users.len(),
            admins: users.iter().filter(|u| u.is_admin).count(),
            disabled: users.iter().filter(|u| u.disabled).count(),
            with_second_factor: users
                .iter()
                .filter(|u| summaries.get(&u.id).is_some_and(|f| f.any()))
                .count(),
            sessions: records.len(),
            signed_in: records.iter().filter(|r| r.user_id.is_some()).count(),
            notice: notice(request),
        })))
    })
}
