use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::convert::TryFrom;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use std::sync::mpsc::Sender;

/// gatehouse patch: where a request thread hands a connection's thread the
/// rest of an answer (see `util::handoff`).
type TurnSender = crate::util::handoff::Sender<Turn>;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::limits::{ConnState, Reservation};
use crate::response::Sent;
use crate::util::{ChunkedDecoder, EqualReader, Turn};
use crate::{HTTPVersion, Header, Method, Response, StatusCode};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Body>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // If Some, a message must be sent after responding
    notify_when_responded: Option<Sender<()>>,

    // gatehouse patch: whether the body was read to its end, and the flag
    // that tells the connection to take no further request.
    body_left: BodyLeft,
    closing: Option<Arc<AtomicU8>>,
    /// gatehouse patch: the connection, and where to hand the rest of an
    /// answer that waits for a slow client (its own thread); `None` for a
    /// request made without one (`TestRequest`).
    conn: Option<(Arc<ConnState>, TurnSender)>,
    /// gatehouse patch: what a route reads as the body of a request that
    /// asks for an upgrade: nothing. The connection itself is for the
    /// upgrade (`upgrade`), not for a route to read until it closes.
    no_body: io::Empty,
}

struct NotifyOnDrop<R> {
    sender: Option<Sender<()>>,
    inner: Option<R>,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection was split")
}

impl<R: Read> Read for NotifyOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.as_mut().ok_or_else(gone)?.read(buf)
    }
}
impl<R: Write> Write for NotifyOnDrop<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.as_mut().ok_or_else(gone)?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().ok_or_else(gone)?.flush()
    }
}
impl<R> Drop for NotifyOnDrop<R> {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            // The connection's thread may be gone already; nothing to tell.
            let _ = sender.send(());
        }
    }
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),

    /// gatehouse patch: the body's framing is refused with this status.
    Refused(u16),
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub fn new_request<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    source_data: R,
    mut writer: W,
    conn: Option<(Arc<ConnState>, TurnSender)>,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    // gatehouse patch: the body's framing is decided once, strictly
    // (RFC 9112 section 6): see `body_framing`.
    let framing = body_framing(&version, &headers).map_err(RequestCreationError::Refused)?;
    let content_length = match framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };

    // true if the client sent a `Expect: 100-continue` header
    let expects_continue = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // true if the client sent a `Connection: upgrade` header
    let connection_upgrade = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Connection"))
            .map(|h| h.value.as_str())
        {
            Some(v) if v.to_ascii_lowercase().contains("upgrade") => true,
            _ => false,
        }
    };

    // we wrap `source_data` around a reading whose nature depends on the transfer-encoding and
    // content-length headers
    //
    // gatehouse patch: a body of up to `PREBUFFER` bytes (every body a
    // gatehouse route accepts) is read here, on the connection's own thread
    // and under the connection's body deadline, before the request is
    // handed to a request thread. Read there, a client that trickled its
    // body a byte a second held a request thread for as long as it liked
    // (every read came in under `body_timeout`): twenty such connections
    // took every request thread. A client that waits for `100 Continue`
    // gets it here first. Longer bodies (the built-in proxy's uploads) are
    // streamed to the route after their first `PREBUFFER` bytes.
    let mut sent_continue = false;
    let state = conn.as_ref().map(|(state, _)| state);
    let reader = if connection_upgrade {
        // if we have a `Connection: upgrade`, always keeping the whole reader
        Body::Stream(Box::new(source_data))
    } else {
        match framing {
            Framing::None | Framing::Length(0) => Body::Empty,
            Framing::Length(n) if n <= PREBUFFER => {
                if expects_continue {
                    send_continue(&mut writer, &version, &headers)?;
                    sent_continue = true;
                }
                let mut source_data = source_data;
                match read_ahead(&mut source_data, n as usize, state) {
                    // gatehouse patch: the body ended before its
                    // Content-Length: refused (a client that only
                    // half-closed hears it).
                    Ok(prefix) if (prefix.len() as u64) < n => {
                        return Err(RequestCreationError::Refused(400))
                    }
                    Ok(prefix) => Body::Buffered(prefix),
                    Err(e) => return Err(RequestCreationError::CreationIoError(e)),
                }
            }
            Framing::Length(n) => {
                let source: Box<dyn Read + Send + 'static> = Box::new(source_data);
                Body::Fixed(EqualReader::new(source, n).0)
            }
            Framing::Chunked => {
                if expects_continue {
                    send_continue(&mut writer, &version, &headers)?;
                    sent_continue = true;
                }
                let source: Box<dyn Read + Send + 'static> = Box::new(source_data);
                let mut decoder = ChunkedDecoder::new(source);
                let prefix = match read_ahead(&mut decoder, PREBUFFER as usize + 1, state) {
                    Ok(prefix) => prefix,
                    // Broken framing, or a body cut off: refused, and
                    // where the body ends unknown.
                    Err(e)
                        if matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof) =>
                    {
                        return Err(RequestCreationError::Refused(400))
                    }
                    Err(e) => return Err(RequestCreationError::CreationIoError(e)),
                };
                if prefix.len() as u64 <= PREBUFFER {
                    Body::Buffered(prefix)
                } else {
                    Body::Prefixed(prefix.chain(decoder))
                }
            }
        }
    };

    Ok(Request {
        data_reader: Some(reader),
        response_writer: Some(Box::new(writer) as Box<dyn Write + Send + 'static>),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        // Lengths past `usize` (32-bit targets) are reported unknown.
        body_length: content_length.and_then(|n| usize::try_from(n).ok()),
        must_send_continue: expects_continue && !sent_continue,
        notify_when_responded: None,
        body_left: BodyLeft::Unsettled,
        closing: None,
        conn,
        no_body: io::empty(),
    })
}

/// gatehouse patch: the most of a body read before its request is handed
/// on (see `new_request`): gatehouse's cap on the bodies of its own routes.
pub(crate) const PREBUFFER: u64 = 64 * 1024;

/// gatehouse patch: what of a body read ahead needs no share of the
/// connections' common memory budget (every form gatehouse shows fits).
const ALLOWANCE: usize = 4 * 1024;
/// How much a body read ahead grows by at a time, past the allowance.
const STEP: usize = 16 * 1024;

/// gatehouse patch: reads up to `limit` bytes of a body ahead of its
/// request, into memory that grows as the bytes arrive (never sized from a
/// length the client declared: `Content-Length: 65536` and nothing sent
/// took 64 KiB at once), past [`ALLOWANCE`] taken from the connections'
/// common budget (`state`), waiting for it until the connection's
/// deadline. Fewer bytes than `limit` when the body ended first.
fn read_ahead(
    source: &mut dyn Read,
    limit: usize,
    state: Option<&Arc<ConnState>>,
) -> io::Result<Prefix> {
    let mut reservation = state.map(|s| s.read_ahead().reserve());
    let mut buf: Vec<u8> = Vec::new();
    let mut len = 0;
    while len < limit {
        if len == buf.len() {
            // Full: grow by a step (the allowance first), zeroed once.
            let size = if buf.len() < ALLOWANCE {
                ALLOWANCE
            } else {
                buf.len() + STEP
            }
            .min(limit);
            let beyond = size.saturating_sub(ALLOWANCE.max(buf.len()));
            if let (Some(r), true) = (reservation.as_mut(), beyond > 0) {
                r.grow(beyond, state.and_then(|s| s.deadline()))?;
            }
            buf.reserve_exact(size - buf.len());
            buf.resize(size, 0);
        }
        match source.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(Prefix {
        buf,
        pos: 0,
        reservation,
    })
}

/// gatehouse patch: a body, or the start of one, read ahead into memory;
/// the memory (and its share of the budget) goes as soon as it has been
/// read, not when the request ends (a long upload through the proxy
/// streams on after it).
struct Prefix {
    buf: Vec<u8>,
    pos: usize,
    reservation: Option<Reservation>,
}

impl Prefix {
    fn len(&self) -> usize {
        self.buf.len()
    }
}

impl Read for Prefix {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let rest = &self.buf[self.pos..];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        if self.pos == self.buf.len() && !self.buf.is_empty() {
            self.buf = Vec::new();
            self.pos = 0;
            self.reservation = None;
        }
        Ok(n)
    }
}

/// gatehouse patch: tells a client that waits for it to send its body.
fn send_continue<W: Write>(
    writer: &mut W,
    version: &HTTPVersion,
    headers: &[Header],
) -> Result<(), RequestCreationError> {
    Response::new_empty(StatusCode(100)).raw_print(
        writer.by_ref(),
        version.clone(),
        headers,
        true,
        None,
    )?;
    writer.flush()?;
    Ok(())
}

/// gatehouse patch: how a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// gatehouse patch: the framing of a request body per RFC 9112 section 6,
/// or the status to refuse it with (the connection is then closed, as where
/// the body ends is unknown):
///
/// - `Content-Length` must be plain decimal digits (no sign, no spaces, no
///   list) that fit a `u64`, and when repeated, the same each time: `400`;
/// - `Transfer-Encoding` together with `Content-Length` is the classic
///   request-smuggling pair (a front proxy may pick the other one): `400`;
///   so is `Transfer-Encoding` on HTTP/1.0, and any coding list whose last
///   coding is not `chunked`;
/// - a coding other than one single `chunked` is not implemented: `501`.
pub(crate) fn body_framing(version: &HTTPVersion, headers: &[Header]) -> Result<Framing, u16> {
    let mut length: Option<u64> = None;
    let mut codings: Option<Vec<String>> = None;
    for h in headers {
        if h.field.equiv("Content-Length") {
            let v = h.value.as_str();
            if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(400);
            }
            let n: u64 = v.parse().map_err(|_| 400u16)?;
            if length.is_some_and(|l| l != n) {
                return Err(400);
            }
            length = Some(n);
        } else if h.field.equiv("Transfer-Encoding") {
            let list = codings.get_or_insert_with(Vec::new);
            list.extend(
                h.value
                    .as_str()
                    .split(',')
                    .map(|c| c.trim_matches(|c| c == ' ' || c == '\t'))
                    .filter(|c| !c.is_empty())
                    .map(|c| c.to_ascii_lowercase()),
            );
        }
    }
    match codings {
        None => Ok(length.map_or(Framing::None, Framing::Length)),
        Some(_) if length.is_some() => Err(400),
        Some(_) if *version < HTTPVersion(1, 1) => Err(400),
        Some(list) => match list.as_slice() {
            [only] if only == "chunked" => Ok(Framing::Chunked),
            [.., last] if last == "chunked" => Err(501),
            _ => Err(400),
        },
    }
}

/// gatehouse patch: what `closing` says about the connection after this
/// request: carry on, linger then close (a body left unread may still be
/// arriving: it is read and dropped for a short while on the connection's
/// own thread, so that the client gets the answer rather than a reset),
/// or close.
pub(crate) const OPEN: u8 = 0;
pub(crate) const LINGER: u8 = 1;
pub(crate) const CLOSE: u8 = 2;

/// gatehouse patch: the body's reader, of a kind that knows what is left.
enum Body {
    Empty,
    /// The whole body, read ahead.
    Buffered(Prefix),
    Fixed(EqualReader<Box<dyn Read + Send + 'static>>),
    /// The rest of the connection (`Connection: upgrade`).
    Stream(Box<dyn Read + Send + 'static>),
    /// The first `PREBUFFER` bytes of a longer chunked body, read already,
    /// then the rest.
    Prefixed(io::Chain<Prefix, ChunkedDecoder<Box<dyn Read + Send + 'static>>>),
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Empty => Ok(0),
            Body::Buffered(r) => r.read(buf),
            Body::Fixed(r) => r.read(buf),
            Body::Stream(r) => r.read(buf),
            Body::Prefixed(r) => r.read(buf),
        }
    }
}

/// gatehouse patch: whether the body has been read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLeft {
    /// Not looked at yet.
    Unsettled,
    /// Read to its end: the connection can carry the next request.
    Drained,
    /// Left unread: the connection is closed after the answer.
    Abandoned,
}

impl Request {
    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        // gatehouse patch: an upgraded connection never carries another
        // HTTP request.
        self.body_left = BodyLeft::Abandoned;
        self.close_connection(CLOSE);
        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        if let Some(sender) = self.notify_when_responded.take() {
            let stream = NotifyOnDrop {
                sender: Some(sender),
                inner: Some(stream),
            };
            Box::new(stream) as Box<dyn ReadWrite + Send>
        } else {
            Box::new(stream) as Box<dyn ReadWrite + Send>
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            msg.raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            self.response_writer.as_mut().unwrap().flush().ok();
            self.must_send_continue = false;
        }

        match self.data_reader.as_mut() {
            // gatehouse patch: see `no_body`.
            Some(Body::Stream(_)) | None => &mut self.no_body,
            Some(body) => body,
        }
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        let writer = self.extract_writer_impl();
        if let Some(sender) = self.notify_when_responded.take() {
            let writer = NotifyOnDrop {
                sender: Some(sender),
                inner: Some(writer),
            };
            Box::new(writer) as Box<dyn Write + Send + 'static>
        } else {
            writer
        }
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        Box::new(reader.unwrap())
    }

    /// Sends a response to this request.
    ///
    /// gatehouse patch: the body must be `Send + 'static`: what the client
    /// is too slow to take at once is sent on from the connection's own
    /// thread (see `respond_impl`).
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read + Send + 'static,
    {
        let res = self.respond_impl(response);
        if let Some(sender) = self.notify_when_responded.take() {
            // gatehouse patch: the connection's thread may be gone already.
            let _ = sender.send(());
        }
        res
    }

    /// gatehouse patch: sends `response` as the connection's last answer
    /// (`Connection: close`): the connection reads no further request.
    pub fn respond_and_close<R>(self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read + Send + 'static,
    {
        self.close_connection(CLOSE);
        self.respond(response.with_connection_close())
    }

    /// gatehouse patch: writes the answer as far as the client takes it at
    /// once, and at most its first piece (`PIECE`, 16 KiB) of body; a
    /// client too slow for that (a write finds no room for
    /// [`crate::limits::WRITE_SLICE`]), or a body longer than that or of
    /// unknown length (a download or a stream from an upstream), gets the
    /// rest from the connection's own thread, at its own pace and under
    /// the minimum rate, and this (request) thread is free at once: a
    /// client's reading pace (or an upstream's sending pace) never holds a
    /// request thread. (280 clients reading a proxied download at 16 KiB
    /// every 8 s held every request thread for a minute.)
    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read + Send + 'static,
    {
        // gatehouse patch: an answer to a request whose body is not all
        // read (and which no request thread will wait for) is the
        // connection's last.
        let response = if self.settle_body() {
            response
        } else {
            response.with_connection_close()
        };
        let mut writer = self.extract_writer_impl();

        let do_not_send_body = self.method == Method::Head;
        let mut out = response.prepare(
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        );
        if out.close_after {
            self.close_connection(CLOSE);
        }
        let closing = self.closing.clone();
        // An answer cut off midway (its body failed, or the client went)
        // leaves the client waiting for the rest: the connection ends.
        let cut_off = move |e: IoError| {
            if let Some(flag) = &closing {
                flag.fetch_max(CLOSE, Ordering::SeqCst);
            }
            Self::ignore_client_closing_errors(Err(e))
        };
        let Some((conn, finisher)) = self.conn.take() else {
            return match out.send(&mut writer) {
                Ok(Sent::Done) => Ok(()),
                Ok(Sent::Blocked) => cut_off(io::ErrorKind::WouldBlock.into()),
                Err(e) => cut_off(e),
            };
        };
        out.hand_over = true;
        conn.set_deferrable(true);
        let sent = out.send(&mut writer);
        conn.set_deferrable(false);
        match sent {
            Ok(Sent::Done) => Ok(()),
            Err(e) => cut_off(e),
            Ok(Sent::Blocked) => {
                let rest: Box<dyn FnOnce() + Send> = Box::new(move || {
                    if let Err(e) = out.send(&mut writer) {
                        let _ = cut_off(e);
                    }
                    // Dropping the writer says the answer is done.
                    drop(writer);
                });
                // No connection thread to take it (it ended after a last
                // request): it is finished here, as upstream did.
                if let Err(std::sync::mpsc::SendError(Turn::Finish(rest))) =
                    finisher.send(Turn::Finish(rest))
                {
                    rest();
                }
                Ok(())
            }
        }
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }

    pub(crate) fn with_notify_sender(mut self, sender: Sender<()>) -> Self {
        self.notify_when_responded = Some(sender);
        self
    }

    /// gatehouse patch: `flag` is raised when this request leaves its
    /// connection unfit for another request (its body left unread, or the
    /// connection upgraded); the connection then reads no further request.
    pub(crate) fn with_close_flag(mut self, flag: Arc<AtomicU8>) -> Self {
        self.closing = Some(flag);
        self
    }

    /// `how`: [`LINGER`] or [`CLOSE`].
    fn close_connection(&self, how: u8) {
        if let Some(flag) = &self.closing {
            flag.fetch_max(how, Ordering::SeqCst);
        }
    }

    /// gatehouse patch: whether the body has been read to its end, so the
    /// connection can carry the next request (an unread body would
    /// otherwise be parsed as that request: a desync). Nothing is read
    /// here: a request thread never waits on a client's pace (draining
    /// here a body trickled after a `413` held request threads for hours).
    /// A body read ahead whole, or read to its end by the route, is done;
    /// any other is left to the connection's own thread, which lingers
    /// briefly after the answer and closes (the close flag is raised).
    fn settle_body(&mut self) -> bool {
        if self.body_left == BodyLeft::Unsettled {
            let drained = !self.must_send_continue
                && match self.data_reader.as_ref() {
                    None | Some(Body::Stream(_)) => false,
                    Some(Body::Empty) | Some(Body::Buffered(_)) => true,
                    Some(Body::Fixed(r)) => r.remaining() == 0,
                    Some(Body::Prefixed(r)) => r.get_ref().1.is_done(),
                };
            self.body_left = if drained {
                BodyLeft::Drained
            } else {
                BodyLeft::Abandoned
            };
        }
        if self.body_left == BodyLeft::Drained {
            return true;
        }
        // A client waiting for `100 Continue` sends nothing more; an
        // upgraded stream is not ours to read.
        let quiet = self.must_send_continue
            || matches!(self.data_reader.as_ref(), None | Some(Body::Stream(_)));
        self.close_connection(if quiet { CLOSE } else { LINGER });
        false
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
            if let Some(sender) = self.notify_when_responded.take() {
                // gatehouse patch: never a panic in `drop`.
                let _ = sender.send(());
            }
        } else {
            // gatehouse patch: answered through `into_writer`: the body is
            // still settled before the next request is read.
            self.settle_body();
        }
    }
}

/// Trait that regroups the `Read` and `Write` traits.
///
/// gatehouse patch: implemented by the connections `upgrade` returns (no
/// longer by every `Read + Write` type), with `split`, so that one thread
/// can read an upgraded connection while another writes to it.
pub trait ReadWrite: Read + Write {
    /// The reading and the writing half of the connection, if it has them.
    fn split(self: Box<Self>) -> Option<(Box<dyn Read + Send>, Box<dyn Write + Send>)>;
}

type Halves = (Box<dyn Read + Send + 'static>, Box<dyn Write + Send + 'static>);

impl ReadWrite for crate::util::CustomStream<Box<dyn Read + Send + 'static>, Box<dyn Write + Send + 'static>> {
    fn split(self: Box<Self>) -> Option<Halves> {
        Some(self.into_parts())
    }
}

impl ReadWrite for NotifyOnDrop<crate::util::CustomStream<Box<dyn Read + Send + 'static>, Box<dyn Write + Send + 'static>>> {
    fn split(mut self: Box<Self>) -> Option<Halves> {
        // The connection counts as answered when the writing half goes.
        let sender = self.sender.take();
        let inner = self.inner.take()?;
        let (reader, writer) = inner.into_parts();
        let writer = NotifyOnDrop {
            sender,
            inner: Some(writer),
        };
        Some((reader, Box::new(writer)))
    }
}

#[cfg(test)]
mod tests {
    use super::{body_framing, Framing, Request};
    use crate::{HTTPVersion, Header};

    fn framing(version: (u8, u8), headers: &[(&str, &str)]) -> Result<Framing, u16> {
        let headers: Vec<Header> = headers
            .iter()
            .map(|(k, v)| Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap())
            .collect();
        body_framing(&HTTPVersion(version.0, version.1), &headers)
    }

    #[test]
    fn a_body_is_framed_one_way_only() {
        let v11 = (1, 1);
        assert_eq!(framing(v11, &[]), Ok(Framing::None));
        assert_eq!(framing(v11, &[("Content-Length", "12")]), Ok(Framing::Length(12)));
        assert_eq!(
            framing(v11, &[("content-length", "7"), ("Content-Length", "7")]),
            Ok(Framing::Length(7))
        );
        assert_eq!(
            framing(v11, &[("Transfer-Encoding", "Chunked")]),
            Ok(Framing::Chunked)
        );
        for cl in ["", "+1", "-1", "1 2", "1,1", "0x1", "1.0", "99999999999999999999"] {
            assert_eq!(framing(v11, &[("Content-Length", cl)]), Err(400), "{cl:?}");
        }
        assert_eq!(
            framing(v11, &[("Content-Length", "1"), ("Content-Length", "2")]),
            Err(400)
        );
        assert_eq!(
            framing(v11, &[("Content-Length", "1"), ("Transfer-Encoding", "chunked")]),
            Err(400)
        );
        assert_eq!(framing((1, 0), &[("Transfer-Encoding", "chunked")]), Err(400));
        assert_eq!(framing(v11, &[("Transfer-Encoding", "gzip, chunked")]), Err(501));
        assert_eq!(framing(v11, &[("Transfer-Encoding", "chunked, gzip")]), Err(400));
        assert_eq!(framing(v11, &[("Transfer-Encoding", "")]), Err(400));
        assert_eq!(
            framing(
                v11,
                &[("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")]
            ),
            Err(501)
        );
    }

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
