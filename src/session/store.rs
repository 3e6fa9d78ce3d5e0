//! The `Store` trait: what a session backend must do, in terms of records.
//!
//! A store never sees HTTP. Its verbs follow tower-sessions' vocabulary
//! (`create`, `load`, `save`, `delete`, `delete_expired`) plus the few that
//! gatehouse's guarantees need: `increment` (atomic counters), `regenerate`
//! (new id and old row gone in one step) and the per-user listing and
//! revocation behind the account pages. Every store passes the one suite in
//! [`super::conformance`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::id::SessionKey;
use crate::clock::Millis;
use crate::db::DbError;
pub use crate::identity::{User, UserId};

/// One stored session.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// SHA-256 of the session id.
    pub key: SessionKey,
    /// The signed-in user, if any.
    pub user_id: Option<UserId>,
    /// The signed-in user's stamp ([`User::stamp`]) when the session was
    /// signed in: the session is that user's only while their row still
    /// has it, so it never resolves to another user who came to have the
    /// same id. Stored and given back unchanged by every store; the SQL
    /// stores also compare it with the user row in the read that loads
    /// the session (see [`Store::load_with_user`]).
    pub user_stamp: Option<String>,
    /// The session's data: a JSON object.
    pub data: Map<String, Value>,
    /// When the session was made (or last regenerated at login).
    pub created_at: Millis,
    /// When it was last touched.
    pub last_seen_at: Millis,
    /// When it ends unless touched: the sooner of idle and absolute expiry.
    pub expires_at: Millis,
    /// When it ends whatever happens.
    pub absolute_expires_at: Millis,
    /// Remember-me: a persistent cookie and the longer limits.
    pub persistent: bool,
    /// The browser's `User-Agent` when the session was made.
    pub user_agent: Option<String>,
    /// The client's address when the session was made.
    pub ip: Option<String>,
}

/// One change to one key of a session's data.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Set the key to this value.
    Set(Value),
    /// Remove the key.
    Remove,
}

/// The keys one request changed, applied by a store in one step.
///
/// Writing only what changed, rather than the whole object read at the
/// start of the request, is what keeps two concurrent requests that change
/// different keys from overwriting each other.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Patch(pub BTreeMap<String, Change>);

impl Patch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies the patch to a data object in memory.
    pub fn apply(&self, data: &mut Map<String, Value>) {
        for (key, change) in &self.0 {
            match change {
                Change::Set(v) => {
                    data.insert(key.clone(), v.clone());
                }
                Change::Remove => {
                    data.remove(key);
                }
            }
        }
    }
}

/// New activity times written with a save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Touch {
    /// The new `last_seen_at`.
    pub last_seen_at: Millis,
    /// The new `expires_at`.
    pub expires_at: Millis,
}

/// A store failed; the request that needed it cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend refused or failed an operation.
    #[error("session store backend failed: {0}")]
    Backend(String),
    /// The backend could not be reached; the request may succeed later.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back.
    #[error("stored session is corrupt: {0}")]
    Corrupt(String),
    /// [`Store::create`] found a session under that key already (every
    /// store says so alike, so that a caller can tell it from a failure).
    #[error("a session is already stored under that key")]
    Exists,
}

// Every backend's errors become a `StoreError` through `DbError`, which
// knows which of them mean "unreachable, try later" (`Unavailable`, a `503`)
// and which a failed operation.
impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            Self::Unavailable(e.detail())
        } else if e.is_duplicate() {
            Self::Exists
        } else {
            Self::Backend(e.detail())
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e).into()
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        DbError::Pool(e).into()
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        DbError::Postgres(e).into()
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        DbError::Redis(e).into()
    }
}

/// A session backend.
///
/// `now` is passed in rather than read inside so that every store agrees on
/// what "expired" means within one request. A session whose `expires_at` is
/// at or before `now` is treated by every verb as if it did not exist.
pub trait Store: Send + Sync + 'static {
    /// Inserts a new session.
    ///
    /// # Errors
    ///
    /// [`StoreError::Exists`] for a key already stored; backend failures.
    fn create(&self, record: &Record) -> Result<(), StoreError>;

    /// The live session stored under `key`, if any.
    ///
    /// # Errors
    ///
    /// Backend failures or unreadable data.
    fn load(&self, key: &SessionKey, now: Millis) -> Result<Option<Record>, StoreError>;

    /// Like [`load`](Self::load), with the session's user as stored now,
    /// read in the same step where the store can (the SQL stores join the
    /// users table). `None` for the user means "not read here": the caller
    /// reads it itself, and compares its stamp with the record's.
    ///
    /// A user is returned only when its stamp is the record's
    /// `user_stamp`; a store that reads the user with the session treats a
    /// session whose stamp is not its user's as no session at all.
    ///
    /// # Errors
    ///
    /// Backend failures or unreadable data.
    fn load_with_user(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<(Record, Option<User>)>, StoreError> {
        Ok(self.load(key, now)?.map(|r| (r, None)))
    }

    /// Applies `patch` and `touch` to a live session. Returns `false`, and
    /// writes nothing, when the session no longer exists: a save never
    /// resurrects a destroyed session.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn save(
        &self,
        key: &SessionKey,
        patch: &Patch,
        touch: Touch,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Atomically adds `by` to the integer at `field` (a missing or
    /// non-integer value counts as 0) and applies `touch`. Returns the new
    /// value, or `None` when the session no longer exists.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn increment(
        &self,
        key: &SessionKey,
        field: &str,
        by: i64,
        touch: Touch,
        now: Millis,
    ) -> Result<Option<i64>, StoreError>;

    /// Inserts `new` and deletes the session under `old` in one step, so
    /// there is never a moment when both or neither exist.
    ///
    /// # Errors
    ///
    /// Backend failures; nothing changes then.
    fn regenerate(&self, old: &SessionKey, new: &Record) -> Result<(), StoreError>;

    /// Deletes a session. Returns whether it existed.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn delete(&self, key: &SessionKey) -> Result<bool, StoreError>;

    /// Deletes at most `limit` expired sessions; returns how many it deleted.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize, StoreError>;

    /// Live sessions, newest activity first: all of them, or one user's.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn list(&self, user_id: Option<UserId>, now: Millis) -> Result<Vec<Record>, StoreError>;

    /// How many live sessions there are.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn count(&self, now: Millis) -> Result<usize, StoreError> {
        Ok(self.list(None, now)?.len())
    }

    /// Deletes every session of `user_id` except `keep`; returns how many.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn delete_by_user(
        &self,
        user_id: UserId,
        keep: Option<&SessionKey>,
    ) -> Result<usize, StoreError>;

    /// Ends `user_id`'s oldest sessions (by `created_at`) until at most
    /// `max` live ones remain, never `keep` (the one just made); returns
    /// how many it ended. Concurrent calls may each see a few sessions the
    /// others are adding, so the count can briefly exceed `max` by the
    /// number of sign-ins in flight, never more: the last call trims it.
    ///
    /// This default lists and deletes; the bundled stores do it in one
    /// statement or script.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn end_oldest(
        &self,
        user_id: UserId,
        keep: &SessionKey,
        max: usize,
        now: Millis,
    ) -> Result<usize, StoreError> {
        let mut others: Vec<Record> = self
            .list(Some(user_id), now)?
            .into_iter()
            .filter(|r| &r.key != keep)
            .collect();
        others.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        let mut ended = 0;
        for r in others.iter().skip(max.saturating_sub(1)) {
            if self.delete(&r.key)? {
                ended += 1;
            }
        }
        Ok(ended)
    }
}

/// The longest key a session's data may use.
pub const MAX_KEY_LEN: usize = 128;

/// Whether `key` may name a value in a session's data.
///
/// Keys are 1 to 128 printable ASCII characters without `"` or `\`, so that
/// a store can address them in a JSON path without escaping.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_without_quotes() {
        assert!(valid_key("visits"));
        assert!(valid_key("cart.items:1 [x]"));
        assert!(!valid_key(""));
        assert!(!valid_key("a\"b"));
        assert!(!valid_key("a\\b"));
        assert!(!valid_key("tab\there"));
        assert!(!valid_key("é"));
        assert!(!valid_key(&"k".repeat(MAX_KEY_LEN + 1)));
    }

    #[test]
    fn a_patch_sets_and_removes_in_memory() {
        let mut data = Map::new();
        data.insert("a".into(), Value::from(1));
        data.insert("b".into(), Value::from(2));
        let mut patch = Patch::default();
        patch.0.insert("a".into(), Change::Remove);
        patch.0.insert("c".into(), Change::Set(Value::from("x")));
        patch.apply(&mut data);
        assert_eq!(Value::Object(data), serde_json::json!({"b": 2, "c": "x"}));
    }
}
