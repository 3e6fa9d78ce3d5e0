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
use crate::limits::ConnState;
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

    pub(crate) fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
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
}

impl RefinedTcpStream {
    /// The reading and the writing half of `stream`, sharing `state`.
    pub(crate) fn new(stream: Stream, state: Arc<ConnState>) -> (RefinedTcpStream, RefinedTcpStream) {
        let read = RefinedTcpStream {
            stream: stream.clone(),
            state: Arc::clone(&state),
            close_read: true,
            close_write: false,
        };

        let write = RefinedTcpStream {
            stream,
            state,
            close_read: false,
            close_write: true,
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
        // stretch it.
        if let Some(deadline) = self.state.deadline() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(IoError::new(ErrorKind::TimedOut, "read deadline passed"));
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        match self.stream.read(buf) {
            // A socket read timeout shows as `WouldBlock` on Unix (client
            // sockets are never non-blocking here).
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                Err(IoError::new(ErrorKind::TimedOut, "read timed out"))
            }
            r => r,
        }
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self.stream.write(buf) {
            // gatehouse patch: a client that stopped reading for the write
            // timeout is given up on: the whole connection is closed, so
            // neither the answer under way nor any request after it holds
            // a thread.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let _ = self.stream.shutdown(Shutdown::Both);
                Err(IoError::new(ErrorKind::TimedOut, "write timed out"))
            }
            r => r,
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
