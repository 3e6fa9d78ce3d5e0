//! A hostile pass over the hardening of issues 13-15: each test here
//! reproduces a hole found by attacking the real server, and failed before
//! its fix.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::{Browser, TestApp, agent};
use crate::raw::raw;

/// An upstream whose every answer carries these `Set-Cookie` values.
fn cookie_setting_upstream(cookies: &'static [&'static str]) -> (SocketAddr, Arc<AtomicBool>) {
    crate::raw::upstream(move |_request| {
        let mut response = rouille::Response::text("cookies");
        for c in cookies {
            response = response.with_additional_header("Set-Cookie", *c);
        }
        response
    })
}

fn signed_in(app: &TestApp, name: &str) -> Browser {
    app.add_user(name, "correct horse", false);
    let b = app.browser();
    b.login(name, "correct horse");
    b
}

/// Browsers keep a cookie without a name (`=gatehouse_session=x`) and send
/// it back as its value alone, `gatehouse_session=x`: to gatehouse, its own
/// session cookie. So an app could sign a browser into a session it chose.
#[test]
fn an_upstream_cannot_set_gatehouses_cookies_as_nameless_cookies() {
    const PLANTED: &[&str] = &[
        "=gatehouse_session=planted.sig; Path=/",
        " = gatehouse_session=planted.sig; Path=/",
        "==gatehouse_session=planted.sig",
        "=gatehouse_csrf=planted",
        "theirs=1; Path=/",
    ];
    let (upstream, stop) = cookie_setting_upstream(PLANTED);
    let app = TestApp::spawn_with_file(
        &format!(
            "[[apps]]\nname = \"wiki\"\nprefix = \"/apps/wiki/\"\nupstream = \"http://{upstream}\"\n"
        ),
        &[],
    );
    let b = signed_in(&app, "alice");
    let resp = b.get("/apps/wiki/x");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.set_cookies(), ["theirs=1; Path=/"]);
    stop.store(true, Ordering::SeqCst);
}

/// Requests sent one after another on a connection (pipelining) whose
/// answers the client never reads: each used to take a request thread,
/// waiting for its turn to write, so one such connection held every
/// request thread until its writes timed out (90 s at the default
/// `body_timeout`), and the server answered no one.
#[test]
fn one_connection_pipelining_without_reading_does_not_take_every_thread() {
    let app = TestApp::spawn_with(&[("threads", "4"), ("body_timeout", "30s")]);
    let addr: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let deaf = TcpStream::connect(addr).expect("connect");
    let mut writer = deaf.try_clone().expect("clone");
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    let sender = std::thread::spawn(move || {
        let request = b"GET /assets/style.css HTTP/1.1\r\nHost: t\r\n\r\n".repeat(50);
        writer
            .set_write_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        while !flag.load(Ordering::SeqCst) {
            if writer.write_all(&request).is_err() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let start = Instant::now();
    let quick = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build();
    let quick: ureq::Agent = quick.into();
    let answer = quick.get(format!("{}/healthz", app.base)).call();
    done.store(true, Ordering::SeqCst);
    let _ = deaf.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    let status = answer.as_ref().map(|r| r.status().as_u16());
    assert_eq!(
        status.ok(),
        Some(200),
        "healthz behind one deaf pipelining connection: {answer:?} after {:?}",
        start.elapsed()
    );
    // And the server is still fine afterwards.
    let again = agent()
        .get(format!("{}/healthz", app.base))
        .call()
        .expect("healthz");
    assert_eq!(again.status(), 200);
}

/// An upstream that answers every request with its target, counting them.
fn echo_upstream() -> (
    SocketAddr,
    Arc<AtomicBool>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let (addr, stop) = crate::raw::upstream(move |request| {
        let url = request.raw_url().to_owned();
        log.lock().expect("log").push(url.clone());
        rouille::Response::text(format!("url={url}"))
    });
    (addr, stop, seen)
}

/// Java servers (Tomcat, Jetty, Spring) drop `;parameters` from each path
/// segment before they map a path, and read `..;` as `..`: under a prefix
/// open to everyone, `private;x/` and `x/..;/private/` reached a nested
/// admins-only prefix on the same upstream.
#[test]
fn path_parameters_cannot_reach_a_nested_prefix() {
    let (upstream, stop, seen) = echo_upstream();
    let app = TestApp::spawn_with_file(
        &format!(
            r#"
default_policy = "deny"

[[apps]]
name = "site"
prefix = "/apps/site/"
upstream = "http://{upstream}"

[[apps]]
name = "private"
prefix = "/apps/site/private/"
upstream = "http://{upstream}/private"
allow = "admins"
"#
        ),
        &[],
    );
    let b = signed_in(&app, "alice");
    let cookie = format!(
        "gatehouse_session={}",
        b.cookie("gatehouse_session").expect("signed in")
    );
    let get = |target: &str| {
        raw(
            &app,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    for target in [
        "/apps/site/private;x/secret.txt",
        "/apps/site/private;/secret.txt",
        "/apps/site/x/..;/private/secret.txt",
        "/apps/site/x/..;y/private/secret.txt",
        "/apps/site/.;/private/secret.txt",
        "/apps/site/%70rivate;jsessionid=1/secret.txt",
    ] {
        let answer = get(target);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{target}: {answer}");
    }
    assert!(
        seen.lock().expect("log").is_empty(),
        "forwarded: {:?}",
        seen.lock().expect("log")
    );
    // Parameters that keep the path in its app still pass.
    let answer = get("/apps/site/page;v=1/x");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("url=/page;v=1/x"), "{answer}");
    // Forward auth judges the same way.
    let verify = raw(
        &app,
        &format!(
            "GET /auth/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(
        verify.starts_with("HTTP/1.1 403 "),
        "default deny: {verify}"
    );
    stop.store(true, Ordering::SeqCst);
}

/// A host name with its trailing dot (`wiki.lan.`) is the same host to DNS
/// and to many front proxies; gatehouse judged it by `default_policy`
/// (anyone signed in) instead of the app's own list of users.
#[test]
fn a_trailing_dot_on_the_host_does_not_escape_the_apps_rule() {
    let app = TestApp::spawn_with_file(
        "trusted_proxies = [\"127.0.0.1\"]\n\n[[apps]]\nname = \"wiki\"\nhost = \"wiki.lan\"\nusers = [\"alice\"]\n",
        &[],
    );
    let bob = signed_in(&app, "bob");
    let cookie = format!(
        "gatehouse_session={}",
        bob.cookie("gatehouse_session").expect("signed in")
    );
    for host in ["wiki.lan", "wiki.lan.", "WIKI.LAN.:443"] {
        let answer = raw(
            &app,
            &format!(
                "GET /auth/verify HTTP/1.1\r\nHost: auth.lan\r\nX-Forwarded-Host: {host}\r\nX-Forwarded-Uri: /\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert!(answer.starts_with("HTTP/1.1 403 "), "{host}: {answer}");
    }
    // Elsewhere bob passes (the default policy lets anyone signed in in).
    let answer = raw(
        &app,
        &format!(
            "GET /auth/verify HTTP/1.1\r\nHost: auth.lan\r\nX-Forwarded-Host: other.lan\r\nX-Forwarded-Uri: /\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

/// Bodies sent a byte at a time, each byte well within `body_timeout`:
/// read by the route, each held a request thread for as long as the client
/// liked, so a few such connections (one per request thread) took the
/// whole server, signed in or not. Every way of framing the body is tried:
/// a length, a length after `100 Continue`, chunks, and a request that asks
/// for an upgrade (whose body was the rest of the connection).
#[test]
fn bodies_trickled_a_byte_at_a_time_do_not_take_the_request_threads() {
    let app = TestApp::spawn_with(&[("threads", "2"), ("body_timeout", "3s")]);
    let addr: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let heads: [&[u8]; 4] = [
        b"POST /login HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000\r\n\r\n",
        b"POST /login HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n",
        b"POST /api/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /login HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: upgrade\r\nContent-Length: 5000\r\n\r\n",
    ];
    let done = Arc::new(AtomicBool::new(false));
    let mut tricklers = Vec::new();
    for i in 0..8 {
        let head = heads[i % heads.len()];
        let chunked = i % heads.len() == 2;
        let done = Arc::clone(&done);
        tricklers.push(std::thread::spawn(move || {
            let mut conn = TcpStream::connect(addr).expect("connect");
            conn.write_all(head).expect("head");
            let start = Instant::now();
            while !done.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(30) {
                let byte: &[u8] = if chunked { b"1\r\na\r\n" } else { b"a" };
                if conn.write_all(byte).is_err() {
                    // Cut off: what this test wants.
                    return start.elapsed();
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            start.elapsed()
        }));
    }
    std::thread::sleep(Duration::from_secs(2));
    let quick: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut served = 0;
    for _ in 0..5 {
        if quick
            .get(format!("{}/healthz", app.base))
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            served += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    done.store(true, Ordering::SeqCst);
    let held: Vec<Duration> = tricklers
        .into_iter()
        .map(|t| t.join().expect("trickler"))
        .collect();
    assert_eq!(served, 5, "healthz behind trickling bodies (held {held:?})");
}

/// With the first 64 KiB of a body read ahead, a longer chunked upload
/// through the built-in proxy still reaches the app whole: the bytes read
/// ahead, then the rest.
#[test]
fn a_chunked_upload_past_the_read_ahead_reaches_the_app_whole() {
    let (upstream, stop) = crate::raw::upstream(|request| {
        let mut body = Vec::new();
        if let Some(mut data) = request.data() {
            let _ = std::io::Read::read_to_end(&mut data, &mut body);
        }
        let sum: u64 = body.iter().map(|b| u64::from(*b)).sum();
        rouille::Response::text(format!("got {} sum {sum}", body.len()))
    });
    let app = TestApp::spawn_with_file(
        &format!(
            "[[apps]]\nname = \"files\"\nprefix = \"/apps/files/\"\nupstream = \"http://{upstream}\"\n"
        ),
        &[],
    );
    let b = signed_in(&app, "alice");
    let cookie = format!(
        "gatehouse_session={}",
        b.cookie("gatehouse_session").expect("signed in")
    );
    let mut request = format!(
        "POST /apps/files/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    let mut sum: u64 = 0;
    for i in 0..100u32 {
        let chunk: Vec<u8> = (0..3000u32).map(|j| ((i * 7 + j) % 251) as u8).collect();
        sum += chunk.iter().map(|b| u64::from(*b)).sum::<u64>();
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut conn = TcpStream::connect(app.base.trim_start_matches("http://")).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    conn.write_all(&request).expect("send");
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut conn, &mut out);
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        answer.contains(&format!("got 300000 sum {sum}")),
        "{answer}"
    );
    stop.store(true, Ordering::SeqCst);
}
