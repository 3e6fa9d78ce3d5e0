//! Reading request bodies safely: a hard size cap that is enforced before
//! and while reading, and a strict `application/x-www-form-urlencoded`
//! parser (invalid UTF-8, duplicate fields and too many fields are errors).
//!
//! rouille's `post_input!` reads a body of any size into memory; this is
//! what we use instead.

use std::collections::HashMap;
use std::io::Read;

use percent_encoding::percent_decode;
use rouille::Request;

use super::error::WebError;

/// The largest body accepted (64 KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// The most fields a form may have.
const MAX_FIELDS: usize = 64;

/// Reads the body, refusing anything over [`MAX_BODY`] without buffering it.
///
/// # Errors
///
/// [`WebError::TooLarge`] when the declared or actual size is too big,
/// [`WebError::BadRequest`] when the body cannot be read.
pub fn read_body(request: &Request) -> Result<Vec<u8>, WebError> {
    if let Some(len) = request.header("Content-Length") {
        let len: u64 = len
            .trim()
            .parse()
            .map_err(|_| WebError::BadRequest("malformed Content-Length"))?;
        if len > MAX_BODY as u64 {
            return Err(WebError::TooLarge);
        }
    }
    let Some(body) = request.data() else {
        return Ok(Vec::new());
    };
    let mut buf = Vec::new();
    body.take(MAX_BODY as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|_| WebError::BadRequest("the request body could not be read"))?;
    if buf.len() > MAX_BODY {
        return Err(WebError::TooLarge);
    }
    Ok(buf)
}

/// The one body check at the entry of gatehouse's own routes (not the
/// built-in proxy's, which streams bodies of any size to the app): a body
/// over [`MAX_BODY`] gets `413` on every route, whether or not its handler
/// reads it, so a route that ignores its body cannot be made to accept (or
/// to drain) an unbounded one. A declared `Content-Length` decides before
/// anything is read; a chunked body is read here, up to the cap, and the
/// request handed on is rebuilt around the bytes read.
///
/// # Errors
///
/// [`WebError::TooLarge`] over the cap, [`WebError::BadRequest`] for a
/// body that cannot be read.
pub fn cap_body(request: &Request) -> Result<Option<Request>, WebError> {
    if let Some(len) = request.header("Content-Length") {
        // tiny_http has already refused anything but plain decimal digits.
        let len: u64 = len
            .trim()
            .parse()
            .map_err(|_| WebError::BadRequest("malformed Content-Length"))?;
        return if len > MAX_BODY as u64 {
            Err(WebError::TooLarge)
        } else {
            Ok(None)
        };
    }
    if request.header("Transfer-Encoding").is_none() {
        return Ok(None);
    }
    let body = read_body(request)?;
    Ok(Some(with_body(request, body)))
}

/// `request` again, around `body` (read from it already), so a handler can
/// read the body a check before it has read: the same method, target,
/// client address and scheme, the headers less `Transfer-Encoding`, and a
/// `Content-Length` that says what `body` holds.
pub fn with_body(request: &Request, body: Vec<u8>) -> Request {
    let mut headers: Vec<(String, String)> = request
        .headers()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("Transfer-Encoding")
                && !k.eq_ignore_ascii_case("Content-Length")
        })
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    headers.push(("Content-Length".to_owned(), body.len().to_string()));
    let (from, method, url) = (*request.remote_addr(), request.method(), request.raw_url());
    if request.is_secure() {
        Request::fake_https_from(from, method, url, headers, body)
    } else {
        Request::fake_http_from(from, method, url, headers, body)
    }
}

/// A parsed form: each field at most once.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Form(HashMap<String, String>);

impl Form {
    /// Parses `a=1&b=2` bytes.
    ///
    /// # Errors
    ///
    /// [`WebError::BadRequest`] for invalid UTF-8, a repeated field, or too
    /// many fields.
    pub fn parse(body: &[u8]) -> Result<Self, WebError> {
        let mut fields = HashMap::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            if fields.len() >= MAX_FIELDS {
                return Err(WebError::BadRequest("too many form fields"));
            }
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let k = decode(k)?;
            let v = decode(v)?;
            if fields.insert(k, v).is_some() {
                return Err(WebError::BadRequest("a form field was sent twice"));
            }
        }
        Ok(Self(fields))
    }

    /// Reads and parses the body of a form POST.
    ///
    /// # Errors
    ///
    /// [`WebError::UnsupportedMediaType`] for another content type, plus
    /// the errors of [`read_body`] and [`Form::parse`].
    pub fn from_request(request: &Request) -> Result<Self, WebError> {
        Self::parse(&Self::body_of(request)?)
    }

    /// The body of a form POST, read (under the cap) but not parsed.
    ///
    /// # Errors
    ///
    /// [`WebError::UnsupportedMediaType`] for another content type (told by
    /// the header, before anything is read), and those of [`read_body`].
    pub fn body_of(request: &Request) -> Result<Vec<u8>, WebError> {
        let ct = request.header("Content-Type").unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(WebError::UnsupportedMediaType);
        }
        read_body(request)
    }

    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn decode(raw: &[u8]) -> Result<String, WebError> {
    let plus: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&plus).collect();
    String::from_utf8(bytes).map_err(|_| WebError::BadRequest("the form is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_form_decodes() {
        let f = Form::parse(b"username=al+ice&password=p%26ss%3D&empty=&flag").expect("valid");
        assert_eq!(f.get("username"), Some("al ice"));
        assert_eq!(f.get("password"), Some("p&ss="));
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.get("flag"), Some(""));
        assert_eq!(f.get("missing"), None);
    }

    #[test]
    fn bad_forms_are_refused() {
        assert!(Form::parse(b"a=1&a=2").is_err(), "repeated field");
        assert!(Form::parse(b"a=%ff%fe").is_err(), "invalid UTF-8");
        assert!(Form::parse(b"a=\xff").is_err(), "raw invalid UTF-8");
        let many: Vec<String> = (0..100).map(|i| format!("f{i}=1")).collect();
        assert!(
            Form::parse(many.join("&").as_bytes()).is_err(),
            "too many fields"
        );
    }

    #[test]
    fn the_entry_cap_refuses_big_bodies_declared_or_chunked() {
        let declared = Request::fake_http(
            "POST",
            "/api/logout",
            vec![("Content-Length".into(), (MAX_BODY + 1).to_string())],
            Vec::new(),
        );
        assert!(matches!(cap_body(&declared), Err(WebError::TooLarge)));
        let small = Request::fake_http(
            "POST",
            "/api/logout",
            vec![("Content-Length".into(), "2".into())],
            b"{}".to_vec(),
        );
        assert!(matches!(cap_body(&small), Ok(None)));
        let te = || vec![("Transfer-Encoding".into(), "chunked".into())];
        let chunked = Request::fake_http("POST", "/x", te(), vec![b'a'; MAX_BODY + 1]);
        assert!(matches!(cap_body(&chunked), Err(WebError::TooLarge)));
        let chunked = Request::fake_http("POST", "/x?q", te(), b"hello".to_vec());
        let rebuilt = cap_body(&chunked).expect("under the cap").expect("rebuilt");
        assert_eq!(rebuilt.raw_url(), "/x?q");
        assert_eq!(rebuilt.header("Content-Length"), Some("5"));
        assert_eq!(rebuilt.header("Transfer-Encoding"), None);
        assert_eq!(read_body(&rebuilt).expect("body"), b"hello");
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Form::parse(&body);
        }

        #[test]
        fn encoded_values_round_trip(value in "\\PC{0,64}") {
            let encoded: String = percent_encoding::utf8_percent_encode(&value, percent_encoding::NON_ALPHANUMERIC).collect();
            let form = Form::parse(format!("v={encoded}").as_bytes()).expect("valid");
            prop_assert_eq!(form.get("v"), Some(value.as_str()));
        }
    }
}
