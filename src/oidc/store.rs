//! What the provider keeps, and the [`Store`] trait its rules run on:
//! one method per statement (or short transaction), implemented for
//! SQLite (`sqlite.rs`) and PostgreSQL (`postgres.rs`) beside the users,
//! so every instance on one database shares codes, tokens and keys.
//!
//! A grant is one sign-in's authorization of one client: the code (or the
//! device approval) and every token issued from it hang off it, so
//! deleting the grant (code reuse, refresh token reuse, revocation, sign
//! out) ends them all in one statement, through `ON DELETE CASCADE`.
//! Every single use (a code, a refresh token, a device code) is one
//! conditional `UPDATE ... RETURNING`: of two instances racing on one, the
//! database lets exactly one through.

use std::fmt;

use super::OidcError;
use crate::clock::Millis;
use crate::identity::UserId;

/// A grant's id: 16 random bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrantId(pub [u8; 16]);

impl GrantId {
    /// A new random id.
    pub fn random() -> Self {
        Self(crate::crypto::random_bytes())
    }

    /// The id as lower-case hex (for the account page's "revoke" buttons).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`to_hex`](Self::to_hex)'s form.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }

    pub(super) fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Debug for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantId({})", self.to_hex())
    }
}

/// A SHA-256 hash of a secret the provider handed out (code, token,
/// device code, user code): only the hash is stored.
pub type Hash = [u8; 32];

/// One sign-in's authorization of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRow {
    /// Its id.
    pub id: GrantId,
    /// The client it was given to.
    pub client_id: String,
    /// The user who gave it.
    pub user_id: UserId,
    /// The gatehouse session it came from (`sid`); signing out ends it.
    pub sid: String,
    /// The scopes granted, space-separated.
    pub scopes: String,
    /// The authorization request's `nonce`, for the first ID token.
    pub nonce: Option<String>,
    /// When the user signed in.
    pub auth_time: Millis,
    /// How they signed in: gatehouse's session methods, comma-separated.
    pub methods: String,
    /// When it was made.
    pub created_at: Millis,
    /// When the last thing hanging off it runs out.
    pub expires_at: Millis,
}

/// An authorization code, hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRow {
    /// SHA-256 of the code.
    pub hash: Hash,
    /// The grant it redeems into.
    pub grant_id: GrantId,
    /// The redirect URI of the request, exactly as sent (the token
    /// request must repeat it).
    pub redirect_uri: String,
    /// The S256 PKCE challenge, if the request had one.
    pub challenge: Option<String>,
    /// Until when it may be redeemed.
    pub expires_at: Millis,
}

/// A code's row as read to say why it was not redeemed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeState {
    /// Its grant.
    pub grant: GrantId,
    /// When it was used, if it was.
    pub used_at: Option<Millis>,
    /// When it runs out.
    pub expires_at: Millis,
    /// The redirect URI it is bound to.
    pub redirect_uri: String,
    /// Its PKCE challenge.
    pub challenge: Option<String>,
    /// The client it was issued to.
    pub client_id: String,
}

/// What redeeming a code needs to match, all in the one statement that
/// marks it used: a wrong client, redirect URI or verifier uses nothing up.
#[derive(Clone, Copy, Debug)]
pub struct CodeClaim<'a> {
    /// SHA-256 of the code presented.
    pub hash: &'a Hash,
    /// The authenticated client.
    pub client_id: &'a str,
    /// The redirect URI the token request repeats.
    pub redirect_uri: &'a str,
    /// `BASE64URL(SHA256(code_verifier))`, when a verifier was sent.
    pub challenge: Option<&'a str>,
}

/// What a code's redemption came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeTake {
    /// Redeemed now, for this grant.
    Taken(GrantRow),
    /// Redeemed before: a replay; the grant should be revoked.
    Reused(GrantId),
    /// Exists, unused, but for another client, redirect URI or verifier.
    Mismatch(&'static str),
    /// Ran out.
    Expired,
    /// No such code.
    Unknown,
}

/// Access or refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An access token (userinfo, introspection).
    Access,
    /// A refresh token (single use, rotates).
    Refresh,
}

impl TokenKind {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }

    /// The kind stored as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(Self::Access),
            "refresh" => Some(Self::Refresh),
            _ => None,
        }
    }
}

/// An access or refresh token, hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// SHA-256 of the token.
    pub hash: Hash,
    /// The grant it belongs to.
    pub grant_id: GrantId,
    /// Which kind.
    pub kind: TokenKind,
    /// The scopes it carries, space-separated.
    pub scopes: String,
    /// When it was issued.
    pub created_at: Millis,
    /// When it runs out.
    pub expires_at: Millis,
    /// When a refresh token was used (rotated).
    pub used_at: Option<Millis>,
}

/// What presenting a refresh token came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshTake {
    /// Used now: the token (its scopes) and its grant.
    Taken(Box<(TokenRow, GrantRow)>),
    /// Used before: a replay; the family should be revoked.
    Reused(GrantId),
    /// A live refresh token of another client.
    OtherClient,
    /// Ran out.
    Expired,
    /// No such refresh token.
    Unknown,
}

/// Where a device authorization stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Waiting for the user.
    Pending,
    /// The user said yes; the device has not collected its tokens yet.
    Approved,
    /// The user said no.
    Denied,
    /// The device collected its tokens.
    Used,
}

impl DeviceStatus {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Used => "used",
        }
    }

    /// The status stored as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "denied" => Some(Self::Denied),
            "used" => Some(Self::Used),
            _ => None,
        }
    }
}

/// A device authorization (RFC 8628), hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    /// SHA-256 of the device code.
    pub device_hash: Hash,
    /// SHA-256 of the user code, normalised.
    pub user_code_hash: Hash,
    /// The client that asked.
    pub client_id: String,
    /// The scopes it asked for, space-separated.
    pub scopes: String,
    /// When it was made.
    pub created_at: Millis,
    /// When it runs out.
    pub expires_at: Millis,
    /// The least time between two polls, in milliseconds.
    pub interval_ms: Millis,
    /// When the device last polled.
    pub last_poll_at: Option<Millis>,
    /// Where it stands.
    pub status: DeviceStatus,
    /// The grant, once approved.
    pub grant_id: Option<GrantId>,
}

/// What a device's poll came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DevicePoll {
    /// Approved, collected now: the grant to issue tokens from.
    Approved(GrantRow),
    /// Still waiting for the user.
    Pending,
    /// Polled sooner than the interval (which has now grown by 5 s).
    SlowDown,
    /// The user said no.
    Denied,
    /// Collected before: a replay; the grant should be revoked.
    Reused(GrantId),
    /// Ran out.
    Expired,
    /// No such device code for this client.
    Unknown,
}

/// An OpenID Connect client an administrator made (on `/admin/clients`
/// or with `gatehouse oidc client create`), as stored: every instance on
/// the database reads it from here, so a new, rotated or deleted client
/// is seen everywhere at the next request. Only the SHA-256 of its secret
/// is kept (the secret is 256 random bits: too random for a fast hash to
/// give it away); the lists are JSON arrays of strings.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRow {
    /// The `client_id`.
    pub id: String,
    /// The name people see.
    pub name: String,
    /// SHA-256 of the secret; `None` for a public client.
    pub secret_hash: Option<Hash>,
    /// The registered redirect URIs, exactly as given.
    pub redirect_uris: Vec<String>,
    /// The groups whose members may use it; empty: anyone signed in.
    pub groups: Vec<String>,
    /// Whether a sign-in with a second factor is needed.
    pub two_factor: bool,
    /// Whether PKCE is required (always, for a public client).
    pub pkce_required: bool,
    /// The ID token signing algorithm (`RS256`, `ES256`, `EdDSA`).
    pub signing_alg: String,
    /// Whether it may have refresh tokens.
    pub offline_access: bool,
    /// Whether the profile claims go in the ID token too.
    pub claims_in_id_token: bool,
    /// Whether it may use the device authorization grant.
    pub device_grant: bool,
    /// Where "my apps" links to.
    pub launch_url: Option<String>,
    /// The page the signed-out page loads in a hidden frame.
    pub frontchannel_logout_uri: Option<String>,
    /// Whether that page is given `iss` and `sid`.
    pub frontchannel_logout_session_required: bool,
    /// Where a logout token is POSTed when a session ends.
    pub backchannel_logout_uri: Option<String>,
    /// Whether the logout token must carry `sid` (it always does).
    pub backchannel_logout_session_required: bool,
    /// Where `end_session` may send the browser afterwards, exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// When it was made.
    pub created_at: Millis,
    /// When its secret was made or last rotated (`None`: public).
    pub secret_set_at: Option<Millis>,
}

impl fmt::Debug for ClientRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret's hash.
        f.debug_struct("ClientRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("public", &self.secret_hash.is_none())
            .field("redirect_uris", &self.redirect_uris)
            .finish_non_exhaustive()
    }
}

/// A list of strings as stored (a JSON array).
pub(super) fn to_json_list(items: &[String]) -> String {
    serde_json::Value::from(items).to_string()
}

/// A stored JSON array of strings back as a list (`None`: not one).
pub(super) fn from_json_list(s: &str) -> Option<Vec<String>> {
    serde_json::from_str(s).ok()
}

/// A back-channel logout notice waiting to be sent (OpenID Connect
/// Back-Channel Logout 1.0): one client to be told that one session of one
/// user ended. Queued by the statement that ends the grants, in its
/// transaction, with the user's `sub` as it was then: the notice outlives
/// the grant, the session and even the user, and is sent by whichever
/// instance gets to it (a `gatehouse` command's are sent by the server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutRow {
    /// The client to tell.
    pub client_id: String,
    /// The gatehouse session that ended (`sid`).
    pub sid: String,
    /// The user's subject identifier (`sub`).
    pub subject: String,
    /// How many times it has been claimed for sending, this one included.
    pub attempts: i64,
    /// When it was queued.
    pub created_at: Millis,
}

/// A signing key as stored: the private key sealed, the public JWK in the
/// clear.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// The key id (`kid`).
    pub kid: String,
    /// The JOSE algorithm (`RS256`, `ES256`, `EdDSA`).
    pub alg: String,
    /// The private key (DER), sealed with the keys derived from `secrets`.
    pub sealed: Vec<u8>,
    /// The public key as a JWK (JSON text).
    pub public_jwk: String,
    /// When it was made.
    pub created_at: Millis,
    /// When a newer key replaced it; `None` while it signs.
    pub retired_at: Option<Millis>,
    /// Until when a retired key stays in the JWKS.
    pub published_until: Option<Millis>,
}

impl fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .field("published_until", &self.published_until)
            .finish_non_exhaustive()
    }
}

/// The provider's statements. Each method is one statement or one short
/// transaction; the rules live in `grants.rs` and `keys.rs`, so both
/// databases behave alike (one conformance suite, `tests` below, runs
/// against each).
pub trait Store: Send + Sync {
    /// The published keys: every current one and every retired one whose
    /// publication has not ended, oldest first.
    ///
    /// # Errors
    ///
    /// Database failures (as for every method).
    fn keys(&self, now: Millis) -> Result<Vec<KeyRow>, OidcError>;
    /// Adds `key` as the current key of its algorithm, unless one is
    /// current already (another instance was first): then `false`.
    fn key_add(&self, key: &KeyRow) -> Result<bool, OidcError>;
    /// In one transaction: retires the current key of `key.alg`
    /// (published until `published_until`) and makes `key` current.
    fn key_rotate(
        &self,
        key: &KeyRow,
        now: Millis,
        published_until: Millis,
    ) -> Result<(), OidcError>;

    /// The user's subject identifier: the stored one, or else `fresh`,
    /// stored now (one statement, so two instances agree).
    fn subject(&self, user: UserId, fresh: &str) -> Result<String, OidcError>;

    /// Stores a grant and its code in one transaction.
    fn code_create(&self, grant: &GrantRow, code: &CodeRow) -> Result<(), OidcError>;
    /// Redeems a code: marks it used if it matches `claim` and is unused
    /// and live (one statement); otherwise says why not.
    fn code_take(&self, claim: &CodeClaim<'_>, now: Millis) -> Result<CodeTake, OidcError>;

    /// Stores a token under its grant and extends the grant's expiry to
    /// cover it; `false` (nothing stored) when the grant is gone (revoked
    /// meanwhile).
    fn token_create(&self, token: &TokenRow) -> Result<bool, OidcError>;
    /// A token by hash, with its grant, whatever its state.
    fn token_find(&self, hash: &Hash) -> Result<Option<(TokenRow, GrantRow)>, OidcError>;
    /// Uses a refresh token of `client_id`: marks it used if it is unused
    /// and live (one statement); otherwise says why not.
    fn refresh_take(
        &self,
        hash: &Hash,
        client_id: &str,
        now: Millis,
    ) -> Result<RefreshTake, OidcError>;
    /// Deletes one token; `false` when there was none.
    fn token_delete(&self, hash: &Hash) -> Result<bool, OidcError>;

    /// Deletes a grant and everything hanging off it; `false` when gone.
    fn grant_delete(&self, id: &GrantId) -> Result<bool, OidcError>;
    /// Deletes every grant of a gatehouse session (signing out); the
    /// clients they were given to (each once). Each ending queues a
    /// back-channel logout notice ([`LogoutRow`], one per client and
    /// session, for a user who has a `sub`) in the same transaction; so do
    /// the two below.
    fn grants_delete_for_session(&self, sid: &str, now: Millis) -> Result<Vec<String>, OidcError>;
    /// Deletes every grant of a user, or only those of one client; how many.
    fn grants_delete_for_user(
        &self,
        user: UserId,
        client_id: Option<&str>,
        now: Millis,
    ) -> Result<usize, OidcError>;
    /// Deletes every grant of a user but those of the gatehouse session
    /// `keep_sid` (a new password, "end all others": the session that
    /// stays keeps its apps); how many.
    fn grants_delete_for_user_but(
        &self,
        user: UserId,
        keep_sid: &str,
        now: Millis,
    ) -> Result<usize, OidcError>;
    /// A user's live grants, newest first (the apps they signed in to).
    fn grants_for_user(&self, user: UserId, now: Millis) -> Result<Vec<GrantRow>, OidcError>;

    /// Stores a device authorization; `false` when its user code is taken
    /// (the caller makes another).
    fn device_create(&self, device: &DeviceRow) -> Result<bool, OidcError>;
    /// A pending, live device authorization by its user code's hash.
    fn device_find(&self, user_code: &Hash, now: Millis) -> Result<Option<DeviceRow>, OidcError>;
    /// Approves a pending, live device authorization with `grant`, in one
    /// transaction; `false` (nothing stored) when it is not pending or live.
    fn device_approve(
        &self,
        user_code: &Hash,
        grant: &GrantRow,
        now: Millis,
    ) -> Result<bool, OidcError>;
    /// Denies a pending device authorization; `false` when not pending.
    fn device_deny(&self, user_code: &Hash, now: Millis) -> Result<bool, OidcError>;
    /// A device's poll: collects an approved grant once, enforces the
    /// interval (each too-early poll adds 5 s to it).
    fn device_poll(
        &self,
        device: &Hash,
        client_id: &str,
        now: Millis,
    ) -> Result<DevicePoll, OidcError>;

    /// When the soonest queued logout notice is due, if any is queued (a
    /// read: the sender's idle look costs no write).
    fn logout_next(&self) -> Result<Option<Millis>, OidcError>;
    /// Claims the soonest due logout notice (`next_at <= now`) of a client
    /// not in `busy`: in one statement its attempts grow by one and it is
    /// not due again before `until`, so no other sender (here or on
    /// another instance) takes it meanwhile; `None` when none is due.
    fn logout_claim(
        &self,
        now: Millis,
        until: Millis,
        busy: &[String],
    ) -> Result<Option<LogoutRow>, OidcError>;
    /// Makes a claimed notice due again at `at` (a failed send to retry),
    /// and every other notice of that client due before then waits until
    /// `at` too: a client that did not answer is not tried again at once
    /// with its next notice (two that hang would hold every sender while
    /// the clients that answer wait behind them).
    fn logout_retry(&self, client_id: &str, sid: &str, at: Millis) -> Result<(), OidcError>;
    /// Deletes a notice (sent, or given up); `false` when it was gone.
    fn logout_delete(&self, client_id: &str, sid: &str) -> Result<bool, OidcError>;

    /// Deletes up to `limit` of each kind of expired row (tokens, codes,
    /// device codes, grants, retired keys past publication, logout notices
    /// queued before `now - LOGOUT_MAX_AGE`); how many.
    fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize, OidcError>;

    /// Stores a client an administrator made; `false` (nothing stored)
    /// when its id is taken.
    fn client_create(&self, client: &ClientRow) -> Result<bool, OidcError>;
    /// A stored client by id (compared exactly).
    fn client_find(&self, id: &str) -> Result<Option<ClientRow>, OidcError>;
    /// Every stored client, by id.
    fn client_list(&self) -> Result<Vec<ClientRow>, OidcError>;
    /// Replaces a confidential client's secret hash; `false` when there
    /// is no such client or it is public (no secret to replace).
    fn client_set_secret(&self, id: &str, hash: &Hash, now: Millis) -> Result<bool, OidcError>;
    /// Deletes a stored client, and with `end_grants` in the same
    /// transaction every grant given to that id (its codes, access and
    /// refresh tokens with them) and its device authorizations; `false`
    /// when there was no such client (then nothing is deleted).
    fn client_delete(&self, id: &str, end_grants: bool) -> Result<bool, OidcError>;
}

/// Scopes as stored: space-separated, as OAuth writes them.
pub fn join_scopes(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// Stored scopes back as a list.
pub fn split_scopes(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The conformance suite every store must pass, run by `sqlite.rs` and
/// `postgres.rs` (on their own databases) with a user already made.
#[cfg(test)]
pub(super) mod conformance {
    use super::*;

    fn grant(user: UserId, client: &str, sid: &str, now: Millis) -> GrantRow {
        GrantRow {
            id: GrantId::random(),
            client_id: client.to_owned(),
            user_id: user,
            sid: sid.to_owned(),
            scopes: "openid profile".into(),
            nonce: Some("n-0S6_WzA2Mj".into()),
            auth_time: now - 1000,
            methods: "pwd,otp".into(),
            created_at: now,
            expires_at: now + 30_000,
        }
    }

    fn hash(n: u8) -> Hash {
        [n; 32]
    }

    fn token(grant: &GrantRow, n: u8, kind: TokenKind, now: Millis) -> TokenRow {
        TokenRow {
            hash: hash(n),
            grant_id: grant.id,
            kind,
            scopes: grant.scopes.clone(),
            created_at: now,
            expires_at: now + 3_600_000,
            used_at: None,
        }
    }

    /// Runs every check against `store`, where `user` and `other` exist.
    pub fn run(store: &dyn Store, user: UserId, other: UserId) {
        codes(store, user);
        tokens(store, user, other);
        devices(store, user);
        logouts(store, user, other);
        subjects(store, user, other);
        keys(store);
        reaping(store, user);
        clients(store, user);
    }

    fn codes(store: &dyn Store, user: UserId) {
        let now = 1_000_000;
        let g = grant(user, "app", "sid-a", now);
        let code = CodeRow {
            hash: hash(1),
            grant_id: g.id,
            redirect_uri: "https://app/cb".into(),
            challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            expires_at: now + 30_000,
        };
        store.code_create(&g, &code).expect("create");
        let claim = |client, redirect, challenge| CodeClaim {
            hash: &code.hash,
            client_id: client,
            redirect_uri: redirect,
            challenge,
        };
        let right = Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        // A mismatch uses nothing up.
        assert_eq!(
            store
                .code_take(&claim("other", "https://app/cb", right), now)
                .expect("take"),
            CodeTake::Mismatch("client")
        );
        assert_eq!(
            store
                .code_take(&claim("app", "https://app/cb/", right), now)
                .expect("take"),
            CodeTake::Mismatch("redirect_uri")
        );
        assert_eq!(
            store
                .code_take(&claim("app", "https://app/cb", Some("x")), now)
                .expect("take"),
            CodeTake::Mismatch("code_verifier")
        );
        assert_eq!(
            store
                .code_take(&claim("app", "https://app/cb", None), now)
                .expect("take"),
            CodeTake::Mismatch("code_verifier")
        );
        assert_eq!(
            store
                .code_take(&claim("app", "https://app/cb", right), now + 30_000)
                .expect("take"),
            CodeTake::Expired
        );
        assert_eq!(
            store
                .code_take(&claim("app", "https://app/cb", right), now)
                .expect("take"),
            CodeTake::Taken(g.clone())
        );
        assert_eq!(
            store
                .code_take(&claim("app", "https://app/cb", right), now)
                .expect("take"),
            CodeTake::Reused(g.id)
        );
        let unknown = CodeClaim {
            hash: &hash(2),
            ..claim("app", "https://app/cb", right)
        };
        assert_eq!(
            store.code_take(&unknown, now).expect("take"),
            CodeTake::Unknown
        );
        // A code without a challenge wants no verifier (a verifier there
        // is a downgrade attempt and does not match).
        let g2 = grant(user, "app", "sid-a", now);
        let plain = CodeRow {
            hash: hash(3),
            grant_id: g2.id,
            challenge: None,
            ..code.clone()
        };
        store.code_create(&g2, &plain).expect("create");
        let c = CodeClaim {
            hash: &plain.hash,
            ..claim("app", "https://app/cb", right)
        };
        assert_eq!(
            store.code_take(&c, now).expect("take"),
            CodeTake::Mismatch("code_verifier")
        );
        let c = CodeClaim {
            challenge: None,
            ..c
        };
        assert_eq!(
            store.code_take(&c, now).expect("take"),
            CodeTake::Taken(g2.clone())
        );
        // Deleting the grant takes its code with it.
        assert!(store.grant_delete(&g2.id).expect("delete"));
        assert!(!store.grant_delete(&g2.id).expect("gone"));
        assert_eq!(store.code_take(&c, now).expect("take"), CodeTake::Unknown);
        store.grant_delete(&g.id).expect("delete");
    }

    fn tokens(store: &dyn Store, user: UserId, other: UserId) {
        let now = 2_000_000;
        let g = grant(user, "app", "sid-b", now);
        store
            .code_create(
                &g,
                &CodeRow {
                    hash: hash(10),
                    grant_id: g.id,
                    redirect_uri: "https://app/cb".into(),
                    challenge: None,
                    expires_at: now + 1000,
                },
            )
            .expect("create");
        let access = token(&g, 11, TokenKind::Access, now);
        let refresh = token(&g, 12, TokenKind::Refresh, now);
        assert!(store.token_create(&access).expect("access"));
        assert!(store.token_create(&refresh).expect("refresh"));
        let (found, fg) = store
            .token_find(&access.hash)
            .expect("find")
            .expect("there");
        assert_eq!(found, access);
        assert_eq!(
            fg.expires_at,
            now + 3_600_000,
            "the grant covers its tokens"
        );
        assert_eq!(
            store.refresh_take(&access.hash, "app", now).expect("take"),
            RefreshTake::Unknown,
            "an access token is no refresh token"
        );
        assert_eq!(
            store
                .refresh_take(&refresh.hash, "other", now)
                .expect("take"),
            RefreshTake::OtherClient
        );
        assert_eq!(
            store
                .refresh_take(&refresh.hash, "app", now + 3_600_000)
                .expect("take"),
            RefreshTake::Expired
        );
        match store
            .refresh_take(&refresh.hash, "app", now + 5)
            .expect("take")
        {
            RefreshTake::Taken(taken) => {
                let (t, gr) = *taken;
                assert_eq!(t.hash, refresh.hash);
                assert_eq!(gr.id, g.id);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store
                .refresh_take(&refresh.hash, "app", now + 6)
                .expect("take"),
            RefreshTake::Reused(g.id)
        );
        let (used, _) = store
            .token_find(&refresh.hash)
            .expect("find")
            .expect("there");
        assert_eq!(used.used_at, Some(now + 5));
        // Sign-out ends every grant of that session, and only those.
        let g2 = grant(other, "app", "sid-c", now);
        store
            .code_create(
                &g2,
                &CodeRow {
                    hash: hash(13),
                    grant_id: g2.id,
                    redirect_uri: "https://app/cb".into(),
                    challenge: None,
                    expires_at: now + 1000,
                },
            )
            .expect("create");
        let a2 = token(&g2, 14, TokenKind::Access, now);
        assert!(store.token_create(&a2).expect("create"));
        assert_eq!(
            store
                .grants_delete_for_session("sid-b", now)
                .expect("sign out"),
            ["app"]
        );
        assert!(store.token_find(&access.hash).expect("find").is_none());
        assert!(store.token_find(&a2.hash).expect("find").is_some());
        // A token for a grant that is gone is not stored.
        assert!(
            !store
                .token_create(&token(&g, 15, TokenKind::Access, now))
                .expect("late")
        );
        assert!(store.token_find(&hash(15)).expect("find").is_none());
        // The apps a user signed in to: grants that issued tokens.
        let listed = store.grants_for_user(other, now).expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, g2.id);
        // One token deleted, the grant left.
        assert!(store.token_delete(&a2.hash).expect("delete"));
        assert!(!store.token_delete(&a2.hash).expect("gone"));
        assert_eq!(
            store
                .grants_delete_for_user(other, Some("nope"), now)
                .expect("none"),
            0
        );
        assert_eq!(
            store
                .grants_delete_for_user(other, Some("app"), now)
                .expect("one"),
            1
        );
        assert!(store.grants_for_user(other, now).expect("list").is_empty());
        // All of a user's grants but one session's: another user's and the
        // kept session's stay.
        for (n, (who, sid)) in [(user, "keep"), (user, "x"), (user, "y"), (other, "z")]
            .into_iter()
            .enumerate()
        {
            let g = grant(who, "app", sid, now);
            let n = u8::try_from(n).expect("few");
            store
                .code_create(
                    &g,
                    &CodeRow {
                        hash: hash(40 + n),
                        grant_id: g.id,
                        redirect_uri: "https://app/cb".into(),
                        challenge: None,
                        expires_at: now + 1000,
                    },
                )
                .expect("create");
            assert!(
                store
                    .token_create(&token(&g, 50 + n, TokenKind::Access, now))
                    .expect("token")
            );
        }
        assert_eq!(
            store
                .grants_delete_for_user_but(user, "keep", now)
                .expect("two"),
            2
        );
        assert!(store.token_find(&hash(50)).expect("find").is_some());
        assert!(store.token_find(&hash(51)).expect("find").is_none());
        assert!(store.token_find(&hash(52)).expect("find").is_none());
        assert!(store.token_find(&hash(53)).expect("find").is_some());
        assert_eq!(
            store
                .grants_delete_for_user_but(user, "keep", now)
                .expect("none"),
            0
        );
    }

    /// A grant of `user` to `client` under `sid`, with a code.
    fn granted(store: &dyn Store, user: UserId, client: &str, sid: &str, n: u8, now: Millis) {
        let g = grant(user, client, sid, now);
        let code = CodeRow {
            hash: hash(n),
            grant_id: g.id,
            redirect_uri: "https://app/cb".into(),
            challenge: None,
            expires_at: now + 1000,
        };
        store.code_create(&g, &code).expect("create");
    }

    fn logouts(store: &dyn Store, user: UserId, other: UserId) {
        let now = 5_000_000;
        // Anything queued by the checks before is cleared first.
        store.delete_expired(Millis::MAX / 2, 1000).expect("clear");
        assert_eq!(store.logout_next().expect("next"), None);
        assert_eq!(store.subject(user, "s-first").expect("sub"), "s-first");
        // Two grants of one client under one session make one notice; a
        // user who never had a `sub` (no ID token) makes none.
        granted(store, user, "app", "sid-1", 60, now);
        granted(store, user, "app", "sid-1", 61, now);
        granted(store, user, "crm", "sid-1", 62, now);
        granted(store, user, "app", "sid-2", 63, now);
        granted(store, other, "app", "sid-o", 64, now);
        assert_eq!(
            store.grants_delete_for_session("sid-1", now).expect("end"),
            ["app", "crm"]
        );
        assert_eq!(
            store.grants_delete_for_session("sid-o", now).expect("end"),
            ["app"]
        );
        assert_eq!(store.logout_next().expect("next"), Some(now));
        assert_eq!(
            store
                .logout_claim(now - 1, now + 30_000, &[])
                .expect("claim"),
            None,
            "not due yet"
        );
        let first = store
            .logout_claim(now, now + 30_000, &[])
            .expect("claim")
            .expect("one due");
        assert_eq!(first.sid, "sid-1");
        assert_eq!(first.subject, "s-first");
        assert_eq!(first.attempts, 1);
        assert_eq!(first.created_at, now);
        // A client being sent to is skipped; the other's notice is next.
        let second = store
            .logout_claim(now, now + 30_000, std::slice::from_ref(&first.client_id))
            .expect("claim")
            .expect("the other");
        assert_ne!(second.client_id, first.client_id);
        assert_eq!(second.sid, "sid-1");
        // Both are claimed: nothing more until the lease ends.
        assert_eq!(
            store.logout_claim(now, now + 30_000, &[]).expect("claim"),
            None
        );
        assert_eq!(store.logout_next().expect("next"), Some(now + 30_000));
        // A failed one is due again when said, one attempt more.
        store
            .logout_retry(&first.client_id, &first.sid, now + 10)
            .expect("retry");
        let again = store
            .logout_claim(now + 10, now + 40_000, &[])
            .expect("claim")
            .expect("due again");
        assert_eq!(
            (again.client_id.as_str(), again.attempts),
            (first.client_id.as_str(), 2)
        );
        assert!(
            store
                .logout_delete(&again.client_id, &again.sid)
                .expect("sent")
        );
        assert!(
            !store
                .logout_delete(&again.client_id, &again.sid)
                .expect("gone")
        );
        // A client that failed one notice is not tried at once with its
        // next: its other due notices wait for the retry too (two that
        // hang would otherwise hold every sender).
        granted(store, user, "app", "sid-4", 66, now);
        granted(store, user, "app", "sid-5", 67, now);
        store
            .grants_delete_for_session("sid-4", now + 5)
            .expect("end");
        store
            .grants_delete_for_session("sid-5", now + 5)
            .expect("end");
        let failed = store
            .logout_claim(now + 5, now + 30_000, &[])
            .expect("claim")
            .expect("one of app's");
        assert_eq!(failed.client_id, "app");
        store
            .logout_retry(&failed.client_id, &failed.sid, now + 100)
            .expect("retry");
        assert_eq!(
            store
                .logout_claim(now + 5, now + 30_000, &[])
                .expect("claim"),
            None,
            "app's other notice waits for the retry"
        );
        for _ in 0..2 {
            let later = store
                .logout_claim(now + 100, now + 30_000, &[])
                .expect("claim")
                .expect("due at the retry");
            assert_eq!(later.client_id, "app");
            assert!(
                store
                    .logout_delete(&later.client_id, &later.sid)
                    .expect("sent")
            );
        }
        // The other ways grants end queue notices too, the kept session's
        // excepted.
        granted(store, user, "app", "sid-3", 65, now);
        assert_eq!(
            store
                .grants_delete_for_user_but(user, "sid-2", now + 1)
                .expect("end"),
            1
        );
        let third = store
            .logout_claim(
                now + 1,
                now + 30_000,
                std::slice::from_ref(&second.client_id),
            )
            .expect("claim")
            .expect("sid-3's");
        assert_eq!(
            (third.client_id.as_str(), third.sid.as_str()),
            ("app", "sid-3")
        );
        assert_eq!(
            store
                .grants_delete_for_user(user, Some("app"), now + 2)
                .expect("end"),
            1
        );
        let fourth = store
            .logout_claim(now + 2, now + 30_000, &[])
            .expect("claim")
            .expect("sid-2's");
        assert_eq!(
            (fourth.client_id.as_str(), fourth.sid.as_str()),
            ("app", "sid-2")
        );
        // Notices older than their age limit are reaped.
        let stale = now + super::super::millis(super::super::LOGOUT_MAX_AGE);
        assert_eq!(store.delete_expired(stale - 1, 100).expect("reap"), 0);
        assert_eq!(store.delete_expired(stale, 100).expect("reap"), 1);
        assert_eq!(store.delete_expired(stale + 2, 100).expect("reap"), 2);
        assert_eq!(store.logout_next().expect("next"), None);
    }

    fn devices(store: &dyn Store, user: UserId) {
        let now = 3_000_000;
        let d = DeviceRow {
            device_hash: hash(20),
            user_code_hash: hash(21),
            client_id: "tv".into(),
            scopes: "openid".into(),
            created_at: now,
            expires_at: now + 600_000,
            interval_ms: 5000,
            last_poll_at: None,
            status: DeviceStatus::Pending,
            grant_id: None,
        };
        assert!(store.device_create(&d).expect("create"));
        let clash = DeviceRow {
            device_hash: hash(22),
            ..d.clone()
        };
        assert!(!store.device_create(&clash).expect("same user code"));
        assert_eq!(
            store.device_find(&hash(21), now).expect("find"),
            Some(d.clone())
        );
        assert_eq!(
            store.device_find(&hash(21), now + 600_000).expect("find"),
            None
        );
        assert_eq!(
            store.device_poll(&hash(20), "tv", now).expect("poll"),
            DevicePoll::Pending
        );
        assert_eq!(
            store
                .device_poll(&hash(20), "tv", now + 1000)
                .expect("poll"),
            DevicePoll::SlowDown
        );
        // The interval grew to 10 s.
        assert_eq!(
            store
                .device_poll(&hash(20), "tv", now + 9000)
                .expect("poll"),
            DevicePoll::SlowDown
        );
        assert_eq!(
            store
                .device_poll(&hash(20), "other", now + 30_000)
                .expect("poll"),
            DevicePoll::Unknown
        );
        let g = grant(user, "tv", "sid-d", now);
        assert!(
            !store
                .device_approve(&hash(21), &g, now + 600_000)
                .expect("late")
        );
        assert!(
            store
                .device_approve(&hash(21), &g, now + 1)
                .expect("approve")
        );
        let g2 = grant(user, "tv", "sid-d", now);
        assert!(
            !store
                .device_approve(&hash(21), &g2, now + 2)
                .expect("twice")
        );
        assert!(!store.grant_delete(&g2.id).expect("rolled back"));
        assert_eq!(store.device_find(&hash(21), now).expect("find"), None);
        assert_eq!(
            store
                .device_poll(&hash(20), "tv", now + 40_000)
                .expect("poll"),
            DevicePoll::Approved(g.clone())
        );
        assert_eq!(
            store
                .device_poll(&hash(20), "tv", now + 80_000)
                .expect("poll"),
            DevicePoll::Reused(g.id)
        );
        // Denied.
        let d2 = DeviceRow {
            device_hash: hash(23),
            user_code_hash: hash(24),
            ..d.clone()
        };
        assert!(store.device_create(&d2).expect("create"));
        assert!(store.device_deny(&hash(24), now).expect("deny"));
        assert!(!store.device_deny(&hash(24), now).expect("twice"));
        assert_eq!(
            store
                .device_poll(&hash(23), "tv", now + 100_000)
                .expect("poll"),
            DevicePoll::Denied
        );
        assert_eq!(
            store
                .device_poll(&hash(23), "tv", now + 700_000)
                .expect("poll"),
            DevicePoll::Expired
        );
        store.grant_delete(&g.id).expect("delete");
    }

    fn subjects(store: &dyn Store, user: UserId, other: UserId) {
        let first = store.subject(user, "s-first").expect("made");
        assert_eq!(first, "s-first");
        assert_eq!(store.subject(user, "s-second").expect("kept"), "s-first");
        assert_eq!(store.subject(other, "s-other").expect("made"), "s-other");
    }

    fn key(kid: &str, alg: &str, now: Millis) -> KeyRow {
        KeyRow {
            kid: kid.into(),
            alg: alg.into(),
            sealed: vec![1, 2, 3],
            public_jwk: format!("{{\"kid\":\"{kid}\"}}"),
            created_at: now,
            retired_at: None,
            published_until: None,
        }
    }

    fn keys(store: &dyn Store) {
        let now = 4_000_000;
        assert!(store.key_add(&key("k1", "RS256", now)).expect("first"));
        assert!(
            !store
                .key_add(&key("k2", "RS256", now))
                .expect("one current per alg")
        );
        assert!(
            store
                .key_add(&key("k3", "ES256", now))
                .expect("another alg")
        );
        store
            .key_rotate(&key("k4", "RS256", now + 10), now + 10, now + 1000)
            .expect("rotate");
        let live = store.keys(now + 20).expect("keys");
        let kids: Vec<_> = live.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["k1", "k3", "k4"]);
        assert_eq!(live[0].retired_at, Some(now + 10));
        assert_eq!(live[0].published_until, Some(now + 1000));
        assert_eq!(live[0].sealed, vec![1, 2, 3]);
        let later: Vec<_> = store
            .keys(now + 1000)
            .expect("keys")
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(
            later,
            ["k3", "k4"],
            "a retired key leaves after its publication"
        );
    }

    fn reaping(store: &dyn Store, user: UserId) {
        let now = 5_000_000;
        let g = grant(user, "app", "sid-e", now);
        store
            .code_create(
                &g,
                &CodeRow {
                    hash: hash(30),
                    grant_id: g.id,
                    redirect_uri: "https://app/cb".into(),
                    challenge: None,
                    expires_at: now + 1000,
                },
            )
            .expect("create");
        let mut t = token(&g, 31, TokenKind::Access, now);
        t.expires_at = now + 2000;
        assert!(store.token_create(&t).expect("token"));
        let n = store.delete_expired(now + 1500, 100).expect("reap");
        assert!(n >= 1, "the code: {n}");
        assert!(store.token_find(&t.hash).expect("find").is_some());
        let n = store.delete_expired(now + 30_001, 100).expect("reap");
        assert!(n >= 2, "the token and the grant: {n}");
        assert!(store.token_find(&t.hash).expect("find").is_none());
        assert!(!store.grant_delete(&g.id).expect("gone"));
        // The retired key of `keys` is gone too, the current ones stay.
        let kids: Vec<_> = store
            .keys(now)
            .expect("keys")
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kids, ["k3", "k4"]);
    }

    /// A stored client for the checks (and for `registry`'s tests).
    pub fn client_row(id: &str, secret: Option<Hash>, now: Millis) -> ClientRow {
        ClientRow {
            id: id.to_owned(),
            name: format!("{id} app"),
            secret_hash: secret,
            redirect_uris: vec!["https://app/cb".into(), "app.native:/cb".into()],
            groups: vec!["ops".into()],
            two_factor: true,
            pkce_required: secret.is_none(),
            signing_alg: "ES256".into(),
            offline_access: true,
            claims_in_id_token: false,
            device_grant: false,
            launch_url: Some("https://app/".into()),
            frontchannel_logout_uri: Some("https://app/fc?x=1".into()),
            frontchannel_logout_session_required: false,
            backchannel_logout_uri: Some("https://app/bc".into()),
            backchannel_logout_session_required: true,
            post_logout_redirect_uris: vec!["https://app/bye".into(), "app.native:/bye".into()],
            created_at: now,
            secret_set_at: secret.map(|_| now),
        }
    }

    /// A grant of `client` with a code and an access token (`n`: the
    /// token's hash).
    fn granted_with_token(
        store: &dyn Store,
        user: UserId,
        client: &str,
        n: u8,
        now: Millis,
    ) -> GrantRow {
        let g = grant(user, client, "sid-f", now);
        store
            .code_create(
                &g,
                &CodeRow {
                    hash: hash(n + 100),
                    grant_id: g.id,
                    redirect_uri: "https://app/cb".into(),
                    challenge: None,
                    expires_at: now + 1000,
                },
            )
            .expect("create");
        assert!(
            store
                .token_create(&token(&g, n, TokenKind::Refresh, now))
                .expect("token")
        );
        g
    }

    fn clients(store: &dyn Store, user: UserId) {
        let now = 6_000_000;
        let made = client_row("made", Some(hash(60)), now);
        assert!(store.client_create(&made).expect("create"));
        let twice = ClientRow {
            name: "another".into(),
            ..made.clone()
        };
        assert!(!store.client_create(&twice).expect("an id is made once"));
        assert_eq!(store.client_find("made").expect("find"), Some(made.clone()));
        for near in ["Made", "made ", " made", "mad", ""] {
            assert_eq!(store.client_find(near).expect("find"), None, "{near:?}");
        }
        // Any printable id, kept exactly.
        // No logout settings: nothing stored for them, nothing read back.
        let odd = ClientRow {
            frontchannel_logout_uri: None,
            frontchannel_logout_session_required: true,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            post_logout_redirect_uris: Vec::new(),
            ..client_row("Ünïcode 'id' \"x\" %20;--", None, now)
        };
        assert!(store.client_create(&odd).expect("create"));
        assert_eq!(store.client_find(&odd.id).expect("find"), Some(odd.clone()));
        let ids: Vec<String> = store
            .client_list()
            .expect("list")
            .into_iter()
            .map(|c| c.id)
            .collect();
        // By bytes, on either database: `m` before `Ü`.
        assert_eq!(ids, ["made".to_owned(), odd.id.clone()]);

        // A new secret for a confidential client; a public one has none.
        assert!(
            store
                .client_set_secret("made", &hash(61), now + 5)
                .expect("rotate")
        );
        let rotated = store.client_find("made").expect("find").expect("there");
        assert_eq!(rotated.secret_hash, Some(hash(61)));
        assert_eq!(rotated.secret_set_at, Some(now + 5));
        assert_eq!(rotated.created_at, now);
        assert!(
            !store
                .client_set_secret(&odd.id, &hash(62), now)
                .expect("public")
        );
        assert_eq!(
            store
                .client_find(&odd.id)
                .expect("find")
                .expect("there")
                .secret_hash,
            None
        );
        assert!(
            !store
                .client_set_secret("nobody", &hash(62), now)
                .expect("unknown")
        );

        // Deleting a client ends its grants (codes, tokens) and device
        // authorizations, and nobody else's.
        let mine = granted_with_token(store, user, "made", 63, now);
        let theirs = granted_with_token(store, user, "neighbour", 64, now);
        let waiting = DeviceRow {
            device_hash: hash(65),
            user_code_hash: hash(66),
            client_id: "made".into(),
            scopes: "openid".into(),
            created_at: now,
            expires_at: now + 600_000,
            interval_ms: 5000,
            last_poll_at: None,
            status: DeviceStatus::Pending,
            grant_id: None,
        };
        assert!(store.device_create(&waiting).expect("device"));
        assert!(store.client_delete("made", true).expect("delete"));
        assert_eq!(store.client_find("made").expect("find"), None);
        assert!(store.token_find(&hash(63)).expect("find").is_none());
        assert!(!store.grant_delete(&mine.id).expect("gone with the client"));
        assert_eq!(store.device_find(&hash(66), now).expect("find"), None);
        assert!(store.token_find(&hash(64)).expect("find").is_some());
        assert!(!store.client_delete("made", true).expect("twice"));
        assert!(!store.client_delete("neighbour", true).expect("not stored"));
        assert!(
            store.token_find(&hash(64)).expect("find").is_some(),
            "nothing is ended for an id that is not stored"
        );

        // A new client inherits nothing of an earlier one of its id (a
        // grant a sign-in made while the old one was being deleted, or a
        // client that left gatehouse.toml): its grants end as it is made.
        assert!(
            store
                .client_create(&client_row("neighbour", Some(hash(67)), now))
                .expect("create")
        );
        assert!(store.token_find(&hash(64)).expect("find").is_none());
        assert!(!store.grant_delete(&theirs.id).expect("gone"));

        // Without `end_grants` (a stored client an id in gatehouse.toml
        // hides): the row goes, the configured client's grants stay.
        let configured = granted_with_token(store, user, "neighbour", 68, now);
        assert!(store.client_delete("neighbour", false).expect("delete"));
        assert!(store.token_find(&hash(68)).expect("find").is_some());
        store.grant_delete(&configured.id).expect("delete");
        assert!(store.client_delete(&odd.id, true).expect("delete"));
        assert!(store.client_list().expect("list").is_empty());
    }
}
