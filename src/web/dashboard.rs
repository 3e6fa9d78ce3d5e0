//! `/`: the dashboard ("Welcome, alice", this session's visit count, the
//! apps this user may open).

use rouille::{Request, Response};

use super::error::Result;
use super::respond::{html, notice, see_other};
use super::router::Route;
use super::signed_in::{current_user, viewer};
use super::state::{State, with_session};
use super::views::{self, DashboardView};
use crate::auth::proxy::Client;
use crate::session::SessionError;

/// The start page.
pub(super) const ROUTES: &[Route] = &[Route::at("/").get(get_dashboard)];

fn get_dashboard(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        let Some(user) = current_user(state, session)? else {
            return Ok(see_other("/login?next=/"));
        };
        let visits = match session.increment("visits", 1) {
            Ok(n) => n,
            Err(SessionError::Gone) => return Ok(see_other("/login?next=/")),
            Err(e) => return Err(e.into()),
        };
        let links: Vec<(String, String)> = state
            .apps
            .all()
            .iter()
            .filter(|a| a.access.allows(&user.username, user.is_admin))
            .map(|a| (a.name.clone(), a.link()))
            .collect();
        Ok(html(views::dashboard_page(&DashboardView {
            viewer: viewer(&user),
            visits,
            apps: links
                .iter()
                .map(|(name, href)| views::AppLink { name, href })
                .collect(),
            notice: notice(request),
        })))
    })
}
