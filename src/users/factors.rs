//! Second factors: authenticator codes (TOTP), recovery codes and passkeys,
//! kept in the users' database beside the users they belong to.
//!
//! - **TOTP** (RFC 6238: SHA-1, 6 digits, 30 s, one step of skew either
//!   way), through `totp-rs`. The seed is sealed with XChaCha20-Poly1305
//!   under a key derived from the server's secrets (never stored in the
//!   database), bound to the user's id, so a copy of the database alone
//!   yields no seed. A code is accepted once: the last step used is kept,
//!   and a code is accepted only for a later step, in one conditional
//!   `UPDATE` (two instances cannot both take the same code).
//! - **Recovery codes**: ten random 80-bit codes, stored as SHA-256 hashes
//!   (too random to guess from a hash), each deleted as it is used.
//! - **Passkeys**: the credential the WebAuthn ceremony produced, as opaque
//!   bytes, with its name and when it was added and last used.
//!
//! Each store operation is one statement (or one transaction) in
//! `sqlite` and `postgres`; the rules live here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{UserError, UserId};
use crate::clock::Millis;
use crate::crypto::random_bytes;

/// Who must have a second factor (`two_factor`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// Users may set one up; those who have one are asked for it.
    #[default]
    Optional,
    /// Everyone: a user without one sets one up right after the password,
    /// before going anywhere else.
    Required,
}

impl Policy {
    /// `optional` or `required`.
    ///
    /// # Errors
    ///
    /// Anything else, with what is accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            _ => Err(format!("{s:?} is not `optional` or `required`")),
        }
    }

    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

/// How many recovery codes a user gets at a time.
pub const RECOVERY_CODES: usize = 10;

/// The issuer authenticator apps show beside the account name.
const ISSUER: &str = "gatehouse";

/// One second-factor statement per method; implemented for SQLite and
/// PostgreSQL beside the users' statements.
pub(super) trait FactorStore: Send + Sync {
    fn totp_get(&self, user: UserId) -> Result<Option<Vec<u8>>, UserError>;
    fn totp_set(
        &self,
        user: UserId,
        sealed: &[u8],
        step: i64,
        now: Millis,
    ) -> Result<(), UserError>;
    /// Records `step` as used if it is later than the last one; `false`
    /// when it was not (a replay, or no seed).
    fn totp_use(&self, user: UserId, step: i64) -> Result<bool, UserError>;
    fn totp_delete(&self, user: UserId) -> Result<(), UserError>;
    /// Replaces the user's recovery codes with these hashes.
    fn recovery_replace(&self, user: UserId, hashes: &[[u8; 32]]) -> Result<(), UserError>;
    /// Deletes the code with this hash; `false` when there was none.
    fn recovery_take(&self, user: UserId, hash: &[u8; 32]) -> Result<bool, UserError>;
    fn recovery_count(&self, user: UserId) -> Result<i64, UserError>;
    fn passkey_insert(&self, user: UserId, new: &NewPasskeyRow<'_>) -> Result<(), UserError>;
    fn passkey_list(&self, user: UserId) -> Result<Vec<Passkey>, UserError>;
    fn passkey_find(&self, credential_id: &[u8]) -> Result<Option<StoredPasskey>, UserError>;
    /// Writes `credential` and `now` as last used, unless the passkey was
    /// used at or after `started` (and not in the future): `false` then,
    /// and nothing written.
    fn passkey_used(
        &self,
        id: i64,
        credential: &[u8],
        started: Millis,
        now: Millis,
    ) -> Result<bool, UserError>;
    /// Deletes this passkey of `user`; `false` when they have none by that id.
    fn passkey_delete(&self, user: UserId, id: i64) -> Result<bool, UserError>;
    /// Deletes every second factor of `user`.
    fn factors_delete(&self, user: UserId) -> Result<(), UserError>;
    /// What `user` has, in one statement.
    fn summary(&self, user: UserId) -> Result<Summary, UserError>;
    /// Every user who has a second factor, with what they have.
    fn summaries(&self) -> Result<Vec<(UserId, Summary)>, UserError>;
    /// Everything of `user`'s, as stored, for moving to another database.
    fn export(&self, user: UserId) -> Result<Stored, UserError>;
    /// Stores what [`export`](Self::export) gave, in one transaction.
    fn import(&self, user: UserId, stored: &Stored) -> Result<(), UserError>;
}

/// A user's second factors as stored (seeds still sealed), for moving
/// them to another database with the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// The sealed seed, the last step used and when it was set up.
    pub totp: Option<(Vec<u8>, i64, Millis)>,
    /// The recovery code hashes.
    pub recovery: Vec<Vec<u8>>,
    /// Each passkey.
    pub passkeys: Vec<StoredRow>,
}

/// A passkey as stored: credential id, name, credential, added, last used.
pub type StoredRow = (Vec<u8>, String, Vec<u8>, Millis, Option<Millis>);

/// A passkey to store.
pub(super) struct NewPasskeyRow<'a> {
    pub credential_id: &'a [u8],
    pub name: &'a str,
    pub credential: &'a [u8],
    pub now: Millis,
}

/// A passkey as listed on the account page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    /// Its row id, for removing it.
    pub id: i64,
    /// The WebAuthn credential id (what a sign-in's allow list names).
    pub credential_id: Vec<u8>,
    /// The name its owner gave it.
    pub name: String,
    /// When it was registered.
    pub created_at: Millis,
    /// When it last signed in, if ever.
    pub last_used_at: Option<Millis>,
}

/// A passkey as the sign-in needs it.
#[derive(Debug, Clone)]
pub struct StoredPasskey {
    /// Its row id.
    pub id: i64,
    /// Whose it is.
    pub user_id: UserId,
    /// What the ceremony code needs to verify an assertion.
    pub credential: Vec<u8>,
}

/// Which second factors a user has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// An authenticator app is set up.
    pub totp: bool,
    /// How many recovery codes are left.
    pub recovery_left: i64,
    /// How many passkeys are registered.
    pub passkeys: i64,
}

impl Summary {
    /// Whether the user has a factor that can be a second step (recovery
    /// codes alone are a way back in, not a factor).
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }
}

/// Whether a code was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// The right code, not used before.
    Accepted,
    /// A code for a step already used (replayed).
    Replayed,
    /// Not a current code.
    Wrong,
}

/// Seals TOTP seeds with keys derived from the server's secrets: the
/// first seals, any opens (so the secrets can be rotated as long as the
/// old one stays in the list).
#[derive(Clone)]
pub struct SeedKey {
    ciphers: Vec<XChaCha20Poly1305>,
}

impl std::fmt::Debug for SeedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeedKey({} keys: ***)", self.ciphers.len())
    }
}

impl SeedKey {
    /// Keys derived from `secrets` (none: TOTP cannot be used).
    pub fn new(secrets: &[Vec<u8>]) -> Self {
        let ciphers = secrets
            .iter()
            .map(|s| {
                // Its own key: the cookie-signing and cookie-store keys are
                // never reused for seeds.
                let mut mac =
                    <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(s).expect("HMAC takes any key");
                mac.update(b"gatehouse totp seeds v1");
                let key = mac.finalize().into_bytes();
                XChaCha20Poly1305::new(Key::from_slice(&key))
            })
            .collect();
        Self { ciphers }
    }

    /// `seed` sealed for `user`: a random nonce, then the ciphertext.
    ///
    /// # Errors
    ///
    /// [`UserError::NoSeedKey`] when no secrets were given.
    pub fn seal(&self, user: UserId, seed: &[u8]) -> Result<Vec<u8>, UserError> {
        let cipher = self.ciphers.first().ok_or(UserError::NoSeedKey)?;
        let nonce = random_bytes::<24>();
        let aad = user.to_be_bytes();
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: seed,
                    aad: &aad,
                },
            )
            .map_err(|_| UserError::NoSeedKey)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The seed sealed for `user`; `None` when it was sealed for someone
    /// else, under a secret no longer configured, or altered.
    pub fn open(&self, user: UserId, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 24 + 16 {
            return None;
        }
        let (nonce, body) = sealed.split_at(24);
        let aad = user.to_be_bytes();
        self.ciphers.iter().find_map(|c| {
            c.decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .ok()
        })
    }
}

/// A TOTP being set up: the seed (sealed, for keeping in the session
/// until a code confirms it) and what the page shows.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The seed, sealed for the user, base64url: safe to keep in the
    /// session (which may live in the same database file).
    pub sealed: String,
    /// The seed in base32, for typing into an app by hand.
    pub secret: String,
    /// The `otpauth://` URI the QR code holds.
    pub uri: String,
}

/// The TOTP generator for `seed` and `account`.
fn generator(seed: &[u8], account: &str) -> Result<totp_rs::Totp, UserError> {
    totp_rs::Builder::new()
        .with_secret(seed.to_vec())
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| UserError::Factor(format!("TOTP: {e}")))
}

/// Seconds since the Unix epoch now (0 before it: no code then matches).
fn unix_now() -> u64 {
    u64::try_from(crate::clock::now() / 1000).unwrap_or(0)
}

/// Which step `code` is for (one step of skew either way), if any.
fn matching_step(seed: &[u8], code: &str, now: u64) -> Result<Option<u64>, UserError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(generator(seed, "x")?.check(&code, now))
}

/// The code an authenticator shows for `seed` at `unix` seconds: for tests
/// that play the user's phone.
///
/// # Errors
///
/// A seed too short for RFC 6238.
pub fn code_at(seed: &[u8], unix: u64) -> Result<String, UserError> {
    Ok(generator(seed, "x")?.generate(unix).to_string())
}

/// The hash a recovery code is kept as: lower case, without spaces or
/// dashes, so `ABCD-efgh` and `abcdefgh` are one code.
fn recovery_hash(code: &str) -> [u8; 32] {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Sha256::digest(norm.as_bytes()).into()
}

/// A new recovery code: 16 characters of lower-case base32 (80 bits) in
/// four groups.
fn new_recovery_code() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let bytes = random_bytes::<16>();
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// The second factors of every user, over one database.
#[derive(Clone)]
pub struct Factors {
    pub(super) db: std::sync::Arc<dyn FactorStore>,
    pub(super) seeds: SeedKey,
    /// Passwords lately verified over Basic: a user's go when they add a
    /// second factor.
    pub(super) basic: std::sync::Arc<super::basic::BasicCache>,
}

impl Factors {
    /// What `user` has.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn summary(&self, user: UserId) -> Result<Summary, UserError> {
        self.db.summary(user)
    }

    /// What every user with a second factor has.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn summaries(&self) -> Result<std::collections::HashMap<UserId, Summary>, UserError> {
        Ok(self.db.summaries()?.into_iter().collect())
    }

    /// A new TOTP seed for `user` (`account` is the name the app shows),
    /// not yet in force: [`confirm_totp`](Self::confirm_totp) with a code
    /// from it stores it.
    ///
    /// # Errors
    ///
    /// No secrets to seal with.
    pub fn start_totp(&self, user: UserId, account: &str) -> Result<Enrolment, UserError> {
        let seed = random_bytes::<20>();
        let totp = generator(&seed, account)?;
        let uri = totp
            .to_url()
            .map_err(|e| UserError::Factor(format!("TOTP: {e}")))?;
        Ok(Enrolment {
            sealed: URL_SAFE_NO_PAD.encode(self.seeds.seal(user, &seed)?),
            secret: totp.secret().to_base32(),
            uri,
        })
    }

    /// The enrolment of [`start_totp`](Self::start_totp) again, from its
    /// sealed seed (to show the page again after a wrong code).
    pub fn reopen_totp(&self, user: UserId, account: &str, sealed: &str) -> Option<Enrolment> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let seed = self.seeds.open(user, &bytes)?;
        let totp = generator(&seed, account).ok()?;
        Some(Enrolment {
            sealed: sealed.to_owned(),
            secret: totp.secret().to_base32(),
            uri: totp.to_url().ok()?,
        })
    }

    /// Puts the sealed seed of an enrolment in force if `code` is current
    /// for it (replacing any earlier authenticator); the step of that code
    /// counts as used.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn confirm_totp(&self, user: UserId, sealed: &str, code: &str) -> Result<bool, UserError> {
        let Some(seed) = URL_SAFE_NO_PAD
            .decode(sealed)
            .ok()
            .and_then(|b| self.seeds.open(user, &b))
        else {
            return Ok(false);
        };
        let Some(step) = matching_step(&seed, code, unix_now())? else {
            return Ok(false);
        };
        let sealed = self.seeds.seal(user, &seed)?;
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.db.totp_set(user, &sealed, step, crate::clock::now())?;
        self.basic.forget(user);
        Ok(true)
    }

    /// Checks a code from `user`'s authenticator: accepted once, within a
    /// step either way of now.
    ///
    /// # Errors
    ///
    /// Database failures; a seed that no configured secret opens.
    pub fn check_totp(&self, user: UserId, code: &str) -> Result<CodeCheck, UserError> {
        let Some(sealed) = self.db.totp_get(user)? else {
            return Ok(CodeCheck::Wrong);
        };
        let seed = self.seeds.open(user, &sealed).ok_or_else(|| {
            UserError::Factor(
                "this user's TOTP seed cannot be opened with the configured secrets".to_owned(),
            )
        })?;
        let Some(step) = matching_step(&seed, code, unix_now())? else {
            return Ok(CodeCheck::Wrong);
        };
        if self
            .db
            .totp_use(user, i64::try_from(step).unwrap_or(i64::MAX))?
        {
            Ok(CodeCheck::Accepted)
        } else {
            Ok(CodeCheck::Replayed)
        }
    }

    /// Removes `user`'s authenticator app.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn remove_totp(&self, user: UserId) -> Result<(), UserError> {
        self.db.totp_delete(user)
    }

    /// Ten new recovery codes for `user`, replacing any left; shown once.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn new_recovery_codes(&self, user: UserId) -> Result<Vec<String>, UserError> {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes: Vec<[u8; 32]> = codes.iter().map(|c| recovery_hash(c)).collect();
        self.db.recovery_replace(user, &hashes)?;
        Ok(codes)
    }

    /// Uses one of `user`'s recovery codes; how many are left, or `None`
    /// when `code` is not one of them.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn use_recovery_code(&self, user: UserId, code: &str) -> Result<Option<i64>, UserError> {
        if code.len() > 64 {
            return Ok(None);
        }
        if !self.db.recovery_take(user, &recovery_hash(code))? {
            return Ok(None);
        }
        Ok(Some(self.db.recovery_count(user)?))
    }

    /// `user`'s passkeys, oldest first.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn passkeys(&self, user: UserId) -> Result<Vec<Passkey>, UserError> {
        self.db.passkey_list(user)
    }

    /// The credential ids of `user`'s passkeys (a sign-in's allow list,
    /// and what a registration excludes).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn credential_ids(&self, user: UserId) -> Result<Vec<Vec<u8>>, UserError> {
        Ok(self
            .db
            .passkey_list(user)?
            .into_iter()
            .map(|p| p.credential_id)
            .collect())
    }

    /// Stores a passkey for `user`.
    ///
    /// # Errors
    ///
    /// A credential already registered ([`UserError::Taken`]), or database
    /// failures.
    pub fn add_passkey(
        &self,
        user: UserId,
        credential_id: &[u8],
        name: &str,
        credential: &[u8],
    ) -> Result<(), UserError> {
        self.db.passkey_insert(
            user,
            &NewPasskeyRow {
                credential_id,
                name,
                credential,
                now: crate::clock::now(),
            },
        )?;
        self.basic.forget(user);
        Ok(())
    }

    /// The passkey with this credential id.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<StoredPasskey>, UserError> {
        if credential_id.len() > 1023 {
            return Ok(None);
        }
        self.db.passkey_find(credential_id)
    }

    /// Records a sign-in with passkey `id` and its updated credential, for
    /// a ceremony begun at `started`; `false`, and nothing recorded, when
    /// the passkey was already used since then: the answer is then refused.
    ///
    /// This is what makes a ceremony good for one answer even when its
    /// state travels in a cookie (a passkey-only sign-in keeps none on the
    /// server): a captured answer sent again with its ceremony cookie
    /// finds the passkey used after the ceremony began. It holds for
    /// authenticators that keep no sign counter (synced passkeys), and
    /// across instances sharing the database. The cost: of two ceremonies
    /// begun before either was answered (two tabs), only the first answer
    /// counts. A last use recorded in the future (the wall clock stepped
    /// back, or another instance's clock is ahead) does not lock the
    /// passkey out.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn passkey_used(
        &self,
        id: i64,
        credential: &[u8],
        started: crate::clock::Millis,
    ) -> Result<bool, UserError> {
        self.db
            .passkey_used(id, credential, started, crate::clock::now())
    }

    /// Removes `user`'s passkey `id`; `false` when they have none by it.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn remove_passkey(&self, user: UserId, id: i64) -> Result<bool, UserError> {
        self.db.passkey_delete(user, id)
    }

    /// `user`'s second factors as stored, for moving to another database
    /// (the seeds stay sealed: the same secrets open them there).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn export(&self, user: UserId) -> Result<Stored, UserError> {
        self.db.export(user)
    }

    /// Stores second factors exported from another database for `user`.
    ///
    /// # Errors
    ///
    /// Database failures, or a credential registered already.
    pub fn import(&self, user: UserId, stored: &Stored) -> Result<(), UserError> {
        self.db.import(user, stored)
    }

    /// Removes every second factor and recovery code of `user`.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn reset(&self, user: UserId) -> Result<(), UserError> {
        self.db.factors_delete(user)
    }
}

/// The store operations, checked alike on every backend.
#[cfg(test)]
pub(super) fn conformance(factors: &Factors, users: &super::Users) {
    let name = |s: &str| super::Username::parse(s).expect("name");
    let alice = users
        .create(&name("fa-alice"), "correct horse", false)
        .expect("alice");
    let bob = users
        .create(&name("fa-bob"), "correct horse", false)
        .expect("bob");
    assert_eq!(
        factors.summary(alice.id).expect("summary"),
        Summary::default()
    );

    // TOTP: confirmed only with a current code; each step once.
    let enrol = factors.start_totp(alice.id, "fa-alice").expect("start");
    assert!(enrol.uri.starts_with("otpauth://totp/"), "{}", enrol.uri);
    let seed = URL_SAFE_NO_PAD
        .decode(&enrol.sealed)
        .ok()
        .and_then(|b| factors.seeds.open(alice.id, &b))
        .expect("seed");
    // Sealed for alice: bob cannot confirm it.
    let now = unix_now();
    assert!(
        !factors
            .confirm_totp(bob.id, &enrol.sealed, &code_at(&seed, now).expect("code"))
            .expect("confirm")
    );
    let previous = code_at(&seed, now - 30).expect("code");
    assert!(
        factors
            .confirm_totp(alice.id, &enrol.sealed, &previous)
            .expect("confirm")
    );
    assert!(factors.summary(alice.id).expect("summary").totp);
    // The step that confirmed it is used; the current one is not.
    assert_eq!(
        factors.check_totp(alice.id, &previous).expect("check"),
        CodeCheck::Replayed
    );
    let current = code_at(&seed, now).expect("code");
    assert_eq!(
        factors.check_totp(alice.id, &current).expect("check"),
        CodeCheck::Accepted
    );
    assert_eq!(
        factors.check_totp(alice.id, &current).expect("check"),
        CodeCheck::Replayed
    );
    let far = code_at(&seed, now + 90).expect("code");
    if far != current {
        assert_eq!(
            factors.check_totp(alice.id, &far).expect("check"),
            CodeCheck::Wrong
        );
    }
    assert_eq!(
        factors.check_totp(bob.id, &current).expect("check"),
        CodeCheck::Wrong
    );

    // Recovery codes: each once, replaced as a set.
    let codes = factors.new_recovery_codes(alice.id).expect("codes");
    assert_eq!(codes.len(), RECOVERY_CODES);
    assert_eq!(
        factors
            .use_recovery_code(alice.id, &codes[0].to_uppercase())
            .expect("use"),
        Some(9)
    );
    assert_eq!(
        factors.use_recovery_code(alice.id, &codes[0]).expect("use"),
        None
    );
    assert_eq!(
        factors.use_recovery_code(bob.id, &codes[1]).expect("use"),
        None
    );
    let fresh = factors.new_recovery_codes(alice.id).expect("codes");
    assert_eq!(
        factors.use_recovery_code(alice.id, &codes[1]).expect("use"),
        None
    );
    assert_eq!(
        factors.use_recovery_code(alice.id, &fresh[1]).expect("use"),
        Some(9)
    );

    // Passkeys: listed, found by credential, updated, removed by owner only.
    factors
        .add_passkey(alice.id, b"cred-1", "laptop", b"stored-1")
        .expect("add");
    factors
        .add_passkey(alice.id, b"cred-2", "phone", b"stored-2")
        .expect("add");
    assert!(matches!(
        factors.add_passkey(bob.id, b"cred-1", "stolen", b"x"),
        Err(UserError::Taken)
    ));
    let listed = factors.passkeys(alice.id).expect("list");
    assert_eq!(
        listed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["laptop", "phone"]
    );
    assert!(listed.iter().all(|p| p.last_used_at.is_none()));
    let found = factors
        .find_passkey(b"cred-2")
        .expect("find")
        .expect("some");
    assert_eq!(
        (found.user_id, found.credential.as_slice()),
        (alice.id, &b"stored-2"[..])
    );
    let begun = crate::clock::now();
    let used = |started, now| {
        factors
            .db
            .passkey_used(found.id, b"stored-2b", started, now)
            .expect("used")
    };
    assert!(
        factors
            .passkey_used(found.id, b"stored-2b", begun)
            .expect("used")
    );
    // The same ceremony again, or one begun before that use: refused, and
    // nothing written.
    assert!(
        !factors
            .passkey_used(found.id, b"stored-2c", begun)
            .expect("used")
    );
    assert!(!used(begun - 1_000, begun + 1_000));
    // One begun after it: taken.
    assert!(used(begun + 2_000, begun + 3_000));
    // A last use in the future (the clock stepped back an hour) locks the
    // passkey out of nothing; a replay under the stepped-back clock is
    // still refused.
    assert!(used(begun - 3_600_000, begun - 3_599_000));
    assert!(!used(begun - 3_600_000, begun - 3_598_000));
    let again = factors
        .find_passkey(b"cred-2")
        .expect("find")
        .expect("some");
    assert_eq!(again.credential, b"stored-2b");
    assert!(
        factors.passkeys(alice.id).expect("list")[1]
            .last_used_at
            .is_some()
    );
    assert!(!factors.remove_passkey(bob.id, found.id).expect("remove"));
    assert!(factors.remove_passkey(alice.id, found.id).expect("remove"));
    assert!(factors.find_passkey(b"cred-2").expect("find").is_none());

    let summary = factors.summary(alice.id).expect("summary");
    assert_eq!(
        summary,
        Summary {
            totp: true,
            recovery_left: 9,
            passkeys: 1
        }
    );
    assert_eq!(
        factors.summaries().expect("all").get(&alice.id),
        Some(&summary)
    );
    assert!(!factors.summaries().expect("all").contains_key(&bob.id));

    // Exported and imported again, everything is as it was.
    let stored = factors.export(alice.id).expect("export");
    assert!(stored.totp.is_some() && stored.recovery.len() == 9 && stored.passkeys.len() == 1);
    factors.reset(alice.id).expect("reset");
    factors.import(alice.id, &stored).expect("import");
    assert_eq!(factors.export(alice.id).expect("export"), stored);
    assert_eq!(factors.summary(alice.id).expect("summary"), summary);

    // A reset takes everything; deleting the user takes the rest.
    factors.reset(alice.id).expect("reset");
    assert_eq!(
        factors.summary(alice.id).expect("summary"),
        Summary::default()
    );
    factors
        .add_passkey(bob.id, b"cred-3", "key", b"s")
        .expect("add");
    users.delete(bob.id).expect("delete");
    assert!(factors.find_passkey(b"cred-3").expect("find").is_none());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_open_only_for_their_user_and_under_a_known_secret() {
        let key = SeedKey::new(&[b"secret one".to_vec()]);
        let sealed = key.seal(7, b"seed bytes twenty...").expect("seal");
        assert_eq!(
            key.open(7, &sealed).as_deref(),
            Some(&b"seed bytes twenty..."[..])
        );
        assert_eq!(key.open(8, &sealed), None);
        let rotated = SeedKey::new(&[b"secret two".to_vec(), b"secret one".to_vec()]);
        assert!(rotated.open(7, &sealed).is_some());
        assert_eq!(
            SeedKey::new(&[b"secret two".to_vec()]).open(7, &sealed),
            None
        );
        let mut altered = sealed.clone();
        altered[30] ^= 1;
        assert_eq!(key.open(7, &altered), None);
        assert_eq!(key.open(7, &sealed[..20]), None);
        assert!(matches!(
            SeedKey::new(&[]).seal(7, b"x"),
            Err(UserError::NoSeedKey)
        ));
    }

    #[test]
    fn codes_match_rfc_6238_and_one_step_of_skew() {
        // RFC 6238 appendix B, SHA-1, the last six digits.
        let seed = b"12345678901234567890";
        assert_eq!(code_at(seed, 59).expect("code"), "287082");
        assert_eq!(code_at(seed, 1_111_111_109).expect("code"), "081804");
        let now = 1_111_111_109;
        assert_eq!(
            matching_step(seed, "081804", now).expect("m"),
            Some(now / 30)
        );
        assert_eq!(
            matching_step(seed, &code_at(seed, now - 30).expect("c"), now).expect("m"),
            Some(now / 30 - 1)
        );
        assert_eq!(
            matching_step(seed, &code_at(seed, now + 30).expect("c"), now).expect("m"),
            Some(now / 30 + 1)
        );
        for far in [now - 60, now + 60] {
            let code = code_at(seed, far).expect("c");
            assert_eq!(matching_step(seed, &code, now).expect("m"), None, "{far}");
        }
        for bad in ["", "08180", "0818045", "08180x", "０８１８０４", "081 804x"] {
            assert_eq!(matching_step(seed, bad, now).expect("m"), None, "{bad:?}");
        }
        assert_eq!(
            matching_step(seed, " 081 804 ", now).expect("m"),
            Some(now / 30)
        );
    }

    #[test]
    fn recovery_codes_are_random_and_compare_loosely() {
        let a = new_recovery_code();
        assert_eq!(a.len(), 19, "{a}");
        assert_ne!(a, new_recovery_code());
        assert_eq!(
            recovery_hash(&a),
            recovery_hash(&a.to_uppercase().replace('-', " "))
        );
    }
}
