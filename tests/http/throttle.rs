//! Login throttling and the bcrypt bound, attacked over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::helpers::{Browser, TestApp, assert_redirects_to};

fn retry_after(resp: &crate::helpers::Resp) -> u64 {
    resp.header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds")
}

#[test]
fn five_failures_lock_the_username_even_for_the_right_password() {
    let app = TestApp::spawn_with(&[("trusted_proxies", "127.0.0.1")]);
    app.add_user("alice", "correct horse", false);
    for i in 0..5 {
        // A different (trusted) client IP each time: this is the per-user lock.
        let mut b = Browser::new(&app.base);
        b.headers
            .push(("X-Forwarded-For".into(), format!("198.51.100.{i}")));
        assert_eq!(b.login("alice", "wrong password").status, 401);
    }
    let mut b = Browser::new(&app.base);
    b.headers
        .push(("X-Forwarded-For".into(), "198.51.100.99".into()));
    let resp = b.login("alice", "correct horse");
    assert_eq!(resp.status, 429);
    assert!((1..=60).contains(&retry_after(&resp)));
    assert!(resp.cookie("gatehouse_session").is_none());
    // Another user from that IP is not affected.
    app.add_user("bob", "correct horse", false);
    assert_redirects_to(&b.login("bob", "correct horse"), "/");
}

#[test]
fn five_failures_lock_the_client_ip_across_usernames() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    for i in 0..5 {
        assert_eq!(b.login(&format!("guess{i}"), "wrong password").status, 401);
    }
    assert_eq!(b.login("alice", "correct horse").status, 429);
}

#[test]
fn a_forged_forwarded_for_does_not_escape_the_ip_lock() {
    let app = TestApp::spawn(); // no trusted proxies
    for i in 0..5 {
        let mut b = Browser::new(&app.base);
        b.headers
            .push(("X-Forwarded-For".into(), format!("203.0.113.{i}")));
        assert_eq!(b.login(&format!("guess{i}"), "wrong password").status, 401);
    }
    let mut b = Browser::new(&app.base);
    b.headers
        .push(("X-Forwarded-For".into(), "203.0.113.200".into()));
    assert_eq!(
        b.login("someone", "wrong password").status,
        429,
        "the forged header was believed"
    );
}

#[test]
fn a_success_clears_the_usernames_count() {
    let app = TestApp::spawn_with(&[("trusted_proxies", "127.0.0.1")]);
    app.add_user("alice", "correct horse", false);
    let from = |ip: &str| {
        let mut b = Browser::new(&app.base);
        b.headers.push(("X-Forwarded-For".into(), ip.to_owned()));
        b
    };
    for i in 0..4 {
        assert_eq!(
            from(&format!("192.0.2.{i}"))
                .login("alice", "wrong password")
                .status,
            401
        );
    }
    assert_redirects_to(&from("192.0.2.50").login("alice", "correct horse"), "/");
    for i in 0..4 {
        let s = from(&format!("192.0.2.{}", 60 + i))
            .login("alice", "wrong password")
            .status;
        assert_eq!(s, 401, "attempt {i} after a success");
    }
}

#[test]
fn the_limits_are_settings() {
    let app = TestApp::spawn_with(&[
        ("login_max_failures", "2"),
        ("login_lockout", "1s"),
        ("login_max_lockout", "1s"),
    ]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    assert_eq!(b.login("alice", "nope nope").status, 401);
    assert_eq!(b.login("alice", "nope nope").status, 401);
    let locked = b.login("alice", "correct horse");
    assert_eq!(locked.status, 429);
    assert_eq!(retry_after(&locked), 1);
    thread::sleep(Duration::from_millis(1100));
    assert_redirects_to(&b.login("alice", "correct horse"), "/");
}

/// A login storm must not starve other requests: bcrypt runs on a bounded
/// number of threads, and the logins waiting for it hold only the threads
/// added for them.
/// Checked by order, not by timing: every ordinary request must be answered
/// while the storm is still going.
#[test]
fn a_login_storm_does_not_starve_other_requests() {
    let app = TestApp::spawn_with(&[
        ("bcrypt_cost", "10"),
        ("threads", "16"),
        ("login_max_failures", "1000000"),
    ]);
    app.add_user("alice", "correct horse", false);
    let signed_in = app.browser();
    signed_in.login("alice", "correct horse");

    let storming = Arc::new(AtomicBool::new(true));
    let stormers: Vec<_> = (0..64)
        .map(|i| {
            let base = app.base.clone();
            let storming = Arc::clone(&storming);
            thread::spawn(move || {
                let b = Browser::new(&base);
                let mut statuses = Vec::new();
                // The storm lasts until the ordinary requests are done, or
                // 30 s at most: if they were starved, it ends first.
                let started = Instant::now();
                while storming.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30)
                {
                    statuses.push(b.login(&format!("user{i}"), "wrong password").status);
                }
                statuses
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));

    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(signed_in.get("/healthz").status, 200);
        assert_eq!(signed_in.get("/auth/verify").status, 200);
        slowest = slowest.max(t.elapsed());
    }
    let storm_still_on = stormers.iter().any(|t| !t.is_finished());
    storming.store(false, Ordering::SeqCst);
    let statuses: Vec<u16> = stormers
        .into_iter()
        .flat_map(|t| t.join().expect("stormer"))
        .collect();
    eprintln!(
        "storm: {} logins; slowest ordinary request pair {slowest:?}",
        statuses.len()
    );
    let hasher = app.state().users.hasher();
    let stats = hasher.stats();
    eprintln!("hasher: {stats:?}");
    assert!(
        storm_still_on,
        "the storm ended before the ordinary requests were answered"
    );
    assert!(
        stats.peak_running <= hasher.workers(),
        "more bcrypt runs at once than workers"
    );
    assert!(
        stats.peak_waiting <= hasher.max_waiting(),
        "the queue grew past its bound"
    );
    assert!(
        stats.peak_waiting <= gatehouse::users::password::MAX_WAITING,
        "the queue grew past its cap"
    );
    assert!(
        statuses.iter().all(|s| [401, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&401), "no login reached bcrypt");
}

/// A JSON sign-in from `ip` (believed: 127.0.0.1 is a trusted proxy).
fn api_login(app: &TestApp, ip: &str, username: &str, password: &str) -> u16 {
    let b = Browser::new(&app.base);
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    b.send_json("POST", "/api/login", &body, &[("X-Forwarded-For", ip)])
        .status
}

/// The reported wash-out, against a small capacity: 4 failures on alice,
/// then a flood of unique usernames (4 per address, under the IP limit)
/// from loopback addresses; the flood once evicted alice's record, so her
/// next attempts were counted from zero.
#[test]
fn a_flood_of_unique_usernames_does_not_wash_out_a_lockout() {
    let app = TestApp::spawn_with(&[
        ("trusted_proxies", "127.0.0.1"),
        ("login_throttle_records", "64"),
    ]);
    app.add_user("alice", "correct horse", false);
    app.add_user("carol", "battery staple", false);
    // P: an address with a record of its own, nowhere near its limit.
    let p = "127.1.0.1";
    assert_eq!(api_login(&app, p, "carol", "wrong"), 401);
    for _ in 0..4 {
        assert_eq!(api_login(&app, "127.1.0.2", "alice", "wrong"), 401);
    }
    for i in 0..256 {
        let ip = format!("127.2.{}.{}", i / 4 / 250, i / 4 % 250 + 1);
        let status = api_login(&app, &ip, &format!("spray{i}"), "Summer2026!");
        assert!(status == 401 || status == 429, "{status}");
    }
    // Alice's fifth failure locks her...
    assert_eq!(api_login(&app, p, "alice", "wrong"), 401);
    assert_eq!(
        api_login(&app, p, "alice", "correct horse"),
        429,
        "alice's earlier failures were washed out"
    );
    // ...and it is her lock, not P's: carol signs in from P.
    assert_eq!(api_login(&app, p, "carol", "battery staple"), 200);
}

/// One host holds a whole /64: its addresses share one count.
#[test]
fn ipv6_clients_are_counted_per_64() {
    let app = TestApp::spawn_with(&[("trusted_proxies", "127.0.0.1")]);
    app.add_user("alice", "correct horse", false);
    for i in 1..=5 {
        let ip = format!("2001:db8:0:7::{i:x}");
        assert_eq!(api_login(&app, &ip, &format!("guess{i}"), "wrong"), 401);
    }
    assert_eq!(
        api_login(&app, "2001:db8:0:7:ffff:1:2:3", "alice", "correct horse"),
        429,
        "a fresh address in the same /64 started from zero"
    );
    assert_eq!(
        api_login(&app, "2001:db8:0:8::1", "alice", "correct horse"),
        200,
        "another /64 is not affected"
    );
}
