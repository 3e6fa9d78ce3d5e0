//! A client connection's two halves (reading and writing), over a plain or
//! (with a TLS feature) an encrypted stream.
//!
//! gatehouse patch: the halves share one socket through an `Arc` instead of
//! a descriptor each from `try_clone` (which panicked on `EMFILE` and cost a
//! descriptor per connection), and share a [`ConnState`]: the connection's
//! slot in the server's count, and the deadline each read honours. A TLS
//! stream is one more `Stream` variant, with the same methods.

use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::limits::{ConnState, WRITE_SLICE};
#[cfg(feature = "ssl-rustls")]
use crate::ssl::SslStream;

/// A client's stream; clones share it (closing one closes all).
#[derive(Clone)]
pub(crate) enum Stream {
    Http(Arc<Connection>),
    #[cfg(feature = "ssl-rustls")]
    Https(SslStream),
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(Arc::new(tcp_stream))
    }
}

impl From<Arc<Connection>> for Stream {
    fn from(tcp_stream: Arc<Connection>) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }

    /// Ends the connection at once: it is reset when closed (what was queued
    /// for the peer is dropped), and shut down now so that every reader and
    /// writer of it stops.
    pub(crate) fn abort(&self) {
        let sock = match self {
            Stream::Http(tcp_stream) => &**tcp_stream,
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.socket(),
        };
        sock.reset_on_close();
        let _ = sock.shutdown(Shutdown::Both);
    }

    /// How long one read of the underlying socket may wait.
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_read_timeout(t),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.set_read_timeout(t),
        }
    }

    /// How long one write of the underlying socket may wait.
    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_write_timeout(t),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.set_write_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).read(buf),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).write(buf),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).flush(),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    state: Arc<ConnState>,
    close_read: bool,
    close_write: bool,
    /// gatehouse patch: the last write waited for room (see `paced`).
    slow: bool,
}

impl RefinedTcpStream {
    /// The reading and the writing half of `stream`, sharing `state`.
    pub(crate) fn new(stream: Stream, state: Arc<ConnState>) -> (RefinedTcpStream, RefinedTcpStream) {
        let read = RefinedTcpStream {
            stream: stream.clone(),
            state: Arc::clone(&state),
            close_read: true,
            close_write: false,
            slow: false,
        };

        let write = RefinedTcpStream {
            stream,
            state,
            close_read: false,
            close_write: true,
            slow: false,
        };

        (read, write)
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// What the connection's halves share.
    pub(crate) fn state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        // gatehouse patch: under a deadline (the request head), each read
        // waits only for the time left, so a byte every few seconds cannot
        // stretch it; without one, a read may stall the per-read limit.
        // The socket's receive timeout is set only when it would allow
        // more than that (`ConnState::before_read`): a read that comes
        // back early for want of bytes is tried again here.
        let started = Instant::now();
        loop {
            self.state.before_read(started)?;
            match self.stream.read(buf) {
                // A socket read timeout shows as `WouldBlock` on Unix
                // (client sockets are never non-blocking here): time left
                // or not, `before_read` says.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

impl RefinedTcpStream {
    /// gatehouse patch: runs `op` (a write of `wanted` bytes, or a flush),
    /// waiting for the client at its pace. The socket's send timeout is
    /// short ([`WRITE_SLICE`]): a write that finds no room comes back after
    /// it with part of its bytes written, or none (`WouldBlock`).
    ///
    /// On a request thread (the connection `deferrable`) that ends the
    /// write at once: `WouldBlock` is returned (after a partial write, by
    /// the next call), and the rest of the answer is handed to the
    /// connection's own thread. Elsewhere the write is tried again until
    /// the client takes the bytes or is too slow (no progress for
    /// `body_timeout`, or under the minimum rate: see
    /// [`ConnState::too_slow`]), which closes the whole connection, so
    /// neither the answer under way nor any request after it holds a
    /// thread.
    fn paced<T>(
        &mut self,
        wanted: usize,
        mut op: impl FnMut(&mut Stream) -> IoResult<T>,
        size: impl Fn(&T) -> usize,
    ) -> IoResult<T> {
        let mut stalled = Duration::ZERO;
        loop {
            if self.slow && self.state.deferrable() {
                return Err(IoError::new(ErrorKind::WouldBlock, "the client is slow"));
            }
            match op(&mut self.stream) {
                Ok(r) => {
                    let n = size(&r);
                    // Short: the write waited a whole slice for room.
                    self.slow = n < wanted;
                    if self.slow {
                        self.state.waited(WRITE_SLICE, n);
                        if !self.state.deferrable() && self.state.too_slow(Duration::ZERO) {
                            return Err(self.give_up());
                        }
                    } else {
                        self.state.sent(n);
                    }
                    return Ok(r);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.state.waited(WRITE_SLICE, 0);
                    if self.state.deferrable() {
                        self.slow = true;
                        return Err(IoError::new(ErrorKind::WouldBlock, "the client is slow"));
                    }
                    stalled += WRITE_SLICE;
                    if self.state.too_slow(stalled) {
                        return Err(self.give_up());
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the whole connection on a client too slow to write to, and
    /// drops what is queued for it: a plain close would leave the kernel
    /// sending the queued megabytes (and the connection open) at the very
    /// pace that was too slow.
    fn give_up(&mut self) -> IoError {
        self.stream.abort();
        IoError::new(ErrorKind::TimedOut, "write timed out")
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.paced(buf.len(), |s| s.write(buf), |n| *n)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.paced(0, |s| s.flush(), |()| 0)
    }
}
