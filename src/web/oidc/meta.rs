//! What a relying party reads before anything else: the discovery
//! document and the JWKS. Both are public and cacheable for a short while
//! (a rotated key must reach relying parties within minutes).

use rouille::{Request, Response};

use super::{error_response, json, provider};
use crate::auth::proxy::Client;
use crate::web::error::Result;
use crate::web::state::State;

/// `GET /.well-known/openid-configuration`.
///
/// The provider's document, less front-channel logout: the sign-out page
/// does not render the clients' logout frames yet, and a relying party
/// told it is supported would wait for a call that never comes. Every
/// endpoint the document names is a route here.
pub(super) fn get_discovery(state: &State, _: &Request, _: &Client) -> Result<Response> {
    let mut doc = provider(state)?.discovery();
    if let Some(map) = doc.as_object_mut() {
        map.insert("frontchannel_logout_supported".into(), false.into());
        map.insert("frontchannel_logout_session_supported".into(), false.into());
    }
    Ok(json(200, &doc).with_unique_header("Cache-Control", "public, max-age=300"))
}

/// `GET` the JWKS: every published public key (a retired key stays until
/// the ID tokens it signed have expired).
pub(super) fn get_jwks(state: &State, _: &Request, _: &Client) -> Result<Response> {
    let provider = provider(state)?;
    Ok(match provider.keys().jwks() {
        Ok(keys) => json(200, &keys).with_unique_header("Cache-Control", "public, max-age=300"),
        Err(e) => error_response(state, &e),
    })
}
