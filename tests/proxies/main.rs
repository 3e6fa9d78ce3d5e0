//! The documented recipes, run for real: Debian's nginx and Caddy in front
//! of gatehouse and an upstream app, each driven with the same cases; and
//! Debian's Apache with mod_auth_openidc signing in through gatehouse's
//! OpenID Provider (`apache`).
//!
//! The recipes in `docs/recipes/` are used as written, with only the
//! addresses swapped for this test's (gatehouse's port, the upstream's port,
//! and a Unix socket for the proxy to listen on, so no port is guessed).
//! Without `nginx`, `caddy` or `apache2` (and its mod_auth_openidc)
//! installed a case says it was skipped, except under CI (`CI` set), where
//! it fails: CI installs them all.

mod apache;
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
        let (addr, stop) = helpers::upstream(|request| {
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

/// The host names the proxies serve in `check`.
const HOSTS: &[&str] = &["wiki.lan", "secret.lan", "other.lan", "books.lan"];

fn start_nginx(dir: &Path, gatehouse: &str, upstream: &str) -> Proxy {
    start_nginx_with(dir, gatehouse, upstream, HOSTS, "")
}

/// nginx with the recipe's server block for `hosts`, the app at `upstream`
/// (`host:port`, or `unix:/path` for a Unix socket), and `extra` server
/// blocks beside it.
fn start_nginx_with(
    dir: &Path,
    gatehouse: &str,
    upstream: &str,
    hosts: &[&str],
    extra: &str,
) -> Proxy {
    let socket = dir.join("nginx.sock");
    let mut site = recipe("nginx.conf");
    site = swap(
        &site,
        "listen 80;",
        &format!("listen unix:{};", socket.display()),
    );
    // One block per host, as the recipe says (its name is the host
    // gatehouse judges for); the first is the socket's default server.
    assert!(site.contains("server_name wiki.lan;"), "the recipe changed");
    site = hosts
        .iter()
        .map(|h| site.replace("server_name wiki.lan;", &format!("server_name {h};")))
        .collect::<Vec<_>>()
        .join("\n");
    site = swap(&site, "127.0.0.1:8080", gatehouse);
    site = swap(&site, "127.0.0.1:3000", upstream);
    let d = dir.display();
    let conf = format!(
        "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{site}\n{extra}\n}}\n"
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
    let hosts: Vec<String> = HOSTS.iter().map(|h| format!("http://{h}")).collect();
    site = swap(
        &site,
        "http://wiki.lan {",
        &format!("{} {{\n\tbind unix/{}", hosts.join(", "), socket.display()),
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
    run_caddy(dir, &socket, &site)
}

/// Runs Caddy on `site` (a Caddyfile's sites, listening on `socket`),
/// with no admin endpoint and no automatic HTTPS, its state kept in
/// `dir`: the one launcher of both proxy test files.
fn run_caddy(dir: &Path, socket: &Path, site: &str) -> Proxy {
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
    wait_for(socket, &mut child, "caddy");
    Proxy {
        child,
        socket: socket.to_owned(),
    }
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

    // A `#` in the target. nginx passes it on as it came, and an app may
    // cut the path there: gatehouse refuses it. Caddy keeps it in the path
    // and sends it encoded (`%23`) to gatehouse and to the app alike, so
    // both read the same path.
    let hash = get(proxy, "wiki.lan", "/page#/../x", &[("Cookie", &cookie)]);
    match hash.status {
        403 => assert!(!hash.body.contains("upstream saw"), "{}", hash.body),
        200 => assert!(
            hash.body
                .starts_with("upstream saw /page%23/../x user=alice "),
            "{}",
            hash.body
        ),
        _ => panic!("{}\n{}", hash.head, hash.body),
    }

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
    let (app, dir) = setup_with(GATEHOUSE_CONFIG);
    (app, upstream, dir)
}

fn setup_with(config: &str) -> (TestApp, tempfile::TempDir) {
    let app = TestApp::spawn_with_file(config, &[]);
    app.add_user("alice", "correct horse", false);
    (app, tempfile::tempdir().expect("dir"))
}

/// The session cookie of `name`, signed in at gatehouse itself.
fn session_of(app: &TestApp, name: &str) -> String {
    let b = app.browser();
    assert_eq!(b.login(name, "correct horse").status, 303);
    format!(
        "gatehouse_session={}",
        b.cookie("gatehouse_session").expect("cookie")
    )
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

/// The apps of [`GATEHOUSE_CONFIG`], their hosts served by gatehouse's
/// built-in proxy too (host mode, `upstream` set), all at `upstream`.
fn host_mode_config(upstream: &str) -> String {
    GATEHOUSE_CONFIG
        .lines()
        .map(|line| {
            if line.starts_with("host = ") {
                format!("{line}\nupstream = \"http://{upstream}\"\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// Caddy's `forward_auth` keeps the browser's `Host` when it asks
/// `/auth/forward`: for an app whose host the built-in proxy serves, the
/// check is still answered by gatehouse, not passed on to the app (which
/// answered `200`, and let everyone in as the literal
/// `{http.reverse_proxy.header.Remote-User}`).
#[test]
fn the_caddy_recipe_guards_a_host_mode_app() {
    if !have("caddy") {
        return;
    }
    let upstream = Upstream::start();
    let (app, dir) = setup_with(&host_mode_config(&upstream.addr.to_string()));
    let gatehouse = app.base.trim_start_matches("http://").to_owned();
    let proxy = start_caddy(dir.path(), &gatehouse, &upstream.addr.to_string());
    check(&app, &proxy, 302);
}

#[test]
fn the_nginx_recipe_guards_a_host_mode_app() {
    if !have("nginx") {
        return;
    }
    let upstream = Upstream::start();
    let (app, dir) = setup_with(&host_mode_config(&upstream.addr.to_string()));
    let gatehouse = app.base.trim_start_matches("http://").to_owned();
    let proxy = start_nginx(dir.path(), &gatehouse, &upstream.addr.to_string());
    check(&app, &proxy, 302);
}

/// Nested prefixes behind the nginx recipe: `/apps/site/` open to every
/// signed-in user, `/apps/site/private/` to administrators. The app behind
/// nginx is nginx's own static server, which (like Python's `http.server`)
/// cuts a request's path at a `#`.
const NESTED_CONFIG: &str = r#"
public_url = "http://auth.lan"
default_policy = "deny"
trusted_proxies = ["127.0.0.1"]

[[apps]]
name = "site"
prefix = "/apps/site/"
upstream = "http://127.0.0.1:9"

[[apps]]
name = "private"
prefix = "/apps/site/private/"
upstream = "http://127.0.0.1:9/private"
allow = "admins"
"#;

#[test]
fn behind_nginx_a_fragment_never_reaches_an_admins_only_file() {
    if !have("nginx") {
        return;
    }
    let (app, dir) = setup_with(NESTED_CONFIG);
    app.add_user("root", "correct horse", true);
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("apps/site/private")).expect("dirs");
    std::fs::write(www.join("apps/site/index.html"), "the public index\n").expect("index");
    std::fs::write(
        www.join("apps/site/private/secret.txt"),
        "the administrators' secret\n",
    )
    .expect("secret");
    let statics = dir.path().join("static.sock");
    let server = format!(
        "server {{\n listen unix:{};\n root {};\n}}\n",
        statics.display(),
        www.display()
    );
    let gatehouse = app.base.trim_start_matches("http://").to_owned();
    let proxy = start_nginx_with(
        dir.path(),
        &gatehouse,
        &format!("unix:{}", statics.display()),
        &["site.lan"],
        &server,
    );
    let alice = session_of(&app, "alice");
    let root = session_of(&app, "root");
    let fetch = |path: &str, cookie: &str| get(&proxy, "site.lan", path, &[("Cookie", cookie)]);

    // The static server serves what it is asked for; gatehouse decides who.
    let index = fetch("/apps/site/index.html", &alice);
    assert_eq!(index.status, 200, "{}", index.head);
    assert_eq!(index.body, "the public index\n");
    let secret = fetch("/apps/site/private/secret.txt", &root);
    assert_eq!(secret.status, 200, "{}", secret.head);
    assert_eq!(secret.body, "the administrators' secret\n");
    assert_eq!(fetch("/apps/site/private/secret.txt", &alice).status, 403);

    // With a `#`, nginx's static server reads the path up to it (the
    // secret) while `..` after it took the whole target back to the index:
    // refused, whoever asks.
    for path in [
        "/apps/site/%70rivate/secret.txt#/../../index.html",
        "/apps/site/private/secret.txt#/../../index.html",
        "/apps/site/index.html#x",
    ] {
        for (who, cookie) in [("alice", &alice), ("root", &root)] {
            let reply = fetch(path, cookie);
            assert_eq!(reply.status, 403, "{who} {path}: {}", reply.head);
            assert!(
                !reply.body.contains("secret"),
                "{who} {path} reached the secret: {}",
                reply.body
            );
        }
    }
    // Encoded, `#` is an ordinary character to nginx as to gatehouse: the
    // `..` after it climb over it for both, to the index.
    let encoded = fetch(
        "/apps/site/%70rivate/secret.txt%23/../../index.html",
        &alice,
    );
    assert_eq!(encoded.status, 200, "{}", encoded.head);
    assert_eq!(encoded.body, "the public index\n");
    // An encoded control character (C code ends a path at `%00`) never
    // reaches the app.
    for path in [
        "/apps/site/%70rivate/secret.txt%00/../../index.html",
        "/apps/site/%70rivate/secret.txt%0a/../../index.html",
    ] {
        let reply = fetch(path, &alice);
        assert!(
            reply.status == 400 || reply.status == 403,
            "{path}: {}",
            reply.head
        );
        assert!(!reply.body.contains("secret"), "{path}: {}", reply.body);
    }
}

/// The recipes' config with access rules on the wiki: its health check and
/// static files open to all, its `/admin` closed, `/secure/` for sessions
/// with a second factor.
fn rules_config() -> String {
    GATEHOUSE_CONFIG.replacen(
        "host = \"wiki.lan\"\n",
        "host = \"wiki.lan\"\n\n[[apps.rules]]\npaths = [\"/api/health\", \"/static/*\"]\npolicy = \"bypass\"\n\n[[apps.rules]]\npaths = [\"/admin\", \"/admin/*\"]\npolicy = \"deny\"\n\n[[apps.rules]]\npaths = [\"/secure/*\"]\npolicy = \"two_factor\"\n\n[[apps.rules]]\npaths = [\"/intranet/*\"]\nnetworks = [\"10.0.0.0/8\"]\npolicy = \"bypass\"\n\n[[apps.rules]]\npaths = [\"/intranet/*\"]\npolicy = \"deny\"\n",
        1,
    )
}

/// Access rules decided behind a real proxy: a bypassed path passes with
/// nobody signed in, and no spelling of a path reaches the bypass's
/// closed neighbour.
fn check_rules(app: &TestApp, proxy: &Proxy) {
    let cookie = session_of(app, "alice");
    for path in ["/api/health", "/static/app.css"] {
        let r = get(proxy, "wiki.lan", path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(
            r.body.starts_with(&format!("upstream saw {path} ")),
            "{path}: {}",
            r.body
        );
        // Nobody is signed in: no identity reaches the app, not even a
        // proxy's placeholder text (Caddy's `copy_headers` filled in
        // `{http.reverse_proxy.header.Remote-User}` for a header missing
        // from the answer).
        assert!(
            !r.body.contains("{http.")
                && (r.body.contains(" user=-") || r.body.contains(" user= ")),
            "{path}: {}",
            r.body
        );
    }
    for path in [
        "/admin",
        "/api/health/../../admin",
        "/static/%2e%2e/admin",
        "/static/..;/admin",
        "//admin",
        "/static//../admin/x",
    ] {
        for headers in [vec![], vec![("Cookie", cookie.as_str())]] {
            let r = get(proxy, "wiki.lan", path, &headers);
            assert!(
                !(200..300).contains(&r.status) && !r.body.contains("upstream saw"),
                "{path} {headers:?}: {} {}",
                r.status,
                r.body
            );
        }
    }
    // A client's own X-Forwarded-For never passes a `networks` rule (the
    // nginx recipe left it in place: a hostile pass reached /intranet/
    // with `X-Forwarded-For: 10.1.2.3`).
    for forged in ["10.1.2.3", "10.1.2.3, 127.0.0.1", "127.0.0.1, 10.1.2.3"] {
        let r = get(
            proxy,
            "wiki.lan",
            "/intranet/x",
            &[("X-Forwarded-For", forged)],
        );
        assert!(
            !(200..300).contains(&r.status) && !r.body.contains("upstream saw"),
            "X-Forwarded-For: {forged}: {} {}",
            r.status,
            r.body
        );
    }
    // A Host no block is named for is judged as the app that serves it,
    // never by another app's rules or the default policy (the nginx
    // recipe sent the client's Host: alice reached the wiki's closed
    // /admin as `Host: anything.lan`).
    for host in ["anything.lan", "WIKI.lan.", "auth.lan"] {
        let r = get(proxy, host, "/admin", &[("Cookie", cookie.as_str())]);
        assert!(
            !r.body.contains("upstream saw"),
            "{host}: {} {}",
            r.status,
            r.body
        );
    }
    let page = get(proxy, "wiki.lan", "/page", &[("Cookie", &cookie)]);
    assert_eq!(page.status, 200, "{}", page.body);
    // A password alone is not enough under /secure/: off to sign in (and
    // on to the second step), never through.
    let secure = get(proxy, "wiki.lan", "/secure/x", &[("Cookie", &cookie)]);
    assert_eq!(secure.status, 302, "{}", secure.body);
}

#[test]
fn behind_nginx_access_rules_decide_on_the_normalised_path() {
    if !have("nginx") {
        return;
    }
    let upstream = Upstream::start();
    let (app, dir) = setup_with(&rules_config());
    let gatehouse = app.base.trim_start_matches("http://").to_owned();
    let proxy = start_nginx(dir.path(), &gatehouse, &upstream.addr.to_string());
    check_rules(&app, &proxy);
}

#[test]
fn behind_caddy_access_rules_decide_on_the_normalised_path() {
    if !have("caddy") {
        return;
    }
    let upstream = Upstream::start();
    let (app, dir) = setup_with(&rules_config());
    let gatehouse = app.base.trim_start_matches("http://").to_owned();
    let proxy = start_caddy(dir.path(), &gatehouse, &upstream.addr.to_string());
    check_rules(&app, &proxy);
}
