//! What a relying party reads before anything else: the discovery
//! document and the JWKS. Both are public and cacheable for a short while
//! (a rotated key must reach relying parties within minutes).

use rouille::{Request, Response};

use super::{error_response, json, provider};
use crate::auth::proxy::Client;
use crate::web::error::Result;
use crate::web::state::State;

/// `GET /.well-known/openid-configuration`: the provider's document.
/// Every endpoint it names is a route here.
pub(super) fn get_discovery(state: &State, _: &Request, _: &Client) -> Result<Response> {
    let doc = provider(state)?.discovery();
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
