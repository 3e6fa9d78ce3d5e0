//! Signing in and out through the JSON API: `POST /api/login`, its second
//! step `POST /api/login/second`, and `POST /api/logout`.

use rouille::{Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{AccountError, AfterPassword, Attempt, METHODS, Proof, Step};
use crate::auth::proxy::Client;
use crate::logging::rfc3339;
use crate::users::User;
use crate::web::csrf::same_origin;
use crate::web::error::{Result, WebError};
use crate::web::signed_in::signing_in;
use crate::web::state::{State, with_session};

use super::json::{json_body, json_response, user_json};

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
    let (accounts, guard) = (api_accounts(state, request, client), state.guard());
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

/// The account operations for an API request (recorded `via=api`).
fn api_accounts<'s>(
    state: &'s State,
    request: &Request,
    client: &Client,
) -> crate::accounts::Accounts<'s> {
    state
        .accounts()
        .at(crate::web::state::origin(request, client).via("api"))
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
    let (accounts, guard) = (api_accounts(state, request, client), state.guard());
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
        let user = crate::web::signed_in::current_user(state, session)?;
        crate::web::sso::end(state, session);
        session.destroy()?;
        if let Some(user) = user {
            api_accounts(state, request, client).signed_out(&user);
        }
        Ok(json_response(200, &json!({ "signed_out": was_signed_in })))
    })
}
