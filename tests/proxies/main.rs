//! The documented recipes, run for real: Debian's nginx and Caddy in front
//! of gatehouse and an upstream app, each driven with the same cases.
//!
//! The recipes in `docs/recipes/` are used as written, with only the
//! addresses swapped for this test's (gatehouse's port, the upstream's port,
//! and a Unix socket for the proxy to listen on, so no port is guessed).
//! Without `nginx` or `caddy` installed a case says it was skipped, except
//! under CI (`CI` set), where it fails: CI installs both.

#[path = "../http/helpers.rs"]
#[allow(dead_code)]
mod helpers;
mod soak;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use helpers::TestApp;

/// An upstream that echoes the identity headers it receives.
struct Upstream {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> Self {
        let server = rouille::Server::new("127.0.0.1:0", |request| {
            let h = |name: &str| request.header(name).unwrap_or("-").to_owned();
            // Names a CGI-style app would read as identity headers too.
            let underscored: Vec<String> = request
                .headers()
                .filter(|(k, _)| k.contains('_'))
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            rouille::Response::text(format!(
                "upstream saw {} user={} groups={} cookie={} underscored={}",
                request.raw_url(),
                h("Remote-User"),
                h("Remote-Groups"),
                h("Cookie"),
                underscored.join(",")
            ))
        })
        .expect("upstream");
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

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A proxy process, killed on drop.
struct Proxy {
    child: Child,
    socket: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.0 request over the proxy's Unix socket.
fn get(proxy: &Proxy, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = UnixStream::connect(&proxy.socket).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn wait_for(socket: &Path, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while UnixStream::connect(socket).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `program` is installed; under CI a missing one fails the test.
fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: install {program}"
        );
        eprintln!("skipped: {program} is not installed");
    }
    found
}

fn recipe(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/recipes")
            .join(name),
    )
    .expect("recipe")
}

/// Replaces one piece of a recipe, insisting that it was there.
fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the recipe no longer contains {from:?}"
    );
    text.replace(from, to)
}

const GATEHOUSE_CONFIG: &str = r#"
public_url = "http://auth.lan"
default_policy = "deny"
# The proxies reach gatehouse from here; their forwarding headers count.
trusted_proxies = ["127.0.0.1"]

[[apps]]
name = "wiki"
host = "wiki.lan"

[[apps]]
name = "secret"
host = "secret.lan"
allow = "admins"

[[apps]]
name = "open"
prefix = "/apps/open/"
upstream = "http://127.0.0.1:9"

[[apps]]
name = "books"
host = "books.lan"
users = ["bob"]
"#;

fn start_nginx(dir: &Path, gatehouse: &str, upstream: &str) -> Proxy {
    let socket = dir.join("nginx.sock");
    let mut site = recipe("nginx.conf");
    site = swap(
        &site,
        "listen 80;",
        &format!("listen unix:{};", socket.display()),
    );
    site = swap(
        &site,
        "server_name wiki.lan;",
        "server_name wiki.lan secret.lan other.lan books.lan;",
    );
    site = swap(&site, "127.0.0.1:8080", gatehouse);
    site = swap(&site, "127.0.0.1:3000", upstream);
    let d = dir.display();
    let conf = format!(
        "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{site}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    let mut child = Command::new("nginx")
        .args([
            "-e",
            &format!("{d}/error.log"),
            "-p",
            &d.to_string(),
            "-c",
            &format!("{d}/nginx.conf"),
            "-g",
            "daemon off;",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    wait_for(&socket, &mut child, "nginx");
    Proxy { child, socket }
}

fn start_caddy(dir: &Path, gatehouse: &str, upstream: &str) -> Proxy {
    let socket = dir.join("caddy.sock");
    let mut site = recipe("Caddyfile");
    site = swap(
        &site,
        "http://wiki.lan {",
        &format!(
            "http://wiki.lan, http://secret.lan, http://other.lan, http://books.lan {{\n\tbind unix/{}",
            socket.display()
        ),
    );
    site = swap(
        &site,
        "forward_auth 127.0.0.1:8080",
        &format!("forward_auth {gatehouse}"),
    );
    site = swap(
        &site,
        "reverse_proxy 127.0.0.1:3000",
        &format!("reverse_proxy {upstream}"),
    );
    let conf = format!("{{\n\tadmin off\n\tauto_https off\n}}\n{site}");
    let file = dir.join("Caddyfile");
    std::fs::write(&file, conf).expect("write Caddyfile");
    let mut child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start caddy");
    wait_for(&socket, &mut child, "caddy");
    Proxy { child, socket }
}

/// The same cases through either proxy.
fn check(app: &TestApp, proxy: &Proxy, login_status: u16) {
    // Not signed in: sent to gatehouse's sign-in page with the way back.
    let anon = get(proxy, "wiki.lan", "/page?x=1", &[("Accept", "text/html")]);
    assert_eq!(anon.status, login_status, "{}", anon.head);
    let location = anon.header("location").expect("a redirect to sign in");
    assert!(
        location.starts_with("http://auth.lan/login?next="),
        "{location}"
    );
    assert!(
        location.contains("wiki.lan") && location.contains("page"),
        "{location}"
    );
    assert!(
        !anon.body.contains("upstream saw"),
        "the app was reached without a login"
    );

    // Sign in at gatehouse; the login page follows `next` back to the app host.
    let alice = app.browser();
    let next = location.split("next=").nth(1).expect("next");
    let form = alice.get(&format!("/login?next={next}"));
    let csrf = form.csrf().expect("csrf");
    let back = "http://wiki.lan/page?x=1";
    let resp = alice.post_form(
        "/login",
        &[
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", "correct horse"),
            ("next", back),
        ],
    );
    assert_eq!(resp.header("location"), Some(back));
    let cookie = format!(
        "gatehouse_session={}",
        alice.cookie("gatehouse_session").expect("cookie")
    );

    // Signed in: through to the app, as alice, whatever the client claims.
    let ok = get(
        proxy,
        "wiki.lan",
        "/page?x=1",
        &[
            ("Cookie", &cookie),
            ("Remote-User", "root"),
            ("Remote-Groups", "admins"),
            ("Remote_User", "root"),
            ("Remote_Groups", "admins"),
        ],
    );
    assert_eq!(ok.status, 200, "{}\n{}", ok.head, ok.body);
    assert!(
        ok.body.contains("upstream saw /page?x=1 user=alice "),
        "{}",
        ok.body
    );
    assert!(
        !ok.body.contains("groups=admins"),
        "a forged group got through: {}",
        ok.body
    );

    assert!(
        ok.body.ends_with("underscored="),
        "an underscore twin of an identity header got through: {}",
        ok.body
    );

    // Signed in but not allowed.
    let no = get(proxy, "secret.lan", "/", &[("Cookie", &cookie)]);
    assert_eq!(no.status, 403, "{}", no.head);
    assert!(!no.body.contains("upstream saw"));

    // Not allowed, whatever the client says the request was for: its own
    // forwarding headers name an app it may use, or a host that is one.
    for (host, forged) in [
        (
            "other.lan",
            [
                ("X-Forwarded-Uri", "/apps/open/"),
                ("X-Original-URI", "/apps/open/"),
            ],
        ),
        (
            "other.lan",
            [("X-Forwarded-Host", "wiki.lan"), ("X-Forwarded-Uri", "/")],
        ),
        (
            "secret.lan",
            [("X-Forwarded-Host", "wiki.lan"), ("X-Original-URI", "/")],
        ),
        (
            "books.lan",
            [
                ("X-Forwarded-Host", "wiki.lan"),
                ("X-Forwarded-Uri", "/apps/open/"),
            ],
        ),
    ] {
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend(forged);
        let no = get(proxy, host, "/x", &headers);
        assert_eq!(no.status, 403, "{host} {forged:?}: {}", no.head);
        assert!(!no.body.contains("upstream saw"), "{host} {forged:?}");
    }

    // Signed out: the same cookie no longer opens the app.
    alice.logout();
    let after = get(
        proxy,
        "wiki.lan",
        "/page",
        &[("Cookie", &cookie), ("Accept", "text/html")],
    );
    assert_eq!(after.status, login_status);
}

fn setup() -> (TestApp, Upstream, tempfile::TempDir) {
    let upstream = Upstream::start();
    let app = TestApp::spawn_with_file(GATEHOUSE_CONFIG, &[]);
    app.add_user("alice", "correct horse", false);
    (app, upstream, tempfile::tempdir().expect("dir"))
}

#[test]
fn the_nginx_recipe_guards_an_app() {
    if !have("nginx") {
        return;
    }
    let (app, upstream, dir) = setup();
    let gatehouse = app.base.trim_start_matches("http://").to_owned();
    let proxy = start_nginx(dir.path(), &gatehouse, &upstream.addr.to_string());
    check(&app, &proxy, 302);
}

#[test]
fn the_caddy_recipe_guards_an_app() {
    if !have("caddy") {
        return;
    }
    let (app, upstream, dir) = setup();
    let gatehouse = app.base.trim_start_matches("http://").to_owned();
    let proxy = start_caddy(dir.path(), &gatehouse, &upstream.addr.to_string());
    check(&app, &proxy, 302);
}
