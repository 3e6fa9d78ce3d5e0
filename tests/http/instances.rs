//! Two gatehouse instances on one shared backend (PostgreSQL, or PostgreSQL
//! and Redis), as behind a load balancer: one login, and every revocation
//! on one takes effect on the other at once. Secrets are shared through
//! config. On SQLite (one instance per file) these are skipped.

use crate::helpers::{Browser, Resp, TestApp, backend, backend_settings};

const SECRET: &str = "one-secret-for-both-instances-32-bytes-or-more";

/// Instances `a` and `b` on the same database (and Redis), with the same
/// secrets, or `None` on SQLite.
fn pair(test: &str) -> Option<(TestApp, TestApp)> {
    if backend() == "sqlite" {
        eprintln!("{test}: skipped on sqlite: one file serves one instance");
        return None;
    }
    let a = TestApp::spawn_with(&[("secrets", SECRET)]);
    let mut shared = backend_settings(a.dir.path());
    shared.push(("secrets".into(), SECRET.into()));
    let b = TestApp::spawn_in(tempfile::tempdir().expect("temp dir"), shared);
    Some((a, b))
}

/// The same browser (same cookies), talking to another instance.
fn on(browser: &Browser, app: &TestApp) -> Browser {
    let mut moved = browser.clone_cookies();
    moved.base.clone_from(&app.base);
    moved
}

fn form_post(b: &Browser, page: &str, action: &str, fields: &[(&str, &str)]) -> Resp {
    let csrf = b.get(page).csrf().expect("csrf");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all)
}

#[test]
fn a_login_on_one_instance_is_valid_on_the_other_and_counts_once() {
    let Some((a, b)) = pair("a_login_on_one_instance_is_valid_on_the_other_and_counts_once") else {
        return;
    };
    a.add_user("alice", "correct horse", false);
    let on_a = a.browser();
    assert_eq!(on_a.login("alice", "correct horse").status, 303);
    let on_b = on(&on_a, &b);
    let verify = on_b.get("/auth/verify");
    assert_eq!(verify.status, 200);
    assert_eq!(verify.header("Remote-User"), Some("alice"));
    // Visits alternate between instances and none is lost.
    let mut last = 0;
    for i in 0..6 {
        let page = if i % 2 == 0 {
            on_a.get("/")
        } else {
            on_b.get("/")
        };
        let n: i64 = page.text_of("visits").expect("visits").parse().expect("n");
        assert!(n > last, "visit {i}: {n} after {last}");
        last = n;
    }
}

#[test]
fn logout_and_revocation_on_one_instance_apply_on_the_other_at_once() {
    let Some((a, b)) = pair("logout_and_revocation_on_one_instance_apply_on_the_other_at_once")
    else {
        return;
    };
    a.add_user("root", "root password", true);
    a.add_user("alice", "correct horse", false);

    // Logout on a; the cookie is dead on b.
    let first = a.browser();
    first.login("alice", "correct horse");
    assert_eq!(on(&first, &b).get("/auth/verify").status, 200);
    assert_eq!(first.logout().status, 303);
    assert_eq!(on(&first, &b).get("/auth/verify").status, 401);

    // A password change on b ends alice's other sessions on a.
    let laptop = a.browser();
    laptop.login("alice", "correct horse");
    let phone = b.browser();
    phone.login("alice", "correct horse");
    let changed = form_post(
        &phone,
        "/account",
        "/account/password",
        &[
            ("current", "correct horse"),
            ("password", "battery staple"),
            ("password2", "battery staple"),
        ],
    );
    assert_eq!(changed.status, 303);
    assert_eq!(laptop.get("/auth/verify").status, 401, "old session on a");
    assert_eq!(on(&phone, &a).get("/auth/verify").status, 200);

    // An admin on a disables alice; her session on b ends at once.
    let admin = a.browser();
    admin.login("root", "root password");
    let disabled = form_post(
        &admin,
        "/admin/users",
        "/admin/users/disable",
        &[("username", "alice")],
    );
    assert_eq!(disabled.status, 303);
    assert_eq!(phone.get("/auth/verify").status, 401, "disabled on b");
    assert_eq!(phone.login("alice", "battery staple").status, 401);

    // Rights are read on every request: revoking admin on b applies on a.
    a.add_user("bob", "bob password", true);
    let bob = a.browser();
    bob.login("bob", "bob password");
    assert_eq!(bob.get("/admin").status, 200);
    let admin_on_b = on(&admin, &b);
    let revoked = form_post(
        &admin_on_b,
        "/admin/users",
        "/admin/users/revoke-admin",
        &[("username", "bob")],
    );
    assert_eq!(revoked.status, 303);
    assert_eq!(bob.get("/admin").status, 403);
}

#[test]
fn guesses_spread_over_instances_are_throttled_together() {
    let Some((a, b)) = pair("guesses_spread_over_instances_are_throttled_together") else {
        return;
    };
    a.add_user("alice", "correct horse", false);
    let (on_a, on_b) = (a.browser(), b.browser());
    for i in 0..5 {
        let browser = if i % 2 == 0 { &on_a } else { &on_b };
        assert_eq!(
            browser.login("alice", "wrong guess").status,
            401,
            "guess {i}"
        );
    }
    for browser in [&on_a, &on_b] {
        let refused = browser.login("alice", "correct horse");
        assert_eq!(refused.status, 429);
        assert!(refused.header("Retry-After").is_some());
    }
}

#[test]
fn a_second_step_on_the_other_instance_finishes_the_sign_in_and_a_code_counts_once_for_both() {
    let Some((a, b)) = pair("a_second_step_on_the_other_instance_finishes_the_sign_in") else {
        return;
    };
    a.add_user("alice", "correct horse", false);
    let setup = a.browser();
    setup.login("alice", "correct horse");
    // Set up on A; the seed is sealed with the shared secret.
    let (seed, _) = crate::factors::enrol(&setup);

    // The password on A, the code on B: the pending sign-in is shared.
    let on_a = a.browser();
    crate::factors::password_step(&on_a, "alice");
    let on_b = on(&on_a, &b);
    let t = crate::factors::unix_now();
    let code = crate::factors::code_at(&seed, t);
    let done = crate::factors::second(&on_b, "code", &code);
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(on_b.get("/auth/verify").status, 200);

    // The same code on A for another sign-in: already used.
    let again = b.browser();
    crate::factors::password_step(&again, "alice");
    let replay = crate::factors::second(&on(&again, &a), "code", &code);
    assert_eq!(replay.status, 401, "a code counts once for every instance");
}

#[test]
fn a_token_revoked_on_one_instance_is_refused_by_the_other_at_once() {
    let Some((a, b)) = pair("a_token_revoked_on_one_instance_is_refused_by_the_other_at_once")
    else {
        return;
    };
    let alice = a.add_user("alice", "correct horse", false);
    let tokens = a.state().users.tokens();
    let new = gatehouse::users::tokens::NewToken {
        name: "script".into(),
        ..Default::default()
    };
    let (token, row) = tokens
        .create(&alice, &new, gatehouse::clock::now())
        .expect("token");
    let ask = |app: &TestApp| {
        Browser::new(&app.base)
            .get_with(
                "/auth/verify",
                &[("Authorization", &format!("Bearer {token}"))],
            )
            .status
    };
    assert_eq!(ask(&a), 200);
    assert_eq!(ask(&b), 200);
    tokens.revoke(row.id, None).expect("revoke");
    assert_eq!(ask(&b), 401, "revoked on a, refused by b");
    // A new password set on b ends a token made on a.
    let (token2, _) = tokens
        .create(&alice, &new, gatehouse::clock::now())
        .expect("token");
    let ask2 = |app: &TestApp| {
        Browser::new(&app.base)
            .get_with(
                "/auth/verify",
                &[("Authorization", &format!("Bearer {token2}"))],
            )
            .status
    };
    assert_eq!(ask2(&b), 200);
    b.state()
        .users
        .set_password(alice.id, "a brand new password")
        .expect("password");
    assert_eq!(ask2(&a), 401, "a new password on b ends it on a");
}
