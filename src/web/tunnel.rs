//! Upgraded connections (WebSocket) through the built-in proxy: the
//! handshake is forwarded to the upstream over a plain TCP connection, and
//! once the upstream answers `101`, bytes flow both ways untouched, one
//! thread per direction, until either side closes.
//!
//! Reads from the client give up every `body_timeout` (the socket's read
//! timeout, set by the HTTP layer) and are simply tried again, so a quiet
//! WebSocket stays open up to `tunnel_idle_timeout`: a tunnel with no byte
//! either way for that long is closed, so one whose client vanished without
//! a word (or that is held open on purpose) does not hold its connection,
//! descriptors and threads for ever. A client that stops reading is cut off
//! by the HTTP layer's write limits (`body_timeout`, `min_send_rate`).
//!
//! Each user may hold at most `max_connections_per_client` tunnels at once
//! ([`Tunnels`]); a tunnel's connection also counts against its client
//! address in the HTTP layer. One signed-in user holding quiet tunnels
//! took every connection slot, and everyone else was refused.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rouille::{ReadWrite, Response, ResponseBody, Upgrade};

use crate::auth::apps::App;
use crate::identity::UserId;

/// The longest response head accepted from an upstream.
const MAX_HEAD: usize = 16 * 1024;

/// The open tunnels, counted per user, and their limits.
pub struct Tunnels {
    /// Most tunnels one user may hold at once (0: no limit).
    per_user: usize,
    /// A tunnel with no byte either way for this long is closed.
    idle: Duration,
    open: Mutex<HashMap<UserId, usize>>,
}

impl Tunnels {
    /// At most `per_user` tunnels per user (0: no limit), each closed after
    /// `idle` without a byte either way.
    pub fn new(per_user: usize, idle: Duration) -> Arc<Tunnels> {
        Arc::new(Tunnels {
            per_user,
            idle,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a tunnel for `user` until the claim is dropped; `None` when
    /// the user holds as many as allowed.
    fn claim(self: &Arc<Self>, user: UserId) -> Option<Claim> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(user).or_insert(0);
        if self.per_user != 0 && *n >= self.per_user {
            return None;
        }
        *n += 1;
        Some(Claim {
            tunnels: Arc::clone(self),
            user,
        })
    }

    /// How many tunnels `user` holds.
    pub fn held_by(&self, user: UserId) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&user)
            .copied()
            .unwrap_or(0)
    }
}

/// One counted tunnel.
struct Claim {
    tunnels: Arc<Tunnels>,
    user: UserId,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut open = self
            .tunnels
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// Forwards an upgrade request for `path` on `app` with `headers` (already
/// filtered and carrying the identity) for `user` and answers as the
/// upstream does: `101` with a connection that relays both ways, or the
/// upstream's refusal; `429` when the user holds as many tunnels as
/// allowed. A tunnel a `bypass` rule lets through with nobody signed in
/// (`user` is `None`) is counted against no user: the per-address cap of
/// the HTTP layer holds it.
///
/// # Errors
///
/// The upstream cannot be reached in `timeout` or answers nonsense (the
/// caller answers 502 or 504).
#[allow(clippy::too_many_arguments)]
pub(super) fn open(
    tunnels: &Arc<Tunnels>,
    user: Option<UserId>,
    app: &App,
    method: &str,
    path: &str,
    protocol: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<Response, io::Error> {
    let claim = match user {
        Some(user) => match tunnels.claim(user) {
            Some(claim) => Some(claim),
            None => {
                crate::logging::line(&format!(
                    "proxy tunnel refused app={} user_id={user} reason=\"the user holds max_connections_per_client tunnels\"",
                    crate::logging::quote(&app.name)
                ));
                return Ok(
                    Response::text("too many open connections; close some and retry")
                        .with_status_code(429)
                        .with_additional_header("Retry-After", "5"),
                );
            }
        },
        None => None,
    };
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
            claim,
            idle: tunnels.idle,
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
    /// The user's count of tunnels, held while either direction runs.
    claim: Option<Claim>,
    /// Closed after this long without a byte either way.
    idle: Duration,
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
        let activity = Arc::new(Activity::new(self.idle, self.claim.take()));
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

/// When a byte last went through a tunnel, either way; and the user's
/// count of tunnels, given back when both directions are done with it.
struct Activity {
    start: Instant,
    /// Milliseconds from `start`.
    last: AtomicU64,
    /// Closed after this long without a byte.
    limit: Duration,
    _claim: Option<Claim>,
}

impl Activity {
    fn new(limit: Duration, claim: Option<Claim>) -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            limit,
            _claim: claim,
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
/// tried again unless the tunnel has been idle both ways for its limit.
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
                    && activity.idle() < activity.limit =>
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
