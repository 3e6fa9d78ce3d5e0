//! gatehouse patch: settings for a server that rouille cannot pass on.
//!
//! rouille's `Server::new` builds the tiny_http server itself and takes only
//! an address, so gatehouse hands the rest over by calling it inside
//! [`with_options`]: the server built on that thread during the call takes
//! these options. A thread-local, not a global, so servers started at once
//! on other threads (the integration tests start many) never see each
//! other's options.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a server built inside [`with_options`] is configured with.
#[derive(Clone)]
pub struct Options {
    /// The request line and headers (and a TLS handshake) must arrive
    /// within this, counted from the first byte awaited.
    pub header_timeout: Duration,
    /// No read of a request body may stall longer than this, nor any write
    /// of an answer.
    pub body_timeout: Duration,
    /// While a client makes writes wait, it must take at least this many
    /// bytes a second on average (counted once it has made them wait
    /// `body_timeout` in all); else the connection is closed (0: no
    /// minimum).
    pub min_send_rate: u64,
    /// An idle kept-alive connection is closed after this.
    pub keepalive_timeout: Duration,
    /// At most this many client connections are open at once (0: no cap).
    pub max_connections: usize,
    /// At most this many from one client address (an IPv6 /64 counts as
    /// one address; 0: no cap).
    pub max_connections_per_client: usize,
    /// Addresses `max_connections_per_client` does not apply to (a reverse
    /// proxy in front carries many clients).
    pub uncapped: Option<Arc<dyn Fn(IpAddr) -> bool + Send + Sync>>,
    /// The most memory the bodies read ahead of their requests may take
    /// at once, across connections, beyond a small allowance each.
    pub read_ahead_memory: usize,
    /// When set, the listener speaks HTTPS only, with this configuration
    /// (its certificate resolver may swap certificates while it runs).
    #[cfg(feature = "ssl-rustls")]
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Where the server's own events go (an accept that failed, a
    /// connection refused at the cap), one line each, at most one a second
    /// per kind.
    pub log: fn(&str),
    /// When set, each request is handed to this on the thread of the
    /// connection that read it, which reads that connection's next request
    /// once this returns (and the answer is written or handed back to it:
    /// see `Request::respond`). Unset, requests go to the queue that
    /// `Server::recv` takes them from, for other threads to answer.
    pub serve: Option<Serve>,
}

/// What [`Options::serve`] holds.
pub type Serve = Arc<dyn Fn(crate::Request) + Send + Sync>;

fn log_warning(line: &str) {
    log::warn!("{line}");
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("min_send_rate", &self.min_send_rate)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_client", &self.max_connections_per_client)
            .field("uncapped", &self.uncapped.is_some())
            .field("read_ahead_memory", &self.read_ahead_memory)
            .field("serve", &self.serve.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            min_send_rate: 0,
            keepalive_timeout: Duration::from_secs(30),
            max_connections: 0,
            max_connections_per_client: 0,
            uncapped: None,
            read_ahead_memory: 8 * 1024 * 1024,
            #[cfg(feature = "ssl-rustls")]
            tls: None,
            log: log_warning,
            serve: None,
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Options>> = const { RefCell::new(None) };
}

/// Runs `f` (which builds a server, e.g. `rouille::Server::new`) so that a
/// server built on this thread during the call takes `options`.
pub fn with_options<R>(options: Options, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Options>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.borrow_mut().replace(options));
    let _reset = Reset(previous);
    f()
}

/// The options in force on this thread (the defaults outside `with_options`).
pub(crate) fn current() -> Options {
    CURRENT.with(|c| c.borrow().clone()).unwrap_or_default()
}
