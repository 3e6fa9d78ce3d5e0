//! systemd readiness and watchdog (`Type=notify`, `WatchdogSec=`): the last
//! line of defence for a gatehouse that is alive but no longer serving.
//!
//! `READY=1` is sent once the listener is bound. When systemd asks for
//! watchdog pings (`WATCHDOG_USEC`), a thread probes the server every third
//! of that interval the way a client would: it connects to the listening
//! address over loopback, sends `GET /healthz`, and pings (`WATCHDOG=1`)
//! only when a request thread's answer comes back within the probe timeout
//! (a status line and gatehouse's own headers, not the accept loop's fixed
//! `503` for a full house). So a ping proves that the accept loop took the
//! connection, a connection thread parsed the request and a request thread
//! answered it; any HTTP status counts (a `503` from a database outage is not something a
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
        // The head, up to its blank line (bounded).
        let mut head = Vec::with_capacity(512);
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            match stream.read(&mut buf)? {
                0 => break,
                n => head.extend_from_slice(&buf[..n]),
            }
        }
        Ok(answered_by_gatehouse(&head))
    }
}

/// The most of an answer's head the probe reads.
const MAX_HEAD: usize = 8 * 1024;

/// Whether `head` is an HTTP/1.x answer that a request thread wrote: a
/// status line with a three-digit code, and the `X-Content-Type-Options`
/// header gatehouse puts on every answer of its own. The fixed `503` the
/// accept loop writes when every connection slot is taken has no such
/// header, so a server whose slots are all held by clients that never
/// finish a request (and so whose request threads answer nobody new) gets
/// no ping.
fn answered_by_gatehouse(head: &[u8]) -> bool {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = &head[..end];
    is_status_line(head)
        && head.split(|&b| b == b'\n').skip(1).any(|line| {
            line.to_ascii_lowercase()
                .starts_with(b"x-content-type-options:")
        })
}

/// Whether `head` begins an HTTP/1.x status line with a three-digit code.
fn is_status_line(head: &[u8]) -> bool {
    head.len() >= 12
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
    fn only_an_answer_a_request_thread_wrote_counts() {
        assert!(answered_by_gatehouse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Content-Type-Options: nosniff\r\n\r\nok\n"
        ));
        assert!(answered_by_gatehouse(
            b"HTTP/1.1 503 Service Unavailable\r\nx-content-type-options: nosniff\r\n\r\n"
        ));
        // The accept loop's answer when every connection slot is taken.
        assert!(!answered_by_gatehouse(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 28\r\nConnection: close\r\n\r\n\
too many connections, retry\n"
        ));
        // A head cut off before its end.
        assert!(!answered_by_gatehouse(
            b"HTTP/1.1 200 OK\r\nX-Content-Type-Options: nosniff\r\n"
        ));
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
