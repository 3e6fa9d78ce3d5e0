//! Access rules per app (`[[apps.rules]]`), end to end: the same cases
//! through `/auth/verify` (as nginx asks it, from a trusted proxy) and
//! through the built-in proxy, on the path after normalisation, so no
//! encoding, dot segment, `;` or doubled slash reaches a bypassed rule's
//! neighbour.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::helpers::{Browser, TestApp};

/// An upstream that answers `path=<target> user=<Remote-User or ->`.
struct Upstream {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> Self {
        let (addr, stop) = crate::raw::upstream(|request| {
            let user = request.header("Remote-User").unwrap_or("-");
            rouille::Response::text(format!("path={} user={user}", request.raw_url()))
        });
        Self { addr, stop }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn config(upstream: &Upstream) -> String {
    format!(
        r#"
default_policy = "deny"

[[apps]]
name = "wiki"
prefix = "/apps/wiki/"
host = "wiki.lan"
upstream = "http://{}"

[[apps.rules]]
paths = ["/api/health", "/static/*"]
policy = "bypass"

[[apps.rules]]
paths = ["/admin", "/admin/*"]
policy = "deny"

[[apps.rules]]
methods = ["POST", "PUT", "DELETE"]
networks = ["10.0.0.0/8"]
groups = ["admins"]
policy = "signed_in"

[[apps.rules]]
methods = ["POST", "PUT", "DELETE"]
policy = "deny"

[[apps.rules]]
paths = ["/secure/*"]
policy = "two_factor"
"#,
        upstream.addr
    )
}

/// The wiki with its rules, behind a trusted proxy (127.0.0.1), with
/// alice and root (an administrator).
fn wiki() -> (TestApp, Upstream) {
    let upstream = Upstream::start();
    let app = TestApp::spawn_with_file(&config(&upstream), &[("trusted_proxies", "127.0.0.1")]);
    app.add_user("alice", "correct horse", false);
    app.add_user("root", "correct horse", true);
    (app, upstream)
}

fn signed_in(app: &TestApp, name: &str) -> Browser {
    let b = app.browser();
    b.login(name, "correct horse");
    b
}

/// The cases, as (method, path the app sees, client address, who, the
/// status `/auth/verify` answers). The proxy answers the same, but `401`
/// for a browser is its redirect and an allowed request is the upstream's.
const CASES: &[(&str, &str, &str, &str, u16)] = &[
    ("GET", "/api/health", "192.0.2.7", "", 200),
    ("GET", "/static/app.css", "192.0.2.7", "", 200),
    ("GET", "/static/x;v=2/app.css", "192.0.2.7", "", 200),
    ("GET", "/page", "192.0.2.7", "", 401),
    ("GET", "/page", "192.0.2.7", "alice", 200),
    ("GET", "/api/healthz", "192.0.2.7", "", 401),
    // A bypass's neighbours stay closed, however the path is spelled.
    ("GET", "/admin", "192.0.2.7", "", 403),
    ("GET", "/api/health/../../admin", "192.0.2.7", "", 403),
    ("GET", "/static/%2e%2e/admin/x", "192.0.2.7", "", 403),
    ("GET", "/static/%2E%2E/admin", "192.0.2.7", "alice", 403),
    ("GET", "/static/..;/admin", "192.0.2.7", "", 403),
    ("GET", "/static/..;/page", "192.0.2.7", "", 401),
    ("GET", "//admin", "192.0.2.7", "", 403),
    ("GET", "/static//../admin", "192.0.2.7", "", 403),
    ("GET", "/%61dmin/", "192.0.2.7", "", 403),
    // Methods, networks and groups.
    ("POST", "/page", "10.1.2.3", "root", 200),
    ("POST", "/page", "192.0.2.7", "root", 403),
    ("POST", "/page", "10.1.2.3", "alice", 403),
    ("DELETE", "/page", "10.1.2.3", "", 401),
    ("POST", "/api/health", "192.0.2.7", "", 200),
    // A password alone is not enough where a second factor is needed.
    ("GET", "/secure/x", "192.0.2.7", "alice", 401),
];

#[test]
fn rules_decide_forward_auth_on_the_normalised_path_method_network_and_groups() {
    let (app, _up) = wiki();
    let alice = signed_in(&app, "alice");
    let root = signed_in(&app, "root");
    let anonymous = app.browser();
    for &(method, path, from, who, status) in CASES {
        let b = match who {
            "alice" => &alice,
            "root" => &root,
            _ => &anonymous,
        };
        for (host, uri) in [
            ("wiki.lan", path.to_owned()),
            // Reached by its prefix, the rules see the path under it.
            ("gatehouse.lan", format!("/apps/wiki{path}")),
        ] {
            let r = b.get_with(
                "/auth/verify",
                &[
                    ("X-Forwarded-Host", host),
                    ("X-Forwarded-Uri", &uri),
                    ("X-Forwarded-Method", method),
                    ("X-Forwarded-For", from),
                ],
            );
            assert_eq!(
                r.status, status,
                "{method} {host}{uri} from {from} as {who:?}: {}",
                r.body
            );
            // Nobody signed in: the identity headers come empty.
            let user = r.header("remote-user").filter(|u| !u.is_empty());
            if status == 200 {
                let expected = (!who.is_empty()).then_some(who);
                assert_eq!(user, expected, "{method} {uri} as {who:?}");
            }
        }
    }
}

#[test]
fn rules_decide_the_built_in_proxy_as_they_decide_forward_auth() {
    let (app, _up) = wiki();
    let alice = signed_in(&app, "alice");
    let root = signed_in(&app, "root");
    let anonymous = app.browser();
    for &(method, path, from, who, status) in CASES {
        let b = match who {
            "alice" => &alice,
            "root" => &root,
            _ => &anonymous,
        };
        for (host, target) in [
            ("wiki.lan", path.to_owned()),
            ("gatehouse.lan", format!("/apps/wiki{path}")),
        ] {
            // Sent as written: a client library might tidy the path.
            let cookie = b
                .cookie("gatehouse_session")
                .map(|c| format!("Cookie: gatehouse_session={c}\r\n"))
                .unwrap_or_default();
            let answer = crate::raw::raw(
                &app,
                &format!(
                    "{method} {target} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: {from}\r\n{cookie}Content-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            );
            let got: u16 = answer
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            assert_eq!(
                got, status,
                "{method} {host}{target} from {from} as {who:?}: {answer}"
            );
            if status == 200 {
                let user = if who.is_empty() { "-" } else { who };
                assert!(
                    answer.ends_with(&format!(" user={user}")),
                    "{method} {target}: {answer}"
                );
            }
        }
    }
}

/// A method override (`X-HTTP-Method-Override: DELETE` on a `GET`) is
/// judged as that method too, and the stricter answer stands: an upstream
/// that honours it must not run a method the rules deny (a hostile pass
/// reached one past a `methods` rule, through every front door).
#[test]
fn a_method_override_is_judged_as_the_method_it_asks_for() {
    let (app, _up) = wiki();
    let alice = signed_in(&app, "alice");
    let cookie = alice.cookie("gatehouse_session").expect("signed in");
    for header in [
        "X-HTTP-Method-Override",
        "x-http-method",
        "X-Method-Override",
    ] {
        for value in ["DELETE", "delete", " PUT ", "GET, POST"] {
            let verify = alice.get_with(
                "/auth/verify",
                &[
                    ("X-Forwarded-Host", "wiki.lan"),
                    ("X-Forwarded-Uri", "/page"),
                    ("X-Forwarded-Method", "GET"),
                    ("X-Forwarded-For", "192.0.2.7"),
                    (header, value),
                ],
            );
            assert_eq!(verify.status, 403, "{header}: {value}: {}", verify.body);
            let answer = crate::raw::raw(
                &app,
                &format!(
                    "GET /page HTTP/1.1\r\nHost: wiki.lan\r\n{header}: {value}\r\n\
                     Cookie: gatehouse_session={cookie}\r\nConnection: close\r\n\r\n"
                ),
            );
            assert!(
                answer.starts_with("HTTP/1.1 403 "),
                "{header}: {value}: {answer}"
            );
        }
    }
    // An override to the same method, or to one the rules allow, changes
    // nothing.
    let same = alice.get_with(
        "/auth/verify",
        &[
            ("X-Forwarded-Host", "wiki.lan"),
            ("X-Forwarded-Uri", "/page"),
            ("X-Forwarded-Method", "GET"),
            ("X-HTTP-Method-Override", "HEAD"),
        ],
    );
    assert_eq!(same.status, 200, "{}", same.body);
}

#[test]
fn a_bypassed_path_sends_no_identity_and_sets_no_cookie() {
    let (app, _up) = wiki();
    let r = app.browser().get_with("/apps/wiki/api/health", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "path=/api/health user=-");
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
}

#[test]
fn check_config_explains_which_rule_decides_and_names_a_bad_rule() {
    use crate::cli::{fails, gatehouse, ok};
    let dir = tempfile::tempdir().expect("dir");
    let toml = config(&Upstream::start());
    std::fs::write(dir.path().join("gatehouse.toml"), &toml).expect("config");
    ok(&gatehouse(
        dir.path(),
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("correct horse battery\n"),
    ));
    let explain = |args: &[&str]| {
        let mut all = vec!["check-config", "--explain"];
        all.extend_from_slice(args);
        ok(&gatehouse(dir.path(), &all, None))
    };
    let health = explain(&["http://wiki.lan/static/..;/admin"]);
    assert!(
        health.contains("app \"wiki\", path /static/..;/admin"),
        "{health}"
    );
    assert!(health.contains("deny: rule 2 (policy deny)"), "{health}");
    let post = explain(&[
        "/apps/wiki/page",
        "--user",
        "root",
        "--method",
        "POST",
        "--from",
        "10.9.8.7",
    ]);
    assert!(post.contains("root (groups: admins)"), "{post}");
    assert!(post.contains("allow: rule 3 (policy signed_in)"), "{post}");
    let away = explain(&["/apps/wiki/page", "--user", "root", "--method", "POST"]);
    assert!(away.contains("deny: rule 4 (policy deny)"), "{away}");
    let anonymous = explain(&["http://wiki.lan/page"]);
    assert!(
        anonymous.contains("sign in: the default (policy signed_in)"),
        "{anonymous}"
    );
    let err = fails(&gatehouse(
        dir.path(),
        &["check-config", "--explain", "/x", "--user", "nobody"],
        None,
    ));
    assert!(err.contains("no such user"), "{err}");

    // A bad rule stops the check, naming the app, the rule and the field.
    let bad = toml.replace(
        "methods = [\"POST\", \"PUT\", \"DELETE\"]\npolicy",
        "methods = [\"POST\"]\npaths = [\"/a/../b\"]\npolicy",
    );
    std::fs::write(dir.path().join("gatehouse.toml"), bad).expect("config");
    let err = fails(&gatehouse(dir.path(), &["check-config"], None));
    assert!(
        err.contains("app \"wiki\": invalid rules[4].paths"),
        "{err}"
    );
}

/// Apps for the start page: one described with an icon, one hidden, one
/// for administrators by a rule, one whose front page a rule closes.
fn my_apps_config(upstream: &Upstream) -> String {
    format!(
        r#"
[[apps]]
name = "wiki"
prefix = "/apps/wiki/"
upstream = "http://{0}"
description = "Team notes <b>and</b> how-tos"
icon = "/apps/wiki/favicon.png"

[[apps]]
name = "backup-api"
host = "backup.lan"
hidden = true

[[apps]]
name = "grafana"
host = "grafana.lan"
[[apps.rules]]
groups = ["admins"]
policy = "signed_in"
[[apps.rules]]
policy = "deny"

[[apps]]
name = "closed"
prefix = "/apps/closed/"
upstream = "http://{0}"
[[apps.rules]]
paths = ["/"]
policy = "deny"
"#,
        upstream.addr
    )
}

#[test]
fn the_start_page_and_the_api_list_the_apps_i_may_open_and_only_those() {
    let upstream = Upstream::start();
    let app = TestApp::spawn_with_file(&my_apps_config(&upstream), &[]);
    app.add_user("alice", "correct horse", false);
    app.add_user("root", "correct horse", true);
    let names = |b: &Browser| -> Vec<String> {
        let r = b.get("/api/apps");
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        v["apps"]
            .as_array()
            .expect("apps")
            .iter()
            .map(|a| a["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let alice = signed_in(&app, "alice");
    assert_eq!(names(&alice), ["wiki"]);
    let root = signed_in(&app, "root");
    assert_eq!(names(&root), ["wiki", "grafana"]);

    let page = alice.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("href=\"/apps/wiki/\""), "{}", page.body);
    assert!(
        page.body.contains("src=\"/apps/wiki/favicon.png\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("Team notes &lt;b&gt;and&lt;/b&gt; how-tos"),
        "the description is text, escaped: {}",
        page.body
    );
    for absent in ["backup", "grafana", "/apps/closed/"] {
        assert!(!page.body.contains(absent), "{absent}: {}", page.body);
    }
    let page = root.get("/");
    assert!(
        page.body.contains("href=\"//grafana.lan/\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("backup"), "{}", page.body);

    let full: serde_json::Value = serde_json::from_str(&alice.get("/api/apps").body).expect("json");
    assert_eq!(
        full["apps"][0],
        serde_json::json!({
            "name": "wiki",
            "url": "/apps/wiki/",
            "description": "Team notes <b>and</b> how-tos",
            "icon": "/apps/wiki/favicon.png",
        })
    );
    assert_eq!(app.browser().get("/api/apps").status, 401);
}

#[test]
fn an_icon_must_be_a_path_on_gatehouses_origin() {
    use crate::cli::{fails, gatehouse};
    let dir = tempfile::tempdir().expect("dir");
    for icon in [
        "https://evil.example/x.png",
        "//evil.example/x.png",
        "javascript:alert(1)",
        "/x\" onerror=\"alert(1)",
    ] {
        let toml = format!("[[apps]]\nname = \"wiki\"\nhost = \"wiki.lan\"\nicon = {icon:?}\n");
        std::fs::write(dir.path().join("gatehouse.toml"), toml).expect("config");
        let err = fails(&gatehouse(dir.path(), &["check-config"], None));
        assert!(err.contains("app \"wiki\": invalid icon"), "{icon}: {err}");
    }
}
