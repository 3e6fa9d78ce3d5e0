//! Token introspection (RFC 7662): a confidential client, authenticated
//! as at the token endpoint, asks whether a token is live. Only its own
//! tokens are ever `active` (another client's is `{"active": false}`,
//! like an unknown one), so introspection is no oracle either.

use rouille::{Request, Response};

use super::{error_response, form_and_client, no_store, profile, provider};
use crate::auth::proxy::Client;
use crate::oidc::OidcError;
use crate::web::error::Result;
use crate::web::state::State;

/// `POST` the introspection endpoint.
pub(super) fn post_introspect(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
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
    Ok(
        match provider.introspect(
            &relying_party,
            token,
            |user| profile(state, user),
            crate::clock::now(),
        ) {
            Ok(answer) => no_store(200, &answer.to_json()),
            Err(e) => error_response(state, &e),
        },
    )
}
