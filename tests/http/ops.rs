//! Operations: health, metrics, check-config.

use crate::helpers::TestApp;

#[test]
fn healthz_reports_a_broken_database_as_503_and_recovers() {
    // On PostgreSQL and Redis, tests/outage stops and restarts the server.
    if !crate::helpers::on_sqlite("healthz_reports_a_broken_database_as_503_and_recovers") {
        return;
    }
    let app = TestApp::spawn();
    assert_eq!(app.browser().get("/healthz").status, 200);
    app.db()
        .execute_batch("ALTER TABLE sessions RENAME TO sessions_away")
        .expect("rename");
    let broken = app.browser().get("/healthz");
    assert_eq!(broken.status, 503);
    app.db()
        .execute_batch("ALTER TABLE sessions_away RENAME TO sessions")
        .expect("rename back");
    assert_eq!(app.browser().get("/healthz").status, 200);
}

#[test]
fn metrics_are_off_by_default() {
    let app = TestApp::spawn();
    assert_eq!(app.browser().get("/metrics").status, 404);
}

#[test]
fn metrics_count_what_happens_behind_a_token() {
    let app = TestApp::spawn_with(&[("metrics", "true"), ("metrics_token", "scrape-me")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    app.browser().login("alice", "wrong password");
    b.login("alice", "correct horse");
    b.get("/nope");
    assert_eq!(b.get("/metrics").status, 401);
    assert_eq!(
        b.get_with("/metrics", &[("Authorization", "Bearer wrong")])
            .status,
        401
    );
    let m = b.get_with("/metrics", &[("Authorization", "Bearer scrape-me")]);
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    for line in [
        "gatehouse_logins_total{outcome=\"ok\"} 1",
        "gatehouse_logins_total{outcome=\"wrong_password\"} 1",
        "gatehouse_active_sessions 1",
        "gatehouse_requests_total{class=\"4xx\"}",
        "gatehouse_request_duration_seconds_bucket",
        "gatehouse_reaper_deleted_sessions_total 0",
        "gatehouse_database_errors_total 0",
        "gatehouse_login_throttled_total 0",
    ] {
        assert!(m.body.contains(line), "missing {line:?} in\n{}", m.body);
    }
}

#[test]
fn check_config_prints_the_effective_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = "a-configured-secret-of-more-than-32-bytes";
    let out = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check-config"])
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_SECRETS", secret)
        .env("GATEHOUSE_IDLE_TIMEOUT", "90m")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("configuration is valid"));
    assert!(
        text.contains("idle_timeout") && text.contains("90m"),
        "{text}"
    );
    assert!(!text.contains(secret), "a secret was printed");
    assert!(text.contains("*** (1 configured)"));
    let bad = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check-config"])
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_COOKIE_SAME_SITE", "sometimes")
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cookie.same_site"));
}

#[test]
fn check_config_says_which_prefixes_match_in_any_case() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("gatehouse.toml");
    std::fs::write(
        &file,
        r#"
[[apps]]
name = "site"
prefix = "/apps/site/"
upstream = "http://127.0.0.1:1"
case_insensitive = true

[[apps]]
name = "private"
prefix = "/apps/site/private/"
upstream = "http://127.0.0.1:1/private"
allow = "admins"

[[apps]]
name = "wiki"
prefix = "/apps/wiki/"
upstream = "http://127.0.0.1:2"
"#,
    )
    .expect("write");
    let out = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check-config"])
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_CONFIG", &file)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("app {name:?}:")))
            .unwrap_or_else(|| panic!("no line for {name} in {text}"))
            .to_owned()
    };
    // The nested app inherits it from the app its prefix is under.
    assert!(line("site").ends_with(", prefix in any case"), "{text}");
    assert!(line("private").ends_with(", prefix in any case"), "{text}");
    assert!(!line("wiki").contains("any case"), "{text}");
}

/// A log nobody can read loses its lines, never the requests that log
/// them: the server's stderr a pipe whose reader has gone (EPIPE), or a
/// full device (ENOSPC). Every request still gets its answer.
#[test]
fn a_log_that_cannot_be_written_fails_no_request() {
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full");
    for broken_pipe in [true, false] {
        let dir = tempfile::tempdir().expect("dir");
        let stderr = if broken_pipe {
            std::process::Stdio::piped()
        } else {
            match full() {
                Ok(f) => std::process::Stdio::from(f),
                Err(_) => continue,
            }
        };
        let mut child = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEHOUSE_DATA", dir.path())
            .env("GATEHOUSE_BCRYPT_COST", "4")
            .env("GATEHOUSE_LOG_REQUESTS", "true")
            .envs(crate::helpers::backend_env(dir.path()))
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("serve");
        let (_, url) = crate::raw::served_url(&mut child);
        // The reader goes away.
        drop(child.stderr.take());
        let b = crate::helpers::Browser::new(&url);
        for i in 0..200 {
            let r = if i % 20 == 0 {
                // A failed sign-in: a login line, written at once.
                b.post_form("/login", &[("username", "nobody"), ("password", "x")])
            } else {
                b.get("/healthz")
            };
            assert!(
                r.status < 500,
                "request {i} (broken pipe {broken_pipe}): {r:?}"
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
