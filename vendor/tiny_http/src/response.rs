use crate::common::{HTTPVersion, Header, StatusCode};
use httpdate::HttpDate;
use std::cmp::Ordering;
use std::convert::TryFrom;
use std::sync::mpsc::Receiver;

use std::io::Result as IoResult;
use std::io::{self, Cursor, Read, Write};

use std::fs::File;

use std::str::FromStr;
use std::time::SystemTime;

/// Object representing an HTTP response whose purpose is to be given to a `Request`.
///
/// Some headers cannot be changed. Trying to define the value
/// of one of these will have no effect:
///
///  - `Connection`
///  - `Trailer`
///  - `Transfer-Encoding`
///  - `Upgrade`
///
/// Some headers have special behaviors:
///
///  - `Content-Encoding`: If you define this header, the library
///     will assume that the data from the `Read` object has the specified encoding
///     and will just pass-through.
///
///  - `Content-Length`: The length of the data should be set manually
///     using the `Reponse` object's API. Attempting to set the value of this
///     header will be equivalent to modifying the size of the data but the header
///     itself may not be present in the final result.
///
///  - `Content-Type`: You may only set this header to one value at a time. If you
///     try to set it more than once, the existing value will be overwritten. This
///     behavior differs from the default for most headers, which is to allow them to
///     be set multiple times in the same response.
///
pub struct Response<R> {
    reader: R,
    status_code: StatusCode,
    headers: Vec<Header>,
    data_length: Option<usize>,
    chunked_threshold: Option<usize>,
}

/// A `Response` without a template parameter.
pub type ResponseBox = Response<Box<dyn Read + Send>>;

/// Transfer encoding to use when sending the message.
/// Note that only *supported* encoding are listed here.
#[derive(Copy, Clone)]
enum TransferEncoding {
    Identity,
    Chunked,
}

impl FromStr for TransferEncoding {
    type Err = ();

    fn from_str(input: &str) -> Result<TransferEncoding, ()> {
        if input.eq_ignore_ascii_case("identity") {
            Ok(TransferEncoding::Identity)
        } else if input.eq_ignore_ascii_case("chunked") {
            Ok(TransferEncoding::Chunked)
        } else {
            Err(())
        }
    }
}

/// Builds a Date: header with the current date.
fn build_date_header() -> Header {
    // gatehouse patch: format the date once per second per thread.
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u64, Header)>> =
            const { std::cell::RefCell::new(None) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((s, header)) if *s == second => header.clone(),
            _ => {
                let d = HttpDate::from(now);
                let header =
                    Header::from_bytes(&b"Date"[..], &d.to_string().into_bytes()[..]).unwrap();
                *last = Some((second, header.clone()));
                header
            }
        }
    })
}

fn write_message_header<W>(
    mut writer: W,
    http_version: &HTTPVersion,
    status_code: &StatusCode,
    headers: &[Header],
) -> IoResult<()>
where
    W: Write,
{
    // gatehouse patch: assemble the status line and headers in memory and
    // write them at once (upstream wrote each piece through the writer's
    // mutex, four times per header).
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/");
    out.extend_from_slice(http_version.0.to_string().as_bytes());
    out.push(b'.');
    out.extend_from_slice(http_version.1.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status_code.0.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status_code.default_reason_phrase().as_bytes());
    out.extend_from_slice(b"\r\n");

    // writing headers
    for header in headers.iter() {
        out.extend_from_slice(header.field.as_str().as_ref());
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value.as_str().as_ref());
        out.extend_from_slice(b"\r\n");
    }

    // separator between header and data
    out.extend_from_slice(b"\r\n");
    writer.write_all(&out)
}

fn choose_transfer_encoding(
    status_code: StatusCode,
    request_headers: &[Header],
    http_version: &HTTPVersion,
    entity_length: &Option<usize>,
    has_additional_headers: bool,
    chunked_threshold: usize,
) -> TransferEncoding {
    use crate::util;

    // HTTP 1.0 doesn't support other encoding
    if *http_version <= (1, 0) {
        return TransferEncoding::Identity;
    }

    // Per section 3.3.1 of RFC7230:
    // A server MUST NOT send a Transfer-Encoding header field in any response with a status code
    // of 1xx (Informational) or 204 (No Content).
    if status_code.0 < 200 || status_code.0 == 204 {
        return TransferEncoding::Identity;
    }

    // parsing the request's TE header
    let user_request = request_headers
        .iter()
        // finding TE
        .find(|h| h.field.equiv("TE"))
        // getting its value
        .map(|h| h.value.clone())
        // getting the corresponding TransferEncoding
        .and_then(|value| {
            // getting list of requested elements
            let mut parse = util::parse_header_value(value.as_str()); // TODO: remove conversion

            // sorting elements by most priority
            parse.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(Ordering::Equal));

            // trying to parse each requested encoding
            for value in parse.iter() {
                // q=0 are ignored
                if value.1 <= 0.0 {
                    continue;
                }

                if let Ok(te) = TransferEncoding::from_str(value.0) {
                    return Some(te);
                }
            }

            // encoding not found
            None
        });

    if let Some(user_request) = user_request {
        return user_request;
    }

    // if we have additional headers, using chunked
    if has_additional_headers {
        return TransferEncoding::Chunked;
    }

    // if we don't have a Content-Length, or if the Content-Length is too big, using chunks writer
    if entity_length
        .as_ref()
        .map_or(true, |val| *val >= chunked_threshold)
    {
        return TransferEncoding::Chunked;
    }

    // Identity by default
    TransferEncoding::Identity
}

/// gatehouse patch: how a body in an [`Outgoing`] is framed.
#[derive(Clone, Copy, Debug)]
enum BodyFraming {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length`, with this much left to send.
    Length(u64),
    /// Until the connection closes (no length; or no body at all).
    UntilClose,
}

impl BodyFraming {
    /// Nothing of the body is left to send.
    fn done(&self) -> bool {
        matches!(self, BodyFraming::Length(0))
    }
}

/// gatehouse patch: what `Outgoing::send` managed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// All of it (and flushed, if asked).
    Done,
    /// The writer would have waited for the client (or the rest is to be
    /// handed over): sending stopped, and can go on later, from the same
    /// byte, on another thread.
    Blocked,
}

/// The most body read from the reader at a time.
const PIECE: usize = 16 * 1024;

/// gatehouse patch: an answer on its way out, resumable. It holds the bytes
/// ready to go (the head, then each piece of the body, framed) and the
/// rest of the body; [`Outgoing::send`] writes until done or until the
/// writer would wait for a slow client (`WouldBlock`), and a later call,
/// on any thread, carries on where it stopped. A request thread sends what
/// goes at once and leaves the rest to the connection's own thread, so a
/// client's reading pace never holds a request thread.
pub(crate) struct Outgoing<R> {
    buf: Vec<u8>,
    pos: usize,
    body: Option<R>,
    framing: BodyFraming,
    /// The head is in `buf`, the body's first piece still to be added.
    head_pending: bool,
    /// Flush the writer once all is written (`Request::respond` does;
    /// `raw_print` leaves that to its caller).
    pub(crate) flush_at_end: bool,
    /// Stop (`Sent::Blocked`) once the first piece is out if more is to
    /// come: a body longer than a piece, or one whose end is unknown (a
    /// stream from an upstream), then goes on from the connection's own
    /// thread, so a request thread waits on neither a slow client nor a
    /// slow (or endless: server-sent events) upstream body.
    pub(crate) hand_over: bool,
    /// The body ends with the connection: it must be closed after it.
    pub(crate) close_after: bool,
}

impl<R: Read> Outgoing<R> {
    /// Writes what is left, reading the body as it goes.
    ///
    /// # Errors
    ///
    /// The writer's, or the body's (a body that ends before its
    /// `Content-Length` is `UnexpectedEof`: the connection must not carry
    /// another answer after it).
    pub(crate) fn send<W: Write>(&mut self, writer: &mut W) -> IoResult<Sent> {
        loop {
            // The head goes out with the first piece of the body (one write
            // for a small answer); each later piece as soon as it is read.
            if self.head_pending {
                self.head_pending = false;
                self.fill()?;
            }
            while self.pos < self.buf.len() {
                match writer.write(&self.buf[self.pos..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.pos += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sent::Blocked),
                    Err(e) => return Err(e),
                }
            }
            self.buf.clear();
            self.pos = 0;
            if self.body.is_some() && !self.framing.done() {
                // Each piece goes out as soon as it is read: a stream (one
                // event at a time from an upstream) is not held back in a
                // buffer until enough of it has come.
                match writer.flush() {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sent::Blocked),
                    Err(e) => return Err(e),
                }
            }
            // More than one piece: the rest is for the connection's thread.
            if self.hand_over && self.body.is_some() && !self.framing.done() {
                self.hand_over = false;
                return Ok(Sent::Blocked);
            }
            if self.fill()? {
                continue;
            }
            if self.flush_at_end {
                match writer.flush() {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sent::Blocked),
                    Err(e) => return Err(e),
                }
            }
            return Ok(Sent::Done);
        }
    }

    /// Appends the next piece of the body to `buf`, framed; false when the
    /// body is done (nothing was added, or only the last chunk).
    fn fill(&mut self) -> IoResult<bool> {
        let Some(body) = self.body.as_mut() else {
            return Ok(false);
        };
        let want = match self.framing {
            BodyFraming::Length(left) => usize::try_from(left).unwrap_or(PIECE).min(PIECE),
            _ => PIECE,
        };
        let chunked = matches!(self.framing, BodyFraming::Chunked);
        // Room for a chunk's size line, moved up to fit once it is known.
        let room = if chunked { 10 } else { 0 };
        let start = self.buf.len();
        let n = if want == 0 {
            0
        } else {
            self.buf.resize(start + room + want, 0);
            loop {
                match body.read(&mut self.buf[start + room..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(start);
                        self.body = None;
                        return Err(e);
                    }
                }
            }
        };
        if n == 0 {
            self.buf.truncate(start);
            self.body = None;
            return match self.framing {
                BodyFraming::Chunked => {
                    self.buf.extend_from_slice(b"0\r\n\r\n");
                    Ok(true)
                }
                BodyFraming::Length(left) if left > 0 => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the body ended before its Content-Length",
                )),
                _ => Ok(false),
            };
        }
        self.buf.truncate(start + room + n);
        match &mut self.framing {
            BodyFraming::Chunked => {
                let line = format!("{n:x}\r\n");
                let at = start + room - line.len();
                self.buf[at..start + room].copy_from_slice(line.as_bytes());
                self.buf.copy_within(at..start + room + n, start);
                self.buf.truncate(start + line.len() + n);
                self.buf.extend_from_slice(b"\r\n");
            }
            BodyFraming::Length(left) => *left -= n as u64,
            BodyFraming::UntilClose => {}
        }
        Ok(true)
    }
}

impl<R> Response<R>
where
    R: Read,
{
    /// Creates a new Response object.
    ///
    /// The `additional_headers` argument is a receiver that
    ///  may provide headers even after the response has been sent.
    ///
    /// All the other arguments are straight-forward.
    pub fn new(
        status_code: StatusCode,
        headers: Vec<Header>,
        data: R,
        data_length: Option<usize>,
        additional_headers: Option<Receiver<Header>>,
    ) -> Response<R> {
        let mut response = Response {
            reader: data,
            status_code,
            headers: Vec::with_capacity(16),
            data_length,
            chunked_threshold: None,
        };

        for h in headers {
            response.add_header(h)
        }

        // dummy implementation
        if let Some(additional_headers) = additional_headers {
            for h in additional_headers.iter() {
                response.add_header(h)
            }
        }

        response
    }

    /// Set a threshold for `Content-Length` where we chose chunked
    /// transfer. Notice that chunked transfer might happen regardless of
    /// this threshold, for instance when the request headers indicate
    /// it is wanted or when there is no `Content-Length`.
    pub fn with_chunked_threshold(mut self, length: usize) -> Response<R> {
        self.chunked_threshold = Some(length);
        self
    }

    /// Convert the response into the underlying `Read` type.
    ///
    /// This is mainly useful for testing as it must consume the `Response`.
    pub fn into_reader(self) -> R {
        self.reader
    }

    /// The current `Content-Length` threshold for switching over to
    /// chunked transfer. The default is 32768 bytes. Notice that
    /// chunked transfer is mutually exclusive with sending a
    /// `Content-Length` header as per the HTTP spec.
    pub fn chunked_threshold(&self) -> usize {
        self.chunked_threshold.unwrap_or(32768)
    }

    /// gatehouse patch: marks the answer as the connection's last, for a
    /// request whose body was left unread (`add_header` ignores
    /// `Connection`, which is the library's to set).
    pub(crate) fn with_connection_close(mut self) -> Self {
        self.headers.retain(|h| !h.field.equiv("Connection"));
        if let Ok(h) = Header::from_bytes(&b"Connection"[..], &b"close"[..]) {
            self.headers.push(h);
        }
        self
    }

    /// Adds a header to the list.
    /// Does all the checks.
    pub fn add_header<H>(&mut self, header: H)
    where
        H: Into<Header>,
    {
        let header = header.into();

        // ignoring forbidden headers
        if header.field.equiv("Connection")
            || header.field.equiv("Trailer")
            || header.field.equiv("Transfer-Encoding")
            || header.field.equiv("Upgrade")
        {
            return;
        }

        // if the header is Content-Length, setting the data length
        if header.field.equiv("Content-Length") {
            if let Ok(val) = usize::from_str(header.value.as_str()) {
                self.data_length = Some(val)
            }

            return;
        // if the header is Content-Type and it's already set, overwrite it
        } else if header.field.equiv("Content-Type") {
            if let Some(content_type_header) = self
                .headers
                .iter_mut()
                .find(|h| h.field.equiv("Content-Type"))
            {
                content_type_header.value = header.value;
                return;
            }
        }

        self.headers.push(header);
    }

    /// Returns the same request, but with an additional header.
    ///
    /// Some headers cannot be modified and some other have a
    ///  special behavior. See the documentation above.
    #[inline]
    pub fn with_header<H>(mut self, header: H) -> Response<R>
    where
        H: Into<Header>,
    {
        self.add_header(header.into());
        self
    }

    /// Returns the same request, but with a different status code.
    #[inline]
    pub fn with_status_code<S>(mut self, code: S) -> Response<R>
    where
        S: Into<StatusCode>,
    {
        self.status_code = code.into();
        self
    }

    /// Returns the same request, but with different data.
    pub fn with_data<S>(self, reader: S, data_length: Option<usize>) -> Response<S>
    where
        S: Read,
    {
        Response {
            reader,
            headers: self.headers,
            status_code: self.status_code,
            data_length,
            chunked_threshold: self.chunked_threshold,
        }
    }

    /// Prints the HTTP response to a writer.
    ///
    /// This function is the one used to send the response to the client's socket.
    /// Therefore you shouldn't expect anything pretty-printed or even readable.
    ///
    /// The HTTP version and headers passed as arguments are used to
    ///  decide which features (most notably, encoding) to use.
    ///
    /// Note: does not flush the writer.
    pub fn raw_print<W: Write>(
        self,
        mut writer: W,
        http_version: HTTPVersion,
        request_headers: &[Header],
        do_not_send_body: bool,
        upgrade: Option<&str>,
    ) -> IoResult<()> {
        // gatehouse patch: the answer is prepared once (`prepare`) and sent
        // piece by piece (`Outgoing`), as `Request::respond` does.
        let mut out = self.prepare(http_version, request_headers, do_not_send_body, upgrade);
        out.flush_at_end = false;
        match out.send(&mut writer)? {
            Sent::Done => Ok(()),
            Sent::Blocked => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the client is not reading",
            )),
        }
    }

    /// gatehouse patch: the answer as it goes on the wire: the status line
    /// and headers assembled, and the body to follow with its framing.
    ///
    /// Upstream read a body of unknown length whole into memory when it
    /// could not be sent chunked (an HTTP/1.0 client, or one asking for
    /// `TE: identity`): a proxied download of any size was held in memory.
    /// Such a body is now sent as it comes, without a length, and the
    /// connection closed after it (HTTP/1.1 section 6.3: the end of the
    /// connection ends the body); `Outgoing::close_after` says so.
    pub(crate) fn prepare(
        mut self,
        http_version: HTTPVersion,
        request_headers: &[Header],
        do_not_send_body: bool,
        upgrade: Option<&str>,
    ) -> Outgoing<R> {
        let mut transfer_encoding = Some(choose_transfer_encoding(
            self.status_code,
            request_headers,
            &http_version,
            &self.data_length,
            false, /* TODO */
            self.chunked_threshold(),
        ));

        // add `Date` if not in the headers
        if !self.headers.iter().any(|h| h.field.equiv("Date")) {
            self.headers.insert(0, build_date_header());
        }

        // add `Server` if not in the headers
        if !self.headers.iter().any(|h| h.field.equiv("Server")) {
            self.headers.insert(
                0,
                Header::from_bytes(&b"Server"[..], &b"tiny-http (Rust)"[..]).unwrap(),
            );
        }

        // handling upgrade
        if let Some(upgrade) = upgrade {
            // gatehouse patch: the protocol name can come from a peer (the
            // built-in proxy passes on the upstream's); one that is no valid
            // header value is left out rather than a panic.
            if let Ok(header) = Header::from_bytes(&b"Upgrade"[..], upgrade.as_bytes()) {
                self.headers.insert(0, header);
            }
            self.headers.insert(
                0,
                Header::from_bytes(&b"Connection"[..], &b"upgrade"[..]).unwrap(),
            );
            transfer_encoding = None;
        }

        // checking whether to ignore the body of the response
        let do_not_send_body = do_not_send_body
            || match self.status_code.0 {
                // status code 1xx, 204 and 304 MUST not include a body
                100..=199 | 204 | 304 => true,
                _ => false,
            };

        let mut close_after = false;
        let framing = match (transfer_encoding, self.data_length) {
            (Some(TransferEncoding::Chunked), _) => {
                self.headers
                    .push(Header::from_bytes(&b"Transfer-Encoding"[..], &b"chunked"[..]).unwrap());
                BodyFraming::Chunked
            }
            (Some(TransferEncoding::Identity), Some(length)) => {
                self.headers.push(
                    Header::from_bytes(&b"Content-Length"[..], length.to_string().as_bytes())
                        .unwrap(),
                );
                BodyFraming::Length(length as u64)
            }
            (Some(TransferEncoding::Identity), None) => {
                // The end of the connection ends the body.
                close_after = !do_not_send_body;
                if close_after {
                    self.headers.retain(|h| !h.field.equiv("Connection"));
                    self.headers
                        .push(Header::from_bytes(&b"Connection"[..], &b"close"[..]).unwrap());
                }
                BodyFraming::UntilClose
            }
            (None, _) => BodyFraming::UntilClose,
        };

        let mut buf = Vec::with_capacity(256 + self.headers.len() * 32);
        write_message_header(&mut buf, &http_version, &self.status_code, &self.headers)
            .expect("writing to memory does not fail");
        let send_body = !do_not_send_body && upgrade.is_none();
        Outgoing {
            buf,
            pos: 0,
            body: if send_body { Some(self.reader) } else { None },
            framing,
            head_pending: true,
            flush_at_end: true,
            hand_over: false,
            close_after,
        }
    }

    /// Retrieves the current value of the `Response` status code
    pub fn status_code(&self) -> StatusCode {
        self.status_code
    }

    /// Retrieves the current value of the `Response` data length
    pub fn data_length(&self) -> Option<usize> {
        self.data_length
    }

    /// Retrieves the current list of `Response` headers
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }
}

impl<R> Response<R>
where
    R: Read + Send + 'static,
{
    /// Turns this response into a `Response<Box<Read + Send>>`.
    pub fn boxed(self) -> ResponseBox {
        Response {
            reader: Box::new(self.reader) as Box<dyn Read + Send>,
            status_code: self.status_code,
            headers: self.headers,
            data_length: self.data_length,
            chunked_threshold: self.chunked_threshold,
        }
    }
}

impl Response<File> {
    /// Builds a new `Response` from a `File`.
    ///
    /// The `Content-Type` will **not** be automatically detected,
    ///  you must set it yourself.
    pub fn from_file(file: File) -> Response<File> {
        let file_size = file.metadata().ok().map(|v| v.len() as usize);

        Response::new(
            StatusCode(200),
            Vec::with_capacity(0),
            file,
            file_size,
            None,
        )
    }
}

impl Response<Cursor<Vec<u8>>> {
    pub fn from_data<D>(data: D) -> Response<Cursor<Vec<u8>>>
    where
        D: Into<Vec<u8>>,
    {
        let data = data.into();
        let data_len = data.len();

        Response::new(
            StatusCode(200),
            Vec::with_capacity(0),
            Cursor::new(data),
            Some(data_len),
            None,
        )
    }

    pub fn from_string<S>(data: S) -> Response<Cursor<Vec<u8>>>
    where
        S: Into<String>,
    {
        let data = data.into();
        let data_len = data.len();

        Response::new(
            StatusCode(200),
            vec![
                Header::from_bytes(&b"Content-Type"[..], &b"text/plain; charset=UTF-8"[..])
                    .unwrap(),
            ],
            Cursor::new(data.into_bytes()),
            Some(data_len),
            None,
        )
    }
}

impl Response<io::Empty> {
    /// Builds an empty `Response` with the given status code.
    pub fn empty<S>(status_code: S) -> Response<io::Empty>
    where
        S: Into<StatusCode>,
    {
        Response::new(
            status_code.into(),
            Vec::with_capacity(0),
            io::empty(),
            Some(0),
            None,
        )
    }

    /// DEPRECATED. Use `empty` instead.
    pub fn new_empty(status_code: StatusCode) -> Response<io::Empty> {
        Response::empty(status_code)
    }
}

impl Clone for Response<io::Empty> {
    fn clone(&self) -> Response<io::Empty> {
        Response {
            reader: io::empty(),
            status_code: self.status_code,
            headers: self.headers.clone(),
            data_length: self.data_length,
            chunked_threshold: self.chunked_threshold,
        }
    }
}
