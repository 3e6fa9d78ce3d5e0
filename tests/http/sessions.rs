//! Session lifetime, persistence and concurrency, seen over HTTP.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::helpers::{TestApp, assert_redirects_to};

fn data_version(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .expect("data_version")
}

#[test]
fn garbage_and_tampered_cookies_are_no_session() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let good = b.cookie("gatehouse_session").expect("cookie");
    let (id, sig) = good.split_once('.').expect("id.sig");
    let flipped = |s: &str| {
        let mut c: Vec<char> = s.chars().collect();
        c[5] = if c[5] == 'A' { 'B' } else { 'A' };
        c.into_iter().collect::<String>()
    };
    let other_id = "A".repeat(43);
    let cases = [
        format!("{id}.{}", flipped(sig)),
        format!("{}.{sig}", flipped(id)),
        format!("{other_id}.{sig}"),
        id.to_owned(),
        format!("{id}."),
        ".".to_owned(),
        String::new(),
        "%%%".to_owned(),
        "x".repeat(4000),
        format!("{good}.{good}"),
    ];
    for bad in cases {
        let visitor = app.browser();
        visitor.set_cookie("gatehouse_session", &bad);
        let resp = visitor.get("/auth/verify");
        assert_eq!(resp.status, 401, "cookie {bad:?}");
        assert_redirects_to(&visitor.get("/"), "/login?next=/");
    }
    assert_eq!(
        b.get("/auth/verify").status,
        200,
        "the real cookie still works"
    );
    // A junk cookie of the same name beside the real one does not hide it.
    let both = app.browser();
    both.set_cookie(
        "gatehouse_session",
        &format!("junk; gatehouse_session={good}"),
    );
    assert_eq!(both.get("/auth/verify").status, 200);
}

#[test]
fn a_session_expires_after_the_idle_timeout() {
    let app = TestApp::spawn_with(&[("idle_timeout", "1s"), ("absolute_timeout", "1h")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    assert_eq!(b.get("/auth/verify").status, 200);
    thread::sleep(Duration::from_millis(1300));
    assert_eq!(b.get("/auth/verify").status, 401);
}

#[test]
fn activity_slides_the_idle_expiry_but_not_the_absolute_one() {
    // Touches are written at most every idle/2 (1 s here): a request every
    // 300 ms leaves about 700 ms of slack for a slow, loaded machine
    // before the idle limit could pass between two touches.
    let app = TestApp::spawn_with(&[("idle_timeout", "2s"), ("absolute_timeout", "5s")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let started = Instant::now();
    // Requests every 300 ms keep the session alive past its 2 s idle limit.
    while started.elapsed() < Duration::from_millis(3600) {
        assert_eq!(
            b.get("/auth/verify").status,
            200,
            "expired while active at {:?}",
            started.elapsed()
        );
        thread::sleep(Duration::from_millis(300));
    }
    // ... but not past the absolute limit.
    while started.elapsed() < Duration::from_millis(5300) {
        let _ = b.get("/auth/verify");
        thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        b.get("/auth/verify").status,
        401,
        "outlived its absolute lifetime"
    );
}

#[test]
fn the_reaper_deletes_expired_rows() {
    // Long enough that all three are still there when counted, however
    // slow the machine (a loaded one, qemu, a backend over TLS): with 1s,
    // the first had sometimes expired before the third sign-in.
    let app = TestApp::spawn_with(&[
        ("idle_timeout", "5s"),
        ("absolute_timeout", "5s"),
        ("reap_interval", "200ms"),
    ]);
    app.add_user("alice", "correct horse", false);
    for _ in 0..3 {
        app.browser().login("alice", "correct horse");
    }
    assert_eq!(app.session_rows(), 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.session_rows() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(app.session_rows(), 0, "expired rows were not reaped");
}

#[test]
fn a_restart_keeps_sessions_valid() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let cookie = b.cookie("gatehouse_session").expect("cookie");
    let app = app.restart();
    let b = app.browser();
    b.set_cookie("gatehouse_session", &cookie);
    assert_eq!(
        b.get("/auth/verify").status,
        200,
        "the generated secret was not reused"
    );
}

#[test]
fn a_rotated_secret_still_accepts_old_cookies() {
    let old = "o".repeat(40);
    let new = "n".repeat(40);
    let app = TestApp::spawn_with(&[("secrets", &old)]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let cookie = b.cookie("gatehouse_session").expect("cookie");
    let mut app = app;
    app.settings = vec![("secrets".into(), format!("{new},{old}"))];
    let app = app.restart();
    let b = app.browser();
    b.set_cookie("gatehouse_session", &cookie);
    assert_eq!(
        b.get("/auth/verify").status,
        200,
        "old secret no longer accepted"
    );
    let mut app = app;
    app.settings = vec![("secrets".into(), new)];
    let app = app.restart();
    let b = app.browser();
    b.set_cookie("gatehouse_session", &cookie);
    assert_eq!(
        b.get("/auth/verify").status,
        401,
        "a retired secret must not verify"
    );
}

#[test]
fn concurrent_loads_on_one_session_lose_no_visit() {
    let app = TestApp::spawn_with(&[("threads", "32")]);
    app.add_user("alice", "correct horse", false);
    let b = Arc::new(app.browser());
    b.login("alice", "correct horse");
    let before: i64 = b
        .get("/")
        .text_of("visits")
        .expect("visits")
        .parse()
        .expect("n");
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                let b = b.clone_cookies();
                assert_eq!(b.get("/").status, 200);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let after: i64 = b
        .get("/")
        .text_of("visits")
        .expect("visits")
        .parse()
        .expect("n");
    assert_eq!(after, before + 64 + 1, "increments were lost");
}

#[test]
fn read_only_requests_do_not_write_within_the_touch_interval() {
    if !crate::helpers::on_sqlite("read_only_requests_do_not_write_within_the_touch_interval") {
        return;
    }
    let app = TestApp::spawn_with(&[("touch_interval", "60s")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let watcher = app.db();
    let before = data_version(&watcher);
    for _ in 0..50 {
        assert_eq!(b.get("/auth/verify").status, 200);
    }
    assert_eq!(
        data_version(&watcher),
        before,
        "a read-only request wrote to SQLite"
    );
    // The visit page does write, and the watcher sees writes: the check can fail.
    b.get("/");
    assert_ne!(data_version(&watcher), before);
}

#[test]
fn a_read_only_request_touches_once_the_interval_has_passed() {
    let app = TestApp::spawn_with(&[("touch_interval", "200ms")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let seen = |app: &TestApp| -> i64 { app.stored_sessions()[0].last_seen_at };
    let first = seen(&app);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(b.get("/auth/verify").status, 200);
    assert!(seen(&app) > first, "the session was not touched");
}

#[test]
fn a_logout_racing_other_requests_is_never_undone() {
    let app = TestApp::spawn_with(&[("threads", "16")]);
    app.add_user("alice", "correct horse", false);
    let b = Arc::new(app.browser());
    b.login("alice", "correct horse");
    let page = b.get("/logout");
    let csrf = page.csrf().expect("csrf");
    let threads: Vec<_> = (0..24)
        .map(|_| {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                let b = b.clone_cookies();
                for _ in 0..5 {
                    let s = b.get("/").status;
                    assert!(s == 200 || s == 303, "status {s}");
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(20));
    let thief = b.clone_cookies();
    assert_redirects_to(&b.post_form("/logout", &[("csrf", &csrf)]), "/login");
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(
        app.session_rows(),
        0,
        "an in-flight request brought the session back"
    );
    assert_eq!(thief.get("/auth/verify").status, 401);
}

/// Gives the user `name` another stamp in the users table, whatever the
/// backend: as if another user had come to have their id (another
/// database file swapped in, a backup restored).
fn another_user_with_the_id_of(app: &TestApp, name: &str) {
    let sql = "UPDATE users SET username = 'mallory', stamp = 'ffffffffffffffffffffffffffffffff' \
               WHERE username = ";
    match crate::helpers::backend_settings(app.dir.path())
        .into_iter()
        .find(|(k, _)| k == "database")
    {
        None => {
            app.db()
                .execute(&format!("{sql}?1"), [name])
                .expect("update");
        }
        Some((_, url)) => {
            // gatehouse's own pool: the URL may ask for TLS
            // (`sslmode=verify-full` with the CA file), as in CI.
            let ca = std::env::var("GATEHOUSE_TEST_POSTGRES_CA_FILE")
                .ok()
                .map(|f| {
                    gatehouse::tls::client::CaFile::read(std::path::Path::new(&f)).expect("ca")
                });
            let pool = gatehouse::db::postgres::open(&url, 1, ca.as_ref()).expect("connect");
            let mut client = gatehouse::db::postgres::client(&pool).expect("client");
            client
                .execute(&format!("{sql}$1"), &[&name])
                .expect("update");
        }
    }
}

#[test]
fn a_session_never_resolves_to_a_user_whose_stamp_is_not_its_own() {
    // On every backend: SQLite and PostgreSQL compare the stamps in the
    // read that loads the session, Redis against the user row the request
    // reads anyway.
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let alice = app.browser();
    assert_eq!(alice.login("alice", "correct horse").status, 303);
    assert_eq!(
        alice.get("/auth/verify").header("Remote-User"),
        Some("alice")
    );
    another_user_with_the_id_of(&app, "alice");
    let verify = alice.get("/auth/verify");
    assert_eq!(
        (verify.status, verify.header("Remote-User")),
        (401, None),
        "alice's session resolved to the user who now has her id"
    );
    assert_eq!(alice.get("/").status, 303);
    let api = alice.get("/api/session");
    assert!(!api.body.contains("mallory"), "{}", api.body);
}
