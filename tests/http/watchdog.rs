//! The systemd watchdog, with a fake `NOTIFY_SOCKET`: a Unix datagram
//! socket the test binds and hands to the real binary, as systemd would.
//! `READY=1` arrives once it listens, `WATCHDOG=1` while it answers, and
//! the pings stop when it can no longer take a connection.

use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// `WATCHDOG_USEC` for the tests: probes every 200 ms.
const WATCHDOG_USEC: &str = "600000";

/// The binary serving `dir`, under a shell that first runs `limit` (a
/// `ulimit` line, or nothing), reporting to the socket at `notify`; its
/// log goes to `log`.
fn serve(dir: &Path, notify: &Path, limit: &str, log: &Path) -> Child {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("{limit} exec \"$@\"")).arg("sh");
    if let Some(runner) = std::env::var_os("GATEHOUSE_TEST_RUNNER").filter(|r| !r.is_empty()) {
        cmd.arg(runner);
    }
    cmd.arg(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA", dir)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .env_remove("GATEHOUSE_DATABASE")
        .env_remove("GATEHOUSE_SESSION_STORE")
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("serve")
}

/// The next datagram within `wait`, as text.
fn next(sock: &UnixDatagram, wait: Duration) -> Option<String> {
    sock.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Waits up to 20 s for a datagram equal to `want`; returns what came
/// before it.
fn expect(sock: &UnixDatagram, want: &str) -> Vec<String> {
    let started = Instant::now();
    let mut before = Vec::new();
    while started.elapsed() < Duration::from_secs(20) {
        match next(sock, Duration::from_secs(1)) {
            Some(m) if m == want => return before,
            Some(m) => before.push(m),
            None => {}
        }
    }
    panic!("no {want:?} within 20 s; got {before:?}");
}

fn stop(mut child: Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    for _ in 0..100 {
        if child.try_wait().expect("wait").is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The port from the binary's first line of output.
fn port(child: &mut Child) -> u16 {
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(out).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    std::thread::spawn(move || for _ in lines {});
    first
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"))
}

#[test]
fn ready_then_watchdog_pings_arrive_while_serving() {
    let tmp = tempfile::tempdir().expect("dir");
    let notify = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).expect("bind");
    let log = tmp.path().join("log");
    let mut child = serve(&tmp.path().join("data"), &notify, "", &log);
    let port = port(&mut child);
    let before = expect(&sock, "READY=1\n");
    assert!(before.is_empty(), "before READY=1: {before:?}");
    for _ in 0..3 {
        expect(&sock, "WATCHDOG=1\n");
    }
    // The server it pings for is the one answering.
    let b = crate::helpers::Browser::new(&format!("http://127.0.0.1:{port}"));
    assert_eq!(b.get("/healthz").status, 200);
    stop(child);
    expect(&sock, "STOPPING=1\n");
    // The probes are not logged (one line every 200 ms here, every 10 s
    // under systemd); the test's own request is.
    let log = std::fs::read_to_string(&log).expect("log");
    let healthz = log
        .lines()
        .filter(|l| l.contains("path=\"/healthz\""))
        .count();
    assert_eq!(healthz, 1, "{log}");
}

#[test]
fn pings_stop_while_the_server_cannot_take_a_connection() {
    let tmp = tempfile::tempdir().expect("dir");
    let notify = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).expect("bind");
    let log = tmp.path().join("log");
    let mut child = serve(&tmp.path().join("data"), &notify, "ulimit -n 96;", &log);
    // (96 descriptors: a cap of 16 connections, at most 8 from one address.)
    let port = port(&mut child);
    expect(&sock, "READY=1\n");
    expect(&sock, "WATCHDOG=1\n");

    // Every connection it may hold is being served: each asked for page
    // after page and reads none of them, so the answers wait for room (a
    // connection being served is never closed to make room; an idle or
    // silent one would be). It cannot take another connection, so neither
    // can its own probe be answered.
    // (A short connect timeout: once the listen backlog is full, a
    // connect would otherwise wait out SYN retries.)
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // (Some 8 MB of answers each: more than loopback's buffers hold.)
    let pages = "GET /assets/passkey.js HTTP/1.1\r\nHost: t\r\n\r\n".repeat(1500);
    let held: Vec<TcpStream> = (0..40)
        .filter_map(|_| {
            let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
            conn.set_write_timeout(Some(Duration::from_millis(500)))
                .ok()?;
            let _ = std::io::Write::write_all(&mut conn, pages.as_bytes());
            Some(conn)
        })
        .collect();
    // Only those already being served count: wait for each one's first
    // answer to start (on a loaded machine the server may not have read
    // every head yet, and a connection still in its head may be closed to
    // make room for the probe). The rest were refused or closed to make
    // room for later ones.
    let held: Vec<TcpStream> = held
        .into_iter()
        .filter_map(|mut conn| {
            conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            let mut start = [0u8; 12];
            std::io::Read::read_exact(&mut conn, &mut start).ok()?;
            (&start == b"HTTP/1.1 200").then_some(conn)
        })
        .collect();
    assert!(held.len() >= 8, "only {} connections served", held.len());
    // A probe already answered may still report; after that, silence.
    std::thread::sleep(Duration::from_millis(600));
    while next(&sock, Duration::from_millis(1)).is_some() {}
    let mut pings = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if next(&sock, Duration::from_millis(200)).as_deref() == Some("WATCHDOG=1\n") {
            pings += 1;
        }
    }
    assert_eq!(pings, 0, "pinged while it could not take a connection");
    drop(held);
    stop(child);
}
