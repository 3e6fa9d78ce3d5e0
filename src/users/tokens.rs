//! Personal access tokens: what scripts, monitors, WebDAV and phone apps
//! use instead of a browser's session (`Authorization: Bearer`, or as the
//! password of `Authorization: Basic`). The statements live in
//! `tokens/sqlite.rs` and `tokens/postgres.rs`; [`Tokens`] keeps the rules.
//!
//! - A token is `ght_` and 43 characters of base64url (256 bits from the
//!   OS random source). It is shown once; only its SHA-256 is stored, and
//!   a request's token is looked up by that hash (one indexed read, with
//!   the user's row and groups in the same statement). A hash of 256
//!   random bits needs no slow hash: there is nothing to guess.
//! - A token may reach every app of its user, or only those it names; it
//!   may expire. It never counts as a second factor.
//! - It ends when it is revoked, expires, or its user is disabled (their
//!   tokens are deleted; until then the check refuses a disabled user's),
//!   deleted (the rows go with the user) or gets a new password: a token keeps the
//!   user's `password_changed_at` as it was when it was made, and is
//!   refused once that differs. So a new password ends every token on
//!   every instance at once, whichever path set it (the account page, the
//!   admin page, the command line, a reset link), with no write to them.
//! - Tokens that can no longer work are deleted before a list shows them.
//! - Its last use is written at most once a minute ([`TOUCH_EVERY`]): a
//!   token used on every request does not make every request a write.

mod postgres;
mod sqlite;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::{User, UserError, UserId};
use crate::clock::Millis;

/// What every token begins with: it tells a token from a password in
/// Basic's password field, and lets secret scanners find one left in a
/// repository.
pub const PREFIX: &str = "ght_";

/// How long a token is: the prefix and 32 bytes in base64url.
pub const TOKEN_LEN: usize = PREFIX.len() + 43;

/// The longest token name accepted.
pub const MAX_NAME: usize = 64;

/// How many tokens one user may hold.
pub const MAX_PER_USER: usize = 50;

/// How stale a token's recorded last use may get.
pub const TOUCH_EVERY: Millis = 60 * 1000;

/// The id of a token, as the table numbers them.
pub type TokenId = i64;

/// A token as stored (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Its id, for the lists and for revoking it.
    pub id: TokenId,
    /// Whose it is.
    pub user_id: UserId,
    /// What its owner called it.
    pub name: String,
    /// The apps it may reach; empty: all of its user's.
    pub apps: Vec<String>,
    /// When it was made.
    pub created_at: Millis,
    /// When it stops working, if ever.
    pub expires_at: Option<Millis>,
    /// When it was last used (to the minute), if ever.
    pub last_used_at: Option<Millis>,
    /// The user's `password_changed_at` when it was made.
    pub password_at: Millis,
}

impl Token {
    /// Whether it may reach the app named `app` (`None`: a request for no
    /// app, which only a token for every app may make).
    pub fn reaches(&self, app: Option<&str>) -> bool {
        self.apps.is_empty()
            || app.is_some_and(|a| self.apps.iter().any(|t| t.eq_ignore_ascii_case(a)))
    }

    /// Whether it still works for `user` (its owner, as now stored) at
    /// `now`: not expired, the user enabled, and their password unchanged
    /// since it was made.
    pub fn live_for(&self, user: &User, now: Millis) -> bool {
        self.user_id == user.id
            && !user.disabled
            && self.password_at == user.password_changed_at
            && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A token and its user's name, for the administrators' list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The token.
    pub token: Token,
    /// Its user's name.
    pub username: String,
}

/// The SHA-256 a token is stored and looked up by.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `s` has a token's shape: the prefix, then exactly 43 base64url
/// characters. Anything else is refused before any lookup.
pub fn well_formed(s: &str) -> bool {
    s.len() == TOKEN_LEN
        && s.starts_with(PREFIX)
        && s[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new token: the prefix and 32 random bytes.
fn fresh() -> String {
    let bytes = crate::crypto::random_bytes::<32>();
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What a new token is made with.
#[derive(Clone, Debug, Default)]
pub struct NewToken {
    /// Its name: 1 to 64 printable characters.
    pub name: String,
    /// The apps it may reach; empty: all.
    pub apps: Vec<String>,
    /// When it stops working, if ever.
    pub expires_at: Option<Millis>,
}

/// Where tokens are kept: the statements each database runs.
pub(super) trait TokenStore: Send + Sync {
    /// Stores a token for `user` if they hold fewer than
    /// [`MAX_PER_USER`] ([`UserError::TooMany`] else).
    fn insert(
        &self,
        user: &User,
        hash: &[u8; 32],
        new: &NewToken,
        now: Millis,
    ) -> Result<Token, UserError>;
    /// The token stored under `hash` and its user, in one read.
    fn find(&self, hash: &[u8; 32]) -> Result<Option<(Token, User)>, UserError>;
    /// Records a use at `now`.
    fn touch(&self, id: TokenId, now: Millis) -> Result<(), UserError>;
    /// `user`'s tokens, newest first.
    fn of_user(&self, user: UserId) -> Result<Vec<Token>, UserError>;
    /// Every token with its user's name, newest first.
    fn all(&self) -> Result<Vec<Listed>, UserError>;
    /// Deletes a token (only `user`'s, when given); whether one went.
    fn delete(&self, id: TokenId, user: Option<UserId>) -> Result<bool, UserError>;
    /// Deletes every token of `user`; how many went.
    fn delete_of_user(&self, user: UserId) -> Result<usize, UserError>;
    /// Deletes `user`'s tokens made before their password changed, and
    /// every expired token; how many went.
    fn sweep(&self, now: Millis) -> Result<usize, UserError>;
    /// Every stored token with its hash, for `migrate-store`.
    fn export(&self) -> Result<Vec<(Token, Vec<u8>)>, UserError>;
    /// Copies exported tokens (ids kept; a token already there is left).
    fn import(&self, tokens: &[(Token, Vec<u8>)]) -> Result<(), UserError>;
}

/// The apps column: names joined by `,` (a character no app name holds),
/// empty for every app.
fn join_apps(apps: &[String]) -> String {
    apps.join(",")
}

/// The apps column read back.
fn split_apps(apps: &str) -> Vec<String> {
    apps.split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Users' personal access tokens, over a `TokenStore` (the statements each database runs).
#[derive(Clone)]
pub struct Tokens {
    pub(super) db: Arc<dyn TokenStore>,
}

impl Tokens {
    /// Makes a token for `user`: the token (shown once, never stored) and
    /// its row.
    ///
    /// # Errors
    ///
    /// [`UserError::InvalidTokenName`] for an empty, long or unprintable
    /// name, or an app name with a `,`; [`UserError::TooMany`] past
    /// [`MAX_PER_USER`]; database failures.
    pub fn create(
        &self,
        user: &User,
        new: &NewToken,
        now: Millis,
    ) -> Result<(String, Token), UserError> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(UserError::InvalidTokenName);
        }
        if new.apps.iter().any(|a| a.is_empty() || a.contains(',')) {
            return Err(UserError::InvalidTokenName);
        }
        let token = fresh();
        let new = NewToken {
            name: name.to_owned(),
            ..new.clone()
        };
        let row = self.db.insert(user, &hash(&token), &new, now)?;
        Ok((token, row))
    }

    /// The live token `token` and its enabled user, or `None` for a token
    /// of the wrong shape, unknown, expired, or ended by its user's new
    /// password. Records the use at most once a minute.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn check(&self, token: &str, now: Millis) -> Result<Option<(Token, User)>, UserError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let Some((row, user)) = self.db.find(&hash(token))? else {
            return Ok(None);
        };
        if !row.live_for(&user, now) {
            return Ok(None);
        }
        if row
            .last_used_at
            .is_none_or(|at| now.saturating_sub(at) >= TOUCH_EVERY)
        {
            // Best effort: a use that cannot be recorded (the database is
            // busy, read-only) does not refuse a good token.
            if let Err(e) = self.db.touch(row.id, now) {
                crate::logging::line(&format!(
                    "token last use not recorded detail={}",
                    crate::logging::quote(&e.to_string())
                ));
            }
        }
        Ok(Some((row, user)))
    }

    /// `user`'s tokens, newest first.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn of_user(&self, user: UserId) -> Result<Vec<Token>, UserError> {
        self.sweep_quietly();
        self.db.of_user(user)
    }

    /// Ends every token of `user` (they were disabled: enabling them
    /// again does not bring their tokens back, as it does not their
    /// sessions); how many went.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn end_all(&self, user: UserId) -> Result<usize, UserError> {
        self.db.delete_of_user(user)
    }

    /// Deletes the tokens that can no longer work before a list shows
    /// them; a failure (a read-only database) only leaves them listed.
    fn sweep_quietly(&self) {
        if let Err(e) = self.db.sweep(crate::clock::now()) {
            crate::logging::line(&format!(
                "token sweep failed detail={}",
                crate::logging::quote(&e.to_string())
            ));
        }
    }

    /// Every token with its user's name, newest first.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn all(&self) -> Result<Vec<Listed>, UserError> {
        self.sweep_quietly();
        self.db.all()
    }

    /// Revokes token `id` (only if it is `user`'s, when given): it fails
    /// from the next request on, on every instance.
    ///
    /// # Errors
    ///
    /// [`UserError::NoSuchToken`]; database failures.
    pub fn revoke(&self, id: TokenId, user: Option<UserId>) -> Result<(), UserError> {
        if self.db.delete(id, user)? {
            Ok(())
        } else {
            Err(UserError::NoSuchToken)
        }
    }

    /// Deletes the tokens that can no longer work (expired, or made before
    /// their user's password changed); how many went.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn sweep(&self, now: Millis) -> Result<usize, UserError> {
        self.db.sweep(now)
    }

    /// Every token with its hash, for `migrate-store`.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn export(&self) -> Result<Vec<(Token, Vec<u8>)>, UserError> {
        self.db.export()
    }

    /// Copies exported tokens into this store.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn import(&self, tokens: &[(Token, Vec<u8>)]) -> Result<(), UserError> {
        self.db.import(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_token_is_well_formed_and_unlike_the_next() {
        let (a, b) = (fresh(), fresh());
        assert!(well_formed(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_LEN);
    }

    #[test]
    fn only_a_tokens_shape_is_well_formed() {
        let good = fresh();
        for bad in [
            String::new(),
            PREFIX.to_owned(),
            good[..good.len() - 1].to_owned(),
            format!("{good}A"),
            good.replacen("ght_", "ghp_", 1),
            format!("{}+", &good[..good.len() - 1]),
            format!("{}\u{e9}", &good[..good.len() - 2]),
            format!("{}\0", &good[..good.len() - 1]),
        ] {
            assert!(!well_formed(&bad), "{bad:?}");
        }
    }

    fn token(apps: &[&str], expires_at: Option<Millis>) -> Token {
        Token {
            id: 1,
            user_id: 7,
            name: "t".into(),
            apps: apps.iter().map(|a| (*a).to_owned()).collect(),
            created_at: 0,
            expires_at,
            last_used_at: None,
            password_at: 100,
        }
    }

    fn owner() -> User {
        User {
            id: 7,
            username: "alice".into(),
            is_admin: false,
            disabled: false,
            created_at: 0,
            password_changed_at: 100,
            stamp: "s".into(),
            groups: Vec::new(),
        }
    }

    #[test]
    fn a_token_reaches_its_apps_only() {
        assert!(token(&[], None).reaches(Some("wiki")));
        assert!(token(&[], None).reaches(None));
        let t = token(&["wiki"], None);
        assert!(t.reaches(Some("wiki")) && t.reaches(Some("Wiki")));
        assert!(!t.reaches(Some("grafana")));
        assert!(!t.reaches(None));
        assert!(!t.reaches(Some("wik")));
    }

    #[test]
    fn a_token_ends_with_expiry_a_new_password_or_a_disabled_user() {
        let user = owner();
        assert!(token(&[], None).live_for(&user, 5));
        assert!(token(&[], Some(10)).live_for(&user, 9));
        assert!(!token(&[], Some(10)).live_for(&user, 10));
        let moved = User {
            password_changed_at: 101,
            ..owner()
        };
        assert!(!token(&[], None).live_for(&moved, 5));
        let off = User {
            disabled: true,
            ..owner()
        };
        assert!(!token(&[], None).live_for(&off, 5));
        let other = User { id: 8, ..owner() };
        assert!(!token(&[], None).live_for(&other, 5));
    }

    #[test]
    fn the_apps_column_round_trips() {
        let apps = vec!["wiki".to_owned(), "grafana".to_owned()];
        assert_eq!(split_apps(&join_apps(&apps)), apps);
        assert!(split_apps("").is_empty());
    }
}
