//! The discovery document (`/.well-known/openid-configuration`, OpenID
//! Connect Discovery 1.0 §3): every field the specification requires, and
//! what gatehouse offers: the authorization code flow only, PKCE S256,
//! `client_secret_basic`, `client_secret_post` and `none`, RS256, ES256
//! and EdDSA, revocation, introspection, the device grant, RP-initiated,
//! front-channel and back-channel logout (both with `sid`). The endpoints' paths are declared here, once,
//! for `web/oidc/` to route.

use serde_json::{Value, json};

use super::Provider;
use super::claims::ACR_VALUES;
use super::grants::SCOPES;
use super::keys::Alg;

/// Where the discovery document is served (under the issuer).
pub const DISCOVERY: &str = "/.well-known/openid-configuration";
/// The authorization endpoint.
pub const AUTHORIZE: &str = "/oidc/authorize";
/// The token endpoint.
pub const TOKEN: &str = "/oidc/token";
/// The userinfo endpoint.
pub const USERINFO: &str = "/oidc/userinfo";
/// The JWKS.
pub const JWKS: &str = "/oidc/jwks";
/// Token revocation (RFC 7009).
pub const REVOKE: &str = "/oidc/revoke";
/// Token introspection (RFC 7662).
pub const INTROSPECT: &str = "/oidc/introspect";
/// RP-initiated logout.
pub const END_SESSION: &str = "/oidc/end_session";
/// The device authorization endpoint (RFC 8628 §3.1).
pub const DEVICE_AUTHORIZATION: &str = "/oidc/device_authorization";
/// Where a user types a device's code (RFC 8628 `verification_uri`).
pub const DEVICE: &str = "/device";

/// The device code grant's type (RFC 8628 §3.4).
pub const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The claims gatehouse may put in ID tokens and userinfo (before each
/// client's extra claims).
const CLAIMS: [&str; 16] = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "sid",
    "at_hash",
    "name",
    "preferred_username",
    "email",
    "email_verified",
    "groups",
];

impl Provider {
    /// The discovery document. `issuer` is the issuer exactly as
    /// configured; the endpoints are under it.
    pub fn discovery(&self) -> Value {
        let issuer = self.issuer();
        let base = issuer.trim_end_matches('/');
        let at = |path: &str| format!("{base}{path}");
        let mut claims: Vec<String> = CLAIMS.iter().map(|c| (*c).to_owned()).collect();
        for client in self.clients().all() {
            for (name, _) in &client.claims {
                if !claims.contains(name) {
                    claims.push(name.clone());
                }
            }
        }
        let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
        let secret_methods = ["client_secret_basic", "client_secret_post"];
        json!({
            "issuer": issuer,
            "authorization_endpoint": at(AUTHORIZE),
            "token_endpoint": at(TOKEN),
            "userinfo_endpoint": at(USERINFO),
            "jwks_uri": at(JWKS),
            "end_session_endpoint": at(END_SESSION),
            "revocation_endpoint": at(REVOKE),
            "introspection_endpoint": at(INTROSPECT),
            "device_authorization_endpoint": at(DEVICE_AUTHORIZATION),
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT_TYPE],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": Alg::ALL.map(Alg::as_str),
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": secret_methods,
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": claims,
            "acr_values_supported": ACR_VALUES,
            "prompt_values_supported": ["none", "login", "consent"],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "frontchannel_logout_supported": true,
            "frontchannel_logout_session_supported": true,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
        })
    }
}
