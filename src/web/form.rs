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
        let ct = request.header("Content-Type").unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(WebError::UnsupportedMediaType);
        }
        Self::parse(&read_body(request)?)
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
