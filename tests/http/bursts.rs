//! Bursts and floods against the throttle and the bcrypt queue: many
//! attempts sent at the same instant (raw sockets held at their last byte
//! until all are ready), counted by what the server actually evaluated
//! (the hasher's count of checks, the `wrong code` answers). At most the
//! configured number of failures may be evaluated however many arrive at
//! once, the right password is refused while locked, and a flood of bad
//! sign-ins from many addresses does not keep a user out.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::factors::{code_at, enrol, unix_now};
use crate::helpers::{Browser, TestApp, backend, backend_settings};

/// A well-formed bcrypt hash at cost 13 (about two seconds a check in a
/// debug build): checking any password against it keeps a worker busy.
const SLOW_HASH: &str = "$2b$13$ZdLXMbHHzFk.z5Cb3zUT4.qf8ShLbInHEyhW6q1nM1alxJKi08Yti";

/// One answer to a raw request: status and body (`None`: no answer, the
/// connection was refused or closed).
type Answer = Option<(u16, String)>;

/// Sends every request on a connection of its own, all at the same
/// instant: each is written up to its last byte, and the last bytes go
/// once every connection is ready. Returns the answers in order.
fn at_once(base: &str, requests: Vec<String>) -> Vec<Answer> {
    let addr = base.trim_start_matches("http://").to_owned();
    let barrier = Arc::new(Barrier::new(requests.len()));
    let clients: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let (addr, barrier) = (addr.clone(), Arc::clone(&barrier));
            thread::spawn(move || send_after(&addr, &request, &barrier))
        })
        .collect();
    clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect()
}

/// Writes `request` but its last byte, waits at `barrier`, sends the last
/// byte and reads the answer. Always reaches the barrier, so one failed
/// connection does not leave the others waiting.
fn send_after(addr: &str, request: &str, barrier: &Barrier) -> Answer {
    let (head, last) = request.as_bytes().split_at(request.len() - 1);
    let mut conn = TcpStream::connect(addr).ok();
    if let Some(c) = conn.as_mut()
        && c.write_all(head).is_err()
    {
        conn = None;
    }
    barrier.wait();
    let mut conn = conn?;
    conn.set_read_timeout(Some(Duration::from_secs(300))).ok()?;
    conn.write_all(last).ok()?;
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    parse(&out)
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_owned()))
}

/// A raw `POST` of `body` as `content_type`, with `extra` header lines.
fn post(path: &str, content_type: &str, body: &str, extra: &[(&str, &str)]) -> String {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: gatehouse.test\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    format!("{head}\r\n{body}")
}

/// `POST /api/login`, from `from` (believed when 127.0.0.1 is a trusted
/// proxy) when given.
fn api_login(username: &str, password: &str, from: Option<&str>) -> String {
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    let forwarded: Vec<(&str, &str)> = from.map(|ip| ("X-Forwarded-For", ip)).into_iter().collect();
    post("/api/login", "application/json", &body, &forwarded)
}

fn count(answers: &[Answer], status: u16) -> usize {
    answers
        .iter()
        .filter(|a| a.as_ref().is_some_and(|(s, _)| *s == status))
        .count()
}

fn statuses(answers: &[Answer]) -> std::collections::BTreeMap<u16, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for (s, _) in answers.iter().flatten() {
        *seen.entry(*s).or_default() += 1;
    }
    seen
}

/// Password checks the server ran (real and dummy).
fn verified(app: &TestApp) -> u64 {
    app.state().users.hasher().stats().verified
}

/// The reported burst, on a name and on an address: 300 wrong passwords
/// at once evaluated 200 of them. At most `login_max_failures` may be.
#[test]
fn a_burst_of_wrong_passwords_is_evaluated_at_most_max_failures_times() {
    let app = TestApp::spawn_with(&[("trusted_proxies", "127.0.0.1")]);
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "battery staple", false);

    // On one name, from 300 addresses (only the name's limit binds).
    let before = verified(&app);
    let burst: Vec<String> = (0..300)
        .map(|i| {
            let from = format!("10.1.{}.{}", i / 250, i % 250 + 1);
            api_login("alice", &format!("guess {i}"), Some(&from))
        })
        .collect();
    let answers = at_once(&app.base, burst);
    let checks = verified(&app) - before;
    eprintln!("by name: {:?}, {checks} checks", statuses(&answers));
    assert_eq!(count(&answers, 200), 0);
    assert!(checks <= 5, "{checks} passwords evaluated in the burst");
    assert!(count(&answers, 401) <= 5);
    let mut after = app.browser();
    after
        .headers
        .push(("X-Forwarded-For".into(), "10.9.9.9".into()));
    assert_eq!(
        after.login("alice", "correct horse").status,
        429,
        "not locked"
    );

    // From one address, on 300 names (only the address's limit binds).
    let before = verified(&app);
    let burst: Vec<String> = (0..300)
        .map(|i| api_login(&format!("guess{i}"), "Summer2026!", Some("192.0.2.7")))
        .collect();
    let answers = at_once(&app.base, burst);
    let checks = verified(&app) - before;
    eprintln!("by address: {:?}, {checks} checks", statuses(&answers));
    assert!(checks <= 5, "{checks} passwords evaluated in the burst");
    assert!(count(&answers, 401) <= 5);
    let mut from_there = app.browser();
    from_there
        .headers
        .push(("X-Forwarded-For".into(), "192.0.2.7".into()));
    assert_eq!(from_there.login("bob", "battery staple").status, 429);
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
            started.elapsed() < Duration::from_secs(60),
            "workers never busy"
        );
        thread::sleep(Duration::from_millis(5));
    }
    hogs
}

fn until_waiting(app: &TestApp, n: usize) {
    let started = Instant::now();
    while app.state().users.hasher().stats().waiting < n {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {:?} waiting",
            app.state().users.hasher().stats()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The right password, in the same burst behind 200 wrong ones, signed
/// in: every attempt passed the throttle on arrival, and the failures
/// were recorded only after bcrypt. The workers are held busy while the
/// burst arrives, so the order in which the server takes the attempts is
/// known: the wrong ones first, the right one last.
#[test]
fn the_right_password_behind_a_burst_of_wrong_ones_is_refused() {
    let app = TestApp::spawn_with(&[("login_queue_timeout", "300s")]);
    app.add_user("alice", "correct horse", false);
    let hasher = app.state().users.hasher();
    let before = verified(&app);
    let (answers, right) = thread::scope(|scope| {
        let hogs = occupy_workers(scope, hasher);
        let base = app.base.clone();
        let wrong: Vec<String> = (0..200)
            .map(|i| api_login("alice", &format!("guess {i}"), None))
            .collect();
        let burst = scope.spawn(move || at_once(&base, wrong));
        until_waiting(&app, 200);
        let base = app.base.clone();
        let right =
            scope.spawn(move || at_once(&base, vec![api_login("alice", "correct horse", None)]));
        until_waiting(&app, 201);
        assert!(
            hogs.iter().all(|h| !h.is_finished()),
            "the workers finished before the burst was queued: the test proves nothing"
        );
        (
            burst.join().expect("burst"),
            right.join().expect("right").remove(0),
        )
    });
    // The two slow checks of the hogs are not the burst's.
    let checks = verified(&app) - before - hasher.workers() as u64;
    eprintln!(
        "{:?}, {checks} checks; right: {right:?}",
        statuses(&answers)
    );
    let (status, body) = right.expect("the right password was answered");
    assert_eq!(status, 429, "the right password got through: {body}");
    assert!(checks <= 5, "{checks} passwords evaluated");
    assert_eq!(count(&answers, 401), 5, "the first five were checked");
    assert_eq!(count(&answers, 429), 195, "the rest found the lock");
}

/// The account page's current-password check goes through the same
/// reservation: a stolen session cannot race it either.
#[test]
fn a_burst_on_the_current_password_is_evaluated_at_most_max_failures_times() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let csrf = b.get("/account").csrf().expect("csrf");
    let cookie = format!(
        "gatehouse_session={}",
        b.cookie("gatehouse_session").expect("session")
    );
    let before = verified(&app);
    let burst: Vec<String> = (0..100)
        .map(|i| {
            let body = format!(
                "csrf={csrf}&current=guess{i}&password=new+password+1&password2=new+password+1"
            );
            post(
                "/account/password",
                "application/x-www-form-urlencoded",
                &body,
                &[("Cookie", &cookie)],
            )
        })
        .collect();
    let answers = at_once(&app.base, burst);
    let checks = verified(&app) - before;
    eprintln!("{:?}, {checks} checks", statuses(&answers));
    assert!(checks <= 5, "{checks} passwords evaluated");
    assert!(
        count(&answers, 403) <= 5,
        "wrong current passwords answered"
    );
    assert_eq!(count(&answers, 303), 0);
}

/// How many threads flood at once: well beyond the queue's places.
const FLOODERS: usize = 128;

/// The reported flood: random names from 127.0.0.2-254, the queue full
/// all the time, and alice (127.0.0.1, right password) refused with `503`
/// on every try: refusals were never counted, and the queue served
/// whoever came first. Now refusals count against their address, and a
/// clean address is served before addresses with failures.
#[test]
fn a_sign_in_gets_through_a_flood_of_bad_ones_from_many_addresses() {
    let app = TestApp::spawn_with(&[
        ("trusted_proxies", "127.0.0.1"),
        // Slow enough (a debug build) that the flood fills the queue.
        ("bcrypt_cost", "8"),
        ("login_queue_timeout", "5s"),
    ]);
    app.add_user("alice", "correct horse", false);
    let flooding = Arc::new(AtomicBool::new(true));
    let flood: Vec<_> = (0..FLOODERS)
        .map(|t| {
            let (base, flooding) = (app.base.clone(), Arc::clone(&flooding));
            thread::spawn(move || {
                let b = Browser::new(&base);
                let mut seen = Vec::new();
                let started = Instant::now();
                let mut k = 0usize;
                while flooding.load(Ordering::SeqCst)
                    && started.elapsed() < Duration::from_secs(120)
                {
                    let ip = format!("127.0.0.{}", 2 + (k * FLOODERS + t) % 253);
                    let body = serde_json::json!({
                        "username": format!("flood{t}x{k}"),
                        "password": "Summer2026!",
                    })
                    .to_string();
                    let r = b.send_json("POST", "/api/login", &body, &[("X-Forwarded-For", &ip)]);
                    seen.push(r.status);
                    k += 1;
                }
                seen
            })
        })
        .collect();
    // The flood holds the queue once it has been turned away about twice
    // per address: its first wave, in which every address is as clean as
    // alice's and she is one source among 254, is over.
    let hasher = app.state().users.hasher();
    let started = Instant::now();
    while hasher.stats().turned_away < 2 * 253 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the flood never filled the queue: {:?}",
            hasher.stats()
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Alice, from 127.0.0.1 with the right password: through within a
    // few tries, so not locked out by refusals of her own either.
    let alice = Browser::new(&app.base);
    let body = r#"{"username":"alice","password":"correct horse"}"#;
    let mut tries = Vec::new();
    for _ in 0..3 {
        let r = alice.send_json("POST", "/api/login", body, &[]);
        tries.push(r.status);
        if r.status == 200 {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    let flood_still_on = flood.iter().any(|t| !t.is_finished());
    flooding.store(false, Ordering::SeqCst);
    let seen: Vec<u16> = flood
        .into_iter()
        .flat_map(|t| t.join().expect("flooder"))
        .collect();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for s in &seen {
        *by_status.entry(*s).or_default() += 1;
    }
    eprintln!(
        "alice: {tries:?}; flood: {by_status:?}; {:?}",
        hasher.stats()
    );
    assert!(flood_still_on, "the flood ended before alice tried");
    assert_eq!(
        tries.last(),
        Some(&200),
        "alice never got through: {tries:?}"
    );
}

/// A flood of wrong names from many addresses, each under its own limit,
/// that fills the throttle's records and locks the overflow record that
/// stands for everyone without one, does not lock out the users who exist:
/// their names keep records of their own, and their sign-ins are judged by
/// those (a hostile pass locked alice and bob out with 12,500 wrong names
/// from 2,500 addresses, when the overflow stood for them too).
#[test]
fn a_flood_that_fills_the_throttles_records_locks_out_no_user() {
    // The bound and its overflow record are the memory store's (SQLite
    // deployments); the shared stores keep every record.
    if !crate::helpers::on_sqlite("a_flood_that_fills_the_throttles_records_locks_out_no_user") {
        return;
    }
    let app = TestApp::spawn_with(&[
        ("trusted_proxies", "127.0.0.1"),
        ("bcrypt_cost", "4"),
        ("login_throttle_records", "40"),
    ]);
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "battery staple", false);
    let b = Browser::new(&app.base);
    let login = |name: &str, password: &str, from: &str| {
        let body = serde_json::json!({ "username": name, "password": password }).to_string();
        b.send_json("POST", "/api/login", &body, &[("X-Forwarded-For", from)])
            .status
    };
    // Four wrong names from each of 60 addresses: no address or name
    // reaches its own limit, but the records fill, and the failures past
    // them lock the overflow record.
    let mut refused = 0;
    for a in 0..60 {
        for k in 0..4 {
            let status = login(
                &format!("nobody{a}x{k}"),
                "Summer2026!",
                &format!("10.9.{a}.1"),
            );
            assert!(status == 401 || status == 429, "{status}");
            refused += usize::from(status == 429);
        }
    }
    assert!(refused > 0, "the flood never locked the overflow record");
    assert_eq!(
        login("nobody-else", "Summer2026!", "10.9.200.1"),
        429,
        "a new wrong name waits with the flood"
    );
    // The users who exist, from addresses that never failed, sign in.
    assert_eq!(login("alice", "correct horse", "10.9.201.1"), 200);
    assert_eq!(login("bob", "battery staple", "10.9.202.1"), 200);
    // And a guesser of bob's password is still limited by his own record:
    // five wrong ones from five fresh addresses lock his name.
    for i in 0..5 {
        assert_eq!(login("bob", "wrong", &format!("10.9.210.{i}")), 401);
    }
    assert_eq!(login("bob", "battery staple", "10.9.211.1"), 429);
}

/// Attempts refused by a full queue count against their address: five of
/// them lock it, as five wrong passwords would (a flood of refusals was
/// free, and went on for ever).
#[test]
fn attempts_refused_by_a_full_queue_count_against_their_address() {
    let app = TestApp::spawn_with(&[
        ("trusted_proxies", "127.0.0.1"),
        ("login_queue_timeout", "50ms"),
    ]);
    app.add_user("alice", "correct horse", false);
    let mut from = Browser::new(&app.base);
    from.headers
        .push(("X-Forwarded-For".into(), "198.51.100.9".into()));
    let hasher = app.state().users.hasher();
    thread::scope(|scope| {
        let hogs = occupy_workers(scope, hasher);
        for i in 0..5 {
            let r = from.send_json(
                "POST",
                "/api/login",
                &format!(r#"{{"username":"guess{i}","password":"x"}}"#),
                &[],
            );
            assert_eq!(r.status, 503, "{}", r.body);
        }
        assert!(
            hogs.iter().all(|h| !h.is_finished()),
            "the workers finished early: the test proves nothing"
        );
    });
    // The workers are free again; the address is locked all the same.
    let r = from.send_json(
        "POST",
        "/api/login",
        r#"{"username":"alice","password":"correct horse"}"#,
        &[],
    );
    assert_eq!(r.status, 429, "{}", r.body);
    // Not the names: alice signs in from elsewhere.
    assert_eq!(app.browser().login("alice", "correct horse").status, 303);
}

/// Instances `a` and `b` on the suite's shared backend, with the same
/// secrets (on SQLite, where one file serves one instance: `a` alone).
fn instances(settings: &[(&str, &str)]) -> (TestApp, Option<TestApp>) {
    const SECRET: &str = "one-secret-for-both-instances-32-bytes-or-more";
    let mut own: Vec<(&str, &str)> = vec![("secrets", SECRET)];
    own.extend_from_slice(settings);
    let a = TestApp::spawn_with(&own);
    if backend() == "sqlite" {
        return (a, None);
    }
    let mut shared = backend_settings(a.dir.path());
    shared.extend(own.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let b = TestApp::spawn_in(tempfile::tempdir().expect("temp dir"), shared);
    (a, Some(b))
}

/// alice with an authenticator, signed out; her seed.
fn alice_with_a_code(app: &TestApp) -> Vec<u8> {
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let (seed, _) = enrol(&b);
    b.logout();
    seed
}

/// `n` sign-ins of alice waiting for their second step, made through the
/// API on the instances in turn: their session cookies.
fn pending(apps: &[&TestApp], n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let b = Browser::new(&apps[i % apps.len()].base);
            let r = b.send_json(
                "POST",
                "/api/login",
                r#"{"username":"alice","password":"correct horse"}"#,
                &[],
            );
            assert_eq!(r.status, 202, "{}", r.body);
            format!(
                "gatehouse_session={}",
                b.cookie("gatehouse_session").expect("session")
            )
        })
        .collect()
}

/// `POST /api/login/second` with a wrong code (a TOTP code of an hour
/// ahead, or a made-up recovery code) for the sign-in behind `cookie`.
fn wrong_second(seed: &[u8], i: usize, cookie: &str) -> String {
    let body = if i.is_multiple_of(2) {
        let t = unix_now();
        let now = [t - 30, t, t + 30].map(|s| code_at(seed, s));
        let mut ahead = t + 3600;
        while now.contains(&code_at(seed, ahead)) {
            ahead += 30;
        }
        format!(r#"{{"code":"{}"}}"#, code_at(seed, ahead))
    } else {
        format!(r#"{{"recovery_code":"wrong-{i:04}"}}"#)
    };
    post(
        "/api/login/second",
        "application/json",
        &body,
        &[("Cookie", cookie)],
    )
}

fn evaluated(answer: &Answer) -> bool {
    answer
        .as_ref()
        .is_some_and(|(s, body)| *s == 401 && body.contains("wrong code"))
}

/// 300 wrong codes at once from 40 pending sign-ins, through two
/// instances: 50 to 228 of them were checked. At most
/// `login_max_failures` may be, and the right code is then refused.
#[test]
fn a_burst_of_wrong_codes_through_two_instances_is_evaluated_at_most_max_failures_times() {
    let (a, b) = instances(&[]);
    let seed = alice_with_a_code(&a);
    let apps: Vec<&TestApp> = [Some(&a), b.as_ref()].into_iter().flatten().collect();
    let cookies = pending(&apps, 40);
    let burst: Vec<(usize, String)> = (0..300)
        .map(|i| (i % apps.len(), wrong_second(&seed, i, &cookies[i % 40])))
        .collect();
    let answers = burst_on(&apps, burst);
    let checked = answers.iter().filter(|a| evaluated(a)).count();
    eprintln!("{:?}, {checked} codes checked", statuses(&answers));
    assert!(checked <= 5, "{checked} codes evaluated");
    // Locked now: the right code is refused.
    let right = format!(r#"{{"code":"{}"}}"#, code_at(&seed, unix_now()));
    let b2 = Browser::new(&apps[apps.len() - 1].base);
    let r = b2.send_json(
        "POST",
        "/api/login/second",
        &right,
        &[("Cookie", &cookies[39])],
    );
    assert_eq!(r.status, 429, "{}", r.body);
}

/// The per-pending cap of 5 was exceeded (228 checks from 40 pending
/// sign-ins). With the name's and the address's limits out of the way,
/// each pending sign-in still gets at most 5 checks, however many of its
/// codes arrive at once and through whichever instance.
#[test]
fn a_pending_sign_in_gets_at_most_five_checks_whatever_arrives_at_once() {
    let (a, b) = instances(&[("login_max_failures", "100000")]);
    let seed = alice_with_a_code(&a);
    let apps: Vec<&TestApp> = [Some(&a), b.as_ref()].into_iter().flatten().collect();
    let cookies = pending(&apps, 10);
    let burst: Vec<(usize, String)> = (0..300)
        .map(|i| (i % apps.len(), wrong_second(&seed, i, &cookies[i % 10])))
        .collect();
    let answers = burst_on(&apps, burst);
    let mut per_pending = [0usize; 10];
    for (i, answer) in answers.iter().enumerate() {
        if evaluated(answer) {
            per_pending[i % 10] += 1;
        }
    }
    eprintln!(
        "{:?}; checks per pending sign-in {per_pending:?}",
        statuses(&answers)
    );
    assert!(
        per_pending.iter().all(|n| *n <= 5),
        "a pending sign-in got more than 5 checks: {per_pending:?}"
    );
    // A pending sign-in whose five are spent is over, right code or not.
    let spent = per_pending.iter().position(|n| *n == 5);
    if let Some(i) = spent {
        let right = format!(r#"{{"code":"{}"}}"#, code_at(&seed, unix_now()));
        let r = Browser::new(&a.base).send_json(
            "POST",
            "/api/login/second",
            &right,
            &[("Cookie", &cookies[i])],
        );
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.body.contains("no sign-in is waiting"), "{}", r.body);
    }
}

/// Sends `(instance, request)` pairs all at once; the answers in order.
fn burst_on(apps: &[&TestApp], burst: Vec<(usize, String)>) -> Vec<Answer> {
    let barrier = Arc::new(Barrier::new(burst.len()));
    let clients: Vec<_> = burst
        .into_iter()
        .map(|(app, request)| {
            let addr = apps[app].base.trim_start_matches("http://").to_owned();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || send_after(&addr, &request, &barrier))
        })
        .collect();
    clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect()
}

/// Users hashed at one cost and a server restarted at another: a sign-in
/// rehashes the password at the server's cost (and the dummy hash for
/// unknown names follows the stored hashes until most are rehashed).
#[test]
fn a_sign_in_after_a_cost_change_rehashes_the_password() {
    let mut app = TestApp::spawn_with(&[("bcrypt_cost", "5")]);
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "battery staple", false);
    app.settings.push(("bcrypt_cost".into(), "4".into()));
    let app = app.restart();
    let cost_of = |name: &str| {
        let (_, hash) = app
            .state()
            .users
            .export()
            .expect("export")
            .into_iter()
            .find(|(u, _)| u.username == name)
            .expect("stored");
        gatehouse::users::password::cost_of(&hash)
    };
    assert_eq!(cost_of("alice"), Some(5));
    assert_eq!(
        app.state().users.hasher().dummy_cost(),
        5,
        "unknown names must cost what the stored hashes cost"
    );
    let b = app.browser();
    assert_eq!(b.login("alice", "wrong password").status, 401);
    assert_eq!(
        cost_of("alice"),
        Some(5),
        "a wrong password rehashes nothing"
    );
    assert_eq!(b.login("alice", "correct horse").status, 303);
    assert_eq!(cost_of("alice"), Some(4), "the sign-in did not rehash");
    assert_eq!(cost_of("bob"), Some(5));
    // Still her password, at the new cost.
    assert_eq!(app.browser().login("alice", "correct horse").status, 303);
}
