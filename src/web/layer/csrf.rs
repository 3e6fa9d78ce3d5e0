//! CSRF tokens for the forms a [`SessionLayer`] app renders: the same
//! signed double-submit cookie gatehouse's own sign-in page uses
//! (`auth::csrf` holds the rules; this is its rouille face).
//!
//! A cross-site page can make a visitor's browser POST to your app, with
//! the visitor's cookies, but it cannot read your page or your cookies.
//! So every form carries a token that only your page knows: the layer sets
//! a random token, signed with the layer's secret, in a cookie
//! (`gatehouse_csrf`, host-only, `HttpOnly`, `SameSite=Strict`), writes the
//! same token into the form, and a POST is accepted only when the field
//! repeats the cookie's token. The signature means a token counts only if
//! this app (under its secrets) issued it: a cookie made up elsewhere is no
//! token.
//!
//! **Limit**: whoever can set cookies for your host (a sibling subdomain
//! with `Domain=` cookies, or anyone on the path of plain-HTTP traffic) can
//! plant a pair your app issued to them, and then knows the token. Serve
//! the app over HTTPS only, on a host whose siblings you trust.
//!
//! It needs no session, so an anonymous login form creates no session row
//! (the lazy sessions stay lazy), and it works with every store, the
//! cookie store included.
//!
//! ```
//! use gatehouse::{MemoryStore, SessionLayer, csrf};
//! use rouille::{Request, Response};
//!
//! let sessions = SessionLayer::new(MemoryStore::new(), b"a secret of at least 32 bytes!!!".to_vec());
//!
//! // GET: put the token in the form, and its cookie on the response.
//! let get = Request::fake_http("GET", "/login", vec![], vec![]);
//! let token = sessions.csrf_token(&get);
//! let page = token.attach(Response::html(format!(
//!     r#"<form method="post" action="/login">{}<button>Sign in</button></form>"#,
//!     token.hidden_input()
//! )));
//! let set_cookie = page.headers.iter().find(|(k, _)| k == "Set-Cookie").expect("a token cookie").1.to_string();
//! assert!(set_cookie.starts_with("gatehouse_csrf=") && set_cookie.contains("SameSite=Strict"));
//!
//! // POST: the browser sends the cookie back, the form repeats the token.
//! let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
//! let post = Request::fake_http("POST", "/login", vec![("Cookie".into(), cookie)], vec![]);
//! assert!(sessions.csrf_ok(&post, Some(token.value())));
//! assert!(!sessions.csrf_ok(&post, None), "no token");
//! assert!(!sessions.csrf_ok(&post, Some("guessed")), "a wrong token");
//! assert_eq!(csrf::FIELD, "csrf");
//! ```

use rouille::{Request, Response};

use super::SessionLayer;
use crate::auth::csrf as rules;

/// The form field that carries the token (`csrf`);
/// [`CsrfToken::hidden_input`] names it so.
pub const FIELD: &str = rules::FIELD;

/// The cookie that holds the signed token (`gatehouse_csrf`).
pub const COOKIE: &str = rules::COOKIE;

/// A token for the forms of one response, from
/// [`SessionLayer::csrf_token`].
///
/// Put [`hidden_input`](Self::hidden_input) (or [`value`](Self::value) in a
/// field named [`FIELD`]) in each form, and pass the response through
/// [`attach`](Self::attach) so a browser without the cookie gets it.
#[derive(Debug, Clone)]
pub struct CsrfToken {
    value: String,
    set_cookie: Option<String>,
}

impl CsrfToken {
    /// The token (43 URL-safe characters: nothing in it needs escaping in
    /// HTML or in a form body).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// `<input type="hidden" name="csrf" value="...">`, for a form.
    pub fn hidden_input(&self) -> String {
        format!(
            r#"<input type="hidden" name="{FIELD}" value="{}">"#,
            self.value
        )
    }

    /// `response` with the token's `Set-Cookie` header when the browser
    /// did not have a valid token cookie yet (otherwise unchanged: the
    /// browser's token is reused, so several open tabs all stay valid).
    pub fn attach(&self, response: Response) -> Response {
        match &self.set_cookie {
            Some(cookie) => response.with_additional_header("Set-Cookie", cookie.clone()),
            None => response,
        }
    }
}

impl SessionLayer {
    /// The CSRF token for the forms of the answer to `request`: the one in
    /// the browser's valid token cookie, or a new one (which
    /// [`CsrfToken::attach`] then sets). The cookie is `Secure` under the
    /// same rule as the session cookie (see [`https`](Self::https)).
    pub fn csrf_token(&self, request: &Request) -> CsrfToken {
        let signer = self.engine.signer();
        let (value, cookie) = rules::anonymous_for(signer, request.header("Cookie"));
        let options = rules::cookie_options(&self.engine.options().cookie);
        CsrfToken {
            value,
            set_cookie: cookie.map(|c| options.set_cookie(&c, None, self.https_for(request))),
        }
    }

    /// Whether `submitted` (the form's [`FIELD`]) is the token of the
    /// request's token cookie; compared in constant time. Refuse the POST
    /// (`403`) when it is not: the form did not come from your page, or
    /// its page is older than the browser's cookies (cleared cookies,
    /// rotated secrets), and reloading the form fixes it.
    pub fn csrf_ok(&self, request: &Request, submitted: Option<&str>) -> bool {
        rules::check_anonymous_header(self.engine.signer(), request.header("Cookie"), submitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, SessionOptions};

    fn layer(options: SessionOptions) -> SessionLayer {
        SessionLayer::with_options(
            MemoryStore::new(),
            vec![b"a test secret that is long enough!!".to_vec()],
            options,
        )
    }

    fn set_cookie(response: &Response) -> Option<String> {
        response
            .headers
            .iter()
            .find(|(k, _)| k == "Set-Cookie")
            .map(|(_, v)| v.to_string())
    }

    fn with_cookie(cookie: &str) -> Request {
        Request::fake_http("POST", "/", vec![("Cookie".into(), cookie.into())], vec![])
    }

    #[test]
    fn a_new_browser_gets_a_strict_host_only_cookie_and_a_returning_one_keeps_its_token() {
        let sessions = layer(SessionOptions::default());
        let token = sessions.csrf_token(&Request::fake_http("GET", "/", vec![], vec![]));
        let cookie = set_cookie(&token.attach(Response::text(""))).expect("a cookie");
        let value = cookie.split(';').next().expect("pair").to_owned();
        assert_eq!(
            cookie,
            format!("{value}; Path=/; HttpOnly; SameSite=Strict")
        );
        let again = sessions.csrf_token(&with_cookie(&value));
        assert_eq!(again.value(), token.value());
        assert_eq!(set_cookie(&again.attach(Response::text(""))), None);
        assert_eq!(
            token.hidden_input(),
            format!(
                r#"<input type="hidden" name="csrf" value="{}">"#,
                token.value()
            )
        );
    }

    #[test]
    fn the_cookie_is_secure_when_the_layer_is_told_of_https_or_forced() {
        let get = Request::fake_http("GET", "/", vec![], vec![]);
        let https = layer(SessionOptions::default()).https(true);
        let mut forced = SessionOptions::default();
        forced.cookie.force_secure = true;
        for sessions in [https, layer(forced)] {
            let token = sessions.csrf_token(&get);
            let cookie = set_cookie(&token.attach(Response::text(""))).expect("a cookie");
            assert!(cookie.contains("; Secure"), "{cookie}");
        }
    }

    #[test]
    fn a_forged_missing_or_foreign_token_is_refused() {
        let sessions = layer(SessionOptions::default());
        let token = sessions.csrf_token(&Request::fake_http("GET", "/", vec![], vec![]));
        let cookie = set_cookie(&token.attach(Response::text(""))).expect("a cookie");
        let pair = cookie.split(';').next().expect("pair").to_owned();
        assert!(sessions.csrf_ok(&with_cookie(&pair), Some(token.value())));
        assert!(!sessions.csrf_ok(&with_cookie(&pair), None));
        assert!(!sessions.csrf_ok(&with_cookie(&pair), Some("")));
        assert!(!sessions.csrf_ok(&with_cookie("other=1"), Some(token.value())));
        // A planted, unsigned cookie cannot choose the token.
        assert!(!sessions.csrf_ok(&with_cookie("gatehouse_csrf=mine.forged"), Some("mine")));
        // Another app's secret signs tokens this one does not take.
        let other = SessionLayer::new(
            MemoryStore::new(),
            b"another secret, long enough too!!".to_vec(),
        );
        assert!(!other.csrf_ok(&with_cookie(&pair), Some(token.value())));
    }
}
