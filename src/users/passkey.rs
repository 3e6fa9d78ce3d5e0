//! Passkeys (WebAuthn), the relying party's side: the options a browser
//! needs to create or use a credential, and the checks on what it sends
//! back. Storage, pages and the sign-in flow are the callers'; this module
//! hands them opaque bytes to keep and takes them back.
//!
//! The verification itself is [`webauthn_rp`]'s (pure Rust, RustCrypto
//! signatures, no system libraries): it parses the attestation and
//! assertion, checks challenge, origin, RP id hash, flags, signature and
//! sign counter, and this module never does cryptography of its own.
//!
//! # What the caller keeps
//!
//! - **Ceremony state** (the `Vec<u8>` from `start_*`), kept by the caller
//!   between the two calls and dropped when the `finish_*` call is made,
//!   whatever its outcome: a state is good for one try. A state kept
//!   server-side (in a session that exists anyway) is deleted; one kept
//!   in a signed cookie (a passkey-only sign-in, which must store nothing
//!   for an anonymous visitor) cannot be, so the caller also refuses an
//!   answer for a passkey used since the ceremony began ([`started_at`],
//!   `Factors::passkey_used`): either stops a replayed response. Layout: one tag byte (`1`
//!   registration, `2` passkey-only sign-in, `3` sign-in with an allow list),
//!   the creation time as 8 big-endian bytes of Unix milliseconds
//!   ([`crate::clock::now`]), then `webauthn_rp`'s own encoding of its server
//!   state. `finish_*` refuses a state older than [`CEREMONY_TTL`] (and
//!   `webauthn_rp` also enforces the 5-minute timeout it put in the
//!   options). The bytes are decoded as untrusted: anything malformed is
//!   [`PasskeyError::State`], never a panic.
//! - **Stored credential** ([`NewPasskey::stored`], a database BLOB, updated
//!   with what [`finish_authentication`] returns). Layout, version `1`:
//!   `[1][user handle: 8][transports: 1][dynamic state: 7][credential id
//!   length: 2, big-endian][credential id][static state: the rest]`, where
//!   the dynamic state (user verified, backup, sign counter, attachment) and
//!   the static state (the public key and extension outputs) are
//!   `webauthn_rp`'s `bin` encodings. The credential id is kept inside too,
//!   so a stored credential can never verify an assertion made by another.
//!
//! # User handle
//!
//! The WebAuthn user handle is the user id (`i64`) as 8 big-endian bytes:
//! fixed length, no personal data, and it is what a passkey-only sign-in
//! gets back through [`credential_of`]. A handle of any other length is not
//! one of ours and is refused.
//!
//! # Policy
//!
//! Registration asks for a discoverable credential (resident key required)
//! with user verification, and credProtect "user verification required"
//! where the authenticator supports it (not enforced, so that security
//! keys without the extension still register; the policy protects what
//! requiring user verification at every sign-in protects anyway). Both
//! kinds of sign-in require user verification. Attestation is not asked for ("none"): an intranet login
//! has no list of approved authenticator models to check against.

use crate::clock::{self, Millis};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use webauthn_rp::bin::{Decode, Encode};
use webauthn_rp::request::auth::{AllowedCredentials, AuthenticationVerificationOptions};
use webauthn_rp::request::register::{
    CredProtect, Nickname, PublicKeyCredentialUserEntity, RegistrationVerificationOptions,
    UserHandle, Username,
};
use webauthn_rp::request::{
    AsciiDomain, Credentials as _, ExtensionInfo, PublicKeyCredentialDescriptor, RpId,
    UserVerificationRequirement,
};
use webauthn_rp::response::register::{CompressedPubKey, DynamicState, StaticState};
use webauthn_rp::response::{AuthTransports, CredentialId};
use webauthn_rp::{
    AuthenticatedCredential, DiscoverableAuthentication, DiscoverableAuthenticationServerState,
    DiscoverableCredentialRequestOptions, NonDiscoverableAuthentication,
    NonDiscoverableAuthenticationServerState, NonDiscoverableCredentialRequestOptions,
    PublicKeyCredentialCreationOptions, Registration, RegistrationServerState,
};

/// How long a ceremony may take from its options to its answer.
pub const CEREMONY_TTL: Millis = 5 * 60 * 1000;

/// The largest browser response accepted: a real one is a few kilobytes
/// (an RSA key and a long credential id stay well under this); more is an
/// attempt to make the parser work, refused before parsing.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// The largest ceremony state decoded (an allow list of many credentials
/// with 1 KiB ids is still smaller).
const MAX_STATE: usize = 128 * 1024;

/// The length of a user handle: an `i64` user id, big-endian.
const HANDLE_LEN: usize = 8;

/// Tag bytes of the ceremony states.
const REGISTRATION: u8 = 1;
const DISCOVERABLE: u8 = 2;
const ALLOW_LIST: u8 = 3;

/// Version byte of the stored credential.
const STORED_V1: u8 = 1;

/// The public key type `webauthn_rp` decodes a stored static state into.
type StoredKey = CompressedPubKey<[u8; 32], [u8; 32], [u8; 48], Vec<u8>>;

/// Why a passkey operation failed. The messages are for the log: a page
/// should tell the user only that the passkey was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// The configured RP id is not a domain name.
    #[error("the passkey RP id {0:?} is not a valid domain name")]
    RpId(String),
    /// The configured origin cannot be used with the RP id.
    #[error("the passkey origin {origin:?} cannot be used: {why}")]
    Origin {
        /// The origin as configured.
        origin: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The user name cannot be sent as a WebAuthn user name.
    #[error("the user name cannot be used for a passkey: {0}")]
    Username(String),
    /// An allow list was given with no usable credential in it.
    #[error("no passkey credential to allow")]
    NoCredentials,
    /// `webauthn_rp` refused to start a ceremony (a bug in our options).
    #[error("could not start the passkey ceremony: {0}")]
    Start(String),
    /// The ceremony state is not one this module wrote.
    #[error("the passkey ceremony state is malformed")]
    State,
    /// The ceremony state is of another ceremony (registration for sign-in,
    /// or the reverse).
    #[error("the passkey ceremony state is for another kind of ceremony")]
    WrongCeremony,
    /// The ceremony state is older than [`CEREMONY_TTL`].
    #[error("the passkey ceremony expired")]
    Expired,
    /// The browser's response is larger than [`MAX_RESPONSE`].
    #[error("the passkey response is too large ({0} bytes)")]
    TooLarge(usize),
    /// The browser's response could not be parsed.
    #[error("the passkey response is malformed: {0}")]
    Response(String),
    /// The user handle in a response is not one of ours.
    #[error("the passkey user handle is not a user id")]
    UserHandle,
    /// The response was parsed and failed verification.
    #[error("the passkey was not accepted: {0}")]
    Rejected(String),
    /// The stored credential bytes are not ones this module wrote.
    #[error("the stored passkey credential is malformed")]
    Stored,
    /// The response names another credential than the stored one.
    #[error("the passkey response is for another credential")]
    OtherCredential,
}

/// Who the relying party is: the RP id (a host name, such as `localhost`
/// or `auth.example.lan`) and the one origin responses must come from.
#[derive(Clone, Debug)]
pub struct RelyingParty {
    rp_id: RpId,
    /// As a browser writes it: `scheme://host[:port]`, lower case, no
    /// default port, no trailing slash.
    origin: String,
}

impl RelyingParty {
    /// A relying party for `rp_id`, accepting responses from `origin`.
    ///
    /// # Errors
    ///
    /// [`PasskeyError::RpId`] when `rp_id` is not a domain name (an IP
    /// address is not);
    /// [`PasskeyError::Origin`] when `origin` is not `http(s)://host[:port]`
    /// or its host is neither `rp_id` nor a subdomain of it (browsers would
    /// refuse every ceremony). An origin that is no secure context is
    /// accepted: see [`secure_context`].
    pub fn new(rp_id: &str, origin: &str) -> Result<Self, PasskeyError> {
        let rp = rp_id.trim().to_ascii_lowercase();
        // Browsers take no IP address as an RP id (it is not a domain), so
        // a server reached as http://127.0.0.1 cannot offer passkeys.
        if rp.parse::<std::net::IpAddr>().is_ok() || rp.starts_with('[') {
            return Err(PasskeyError::RpId(rp_id.to_owned()));
        }
        let domain =
            AsciiDomain::try_from(rp.clone()).map_err(|_| PasskeyError::RpId(rp_id.to_owned()))?;
        let bad = |why| PasskeyError::Origin {
            origin: origin.to_owned(),
            why,
        };
        let parsed = parse_origin(origin).ok_or_else(|| bad("not http(s)://host[:port]"))?;
        let host = parsed.host.trim_matches(|c| c == '[' || c == ']');
        if host != rp && !host.ends_with(&format!(".{rp}")) {
            return Err(bad("its host is neither the RP id nor under it"));
        }
        Ok(Self {
            rp_id: RpId::Domain(domain),
            origin: parsed.serialized(),
        })
    }

    /// The RP id.
    pub fn rp_id(&self) -> &str {
        self.rp_id.as_ref()
    }

    /// The origin, as browsers write it.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// An origin split into its parts, normalised.
struct Origin {
    https: bool,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn serialized(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(p) => format!("{scheme}://{}:{p}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }
}

/// `http(s)://host[:port]` (a trailing `/` allowed), with the default port
/// dropped as browsers do.
fn parse_origin(origin: &str) -> Option<Origin> {
    let origin = origin.trim().to_ascii_lowercase();
    let (https, rest) = if let Some(r) = origin.strip_prefix("https://") {
        (true, r)
    } else {
        (false, origin.strip_prefix("http://")?)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(rest[i + 1..].parse().ok()?)),
        _ => (rest, None),
    };
    if host.is_empty() {
        return None;
    }
    let default = if https { 443 } else { 80 };
    Some(Origin {
        https,
        host: host.to_owned(),
        port: port.filter(|&p| p != default),
    })
}

/// Whether browsers offer WebAuthn on `origin` at all: a secure context,
/// which is `https`, or `http` on `localhost`, `*.localhost`, `127.0.0.1`
/// or `[::1]`. Pages use it to explain why passkeys are unavailable.
/// (An IP-address origin is a secure context but still has no passkeys:
/// no RP id can be an IP address, see [`RelyingParty::new`].)
pub fn secure_context(origin: &str) -> bool {
    parse_origin(origin).is_some_and(|o| {
        o.https
            || o.host == "localhost"
            || o.host.ends_with(".localhost")
            || o.host == "127.0.0.1"
            || o.host == "[::1]"
    })
}

/// A credential that passed registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPasskey {
    /// The credential id (16 to 1023 bytes): the key to find it by when a
    /// sign-in names it, and what [`start_registration`] excludes.
    pub credential_id: Vec<u8>,
    /// What must be kept to verify later (see the module docs).
    pub stored: Vec<u8>,
}

/// The user handle for a user id.
fn handle_of(user_id: i64) -> UserHandle<HANDLE_LEN> {
    UserHandle::decode(user_id.to_be_bytes()).unwrap_or_else(|never| match never {})
}

/// The user id in a user handle.
fn user_of(handle: &UserHandle<HANDLE_LEN>) -> i64 {
    i64::from_be_bytes(handle.encode().unwrap_or_else(|never| match never {}))
}

/// The descriptors for credential ids: ids of an impossible length (not
/// something a browser ever gave us) are left out.
fn descriptors(ids: &[Vec<u8>]) -> Vec<PublicKeyCredentialDescriptor<Vec<u8>>> {
    ids.iter()
        .filter_map(|id| CredentialId::try_from(id.clone()).ok())
        .map(|id| PublicKeyCredentialDescriptor {
            id,
            transports: AuthTransports::NONE,
        })
        .collect()
}

/// A ceremony state: tag, creation time, the crate's encoding.
fn seal_state(tag: u8, now: Millis, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + inner.len());
    out.push(tag);
    out.extend_from_slice(&now.to_be_bytes());
    out.extend_from_slice(inner);
    out
}

/// The tag and crate encoding of a state, if it is well formed, of the
/// expected kind and not expired at `now`.
fn open_state<'a>(
    state: &'a [u8],
    tags: &[u8],
    now: Millis,
) -> Result<(u8, &'a [u8]), PasskeyError> {
    if state.len() > MAX_STATE {
        return Err(PasskeyError::State);
    }
    let (&tag, rest) = state.split_first().ok_or(PasskeyError::State)?;
    let (created, inner) = rest.split_first_chunk::<8>().ok_or(PasskeyError::State)?;
    if !matches!(tag, REGISTRATION | DISCOVERABLE | ALLOW_LIST) {
        return Err(PasskeyError::State);
    }
    if !tags.contains(&tag) {
        return Err(PasskeyError::WrongCeremony);
    }
    let age = now.saturating_sub(Millis::from_be_bytes(*created));
    // A state from the future (beyond the clock's own small corrections)
    // is as suspect as an old one.
    if !(-clock::STEP_BACK..=CEREMONY_TTL).contains(&age) {
        return Err(PasskeyError::Expired);
    }
    Ok((tag, inner))
}

/// When the ceremony in `state` began (as its `start_*` call wrote it),
/// for the caller's bookkeeping of one answer per ceremony; `None` for
/// bytes too short to be a state. Nothing is verified here.
pub fn started_at(state: &[u8]) -> Option<Millis> {
    let created = state.get(1..9)?;
    Some(Millis::from_be_bytes(created.try_into().ok()?))
}

/// Refuses a response too large to parse.
fn check_size(response_json: &str) -> Result<&[u8], PasskeyError> {
    if response_json.len() > MAX_RESPONSE {
        return Err(PasskeyError::TooLarge(response_json.len()));
    }
    Ok(response_json.as_bytes())
}

/// Starts registering a passkey for a signed-in user.
///
/// Returns the ceremony state to keep in the session and the JSON for the
/// browser: a `PublicKeyCredentialCreationOptionsJSON` (binary fields
/// base64url), for `navigator.credentials.create({publicKey})` once those
/// fields are decoded. `existing` are the user's credential ids, excluded
/// so an authenticator that holds one says so instead of making another.
///
/// # Errors
///
/// [`PasskeyError::Username`] when `username` is not a valid WebAuthn user
/// name (RFC 8265's UsernameCasePreserved profile).
pub fn start_registration(
    rp: &RelyingParty,
    user_id: i64,
    username: &str,
    existing: &[Vec<u8>],
) -> Result<(Vec<u8>, String), PasskeyError> {
    start_registration_at(rp, user_id, username, existing, clock::now())
}

fn start_registration_at(
    rp: &RelyingParty,
    user_id: i64,
    username: &str,
    existing: &[Vec<u8>],
    now: Millis,
) -> Result<(Vec<u8>, String), PasskeyError> {
    let handle = handle_of(user_id);
    let name = Username::try_from(username).map_err(|e| PasskeyError::Username(e.to_string()))?;
    let user = PublicKeyCredentialUserEntity {
        name,
        id: &handle,
        // The display name is the user name, when it is a valid nickname.
        display_name: Nickname::try_from(username).ok(),
    };
    let mut options =
        PublicKeyCredentialCreationOptions::passkey(&rp.rp_id, user, descriptors(existing));
    // credProtect "user verification required" is asked for but not
    // enforced: with enforcement a browser must refuse authenticators that
    // lack the extension (older security keys), and every sign-in here
    // requires user verification anyway, which is what the policy protects.
    options.extensions.cred_protect =
        CredProtect::UserVerificationRequired(ExtensionInfo::AllowDontEnforceValue);
    let (server, client) = options
        .start_ceremony()
        .map_err(|e| PasskeyError::Start(e.to_string()))?;
    let inner = server
        .encode()
        .map_err(|e| PasskeyError::Start(e.to_string()))?;
    let json = serde_json::to_string(&client).map_err(|e| PasskeyError::Start(e.to_string()))?;
    Ok((seal_state(REGISTRATION, now, &inner), json))
}

/// Finishes registration: verifies the browser's `RegistrationResponseJSON`
/// against the state from [`start_registration`]. The caller must check
/// that the credential id is not already registered (to anyone) before
/// storing it.
///
/// # Errors
///
/// [`PasskeyError::State`], [`PasskeyError::WrongCeremony`] or
/// [`PasskeyError::Expired`] for the state; [`PasskeyError::TooLarge`] or
/// [`PasskeyError::Response`] for an unparsable response;
/// [`PasskeyError::Rejected`] when it fails verification (challenge, origin,
/// RP id, user presence and verification, resident key, algorithm).
pub fn finish_registration(
    rp: &RelyingParty,
    state: &[u8],
    response_json: &str,
) -> Result<NewPasskey, PasskeyError> {
    finish_registration_at(rp, state, response_json, clock::now())
}

fn finish_registration_at(
    rp: &RelyingParty,
    state: &[u8],
    response_json: &str,
    now: Millis,
) -> Result<NewPasskey, PasskeyError> {
    let (_, inner) = open_state(state, &[REGISTRATION], now)?;
    let server =
        RegistrationServerState::<HANDLE_LEN>::decode(inner).map_err(|_| PasskeyError::State)?;
    let registration = Registration::from_json_relaxed(check_size(response_json)?)
        .map_err(|e| PasskeyError::Response(e.to_string()))?;
    let origins = [rp.origin.as_str()];
    let options = RegistrationVerificationOptions::<&str, &str> {
        allowed_origins: &origins,
        // Browsers and authenticators add extension outputs nobody asked
        // for (credProps, say); nothing here depends on them.
        error_on_unsolicited_extensions: false,
        ..Default::default()
    };
    let credential = server
        .verify(&rp.rp_id, &registration, &options)
        .map_err(|e| PasskeyError::Rejected(e.to_string()))?;
    let (id, transports, user, static_state, dynamic_state, _metadata) = credential.into_parts();
    let static_bytes = static_state.encode().unwrap_or_else(|never| match never {});
    let stored = encode_stored(&user, transports, dynamic_state, id.as_ref(), &static_bytes)?;
    Ok(NewPasskey {
        credential_id: id.as_ref().to_vec(),
        stored,
    })
}

/// The stored-credential layout of the module docs.
fn encode_stored(
    user: &UserHandle<HANDLE_LEN>,
    transports: AuthTransports,
    dynamic: DynamicState,
    id: &[u8],
    static_bytes: &[u8],
) -> Result<Vec<u8>, PasskeyError> {
    let id_len = u16::try_from(id.len()).map_err(|_| PasskeyError::Stored)?;
    let mut out = Vec::with_capacity(1 + HANDLE_LEN + 1 + 7 + 2 + id.len() + static_bytes.len());
    out.push(STORED_V1);
    out.extend_from_slice(user.as_ref());
    out.push(transports.encode().unwrap_or_else(|never| match never {}));
    out.extend_from_slice(&dynamic.encode().unwrap_or_else(|never| match never {}));
    out.extend_from_slice(&id_len.to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(static_bytes);
    Ok(out)
}

/// A stored credential, decoded.
struct Stored<'a> {
    user: UserHandle<HANDLE_LEN>,
    transports: AuthTransports,
    dynamic: DynamicState,
    id: &'a [u8],
    static_bytes: &'a [u8],
    static_state: StaticState<StoredKey>,
}

fn decode_stored(stored: &[u8]) -> Result<Stored<'_>, PasskeyError> {
    let (&version, rest) = stored.split_first().ok_or(PasskeyError::Stored)?;
    if version != STORED_V1 {
        return Err(PasskeyError::Stored);
    }
    let (user, rest) = rest
        .split_first_chunk::<HANDLE_LEN>()
        .ok_or(PasskeyError::Stored)?;
    let (&transports, rest) = rest.split_first().ok_or(PasskeyError::Stored)?;
    let (dynamic, rest) = rest.split_first_chunk::<7>().ok_or(PasskeyError::Stored)?;
    let (id_len, rest) = rest.split_first_chunk::<2>().ok_or(PasskeyError::Stored)?;
    let (id, static_bytes) = rest
        .split_at_checked(usize::from(u16::from_be_bytes(*id_len)))
        .ok_or(PasskeyError::Stored)?;
    Ok(Stored {
        user: UserHandle::decode(*user).unwrap_or_else(|never| match never {}),
        transports: AuthTransports::decode(transports).map_err(|_| PasskeyError::Stored)?,
        dynamic: DynamicState::decode(*dynamic).map_err(|_| PasskeyError::Stored)?,
        id,
        static_bytes,
        static_state: StaticState::decode(static_bytes).map_err(|_| PasskeyError::Stored)?,
    })
}

/// Starts a sign-in. `allow`: `Some(ids)` for the step after a password
/// (that user's credentials, sent as `allowCredentials`), `None` for a
/// passkey-only sign-in (a discoverable credential, empty
/// `allowCredentials`). User verification is required in both.
///
/// Returns the ceremony state to keep in the session and the JSON for the
/// browser: a `PublicKeyCredentialRequestOptionsJSON`, for
/// `navigator.credentials.get({publicKey})` once its binary fields are
/// decoded.
///
/// # Errors
///
/// [`PasskeyError::NoCredentials`] when `allow` holds no usable id.
pub fn start_authentication(
    rp: &RelyingParty,
    allow: Option<&[Vec<u8>]>,
) -> Result<(Vec<u8>, String), PasskeyError> {
    start_authentication_at(rp, allow, clock::now())
}

fn start_authentication_at(
    rp: &RelyingParty,
    allow: Option<&[Vec<u8>]>,
    now: Millis,
) -> Result<(Vec<u8>, String), PasskeyError> {
    let start = |e: &dyn std::fmt::Display| PasskeyError::Start(e.to_string());
    match allow {
        None => {
            let (server, client) = DiscoverableCredentialRequestOptions::passkey(&rp.rp_id)
                .start_ceremony()
                .map_err(|e| start(&e))?;
            let inner = server.encode().map_err(|e| start(&e))?;
            let json = serde_json::to_string(&client).map_err(|e| start(&e))?;
            Ok((seal_state(DISCOVERABLE, now, &inner), json))
        }
        Some(ids) => {
            let mut creds = AllowedCredentials::with_capacity(ids.len());
            for d in descriptors(ids) {
                // A duplicate id is simply not added twice.
                creds.push(d.into());
            }
            let mut options =
                NonDiscoverableCredentialRequestOptions::second_factor(&rp.rp_id, creds)
                    .map_err(|_| PasskeyError::NoCredentials)?;
            // The library's second factor discourages verification (for a
            // security key after a password); this server asks for it, so
            // that a stolen key alone is never a factor.
            options.options().user_verification = UserVerificationRequirement::Required;
            let (server, client) = options.start_ceremony().map_err(|e| start(&e))?;
            let inner = server.encode().map_err(|e| start(&e))?;
            let json = serde_json::to_string(&client).map_err(|e| start(&e))?;
            Ok((seal_state(ALLOW_LIST, now, &inner), json))
        }
    }
}

/// The credential id and the user id (from the user handle, when the
/// browser sent one) named in an `AuthenticationResponseJSON`, so the
/// caller can find the stored credential before calling
/// [`finish_authentication`]. Nothing is verified here.
///
/// # Errors
///
/// [`PasskeyError::TooLarge`] or [`PasskeyError::Response`] for an
/// unparsable response; [`PasskeyError::UserHandle`] when the user handle
/// is not 8 bytes (not one of ours).
pub fn credential_of(response_json: &str) -> Result<(Vec<u8>, Option<i64>), PasskeyError> {
    let json = check_size(response_json)?;
    // Parsed loosely first for the user handle's length, so that a handle
    // of another size is reported as such rather than as bad JSON.
    match NonDiscoverableAuthentication::<HANDLE_LEN>::from_json_relaxed(json) {
        Ok(a) => Ok((
            a.raw_id().as_ref().to_vec(),
            a.response().user_handle().map(user_of),
        )),
        Err(e) => {
            let handle_len = serde_json::from_slice::<serde_json::Value>(json)
                .ok()
                .and_then(|v| {
                    v.pointer("/response/userHandle")?
                        .as_str()
                        .map(|h| URL_SAFE_NO_PAD.decode(h).map_or(0, |b| b.len()))
                });
            match handle_len {
                Some(n) if n != HANDLE_LEN && n != 0 => Err(PasskeyError::UserHandle),
                _ => Err(PasskeyError::Response(e.to_string())),
            }
        }
    }
}

/// Verifies a sign-in: the browser's `AuthenticationResponseJSON` against
/// the state from [`start_authentication`] and the credential it names
/// (found with [`credential_of`]). Returns the stored bytes to write back
/// (the new sign counter and flags; the same bytes when nothing changed).
///
/// The user is the stored credential's: in a passkey-only sign-in the
/// response's user handle must match it, and in the step after a password
/// the credential must be on the allow list (so the caller must look it up
/// among that user's credentials).
///
/// # Errors
///
/// As [`finish_registration`], and [`PasskeyError::Stored`] for stored
/// bytes this module did not write, [`PasskeyError::OtherCredential`] when
/// the response names another credential.
pub fn finish_authentication(
    rp: &RelyingParty,
    state: &[u8],
    response_json: &str,
    stored: &[u8],
) -> Result<Vec<u8>, PasskeyError> {
    finish_authentication_at(rp, state, response_json, stored, clock::now())
}

fn finish_authentication_at(
    rp: &RelyingParty,
    state: &[u8],
    response_json: &str,
    stored: &[u8],
    now: Millis,
) -> Result<Vec<u8>, PasskeyError> {
    let (tag, inner) = open_state(state, &[DISCOVERABLE, ALLOW_LIST], now)?;
    let json = check_size(response_json)?;
    let s = decode_stored(stored)?;
    let origins = [rp.origin.as_str()];
    let options = AuthenticationVerificationOptions::<&str, &str> {
        allowed_origins: &origins,
        error_on_unsolicited_extensions: false,
        // Records that the user verified in the credential's state.
        update_uv: true,
        ..Default::default()
    };
    let rejected = |e: webauthn_rp::response::auth::error::AuthCeremonyErr| {
        PasskeyError::Rejected(e.to_string())
    };
    let response = |e: serde_json::Error| PasskeyError::Response(e.to_string());
    let id = CredentialId::try_from(s.id).map_err(|_| PasskeyError::Stored)?;
    let mut credential = AuthenticatedCredential::new(id, &s.user, s.static_state, s.dynamic)
        .map_err(|_| PasskeyError::Stored)?;
    if tag == DISCOVERABLE {
        let server = DiscoverableAuthenticationServerState::decode(inner)
            .map_err(|_| PasskeyError::State)?;
        // webauthn_rp 0.3.0 parses `"userHandle": null` into a
        // discoverable assertion without a user handle, and then panics
        // when the handle is read: so it is checked for first.
        let loose = NonDiscoverableAuthentication::<HANDLE_LEN>::from_json_relaxed(json)
            .map_err(response)?;
        if loose.response().user_handle().is_none() {
            return Err(PasskeyError::Response(
                "a passkey-only sign-in needs the user handle".to_owned(),
            ));
        }
        let auth =
            DiscoverableAuthentication::<HANDLE_LEN>::from_json_relaxed(json).map_err(response)?;
        if auth.raw_id().as_ref() != s.id {
            return Err(PasskeyError::OtherCredential);
        }
        server
            .verify(&rp.rp_id, &auth, &mut credential, &options)
            .map_err(rejected)?;
    } else {
        let server = NonDiscoverableAuthenticationServerState::decode(inner)
            .map_err(|_| PasskeyError::State)?;
        let auth = NonDiscoverableAuthentication::<HANDLE_LEN>::from_json_relaxed(json)
            .map_err(response)?;
        if auth.raw_id().as_ref() != s.id {
            return Err(PasskeyError::OtherCredential);
        }
        server
            .verify(&rp.rp_id, &auth, &mut credential, &options)
            .map_err(rejected)?;
    }
    encode_stored(
        &s.user,
        s.transports,
        credential.dynamic_state(),
        s.id,
        s.static_bytes,
    )
}

#[cfg(test)]
mod tests {
    //! A software authenticator (a P-256 key from the `p256` crate) makes
    //! genuine "none" attestations and assertions, so every check below
    //! runs through the real verification.

    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{DerSignature, SigningKey};
    use serde_json::{Value, json};
    use sha2::{Digest as _, Sha256};

    const RP_ID: &str = "localhost";
    const ORIGIN: &str = "http://localhost:8080";
    const UP: u8 = 0x01;
    const UV: u8 = 0x04;
    const AT: u8 = 0x40;

    fn rp() -> RelyingParty {
        RelyingParty::new(RP_ID, ORIGIN).expect("a valid relying party")
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The reason a verification failed; any other outcome fails the test.
    fn rejected<T: std::fmt::Debug>(r: Result<T, PasskeyError>) -> String {
        match r {
            Err(PasskeyError::Rejected(why)) => why,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// A CBOR byte string header and body.
    fn cbor_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        let n = bytes.len();
        if n < 24 {
            out.push(0x40 | n as u8);
        } else if n < 256 {
            out.extend_from_slice(&[0x58, n as u8]);
        } else {
            out.push(0x59);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        out.extend_from_slice(bytes);
    }

    /// What a browser would do with the options: the challenge to sign.
    fn challenge(options_json: &str) -> String {
        let v: Value = serde_json::from_str(options_json).expect("options are JSON");
        v["challenge"].as_str().expect("a challenge").to_owned()
    }

    struct Authenticator {
        key: SigningKey,
        credential_id: Vec<u8>,
        user_handle: Vec<u8>,
        counter: u32,
        /// False for an authenticator that keeps no counter (always 0).
        counts: bool,
    }

    impl Authenticator {
        fn new(seed: u8) -> Self {
            let key = SigningKey::from_bytes(&[seed; 32].into()).expect("a valid scalar");
            Self {
                key,
                credential_id: vec![seed; 32],
                user_handle: Vec::new(),
                counter: 0,
                counts: true,
            }
        }

        fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
            format!(
                r#"{{"type":"{kind}","challenge":"{challenge}","origin":"{origin}","crossOrigin":false}}"#
            )
            .into_bytes()
        }

        /// A `RegistrationResponseJSON` for `options_json`.
        fn create(&mut self, options_json: &str, origin: &str, flags: u8) -> String {
            let v: Value = serde_json::from_str(options_json).expect("options are JSON");
            self.user_handle = URL_SAFE_NO_PAD
                .decode(v["user"]["id"].as_str().expect("a user id"))
                .expect("base64url");
            let client_data =
                Self::client_data("webauthn.create", &challenge(options_json), origin);
            let point = self.key.verifying_key().to_encoded_point(false);
            // COSE_Key {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}.
            let mut cose = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
            cbor_bytes(&mut cose, point.x().expect("uncompressed"));
            cose.push(0x22);
            cbor_bytes(&mut cose, point.y().expect("uncompressed"));
            let mut auth_data = Sha256::digest(RP_ID).to_vec();
            auth_data.push(flags);
            auth_data.extend_from_slice(&self.counter.to_be_bytes());
            auth_data.extend_from_slice(&[0; 16]);
            auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
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
                    "clientDataJSON": b64(&client_data),
                    "attestationObject": b64(&attestation),
                    "transports": ["internal"],
                },
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
            })
            .to_string()
        }

        /// An `AuthenticationResponseJSON` for `options_json`.
        fn get(&mut self, options_json: &str, origin: &str, flags: u8) -> Value {
            if self.counts {
                self.counter += 1;
            }
            let client_data = Self::client_data("webauthn.get", &challenge(options_json), origin);
            let mut auth_data = Sha256::digest(RP_ID).to_vec();
            auth_data.push(flags);
            auth_data.extend_from_slice(&self.counter.to_be_bytes());
            let mut signed = auth_data.clone();
            signed.extend_from_slice(&Sha256::digest(&client_data));
            let signature: DerSignature = self.key.sign(&signed);
            json!({
                "id": b64(&self.credential_id),
                "rawId": b64(&self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64(&client_data),
                    "authenticatorData": b64(&auth_data),
                    "signature": b64(signature.as_bytes()),
                    "userHandle": b64(&self.user_handle),
                },
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
            })
        }
    }

    /// A registered authenticator and its stored credential.
    fn registered(seed: u8, user_id: i64) -> (Authenticator, NewPasskey) {
        let mut a = Authenticator::new(seed);
        let (state, options) = start_registration(&rp(), user_id, "alice", &[]).expect("options");
        let response = a.create(&options, ORIGIN, UP | UV | AT);
        let passkey = finish_registration(&rp(), &state, &response).expect("registered");
        (a, passkey)
    }

    #[test]
    fn a_passkey_registers_and_signs_in_both_ways() {
        let (mut a, passkey) = registered(7, 42);
        assert_eq!(passkey.credential_id, vec![7; 32]);

        // Passkey-only: the browser names the user.
        let (state, options) = start_authentication(&rp(), None).expect("options");
        let response = a.get(&options, ORIGIN, UP | UV).to_string();
        assert_eq!(
            credential_of(&response).expect("parsed"),
            (vec![7; 32], Some(42))
        );
        let stored =
            finish_authentication(&rp(), &state, &response, &passkey.stored).expect("signed in");
        assert_ne!(stored, passkey.stored, "the sign counter moved on");

        // After a password: that user's credentials are allowed.
        let ids = [passkey.credential_id.clone()];
        let (state, options) = start_authentication(&rp(), Some(&ids)).expect("options");
        let response = a.get(&options, ORIGIN, UP | UV).to_string();
        let again = finish_authentication(&rp(), &state, &response, &stored).expect("signed in");

        // The old counter again is a cloned authenticator.
        a.counter = 0;
        let (state, options) = start_authentication(&rp(), None).expect("options");
        let response = a.get(&options, ORIGIN, UP | UV).to_string();
        rejected(finish_authentication(&rp(), &state, &response, &again));
    }

    #[test]
    fn the_start_of_a_ceremony_is_read_back_from_its_state() {
        let (state, _) = start_authentication_at(&rp(), None, 1_234_567).expect("options");
        assert_eq!(started_at(&state), Some(1_234_567));
        assert_eq!(started_at(&state[..5]), None);
        assert_eq!(started_at(&[]), None);
    }

    #[test]
    fn a_negative_user_id_comes_back_through_the_user_handle() {
        let (mut a, _) = registered(19, -5);
        let (_, options) = start_authentication(&rp(), None).expect("options");
        let response = a.get(&options, ORIGIN, UP | UV).to_string();
        assert_eq!(credential_of(&response).expect("parsed").1, Some(-5));
    }

    #[test]
    fn what_the_script_sends_without_optional_fields_is_accepted() {
        // assets/passkey.js sends null for a missing attachment and a
        // missing user handle.
        let mut a = Authenticator::new(20);
        let (state, options) = start_registration(&rp(), 9, "carol", &[]).expect("options");
        let mut response: Value =
            serde_json::from_str(&a.create(&options, ORIGIN, UP | UV | AT)).expect("JSON");
        response["authenticatorAttachment"] = Value::Null;
        response["response"]["transports"] = json!([]);
        // Unasked for, as some browsers add it.
        response["clientExtensionResults"] = json!({"credProps": {"rk": true}});
        let passkey =
            finish_registration(&rp(), &state, &response.to_string()).expect("registered");

        let ids = [passkey.credential_id.clone()];
        let (state, options) = start_authentication(&rp(), Some(&ids)).expect("options");
        let mut response = a.get(&options, ORIGIN, UP | UV);
        response["authenticatorAttachment"] = Value::Null;
        response["response"]["userHandle"] = Value::Null;
        let response = response.to_string();
        assert_eq!(
            credential_of(&response).expect("parsed"),
            (passkey.credential_id.clone(), None)
        );
        finish_authentication(&rp(), &state, &response, &passkey.stored).expect("signed in");

        // A passkey-only sign-in needs the user handle.
        let (state, options) = start_authentication(&rp(), None).expect("options");
        let mut response = a.get(&options, ORIGIN, UP | UV);
        response["response"]["userHandle"] = Value::Null;
        assert!(matches!(
            finish_authentication(&rp(), &state, &response.to_string(), &passkey.stored),
            Err(PasskeyError::Response(_))
        ));
    }

    #[test]
    fn an_authenticator_without_a_counter_signs_in_again_and_again() {
        let (mut a, passkey) = registered(23, 1);
        a.counts = false;
        let mut stored = passkey.stored;
        for _ in 0..3 {
            let (state, options) = start_authentication(&rp(), None).expect("options");
            let response = a.get(&options, ORIGIN, UP | UV).to_string();
            stored = finish_authentication(&rp(), &state, &response, &stored).expect("signed in");
        }
    }

    #[test]
    fn a_credential_not_on_the_allow_list_is_refused() {
        let (mut a, passkey) = registered(24, 1);
        let ids = [vec![99; 32]];
        let (state, options) = start_authentication(&rp(), Some(&ids)).expect("options");
        let response = a.get(&options, ORIGIN, UP | UV).to_string();
        let why = rejected(finish_authentication(
            &rp(),
            &state,
            &response,
            &passkey.stored,
        ));
        assert!(why.contains("Credential ID"), "{why}");
    }

    #[test]
    fn the_options_ask_for_a_discoverable_verified_credential() {
        let existing = [vec![1; 16], vec![2; 20]];
        let (_, options) = start_registration(&rp(), 258, "bob", &existing).expect("options");
        let v: Value = serde_json::from_str(&options).expect("JSON");
        assert_eq!(v["rp"]["id"], "localhost");
        assert_eq!(v["user"]["id"], b64(&258i64.to_be_bytes()));
        assert_eq!(v["user"]["name"], "bob");
        assert_eq!(v["authenticatorSelection"]["residentKey"], "required");
        assert_eq!(v["authenticatorSelection"]["userVerification"], "required");
        assert_eq!(
            v["extensions"]["credentialProtectionPolicy"],
            "userVerificationRequired"
        );
        assert_eq!(v["extensions"]["enforceCredentialProtectionPolicy"], false);
        let excluded: Vec<&str> = v["excludeCredentials"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| c["id"].as_str().expect("an id"))
            .collect();
        assert_eq!(excluded, [b64(&[1; 16]), b64(&[2; 20])]);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(challenge(&options)).map(|c| c.len()),
            Ok(16)
        );

        let (_, options) = start_authentication(&rp(), None).expect("options");
        let v: Value = serde_json::from_str(&options).expect("JSON");
        assert_eq!(v["userVerification"], "required");
        assert_eq!(v["allowCredentials"], json!([]));

        let (_, options) = start_authentication(&rp(), Some(&existing)).expect("options");
        let v: Value = serde_json::from_str(&options).expect("JSON");
        assert_eq!(v["userVerification"], "required");
        assert_eq!(v["allowCredentials"][0]["id"], b64(&[1; 16]));
        assert_eq!(v["allowCredentials"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn an_allow_list_without_usable_ids_is_refused() {
        assert!(matches!(
            start_authentication(&rp(), Some(&[])),
            Err(PasskeyError::NoCredentials)
        ));
        assert!(matches!(
            start_authentication(&rp(), Some(&[vec![1; 3]])),
            Err(PasskeyError::NoCredentials)
        ));
    }

    #[test]
    fn a_response_to_another_challenge_is_refused() {
        let mut a = Authenticator::new(3);
        let (_, other) = start_registration(&rp(), 1, "alice", &[]).expect("options");
        let (state, _) = start_registration(&rp(), 1, "alice", &[]).expect("options");
        let response = a.create(&other, ORIGIN, UP | UV | AT);
        let why = rejected(finish_registration(&rp(), &state, &response));
        assert!(why.contains("challenge"), "{why}");

        let (mut a, passkey) = registered(4, 1);
        let (_, other) = start_authentication(&rp(), None).expect("options");
        let (state, _) = start_authentication(&rp(), None).expect("options");
        let response = a.get(&other, ORIGIN, UP | UV).to_string();
        let why = rejected(finish_authentication(
            &rp(),
            &state,
            &response,
            &passkey.stored,
        ));
        assert!(why.contains("challenge"), "{why}");
    }

    #[test]
    fn a_response_from_another_origin_is_refused() {
        let mut a = Authenticator::new(5);
        let (state, options) = start_registration(&rp(), 1, "alice", &[]).expect("options");
        let response = a.create(&options, "http://localhost:9999", UP | UV | AT);
        let why = rejected(finish_registration(&rp(), &state, &response));
        assert!(why.contains("origin"), "{why}");

        let (mut a, passkey) = registered(6, 1);
        let (state, options) = start_authentication(&rp(), None).expect("options");
        let response = a.get(&options, "https://evil.example", UP | UV).to_string();
        let why = rejected(finish_authentication(
            &rp(),
            &state,
            &response,
            &passkey.stored,
        ));
        assert!(why.contains("origin"), "{why}");
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let (mut a, passkey) = registered(8, 1);
        let (state, options) = start_authentication(&rp(), None).expect("options");
        let mut response = a.get(&options, ORIGIN, UP | UV);
        let mut sig = URL_SAFE_NO_PAD
            .decode(
                response["response"]["signature"]
                    .as_str()
                    .expect("a signature"),
            )
            .expect("base64url");
        let last = sig.len() - 1;
        sig[last] ^= 1;
        response["response"]["signature"] = b64(&sig).into();
        let why = rejected(finish_authentication(
            &rp(),
            &state,
            &response.to_string(),
            &passkey.stored,
        ));
        assert!(why.contains("signature"), "{why}");
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let (_, passkey) = registered(9, 1);
        let mut impostor = Authenticator::new(10);
        impostor.credential_id = passkey.credential_id.clone();
        impostor.user_handle = 1i64.to_be_bytes().to_vec();
        let (state, options) = start_authentication(&rp(), None).expect("options");
        let response = impostor.get(&options, ORIGIN, UP | UV).to_string();
        let why = rejected(finish_authentication(
            &rp(),
            &state,
            &response,
            &passkey.stored,
        ));
        assert!(why.contains("signature"), "{why}");
    }

    #[test]
    fn without_user_verification_nothing_is_accepted() {
        let mut a = Authenticator::new(11);
        let (state, options) = start_registration(&rp(), 1, "alice", &[]).expect("options");
        let response = a.create(&options, ORIGIN, UP | AT);
        let why = rejected(finish_registration(&rp(), &state, &response));
        assert!(why.contains("verified"), "{why}");

        let (mut a, passkey) = registered(12, 1);
        for allow in [None, Some(std::slice::from_ref(&passkey.credential_id))] {
            let (state, options) = start_authentication(&rp(), allow).expect("options");
            let response = a.get(&options, ORIGIN, UP).to_string();
            let why = rejected(finish_authentication(
                &rp(),
                &state,
                &response,
                &passkey.stored,
            ));
            assert!(why.contains("verified"), "{why}");
        }
    }

    #[test]
    fn an_old_ceremony_state_is_expired() {
        let now = clock::now();
        let mut a = Authenticator::new(13);
        let (state, options) =
            start_registration_at(&rp(), 1, "alice", &[], now - CEREMONY_TTL - 1).expect("options");
        let response = a.create(&options, ORIGIN, UP | UV | AT);
        assert!(matches!(
            finish_registration_at(&rp(), &state, &response, now),
            Err(PasskeyError::Expired)
        ));

        let (mut a, passkey) = registered(14, 1);
        let (state, options) =
            start_authentication_at(&rp(), None, now - CEREMONY_TTL - 1).expect("options");
        let response = a.get(&options, ORIGIN, UP | UV).to_string();
        assert!(matches!(
            finish_authentication_at(&rp(), &state, &response, &passkey.stored, now),
            Err(PasskeyError::Expired)
        ));
        // One from the future (a clock stepped back) is no better.
        let (state, _) = start_authentication_at(&rp(), None, now + 60_000).expect("options");
        assert!(matches!(
            finish_authentication_at(&rp(), &state, &response, &passkey.stored, now),
            Err(PasskeyError::Expired)
        ));
    }

    #[test]
    fn a_state_of_another_ceremony_is_refused() {
        let (mut a, passkey) = registered(15, 1);
        let (state, _) = start_registration(&rp(), 1, "alice", &[]).expect("options");
        let (_, options) = start_authentication(&rp(), None).expect("options");
        let response = a.get(&options, ORIGIN, UP | UV).to_string();
        assert!(matches!(
            finish_authentication(&rp(), &state, &response, &passkey.stored),
            Err(PasskeyError::WrongCeremony)
        ));
        let (state, _) = start_authentication(&rp(), None).expect("options");
        assert!(matches!(
            finish_registration(&rp(), &state, "{}"),
            Err(PasskeyError::WrongCeremony)
        ));
    }

    #[test]
    fn a_stored_credential_of_another_passkey_is_refused() {
        let (mut a, _) = registered(16, 1);
        let (_, other) = registered(17, 1);
        let (state, options) = start_authentication(&rp(), None).expect("options");
        let response = a.get(&options, ORIGIN, UP | UV).to_string();
        assert!(matches!(
            finish_authentication(&rp(), &state, &response, &other.stored),
            Err(PasskeyError::OtherCredential)
        ));
    }

    #[test]
    fn malformed_and_oversized_input_is_an_error_not_a_panic() {
        let (mut a, passkey) = registered(18, 1);
        let (reg_state, _) = start_registration(&rp(), 1, "alice", &[]).expect("options");
        let (auth_state, options) = start_authentication(&rp(), None).expect("options");
        let good = a.get(&options, ORIGIN, UP | UV).to_string();
        let huge = format!(r#"{{"id":"{}"}}"#, "A".repeat(MAX_RESPONSE));
        let bad_json = [
            "",
            "{",
            "null",
            "[]",
            "\"x\"",
            "{}",
            r#"{"id":1}"#,
            r#"{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{}}"#,
            r#"{"response":{"clientDataJSON":"!!!","attestationObject":"","transports":[]},"clientExtensionResults":{}}"#,
            &good[..good.len() / 2],
        ];
        for j in bad_json {
            assert!(credential_of(j).is_err(), "{j}");
            assert!(finish_registration(&rp(), &reg_state, j).is_err(), "{j}");
            assert!(finish_authentication(&rp(), &auth_state, j, &passkey.stored).is_err());
        }
        assert!(matches!(
            credential_of(&huge),
            Err(PasskeyError::TooLarge(_))
        ));
        assert!(matches!(
            finish_registration(&rp(), &reg_state, &huge),
            Err(PasskeyError::TooLarge(_))
        ));
        // A user handle that is not 8 bytes is not one of ours.
        let mut other_handle: Value = serde_json::from_str(&good).expect("JSON");
        other_handle["response"]["userHandle"] = b64(&[1; 16]).into();
        assert!(matches!(
            credential_of(&other_handle.to_string()),
            Err(PasskeyError::UserHandle)
        ));

        // Every truncation of the states, and every truncation and flipped
        // byte of the stored credential.
        for state in [&reg_state, &auth_state] {
            for n in 0..state.len() {
                assert!(finish_registration(&rp(), &state[..n], "{}").is_err());
                assert!(finish_authentication(&rp(), &state[..n], &good, &passkey.stored).is_err());
            }
        }
        for n in 0..passkey.stored.len() {
            let cut = &passkey.stored[..n];
            assert!(finish_authentication(&rp(), &auth_state, &good, cut).is_err());
            let mut flipped = passkey.stored.clone();
            flipped[n] ^= 0xff;
            // A flipped counter or flag byte may still verify; it must not panic.
            let _ = finish_authentication(&rp(), &auth_state, &good, &flipped);
        }
        let mut long = passkey.stored.clone();
        long.push(0);
        assert!(finish_authentication(&rp(), &auth_state, &good, &long).is_err());
        let oversized = vec![2; MAX_STATE + 1];
        assert!(finish_authentication(&rp(), &oversized, &good, &passkey.stored).is_err());
    }

    #[test]
    fn any_field_replaced_by_junk_is_an_error_not_a_panic() {
        let junk = [
            Value::Null,
            json!(1),
            json!(""),
            json!("AA"),
            json!("!"),
            json!([]),
            json!({}),
        ];
        let (mut a, passkey) = registered(21, 1);
        let ids = [passkey.credential_id.clone()];
        for allow in [None, Some(&ids[..])] {
            let (state, options) = start_authentication(&rp(), allow).expect("options");
            let good = a.get(&options, ORIGIN, UP | UV);
            for path in [
                "/id",
                "/rawId",
                "/type",
                "/authenticatorAttachment",
                "/clientExtensionResults",
                "/response",
                "/response/clientDataJSON",
                "/response/authenticatorData",
                "/response/signature",
                "/response/userHandle",
            ] {
                for j in &junk {
                    let mut bad = good.clone();
                    *bad.pointer_mut(path).expect("a field") = j.clone();
                    let bad = bad.to_string();
                    let _ = credential_of(&bad);
                    let _ = finish_authentication(&rp(), &state, &bad, &passkey.stored);
                }
            }
        }
        let mut b = Authenticator::new(22);
        let (state, options) = start_registration(&rp(), 1, "alice", &[]).expect("options");
        let good: Value =
            serde_json::from_str(&b.create(&options, ORIGIN, UP | UV | AT)).expect("JSON");
        for path in [
            "/id",
            "/rawId",
            "/type",
            "/authenticatorAttachment",
            "/clientExtensionResults",
            "/response",
            "/response/clientDataJSON",
            "/response/attestationObject",
            "/response/transports",
        ] {
            for j in &junk {
                let mut bad = good.clone();
                *bad.pointer_mut(path).expect("a field") = j.clone();
                let _ = finish_registration(&rp(), &state, &bad.to_string());
            }
        }
    }

    #[test]
    fn the_relying_party_checks_its_origin() {
        let rp = RelyingParty::new("Auth.Example.lan", "HTTPS://auth.example.lan:443/")
            .expect("a valid relying party");
        assert_eq!(
            (rp.rp_id(), rp.origin()),
            ("auth.example.lan", "https://auth.example.lan")
        );
        let rp = RelyingParty::new("example.lan", "https://auth.example.lan:8443")
            .expect("a valid relying party");
        assert_eq!(rp.origin(), "https://auth.example.lan:8443");
        for (id, origin) in [
            ("example.lan", "https://example.lan.evil.com"),
            ("example.lan", "https://badexample.lan"),
            ("example.lan", "ftp://example.lan"),
            ("example.lan", "https://example.lan/login"),
            ("example.lan", "https://example.lan:99999"),
            ("example.lan", "https://"),
            ("", "https://example.lan"),
            ("127.0.0.1", "http://127.0.0.1:8080"),
            ("[::1]", "http://[::1]:8080"),
            ("exa mple", "https://exa mple"),
        ] {
            assert!(RelyingParty::new(id, origin).is_err(), "{id} {origin}");
        }
    }

    #[test]
    fn passkeys_need_a_secure_context() {
        for yes in [
            "https://auth.example.lan",
            "http://localhost:8080",
            "http://127.0.0.1:3000",
            "http://app.localhost",
            "http://[::1]:8080",
        ] {
            assert!(secure_context(yes), "{yes}");
        }
        for no in [
            "http://auth.example.lan",
            "http://10.0.0.1:8080",
            "localhost",
            "",
        ] {
            assert!(!secure_context(no), "{no}");
        }
    }
}
