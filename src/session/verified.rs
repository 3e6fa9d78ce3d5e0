//! Cookies verified before: a cookie's signed session id and its key,
//! without the HMAC and the SHA-256 again. On a kept-alive
//! `/auth/verify` those two were about 11,700 of 59,000 instructions
//! (issue 22), the largest cost left once the session's read is kept.
//!
//! A cookie's signature depends on the cookie and the engine's secrets
//! alone (no time is signed into it), so a cookie that verified once
//! verifies again for as long as this engine, and its signer, lives:
//! the answer is the same, only cheaper. Whether its session is still
//! live is the store's to say, on every request, as before.
//!
//! Only cookies that verified are kept, at most [`MAX`] (a full table is
//! emptied and fills again with the cookies in use), so a forger fills
//! nothing. A cookie is looked up by a keyed hash (SipHash under this
//! process's random key, std's `RandomState`) and then compared in
//! constant time: how long a lookup takes tells a forger nothing about
//! the cookies kept.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

use subtle::ConstantTimeEq;

use super::id::{SessionId, SessionKey};

/// At most this many cookies are kept (about 200 bytes each).
pub(super) const MAX: usize = 1024;

/// The cookies verified so far, by keyed hash.
pub(super) struct Verified {
    hasher: std::hash::RandomState,
    map: Mutex<HashMap<u64, Entry>>,
}

struct Entry {
    cookie: Box<str>,
    id: SessionId,
    key: SessionKey,
}

impl Verified {
    pub(super) fn new() -> Self {
        Self {
            hasher: std::hash::RandomState::new(),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The id and key of `cookie`, when it verified before.
    #[inline]
    pub(super) fn get(&self, cookie: &str) -> Option<(SessionId, SessionKey)> {
        let hash = self.hasher.hash_one(cookie);
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.get(&hash)?;
        // Lengths are public (every cookie of this engine has the same);
        // the bytes are compared in constant time.
        let same = entry.cookie.len() == cookie.len()
            && bool::from(entry.cookie.as_bytes().ct_eq(cookie.as_bytes()));
        same.then(|| (entry.id.clone(), entry.key))
    }

    /// Keeps `cookie`, which has just verified as `id`.
    #[inline]
    pub(super) fn put(&self, cookie: &str, id: &SessionId, key: SessionKey) {
        let hash = self.hasher.hash_one(cookie);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX {
            map.clear();
        }
        map.insert(
            hash,
            Entry {
                cookie: cookie.into(),
                id: id.clone(),
                key,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_very_cookie_that_verified_is_found() {
        let v = Verified::new();
        let id = SessionId::generate();
        v.put("abc.def", &id, id.key());
        assert_eq!(v.get("abc.def"), Some((id.clone(), id.key())));
        for other in ["abc.deg", "abc.de", "abc.defx", "", "ABC.DEF"] {
            assert_eq!(v.get(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_full_table_is_emptied_not_grown() {
        let v = Verified::new();
        let id = SessionId::generate();
        for n in 0..MAX + 10 {
            v.put(&format!("cookie-{n}"), &id, id.key());
        }
        assert!(v.len() <= MAX, "{}", v.len());
        assert!(v.get(&format!("cookie-{}", MAX + 9)).is_some());
    }
}
