//! Files at rest are private: the real binary, started under a permissive
//! umask (`000`), leaves a `0700` data directory and `0600` files (the
//! database, its `-wal` and `-shm`, the secret, backups); and it warns,
//! naming the path, when the data directory or the database is readable by
//! others.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// The binary with `args`, run by a shell that first sets umask 000, so
/// any private mode comes from gatehouse itself.
fn open_umask(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("umask 000; exec \"$@\"").arg("sh");
    if let Some(runner) = std::env::var_os("GATEHOUSE_TEST_RUNNER").filter(|r| !r.is_empty()) {
        cmd.arg(runner);
    }
    cmd.arg(BIN)
        .args(args)
        .env("GATEHOUSE_DATA", dir)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .env_remove("GATEHOUSE_DATABASE")
        .env_remove("GATEHOUSE_SESSION_STORE");
    cmd
}

struct Served {
    child: Child,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Served {
    fn start(dir: &Path) -> Self {
        let mut child = open_umask(dir, &["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stderr);
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().expect("lines").push(line);
            }
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = out.next().expect("a line").expect("utf-8");
        let url = first.split_whitespace().last().expect("url").to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{first}");
        std::thread::spawn(move || for _ in out {});
        Self { child, url, stderr }
    }

    /// Waits (up to 10 s) for a log line containing `needle`.
    fn logged(&self, needle: &str) -> Option<String> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Some(l) = self
                .stderr
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.contains(needle))
            {
                return Some(l.clone());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "{status:?}");
        self.stderr.lock().expect("lines").clone()
    }
}

/// Every path under `dir`, `dir` included.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            all.extend(tree(&path));
        } else {
            all.push(path);
        }
    }
    all
}

fn assert_private(dir: &Path) {
    for path in tree(dir) {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{} is {:o}", path.display(), mode(&path));
    }
}

#[test]
fn a_fresh_start_and_a_backup_leave_only_private_files() {
    let tmp = tempfile::tempdir().expect("dir");
    let data = tmp.path().join("data");
    let served = Served::start(&data);
    let b = crate::helpers::Browser::new(&served.url);
    assert_eq!(b.get("/healthz").status, 200);
    assert_eq!(b.get("/login").status, 200);
    let names: Vec<String> = tree(&data)
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
        .collect();
    for expected in [
        "gatehouse.db",
        "gatehouse.db-wal",
        "gatehouse.db-shm",
        "secret",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert_private(&data);

    let backup = tmp.path().join("copy.db");
    let out = open_umask(&data, &["backup", backup.to_str().expect("utf-8")])
        .output()
        .expect("backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&backup), 0o600, "the backup is {:o}", mode(&backup));

    let log = served.stop();
    assert!(
        !log.iter().any(|l| l.contains("readable by other users")),
        "{log:?}"
    );
    assert_private(&data);

    // The commands that write without a server: a user added to a fresh
    // directory, a restore into one.
    let other = tmp.path().join("other");
    let mut add = open_umask(&other, &["user", "add", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("user add");
    std::io::Write::write_all(&mut add.stdin.take().expect("stdin"), b"correct horse\n")
        .expect("password");
    assert!(add.wait().expect("wait").success());
    assert_private(&other);
    let restored = tmp.path().join("restored");
    let out = open_umask(
        &restored,
        &["restore", backup.to_str().expect("utf-8"), "--yes"],
    )
    .output()
    .expect("restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_private(&restored);
}

#[test]
fn a_data_directory_or_database_others_can_read_is_named_in_a_warning() {
    let tmp = tempfile::tempdir().expect("dir");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let served = Served::start(&data);
    let line = served
        .logged("readable by other users")
        .expect("a warning about the directory");
    assert!(line.contains(&data.display().to_string()), "{line}");
    let log = served.stop();
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("readable by other users"))
            .count(),
        1,
        "one line, for the directory only: {log:?}"
    );
    // An existing directory keeps its mode: warned about, not changed.
    assert_eq!(mode(&data), 0o755);

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let db = data.join("gatehouse.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let served = Served::start(&data);
    let line = served
        .logged("readable by other users")
        .expect("a warning about the database");
    assert!(line.contains(&db.display().to_string()), "{line}");
    served.stop();
}
