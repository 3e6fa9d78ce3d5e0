//! Randomness and signing, the bottom helpers every layer may use: bytes
//! from the operating system's random source, and the HMAC-SHA256 [`Signer`]
//! behind signed cookies and CSRF tokens.
//!
//! A signed value is `<payload>.<base64url HMAC-SHA256(secret, context | payload)>`.
//! Signing uses the first secret and verification accepts any, so secrets
//! can be rotated without logging everyone out. The context string keeps a
//! signature made for one purpose (a session cookie) from being accepted for
//! another (a CSRF cookie).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::TryRng as _;
use sha2::Sha256;

/// `N` bytes from the operating system's random source.
///
/// # Panics
///
/// When the operating system's random source fails.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::rngs::SysRng
        .try_fill_bytes(&mut buf)
        .expect("the OS random source must work to make secrets");
    buf
}

/// Fills `buf` from the operating system's random source (for callers
/// that need more bytes than a fixed array, such as key generation).
///
/// # Panics
///
/// When the operating system's random source fails.
pub fn fill_random(buf: &mut [u8]) {
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .expect("the OS random source must work to make secrets");
}

type HmacSha256 = Hmac<Sha256>;

/// Length of an encoded signature (32 bytes, unpadded base64url).
const SIG_LEN: usize = 43;

/// Signs and verifies cookie values with a list of secrets.
#[derive(Clone)]
pub struct Signer {
    /// One HMAC already keyed with each secret: keying costs two SHA-256
    /// blocks, so it is done once here and the keyed state cloned per use.
    keyed: Vec<HmacSha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} secrets: ***)", self.keyed.len())
    }
}

impl Signer {
    /// A signer that signs with the first secret and accepts all of them.
    ///
    /// # Panics
    ///
    /// With no secrets: nothing could be signed.
    pub fn new(secrets: Vec<Vec<u8>>) -> Self {
        assert!(!secrets.is_empty(), "a signer needs at least one secret");
        let keyed = secrets
            .iter()
            .map(|s| HmacSha256::new_from_slice(s).expect("HMAC accepts keys of any length"))
            .collect();
        Self { keyed }
    }

    fn mac(keyed: &HmacSha256, context: &str, payload: &str) -> HmacSha256 {
        let mut mac = keyed.clone();
        mac.update(context.as_bytes());
        mac.update(b"|");
        mac.update(payload.as_bytes());
        mac
    }

    /// The raw tag for `payload` under the signing secret.
    pub fn tag(&self, context: &str, payload: &str) -> [u8; 32] {
        Self::mac(&self.keyed[0], context, payload)
            .finalize()
            .into_bytes()
            .into()
    }

    /// `payload.signature`, ready for a cookie.
    pub fn sign(&self, context: &str, payload: &str) -> String {
        let sig = URL_SAFE_NO_PAD.encode(self.tag(context, payload));
        format!("{payload}.{sig}")
    }

    /// The payload of a signed value if any secret's signature matches.
    ///
    /// The comparison is constant-time (`Mac::verify_slice`), so a forger
    /// learns nothing from how long a rejection takes.
    pub fn verify<'a>(&self, context: &str, value: &'a str) -> Option<&'a str> {
        let (payload, sig) = value.rsplit_once('.')?;
        if sig.len() != SIG_LEN {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        self.keyed
            .iter()
            .any(|keyed| {
                Self::mac(keyed, context, payload)
                    .verify_slice(&sig)
                    .is_ok()
            })
            .then_some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(vec![b"first secret, long enough to be real".to_vec()])
    }

    #[test]
    fn a_signed_value_verifies() {
        let s = signer();
        let v = s.sign("session", "payload");
        assert_eq!(s.verify("session", &v), Some("payload"));
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let s = signer();
        let mut v = s.sign("session", "payload").into_bytes();
        let last = v.len() - 1;
        v[last] = if v[last] == b'A' { b'B' } else { b'A' };
        let v = String::from_utf8(v).expect("ascii");
        assert_eq!(s.verify("session", &v), None);
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let s = signer();
        let v = s
            .sign("session", "payload")
            .replacen("payload", "payloae", 1);
        assert_eq!(s.verify("session", &v), None);
    }

    #[test]
    fn a_signature_for_another_context_is_refused() {
        let s = signer();
        let v = s.sign("csrf", "payload");
        assert_eq!(s.verify("session", &v), None);
    }

    #[test]
    fn an_old_secret_still_verifies_after_rotation() {
        let old = signer();
        let v = old.sign("session", "payload");
        let rotated = Signer::new(vec![
            b"the new secret, also long enough".to_vec(),
            b"first secret, long enough to be real".to_vec(),
        ]);
        assert_eq!(rotated.verify("session", &v), Some("payload"));
        assert_ne!(
            rotated.sign("session", "payload"),
            v,
            "signs with the new one"
        );
        let dropped = Signer::new(vec![b"the new secret, also long enough".to_vec()]);
        assert_eq!(dropped.verify("session", &v), None);
    }

    #[test]
    fn garbage_is_refused() {
        let s = signer();
        for v in [
            "",
            ".",
            "abc",
            "abc.",
            ".abc",
            "a.b.c",
            "x.%%%",
            &"a".repeat(500),
        ] {
            assert_eq!(s.verify("session", v), None, "{v:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics_and_accepts_nothing_unsigned(value in "\\PC{0,200}") {
            let s = signer();
            // Whatever a client sends, verification answers without panicking,
            // and only a value this signer made can pass.
            if let Some(payload) = s.verify("session", &value) {
                proptest::prop_assert_eq!(s.sign("session", payload), value);
            }
        }

        #[test]
        fn sign_then_verify_round_trips(payload in "[A-Za-z0-9_-]{0,64}") {
            let s = signer();
            let signed = s.sign("session", &payload);
            proptest::prop_assert_eq!(s.verify("session", &signed), Some(payload.as_str()));
        }

        #[test]
        fn any_single_byte_change_is_refused(payload in "[A-Za-z0-9_-]{1,64}", at in 0usize..200, to in 0u8..128) {
            let s = signer();
            let signed = s.sign("session", &payload);
            let mut bytes = signed.clone().into_bytes();
            let i = at % bytes.len();
            proptest::prop_assume!(bytes[i] != to);
            bytes[i] = to;
            if let Ok(tampered) = String::from_utf8(bytes) {
                proptest::prop_assert_eq!(s.verify("session", &tampered), None);
            }
        }
    }
}
