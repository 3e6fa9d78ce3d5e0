//! Storage on a bad day: one server per data directory, restores that
//! refuse while it serves, and (in `faults`) a data directory that fills up
//! or turns read-only under the real binary.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// Runs the binary on `dir` with `env`, stdin closed. A command still
/// running after a generous deadline (a server that should have refused to
/// start) is killed and fails the test.
fn gatehouse(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut child = crate::helpers::command(BIN)
        .args(args)
        .env("GATEHOUSE_DATA", dir)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .envs(crate::helpers::backend_env(dir))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gatehouse");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "gatehouse {args:?} still running after 30 s\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let app = TestApp::spawn();
    let out = gatehouse(
        app.dir.path(),
        &[("GATEHOUSE_LISTEN", "127.0.0.1:0")],
        &["serve"],
    );
    assert!(!out.status.success(), "a second server started");
    let err = stderr(&out);
    assert!(
        err.contains("another gatehouse server is running on the data directory")
            && err.contains(&app.dir.path().display().to_string()),
        "{err}"
    );
    // The first one is unharmed.
    assert_eq!(app.browser().get("/healthz").status, 200);
}

#[test]
fn short_cli_commands_run_beside_the_server() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let out = gatehouse(app.dir.path(), &[], &["user", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice"));
}

#[test]
fn the_data_directory_is_free_again_once_the_server_stopped() {
    let app = TestApp::spawn();
    let app = app.restart();
    assert_eq!(app.browser().get("/healthz").status, 200);
}

#[test]
fn restore_refuses_while_a_server_holds_the_data_directory() {
    if !crate::helpers::on_sqlite("restore_refuses_while_a_server_holds_the_data_directory") {
        return;
    }
    let app = TestApp::spawn();
    app.add_user("before", "correct horse", false);
    let copy = app.dir.path().join("copy.db");
    let out = gatehouse(
        app.dir.path(),
        &[],
        &["backup", copy.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    app.add_user("after", "correct horse", false);
    let out = gatehouse(
        app.dir.path(),
        &[],
        &["restore", copy.to_str().expect("utf-8"), "--yes"],
    );
    assert!(!out.status.success(), "restored under a running server");
    assert!(
        stderr(&out).contains("another gatehouse server is running"),
        "{}",
        stderr(&out)
    );
    // Nothing was replaced.
    assert!(
        app.state()
            .users
            .find_by_name("after")
            .expect("find")
            .is_some()
    );
}

/// A data directory on a tmpfs of its own, small enough to fill: the
/// storage faults of a bad day, made on demand. Needs root (to mount);
/// without it, or where mounting is not allowed, the tests that need one
/// say so and pass.
struct SmallDisk {
    mount: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(test: &str) -> Option<Self> {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if !root {
            eprintln!("{test}: skipped: mounting a small tmpfs needs root");
            return None;
        }
        let mount = tempfile::tempdir().expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
            .arg(mount.path())
            .output()
            .expect("run mount");
        if !out.status.success() {
            eprintln!(
                "{test}: skipped: cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Self { mount })
    }

    /// The data directory, inside the mount.
    fn data(&self) -> std::path::PathBuf {
        self.mount.path().join("data")
    }

    /// Takes every free byte.
    fn fill(&self) {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.mount.path().join("filler")).expect("filler");
        for chunk in [64 * 1024, 4096, 512, 1] {
            let buf = vec![0u8; chunk];
            while f.write_all(&buf).is_ok() {}
        }
        let probe = std::fs::write(self.mount.path().join("probe"), [0u8; 4096]);
        assert!(probe.is_err(), "the disk is not full");
    }

    /// Gives the space back.
    fn free(&self) {
        std::fs::remove_file(self.mount.path().join("filler")).expect("free");
        let _ = std::fs::remove_file(self.mount.path().join("probe"));
    }

    fn remount(&self, mode: &str) -> Output {
        std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.mount.path())
            .output()
            .expect("run mount")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.mount.path())
            .output();
    }
}

/// The real binary serving `dir`, its log collected.
struct Served {
    child: std::process::Child,
    url: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Served {
    fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Result<Self, String> {
        Self::start_with(crate::helpers::command(BIN), dir, env)
    }

    /// Serves as the unprivileged user `nobody`, for whom file modes count.
    fn start_as_nobody(dir: &std::path::Path, env: &[(&str, &str)]) -> Result<Self, String> {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        Self::start_with(c, dir, env)
    }

    fn start_with(
        mut command: std::process::Command,
        dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        use std::io::BufRead as _;
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEHOUSE_DATA", dir)
            .env("GATEHOUSE_BCRYPT_COST", "4")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&log);
        let stderr = child.stderr.take().expect("stderr");
        let logger = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().expect("log").push(line);
            }
        });
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        match lines.next() {
            Some(Ok(first)) => {
                let url = first.split_whitespace().last().expect("url").to_owned();
                std::thread::spawn(move || for _ in lines {});
                Ok(Self { child, url, log })
            }
            _ => {
                let _ = child.wait();
                let _ = logger.join();
                Err(log.lock().expect("log").join("\n"))
            }
        }
    }

    fn logged(&self, needle: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains(needle))
    }

    fn browser(&self) -> crate::helpers::Browser {
        crate::helpers::Browser::new(&self.url)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a CLI command with a password on stdin.
fn with_password(dir: &std::path::Path, args: &[&str], password: &str) -> Output {
    use std::io::Write as _;
    let mut child = crate::helpers::command(BIN)
        .args(args)
        .env("GATEHOUSE_DATA", dir)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gatehouse");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes());
    child.wait_with_output().expect("wait")
}

/// A read-only look at the database file, as an operator would take it.
fn stored(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        dir.join("gatehouse.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the database")
}

fn user_exists(dir: &std::path::Path, name: &str) -> bool {
    stored(dir)
        .query_row(
            "SELECT count(*) FROM users WHERE username = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .expect("users")
        == 1
}

fn user_flag(dir: &std::path::Path, name: &str, column: &str) -> i64 {
    stored(dir)
        .query_row(
            &format!("SELECT {column} FROM users WHERE username = ?1"),
            [name],
            |r| r.get(0),
        )
        .expect("user")
}

fn visits(b: &crate::helpers::Browser) -> Option<i64> {
    let page = b.get("/");
    (page.status == 200).then(|| {
        page.text_of("visits")
            .expect("visits")
            .parse()
            .expect("number")
    })
}

fn stored_visits(dir: &std::path::Path) -> Vec<i64> {
    let conn = stored(dir);
    let mut stmt = conn
        .prepare("SELECT coalesce(json_extract(data, '$.visits'), 0) FROM sessions ORDER BY 1")
        .expect("sessions");
    stmt.query_map([], |r| r.get(0))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
}

fn admin_post(
    b: &crate::helpers::Browser,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> u16 {
    let Some(csrf) = b.get(page).csrf() else {
        return 0;
    };
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all).status
}

#[test]
fn with_the_disk_full_nothing_is_acknowledged_that_is_not_stored_and_writes_resume_after() {
    let test =
        "with_the_disk_full_nothing_is_acknowledged_that_is_not_stored_and_writes_resume_after";
    if !crate::helpers::on_sqlite(test) {
        return;
    }
    let Some(disk) = SmallDisk::mount(test) else {
        return;
    };
    let d = disk.data();
    for (name, admin) in [
        ("alice", true),
        ("bob", false),
        ("carol", false),
        ("erin", false),
    ] {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        if admin {
            args.push("--admin");
        }
        let out = with_password(&d, &args, "correct horse");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let env = [("GATEHOUSE_TOUCH_INTERVAL", "1s")];
    let server = Served::start(&d, &env).expect("serves");
    let alice = server.browser();
    assert_eq!(alice.login("alice", "correct horse").status, 303);
    let alice2 = server.browser();
    assert_eq!(alice2.login("alice", "correct horse").status, 303);
    let carol = server.browser();
    assert_eq!(carol.login("carol", "correct horse").status, 303);
    let mut acknowledged = visits(&alice).expect("a visit");

    disk.fill();
    // Due a touch: forward auth must keep answering signed-in users.
    std::thread::sleep(Duration::from_millis(1100));
    let mut failures = 0;
    for round in 0..20 {
        let verify = alice.get("/auth/verify");
        assert_eq!(
            verify.status, 200,
            "forward auth failed while the disk is full"
        );
        assert_eq!(verify.header("Remote-User"), Some("alice"));
        match visits(&alice) {
            Some(n) => {
                assert_eq!(n, acknowledged + 1, "round {round}");
                acknowledged = n;
            }
            None => failures += 1,
        }
    }
    let page = alice.get("/");
    if page.status != 200 {
        assert_eq!(page.status, 503, "{}", page.body);
        assert!(page.header("Retry-After").is_some());
    }

    let bob = server.browser();
    let bob_in = bob.login("bob", "correct horse").status;
    assert!(bob_in == 303 || bob_in == 503, "bob: {bob_in}");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        bob_in == 303,
        server
            .log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains("login ok") && l.contains("bob")),
        "a sign-in that was not stored was logged as ok: {:?}",
        server.log
    );
    let patch = alice.send_json("PATCH", "/api/session/data", r#"{"theme":"dark"}"#, &[]);
    assert!(
        patch.status == 200 || patch.status == 503,
        "patch: {}",
        patch.status
    );
    let carol_out = carol.logout().status;
    let end_others = admin_post(&alice, "/account", "/account/sessions/end-others", &[]);
    let created = admin_post(
        &alice,
        "/admin/users",
        "/admin/users",
        &[("username", "frank"), ("password", "frank's pass")],
    );
    let dave = with_password(
        &d,
        &["user", "add", "dave", "--password-stdin"],
        "correct horse",
    );
    let passwd = with_password(
        &d,
        &["user", "passwd", "erin", "--password-stdin"],
        "new horse 1",
    );
    let disable = gatehouse(&d, &[], &["user", "disable", "carol"]);
    let delete = gatehouse(&d, &[], &["user", "delete", "erin"]);
    let copy = disk.mount.path().join("copy.db");
    let backup = gatehouse(&d, &[], &["backup", copy.to_str().expect("utf-8")]);
    failures += [
        bob_in == 503,
        patch.status == 503,
        carol_out == 503,
        created == 503,
    ]
    .into_iter()
    .filter(|f| *f)
    .count();
    failures += [&dave, &passwd, &disable, &delete, &backup]
        .into_iter()
        .filter(|o| !o.status.success())
        .count();
    eprintln!("{test}: {failures} writes refused while the disk was full");
    assert!(
        failures > 0,
        "the full disk made no write fail; the harness is broken"
    );

    disk.free();
    // What was acknowledged is stored; what was refused is not.
    assert!(
        stored_visits(&d).contains(&acknowledged),
        "acknowledged {acknowledged} visits, stored {:?}",
        stored_visits(&d)
    );
    assert_eq!(
        visits(&alice),
        Some(acknowledged + 1),
        "the same server writes again"
    );
    if bob_in == 303 {
        assert_eq!(
            bob.get("/auth/verify").status,
            200,
            "bob's acknowledged sign-in was lost"
        );
    } else {
        assert_eq!(bob.get("/auth/verify").status, 401);
    }
    let data = alice.get("/api/session");
    assert_eq!(
        patch.status == 200,
        data.body.contains("dark"),
        "patch {} but data {}",
        patch.status,
        data.body
    );
    assert_eq!(
        carol_out == 303,
        carol.get("/auth/verify").status == 401,
        "logout {carol_out}"
    );
    assert_eq!(
        end_others == 303,
        alice2.get("/auth/verify").status == 401,
        "end-others {end_others}"
    );
    assert_eq!(
        created == 303,
        user_exists(&d, "frank"),
        "admin create {created}"
    );
    assert_eq!(
        dave.status.success(),
        user_exists(&d, "dave"),
        "{}",
        stderr(&dave)
    );
    assert_eq!(
        disable.status.success(),
        user_flag(&d, "carol", "disabled") == 1,
        "{}",
        stderr(&disable)
    );
    assert_eq!(
        delete.status.success(),
        !user_exists(&d, "erin"),
        "{}",
        stderr(&delete)
    );
    if !delete.status.success() {
        let changed =
            user_flag(&d, "erin", "password_changed_at") != user_flag(&d, "erin", "created_at");
        assert_eq!(passwd.status.success(), changed, "{}", stderr(&passwd));
    }
    if backup.status.success() {
        stored(disk.mount.path()).execute_batch("").expect("sound");
        assert!(copy.exists());
    } else {
        assert!(!copy.exists(), "a failed backup left its file");
    }
    let leftovers: Vec<_> = std::fs::read_dir(disk.mount.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("copy") && n != "copy.db")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    // Everything writes again on the same server.
    let bob = server.browser();
    assert_eq!(bob.login("bob", "correct horse").status, 303);
    let out = with_password(
        &d,
        &["user", "add", "grace", "--password-stdin"],
        "correct horse",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.browser().get("/healthz").status, 200);
    // The log says what failed in words, once.
    assert!(
        server.logged("database or disk is full"),
        "{:?}",
        server.log
    );
    assert!(
        !server.logged("SqliteFailure") && !server.logged("Some("),
        "{:?}",
        server.log
    );
}

/// A small disk for `test` whose data directory holds the user alice, or
/// `None` where `test` cannot run (not on SQLite, or no disk to mount).
fn small_disk_with_alice(test: &str) -> Option<SmallDisk> {
    if !crate::helpers::on_sqlite(test) {
        return None;
    }
    let disk = SmallDisk::mount(test)?;
    let out = with_password(
        &disk.data(),
        &["user", "add", "alice", "--password-stdin"],
        "correct horse",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    Some(disk)
}

#[test]
fn a_read_only_database_stops_the_start_with_its_path_and_a_writable_one_starts() {
    let test = "a_read_only_database_stops_the_start_with_its_path_and_a_writable_one_starts";
    let Some(disk) = small_disk_with_alice(test) else {
        return;
    };
    let d = disk.data();
    // A server ran here before: the data directory has its lock file.
    drop(Served::start(&d, &[]).expect("serves"));
    let ro = disk.remount("ro");
    assert!(
        ro.status.success(),
        "{}",
        String::from_utf8_lossy(&ro.stderr)
    );
    let refused = Served::start(&d, &[])
        .err()
        .expect("started on a read-only database");
    assert!(
        refused.contains("cannot be written")
            && refused.contains(&d.join("gatehouse.db").display().to_string()),
        "{refused}"
    );
    let rw = disk.remount("rw");
    assert!(
        rw.status.success(),
        "{}",
        String::from_utf8_lossy(&rw.stderr)
    );
    let server = Served::start(&d, &[]).expect("serves once writable");
    assert_eq!(server.browser().login("alice", "correct horse").status, 303);
}

#[test]
fn a_cli_change_is_in_the_database_file_itself_when_the_command_exits() {
    if !crate::helpers::on_sqlite(
        "a_cli_change_is_in_the_database_file_itself_when_the_command_exits",
    ) {
        return;
    }
    // The server keeps the file open, so SQLite's own checkpoint on the
    // last close never runs for the CLI's connection.
    let app = TestApp::spawn();
    let out = with_password(
        app.dir.path(),
        &["user", "add", "bob", "--password-stdin"],
        "correct horse",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The file alone, as a copy without its -wal would see it.
    let alone = app.dir.path().join("alone.db");
    std::fs::copy(app.db_path(), &alone).expect("copy");
    let conn = rusqlite::Connection::open(&alone).expect("open the copy");
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM users WHERE username = 'bob'",
            [],
            |r| r.get(0),
        )
        .expect("users");
    assert_eq!(n, 1, "the new user is only in the -wal");
}

#[test]
fn a_backup_leaves_no_companion_files_and_never_touches_an_unrelated_partial_file() {
    if !crate::helpers::on_sqlite(
        "a_backup_leaves_no_companion_files_and_never_touches_an_unrelated_partial_file",
    ) {
        return;
    }
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let out_dir = tempfile::tempdir().expect("dir");
    let unrelated = out_dir.path().join("x.partial");
    std::fs::write(&unrelated, b"someone else's file").expect("write");
    let dest = out_dir.path().join("x.db");
    let out = gatehouse(
        app.dir.path(),
        &[],
        &["backup", dest.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&unrelated).expect("still there"),
        b"someone else's file"
    );
    let mut names: Vec<String> = std::fs::read_dir(out_dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["x.db", "x.partial"], "files beside the backup");
    let conn =
        rusqlite::Connection::open_with_flags(&dest, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .expect("users");
    assert_eq!(n, 1);
}

/// A data directory with alice (an administrator) added by the CLI.
fn data_with_alice() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = with_password(
        dir.path(),
        &["user", "add", "alice", "--admin", "--password-stdin"],
        "correct horse",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

#[test]
fn a_database_replaced_while_serving_is_noticed_and_never_written() {
    if !crate::helpers::on_sqlite("a_database_replaced_while_serving_is_noticed_and_never_written")
    {
        return;
    }
    let dir = data_with_alice();
    let other = tempfile::tempdir().expect("temp dir");
    let out = with_password(
        other.path(),
        &["user", "add", "bob", "--password-stdin"],
        "correct horse",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let server = Served::start(dir.path(), &[]).expect("serves");
    let alice = server.browser();
    assert_eq!(alice.login("alice", "correct horse").status, 303);
    assert_eq!(alice.get("/auth/verify").status, 200);

    std::fs::rename(
        other.path().join("gatehouse.db"),
        dir.path().join("gatehouse.db"),
    )
    .expect("replace");
    // What is on disk now, to show that nothing is written from here on.
    let snapshot = || {
        ["", "-wal"].map(|suffix| {
            std::fs::read(format!(
                "{}{suffix}",
                dir.path().join("gatehouse.db").display()
            ))
            .unwrap_or_default()
        })
    };
    let before = snapshot();
    // A read may still be served from the file this server opened for a
    // moment (its directory's watch reports the swap on its own thread;
    // issue 22); a write never is (checked before every commit).
    eventually_unavailable(|| alice.get("/auth/verify").status);
    let bob = server.browser();
    assert_eq!(bob.login("bob", "correct horse").status, 503);
    let health = server.browser().get("/healthz");
    assert_eq!(health.status, 503);
    assert!(health.body.contains("replaced"), "{}", health.body);
    assert!(
        server.logged("was replaced by another file"),
        "{:?}",
        server.log
    );
    assert!(
        before == snapshot(),
        "the server wrote while the file was replaced"
    );
}

#[test]
fn a_deleted_database_is_not_recreated_while_serving_nor_at_the_next_start() {
    if !crate::helpers::on_sqlite(
        "a_deleted_database_is_not_recreated_while_serving_nor_at_the_next_start",
    ) {
        return;
    }
    let dir = data_with_alice();
    let db = dir.path().join("gatehouse.db");
    let server = Served::start(dir.path(), &[]).expect("serves");
    let alice = server.browser();
    assert_eq!(alice.login("alice", "correct horse").status, 303);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    assert_eq!(server.browser().login("alice", "correct horse").status, 503);
    eventually_unavailable(|| alice.get("/auth/verify").status);
    let setup = server.browser().get("/setup");
    assert_ne!(setup.status, 200, "the first-run page is back");
    assert!(
        !db.exists(),
        "a fresh database was made behind the server's back"
    );
    assert!(
        server.logged("was deleted or moved away"),
        "{:?}",
        server.log
    );
    drop(server);

    let refused = Served::start(dir.path(), &[])
        .err()
        .expect("started without its database");
    assert!(
        refused.contains("there is no database at") && refused.contains("secret"),
        "{refused}"
    );
    assert!(!db.exists());
    let out = gatehouse(dir.path(), &[], &["user", "list"]);
    assert!(!out.status.success(), "the CLI made a fresh database");
    assert!(!db.exists());
}

#[test]
fn a_failed_restore_says_what_is_wrong_once_in_plain_words() {
    if !crate::helpers::on_sqlite("a_failed_restore_says_what_is_wrong_once_in_plain_words") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"not a database at all").expect("write");
    let out = gatehouse(
        dir.path(),
        &[],
        &["restore", garbage.to_str().expect("utf-8"), "--yes"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.matches("not a database").count(), 1, "{err}");
    assert!(err.starts_with("gatehouse: restore failed: "), "{err}");
    assert!(
        !err.contains("Some(") && !err.contains("SqliteFailure"),
        "{err}"
    );
}

#[test]
fn healthz_reports_writes_that_fail_and_recovers() {
    if !crate::helpers::on_sqlite("healthz_reports_writes_that_fail_and_recovers") {
        return;
    }
    let app = TestApp::spawn();
    assert_eq!(app.browser().get("/healthz").status, 200);
    // Reads work, every commit fails: what a full disk looks like to SQLite.
    app.db()
        .execute_batch(
            "CREATE TRIGGER no_writes BEFORE UPDATE ON meta \
             BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
        )
        .expect("trigger");
    std::thread::sleep(Duration::from_millis(1100));
    let broken = app.browser().get("/healthz");
    assert_eq!(broken.status, 503);
    assert_eq!(broken.body, "SQLite database cannot be written");
    assert!(broken.header("Retry-After").is_some());
    app.db()
        .execute_batch("DROP TRIGGER no_writes")
        .expect("drop trigger");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(app.browser().get("/healthz").status, 200);
}

/// Sets the mode of the database and its `-wal` and `-shm`.
fn chmod_database(dir: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", dir.join("gatehouse.db").display());
        if std::path::Path::new(&path).exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
    }
}

#[test]
fn after_the_database_was_read_only_for_a_while_the_same_server_writes_again() {
    let test = "after_the_database_was_read_only_for_a_while_the_same_server_writes_again";
    if !crate::helpers::on_sqlite(test) {
        return;
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        eprintln!("{test}: skipped: needs root to serve as another user (root ignores file modes)");
        return;
    }
    let dir = data_with_alice();
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(dir.path())
        .status()
        .expect("chown");
    assert!(chown.success());
    let Ok(server) = Served::start_as_nobody(dir.path(), &[("GATEHOUSE_THREADS", "8")]) else {
        eprintln!("{test}: skipped: cannot serve as nobody");
        return;
    };
    let alice = server.browser();
    assert_eq!(alice.login("alice", "correct horse").status, 303);
    let mut acknowledged = visits(&alice).expect("a visit");

    chmod_database(dir.path(), 0o444);
    // Requests at once make the pool open connections, read-only now.
    let burst: Vec<_> = (0..24)
        .map(|_| {
            let b = alice.clone_cookies();
            std::thread::spawn(move || b.get("/").status)
        })
        .collect();
    let statuses: Vec<u16> = burst
        .into_iter()
        .map(|t| t.join().expect("request"))
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    eprintln!("{test}: burst while read-only: {statuses:?}");
    acknowledged += statuses.iter().filter(|s| **s == 200).count() as i64;

    chmod_database(dir.path(), 0o644);
    for round in 0..40 {
        let n = visits(&alice);
        assert_eq!(
            n,
            Some(acknowledged + 1),
            "round {round}: writes still fail after the fix"
        );
        acknowledged += 1;
    }
}

#[test]
fn a_migration_on_a_full_disk_changes_nothing_and_runs_once_there_is_space() {
    let test = "a_migration_on_a_full_disk_changes_nothing_and_runs_once_there_is_space";
    let Some(disk) = small_disk_with_alice(test) else {
        return;
    };
    let d = disk.data();
    // Back to schema version 2, as an older gatehouse left it.
    let version = || -> i64 {
        stored(&d)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version")
    };
    let current = version();
    {
        let conn = rusqlite::Connection::open(d.join("gatehouse.db")).expect("open");
        conn.execute_batch(
            "DROP TABLE audit; DROP TABLE oidc_clients; DROP TABLE oidc_logouts; DROP TABLE invites; DROP TABLE reset_links; DROP TABLE signin_links; \
             DROP TABLE access_tokens; DROP TABLE user_groups; DROP TABLE groups; \
             ALTER TABLE users ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0; \
             DROP TABLE oidc_devices; DROP TABLE oidc_tokens; DROP TABLE oidc_codes; \
             DROP TABLE oidc_grants; DROP TABLE oidc_keys; DROP TABLE oidc_subjects; \
             DROP INDEX users_by_external_id; ALTER TABLE users DROP COLUMN source; \
             ALTER TABLE users DROP COLUMN external_id; \
             ALTER TABLE users DROP COLUMN display_name; ALTER TABLE users DROP COLUMN email; \
             ALTER TABLE users DROP COLUMN email_verified; \
             DROP TABLE passkeys; DROP TABLE recovery_codes; DROP TABLE totp; \
             DROP TABLE meta; ALTER TABLE sessions DROP COLUMN database_id; \
             ALTER TABLE users DROP COLUMN stamp; ALTER TABLE sessions DROP COLUMN user_stamp; \
             PRAGMA user_version = 2; PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .expect("downgrade");
    }
    // Bulk in the file, so the migration needs new pages.
    disk.fill();
    let out = gatehouse(&d, &[], &["user", "list"]);
    eprintln!("{test}: on the full disk: {}", stderr(&out).trim());
    if !out.status.success() {
        // Read from the file's header (`user_version` is at byte 60): with
        // the disk full, not even a read-only connection can map its -shm.
        let header = std::fs::read(d.join("gatehouse.db")).expect("read");
        let on_file = i32::from_be_bytes(header[60..64].try_into().expect("4 bytes"));
        let wal = std::fs::metadata(d.join("gatehouse.db-wal")).map_or(0, |m| m.len());
        assert!(
            on_file == 2 && wal == 0,
            "a failed migration left version {on_file}, wal {wal}"
        );
        assert!(!stderr(&out).contains("SqliteFailure"), "{}", stderr(&out));
    }
    disk.free();
    let out = gatehouse(&d, &[], &["user", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice"));
    assert_eq!(version(), current);
}

impl Served {
    /// Stops the server as an operator does (SIGTERM) and waits for it.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "SIGTERM not sent");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "the server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL): it closes nothing, as in a crash or a
    /// power cut, so its `-wal` stays behind.
    fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A browser on this server holding `other`'s cookies.
    fn browser_with_cookies_of(&self, other: &crate::helpers::Browser) -> crate::helpers::Browser {
        let b = self.browser();
        *b.jar.lock().expect("jar") = other.jar.lock().expect("jar").clone();
        b
    }
}

/// How another database file takes the place of `gatehouse.db`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Swap {
    /// `mv other.db gatehouse.db`: another inode at the path.
    Rename,
    /// `cp other.db gatehouse.db` (a restore by copying): the same inode,
    /// its bytes replaced.
    CopyOver,
}

impl Swap {
    fn apply(self, other: &std::path::Path, db: &std::path::Path) {
        match self {
            Self::Rename => std::fs::rename(other, db).expect("rename over"),
            Self::CopyOver => {
                std::fs::copy(other, db).expect("copy over");
            }
        }
    }
}

/// How the server on the first file ends, and when: relative to the swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Swapped while it serves, then stopped with SIGTERM.
    ServingThroughTheSwap,
    /// Stopped with SIGTERM, then swapped.
    CleanlyFirst,
    /// Killed (a crash: its `-wal` stays behind, hot), then swapped.
    CrashFirst,
}

/// Fails unless `verify` (an answer to alice's cookie) is no one or alice.
fn never_bob(verify: &crate::helpers::Resp, when: &str) {
    assert!(
        verify.status != 200 || verify.header("Remote-User") == Some("alice"),
        "{when}: alice's cookie answered {} as {:?}",
        verify.status,
        verify.header("Remote-User")
    );
}

/// The `-wal` files moved aside in `dir`.
fn moved_aside(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gatehouse.db-wal.") && n.contains("foreign"))
        .collect()
}

/// alice signed in on a server over `A`; `B` (with bob as user 1, as alice
/// is in `A`) takes `A`'s place as `swap` says, the server ending as `stop`
/// says; then a server starts on `A` again. At no point may alice's cookie
/// answer as bob; the new server serves bob's file, and a `-wal` the old
/// server left behind is moved aside, never replayed.
fn swap_scenario(test: &str, swap: Swap, stop: Stop) {
    if !crate::helpers::on_sqlite(test) {
        return;
    }
    let a = data_with_alice();
    let b = tempfile::tempdir().expect("temp dir");
    let out = with_password(
        b.path(),
        &["user", "add", "bob", "--password-stdin"],
        "bobs password",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let db = a.path().join("gatehouse.db");
    let wal = a.path().join("gatehouse.db-wal");

    let server = Served::start(a.path(), &[]).expect("serves");
    let alice = server.browser();
    assert_eq!(alice.login("alice", "correct horse").status, 303);
    assert_eq!(visits(&alice), Some(1));
    // The health check rewrites a row of `meta`: its page, with the
    // database id, is in the -wal too, as on any server that is watched.
    assert_eq!(server.browser().get("/healthz").status, 200);
    let verify = alice.get("/auth/verify");
    assert_eq!(verify.header("Remote-User"), Some("alice"));
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) > 0,
        "the session is not in the -wal: the scenario needs it there"
    );

    match stop {
        Stop::ServingThroughTheSwap => {
            swap.apply(&b.path().join("gatehouse.db"), &db);
            for round in 0..3 {
                never_bob(
                    &alice.get("/auth/verify"),
                    &format!("serving, round {round}"),
                );
            }
            server.stop();
        }
        Stop::CleanlyFirst => {
            server.stop();
            swap.apply(&b.path().join("gatehouse.db"), &db);
        }
        Stop::CrashFirst => {
            server.crash();
            assert!(wal.exists(), "a crash left no -wal");
            swap.apply(&b.path().join("gatehouse.db"), &db);
        }
    }
    // What a stale -wal beside the new file holds: the old server's pages.
    let stale = std::fs::metadata(&wal).map_or(0, |m| m.len()) > 0;
    eprintln!("{test}: a stale -wal beside the new file: {stale}");

    let server = Served::start(a.path(), &[]).expect("serves again");
    let again = server.browser_with_cookies_of(&alice);
    let verify = again.get("/auth/verify");
    never_bob(&verify, "after the restart");
    assert_eq!(verify.status, 401, "alice's session is not in bob's file");
    // Bytes copied over a file SQLite is serving are mixed with its -wal
    // by SQLite itself (its checkpoint at the stop writes the old pages
    // into the new bytes): what survives of bob's file is not this test's
    // to say, only that alice's cookie never becomes his.
    if !(swap == Swap::CopyOver && stop == Stop::ServingThroughTheSwap) {
        let sessions: i64 = stored(a.path())
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .expect("sessions");
        assert_eq!(sessions, 0, "the old server's session reached bob's file");
        let bob = server.browser();
        assert_eq!(bob.login("bob", "bobs password").status, 303);
        assert_eq!(bob.get("/auth/verify").header("Remote-User"), Some("bob"));
    }
    if stale {
        assert_eq!(
            moved_aside(a.path()).len(),
            1,
            "the stale -wal was not moved aside"
        );
        assert!(
            server.logged("was written for another database file"),
            "{:?}",
            server.log
        );
    }
}

#[test]
fn a_database_renamed_over_while_serving_never_maps_a_cookie_onto_another_user() {
    swap_scenario(
        "a_database_renamed_over_while_serving_never_maps_a_cookie_onto_another_user",
        Swap::Rename,
        Stop::ServingThroughTheSwap,
    );
}

#[test]
fn a_database_copied_over_while_serving_never_maps_a_cookie_onto_another_user() {
    swap_scenario(
        "a_database_copied_over_while_serving_never_maps_a_cookie_onto_another_user",
        Swap::CopyOver,
        Stop::ServingThroughTheSwap,
    );
}

#[test]
fn a_database_renamed_over_after_a_crash_never_meets_the_stale_wal() {
    swap_scenario(
        "a_database_renamed_over_after_a_crash_never_meets_the_stale_wal",
        Swap::Rename,
        Stop::CrashFirst,
    );
}

#[test]
fn a_database_copied_over_after_a_crash_never_meets_the_stale_wal() {
    swap_scenario(
        "a_database_copied_over_after_a_crash_never_meets_the_stale_wal",
        Swap::CopyOver,
        Stop::CrashFirst,
    );
}

#[test]
fn a_database_swapped_after_a_clean_stop_never_maps_a_cookie_onto_another_user() {
    let test = "a_database_swapped_after_a_clean_stop_never_maps_a_cookie_onto_another_user";
    swap_scenario(test, Swap::Rename, Stop::CleanlyFirst);
    swap_scenario(test, Swap::CopyOver, Stop::CleanlyFirst);
}

#[test]
fn a_cli_command_beside_a_server_whose_database_was_replaced_never_reads_the_old_wal() {
    let test = "a_cli_command_beside_a_server_whose_database_was_replaced_never_reads_the_old_wal";
    if !crate::helpers::on_sqlite(test) {
        return;
    }
    let a = data_with_alice();
    let b = tempfile::tempdir().expect("temp dir");
    let out = with_password(
        b.path(),
        &["user", "add", "bob", "--password-stdin"],
        "bobs password",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let server = Served::start(a.path(), &[]).expect("serves");
    let alice = server.browser();
    assert_eq!(alice.login("alice", "correct horse").status, 303);
    assert_eq!(server.browser().get("/healthz").status, 200);
    std::fs::rename(b.path().join("gatehouse.db"), a.path().join("gatehouse.db")).expect("replace");

    // The old server's -wal and -shm are beside the new file, and the old
    // server may still have them open: a command reads nothing through
    // them and takes nothing from under the server.
    let wal = a.path().join("gatehouse.db-wal");
    let before = std::fs::read(&wal).expect("the old server's -wal");
    let sessions = gatehouse(a.path(), &[], &["session", "list"]);
    assert!(
        !sessions.status.success(),
        "a command opened the new file beside the old -wal"
    );
    let listed = String::from_utf8_lossy(&sessions.stdout).into_owned();
    assert!(
        !listed.contains("alice") && !listed.contains("bob"),
        "the CLI read the old server's session in the new file: {listed}"
    );
    assert!(
        stderr(&sessions).contains("was written for another database file")
            && stderr(&sessions).contains("stop the server"),
        "{}",
        stderr(&sessions)
    );
    assert!(moved_aside(a.path()).is_empty());
    assert_eq!(std::fs::read(&wal).expect("still there"), before);
    never_bob(
        &alice.get("/auth/verify"),
        "the old server, after the CLI ran",
    );
    server.stop();

    // With no server left, a command moves it aside and reads bob's file.
    let users = gatehouse(a.path(), &[], &["user", "list"]);
    assert!(users.status.success(), "{}", stderr(&users));
    let listed = String::from_utf8_lossy(&users.stdout).into_owned();
    assert!(
        listed.contains("bob") && !listed.contains("alice"),
        "{listed}"
    );
    assert!(
        stderr(&users).contains("was written for another database file"),
        "{}",
        stderr(&users)
    );
    assert_eq!(moved_aside(a.path()).len(), 1);

    let server = Served::start(a.path(), &[]).expect("serves again");
    let verify = server.browser_with_cookies_of(&alice).get("/auth/verify");
    never_bob(&verify, "after the restart");
    assert_eq!(verify.status, 401);
    let conn = stored(a.path());
    let sessions: i64 = conn
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .expect("sessions");
    assert_eq!(sessions, 0, "the old server's session is in bob's file");
}

/// Polls `status` until it is `503`, for up to five seconds: a read may be
/// served from the file the server opened until its directory's watch
/// (on its own thread) has reported a swap or a deletion.
fn eventually_unavailable(mut status: impl FnMut() -> u16) {
    let start = std::time::Instant::now();
    loop {
        let got = status();
        if got == 503 {
            return;
        }
        assert_eq!(got, 200, "neither served nor refused");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "still served from the old file after five seconds"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
