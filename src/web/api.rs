//! The JSON API: the same flows as the pages, for front-end code.
//!
//! Every endpoint takes and returns `application/json`; errors are
//! `{"error": "..."}`. Cross-site requests are refused by `Origin`, and a
//! body must be declared JSON, which a cross-site HTML form cannot do:
//! together they stand in for the pages' CSRF tokens.

use rouille::{Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::csrf::same_origin;
use super::error::{Result, WebError};
use super::form::read_body;
use super::router::Route;
use super::signed_in::{current_user, signing_in};
use super::state::{State, with_session};
use crate::accounts::{AccountError, AfterPassword, Attempt, METHODS, Proof, Step};
use crate::auth::proxy::Client;
use crate::logging::rfc3339;
use crate::session::{Record, valid_key};
use crate::users::User;

/// The JSON API's paths: scripts call them, with their own checks
/// (`Origin`, a JSON body) in place of a form's token.
pub(super) const ROUTES: &[Route] = &[
    Route::at("/api/login").post(post_login).script(),
    Route::at("/api/login/second")
        .post(post_login_second)
        .script(),
    Route::at("/api/logout").post(post_logout).script(),
    Route::at("/api/session").get(get_session).script(),
    Route::at("/api/session/data").patch(patch_data).script(),
    Route::at("/api/openapi.yaml").get(openapi).script(),
];

/// Session data keys under this prefix are gatehouse's; the API refuses them.
pub const RESERVED_PREFIX: &str = "gatehouse:";

/// The largest session data object `PATCH /api/session/data` may leave.
pub const MAX_DATA: usize = 16 * 1024;

/// The OpenAPI document, served at `/api/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

fn json_response(status: u16, value: &Value) -> Response {
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
    if let WebError::Busy | WebError::Unavailable(_) = e {
        r = r.with_additional_header("Retry-After", "1");
    }
    r
}

/// Reads a JSON body of type `T`.
fn json_body<T: for<'de> Deserialize<'de>>(request: &Request) -> Result<T> {
    let ct = request.header("Content-Type").unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(WebError::UnsupportedMediaType);
    }
    let body = read_body(request)?;
    serde_json::from_slice(&body).map_err(|_| WebError::BadRequest("malformed JSON"))
}

fn user_json(user: &User) -> Value {
    json!({ "name": user.username, "admin": user.is_admin })
}

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

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    remember: bool,
}

/// `POST /api/login`.
pub(super) fn post_login(state: &State, request: &Request, client: &Client) -> Result<Response> {
    same_origin(state, request)?;
    let body: LoginBody = json_body(request)?;
    let (accounts, guard) = (state.accounts(), state.guard());
    match accounts.attempt_sign_in(&guard, &body.username, &body.password, client.ip) {
        Err(AccountError::UsernameTooLong) => Err(WebError::BadRequest("the username is too long")),
        Err(e) => Err(e.into()),
        Ok(Attempt::Throttled(wait)) => {
            let secs = wait.as_secs().max(1);
            Ok(json_response(
                429,
                &json!({ "error": "too many failed attempts", "retry_after": secs }),
            )
            .with_additional_header("Retry-After", secs.to_string()))
        }
        Ok(Attempt::Failed) => Ok(json_response(
            401,
            &json!({ "error": "wrong username or password" }),
        )),
        Ok(Attempt::Verified(verified)) => {
            let user = verified.user().id;
            let response = signing_in(state, request, client, " via=api", |session, finished| {
                match accounts.after_password(
                    session,
                    verified,
                    body.remember,
                    "/",
                    state.two_factor,
                )? {
                    AfterPassword::Finished(done) => {
                        let body = signed_in_json(done.user(), session);
                        *finished = Some(done);
                        Ok(json_response(200, &body))
                    }
                    AfterPassword::SecondStep => {
                        let s = state.users.factors().summary(user)?;
                        let mut methods = Vec::new();
                        if s.totp {
                            methods.push("otp");
                        }
                        if s.passkeys > 0 {
                            methods.push("passkey");
                        }
                        methods.push("recovery");
                        Ok(json_response(
                            202,
                            &json!({ "second_factor": true, "methods": methods }),
                        ))
                    }
                    AfterPassword::Enrol => Ok(json_response(
                        403,
                        &json!({
                            "error": "a second factor must be set up first: sign in on the web page",
                            "enrol": "/login/enrol",
                        }),
                    )),
                }
            })?;
            Ok(response)
        }
    }
}

fn signed_in_json(user: &User, session: &crate::session::Session<'_>) -> Value {
    let record = session.record();
    json!({
        "user": user_json(user),
        "expires_at": rfc3339(record.expires_at),
        "methods": session.get::<Vec<String>>(METHODS).unwrap_or_default(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecondBody {
    code: Option<String>,
    recovery_code: Option<String>,
}

/// `POST /api/login/second`: the second step of a sign-in that `POST
/// /api/login` answered with `202`.
pub(super) fn post_login_second(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    same_origin(state, request)?;
    let body: SecondBody = json_body(request)?;
    let proof = match (&body.code, &body.recovery_code) {
        (Some(code), None) => Proof::Code(code),
        (None, Some(code)) => Proof::Recovery(code),
        _ => return Err(WebError::BadRequest("give one of code and recovery_code")),
    };
    let (accounts, guard) = (state.accounts(), state.guard());
    let response = signing_in(state, request, client, " via=api", |session, finished| {
        Ok(
            match accounts.second_step(&guard, session, client.ip, proof)? {
                Step::Finished(done, left) => {
                    let mut body = signed_in_json(done.user(), session);
                    if let (Some(left), Some(o)) = (left, body.as_object_mut()) {
                        o.insert("recovery_codes_left".to_owned(), json!(left));
                    }
                    *finished = Some(done);
                    json_response(200, &body)
                }
                Step::Wrong => json_response(401, &json!({ "error": "wrong code" })),
                Step::Throttled(wait) => {
                    let secs = wait.as_secs().max(1);
                    json_response(
                        429,
                        &json!({ "error": "too many failed attempts", "retry_after": secs }),
                    )
                    .with_additional_header("Retry-After", secs.to_string())
                }
                Step::Expired => json_response(
                    401,
                    &json!({ "error": "no sign-in is waiting for a second factor; sign in again" }),
                ),
            },
        )
    })?;
    Ok(response)
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

/// `POST /api/logout`.
pub(super) fn post_logout(state: &State, request: &Request, client: &Client) -> Result<Response> {
    same_origin(state, request)?;
    let ct = request.header("Content-Type").unwrap_or("");
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/json")
    {
        return Err(WebError::UnsupportedMediaType);
    }
    with_session(state, request, client, |session| {
        let was_signed_in = session.user_id().is_some();
        session.destroy()?;
        Ok(json_response(200, &json!({ "signed_out": was_signed_in })))
    })
}

/// `GET /api/openapi.yaml`.
fn openapi(_: &State, _: &Request, _: &Client) -> Result<Response> {
    Ok(
        Response::from_data("application/yaml; charset=utf-8", OPENAPI)
            .with_additional_header("Cache-Control", "public, max-age=3600"),
    )
}
