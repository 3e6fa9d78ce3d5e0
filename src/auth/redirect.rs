//! Where a login may send the browser next.
//!
//! Only a path on this server is followed. Anything that a browser could
//! read as another host (`//evil`, `/\evil`, `https://evil`, their encoded
//! forms, or a path with control characters that some browsers strip) falls
//! back to `/`, so the login page cannot be used as an open redirect.

/// The longest `next` followed.
const MAX_LEN: usize = 2048;

/// `next` if it is a safe local path, else `None`.
pub fn local_path(next: &str) -> Option<&str> {
    // Not ASCII: no header can carry it (the answer would go without its
    // `Location`); a browser sends such a path percent-encoded.
    if next.is_empty() || next.len() > MAX_LEN || !next.starts_with('/') || !next.is_ascii() {
        return None;
    }
    if next
        .chars()
        .any(|c| c.is_control() || c == '\\' || c.is_whitespace())
    {
        return None;
    }
    if next.starts_with("//") {
        return None;
    }
    // A percent-encoded slash or backslash right after the first `/` may be
    // decoded by a proxy or framework before the browser sees it.
    let lower = next.to_ascii_lowercase();
    if lower.starts_with("/%2f") || lower.starts_with("/%5c") {
        return None;
    }
    // Encoded control characters and backslashes anywhere are refused too.
    if lower.contains("%5c")
        || (0..0x20).any(|b| lower.contains(&format!("%{b:02x}")))
        || lower.contains("%7f")
    {
        return None;
    }
    Some(next)
}

/// `next` if it is a safe local path, or an `http(s)` URL whose host (with
/// or without port) `allowed_host` accepts; otherwise `/`.
///
/// Absolute URLs are accepted only in their plain form: a scheme, `//`, a
/// host of letters, digits, `-`, `.` and an optional port, then a path.
/// User-info (`user@host`), backslashes and control characters are refused.
pub fn target(next: Option<&str>, allowed_host: impl Fn(&str) -> bool) -> &str {
    let Some(next) = next else { return "/" };
    if let Some(p) = local_path(next) {
        return p;
    }
    let Some((authority, _)) = split_absolute(next) else {
        return "/";
    };
    if next.len() > MAX_LEN
        || !next.is_ascii()
        || next
            .chars()
            .any(|c| c.is_control() || c == '\\' || c.is_whitespace())
    {
        return "/";
    }
    let plain = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    if !plain {
        return "/";
    }
    let host = authority.to_ascii_lowercase();
    let bare = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    if allowed_host(&host) || allowed_host(bare) {
        next
    } else {
        "/"
    }
}

/// An absolute `http(s)` URL as its authority and what follows it (from
/// the first `/`, `?` or `#` on; empty when nothing does); `None` for
/// anything else.
pub fn split_absolute(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(rest.split_at(end))
}

/// `next` if safe, otherwise `/`.
pub fn or_root(next: Option<&str>) -> &str {
    next.and_then(local_path).unwrap_or("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn local_paths_are_followed() {
        for ok in [
            "/",
            "/apps/wiki/",
            "/a?b=c&d=https://x",
            "/x#frag",
            "/%20space",
        ] {
            assert_eq!(local_path(ok), Some(ok), "{ok:?}");
        }
    }

    #[test]
    fn anything_that_could_leave_the_host_is_refused() {
        for bad in [
            "",
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "/%2fevil.example",
            "/%2Fevil.example",
            "/%5cevil.example",
            "/\t/evil",
            "/\n/evil",
            "/%09/evil",
            "/%0a/evil",
            "http:/evil",
            "javascript:alert(1)",
            " /x",
            "/a\\b",
            "evil.example",
            "/x%5c",
            "/x%7f",
            // No header carries it: the answer would have no `Location`.
            "/\u{e9}",
            "/wiki/Caf\u{e9}",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
            assert_eq!(or_root(Some(bad)), "/");
        }
        assert_eq!(or_root(None), "/");
    }

    #[test]
    fn an_absolute_url_splits_where_its_authority_ends() {
        assert_eq!(split_absolute("http://a.lan/x?y"), Some(("a.lan", "/x?y")));
        assert_eq!(
            split_absolute("https://a.lan:8443?y"),
            Some(("a.lan:8443", "?y"))
        );
        assert_eq!(split_absolute("http://a.lan#f"), Some(("a.lan", "#f")));
        assert_eq!(split_absolute("http://a.lan"), Some(("a.lan", "")));
        assert_eq!(split_absolute("/local"), None);
        assert_eq!(split_absolute("ftp://a.lan/"), None);
    }

    #[test]
    fn absolute_urls_are_followed_only_to_allowed_hosts() {
        let allowed = |h: &str| h == "wiki.lan";
        assert_eq!(
            target(Some("https://wiki.lan/page?x=1"), allowed),
            "https://wiki.lan/page?x=1"
        );
        assert_eq!(
            target(Some("http://wiki.lan:8080/"), allowed),
            "http://wiki.lan:8080/"
        );
        assert_eq!(target(Some("/local"), allowed), "/local");
        for bad in [
            "https://evil.example/",
            "https://wiki.lan@evil.example/",
            "https://evil.example\\@wiki.lan/",
            "https://wiki.lan.evil.example/",
            "javascript://wiki.lan/",
            "//wiki.lan/",
            "https://wiki.lan\t/",
            "ftp://wiki.lan/",
        ] {
            assert_eq!(target(Some(bad), allowed), "/", "{bad:?}");
        }
        assert_eq!(target(None, allowed), "/");
    }

    proptest! {
        #[test]
        fn whatever_is_followed_starts_with_one_slash_and_no_control_chars(s in any::<String>()) {
            if let Some(p) = local_path(&s) {
                prop_assert!(p.starts_with('/'));
                prop_assert!(!p.starts_with("//"));
                prop_assert!(!p.contains('\\'));
                prop_assert!(!p.chars().any(char::is_control));
            }
        }

        #[test]
        fn prefixing_with_two_slashes_is_always_refused(s in "[ -~]{0,40}") {
            let candidate = format!("//{s}");
            prop_assert_eq!(local_path(&candidate), None);
        }
    }
}
