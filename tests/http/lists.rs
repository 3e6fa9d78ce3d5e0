//! Lists that a client could otherwise grow without bound: sessions per
//! user are capped (`max_sessions_per_user`), and the account and admin
//! lists are paged.

use crate::helpers::{Browser, TestApp};

fn sessions_of(app: &TestApp, name: &str) -> usize {
    let id = app
        .state()
        .users
        .find_by_name(name)
        .expect("lookup")
        .expect("user")
        .id;
    app.state()
        .engine()
        .store()
        .list(Some(id), gatehouse::clock::now())
        .expect("list")
        .len()
}

#[test]
fn the_oldest_session_ends_when_a_new_one_starts() {
    let app = TestApp::spawn_with(&[("max_sessions_per_user", "3")]);
    app.add_user("alice", "alices password", false);
    app.add_user("bob", "bobs password", false);
    let bob = app.browser();
    assert_eq!(bob.login("bob", "bobs password").status, 303);
    let browsers: Vec<Browser> = (0..3).map(|_| app.browser()).collect();
    for b in &browsers {
        assert_eq!(b.login("alice", "alices password").status, 303);
    }
    assert_eq!(sessions_of(&app, "alice"), 3);
    // A fourth, through the JSON API: the first browser is signed out.
    let api = app.browser();
    let resp = api.send_json(
        "POST",
        "/api/login",
        "{\"username\": \"alice\", \"password\": \"alices password\"}",
        &[],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(sessions_of(&app, "alice"), 3);
    assert_eq!(
        browsers[0].get("/auth/verify").status,
        401,
        "the oldest stays"
    );
    for b in &browsers[1..] {
        assert_eq!(b.get("/auth/verify").status, 200);
    }
    assert_eq!(api.get("/auth/verify").status, 200);
    // Another user's sessions are not touched.
    assert_eq!(bob.get("/auth/verify").status, 200);
    assert_eq!(sessions_of(&app, "bob"), 1);
}

#[test]
fn four_clients_signing_in_over_and_over_stay_at_or_under_the_cap() {
    const CAP: usize = 5;
    let app = TestApp::spawn_with(&[("max_sessions_per_user", "5")]);
    app.add_user("alice", "alices password", false);
    let first = app.browser();
    assert_eq!(first.login("alice", "alices password").status, 303);
    let most = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut most = 0;
                    for _ in 0..15 {
                        let b = app.browser();
                        assert_eq!(b.login("alice", "alices password").status, 303);
                        most = most.max(sessions_of(&app, "alice"));
                    }
                    most
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().expect("client"))
            .max()
            .unwrap_or(0)
    });
    // Each sign-in trims after storing its own session, so at most the
    // sign-ins in flight (4) can pass the cap for a moment.
    assert!(
        most <= CAP + 4,
        "{most} sessions at once for a cap of {CAP}"
    );
    let left = sessions_of(&app, "alice");
    assert!(
        (1..=CAP).contains(&left),
        "{left} sessions left for a cap of {CAP}"
    );
    assert_eq!(first.get("/auth/verify").status, 401, "the oldest survived");
    // A sign-in after the storm is kept, and the count is the cap again.
    let last = app.browser();
    assert_eq!(last.login("alice", "alices password").status, 303);
    assert_eq!(last.get("/auth/verify").status, 200);
    assert!(sessions_of(&app, "alice") <= CAP);
}
