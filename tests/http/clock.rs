//! Wall-clock steps, on the real binary under libfaketime: the clock the
//! server reads is stepped back a day while it runs (the monotonic clock is
//! left alone, as a real step leaves it), and put right again.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::helpers::{Browser, assert_redirects_to};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// The multi-threaded libfaketime, where Debian's `libfaketime` puts it.
fn libfaketime() -> Option<PathBuf> {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but libfaketime is not installed"
        );
        eprintln!("skipped: install libfaketime to run the clock-step tests");
    }
    found
}

/// `gatehouse serve` whose wall clock is offset by the contents of `offset`
/// (libfaketime syntax: `+0`, `-1d`), re-read on every call.
struct Server {
    child: Child,
    url: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    fn start(dir: &Path, faketime: &Path, offset: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = crate::helpers::command(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GATEHOUSE_DATA", dir)
            .env("GATEHOUSE_BCRYPT_COST", "4")
            .envs(crate::helpers::backend_env(dir))
            .envs(env.iter().copied())
            .env("LD_PRELOAD", faketime)
            .env("FAKETIME_TIMESTAMP_FILE", offset)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        let (first, url) = crate::raw::served_url(&mut child);
        assert!(url.starts_with("http://127.0.0.1:"), "{first}");
        let log = crate::raw::collect_log(&mut child);
        Self { child, url, log }
    }

    fn logged(&self, needle: &str) -> usize {
        let log = self.log.lock().expect("log");
        log.iter().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's `Date` header, as seconds since the epoch.
fn server_date(b: &Browser) -> i64 {
    let resp = b.get("/healthz");
    let date = resp.header("date").expect("Date").to_owned();
    httpdate(&date).unwrap_or_else(|| panic!("not an HTTP date: {date}"))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = i64::try_from(months.iter().position(|x| *x == month)?).ok()? + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms.first()? * 3600 + hms.get(1)? * 60 + hms.get(2)?)
}

fn step(offset: &Path, to: &str) {
    std::fs::write(offset, to).expect("offset file");
}

#[test]
fn a_clock_stepped_back_a_day_neither_lengthens_a_lockout_nor_signs_anyone_out() {
    let Some(faketime) = libfaketime() else {
        return;
    };
    if std::env::var_os("GATEHOUSE_TEST_RUNNER").is_some_and(|r| !r.is_empty()) {
        eprintln!("skipped: LD_PRELOAD does not reach a binary run under an emulator");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let offset = dir.path().join("faketime-offset");
    step(&offset, "+0");
    let data = dir.path().join("data");
    let add = crate::helpers::command(BIN)
        .args(["user", "add", "alice", "--password-stdin"])
        .env("GATEHOUSE_DATA", &data)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .envs(crate::helpers::backend_env(&data))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(b"correct horse\n")?;
            c.wait()
        })
        .expect("user add");
    assert!(add.success());
    let server = Server::start(
        &data,
        &faketime,
        &offset,
        &[
            ("GATEHOUSE_LOGIN_MAX_FAILURES", "2"),
            ("GATEHOUSE_LOGIN_LOCKOUT", "60s"),
            ("GATEHOUSE_LOGIN_MAX_LOCKOUT", "2m"),
            // Every request touches the session, so a touch made while the
            // clock is wrong is written.
            ("GATEHOUSE_TOUCH_INTERVAL", "1s"),
        ],
    );
    let alice = Browser::new(&server.url);
    assert_redirects_to(&alice.login("alice", "correct horse"), "/");
    assert_eq!(alice.get("/").status, 200);

    let mallory = Browser::new(&server.url);
    for _ in 0..2 {
        assert_eq!(mallory.login("bob", "guess").status, 401);
    }
    assert_eq!(mallory.login("bob", "guess").status, 429);

    let before = server_date(&alice);
    step(&offset, "-1d");
    let during = server_date(&alice);
    assert!(
        (before - during - 86_400).abs() < 120,
        "the step did not reach the server: {before} then {during}"
    );

    // The lockout still ends within its configured maximum.
    let locked = mallory.login("bob", "guess");
    assert_eq!(locked.status, 429);
    let retry: u64 = locked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry <= 120, "Retry-After: {retry} after a step back");

    // Alice keeps using her session while the clock is wrong...
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..3 {
        assert_eq!(alice.get("/").status, 200, "signed out during the step");
    }
    // ...and is still signed in once it is put right.
    step(&offset, "+0");
    assert!((server_date(&alice) - before).abs() < 120);
    assert_eq!(alice.get("/").status, 200, "signed out after the step");
    assert_eq!(alice.get("/auth/verify").status, 200);
    // The step was reported, once.
    assert_eq!(server.logged("system clock stepped back by 86"), 1);
}
