//! The passwords lately verified over `Authorization: Basic`, so bcrypt is
//! not paid on every request of a WebDAV client or a script (Authelia's
//! users call checking the password on every Basic request "impractically"
//! slow).
//!
//! An entry is keyed by an HMAC of the name and password under a key made
//! at start and never stored, so the cache holds no password and no
//! unsalted hash of one: a memory dump gives nothing to guess against
//! offline without the key beside it. It lives [`TTL`] at most and is used
//! only while the user's row still has the `password_changed_at` it was
//! verified under and the user is enabled (the caller reads the row on
//! every request anyway, for their groups): a new password or a disabled
//! user ends it at once, on every instance. Adding a second factor drops
//! the user's entries here ([`BasicCache::forget`]); another instance of a
//! shared database keeps its own for at most [`TTL`].

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::Millis;
use crate::crypto::Signer;
use crate::identity::{User, UserId};

/// How long a verified password is taken on trust.
pub const TTL: Millis = 60 * 1000;

/// How many entries are kept; past it, expired ones go, and if none has
/// expired nothing new is kept (the next request pays bcrypt again).
pub const MAX_ENTRIES: usize = 4096;

/// One verified password.
#[derive(Clone, Copy, Debug)]
struct Entry {
    user: UserId,
    password_at: Millis,
    until: Millis,
}

/// Passwords verified over Basic in the last minute, by keyed hash.
pub struct BasicCache {
    signer: Signer,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Default for BasicCache {
    fn default() -> Self {
        Self::new()
    }
}

impl BasicCache {
    /// An empty cache under a fresh random key.
    pub fn new() -> Self {
        Self {
            signer: Signer::new(vec![crate::crypto::random_bytes::<32>().to_vec()]),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, name: &str, password: &str) -> [u8; 32] {
        // The name is a valid username (no NUL), so `name\0password` is
        // one pair only.
        let payload = format!("{}\0{password}", name.to_ascii_lowercase());
        self.signer.tag("basic-cache", &payload)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The user `name` and `password` were verified for, if that was less
    /// than [`TTL`] ago; with the password time it was verified under,
    /// which the caller compares with the user's row.
    pub fn get(&self, name: &str, password: &str, now: Millis) -> Option<(UserId, Millis)> {
        let key = self.key(name, password);
        let mut entries = self.lock();
        let entry = *entries.get(&key)?;
        if now >= entry.until {
            entries.remove(&key);
            return None;
        }
        Some((entry.user, entry.password_at))
    }

    /// Remembers that `password` is `user`'s (signed in as `name`).
    pub fn put(&self, name: &str, password: &str, user: &User, now: Millis) {
        let key = self.key(name, password);
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now < e.until);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(
            key,
            Entry {
                user: user.id,
                password_at: user.password_changed_at,
                until: now.saturating_add(TTL),
            },
        );
    }

    /// Drops every entry of `user` (a second factor was added: their
    /// password alone no longer passes).
    pub fn forget(&self, user: UserId) {
        self.lock().retain(|_, e| e.user != user);
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> User {
        User {
            id: 3,
            username: "alice".into(),
            is_admin: false,
            disabled: false,
            created_at: 0,
            password_changed_at: 42,
            stamp: "s".into(),
            groups: Vec::new(),
        }
    }

    #[test]
    fn a_verified_password_is_remembered_for_a_minute_only() {
        let cache = BasicCache::new();
        assert_eq!(cache.get("alice", "pw", 0), None);
        cache.put("alice", "pw", &alice(), 1_000);
        assert_eq!(cache.get("Alice", "pw", 1_000 + TTL - 1), Some((3, 42)));
        assert_eq!(cache.get("alice", "pw2", 1_000), None);
        assert_eq!(cache.get("alice", "pw", 1_000 + TTL), None);
        assert!(cache.is_empty(), "an expired entry goes when looked at");
    }

    #[test]
    fn a_name_and_password_cannot_be_shifted_into_another_pair() {
        let cache = BasicCache::new();
        cache.put("alice", "bpw", &alice(), 0);
        assert_eq!(cache.get("aliceb", "pw", 0), None);
    }

    #[test]
    fn forgetting_a_user_drops_their_entries_only() {
        let cache = BasicCache::new();
        cache.put("alice", "pw", &alice(), 0);
        let bob = User {
            id: 4,
            username: "bob".into(),
            ..alice()
        };
        cache.put("bob", "pw", &bob, 0);
        cache.forget(3);
        assert_eq!(cache.get("alice", "pw", 1), None);
        assert_eq!(cache.get("bob", "pw", 1), Some((4, 42)));
    }

    #[test]
    fn a_full_cache_keeps_what_it_has_and_makes_room_from_the_expired() {
        let cache = BasicCache::new();
        for i in 0..MAX_ENTRIES {
            cache.put(&format!("u{i}"), "pw", &alice(), 0);
        }
        cache.put("late", "pw", &alice(), 1);
        assert_eq!(cache.get("late", "pw", 1), None, "full: not kept");
        assert!(cache.get("u1", "pw", 1).is_some());
        cache.put("later", "pw", &alice(), TTL + 1);
        assert!(cache.get("later", "pw", TTL + 2).is_some());
        assert_eq!(cache.len(), 1);
    }
}
