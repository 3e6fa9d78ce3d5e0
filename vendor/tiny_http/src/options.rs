//! gatehouse patch: settings for a server that rouille cannot pass on.
//!
//! rouille's `Server::new` builds the tiny_http server itself and takes only
//! an address, so gatehouse hands the rest over by calling it inside
//! [`with_options`]: the server built on that thread during the call takes
//! these options. A thread-local, not a global, so servers started at once
//! on other threads (the integration tests start many) never see each
//! other's options.

use std::cell::RefCell;
#[cfg(feature = "ssl-rustls")]
use std::sync::Arc;
use std::time::Duration;

/// What a server built inside [`with_options`] is configured with.
#[derive(Clone, Debug)]
pub struct Options {
    /// The request line and headers (and a TLS handshake) must arrive
    /// within this, counted from the first byte awaited.
    pub header_timeout: Duration,
    /// No read of a request body may stall longer than this, nor any write
    /// of an answer.
    pub body_timeout: Duration,
    /// An idle kept-alive connection is closed after this.
    pub keepalive_timeout: Duration,
    /// At most this many client connections are open at once (0: no cap).
    pub max_connections: usize,
    /// When set, the listener speaks HTTPS only, with this configuration
    /// (its certificate resolver may swap certificates while it runs).
    #[cfg(feature = "ssl-rustls")]
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Where the server's own events go (an accept that failed, a
    /// connection refused at the cap), one line each, at most one a second
    /// per kind.
    pub log: fn(&str),
}

fn log_warning(line: &str) {
    log::warn!("{line}");
}

impl Default for Options {
    fn default() -> Self {
        Options {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(30),
            max_connections: 0,
            #[cfg(feature = "ssl-rustls")]
            tls: None,
            log: log_warning,
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
