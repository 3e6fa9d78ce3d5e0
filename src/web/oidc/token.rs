//! The token endpoint (RFC 6749 §3.2, OpenID Connect Core §3.1.3): a
//! form-encoded POST from the relying party's server, the client
//! authenticated (`client_secret_basic` or `client_secret_post`, `none`
//! for a public client), then one grant: `authorization_code`,
//! `refresh_token` or the device code (RFC 8628 §3.4). The answer, token or error, is never cached.

use rouille::{Request, Response};

use super::{authenticate, error_response, form_of, no_store, profile, provider};
use crate::auth::proxy::Client;
use crate::oidc::OidcError;
use crate::oidc::discovery::DEVICE_GRANT_TYPE;
use crate::web::error::Result;
use crate::web::state::State;

/// `POST` the token endpoint.
pub(super) fn post_token(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let provider = provider(state)?;
    let form = match form_of(state, request) {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    // The grant type is checked before the client is: a request for a
    // grant gatehouse does not offer says so whoever sends it, and
    // costs no throttle entry.
    let grant_type = match form.get("grant_type") {
        None => {
            return Ok(error_response(
                state,
                &OidcError::InvalidRequest("grant_type is missing".into()),
            ));
        }
        Some(g @ ("authorization_code" | "refresh_token" | DEVICE_GRANT_TYPE)) => g,
        Some(_) => {
            return Ok(error_response(
                state,
                &OidcError::UnsupportedGrantType(
                    "the grants offered are authorization_code, refresh_token and the device code"
                        .into(),
                ),
            ));
        }
    };
    let relying_party = match authenticate(state, provider, request, &form, client) {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let now = crate::clock::now();
    let read = |user| profile(state, user);
    let answer = match grant_type {
        "authorization_code" => match (form.get("code"), form.get("redirect_uri")) {
            (Some(code), Some(redirect_uri)) => provider.exchange_code(
                &relying_party,
                code,
                redirect_uri,
                form.get("code_verifier"),
                read,
                now,
            ),
            (None, _) => Err(OidcError::InvalidRequest("code is missing".into())),
            (_, None) => Err(OidcError::InvalidRequest("redirect_uri is missing".into())),
        },
        DEVICE_GRANT_TYPE => match form.get("device_code") {
            Some(code) => provider.device_token(&relying_party, code, read, now),
            None => Err(OidcError::InvalidRequest("device_code is missing".into())),
        },
        _ => match form.get("refresh_token") {
            Some(token) => provider.refresh(&relying_party, token, form.get("scope"), read, now),
            None => Err(OidcError::InvalidRequest("refresh_token is missing".into())),
        },
    };
    Ok(match answer {
        Ok(tokens) => no_store(200, &tokens.to_json()),
        Err(e) => {
            if matches!(e, OidcError::InvalidGrant(_)) {
                crate::logging::line(&format!(
                    "oidc token refused client={} grant_type={grant_type} error={}",
                    crate::logging::quote(&relying_party.id),
                    crate::logging::quote(&e.to_string())
                ));
            }
            error_response(state, &e)
        }
    })
}
