//! The gate: forward auth and the built-in proxy, with a real upstream that
//! echoes what it receives.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Browser, TestApp, assert_redirects_to};
use crate::raw::raw;

/// A small upstream app on 127.0.0.1:0.
struct Upstream {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    /// Requests it received.
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let (addr, stop) = crate::raw::upstream(move |request| {
            counter.fetch_add(1, Ordering::SeqCst);
            let url = request.raw_url().to_owned();
            if request.header("Upgrade").is_some() {
                // A WebSocket-like echo: a greeting saying what arrived,
                // then every byte back.
                let underscored: Vec<&str> = request
                    .headers()
                    .map(|(k, _)| k)
                    .filter(|k| k.contains('_'))
                    .collect();
                let greeting = format!(
                    "url={url} user={} cookie={} underscored={}\n",
                    request.header("Remote-User").unwrap_or("-"),
                    request.header("Cookie").unwrap_or("-"),
                    underscored.join(","),
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
            if url.starts_with("/set-cookies") {
                // An app (or a script it was tricked into) trying to sign
                // the browser in or out of gatehouse; `?also=NAME` plants
                // one more.
                let also = request
                    .get_param("also")
                    .unwrap_or_else(|| "upstream".into());
                return rouille::Response::text("cookies")
                    .with_additional_header("Set-Cookie", format!("{also}=planted; Domain=lan"))
                    .with_additional_header(
                        "Set-Cookie",
                        "gatehouse_session=planted.sig; Domain=lan; Path=/; HttpOnly",
                    )
                    .with_additional_header("Set-Cookie", "GATEHOUSE_SESSION=x; Path=/apps/")
                    .with_additional_header("Set-Cookie", "gatehouse_csrf=planted; Path=/")
                    .with_additional_header("Set-Cookie", "upstream=1; Path=/");
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
        });
        Self { addr, stop, hits }
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
    apps_with(&[("proxy_timeout", "1s")])
}

/// The apps of `config` in front of a fresh upstream, with `settings`, and
/// alice, root (an admin) and bob as users.
fn apps_with(settings: &[(&str, &str)]) -> (TestApp, Upstream) {
    let upstream = Upstream::start();
    let app = TestApp::spawn_with_file(&config(&format!("http://{}", upstream.addr)), settings);
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
    let (app, _up) = behind_proxy();
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
    let (app, _up) = behind_proxy();
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

/// Caddy's `forward_auth` keeps the browser's `Host`: for an app whose
/// host the built-in proxy serves too, the check must still be gatehouse's,
/// and so must the sign-in a browser is sent to on that host.
#[test]
fn forward_auth_and_the_sign_in_are_gatehouses_on_an_app_host() {
    let (app, up) = behind_proxy();
    let on_wiki = |b: &Browser, path: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("Host", "wiki.lan")];
        headers.extend_from_slice(extra);
        b.get_with(path, &headers)
    };
    let caddy = [
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "wiki.lan"),
        ("X-Forwarded-Uri", "/page"),
        ("X-Forwarded-Method", "GET"),
    ];
    let anon = app.browser();
    let resp = on_wiki(&anon, "/auth/forward", &caddy);
    assert_eq!(resp.status, 302, "{resp:?}");
    assert!(
        resp.header("location")
            .expect("to sign in")
            .contains("/login?next=http%3A%2F%2Fwiki.lan%2Fpage")
    );
    assert_eq!(on_wiki(&anon, "/auth/verify", &caddy).status, 401);
    assert_eq!(on_wiki(&anon, "/auth/verify", &[]).status, 401);
    // The sign-in and its steps, and the pages' assets.
    let login = on_wiki(&anon, "/login", &[]);
    assert_eq!(login.status, 200);
    assert!(login.csrf().is_some(), "gatehouse's sign-in page");
    assert_ne!(on_wiki(&anon, "/login/second", &[]).status, 200);
    assert_eq!(
        on_wiki(&anon, "/assets/style.css", &[])
            .header("content-type")
            .map(|t| t.starts_with("text/css")),
        Some(true)
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 0, "the app was asked");

    let alice = signed_in(&app, "alice");
    let ok = on_wiki(&alice, "/auth/forward", &caddy);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("remote-user"), Some("alice"));
    let ok = on_wiki(&alice, "/auth/verify", &caddy);
    assert_eq!(ok.header("remote-user"), Some("alice"));
    assert_eq!(up.hits.load(Ordering::SeqCst), 0, "the app was asked");

    // The app's own routes, `/auth/...` ones included, are the app's.
    for path in ["/auth/callback", "/register", "/account", "/api/session"] {
        let resp = on_wiki(&alice, path, &[]);
        let echo: Value = serde_json::from_str(&resp.body).expect("the app's answer");
        assert_eq!(echo["url"], path);
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 4);
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
        "books",
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

    let greeting = "url=/socket?room=1 user=alice cookie=theme=dark underscored=\n";
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

fn session_cookie(b: &Browser) -> String {
    format!(
        "gatehouse_session={}",
        b.cookie("gatehouse_session").expect("signed in")
    )
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_host_mode_target_cannot_name_another_host_or_port() {
    let (app, up) = app_with_upstream();
    // Another app's upstream, one alice may not use.
    let other = Upstream::start();
    let cookie = session_cookie(&signed_in(&app, "alice"));
    for target in [
        format!("@{}/admin/users", other.addr),
        "1/x".to_owned(),
        format!(":{}/x", other.addr.port()),
        format!("http://{}/x", other.addr),
    ] {
        let answer = raw(
            &app,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: wiki.lan\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(status_of(&answer), 400, "{target}: {answer}");
    }
    assert_eq!(
        other.hits.load(Ordering::SeqCst),
        0,
        "a request reached another app's upstream"
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
    // The app itself still works.
    let ok = signed_in(&app, "alice").get_with("/x?y=1", &[("Host", "wiki.lan")]);
    let echo: Value = serde_json::from_str(&ok.body).expect("json");
    assert_eq!(echo["url"], "/x?y=1");
}

#[test]
fn a_bare_lf_in_the_target_forges_no_headers_anywhere() {
    let (app, up) = app_with_upstream();
    let cookie = session_cookie(&signed_in(&app, "alice"));
    // A WebSocket handshake whose target carries header lines.
    let answer = raw(
        &app,
        &format!(
            "GET /apps/wiki/socket\nRemote-User:\troot\nRemote-Groups:\tadmins HTTP/1.1\r\n\
             Host: wiki.lan\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Cookie: {cookie}\r\n\r\n"
        ),
    );
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(!answer.contains("user=root"), "{answer}");
    // The redirect to the prefix with a slash must not split either.
    let answer = raw(
        &app,
        &format!(
            "GET /apps/wiki?\nSet-Cookie:\tgatehouse_session=planted HTTP/1.1\r\n\
             Host: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(
        !answer
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("set-cookie:\tgatehouse")),
        "{answer}"
    );
    assert!(matches!(status_of(&answer), 400 | 0), "{answer}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

#[test]
fn a_cut_off_upload_ends_its_request_and_shutdown_does_not_hang() {
    let (mut app, _up) = app_with_upstream();
    let cookie = session_cookie(&signed_in(&app, "alice"));
    let addr = app.base.trim_start_matches("http://").to_owned();
    // The server is shut down by a helper thread when told to; if the test
    // fails first, the server is left running rather than hanging the
    // test in a shutdown that waits for a stuck thread.
    let running = app.running.take().expect("running");
    let (shut, told) = std::sync::mpsc::channel::<()>();
    let (done, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if told.recv().is_ok() {
            running.shutdown();
            let _ = done.send(());
        } else {
            std::mem::forget(running);
        }
    });
    let head = format!(
        "POST /apps/wiki/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 2000\r\n\r\n"
    );
    // Half-closed: the client still listens, and hears how it ended.
    let mut conn = TcpStream::connect(&addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    conn.write_all(head.as_bytes()).expect("head");
    conn.write_all(&[b'x'; 100]).expect("some of the body");
    conn.shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        matches!(status_of(&answer), 400 | 502),
        "a cut-off upload got: {answer}"
    );
    // Closed outright, a few times over.
    for _ in 0..3 {
        let mut conn = TcpStream::connect(&addr).expect("connect");
        conn.write_all(head.as_bytes()).expect("head");
        conn.write_all(&[b'x'; 100]).expect("some of the body");
        drop(conn);
    }
    assert_eq!(signed_in(&app, "alice").get("/healthz").status, 200);
    // No thread is left stuck: shutdown finishes what is in flight and ends.
    shut.send(()).expect("the shutdown thread waits");
    assert!(
        ended.recv_timeout(Duration::from_secs(60)).is_ok(),
        "shutdown hangs on a cut-off upload"
    );
}

#[test]
fn underscore_twins_of_identity_headers_never_reach_the_upstream() {
    let (app, _up) = app_with_upstream();
    let mut b = signed_in(&app, "alice");
    for (k, v) in [
        ("Remote_User", "root"),
        ("Remote_Groups", "admins"),
        ("REMOTE-user", "root"),
        ("X_Forwarded_For", "6.6.6.6"),
        ("X_Gatehouse_Identity", "forged"),
        ("Some_Header", "x"),
        ("Connection", "keep-alive, X-Dropped"),
        ("X-Dropped", "hop"),
    ] {
        b.headers.push((k.into(), v.into()));
    }
    let resp = b.get("/apps/wiki/page");
    assert_eq!(resp.status, 200);
    let echo: Value = serde_json::from_str(&resp.body).expect("json");
    let names: Vec<&str> = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| h[0].as_str().expect("name"))
        .collect();
    assert!(
        names.iter().all(|n| !n.contains('_')),
        "a header with _ reached the upstream: {names:?}"
    );
    assert_eq!(header(&echo, "remote-user"), ["alice"]);
    assert_eq!(header(&echo, "remote-groups"), [""]);
    assert_eq!(header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert!(header(&echo, "x-dropped").is_empty(), "{names:?}");
}

#[test]
fn underscore_headers_pass_when_allowed_but_identity_twins_never() {
    let upstream = Upstream::start();
    let app = TestApp::spawn_with_file(
        &config(&format!("http://{}", upstream.addr)),
        &[("proxy_underscore_headers", "true")],
    );
    app.add_user("alice", "correct horse", false);
    let mut b = signed_in(&app, "alice");
    b.headers.push(("Remote_User".into(), "root".into()));
    b.headers.push(("Some_Header".into(), "x".into()));
    let echo: Value = serde_json::from_str(&b.get("/apps/wiki/page").body).expect("json");
    assert_eq!(header(&echo, "some_header"), ["x"]);
    assert!(header(&echo, "remote_user").is_empty());
    assert_eq!(header(&echo, "remote-user"), ["alice"]);
}

/// `/apps/site/` open to all, `/apps/site/private/` for admins, one upstream.
fn nested_app() -> (TestApp, Upstream) {
    nested_app_with(&[])
}

fn nested_app_with(settings: &[(&str, &str)]) -> (TestApp, Upstream) {
    nested_app_site_says(settings, "")
}

/// The nested apps, with `site_says` added to the outer app's settings.
fn nested_app_site_says(settings: &[(&str, &str)], site_says: &str) -> (TestApp, Upstream) {
    let upstream = Upstream::start();
    let app = TestApp::spawn_with_file(
        &format!(
            r#"
default_policy = "deny"

[[apps]]
name = "site"
prefix = "/apps/site/"
upstream = "http://{0}"
{1}

[[apps]]
name = "private"
prefix = "/apps/site/private/"
upstream = "http://{0}/private"
allow = "admins"
"#,
            upstream.addr, site_says
        ),
        settings,
    );
    app.add_user("alice", "correct horse", false);
    app.add_user("root", "correct horse", true);
    (app, upstream)
}

#[test]
fn nested_prefixes_are_matched_on_the_normalised_path() {
    let (app, up) = nested_app();
    let alice = session_cookie(&signed_in(&app, "alice"));
    let get = |target: &str, cookie: &str| {
        raw(
            &app,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    for (target, status) in [
        ("/apps/site/private/secret.txt", 403),
        ("/apps/site/x/../private/secret.txt", 400),
        ("/apps/site/x/%2e%2e/private/secret.txt", 400),
        ("/apps/site/%70rivate/secret.txt", 403),
        ("/apps/site/%70RIVATE/secret.txt", 200),
        ("/apps/site//private/secret.txt", 403),
        ("/apps/site/.//private/secret.txt", 403),
        ("/apps/site/private%2fsecret.txt", 400),
        ("/apps/site/private%2Fsecret.txt", 400),
        ("/apps/site/private%5csecret.txt", 400),
        ("/apps/site/../../admin", 400),
        ("/apps/site/x%zz", 400),
    ] {
        let answer = get(target, &alice);
        assert_eq!(status_of(&answer), status, "{target}: {answer}");
        assert!(
            !answer.contains("/private/secret.txt"),
            "{target} reached the admins-only file: {answer}"
        );
    }
    let before = up.hits.load(Ordering::SeqCst);
    assert_eq!(before, 1, "only the case-differing path was forwarded");
    // What is forwarded is the normalised path.
    let answer = get("/apps/site/a/./b//c/../d%7e?q=%2f", &alice);
    assert!(answer.contains(r#""url":"/a/b/d~?q=%2F""#), "{answer}");
    // An administrator gets the file through the nested app.
    let root = session_cookie(&signed_in(&app, "root"));
    let answer = get("/apps/site/%70rivate/secret.txt", &root);
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(
        answer.contains(r#""url":"/private/secret.txt""#),
        "{answer}"
    );
}

/// Prefixes match case-sensitively (see the test above: `%70RIVATE` is the
/// open app's); an outer app whose upstream reads paths without regard to
/// case says `case_insensitive = true`, and then every spelling of the
/// nested admins-only prefix is that app's, through the proxy and forward
/// auth alike.
#[test]
fn a_case_insensitive_app_guards_every_spelling_of_a_nested_prefix() {
    let (app, up) = nested_app_site_says(
        &[("trusted_proxies", "127.0.0.1")],
        "case_insensitive = true",
    );
    let alice = signed_in(&app, "alice");
    let root = signed_in(&app, "root");
    for path in [
        "/apps/site/PRIVATE/secret.txt",
        "/apps/site/Private/secret.txt",
        "/APPS/SITE/%70RIVATE/secret.txt",
        "/apps/site/private/secret.txt",
    ] {
        assert_eq!(alice.get(path).status, 403, "{path}");
        let verify = alice.get_with(
            "/auth/verify",
            &[("X-Forwarded-Host", "site.lan"), ("X-Forwarded-Uri", path)],
        );
        assert_eq!(verify.status, 403, "forward auth {path}");
        // An administrator gets it from the nested app's upstream, the
        // rest of the path after the prefix as it was spelled.
        let resp = root.get(path);
        assert_eq!(resp.status, 200, "{path}");
        let echo: Value = serde_json::from_str(&resp.body).expect("json");
        assert_eq!(echo["url"], "/private/secret.txt", "{path}");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 4, "only root's requests");
    // The outer app in any case too, and the rest keeps its case.
    let resp = alice.get("/APPS/Site/Some/Page");
    assert_eq!(resp.status, 200);
    let echo: Value = serde_json::from_str(&resp.body).expect("json");
    assert_eq!(echo["url"], "/Some/Page");
    let bare = alice.get("/APPS/SITE");
    assert_eq!(bare.status, 301);
    assert_eq!(bare.header("location"), Some("/apps/site/"));
}

#[test]
fn forward_auth_headers_count_only_from_trusted_proxies() {
    let (app, _up) = app_with_upstream();
    let alice = signed_in(&app, "alice");
    // Not a trusted proxy: a client's own X-Forwarded-Uri for an app it
    // may use, on a host that matches no app (default policy deny).
    for headers in [
        [
            ("X-Forwarded-Host", "other.lan"),
            ("X-Forwarded-Uri", "/apps/wiki/"),
        ],
        [("Host", "other.lan"), ("X-Original-URI", "/apps/wiki/")],
        [
            ("X-Forwarded-Host", "wiki.lan"),
            ("X-Forwarded-Proto", "https"),
        ],
    ] {
        let resp = alice.get_with("/auth/verify", &headers);
        assert_eq!(resp.status, 403, "{headers:?}");
        assert_eq!(resp.header("remote-user"), None);
        let resp = alice.get_with("/auth/forward", &headers);
        assert_eq!(resp.status, 403, "{headers:?}");
    }
    // Without forwarding headers a direct client is judged on its Host.
    assert_eq!(
        alice
            .get_with("/auth/verify", &[("Host", "other.lan")])
            .status,
        403
    );
    assert_eq!(
        alice
            .get_with("/auth/verify", &[("Host", "wiki.lan")])
            .status,
        200
    );
}

/// The apps behind a forwarding proxy on 127.0.0.1, which is trusted.
fn behind_proxy() -> (TestApp, Upstream) {
    apps_with(&[("trusted_proxies", "127.0.0.1")])
}

#[test]
fn forward_auth_judges_the_normalised_forwarded_path() {
    let (app, _up) = behind_proxy();
    let alice = signed_in(&app, "alice");
    let verify = |uri: &str| {
        alice
            .get_with(
                "/auth/verify",
                &[
                    ("X-Forwarded-Host", "gatehouse.lan"),
                    ("X-Forwarded-Uri", uri),
                ],
            )
            .status
    };
    assert_eq!(verify("/apps/wiki/page"), 200);
    assert_eq!(verify("/apps/books/x"), 403, "users list");
    assert_eq!(verify("/apps/%62ooks/x"), 403, "encoded");
    assert_eq!(verify("/apps//books/x"), 403, "repeated slash");
    // A target with no normal form is refused with `403`, the one refusal
    // nginx's `auth_request` passes on (it turns a `400` into a `500`).
    assert_eq!(verify("/apps/wiki/../books/x"), 403, "climbs out of wiki");
    assert_eq!(verify("/apps/wiki/a%2f..%2f..%2fbooks/x"), 403);
    assert_eq!(verify("/apps/wiki%2F../books/x"), 403);
    assert_eq!(verify("/x"), 403, "default policy deny");
}

/// `/apps/site/` open to all, `/apps/site/private/` for admins, behind a
/// forwarding proxy on 127.0.0.1.
fn nested_behind_proxy() -> (TestApp, Upstream) {
    nested_app_with(&[("trusted_proxies", "127.0.0.1")])
}

#[test]
fn a_fragment_in_a_target_is_refused_not_judged_without_it() {
    let (app, up) = nested_behind_proxy();
    let alice = signed_in(&app, "alice");
    let root = signed_in(&app, "root");
    let attack = "/apps/site/%70rivate/secret.txt#/../../index.html";
    // Sent to gatehouse itself, a `#` in the request line is malformed.
    let cookie = session_cookie(&alice);
    for target in [attack, "/apps/site/index.html#x", "/login#x", "/#"] {
        let answer = raw(
            &app,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(status_of(&answer), 400, "{target}: {answer}");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 0, "nothing was forwarded");
    // Forwarded by a proxy (whose static server would cut the path at the
    // `#` and serve the secret), it is refused whoever asks, in either
    // header and from either endpoint: `403`, never the index's `200`.
    for b in [&alice, &root] {
        for header in ["X-Forwarded-Uri", "X-Original-URI"] {
            for uri in [
                attack,
                "/apps/site/index.html#",
                "/apps/site/index.html?q=1#/../../private/x",
                // Encoded control characters: C code ends a path at `%00`.
                "/apps/site/%70rivate/secret.txt%00/../../index.html",
                "/apps/site/%70rivate/secret.txt%0a/../../index.html",
            ] {
                for endpoint in ["/auth/verify", "/auth/forward"] {
                    let resp =
                        b.get_with(endpoint, &[("X-Forwarded-Host", "site.lan"), (header, uri)]);
                    assert_eq!(resp.status, 403, "{endpoint} {header}: {uri}");
                    assert_eq!(resp.header("remote-user"), None);
                }
            }
        }
    }
    // Encoded, `#` and `?` are characters of their segment, to gatehouse as
    // to the upstream: judged where the `..` after them lead.
    let verify = |b: &Browser, uri: &str| {
        b.get_with(
            "/auth/verify",
            &[("X-Forwarded-Host", "site.lan"), ("X-Forwarded-Uri", uri)],
        )
        .status
    };
    assert_eq!(
        verify(
            &alice,
            "/apps/site/%70rivate/secret.txt%23/../../index.html"
        ),
        200
    );
    assert_eq!(
        verify(&alice, "/apps/site/%70rivate/x%3F/../secret.txt"),
        403
    );
    assert_eq!(
        verify(&root, "/apps/site/%70rivate/x%3F/../secret.txt"),
        200
    );
}

#[test]
fn upstreams_cannot_set_gatehouses_cookies() {
    let (app, _up) = app_with_upstream();
    let b = signed_in(&app, "alice");
    let before = b.cookie("gatehouse_session").expect("signed in");
    let resp = b.get("/apps/wiki/set-cookies");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.set_cookies(),
        ["upstream=planted; Domain=lan", "upstream=1; Path=/"]
    );
    let resp = b.get("/apps/wiki/set-cookies?also=gatehouse_session");
    assert_eq!(resp.set_cookies(), ["upstream=1; Path=/"]);
    let on_host = b.get_with("/set-cookies", &[("Host", "wiki.lan")]);
    assert_eq!(
        on_host.set_cookies(),
        ["upstream=planted; Domain=lan", "upstream=1; Path=/"]
    );
    assert_eq!(b.cookie("gatehouse_session"), Some(before));
    assert_eq!(b.get("/").status, 200, "still signed in");
}

#[test]
fn upstreams_cannot_set_a_renamed_session_cookie() {
    let upstream = Upstream::start();
    let app = TestApp::spawn_with_file(
        &format!(
            "{}\n[cookie]\nname = \"sid\"\n",
            config(&format!("http://{}", upstream.addr))
        ),
        &[],
    );
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    assert!(b.cookie("sid").is_some(), "signed in under the new name");
    let resp = b.get("/apps/wiki/set-cookies?also=sid");
    let cookies = resp.set_cookies();
    assert!(
        !cookies.iter().any(|c| c.starts_with("sid=")),
        "{cookies:?}"
    );
    assert!(
        !cookies.iter().any(|c| c.starts_with("gatehouse_csrf=")),
        "{cookies:?}"
    );
    assert!(cookies.contains(&"upstream=1; Path=/"), "{cookies:?}");
    let resp = b.get("/apps/wiki/set-cookies?also=theirs");
    assert!(
        resp.set_cookies().contains(&"theirs=planted; Domain=lan"),
        "the app's own cookies pass"
    );
}

#[test]
fn an_identity_header_names_its_app_and_cannot_be_replayed_to_another() {
    let upstream = Upstream::start();
    let key = "one key two apps share, 32+ bytes long";
    let app = TestApp::spawn_with_file(
        &format!(
            r#"
[[apps]]
name = "books"
prefix = "/apps/books/"
upstream = "http://{0}"
identity_key = "{key}"

[[apps]]
name = "ledger"
prefix = "/apps/ledger/"
upstream = "http://{0}"
identity_key = "{key}"
allow = "admins"
"#,
            upstream.addr
        ),
        &[],
    );
    app.add_user("bob", "correct horse", false);
    let bob = signed_in(&app, "bob");
    assert_eq!(bob.get("/apps/ledger/").status, 403);
    let echo: Value = serde_json::from_str(&bob.get("/apps/books/").body).expect("json");
    let issued = header(&echo, "x-gatehouse-identity")[0].to_owned();
    assert!(issued.starts_with("v2;app=books;user=bob;"), "{issued}");
    let ts: u64 = issued
        .split(";ts=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|t| t.parse().ok())
        .expect("ts");
    // books accepts it ...
    let books = gatehouse::web::gate::identity_header(key.as_bytes(), "books", "bob", "", ts);
    assert_eq!(issued, books);
    // ... ledger, checking for its own name, does not: a replay fails even
    // with the app name edited, as the signature covers it.
    let ledger = gatehouse::web::gate::identity_header(key.as_bytes(), "ledger", "bob", "", ts);
    let sig = |h: &str| h.split(";sig=").nth(1).map(str::to_owned);
    assert_ne!(sig(&issued), sig(&ledger));
    let edited = issued.replacen("app=books", "app=ledger", 1);
    assert_ne!(edited, ledger);
}

#[test]
fn a_websocket_handshake_gets_the_same_normalised_target_and_header_filter() {
    let (app, _up) = app_with_upstream();
    let cookie = session_cookie(&signed_in(&app, "alice"));
    let addr = app.base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        conn,
        "GET /apps/wiki//x/../%73ocket?room=%41 HTTP/1.1\r\nHost: {addr}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nRemote_User: root\r\n\
         Cookie: {cookie}\r\n\r\n"
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("utf-8");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let greeting = "url=/socket?room=%41 user=alice cookie=- underscored=\n";
    assert_eq!(
        String::from_utf8(read_exactly(&mut conn, greeting.len())).expect("utf-8"),
        greeting
    );
    // An encoded slash is refused before anything reaches the upstream.
    let answer = raw(
        &app,
        &format!(
            "GET /apps/wiki/a%2f..%2f..%2fbooks/socket HTTP/1.1\r\nHost: {addr}\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nCookie: {cookie}\r\n\r\n"
        ),
    );
    assert_eq!(status_of(&answer), 400, "{answer}");
}

#[test]
fn proxied_requests_reuse_the_connection_to_the_upstream() {
    // The client side ports the upstream saw: one per connection.
    let ports = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let seen = Arc::clone(&ports);
    let (addr, stop) = crate::raw::upstream(move |request| {
        seen.lock()
            .expect("ports")
            .insert(request.remote_addr().port());
        rouille::Response::text("a small page")
    });
    let app = TestApp::spawn_with_file(
        &format!(
            "[[apps]]\nname = \"wiki\"\nprefix = \"/apps/wiki/\"\nupstream = \"http://{addr}\"\n"
        ),
        &[],
    );
    app.add_user("alice", "correct horse", false);
    let alice = signed_in(&app, "alice");
    for _ in 0..20 {
        let page = alice.get("/apps/wiki/page");
        assert_eq!((page.status, page.body.as_str()), (200, "a small page"));
    }
    let connections = ports.lock().expect("ports").len();
    stop.store(true, Ordering::SeqCst);
    assert!(
        connections <= 2,
        "{connections} connections to the upstream for 20 proxied requests, one after another"
    );
}
