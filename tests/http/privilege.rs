//! What a session may do, and when its id changes: the password step
//! issues a new id (a planted cookie never carries someone's pending
//! sign-in), an anonymous passkey ceremony stores no session, a second
//! step does not renew the administrator's password window, a password
//! confirmation does not wash out what a second step owes, `required`
//! holds for sign-ups and for sessions from before it, a password-only
//! administrator cannot strip another's factors, and the owner's clean-up
//! ends sign-ins still waiting for their second step.

use crate::authenticator::Authenticator;
use crate::factors::{
    code_at, enrol, factor_from_before, password_step, second, secret_of, unix_now, wrong_code,
};
use crate::helpers::{Browser, Resp, TestApp, assert_redirects_to};

/// Copies every cookie `from` holds into `to`: an attacker plants what
/// they were given in the victim's browser (a sibling host under
/// `cookie.domain`, or plain HTTP, can set it).
fn plant(from: &Browser, to: &Browser) {
    for (k, v) in from.jar.lock().expect("jar").iter() {
        to.set_cookie(k, v);
    }
}

fn account_post(b: &Browser, action: &str, fields: &[(&str, &str)]) -> Resp {
    let csrf = b.get("/account").csrf().expect("csrf on the account page");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all)
}

fn admin_post(b: &Browser, action: &str, fields: &[(&str, &str)]) -> Resp {
    let csrf = b
        .get("/admin/users")
        .csrf()
        .expect("csrf on the admin page");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all)
}

/// Posts a code to the second step from an already signed-in session (a
/// step-up), without loading the page first.
fn step_up(b: &Browser, code: &str) -> Resp {
    // The double-submit token is the payload of the signed CSRF cookie
    // the sign-in form set.
    let cookie = b.cookie("gatehouse_csrf").expect("a CSRF cookie");
    let csrf = cookie.rsplit_once('.').expect("signed").0.to_owned();
    b.post_form("/login/second", &[("csrf", &csrf), ("code", code)])
}

#[test]
fn the_passkey_options_store_no_session_and_set_no_session_cookie() {
    let app = TestApp::spawn_with(&[("public_url", "http://localhost")]);
    let b = app.browser();
    let csrf = b.get("/login").csrf().expect("csrf");
    for _ in 0..50 {
        let options = b.post_form("/login/passkey/options", &[("csrf", &csrf)]);
        assert_eq!(options.status, 200, "{}", options.body);
        assert!(options.body.contains("\"challenge\""), "{}", options.body);
        assert_eq!(options.cookie("gatehouse_session"), None, "{options:?}");
        let ceremony = options
            .cookie("gatehouse_passkey")
            .expect("a ceremony cookie");
        for attribute in [
            "Path=/login/passkey",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=",
        ] {
            assert!(ceremony.contains(attribute), "{ceremony}");
        }
    }
    // A failed answer stores nothing either.
    let failed = b.post_form(
        "/login/passkey",
        &[("csrf", &csrf), ("credential", "{\"id\":\"x\"}")],
    );
    assert_redirects_to(&failed, "/login?passkey=failed");
    assert_eq!(failed.cookie("gatehouse_session"), None);
    assert_eq!(app.session_rows(), 0, "an anonymous ceremony is no session");
}

#[test]
fn a_cookie_from_the_passkey_options_planted_in_a_victims_browser_gets_the_attacker_nothing() {
    let app = TestApp::spawn_with(&[
        ("two_factor", "required"),
        ("public_url", "http://localhost"),
    ]);
    app.add_user("alice", "correct horse", false);
    let attacker = app.browser();
    let csrf = attacker.get("/login").csrf().expect("csrf");
    let options = attacker.post_form("/login/passkey/options", &[("csrf", &csrf)]);
    assert_eq!(options.status, 200, "{}", options.body);

    let victim = app.browser();
    plant(&attacker, &victim);
    assert_redirects_to(&victim.login("alice", "correct horse"), "/login/enrol");
    let theirs = victim.get("/login/enrol");
    assert_eq!(theirs.status, 200);
    let (_, seed) = secret_of(&theirs);

    // The attacker's copy of the cookie carries nothing of alice's.
    let copy = attacker.get("/login/enrol");
    assert_redirects_to(&copy, "/login");
    assert_eq!(attacker.get("/auth/verify").status, 401);
    // And alice finishes her own set-up.
    let csrf = theirs.csrf().expect("csrf");
    let done = victim.post_form(
        "/login/enrol",
        &[("csrf", &csrf), ("code", &code_at(&seed, unix_now()))],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        victim.get("/auth/verify").header("Remote-User"),
        Some("alice")
    );
    assert_eq!(attacker.get("/auth/verify").status, 401);
}

#[test]
fn the_password_step_issues_a_new_session_id() {
    let app = TestApp::spawn_with(&[("two_factor", "required")]);
    app.add_user("alice", "correct horse", false);
    app.add_user("mallory", "mallorys pass", false);
    // The attacker's own pending sign-in: a stored session and its cookie.
    let attacker = app.browser();
    assert_redirects_to(&attacker.login("mallory", "mallorys pass"), "/login/enrol");
    let planted = attacker
        .cookie("gatehouse_session")
        .expect("a session cookie");

    let victim = app.browser();
    plant(&attacker, &victim);
    assert_redirects_to(&victim.login("alice", "correct horse"), "/login/enrol");
    assert_ne!(victim.cookie("gatehouse_session"), Some(planted));
    assert_eq!(victim.get("/login/enrol").status, 200);

    // The planted id no longer exists: alice's set-up is not shown to it.
    let copy = attacker.get("/login/enrol");
    assert_redirects_to(&copy, "/login");
    assert!(app.stored_sessions().len() <= 2);

    // The same with the JSON API, and with a user who has a factor: the
    // planted id of a signed-in attacker gets no second step of bob's.
    let app = TestApp::spawn();
    app.add_user("mallory", "mallorys pass", false);
    app.add_user("bob", "correct horse", false);
    let owner = app.browser();
    owner.login("bob", "correct horse");
    enrol(&owner);
    let attacker = app.browser();
    assert_redirects_to(&attacker.login("mallory", "mallorys pass"), "/");
    let victim = app.browser();
    plant(&attacker, &victim);
    let first = victim.send_json(
        "POST",
        "/api/login",
        r#"{"username":"bob","password":"correct horse"}"#,
        &[],
    );
    assert_eq!(first.status, 202, "{}", first.body);
    assert_ne!(
        victim.cookie("gatehouse_session"),
        attacker.cookie("gatehouse_session")
    );
    assert_redirects_to(&attacker.get("/login/second"), "/login");
    assert_eq!(attacker.get("/auth/verify").status, 401);
}

#[test]
fn a_passkey_signs_in_alone_once_per_ceremony() {
    let app = TestApp::spawn_with(&[("public_url", "http://localhost")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    // Register a passkey on the account page.
    let mut key = Authenticator::new(7);
    let csrf = b.get("/account").csrf().expect("csrf");
    let options = b.post_form("/account/passkeys/options", &[("csrf", &csrf)]);
    assert_eq!(options.status, 200, "{}", options.body);
    let made = b.post_form(
        "/account/passkeys",
        &[
            ("csrf", &csrf),
            ("name", "laptop"),
            ("credential", &key.create(&options.body)),
        ],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    b.logout();

    // The passkey alone.
    let anon = app.browser();
    let csrf = anon.get("/login").csrf().expect("csrf");
    let options = anon.post_form("/login/passkey/options", &[("csrf", &csrf)]);
    assert_eq!(options.status, 200, "{}", options.body);
    let answer = key.get(&options.body);
    let thief = anon.clone_cookies();
    // The ceremony cookie is signed: one changed by a byte, or a value
    // signed for something else (the CSRF cookie), is no ceremony.
    let forger = anon.clone_cookies();
    let real = anon.cookie("gatehouse_passkey").expect("a ceremony cookie");
    let mut bytes = real.clone().into_bytes();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let other = anon.cookie("gatehouse_csrf").expect("a CSRF cookie");
    for forged in [String::from_utf8(bytes).expect("ascii"), other] {
        forger.set_cookie("gatehouse_passkey", &forged);
        let refused = forger.post_form(
            "/login/passkey",
            &[("csrf", &csrf), ("credential", &answer)],
        );
        assert_redirects_to(&refused, "/login?passkey=failed");
    }
    let done = anon.post_form(
        "/login/passkey",
        &[("csrf", &csrf), ("credential", &answer)],
    );
    assert_redirects_to(&done, "/");
    assert!(
        done.cookie("gatehouse_passkey")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "the ceremony cookie is cleared: {done:?}"
    );
    assert_eq!(
        anon.get("/auth/verify").header("Remote-User"),
        Some("alice")
    );

    // The same ceremony cookie and answer again (the authenticator keeps
    // no counter): refused, here and in another browser.
    for replay in [&thief, &anon] {
        if replay.cookie("gatehouse_passkey").is_none() {
            plant(&thief, replay);
        }
        let again = replay.post_form(
            "/login/passkey",
            &[("csrf", &csrf), ("credential", &answer)],
        );
        assert_redirects_to(&again, "/login?passkey=failed");
    }
    assert_eq!(thief.get("/auth/verify").status, 401);

    // A new ceremony signs in again.
    let options = thief.post_form("/login/passkey/options", &[("csrf", &csrf)]);
    let again = thief.post_form(
        "/login/passkey",
        &[("csrf", &csrf), ("credential", &key.get(&options.body))],
    );
    assert_redirects_to(&again, "/");
}

#[test]
fn confirming_the_current_password_does_not_wash_out_wrong_codes() {
    // Every request from another address (127.0.0.1 is a trusted proxy),
    // as an attacker spreads them: only the name's count can stop them.
    let app = TestApp::spawn_with(&[("trusted_proxies", "127.0.0.1")]);
    app.add_user("alice", "correct horse", false);
    // A password-only session from before the authenticator.
    let mut old = app.browser();
    old.login("alice", "correct horse");
    let seed = factor_from_before(&app, "alice");
    let wrong = wrong_code(&seed, unix_now());
    let mut addresses = (1..).map(|i| format!("198.51.100.{i}"));
    let mut from_next = |b: &mut Browser| {
        let ip = addresses.next().expect("an address");
        b.headers = vec![("X-Forwarded-For".to_owned(), ip)];
    };
    let mut statuses = Vec::new();
    for _ in 0..2 {
        for _ in 0..2 {
            from_next(&mut old);
            statuses.push(step_up(&old, &wrong).status);
        }
        // The right current password, mismatched new ones: nothing changes.
        from_next(&mut old);
        let confirmed = account_post(
            &old,
            "/account/password",
            &[
                ("current", "correct horse"),
                ("password", "new password 1"),
                ("password2", "new password 2"),
            ],
        );
        assert_eq!(confirmed.status, 400, "{}", confirmed.body);
    }
    for _ in 0..2 {
        from_next(&mut old);
        statuses.push(step_up(&old, &wrong).status);
    }
    // The fifth failure locks the name, as with no confirmation between.
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429], "{statuses:?}");
}

#[test]
fn turning_on_a_second_factor_ends_the_password_only_sessions() {
    let app = TestApp::spawn_with(&[("public_url", "http://localhost")]);
    app.add_user("alice", "correct horse", false);
    let old = app.browser();
    old.login("alice", "correct horse");
    let b = app.browser();
    b.login("alice", "correct horse");
    let (seed, _) = enrol(&b);
    assert_eq!(old.get("/auth/verify").status, 401, "the old one is ended");
    assert_eq!(
        b.get("/auth/verify").status,
        200,
        "this one gave the factor"
    );

    // A session that gave a second factor stays when another is added.
    let other = app.browser();
    password_step(&other, "alice");
    assert_redirects_to(
        &second(&other, "code", &code_at(&seed, unix_now() + 30)),
        "/",
    );
    let mut key = Authenticator::new(9);
    let csrf = b.get("/account").csrf().expect("csrf");
    let options = b.post_form("/account/passkeys/options", &[("csrf", &csrf)]);
    assert_eq!(options.status, 200, "{}", options.body);
    let made = b.post_form(
        "/account/passkeys",
        &[("csrf", &csrf), ("credential", &key.create(&options.body))],
    );
    assert_eq!(made.status, 303, "{}", made.body);
    assert_eq!(other.get("/auth/verify").status, 200);
    assert_eq!(b.get("/auth/verify").status, 200);
}

#[test]
fn a_sign_up_sets_up_a_second_factor_first_under_required() {
    let app = TestApp::spawn_with(&[("allow_registration", "true"), ("two_factor", "required")]);
    let b = app.browser();
    let csrf = b.get("/register").csrf().expect("csrf");
    let made = b.post_form(
        "/register",
        &[
            ("csrf", &csrf),
            ("username", "newbie"),
            ("password", "long enough"),
            ("password2", "long enough"),
        ],
    );
    assert_redirects_to(&made, "/login/enrol");
    assert_eq!(b.get("/auth/verify").status, 401);
    assert_eq!(b.get("/").status, 303);
    let page = b.get("/login/enrol");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"enrol-required\""));
    let (_, seed) = secret_of(&page);
    let csrf = page.csrf().expect("csrf");
    let done = b.post_form(
        "/login/enrol",
        &[("csrf", &csrf), ("code", &code_at(&seed, unix_now()))],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(b.get("/auth/verify").header("Remote-User"), Some("newbie"));
}

#[test]
fn sessions_from_before_required_pass_nowhere_without_a_second_factor() {
    let mut app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "correct horse", false);
    let alice = app.browser();
    alice.login("alice", "correct horse");
    let bob = app.browser();
    bob.login("bob", "correct horse");
    enrol(&bob);
    assert_eq!(alice.get("/auth/verify").status, 200);
    app.settings
        .push(("two_factor".to_owned(), "required".to_owned()));
    let app = app.restart();
    let (old_alice, old_bob) = (alice, bob);
    let alice = app.browser();
    plant(&old_alice, &alice);
    let bob = app.browser();
    plant(&old_bob, &bob);
    assert_eq!(alice.get("/auth/verify").status, 401);
    assert_eq!(alice.get("/api/session").status, 401);
    assert_eq!(alice.get("/").status, 303);
    assert_eq!(alice.get("/account").status, 303);
    assert_eq!(alice.get("/login").status, 200, "the sign-in form");
    assert_redirects_to(&alice.login("alice", "correct horse"), "/login/enrol");
    // Bob gave a second factor: still signed in.
    assert_eq!(bob.get("/auth/verify").header("Remote-User"), Some("bob"));
}

#[test]
fn the_first_administrator_sets_up_a_factor_first_under_required() {
    let app = TestApp::spawn_with(&[("two_factor", "required")]);
    let url = app
        .running
        .as_ref()
        .expect("running")
        .setup_url()
        .expect("a setup URL");
    let token = url.split("token=").nth(1).expect("token").to_owned();
    let b = app.browser();
    let page = b.get(&format!("/setup?token={token}"));
    let csrf = page.csrf().expect("csrf");
    let made = b.post_form(
        "/setup",
        &[
            ("csrf", &csrf),
            ("token", &token),
            ("username", "root"),
            ("password", "correct horse"),
            ("password2", "correct horse"),
        ],
    );
    assert_redirects_to(&made, "/login/enrol");
    assert_eq!(b.get("/admin").status, 303);
    assert_eq!(b.get("/auth/verify").status, 401);
    assert_eq!(b.get("/login/enrol").status, 200);
}

#[test]
fn a_code_alone_does_not_renew_the_administrators_password_window() {
    let app = TestApp::spawn_with(&[("admin_reauth", "2s")]);
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "correct horse", false);
    let admin = app.browser();
    admin.login("root", "correct horse");
    let (seed, codes) = enrol(&admin);
    std::thread::sleep(std::time::Duration::from_millis(2_200));
    // A second step from the signed-in session: a code, no password.
    let t = unix_now();
    assert_redirects_to(&step_up(&admin, &code_at(&seed, t + 30)), "/");
    let page = admin_post(&admin, "/admin/users/grant-admin", &[("username", "bob")]);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("id=\"reauth-form\""), "{}", page.body);
    assert!(!app.state().users.get_by_name("bob").expect("bob").is_admin);

    // A full sign-in (the password now, then a recovery code) does count.
    admin.logout();
    password_step(&admin, "root");
    assert_eq!(second(&admin, "recovery", &codes[0]).status, 200);
    assert_redirects_to(
        &admin_post(&admin, "/admin/users/grant-admin", &[("username", "bob")]),
        "/admin/users?done=admin-granted",
    );
}

#[test]
fn a_passkey_given_now_renews_the_administrators_password_window() {
    let app = TestApp::spawn_with(&[("admin_reauth", "2s"), ("public_url", "http://localhost")]);
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "correct horse", false);
    let admin = app.browser();
    admin.login("root", "correct horse");
    let mut key = Authenticator::new(11);
    let csrf = admin.get("/account").csrf().expect("csrf");
    let options = admin.post_form("/account/passkeys/options", &[("csrf", &csrf)]);
    let made = admin.post_form(
        "/account/passkeys",
        &[("csrf", &csrf), ("credential", &key.create(&options.body))],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    std::thread::sleep(std::time::Duration::from_millis(2_200));
    let stale = admin_post(&admin, "/admin/users/grant-admin", &[("username", "bob")]);
    assert!(
        stale.body.contains("id=\"reauth-form\""),
        "the window has passed"
    );

    // The passkey as a second step from the signed-in session.
    let cookie = admin.cookie("gatehouse_csrf").expect("a CSRF cookie");
    let anon = cookie.rsplit_once('.').expect("signed").0.to_owned();
    let options = admin.post_form("/login/second/passkey/options", &[("csrf", &anon)]);
    assert_eq!(options.status, 200, "{}", options.body);
    let done = admin.post_form(
        "/login/second/passkey",
        &[("csrf", &anon), ("credential", &key.get(&options.body))],
    );
    assert_eq!(done.status, 303, "{done:?}");
    assert_redirects_to(
        &admin_post(&admin, "/admin/users/grant-admin", &[("username", "bob")]),
        "/admin/users?done=admin-granted",
    );
}

#[test]
fn a_password_only_administrator_cannot_strip_another_administrators_factors() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("carol", "carols password", true);
    app.add_user("bob", "bobs password", false);
    let carol = app.browser();
    carol.login("carol", "carols password");
    enrol(&carol);
    let root = app.browser();
    root.login("root", "correct horse");

    for (action, fields) in [
        ("/admin/users/reset-2fa", vec![("username", "carol")]),
        (
            "/admin/users/password",
            vec![("username", "carol"), ("password", "taken over")],
        ),
    ] {
        let refused = admin_post(&root, action, &fields);
        assert_eq!(refused.status, 409, "{action}: {}", refused.body);
        assert!(refused.body.contains("second factor"), "{}", refused.body);
    }
    let carols = app.state().users.get_by_name("carol").expect("carol");
    assert!(
        app.state()
            .users
            .factors()
            .summary(carols.id)
            .expect("s")
            .totp
    );
    assert_eq!(carol.get("/auth/verify").status, 200, "not signed out");
    assert_redirects_to(
        &app.browser().login("carol", "carols password"),
        "/login/second",
    );

    // A user without a second factor is still the administrator's to reset.
    assert_redirects_to(
        &admin_post(
            &root,
            "/admin/users/password",
            &[("username", "bob"), ("password", "bobs new one")],
        ),
        "/admin/users?done=password-reset",
    );

    // An administrator whose session gave a second factor may.
    enrol(&root);
    assert_redirects_to(
        &admin_post(&root, "/admin/users/reset-2fa", &[("username", "carol")]),
        "/admin/users?done=factors-reset",
    );
    assert!(
        !app.state()
            .users
            .factors()
            .summary(carols.id)
            .expect("s")
            .any()
    );

    // The box's owner at the command line always may.
    carol.login("carol", "carols password");
    enrol(&carol);
    let out = crate::cli::gatehouse(app.dir.path(), &["user", "reset-2fa", "carol"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !app.state()
            .users
            .factors()
            .summary(carols.id)
            .expect("s")
            .any()
    );
}

#[test]
fn ending_the_other_sessions_ends_sign_ins_waiting_for_a_second_step() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "bobs password", false);
    let owner = app.browser();
    owner.login("alice", "correct horse");
    let (seed, _) = enrol(&owner);
    let attacker = app.browser();
    password_step(&attacker, "alice");
    assert_eq!(attacker.get("/login/second").status, 200);
    // Another one waits in a browser signed in as bob.
    let bobs = app.browser();
    assert_redirects_to(&bobs.login("bob", "bobs password"), "/");
    let cookie = bobs.cookie("gatehouse_csrf").expect("a CSRF cookie");
    let csrf = cookie.rsplit_once('.').expect("signed").0.to_owned();
    let waiting = bobs.post_form(
        "/login",
        &[
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", "correct horse"),
        ],
    );
    assert_redirects_to(&waiting, "/login/second");

    assert_redirects_to(
        &account_post(&owner, "/account/sessions/end-others", &[]),
        "/account?done=others-ended",
    );
    assert_redirects_to(&attacker.get("/login/second"), "/login");
    assert_eq!(owner.get("/auth/verify").status, 200);
    // Bob's sign-in stays; alice's right code does nothing for it.
    assert_eq!(bobs.get("/auth/verify").header("Remote-User"), Some("bob"));
    let late = bobs.send_json(
        "POST",
        "/api/login/second",
        &format!(r#"{{"code":"{}"}}"#, code_at(&seed, unix_now() + 30)),
        &[],
    );
    assert_eq!(late.status, 401, "{}", late.body);
    assert_eq!(bobs.get("/auth/verify").header("Remote-User"), Some("bob"));
}

#[test]
fn disabling_ends_sign_ins_waiting_for_a_second_step() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("alice", "correct horse", false);
    let owner = app.browser();
    owner.login("alice", "correct horse");
    enrol(&owner);
    let attacker = app.browser();
    password_step(&attacker, "alice");
    let root = app.browser();
    root.login("root", "correct horse");
    assert_redirects_to(
        &admin_post(&root, "/admin/users/disable", &[("username", "alice")]),
        "/admin/users?done=user-disabled",
    );
    assert_redirects_to(
        &admin_post(&root, "/admin/users/enable", &[("username", "alice")]),
        "/admin/users?done=user-enabled",
    );
    // Enabled again within the five minutes: the waiting sign-in is gone.
    assert_redirects_to(&attacker.get("/login/second"), "/login");
}

#[test]
fn a_reset_of_the_factors_ends_a_sign_in_waiting_at_the_set_up() {
    let app = TestApp::spawn_with(&[("two_factor", "required")]);
    app.add_user("bob", "correct horse", false);
    // The attacker, with bob's password only, waits at the set-up.
    let attacker = app.browser();
    assert_redirects_to(&attacker.login("bob", "correct horse"), "/login/enrol");
    assert_eq!(attacker.get("/login/enrol").status, 200);
    // Bob sets up his authenticator, loses his phone, and the box's owner
    // resets his factors.
    let owner = app.browser();
    assert_redirects_to(&owner.login("bob", "correct horse"), "/login/enrol");
    let page = owner.get("/login/enrol");
    let (_, seed) = secret_of(&page);
    let csrf = page.csrf().expect("csrf");
    let done = owner.post_form(
        "/login/enrol",
        &[("csrf", &csrf), ("code", &code_at(&seed, unix_now()))],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    let out = crate::cli::gatehouse(app.dir.path(), &["user", "reset-2fa", "bob"], None);
    assert!(out.status.success(), "{out:?}");
    // The attacker's set-up does not come back to life.
    assert_redirects_to(&attacker.get("/login/enrol"), "/login");
    assert_eq!(attacker.get("/auth/verify").status, 401);
}
