//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![allow(dead_code, unused_imports)] // gatehouse patch: quiet the build
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;
// gatehouse patch: settings rouille has no way to pass (see options.rs).
pub use options::{with_options, Options, Serve};

mod client;
mod common;
mod options;
mod limits; // gatehouse patch
mod connection;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // gatehouse patch: the open client connections
    tracker: Arc<limits::Tracker>,
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(feature = "ssl-rustls")]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        // gatehouse patch: the options of the `with_options` call around
        // this one (rouille builds the server and offers no way to pass them).
        let options = options::current();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // gatehouse patch: TLS through rustls 0.23, configured by
        // `Options::tls` or (for `Server::https`) from PEM.
        #[cfg(feature = "ssl-rustls")]
        let tls: Option<Arc<rustls::ServerConfig>> = match (options.tls.clone(), ssl_config) {
            (Some(config), _) => Some(config),
            (None, Some(config)) => Some(crate::ssl::rustls::config_from_pem(
                &config.certificate,
                &config.private_key,
            )?),
            (None, None) => None,
        };
        #[cfg(not(feature = "ssl-rustls"))]
        if ssl_config.is_some() {
            return Err(
                "Building a server with SSL requires enabling the `ssl-rustls` feature in tiny-http"
                    .into(),
            );
        }

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let tracker = limits::Tracker::new(
            options.max_connections,
            options.max_connections_per_client,
            options.uncapped.clone(),
            options.read_ahead_memory,
        );
        let inside_tracker = Arc::clone(&tracker);
        thread::Builder::new()
            .name("tiny-http-accept".into())
            .spawn(move || {
                accept_loop(
                    &server,
                    #[cfg(feature = "ssl-rustls")]
                    tls,
                    &options,
                    &inside_tracker,
                    &inside_close_trigger,
                    &inside_messages,
                )
            })?;

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            tracker,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    ///
    /// gatehouse patch: counted (upstream panicked with `unimplemented!`).
    pub fn num_connections(&self) -> usize {
        self.tracker.open()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

/// gatehouse patch: the accept loop. Nothing a client or the OS does ends
/// it: a failed `accept` (out of descriptors, a connection aborted before it
/// was taken, ...) is logged (one line a second at most), followed by a
/// short pause when the cause is a shortage, and the loop carries on. At the
/// cap of open connections (the server's, or one client address's), and
/// when out of descriptors, a connection that is not being served (in its
/// TLS handshake or head, or idle) is closed to make room (see
/// `limits.rs`); when every candidate is busy the new one is refused at
/// once, without a thread and without reading it: a fixed `503` over plain
/// HTTP, and closed unanswered over TLS (a plaintext answer on the TLS port
/// is garbage to a client; it retries). Nothing here waits on a client.
fn accept_loop(
    server: &connection::Listener,
    #[cfg(feature = "ssl-rustls")] tls: Option<Arc<rustls::ServerConfig>>,
    options: &Options,
    tracker: &Arc<limits::Tracker>,
    close: &AtomicBool,
    messages: &Arc<MessagesQueue<Message>>,
) {
    use crate::limits::{ConnState, Phase, RateLimited, Refusal, Timeouts, WRITE_SLICE};
    use util::RefinedTcpStream;

    let tasks_pool = util::TaskPool::new();
    let timeouts = Timeouts {
        header: options.header_timeout,
        body: options.body_timeout,
        keepalive: options.keepalive_timeout,
        min_send_rate: options.min_send_rate,
    };
    #[cfg(feature = "ssl-rustls")]
    let secure = tls.is_some();
    #[cfg(not(feature = "ssl-rustls"))]
    let secure = false;
    let mut accept_failed = RateLimited::new(Duration::from_secs(1));
    let mut refused = RateLimited::new(Duration::from_secs(1));
    let mut spawn_failed = RateLimited::new(Duration::from_secs(1));

    log::debug!("Running accept thread");
    while !close.load(Relaxed) {
        let (sock, peer) = match server.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                if close.load(Relaxed) {
                    break;
                }
                match e.kind() {
                    // This one connection went wrong; the next may be fine.
                    IoErrorKind::ConnectionAborted
                    | IoErrorKind::ConnectionReset
                    | IoErrorKind::Interrupted
                    | IoErrorKind::WouldBlock => {}
                    // Out of descriptors, memory or buffers (EMFILE,
                    // ENFILE, ENOBUFS, ENOMEM) or worse: make room if a
                    // connection that is not being served can go, and give
                    // the system a moment.
                    _ => {
                        let evicted = tracker.evict_any();
                        accept_failed.log(options.log, || {
                            format!(
                                "accept failed: {e}; open connections: {}; {}",
                                tracker.open(),
                                if evicted {
                                    "closed one not being served"
                                } else {
                                    "every one is being served"
                                }
                            )
                        });
                        thread::sleep(Duration::from_millis(if evicted { 10 } else { 100 }));
                    }
                }
                continue;
            }
        };
        let sock = Arc::new(sock);

        // The slot is taken here, so the connection counts from now on;
        // everything that may wait on the client (the TLS handshake, its
        // head) happens in the connection's own task.
        let slot = match tracker.admit(peer, &sock) {
            Ok(slot) => slot,
            Err(why) => {
                if !secure {
                    refuse(&sock);
                }
                refused.log(options.log, || match why {
                    Refusal::Full => format!(
                        "connection refused{}: {} open, the cap (max_connections), every one being served",
                        if secure { "" } else { " with 503" },
                        tracker.open()
                    ),
                    Refusal::ClientFull => format!(
                        "connection refused{}: {} holds its cap (max_connections_per_client), every one being served",
                        if secure { "" } else { " with 503" },
                        peer.map_or_else(|| "the client".to_owned(), |p| p.ip().to_string())
                    ),
                });
                continue;
            }
        };
        let accepted = std::time::Instant::now();
        let messages = messages.clone();
        let serve = options.serve.clone();
        #[cfg(feature = "ssl-rustls")]
        let tls = tls.clone();
        let mut conn = Some((sock, slot));
        let spawned = tasks_pool.spawn(Box::new(move || {
            let Some((sock, slot)) = conn.take() else {
                return;
            };
            // gatehouse patch: the TLS handshake runs here, in the
            // connection's task and under the header deadline, not on the
            // accept thread, where one client that never sent a ClientHello
            // stalled every other.
            #[cfg(feature = "ssl-rustls")]
            let stream = match &tls {
                None => util::refined_tcp_stream::Stream::from(sock),
                Some(tls) => {
                    match crate::ssl::rustls::handshake(Arc::clone(tls), sock, timeouts.header) {
                        Ok(stream) => util::refined_tcp_stream::Stream::from(stream),
                        Err(e) => {
                            log::debug!("TLS handshake failed: {}", e);
                            return;
                        }
                    }
                }
            };
            #[cfg(not(feature = "ssl-rustls"))]
            let stream = util::refined_tcp_stream::Stream::from(sock);
            // A write waits at most this long at a time: then a request
            // thread hands the rest of its answer to this thread, which
            // waits for the client at its pace (see `ConnState::too_slow`).
            let _ = stream.set_write_timeout(Some(WRITE_SLICE));
            let state = ConnState::new(slot, stream.clone(), timeouts);
            // Closed to make room during the handshake.
            if !state.enter(Phase::Opening) {
                return;
            }
            // One header_timeout covers the handshake and the first head.
            state.set_deadline(accepted + timeouts.header);
            let (read_closable, write_closable) = RefinedTcpStream::new(stream, state);
            let Ok(client) = ClientConnection::new(write_closable, read_closable, timeouts) else {
                // Gone before we could ask who it was.
                return;
            };
            // gatehouse patch: HTTPS connections no longer wait for each
            // answer before reading the next request (upstream's TLS stream
            // deadlocked otherwise; ssl/rustls.rs reads without holding a
            // lock).
            // gatehouse patch: with `Options::serve`, each request is
            // answered here, on the thread that read it: no hand-off to the
            // thread taking requests from the queue and on to one of a pool,
            // and back (three thread switches a request).
            for rq in client {
                match &serve {
                    Some(serve) => serve(rq),
                    None => messages.push(rq.into()),
                }
            }
        }));
        if let Err(e) = spawned {
            // The connection went with the task; the next may find a thread.
            spawn_failed.log(options.log, || {
                format!("cannot start a connection thread: {e}")
            });
            thread::sleep(Duration::from_millis(10));
        }
    }
    log::debug!("Terminating accept thread");
}

/// gatehouse patch: the answer to a connection over the cap, written without
/// waiting (a fresh socket's send buffer has room for it) and without
/// reading the request.
fn refuse(sock: &Connection) {
    use std::io::{Read, Write};
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 28\r\nConnection: close\r\n\r\n\
too many connections, retry\n";
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    let _ = (&*sock).write(BUSY);
    let _ = sock.shutdown(Shutdown::Write);
    // Whatever the client sent already is discarded, so that closing does
    // not reset the connection (which could lose the answer on its way).
    let mut sink = [0u8; 4096];
    let _ = (&*sock).read(&mut sink);
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                // gatehouse patch: an unnamed socket has no path to reach.
                match addr.as_pathname() {
                    Some(path) => {
                        std::os::unix::net::UnixStream::connect(path).map(Connection::from)
                    }
                    None => Err(IoError::new(IoErrorKind::NotFound, "unnamed socket")),
                }
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
