//! Upgraded connections (WebSocket) through the built-in proxy: the
//! handshake is forwarded to the upstream over a plain TCP connection, and
//! once the upstream answers `101`, bytes flow both ways untouched, one
//! thread per direction, until either side closes.
//!
//! A tunnel has no idle cap of its own while both ends are there: reads
//! from the client give up every `body_timeout` (the socket's read timeout,
//! set by the HTTP layer) and are simply tried again, so a quiet WebSocket
//! stays open; only a tunnel with no byte either way for [`TUNNEL_IDLE`] is
//! closed, so one whose client vanished without a word does not hold its
//! descriptors and threads for ever. A client that stops reading is cut off
//! by the write timeout (`body_timeout`) once the buffers are full.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rouille::{ReadWrite, Response, ResponseBody, Upgrade};

use crate::auth::apps::App;

/// The longest response head accepted from an upstream.
const MAX_HEAD: usize = 16 * 1024;

/// A tunnel with no byte either way for this long is closed.
pub const TUNNEL_IDLE: Duration = Duration::from_secs(3600);

/// Forwards an upgrade request for `path` on `app` with `headers` (already
/// filtered and carrying the identity) and answers as the upstream does:
/// `101` with a connection that relays both ways, or the upstream's refusal.
///
/// # Errors
///
/// The upstream cannot be reached in `timeout` or answers nonsense (the
/// caller answers 502 or 504).
pub(super) fn open(
    app: &App,
    method: &str,
    path: &str,
    protocol: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<Response, io::Error> {
    let upstream = app
        .upstream
        .as_ref()
        .ok_or_else(|| io::Error::other("the app has no upstream"))?;
    // This head is written by hand, so nothing goes into it unchecked: a
    // bare LF in the target once became `Remote-User` headers here. The
    // caller hands over the normalised target and filtered headers; this
    // is the last line of defence, and refuses rather than repairs.
    let unfit = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    if !is_token(method) {
        return Err(unfit("the method is not a token"));
    }
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(unfit("the target is not a normalised path"));
    }
    if !is_field_value(protocol) {
        return Err(unfit("the Upgrade header is not a field value"));
    }
    let addr = upstream
        .authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("the upstream's name has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;

    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n",
        upstream.base, upstream.authority
    );
    for (name, value) in headers {
        if is_token(name) && is_field_value(value) {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;

    let (status, response_headers, leftover) = read_head(&mut stream)?;
    let mut kept = Vec::new();
    let mut upgrade = None;
    for (name, value) in response_headers {
        if !is_token(&name) || !is_field_value(&value) {
            // Not a header line, or one that would split the head
            // gatehouse writes to the client.
            continue;
        }
        match name.to_ascii_lowercase().as_str() {
            "upgrade" => upgrade = Some(value),
            "connection" | "content-length" | "transfer-encoding" | "keep-alive" => {}
            _ => kept.push((name.into(), value.into())),
        }
    }
    if status != 101 {
        // The upstream said no (426, 403...): pass its answer on, body
        // included as far as it arrived with the head.
        return Ok(Response {
            status_code: status,
            headers: kept,
            data: ResponseBody::from_data(leftover),
            upgrade: None,
        });
    }
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    kept.push((
        "Upgrade".into(),
        upgrade.unwrap_or_else(|| protocol.to_owned()).into(),
    ));
    Ok(Response {
        status_code: 101,
        headers: kept,
        data: ResponseBody::empty(),
        upgrade: Some(Box::new(Relay {
            upstream: Some(stream),
            leftover,
        })),
    })
}

/// RFC 9110 `token`: a method or a header name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 9110 `field-value`: no control character but HTAB.
fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || !b.is_ascii_control())
}

/// A response head: the status and headers, and whatever bytes came after
/// it in the same reads.
type Head = (u16, Vec<(String, String)>, Vec<u8>);

/// Reads a response head.
fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(bad("the upstream's response head is too long"));
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("the upstream closed before answering"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| bad("a response head not in UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| bad("no status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, buf[end + 4..].to_vec()))
}

/// Relays an upgraded client connection and the upstream connection.
struct Relay {
    upstream: Option<TcpStream>,
    leftover: Vec<u8>,
}

impl Upgrade for Relay {
    fn build(&mut self, socket: Box<dyn ReadWrite + Send>) {
        let Some(upstream) = self.upstream.take() else {
            return;
        };
        let Some((mut from_client, mut to_client)) = socket.split() else {
            return;
        };
        let Ok(mut from_upstream) = upstream.try_clone() else {
            return;
        };
        let mut to_upstream = upstream;
        let leftover = std::mem::take(&mut self.leftover);
        let activity = Arc::new(Activity::new());
        let down_activity = Arc::clone(&activity);
        let up = std::thread::Builder::new()
            .name("gatehouse-tunnel-up".into())
            .spawn(move || {
                let _ = pump(&mut from_client, &mut to_upstream, &activity, true);
                // The client is gone: end the upstream connection, which
                // also ends the other direction.
                let _ = to_upstream.shutdown(Shutdown::Both);
            });
        if up.is_err() {
            return;
        }
        let _ = std::thread::Builder::new()
            .name("gatehouse-tunnel-down".into())
            .spawn(move || {
                let _ = to_client
                    .write_all(&leftover)
                    .and_then(|()| to_client.flush());
                let _ = pump(&mut from_upstream, &mut to_client, &down_activity, false);
                let _ = from_upstream.shutdown(Shutdown::Both);
                // Dropping the client's writing half closes it towards the
                // client, whose reading half then ends too.
            });
    }
}

/// When a byte last went through a tunnel, either way.
struct Activity {
    start: Instant,
    /// Milliseconds from `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// Copies until end of stream or an error, flushing every chunk (the
/// client's half is buffered). With `patient`, a read that timed out is
/// tried again unless the tunnel has been idle both ways for
/// [`TUNNEL_IDLE`].
fn pump(
    from: &mut dyn Read,
    to: &mut dyn Write,
    activity: &Activity,
    patient: bool,
) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if patient
                    && matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    )
                    && activity.idle() < TUNNEL_IDLE =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        activity.touch();
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_and_clean_values_go_into_the_head() {
        assert!(is_token("Sec-WebSocket-Key"));
        for bad in ["", "Remote User", "A:b", "x\ny", "caf\u{e9}"] {
            assert!(!is_token(bad), "{bad:?}");
        }
        assert!(is_field_value("a\tb c"));
        for bad in ["a\nRemote-User: root", "a\rb", "a\0"] {
            assert!(!is_field_value(bad), "{bad:?}");
        }
    }
}
