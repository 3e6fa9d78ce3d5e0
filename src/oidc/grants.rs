//! The provider's rules, one function per thing an endpoint does:
//!
//! - `authorize`: [`Provider::authorization`] checks the request (client,
//!   redirect URI, response type, scopes, PKCE), [`Provider::decide`] says
//!   what the signed-in session lacks, [`Provider::issue_code`] makes the
//!   code (hashed, single use, bound to client, redirect URI and PKCE
//!   challenge, valid under a minute).
//! - `token`: [`Provider::authenticate_client`] (`client_secret_basic` and
//!   `client_secret_post`, or `none` for public clients), then
//!   [`Provider::exchange_code`], [`Provider::refresh`] or
//!   [`Provider::device_token`]: a second use of a code, refresh token or
//!   device code revokes everything its first use issued.
//! - `device_authorization` and `/device`: [`Provider::device_start`],
//!   [`Provider::device_pending`], [`Provider::device_approve`],
//!   [`Provider::device_deny`].
//! - `userinfo`, `introspect`, `revoke`: [`Provider::userinfo`],
//!   [`Provider::introspect`], [`Provider::revoke`] (`end_session`'s
//!   [`Provider::end_session`] is `logout.rs`'s).
//!
//! Codes, tokens and device codes are 256 random bits, base64url; only
//! their SHA-256 is stored (they are too random for a hash to be reversed).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::claims::{IdToken, Profile, userinfo};
use super::clients::Client;
use super::store::{
    CodeClaim, CodeRow, CodeTake, DevicePoll, DeviceRow, DeviceStatus, GrantId, GrantRow, Hash,
    RefreshTake, TokenKind, TokenRow, join_scopes, split_scopes,
};
use super::{DEVICE_CODE_LIFETIME, DEVICE_POLL_INTERVAL, OidcError, Provider, millis, seconds};
use crate::auth::access;
use crate::clock::Millis;
use crate::identity::UserId;

/// The scopes gatehouse knows; others in a request are dropped (RFC 6749
/// §3.3 lets the server grant less than asked).
pub const SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

/// The longest `state`, `nonce` or `login_hint` accepted: they travel in
/// URLs and are stored; anything longer is a probe, not a client.
const MAX_PARAM: usize = 1024;

/// The user code alphabet (RFC 8628 §6.1): consonants only, so no word
/// can be spelt and nothing is mistaken for a digit; 20^8 ≈ 2^34 codes,
/// throttled and short-lived.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

/// What goes into a query component as is (RFC 3986 unreserved).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A new secret to hand out (256 random bits, base64url) and its hash.
fn secret() -> (String, Hash) {
    let s = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>());
    let h = hash(&s);
    (s, h)
}

fn hash(s: &str) -> Hash {
    Sha256::digest(s.as_bytes()).into()
}

/// Whether `s` looks like one of our secrets (43 base64url characters):
/// anything else is refused before the database is asked.
fn well_formed(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh value for a session's `sid` (kept in the session's data by the
/// caller, so it survives the id changing at sign-in): random, and never
/// the session id, which would let every app hijack the session.
pub fn new_sid() -> String {
    URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<16>())
}

/// `url` with `params` added to its query (the redirect back to a client).
pub fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let mut out = url.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        out.push_str(k);
        out.push('=');
        out.extend(utf8_percent_encode(v, QUERY));
        sep = '&';
    }
    out
}

/// The parameters of an authorization request, as received (each at most
/// once: the caller refuses repeats with `invalid_request`).
#[derive(Clone, Debug, Default)]
pub struct AuthorizationRequest {
    /// `client_id`.
    pub client_id: Option<String>,
    /// `redirect_uri`.
    pub redirect_uri: Option<String>,
    /// `response_type`.
    pub response_type: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `code_challenge`.
    pub code_challenge: Option<String>,
    /// `code_challenge_method`.
    pub code_challenge_method: Option<String>,
    /// `prompt`.
    pub prompt: Option<String>,
    /// `max_age`.
    pub max_age: Option<String>,
    /// `login_hint`.
    pub login_hint: Option<String>,
    /// `response_mode`.
    pub response_mode: Option<String>,
    /// `request` (request objects are not supported).
    pub request: Option<String>,
    /// `request_uri` (not supported).
    pub request_uri: Option<String>,
}

/// An authorization request that passed the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// The client.
    pub client_id: String,
    /// The redirect URI, as the request gave it (it matched a registered one).
    pub redirect_uri: String,
    /// The scopes that will be granted.
    pub scopes: Vec<String>,
    /// `state`, returned as is.
    pub state: Option<String>,
    /// `nonce`, put in the ID token.
    pub nonce: Option<String>,
    /// The S256 PKCE challenge.
    pub challenge: Option<String>,
    /// `prompt=none`: answer without showing anything.
    pub prompt_none: bool,
    /// `prompt=login`: the user signs in again.
    pub prompt_login: bool,
    /// `max_age`, in seconds.
    pub max_age: Option<u64>,
    /// `login_hint`, to fill the sign-in form's username.
    pub login_hint: Option<String>,
}

/// Why an authorization request fails, and where the answer goes.
#[derive(Debug)]
pub enum AuthorizationError {
    /// The client or its redirect URI cannot be trusted: show the error
    /// to the user, never redirect (that would make an open redirector).
    Show(OidcError),
    /// Send the error back to the client's redirect URI.
    Redirect {
        /// The (registered) redirect URI.
        redirect_uri: String,
        /// The request's `state`.
        state: Option<String>,
        /// The error.
        error: OidcError,
    },
}

impl AuthorizationError {
    /// The URL to send the browser to for a [`Redirect`](Self::Redirect)
    /// error (`error`, `error_description`, `state`, `iss`).
    pub fn redirect_url(&self, issuer: &str) -> Option<String> {
        let Self::Redirect {
            redirect_uri,
            state,
            error,
        } = self
        else {
            return None;
        };
        let description = error.to_string();
        let mut params = vec![("error", error.code()), ("error_description", &description)];
        if let Some(s) = state {
            params.push(("state", s));
        }
        params.push(("iss", issuer));
        Some(with_query(redirect_uri, &params))
    }
}

/// Who is signed in, as the session says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authentication {
    /// The user.
    pub user_id: UserId,
    /// The session's `sid` (see [`new_sid`]).
    pub sid: String,
    /// When they signed in.
    pub auth_time: Millis,
    /// How (the session's methods: `pwd`, `otp`, `passkey`, `recovery`):
    /// what the client's `two_factor` is judged on.
    pub methods: Vec<String>,
    /// What the moment at `auth_time` proved, when that is less than the
    /// session's `methods`: a password given again for a fresh sign-in
    /// (`prompt=login`, `max_age`). The ID token's `amr` and `acr` say
    /// this, never more than was given then.
    pub proved: Option<Vec<String>>,
    /// Their groups' names.
    pub groups: Vec<String>,
}

/// What an authorization request needs from the session.
#[derive(Debug)]
pub enum Decision {
    /// Nothing: issue the code.
    IssueCode,
    /// The user signs in (again), then the request continues.
    SignIn,
    /// The user adds a second factor to the session, then it continues.
    SecondFactor,
    /// The user may not use this client: a refusal page naming the app,
    /// never a code.
    Refuse,
    /// `prompt=none` and something would have to be shown: redirect back
    /// with this error.
    Redirect(OidcError),
}

/// The token endpoint's answer (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The refresh token, when one is issued.
    pub refresh_token: Option<String>,
    /// The ID token (when `openid` was granted).
    pub id_token: Option<String>,
    /// The scopes granted.
    pub scope: String,
}

impl TokenResponse {
    /// The JSON body.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        });
        if let Some(r) = &self.refresh_token {
            v["refresh_token"] = json!(r);
        }
        if let Some(t) = &self.id_token {
            v["id_token"] = json!(t);
        }
        v
    }
}

/// A started device authorization (RFC 8628 §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceStart {
    /// The device code (the device polls with it).
    pub device_code: String,
    /// The code the user types, `XXXX-XXXX`.
    pub user_code: String,
    /// Where the user types it.
    pub verification_uri: String,
    /// The same with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until both run out.
    pub expires_in: i64,
    /// Seconds between polls.
    pub interval: i64,
}

impl DeviceStart {
    /// The JSON body.
    pub fn to_json(&self) -> Value {
        json!({
            "device_code": self.device_code,
            "user_code": self.user_code,
            "verification_uri": self.verification_uri,
            "verification_uri_complete": self.verification_uri_complete,
            "expires_in": self.expires_in,
            "interval": self.interval,
        })
    }
}

/// A device authorization waiting for the user, for the `/device` page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingDevice {
    /// The client that asked.
    pub client_id: String,
    /// Its name.
    pub client_name: String,
    /// The scopes it asked for.
    pub scopes: Vec<String>,
}

/// An access token that is good, for userinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The user.
    pub user_id: UserId,
    /// The client it was issued to.
    pub client_id: String,
    /// The scopes it carries.
    pub scopes: Vec<String>,
    /// The session it came from.
    pub sid: String,
}

/// An introspection answer (RFC 7662 §2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Introspection {
    /// Not a live token of the asking client (nothing more is said).
    Inactive,
    /// A live token.
    Active {
        /// `scope`.
        scope: String,
        /// `client_id`.
        client_id: String,
        /// `sub`.
        sub: String,
        /// `exp`, `iat` (seconds).
        exp: i64,
        /// Issued at.
        iat: i64,
        /// `access_token` or `refresh_token` (`token_type` is `Bearer`).
        kind: TokenKind,
        /// `iss`.
        iss: String,
        /// The session's `sid`.
        sid: String,
    },
}

impl Introspection {
    /// The JSON body.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Inactive => json!({"active": false}),
            Self::Active {
                scope,
                client_id,
                sub,
                exp,
                iat,
                kind,
                iss,
                sid,
            } => json!({
                "active": true,
                "scope": scope,
                "client_id": client_id,
                "sub": sub,
                "exp": exp,
                "iat": iat,
                "aud": client_id,
                "iss": iss,
                "sid": sid,
                "token_type": "Bearer",
                "token_use": match kind { TokenKind::Access => "access_token", TokenKind::Refresh => "refresh_token" },
            }),
        }
    }
}

/// The client credentials a token request carried: HTTP Basic
/// (`client_secret_basic`, already form-decoded) and/or form fields.
#[derive(Clone, Debug, Default)]
pub struct ClientCredentials {
    /// From `Authorization: Basic`: id and secret.
    pub basic: Option<(String, String)>,
    /// The `client_id` form field.
    pub client_id: Option<String>,
    /// The `client_secret` form field.
    pub client_secret: Option<String>,
}

fn text_param(name: &str, v: &Option<String>) -> Result<Option<String>, OidcError> {
    match v {
        None => Ok(None),
        Some(s) if s.len() > MAX_PARAM || s.chars().any(char::is_control) => Err(
            OidcError::InvalidRequest(format!("{name} is too long or has control characters")),
        ),
        Some(s) => Ok(Some(s.clone())),
    }
}

/// Whether `s` is a PKCE S256 challenge: BASE64URL(SHA-256) is exactly
/// 43 characters of the base64url alphabet.
fn is_s256_challenge(s: &str) -> bool {
    well_formed(s)
}

/// The S256 challenge of a `code_verifier` (RFC 7636 §4.2), or `None` for
/// a verifier that breaks §4.1 (43 to 128 unreserved characters).
pub fn s256(verifier: &str) -> Option<String> {
    let ok = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    ok.then(|| URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())))
}

/// Normalises a user code as typed: letters upper-cased, dashes and
/// spaces dropped; `None` unless it is 8 letters of the alphabet.
pub fn normalise_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

fn new_user_code() -> String {
    let bytes = crate::crypto::random_bytes::<USER_CODE_LEN>();
    // 256 is not a multiple of 20: reject the top bytes so each letter is
    // equally likely (no bias to guess along).
    let mut out = String::with_capacity(USER_CODE_LEN + 1);
    let mut extra = bytes.into_iter();
    while out.replace('-', "").len() < USER_CODE_LEN {
        let b = match extra.next() {
            Some(b) => b,
            None => crate::crypto::random_bytes::<1>()[0],
        };
        if b >= 240 {
            continue;
        }
        if out.len() == 4 {
            out.push('-');
        }
        out.push(char::from(USER_CODE_ALPHABET[usize::from(b % 20)]));
    }
    out
}

impl Provider {
    /// Checks an authorization request (OpenID Connect Core §3.1.2.1-2).
    ///
    /// # Errors
    ///
    /// [`AuthorizationError::Show`] for an unknown client or a redirect
    /// URI it did not register; [`AuthorizationError::Redirect`] for the
    /// rest (`unsupported_response_type`, `invalid_scope`,
    /// `invalid_request` for PKCE, `plain` or bad parameters).
    pub fn authorization(
        &self,
        req: &AuthorizationRequest,
    ) -> Result<Authorization, AuthorizationError> {
        let show = |e: OidcError| AuthorizationError::Show(e);
        let client_id = req
            .client_id
            .as_deref()
            .ok_or_else(|| show(OidcError::InvalidRequest("client_id is missing".into())))?;
        let client = self
            .client(client_id)
            .map_err(show)?
            .ok_or_else(|| show(OidcError::InvalidClient("unknown client_id".into())))?;
        let given = req
            .redirect_uri
            .as_deref()
            .ok_or_else(|| show(OidcError::InvalidRequest("redirect_uri is missing".into())))?;
        if client.redirect_uri(given).is_none() {
            return Err(show(OidcError::InvalidRequest(
                "redirect_uri is not registered for this client".into(),
            )));
        }
        let state = text_param("state", &req.state).map_err(show)?;
        let back = |error: OidcError| AuthorizationError::Redirect {
            redirect_uri: given.to_owned(),
            state: state.clone(),
            error,
        };
        if req.request.is_some() || req.request_uri.is_some() {
            return Err(back(OidcError::InvalidRequest(
                "request objects are not supported".into(),
            )));
        }
        match req.response_mode.as_deref() {
            None | Some("query") => {}
            Some(_) => {
                return Err(back(OidcError::InvalidRequest(
                    "only response_mode=query is supported".into(),
                )));
            }
        }
        match req.response_type.as_deref() {
            Some("code") => {}
            None => {
                return Err(back(OidcError::InvalidRequest(
                    "response_type is missing".into(),
                )));
            }
            Some(_) => {
                return Err(back(OidcError::UnsupportedResponseType(
                    "only the authorization code flow (response_type=code) is offered".into(),
                )));
            }
        }
        let asked: Vec<&str> = req
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect();
        if !asked.contains(&"openid") {
            return Err(back(OidcError::InvalidScope(
                "the openid scope is required".into(),
            )));
        }
        let scopes = grantable(&client, asked.iter().copied());
        let challenge = match (
            req.code_challenge.as_deref(),
            req.code_challenge_method.as_deref(),
        ) {
            (None, None) if client.pkce_required() => {
                return Err(back(OidcError::InvalidRequest(
                    "this client must use PKCE (code_challenge with S256)".into(),
                )));
            }
            (None, None) => None,
            (Some(c), Some("S256")) if is_s256_challenge(c) => Some(c.to_owned()),
            (Some(_), Some("S256")) => {
                return Err(back(OidcError::InvalidRequest(
                    "code_challenge is not an S256 challenge (43 base64url characters)".into(),
                )));
            }
            (Some(_), None | Some("plain")) => {
                // A missing method means `plain` (RFC 7636 §4.3), which
                // protects nothing against a code seen in transit.
                return Err(back(OidcError::InvalidRequest(
                    "code_challenge_method must be S256 (plain is refused)".into(),
                )));
            }
            _ => {
                return Err(back(OidcError::InvalidRequest(
                    "code_challenge and code_challenge_method go together, method S256".into(),
                )));
            }
        };
        let prompts: Vec<&str> = req.prompt.as_deref().unwrap_or("").split(' ').collect();
        let prompt_none = prompts.contains(&"none");
        if prompt_none && prompts.iter().any(|p| !p.is_empty() && *p != "none") {
            return Err(back(OidcError::InvalidRequest(
                "prompt=none cannot be combined with other values".into(),
            )));
        }
        let max_age = match req.max_age.as_deref() {
            None => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                back(OidcError::InvalidRequest(
                    "max_age is not a number of seconds".into(),
                ))
            })?),
        };
        Ok(Authorization {
            client_id: client.id.clone(),
            redirect_uri: given.to_owned(),
            scopes,
            nonce: text_param("nonce", &req.nonce).map_err(back)?,
            login_hint: text_param("login_hint", &req.login_hint).map_err(back)?,
            state,
            challenge,
            prompt_none,
            prompt_login: prompts.contains(&"login"),
            max_age,
        })
    }

    /// Whether the request wants a fresh sign-in: `prompt=login`, or
    /// `max_age` (`max_age=0` is `prompt=login`, OpenID Connect Core
    /// §3.1.2.1).
    pub fn wants_fresh(authz: &Authorization) -> bool {
        authz.prompt_login || authz.max_age.is_some()
    }

    /// Whether an authentication at `auth_time` is fresh enough for
    /// `authz`: since `requested_at` for `prompt=login` and `max_age=0`
    /// (the moment the request first asked: the caller keeps it across the
    /// sign-in's round trip), within `max_age` seconds of `now` otherwise.
    pub fn fresh_enough(
        authz: &Authorization,
        auth_time: Millis,
        requested_at: Millis,
        now: Millis,
    ) -> bool {
        let since_request = authz.prompt_login || authz.max_age == Some(0);
        let too_old = authz.max_age.filter(|&max| max > 0).is_some_and(|max| {
            now.saturating_sub(auth_time) > millis(std::time::Duration::from_secs(max))
        });
        let before_request = since_request && auth_time < requested_at;
        !(too_old || before_request)
    }

    /// What `auth` still needs for `authz` (`None`: nobody is signed in).
    /// `requested_at` is when the request first arrived: with
    /// `prompt=login`, a sign-in before it does not count (the caller
    /// carries it across the sign-in, or the request would loop).
    /// `consent` needs nothing: the administrator configured the client.
    ///
    /// # Errors
    ///
    /// Database failures (reading a client made on `/admin`).
    pub fn decide(
        &self,
        authz: &Authorization,
        auth: Option<&Authentication>,
        requested_at: Millis,
        now: Millis,
    ) -> Result<Decision, OidcError> {
        // Read again: the client may have been deleted since the request
        // was checked (on this instance or another).
        let Some(client) = self.client(&authz.client_id)? else {
            return Ok(Decision::Refuse);
        };
        let Some(auth) = auth else {
            return Ok(if authz.prompt_none {
                Decision::Redirect(OidcError::LoginRequired("nobody is signed in".into()))
            } else {
                Decision::SignIn
            });
        };
        if !Self::fresh_enough(authz, auth.auth_time, requested_at, now) {
            return Ok(if authz.prompt_none {
                Decision::Redirect(OidcError::LoginRequired(
                    "the sign-in is older than max_age".into(),
                ))
            } else {
                Decision::SignIn
            });
        }
        Ok(
            match access::client_decision(
                &client.groups,
                client.two_factor,
                &auth.groups,
                &auth.methods,
            ) {
                access::Decision::Allow => Decision::IssueCode,
                access::Decision::SecondFactor if authz.prompt_none => {
                    Decision::Redirect(OidcError::LoginRequired(
                        "this app needs a sign-in with a second factor".into(),
                    ))
                }
                access::Decision::SecondFactor => Decision::SecondFactor,
                access::Decision::Deny | access::Decision::SignIn => Decision::Refuse,
            },
        )
    }

    /// Issues a code for `authz` to `auth`, and returns the URL to send
    /// the browser back to (`code`, `state`, `iss`: RFC 9207).
    ///
    /// # Errors
    ///
    /// [`OidcError::AccessDenied`] unless [`decide`](Self::decide) says
    /// [`Decision::IssueCode`] (checked again here, so no caller can skip
    /// it); database failures.
    pub fn issue_code(
        &self,
        authz: &Authorization,
        auth: &Authentication,
        requested_at: Millis,
        now: Millis,
    ) -> Result<String, OidcError> {
        if !matches!(
            self.decide(authz, Some(auth), requested_at, now)?,
            Decision::IssueCode
        ) {
            return Err(OidcError::AccessDenied(
                "the session does not satisfy this client".into(),
            ));
        }
        let expires_at = now.saturating_add(millis(self.options().code_lifetime));
        let grant = GrantRow {
            id: GrantId::random(),
            client_id: authz.client_id.clone(),
            user_id: auth.user_id,
            sid: auth.sid.clone(),
            scopes: join_scopes(&authz.scopes),
            nonce: authz.nonce.clone(),
            auth_time: auth.auth_time,
            methods: auth.proved.as_ref().unwrap_or(&auth.methods).join(","),
            created_at: now,
            expires_at,
        };
        let (code, code_hash) = secret();
        self.store().code_create(
            &grant,
            &CodeRow {
                hash: code_hash,
                grant_id: grant.id,
                redirect_uri: authz.redirect_uri.clone(),
                challenge: authz.challenge.clone(),
                expires_at,
            },
        )?;
        let mut params = vec![("code", code.as_str())];
        if let Some(s) = &authz.state {
            params.push(("state", s));
        }
        params.push(("iss", self.issuer()));
        Ok(with_query(&authz.redirect_uri, &params))
    }

    /// Authenticates the client of a token, introspection or revocation
    /// request: a confidential client by its secret, through Basic or the
    /// form (both accepted for every client, one at a time); a public
    /// client by its id alone.
    ///
    /// # Errors
    ///
    /// [`OidcError::InvalidRequest`] for two methods at once;
    /// [`OidcError::InvalidClient`] for anything else that fails (the
    /// caller throttles and logs these).
    pub fn authenticate_client(
        &self,
        creds: &ClientCredentials,
    ) -> Result<Cow<'_, Client>, OidcError> {
        let (id, secret) = match (&creds.basic, &creds.client_secret) {
            (Some(_), Some(_)) => {
                return Err(OidcError::InvalidRequest(
                    "client credentials in both the Authorization header and the body".into(),
                ));
            }
            (Some((id, secret)), None) => {
                if creds.client_id.as_ref().is_some_and(|c| c != id) {
                    return Err(OidcError::InvalidRequest(
                        "client_id differs from the Authorization header's".into(),
                    ));
                }
                (id.as_str(), Some(secret.as_str()))
            }
            (None, secret) => {
                let id = creds
                    .client_id
                    .as_deref()
                    .ok_or_else(|| OidcError::InvalidClient("no client credentials".into()))?;
                (id, secret.as_deref())
            }
        };
        let client = self
            .client(id)?
            .ok_or_else(|| OidcError::InvalidClient("unknown client".into()))?;
        match (client.is_public(), secret) {
            (true, None) => Ok(client),
            (true, Some(_)) => Err(OidcError::InvalidClient(
                "a public client has no secret".into(),
            )),
            (false, None) => Err(OidcError::InvalidClient(
                "the client secret is missing".into(),
            )),
            (false, Some(s)) if client.verify_secret(s) => Ok(client),
            (false, Some(_)) => Err(OidcError::InvalidClient("wrong client secret".into())),
        }
    }

    /// Redeems a code (the `authorization_code` grant). `profile` reads
    /// the user: `None` when they are gone or disabled (the grant is then
    /// revoked and the answer is `invalid_grant`).
    ///
    /// # Errors
    ///
    /// `invalid_grant` for a code that is unknown, expired, used (a reuse
    /// also revokes what its first use issued), or for another client,
    /// redirect URI or verifier; `invalid_request` for a malformed
    /// verifier; database failures.
    pub fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
        profile: impl FnOnce(UserId) -> Result<Option<Profile>, OidcError>,
        now: Millis,
    ) -> Result<TokenResponse, OidcError> {
        if !well_formed(code) {
            return Err(OidcError::InvalidGrant("unknown code".into()));
        }
        let challenge = match code_verifier {
            None => None,
            Some(v) => Some(s256(v).ok_or_else(|| {
                OidcError::InvalidRequest(
                    "code_verifier must be 43-128 unreserved characters".into(),
                )
            })?),
        };
        let claim = CodeClaim {
            hash: &hash(code),
            client_id: &client.id,
            redirect_uri,
            challenge: challenge.as_deref(),
        };
        let grant = match self.store().code_take(&claim, now)? {
            CodeTake::Taken(grant) => grant,
            CodeTake::Reused(grant) => {
                // RFC 6749 §4.1.2: the code leaked; what it gave is revoked.
                let revoked = self.store().grant_delete(&grant)?;
                crate::logging::line(&format!(
                    "oidc code reused client={} revoked={revoked}",
                    crate::logging::quote(&client.id)
                ));
                return Err(OidcError::InvalidGrant("the code was already used".into()));
            }
            CodeTake::Mismatch(what) => {
                return Err(OidcError::InvalidGrant(format!(
                    "the code's {what} does not match"
                )));
            }
            CodeTake::Expired => return Err(OidcError::InvalidGrant("the code expired".into())),
            CodeTake::Unknown => return Err(OidcError::InvalidGrant("unknown code".into())),
        };
        self.tokens_for(client, &grant, None, profile, true, now)
    }

    /// Uses a refresh token (the `refresh_token` grant): it rotates (a new
    /// one replaces it), and one used twice revokes its whole family.
    ///
    /// # Errors
    ///
    /// `invalid_grant` for a refresh token that is unknown, expired, used
    /// or another client's; `invalid_scope` for more scope than it
    /// carries; `unauthorized_client` when the client may no longer have
    /// refresh tokens; database failures.
    pub fn refresh(
        &self,
        client: &Client,
        refresh_token: &str,
        scope: Option<&str>,
        profile: impl FnOnce(UserId) -> Result<Option<Profile>, OidcError>,
        now: Millis,
    ) -> Result<TokenResponse, OidcError> {
        if !client.offline_access {
            return Err(OidcError::UnauthorizedClient(
                "this client may not use refresh tokens".into(),
            ));
        }
        if !well_formed(refresh_token) {
            return Err(OidcError::InvalidGrant("unknown refresh token".into()));
        }
        let h = hash(refresh_token);
        // The scope is checked before the token is used up, so a client
        // asking for too much keeps its token.
        let narrowed = match scope {
            None => None,
            Some(s) => {
                let asked: Vec<String> = split_scopes(s);
                if let Some((t, _)) = self.store().token_find(&h)? {
                    let held = split_scopes(&t.scopes);
                    if let Some(extra) = asked.iter().find(|a| !held.contains(a)) {
                        return Err(OidcError::InvalidScope(format!("{extra} was not granted")));
                    }
                }
                Some(asked)
            }
        };
        let (token, grant) = match self.store().refresh_take(&h, &client.id, now)? {
            RefreshTake::Taken(taken) => *taken,
            RefreshTake::Reused(grant) => {
                let revoked = self.store().grant_delete(&grant)?;
                crate::logging::line(&format!(
                    "oidc refresh token reused client={} revoked={revoked}",
                    crate::logging::quote(&client.id)
                ));
                return Err(OidcError::InvalidGrant(
                    "the refresh token was already used".into(),
                ));
            }
            RefreshTake::OtherClient => {
                return Err(OidcError::InvalidGrant(
                    "the refresh token was issued to another client".into(),
                ));
            }
            RefreshTake::Expired => {
                return Err(OidcError::InvalidGrant("the refresh token expired".into()));
            }
            RefreshTake::Unknown => {
                return Err(OidcError::InvalidGrant("unknown refresh token".into()));
            }
        };
        let scopes = narrowed.unwrap_or_else(|| split_scopes(&token.scopes));
        self.tokens_for(client, &grant, Some(scopes), profile, false, now)
    }

    /// Issues an access token, a refresh token (when the client may have
    /// one and `offline_access` was granted) and an ID token (when
    /// `openid` was) under `grant`.
    fn tokens_for(
        &self,
        client: &Client,
        grant: &GrantRow,
        scopes: Option<Vec<String>>,
        profile: impl FnOnce(UserId) -> Result<Option<Profile>, OidcError>,
        first: bool,
        now: Millis,
    ) -> Result<TokenResponse, OidcError> {
        let scopes = scopes.unwrap_or_else(|| split_scopes(&grant.scopes));
        let Some(profile) = profile(grant.user_id)? else {
            self.store().grant_delete(&grant.id)?;
            return Err(OidcError::InvalidGrant(
                "the user is disabled or gone".into(),
            ));
        };
        if !may_use(client, &profile) {
            self.store().grant_delete(&grant.id)?;
            return Err(OidcError::InvalidGrant(
                "the user may no longer use this client".into(),
            ));
        }
        let options = self.options();
        let scope = join_scopes(&scopes);
        let (access, access_hash) = secret();
        let stored = |hash: Hash, kind: TokenKind, lifetime| TokenRow {
            hash,
            grant_id: grant.id,
            kind,
            scopes: scope.clone(),
            created_at: now,
            expires_at: now.saturating_add(millis(lifetime)),
            used_at: None,
        };
        let gone = || OidcError::InvalidGrant("the grant was revoked".into());
        if !self.store().token_create(&stored(
            access_hash,
            TokenKind::Access,
            options.access_token_lifetime,
        ))? {
            return Err(gone());
        }
        let refresh_token = if client.offline_access && scopes.iter().any(|s| s == "offline_access")
        {
            let (refresh, refresh_hash) = secret();
            if !self.store().token_create(&stored(
                refresh_hash,
                TokenKind::Refresh,
                options.refresh_token_lifetime,
            ))? {
                return Err(gone());
            }
            Some(refresh)
        } else {
            None
        };
        let id_token = if scopes.iter().any(|s| s == "openid") {
            let subject = self.subject(grant.user_id)?;
            let scoped = GrantRow {
                scopes: scope.clone(),
                ..grant.clone()
            };
            let claims = IdToken {
                issuer: self.issuer(),
                client,
                subject: &subject,
                grant: &scoped,
                profile: &profile,
                access_token: &access,
                with_nonce: first,
                now,
                lifetime: seconds(options.id_token_lifetime),
            }
            .claims();
            Some(self.keys().signing_key(client.signing_alg)?.sign(&claims)?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token: access,
            expires_in: seconds(options.access_token_lifetime),
            refresh_token,
            id_token,
            scope,
        })
    }

    /// The user's subject identifier (`sub`): random, made on first need
    /// and kept, so it is stable, says nothing of the username, and is
    /// never given to anyone else.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn subject(&self, user: UserId) -> Result<String, OidcError> {
        let fresh = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<16>());
        self.store().subject(user, &fresh)
    }

    /// Starts a device authorization (RFC 8628 §3.1) for `client`.
    ///
    /// # Errors
    ///
    /// `unauthorized_client` unless the client enabled `device_grant`;
    /// `invalid_scope` without `openid`; database failures.
    pub fn device_start(
        &self,
        client: &Client,
        scope: Option<&str>,
        now: Millis,
    ) -> Result<DeviceStart, OidcError> {
        if !client.device_grant {
            return Err(OidcError::UnauthorizedClient(
                "this client may not use the device grant".into(),
            ));
        }
        let asked: Vec<&str> = scope.unwrap_or("openid").split(' ').collect();
        if !asked.contains(&"openid") {
            return Err(OidcError::InvalidScope(
                "the openid scope is required".into(),
            ));
        }
        let scopes = grantable(client, asked.into_iter());
        let (device_code, device_hash) = secret();
        // A clash of user codes is unlikely (2^34 of them, ten minutes);
        // a few tries make it impossible in practice.
        for _ in 0..8 {
            let user_code = new_user_code();
            let normal = normalise_user_code(&user_code).expect("made from the alphabet");
            let row = DeviceRow {
                device_hash,
                user_code_hash: hash(&normal),
                client_id: client.id.clone(),
                scopes: join_scopes(&scopes),
                created_at: now,
                expires_at: now.saturating_add(millis(DEVICE_CODE_LIFETIME)),
                interval_ms: millis(DEVICE_POLL_INTERVAL),
                last_poll_at: None,
                status: DeviceStatus::Pending,
                grant_id: None,
            };
            if self.store().device_create(&row)? {
                let verification_uri = format!("{}/device", self.issuer().trim_end_matches('/'));
                return Ok(DeviceStart {
                    verification_uri_complete: with_query(
                        &verification_uri,
                        &[("user_code", &user_code)],
                    ),
                    verification_uri,
                    device_code,
                    user_code,
                    expires_in: seconds(DEVICE_CODE_LIFETIME),
                    interval: seconds(DEVICE_POLL_INTERVAL),
                });
            }
        }
        Err(OidcError::Key("could not make a unique user code".into()))
    }

    /// The pending device authorization a typed user code names, for the
    /// `/device` page to show before the user approves (the caller
    /// throttles wrong codes per user and address).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn device_pending(
        &self,
        typed: &str,
        now: Millis,
    ) -> Result<Option<PendingDevice>, OidcError> {
        let Some((_, row, client)) = self.device_found(typed, now)? else {
            return Ok(None);
        };
        Ok(Some(PendingDevice {
            client_id: client.id.clone(),
            client_name: client.name.clone(),
            scopes: split_scopes(&row.scopes),
        }))
    }

    /// The pending device authorization a user typed the code of: its
    /// code's hash, its row and its client (`None` for a code of the wrong
    /// shape, an unknown or expired one, or a client no longer configured).
    ///
    /// # Errors
    ///
    /// Database failures.
    fn device_found(
        &self,
        typed: &str,
        now: Millis,
    ) -> Result<Option<(Hash, DeviceRow, Cow<'_, Client>)>, OidcError> {
        let Some(code) = normalise_user_code(typed) else {
            return Ok(None);
        };
        let user_code = hash(&code);
        let Some(row) = self.store().device_find(&user_code, now)? else {
            return Ok(None);
        };
        Ok(self
            .client(&row.client_id)?
            .map(|client| (user_code, row, client)))
    }

    /// The signed-in user approves the device authorization of `typed`.
    /// Returns `false` when there is none pending under that code.
    ///
    /// # Errors
    ///
    /// `access_denied` when the user may not use the client or the
    /// session lacks the second factor it requires; database failures.
    pub fn device_approve(
        &self,
        typed: &str,
        auth: &Authentication,
        now: Millis,
    ) -> Result<bool, OidcError> {
        let Some((user_code, row, client)) = self.device_found(typed, now)? else {
            return Ok(false);
        };
        match access::client_decision(
            &client.groups,
            client.two_factor,
            &auth.groups,
            &auth.methods,
        ) {
            access::Decision::Allow => {}
            access::Decision::SecondFactor => {
                return Err(OidcError::AccessDenied(format!(
                    "{} needs a sign-in with a second factor",
                    client.name
                )));
            }
            access::Decision::Deny | access::Decision::SignIn => {
                return Err(OidcError::AccessDenied(format!(
                    "this user may not use {}",
                    client.name
                )));
            }
        }
        let grant = GrantRow {
            id: GrantId::random(),
            client_id: client.id.clone(),
            user_id: auth.user_id,
            sid: auth.sid.clone(),
            scopes: row.scopes,
            nonce: None,
            auth_time: auth.auth_time,
            methods: auth.proved.as_ref().unwrap_or(&auth.methods).join(","),
            created_at: now,
            expires_at: row.expires_at,
        };
        self.store().device_approve(&user_code, &grant, now)
    }

    /// The user, in `groups`, declines the device authorization of
    /// `typed`: only a user who could allow it (one the client admits; a
    /// second factor is not needed to say no).
    ///
    /// # Errors
    ///
    /// `access_denied` for a user the client does not admit; database
    /// failures.
    pub fn device_deny(
        &self,
        typed: &str,
        groups: &[String],
        now: Millis,
    ) -> Result<bool, OidcError> {
        let Some((user_code, _, client)) = self.device_found(typed, now)? else {
            return Ok(false);
        };
        if access::client_decision(&client.groups, false, groups, &[]) != access::Decision::Allow {
            return Err(OidcError::AccessDenied(format!(
                "this user may not use {}",
                client.name
            )));
        }
        self.store().device_deny(&user_code, now)
    }

    /// A device polls (the `urn:ietf:params:oauth:grant-type:device_code`
    /// grant).
    ///
    /// # Errors
    ///
    /// `authorization_pending`, `slow_down`, `access_denied`,
    /// `expired_token` (RFC 8628 §3.5); `invalid_grant` for an unknown
    /// device code or one collected before (which revokes what it gave);
    /// database failures.
    pub fn device_token(
        &self,
        client: &Client,
        device_code: &str,
        profile: impl FnOnce(UserId) -> Result<Option<Profile>, OidcError>,
        now: Millis,
    ) -> Result<TokenResponse, OidcError> {
        if !client.device_grant {
            return Err(OidcError::UnauthorizedClient(
                "this client may not use the device grant".into(),
            ));
        }
        if !well_formed(device_code) {
            return Err(OidcError::InvalidGrant("unknown device code".into()));
        }
        match self
            .store()
            .device_poll(&hash(device_code), &client.id, now)?
        {
            DevicePoll::Approved(grant) => {
                self.tokens_for(client, &grant, None, profile, true, now)
            }
            DevicePoll::Pending => Err(OidcError::AuthorizationPending),
            DevicePoll::SlowDown => Err(OidcError::SlowDown),
            DevicePoll::Denied => Err(OidcError::AccessDenied("the user declined".into())),
            DevicePoll::Expired => Err(OidcError::ExpiredToken),
            DevicePoll::Reused(grant) => {
                self.store().grant_delete(&grant)?;
                Err(OidcError::InvalidGrant(
                    "the device code was already used".into(),
                ))
            }
            DevicePoll::Unknown => Err(OidcError::InvalidGrant("unknown device code".into())),
        }
    }

    /// The grant behind a live access token (for userinfo).
    ///
    /// # Errors
    ///
    /// [`OidcError::InvalidToken`] for a token that is unknown, expired,
    /// revoked or a refresh token; database failures.
    pub fn userinfo_grant(&self, access_token: &str, now: Millis) -> Result<Granted, OidcError> {
        let invalid = || OidcError::InvalidToken("the access token is not valid".into());
        if !well_formed(access_token) {
            return Err(invalid());
        }
        match self.store().token_find(&hash(access_token))? {
            Some((t, g)) if t.kind == TokenKind::Access && t.expires_at > now => Ok(Granted {
                user_id: g.user_id,
                client_id: g.client_id,
                scopes: split_scopes(&t.scopes),
                sid: g.sid,
            }),
            _ => Err(invalid()),
        }
    }

    /// The userinfo answer for `granted` (from
    /// [`userinfo_grant`](Self::userinfo_grant)) and the user's profile.
    ///
    /// # Errors
    ///
    /// [`OidcError::InvalidToken`] when the client is no longer
    /// configured; database failures.
    pub fn userinfo(&self, granted: &Granted, profile: &Profile) -> Result<Value, OidcError> {
        let client = self
            .client(&granted.client_id)?
            .ok_or_else(|| OidcError::InvalidToken("the client is gone".into()))?;
        if !may_use(&client, profile) {
            return Err(OidcError::InvalidToken(
                "the user may no longer use this client".into(),
            ));
        }
        let subject = self.subject(granted.user_id)?;
        Ok(userinfo(&subject, profile, &granted.scopes, &client))
    }

    /// Introspects `token` for `client` (RFC 7662): active only for a
    /// live token issued to that client (others' tokens are inactive, so
    /// introspection is no oracle for other clients' tokens) whose user
    /// still has a `profile` (not disabled or removed) and may still use
    /// the client (still in its `groups`): userinfo and refresh refuse
    /// the others too.
    ///
    /// # Errors
    ///
    /// `unauthorized_client` for a public client (RFC 7662 §2.1 wants the
    /// caller authenticated, and a public client's id is no proof);
    /// database failures.
    pub fn introspect(
        &self,
        client: &Client,
        token: &str,
        profile: impl FnOnce(UserId) -> Result<Option<Profile>, OidcError>,
        now: Millis,
    ) -> Result<Introspection, OidcError> {
        if client.is_public() {
            return Err(OidcError::UnauthorizedClient(
                "introspection is for confidential clients".into(),
            ));
        }
        if !well_formed(token) {
            return Ok(Introspection::Inactive);
        }
        let Some((t, g)) = self.store().token_find(&hash(token))? else {
            return Ok(Introspection::Inactive);
        };
        if g.client_id != client.id
            || t.expires_at <= now
            || t.used_at.is_some()
            || !profile(g.user_id)?.is_some_and(|p| may_use(client, &p))
        {
            return Ok(Introspection::Inactive);
        }
        Ok(Introspection::Active {
            scope: t.scopes,
            client_id: g.client_id,
            sub: self.subject(g.user_id)?,
            exp: t.expires_at / 1000,
            iat: t.created_at / 1000,
            kind: t.kind,
            iss: self.issuer().to_owned(),
            sid: g.sid,
        })
    }

    /// Revokes `token` for `client` (RFC 7009): a refresh token ends its
    /// whole grant (§2.1: the access tokens of that grant too); an access
    /// token ends alone. A token that is unknown or another client's is
    /// left alone, and the answer is the same (`200` either way).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn revoke(&self, client: &Client, token: &str) -> Result<(), OidcError> {
        if !well_formed(token) {
            return Ok(());
        }
        let h = hash(token);
        if let Some((t, g)) = self.store().token_find(&h)?
            && g.client_id == client.id
        {
            match t.kind {
                TokenKind::Refresh => self.store().grant_delete(&g.id)?,
                TokenKind::Access => self.store().token_delete(&h)?,
            };
        }
        Ok(())
    }

    /// Where `end_session` may send the browser afterwards: the
    /// `post_logout_redirect_uri` when it is registered (exactly) for the
    /// client named by `client_id` or by the `aud` of `id_token_hint` (a
    /// token this provider signed, expired or not), with `state` added.
    /// `None`: show gatehouse's own signed-out page.
    pub fn post_logout_redirect(
        &self,
        client_id: Option<&str>,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
        state: Option<&str>,
    ) -> Option<String> {
        let from_hint = id_token_hint
            .and_then(|t| self.keys().verify(t).ok())
            .and_then(|claims| claims.get("aud").and_then(Value::as_str).map(str::to_owned));
        let id = match (client_id, from_hint.as_deref()) {
            (Some(a), Some(b)) if a != b => return None,
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => return None,
        };
        // A store that fails sends nobody anywhere: gatehouse's own page.
        let client = self.client(id).ok().flatten()?;
        if !client.post_logout_redirect_uri(post_logout_redirect_uri) {
            return None;
        }
        Some(match state {
            Some(s) => with_query(post_logout_redirect_uri, &[("state", s)]),
            None => post_logout_redirect_uri.to_owned(),
        })
    }

    /// Ends a user's grants: all (password change, disable), or one
    /// client's (revoked from the account page); the clients that take
    /// back-channel logout notices are told. Returns how many.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn revoke_user(&self, user: UserId, client_id: Option<&str>) -> Result<usize, OidcError> {
        let n = self
            .store()
            .grants_delete_for_user(user, client_id, crate::clock::now())?;
        self.bell().ring();
        Ok(n)
    }
}

/// Whether the user of `profile` may still use `client` (is in its
/// `groups`, when it names any): what a token of theirs needs to stay
/// live after an administrator takes them out of the group. The second
/// factor was judged at the sign-in that made the grant.
fn may_use(client: &Client, profile: &Profile) -> bool {
    access::client_decision(&client.groups, false, &profile.groups, &[]) == access::Decision::Allow
}

/// The scopes of `asked` that `client` may have: the known ones, less
/// `offline_access` for a client that may not have refresh tokens.
fn grantable<'a>(client: &Client, asked: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in asked {
        if SCOPES.contains(&s)
            && (s != "offline_access" || client.offline_access)
            && !out.iter().any(|o| o == s)
        {
            out.push(s.to_owned());
        }
    }
    out
}
