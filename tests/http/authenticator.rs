//! A software passkey authenticator for the HTTP tests: a P-256 key that
//! makes genuine "none" attestations and assertions for the relying party
//! `localhost` (the server runs with `public_url = "http://localhost"`),
//! so a passkey registers and signs in over HTTP through the real
//! verification, and a captured answer can be sent again.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The relying party the tests' server is for.
pub const RP_ID: &str = "localhost";
/// The origin its answers name.
pub const ORIGIN: &str = "http://localhost";

/// User present, user verified, attested credential data.
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn challenge(options: &Value) -> String {
    options["challenge"]
        .as_str()
        .expect("the options hold a challenge")
        .to_owned()
}

/// A CBOR byte string header and body.
fn cbor_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n < 24 {
        out.push(0x40 | u8::try_from(n).expect("short"));
    } else if n < 256 {
        out.extend_from_slice(&[0x58, u8::try_from(n).expect("short")]);
    } else {
        out.push(0x59);
        out.extend_from_slice(&u16::try_from(n).expect("fits").to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

fn client_data(kind: &str, challenge: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"{kind}","challenge":"{challenge}","origin":"{ORIGIN}","crossOrigin":false}}"#
    )
    .into_bytes()
}

/// One credential. It keeps no sign counter (always 0), as synced
/// passkeys do: nothing but the server's own bookkeeping can then tell a
/// replayed answer from a new one.
pub struct Authenticator {
    key: SigningKey,
    credential_id: Vec<u8>,
    user_handle: Vec<u8>,
}

impl Authenticator {
    pub fn new(seed: u8) -> Self {
        Self {
            key: SigningKey::from_bytes(&[seed; 32].into()).expect("a valid scalar"),
            credential_id: vec![seed; 32],
            user_handle: Vec::new(),
        }
    }

    /// A `RegistrationResponseJSON` for the creation options JSON.
    pub fn create(&mut self, options_json: &str) -> String {
        let options: Value = serde_json::from_str(options_json).expect("options are JSON");
        self.user_handle = URL_SAFE_NO_PAD
            .decode(options["user"]["id"].as_str().expect("a user id"))
            .expect("base64url");
        let data = client_data("webauthn.create", &challenge(&options));
        let point = self.key.verifying_key().to_encoded_point(false);
        // COSE_Key {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}.
        let mut cose = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cbor_bytes(&mut cose, point.x().expect("uncompressed"));
        cose.push(0x22);
        cbor_bytes(&mut cose, point.y().expect("uncompressed"));
        let mut auth_data = Sha256::digest(RP_ID).to_vec();
        auth_data.push(UP | UV | AT);
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&[0; 16]);
        let id_len = u16::try_from(self.credential_id.len()).expect("short id");
        auth_data.extend_from_slice(&id_len.to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&cose);
        // {"fmt": "none", "attStmt": {}, "authData": ...}, canonical order.
        let mut attestation = vec![0xa3, 0x63];
        attestation.extend_from_slice(b"fmt");
        attestation.push(0x64);
        attestation.extend_from_slice(b"none");
        attestation.push(0x67);
        attestation.extend_from_slice(b"attStmt");
        attestation.extend_from_slice(&[0xa0, 0x68]);
        attestation.extend_from_slice(b"authData");
        cbor_bytes(&mut attestation, &auth_data);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(&data),
                "attestationObject": b64(&attestation),
                "transports": ["internal"],
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        })
        .to_string()
    }

    /// An `AuthenticationResponseJSON` for the request options JSON.
    pub fn get(&self, options_json: &str) -> String {
        let options: Value = serde_json::from_str(options_json).expect("options are JSON");
        let data = client_data("webauthn.get", &challenge(&options));
        let mut auth_data = Sha256::digest(RP_ID).to_vec();
        auth_data.push(UP | UV);
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&data));
        let signature: DerSignature = self.key.sign(&signed);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(&data),
                "authenticatorData": b64(&auth_data),
                "signature": b64(signature.as_bytes()),
                "userHandle": b64(&self.user_handle),
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        })
        .to_string()
    }
}
