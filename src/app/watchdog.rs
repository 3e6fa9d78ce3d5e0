//! systemd readiness and watchdog (`Type=notify`, `WatchdogSec=`): the last
//! line of defence for a gatehouse that is alive but no longer serving.
//!
//! `READY=1` is sent once the listener is bound. When systemd asks for
//! watchdog pings (`WATCHDOG_USEC`), a thread probes the server every third
//! of that interval the way a client would: it connects to the listening
//! address over loopback, sends `GET /healthz`, and pings (`WATCHDOG=1`)
//! only when an HTTP status line comes back within the probe timeout. So a
//! ping proves that the accept loop took the connection, a connection
//! thread parsed the request and a request thread answered it; any HTTP
//! status counts (a `503` from a database outage is not something a
//! restart cures). A connect, write or read that fails or stalls sends
//! nothing, and systemd restarts the service once `WatchdogSec` passes
//! without a ping. Nothing happens when `NOTIFY_SOCKET` is unset.
//!
//! With HTTPS on the listener, a plain request proves nothing: the probe
//! must then speak TLS (see [`Probe`]): one stream type is all it changes.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sd_notify::NotifyState;

/// The shortest probe interval, whatever `WATCHDOG_USEC` says.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How the watchdog reaches the server.
#[derive(Clone, Debug)]
pub struct Probe {
    addr: SocketAddr,
    timeout: Duration,
}

impl Probe {
    /// A probe of the server listening on `listen`: a wildcard address is
    /// reached over the loopback of its family.
    pub fn new(listen: SocketAddr, timeout: Duration) -> Self {
        let mut addr = listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Self { addr, timeout }
    }

    /// Whether the server answered one request within the timeout.
    pub fn answered(&self) -> bool {
        self.ask().unwrap_or(false)
    }

    fn ask(&self) -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let request = format!(
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {}\r\n\
             Connection: close\r\n\r\n",
            crate::web::WATCHDOG_USER_AGENT
        );
        stream.write_all(request.as_bytes())?;
        // "HTTP/1.1 200" is 12 bytes; read until there are that many.
        let mut head = [0u8; 12];
        let mut got = 0;
        while got < head.len() {
            match stream.read(&mut head[got..])? {
                0 => break,
                n => got += n,
            }
        }
        Ok(is_status_line(&head[..got]))
    }
}

/// Whether `head` begins an HTTP/1.x status line with a three-digit code.
fn is_status_line(head: &[u8]) -> bool {
    head.len() == 12
        && head.starts_with(b"HTTP/1.")
        && head[8] == b' '
        && head[9..12].iter().all(u8::is_ascii_digit)
}

/// The watchdog thread, stopped on drop or by [`Watchdog::stop`].
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Tells systemd the server is ready (if it is listening for that) and,
    /// when it asks for watchdog pings, starts probing `listen`.
    ///
    /// # Errors
    ///
    /// When the thread cannot be started.
    pub fn start(listen: SocketAddr) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Ok(Self { stop, thread: None });
        }
        if let Err(e) = sd_notify::notify(&[NotifyState::Ready]) {
            crate::logging::line(&format!("systemd notify failed: {e}"));
        }
        let Some(every) = sd_notify::watchdog_enabled() else {
            return Ok(Self { stop, thread: None });
        };
        let interval = (every / 3).max(MIN_INTERVAL);
        // A probe may take at most one interval, so a ping is never late
        // because of a slow one.
        let probe = Probe::new(listen, interval);
        crate::logging::line(&format!(
            "systemd watchdog: probing every {} ms",
            interval.as_millis()
        ));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("gatehouse-watchdog".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    let started = std::time::Instant::now();
                    if probe.answered() {
                        // Best effort: if systemd's socket is gone, there
                        // is nobody to tell.
                        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                    }
                    if let Some(rest) = interval.checked_sub(started.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Tells systemd the server is stopping and ends the probes.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            let _ = sd_notify::notify(&[NotifyState::Stopping]);
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn only_an_http_status_line_counts_as_an_answer() {
        assert!(is_status_line(b"HTTP/1.1 200"));
        assert!(is_status_line(b"HTTP/1.0 503"));
        for bad in [
            &b""[..],
            b"HTTP/1.1 20",
            b"\x15\x03\x03\x00\x02\x02\x32xxxxx",
            b"SSH-2.0-Open",
        ] {
            assert!(!is_status_line(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_wildcard_listener_is_probed_over_loopback() {
        let p = Probe::new("0.0.0.0:8080".parse().expect("addr"), MIN_INTERVAL);
        assert_eq!(p.addr, "127.0.0.1:8080".parse().expect("addr"));
        let p = Probe::new("[::]:8080".parse().expect("addr"), MIN_INTERVAL);
        assert_eq!(p.addr, "[::1]:8080".parse().expect("addr"));
    }

    #[test]
    fn a_listener_that_never_answers_is_not_healthy() {
        // Bound and listening, so the kernel completes the connection, but
        // nothing accepts or answers: a dead accept loop.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let probe = Probe::new(listener.local_addr().expect("addr"), MIN_INTERVAL);
        assert!(!probe.answered());
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        assert!(!Probe::new(addr, MIN_INTERVAL).answered(), "refused");
    }
}
