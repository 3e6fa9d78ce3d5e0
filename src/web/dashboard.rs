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
use crate::auth::proxy::Client;
use crate::session::SessionError;

/// The start page.
pub(super) const ROUTES: &[Route] = &[Route::at("/").get(get_dashboard)];

fn get_dashboard(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        let Some(who) = principal::of_session(state, session)? else {
            return Ok(see_other("/login?next=/"));
        };
        let visits = match session.increment("visits", 1) {
            Ok(n) => n,
            Err(SessionError::Gone) => return Ok(see_other("/login?next=/")),
            Err(e) => return Err(e.into()),
        };
        // The apps that sign in through gatehouse (OpenID Connect clients,
        // the file's and those made on `/admin`) with a launch URL, when
        // this user may use them.
        let clients = match &state.oidc {
            Some(provider) => provider
                .registry()
                .all()
                .map_err(super::error::WebError::provider_fault)?,
            None => Vec::new(),
        };
        let mut apps: Vec<views::AppLink<'_>> = state
            .apps
            .open_to(&who, client.ip)
            .map(|a| views::AppLink {
                name: &a.name,
                href: a.link(),
                description: a.description.as_deref(),
                icon: a.icon.as_deref(),
            })
            .collect();
        apps.extend(
            clients
                .iter()
                .filter(|c| {
                    crate::auth::access::client_decision(&c.groups, false, &who.groups, &[])
                        == crate::auth::access::Decision::Allow
                })
                .filter_map(|c| {
                    Some(views::AppLink {
                        name: &c.name,
                        href: c.launch_url.clone()?,
                        description: None,
                        icon: None,
                    })
                }),
        );
        Ok(html(views::dashboard_page(&DashboardView {
            viewer: viewer(&who.user),
            visits,
            apps,
            notice: notice(request),
        })))
    })
}
