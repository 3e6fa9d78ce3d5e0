//! Backups while serving, restores, and upgrades of older databases.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::helpers::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn gatehouse(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    crate::helpers::command(BIN)
        .args(args)
        .env("GATEHOUSE_DATA", dir)
        .output()
        .expect("run")
}

fn users_and_sessions(conn: &rusqlite::Connection) -> (BTreeSet<String>, BTreeSet<Vec<u8>>) {
    let mut users = conn.prepare("SELECT username FROM users").expect("users");
    let users = users
        .query_map([], |r| r.get(0))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    let mut keys = conn.prepare("SELECT key FROM sessions").expect("sessions");
    let keys = keys
        .query_map([], |r| r.get(0))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    (users, keys)
}

#[test]
fn a_backup_taken_under_load_holds_everything_that_existed_when_it_began() {
    if !crate::helpers::on_sqlite(
        "a_backup_taken_under_load_holds_everything_that_existed_when_it_began",
    ) {
        return;
    }
    let app = TestApp::spawn_with(&[("threads", "16")]);
    for i in 0..20 {
        app.add_user(&format!("user{i}"), "correct horse", false);
    }
    for i in 0..20 {
        app.browser().login(&format!("user{i}"), "correct horse");
    }
    let busy = Arc::new(AtomicBool::new(true));
    let load: Vec<_> = (0..4)
        .map(|t| {
            let base = app.base.clone();
            let busy = Arc::clone(&busy);
            let users = app.state().users.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while busy.load(Ordering::SeqCst) {
                    let b = crate::helpers::Browser::new(&base);
                    b.login(&format!("user{}", n % 20), "correct horse");
                    b.get("/");
                    let name =
                        gatehouse::users::Username::parse(&format!("load{t}x{n}")).expect("name");
                    users
                        .create(&name, "correct horse", false)
                        .expect("create during load");
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let before = users_and_sessions(&app.db());
    let copy = app.dir.path().join("backup.db");
    let out = gatehouse(app.dir.path(), &["backup", copy.to_str().expect("utf-8")]);
    busy.store(false, Ordering::SeqCst);
    let writes: usize = load
        .into_iter()
        .map(|t| t.join().expect("load thread"))
        .sum();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(writes > 0, "no load ran during the backup");

    let conn = rusqlite::Connection::open(&copy).expect("the copy opens");
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(ok, "ok");
    let (users, sessions) = users_and_sessions(&conn);
    assert!(before.0.is_subset(&users), "users missing from the backup");
    // Sessions deleted by a later login's regeneration are legitimately gone;
    // every session that existed and still exists must be in the copy.
    let (_, now_live) = users_and_sessions(&app.db());
    let kept: BTreeSet<_> = before.1.intersection(&now_live).cloned().collect();
    assert!(
        kept.is_subset(&sessions),
        "sessions missing from the backup"
    );
    assert!(before.1.len() >= 20);

    let again = gatehouse(app.dir.path(), &["backup", copy.to_str().expect("utf-8")]);
    assert!(!again.status.success(), "overwrote an existing backup");
}

#[test]
fn a_restore_brings_a_backup_back() {
    if !crate::helpers::on_sqlite("a_restore_brings_a_backup_back") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let add = |name: &str| {
        let mut child = crate::helpers::command(BIN)
            .args(["user", "add", name, "--password-stdin"])
            .env("GATEHOUSE_DATA", d)
            .env("GATEHOUSE_BCRYPT_COST", "4")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"correct horse\n")
            .expect("write");
        assert!(child.wait().expect("wait").success());
    };
    add("kept");
    let copy = d.join("b.db");
    assert!(
        gatehouse(d, &["backup", copy.to_str().expect("utf-8")])
            .status
            .success()
    );
    add("later");
    let refused = gatehouse(d, &["restore", copy.to_str().expect("utf-8")]);
    assert!(!refused.status.success(), "restore without --yes");
    let out = gatehouse(d, &["restore", copy.to_str().expect("utf-8"), "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8_lossy(&gatehouse(d, &["user", "list"]).stdout).into_owned();
    assert!(list.contains("kept") && !list.contains("later"), "{list}");
    let garbage = d.join("garbage.db");
    std::fs::write(&garbage, b"not a database at all").expect("write");
    assert!(
        !gatehouse(d, &["restore", garbage.to_str().expect("utf-8"), "--yes"])
            .status
            .success()
    );
}

/// The version-1 schema, as the first release wrote it.
const V1: &str = "CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL COLLATE NOCASE UNIQUE,
     password_hash TEXT NOT NULL, is_admin INTEGER NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL, password_changed_at INTEGER NOT NULL);
   CREATE TABLE sessions (key BLOB PRIMARY KEY NOT NULL, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
     data TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL, last_seen_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL, absolute_expires_at INTEGER NOT NULL, persistent INTEGER NOT NULL DEFAULT 0,
     user_agent TEXT, ip TEXT) WITHOUT ROWID;
   CREATE INDEX sessions_by_expiry ON sessions(expires_at);
   CREATE INDEX sessions_by_user ON sessions(user_id);
   PRAGMA user_version = 1;";

#[test]
fn a_newer_binary_migrates_an_older_file_and_an_older_binary_refuses_a_newer_one() {
    if !crate::helpers::on_sqlite(
        "a_newer_binary_migrates_an_older_file_and_an_older_binary_refuses_a_newer_one",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    {
        let conn = rusqlite::Connection::open(dir.path().join("gatehouse.db")).expect("create");
        conn.execute_batch(V1).expect("v1");
        conn.execute(
            "INSERT INTO users (username, password_hash, is_admin, created_at, password_changed_at) VALUES ('veteran', ?1, 1, 0, 0)",
            [bcrypt::hash("correct horse", 4).expect("hash")],
        )
        .expect("user");
    }
    let list = gatehouse(dir.path(), &["user", "list"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("veteran"));
    let conn = rusqlite::Connection::open(dir.path().join("gatehouse.db")).expect("open");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, gatehouse::db::SCHEMA_VERSION, "not migrated");

    conn.pragma_update(None, "user_version", 99)
        .expect("pretend a newer gatehouse wrote it");
    drop(conn);
    let refused = gatehouse(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("schema version 99") && err.contains("newer"),
        "{err}"
    );
}

#[test]
fn a_restore_keeps_each_session_with_its_user_and_one_of_another_database_maps_no_one() {
    if !crate::helpers::on_sqlite(
        "a_restore_keeps_each_session_with_its_user_and_one_of_another_database_maps_no_one",
    ) {
        return;
    }
    let mut app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let alice = app.browser();
    assert_eq!(alice.login("alice", "correct horse").status, 303);
    let mine = app.dir.path().join("mine.db");
    let out = gatehouse(app.dir.path(), &["backup", mine.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another installation's backup, with bob as user 1 as alice is here.
    let elsewhere = TestApp::spawn();
    elsewhere.add_user("bob", "bobs password", false);
    let theirs = app.dir.path().join("theirs.db");
    let out = gatehouse(
        elsewhere.dir.path(),
        &["backup", theirs.to_str().expect("utf-8")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let restore = |app: &mut TestApp, file: &std::path::Path| {
        app.running.take().expect("running").shutdown();
        let out = crate::helpers::when_released(|| {
            gatehouse(
                app.dir.path(),
                &["restore", file.to_str().expect("utf-8"), "--yes"],
            )
        });
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let carried = |app: &TestApp| {
        let b = app.browser();
        *b.jar.lock().expect("jar") = alice.jar.lock().expect("jar").clone();
        b
    };

    // Her own backup: her session comes back with her (the stamps went
    // into the backup and came out of it).
    restore(&mut app, &mine);
    let mut app = app.restart();
    let verify = carried(&app).get("/auth/verify");
    assert_eq!(
        verify.header("Remote-User"),
        Some("alice"),
        "{}",
        verify.status
    );

    // The other one: her cookie is no one's, bob's password works.
    restore(&mut app, &theirs);
    let app = app.restart();
    let verify = carried(&app).get("/auth/verify");
    assert_eq!((verify.status, verify.header("Remote-User")), (401, None));
    let bob = app.browser();
    assert_eq!(bob.login("bob", "bobs password").status, 303);
    assert_eq!(bob.get("/auth/verify").header("Remote-User"), Some("bob"));
    let aside: Vec<_> = std::fs::read_dir(app.dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("foreign"))
        .collect();
    assert!(
        aside.is_empty(),
        "a restore's own -wal was taken for another's: {aside:?}"
    );
}
