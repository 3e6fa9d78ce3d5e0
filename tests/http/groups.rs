//! Groups: the command line (the real binary), the admin page's Groups
//! section, the last-administrator rule through every path, and a user's
//! groups in `Remote-Groups`, the signed identity header and
//! `/api/session`.

use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::cli::{fails, gatehouse, ok};
use crate::helpers::TestApp;

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
    let accounts =
        gatehouse::accounts::Accounts::new(&state.users, state.engine().store().as_ref());
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
