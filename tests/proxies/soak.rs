//! A soak through real proxies (issue 13): for about 30 s, valid clients
//! and hostile ones share nginx's and Caddy's kept-alive connections to
//! gatehouse. Each valid request carries a unique token that its answer
//! shows (the sign-in page keeps `next`), so an answer meant for another
//! request (a desynchronised connection: a body taken for a request, a
//! request cut short) is caught, and so is a stray answer. Bounded in time
//! (`GATEHOUSE_SOAK_SECS`, default 30) and in count (requests per client).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::helpers::TestApp;
use super::{Proxy, have, run_caddy, wait_for};

const VALID_CLIENTS: usize = 4;
const HOSTILE_CLIENTS: usize = 3;
/// The most requests one valid client sends, however fast the machine.
const MAX_REQUESTS: usize = 20_000;

fn soak_time() -> Duration {
    let secs = std::env::var("GATEHOUSE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// One answer read off a kept-alive connection: status, head and body.
fn read_answer(r: &mut BufReader<UnixStream>) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let mut body = Vec::new();
    if let Some(len) = header("Content-Length") {
        let len: usize = len.parse().map_err(|_| ErrorKind::InvalidData)?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if header("Transfer-Encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| ErrorKind::InvalidData)?;
            if size == 0 {
                let mut end = String::new();
                r.read_line(&mut end)?;
                break;
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            r.read_exact(&mut body[start..])?;
            body.truncate(start + size);
        }
    } else if !(status < 200 || status == 204 || status == 304) {
        r.read_to_end(&mut body)?;
    }
    Ok((status, head, body))
}

fn open(socket: &Path) -> BufReader<UnixStream> {
    let s = UnixStream::connect(socket).expect("connect to the proxy");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    BufReader::new(s)
}

/// What one valid client saw.
#[derive(Default)]
struct Tally {
    answered: usize,
    reconnects: usize,
}

/// Sends kept-alive requests, each with its own token, until `stop`; every
/// answer must be its own request's.
fn valid_client(socket: &Path, id: usize, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    let mut conn = open(socket);
    while !stop.load(Ordering::SeqCst) && tally.answered < MAX_REQUESTS {
        let token = format!("soak{id}x{}", tally.answered);
        let request = format!("GET /login?next=/{token} HTTP/1.1\r\nHost: auth.lan\r\n\r\n");
        if conn.get_mut().write_all(request.as_bytes()).is_err() {
            // The proxy closed its side between requests: allowed.
            tally.reconnects += 1;
            conn = open(socket);
            continue;
        }
        match read_answer(&mut conn) {
            Ok((status, head, body)) => {
                let body = String::from_utf8_lossy(&body);
                assert_eq!(status, 200, "client {id}, {token}: {head}{body}");
                assert!(
                    body.contains(&token),
                    "client {id} got an answer that is not its own ({token}): {head}"
                );
                tally.answered += 1;
                if head.to_ascii_lowercase().contains("connection: close") {
                    tally.reconnects += 1;
                    conn = open(socket);
                }
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && tally.reconnects < 100 => {
                tally.reconnects += 1;
                conn = open(socket);
            }
            Err(e) => panic!("client {id}, {token}: {e}"),
        }
    }
    // The last answer was the last: nothing stray follows it.
    let _ = conn
        .get_mut()
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: auth.lan\r\nConnection: close\r\n\r\n");
    if let Ok((status, _, body)) = read_answer(&mut conn) {
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "client {id}: stray bytes after the last answer: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    tally
}

/// The hostile requests, each sent whole on a fresh connection or after
/// another on a kept-alive one.
fn hostile(n: usize) -> Vec<u8> {
    let smuggled = b"GET /nope HTTP/1.1\r\nHost: auth.lan\r\n\r\n";
    match n % 9 {
        // Reproduction 5: an ignored chunked body holding a request.
        0 => {
            let mut b = b"POST /api/logout HTTP/1.1\r\nHost: auth.lan\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            b.extend_from_slice(format!("{:x}\r\n", smuggled.len()).as_bytes());
            b.extend_from_slice(smuggled);
            b.extend_from_slice(b"\r\n0\r\n\r\n");
            b
        }
        // Reproduction 1: a huge declared length, never sent.
        1 => b"GET /healthz HTTP/1.1\r\nHost: auth.lan\r\nContent-Length: 100000000000\r\n\r\n"
            .to_vec(),
        // A body over the cap on a route that ignores it.
        2 => {
            let mut b = b"POST /api/logout HTTP/1.1\r\nHost: auth.lan\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n".to_vec();
            b.resize(b.len() + 200_000, b'{');
            b
        }
        // Chunked, over the cap.
        3 => {
            let mut b = b"POST /healthz HTTP/1.1\r\nHost: auth.lan\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
            for _ in 0..4 {
                b.extend_from_slice(b"8000\r\n");
                b.resize(b.len() + 0x8000, b'a');
                b.extend_from_slice(b"\r\n");
            }
            b.extend_from_slice(b"0\r\n\r\n");
            b
        }
        // Reproduction 4: both framings.
        4 => b"POST /api/logout HTTP/1.1\r\nHost: auth.lan\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        // Reproduction 3: a bare LF in the target.
        5 => b"GET /login?next=/a\nSet-Cookie:\tx=1 HTTP/1.1\r\nHost: auth.lan\r\n\r\n".to_vec(),
        // A body cut short: announced 2000, 100 sent, then the client goes.
        6 => {
            let mut b = b"POST /api/logout HTTP/1.1\r\nHost: auth.lan\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n".to_vec();
            b.resize(b.len() + 100, b' ');
            b
        }
        // A small ignored body of a broken chunk framing.
        7 => b"POST /api/logout HTTP/1.1\r\nHost: auth.lan\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n".to_vec(),
        // An ignored body under the cap, then a request in the same bytes.
        _ => {
            let mut b = b"POST /healthz HTTP/1.1\r\nHost: auth.lan\r\nContent-Length: 5000\r\n\r\n".to_vec();
            b.resize(b.len() + 5000, b'G');
            b.extend_from_slice(smuggled);
            b
        }
    }
}

/// Sends hostile requests until `stop`; their answers are not checked
/// (the proxy may answer some itself), only that nothing hangs for good.
fn hostile_client(socket: &Path, id: usize, stop: &AtomicBool) {
    let mut n = id;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut s) = UnixStream::connect(socket) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let _ = s.write_all(&hostile(n));
        if n % 9 == 6 {
            // Gone mid-body.
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let mut buf = [0u8; 4096];
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        n += HOSTILE_CLIENTS;
    }
}

fn soak(app: &TestApp, proxy: &Proxy) {
    let stop = Arc::new(AtomicBool::new(false));
    let socket = proxy.socket.clone();
    let valid: Vec<_> = (0..VALID_CLIENTS)
        .map(|id| {
            let (stop, socket) = (Arc::clone(&stop), socket.clone());
            std::thread::spawn(move || valid_client(&socket, id, &stop))
        })
        .collect();
    let hostile: Vec<_> = (0..HOSTILE_CLIENTS)
        .map(|id| {
            let (stop, socket) = (Arc::clone(&stop), socket.clone());
            std::thread::spawn(move || hostile_client(&socket, id, &stop))
        })
        .collect();
    std::thread::sleep(soak_time());
    stop.store(true, Ordering::SeqCst);
    for h in hostile {
        h.join().expect("a hostile client");
    }
    for (id, v) in valid.into_iter().enumerate() {
        let tally = v.join().expect("a valid client saw only its own answers");
        assert!(
            tally.answered >= 10,
            "client {id} got only {} answers",
            tally.answered
        );
        eprintln!(
            "valid client {id}: {} answers, {} reconnects",
            tally.answered, tally.reconnects
        );
    }
    assert_eq!(app.browser().get("/healthz").status, 200);
}

fn start_nginx(dir: &Path, gatehouse: &str) -> Proxy {
    let socket = dir.join("nginx.sock");
    let d = dir.display();
    // Kept-alive upstream connections, bodies streamed unbuffered (so a
    // chunked body reaches gatehouse chunked).
    let conf = format!(
        "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         upstream gatehouse {{ server {gatehouse}; keepalive 8; }}\n\
         server {{\n  listen unix:{s};\n  client_max_body_size 10m;\n\
           location / {{\n   proxy_pass http://gatehouse;\n   proxy_http_version 1.1;\n\
            proxy_set_header Connection \"\";\n   proxy_set_header Host $host;\n\
            proxy_request_buffering off;\n  }}\n }}\n}}\n",
        s = socket.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    let args = [
        "-e".to_owned(),
        format!("{d}/error.log"),
        "-p".to_owned(),
        d.to_string(),
        "-c".to_owned(),
        format!("{d}/nginx.conf"),
        "-g".to_owned(),
        "daemon off;".to_owned(),
    ];
    let mut child = Command::new("nginx")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    wait_for(&socket, &mut child, "nginx");
    Proxy { child, socket }
}

fn start_caddy(dir: &Path, gatehouse: &str) -> Proxy {
    let socket = dir.join("caddy.sock");
    let site = format!(
        "http:// {{\n\tbind unix/{}\n\treverse_proxy {gatehouse}\n}}\n",
        socket.display()
    );
    run_caddy(dir, &socket, &site)
}

#[test]
fn a_soak_through_nginx_gives_every_client_its_own_answers() {
    if !have("nginx") {
        return;
    }
    let app = TestApp::spawn();
    let dir = tempfile::tempdir().expect("dir");
    let proxy = start_nginx(dir.path(), app.base.trim_start_matches("http://"));
    soak(&app, &proxy);
}

#[test]
fn a_soak_through_caddy_gives_every_client_its_own_answers() {
    if !have("caddy") {
        return;
    }
    let app = TestApp::spawn();
    let dir = tempfile::tempdir().expect("dir");
    let proxy = start_caddy(dir.path(), app.base.trim_start_matches("http://"));
    soak(&app, &proxy);
}
