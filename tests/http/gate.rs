//! The gate: forward auth and the built-in proxy, with a real upstream that
//! echoes what it receives.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Browser, TestApp, assert_redirects_to};

/// A small upstream app on 127.0.0.1:0.
struct Upstream {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> Self {
        let server = rouille::Server::new("127.0.0.1:0", |request| {
            let url = request.raw_url().to_owned();
            if request.header("Upgrade").is_some() {
                // A WebSocket-like echo: a greeting saying what arrived,
                // then every byte back.
                let greeting = format!(
                    "url={url} user={} cookie={}\n",
                    request.header("Remote-User").unwrap_or("-"),
                    request.header("Cookie").unwrap_or("-"),
                );
                return rouille::Response {
                    status_code: 101,
                    headers: vec![
                        ("Upgrade".into(), "websocket".into()),
                        ("Sec-WebSocket-Accept".into(), "from-upstream".into()),
                    ],
                    data: rouille::ResponseBody::empty(),
                    upgrade: Some(Box::new(Echo(greeting))),
                };
            }
            if url.starts_with("/big") {
                // 8 MiB, chunked (no length): streamed, never buffered whole.
                let reader = std::io::repeat(b'x').take(8 * 1024 * 1024);
                return rouille::Response {
                    status_code: 200,
                    headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                    data: rouille::ResponseBody::from_reader(reader),
                    upgrade: None,
                };
            }
            if url.starts_with("/slow") {
                std::thread::sleep(Duration::from_secs(3));
                return rouille::Response::text("late");
            }
            let mut body = Vec::new();
            if let Some(mut data) = request.data() {
                data.read_to_end(&mut body).expect("read body");
            }
            let headers: Vec<(String, String)> = request
                .headers()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .collect();
            rouille::Response::json(&json!({
                "method": request.method(),
                "url": url,
                "headers": headers,
                "body_len": body.len(),
                "body_sum": body.iter().map(|b| u64::from(*b)).sum::<u64>(),
            }))
            .with_additional_header("Set-Cookie", "upstream=1; Path=/")
            .with_additional_header("Content-Security-Policy", "default-src 'none'; upstream")
        })
        .expect("upstream starts");
        let addr = server.server_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                server.poll_timeout(Duration::from_millis(20));
            }
        });
        Self { addr, stop }
    }
}

struct Echo(String);

impl rouille::Upgrade for Echo {
    fn build(&mut self, socket: Box<dyn rouille::ReadWrite + Send>) {
        let greeting = std::mem::take(&mut self.0);
        std::thread::spawn(move || {
            let (mut from, mut to) = socket.split().expect("an upgraded connection splits");
            let _ = to.write_all(greeting.as_bytes()).and_then(|()| to.flush());
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    break;
                }
            }
        });
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn header<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| h[0] == name)
        .map(|h| h[1].as_str().expect("value"))
        .collect()
}

fn config(upstream: &str) -> String {
    format!(
        r#"
default_policy = "deny"

[[apps]]
name = "wiki"
prefix = "/apps/wiki/"
host = "wiki.lan"
upstream = "{upstream}"

[[apps]]
name = "grafana"
host = "grafana.lan"
allow = "admins"

[[apps]]
name = "books"
prefix = "/apps/books/"
upstream = "{upstream}/base"
users = ["bob"]
identity_key = "a key the upstream shares, 32+ bytes"
"#
    )
}

fn app_with_upstream() -> (TestApp, Upstream) {
    let upstream = Upstream::start();
    let app = TestApp::spawn_with_file(
        &config(&format!("http://{}", upstream.addr)),
        &[("proxy_timeout", "1s")],
    );
    app.add_user("alice", "correct horse", false);
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "correct horse", false);
    (app, upstream)
}

fn signed_in(app: &TestApp, name: &str) -> Browser {
    let b = app.browser();
    b.login(name, "correct horse");
    b
}

#[test]
fn verify_answers_for_the_app_the_proxy_asks_about() {
    let (app, _up) = app_with_upstream();
    let alice = signed_in(&app, "alice");
    let root = signed_in(&app, "root");
    let nginx = |b: &Browser, host: &str, uri: &str| {
        b.get_with(
            "/auth/verify",
            &[("X-Forwarded-Host", host), ("X-Original-URI", uri)],
        )
    };

    let ok = nginx(&alice, "wiki.lan", "/page");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("remote-user"), Some("alice"));
    assert_eq!(ok.header("remote-name"), Some("alice"));
    assert_eq!(ok.header("remote-groups"), Some(""));
    assert_eq!(nginx(&app.browser(), "wiki.lan", "/page").status, 401);
    assert_eq!(nginx(&alice, "grafana.lan", "/").status, 403, "admins only");
    let admin = nginx(&root, "grafana.lan", "/");
    assert_eq!(admin.status, 200);
    assert_eq!(admin.header("remote-groups"), Some("admins"));
    assert_eq!(
        nginx(&alice, "other.lan", "/").status,
        403,
        "default policy deny"
    );
    assert_eq!(
        nginx(&alice, "gatehouse.lan", "/apps/books/x").status,
        403,
        "users list"
    );
    assert_eq!(
        nginx(&signed_in(&app, "bob"), "gatehouse.lan", "/apps/books/x").status,
        200
    );
}

#[test]
fn forward_auth_sends_browsers_to_sign_in_and_back() {
    let (app, _up) = app_with_upstream();
    let b = app.browser();
    let caddy = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "wiki.lan"),
        ("X-Forwarded-Uri", "/page?x=1"),
        ("X-Forwarded-Method", "GET"),
    ];
    let resp = b.get_with("/auth/forward", &caddy);
    assert_eq!(resp.status, 302);
    let location = resp.header("location").expect("location");
    assert!(
        location.ends_with("/login?next=https%3A%2F%2Fwiki.lan%2Fpage%3Fx%3D1"),
        "{location}"
    );
    let next = "https://wiki.lan/page?x=1";
    assert_redirects_to(
        &b.login_with("alice", "correct horse", &[("next", next)]),
        next,
    );
    let ok = b.get_with("/auth/forward", &caddy);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("remote-user"), Some("alice"));
    // Not an app host: no open redirect.
    let evil = app.browser();
    assert_redirects_to(
        &evil.login_with(
            "alice",
            "correct horse",
            &[("next", "https://evil.example/")],
        ),
        "/",
    );
    let grafana = [
        ("X-Forwarded-Host", "grafana.lan"),
        ("X-Forwarded-Uri", "/"),
    ];
    assert_eq!(b.get_with("/auth/forward", &grafana).status, 403);
}

#[test]
fn the_proxy_forwards_with_identity_and_strips_what_clients_forge() {
    let (app, _up) = app_with_upstream();
    let mut b = signed_in(&app, "alice");
    b.set_cookie("theirs", "keep-me");
    b.headers.push(("Remote-User".into(), "root".into()));
    b.headers.push(("Remote-Groups".into(), "admins".into()));
    b.headers.push(("X-Forwarded-For".into(), "6.6.6.6".into()));
    b.headers
        .push(("X-Gatehouse-Identity".into(), "forged".into()));
    let resp = b.get("/apps/wiki/page?q=1");
    assert_eq!(resp.status, 200);
    let echo: Value = serde_json::from_str(&resp.body).expect("json");
    assert_eq!(echo["url"], "/page?q=1", "prefix stripped, query kept");
    assert_eq!(
        header(&echo, "remote-user"),
        ["alice"],
        "a forged Remote-User got through"
    );
    assert_eq!(header(&echo, "remote-groups"), [""]);
    assert_eq!(header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header(&echo, "x-forwarded-prefix"), ["/apps/wiki"]);
    assert!(header(&echo, "x-gatehouse-identity").is_empty());
    let cookies = header(&echo, "cookie").join("; ");
    assert!(cookies.contains("theirs=keep-me"), "{cookies}");
    assert!(
        !cookies.contains("gatehouse_session"),
        "gatehouse's cookie reached the upstream: {cookies}"
    );
    assert!(!cookies.contains("gatehouse_csrf"), "{cookies}");
    // The upstream's own headers come back untouched.
    assert_eq!(
        resp.header("content-security-policy"),
        Some("default-src 'none'; upstream")
    );
    assert_eq!(resp.cookie("upstream"), Some("upstream=1; Path=/"));
    let bare = b.get("/apps/wiki");
    assert_eq!(bare.status, 301);
    assert_eq!(bare.header("location"), Some("/apps/wiki/"));
}

#[test]
fn the_proxy_serves_an_app_on_its_own_host() {
    let (app, _up) = app_with_upstream();
    let b = signed_in(&app, "alice");
    let resp = b.get_with("/anything/here", &[("Host", "wiki.lan")]);
    assert_eq!(resp.status, 200);
    let echo: Value = serde_json::from_str(&resp.body).expect("json");
    assert_eq!(echo["url"], "/anything/here");
    assert_eq!(header(&echo, "x-forwarded-host"), ["wiki.lan"]);
    let anon = app
        .browser()
        .get_with("/x", &[("Host", "wiki.lan"), ("Accept", "text/html")]);
    assert_eq!(anon.status, 303);
    assert!(
        anon.header("location")
            .expect("location")
            .contains("/login?next=http%3A%2F%2Fwiki.lan%2Fx")
    );
}

#[test]
fn the_proxy_refuses_strangers() {
    let (app, _up) = app_with_upstream();
    let browser = app.browser();
    assert_redirects_to(
        &browser.get_with(
            "/apps/wiki/page",
            &[("Accept", "text/html,application/xhtml+xml")],
        ),
        "/login?next=%2Fapps%2Fwiki%2Fpage",
    );
    assert_eq!(
        browser
            .get_with("/apps/wiki/page", &[("Accept", "application/json")])
            .status,
        401
    );
    let alice = signed_in(&app, "alice");
    assert_eq!(
        alice.get("/apps/books/").status,
        403,
        "not on the users list"
    );
}

#[test]
fn the_proxy_signs_the_identity_when_asked() {
    let (app, _up) = app_with_upstream();
    let bob = signed_in(&app, "bob");
    let resp = bob.get("/apps/books/shelf");
    let echo: Value = serde_json::from_str(&resp.body).expect("json");
    assert_eq!(
        echo["url"], "/base/shelf",
        "the upstream's base path is prepended"
    );
    let ident = header(&echo, "x-gatehouse-identity");
    assert_eq!(ident.len(), 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let ts: u64 = ident[0]
        .split(";ts=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("ts")
        .parse()
        .expect("n");
    assert!(now.abs_diff(ts) < 60);
    let expected = gatehouse::web::gate::identity_header(
        b"a key the upstream shares, 32+ bytes",
        "bob",
        "",
        ts,
    );
    assert_eq!(ident[0], expected);
}

#[test]
fn bodies_stream_both_ways() {
    let (app, _up) = app_with_upstream();
    let b = signed_in(&app, "alice");
    // A 4 MiB upload: far past gatehouse's own 64 KiB form limit, streamed.
    let upload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let sum: u64 = upload.iter().map(|b| u64::from(*b)).sum();
    let resp = b.post_raw("/apps/wiki/upload", "application/octet-stream", upload);
    assert_eq!(resp.status, 200);
    let echo: Value = serde_json::from_str(&resp.body).expect("json");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], 4 * 1024 * 1024);
    assert_eq!(echo["body_sum"], sum);
    // An 8 MiB chunked download arrives whole and uncorrupted.
    let resp = b.get("/apps/wiki/big");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), 8 * 1024 * 1024);
    assert!(resp.body.bytes().all(|c| c == b'x'));
}

#[test]
fn a_down_or_slow_upstream_gets_a_clear_502_or_504() {
    let (app, up) = app_with_upstream();
    let b = signed_in(&app, "alice");
    let slow = b.get("/apps/wiki/slow");
    assert_eq!(slow.status, 504);
    assert!(slow.text_of("error-message").is_some());
    drop(up);
    std::thread::sleep(Duration::from_millis(100));
    let dead_app = TestApp::spawn_with_file(&config("http://127.0.0.1:9"), &[]);
    dead_app.add_user("alice", "correct horse", false);
    let b = signed_in(&dead_app, "alice");
    let down = b.get("/apps/wiki/page");
    assert_eq!(down.status, 502);
    assert_eq!(b.get("/healthz").status, 200);
}

/// Sends a WebSocket handshake for `path` with `cookie`; returns the
/// connection and the response head.
fn handshake(app: &TestApp, path: &str, cookie: &str) -> (TcpStream, String) {
    handshake_from(app, path, cookie, None)
}

fn handshake_from(
    app: &TestApp,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
) -> (TcpStream, String) {
    let addr = app.base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Cookie: {cookie}\r\n{}\r\n",
        origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default()
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    (conn, String::from_utf8(head).expect("utf-8"))
}

fn read_exactly(conn: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    conn.read_exact(&mut buf).expect("relayed bytes");
    buf
}

#[test]
fn websocket_upgrades_pass_through_with_identity() {
    let (app, _up) = app_with_upstream();
    let b = signed_in(&app, "alice");
    let session = b.cookie("gatehouse_session").expect("signed in");
    let cookie = format!("gatehouse_session={session}; theme=dark");

    let (_, refused) = handshake(&app, "/apps/wiki/socket", "theme=dark");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    let (mut conn, head) = handshake(&app, "/apps/wiki/socket?room=1", &cookie);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(
        lower.contains("sec-websocket-accept: from-upstream"),
        "{head}"
    );

    let greeting = "url=/socket?room=1 user=alice cookie=theme=dark\n";
    assert_eq!(
        String::from_utf8(read_exactly(&mut conn, greeting.len())).expect("utf-8"),
        greeting,
        "the upstream saw the identity, not gatehouse's cookie"
    );
    conn.write_all(b"ping").expect("write");
    assert_eq!(read_exactly(&mut conn, 4), b"ping");
    // A larger message, in both directions at once.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let mut conn = conn.try_clone().expect("clone");
        let big = big.clone();
        std::thread::spawn(move || conn.write_all(&big).expect("write big"))
    };
    assert_eq!(read_exactly(&mut conn, big.len()), big);
    writer.join().expect("writer");
    drop(conn);

    // Other users of the app and the server are unaffected.
    assert_eq!(b.get("/apps/wiki/page").status, 200);
    let bob = signed_in(&app, "bob");
    let (_, forbidden) = handshake(
        &app,
        "/apps/books/socket",
        &format!(
            "gatehouse_session={}",
            bob.cookie("gatehouse_session").expect("bob")
        ),
    );
    assert!(
        forbidden.starts_with("HTTP/1.1 101"),
        "bob may use books: {forbidden}"
    );
    let (_, not_his) = handshake(
        &app,
        "/apps/books/socket",
        &format!("gatehouse_session={session}"),
    );
    assert!(not_his.starts_with("HTTP/1.1 403"), "{not_his}");

    // A page on another site cannot open the socket with alice's cookie;
    // the app's own pages can.
    let own = format!("gatehouse_session={session}");
    let (_, evil) = handshake_from(&app, "/apps/wiki/socket", &own, Some("http://evil.example"));
    assert!(evil.starts_with("HTTP/1.1 403"), "{evil}");
    let (_, same) = handshake_from(&app, "/apps/wiki/socket", &own, Some(&app.base));
    assert!(same.starts_with("HTTP/1.1 101"), "{same}");
}

#[test]
fn a_websocket_to_a_down_upstream_gets_502() {
    let (app, up) = app_with_upstream();
    let b = signed_in(&app, "alice");
    let addr = up.addr;
    drop(up);
    // The upstream's thread notices the stop flag within a poll.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let session = b.cookie("gatehouse_session").expect("signed in");
    let (_, head) = handshake(
        &app,
        "/apps/wiki/socket",
        &format!("gatehouse_session={session}"),
    );
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
}

#[test]
fn the_dashboard_lists_the_apps_i_may_open() {
    let (app, _up) = app_with_upstream();
    let alice = signed_in(&app, "alice").get("/");
    assert!(alice.body.contains("href=\"/apps/wiki/\""));
    assert!(!alice.body.contains("grafana"));
    assert!(!alice.body.contains("/apps/books/"));
    let root = signed_in(&app, "root").get("/");
    assert!(root.body.contains("href=\"//grafana.lan/\""));
}

#[test]
fn a_bad_app_in_the_config_names_the_app_and_field() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("gatehouse.toml");
    std::fs::write(
        &file,
        "[[apps]]\nname = \"wiki\"\nprefix = \"/apps/wiki/\"\nupstream = \"ftp://x\"\n",
    )
    .expect("write");
    let err =
        gatehouse::config::Config::load(dir.path(), None, Vec::new(), &[]).expect_err("invalid");
    let msg = err.to_string();
    assert!(
        msg.contains("\"wiki\"") && msg.contains("upstream"),
        "{msg}"
    );
}
