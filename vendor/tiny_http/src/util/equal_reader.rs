use std::io::Read;
use std::io::Result as IoResult;
use std::sync::mpsc::channel;
use std::sync::mpsc::{Receiver, Sender};

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF. What is left unread when it is
/// dropped stays unread (gatehouse patch).
pub struct EqualReader<R>
where
    R: Read,
{
    reader: R,
    size: u64,
    last_read_signal: Sender<IoResult<()>>,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub fn new(reader: R, size: u64) -> (EqualReader<R>, Receiver<IoResult<()>>) {
        let (tx, rx) = channel();

        let r = EqualReader {
            reader,
            size,
            last_read_signal: tx,
        };

        (r, rx)
    }

    /// gatehouse patch: how many bytes are left to read.
    pub fn remaining(&self) -> u64 {
        self.size
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 {
            return Ok(0);
        }

        let buf = if (buf.len() as u64) < self.size {
            buf
        } else {
            &mut buf[..self.size as usize]
        };

        match self.reader.read(buf) {
            // gatehouse patch: the connection ended before the declared
            // length: an error, not the body's end (a truncated upload must
            // not pass for a whole one, nor make a reader wait on EOF).
            Ok(0) if !buf.is_empty() => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the body ended before its Content-Length",
            )),
            Ok(len) => {
                self.size -= len as u64;
                Ok(len)
            }
            err @ Err(_) => err,
        }
    }
}

// gatehouse patch: no `Drop` that reads the rest of the body. Upstream
// allocated `vec![0; remaining]` there, from a length the client declared
// (`Content-Length: 100000000000` aborted the process), and read without
// bound. The request now drains a bounded amount with a fixed buffer before
// it answers, or has the connection closed (see `Request::settle_body`).

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use std::io::Read;

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn a_body_cut_short_is_an_error() {
        let mut source = &b"hel"[..];
        let (mut r, _) = EqualReader::new(&mut source, 5);
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(out, b"hel");
    }

    #[test]
    fn test_not_enough() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, "ello world");
    }
}
