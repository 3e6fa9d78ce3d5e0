//! The one normalised form of a request target that every decision uses:
//! which app a request is for, which (nested) prefix, and later which
//! access rule, and also the exact path the proxy forwards.
//!
//! An upstream resolves `%70rivate`, `x/../private` and `//private` to
//! `private`; if gatehouse matched prefixes on the raw bytes, each of these
//! would reach an admins-only prefix under a prefix open to everyone. So
//! the target is normalised first (RFC 3986 section 6.2.2: unreserved
//! characters decoded, hex digits upper-cased, dot segments removed) and
//! repeated slashes collapsed, and what cannot be normalised without
//! guessing how the upstream reads it (an encoded slash or backslash, a
//! broken escape, a control character raw or encoded, a `#`, a path that
//! climbs above the root) is refused. The normalised form is what gets
//! forwarded, so the upstream sees exactly the path that was checked.
//!
//! Characters two readers might take apart differently are either read as
//! every upstream reads them or refused:
//!
//! - `#`: refused. A fragment is never part of a request target, and
//!   readers disagree on one that arrives anyway: nginx's static server and
//!   Python's `http.server` cut the path there, Go's keeps it in the path;
//!   `/private/secret.txt#/../../index.html` is the secret to the first and
//!   the index to the second.
//! - `?`: the first one starts the query, for every reader.
//! - `%23`, `%3F`: ordinary characters of their segment, as RFC 3986 has
//!   them and as nginx, Go and Python read them (they decode after they
//!   have split off the query and any fragment); forwarded still encoded.
//! - `%2F`, `%5C`, a raw `\`: refused; some upstreams split on them, some
//!   do not.
//! - control characters, raw or encoded (`%00`-`%1F`, `%7F`): refused; C
//!   code ends a path at `%00`, and a decoded line break could start a new
//!   header line in a log or a forwarded header.
//! - `;`: kept; [`crate::auth::apps::Apps::by_target`] refuses a path that
//!   lands in another app when read as Java servers read `;parameters`.
//! - `%25`: a literal `%`, as every reader that decodes once reads it (an
//!   upstream that decodes twice is not supported).

use std::fmt;

/// Why a request target has no normalised form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form (`/...`): `@host:port/...`, `1/x`, `*`, a full URL.
    NotOriginForm,
    /// `%2F` or `%5C`: a separator the upstream may or may not split on.
    EncodedSlash,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A control character or a backslash.
    BadByte,
    /// `%00` to `%1F` or `%7F`: a control character, encoded.
    EncodedControl,
    /// A `#`: a fragment, which is never part of a request target.
    Fragment,
    /// `..` above the root.
    Climbs,
    /// `..` above the prefix of the app the path is under.
    LeavesApp,
    /// Under an app's prefix only in another case (`/apps/VAULT/` for
    /// `/apps/vault/`).
    OtherCase,
}

impl PathError {
    /// What is wrong, for the `400` answer.
    pub fn message(self) -> &'static str {
        match self {
            Self::NotOriginForm => "the request target must be a path starting with /",
            Self::EncodedSlash => "the path contains an encoded slash or backslash",
            Self::BadEscape => "the request target contains a broken percent escape",
            Self::BadByte => "the request target contains a control character or backslash",
            Self::EncodedControl => "the path contains an encoded control character",
            Self::Fragment => "the request target contains a #",
            Self::Climbs => "the path climbs above its root",
            Self::LeavesApp => "the path climbs above its app",
            Self::OtherCase => "the path names an app's prefix in another case",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for PathError {}

/// A request target in normal form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The path: starts with `/`, no empty, `.` or `..` segments, only
    /// reserved or non-ASCII bytes percent-encoded (upper-case hex).
    pub path: String,
    /// The query without its `?`, with every byte that is not allowed in a
    /// query percent-encoded; `None` when the target had no `?`.
    pub query: Option<String>,
    /// The fewest segments left on the path by a `..`, if any was used.
    floor: Option<usize>,
}

impl Target {
    /// Normalises a raw request target (path and optional query).
    ///
    /// # Errors
    ///
    /// The target has no normal form; the caller answers `400`.
    #[inline]
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        // A fragment is never part of a request target; one that arrives
        // anyway is cut off by some readers and kept by others, and a `..`
        // after it then climbs back over the path that was judged.
        if raw.contains('#') {
            return Err(PathError::Fragment);
        }
        let (path, query) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        let path = path.strip_prefix('/').ok_or(PathError::NotOriginForm)?;
        let last = path.bytes().filter(|&b| b == b'/').count();
        let mut out: Vec<String> = Vec::new();
        let mut trailing = false;
        let mut floor: Option<usize> = None;
        for (i, raw_segment) in path.split('/').enumerate() {
            let segment = decode_segment(raw_segment)?;
            if i == last {
                trailing = matches!(segment.as_str(), "" | "." | "..");
            }
            match segment.as_str() {
                "" | "." => {}
                ".." => {
                    if out.pop().is_none() {
                        return Err(PathError::Climbs);
                    }
                    floor = Some(floor.map_or(out.len(), |f| f.min(out.len())));
                }
                _ => out.push(segment),
            }
        }
        let mut normal = String::with_capacity(path.len() + 1);
        for s in &out {
            normal.push('/');
            normal.push_str(s);
        }
        if out.is_empty() || trailing {
            normal.push('/');
        }
        let query = query.map(encode_query).transpose()?;
        Ok(Self {
            path: normal,
            query,
            floor,
        })
    }

    /// The path and query, as forwarded.
    #[inline]
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// Whether a `..` took the path above `prefix` (like `/apps/wiki/`) at
    /// some point, even if it came back under it: such a path is refused
    /// rather than guessed at.
    #[inline]
    pub fn climbs_above(&self, prefix: &str) -> bool {
        let depth = prefix.split('/').filter(|s| !s.is_empty()).count();
        self.floor.is_some_and(|f| f < depth)
    }

    /// Whether the path is `prefix` (`/apps/wiki/`) or under it, or is the
    /// prefix without its trailing slash (`/apps/wiki`).
    #[inline]
    pub fn is_under(&self, prefix: &str) -> bool {
        self.path.starts_with(prefix) || self.path == prefix.trim_end_matches('/')
    }
}

/// Characters a path segment carries as they are (RFC 3986 `pchar` less
/// `%`, which is handled on its own).
#[inline]
fn is_pchar(b: u8) -> bool {
    is_unreserved(b) || b"!$&'()*+,;=:@".contains(&b)
}

#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The byte that the `%XX` escape starting at `bytes[at]` stands for.
#[inline]
fn escaped_byte(bytes: &[u8], at: usize) -> Result<u8, PathError> {
    let (Some(hi), Some(lo)) = (
        bytes.get(at + 1).copied().and_then(hex),
        bytes.get(at + 2).copied().and_then(hex),
    ) else {
        return Err(PathError::BadEscape);
    };
    Ok(hi << 4 | lo)
}

#[inline]
fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

#[inline]
fn decode_segment(raw: &str) -> Result<String, PathError> {
    // Most segments are carried as they are: each byte would be pushed
    // unchanged below.
    if raw.bytes().all(is_pchar) {
        return Ok(raw.to_owned());
    }
    decode_bytes(raw)
}

/// Decodes a segment a byte at a time: escapes of unreserved characters
/// decoded, other escapes upper-cased, characters a segment may not carry
/// escaped, what no path may hold refused.
#[inline]
fn decode_bytes(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let decoded = escaped_byte(bytes, i)?;
            if decoded == b'/' || decoded == b'\\' {
                return Err(PathError::EncodedSlash);
            }
            if decoded.is_ascii_control() {
                return Err(PathError::EncodedControl);
            }
            if is_unreserved(decoded) {
                out.push(char::from(decoded));
            } else {
                push_escaped(&mut out, decoded);
            }
            i += 3;
            continue;
        }
        if b.is_ascii_control() || b == b'\\' {
            return Err(PathError::BadByte);
        }
        if is_pchar(b) {
            out.push(char::from(b));
        } else {
            // Spaces, quotes, brackets, non-ASCII: encoded, so what is
            // forwarded is a valid target.
            push_escaped(&mut out, b);
        }
        i += 1;
    }
    Ok(out)
}

#[inline]
fn encode_query(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            // The query is the upstream's business: escapes stay escapes.
            push_escaped(&mut out, escaped_byte(bytes, i)?);
            i += 3;
            continue;
        }
        if b.is_ascii_control() {
            return Err(PathError::BadByte);
        }
        if is_pchar(b) || b == b'/' || b == b'?' {
            out.push(char::from(b));
        } else {
            push_escaped(&mut out, b);
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> Result<String, PathError> {
        Target::parse(raw).map(|t| t.path)
    }

    #[test]
    fn plain_paths_stay_as_they_are() {
        for p in [
            "/",
            "/apps/wiki/",
            "/apps/wiki/page",
            "/a/b.txt",
            "/x:y@z!$&'()*+,;=",
        ] {
            assert_eq!(path(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn unreserved_characters_are_decoded_and_hex_is_upper_cased() {
        assert_eq!(
            path("/apps/site/%70rivate/").as_deref(),
            Ok("/apps/site/private/")
        );
        assert_eq!(path("/%41%7a%2D%5f%2e%7E").as_deref(), Ok("/Az-_.~"));
        assert_eq!(path("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(path("/a%20b%3fc%23").as_deref(), Ok("/a%20b%3Fc%23"));
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(
            path("/apps/site/x/../private/secret.txt").as_deref(),
            Ok("/apps/site/private/secret.txt")
        );
        assert_eq!(path("/a/./b/.").as_deref(), Ok("/a/b/"));
        assert_eq!(path("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(path("/a/..").as_deref(), Ok("/"));
        assert_eq!(path("/a/%2e%2E/b").as_deref(), Ok("/b"), "encoded dots");
        assert_eq!(path("/a/.%2e/b").as_deref(), Ok("/b"));
        assert_eq!(path("/a/...").as_deref(), Ok("/a/..."), "not a dot segment");
    }

    #[test]
    fn repeated_slashes_are_collapsed() {
        assert_eq!(
            path("/apps/site//private///secret.txt").as_deref(),
            Ok("/apps/site/private/secret.txt")
        );
        assert_eq!(path("//").as_deref(), Ok("/"));
        assert_eq!(path("/a//").as_deref(), Ok("/a/"));
    }

    #[test]
    fn an_encoded_slash_or_backslash_is_refused() {
        for p in [
            "/apps/site/private%2fsecret.txt",
            "/a%2Fb",
            "/a%5cb",
            "/a%5C..%5Cb",
        ] {
            assert_eq!(path(p), Err(PathError::EncodedSlash), "{p}");
        }
        assert_eq!(path("/a\\b"), Err(PathError::BadByte));
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        for p in [
            "/..",
            "/../etc/passwd",
            "/a/../..",
            "/%2e%2e/x",
            "/a/b/../../../c",
        ] {
            assert_eq!(path(p), Err(PathError::Climbs), "{p}");
        }
    }

    #[test]
    fn climbing_above_a_prefix_is_seen_even_when_it_comes_back() {
        let t = Target::parse("/apps/site/x/../private/s").expect("valid");
        assert!(!t.climbs_above("/apps/site/"));
        assert!(t.climbs_above("/apps/site/private/"));
        let back = Target::parse("/apps/site/../site/x").expect("valid");
        assert!(back.climbs_above("/apps/site/"));
        assert!(
            !Target::parse("/apps/site/x")
                .expect("valid")
                .climbs_above("/apps/site/")
        );
        assert!(!back.climbs_above("/"));
    }

    #[test]
    fn invalid_percent_escapes_are_refused() {
        for t in ["/a%", "/a%4", "/a%zz", "/a%4g/b", "/a?q=%", "/a?q=%x1"] {
            assert_eq!(Target::parse(t), Err(PathError::BadEscape), "{t}");
        }
    }

    #[test]
    fn targets_that_are_not_paths_are_refused() {
        for t in ["@127.0.0.1:3101/admin/users", "1/x", "*", "http://h/x", ""] {
            assert_eq!(Target::parse(t), Err(PathError::NotOriginForm), "{t}");
        }
    }

    #[test]
    fn a_fragment_is_refused_wherever_it_is() {
        for t in [
            "/apps/site/%70rivate/secret.txt#/../../index.html",
            "/apps/site/index.html#",
            "/#",
            "/a?q=1#/../../private",
            "#/x",
        ] {
            assert_eq!(Target::parse(t), Err(PathError::Fragment), "{t}");
        }
        // Encoded, it is an ordinary character of its segment, as it is
        // to the upstream, and stays encoded.
        assert_eq!(
            path("/apps/site/private/secret.txt%23/../../index.html").as_deref(),
            Ok("/apps/site/index.html")
        );
        assert_eq!(path("/a%23b%3fc").as_deref(), Ok("/a%23b%3Fc"));
    }

    #[test]
    fn encoded_control_characters_are_refused_in_the_path() {
        for t in [
            "/apps/site/private/secret.txt%00/../../index.html",
            "/a%00",
            "/a%0d%0aRemote-User:%20root",
            "/a%09b",
            "/a%1f",
            "/a%7F",
        ] {
            assert_eq!(Target::parse(t), Err(PathError::EncodedControl), "{t}");
        }
        // In the query they are the upstream's business, kept encoded.
        assert_eq!(
            Target::parse("/a?x=%00").map(|t| t.path_and_query()),
            Ok("/a?x=%00".to_owned())
        );
        assert_eq!(path("/a%20b%7e").as_deref(), Ok("/a%20b~"));
    }

    #[test]
    fn control_characters_are_refused_anywhere() {
        for t in [
            "/x\nRemote-User:\talice",
            "/x\r\nA: b",
            "/x\0",
            "/x?a=\nRemote-User: alice",
            "/x?\t",
            "/x\x7f",
        ] {
            assert_eq!(Target::parse(t), Err(PathError::BadByte), "{t:?}");
        }
    }

    #[test]
    fn the_query_is_kept_with_escapes_normalised() {
        let t = Target::parse("/a?x=1&y=%2f%zz").map(|t| t.path_and_query());
        assert_eq!(t, Err(PathError::BadEscape));
        let t = Target::parse("/a/../b?x=1&y=%2f/?&z=\"é\"").expect("valid");
        assert_eq!(t.path_and_query(), "/b?x=1&y=%2F/?&z=%22%C3%A9%22");
        assert_eq!(Target::parse("/a?").expect("valid").path_and_query(), "/a?");
        assert_eq!(Target::parse("/a").expect("valid").query, None);
    }

    #[test]
    fn prefixes_match_the_normalised_path() {
        let t = Target::parse("/apps/wiki").expect("valid");
        assert!(t.is_under("/apps/wiki/"));
        assert!(
            Target::parse("/apps/wiki/x")
                .expect("valid")
                .is_under("/apps/wiki/")
        );
        assert!(
            !Target::parse("/apps/wikix")
                .expect("valid")
                .is_under("/apps/wiki/")
        );
    }

    proptest::proptest! {
        #[test]
        fn a_segment_kept_whole_is_what_decoding_it_gives(raw in "[A-Za-z0-9._~!$&'()*+,;=:@-]{0,40}|[^/]{0,40}|[a-z%0-9A-F.]{0,20}") {
            proptest::prop_assert_eq!(decode_segment(&raw), decode_bytes(&raw));
        }
    }
}
