//! `/`: the dashboard ("Welcome, alice", this session's visit count, the
//! apps this user may open).

use rouille::{Request, Response};

use super::error::Result;
use super::principal;
use super::respond::{html, notice, see_other};
use super::router::Route;
use super::signed_in::viewer;
use super::state::{State, with_session};
use super::views::{self, DashboardView};
use crate::auth::access::{self, Decision};
use crate::auth::proxy::Client;
use crate::identity::Target;
use crate::session::SessionError;

/// The start page.
pub(super) const ROUTES: &[Route] = &[Route::at("/").get(get_dashboard)];

fn get_dashboard(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        let Some(who) = principal::of_request(state, request, session)? else {
            return Ok(see_other("/login?next=/"));
        };
        let visits = match session.increment("visits", 1) {
            Ok(n) => n,
            Err(SessionError::Gone) => return Ok(see_other("/login?next=/")),
            Err(e) => return Err(e.into()),
        };
        // An app is listed when the one access decision would let this
        // user open its front page (a second factor still to give is no
        // reason to hide it: the sign-in asks for it on the way).
        let opens = |app: &crate::auth::apps::App| {
            let target = Target {
                app: Some(&app.name),
                path: "/",
                method: "GET",
                client: client.ip,
            };
            let verdict = access::decide(&app.rules, Some(&who), &target);
            matches!(verdict.decision, Decision::Allow | Decision::SecondFactor)
        };
        let links: Vec<(String, String)> = state
            .apps
            .all()
            .iter()
            .filter(|a| opens(a))
            .map(|a| (a.name.clone(), a.link()))
            .collect();
        Ok(html(views::dashboard_page(&DashboardView {
            viewer: viewer(&who.user),
            visits,
            apps: links
                .iter()
                .map(|(name, href)| views::AppLink { name, href })
                .collect(),
            notice: notice(request),
        })))
    })
}
