//! The userinfo endpoint (OpenID Connect Core §5.3): the claims of the
//! user an access token was issued for, as its scopes release them. The
//! token comes as `Authorization: Bearer` (RFC 6750 §2.1), or on a POST
//! as the `access_token` form field (§2.2), never in the query (where it
//! would reach logs and `Referer`s).

use rouille::{Request, Response};

use super::{error_response, form_of, no_store, profile};
use crate::auth::proxy::Client;
use crate::oidc::OidcError;
use crate::web::error::Result;
use crate::web::state::State;

/// `GET` userinfo.
pub(super) fn get_userinfo(state: &State, request: &Request, _: &Client) -> Result<Response> {
    Ok(answer(state, bearer(request)))
}

/// `POST` userinfo: the Bearer header, or the `access_token` field (one
/// of them, not both: RFC 6750 §2).
pub(super) fn post_userinfo(state: &State, request: &Request, _: &Client) -> Result<Response> {
    let from_header = bearer(request);
    let has_body = request
        .header("Content-Type")
        .is_some_and(|ct| !ct.trim().is_empty());
    if !has_body {
        return Ok(answer(state, from_header));
    }
    let form = match form_of(state, request) {
        Ok(f) => f,
        Err(r) => return Ok(r),
    };
    let token = match (from_header, form.get("access_token")) {
        (Ok(None), Some(t)) => Ok(Some(t.to_owned())),
        (Ok(Some(_)), Some(_)) => Err(OidcError::InvalidRequest(
            "the access token was sent twice (header and body)".into(),
        )),
        (other, None) => other,
        (Err(e), Some(_)) => Err(e),
    };
    Ok(answer(state, token))
}

/// The Bearer token of `Authorization`, if that header is there.
///
/// # Errors
///
/// `invalid_request` for two headers, or one of another scheme.
fn bearer(request: &Request) -> std::result::Result<Option<String>, OidcError> {
    let mut values = request
        .headers()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Authorization"))
        .map(|(_, v)| v);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OidcError::InvalidRequest(
            "more than one Authorization header".into(),
        ));
    }
    match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("Bearer") => {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(OidcError::InvalidRequest(
            "the access token goes in Authorization: Bearer".into(),
        )),
    }
}

fn answer(state: &State, token: std::result::Result<Option<String>, OidcError>) -> Response {
    let result = (|| {
        let provider = state
            .oidc
            .as_ref()
            .ok_or_else(|| OidcError::InvalidToken("no provider".into()))?;
        let token = token?.ok_or_else(|| {
            OidcError::InvalidToken("no access token (Authorization: Bearer)".into())
        })?;
        let granted = provider.userinfo_grant(&token, crate::clock::now())?;
        let profile = profile(state, granted.user_id)?
            .ok_or_else(|| OidcError::InvalidToken("the access token is not valid".into()))?;
        provider.userinfo(&granted, &profile)
    })();
    match result {
        Ok(claims) => no_store(200, &claims),
        Err(e) => error_response(state, &e),
    }
}
