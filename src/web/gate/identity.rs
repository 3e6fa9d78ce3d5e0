//! The identity headers gatehouse vouches for, built in one place for
//! forward auth's answer and the built-in proxy's request alike:
//! `Remote-User`, `Remote-Name`, `Remote-Groups`, `Remote-Auth-Methods`,
//! and the optional `X-Gatehouse-Identity`, signed with an app's key so an
//! upstream can tell a forged identity from a real one. Also which client
//! headers count as identity headers (a client's copies never pass).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::auth::apps::App;
use crate::identity::Principal;

/// The names of the identity headers, in the order [`headers`] gives them.
pub(super) const NAMES: [&str; 4] = [
    "Remote-User",
    "Remote-Name",
    "Remote-Groups",
    "Remote-Auth-Methods",
];

/// The identity headers for `who`, as forward auth answers them and the
/// proxy sends them on (names as sent; values never hold a line break: a
/// username or group name has none).
#[inline]
pub(super) fn headers(who: &Principal) -> [(&'static str, String); 4] {
    let [user, name, groups, methods] = NAMES;
    [
        (user, who.user.username.clone()),
        (name, who.user.username.clone()),
        (groups, who.groups.join(",")),
        (methods, who.methods()),
    ]
}

/// The signed identity header for `who` at `app`, when the app has a key.
pub(super) fn signed(app: &App, who: &Principal) -> Option<String> {
    let key = app.identity_key.as_ref()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Some(identity_header(
        key,
        &app.name,
        &who.user.username,
        &who.groups.join(","),
        now,
    ))
}

/// A header name in the one form every comparison uses: lower case, with
/// `_` read as `-`. Many upstreams (CGI, WSGI, PHP, Rack) fold both into
/// `HTTP_REMOTE_USER`, so `Remote_User` is `Remote-User` to them.
pub(super) fn canonical(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                char::from(b.to_ascii_lowercase())
            }
        })
        .collect()
}

/// Identity headers only gatehouse may set: a client's copies are dropped.
/// `name` is in [`canonical`] form.
pub(super) fn is_identity_header(name: &str) -> bool {
    name.starts_with("remote-")
        || name.starts_with("x-forwarded-")
        || name == "forwarded"
        || name == "x-real-ip"
        || name == "x-gatehouse-identity"
}

/// The signed identity header:
/// `v2;app=..;user=..;groups=..;ts=..;sig=..`, the signature an HMAC-SHA256
/// with the app's key over everything before `;sig=`. The app's name is in
/// what is signed, so apps that share a key cannot replay one another's
/// headers (a header issued for `wiki` is no good at `books`).
pub fn identity_header(key: &[u8], app: &str, user: &str, groups: &str, unix_secs: u64) -> String {
    let payload = format!("v2;app={app};user={user};groups={groups};ts={unix_secs}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{payload};sig={sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_header_is_signed_over_its_fields_and_names_its_app() {
        let key = b"an identity key that is long enough";
        let h = identity_header(key, "wiki", "alice", "admins", 1_800_000_000);
        let (payload, sig) = h.split_once(";sig=").expect("sig");
        assert_eq!(
            payload,
            "v2;app=wiki;user=alice;groups=admins;ts=1800000000"
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
        mac.update(payload.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).expect("b64"))
            .expect("valid signature");
        assert_ne!(
            identity_header(key, "wiki", "mallory", "admins", 1_800_000_000),
            h
        );
        let other_app = identity_header(key, "books", "alice", "admins", 1_800_000_000);
        assert_ne!(
            other_app.split_once(";sig=").map(|(_, s)| s),
            Some(sig),
            "the same user at another app gets another signature"
        );
    }
}
