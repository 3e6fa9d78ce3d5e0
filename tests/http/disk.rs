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
