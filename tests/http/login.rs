//! Signing in and out, and the pages around it.

use crate::helpers::{Browser, TestApp, assert_redirects_to};

#[test]
fn an_anonymous_visitor_is_sent_to_the_login_page() {
    let app = TestApp::spawn();
    let resp = app.browser().get("/");
    assert_redirects_to(&resp, "/login?next=/");
    assert!(
        resp.cookie("gatehouse_session").is_none(),
        "no session for anonymous visitors"
    );
}

#[test]
fn the_login_page_has_the_form_and_creates_no_session() {
    let app = TestApp::spawn();
    let resp = app.browser().get("/login");
    assert_eq!(resp.status, 200);
    for id in ["login-form", "username", "password", "remember"] {
        assert!(resp.body.contains(&format!("id=\"{id}\"")), "missing #{id}");
    }
    assert!(resp.cookie("gatehouse_session").is_none());
    assert!(
        resp.cookie("gatehouse_csrf").is_some(),
        "anonymous forms use a CSRF cookie"
    );
    assert_eq!(app.session_rows(), 0);
}

#[test]
fn a_correct_login_sets_a_signed_session_cookie_with_exact_attributes() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    let resp = b.login("alice", "correct horse");
    assert_redirects_to(&resp, "/");
    let cookie = resp.cookie("gatehouse_session").expect("session cookie");
    let (value, attrs) = cookie.split_once("; ").expect("attributes");
    assert_eq!(
        attrs, "Path=/; HttpOnly; SameSite=Lax",
        "browser-session cookie over plain HTTP"
    );
    let value = value.trim_start_matches("gatehouse_session=");
    let (id, sig) = value.split_once('.').expect("id.signature");
    assert_eq!(id.len(), 43);
    assert_eq!(sig.len(), 43);
    assert_eq!(app.session_rows(), 1);
}

#[test]
fn login_follows_a_local_next_only() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    let resp = b.login_with("alice", "correct horse", &[("next", "/healthz?x=1")]);
    assert_redirects_to(&resp, "/healthz?x=1");
    let b = app.browser();
    let resp = b.login_with("alice", "correct horse", &[("next", "//evil.example/")]);
    assert_redirects_to(&resp, "/");
}

#[test]
fn a_signed_in_visitor_of_the_login_page_goes_straight_on() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    assert_redirects_to(&b.get("/login?next=/account"), "/account");
}

#[test]
fn failures_get_one_generic_message_and_401() {
    let app = TestApp::spawn();
    let alice = app.add_user("alice", "correct horse", false);
    app.add_user("dave", "correct horse", false);
    app.state()
        .users
        .set_disabled(
            app.state().users.get_by_name("dave").expect("dave").id,
            true,
        )
        .expect("disable");
    let wrong = app.browser().login("alice", "wrong password");
    let unknown = app.browser().login("nobody", "wrong password");
    let disabled = app.browser().login("dave", "correct horse");
    for resp in [&wrong, &unknown, &disabled] {
        assert_eq!(resp.status, 401);
        assert_eq!(
            resp.text_of("login-error").as_deref(),
            Some("Wrong username or password.")
        );
        assert!(resp.cookie("gatehouse_session").is_none());
    }
    assert_eq!(app.session_rows(), 0);
    assert!(!alice.disabled);
}

#[test]
fn the_dashboard_welcomes_the_user_and_counts_visits() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    for expected in 1..=3 {
        let resp = b.get("/");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text_of("welcome").as_deref(), Some("Welcome, alice"));
        assert_eq!(resp.text_of("visits"), Some(expected.to_string()));
        assert!(
            resp.cookie("gatehouse_session").is_none(),
            "the id is not reissued on every load"
        );
    }
}

#[test]
fn the_session_id_changes_at_login() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    let csrf = b.get("/login").csrf().expect("csrf");
    let fields = [
        ("csrf", csrf.as_str()),
        ("username", "alice"),
        ("password", "correct horse"),
    ];
    assert_redirects_to(&b.post_form("/login", &fields), "/");
    let first = b.cookie("gatehouse_session").expect("cookie");
    let old = b.clone_cookies();
    // Signing in again from a signed-in browser must still rotate the id.
    assert_redirects_to(&b.post_form("/login", &fields), "/");
    let second = b.cookie("gatehouse_session").expect("cookie");
    assert_ne!(first, second, "a login must issue a new id");
    assert_eq!(
        old.get("/auth/verify").status,
        401,
        "the pre-login id must stop working"
    );
    assert_eq!(b.get("/auth/verify").status, 200);
    assert_eq!(
        app.session_rows(),
        1,
        "the old row is gone, not left behind"
    );
}

#[test]
fn logout_needs_the_confirm_form_and_kills_the_old_cookie() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let thief = b.clone_cookies();
    let page = b.get("/logout");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"logout-form\""));
    assert_eq!(
        b.get("/auth/verify").status,
        200,
        "GET /logout alone signs nobody out"
    );

    let resp = b.logout();
    assert_redirects_to(&resp, "/login");
    let cleared = resp.cookie("gatehouse_session").expect("cleared cookie");
    assert!(cleared.starts_with("gatehouse_session=; "), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(
        resp.header("clear-site-data"),
        Some("\"cookies\", \"storage\"")
    );
    assert_eq!(app.session_rows(), 0, "the row is gone before the response");
    assert_eq!(
        thief.get("/auth/verify").status,
        401,
        "a replayed cookie is useless"
    );
    assert_redirects_to(&thief.get("/"), "/login?next=/");
}

#[test]
fn logout_without_a_session_goes_to_login() {
    let app = TestApp::spawn();
    assert_redirects_to(&app.browser().get("/logout"), "/login");
}

#[test]
fn verify_answers_200_with_the_user_or_401() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", true);
    app.add_user("bob", "correct horse", false);
    let b = app.browser();
    assert_eq!(b.get("/auth/verify").status, 401);
    b.login("alice", "correct horse");
    let resp = b.get("/auth/verify");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("remote-user"), Some("alice"));
    assert_eq!(resp.header("remote-groups"), Some("admins"));
    let bob = app.browser();
    bob.login("bob", "correct horse");
    assert_eq!(bob.get("/auth/verify").header("remote-groups"), Some(""));
}

#[test]
fn remember_me_makes_a_persistent_cookie() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let resp = app
        .browser()
        .login_with("alice", "correct horse", &[("remember", "1")]);
    let cookie = resp.cookie("gatehouse_session").expect("cookie");
    let max_age: i64 = cookie
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .expect("number");
    assert!(
        (30 * 86_400 - 5..=30 * 86_400).contains(&max_age),
        "{max_age}"
    );
    let stored = app.stored_sessions();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].persistent);
}

#[test]
fn the_cookie_is_secure_over_https_from_a_trusted_proxy_only() {
    let app = TestApp::spawn_with(&[("trusted_proxies", "127.0.0.1")]);
    app.add_user("alice", "correct horse", false);
    let mut b = Browser::new(&app.base);
    b.headers.push(("X-Forwarded-Proto".into(), "https".into()));
    let resp = b.login("alice", "correct horse");
    assert!(
        resp.cookie("gatehouse_session")
            .expect("cookie")
            .contains("; Secure")
    );

    let untrusting = TestApp::spawn();
    untrusting.add_user("alice", "correct horse", false);
    let mut b = Browser::new(&untrusting.base);
    b.headers.push(("X-Forwarded-Proto".into(), "https".into()));
    let resp = b.login("alice", "correct horse");
    assert!(
        !resp
            .cookie("gatehouse_session")
            .expect("cookie")
            .contains("Secure"),
        "forged header believed"
    );
}

#[test]
fn cookie_settings_apply() {
    let app = TestApp::spawn_with(&[
        ("cookie.name", "gh"),
        ("cookie.domain", "example.lan"),
        ("cookie.secure", "always"),
        ("cookie.same_site", "strict"),
    ]);
    app.add_user("alice", "correct horse", false);
    let resp = app.browser().login("alice", "correct horse");
    let cookie = resp.cookie("gh").expect("cookie under the configured name");
    let attrs = cookie.split_once("; ").expect("attrs").1;
    assert_eq!(
        attrs,
        "Path=/; Domain=example.lan; HttpOnly; Secure; SameSite=Strict"
    );
}

#[test]
fn healthz_answers_ok() {
    let app = TestApp::spawn();
    let resp = app.browser().get("/healthz");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "ok");
}

#[test]
fn the_stylesheet_is_served_from_the_binary() {
    let app = TestApp::spawn();
    let resp = app.browser().get("/assets/style.css");
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("text/css"))
    );
    assert!(resp.body.contains("prefers-color-scheme"));
    assert_eq!(app.browser().get("/assets/nope.css").status, 404);
}
