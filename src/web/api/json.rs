//! The JSON API's answers and bodies: a JSON response, the JSON form of
//! an error, a body that must be declared JSON, and a user as JSON.

use rouille::{Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::users::User;
use crate::web::error::{Result, WebError};
use crate::web::form::read_body;

pub(super) fn json_response(status: u16, value: &Value) -> Response {
    Response::from_data("application/json", value.to_string()).with_status_code(status)
}

/// The JSON form of an error.
pub fn error_response(e: &WebError) -> Response {
    let message = match e {
        WebError::Csrf => "cross-site request refused",
        WebError::UnsupportedMediaType => "the body must be application/json",
        other => other.public_message(),
    };
    let mut r = json_response(e.status(), &json!({ "error": message }));
    if let WebError::MethodNotAllowed(allow) = e {
        r = r.with_additional_header("Allow", *allow);
    }
    if let WebError::Busy | WebError::Unavailable(_) | WebError::DirectoryUnavailable = e {
        r = r.with_additional_header("Retry-After", "1");
    }
    r
}

/// Reads a JSON body of type `T`.
pub(super) fn json_body<T: for<'de> Deserialize<'de>>(request: &Request) -> Result<T> {
    let ct = request.header("Content-Type").unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(WebError::UnsupportedMediaType);
    }
    let body = read_body(request)?;
    serde_json::from_slice(&body).map_err(|_| WebError::BadRequest("malformed JSON"))
}

pub(super) fn user_json(user: &User) -> Value {
    json!({ "name": user.username, "admin": user.is_admin, "groups": user.groups })
}
