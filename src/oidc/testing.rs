//! Test helpers for the provider's unit tests: a store on a fresh SQLite
//! file with users in it, and a verifier of signed tokens that shares no
//! code with the signing side (RustCrypto's `rsa`, `p256` and
//! `ed25519-dalek`, the versions webauthn_rp already brings, reading the
//! public keys from the JWKS document as a relying party would).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::sqlite::SqliteOidc;
use super::store::Store;
use crate::db::Pool;
use crate::identity::UserId;

/// A user row made directly (the provider sits beside `users` and may not
/// use it); returns the id.
pub fn user(pool: &Pool, name: &str) -> UserId {
    pool.get()
        .expect("conn")
        .query_row(
            "INSERT INTO users (username, password_hash, created_at, password_changed_at) \
             VALUES (?1, 'x', 0, 0) RETURNING id",
            [name],
            |r| r.get(0),
        )
        .expect("user")
}

/// A store on a fresh database file (kept while the directory lives).
pub fn sqlite_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let (dir, pool) = sqlite_pool();
    (dir, Arc::new(SqliteOidc(pool)))
}

/// A fresh database file's pool.
pub fn sqlite_pool() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().expect("dir");
    let pool = crate::db::open(&dir.path().join("g.db"), 4).expect("open");
    (dir, pool)
}

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// Verifies `token`'s signature with the key its `kid` names in `jwks`,
/// and returns its claims; panics when anything does not hold.
pub fn verify_independently(token: &str, jwks: &Value) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact serialization");
    let header: Value = serde_json::from_slice(&b64(parts[0])).expect("header JSON");
    let claims: Value = serde_json::from_slice(&b64(parts[1])).expect("claims JSON");
    let signature = b64(parts[2]);
    let message = format!("{}.{}", parts[0], parts[1]);
    let kid = header["kid"].as_str().expect("a kid");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS"));
    assert_eq!(header["alg"], jwk["alg"], "the header's alg is the key's");
    let field = |name: &str| b64(jwk[name].as_str().expect("a key field"));
    match header["alg"].as_str().expect("alg") {
        "RS256" => {
            use rsa::signature::Verifier as _;
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&field("n")),
                rsa::BigUint::from_bytes_be(&field("e")),
            )
            .expect("RSA key");
            let verifier = rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(key);
            let sig = rsa::pkcs1v15::Signature::try_from(&signature[..]).expect("RSA signature");
            verifier
                .verify(message.as_bytes(), &sig)
                .expect("RS256 verifies");
        }
        "ES256" => {
            use p256::ecdsa::signature::Verifier as _;
            assert_eq!(jwk["crv"], "P-256");
            let (x, y) = (field("x"), field("y"));
            let point = p256::EncodedPoint::from_affine_coordinates(
                p256::FieldBytes::from_slice(&x),
                p256::FieldBytes::from_slice(&y),
                false,
            );
            let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point).expect("P-256 key");
            let sig = p256::ecdsa::Signature::from_slice(&signature).expect("ES256 signature");
            key.verify(message.as_bytes(), &sig)
                .expect("ES256 verifies");
        }
        "EdDSA" => {
            assert_eq!(jwk["crv"], "Ed25519");
            let x: [u8; 32] = field("x").try_into().expect("32 bytes");
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).expect("Ed25519 key");
            let sig: [u8; 64] = signature.try_into().expect("64 bytes");
            key.verify_strict(
                message.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .expect("EdDSA verifies");
        }
        other => panic!("unexpected alg {other}"),
    }
    claims
}

/// What a stub relying party's back-channel endpoint saw: each request's
/// head and body, as text.
pub type Seen = Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A stub relying party on 127.0.0.1 answering every request with
/// `status` (changeable while it runs); returns its port and what it saw.
/// It lives as long as the test process (a thread blocked in `accept`).
pub fn stub_client(status: Arc<std::sync::atomic::AtomicU16>) -> (u16, Seen) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock()
                .expect("log")
                .push((head, String::from_utf8_lossy(&body).into_owned()));
            let code = status.load(std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (port, seen)
}
