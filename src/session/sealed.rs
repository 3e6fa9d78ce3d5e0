//! The cookie store: the whole session travels in the cookie, encrypted and
//! authenticated with XChaCha20-Poly1305, for apps with no database.
//!
//! Trade-offs, stated plainly:
//!
//! - **Size**: a cookie holds about 4 KB; a sealed session over
//!   [`MAX_SEALED`] bytes cannot be saved (the request fails rather than
//!   silently dropping data). Keep little in it.
//! - **Revocation**: the server keeps nothing, so it cannot end one session
//!   early. Logging out clears the browser's cookie, but a copy taken before
//!   stays valid until it expires (idle and absolute limits still apply,
//!   since they are sealed inside). Rotating the secret ends every session.
//! - **Concurrency**: two requests that change the session at once each
//!   send back a cookie, and the browser keeps the last: changes can be lost,
//!   and `increment` is not atomic across requests.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::id::SessionKey;
use super::store::{Record, UserId};
use crate::clock::Millis;
use crate::crypto::random_bytes;

/// The largest sealed cookie value written.
pub const MAX_SEALED: usize = 4000;

/// Seals and opens session records with keys derived from the secrets.
#[derive(Clone)]
pub struct Sealer {
    ciphers: Vec<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys: ***)", self.ciphers.len())
    }
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    u: Option<UserId>,
    /// The user's stamp; absent in cookies sealed before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    d: Map<String, Value>,
    c: Millis,
    l: Millis,
    e: Millis,
    a: Millis,
    p: bool,
}

impl Sealer {
    /// A sealer whose first secret seals and all of which open.
    ///
    /// # Panics
    ///
    /// With no secrets.
    pub fn new(secrets: &[Vec<u8>]) -> Self {
        assert!(!secrets.is_empty(), "a sealer needs at least one secret");
        let ciphers = secrets
            .iter()
            .map(|s| {
                // A dedicated key, so the cookie-signing key is never reused
                // as an encryption key.
                let mut mac =
                    <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(s).expect("HMAC takes any key");
                mac.update(b"gatehouse cookie store v1");
                let key = mac.finalize().into_bytes();
                XChaCha20Poly1305::new(Key::from_slice(&key))
            })
            .collect();
        Self { ciphers }
    }

    /// Encrypts a record into a cookie value bound to `cookie_name`.
    ///
    /// # Errors
    ///
    /// When the result would exceed [`MAX_SEALED`] bytes.
    pub fn seal(&self, record: &Record, cookie_name: &str) -> Result<String, usize> {
        let plain = serde_json::to_vec(&Sealed {
            u: record.user_id,
            s: record.user_stamp.clone(),
            d: record.data.clone(),
            c: record.created_at,
            l: record.last_seen_at,
            e: record.expires_at,
            a: record.absolute_expires_at,
            p: record.persistent,
        })
        .expect("a record always serializes");
        let nonce = random_bytes::<24>();
        let sealed = self.ciphers[0]
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: cookie_name.as_bytes(),
                },
            )
            .expect("encryption of an in-memory buffer cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        let value = format!("v1.{}", URL_SAFE_NO_PAD.encode(bytes));
        if value.len() > MAX_SEALED {
            Err(value.len())
        } else {
            Ok(value)
        }
    }

    /// Decrypts a cookie value; `None` if it was not sealed by us (under any
    /// secret), was tampered with, or has expired.
    pub fn open(&self, value: &str, cookie_name: &str, now: Millis) -> Option<Record> {
        let b64 = value.strip_prefix("v1.")?;
        if b64.len() > MAX_SEALED {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
        if bytes.len() < 24 + 16 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(24);
        let plain = self.ciphers.iter().find_map(|c| {
            c.decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: cookie_name.as_bytes(),
                },
            )
            .ok()
        })?;
        let s: Sealed = serde_json::from_slice(&plain).ok()?;
        (s.e > now).then_some(Record {
            key: SessionKey([0; 32]),
            user_id: s.u,
            user_stamp: s.s,
            data: s.d,
            created_at: s.c,
            last_seen_at: s.l,
            expires_at: s.e,
            absolute_expires_at: s.a,
            persistent: s.p,
            user_agent: None,
            ip: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::conformance::record;

    fn sealer(secret: &[u8]) -> Sealer {
        Sealer::new(&[secret.to_vec()])
    }

    #[test]
    fn a_sealed_record_opens_and_hides_its_data() {
        let s = sealer(b"a secret of at least thirty-two bytes");
        let mut r = record(SessionKey([0; 32]), 1_000);
        r.data.insert("cart".into(), Value::from("secret-item"));
        r.user_id = Some(7);
        r.user_stamp = Some("5".repeat(32));
        let v = s.seal(&r, "sid").expect("fits");
        assert!(!v.contains("secret-item"));
        let opened = s.open(&v, "sid", 1_000).expect("opens");
        assert_eq!(opened.data, r.data);
        assert_eq!(opened.user_id, Some(7));
        assert_eq!(opened.user_stamp, r.user_stamp);
        assert_eq!(opened.expires_at, r.expires_at);
    }

    #[test]
    fn tampering_another_key_another_name_or_expiry_is_no_session() {
        let s = sealer(b"a secret of at least thirty-two bytes");
        let r = record(SessionKey([0; 32]), 1_000);
        let v = s.seal(&r, "sid").expect("fits");
        let mut t = v.clone().into_bytes();
        let i = t.len() - 5;
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        assert!(
            s.open(&String::from_utf8(t).expect("ascii"), "sid", 1_000)
                .is_none()
        );
        assert!(
            sealer(b"another secret of thirty-two bytes!")
                .open(&v, "sid", 1_000)
                .is_none()
        );
        assert!(
            s.open(&v, "other", 1_000).is_none(),
            "bound to the cookie name"
        );
        assert!(s.open(&v, "sid", r.expires_at).is_none(), "expired");
        for junk in ["", "v1.", "v1.AAAA", "v2.xyz", "%%%"] {
            assert!(s.open(junk, "sid", 1_000).is_none());
        }
    }

    #[test]
    fn an_old_secret_still_opens_after_rotation() {
        let old = b"the old secret, thirty-two bytes long".to_vec();
        let v = Sealer::new(std::slice::from_ref(&old))
            .seal(&record(SessionKey([0; 32]), 1), "sid")
            .expect("fits");
        let rotated = Sealer::new(&[b"the new secret, thirty-two bytes long".to_vec(), old]);
        assert!(rotated.open(&v, "sid", 1).is_some());
    }

    #[test]
    fn too_much_data_is_refused_not_truncated() {
        let s = sealer(b"a secret of at least thirty-two bytes");
        let mut r = record(SessionKey([0; 32]), 1);
        r.data.insert("big".into(), Value::from("x".repeat(5000)));
        assert!(s.seal(&r, "sid").is_err());
    }
}
