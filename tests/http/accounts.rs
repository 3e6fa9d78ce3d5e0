//! First run, the account page, administration and sign-up.

use crate::helpers::{Browser, Resp, TestApp, assert_redirects_to};

fn setup_token(app: &TestApp) -> String {
    let url = app
        .running
        .as_ref()
        .expect("running")
        .setup_url()
        .expect("no users yet: a setup URL");
    url.split("token=").nth(1).expect("token").to_owned()
}

fn handle_of_this_session(page: &Resp) -> String {
    let at = page
        .body
        .find("id=\"this-session\"")
        .expect("this session is marked");
    let row_start = page.body[..at].rfind("id=\"session-").expect("row");
    let rest = &page.body[row_start + "id=\"session-".len()..];
    rest[..rest.find('"').expect("end")].to_owned()
}

fn handles(page: &Resp) -> Vec<String> {
    page.body
        .match_indices("id=\"session-")
        .map(|(i, _)| {
            let rest = &page.body[i + "id=\"session-".len()..];
            rest[..rest.find('"').expect("end")].to_owned()
        })
        .collect()
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

fn account_post(b: &Browser, action: &str, fields: &[(&str, &str)]) -> Resp {
    let csrf = b.get("/account").csrf().expect("csrf on the account page");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all)
}

#[test]
fn first_run_setup_needs_the_token_and_works_once() {
    let app = TestApp::spawn();
    let token = setup_token(&app);
    let b = app.browser();
    assert_eq!(b.get("/setup").status, 404);
    assert_eq!(b.get("/setup?token=wrong").status, 404);
    let page = b.get(&format!("/setup?token={token}"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"setup-form\""));
    let csrf = page.csrf().expect("csrf");

    let mismatch = b.post_form(
        "/setup",
        &[
            ("csrf", &csrf),
            ("token", &token),
            ("username", "root"),
            ("password", "correct horse"),
            ("password2", "correct horsf"),
        ],
    );
    assert_eq!(mismatch.status, 400);
    assert_eq!(
        mismatch.text_of("error").as_deref(),
        Some("The two passwords do not match.")
    );
    let wrong_token = b.post_form(
        "/setup",
        &[
            ("csrf", &csrf),
            ("token", "nope"),
            ("username", "root"),
            ("password", "correct horse"),
            ("password2", "correct horse"),
        ],
    );
    assert_eq!(wrong_token.status, 404);

    let done = b.post_form(
        "/setup",
        &[
            ("csrf", &csrf),
            ("token", &token),
            ("username", "root"),
            ("password", "correct horse"),
            ("password2", "correct horse"),
        ],
    );
    assert_redirects_to(&done, "/?done=welcome");
    let home = b.get("/?done=welcome");
    assert_eq!(home.text_of("welcome").as_deref(), Some("Welcome, root"));
    assert!(home.text_of("notice").is_some());
    assert_eq!(
        b.get("/admin").status,
        200,
        "the first user is an administrator"
    );
    assert_eq!(
        app.browser().get(&format!("/setup?token={token}")).status,
        404,
        "the token is spent"
    );
    assert!(app.running.as_ref().expect("running").setup_url().is_none());
}

#[test]
fn setup_is_gone_once_a_user_exists() {
    let app = TestApp::spawn();
    let token = setup_token(&app);
    app.add_user("alice", "correct horse", true);
    assert_eq!(
        app.browser().get(&format!("/setup?token={token}")).status,
        404
    );
}

#[test]
fn the_account_page_lists_my_sessions_and_marks_this_one() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let mut laptop = app.browser();
    laptop.headers.push((
        "User-Agent".into(),
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into(),
    ));
    laptop.login("alice", "correct horse");
    let phone = app.browser();
    phone.login("alice", "correct horse");
    let page = laptop.get("/account");
    assert_eq!(page.status, 200);
    assert_eq!(handles(&page).len(), 2);
    assert!(page.body.contains("Firefox on Linux"));
    assert!(page.body.contains("127.0.0.1"));
    assert!(page.body.contains("<time datetime="), "times are marked up");
    let cookie = laptop.cookie("gatehouse_session").expect("cookie");
    let id = cookie.split('.').next().expect("id");
    assert!(
        !page.body.contains(id),
        "the raw session id appears in the page"
    );
    assert_redirects_to(&app.browser().get("/account"), "/login?next=%2Faccount");
}

#[test]
fn ending_another_of_my_sessions_signs_that_browser_out() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let laptop = app.browser();
    laptop.login("alice", "correct horse");
    let phone = app.browser();
    phone.login("alice", "correct horse");
    let phone_handle = handle_of_this_session(&phone.get("/account"));
    let resp = account_post(
        &laptop,
        "/account/sessions/end",
        &[("handle", &phone_handle)],
    );
    assert_redirects_to(&resp, "/account?done=session-ended");
    assert_eq!(phone.get("/auth/verify").status, 401);
    assert_eq!(laptop.get("/auth/verify").status, 200);
}

#[test]
fn a_user_cannot_end_someone_elses_session_by_handle() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "correct horse", false);
    let alice = app.browser();
    alice.login("alice", "correct horse");
    let bob = app.browser();
    bob.login("bob", "correct horse");
    let bobs = handle_of_this_session(&bob.get("/account"));
    let resp = account_post(&alice, "/account/sessions/end", &[("handle", &bobs)]);
    assert_eq!(resp.status, 404);
    assert_eq!(
        bob.get("/auth/verify").status,
        200,
        "bob's session was ended by alice"
    );
    let resp = account_post(
        &alice,
        "/account/sessions/end",
        &[("handle", "00000000000000000000000000000000")],
    );
    assert_eq!(resp.status, 404);
}

#[test]
fn ending_this_session_from_the_list_signs_out() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let mine = handle_of_this_session(&b.get("/account"));
    assert_redirects_to(
        &account_post(&b, "/account/sessions/end", &[("handle", &mine)]),
        "/login",
    );
    assert_eq!(b.get("/auth/verify").status, 401);
}

#[test]
fn end_all_other_sessions_keeps_this_one() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let others: Vec<Browser> = (0..3).map(|_| app.browser()).collect();
    for o in &others {
        o.login("alice", "correct horse");
    }
    let b = app.browser();
    b.login("alice", "correct horse");
    assert!(b.get("/account").body.contains("id=\"end-others\""));
    assert_redirects_to(
        &account_post(&b, "/account/sessions/end-others", &[]),
        "/account?done=others-ended",
    );
    for o in &others {
        assert_eq!(o.get("/auth/verify").status, 401);
    }
    assert_eq!(b.get("/auth/verify").status, 200);
    assert!(!b.get("/account").body.contains("id=\"end-others\""));
}

#[test]
fn changing_my_password_needs_the_current_one_and_ends_other_sessions() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let other = app.browser();
    other.login("alice", "correct horse");
    let b = app.browser();
    b.login("alice", "correct horse");
    let before = b.clone_cookies();

    let wrong = account_post(
        &b,
        "/account/password",
        &[
            ("current", "nope nope"),
            ("password", "battery staple"),
            ("password2", "battery staple"),
        ],
    );
    assert_eq!(wrong.status, 403);
    let mismatch = account_post(
        &b,
        "/account/password",
        &[
            ("current", "correct horse"),
            ("password", "battery staple"),
            ("password2", "battery stapel"),
        ],
    );
    assert_eq!(mismatch.status, 400);
    let long = "x".repeat(73);
    let too_long = account_post(
        &b,
        "/account/password",
        &[
            ("current", "correct horse"),
            ("password", &long),
            ("password2", &long),
        ],
    );
    assert_eq!(too_long.status, 400);
    assert!(
        too_long
            .text_of("error")
            .expect("error")
            .contains("72 bytes")
    );

    let ok = account_post(
        &b,
        "/account/password",
        &[
            ("current", "correct horse"),
            ("password", "battery staple"),
            ("password2", "battery staple"),
        ],
    );
    assert_redirects_to(&ok, "/account?done=password-changed");
    assert!(
        ok.cookie("gatehouse_session").is_some(),
        "this session got a new id"
    );
    assert_eq!(b.get("/auth/verify").status, 200);
    assert_eq!(
        before.get("/auth/verify").status,
        401,
        "the pre-change id still works"
    );
    assert_eq!(
        other.get("/auth/verify").status,
        401,
        "another session survived"
    );
    assert_eq!(app.browser().login("alice", "correct horse").status, 401);
    assert_redirects_to(&app.browser().login("alice", "battery staple"), "/");
}

#[test]
fn non_admins_get_403_on_every_admin_action() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "correct horse", false);
    let b = app.browser();
    b.login("bob", "correct horse");
    assert_eq!(b.get("/admin").status, 403);
    assert_eq!(b.get("/admin/users/delete?username=root").status, 403);
    let csrf = b.get("/account").csrf().expect("csrf");
    for action in [
        "/admin/users",
        "/admin/users/password",
        "/admin/users/disable",
        "/admin/users/enable",
        "/admin/users/grant-admin",
        "/admin/users/revoke-admin",
        "/admin/users/delete",
        "/admin/sessions/end",
    ] {
        let resp = b.post_form(
            action,
            &[
                ("csrf", &csrf),
                ("username", "bob"),
                ("password", "new password"),
                ("confirm", "yes"),
                ("handle", "x"),
            ],
        );
        assert_eq!(resp.status, 403, "{action}");
    }
    let bob = app.state().users.get_by_name("bob").expect("bob");
    assert!(!bob.is_admin, "bob made himself admin");
    assert_redirects_to(&app.browser().get("/admin"), "/login?next=%2Fadmin");
}

#[test]
fn an_admin_manages_users() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    let admin = app.browser();
    admin.login("root", "correct horse");

    assert_redirects_to(
        &admin_post(
            &admin,
            "/admin/users",
            &[("username", "carol"), ("password", "carol's pass")],
        ),
        "/admin/users?done=user-created",
    );
    assert!(admin.get("/admin/users").body.contains("id=\"user-carol\""));
    assert_eq!(
        admin_post(
            &admin,
            "/admin/users",
            &[("username", "CAROL"), ("password", "carol's pass")]
        )
        .status,
        409
    );
    assert_eq!(
        admin_post(
            &admin,
            "/admin/users",
            &[("username", "dave"), ("password", "short")]
        )
        .status,
        400
    );
    assert_eq!(
        admin_post(
            &admin,
            "/admin/users",
            &[("username", "bad name"), ("password", "long enough")]
        )
        .status,
        400
    );

    let carol = app.browser();
    carol.login("carol", "carol's pass");
    assert_redirects_to(
        &admin_post(
            &admin,
            "/admin/users/password",
            &[("username", "carol"), ("password", "new carol pass")],
        ),
        "/admin/users?done=password-reset",
    );
    assert_eq!(
        carol.get("/auth/verify").status,
        401,
        "a reset ends the user's sessions"
    );
    carol.login("carol", "new carol pass");

    assert_redirects_to(
        &admin_post(&admin, "/admin/users/disable", &[("username", "carol")]),
        "/admin/users?done=user-disabled",
    );
    assert_eq!(carol.get("/auth/verify").status, 401);
    assert_eq!(carol.login("carol", "new carol pass").status, 401);
    assert_redirects_to(
        &admin_post(&admin, "/admin/users/enable", &[("username", "carol")]),
        "/admin/users?done=user-enabled",
    );
    carol.login("carol", "new carol pass");

    // Rights change on the next request.
    assert_eq!(carol.get("/admin").status, 403);
    admin_post(&admin, "/admin/users/grant-admin", &[("username", "carol")]);
    assert_eq!(carol.get("/admin").status, 200);
    assert_eq!(
        carol.get("/auth/verify").header("remote-groups"),
        Some("admins")
    );
    admin_post(
        &admin,
        "/admin/users/revoke-admin",
        &[("username", "carol")],
    );
    assert_eq!(carol.get("/admin").status, 403);

    // Delete has a confirm step.
    let confirm = admin.get("/admin/users/delete?username=carol");
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("id=\"delete-form\""));
    assert_eq!(
        admin_post(&admin, "/admin/users/delete", &[("username", "carol")]).status,
        400
    );
    assert_redirects_to(
        &admin_post(
            &admin,
            "/admin/users/delete",
            &[("username", "carol"), ("confirm", "yes")],
        ),
        "/admin/users?done=user-deleted",
    );
    assert_eq!(carol.get("/auth/verify").status, 401);
    assert!(
        app.state()
            .users
            .find_by_name("carol")
            .expect("lookup")
            .is_none()
    );
    assert_eq!(
        admin_post(&admin, "/admin/users/disable", &[("username", "carol")]).status,
        404
    );
}

#[test]
fn the_last_admin_cannot_be_removed() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("root2", "correct horse", true);
    let root = app.browser();
    root.login("root", "correct horse");
    assert_eq!(
        admin_post(&root, "/admin/users/disable", &[("username", "root")]).status,
        409,
        "disabling yourself"
    );
    assert_eq!(
        admin_post(
            &root,
            "/admin/users/delete",
            &[("username", "root"), ("confirm", "yes")]
        )
        .status,
        409
    );
    // Two admins: one may step down, and regains a fresh session id doing so.
    let before = root.cookie("gatehouse_session").expect("cookie");
    assert_redirects_to(
        &admin_post(&root, "/admin/users/revoke-admin", &[("username", "root")]),
        "/admin/users?done=admin-revoked",
    );
    assert_ne!(root.cookie("gatehouse_session").expect("cookie"), before);
    assert_eq!(root.get("/admin").status, 403);
    let root2 = app.browser();
    root2.login("root2", "correct horse");
    let last = admin_post(
        &root2,
        "/admin/users/revoke-admin",
        &[("username", "root2")],
    );
    assert_eq!(last.status, 409);
    assert!(
        last.text_of("error")
            .expect("message")
            .contains("last administrator")
    );
    assert!(
        app.state()
            .users
            .get_by_name("root2")
            .expect("root2")
            .is_admin
    );
}

#[test]
fn an_admin_can_end_any_session() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "correct horse", false);
    let admin = app.browser();
    admin.login("root", "correct horse");
    let bob = app.browser();
    bob.login("bob", "correct horse");
    let bobs = handle_of_this_session(&bob.get("/account"));
    let page = admin.get("/admin/sessions");
    assert!(page.body.contains(&format!("id=\"session-{bobs}\"")));
    assert_redirects_to(
        &admin_post(&admin, "/admin/sessions/end", &[("handle", &bobs)]),
        "/admin/sessions?done=session-ended",
    );
    assert_eq!(bob.get("/auth/verify").status, 401);
    assert_eq!(
        admin_post(&admin, "/admin/sessions/end", &[("handle", &bobs)]).status,
        404
    );
}

#[test]
fn admin_forms_need_the_session_token() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "correct horse", false);
    let admin = app.browser();
    admin.login("root", "correct horse");
    let resp = admin.post_form(
        "/admin/users/grant-admin",
        &[("csrf", "forged"), ("username", "bob")],
    );
    assert_eq!(resp.status, 403);
    assert!(!app.state().users.get_by_name("bob").expect("bob").is_admin);
}

#[test]
fn registration_is_off_by_default() {
    let app = TestApp::spawn();
    assert_eq!(app.browser().get("/register").status, 404);
    assert_eq!(
        app.browser()
            .post_form("/register", &[("username", "x")])
            .status,
        404
    );
    assert!(
        !app.browser()
            .get("/login")
            .body
            .contains("id=\"register-link\"")
    );
}

#[test]
fn registration_when_on_creates_a_user_and_signs_them_in() {
    let app = TestApp::spawn_with(&[("allow_registration", "true")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    assert!(b.get("/login").body.contains("id=\"register-link\""));
    let page = b.get("/register");
    assert_eq!(page.status, 200);
    let csrf = page.csrf().expect("csrf");
    let short = b.post_form(
        "/register",
        &[
            ("csrf", &csrf),
            ("username", "newbie"),
            ("password", "short"),
            ("password2", "short"),
        ],
    );
    assert_eq!(short.status, 400);
    let taken = b.post_form(
        "/register",
        &[
            ("csrf", &csrf),
            ("username", "ALICE"),
            ("password", "long enough"),
            ("password2", "long enough"),
        ],
    );
    assert_eq!(taken.status, 409);
    let ok = b.post_form(
        "/register",
        &[
            ("csrf", &csrf),
            ("username", "newbie"),
            ("password", "long enough"),
            ("password2", "long enough"),
        ],
    );
    assert_redirects_to(&ok, "/?done=registered");
    assert_eq!(b.get("/auth/verify").header("remote-user"), Some("newbie"));
    assert!(
        !app.state()
            .users
            .get_by_name("newbie")
            .expect("newbie")
            .is_admin
    );
    let no_csrf = app.browser().post_form(
        "/register",
        &[
            ("username", "x2"),
            ("password", "long enough"),
            ("password2", "long enough"),
        ],
    );
    assert_eq!(no_csrf.status, 403);
}
