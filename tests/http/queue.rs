//! Sign-ins wait their turn for bcrypt: a burst is served, not refused;
//! only a caller who would wait past `login_queue_timeout` gets `503` with
//! `Retry-After`, and everything else is answered meanwhile.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::helpers::{Browser, TestApp, assert_redirects_to};

/// A well-formed bcrypt hash at cost 13 (about two seconds a check in a
/// debug build): checking any password against it keeps a worker busy.
const SLOW_HASH: &str = "$2b$13$ZdLXMbHHzFk.z5Cb3zUT4.qf8ShLbInHEyhW6q1nM1alxJKi08Yti";

#[test]
fn forty_eight_sign_ins_at_the_same_instant_all_succeed() {
    let app = TestApp::spawn();
    for i in 0..48 {
        app.add_user(&format!("user{i}"), "correct horse", false);
    }
    let barrier = Arc::new(Barrier::new(48));
    let clients: Vec<_> = (0..48)
        .map(|i| {
            let (base, barrier) = (app.base.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                let b = Browser::new(&base);
                let form = b.get("/login");
                // Every client reaches the barrier, so a failure here is
                // reported rather than leaving the others waiting.
                barrier.wait();
                let csrf = form
                    .csrf()
                    .unwrap_or_else(|| panic!("no login form: {form:?}"));
                b.post_form(
                    "/login",
                    &[
                        ("csrf", csrf.as_str()),
                        ("username", &format!("user{i}")),
                        ("password", "correct horse"),
                    ],
                )
            })
        })
        .collect();
    for c in clients {
        assert_redirects_to(&c.join().expect("client"), "/");
    }
    let stats = app.state().users.hasher().stats();
    eprintln!("hasher: {stats:?}");
    assert_eq!(stats.turned_away, 0);
}

/// Keeps every bcrypt worker of `app` busy with a slow check, from threads
/// of `scope`; returns once they all run.
fn occupy_workers<'s>(
    scope: &'s thread::Scope<'s, '_>,
    hasher: &'s gatehouse::users::password::Hasher,
) -> Vec<thread::ScopedJoinHandle<'s, ()>> {
    let hogs: Vec<_> = (0..hasher.workers())
        .map(|_| {
            scope.spawn(move || {
                let _ = hasher.verify("anything", SLOW_HASH);
            })
        })
        .collect();
    let started = Instant::now();
    while hasher.stats().running < hasher.workers() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "workers never busy"
        );
        thread::sleep(Duration::from_millis(5));
    }
    hogs
}

#[test]
fn a_sign_in_that_would_wait_too_long_gets_503_and_others_are_answered() {
    let app = TestApp::spawn_with(&[("login_queue_timeout", "50ms")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    let hasher = app.state().users.hasher();
    thread::scope(|scope| {
        let hogs = occupy_workers(scope, hasher);

        let page = b.login("alice", "correct horse");
        assert_eq!(page.status, 503, "{}", page.body);
        let secs: u64 = page
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!(secs >= 1);
        assert!(page.cookie("gatehouse_session").is_none(), "no session");

        let api = b.send_json(
            "POST",
            "/api/login",
            r#"{"username":"alice","password":"correct horse"}"#,
            &[],
        );
        assert_eq!(api.status, 503, "{}", api.body);
        assert!(api.header("retry-after").is_some());
        assert!(
            api.header("content-type")
                .is_some_and(|c| c.starts_with("application/json"))
        );
        let body: serde_json::Value = serde_json::from_str(&api.body).expect("JSON");
        assert!(body["error"].is_string(), "{body}");

        assert_eq!(b.get("/healthz").status, 200);
        assert_eq!(b.get("/login").status, 200);

        assert!(
            hogs.iter().all(|h| !h.is_finished()),
            "the workers finished before the checks ran: the test proves nothing"
        );
        let stats = hasher.stats();
        assert!(stats.turned_away >= 2, "{stats:?}");
    });
    // The storm over, the same sign-in goes through.
    assert_redirects_to(&b.login("alice", "correct horse"), "/");
}
