//! The front door under floods (issue 20, items 1, 2, 6 and 7): bodies
//! trickled after a refusal, one client taking every connection slot
//! (unfinished heads, quiet WebSocket tunnels), slow readers of a proxied
//! download, and the memory that connections holding bodies take. Each
//! test attacks the real server at a small scale (few request threads, a
//! low connection cap), then checks that `/healthz` and another client are
//! answered, and that shutdown is prompt while the attack goes on.
//!
//! Clients bind other loopback addresses (127.0.0.x) where a test needs
//! several clients: the connection caps count per client address.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::helpers::TestApp;

/// The attacker's address in these tests; the other clients use others.
pub const ATTACKER: [u8; 4] = [127, 0, 0, 2];
/// A client with nothing to do with the attack.
pub const BYSTANDER: [u8; 4] = [127, 0, 0, 1];

/// A connection to `to` from the loopback address `from`, with a receive
/// buffer of `rcvbuf` bytes if given (set before connecting, so the window
/// the server sees is small from the start).
pub fn connect_from_with(
    from: [u8; 4],
    to: SocketAddr,
    rcvbuf: Option<usize>,
) -> std::io::Result<TcpStream> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(size) = rcvbuf {
        sock.set_recv_buffer_size(size)?;
    }
    sock.bind(&SocketAddr::from((from, 0)).into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(10))?;
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(stream)
}

/// A connection to `to` from the loopback address `from`.
pub fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    connect_from_with(from, to, None)
}

fn addr(app: &TestApp) -> SocketAddr {
    app.running.as_ref().expect("running").addr()
}

/// The request threads of a server with `threads` and no sign-in queue
/// (`login_queue_timeout = 0s`): `threads` plus one bcrypt worker a core
/// (the server runs in this process, so it sees the same cores).
pub fn request_threads(threads: usize) -> usize {
    threads + std::thread::available_parallelism().map_or(1, usize::from)
}

/// Reads one answer's head off `conn` (`None`: closed or timed out first).
fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The status of `GET path` on a fresh connection from `from` (0: refused,
/// closed or unanswered within 10 s).
pub fn status_from(from: [u8; 4], to: SocketAddr, path: &str) -> u16 {
    let Ok(mut conn) = connect_from(from, to) else {
        return 0;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    if conn.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    read_head(&mut conn)
        .and_then(|h| h.split_whitespace().nth(1).and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// Polls `/healthz` from `from` until it is answered `200`, for up to
/// `within`; fails the test otherwise.
fn eventually_healthy(from: [u8; 4], to: SocketAddr, within: Duration) {
    let start = Instant::now();
    loop {
        let status = status_from(from, to, "/healthz");
        if status == 200 {
            return;
        }
        assert!(
            start.elapsed() < within,
            "/healthz from {from:?} unanswered for {within:?} (last: {status})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Shuts `app` down on another thread and fails unless that is done
/// within `within` (the attack still going on).
fn shuts_down_within(mut app: TestApp, within: Duration) {
    let running = app.running.take().expect("running");
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        running.shutdown();
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(within).is_ok(),
        "shutdown waited more than {within:?} for the attack"
    );
}

/// Whether the server has closed `conn` (no waiting): an end of stream,
/// or a reset. Whatever it sent first is added to `seen`.
fn closed_now(conn: &TcpStream, seen: &mut Vec<u8>) -> bool {
    if conn.set_nonblocking(true).is_err() {
        return true;
    }
    let mut buf = [0u8; 1024];
    let mut reader = conn;
    let closed = loop {
        match reader.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => break e.kind() != ErrorKind::WouldBlock,
        }
    };
    let _ = conn.set_nonblocking(false);
    closed
}

/// Connections that send `opening` and then nothing, `each` of them from
/// every address in `from`, reopened as soon as the server closes one; on
/// a thread until dropped. Whatever the server sent them is kept.
pub struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    seen: Arc<Mutex<Vec<u8>>>,
    opened: Arc<AtomicUsize>,
}

impl Flood {
    pub fn start(to: SocketAddr, from: Vec<[u8; 4]>, each: usize, opening: &'static [u8]) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let opened = Arc::new(AtomicUsize::new(0));
        let (flag, sink, count) = (Arc::clone(&stop), Arc::clone(&seen), Arc::clone(&opened));
        let thread = std::thread::spawn(move || {
            let open = |ip: [u8; 4]| {
                let mut c = connect_from(ip, to).ok()?;
                count.fetch_add(1, Ordering::SeqCst);
                let _ = c.write_all(opening);
                Some(c)
            };
            let mut conns: Vec<([u8; 4], Option<TcpStream>)> = from
                .iter()
                .flat_map(|ip| std::iter::repeat_n(*ip, each))
                .map(|ip| (ip, None))
                .collect();
            while !flag.load(Ordering::SeqCst) {
                for (ip, conn) in &mut conns {
                    let mut got = Vec::new();
                    if conn.as_ref().is_none_or(|c| closed_now(c, &mut got)) {
                        *conn = open(*ip);
                    }
                    if !got.is_empty() {
                        sink.lock().expect("seen").extend_from_slice(&got);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Flood {
            stop,
            thread: Some(thread),
            seen,
            opened,
        }
    }

    /// Everything the server sent the flood's connections.
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().expect("seen").clone()
    }

    /// How many connections the flood has opened so far.
    pub fn opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Issue 20, item 1: a chunked body with one chunk over the 64 KiB cap,
/// 65,537 bytes sent at once and then a byte at a time. The cap answered
/// `413`, then the request thread drained the rest at the client's pace
/// (up to 256 reads, each allowed to stall `body_timeout`), so as many
/// such connections as request threads froze the server, `/healthz`
/// included, and shutdown waited for them.
#[test]
fn chunked_bodies_trickled_past_the_cap_do_not_freeze_the_server() {
    let app = TestApp::spawn_with(&[
        ("threads", "2"),
        ("login_queue_timeout", "0s"),
        ("header_timeout", "10s"),
        ("body_timeout", "10s"),
    ]);
    let at = addr(&app);
    let mut conns = Vec::new();
    for _ in 0..request_threads(2) + 4 {
        let mut conn = connect_from(ATTACKER, at).expect("connect");
        let mut bytes = b"POST /api/logout HTTP/1.1\r\nHost: t\r\n\
            Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n"
            .to_vec();
        bytes.resize(bytes.len() + 65_537, b' ');
        conn.write_all(&bytes).expect("send");
        conns.push(conn);
    }
    // The trickle: a byte every 300 ms on each, however long the test runs.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let mut writers: Vec<TcpStream> = conns
            .iter()
            .map(|c| c.try_clone().expect("clone"))
            .collect();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for w in &mut writers {
                    let _ = w.write(b" ");
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    eventually_healthy(BYSTANDER, at, Duration::from_secs(10));
    assert_eq!(status_from(BYSTANDER, at, "/login"), 200);
    // Each refused body got its answer at once (not after the drain).
    for conn in &mut conns {
        let head = read_head(conn).expect("an answer while the body still trickles");
        assert!(head.starts_with("HTTP/1.1 413"), "{head}");
        assert!(head.contains("Connection: close"), "{head}");
    }
    shuts_down_within(app, Duration::from_secs(10));
    stop.store(true, Ordering::SeqCst);
    let _ = trickle.join();
}

/// Issue 20, item 2: 4,096 unfinished request heads from one address,
/// each reopened when closed, left other clients a `503` on 75 of 89
/// tries. One address is held to its own share of the connections; and
/// when many addresses together fill the cap, the oldest connections still
/// in their head make room for new ones before any that is being served.
#[test]
fn one_address_with_unfinished_heads_cannot_take_every_slot() {
    let app = TestApp::spawn_with(&[("max_connections", "32"), ("header_timeout", "30s")]);
    let at = addr(&app);
    let head = b"GET /healthz HTTP/1.1\r\nHost: t\r\n";
    let flood = Flood::start(at, vec![ATTACKER], 64, head);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..20 {
        assert_eq!(status_from(BYSTANDER, at, "/healthz"), 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(flood.opened() >= 64);
    drop(flood);

    // Eight addresses, each under its own share, 64 connections in all.
    let many = (2..10).map(|i| [127, 0, 0, i]).collect();
    let flood = Flood::start(at, many, 8, head);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..20 {
        assert_eq!(status_from(BYSTANDER, at, "/healthz"), 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(flood.opened() > 64, "none made room");
    shuts_down_within(app, Duration::from_secs(10));
}

/// An upstream that answers `GET /big` with `size` bytes, and echoes
/// upgraded (WebSocket) connections back.
pub fn upstream(size: u64) -> (SocketAddr, Arc<AtomicBool>) {
    crate::raw::upstream(move |request| {
        if request.header("Upgrade").is_some() {
            return rouille::Response {
                status_code: 101,
                headers: vec![("Upgrade".into(), "websocket".into())],
                data: rouille::ResponseBody::empty(),
                upgrade: Some(Box::new(Echo)),
            };
        }
        let body = std::io::repeat(b'x').take(size);
        rouille::Response {
            status_code: 200,
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            data: rouille::ResponseBody::from_reader_and_size(body, size as usize),
            upgrade: None,
        }
    })
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

/// A server with one app, `files`, proxied to `upstream`, and the users
/// alice and bob; `settings` on top.
fn proxied(upstream: SocketAddr, settings: &[(&str, &str)]) -> TestApp {
    let toml = format!(
        "[[apps]]\nname = \"files\"\nprefix = \"/apps/files/\"\nupstream = \"http://{upstream}\"\n"
    );
    let app = TestApp::spawn_with_file(&toml, settings);
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "correct horse", false);
    app
}

/// The session cookie of `name`, signed in through the API.
fn session_of(app: &TestApp, name: &str) -> String {
    let b = app.browser();
    assert_eq!(b.login(name, "correct horse").status, 303);
    b.cookie("gatehouse_session").expect("signed in")
}

/// Opens a WebSocket through the proxy from `from` with `session`: the
/// connection and the status of the answer (0: none).
fn tunnel(from: [u8; 4], at: SocketAddr, session: &str) -> (Option<TcpStream>, u16) {
    let Ok(mut conn) = connect_from(from, at) else {
        return (None, 0);
    };
    let handshake = format!(
        "GET /apps/files/socket HTTP/1.1\r\nHost: {at}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: gatehouse_session={session}\r\n\r\n"
    );
    if conn.write_all(handshake.as_bytes()).is_err() {
        return (None, 0);
    }
    let status = read_head(&mut conn)
        .and_then(|h| h.split_whitespace().nth(1).and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    (Some(conn), status)
}

/// Sends `n` requests (`request(i)`) from eight addresses, each on its own
/// connection, and waits until all but `waiting` of them are answered
/// `429` or `503`: the connections (to hold) and their reader threads.
fn mostly_refused(
    at: SocketAddr,
    n: u8,
    waiting: usize,
    what: &str,
    request: impl Fn(u8) -> String,
) -> (Vec<TcpStream>, Vec<JoinHandle<()>>) {
    let refused = Arc::new(AtomicUsize::new(0));
    let mut held = Vec::new();
    let waiters = (0..n)
        .map(|i| {
            let mut conn = connect_from([127, 0, 0, 20 + i % 8], at).expect("connect");
            conn.write_all(request(i).as_bytes()).expect("send");
            held.push(conn.try_clone().expect("clone"));
            let refused = Arc::clone(&refused);
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                if let Some(head) = read_head(&mut conn)
                    && (head.starts_with("HTTP/1.1 429") || head.starts_with("HTTP/1.1 503"))
                {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let start = Instant::now();
    while refused.load(Ordering::SeqCst) < usize::from(n) - waiting {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {} of the {n} {what} were refused",
            refused.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (held, waiters)
}

/// Issue 20, item 2: a signed-in user holding 64 quiet WebSocket tunnels
/// through the proxy (closed only after an hour idle) locked everyone
/// else out at `max_connections = 64`. A user's tunnels count against
/// the user (and their connections against their address).
#[test]
fn one_user_holding_quiet_tunnels_cannot_lock_others_out() {
    let (up, stop) = upstream(0);
    let app = proxied(up, &[("max_connections", "16")]);
    let at = addr(&app);
    let alice = session_of(&app, "alice");
    let bob = session_of(&app, "bob");
    // Alice, from several addresses, asks for twice as many tunnels as
    // there are connections.
    let mut held = Vec::new();
    let mut opened = 0;
    for i in 0..32u8 {
        let (conn, status) = tunnel([127, 0, 0, 10 + i % 4], at, &alice);
        assert!([101, 429, 503, 0].contains(&status), "tunnel {i}: {status}");
        if status == 101 {
            opened += 1;
            held.extend(conn);
        }
    }
    assert!(opened >= 1, "alice's first tunnel opens");
    assert!(opened < 16, "alice took every connection: {opened} tunnels");
    eventually_healthy(BYSTANDER, at, Duration::from_secs(10));
    assert_eq!(status_from([127, 0, 0, 3], at, "/login"), 200);
    let (conn, status) = tunnel([127, 0, 0, 4], at, &bob);
    assert_eq!(status, 101, "bob's tunnel opens beside alice's");
    let mut conn = conn.expect("bob's tunnel");
    conn.write_all(b"ping").expect("send");
    let mut echo = [0u8; 4];
    conn.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"ping");
    shuts_down_within(app, Duration::from_secs(10));
    stop.store(true, Ordering::SeqCst);
}

/// A hostile pass over issue 22: an upstream that accepts and never
/// answers held a request thread per proxied request for `proxy_timeout`,
/// and one signed-in user sending a few hundred such requests left
/// `/healthz` and `/auth/verify` unanswered for a minute. At most three
/// quarters of `threads` wait on upstreams at once, and one user at most
/// half of those: the rest are refused at once (`429`, `503`).
#[test]
fn requests_hanging_on_an_upstream_hold_only_some_of_the_threads() {
    let (up, hung) = hung_upstream();
    let app = proxied(
        up,
        &[
            ("threads", "8"),
            ("proxy_timeout", "120s"),
            ("login_queue_timeout", "0s"),
        ],
    );
    let at = addr(&app);
    let alice = session_of(&app, "alice");
    let bob = session_of(&app, "bob");
    // Alice sends 40 requests to the hung app, from several addresses.
    // Most of them are refused at once; the others wait on the upstream.
    let (held, waiters) = mostly_refused(at, 40, 3, "requests", |i| {
        format!(
            "GET /apps/files/slow{i} HTTP/1.1\r\nHost: t\r\nCookie: gatehouse_session={alice}\r\n\r\n"
        )
    });
    // Everyone else is served: /healthz, forward auth, and bob's request
    // to the same app is forwarded (it waits on the upstream too, rather
    // than being refused).
    eventually_healthy(BYSTANDER, at, Duration::from_secs(10));
    assert_eq!(status_from([127, 0, 0, 3], at, "/login"), 200);
    let mut conn = connect_from([127, 0, 0, 4], at).expect("connect");
    let request = format!(
        "GET /apps/files/bob HTTP/1.1\r\nHost: t\r\nCookie: gatehouse_session={bob}\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).expect("send");
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut byte = [0u8; 1];
    let early = conn.read(&mut byte);
    assert!(
        early.is_err(),
        "bob's request was answered at once instead of forwarded: {early:?}"
    );
    let forwarded = hung.lock().expect("lock").len();
    assert!(
        (2..=7).contains(&forwarded),
        "{forwarded} requests reached the hung upstream"
    );
    drop(held);
    drop(conn);
    // The upstream gives up: the waiting threads get their error, and the
    // server stops.
    hung.lock().expect("lock").clear();
    shuts_down_within(app, Duration::from_secs(20));
    drop(waiters);
}

/// An upstream that takes every connection and never reads or answers;
/// the connections are kept until the list it returns is cleared.
fn hung_upstream() -> (SocketAddr, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = listener.local_addr().expect("addr");
    let hung = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&hung);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().expect("lock").push(conn);
        }
    });
    (up, hung)
}

/// A hostile pass: opening a WebSocket through the proxy waits for the
/// upstream's `101` (up to `proxy_timeout`) on a request thread, and was
/// not counted with the other requests waiting on upstreams: one user
/// sending upgrade requests to a hung app took every request thread.
/// Openings now count like any proxied request.
#[test]
fn websocket_openings_hanging_on_an_upstream_hold_only_some_of_the_threads() {
    let (up, hung) = hung_upstream();
    let app = proxied(
        up,
        &[
            ("threads", "8"),
            ("proxy_timeout", "120s"),
            ("login_queue_timeout", "0s"),
        ],
    );
    let at = addr(&app);
    let alice = session_of(&app, "alice");
    let (held, waiters) = mostly_refused(at, 40, 3, "WebSocket openings", |i| {
        format!(
            "GET /apps/files/socket{i} HTTP/1.1\r\nHost: {at}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Cookie: gatehouse_session={alice}\r\n\r\n"
        )
    });
    eventually_healthy(BYSTANDER, at, Duration::from_secs(10));
    assert_eq!(status_from([127, 0, 0, 3], at, "/login"), 200);
    let opened = hung.lock().expect("lock").len();
    assert!(
        (1..=3).contains(&opened),
        "{opened} openings reached the hung upstream"
    );
    drop(held);
    hung.lock().expect("lock").clear();
    shuts_down_within(app, Duration::from_secs(20));
    drop(waiters);
}

/// A hostile pass: a proxied upload that a client trickles (past the
/// 64 KiB read with the head, then a byte every two seconds, each read
/// within `body_timeout`) held its request for as long as the client
/// liked, and shutdown waited for it for ever. Shutdown now waits for the
/// requests under way for a grace of 10 s at most.
#[test]
fn shutdown_does_not_wait_for_a_proxied_upload_a_client_trickles() {
    let (up, hung) = hung_upstream();
    let app = proxied(up, &[("body_timeout", "3s")]);
    let at = addr(&app);
    let alice = session_of(&app, "alice");
    let mut conn = connect_from(ATTACKER, at).expect("connect");
    let head = format!(
        "POST /apps/files/upload HTTP/1.1\r\nHost: t\r\nCookie: gatehouse_session={alice}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 200000\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).expect("send head");
    conn.write_all(&vec![b'x'; 70 * 1024])
        .expect("send the first 70 KiB");
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop);
        let mut conn = conn.try_clone().expect("clone");
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if conn.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        })
    };
    // The request is under way: it reached the upstream.
    let start = Instant::now();
    while hung.lock().expect("lock").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the upload never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    shuts_down_within(app, Duration::from_secs(15));
    stop.store(true, Ordering::SeqCst);
    drop(conn);
    let _ = trickle.join();
}

/// Issue 20, item 2: the idle limit of a tunnel (an hour, hard-coded) is
/// the setting `tunnel_idle_timeout`.
#[test]
fn a_quiet_tunnel_is_closed_after_the_tunnel_idle_timeout() {
    let (up, stop) = upstream(0);
    let app = proxied(up, &[("tunnel_idle_timeout", "2s"), ("body_timeout", "1s")]);
    let at = addr(&app);
    let alice = session_of(&app, "alice");
    let (conn, status) = tunnel(BYSTANDER, at, &alice);
    assert_eq!(status, 101);
    let mut conn = conn.expect("a tunnel");
    // Busy for longer than the idle limit: it stays open.
    let mut echo = [0u8; 4];
    for _ in 0..6 {
        conn.write_all(b"ping").expect("send");
        conn.read_exact(&mut echo).expect("echo while busy");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Then quiet: closed after about two seconds.
    let start = Instant::now();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let closed = matches!(conn.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "a quiet tunnel stays open");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "closed only after {:?}",
        start.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
}

/// Readers of `/apps/files/big` from `from`, each reading `chunk` bytes
/// every `every` on a connection with a small receive buffer, until
/// `stop`; each thread returns how many bytes it read and whether the
/// server closed the connection.
fn slow_readers(
    at: SocketAddr,
    session: &str,
    from: [u8; 4],
    count: usize,
    chunk: usize,
    every: Duration,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<(usize, bool)>> {
    (0..count)
        .map(|_| {
            let mut conn = connect_from_with(from, at, Some(4096)).expect("connect");
            let request = format!(
                "GET /apps/files/big HTTP/1.1\r\nHost: t\r\nCookie: gatehouse_session={session}\r\n\r\n"
            );
            conn.write_all(request.as_bytes()).expect("send");
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut got = 0;
                let mut buf = vec![0u8; chunk];
                while !stop.load(Ordering::SeqCst) {
                    match conn.read(&mut buf) {
                        Ok(0) => return (got, true),
                        Ok(n) => got += n,
                        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        }
                        Err(_) => return (got, true),
                    }
                    std::thread::sleep(every);
                }
                (got, false)
            })
        })
        .collect()
}

/// Issue 20, item 7: 280 clients reading a proxied download at 16 KiB
/// every 8 s left `/healthz` unanswered for a minute: each held a request
/// thread while it wrote. Slow readers are written to off the request
/// threads.
#[test]
fn slow_readers_of_a_proxied_download_do_not_hold_the_request_threads() {
    let (up, stop_upstream) = upstream(64 * 1024 * 1024);
    let app = proxied(
        up,
        &[
            ("threads", "2"),
            ("login_queue_timeout", "0s"),
            ("body_timeout", "30s"),
        ],
    );
    let at = addr(&app);
    let alice = session_of(&app, "alice");
    let stop = Arc::new(AtomicBool::new(false));
    let readers = slow_readers(
        at,
        &alice,
        ATTACKER,
        request_threads(2) + 4,
        16 * 1024,
        Duration::from_millis(500),
        &stop,
    );
    std::thread::sleep(Duration::from_secs(2));
    eventually_healthy(BYSTANDER, at, Duration::from_secs(10));
    assert_eq!(status_from([127, 0, 0, 3], at, "/login"), 200);
    shuts_down_within(app, Duration::from_secs(10));
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        let (got, _) = r.join().expect("reader");
        assert!(got > 0, "a reader got nothing at all");
    }
    stop_upstream.store(true, Ordering::SeqCst);
}

/// Issue 20, item 7: a client reading an answer slower than
/// `min_send_rate` is cut off (after `body_timeout` of grace), while one
/// reading at full speed gets all of it.
#[test]
fn a_reader_slower_than_the_minimum_rate_is_cut_off() {
    let size = 16 * 1024 * 1024;
    let (up, stop_upstream) = upstream(size);
    let app = proxied(up, &[("min_send_rate", "65536"), ("body_timeout", "2s")]);
    let at = addr(&app);
    let alice = session_of(&app, "alice");
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let slow = slow_readers(
        at,
        &alice,
        ATTACKER,
        1,
        2048,
        Duration::from_millis(200),
        &stop,
    );
    // A reader at full speed gets the whole answer meanwhile.
    let mut fast = connect_from(BYSTANDER, at).expect("connect");
    write!(
        fast,
        "GET /apps/files/big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Cookie: gatehouse_session={alice}\r\n\r\n"
    )
    .expect("send");
    let head = read_head(&mut fast).expect("a head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut raw = Vec::new();
    fast.read_to_end(&mut raw).expect("the whole answer");
    assert_eq!(dechunk(&raw).len() as u64, size);
    let watchdog = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(30));
            stop.store(true, Ordering::SeqCst);
        })
    };
    for r in slow {
        let (got, closed) = r.join().expect("reader");
        assert!(closed, "a reader at 10 KiB/s kept its connection");
        assert!(
            (got as u64) < size,
            "the slow reader got all of it ({got} bytes)"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(30));
    stop.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    stop_upstream.store(true, Ordering::SeqCst);
}

/// The data of a chunked body (the whole of it, last chunk included).
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end]).expect("ASCII"), 16)
            .expect("a hex size");
        raw = &raw[end + 2..];
        if size == 0 {
            assert_eq!(raw, b"\r\n", "the body ends after its last chunk");
            return data;
        }
        data.extend_from_slice(&raw[..size]);
        assert_eq!(&raw[size..size + 2], b"\r\n");
        raw = &raw[size + 2..];
    }
}

/// An answer the client takes more slowly than gatehouse makes it (so it
/// is handed from the request thread to the connection's own thread,
/// maybe many times) arrives whole and in order.
#[test]
fn an_answer_finished_off_the_request_thread_arrives_whole() {
    let size = 12 * 1024 * 1024;
    let (up, stop_upstream) = upstream(size);
    let app = proxied(up, &[]);
    let at = addr(&app);
    let alice = session_of(&app, "alice");
    let mut conn = connect_from_with(BYSTANDER, at, Some(16 * 1024)).expect("connect");
    // Twice, on one kept-alive connection: the second answer comes after
    // the first was finished off the request thread.
    for _ in 0..2 {
        write!(
            conn,
            "GET /apps/files/big HTTP/1.1\r\nHost: t\r\nCookie: gatehouse_session={alice}\r\n\r\n"
        )
        .expect("send");
        let head = read_head(&mut conn).expect("a head");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // Some 4 MB a second, in 64 KiB reads: far slower than loopback.
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !raw.ends_with(b"\r\n0\r\n\r\n") {
            let n = conn.read(&mut buf).expect("the answer goes on");
            assert!(n > 0, "closed after {} bytes", raw.len());
            raw.extend_from_slice(&buf[..n]);
            std::thread::sleep(Duration::from_millis(15));
        }
        let body = dechunk(&raw);
        assert_eq!(body.len() as u64, size);
        assert!(body.iter().all(|b| *b == b'x'));
    }
    stop_upstream.store(true, Ordering::SeqCst);
}

/// A body without end, a line every 200 ms (server-sent events).
struct Ticker;

impl Read for Ticker {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(200));
        let line = b"data: tick\n\n";
        let n = line.len().min(buf.len());
        buf[..n].copy_from_slice(&line[..n]);
        Ok(n)
    }
}

/// Streams from an upstream that never end (server-sent events through
/// the proxy), more of them than request threads: each held a request
/// thread for as long as it lasted. The stream goes on from its
/// connection's own thread, each event as it comes.
#[test]
fn endless_streams_through_the_proxy_hold_no_request_thread() {
    let (up, stop_upstream) = crate::raw::upstream(|_| rouille::Response {
        status_code: 200,
        headers: vec![("Content-Type".into(), "text/event-stream".into())],
        data: rouille::ResponseBody::from_reader(Ticker),
        upgrade: None,
    });
    let app = proxied(up, &[("threads", "2"), ("login_queue_timeout", "0s")]);
    let at = addr(&app);
    let alice = session_of(&app, "alice");
    let mut streams = Vec::new();
    for _ in 0..request_threads(2) + 2 {
        let mut conn = connect_from(ATTACKER, at).expect("connect");
        write!(
            conn,
            "GET /apps/files/events HTTP/1.1\r\nHost: t\r\nCookie: gatehouse_session={alice}\r\n\r\n"
        )
        .expect("send");
        let head = read_head(&mut conn).expect("a head");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        streams.push(conn);
    }
    eventually_healthy(BYSTANDER, at, Duration::from_secs(10));
    // The events keep coming, one at a time.
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.windows(4).filter(|w| w == b"tick").count() < 3 {
        let n = streams[0].read(&mut buf).expect("events");
        assert!(n > 0, "the stream ended");
        got.extend_from_slice(&buf[..n]);
    }
    shuts_down_within(app, Duration::from_secs(10));
    stop_upstream.store(true, Ordering::SeqCst);
}

/// `gatehouse serve` (the real binary) with `env`: the child and its
/// address.
fn serve(env: &[(&str, &str)]) -> (Child, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .env("GATEHOUSE_LOG_REQUESTS", "false")
        .envs(crate::helpers::backend_env(dir.path()))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let (_, url) = crate::raw::served_url(&mut child);
    let at = url
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    (child, at, dir)
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// The most `rss_kib` reached over `for_` (sampled every 100 ms).
fn peak_rss_kib(pid: u32, for_: Duration) -> u64 {
    let start = Instant::now();
    let mut peak = 0;
    while start.elapsed() < for_ {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    peak
}

/// Issue 20, item 6: 4,000 connections each holding a buffered chunked
/// body took the server from 9 MB to about 400 MB (the README promises
/// about 135 MB for 4,096 connections, some 33 KiB each), and 330 MB
/// stayed after they closed. Here 800 connections each send a 60 KiB
/// chunk of a body that never ends; the server must stay near its
/// per-connection figure (bodies read ahead share one budget of 8 MiB),
/// and give the memory back once they are gone.
#[test]
fn connections_holding_bodies_stay_within_the_memory_bound_and_give_it_back() {
    gatehouse::app::descriptors::raise();
    let (mut child, at, _dir) = serve(&[
        ("GATEHOUSE_HEADER_TIMEOUT", "60s"),
        ("GATEHOUSE_BODY_TIMEOUT", "60s"),
        ("GATEHOUSE_THREADS", "4"),
        ("GATEHOUSE_LOGIN_QUEUE_TIMEOUT", "0s"),
    ]);
    let pid = child.id();
    for _ in 0..20 {
        assert_eq!(status_from(BYSTANDER, at, "/healthz"), 200);
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);
    let n = 800;
    let mut body = b"POST /api/logout HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
        Transfer-Encoding: chunked\r\n\r\nf000\r\n"
        .to_vec();
    body.resize(body.len() + 0xf000, b' ');
    body.extend_from_slice(b"\r\n");
    let mut conns = Vec::new();
    for i in 0..n {
        let from = [127, 0, 0, 10 + (i % 8) as u8];
        let mut conn = connect_from(from, at).expect("connect");
        conn.write_all(&body).expect("send");
        conns.push(conn);
    }
    let during = peak_rss_kib(pid, Duration::from_secs(3));
    let grown = during.saturating_sub(before);
    eprintln!("RSS before {before} KiB, with {n} connections holding bodies {during} KiB");
    // The bound: about 33 KiB a connection (the README's figure) and the
    // 8 MiB budget, with slack; the bodies alone were 60 KiB each.
    let bound = n as u64 * 40 + 12 * 1024;
    assert!(
        grown < bound,
        "{n} connections holding bodies took {grown} KiB (from {before} KiB), over {bound} KiB"
    );
    eventually_healthy(BYSTANDER, at, Duration::from_secs(10));
    drop(conns);
    // Given back: once they are gone (and the threads that served them,
    // which end after 5 s idle), most of it is returned. What stays is the
    // allocator's for reuse, and comes from the threads (as much stays
    // after as many idle connections), not from the bodies.
    std::thread::sleep(Duration::from_secs(8));
    let after = rss_kib(pid);
    eprintln!("RSS 8 s after they closed {after} KiB");
    assert!(
        after.saturating_sub(before) < grown / 2 + 4 * 1024,
        "{after} KiB after they closed (before: {before}, during: {during})"
    );
    let _ = child.kill();
    let _ = child.wait();
}
