//! Groups: the command line (the real binary), the admin page's Groups
//! section, the last-administrator rule through every path, and a user's
//! groups in `Remote-Groups`, the signed identity header and
//! `/api/session`.

use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::cli::{fails, gatehouse, ok};
use crate::helpers::{
    Browser, SCRIPTED_CLICK, TestApp, assert_redirects_to, through_password_step,
};

/// `gatehouse ARGS` on `dir`'s data, as the box's owner runs it.
fn run(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    gatehouse(dir, args, None)
}

#[test]
fn the_command_line_makes_groups_and_puts_users_in_them() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    ok(&gatehouse(
        d,
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("correct horse\n"),
    ));
    ok(&gatehouse(
        d,
        &["user", "add", "alice", "--password-stdin"],
        Some("correct horse\n"),
    ));
    assert!(ok(&run(d, &["group", "add", "ops"])).contains("created group ops"));
    ok(&run(d, &["group", "add", "dev"]));
    assert!(fails(&run(d, &["group", "add", "OPS"])).contains("already exists"));
    for bad in ["ops,admins", "ops;x", "ops x", "\u{430}dmins"] {
        let err = fails(&run(d, &["group", "add", bad]));
        assert!(err.contains("group name"), "{bad:?}: {err}");
    }
    let out = ok(&run(
        d,
        &["user", "groups", "alice", "--add", "ops", "--add", "Dev"],
    ));
    assert!(out.contains("alice: dev,ops"), "{out}");
    assert!(
        fails(&run(d, &["user", "groups", "alice", "--add", "nope"])).contains("no such group")
    );
    assert!(ok(&run(d, &["user", "groups", "root"])).contains("root: admins"));
    ok(&run(d, &["group", "rename", "ops", "sre"]));
    let list = ok(&run(d, &["group", "list"]));
    let line = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not listed: {list}"))
            .to_owned()
    };
    assert!(line("sre").ends_with(" alice"), "{list}");
    assert!(line("admins").ends_with(" root"), "{list}");
    assert!(!list.contains("ops"), "{list}");
    // admins is kept.
    for args in [
        &["group", "delete", "admins"][..],
        &["group", "rename", "admins", "root"],
        &["group", "rename", "Admins", "x"],
    ] {
        assert!(fails(&run(d, args)).contains("built in"), "{args:?}");
    }
    let out = ok(&run(d, &["user", "groups", "alice", "--remove", "dev"]));
    assert!(out.contains("alice: sre"), "{out}");
    ok(&run(d, &["group", "delete", "sre"]));
    assert_eq!(
        ok(&run(d, &["user", "groups", "alice"])).trim_end(),
        "alice:"
    );
    // Membership of admins is being an administrator.
    ok(&run(d, &["user", "groups", "alice", "--add", "admins"]));
    let users = ok(&run(d, &["user", "list"]));
    let alice = users
        .lines()
        .find(|l| l.starts_with("alice "))
        .expect("alice");
    assert!(alice.contains(" yes "), "{users}");
}

#[test]
fn the_last_administrator_stays_through_every_command() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    ok(&gatehouse(
        d,
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("correct horse\n"),
    ));
    let err = fails(&run(d, &["user", "groups", "root", "--remove", "admins"]));
    assert!(err.contains("last enabled administrator"), "{err}");
    assert!(fails(&run(d, &["user", "disable", "root"])).contains("last enabled administrator"));
    assert!(fails(&run(d, &["user", "delete", "root"])).contains("last enabled administrator"));
    assert!(fails(&run(d, &["group", "delete", "admins"])).contains("built in"));
    assert!(ok(&run(d, &["user", "groups", "root"])).contains("root: admins"));
    // The box's owner may force it.
    let out = ok(&run(
        d,
        &["user", "groups", "root", "--remove", "admins", "--force"],
    ));
    assert!(out.contains("removed root from admins"), "{out}");
    ok(&run(d, &["user", "groups", "root", "--add", "admins"]));
}

/// An app that echoes the identity headers it gets, behind the proxy.
fn with_echo() -> (TestApp, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let (addr, stop) = crate::raw::upstream(|request| {
        let h = |n: &str| request.header(n).unwrap_or("-").to_owned();
        rouille::Response::json(&serde_json::json!({
            "groups": h("Remote-Groups"),
            "identity": h("X-Gatehouse-Identity"),
        }))
    });
    let app = TestApp::spawn_with_file(
        &format!(
            r#"
[[apps]]
name = "books"
prefix = "/apps/books/"
upstream = "http://{addr}"
identity_key = "a key the upstream shares, 32+ bytes"
"#
        ),
        &[],
    );
    (app, stop)
}

#[test]
fn every_group_of_a_user_reaches_the_headers_and_the_api() {
    let (app, stop) = with_echo();
    let alice = app.add_user("alice", "correct horse", false);
    let state = app.state();
    let accounts = state.accounts();
    for g in ["ops", "Dev", "a.b-c_d@lan"] {
        accounts.create_group(g).expect("group");
        accounts.add_to_group(g, &alice).expect("member");
    }
    let b = app.browser();
    assert_eq!(b.login("alice", "correct horse").status, 303);
    let verify = b.get("/auth/verify");
    assert_eq!(verify.status, 200);
    assert_eq!(verify.header("remote-groups"), Some("a.b-c_d@lan,Dev,ops"));
    let echo: Value = serde_json::from_str(&b.get("/apps/books/").body).expect("json");
    assert_eq!(echo["groups"], "a.b-c_d@lan,Dev,ops");
    let identity = echo["identity"].as_str().expect("identity");
    let ts: u64 = identity
        .split(";ts=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("ts")
        .parse()
        .expect("n");
    assert_eq!(
        identity,
        gatehouse::web::gate::identity_header(
            b"a key the upstream shares, 32+ bytes",
            "books",
            "alice",
            "a.b-c_d@lan,Dev,ops",
            ts
        )
    );
    let session: Value = serde_json::from_str(&b.get("/api/session").body).expect("json");
    assert_eq!(
        session["user"]["groups"],
        serde_json::json!(["a.b-c_d@lan", "Dev", "ops"])
    );
    assert_eq!(session["user"]["admin"], false);
    // A change applies on the next request: the groups are read with the
    // session, not kept in it.
    accounts.add_to_group("admins", &alice).expect("admin");
    accounts.delete_group("Dev").expect("delete");
    assert_eq!(
        b.get("/auth/verify").header("remote-groups"),
        Some("a.b-c_d@lan,admins,ops")
    );
    let session: Value = serde_json::from_str(&b.get("/api/session").body).expect("json");
    assert_eq!(session["user"]["admin"], true);
    stop.store(true, Ordering::SeqCst);
}
/// The admin page's form token, read from `path`.
fn csrf(b: &Browser, path: &str) -> String {
    b.get(path).csrf().expect("csrf token")
}

/// POSTs an admin form with the token from `from`.
fn admin_post(
    b: &Browser,
    from: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> crate::helpers::Resp {
    let token = csrf(b, from);
    let mut all = vec![("csrf", token.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all)
}

#[test]
fn the_last_administrator_stays_through_every_page() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    let root = app.browser();
    root.login("root", "correct horse");
    let groups = "/admin/groups";
    let page = "/admin/groups/members?group=admins";
    // Leaving admins, deleting it, disabling and deleting the last admin.
    for (from, action, fields) in [
        (
            page,
            "/admin/groups/remove",
            &[("group", "admins"), ("username", "root")][..],
        ),
        (
            groups,
            "/admin/groups/delete",
            &[("group", "admins"), ("confirm", "yes")],
        ),
        (
            groups,
            "/admin/groups/rename",
            &[("group", "admins"), ("name", "root")],
        ),
        (
            "/admin/users",
            "/admin/users/revoke-admin",
            &[("username", "root")],
        ),
    ] {
        let resp = admin_post(&root, from, action, fields);
        assert_eq!(resp.status, 409, "{action}: {}", resp.body);
    }
    assert_eq!(root.get("/admin").status, 200);
    assert!(
        app.state()
            .users
            .get_by_name("root")
            .expect("root")
            .is_admin
    );
    assert!(
        app.state()
            .users
            .find_group("admins")
            .expect("find")
            .is_some()
    );
}

#[test]
fn an_admin_manages_groups_and_members() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("carol", "correct horse", false);
    let root = app.browser();
    root.login("root", "correct horse");
    let carol = app.browser();
    carol.login("carol", "correct horse");
    let list = root.get("/admin/groups");
    assert_eq!(list.status, 200);
    assert!(list.body.contains("id=\"group-admins\""), "{}", list.body);
    assert_redirects_to(
        &admin_post(&root, "/admin/groups", "/admin/groups", &[("name", "ops")]),
        "/admin/groups?done=group-created",
    );
    let taken = admin_post(&root, "/admin/groups", "/admin/groups", &[("name", "OPS")]);
    assert_eq!(taken.status, 409);
    let bad = admin_post(
        &root,
        "/admin/groups",
        "/admin/groups",
        &[("name", "ops,admins")],
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("group name"), "{}", bad.body);
    let members = "/admin/groups/members?group=ops";
    assert_redirects_to(
        &admin_post(
            &root,
            members,
            "/admin/groups/add",
            &[("group", "ops"), ("username", "carol")],
        ),
        "/admin/groups/members?group=ops&done=member-added",
    );
    assert!(root.get(members).body.contains("id=\"member-carol\""));
    assert_eq!(
        carol.get("/auth/verify").header("remote-groups"),
        Some("ops")
    );
    let missing = admin_post(
        &root,
        members,
        "/admin/groups/add",
        &[("group", "ops"), ("username", "nobody")],
    );
    assert_eq!(missing.status, 404);
    assert_redirects_to(
        &admin_post(
            &root,
            "/admin/groups",
            "/admin/groups/rename",
            &[("group", "ops"), ("name", "sre")],
        ),
        "/admin/groups?done=group-renamed",
    );
    assert_eq!(
        carol.get("/auth/verify").header("remote-groups"),
        Some("sre")
    );
    // Deleting asks first (GET shows a confirm page; a POST without the
    // confirmation shows it too), then deletes.
    let confirm = root.get("/admin/groups/delete?group=sre");
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("danger"), "{}", confirm.body);
    assert_redirects_to(
        &admin_post(
            &root,
            "/admin/groups",
            "/admin/groups/delete",
            &[("group", "sre"), ("confirm", "yes")],
        ),
        "/admin/groups?done=group-deleted",
    );
    assert_eq!(carol.get("/auth/verify").header("remote-groups"), Some(""));
    // Removing a member.
    admin_post(&root, "/admin/groups", "/admin/groups", &[("name", "dev")]);
    admin_post(
        &root,
        "/admin/groups/members?group=dev",
        "/admin/groups/add",
        &[("group", "dev"), ("username", "carol")],
    );
    assert_redirects_to(
        &admin_post(
            &root,
            "/admin/groups/members?group=dev",
            "/admin/groups/remove",
            &[("group", "dev"), ("username", "carol")],
        ),
        "/admin/groups/members?group=dev&done=member-removed",
    );
    assert_eq!(carol.get("/auth/verify").header("remote-groups"), Some(""));
    // Putting carol in admins makes her an administrator.
    admin_post(
        &root,
        "/admin/groups/members?group=admins",
        "/admin/groups/add",
        &[("group", "admins"), ("username", "carol")],
    );
    assert_eq!(carol.get("/admin/groups").status, 200);
    // Non-admins get 403, and a POST without the token is refused.
    let bob = app.browser();
    app.add_user("bob", "correct horse", false);
    bob.login("bob", "correct horse");
    assert_eq!(bob.get("/admin/groups").status, 403);
    assert_eq!(bob.get("/admin/groups/members?group=admins").status, 403);
    assert_eq!(
        root.post_form("/admin/groups", &[("name", "x")]).status,
        403,
        "no CSRF token"
    );
    assert!(app.state().users.find_group("x").expect("find").is_none());
}

#[test]
fn every_admin_form_keeps_its_fields_through_the_password_step() {
    // A click no person made (a script's) meets the password step: what
    // the form asked for must still be done after it (the group's name,
    // the group a member joins, the token to revoke, the address's box
    // were dropped, and the action failed or did something else).
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("carol", "correct horse", false);
    let root = app.browser();
    root.login("root", "correct horse");
    let carol = app.state().users.get_by_name("carol").expect("carol");
    // (the page the form is on, where it posts, what it sends)
    type Step<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let steps: &[Step] = &[
        ("/admin/groups", "/admin/groups", &[("name", "ops")]),
        (
            "/admin/groups",
            "/admin/groups/rename",
            &[("group", "ops"), ("name", "operators")],
        ),
        (
            "/admin/groups/members?group=operators",
            "/admin/groups/add",
            &[("group", "operators"), ("username", "carol")],
        ),
        (
            "/admin/users",
            "/admin/users/names",
            &[
                ("username", "carol"),
                ("email", "carol@lan.test"),
                ("verified", "1"),
            ],
        ),
    ];
    for (from, action, fields) in steps {
        let token = csrf(&root, from);
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        let step = root.post_form_with(action, &all, SCRIPTED_CLICK);
        assert_eq!(step.status, 200, "{action}: {step:?}");
        assert!(step.body.contains("id=\"reauth-form\""), "{action}");
        let again = through_password_step(&step, "correct horse");
        let again: Vec<(&str, &str)> = again
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let done = root.post_form_with(action, &again, SCRIPTED_CLICK);
        assert_eq!(done.status, 303, "{action}: {done:?}");
    }
    let users = &app.state().users;
    assert!(users.find_group("ops").expect("find").is_none());
    assert!(users.find_group("operators").expect("find").is_some());
    let profile = users.profile(carol.id).expect("profile").expect("carol");
    assert!(profile.email_vouched(), "{profile:?}");
    let groups = users.groups_of(carol.id).expect("groups");
    assert!(groups.iter().any(|g| g == "operators"), "{groups:?}");
}
