//! Session ids and the keys they are stored under.
//!
//! An id is 32 bytes from the operating system's random source, written as
//! 43 characters of unpadded base64url. Only its SHA-256, the [`SessionKey`],
//! is ever stored, so a copy of the database does not hand out live sessions.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::crypto::random_bytes;

/// Length of an encoded session id.
pub const ID_LEN: usize = 43;

/// A session id as it travels in the cookie. Never logged, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id from the OS random source.
    ///
    /// # Panics
    ///
    /// When the operating system cannot supply random bytes; no session can
    /// be made safely without them, so serving on would be worse.
    pub fn generate() -> Self {
        Self(URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
    }

    /// Accepts a string only if it has the exact shape of an id.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != ID_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        (bytes.len() == 32).then(|| Self(s.to_owned()))
    }

    /// The id as text, for the cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key the session is stored under: SHA-256 of the id.
    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(***)")
    }
}

/// SHA-256 of a session id: the primary key of a stored session.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SessionKey(pub [u8; 32]);

impl SessionKey {
    /// A short opaque handle for pages and logs: the first 16 bytes in hex.
    ///
    /// It names a session without being able to act as one: the key is a
    /// one-way hash of the id, and this is only part of the key.
    pub fn handle(&self) -> String {
        hex(&self.0[..16])
    }

    /// The whole key in lower-case hex (64 characters), as Redis names it.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A key from [`to_hex`](Self::to_hex)'s form, if `s` is one.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(key))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_hex_and_its_handle_is_a_prefix() {
        let key = SessionId::generate().key();
        assert_eq!(key.to_hex().len(), 64);
        assert!(key.to_hex().starts_with(&key.handle()));
        assert_eq!(SessionKey::from_hex(&key.to_hex()), Some(key));
        assert_eq!(SessionKey::from_hex("zz"), None);
        assert_eq!(SessionKey::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn a_generated_id_is_43_url_safe_chars_and_parses_back() {
        let id = SessionId::generate();
        assert_eq!(id.as_str().len(), ID_LEN);
        assert!(
            id.as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(SessionId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn two_ids_differ() {
        assert_ne!(SessionId::generate(), SessionId::generate());
    }

    #[test]
    fn malformed_ids_are_refused() {
        assert!(SessionId::parse("").is_none());
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&"!".repeat(ID_LEN)).is_none());
        assert!(SessionId::parse(&"a".repeat(ID_LEN + 1)).is_none());
    }

    #[test]
    fn the_key_is_the_sha256_of_the_id() {
        let id = SessionId::generate();
        let expected: [u8; 32] = Sha256::digest(id.as_str().as_bytes()).into();
        assert_eq!(id.key().0, expected);
    }

    #[test]
    fn debug_does_not_print_the_id() {
        let id = SessionId::generate();
        assert!(!format!("{id:?}").contains(id.as_str()));
    }
}
