//! `GET /api/apps`: the apps the signed-in user may open, the same list
//! as the start page's (see [`crate::auth::apps::Apps::open_to`]).

use rouille::{Request, Response};
use serde_json::json;

use crate::auth::proxy::Client;
use crate::web::csrf::same_origin;
use crate::web::error::Result;
use crate::web::principal;
use crate::web::state::{State, with_session};

use super::json::json_response;

/// `GET /api/apps`.
pub(super) fn get_apps(state: &State, request: &Request, client: &Client) -> Result<Response> {
    same_origin(state, request)?;
    with_session(state, request, client, |session| {
        let Some(who) = principal::of_session(state, session)? else {
            return Ok(json_response(401, &json!({ "error": "not signed in" })));
        };
        let apps: Vec<_> = state
            .apps
            .open_to(&who, client.ip)
            .map(|a| {
                json!({
                    "name": a.name,
                    "url": a.link(),
                    "description": a.description,
                    "icon": a.icon,
                })
            })
            .collect();
        Ok(json_response(200, &json!({ "apps": apps })))
    })
}
