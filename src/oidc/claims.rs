//! What tokens say about the user: the ID token's claims (OpenID Connect
//! Core §2, §3.1.3.6), userinfo's (§5.3), the profile claims each scope
//! releases (§5.4), `amr` (RFC 8176) and `acr` from gatehouse's sign-in
//! methods, `at_hash`, and each client's extra claims.
//!
//! The profile (name, e-mail, groups) comes from the caller, who reads the
//! user: the provider sits beside `users` and does not reach into it.

use serde_json::{Map, Value, json};
use sha2::Digest;

use super::clients::Client;
use super::keys::Alg;
use super::store::GrantRow;
use crate::clock::Millis;
use crate::identity::two_factors;

/// What the caller knows of the user, for the claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// The username (`preferred_username`).
    pub username: String,
    /// The display name (`name`), if the user has one.
    pub name: Option<String>,
    /// The e-mail address, if any.
    pub email: Option<String>,
    /// Whether the address was verified.
    pub email_verified: bool,
    /// The names of every group the user is in.
    pub groups: Vec<String>,
}

/// One of gatehouse's sign-in methods, as the session records them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The password (`pwd`).
    Password,
    /// An authenticator code (`otp`).
    Otp,
    /// A passkey (`passkey`).
    Passkey,
    /// A recovery code (`recovery`).
    Recovery,
}

impl Method {
    /// The method a session records as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pwd" => Some(Self::Password),
            "otp" => Some(Self::Otp),
            "passkey" => Some(Self::Passkey),
            "recovery" => Some(Self::Recovery),
            _ => None,
        }
    }

    /// Its RFC 8176 `amr` value: a recovery code is a one-time code.
    fn amr(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::Otp | Self::Recovery => "otp",
            Self::Passkey => "hwk",
        }
    }
}

/// The `amr` claim: each method's value once, in the order used, then
/// `mfa` when they make two factors.
pub fn amr(methods: &[String]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for m in methods.iter().filter_map(|m| Method::parse(m)) {
        if !out.contains(&m.amr()) {
            out.push(m.amr());
        }
    }
    if two_factors(methods) {
        out.push("mfa");
    }
    out
}

/// The `acr` values gatehouse uses: `mfa` for a sign-in with two factors,
/// `pwd` for one with the password alone.
pub const ACR_VALUES: [&str; 2] = ["pwd", "mfa"];

/// The `acr` claim for these methods.
pub fn acr(methods: &[String]) -> &'static str {
    if two_factors(methods) { "mfa" } else { "pwd" }
}

/// `at_hash` (Core §3.1.3.6): the left half of the hash of the access
/// token, base64url; the hash is the one the signing algorithm uses
/// (SHA-256 for RS256 and ES256, SHA-512 for Ed25519).
pub fn at_hash(alg: Alg, access_token: &str) -> String {
    use base64::Engine as _;
    let digest: Vec<u8> = match alg {
        Alg::Rs256 | Alg::Es256 => sha2::Sha256::digest(access_token.as_bytes()).to_vec(),
        Alg::EdDsa => sha2::Sha512::digest(access_token.as_bytes()).to_vec(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// The profile claims `scopes` release, then the client's extra claims
/// (which no scope gates: an app's role mapping must work with the scopes
/// it already asks for).
pub fn profile_claims(profile: &Profile, scopes: &[String], client: &Client) -> Map<String, Value> {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let mut out = Map::new();
    if has("profile") {
        out.insert("preferred_username".into(), json!(profile.username));
        out.insert(
            "name".into(),
            json!(
                profile
                    .name
                    .clone()
                    .unwrap_or_else(|| profile.username.clone())
            ),
        );
    }
    if has("email")
        && let Some(email) = &profile.email
    {
        out.insert("email".into(), json!(email));
        out.insert("email_verified".into(), json!(profile.email_verified));
    }
    if has("groups") {
        out.insert("groups".into(), json!(profile.groups));
    }
    for (name, value) in client.extra_claims(&profile.groups) {
        out.insert(name, value);
    }
    out
}

/// Everything an ID token is made of.
pub struct IdToken<'a> {
    /// The issuer (`iss`).
    pub issuer: &'a str,
    /// The client (`aud`, its algorithm, whether claims go in).
    pub client: &'a Client,
    /// The user's subject identifier (`sub`).
    pub subject: &'a str,
    /// The grant (`auth_time`, `amr`, `acr`, `sid`, `nonce`, scopes).
    pub grant: &'a GrantRow,
    /// The user.
    pub profile: &'a Profile,
    /// The access token issued with it (`at_hash`).
    pub access_token: &'a str,
    /// Whether this is the first ID token of the grant (the one that
    /// carries the request's `nonce`; a refresh's does not).
    pub with_nonce: bool,
    /// Now.
    pub now: Millis,
    /// How long it is good for, in seconds.
    pub lifetime: i64,
}

impl IdToken<'_> {
    /// The claims, ready to sign.
    pub fn claims(&self) -> Map<String, Value> {
        let methods: Vec<String> = self.grant.methods.split(',').map(str::to_owned).collect();
        let iat = self.now / 1000;
        let mut c = Map::new();
        c.insert("iss".into(), json!(self.issuer));
        c.insert("sub".into(), json!(self.subject));
        c.insert("aud".into(), json!(self.client.id));
        c.insert("exp".into(), json!(iat.saturating_add(self.lifetime)));
        c.insert("iat".into(), json!(iat));
        c.insert("auth_time".into(), json!(self.grant.auth_time / 1000));
        if self.with_nonce
            && let Some(nonce) = &self.grant.nonce
        {
            c.insert("nonce".into(), json!(nonce));
        }
        c.insert("acr".into(), json!(acr(&methods)));
        c.insert("amr".into(), json!(amr(&methods)));
        c.insert("sid".into(), json!(self.grant.sid));
        c.insert(
            "at_hash".into(),
            json!(at_hash(self.client.signing_alg, self.access_token)),
        );
        if self.client.claims_in_id_token {
            let scopes = super::store::split_scopes(&self.grant.scopes);
            for (k, v) in profile_claims(self.profile, &scopes, self.client) {
                c.entry(k).or_insert(v);
            }
        }
        c
    }
}

/// The userinfo answer: `sub` and the profile claims the scopes release.
pub fn userinfo(subject: &str, profile: &Profile, scopes: &[String], client: &Client) -> Value {
    let mut c = profile_claims(profile, scopes, client);
    c.insert("sub".into(), json!(subject));
    Value::Object(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn amr_and_acr_follow_the_sign_in_methods() {
        assert_eq!(amr(&m(&["pwd"])), ["pwd"]);
        assert_eq!(acr(&m(&["pwd"])), "pwd");
        assert_eq!(amr(&m(&["pwd", "otp"])), ["pwd", "otp", "mfa"]);
        assert_eq!(amr(&m(&["pwd", "recovery"])), ["pwd", "otp", "mfa"]);
        assert_eq!(amr(&m(&["pwd", "otp", "recovery"])), ["pwd", "otp", "mfa"]);
        assert_eq!(amr(&m(&["passkey"])), ["hwk", "mfa"]);
        assert_eq!(acr(&m(&["passkey"])), "mfa");
        assert_eq!(amr(&m(&["pwd", "passkey"])), ["pwd", "hwk", "mfa"]);
        // Something the session never records grants nothing.
        assert_eq!(amr(&m(&["magic"])), Vec::<&str>::new());
        assert_eq!(acr(&m(&["magic"])), "pwd");
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_algorithms_hash() {
        // OpenID Connect Core's example pair (A.3: RS256).
        assert_eq!(
            at_hash(Alg::Rs256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(at_hash(Alg::EdDsa, "x").len(), 43, "half of SHA-512");
        assert_eq!(at_hash(Alg::Es256, "x").len(), 22, "half of SHA-256");
    }
}
