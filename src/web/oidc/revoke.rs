//! Token revocation (RFC 7009): the client (authenticated as at the
//! token endpoint) hands back an access or refresh token it no longer
//! needs. The answer is `200` whether or not the token was known or the
//! client's (§2.2): revocation is no oracle for others' tokens.

use rouille::{Request, Response};

use super::{error_response, form_and_client, provider};
use crate::auth::proxy::Client;
use crate::oidc::OidcError;
use crate::web::error::Result;
use crate::web::state::State;

/// `POST` the revocation endpoint.
pub(super) fn post_revoke(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let provider = provider(state)?;
    let (form, relying_party) = match form_and_client(state, provider, request, client) {
        Ok(found) => found,
        Err(r) => return Ok(r),
    };
    let Some(token) = form.get("token") else {
        return Ok(error_response(
            state,
            &OidcError::InvalidRequest("token is missing".into()),
        ));
    };
    // `token_type_hint` is only a hint (§2.1): the token says what it is.
    Ok(match provider.revoke(&relying_party, token) {
        Ok(()) => Response::empty_204()
            .with_status_code(200)
            .with_unique_header("Cache-Control", "no-store"),
        Err(e) => error_response(state, &e),
    })
}
