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

fn count(page: &crate::helpers::Resp, marker: &str) -> usize {
    page.body.matches(marker).count()
}

fn handles(page: &crate::helpers::Resp) -> Vec<String> {
    page.body
        .match_indices("<tr id=\"session-")
        .map(|(i, m)| {
            let rest = &page.body[i + m.len()..];
            rest[..rest.find('"').expect("end")].to_owned()
        })
        .collect()
}

fn sign_in_many(app: &TestApp, name: &str, password: &str, n: usize) {
    for _ in 0..n {
        let resp = app.browser().send_json(
            "POST",
            "/api/login",
            &format!("{{\"username\": \"{name}\", \"password\": \"{password}\"}}"),
            &[],
        );
        assert_eq!(resp.status, 200);
    }
}

#[test]
fn the_account_session_list_is_paged() {
    let app = TestApp::spawn_with(&[("max_sessions_per_user", "1000")]);
    app.add_user("alice", "alices password", false);
    sign_in_many(&app, "alice", "alices password", 119);
    let me = app.browser();
    me.login("alice", "alices password");
    assert_eq!(sessions_of(&app, "alice"), 120);

    let first = me.get("/account");
    assert_eq!(first.status, 200);
    assert_eq!(handles(&first).len(), 50);
    assert_eq!(
        first.text_of("sessions-page").as_deref(),
        Some("Page 1 of 3")
    );
    assert!(
        first
            .body
            .contains("id=\"sessions-next\" href=\"/account?page=2\"")
    );
    assert!(!first.body.contains("id=\"sessions-prev\""));
    assert!(
        first
            .text_of("end-others")
            .expect("end others")
            .contains("(119)"),
        "the count covers every page"
    );
    let second = me.get("/account?page=2");
    assert_eq!(handles(&second).len(), 50);
    let third = me.get("/account?page=3");
    assert_eq!(handles(&third).len(), 20);
    assert!(
        third
            .body
            .contains("id=\"sessions-prev\" href=\"/account?page=2\"")
    );
    assert!(!third.body.contains("id=\"sessions-next\""));
    let mut all: Vec<String> = [first, second, third].iter().flat_map(handles).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 120, "pages overlap or miss sessions");
    // Past the end shows the last page; nonsense is a clear 400.
    assert_eq!(handles(&me.get("/account?page=99")).len(), 20);
    for bad in ["0", "-1", "abc", "99999999999999999999999"] {
        assert_eq!(me.get(&format!("/account?page={bad}")).status, 400, "{bad}");
    }
    // One session: no pager at all.
    let app2 = TestApp::spawn();
    app2.add_user("bob", "bobs password", false);
    let bob = app2.browser();
    bob.login("bob", "bobs password");
    assert!(!bob.get("/account").body.contains("id=\"sessions-pager\""));
}

#[test]
fn the_admin_user_and_session_lists_are_paged() {
    let app = TestApp::spawn_with(&[("max_sessions_per_user", "1000")]);
    app.add_user("root", "correct horse", true);
    for i in 0..59 {
        app.add_user(&format!("user{i:02}"), "a long password", false);
    }
    sign_in_many(&app, "user00", "a long password", 100);
    let admin = app.browser();
    admin.login("root", "correct horse");

    let first = admin.get("/admin/users");
    assert_eq!(first.status, 200);
    assert_eq!(count(&first, "<tr id=\"user-"), 50);
    assert_eq!(first.text_of("users-page").as_deref(), Some("Page 1 of 2"));
    assert!(
        first
            .body
            .contains("id=\"users-next\" href=\"/admin/users?page=2\"")
    );
    let sessions = admin.get("/admin/sessions");
    assert_eq!(handles(&sessions).len(), 50);
    assert_eq!(
        sessions.text_of("sessions-page").as_deref(),
        Some("Page 1 of 3")
    );

    let users2 = admin.get("/admin/users?page=2");
    assert_eq!(count(&users2, "<tr id=\"user-"), 10);
    assert!(
        users2
            .body
            .contains("id=\"users-prev\" href=\"/admin/users?page=1\"")
    );
    assert_eq!(
        handles(&admin.get("/admin/sessions?page=3")).len(),
        1,
        "101 sessions: one on the third page"
    );
    // The session count of a user on page 1 covers all their sessions.
    let row_at = first
        .body
        .find("<tr id=\"user-user00\"")
        .expect("user00 on page 1");
    assert!(
        first.body[row_at..]
            .split("</tr>")
            .next()
            .unwrap_or("")
            .contains("<td class=\"number\">100</td>")
    );
    assert_eq!(admin.get("/admin/users?page=x").status, 400);
    assert_eq!(admin.get("/admin/sessions?page=0").status, 400);
}
