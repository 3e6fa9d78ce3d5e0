//! The session through the JSON API: `GET /api/session` (who, until
//! when, how they signed in, the app's data) and `PATCH /api/session/data`
//! (the app's own keys; gatehouse's are refused).

use rouille::{Request, Response};
use serde_json::{Map, Value, json};

use crate::accounts::METHODS;
use crate::auth::proxy::Client;
use crate::logging::rfc3339;
use crate::session::{Record, valid_key};
use crate::users::User;
use crate::web::csrf::same_origin;
use crate::web::error::{Result, WebError};
use crate::web::signed_in::current_user;
use crate::web::state::{State, with_session};

use super::json::{json_body, json_response, user_json};

pub use crate::session::keys::RESERVED_PREFIX;

/// The largest session data object `PATCH /api/session/data` may leave.
pub const MAX_DATA: usize = 16 * 1024;

fn session_json(user: &User, record: &Record) -> Value {
    json!({
        "user": user_json(user),
        "created_at": rfc3339(record.created_at),
        "expires_at": rfc3339(record.expires_at),
        "remember": record.persistent,
        "methods": record.data.get(METHODS).cloned().unwrap_or_else(|| json!([])),
        // gatehouse's own keys (how it signed in, the admin's last
        // confirmation) are not the app's data; `methods` shows the first.
        "data": Value::Object(
            record
                .data
                .iter()
                .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    })
}

/// `GET /api/session`.
pub(super) fn get_session(state: &State, request: &Request, client: &Client) -> Result<Response> {
    same_origin(state, request)?;
    with_session(state, request, client, |session| {
        Ok(match current_user(state, session)? {
            Some(user) => json_response(200, &session_json(&user, &session.record())),
            None => json_response(401, &json!({ "error": "not signed in" })),
        })
    })
}

/// `PATCH /api/session/data`: merge an object into the session's data;
/// `null` removes a key.
pub(super) fn patch_data(state: &State, request: &Request, client: &Client) -> Result<Response> {
    same_origin(state, request)?;
    let patch: Map<String, Value> = json_body::<Value>(request)?
        .as_object()
        .cloned()
        .ok_or(WebError::BadRequest("the body must be a JSON object"))?;
    if patch.keys().any(|k| !valid_key(k)) {
        return Err(WebError::BadRequest(
            "keys must be 1-128 printable ASCII characters without quotes or backslashes",
        ));
    }
    // gatehouse keeps its own facts under this prefix (when the admin last
    // confirmed their password): a script must not write them.
    if patch.keys().any(|k| k.starts_with(RESERVED_PREFIX)) {
        return Err(WebError::BadRequest(
            "keys starting with \"gatehouse:\" are gatehouse's own",
        ));
    }
    with_session(state, request, client, |session| {
        let Some(user) = current_user(state, session)? else {
            return Ok(json_response(401, &json!({ "error": "not signed in" })));
        };
        let mut merged = session.record().data;
        for (k, v) in &patch {
            if v.is_null() {
                merged.remove(k);
            } else {
                merged.insert(k.clone(), v.clone());
            }
        }
        if Value::Object(merged.clone()).to_string().len() > MAX_DATA {
            return Ok(json_response(
                413,
                &json!({ "error": format!("session data may not exceed {MAX_DATA} bytes") }),
            ));
        }
        for (k, v) in patch {
            if v.is_null() {
                session.remove(&k)?;
            } else {
                session.insert(&k, v)?;
            }
        }
        Ok(json_response(200, &session_json(&user, &session.record())))
    })
}
