//! gatehouse patch: TLS through rustls 0.23 (upstream targets rustls 0.20,
//! out of support and under RUSTSEC-2024-0336).
//!
//! The handshake runs in the connection's own task, under a deadline, so a
//! client that opens TCP and never starts TLS holds only its own thread.
//!
//! Upstream kept the whole `StreamOwned` behind one mutex, so a reader
//! blocked on the socket held it and the writer waited: it answered one
//! request at a time per connection and a WebSocket tunnel could deadlock.
//! Here the socket is read without any lock; the lock guards only rustls'
//! state while received records are fed in and plaintext is taken out, and
//! a second lock keeps encrypted records in order on their way out.
//!
//! A write never loses sealed records: what the socket does not take before
//! its send timeout stays in the outgoing buffer, the write reports the
//! plaintext it took (or `WouldBlock` having taken none), and the next
//! write or flush sends the rest first. So a writer can give up waiting for
//! a slow client and another carry on where it stopped.

use crate::connection::Connection;
use crate::util::refined_tcp_stream::Stream as RefinedStream;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What a plain HTTP request sent to the HTTPS port is answered.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 35\r\nConnection: close\r\n\r\n\
This port speaks HTTPS, not HTTP.\r\n";

/// The longest a TLS record can be on the wire (header, payload, expansion).
const RECORD: usize = 5 + 16384 + 2048;

struct Shared {
    tls: Mutex<rustls::ServerConnection>,
    /// Records taken out of `tls` and not yet written, held while they are
    /// written so they reach the socket in the order rustls sealed them.
    out: Mutex<Vec<u8>>,
    sock: Arc<Connection>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Writes every record rustls has ready, after those left over from
    /// before. `WouldBlock` (the socket's send timeout) leaves the rest in
    /// the buffer for the next call.
    fn flush_tls(&self) -> io::Result<()> {
        let mut out = lock(&self.out);
        {
            let mut tls = lock(&self.tls);
            while tls.wants_write() {
                tls.write_tls(&mut *out)?;
            }
        }
        let mut done = 0;
        let result = loop {
            if done == out.len() {
                break Ok(());
            }
            match (&*self.sock).write(&out[done..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                // Short: the socket's send timeout passed first. The rest
                // waits for the next call, so no call waits much longer.
                Ok(n) if done + n < out.len() => {
                    done += n;
                    break Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        out.drain(..done);
        if out.is_empty() && out.capacity() > 64 * 1024 {
            *out = Vec::new();
        }
        result
    }

    /// [`Shared::flush_tls`] where a full socket is no error: the records
    /// go out with the next write (after reading, rustls may have an alert
    /// or a key update to send).
    fn flush_tls_if_room(&self) -> io::Result<()> {
        match self.flush_tls() {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Ok(())
            }
            r => r,
        }
    }
}

/// One TLS connection; its clones share it (the reading and the writing
/// half of a `RefinedTcpStream`), each with its own buffer of received,
/// not yet decrypted, bytes.
pub(crate) struct RustlsStream {
    shared: Arc<Shared>,
    /// gatehouse patch: bytes `start..end` are received and not yet fed
    /// to rustls; the buffer is zeroed once, when first read into (it was
    /// grown and zeroed by a record's length on every read of the socket,
    /// 18 KiB of `memset` a request).
    received: Vec<u8>,
    start: usize,
    end: usize,
}

impl RustlsStream {
    pub(crate) fn peer_addr(&mut self) -> io::Result<Option<SocketAddr>> {
        match &*self.shared.sock {
            Connection::Tcp(s) => s.peer_addr().map(Some),
            #[cfg(unix)]
            Connection::Unix(_) => Ok(None),
        }
    }

    /// The socket under the TLS stream.
    pub(crate) fn socket(&self) -> &Connection {
        &self.shared.sock
    }

    /// How long one read of the socket may wait.
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.shared.sock.set_read_timeout(t)
    }

    /// How long one write of the socket may wait.
    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.shared.sock.set_write_timeout(t)
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            lock(&self.shared.tls).send_close_notify();
            let _ = self.shared.flush_tls();
        }
        self.shared.sock.shutdown(how)
    }

    /// Hands the bytes received so far to rustls, as far as it takes them.
    fn feed(&mut self, tls: &mut rustls::ServerConnection) -> io::Result<()> {
        while self.start < self.end && tls.wants_read() {
            let mut rest = &self.received[self.start..self.end];
            let n = tls.read_tls(&mut rest)?;
            self.start += n;
            if let Err(e) = tls.process_new_packets() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if n == 0 {
                break;
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(())
    }
}

impl Clone for RustlsStream {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            received: self.received[self.start..self.end].to_vec(),
            start: 0,
            end: self.end - self.start,
        }
    }
}

impl Read for RustlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let fed = {
                let shared = Arc::clone(&self.shared);
                let mut tls = lock(&shared.tls);
                let fed = self.feed(&mut tls);
                match tls.reader().read(buf) {
                    Ok(n) => {
                        drop(tls);
                        // Alerts or key updates the records asked for.
                        shared.flush_tls_if_room()?;
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                fed
            };
            if let Err(e) = fed {
                let _ = self.shared.flush_tls();
                return Err(e);
            }
            self.shared.flush_tls_if_room()?;
            // Nothing to hand out: wait for more records, holding no lock.
            if self.end - self.start >= RECORD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS records rustls would not take",
                ));
            }
            // Room for a whole record after what waits: what waits moves to
            // the front when the tail is short, and the buffer is made (or
            // grown, for a clone's leftovers) to a record past it.
            if self.received.len() - self.end < RECORD && self.start > 0 {
                self.received.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.received.len() < self.end + RECORD {
                self.received.resize(self.end + RECORD, 0);
            }
            let got = read_some(&self.shared.sock, &mut self.received[self.end..]);
            match got {
                Ok(0) => {
                    let mut tls = lock(&self.shared.tls);
                    // Tells rustls the peer is gone: `reader` then answers
                    // end of file after a close_notify, else an error.
                    let _ = tls.read_tls(&mut &[][..]);
                    return match tls.reader().read(buf) {
                        Ok(n) => Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                        Err(e) => Err(e),
                    };
                }
                Ok(n) => self.end += n,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for RustlsStream {
    /// Takes plaintext only once what was sealed before is out (else
    /// `WouldBlock`, nothing taken), so at most one write's records wait in
    /// memory; what it took is sealed, and sent now or by the next call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.flush_tls()?;
        let n = lock(&self.shared.tls).writer().write(buf)?;
        match self.shared.flush_tls() {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Ok(n)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        lock(&self.shared.tls).writer().flush()?;
        self.shared.flush_tls()
    }
}

fn read_some(sock: &Connection, buf: &mut [u8]) -> io::Result<usize> {
    match sock {
        Connection::Tcp(s) => (&*s).read(buf),
        #[cfg(unix)]
        Connection::Unix(s) => (&*s).read(buf),
    }
}

fn write_all(sock: &Connection, buf: &[u8]) -> io::Result<()> {
    match sock {
        Connection::Tcp(s) => (&*s).write_all(buf),
        #[cfg(unix)]
        Connection::Unix(s) => (&*s).write_all(buf),
    }
}

fn set_timeouts(sock: &Connection, t: Option<Duration>) -> io::Result<()> {
    match sock {
        Connection::Tcp(s) => {
            s.set_read_timeout(t)?;
            s.set_write_timeout(t)
        }
        #[cfg(unix)]
        Connection::Unix(s) => {
            s.set_read_timeout(t)?;
            s.set_write_timeout(t)
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake deadline passed")
}

/// Runs the TLS handshake on `sock`, which must finish within `timeout`
/// (a deadline for the whole of it, not per read: a client dripping one
/// byte at a time gains nothing). A client that speaks plain HTTP instead
/// gets a `400` and is closed.
///
/// # Errors
///
/// A failed handshake, a peer that closed, or the deadline.
pub(crate) fn handshake(
    config: Arc<ServerConfig>,
    sock: Arc<Connection>,
    timeout: Duration,
) -> io::Result<RustlsStream> {
    let deadline = Instant::now() + timeout;
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(timed_out())
        } else {
            Ok(left)
        }
    };
    set_timeouts(&sock, Some(left()?))?;
    let mut tls = rustls::ServerConnection::new(config)
        .map_err(|e| io::Error::new(io::ErrorKind::Other, e))?;
    if let Connection::Tcp(s) = &*sock {
        let mut first = [0u8; 1];
        if s.peek(&mut first)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // A TLS handshake record starts with 0x16; a request line with a
        // method's capital letters.
        if first[0].is_ascii_uppercase() {
            refuse_plain_http(&sock, deadline);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "plain HTTP sent to the HTTPS port",
            ));
        }
    }
    let mut reader = SockRef(&sock);
    while tls.is_handshaking() {
        while tls.wants_write() {
            set_timeouts(&sock, Some(left()?))?;
            tls.write_tls(&mut SockRef(&sock))?;
        }
        if !tls.is_handshaking() {
            break;
        }
        set_timeouts(&sock, Some(left()?))?;
        match tls.read_tls(&mut reader) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) => return Err(timed_out()),
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.process_new_packets() {
            // Sends the alert saying why, as far as the peer still listens.
            let _ = tls.write_tls(&mut SockRef(&sock));
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    while tls.wants_write() {
        set_timeouts(&sock, Some(left()?))?;
        tls.write_tls(&mut SockRef(&sock))?;
    }
    set_timeouts(&sock, None)?;
    Ok(RustlsStream {
        shared: Arc::new(Shared {
            tls: Mutex::new(tls),
            out: Mutex::new(Vec::new()),
            sock,
        }),
        received: Vec::new(),
        start: 0,
        end: 0,
    })
}

/// Answers a plain HTTP request on the HTTPS port with a `400`, then reads
/// what the client sent (closing with unread data would reset the
/// connection before the client read the answer), bounded in size and time.
fn refuse_plain_http(sock: &Connection, deadline: Instant) {
    let _ = write_all(sock, PLAIN_HTTP_ANSWER);
    let _ = sock.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    let mut total = 0;
    while total < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || set_timeouts(sock, Some(left)).is_err() {
            break;
        }
        match read_some(sock, &mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

/// `Read` and `Write` on a shared reference to the socket.
struct SockRef<'a>(&'a Connection);

impl Read for SockRef<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_some(self.0, buf)
    }
}

impl Write for SockRef<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0 {
            Connection::Tcp(s) => (&*s).write(buf),
            #[cfg(unix)]
            Connection::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Builds a server configuration from a PEM certificate chain and key (for
/// `Server::https` and rouille's `Server::new_ssl`).
///
/// # Errors
///
/// No certificate, no key, or a key rustls cannot use.
pub(crate) fn config_from_pem(
    certificates: &[u8],
    private_key: &[u8],
) -> Result<Arc<ServerConfig>, Box<dyn Error + Send + Sync + 'static>> {
    let chain = CertificateDer::pem_slice_iter(certificates).collect::<Result<Vec<_>, _>>()?;
    if chain.is_empty() {
        return Err("Couldn't extract certificate chain from config.".into());
    }
    let key = PrivateKeyDer::from_pem_slice(private_key)?;
    let config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

impl From<RustlsStream> for RefinedStream {
    fn from(stream: RustlsStream) -> Self {
        Self::Https(stream)
    }
}
