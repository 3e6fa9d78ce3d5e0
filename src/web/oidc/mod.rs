//! The OpenID Provider's endpoints: thin handlers over [`crate::oidc`].
//! Each parses its request, calls one function of the `Provider` and
//! turns the answer, or the `OidcError`, into the response the
//! specifications give. The rules (what a code is bound to, when a
//! refresh token is reused, who may use a client) are all the
//! provider's; nothing here decides them.
//!
//! | file | endpoint |
//! | --- | --- |
//! | `meta.rs` | `/.well-known/openid-configuration` and the JWKS |
//! | `authorize.rs` | the authorization endpoint (GET and POST), through the real sign-in page |
//! | `token.rs` | the token endpoint: `authorization_code` and `refresh_token` |
//! | `userinfo.rs` | userinfo (GET and POST, Bearer) |
//! | `revoke.rs` | revocation (RFC 7009) |
//! | `introspect.rs` | introspection (RFC 7662) |
//! | `end_session.rs` | RP-initiated logout |
//! | `device.rs` | the device authorization grant: `device_authorization` and the `/device` page |
//! | `reauth.rs` | the password again, for an app that asks for a fresh sign-in (`prompt=login`, `max_age`) |
//!
//! This file holds the routes and what the handlers share: the JSON
//! answers and errors (`invalid_client` is `401` with `WWW-Authenticate:
//! Basic`, the rest of a client's mistakes `400`, never a `500` for what
//! a client sent), reading the client's credentials, and authenticating
//! the client under the address throttle.
//!
//! The routes exist only when the provider does (`public_url` is set).
//! Discovery, the JWKS, the token endpoint and userinfo answer CORS (any
//! origin, no credentials) for single-page apps. No token, code, secret
//! or verifier is ever written to the log: the request log has the path
//! without its query, and the lines here name the client and the error.

mod authorize;
mod device;
mod end_session;
mod introspect;
mod meta;
mod reauth;
mod revoke;
mod token;
mod userinfo;

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;
use rouille::{Request, Response};
use serde_json::{Value, json};

use super::error::{Result, WebError};
use super::form::Form;
use super::router::{Route, Token};
use super::state::State;
use crate::auth::proxy::Client;
use crate::identity::UserId;
use crate::logging;
use crate::oidc::discovery::{
    AUTHORIZE, DEVICE, DEVICE_AUTHORIZATION, DISCOVERY, END_SESSION, INTROSPECT, JWKS, REVOKE,
    TOKEN, USERINFO,
};
use crate::oidc::grants::ClientCredentials;
use crate::oidc::{OidcError, Profile, Provider};

/// Whether the provider is on (its routes exist).
fn provider_on(state: &State) -> bool {
    state.oidc.is_some()
}

/// The provider's paths; each exists only while the provider does.
pub(super) const ROUTES: &[Route] = &[
    Route::at(DISCOVERY)
        .get(meta::get_discovery)
        .cors()
        .when(provider_on),
    Route::at(JWKS).get(meta::get_jwks).cors().when(provider_on),
    // A relying party's own page may POST the request (OpenID Connect
    // Core §3.1.2.1), from its origin: no form token, no fetch-metadata
    // rule. Nothing it sends is acted on without the signed-in session,
    // and the session cookie is `SameSite=Lax`.
    Route::at(AUTHORIZE)
        .get(authorize::get_authorize)
        .post(authorize::post_authorize)
        .script()
        .when(provider_on),
    Route::at(TOKEN)
        .post(token::post_token)
        .cors()
        .when(provider_on),
    Route::at(USERINFO)
        .get(userinfo::get_userinfo)
        .post(userinfo::post_userinfo)
        .cors()
        .when(provider_on),
    Route::at(REVOKE)
        .post(revoke::post_revoke)
        .script()
        .when(provider_on),
    Route::at(INTROSPECT)
        .post(introspect::post_introspect)
        .script()
        .when(provider_on),
    // A relying party may send the browser with a GET or a form POST;
    // the confirmation form gatehouse shows posts back here with the
    // session's CSRF token, which the handler checks itself.
    Route::at(END_SESSION)
        .get(end_session::get_end_session)
        .post(end_session::post_end_session)
        .script()
        .when(provider_on),
    Route::at(DEVICE_AUTHORIZATION)
        .post(device::post_device_authorization)
        .script()
        .when(provider_on),
    // An app asked for a fresh sign-in: the password again.
    Route::at("/oidc/reauth")
        .get(reauth::get_reauth)
        .form(Token::Session, reauth::post_reauth)
        .token_page()
        .when(provider_on),
    // The user's page: a signed-in form with the session's token.
    Route::at(DEVICE)
        .get(device::get_device)
        .form(Token::Session, device::post_device)
        .token_page()
        .when(provider_on),
];

/// The provider; the routes exist only with one, so its absence is a
/// `404` like any path that is not there.
fn provider(state: &State) -> Result<&Provider> {
    state.oidc.as_ref().ok_or(WebError::NotFound)
}

/// A JSON answer.
fn json(status: u16, value: &Value) -> Response {
    Response::from_data("application/json", value.to_string()).with_status_code(status)
}

/// A JSON answer that no cache may keep (RFC 6749 §5.1: tokens and the
/// errors of the requests that ask for them).
fn no_store(status: u16, value: &Value) -> Response {
    json(status, value)
        .with_unique_header("Cache-Control", "no-store")
        .with_unique_header("Pragma", "no-cache")
}

/// Whether `path` is one of the provider's endpoints for programs (not
/// pages): their errors are JSON, whatever went wrong.
pub(super) fn for_programs(path: &str) -> bool {
    [
        TOKEN,
        USERINFO,
        REVOKE,
        INTROSPECT,
        DEVICE_AUTHORIZATION,
        JWKS,
        DISCOVERY,
    ]
    .contains(&path)
}

/// A request refused before its handler (too large, a wrong method or
/// media type, a server fault) at an endpoint [`for_programs`]: the same
/// status and headers as the page, with an RFC 6749 §5.2 error body,
/// which is what a relying party's library reads.
pub(super) fn program_error(e: WebError) -> Response {
    let status = e.status();
    let code = match status {
        500 => "server_error",
        503 => "temporarily_unavailable",
        _ => "invalid_request",
    };
    let description = e.public_message().to_owned();
    let page = e.into_response();
    let mut response = no_store(
        status,
        &json!({"error": code, "error_description": description}),
    );
    for (name, value) in page.headers {
        if ["Allow", "Retry-After", "Connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            response = response.with_additional_header(name, value);
        }
    }
    response
}

/// The JSON error answer for `e` (RFC 6749 §5.2): `invalid_client` is
/// `401` with a `WWW-Authenticate: Basic` challenge, `invalid_token`
/// `401` with a Bearer one (RFC 6750 §3.1), a server fault `500` (`503`
/// when a backend is away) with its detail logged, never sent; every
/// other error is the client's mistake, `400`.
fn error_response(state: &State, e: &OidcError) -> Response {
    let body = |description: &str| {
        json!({
            "error": e.code(),
            "error_description": description,
        })
    };
    match e {
        OidcError::Key(_) | OidcError::Db(_) => {
            state.metrics.db_error();
            logging::line(&format!(
                "oidc server error detail={}",
                logging::quote(&e.to_string())
            ));
            if e.is_unavailable() {
                no_store(
                    503,
                    &json!({"error": "temporarily_unavailable",
                            "error_description": "a backend could not be reached"}),
                )
                .with_unique_header("Retry-After", "5")
            } else {
                no_store(500, &body("something went wrong on our side"))
            }
        }
        OidcError::InvalidClient(d) => no_store(401, &body(d))
            .with_unique_header("WWW-Authenticate", "Basic realm=\"gatehouse\""),
        OidcError::InvalidToken(d) => no_store(401, &body(d)).with_unique_header(
            "WWW-Authenticate",
            "Bearer realm=\"gatehouse\", error=\"invalid_token\"",
        ),
        other => {
            let detail = other.to_string();
            let description = detail
                .split_once(": ")
                .map_or(detail.as_str(), |(_, d)| d)
                .to_owned();
            no_store(400, &body(&description))
        }
    }
}

/// The form body of a POST to an endpoint that answers JSON: a body
/// that is too large is `413`, anything else unreadable (another content
/// type, a field sent twice, bad encoding) `invalid_request`, both as
/// the JSON a client reads.
fn form_of(state: &State, request: &Request) -> std::result::Result<Form, Response> {
    Form::from_request(request).map_err(|e| match e {
        WebError::TooLarge => no_store(
            413,
            &json!({"error": "invalid_request", "error_description": "the body is too large"}),
        ),
        other => error_response(
            state,
            &OidcError::InvalidRequest(format!(
                "the body must be one application/x-www-form-urlencoded form, each field once ({})",
                other.public_message()
            )),
        ),
    })
}

/// The longest `Authorization` header read.
const MAX_AUTHORIZATION: usize = 4096;

/// The client credentials of a request: `Authorization: Basic` (its two
/// halves form-decoded, RFC 6749 §2.3.1) and the `client_id` and
/// `client_secret` fields.
///
/// # Errors
///
/// `invalid_client` for an `Authorization` header gatehouse cannot read
/// (two of them, too long, bad base64, no `:`, not UTF-8) or one of
/// another scheme: a client that sends one means it.
fn credentials(
    request: &Request,
    form: &Form,
) -> std::result::Result<ClientCredentials, OidcError> {
    let mut creds = ClientCredentials {
        basic: None,
        client_id: form.get("client_id").map(str::to_owned),
        client_secret: form.get("client_secret").map(str::to_owned),
    };
    let mut values = request
        .headers()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Authorization"))
        .map(|(_, v)| v);
    let Some(value) = values.next() else {
        return Ok(creds);
    };
    let bad = || OidcError::InvalidClient("unreadable Authorization header".into());
    if values.next().is_some() || value.len() > MAX_AUTHORIZATION {
        return Err(bad());
    }
    let (scheme, rest) = value.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return Err(bad());
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let form_decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| bad())
    };
    creds.basic = Some((form_decode(id)?, form_decode(secret)?));
    Ok(creds)
}

/// Authenticates the client of a token, revocation or introspection
/// request, under the address throttle the sign-in uses: an address
/// that keeps failing waits (`429` with `Retry-After`) before its next
/// try, so client secrets cannot be guessed at speed. Each failure is
/// logged with the client id it named and why, never the secret.
/// A client's request to an endpoint for programs other than the token
/// endpoint: its form, and the client it authenticates as (a response
/// already made when either fails).
fn form_and_client<'p>(
    state: &State,
    provider: &'p Provider,
    request: &Request,
    client: &Client,
) -> std::result::Result<(Form, Cow<'p, crate::oidc::Client>), Response> {
    let form = form_of(state, request)?;
    let relying_party = authenticate(state, provider, request, &form, client)?;
    Ok((form, relying_party))
}

fn authenticate<'p>(
    state: &State,
    provider: &'p Provider,
    request: &Request,
    form: &Form,
    client: &Client,
) -> std::result::Result<Cow<'p, crate::oidc::Client>, Response> {
    match state.throttle.address_wait(client.ip) {
        Ok(Some(wait)) => {
            state.metrics.throttled();
            let secs = wait.as_secs().max(1);
            logging::line(&format!(
                "oidc client throttled ip={} retry_after={secs}",
                logging::ip_text(client.ip)
            ));
            return Err(no_store(
                429,
                &json!({"error": "invalid_client",
                        "error_description": "too many failed attempts from this address"}),
            )
            .with_unique_header("Retry-After", secs.to_string()));
        }
        Ok(None) => {}
        Err(e) => return Err(store_failure(state, &e.to_string())),
    }
    let creds = credentials(request, form);
    let named = creds
        .as_ref()
        .ok()
        .and_then(|c| {
            c.basic
                .as_ref()
                .map(|(id, _)| id.clone())
                .or(c.client_id.clone())
        })
        .unwrap_or_default();
    match creds.and_then(|c| provider.authenticate_client(&c)) {
        Ok(found) => Ok(found),
        Err(e @ OidcError::InvalidClient(_)) => {
            logging::line(&format!(
                "oidc client authentication failed client={} ip={} reason={}",
                logging::quote(&named),
                logging::ip_text(client.ip),
                logging::quote(&e.to_string())
            ));
            match state.throttle.address_failure(client.ip) {
                Ok(locks) => {
                    if !locks.is_empty() {
                        logging::line(&format!(
                            "oidc client address locked ip={}",
                            logging::ip_text(client.ip)
                        ));
                    }
                }
                Err(e) => return Err(store_failure(state, &e.to_string())),
            }
            Err(error_response(state, &e))
        }
        Err(e) => Err(error_response(state, &e)),
    }
}

/// The answer when the throttle's store fails: a server fault, logged.
fn store_failure(state: &State, detail: &str) -> Response {
    state.metrics.db_error();
    logging::line(&format!(
        "oidc throttle store failed detail={}",
        logging::quote(detail)
    ));
    no_store(
        503,
        &json!({"error": "temporarily_unavailable",
                "error_description": "a backend could not be reached"}),
    )
}

/// The profile the claims are made from, read fresh: `None` for a user
/// who is gone or disabled (the provider then refuses, and revokes what
/// it would have renewed).
///
/// # Errors
///
/// The user store's failures, as a server fault.
fn profile(state: &State, user: UserId) -> std::result::Result<Option<Profile>, OidcError> {
    let found = state.users.find_by_id(user).map_err(|e| match e {
        crate::users::UserError::Db(db) => OidcError::Db(db),
        other => OidcError::Key(format!("reading the user: {other}")),
    })?;
    let Some(user) = found.filter(|u| !u.disabled) else {
        return Ok(None);
    };
    let names = state.users.profile(user.id).map_err(|e| match e {
        crate::users::UserError::Db(db) => OidcError::Db(db),
        other => OidcError::Key(format!("reading the user: {other}")),
    })?;
    let vouched = names
        .as_ref()
        .is_some_and(crate::users::source::Profile::email_vouched);
    let (name, email) = names.map_or((None, None), |p| (p.display_name, p.email));
    Ok(Some(Profile {
        username: user.username,
        name,
        email,
        email_verified: vouched,
        groups: user.groups,
    }))
}
