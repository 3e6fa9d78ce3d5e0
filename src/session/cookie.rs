//! Cookie headers: finding a cookie in a `Cookie` header and writing
//! `Set-Cookie` values with their attributes.
//!
//! Values are signed by [`crate::crypto::Signer`]
//! (`<payload>.<base64url HMAC-SHA256(secret, context | payload)>`).

/// The values of every cookie called `name` in a `Cookie` header, in order.
///
/// Malformed pairs are skipped. Browsers can send the same name twice (for
/// example one cookie for `/` and one for a sub-path), so callers try each.
#[inline]
pub fn find<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header.split(';').filter_map(move |pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The `SameSite` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on same-site requests and top-level navigations (the default).
    Lax,
    /// Sent on same-site requests only.
    Strict,
    /// Sent everywhere; browsers require `Secure` with it.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
            Self::None => "None",
        }
    }
}

/// Where and how a cookie is set.
#[derive(Clone, Debug)]
pub struct CookieOptions {
    /// Cookie name.
    pub name: String,
    /// `Domain` attribute; `None` makes a host-only cookie.
    pub domain: Option<String>,
    /// `Path` attribute.
    pub path: String,
    /// Always mark the cookie `Secure`, even on plain-HTTP requests.
    ///
    /// **Warning**: when `false`, the cookie is `Secure` only on requests
    /// known to be HTTPS; behind a TLS-terminating proxy that is not trusted,
    /// it then travels without `Secure`.
    pub force_secure: bool,
    /// `SameSite` attribute.
    pub same_site: SameSite,
}

impl Default for CookieOptions {
    fn default() -> Self {
        Self {
            name: "gatehouse_session".to_owned(),
            domain: None,
            path: "/".to_owned(),
            force_secure: false,
            same_site: SameSite::Lax,
        }
    }
}

impl CookieOptions {
    /// A `Set-Cookie` value. `max_age` in seconds makes a persistent cookie;
    /// `None` a browser-session cookie.
    pub fn set_cookie(&self, value: &str, max_age: Option<i64>, https: bool) -> String {
        let mut out = format!("{}={}; Path={}", self.name, value, self.path);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if let Some(age) = max_age {
            out.push_str(&format!("; Max-Age={}", age.max(0)));
        }
        out.push_str("; HttpOnly");
        if self.force_secure || https || self.same_site == SameSite::None {
            out.push_str("; Secure");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site.as_str());
        out
    }

    /// A `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self, https: bool) -> String {
        self.set_cookie("", Some(0), https)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_returns_every_cookie_of_that_name() {
        let h = "a=1; gatehouse_session=x; b=2;gatehouse_session=\"y\"; junk";
        let found: Vec<_> = find(h, "gatehouse_session").collect();
        assert_eq!(found, ["x", "y"]);
    }

    #[test]
    fn a_browser_session_cookie_has_every_attribute_but_max_age() {
        let c = CookieOptions::default().set_cookie("v", None, false);
        assert_eq!(c, "gatehouse_session=v; Path=/; HttpOnly; SameSite=Lax");
    }

    #[test]
    fn https_and_persistence_add_secure_and_max_age() {
        let opts = CookieOptions {
            domain: Some("example.lan".into()),
            ..CookieOptions::default()
        };
        assert_eq!(
            opts.set_cookie("v", Some(60), true),
            "gatehouse_session=v; Path=/; Domain=example.lan; Max-Age=60; HttpOnly; Secure; SameSite=Lax"
        );
    }

    proptest::proptest! {
        #[test]
        fn the_cookie_header_parser_never_panics(header in "\\PC{0,300}") {
            let _ = find(&header, "gatehouse_session").count();
        }
    }

    #[test]
    fn a_cleared_cookie_expires_now() {
        let c = CookieOptions::default().clear_cookie(false);
        assert!(c.starts_with("gatehouse_session=; "));
        assert!(c.contains("Max-Age=0"));
    }
}
