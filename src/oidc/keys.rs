//! The provider's signing keys: one current key per algorithm (RS256,
//! ES256, EdDSA), generated on first use, kept in the database so that
//! every instance on one PostgreSQL signs with the same key, and sealed
//! there (XChaCha20-Poly1305 under a key derived from the server's
//! `secrets`, as second-factor seeds are), so a copy of the database alone
//! yields no key. Each key has a random `kid`; the JWKS publishes every
//! current key and every retired one until the last ID token it signed has
//! expired.
//!
//! All signing is ring's (through `jsonwebtoken` 9, whose only backend is
//! ring): its RSA signing is constant-time, where the `rsa` crate's
//! private-key operations are not (RUSTSEC-2023-0071, the Marvin attack).
//! The `rsa` crate only generates the RSA key (ring cannot), which is then
//! loaded into ring and never used by `rsa` again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use ring::signature::KeyPair as _;
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::OidcError;
use super::store::{KeyRow, Store};
use crate::clock::{self, Millis};

/// A signing algorithm a client may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys: every relying party
    /// accepts it, so it is the default.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// Every algorithm, in the order discovery lists them.
    pub const ALL: [Self; 3] = [Self::Rs256, Self::Es256, Self::EdDsa];

    /// The JOSE name (`RS256`, `ES256`, `EdDSA`), exactly.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// The RSA modulus size: what relying parties expect, and what ring's
/// `RSA_PKCS1_2048_8192` verifiers take.
const RSA_BITS: usize = 2048;

/// How long an instance trusts its copy of the keys before reading them
/// again (so a key rotated by another instance or by `gatehouse oidc
/// rotate-key` is picked up within this).
const CACHE_TTL: Duration = Duration::from_secs(30);

/// Extra time a retired key stays published: clock skew at the relying
/// parties, and instances that still sign with it until their cache
/// expires.
const PUBLISH_SLACK: Duration = Duration::from_secs(300);

/// A private key, ready to sign.
pub struct SigningKey {
    /// Its `kid`.
    pub kid: String,
    /// Its algorithm.
    pub alg: Alg,
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {}: ***)", self.kid, self.alg.as_str())
    }
}

impl SigningKey {
    /// `claims` as a signed JWT (JWS compact serialization) with `typ`
    /// `JWT` and this key's `kid`.
    ///
    /// # Errors
    ///
    /// [`OidcError::Key`] when signing fails.
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, OidcError> {
        self.sign_typed(claims, "JWT")
    }

    /// `claims` as a signed JWT with the `typ` header `typ` (a logout
    /// token is `logout+jwt`, so it can never pass for an ID token).
    ///
    /// # Errors
    ///
    /// [`OidcError::Key`] when signing fails.
    pub fn sign_typed<T: serde::Serialize>(
        &self,
        claims: &T,
        typ: &str,
    ) -> Result<String, OidcError> {
        let mut header = jsonwebtoken::Header::new(self.alg.jwt());
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| OidcError::Key(format!("signing with {}: {e}", self.kid)))
    }
}

/// Seals private keys with keys derived from the server's secrets: the
/// first seals, any opens (secrets can be rotated while the old one stays
/// listed).
#[derive(Clone)]
struct KeySeal {
    ciphers: Vec<XChaCha20Poly1305>,
}

impl KeySeal {
    fn new(secrets: &[Vec<u8>]) -> Self {
        let ciphers = secrets
            .iter()
            .map(|s| {
                // A key of its own: never the cookie-signing key or the
                // second-factor seeds' key.
                let mut mac =
                    <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(s).expect("HMAC takes any key");
                mac.update(b"gatehouse oidc signing keys v1");
                XChaCha20Poly1305::new(Key::from_slice(&mac.finalize().into_bytes()))
            })
            .collect();
        Self { ciphers }
    }

    /// The key's id and algorithm are bound in (associated data): a sealed
    /// key moved to another row does not open.
    fn aad(kid: &str, alg: &str) -> Vec<u8> {
        format!("{alg}\n{kid}").into_bytes()
    }

    fn seal(&self, kid: &str, alg: &str, der: &[u8]) -> Result<Vec<u8>, OidcError> {
        let cipher = self.ciphers.first().ok_or_else(|| {
            OidcError::Key("no secrets configured to seal signing keys with".into())
        })?;
        let nonce = crate::crypto::random_bytes::<24>();
        let body = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: der,
                    aad: &Self::aad(kid, alg),
                },
            )
            .map_err(|_| OidcError::Key("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn open(&self, kid: &str, alg: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 24 + 16 {
            return None;
        }
        let (nonce, body) = sealed.split_at(24);
        let aad = Self::aad(kid, alg);
        self.ciphers.iter().find_map(|c| {
            c.decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
        })
    }
}

/// The OS random source as the `rsa` crate's RNG trait (rand_core 0.6).
struct OsRng;

impl rsa::rand_core::RngCore for OsRng {
    fn next_u32(&mut self) -> u32 {
        u32::from_le_bytes(crate::crypto::random_bytes())
    }

    fn next_u64(&mut self) -> u64 {
        u64::from_le_bytes(crate::crypto::random_bytes())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        crate::crypto::fill_random(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        crate::crypto::fill_random(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for OsRng {}

/// A new private key (DER: PKCS#1 for RSA, PKCS#8 otherwise) and its
/// public JWK.
fn generate(alg: Alg, kid: &str) -> Result<(Zeroizing<Vec<u8>>, Value), OidcError> {
    let failed = |e: &dyn std::fmt::Display| OidcError::Key(format!("generating {alg:?}: {e}"));
    let rng = ring::rand::SystemRandom::new();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let common = |mut jwk: Value| {
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg.as_str());
        jwk["use"] = json!("sig");
        jwk
    };
    match alg {
        Alg::Rs256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey as _;
            let private = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(|e| failed(&e))?;
            let der = private.to_pkcs1_der().map_err(|e| failed(&e))?;
            let der = Zeroizing::new(der.as_bytes().to_vec());
            // From here on only ring touches the key.
            let pair = ring::rsa::KeyPair::from_der(&der).map_err(|e| failed(&e))?;
            let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
            let jwk = json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)});
            Ok((der, common(jwk)))
        }
        Alg::Es256 => {
            let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let doc =
                ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|e| failed(&e))?;
            let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng)
                .map_err(|e| failed(&e))?;
            // An uncompressed point: 0x04, x, y.
            let point = pair.public_key().as_ref();
            if point.len() != 65 || point[0] != 4 {
                return Err(failed(&"unexpected public key form"));
            }
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])});
            Ok((Zeroizing::new(doc.as_ref().to_vec()), common(jwk)))
        }
        Alg::EdDsa => {
            let doc =
                ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| failed(&e))?;
            let pair = ring::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|e| failed(&e))?;
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
            Ok((Zeroizing::new(doc.as_ref().to_vec()), common(jwk)))
        }
    }
}

/// A private key as ring loads it, checked once here so that a bad key is
/// found when read, not at the first signature.
fn load(alg: Alg, kid: &str, der: &[u8]) -> Result<SigningKey, OidcError> {
    let bad = |e: &dyn std::fmt::Display| OidcError::Key(format!("key {kid} does not load: {e}"));
    let key = match alg {
        Alg::Rs256 => {
            ring::rsa::KeyPair::from_der(der).map_err(|e| bad(&e))?;
            jsonwebtoken::EncodingKey::from_rsa_der(der)
        }
        Alg::Es256 => {
            ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &ring::rand::SystemRandom::new(),
            )
            .map_err(|e| bad(&e))?;
            jsonwebtoken::EncodingKey::from_ec_der(der)
        }
        Alg::EdDsa => {
            ring::signature::Ed25519KeyPair::from_pkcs8(der).map_err(|e| bad(&e))?;
            jsonwebtoken::EncodingKey::from_ed_der(der)
        }
    };
    Ok(SigningKey {
        kid: kid.to_owned(),
        alg,
        key,
    })
}

/// What an instance last read: the current key of each algorithm (opened)
/// and the public keys to publish.
struct Cache {
    read_at: Instant,
    current: HashMap<Alg, Arc<SigningKey>>,
    published: Vec<Value>,
}

/// The provider's keys: the signing key of each algorithm and the JWKS,
/// read from the store and cached for a short while.
#[derive(Clone)]
pub struct KeyRing {
    store: Arc<dyn Store>,
    seal: KeySeal,
    id_token_lifetime: Duration,
    cache: Arc<Mutex<Option<Cache>>>,
    /// One generation at a time in this process (RSA takes a moment).
    generating: Arc<Mutex<()>>,
}

impl KeyRing {
    /// Keys in `store`, sealed with keys derived from `secrets`; a retired
    /// key stays published `id_token_lifetime` (plus slack).
    pub fn new(store: Arc<dyn Store>, secrets: &[Vec<u8>], id_token_lifetime: Duration) -> Self {
        Self {
            store,
            seal: KeySeal::new(secrets),
            id_token_lifetime,
            cache: Arc::default(),
            generating: Arc::default(),
        }
    }

    /// Reads the keys from the store: opens the current ones, collects the
    /// public ones. A current key no secret opens is left out (and said so
    /// in the log): its algorithm cannot sign until it is rotated.
    fn read(&self, now: Millis) -> Result<Cache, OidcError> {
        let mut current = HashMap::new();
        let mut published = Vec::new();
        for row in self.store.keys(now)? {
            match serde_json::from_str::<Value>(&row.public_jwk) {
                Ok(jwk) => published.push(jwk),
                Err(e) => crate::logging::line(&format!(
                    "oidc key kid={} has an unreadable public key: {e}",
                    row.kid
                )),
            }
            let Some(alg) = Alg::parse(&row.alg) else {
                continue;
            };
            if row.retired_at.is_some() {
                continue;
            }
            match self.seal.open(&row.kid, &row.alg, &row.sealed) {
                Some(der) => {
                    current.insert(alg, Arc::new(load(alg, &row.kid, &der)?));
                }
                None => crate::logging::line(&format!(
                    "oidc key kid={} alg={} cannot be opened with the configured secrets \
                     (were they changed?); `gatehouse oidc rotate-key` makes new keys",
                    row.kid, row.alg
                )),
            }
        }
        Ok(Cache {
            read_at: Instant::now(),
            current,
            published,
        })
    }

    /// Runs `f` on the cache, reading it first if it is missing, stale, or
    /// `refresh` is set.
    fn with_cache<T>(&self, refresh: bool, f: impl FnOnce(&Cache) -> T) -> Result<T, OidcError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = cache
            .as_ref()
            .is_none_or(|c| refresh || c.read_at.elapsed() >= CACHE_TTL);
        if stale {
            *cache = Some(self.read(clock::now())?);
        }
        Ok(f(cache.as_ref().expect("just filled")))
    }

    /// The current key of `alg`, made (and stored) if there is none yet.
    ///
    /// # Errors
    ///
    /// [`OidcError::Key`] when no key can be made, sealed or opened (e.g.
    /// the current one was sealed under secrets no longer configured);
    /// database failures.
    pub fn signing_key(&self, alg: Alg) -> Result<Arc<SigningKey>, OidcError> {
        if let Some(k) = self.with_cache(false, |c| c.current.get(&alg).cloned())? {
            return Ok(k);
        }
        let _one = self
            .generating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Another thread (or instance) may have made it meanwhile.
        if let Some(k) = self.with_cache(true, |c| c.current.get(&alg).cloned())? {
            return Ok(k);
        }
        let row = self.new_row(alg)?;
        if !self.store.key_add(&row)? {
            crate::logging::line(&format!(
                "oidc key alg={} made by another instance first; using theirs",
                alg.as_str()
            ));
        } else {
            crate::logging::line(&format!(
                "oidc key kid={} alg={} generated",
                row.kid,
                alg.as_str()
            ));
        }
        self.with_cache(true, |c| c.current.get(&alg).cloned())?
            .ok_or_else(|| {
                OidcError::Key(format!(
                    "the current {} key cannot be opened with the configured secrets \
                     (were they changed?); run `gatehouse oidc rotate-key`",
                    alg.as_str()
                ))
            })
    }

    /// A new key of `alg`, sealed, as a row to store.
    fn new_row(&self, alg: Alg) -> Result<KeyRow, OidcError> {
        let kid = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<12>());
        let (der, jwk) = generate(alg, &kid)?;
        Ok(KeyRow {
            sealed: self.seal.seal(&kid, alg.as_str(), &der)?,
            kid,
            alg: alg.as_str().to_owned(),
            public_jwk: jwk.to_string(),
            created_at: clock::now(),
            retired_at: None,
            published_until: None,
        })
    }

    /// Makes sure each of `algs` has a key (at start, for the algorithms
    /// the clients use, so the JWKS a relying party first reads has them).
    ///
    /// # Errors
    ///
    /// As [`signing_key`](Self::signing_key).
    pub fn prepare(&self, algs: impl IntoIterator<Item = Alg>) -> Result<(), OidcError> {
        for alg in algs {
            self.signing_key(alg)?;
        }
        Ok(())
    }

    /// The JWKS document: every published public key.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn jwks(&self) -> Result<Value, OidcError> {
        self.with_cache(false, |c| json!({ "keys": c.published }))
    }

    /// The claims of `token` if one of the published keys signed it (its
    /// `kid` and `alg` must name that key) as an ID token (`typ` `JWT`);
    /// expiry, audience and issuer are not checked (`end_session` accepts
    /// an expired `id_token_hint`).
    ///
    /// # Errors
    ///
    /// [`OidcError::InvalidToken`] for anything that does not verify;
    /// database failures.
    pub fn verify(&self, token: &str) -> Result<Value, OidcError> {
        let invalid = |why: &str| OidcError::InvalidToken(format!("the token {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("is malformed"))?;
        // Only what was signed as an ID token: a logout token
        // (`logout+jwt`) a client received must not serve as a hint.
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(invalid("is not an ID token"));
        }
        let kid = header.kid.ok_or_else(|| invalid("has no kid"))?;
        let jwk = self
            .with_cache(false, |c| {
                c.published
                    .iter()
                    .find(|k| k["kid"].as_str() == Some(kid.as_str()))
                    .cloned()
            })?
            .ok_or_else(|| invalid("names no published key"))?;
        let alg = jwk["alg"]
            .as_str()
            .and_then(Alg::parse)
            .ok_or_else(|| invalid("names a key of no known algorithm"))?;
        if header.alg != alg.jwt() {
            return Err(invalid("has another algorithm than its key"));
        }
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(jwk).map_err(|_| invalid("names an unreadable key"))?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)
            .map_err(|_| invalid("names an unusable key"))?;
        let mut validation = jsonwebtoken::Validation::new(alg.jwt());
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|_| invalid("does not verify"))
    }

    /// Rotates every algorithm that has a key (RS256 at least): a new key
    /// becomes current, the old one stays published until the longest ID
    /// token it can have signed has expired. Returns the new keys' ids.
    ///
    /// # Errors
    ///
    /// [`OidcError::Key`] when a key cannot be made or sealed; database
    /// failures.
    pub fn rotate(&self) -> Result<Vec<(Alg, String)>, OidcError> {
        let now = clock::now();
        let mut algs: Vec<Alg> = self
            .store
            .keys(now)?
            .iter()
            .filter(|k| k.retired_at.is_none())
            .filter_map(|k| Alg::parse(&k.alg))
            .collect();
        if !algs.contains(&Alg::Rs256) {
            algs.push(Alg::Rs256);
        }
        algs.sort();
        let until = now
            .saturating_add(super::millis(self.id_token_lifetime))
            .saturating_add(super::millis(CACHE_TTL + PUBLISH_SLACK));
        let mut made = Vec::new();
        for alg in algs {
            let row = self.new_row(alg)?;
            self.store.key_rotate(&row, now, until)?;
            crate::logging::line(&format!(
                "oidc key rotated alg={} kid={} (the old one is published until {})",
                alg.as_str(),
                row.kid,
                crate::logging::rfc3339(until)
            ));
            made.push((alg, row.kid));
        }
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::testing;

    #[test]
    fn keys_are_made_on_first_use_sealed_and_shared_by_instances() {
        let (_dir, store) = testing::sqlite_store();
        let secrets = vec![b"the server secret, 32 bytes or more".to_vec()];
        let a = KeyRing::new(Arc::clone(&store), &secrets, Duration::from_secs(3600));
        let b = KeyRing::new(Arc::clone(&store), &secrets, Duration::from_secs(3600));
        let ka = a.signing_key(Alg::Es256).expect("made");
        let kb = b.signing_key(Alg::Es256).expect("read");
        assert_eq!(ka.kid, kb.kid, "a second instance uses the stored key");
        let rows = store.keys(clock::now()).expect("rows");
        assert_eq!(rows.len(), 1);
        // Sealed: the row holds no PKCS#8 key, and it does not open under
        // other secrets, nor moved to another kid.
        let row = &rows[0];
        assert!(!row.sealed.windows(4).any(|w| w == [0x30, 0x81, 0x87, 0x02]));
        let other = KeySeal::new(&[b"another secret of 32 bytes or more".to_vec()]);
        assert!(other.open(&row.kid, &row.alg, &row.sealed).is_none());
        let right = KeySeal::new(&secrets);
        assert!(right.open(&row.kid, &row.alg, &row.sealed).is_some());
        assert!(right.open("another", &row.alg, &row.sealed).is_none());
        assert!(right.open(&row.kid, "RS256", &row.sealed).is_none());
        let jwks = a.jwks().expect("jwks");
        assert_eq!(jwks["keys"][0]["kid"], json!(ka.kid));
        assert_eq!(jwks["keys"][0]["crv"], json!("P-256"));
        assert!(jwks["keys"][0].get("d").is_none(), "no private part");
    }

    #[test]
    fn without_the_secrets_that_sealed_it_a_key_is_not_used() {
        let (_dir, store) = testing::sqlite_store();
        let first = KeyRing::new(
            Arc::clone(&store),
            &[b"x".repeat(32)],
            Duration::from_secs(60),
        );
        first.signing_key(Alg::EdDsa).expect("made");
        let changed = KeyRing::new(
            Arc::clone(&store),
            &[b"y".repeat(32)],
            Duration::from_secs(60),
        );
        let e = changed.signing_key(Alg::EdDsa).expect_err("cannot open");
        assert!(e.to_string().contains("rotate-key"), "{e}");
        // A rotation under the new secrets makes a key it can use.
        changed.rotate().expect("rotate");
        changed.signing_key(Alg::EdDsa).expect("usable again");
        let none = KeyRing::new(store, &[], Duration::from_secs(60));
        assert!(none.rotate().is_err(), "nothing to seal with");
    }

    #[test]
    fn rotation_keeps_the_old_key_published_for_the_id_token_lifetime() {
        let (_dir, store) = testing::sqlite_store();
        let ring = KeyRing::new(
            Arc::clone(&store),
            &[b"s".repeat(32)],
            Duration::from_secs(600),
        );
        let old = ring.signing_key(Alg::EdDsa).expect("made");
        let made = ring.rotate().expect("rotate");
        let algs: Vec<Alg> = made.iter().map(|(a, _)| *a).collect();
        assert_eq!(
            algs,
            [Alg::Rs256, Alg::EdDsa],
            "RS256 always, and what had a key"
        );
        let new = ring.signing_key(Alg::EdDsa).expect("current");
        assert_ne!(new.kid, old.kid);
        let kids: Vec<Value> = ring.jwks().expect("jwks")["keys"]
            .as_array()
            .expect("list")
            .iter()
            .map(|k| k["kid"].clone())
            .collect();
        assert!(kids.contains(&json!(old.kid)) && kids.contains(&json!(new.kid)));
        let row = store
            .keys(clock::now())
            .expect("rows")
            .into_iter()
            .find(|k| k.kid == old.kid)
            .expect("old row");
        let published = row.published_until.expect("until") - row.retired_at.expect("retired");
        assert!(published >= 600_000, "{published}");
        // Past that, the reaper removes it and the JWKS no longer has it.
        store
            .delete_expired(row.published_until.expect("until"), 100)
            .expect("reap");
        *ring.cache.lock().expect("lock") = None;
        let text = ring.jwks().expect("jwks").to_string();
        assert!(
            !text.contains(&old.kid) && text.contains(&new.kid),
            "{text}"
        );
    }

    #[test]
    fn an_rsa_key_is_2048_bits_and_signs_through_ring() {
        let (_dir, store) = testing::sqlite_store();
        let ring = KeyRing::new(store, &[b"s".repeat(32)], Duration::from_secs(600));
        let key = ring.signing_key(Alg::Rs256).expect("made");
        let jwk = &ring.jwks().expect("jwks")["keys"][0];
        let n = URL_SAFE_NO_PAD
            .decode(jwk["n"].as_str().expect("n"))
            .expect("base64url");
        assert_eq!(n.len(), 256);
        assert_eq!(jwk["e"], json!("AQAB"));
        let token = key.sign(&json!({"a": 1})).expect("signed");
        testing::verify_independently(&token, &ring.jwks().expect("jwks"));
    }
}
