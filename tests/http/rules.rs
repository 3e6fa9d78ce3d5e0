//! Each account rule through each caller of the `accounts` layer: the
//! pages, the JSON API, the admin page and the command line. Revocation (a
//! new password, disabling or deleting ends the user's sessions) and the
//! last administrator must hold whichever door a change comes through.

use serde_json::json;

use crate::cli::{fails, gatehouse, ok};
use crate::helpers::{Browser, Resp, TestApp};

/// Signs `b` in through `POST /api/login`.
fn api_login(b: &Browser, username: &str, password: &str) -> Resp {
    b.send_json(
        "POST",
        "/api/login",
        &json!({ "username": username, "password": password }).to_string(),
        &[],
    )
}

/// Whether `b`'s session is signed in, as the API sees it.
fn api_signed_in(b: &Browser) -> bool {
    match b.get("/api/session").status {
        200 => true,
        401 => false,
        other => panic!("GET /api/session answered {other}"),
    }
}

/// A signed-in form POST from a page that carries the session's token.
fn post_from(b: &Browser, page: &str, action: &str, fields: &[(&str, &str)]) -> Resp {
    let csrf = b.get(page).csrf().expect("csrf on the page");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all)
}

#[test]
fn a_new_password_ends_the_users_sessions_whoever_sets_it() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("alice", "alice pass 1", false);
    let root = app.browser();
    assert_eq!(root.login("root", "correct horse").status, 303);

    // The account page: alice's other sessions end (one signed in through
    // the API), the one that changed it stays.
    let page = app.browser();
    assert_eq!(page.login("alice", "alice pass 1").status, 303);
    let api = app.browser();
    assert_eq!(api_login(&api, "alice", "alice pass 1").status, 200);
    let changed = post_from(
        &page,
        "/account",
        "/account/password",
        &[
            ("current", "alice pass 1"),
            ("password", "alice pass 2"),
            ("password2", "alice pass 2"),
        ],
    );
    assert_eq!(changed.status, 303);
    assert!(!api_signed_in(&api), "the account page's new password");
    assert!(api_signed_in(&page), "the session that changed it stays");

    // The admin page: a reset ends all of alice's sessions.
    assert_eq!(api_login(&api, "alice", "alice pass 2").status, 200);
    let reset = post_from(
        &root,
        "/admin/users",
        "/admin/users/password",
        &[("username", "alice"), ("password", "alice pass 3")],
    );
    assert_eq!(reset.status, 303);
    assert!(!api_signed_in(&api), "the admin page's reset");
    assert!(!api_signed_in(&page), "the admin page's reset");
    assert!(
        api_signed_in(&root),
        "the administrator's own session stays"
    );

    // The command line.
    assert_eq!(api_login(&api, "alice", "alice pass 3").status, 200);
    let out = ok(&gatehouse(
        app.dir.path(),
        &["user", "passwd", "alice", "--password-stdin"],
        Some("alice pass 4\n"),
    ));
    assert!(out.contains("ended 1 session(s)"), "{out}");
    assert!(!api_signed_in(&api), "the command line's passwd");
    assert_eq!(api_login(&api, "alice", "alice pass 3").status, 401);
    assert_eq!(api_login(&api, "alice", "alice pass 4").status, 200);
}

#[test]
fn disabling_or_deleting_ends_the_users_sessions_whoever_does_it() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "bob password", false);
    let root = app.browser();
    assert_eq!(root.login("root", "correct horse").status, 303);
    let page = app.browser();
    let api = app.browser();
    let d = app.dir.path();

    // The admin page disables; neither door lets bob in until enabled.
    assert_eq!(page.login("bob", "bob password").status, 303);
    assert_eq!(api_login(&api, "bob", "bob password").status, 200);
    let disabled = post_from(
        &root,
        "/admin/users",
        "/admin/users/disable",
        &[("username", "bob")],
    );
    assert_eq!(disabled.status, 303);
    assert!(!api_signed_in(&api) && !api_signed_in(&page));
    assert_eq!(api_login(&api, "bob", "bob password").status, 401);
    assert_eq!(page.login("bob", "bob password").status, 401);

    // The command line enables and disables.
    ok(&gatehouse(d, &["user", "enable", "bob"], None));
    assert_eq!(api_login(&api, "bob", "bob password").status, 200);
    let out = ok(&gatehouse(d, &["user", "disable", "bob"], None));
    assert!(out.contains("ended 1 session(s)"), "{out}");
    assert!(!api_signed_in(&api), "the command line's disable");
    assert_eq!(api_login(&api, "bob", "bob password").status, 401);

    // The admin page enables and deletes.
    let enabled = post_from(
        &root,
        "/admin/users",
        "/admin/users/enable",
        &[("username", "bob")],
    );
    assert_eq!(enabled.status, 303);
    assert_eq!(api_login(&api, "bob", "bob password").status, 200);
    let deleted = post_from(
        &root,
        "/admin/users",
        "/admin/users/delete",
        &[("username", "bob"), ("confirm", "yes")],
    );
    assert_eq!(deleted.status, 303);
    assert!(!api_signed_in(&api), "the admin page's delete");

    // The command line deletes.
    app.add_user("carol", "carol password", false);
    assert_eq!(api_login(&api, "carol", "carol password").status, 200);
    let out = ok(&gatehouse(d, &["user", "delete", "carol"], None));
    assert!(out.contains("ended 1 session(s)"), "{out}");
    assert!(!api_signed_in(&api), "the command line's delete");
    assert_eq!(api_login(&api, "carol", "carol password").status, 401);
    assert!(api_signed_in(&root));
}

#[test]
fn the_last_administrator_stays_unless_the_owner_forces_it() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "bob password", false);
    let d = app.dir.path();
    let api = app.browser();
    assert_eq!(api_login(&api, "root", "correct horse").status, 200);

    // The command line refuses, says why and how, and changes nothing.
    for command in ["disable", "delete"] {
        let err = fails(&gatehouse(d, &["user", command, "root"], None));
        assert!(
            err.contains("root is the last enabled administrator"),
            "{err}"
        );
        assert!(err.contains(&format!("--force to {command}")), "{err}");
    }
    let list = ok(&gatehouse(d, &["user", "list"], None));
    let row = list.lines().find(|l| l.starts_with("root")).expect("root");
    assert_eq!(
        row.split_whitespace().nth(2),
        Some("no"),
        "not disabled: {row}"
    );
    assert!(api_signed_in(&api), "a refused disable ends no session");

    // The admin page and the API: root keeps the admin page and signs in.
    let page = app.browser();
    assert_eq!(page.login("root", "correct horse").status, 303);
    assert_eq!(page.get("/admin").status, 200);
    let demoted = post_from(
        &page,
        "/admin/users",
        "/admin/users/revoke-admin",
        &[("username", "root")],
    );
    assert_eq!(demoted.status, 409);
    assert!(
        demoted
            .text_of("error")
            .expect("message")
            .contains("last administrator")
    );

    // Not the last: a second administrator makes root removable.
    ok(&gatehouse(
        d,
        &["user", "add", "root2", "--admin", "--password-stdin"],
        Some("correct horse\n"),
    ));
    ok(&gatehouse(d, &["user", "disable", "root2"], None));
    let err = fails(&gatehouse(d, &["user", "delete", "root"], None));
    assert!(
        err.contains("last enabled administrator"),
        "a disabled admin does not count: {err}"
    );
    ok(&gatehouse(d, &["user", "enable", "root2"], None));
    ok(&gatehouse(d, &["user", "disable", "root"], None));
    assert!(!api_signed_in(&api));
    ok(&gatehouse(d, &["user", "enable", "root"], None));
    ok(&gatehouse(d, &["user", "delete", "root2"], None));

    // --force: the box's owner may; the sessions end as with any disable.
    assert_eq!(api_login(&api, "root", "correct horse").status, 200);
    let out = ok(&gatehouse(d, &["user", "disable", "root", "--force"], None));
    assert!(out.contains("disabled root; ended"), "{out}");
    assert!(!api_signed_in(&api) && !api_signed_in(&page));
    assert_eq!(api_login(&api, "root", "correct horse").status, 401);
    ok(&gatehouse(d, &["user", "enable", "root"], None));
    let out = ok(&gatehouse(d, &["user", "delete", "root", "--force"], None));
    assert!(out.contains("deleted root"), "{out}");
    assert_eq!(api_login(&api, "root", "correct horse").status, 401);
    // A plain user was never guarded by the rule.
    ok(&gatehouse(d, &["user", "disable", "bob"], None));
}

#[test]
fn the_help_says_what_force_is_for() {
    let dir = tempfile::tempdir().expect("dir");
    for command in ["disable", "delete"] {
        let help = ok(&gatehouse(dir.path(), &["user", command, "--help"], None));
        assert!(help.contains("--force"), "{help}");
        assert!(help.contains("last enabled administrator"), "{help}");
    }
}
