//! The relying parties (`[[clients]]` in `gatehouse.toml`): what each may
//! ask for and how it proves who it is. Parsed from the file by
//! `config/`, validated here into [`Client`]s, each error naming the
//! client and the field.
//!
//! - **Secrets** are never kept in the clear: a secret written as is in
//!   the file is replaced by its SHA-256 as it is read; the file may give
//!   `sha256:<hex>` or a bcrypt hash (`$2b$...`) instead. A secret is
//!   compared in constant time.
//! - **Redirect URIs** match exactly, byte for byte (no prefix, no
//!   normalisation: a prefix match is how open redirectors steal codes),
//!   except that a loopback `http://127.0.0.1` or `http://[::1]` URI
//!   matches with any port (RFC 8252 §7.3: native apps listen on whatever
//!   port they get). Custom schemes (`app.immich:///oauth-callback`) are
//!   allowed; `javascript:`, `data:` and the like never are.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::keys::Alg;
use super::store::ClientRow;

/// Whether a confidential client must use PKCE (public clients always must).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pkce {
    /// Every authorization request carries an S256 challenge.
    Required,
    /// A request without one is accepted (many apps send none); one that
    /// carries a challenge is held to it.
    Optional,
}

/// One relying party, validated.
#[derive(Clone)]
pub struct Client {
    /// The `client_id` (any string the app insists on).
    pub id: String,
    /// The name people see (sign-in page, refusal page, "my apps").
    pub name: String,
    /// How the secret is checked; `None` for a public client.
    secret: Option<SecretHash>,
    /// The registered redirect URIs, exactly as written.
    pub redirect_uris: Vec<String>,
    /// The groups whose members may use it; empty: any signed-in user.
    pub groups: Vec<String>,
    /// Whether the sign-in must have used a second factor.
    pub two_factor: bool,
    /// The PKCE rule ([`Pkce::Required`] for every public client).
    pub pkce: Pkce,
    /// How its ID tokens are signed.
    pub signing_alg: Alg,
    /// Whether the profile claims go in the ID token too (else userinfo only).
    pub claims_in_id_token: bool,
    /// Whether it may have refresh tokens (asked for with `offline_access`).
    pub offline_access: bool,
    /// Whether it may use the device authorization grant (RFC 8628).
    pub device_grant: bool,
    /// Extra claims, in the order written.
    pub claims: Vec<(String, ExtraClaim)>,
    /// Where "my apps" links to.
    pub launch_url: Option<String>,
    /// Loaded in a hidden frame of the signed-out page when the user
    /// signs out (OpenID Connect Front-Channel Logout 1.0).
    pub frontchannel_logout_uri: Option<String>,
    /// Whether the frame's URL carries `iss` and `sid` (default: yes).
    pub frontchannel_logout_session_required: bool,
    /// Sent a logout token (server to server) whenever a session that
    /// signed in to it ends (OpenID Connect Back-Channel Logout 1.0).
    pub backchannel_logout_uri: Option<String>,
    /// Whether the client needs `sid` in the logout token (default: yes;
    /// gatehouse always sends it, so either value is met).
    pub backchannel_logout_session_required: bool,
    /// Where `end_session` may send the browser afterwards (exact match).
    pub post_logout_redirect_uris: Vec<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret's hash either: a fast hash of a weak secret
        // would give it away.
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("redirect_uris", &self.redirect_uris)
            .field("groups", &self.groups)
            .field("two_factor", &self.two_factor)
            .field("pkce", &self.pkce)
            .field("signing_alg", &self.signing_alg)
            .finish_non_exhaustive()
    }
}

/// An extra claim: a fixed value, or a value picked by group membership.
#[derive(Clone, Debug, PartialEq)]
pub enum ExtraClaim {
    /// Always this value.
    Fixed(Value),
    /// The value of the first group (in the order written) the user is
    /// in; else `default`; else the claim is left out.
    FromGroups {
        /// Group name and value, in the order written.
        map: Vec<(String, Value)>,
        /// The value for a user in none of them.
        default: Option<Value>,
    },
}

/// How a client secret is checked.
#[derive(Clone)]
enum SecretHash {
    /// SHA-256 of the secret (from a secret in the file, or `sha256:`).
    Sha256([u8; 32]),
    /// A bcrypt hash; the SHA-256 of a secret it accepted is remembered
    /// (in memory only), so bcrypt's cost is paid once per process and not
    /// on every token request.
    Bcrypt {
        hash: String,
        accepted: Arc<Mutex<Option<[u8; 32]>>>,
    },
}

/// The shortest secret accepted in the clear: a client secret is checked
/// with a fast hash and must be too random to guess.
pub const MIN_SECRET_LEN: usize = 24;

/// Claims the provider sets itself: an extra claim may not replace them
/// (a fixed `email` or `sub` would let a configuration slip impersonate
/// another user at the app).
const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "sid",
    "at_hash",
    "c_hash",
    "s_hash",
    "cnf",
    "typ",
    "name",
    "preferred_username",
    "email",
    "email_verified",
    "groups",
    "scope",
    "client_id",
];

impl Client {
    /// Whether it has no secret (a browser or native app that cannot keep one).
    pub fn is_public(&self) -> bool {
        self.secret.is_none()
    }

    /// Whether `given` is this client's secret (always `false` for a
    /// public client). Constant-time in the secret; a bcrypt hash costs
    /// one bcrypt run until it first accepts.
    pub fn verify_secret(&self, given: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        match &self.secret {
            None => false,
            Some(SecretHash::Sha256(want)) => bool::from(digest.ct_eq(want)),
            Some(SecretHash::Bcrypt { hash, accepted }) => {
                let known = *accepted.lock().unwrap_or_else(PoisonError::into_inner);
                if known.is_some_and(|k| bool::from(k.ct_eq(&digest))) {
                    return true;
                }
                // bcrypt reads 72 bytes; a longer secret would be accepted
                // on its first 72 alone.
                if given.len() > 72 || !bcrypt::verify(given, hash).unwrap_or(false) {
                    return false;
                }
                *accepted.lock().unwrap_or_else(PoisonError::into_inner) = Some(digest);
                true
            }
        }
    }

    /// The registered redirect URI `given` matches, if any: exactly, or a
    /// loopback one with any port.
    pub fn redirect_uri(&self, given: &str) -> Option<&str> {
        if let Some(uri) = self.redirect_uris.iter().find(|u| *u == given) {
            return Some(uri);
        }
        let (host, rest) = loopback(given)?;
        self.redirect_uris
            .iter()
            .find(|u| loopback(u) == Some((host, rest)))
            .map(String::as_str)
    }

    /// Whether `given` is one of the post-logout redirect URIs (exactly).
    pub fn post_logout_redirect_uri(&self, given: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|u| u == given)
    }

    /// Whether PKCE is required of this client.
    pub fn pkce_required(&self) -> bool {
        self.is_public() || self.pkce == Pkce::Required
    }

    /// The extra claims for a member of `groups`, in the order written.
    pub fn extra_claims(&self, groups: &[String]) -> Vec<(String, Value)> {
        let member = |g: &str| groups.iter().any(|h| h.eq_ignore_ascii_case(g));
        self.claims
            .iter()
            .filter_map(|(name, claim)| {
                let value = match claim {
                    ExtraClaim::Fixed(v) => Some(v.clone()),
                    ExtraClaim::FromGroups { map, default } => map
                        .iter()
                        .find(|(g, _)| member(g))
                        .map(|(_, v)| v.clone())
                        .or_else(|| default.clone()),
                };
                value.map(|v| (name.clone(), v))
            })
            .collect()
    }
}

/// The host and the path-and-query of a loopback redirect URI
/// (`http://127.0.0.1[:port]/...` or `http://[::1][:port]/...`), the
/// port dropped; `None` for any other URI.
fn loopback(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = if let Some(v6) = authority.strip_prefix("[::1]") {
        ("[::1]", v6)
    } else if let Some(v4) = authority.strip_prefix("127.0.0.1") {
        ("127.0.0.1", v4)
    } else {
        return None;
    };
    match port.strip_prefix(':') {
        None if port.is_empty() => {}
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|p| *p > 0)?;
        }
        _ => return None,
    }
    Some((host, tail))
}

/// The configured clients, ids unique.
#[derive(Clone, Debug, Default)]
pub struct Clients {
    list: Vec<Client>,
}

impl Clients {
    /// The clients, checked for ids used twice.
    ///
    /// # Errors
    ///
    /// The second client with an id already used.
    pub fn new(list: Vec<Client>) -> Result<Self, ClientError> {
        let mut seen = BTreeSet::new();
        for c in &list {
            if !seen.insert(c.id.as_str()) {
                return Err(ClientError {
                    client: c.id.clone(),
                    field: "id",
                    reason: "is used by another client too".into(),
                });
            }
        }
        Ok(Self { list })
    }

    /// The client with this id (compared exactly).
    pub fn find(&self, id: &str) -> Option<&Client> {
        self.list.iter().find(|c| c.id == id)
    }

    /// Every client, in the order configured.
    pub fn all(&self) -> &[Client] {
        &self.list
    }
}

/// A problem with one client's settings: which client, which field, what.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("client {client:?}: invalid {field}: {reason}")]
pub struct ClientError {
    /// The client's id (or its position when it has none).
    pub client: String,
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// A client as written in `gatehouse.toml`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    id: String,
    secret: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    name: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    two_factor: bool,
    pkce: Option<String>,
    signing_alg: Option<String>,
    claims_in_id_token: Option<bool>,
    #[serde(default)]
    offline_access: bool,
    #[serde(default)]
    device_grant: bool,
    #[serde(default)]
    claims: ClaimSpecs,
    launch_url: Option<String>,
    frontchannel_logout_uri: Option<String>,
    frontchannel_logout_session_required: Option<bool>,
    backchannel_logout_uri: Option<String>,
    backchannel_logout_session_required: Option<bool>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
}

impl fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSpec")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// `[clients.claims]`, in the order written.
#[derive(Clone, Debug, Default)]
struct ClaimSpecs(Vec<(String, ClaimSpec)>);

/// One extra claim as written.
#[derive(Clone, Debug)]
enum ClaimSpec {
    Fixed(Value),
    /// A table: `{ from_groups = { admins = "Admin" }, default = "Viewer" }`;
    /// any other key in it is an error, found when built.
    Table(Vec<(String, Value)>, Option<Vec<(String, Value)>>),
}

/// Reads a table's entries in the order the deserializer gives them
/// (`toml`'s own order for a file read as text: the order written).
struct Ordered<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Ordered<T> {
    type Value = Vec<(String, T)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, T>()? {
            out.push((k, v));
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for ClaimSpecs {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(Ordered::<ClaimSpec>(std::marker::PhantomData))
            .map(Self)
    }
}

/// A claim's value: a plain value, or a table of keys (read in order, so
/// `from_groups` keeps the order written).
struct ClaimVisitor;

impl<'de> Visitor<'de> for ClaimVisitor {
    type Value = ClaimSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean, list, or { from_groups = {...}, default = ... }")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ClaimSpec, E> {
        Ok(ClaimSpec::Fixed(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ClaimSpec, E> {
        Ok(ClaimSpec::Fixed(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ClaimSpec, E> {
        Ok(ClaimSpec::Fixed(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ClaimSpec, E> {
        Ok(ClaimSpec::Fixed(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ClaimSpec, E> {
        Ok(ClaimSpec::Fixed(Value::from(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClaimSpec, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(v);
        }
        Ok(ClaimSpec::Fixed(Value::Array(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClaimSpec, A::Error> {
        let mut rest = Vec::new();
        let mut from_groups = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "from_groups" {
                from_groups = Some(map.next_value_seed(OrderedSeed)?);
            } else {
                rest.push((key, map.next_value::<Value>()?));
            }
        }
        Ok(ClaimSpec::Table(rest, from_groups))
    }
}

struct OrderedSeed;

impl<'de> de::DeserializeSeed<'de> for OrderedSeed {
    type Value = Vec<(String, Value)>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(Ordered::<Value>(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for ClaimSpec {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ClaimVisitor)
    }
}

/// Whether `s` has a character that has no place in a setting's text
/// (control characters: a line break in a name forges log lines).
fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Checks a redirect URI (or a post-logout one): absolute, no fragment
/// (RFC 6749 §3.1.2), no wildcard, no scheme that runs code in the
/// browser; `http(s)` ones need a host and no user information.
///
/// # Errors
///
/// What is wrong, as a sentence.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.is_empty() || uri.len() > 2000 {
        return Err(format!("{uri:?} must be 1 to 2000 characters"));
    }
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{uri:?} contains spaces or control characters"));
    }
    // The answer's `Location` header carries it: ASCII only (a browser
    // sends such an address percent-encoded, its host in punycode).
    if !uri.is_ascii() {
        return Err(format!(
            "{uri:?} must be ASCII: percent-encode other characters (RFC 3986), a host in punycode"
        ));
    }
    if uri.contains('#') {
        return Err(format!(
            "{uri:?} has a fragment (#), which redirect URIs may not have"
        ));
    }
    if uri.contains('*') {
        return Err(format!(
            "{uri:?} has a wildcard; redirect URIs are matched exactly (loopback ones with any port)"
        ));
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(format!("{uri:?} is not an absolute URI (no scheme)"));
    };
    if !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(format!("{uri:?} has no valid scheme"));
    }
    let scheme = scheme.to_ascii_lowercase();
    if matches!(
        scheme.as_str(),
        "javascript" | "data" | "vbscript" | "file" | "blob" | "about"
    ) {
        return Err(format!(
            "{uri:?}: the {scheme}: scheme is never a redirect URI"
        ));
    }
    if rest.is_empty() {
        return Err(format!("{uri:?} has nothing after the scheme"));
    }
    if matches!(scheme.as_str(), "http" | "https") {
        check_web_authority(uri, rest)?;
    }
    Ok(())
}

/// An `http(s)` URI's authority: present, no user information.
fn check_web_authority(uri: &str, rest: &str) -> Result<(), String> {
    let Some(after) = rest.strip_prefix("//") else {
        return Err(format!("{uri:?} has no host (expected scheme://host/...)"));
    };
    let authority = &after[..after.find(['/', '?']).unwrap_or(after.len())];
    if authority.is_empty() || authority.starts_with(':') {
        return Err(format!("{uri:?} has no host"));
    }
    if authority.contains('@') {
        return Err(format!("{uri:?} has user information (@) in its host"));
    }
    Ok(())
}

/// Checks an `http(s)` URL setting (`launch_url`, logout URIs).
fn check_web_url(url: &str) -> Result<(), String> {
    check_redirect_uri(url)?;
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(format!("{url:?} must be an http:// or https:// URL"));
    }
    Ok(())
}

/// An `http(s)` URL's scheme, host and port, each as written (`None` for
/// anything else); the port is `None` when none is written.
fn web_parts(url: &str) -> Option<(&str, &str, Option<&str>)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let port = authority[end + 1..].strip_prefix(':');
        if !(authority[end + 1..].is_empty() || port.is_some()) {
            return None;
        }
        return Some((scheme, &authority[..=end], port));
    }
    Some(match authority.split_once(':') {
        Some((host, port)) => (scheme, host, Some(port)),
        None => (scheme, authority, None),
    })
}

/// The origin of an `http(s)` URL (`https://app.lan`,
/// `http://127.0.0.1:8080`), lower-cased, its default port left out: the
/// source a `Content-Security-Policy` names to let a page frame it.
/// `None` for a URL a policy cannot name exactly (see
/// [`check_logout_uri`], which lets no other through).
pub fn web_origin(url: &str) -> Option<String> {
    let (scheme, host, port) = web_parts(url)?;
    let scheme = scheme.to_ascii_lowercase();
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !host_ok {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))?;
            let default = if scheme == "https" { 443 } else { 80 };
            (n != default).then_some(n)
        }
    };
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Whether `host` (as a URL writes it) is this machine.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks a front- or back-channel logout URI: an absolute `https` URL, or
/// `http` only to this machine (loopback) or to a host the client's own
/// redirect URIs reach over `http` (an app served without TLS anyway).
/// A logout token sent, or a frame loaded, over plain HTTP to anywhere
/// else could be read or answered by whoever is on the way. The host must
/// be a name or an IPv4 address (letters, digits, `-`, `.`): the
/// signed-out page's `Content-Security-Policy` names the origin, and a
/// policy can name no other (no IPv6 literal, nothing that would end the
/// directive).
///
/// # Errors
///
/// What is wrong, as a sentence.
pub fn check_logout_uri(uri: &str, redirect_uris: &[String]) -> Result<(), String> {
    check_web_url(uri)?;
    let Some((scheme, host, _)) = web_parts(uri) else {
        return Err(format!("{uri:?} must be an http:// or https:// URL"));
    };
    if web_origin(uri).is_none() {
        return Err(format!(
            "{uri:?}: the host must be a name or an IPv4 address (letters, digits, '-', '.') \
             with a port of 1 to 65535, so the signed-out page's Content-Security-Policy \
             can name it"
        ));
    }
    if scheme.eq_ignore_ascii_case("http") && !is_loopback_host(host) {
        let same_host_http = redirect_uris.iter().any(|r| {
            web_parts(r).is_some_and(|(s, h, _)| {
                s.eq_ignore_ascii_case("http") && h.eq_ignore_ascii_case(host)
            })
        });
        if !same_host_http {
            return Err(format!(
                "{uri:?} must use https:// (http:// only to this machine, or to a host the \
                 client's redirect_uris reach over http:// too)"
            ));
        }
    }
    Ok(())
}

fn check_claim_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(format!(
            "{name:?} must be 1-64 letters, digits, '_', '-', '.' or ':'"
        ));
    }
    if RESERVED_CLAIMS.contains(&name) {
        return Err(format!("{name:?} is a claim gatehouse sets itself"));
    }
    Ok(())
}

/// A fixed claim value: a string, number, boolean, or list of them.
fn check_claim_value(v: &Value) -> Result<(), String> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
        Value::Array(items) if items.iter().all(|i| check_claim_value(i).is_ok()) => Ok(()),
        other => Err(format!(
            "{other} is not a string, number, boolean or list of them"
        )),
    }
}

impl ClientSpec {
    /// The settings of a client an administrator made (kept in the
    /// database, see `registry.rs`), as the file would give them: its
    /// secret in the `sha256:<hex>` form, so it is checked exactly as a
    /// configured client's hashed secret is, and [`build`](Self::build)
    /// validates it by the same rules.
    pub(super) fn from_row(row: &ClientRow) -> Self {
        let hex = |h: &[u8; 32]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
        Self {
            id: row.id.clone(),
            secret: row
                .secret_hash
                .as_ref()
                .map(|h| format!("sha256:{}", hex(h))),
            redirect_uris: row.redirect_uris.clone(),
            name: Some(row.name.clone()),
            groups: row.groups.clone(),
            two_factor: row.two_factor,
            // A public client always needs PKCE: leave it to the default.
            pkce: (row.secret_hash.is_some()).then(|| {
                if row.pkce_required {
                    "required".to_owned()
                } else {
                    "optional".to_owned()
                }
            }),
            signing_alg: Some(row.signing_alg.clone()),
            claims_in_id_token: Some(row.claims_in_id_token),
            offline_access: row.offline_access,
            device_grant: row.device_grant,
            claims: ClaimSpecs::default(),
            launch_url: row.launch_url.clone(),
            frontchannel_logout_uri: row.frontchannel_logout_uri.clone(),
            frontchannel_logout_session_required: Some(row.frontchannel_logout_session_required),
            backchannel_logout_uri: row.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: Some(row.backchannel_logout_session_required),
            post_logout_redirect_uris: row.post_logout_redirect_uris.clone(),
        }
    }

    /// Validates into a [`Client`].
    ///
    /// # Errors
    ///
    /// The first bad field, naming it.
    pub fn build(&self) -> Result<Client, ClientError> {
        let err = |field: &'static str, reason: String| ClientError {
            client: self.id.clone(),
            field,
            reason,
        };
        if self.id.is_empty() || self.id.len() > 255 || has_control(&self.id) {
            return Err(err(
                "id",
                "must be 1 to 255 characters, without control characters".into(),
            ));
        }
        let name = self.name.clone().unwrap_or_else(|| self.id.clone());
        if name.is_empty() || name.chars().count() > 100 || has_control(&name) {
            return Err(err(
                "name",
                "must be 1 to 100 characters, without control characters".into(),
            ));
        }
        let secret = match &self.secret {
            None => None,
            Some(s) => Some(secret_hash(s).map_err(|r| err("secret", r))?),
        };
        if self.redirect_uris.is_empty() {
            return Err(err(
                "redirect_uris",
                "must list at least one URI the app is sent back to".into(),
            ));
        }
        for uri in &self.redirect_uris {
            check_redirect_uri(uri).map_err(|r| err("redirect_uris", r))?;
        }
        for uri in &self.post_logout_redirect_uris {
            check_redirect_uri(uri).map_err(|r| err("post_logout_redirect_uris", r))?;
        }
        for g in &self.groups {
            if g.is_empty() || g.len() > 64 || has_control(g) {
                return Err(err(
                    "groups",
                    format!("{g:?} must be 1-64 characters, without control characters"),
                ));
            }
        }
        let pkce = match (self.pkce.as_deref(), secret.is_none()) {
            (None | Some("required"), true) | (Some("required"), false) => Pkce::Required,
            (None | Some("optional"), false) => Pkce::Optional,
            (Some("optional"), true) => {
                return Err(err(
                    "pkce",
                    "a public client (no secret) always needs PKCE; remove `pkce` or give a secret"
                        .into(),
                ));
            }
            (Some(other), _) => {
                return Err(err(
                    "pkce",
                    format!("{other:?} is not \"required\" or \"optional\""),
                ));
            }
        };
        let signing_alg = match self.signing_alg.as_deref() {
            None => Alg::Rs256,
            Some(s) => Alg::parse(s).ok_or_else(|| {
                err(
                    "signing_alg",
                    format!("{s:?} is not \"RS256\", \"ES256\" or \"EdDSA\""),
                )
            })?,
        };
        let mut claims = Vec::new();
        for (claim, spec) in &self.claims.0 {
            let bad = |r: String| err("claims", format!("{claim}: {r}"));
            check_claim_name(claim).map_err(bad)?;
            claims.push((claim.clone(), extra_claim(spec).map_err(bad)?));
        }
        if let Some(url) = &self.launch_url {
            check_web_url(url).map_err(|r| err("launch_url", r))?;
        }
        for (field, url) in [
            ("frontchannel_logout_uri", &self.frontchannel_logout_uri),
            ("backchannel_logout_uri", &self.backchannel_logout_uri),
        ] {
            if let Some(url) = url {
                check_logout_uri(url, &self.redirect_uris).map_err(|r| err(field, r))?;
            }
        }
        Ok(Client {
            id: self.id.clone(),
            name,
            secret,
            redirect_uris: self.redirect_uris.clone(),
            groups: self.groups.clone(),
            two_factor: self.two_factor,
            pkce,
            signing_alg,
            claims_in_id_token: self.claims_in_id_token.unwrap_or(true),
            offline_access: self.offline_access,
            device_grant: self.device_grant,
            claims,
            launch_url: self.launch_url.clone(),
            frontchannel_logout_uri: self.frontchannel_logout_uri.clone(),
            frontchannel_logout_session_required: self
                .frontchannel_logout_session_required
                .unwrap_or(true),
            backchannel_logout_uri: self.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: self
                .backchannel_logout_session_required
                .unwrap_or(true),
            post_logout_redirect_uris: self.post_logout_redirect_uris.clone(),
        })
    }
}

fn extra_claim(spec: &ClaimSpec) -> Result<ExtraClaim, String> {
    match spec {
        ClaimSpec::Fixed(v) => {
            check_claim_value(v)?;
            Ok(ExtraClaim::Fixed(v.clone()))
        }
        ClaimSpec::Table(rest, from_groups) => {
            let Some(map) = from_groups else {
                return Err(
                    "a table must be { from_groups = { group = value, ... }, default = value }"
                        .into(),
                );
            };
            let mut default = None;
            for (key, v) in rest {
                if key != "default" {
                    return Err(format!(
                        "unknown key {key:?} (only from_groups and default)"
                    ));
                }
                check_claim_value(v)?;
                default = Some(v.clone());
            }
            if map.is_empty() {
                return Err("from_groups is empty".into());
            }
            for (group, v) in map {
                if group.is_empty() || has_control(group) {
                    return Err(format!("{group:?} is not a group name"));
                }
                check_claim_value(v)?;
            }
            Ok(ExtraClaim::FromGroups {
                map: map.clone(),
                default,
            })
        }
    }
}

/// How a `secret` setting is kept: its SHA-256 (a secret written as is,
/// or `sha256:<64 hex digits>`), or a bcrypt hash as given.
fn secret_hash(s: &str) -> Result<SecretHash, String> {
    if let Some(hex) = s.strip_prefix("sha256:") {
        let bytes = decode_hex(hex).ok_or_else(|| {
            "sha256: must be followed by 64 hex digits (`printf %s SECRET | sha256sum`)".to_owned()
        })?;
        return Ok(SecretHash::Sha256(bytes));
    }
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| s.starts_with(p)) {
        // A malformed hash would refuse every secret in silence; find out now.
        if s.len() != 60 || bcrypt::verify("probe", s).is_err() {
            return Err("is not a valid bcrypt hash ($2b$NN$ and 53 characters)".into());
        }
        return Ok(SecretHash::Bcrypt {
            hash: s.to_owned(),
            accepted: Arc::default(),
        });
    }
    if s.starts_with('$') {
        return Err("only bcrypt hashes ($2a$, $2b$, $2y$) and sha256:<hex> are understood".into());
    }
    if s.len() < MIN_SECRET_LEN {
        return Err(format!(
            "must be at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 32`)"
        ));
    }
    Ok(SecretHash::Sha256(Sha256::digest(s.as_bytes()).into()))
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> ClientSpec {
        #[derive(Deserialize)]
        struct File {
            clients: Vec<ClientSpec>,
        }
        let file: File = toml::from_str(toml_text).expect("valid TOML");
        file.clients.into_iter().next().expect("one client")
    }

    fn build(toml_text: &str) -> Result<Client, ClientError> {
        spec(toml_text).build()
    }

    const SECRET: &str = "a-long-random-client-secret-0123456789";

    fn grafana() -> Client {
        build(&format!(
            r#"
[[clients]]
id = "grafana"
secret = "{SECRET}"
redirect_uris = ["https://grafana.lan/login/generic_oauth", "http://127.0.0.1/cb", "http://[::1]:8080/cb?x=1"]
groups = ["admins", "ops"]
[clients.claims]
role = {{ from_groups = {{ ops = "Editor", admins = "Admin" }}, default = "Viewer" }}
tenant = "lan"
"#
        ))
        .expect("valid")
    }

    #[test]
    fn a_full_client_is_read_with_its_defaults() {
        let c = grafana();
        assert_eq!(c.name, "grafana");
        assert!(!c.is_public());
        assert_eq!(c.pkce, Pkce::Optional);
        assert!(!c.pkce_required());
        assert_eq!(c.signing_alg, Alg::Rs256);
        assert!(c.claims_in_id_token);
        assert!(!c.offline_access && !c.device_grant && !c.two_factor);
        // The order written, not alphabetical: ops before admins.
        assert_eq!(
            c.extra_claims(&["admins".into(), "ops".into()]),
            [
                ("role".to_owned(), Value::from("Editor")),
                ("tenant".to_owned(), Value::from("lan"))
            ]
        );
        assert_eq!(
            c.extra_claims(&["ADMINS".into()])[0].1,
            Value::from("Admin")
        );
        assert_eq!(c.extra_claims(&[])[0].1, Value::from("Viewer"));
    }

    #[test]
    fn the_secret_is_kept_hashed_and_checked_exactly() {
        let c = grafana();
        assert!(c.verify_secret(SECRET));
        assert!(!c.verify_secret(""));
        assert!(!c.verify_secret(&SECRET[..SECRET.len() - 1]));
        assert!(!c.verify_secret(&format!("{SECRET}x")));
        let shown = format!(
            "{c:?} {:?}",
            spec(&format!(
                "[[clients]]\nid = \"a\"\nsecret = \"{SECRET}\"\nredirect_uris = [\"https://a/\"]\n"
            ))
        );
        assert!(!shown.contains(SECRET), "{shown}");
        let hex: String = Sha256::digest(SECRET.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let hashed = build(&format!(
            "[[clients]]\nid = \"a\"\nsecret = \"sha256:{hex}\"\nredirect_uris = [\"https://a/\"]\n"
        ))
        .expect("a sha256 secret");
        assert!(hashed.verify_secret(SECRET));
        assert!(
            !hashed.verify_secret(&format!("sha256:{hex}")),
            "the hash is not the secret"
        );
        assert!(!shown.contains(&hex), "{shown}");
    }

    #[test]
    fn a_bcrypt_hash_is_accepted_in_place_of_the_secret() {
        let hash = bcrypt::hash(SECRET, 4).expect("hash");
        let c = build(&format!(
            "[[clients]]\nid = \"a\"\nsecret = \"{hash}\"\nredirect_uris = [\"https://a/\"]\n"
        ))
        .expect("bcrypt");
        assert!(!c.verify_secret("wrong-but-long-enough-secret-000000"));
        assert!(c.verify_secret(SECRET));
        assert!(c.verify_secret(SECRET), "the remembered digest");
        assert!(!c.verify_secret("wrong-but-long-enough-secret-000000"));
        assert!(!c.verify_secret(&hash), "the hash is not the secret");
        // Past bcrypt's 72 bytes a secret would match on its head alone.
        let long = "x".repeat(72);
        let c = build(&format!(
            "[[clients]]\nid = \"a\"\nsecret = \"{}\"\nredirect_uris = [\"https://a/\"]\n",
            bcrypt::hash(&long, 4).expect("hash")
        ))
        .expect("bcrypt");
        assert!(c.verify_secret(&long));
        assert!(!c.verify_secret(&format!("{long}tail")));
    }

    #[test]
    fn bad_secrets_are_refused_naming_the_client_and_field() {
        for (secret, says) in [
            ("short", "at least 24"),
            ("sha256:abcd", "64 hex"),
            (&format!("sha256:{}", "zz".repeat(32)), "64 hex"),
            ("$2b$04$notahash", "bcrypt"),
            (
                "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
                "only bcrypt",
            ),
        ] {
            let e = build(&format!(
                "[[clients]]\nid = \"app\"\nsecret = \"{secret}\"\nredirect_uris = [\"https://a/\"]\n"
            ))
            .expect_err(secret);
            assert_eq!((e.client.as_str(), e.field), ("app", "secret"), "{secret}");
            assert!(e.reason.contains(says), "{secret}: {e}");
            assert!(!e.to_string().contains(secret) || secret.len() < 24, "{e}");
        }
    }

    #[test]
    fn redirect_uris_match_exactly_and_loopback_ones_on_any_port() {
        let c = grafana();
        let ok = |u: &str| c.redirect_uri(u).is_some();
        assert!(ok("https://grafana.lan/login/generic_oauth"));
        for attack in [
            "https://grafana.lan/login/generic_oauth/../../evil",
            "https://grafana.lan/login/generic_oauth?x=1",
            "https://grafana.lan/login/generic_oauth/",
            "https://grafana.lan/login/generic_oaut",
            "https://grafana.lan/login/generic_oauth#frag",
            "https://GRAFANA.lan/login/generic_oauth",
            "https://grafana.lan.evil.com/login/generic_oauth",
            "https://grafana.lan/login/generic_oauth%2F..",
            "http://grafana.lan/login/generic_oauth",
            "https://grafana.lan:443/login/generic_oauth",
            "",
        ] {
            assert!(!ok(attack), "{attack}");
        }
        assert!(ok("http://127.0.0.1/cb"));
        assert!(ok("http://127.0.0.1:51234/cb"));
        assert!(ok("http://[::1]/cb?x=1"));
        assert!(ok("http://[::1]:1/cb?x=1"));
        for attack in [
            "http://127.0.0.1:51234/cb/x",
            "http://127.0.0.1:51234/c",
            "http://127.0.0.1:0/cb",
            "http://127.0.0.1:99999/cb",
            "http://127.0.0.1:/cb",
            "http://127.0.0.1:80@evil.com/cb",
            "http://127.0.0.1.evil.com/cb",
            "http://127.0.0.1:8080:9090/cb",
            "http://localhost:8080/cb",
            "https://127.0.0.1:8080/cb",
            "http://[::1]:8080/cb",
            "http://127.0.0.1:8080/cb?x=1",
            "http://127.0.0.2:8080/cb",
        ] {
            assert!(!ok(attack), "{attack}");
        }
    }

    #[test]
    fn custom_schemes_are_allowed_and_dangerous_ones_refused() {
        let c = build(
            "[[clients]]\nid = \"immich\"\nredirect_uris = [\"app.immich:///oauth-callback\", \"https://photos.lan/auth/login\"]\n",
        )
        .expect("valid");
        assert!(c.is_public());
        assert_eq!(c.pkce, Pkce::Required);
        assert!(c.redirect_uri("app.immich:///oauth-callback").is_some());
        assert!(c.redirect_uri("app.immich:///oauth-callback/").is_none());
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,x",
            "https://a/#x",
            "https://*.lan/cb",
            "/relative/cb",
            "https:///nohost",
            "https://user@host/cb",
            "https://host/a b",
            "https://host/\ncb",
            "https://app.test/\u{e9}",
            "https://b\u{fc}cher.lan/cb",
            "1app:/cb",
            "app:",
        ] {
            let e = build(&format!(
                "[[clients]]\nid = \"x\"\nredirect_uris = [{bad:?}]\n"
            ))
            .expect_err(bad);
            assert_eq!(e.field, "redirect_uris", "{bad}");
        }
        let e = build("[[clients]]\nid = \"x\"\n").expect_err("none");
        assert_eq!(e.field, "redirect_uris");
    }

    #[test]
    fn every_field_is_validated_and_named() {
        let base = "[[clients]]\nid = \"x\"\nredirect_uris = [\"https://a/\"]\n";
        for (extra, field) in [
            ("pkce = \"optional\"\n", "pkce"),
            ("pkce = \"sometimes\"\n", "pkce"),
            ("signing_alg = \"HS256\"\n", "signing_alg"),
            ("signing_alg = \"rs256\"\n", "signing_alg"),
            ("groups = [\"\"]\n", "groups"),
            ("name = \"a\\nb\"\n", "name"),
            ("launch_url = \"ftp://a/\"\n", "launch_url"),
            (
                "frontchannel_logout_uri = \"app:/x\"\n",
                "frontchannel_logout_uri",
            ),
            (
                "backchannel_logout_uri = \"javascript:x\"\n",
                "backchannel_logout_uri",
            ),
            (
                "post_logout_redirect_uris = [\"https://a/#x\"]\n",
                "post_logout_redirect_uris",
            ),
            ("[clients.claims]\nsub = \"admin\"\n", "claims"),
            ("[clients.claims]\nemail = \"boss@lan\"\n", "claims"),
            ("[clients.claims]\n\"bad name\" = \"x\"\n", "claims"),
            (
                "[clients.claims]\nrole = { from_group = { a = \"b\" } }\n",
                "claims",
            ),
            (
                "[clients.claims]\nrole = { from_groups = { a = \"b\" }, defualt = \"c\" }\n",
                "claims",
            ),
            ("[clients.claims]\nrole = { from_groups = {} }\n", "claims"),
            (
                "[clients.claims]\nrole = { from_groups = { a = { b = 1 } } }\n",
                "claims",
            ),
        ] {
            let e = build(&format!("{base}{extra}")).expect_err(extra);
            assert_eq!((e.client.as_str(), e.field), ("x", field), "{extra}: {e}");
        }
        let e =
            build("[[clients]]\nid = \"\"\nredirect_uris = [\"https://a/\"]\n").expect_err("id");
        assert_eq!(e.field, "id");
        let confidential = build(&format!(
            "{base}secret = \"{SECRET}\"\npkce = \"required\"\nsigning_alg = \"EdDSA\"\nclaims_in_id_token = false\noffline_access = true\ndevice_grant = true\ntwo_factor = true\n"
        ))
        .expect("valid");
        assert!(confidential.pkce_required());
        assert_eq!(confidential.signing_alg, Alg::EdDsa);
        assert!(!confidential.claims_in_id_token);
        assert!(
            confidential.offline_access && confidential.device_grant && confidential.two_factor
        );
        let unknown: Result<ClientSpec, _> =
            toml::from_str::<toml::Table>(&format!("{base}scope = \"x\"\n"))
                .expect("toml")
                .get("clients")
                .and_then(|c| c.as_array())
                .and_then(|a| a.first())
                .cloned()
                .expect("a client")
                .try_into();
        assert!(unknown.is_err(), "unknown fields are refused");
    }

    #[test]
    fn logout_uris_are_https_or_http_only_to_loopback_or_an_http_redirect_host() {
        let https = vec!["https://app.lan/cb".to_owned()];
        let http = vec!["http://app.lan:8080/cb".to_owned()];
        for ok in [
            ("https://app.lan/logout?x=1", &https),
            ("https://APP.lan:8443/logout", &https),
            ("http://127.0.0.1:9000/logout", &https),
            ("http://127.1.2.3/logout", &https),
            ("http://localhost:9000/logout", &https),
            ("http://app.lan/logout", &http),
            ("http://App.Lan:9999/logout", &http),
        ] {
            assert_eq!(check_logout_uri(ok.0, ok.1), Ok(()), "{}", ok.0);
        }
        for bad in [
            ("http://app.lan/logout", &https),
            ("http://other.lan/logout", &http),
            ("http://127.0.0.1.evil.lan/logout", &https),
            ("http://[::1]:9000/logout", &https),
            ("https://[2001:db8::1]/logout", &https),
            ("https://app_1.lan/logout", &https),
            ("https://app.lan:0/logout", &https),
            ("https://app.lan:65536/logout", &https),
            ("https://app.lan:+443/logout", &https),
            ("https://app.lan;frame-src*/logout", &https),
            ("https://app.lan /logout", &https),
            ("https://app.lan/logout#x", &https),
            ("https://user@app.lan/logout", &https),
            ("app.lan/logout", &https),
            ("ftp://app.lan/logout", &https),
            ("javascript:alert(1)", &https),
            ("", &https),
        ] {
            assert!(check_logout_uri(bad.0, bad.1).is_err(), "{}", bad.0);
        }
    }

    #[test]
    fn a_logout_uris_origin_is_what_a_content_security_policy_names() {
        for (uri, origin) in [
            ("https://App.LAN/logout?x=1", "https://app.lan"),
            ("https://app.lan:443/logout", "https://app.lan"),
            ("https://app.lan:8443", "https://app.lan:8443"),
            ("http://127.0.0.1:80/x", "http://127.0.0.1"),
            ("HTTP://127.0.0.1:9000?x", "http://127.0.0.1:9000"),
        ] {
            assert_eq!(web_origin(uri).as_deref(), Some(origin), "{uri}");
        }
        for uri in [
            "https://[::1]/x",
            "https://a b/x",
            "https://a.lan:x/",
            "app://a/x",
        ] {
            assert_eq!(web_origin(uri), None, "{uri}");
        }
    }

    #[test]
    fn the_logout_session_flags_default_to_true() {
        let base = "[[clients]]\nid = \"x\"\nredirect_uris = [\"https://a/\"]\n";
        let c = build(base).expect("valid");
        assert!(c.frontchannel_logout_session_required);
        assert!(c.backchannel_logout_session_required);
        let c = build(&format!(
            "{base}frontchannel_logout_uri = \"https://a/fc\"\nfrontchannel_logout_session_required = false\nbackchannel_logout_uri = \"https://a/bc\"\nbackchannel_logout_session_required = false\n"
        ))
        .expect("valid");
        assert!(!c.frontchannel_logout_session_required);
        assert!(!c.backchannel_logout_session_required);
        assert_eq!(c.backchannel_logout_uri.as_deref(), Some("https://a/bc"));
    }

    #[test]
    fn ids_are_unique_and_found_exactly() {
        let a = grafana();
        let e = Clients::new(vec![a.clone(), a.clone()]).expect_err("twice");
        assert_eq!((e.client.as_str(), e.field), ("grafana", "id"));
        let clients = Clients::new(vec![a]).expect("one");
        assert!(clients.find("grafana").is_some());
        assert!(clients.find("Grafana").is_none());
        assert!(clients.find("grafana ").is_none());
    }

    #[test]
    fn only_members_of_the_groups_may_use_a_limited_client() {
        use crate::auth::access::{Decision, client_decision};
        let c = grafana();
        let allows = |c: &Client, groups: &[String]| {
            client_decision(&c.groups, false, groups, &[]) == Decision::Allow
        };
        assert!(allows(&c, &["ops".into()]));
        assert!(allows(&c, &["staff".into(), "Admins".into()]));
        assert!(!allows(&c, &[]));
        assert!(!allows(&c, &["opsx".into(), "admin".into()]));
        let open =
            build("[[clients]]\nid = \"x\"\nredirect_uris = [\"https://a/\"]\n").expect("ok");
        assert!(allows(&open, &[]));
    }
}
