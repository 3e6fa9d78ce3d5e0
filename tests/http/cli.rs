//! The real binary: user and session commands, and serve's start and stop.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::helpers::{Browser, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

pub(crate) fn gatehouse(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    run(dir, &crate::helpers::backend_env(dir), args, stdin)
}

/// Runs the binary on `dir` with `env` (settings as environment variables).
fn run(
    dir: &std::path::Path,
    env: &[(String, String)],
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut child = crate::helpers::command(BIN)
        .args(args)
        .env("GATEHOUSE_DATA", dir)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gatehouse");
    if let Some(input) = stdin {
        let written = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes());
        // A command that fails before it reads (a taken name, say) may be
        // gone already; its exit status and output tell the test the rest.
        if let Err(e) = written {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write: {e}");
        }
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_is_there_on_every_level() {
    let dir = tempfile::tempdir().expect("dir");
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["user", "--help"],
        &["user", "add", "--help"],
        &["session", "--help"],
        &["session", "revoke", "--help"],
    ] {
        let out = ok(&gatehouse(dir.path(), args, None));
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
    assert!(ok(&gatehouse(dir.path(), &["--version"], None)).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn user_commands_manage_users() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    assert!(
        ok(&gatehouse(
            d,
            &["user", "add", "alice", "--admin", "--password-stdin"],
            Some("correct horse\n")
        ))
        .contains("administrator alice")
    );
    ok(&gatehouse(
        d,
        &["user", "add", "bob", "--password-stdin"],
        Some("battery staple\n"),
    ));
    assert!(
        fails(&gatehouse(
            d,
            &["user", "add", "ALICE", "--password-stdin"],
            Some("correct horse\n")
        ))
        .contains("already exists")
    );
    assert!(
        fails(&gatehouse(
            d,
            &["user", "add", "carol", "--password-stdin"],
            Some("short\n")
        ))
        .contains("at least 8")
    );
    assert!(
        fails(&gatehouse(
            d,
            &["user", "add", "carol", "--password-stdin"],
            Some(&format!("{}\n", "x".repeat(73)))
        ))
        .contains("72 bytes")
    );
    assert!(
        fails(&gatehouse(
            d,
            &["user", "add", "bad name", "--password-stdin"],
            Some("correct horse\n")
        ))
        .contains("username")
    );
    assert!(
        fails(&gatehouse(d, &["user", "add", "carol"], None)).contains("--password-stdin"),
        "no terminal, no prompt"
    );

    let list = ok(&gatehouse(d, &["user", "list"], None));
    let alice = list
        .lines()
        .find(|l| l.starts_with("alice"))
        .expect("alice listed");
    assert!(alice.split_whitespace().nth(1) == Some("yes"), "{alice}");
    assert!(list.lines().any(|l| l.starts_with("bob")));

    ok(&gatehouse(d, &["user", "disable", "bob"], None));
    let bob = ok(&gatehouse(d, &["user", "list"], None));
    let bob = bob.lines().find(|l| l.starts_with("bob")).expect("bob");
    assert_eq!(bob.split_whitespace().nth(2), Some("yes"), "{bob}");
    ok(&gatehouse(d, &["user", "enable", "bob"], None));
    ok(&gatehouse(
        d,
        &["user", "passwd", "bob", "--password-stdin"],
        Some("new password\n"),
    ));
    ok(&gatehouse(d, &["user", "delete", "bob"], None));
    assert!(!ok(&gatehouse(d, &["user", "list"], None)).contains("bob"));
    assert!(fails(&gatehouse(d, &["user", "delete", "bob"], None)).contains("no such user"));
}

/// Starts `gatehouse serve` on port 0 and returns it with its URL.
fn serve(
    dir: &std::path::Path,
    expect_setup: bool,
) -> (std::process::Child, String, Option<String>) {
    serve_with(dir, &crate::helpers::backend_env(dir), expect_setup)
}

fn serve_with(
    dir: &std::path::Path,
    env: &[(String, String)],
    expect_setup: bool,
) -> (std::process::Child, String, Option<String>) {
    let mut child = crate::helpers::command(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA", dir)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let url = first.split_whitespace().last().expect("url").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
    let mut next_line = || lines.next().expect("a line").expect("utf-8");
    assert!(next_line().starts_with("data directory"));
    let setup = expect_setup.then(|| {
        assert!(next_line().starts_with("no users yet"));
        next_line().trim().to_owned()
    });
    std::thread::spawn(move || for _ in lines {});
    (child, url, setup)
}

fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    for _ in 0..100 {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("serve did not stop within 5 s of SIGTERM");
}

#[test]
fn serve_prints_its_url_serves_logins_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    ok(&gatehouse(
        dir.path(),
        &["user", "add", "alice", "--password-stdin"],
        Some("correct horse\n"),
    ));
    let (mut child, url, _) = serve(dir.path(), false);
    let b = Browser::new(&url);
    assert_eq!(b.get("/healthz").status, 200);
    b.login("alice", "correct horse");
    assert_eq!(b.get("/auth/verify").status, 200);

    // Session commands see the live session and can end it.
    let list = ok(&gatehouse(
        dir.path(),
        &["session", "list", "--user", "alice"],
        None,
    ));
    assert!(list.contains("1 session(s)"), "{list}");
    assert!(
        !list.contains(&b.cookie("gatehouse_session").expect("cookie")[..20]),
        "ids never printed"
    );
    ok(&gatehouse(
        dir.path(),
        &["session", "revoke", "--user", "alice"],
        None,
    ));
    assert_eq!(
        b.get("/auth/verify").status,
        401,
        "revoked session still valid"
    );

    let status = terminate(&mut child);
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_first_start_prints_a_one_time_setup_link() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut child, url, setup) = serve(dir.path(), true);
    let setup = setup.expect("a setup link is printed when no user exists");
    assert!(setup.starts_with(&format!("{url}/setup?token=")), "{setup}");
    let b = Browser::new(&url);
    let page = b.get(setup.trim_start_matches(&url));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"setup-form\""));
    assert!(terminate(&mut child).success());
}

#[test]
fn disabling_or_changing_a_password_ends_sessions() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let d = app.dir.path();
    ok(&gatehouse(
        d,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("new password\n"),
    ));
    assert_eq!(
        b.get("/auth/verify").status,
        401,
        "passwd must end sessions"
    );
    b.login("alice", "new password");
    assert_eq!(b.get("/auth/verify").status, 200);
    ok(&gatehouse(d, &["user", "disable", "alice"], None));
    assert_eq!(
        b.get("/auth/verify").status,
        401,
        "disable must end sessions"
    );
    assert_eq!(b.login("alice", "new password").status, 401);
    ok(&gatehouse(d, &["user", "enable", "alice"], None));
    b.login("alice", "new password");
    ok(&gatehouse(d, &["user", "delete", "alice"], None));
    assert_eq!(
        b.get("/auth/verify").status,
        401,
        "delete must end sessions"
    );
    assert_eq!(app.session_rows(), 0);
}

#[test]
fn a_bad_setting_stops_start_up_with_its_name() {
    let dir = tempfile::tempdir().expect("dir");
    let out = crate::helpers::command(BIN)
        .args(["serve"])
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_IDLE_TIMEOUT", "forever")
        .output()
        .expect("run");
    let err = fails(&out);
    assert!(
        err.contains("idle_timeout") && err.contains("GATEHOUSE_IDLE_TIMEOUT"),
        "{err}"
    );
}

#[test]
fn migrate_store_moves_users_and_live_sessions_off_sqlite() {
    let Some(postgres) = gatehouse::db::postgres::test_url() else {
        return;
    };
    let redis = gatehouse::db::redis::test_url();
    let mut targets = vec![false];
    if redis.is_some() {
        targets.push(true);
    }
    for to_redis in targets {
        let dir = tempfile::tempdir().expect("dir");
        let secret = ("GATEHOUSE_SECRETS".to_owned(), "s".repeat(40));
        let sqlite = vec![secret.clone()];
        ok(&run(
            dir.path(),
            &sqlite,
            &["user", "add", "alice", "--password-stdin"],
            Some("correct horse\n"),
        ));
        // Groups and memberships move too; being in admins is what makes
        // an administrator.
        ok(&run(dir.path(), &sqlite, &["group", "add", "ops"], None));
        ok(&run(
            dir.path(),
            &sqlite,
            &["user", "groups", "alice", "--add", "ops", "--add", "admins"],
            None,
        ));
        // And her tokens.
        let token = ok(&run(
            dir.path(),
            &sqlite,
            &["token", "create", "alice", "--name", "monitor"],
            None,
        ))
        .trim()
        .to_owned();
        let (mut child, url, _) = serve_with(dir.path(), &sqlite, false);
        let mut b = Browser::new(&url);
        assert_eq!(b.login("alice", "correct horse").status, 303);
        b.get("/");
        assert_eq!(b.get("/").text_of("visits").as_deref(), Some("2"));
        // An authenticator too, which must move with her.
        let (seed, _) = crate::factors::enrol(&b);
        assert!(terminate(&mut child).success());

        let schema = gatehouse::db::postgres::scratch_schema(&postgres).expect("schema");
        let mut shared = vec![secret, ("GATEHOUSE_DATABASE".to_owned(), schema)];
        let mut ca_files = vec![("database_ca_file", "GATEHOUSE_TEST_POSTGRES_CA_FILE")];
        if to_redis {
            ca_files.push(("session_store_ca_file", "GATEHOUSE_TEST_REDIS_CA_FILE"));
        }
        shared.extend(
            ca_files
                .into_iter()
                .filter_map(|(setting, var)| crate::helpers::ca_file(setting, var))
                .map(|(k, v)| (gatehouse::config::env_name(&k), v)),
        );
        if to_redis {
            shared.push((
                "GATEHOUSE_SESSION_STORE".to_owned(),
                redis.clone().expect("redis"),
            ));
            shared.push((
                "GATEHOUSE_STORE_PREFIX".to_owned(),
                gatehouse::db::redis::scratch_prefix(),
            ));
        }
        let file = dir.path().join("gatehouse.db");
        let file = file.to_str().expect("utf-8 path");
        // Users first, then sessions in a second run (as after a run that
        // was stopped half way): the second run finishes the job.
        if !to_redis {
            let users = ok(&run(
                dir.path(),
                &shared,
                &["migrate-store", "--from", file],
                None,
            ));
            assert!(users.contains("copied 1 users"), "{users}");
        }
        let moved = ok(&run(
            dir.path(),
            &shared,
            &["migrate-store", "--from", file, "--sessions"],
            None,
        ));
        let copied = if to_redis {
            "copied 1 users"
        } else {
            "copied 0 users (1 already there)"
        };
        assert!(moved.contains(copied), "{moved}");
        assert!(moved.contains("copied 1 live sessions"), "{moved}");
        assert!(moved.contains("copied 1 tokens"), "{moved}");
        let again = ok(&run(
            dir.path(),
            &shared,
            &["migrate-store", "--from", file],
            None,
        ));
        assert!(
            again.contains("copied 0 users (1 already there)"),
            "{again}"
        );
        // Sessions copied before are recognised as there (the store says
        // `Exists`), not a failure: a re-run copies none and succeeds.
        let sessions_again = ok(&run(
            dir.path(),
            &shared,
            &["migrate-store", "--from", file, "--sessions"],
            None,
        ));
        assert!(
            sessions_again.contains("copied 0 live sessions"),
            "{sessions_again}"
        );
        // A database with users of its own is refused.
        ok(&run(
            dir.path(),
            &shared,
            &["user", "add", "mallory", "--password-stdin"],
            Some("mallory password\n"),
        ));
        let foreign = fails(&run(
            dir.path(),
            &shared,
            &["migrate-store", "--from", file],
            None,
        ));
        assert!(foreign.contains("\"mallory\""), "{foreign}");
        ok(&run(
            dir.path(),
            &shared,
            &["user", "delete", "mallory"],
            None,
        ));

        // The same cookie, the same data, on the new backend.
        let (mut child, url, _) = serve_with(dir.path(), &shared, false);
        b.base = url;
        let verify = b.get("/auth/verify");
        assert_eq!(verify.status, 200, "to_redis={to_redis}");
        assert_eq!(verify.header("Remote-User"), Some("alice"));
        assert_eq!(verify.header("Remote-Groups"), Some("admins,ops"));
        let by_token = Browser::new(&b.base).get_with(
            "/auth/verify",
            &[("Authorization", &format!("Bearer {token}"))],
        );
        assert_eq!(by_token.status, 200, "the token moved: {}", by_token.body);
        assert_eq!(b.get("/admin").status, 200, "still an administrator");
        assert_eq!(b.get("/").text_of("visits").as_deref(), Some("3"));
        let fresh = Browser::new(&b.base);
        crate::factors::password_step(&fresh, "alice");
        let t = crate::factors::unix_now();
        let done = crate::factors::second(&fresh, "code", &crate::factors::code_at(&seed, t + 30));
        assert_eq!(done.status, 303, "the authenticator moved along: {done:?}");
        // New users do not collide with the ids copied over.
        ok(&run(
            dir.path(),
            &shared,
            &["user", "add", "bob", "--password-stdin"],
            Some("bob password\n"),
        ));
        assert!(terminate(&mut child).success());
    }
}

#[test]
fn backup_and_restore_point_postgres_users_to_its_own_tools() {
    let Some(postgres) = gatehouse::db::postgres::test_url() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let mut env = vec![(
        "GATEHOUSE_DATABASE".to_owned(),
        gatehouse::db::postgres::scratch_schema(&postgres).expect("schema"),
    )];
    env.extend(
        crate::helpers::ca_file("database_ca_file", "GATEHOUSE_TEST_POSTGRES_CA_FILE")
            .map(|(k, v)| (gatehouse::config::env_name(&k), v)),
    );
    let out = fails(&run(dir.path(), &env, &["backup", "x.db"], None));
    assert!(out.contains("pg_dump"), "{out}");
    let out = fails(&run(
        dir.path(),
        &env,
        &["migrate-store", "--from", "nope.db"],
        None,
    ));
    assert!(out.contains("no SQLite file"), "{out}");
}

#[test]
fn oidc_rotate_key_makes_new_keys_and_check_config_never_shows_a_client_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = "grafana-secret-0123456789-abcdef";
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        format!(
            "public_url = \"https://auth.lan\"\n\n[[clients]]\nid = \"grafana\"\nsecret = \"{secret}\"\n\
             redirect_uris = [\"https://grafana.lan/login/generic_oauth\"]\n\n\
             [[clients]]\nid = \"immich\"\nredirect_uris = [\"app.immich:///oauth-callback\"]\n"
        ),
    )
    .expect("config");
    let kid = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("new RS256 signing key: kid "))
            .unwrap_or_else(|| panic!("no RS256 key in {out}"))
            .to_owned()
    };
    let first = ok(&gatehouse(dir.path(), &["oidc", "rotate-key"], None));
    let second = ok(&gatehouse(dir.path(), &["oidc", "rotate-key"], None));
    assert_ne!(kid(&first), kid(&second), "{first}\n{second}");
    assert!(second.contains("stay published for 1h"), "{second}");
    let shown = ok(&gatehouse(dir.path(), &["check-config"], None));
    assert!(!shown.contains(secret), "{shown}");
    assert!(
        shown.contains("client \"grafana\": name \"grafana\", secret ***"),
        "{shown}"
    );
    assert!(
        shown.contains("client \"immich\": name \"immich\", public (no secret)"),
        "{shown}"
    );
    assert!(shown.contains("oidc.code_lifetime"), "{shown}");
    // A client error stops check-config naming the client and the field.
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        "public_url = \"https://auth.lan\"\n[[clients]]\nid = \"x\"\nredirect_uris = [\"https://a/#frag\"]\n",
    )
    .expect("config");
    let err = fails(&gatehouse(dir.path(), &["check-config"], None));
    assert!(err.contains("client \"x\": invalid redirect_uris"), "{err}");
}

#[test]
fn user_profile_shows_and_sets_a_users_names() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    ok(&gatehouse(
        d,
        &["user", "add", "alice", "--password-stdin"],
        Some("correct horse\n"),
    ));
    let shown = ok(&gatehouse(d, &["user", "profile", "alice"], None));
    assert!(
        shown.contains("display name: -") && shown.contains("e-mail: -"),
        "{shown}"
    );
    let set = ok(&gatehouse(
        d,
        &[
            "user",
            "profile",
            "alice",
            "--display-name",
            "Alice Liddell",
            "--email",
            "alice@lan.test",
        ],
        None,
    ));
    assert!(set.contains("display name: Alice Liddell"), "{set}");
    assert!(set.contains("e-mail: alice@lan.test (verified)"), "{set}");
    // One at a time: the other stays.
    let renamed = ok(&gatehouse(
        d,
        &["user", "profile", "alice", "--display-name", "Alice"],
        None,
    ));
    assert!(
        renamed.contains("e-mail: alice@lan.test (verified)"),
        "{renamed}"
    );
    // The administrator takes the word back, and gives it again.
    let unchecked = ok(&gatehouse(
        d,
        &["user", "profile", "alice", "--verified", "false"],
        None,
    ));
    assert!(
        unchecked.contains("e-mail: alice@lan.test (not verified)"),
        "{unchecked}"
    );
    let checked = ok(&gatehouse(
        d,
        &["user", "profile", "alice", "--verified", "true"],
        None,
    ));
    assert!(
        checked.contains("e-mail: alice@lan.test (verified)"),
        "{checked}"
    );
    fails(&gatehouse(
        d,
        &["user", "profile", "alice", "--verified", "maybe"],
        None,
    ));
    let refused = fails(&gatehouse(
        d,
        &["user", "profile", "alice", "--email", "not an address"],
        None,
    ));
    assert!(refused.contains("e-mail address"), "{refused}");
    let cleared = ok(&gatehouse(
        d,
        &["user", "profile", "alice", "--email", ""],
        None,
    ));
    assert!(cleared.contains("e-mail: -"), "{cleared}");
    fails(&gatehouse(d, &["user", "profile", "nobody"], None));
}
