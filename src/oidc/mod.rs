//! The OpenID Provider's state and rules: the clients configured in
//! `gatehouse.toml` and those made on `/admin`, the signing keys, ID tokens and their claims,
//! authorization codes, access and refresh tokens, device codes, and the
//! discovery document. No HTTP types: the endpoints (`web/oidc/`) parse a
//! request, call one function of [`Provider`] and turn its answer (or its
//! [`OidcError`], which names the error the specifications give) into a
//! response.
//!
//! | file | owns |
//! | --- | --- |
//! | `clients.rs` | `[[clients]]`: parsing, validation, redirect URI matching, client secrets, extra claims |
//! | `registry.rs` | the clients an administrator makes (stored), found beside the file's: create, rotate the secret, delete |
//! | `keys.rs` | signing keys (generated on first use, sealed in the database, rotated) and the JWKS |
//! | `claims.rs` | ID token and userinfo claims: `sub`, `amr`, `acr`, `at_hash`, profile and extra claims |
//! | `grants.rs` | the rules: authorization requests, codes with PKCE, tokens, refresh rotation, device codes, introspection, revocation |
//! | `logout.rs` | telling clients a session ended: front-channel frames, back-channel logout tokens and their sender |
//! | `store.rs` | the [`Store`] trait the rules run on; `sqlite.rs` and `postgres.rs` implement it |
//! | `discovery.rs` | `/.well-known/openid-configuration` |
//! | `flows.rs`, `testing.rs` | (tests) the flows end to end on the real stores, and their helpers |
//!
//! Everything that grants access is stored as a SHA-256 hash (codes,
//! tokens, device codes, user codes), every single use is one conditional
//! statement (two instances cannot both redeem one code), and private keys
//! are sealed under a key derived from the server's `secrets`.

pub mod claims;
pub mod clients;
pub mod discovery;
pub mod grants;
pub mod keys;
pub mod logout;
mod postgres;
pub mod registry;
mod sqlite;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

pub use claims::{Method, Profile};
pub use clients::{Client, ClientError, ClientSpec, Clients, Pkce};
pub use grants::{
    Authentication, AuthorizationRequest, Decision, DeviceStart, Granted, Introspection,
    TokenResponse,
};
pub use keys::{Alg, KeyRing};
pub use postgres::PostgresOidc;
pub use registry::{Created, NewClient, Registry, RegistryError};
pub use sqlite::SqliteOidc;
pub use store::Store;

use crate::clock::Millis;
use crate::db::DbError;

/// The longest an authorization code may live (the `oidc.code_lifetime`
/// setting may only shorten it): a code crosses the browser once, and
/// RFC 6749 §4.1.2 recommends ten minutes at most; OAuth 2.0 Security BCP
/// practice is under a minute, which leaves a stolen code little time.
pub const MAX_CODE_LIFETIME: Duration = Duration::from_secs(60);

/// How long a device code (and its user code) waits for the user (RFC 8628
/// §3.2 `expires_in`).
pub const DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(600);

/// How often a device may poll the token endpoint (RFC 8628 §3.2
/// `interval`); each `slow_down` adds five seconds (§3.5).
pub const DEVICE_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// How long a back-channel logout notice may wait to be sent: one older
/// (queued while no provider ran, or by a command beside a server that
/// has none) is dropped unsent, and the reaper removes it.
pub const LOGOUT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The provider's lifetimes, as the settings give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OidcOptions {
    /// How long an authorization code may be redeemed (at most
    /// [`MAX_CODE_LIFETIME`]).
    pub code_lifetime: Duration,
    /// How long an access token is good for.
    pub access_token_lifetime: Duration,
    /// How long a refresh token is good for (each use gives a new one).
    pub refresh_token_lifetime: Duration,
    /// How long an ID token is good for (its `exp`).
    pub id_token_lifetime: Duration,
}

impl Default for OidcOptions {
    fn default() -> Self {
        Self {
            code_lifetime: Duration::from_secs(30),
            access_token_lifetime: Duration::from_secs(3600),
            refresh_token_lifetime: Duration::from_secs(30 * 86_400),
            id_token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// Why a provider operation did not happen. Each variant a client may see
/// is one of the errors RFC 6749 §5.2, RFC 8628 §3.5 and OpenID Connect
/// Core §3.1.2.6 name ([`OidcError::code`]); the detail is for the log.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// A parameter is missing, repeated, malformed or not allowed.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Unknown client, wrong secret, or no secret from a confidential one.
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// A code, refresh token or device code that is unknown, used, expired,
    /// for another client or redirect URI, or fails PKCE.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// The client may not use this grant (e.g. the device grant is off).
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// A grant type gatehouse does not offer.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// A response type other than `code`.
    #[error("unsupported_response_type: {0}")]
    UnsupportedResponseType(String),
    /// A scope that is unknown or more than was granted.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// The user may not use this client, or declined.
    #[error("access_denied: {0}")]
    AccessDenied(String),
    /// An access token (userinfo) or token hint that is not valid
    /// (RFC 6750 §3.1).
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// `prompt=none` but nobody is signed in (or the sign-in is too old).
    #[error("login_required: {0}")]
    LoginRequired(String),
    /// Device grant: the user has not answered yet.
    #[error("authorization_pending")]
    AuthorizationPending,
    /// Device grant: polled faster than the interval.
    #[error("slow_down")]
    SlowDown,
    /// Device grant: the device code ran out.
    #[error("expired_token")]
    ExpiredToken,
    /// A signing key could not be made, opened or used.
    #[error("signing key: {0}")]
    Key(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl OidcError {
    /// The `error` value the specifications give for this failure; server
    /// faults are `server_error` (RFC 6749 §4.1.2.1), their detail logged,
    /// never sent.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::UnsupportedResponseType(_) => "unsupported_response_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::AccessDenied(_) => "access_denied",
            Self::InvalidToken(_) => "invalid_token",
            Self::LoginRequired(_) => "login_required",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::Key(_) | Self::Db(_) => "server_error",
        }
    }

    /// Whether the database could not be reached (answered `503`, may
    /// succeed later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Db(e) if e.is_unavailable())
    }
}

impl From<rusqlite::Error> for OidcError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

impl From<::postgres::Error> for OidcError {
    fn from(e: ::postgres::Error) -> Self {
        Self::Db(DbError::Postgres(e))
    }
}

/// The OpenID Provider: the issuer, the clients, the lifetimes, the store
/// and the keys. Cheap to clone; one per server, shared by every request.
#[derive(Clone)]
pub struct Provider {
    issuer: Arc<str>,
    clients: Arc<Clients>,
    options: OidcOptions,
    store: Arc<dyn Store>,
    keys: KeyRing,
    bell: logout::Bell,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.issuer)
            .field("clients", &self.clients.all().len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// A provider at `issuer` (`public_url` exactly as configured: it is
    /// the `iss` of every token and the discovery document's `issuer`),
    /// sealing its keys with keys derived from `secrets`.
    pub fn new(
        issuer: &str,
        clients: Clients,
        options: OidcOptions,
        store: Arc<dyn Store>,
        secrets: &[Vec<u8>],
    ) -> Self {
        let keys = KeyRing::new(Arc::clone(&store), secrets, options.id_token_lifetime);
        Self {
            issuer: issuer.into(),
            clients: Arc::new(clients),
            options,
            store,
            keys,
            bell: logout::Bell::default(),
        }
    }

    /// What wakes the back-channel logout senders (rung whenever grants
    /// end in this process).
    pub fn bell(&self) -> &logout::Bell {
        &self.bell
    }

    /// The issuer, as every token names it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The clients of `gatehouse.toml` (those made on `/admin` are found
    /// with [`client`](Self::client) and listed by
    /// [`registry`](Self::registry)).
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// The lifetimes in force.
    pub fn options(&self) -> OidcOptions {
        self.options
    }

    /// The signing keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The store the rules run on.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Deletes up to `limit` expired codes, tokens, device codes, grants
    /// and retired keys past their publication (the reaper calls this
    /// until it returns less than `limit`).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn reap(&self, now: Millis, limit: usize) -> Result<usize, OidcError> {
        self.store.delete_expired(now, limit)
    }
}

/// A duration as whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A duration as whole seconds for `expires_in`, saturating.
pub(crate) fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod flows;
#[cfg(test)]
pub(crate) mod testing;
