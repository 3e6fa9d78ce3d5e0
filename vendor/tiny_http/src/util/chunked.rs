//! gatehouse patch: a strict decoder for `Transfer-Encoding: chunked`
//! request bodies (RFC 9112 section 7.1), in place of the
//! `chunked_transfer` crate's.
//!
//! That decoder is lenient where leniency lets a front proxy and this
//! server disagree on where a body ends (request smuggling): it ends a size
//! line at a bare CR, trims spaces around the size, takes `+a` for `a`,
//! grows a size or extension line without bound and refuses trailers. Here
//! every line ends in CRLF and nothing else, the size is 1 to 16 hex digits
//! (no sign, no spaces), extensions and trailers are bounded and free of
//! control characters, and anything else is an error that ends the body
//! (the connection is then closed, never reused).

use std::convert::TryFrom;
use std::io::{Error, ErrorKind, Read, Result};

/// The most hex digits a chunk size may have (16 fit any `u64`).
const MAX_SIZE_DIGITS: usize = 16;
/// The longest chunk extension accepted, in bytes.
const MAX_EXTENSION: usize = 256;
/// The longest trailer line accepted, in bytes.
const MAX_TRAILER_LINE: usize = 4096;
/// The most trailer lines accepted.
const MAX_TRAILERS: usize = 16;

enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, with this much left.
    Data(u64),
    /// After a chunk's data, expecting its CRLF.
    DataEnd,
    /// The last chunk and its trailers were read.
    Done,
    /// The framing was broken; every read fails.
    Failed,
}

/// Reads a chunked body from `source` and yields its data.
pub struct ChunkedDecoder<R> {
    source: R,
    state: State,
}

fn bad(what: &'static str) -> Error {
    Error::new(ErrorKind::InvalidData, what)
}

impl<R: Read> ChunkedDecoder<R> {
    pub fn new(source: R) -> Self {
        ChunkedDecoder {
            source,
            state: State::Size,
        }
    }

    /// Whether the last chunk and its trailers have been read: nothing of
    /// the body is left on the connection.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn byte(&mut self) -> Result<u8> {
        let mut b = [0u8; 1];
        loop {
            match self.source.read(&mut b) {
                Ok(0) => {
                    return Err(Error::new(
                        ErrorKind::UnexpectedEof,
                        "the chunked body ended early",
                    ))
                }
                Ok(_) => return Ok(b[0]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the LF that must follow a CR.
    fn lf(&mut self) -> Result<()> {
        if self.byte()? == b'\n' {
            Ok(())
        } else {
            Err(bad("a CR without LF in a chunked body"))
        }
    }

    fn crlf(&mut self) -> Result<()> {
        if self.byte()? != b'\r' {
            return Err(bad("chunk data not followed by CRLF"));
        }
        self.lf()
    }

    /// Reads `chunk-size [ chunk-ext ] CRLF`.
    fn size_line(&mut self) -> Result<u64> {
        let mut size: u64 = 0;
        let mut digits = 0;
        let mut b = self.byte()?;
        while let Some(d) = (b as char).to_digit(16) {
            digits += 1;
            if digits > MAX_SIZE_DIGITS {
                return Err(bad("a chunk size with too many digits"));
            }
            size = (size << 4) | u64::from(d);
            b = self.byte()?;
        }
        if digits == 0 {
            return Err(bad("a chunk size line without a size"));
        }
        if b == b';' || b == b' ' || b == b'\t' {
            // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): only
            // checked for length, control characters and its leading ";".
            let mut seen_semicolon = b == b';';
            let mut len = 1;
            loop {
                b = self.byte()?;
                if b == b'\r' {
                    break;
                }
                len += 1;
                if len > MAX_EXTENSION {
                    return Err(bad("a chunk extension that is too long"));
                }
                if b != b'\t' && !(0x20..0x7f).contains(&b) {
                    return Err(bad("a control character in a chunk extension"));
                }
                if !seen_semicolon {
                    match b {
                        b';' => seen_semicolon = true,
                        b' ' | b'\t' => {}
                        _ => return Err(bad("a space inside a chunk size")),
                    }
                }
            }
            if !seen_semicolon {
                return Err(bad("a space after a chunk size"));
            }
        }
        if b != b'\r' {
            return Err(bad("a chunk size line not ended by CRLF"));
        }
        self.lf()?;
        Ok(size)
    }

    /// Reads the trailer section after the last chunk, up to its empty line.
    fn trailers(&mut self) -> Result<()> {
        for _ in 0..=MAX_TRAILERS {
            let mut len = 0;
            loop {
                let b = self.byte()?;
                if b == b'\r' {
                    self.lf()?;
                    break;
                }
                len += 1;
                if len > MAX_TRAILER_LINE {
                    return Err(bad("a trailer line that is too long"));
                }
                if b != b'\t' && !(0x20..0x7f).contains(&b) {
                    return Err(bad("a control character in a trailer"));
                }
                if len == 1 && (b == b' ' || b == b'\t') {
                    return Err(bad("a folded trailer line"));
                }
            }
            if len == 0 {
                return Ok(());
            }
        }
        Err(bad("too many trailer lines"))
    }

    fn step(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Failed => return Err(bad("the chunked body was malformed")),
                State::Size => {
                    let size = self.size_line()?;
                    if size == 0 {
                        self.trailers()?;
                        self.state = State::Done;
                        return Ok(0);
                    }
                    self.state = State::Data(size);
                }
                State::DataEnd => {
                    self.crlf()?;
                    self.state = State::Size;
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(0);
                    }
                    let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let n = match self.source.read(&mut buf[..want]) {
                        Ok(0) => {
                            return Err(Error::new(
                                ErrorKind::UnexpectedEof,
                                "the chunked body ended early",
                            ))
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(n);
                }
            }
        }
    }
}

impl<R: Read> Read for ChunkedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let result = self.step(buf);
        if result.is_err() {
            // A broken frame is never resumed: where the body ends is unknown.
            self.state = State::Failed;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkedDecoder;
    use std::io::Read;

    fn decode(input: &[u8]) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        let mut source = input;
        let mut out = Vec::new();
        ChunkedDecoder::new(&mut source).read_to_end(&mut out)?;
        Ok((out, source.to_vec()))
    }

    #[test]
    fn a_well_formed_body_decodes_and_stops_at_its_end() {
        let (data, rest) =
            decode(b"3\r\nhel\r\nB;name=\"v\"\r\nlo world!!!\r\n0\r\nX-T: 1\r\n\r\nGET /").unwrap();
        assert_eq!(data, b"hello world!!!");
        assert_eq!(rest, b"GET /");
        let (data, _) = decode(b"000a\r\n0123456789\r\n0 ; ext\r\n\r\n").unwrap();
        assert_eq!(data, b"0123456789");
    }

    #[test]
    fn lenient_framings_are_refused() {
        for bad in [
            &b"3\nhel\r\n0\r\n\r\n"[..],        // bare LF after the size
            b"3\rhel\r\n0\r\n\r\n",             // bare CR
            b"3\r\nhel\n0\r\n\r\n",             // data ended by LF only
            b"3\r\nhelX\r\n0\r\n\r\n",          // data longer than its size
            b" 3\r\nhel\r\n0\r\n\r\n",          // space before the size
            b"3 \r\nhel\r\n0\r\n\r\n",          // space after, no extension
            b"+3\r\nhel\r\n0\r\n\r\n",          // a sign
            b"0x3\r\nhel\r\n0\r\n\r\n",         // a prefix
            b"\r\nhel\r\n0\r\n\r\n",            // no size
            b"00000000000000003\r\nhel\r\n0\r\n\r\n", // 17 digits
            b"ffffffffffffffffff\r\n",          // overflow
            b"3;a\0b\r\nhel\r\n0\r\n\r\n",      // NUL in an extension
            b"0\r\n\r",                         // cut short
            b"0\r\nX: 1\n\r\n",                 // trailer ended by LF only
            b"0\r\n folded\r\n\r\n",            // folded trailer
            b"3\r\nhe",                         // body cut short
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long_ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(300));
        assert!(decode(long_ext.as_bytes()).is_err());
        let many = format!("0\r\n{}\r\n", "X: 1\r\n".repeat(20));
        assert!(decode(many.as_bytes()).is_err());
    }

    #[test]
    fn a_failed_body_stays_failed() {
        let mut source = &b"3\nhel\r\n0\r\n\r\n"[..];
        let mut d = ChunkedDecoder::new(&mut source);
        let mut buf = [0u8; 8];
        assert!(d.read(&mut buf).is_err());
        assert!(d.read(&mut buf).is_err());
    }
}
