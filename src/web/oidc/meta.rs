//! What a relying party reads before anything else: the discovery
//! document and the JWKS. Both are public and cacheable for a short while
//! (a rotated key must reach relying parties within minutes).

use rouille::{Request, Response};

use super::{error_response, json, provider};
use crate::auth::proxy::Client;
use crate::oidc::discovery::DEVICE_GRANT_TYPE;
use crate::web::error::Result;
use crate::web::state::State;

/// `GET /.well-known/openid-configuration`.
///
/// The provider's document, less what this server does not route yet:
/// the device authorization endpoint (and its grant type), whose user
/// page (`/device`) is not built, and front-channel logout, whose frames
/// the sign-out page does not render. A relying party that read them
/// would send users to a `404` or wait for a logout call that never
/// comes; every endpoint left in the document is a route here.
pub(super) fn get_discovery(state: &State, _: &Request, _: &Client) -> Result<Response> {
    let mut doc = provider(state)?.discovery();
    if let Some(map) = doc.as_object_mut() {
        map.remove("device_authorization_endpoint");
        map.insert("frontchannel_logout_supported".into(), false.into());
        map.insert("frontchannel_logout_session_supported".into(), false.into());
        if let Some(grants) = map
            .get_mut("grant_types_supported")
            .and_then(serde_json::Value::as_array_mut)
        {
            grants.retain(|g| g.as_str() != Some(DEVICE_GRANT_TYPE));
        }
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
