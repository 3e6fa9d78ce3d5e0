//! The front door holds: idle connections past the descriptor limit, the
//! connection cap (idle ones closed first, else `503`), and the head, body
//! and keep-alive timeouts, each tried against the real server.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{TestApp, agent};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// `gatehouse serve` under a descriptor limit of `nofile` (soft and hard,
/// so raising it at start changes nothing), with `env`; its address and
/// everything it logs.
struct Limited {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Limited {
    fn start(nofile: u32, env: &[(&str, &str)]) -> Limited {
        let dir = tempfile::tempdir().expect("temp dir");
        let command = crate::helpers::command(BIN);
        // `ulimit -n` in sh sets both limits; then the binary (through the
        // test runner, if any) replaces the shell.
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$@\""))
            .arg("sh")
            .arg(program)
            .args(args)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEHOUSE_DATA", dir.path())
            .env("GATEHOUSE_BCRYPT_COST", "4")
            .env("GATEHOUSE_THREADS", "2")
            .envs(crate::helpers::backend_env(dir.path()))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        let (_, url) = crate::raw::served_url(&mut child);
        let addr = url
            .trim_start_matches("http://")
            .parse()
            .expect("an address");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        Limited {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (up to 10 s) for a line containing `what` in the log.
    fn wait_for_log(&self, what: &str) -> String {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let log = self.log();
            if log.contains(what) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {what:?} in the log:\n{}", self.log());
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw connection with a generous read timeout.
fn connect(addr: SocketAddr) -> TcpStream {
    let conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    conn
}

/// Reads one response (head and a `Content-Length` body) off `conn`.
fn read_response(conn: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("closed after {:?}", String::from_utf8_lossy(&head)),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body)?;
    Ok(head + &String::from_utf8_lossy(&body))
}

/// One `GET /healthz` on a fresh connection, kept open afterwards.
fn kept_alive(addr: SocketAddr) -> TcpStream {
    let mut conn = connect(addr);
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let answer = read_response(&mut conn).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    conn
}

/// The status of a `GET /healthz` on a fresh connection (0: no answer).
fn status_of_new_request(addr: SocketAddr) -> (u16, String) {
    let mut conn = connect(addr);
    if conn
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return (0, String::new());
    }
    match read_response(&mut conn) {
        Ok(answer) => (
            answer
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            answer,
        ),
        Err(_) => (0, String::new()),
    }
}

/// Polls until a fresh connection gets `200` (up to 15 s).
fn eventually_ok(addr: SocketAddr) {
    let start = Instant::now();
    loop {
        let (status, answer) = status_of_new_request(addr);
        if status == 200 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "never served again: {status} {answer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the server closed `conn` within `limit` (an end of stream or a
/// reset), reading and discarding whatever it sends first.
fn closed_within(conn: &mut TcpStream, limit: Duration) -> bool {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        conn.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Whether the server has closed `conn` already (no waiting).
fn closed_now(conn: &TcpStream) -> bool {
    conn.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 1024];
    let mut reader = conn;
    let closed = loop {
        match reader.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) => break e.kind() != ErrorKind::WouldBlock,
        }
    };
    conn.set_nonblocking(false).expect("blocking");
    closed
}

#[test]
fn idle_connections_past_the_descriptor_limit_never_stop_the_server() {
    // 128 descriptors, 2 request threads (a pool of 4 connections, and
    // another 4 to Redis when sessions live there): the default cap is
    // (128 - 64 - 16) / 2 = 24 connections, or (128 - 64 - 32) / 2 = 16.
    let cap = if crate::helpers::backend() == "redis" {
        16
    } else {
        24
    };
    let server = Limited::start(128, &[("GATEHOUSE_HEADER_TIMEOUT", "30s")]);
    let started = server.wait_for_log(&format!("descriptors limit=128 max_connections={cap}\n"));
    assert!(!started.contains("raised_from"), "{started}");

    // Far more kept-alive connections than the cap (and than the
    // descriptors could hold): each new one closes the longest idle one.
    let idle: Vec<TcpStream> = (0..150).map(|_| kept_alive(server.addr)).collect();
    let (status, answer) = status_of_new_request(server.addr);
    assert_eq!(status, 200, "a real client is answered: {answer}");
    let closed = idle.iter().filter(|c| closed_now(c)).count();
    assert!(
        closed >= 150 - cap,
        "the idle ones made room: {closed} closed"
    );

    // Connections that never send anything are not being served either
    // (issue 20: 4,096 unfinished heads from one address locked everyone
    // out): the oldest of them make room, so a real client is answered.
    let silent: Vec<TcpStream> = (0..100).map(|_| connect(server.addr)).collect();
    let (status, answer) = status_of_new_request(server.addr);
    assert_eq!(status, 200, "a real client is answered: {answer}");
    let closed = silent.iter().filter(|c| closed_now(c)).count();
    assert!(
        closed >= 100 - cap,
        "the silent ones made room: {closed} closed"
    );

    // Once they are gone, the server serves as before.
    drop(silent);
    drop(idle);
    eventually_ok(server.addr);
    for _ in 0..30 {
        assert_eq!(status_of_new_request(server.addr).0, 200);
    }
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn running_out_of_descriptors_never_ends_the_accept_loop() {
    // A cap far above what 64 descriptors hold: accept itself fails with
    // EMFILE, which used to end (or panic) the accept thread for good.
    let server = Limited::start(
        64,
        &[
            ("GATEHOUSE_MAX_CONNECTIONS", "1000"),
            ("GATEHOUSE_HEADER_TIMEOUT", "2s"),
        ],
    );
    server.wait_for_log("descriptors limit=64 max_connections=1000");
    let start = Instant::now();
    let silent: Vec<TcpStream> = (0..120).map(|_| connect(server.addr)).collect();
    server.wait_for_log("server accept failed");
    drop(silent);
    eventually_ok(server.addr);
    // Out of descriptors again, this time with kept-alive connections: the
    // longest idle one is closed to make room, so new clients get in.
    let mut idle = Vec::new();
    for _ in 0..80 {
        let mut conn = connect(server.addr);
        if conn
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .is_ok()
            && read_response(&mut conn).is_ok()
        {
            idle.push(conn);
        }
    }
    assert!(idle.len() >= 60, "only {} answered", idle.len());
    drop(idle);
    eventually_ok(server.addr);
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    // A line a second at most, however often accept fails.
    let lines = log.matches("server accept failed").count() as u64;
    assert!(
        lines <= start.elapsed().as_secs() + 1,
        "{lines} lines in {:?}",
        start.elapsed()
    );
}

#[test]
fn at_the_cap_a_connection_not_being_served_makes_room_else_a_503() {
    // An upstream that takes a while: a request through the proxy keeps
    // its connection busy (being served) meanwhile.
    let (upstream, stop) = crate::raw::upstream(|_| {
        std::thread::sleep(Duration::from_secs(3));
        rouille::Response::text("slow")
    });
    let app = TestApp::spawn_with_file(
        &format!(
            "[[apps]]\nname = \"slow\"\nprefix = \"/apps/slow/\"\nupstream = \"http://{upstream}\"\n"
        ),
        &[
            ("max_connections", "2"),
            ("max_connections_per_client", "0"),
        ],
    );
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    assert_eq!(b.login("alice", "correct horse").status, 303);
    let session = b.cookie("gatehouse_session").expect("signed in");
    drop(b);
    let addr: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    std::thread::sleep(Duration::from_millis(300));
    // Two kept-alive idle connections fill the cap; a third client is
    // served, and the one idle the longest was closed for it.
    let mut first = kept_alive(addr);
    std::thread::sleep(Duration::from_millis(50));
    let mut second = kept_alive(addr);
    let (status, answer) = status_of_new_request(addr);
    assert_eq!(status, 200, "{answer}");
    assert!(closed_within(&mut first, Duration::from_secs(5)));
    // The other one still works.
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    assert!(
        read_response(&mut second)
            .expect("answer")
            .starts_with("HTTP/1.1 200")
    );
    drop(second);

    // Two connections in the middle of a head are not being served
    // either: the older makes room for a new one, which is answered.
    std::thread::sleep(Duration::from_millis(300));
    let mut a = connect(addr);
    std::thread::sleep(Duration::from_millis(50));
    let mut b = connect(addr);
    a.write_all(b"GET /healthz HTTP/1.1\r\n").expect("send");
    b.write_all(b"GET /healthz HTTP/1.1\r\n").expect("send");
    std::thread::sleep(Duration::from_millis(300));
    let (status, answer) = status_of_new_request(addr);
    assert_eq!(status, 200, "{answer}");
    assert!(
        closed_within(&mut a, Duration::from_secs(5)),
        "the older head went"
    );
    b.write_all(b"Host: t\r\n\r\n").expect("send");
    let answer = read_response(&mut b).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(b);

    // Two connections whose requests are being answered are never closed
    // for a newcomer: it gets a 503 at once, without its request read.
    std::thread::sleep(Duration::from_millis(300));
    let busy: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut conn = connect(addr);
            write!(
                conn,
                "GET /apps/slow/ HTTP/1.1\r\nHost: t\r\nCookie: gatehouse_session={session}\r\n\r\n"
            )
            .expect("send");
            conn
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut c = connect(addr);
    let answer = read_response(&mut c).expect("a 503 before any request");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1\r\n"), "{answer}");
    // The busy ones finish and are answered.
    for mut conn in busy {
        let answer = read_response(&mut conn).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    stop.store(true, Ordering::SeqCst);
}

/// A server with short timeouts, and its address.
fn short_timeouts(extra: &[(&str, &str)]) -> (TestApp, SocketAddr) {
    let mut settings = vec![
        ("header_timeout", "1s"),
        ("body_timeout", "1s"),
        ("keepalive_timeout", "1s"),
    ];
    settings.extend_from_slice(extra);
    let app = TestApp::spawn_with(&settings);
    let addr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    (app, addr)
}

/// Meanwhile, a normal client on another connection is answered.
fn others_are_served(app: &TestApp) {
    let resp = agent()
        .get(format!("{}/healthz", app.base))
        .call()
        .expect("healthz");
    assert_eq!(resp.status(), 200);
}

#[test]
fn a_silent_connection_is_closed_after_the_header_timeout() {
    let (app, addr) = short_timeouts(&[]);
    let mut silent = connect(addr);
    others_are_served(&app);
    assert!(closed_within(&mut silent, Duration::from_secs(8)));
}

#[test]
fn a_head_sent_a_byte_at_a_time_cannot_outlast_the_header_timeout() {
    let (app, addr) = short_timeouts(&[]);
    let mut drip = connect(addr);
    let head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: aaaaaaaaaaaaaaaa\r\n\r\n";
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut conn = drip.try_clone().expect("clone");
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            // One byte every 300 ms: each read is prompt, the whole head
            // would take some 17 s.
            for byte in head {
                if conn.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    others_are_served(&app);
    let mut answer = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match drip.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "closed long after the deadline"
    );
    assert!(!done.load(Ordering::SeqCst), "the whole head got through");
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "{answer:?}"
    );
    let _ = writer.join();
}

#[test]
fn a_trickling_body_is_cut_off_while_a_flowing_one_is_not() {
    let (app, addr) = short_timeouts(&[]);
    let mut slow = connect(addr);
    slow.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 5000\r\n\r\n{",
    )
    .expect("head");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut conn = slow.try_clone().expect("clone");
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // A byte every 2 s: every read stalls past the body timeout.
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(2));
                if conn.write_all(b" ").is_err() {
                    return;
                }
            }
        })
    };
    others_are_served(&app);
    let closed = closed_within(&mut slow, Duration::from_secs(12));
    stop.store(true, Ordering::SeqCst);
    let _ = writer.join();
    drop(slow);
    assert!(closed, "the trickling body still holds its connection");
    // A body that keeps flowing, a little at a time, is read whole (the
    // limit is per read, not for the whole body).
    let mut steady = connect(addr);
    let body = format!(
        "{{\"username\":\"nobody\",\"password\":\"{}\"}}",
        "x".repeat(40)
    );
    write!(
        steady,
        "POST /api/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("head");
    for chunk in body.as_bytes().chunks(20) {
        std::thread::sleep(Duration::from_millis(400));
        steady.write_all(chunk).expect("body");
    }
    let answer = read_response(&mut steady).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout() {
    let (app, addr) = short_timeouts(&[("header_timeout", "30s")]);
    let mut idle = kept_alive(addr);
    others_are_served(&app);
    assert!(closed_within(&mut idle, Duration::from_secs(8)));
    // One that keeps asking stays open past it.
    let mut busy = kept_alive(addr);
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(500));
        busy.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("send");
        let answer = read_response(&mut busy).expect("still open");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[test]
fn a_client_that_stops_reading_does_not_hold_its_thread() {
    let (app, addr) = short_timeouts(&[]);
    // Ask for the stylesheet over and over without reading any of it: the
    // answers fill the socket buffers, then the writes time out and the
    // connection is closed.
    let mut deaf = connect(addr);
    deaf.set_write_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let css = app.browser().get("/");
    let path = css
        .body
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".css"))
        .unwrap_or("/assets/gatehouse.css")
        .to_owned();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if deaf.write_all(request.as_bytes()).is_err() {
            break;
        }
    }
    others_are_served(&app);
    // Without reading (which would let the server go on), give the
    // server's write timeout time to pass; then the connection is gone:
    // writing to it fails outright instead of waiting for room.
    // (Polled for up to 30 s: under qemu the server's timeout fires late.)
    std::thread::sleep(Duration::from_secs(5));
    let mut failure = None;
    let waiting = Instant::now();
    while waiting.elapsed() < Duration::from_secs(30) {
        match deaf.write_all(request.as_bytes()) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                failure = Some(e.kind());
                break;
            }
            Ok(()) => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        matches!(
            failure,
            Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted)
        ),
        "still open: {failure:?}"
    );
}

/// An upstream that counts the bytes of each upload, and echoes upgraded
/// connections.
fn counting_upstream() -> (SocketAddr, Arc<AtomicBool>, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&received);
    let (addr, stop) = crate::raw::upstream(move |request| {
        if request.header("Upgrade").is_some() {
            return rouille::Response {
                status_code: 101,
                headers: vec![("Upgrade".into(), "websocket".into())],
                data: rouille::ResponseBody::empty(),
                upgrade: Some(Box::new(Echo)),
            };
        }
        let mut n = 0u64;
        if let Some(mut data) = request.data() {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(k) = data.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
        }
        seen.store(n, Ordering::SeqCst);
        rouille::Response::text(n.to_string())
    });
    (addr, stop, received)
}

struct Echo;

impl rouille::Upgrade for Echo {
    fn build(&mut self, socket: Box<dyn rouille::ReadWrite + Send>) {
        std::thread::spawn(move || {
            let Some((mut from, mut to)) = socket.split() else {
                return;
            };
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    break;
                }
            }
        });
    }
}

fn proxied_app(upstream: SocketAddr) -> TestApp {
    let toml = format!(
        "[[apps]]\nname = \"files\"\nprefix = \"/apps/files/\"\nupstream = \"http://{upstream}\"\n"
    );
    let app = TestApp::spawn_with_file(
        &toml,
        &[
            ("header_timeout", "1s"),
            ("body_timeout", "1s"),
            ("keepalive_timeout", "1s"),
        ],
    );
    app.add_user("alice", "correct horse", false);
    app
}

#[test]
fn a_large_upload_through_the_proxy_flows_under_a_short_body_timeout() {
    let (upstream, stop, received) = counting_upstream();
    let app = proxied_app(upstream);
    let b = app.browser();
    assert_eq!(b.login("alice", "correct horse").status, 303);
    let upload = vec![7u8; 20 * 1024 * 1024];
    let resp = b.post_raw("/apps/files/upload", "application/octet-stream", upload);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body, (20 * 1024 * 1024).to_string());
    assert_eq!(received.load(Ordering::SeqCst), 20 * 1024 * 1024);
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn a_quiet_websocket_tunnel_outlives_the_body_timeout() {
    let (upstream, stop, _) = counting_upstream();
    let app = proxied_app(upstream);
    let b = app.browser();
    assert_eq!(b.login("alice", "correct horse").status, 303);
    let session = b.cookie("gatehouse_session").expect("signed in");
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        conn,
        "GET /apps/files/socket HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: gatehouse_session={session}\r\n\r\n"
    )
    .expect("handshake");
    let answer = read_response(&mut conn).expect("handshake answer");
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    conn.write_all(b"ping").expect("send");
    let mut echo = [0u8; 4];
    conn.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"ping");
    // Quiet both ways for well past body_timeout and keepalive_timeout.
    std::thread::sleep(Duration::from_millis(3500));
    conn.write_all(b"pong").expect("send after a pause");
    conn.read_exact(&mut echo).expect("echo after a pause");
    assert_eq!(&echo, b"pong");
    stop.store(true, Ordering::SeqCst);
}
