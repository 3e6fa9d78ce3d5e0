use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Instant;

use crate::common::{HTTPVersion, Header, Method, StatusCode};
use crate::limits::{ConnState, Phase, Timeouts};
use crate::request::{CLOSE, LINGER, OPEN};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: Option<SocketAddr>,

    // gatehouse patch: the connection's slot and read deadline, its time
    // limits, and whether a request was read from it already
    state: Arc<ConnState>,
    timeouts: Timeouts,
    kept_alive: bool,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // gatehouse patch: raised by a request that leaves the connection unfit
    // for another one (its body unread, or the connection upgraded):
    // `request::LINGER` or `request::CLOSE`.
    closing: Arc<AtomicU8>,

    // gatehouse patch: the last request asked for an upgrade (its answer
    // is written by `Request::upgrade`, never handed back here).
    upgrading: bool,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    /// gatehouse patch: the request is refused with this status, in a
    /// minimal answer, and the connection closed.
    Refuse(u16),
    /// gatehouse patch: the request before left the connection unfit for
    /// another one; it is closed without reading further.
    Closed,
}

/// gatehouse patch: the longest request line accepted (`414` past it).
const MAX_REQUEST_LINE: usize = 16 * 1024;
/// gatehouse patch: the most bytes all header lines together may take
/// (`431` past it).
const MAX_HEADER_BYTES: usize = 32 * 1024;
/// gatehouse patch: the most header fields accepted (`431` past it).
const MAX_HEADERS: usize = 100;
/// gatehouse patch: empty lines ignored before a request line (RFC 9112
/// section 2.2 asks servers to ignore at least one).
const MAX_EMPTY_LINES: usize = 4;

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    ///
    /// gatehouse patch: fails (rather than panicking later) when the peer's
    /// address cannot be had, e.g. a client that already hung up.
    pub(crate) fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        timeouts: Timeouts,
    ) -> IoResult<ClientConnection> {
        let remote_addr = read_socket.peer_addr()?;
        let secure = read_socket.secure();
        let state = Arc::clone(read_socket.state());

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().expect("the builder yields readers for ever");

        Ok(ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            state,
            timeouts,
            kept_alive: false,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            closing: Arc::new(AtomicU8::new(OPEN)),
            upgrading: false,
        })
    }

    /// gatehouse patch: waits for the next request to start and sets the
    /// deadline of its head. Between two requests the connection is idle:
    /// it waits for the previous request to be done with the stream, then
    /// up to `keepalive_timeout` for a first byte, listed as idle (so that
    /// it can be closed to make room for a new connection). Its head must
    /// then be complete within `header_timeout` (of the first byte; of the
    /// start for a connection's first request, or a deadline already set
    /// when the connection was made, e.g. one that also covers a TLS
    /// handshake). False when the connection is over: closed, idle too
    /// long, or closed to make room.
    fn await_request(&mut self) -> bool {
        if !self.kept_alive {
            self.kept_alive = true;
            if self.state.deadline().is_none() {
                self.state.set_deadline(Instant::now() + self.timeouts.header);
            }
            return true;
        }
        // gatehouse patch: the next request is read only once the answer
        // to the one before has been written (or given up on). Pipelined
        // requests each took a request thread that waited for its turn to
        // write, so one connection that sent many and read none held every
        // request thread until its writes timed out. An answer the client
        // was too slow to take at once is finished here, on this thread.
        if !self.finish_previous() {
            return false;
        }
        self.state
            .set_deadline(Instant::now() + self.timeouts.keepalive);
        // Idle: may be closed to make room for a new connection.
        if !self.state.enter(Phase::Idle) {
            return false;
        }
        match self.next_header_source.fill_buf() {
            Ok(buf) if !buf.is_empty() => {}
            _ => return false,
        }
        self.state.set_deadline(Instant::now() + self.timeouts.header);
        self.state.enter(Phase::Opening)
    }

    /// gatehouse patch: waits for the answer to the request before (running
    /// what its request thread left to write to a slow client), then for
    /// the stream; false if the connection is over: it was upgraded, or
    /// its request left a body unread (then lingers first: see
    /// [`ClientConnection::linger`]).
    fn finish_previous(&mut self) -> bool {
        self.sink.wait_done();
        if self.next_header_source.wait_turn().is_err() {
            return false;
        }
        match self.closing.load(Ordering::SeqCst) {
            OPEN => true,
            LINGER => {
                self.linger();
                false
            }
            _ => false,
        }
    }

    /// gatehouse patch: after the answer to a request whose body was left
    /// unread, the client may still be sending it. Closing now would reset
    /// the connection, and the client could lose the answer (a `413`); so
    /// the connection is half closed (the client sees the answer end), and
    /// what still comes is read and dropped for at most
    /// `Timeouts::linger` in all and 1 MiB, here on the connection's own
    /// thread (never a request thread), which then closes it. A lingering
    /// connection is the first to go when room is needed.
    fn linger(&mut self) {
        if !self.state.enter(Phase::Closing) {
            return;
        }
        let _ = self.state.half_close();
        self.state
            .set_deadline(Instant::now() + self.timeouts.linger());
        let mut total = 0;
        while total < 1024 * 1024 {
            match self.next_header_source.fill_buf() {
                Ok(buf) if !buf.is_empty() => {
                    let n = buf.len();
                    self.next_header_source.consume(n);
                    total += n;
                }
                _ => return,
            }
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// gatehouse patch: strict (RFC 9112 section 2.2): a line ends in CRLF
    /// and nothing else; a bare LF (which upstream took as a line end) or a
    /// bare CR anywhere is refused with `400`, so a target or header can
    /// never carry a line break into what gatehouse writes on (a `Location`,
    /// a proxied request line). At most `limit` bytes are read, CRLF
    /// included: past that, `too_long` is the status. Returns the line
    /// without its CRLF.
    fn read_next_line(&mut self, limit: usize, too_long: u16) -> Result<Vec<u8>, ReadError> {
        if limit == 0 {
            return Err(ReadError::Refuse(too_long));
        }
        let mut buf = Vec::with_capacity(64);
        let n = (&mut self.next_header_source)
            .take(limit as u64)
            .read_until(b'\n', &mut buf)
            .map_err(ReadError::ReadIoError)?;
        if n == 0 {
            return Err(ReadError::ReadIoError(IoError::new(
                ErrorKind::ConnectionAborted,
                "Unexpected EOF",
            )));
        }
        if !buf.ends_with(b"\n") {
            if buf.len() >= limit {
                return Err(ReadError::Refuse(too_long));
            }
            return Err(ReadError::ReadIoError(IoError::new(
                ErrorKind::ConnectionAborted,
                "Unexpected EOF",
            )));
        }
        if !buf.ends_with(b"\r\n") {
            return Err(ReadError::Refuse(400));
        }
        buf.truncate(buf.len() - 2);
        if buf.contains(&b'\r') {
            return Err(ReadError::Refuse(400));
        }
        Ok(buf)
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // gatehouse patch: wait for the request before to be done with the
        // connection, and read nothing more if it left its body unread.
        if self.next_header_source.wait_turn().is_err() {
            return Err(ReadError::Closed);
        }
        if self.closing.load(Ordering::SeqCst) != OPEN {
            return Err(ReadError::Closed);
        }

        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let mut line = self.read_next_line(MAX_REQUEST_LINE, 414)?;
                let mut empty = 0;
                while line.is_empty() {
                    empty += 1;
                    if empty > MAX_EMPTY_LINES {
                        return Err(ReadError::Refuse(400));
                    }
                    line = self.read_next_line(MAX_REQUEST_LINE, 414)?;
                }
                parse_request_line(&line).map_err(ReadError::Refuse)?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                let mut budget = MAX_HEADER_BYTES;
                loop {
                    let line = self.read_next_line(budget, 431)?;
                    budget = budget.saturating_sub(line.len() + 2);

                    if line.is_empty() {
                        break;
                    };
                    if headers.len() == MAX_HEADERS {
                        return Err(ReadError::Refuse(431));
                    }
                    headers.push(parse_header_line(&line).map_err(ReadError::Refuse)?);
                }

                headers
            };

            let path = resolve_target(&method, path, &version, &headers)
                .map_err(ReadError::Refuse)?;

            (method, path, version, headers)
        };

        // gatehouse patch: the head is in. A body of up to 64 KiB is read
        // with it, here, and must be in within `header_timeout` +
        // `body_timeout` in all (see `request::PREBUFFER`); after that each
        // read may stall up to `body_timeout`.
        match self.timeouts.per_read() {
            Some(t) => self
                .state
                .set_deadline(Instant::now() + self.timeouts.header + t),
            None => self
                .state
                .clear_deadline(None)
                .map_err(ReadError::ReadIoError)?,
        }

        // building the writer for the request
        let writer = self.sink.next().expect("the builder yields writers for ever");
        // gatehouse patch: where the request thread hands what a slow
        // client has yet to take (see `Request::respond`).
        let finisher = writer.finisher();
        self.state.reset_pace();

        // follow-up for next potential request
        let mut data_source = self.source.next().expect("the builder yields readers for ever");
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr,
            data_source,
            writer,
            Some((Arc::clone(&self.state), finisher)),
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::Refused(status) => ReadError::Refuse(status),
            }
        })?;

        self.state
            .clear_deadline(self.timeouts.per_read())
            .map_err(ReadError::ReadIoError)?;

        // gatehouse patch: from here the connection is being served, and
        // no longer closed to make room (unless it was, just now).
        if !self.state.enter(Phase::Busy) {
            return Err(ReadError::Closed);
        }

        // return the request
        Ok(request.with_close_flag(Arc::clone(&self.closing)))
    }

    /// gatehouse patch: a minimal answer to a request refused while it was
    /// parsed, marked as the connection's last (where that request ends,
    /// and so where the next would start, is unknown).
    fn refuse(&mut self, status: u16) {
        let reason = StatusCode(status).default_reason_phrase();
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        if let Some(mut writer) = self.sink.next() {
            let _ = writer.write_all(answer.as_bytes());
            let _ = writer.flush();
        }
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            // gatehouse patch: its answer may still be going out from here
            // (a slow client); an upgraded connection is the upgrade's.
            if !self.upgrading {
                self.finish_previous();
            }
            return None;
        }

        loop {
            // gatehouse patch: the head's deadline (`read` lifts it once
            // the head is in).
            if !self.await_request() {
                return None;
            }
            let rq = match self.read() {
                // gatehouse patch: strict parsing's refusals, and a
                // connection left unfit by the request before.
                Err(ReadError::Refuse(status)) => {
                    self.refuse(status);
                    return None;
                }
                Err(ReadError::Closed) => return None,

                Err(ReadError::WrongRequestLine) => {
                    let writer = self.sink.next().expect("the builder yields writers for ever");
                    let response = Response::new_empty(StatusCode(400));
                    response
                        .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                        .ok();
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::WrongHeader(ver)) => {
                    let writer = self.sink.next().expect("the builder yields writers for ever");
                    let response = Response::new_empty(StatusCode(400));
                    response.raw_print(writer, ver, &[], false, None).ok();
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    // request timeout
                    let writer = self.sink.next().expect("the builder yields writers for ever");
                    let response = Response::new_empty(StatusCode(408));
                    response
                        .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                        .ok();
                    return None; // closing the connection
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    let writer = self.sink.next().expect("the builder yields writers for ever");
                    let response = Response::new_empty(StatusCode(417));
                    response.raw_print(writer, ver, &[], true, None).ok();
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                let writer = self.sink.next().expect("the builder yields writers for ever");
                let response = Response::from_string(
                    "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                )
                .with_status_code(StatusCode(505));
                response
                    .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                    .ok();
                continue;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());
            self.upgrading = lowercase.as_ref().is_some_and(|v| v.contains("upgrade"));

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// gatehouse patch: whether `b` may appear in a token (RFC 9110 section
/// 5.6.2): a method or a header name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a "HTTP/1.1" string.
///
/// gatehouse patch: only HTTP/1.0 and HTTP/1.1 are served; another version
/// of the right shape gets `505`, anything else `400`.
fn parse_http_version(version: &[u8]) -> Result<HTTPVersion, u16> {
    match version {
        b"HTTP/1.0" => Ok(HTTPVersion(1, 0)),
        b"HTTP/1.1" => Ok(HTTPVersion(1, 1)),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(505)
        }
        _ => Err(400),
    }
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
///
/// gatehouse patch: strict (RFC 9112 section 3): exactly
/// `method SP target SP version`, single spaces; the method a token; the
/// target visible ASCII only (no control characters, spaces or bytes past
/// ASCII) and without a `#`: a fragment is never sent in a request, and
/// readers disagree on one that is (some cut the path there, some keep
/// it), so a proxy in front and the app behind could read two paths.
/// Returns the status to refuse it with otherwise.
fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), u16> {
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if method.is_empty() || !method.iter().all(|b| is_tchar(*b)) {
        return Err(400);
    }
    if target.is_empty() || !target.iter().all(|b| (0x21..0x7f).contains(b) && *b != b'#') {
        return Err(400);
    }
    let version = parse_http_version(version)?;
    // Both are ASCII, checked above.
    let method = std::str::from_utf8(method)
        .ok()
        .and_then(|m| m.parse().ok())
        .ok_or(400u16)?;
    let target = String::from_utf8(target.to_vec()).map_err(|_| 400u16)?;
    Ok((method, target, version))
}

/// gatehouse patch: parses one header line strictly (RFC 9112 section 5):
/// the name a token directly followed by `:` (no space before it, `400`);
/// the value visible ASCII, spaces and tabs, without other control
/// characters (`400`; bytes past ASCII are refused too, as the value is
/// kept as ASCII); a line that starts with a space or tab is an obsolete
/// line folding (`400`).
fn parse_header_line(line: &[u8]) -> Result<Header, u16> {
    let colon = line.iter().position(|b| *b == b':').ok_or(400u16)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
        return Err(400);
    }
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    let value = &value[start..end];
    if !value
        .iter()
        .all(|b| *b == b'\t' || (0x20..0x7f).contains(b))
    {
        return Err(400);
    }
    Header::from_bytes(name, value).map_err(|_| 400)
}

/// gatehouse patch: whether `host` is a plausible `Host` value
/// (`uri-host [ ":" port ]`): no userinfo, path, spaces or controls.
fn is_host(host: &str) -> bool {
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&b))
}

/// gatehouse patch: checks the request target against its method and the
/// `Host` header (RFC 9112 section 3.2) and returns the path to serve:
///
/// - HTTP/1.1 needs exactly one `Host`, HTTP/1.0 at most one, and it must
///   look like a host (`400`);
/// - origin-form (`/path?query`) is taken as it is;
/// - `*` only for `OPTIONS`;
/// - absolute-form (`http://host/path`) only when its authority is the
///   `Host` header, and then served as the path it carries: otherwise a
///   client could name one host to a front proxy and another to gatehouse;
/// - anything else (authority-form, `@host:port/...`, a bare word) is
///   refused with `400`: gatehouse is no forward proxy, and a target that
///   is not a path must never be glued onto an upstream's address.
fn resolve_target(
    method: &Method,
    target: String,
    version: &HTTPVersion,
    headers: &[Header],
) -> Result<String, u16> {
    let mut hosts = headers.iter().filter(|h| h.field.equiv("Host"));
    let host = hosts.next().map(|h| h.value.as_str());
    if hosts.next().is_some() || (host.is_none() && *version >= HTTPVersion(1, 1)) {
        return Err(400);
    }
    if let Some(h) = host {
        if !is_host(h) {
            return Err(400);
        }
    }
    if target.starts_with('/') {
        return Ok(target);
    }
    if target == "*" {
        return if *method == Method::Options {
            Ok(target)
        } else {
            Err(400)
        };
    }
    let lower = target.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return Err(400);
    };
    let split = rest.find(|c| c == '/' || c == '?').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    match host {
        Some(h) if !authority.is_empty() && authority.eq_ignore_ascii_case(h) => {}
        _ => return Err(400),
    }
    Ok(if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    })
}

#[cfg(test)]
mod test {
    use super::{parse_header_line, parse_request_line, resolve_target};
    use crate::common::HTTPVersion;
    use crate::{Header, Method};

    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = parse_request_line(b"GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(parse_request_line(b"GET /hello").is_err());
        assert!(parse_request_line(b"qsd qsd qsd").is_err());
    }

    #[test]
    fn loose_request_lines_are_refused() {
        for line in [
            &b"GET  / HTTP/1.1"[..],
            b"GET / HTTP/1.1 ",
            b" GET / HTTP/1.1",
            b"GET /a\tb HTTP/1.1",
            b"GET /a\0b HTTP/1.1",
            b"GET /a\x7fb HTTP/1.1",
            b"GET /\xc3\xa9 HTTP/1.1",
            b"GET /a#b HTTP/1.1",
            b"GET /private/x#/../../index.html HTTP/1.1",
            b"GET /a?q=1#/../b HTTP/1.1",
            b"G(T / HTTP/1.1",
            b"GET / http/1.1",
            b"GET / HTTP/1.1.1",
            b"GET /",
        ] {
            assert_eq!(
                parse_request_line(line).err(),
                Some(400),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(parse_request_line(b"GET / HTTP/2.0").err(), Some(505));
        assert_eq!(parse_request_line(b"GET / HTTP/0.9").err(), Some(505));
        assert!(parse_request_line(b"GET / HTTP/1.0").is_ok());
        assert!(parse_request_line(b"M-SEARCH * HTTP/1.1").is_ok());
    }

    #[test]
    fn header_lines_are_strict() {
        let h = parse_header_line(b"X-A:  v a\tl \t").unwrap();
        assert!(h.field.equiv("x-a"));
        assert_eq!(h.value.as_str(), "v a\tl");
        assert_eq!(parse_header_line(b"X-A:").unwrap().value.as_str(), "");
        for line in [
            &b"X-A : v"[..],
            b" X-A: v",
            b"\tfolded",
            b"X A: v",
            b"X-A",
            b": v",
            b"X-A: a\0b",
            b"X-A: a\x1bb",
            b"X-A: a\x7fb",
            b"X-A: caf\xc3\xa9",
            b"X(A): v",
        ] {
            assert_eq!(
                parse_header_line(line).err(),
                Some(400),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    fn host(h: &str) -> Vec<Header> {
        vec![Header::from_bytes(&b"Host"[..], h.as_bytes()).unwrap()]
    }

    #[test]
    fn targets_are_paths_or_name_their_host() {
        let v11 = HTTPVersion(1, 1);
        let get = Method::Get;
        let t = |m: &Method, target: &str, headers: &[Header]| {
            resolve_target(m, target.to_owned(), &v11, headers)
        };
        assert_eq!(t(&get, "/a?b", &host("x")), Ok("/a?b".to_owned()));
        assert_eq!(
            t(&get, "http://X:8080/a?b", &host("x:8080")),
            Ok("/a?b".to_owned())
        );
        assert_eq!(t(&get, "http://x", &host("x")), Ok("/".to_owned()));
        assert_eq!(t(&get, "http://x?q", &host("x")), Ok("/?q".to_owned()));
        assert_eq!(t(&get, "http://y/a", &host("x")), Err(400));
        assert_eq!(t(&get, "http://u@x/a", &host("x")), Err(400));
        assert_eq!(t(&get, "@127.0.0.1:3101/admin", &host("x")), Err(400));
        assert_eq!(t(&get, "1/x", &host("x")), Err(400));
        assert_eq!(t(&get, "x:80", &host("x")), Err(400));
        assert_eq!(t(&get, "*", &host("x")), Err(400));
        assert_eq!(t(&Method::Options, "*", &host("x")), Ok("*".to_owned()));
        assert_eq!(t(&get, "/", &[]), Err(400), "HTTP/1.1 needs a Host");
        let two = [host("x"), host("x")].concat();
        assert_eq!(t(&get, "/", &two), Err(400));
        assert_eq!(t(&get, "/", &host("a@b")), Err(400));
        assert_eq!(t(&get, "/", &host("a/b")), Err(400));
        assert_eq!(
            resolve_target(&get, "/".to_owned(), &HTTPVersion(1, 0), &[]),
            Ok("/".to_owned())
        );
    }
}
