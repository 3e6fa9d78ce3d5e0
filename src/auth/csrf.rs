//! CSRF tokens.
//!
//! Two kinds, so that anonymous pages create no session rows:
//!
//! - **Anonymous forms** (login) use a signed double-submit cookie: the
//!   cookie holds a random token signed by the server, the form repeats the
//!   token, and a POST is accepted only when both agree. A cross-site page
//!   can make the browser send the cookie but cannot read it to fill in the
//!   form, and cannot plant its own (the signature would not verify).
//! - **Signed-in forms** use a token derived from the session key with an
//!   HMAC: nothing to store, and useless with any other session.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::crypto::{Signer, random_bytes};
use crate::session::SessionKey;
use crate::session::cookie::{self, CookieOptions, SameSite};

/// Name of the double-submit cookie.
pub const COOKIE: &str = "gatehouse_csrf";
/// Name of the form field that carries the token.
pub const FIELD: &str = "csrf";

const ANON_CONTEXT: &str = "csrf";
const SESSION_CONTEXT: &str = "csrf-session";

/// A new anonymous token and the signed cookie value that goes with it.
pub fn new_anonymous(signer: &Signer) -> (String, String) {
    let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let cookie = signer.sign(ANON_CONTEXT, &token);
    (token, cookie)
}

/// The token in a signed double-submit cookie value, if the signature holds.
pub fn anonymous_token<'a>(signer: &Signer, cookie_value: &'a str) -> Option<&'a str> {
    signer.verify(ANON_CONTEXT, cookie_value)
}

/// Whether a submitted anonymous token matches the signed cookie.
pub fn check_anonymous(
    signer: &Signer,
    cookie_value: Option<&str>,
    submitted: Option<&str>,
) -> bool {
    match (
        cookie_value.and_then(|c| anonymous_token(signer, c)),
        submitted,
    ) {
        (Some(expected), Some(got)) => bool::from(expected.as_bytes().ct_eq(got.as_bytes())),
        _ => false,
    }
}

/// Settings for the double-submit cookie, beside a session cookie set with
/// `session_cookie`: host-only and `SameSite=Strict` (a sibling host must not
/// receive it, and no cross-site request needs it), `Secure` whenever the
/// session cookie is forced to be.
pub fn cookie_options(session_cookie: &CookieOptions) -> CookieOptions {
    CookieOptions {
        name: COOKIE.to_owned(),
        domain: None,
        path: "/".to_owned(),
        force_secure: session_cookie.force_secure,
        same_site: SameSite::Strict,
    }
}

/// The anonymous token for a form shown to a browser that sent
/// `cookie_header`: the token of its valid double-submit cookie, or a new
/// token with the signed cookie value to set (`Some`).
pub fn anonymous_for(signer: &Signer, cookie_header: Option<&str>) -> (String, Option<String>) {
    let existing = cookie_header.and_then(|header| {
        cookie::find(header, COOKIE)
            .find_map(|v| anonymous_token(signer, v))
            .map(str::to_owned)
    });
    match existing {
        Some(token) => (token, None),
        None => {
            let (token, value) = new_anonymous(signer);
            (token, Some(value))
        }
    }
}

/// Whether `submitted` matches one of the double-submit cookies in
/// `cookie_header` (a browser may hold more than one with the same name,
/// set for different paths).
pub fn check_anonymous_header(
    signer: &Signer,
    cookie_header: Option<&str>,
    submitted: Option<&str>,
) -> bool {
    cookie_header.is_some_and(|header| {
        cookie::find(header, COOKIE).any(|v| check_anonymous(signer, Some(v), submitted))
    })
}

/// The token for forms shown within the session stored under `key`.
pub fn session_token(signer: &Signer, key: &SessionKey) -> String {
    let signed = signer.sign(SESSION_CONTEXT, &key.handle());
    signed
        .rsplit_once('.')
        .map(|(_, sig)| sig.to_owned())
        .expect("a signed value has a dot")
}

/// Whether `submitted` is the token of the session stored under `key`
/// (under any configured secret; constant-time).
pub fn check_session(signer: &Signer, key: &SessionKey, submitted: Option<&str>) -> bool {
    submitted.is_some_and(|t| {
        signer
            .verify(SESSION_CONTEXT, &format!("{}.{t}", key.handle()))
            .is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionId;

    fn signer() -> Signer {
        Signer::new(vec![b"a test secret that is long enough!!".to_vec()])
    }

    #[test]
    fn a_matching_double_submit_passes() {
        let s = signer();
        let (token, cookie) = new_anonymous(&s);
        assert!(check_anonymous(&s, Some(&cookie), Some(&token)));
    }

    #[test]
    fn a_missing_or_wrong_half_fails() {
        let s = signer();
        let (token, cookie) = new_anonymous(&s);
        let (other, _) = new_anonymous(&s);
        assert!(!check_anonymous(&s, None, Some(&token)));
        assert!(!check_anonymous(&s, Some(&cookie), None));
        assert!(!check_anonymous(&s, Some(&cookie), Some(&other)));
        // An attacker who plants an unsigned cookie cannot choose the token.
        assert!(!check_anonymous(
            &s,
            Some(&format!("{other}.forged")),
            Some(&other)
        ));
    }

    #[test]
    fn a_cookie_header_keeps_its_token_and_checks_against_any_of_its_cookies() {
        let s = signer();
        let (token, set) = anonymous_for(&s, None);
        let value = set.expect("a new browser gets a cookie");
        let header = format!("other=1; {COOKIE}=stale.bad; {COOKIE}={value}");
        let (again, none) = anonymous_for(&s, Some(&header));
        assert_eq!((again.as_str(), none), (token.as_str(), None));
        assert!(check_anonymous_header(&s, Some(&header), Some(&token)));
        assert!(!check_anonymous_header(&s, Some(&header), Some("stale")));
        assert!(!check_anonymous_header(&s, Some(&header), None));
        assert!(!check_anonymous_header(&s, None, Some(&token)));
        // A valid cookie from another secret is a new browser, not an error.
        let other = Signer::new(vec![b"another secret that is long enough!!".to_vec()]);
        assert!(anonymous_for(&other, Some(&header)).1.is_some());
    }

    #[test]
    fn a_session_token_works_only_for_its_session() {
        let s = signer();
        let mine = SessionId::generate().key();
        let theirs = SessionId::generate().key();
        let token = session_token(&s, &mine);
        assert!(check_session(&s, &mine, Some(&token)));
        assert!(!check_session(&s, &theirs, Some(&token)));
        assert!(!check_session(&s, &mine, None));
        assert!(!check_session(&s, &mine, Some("")));
    }
}
