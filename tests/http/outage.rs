//! A backend that goes away and comes back. The real binary runs on a
//! PostgreSQL or Redis server of the test's own (started from the machine's
//! binaries, so it can be stopped): while the server is down, requests that
//! need it get `503` and the log says why, everything else keeps serving;
//! when it is back, gatehouse recovers by itself and nothing acknowledged
//! before the outage is lost.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::Browser;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a server binary is, or `None` (skip; under CI, fail).
fn find(name: &str, candidates: &[PathBuf]) -> Option<PathBuf> {
    let found = candidates.iter().find(|p| p.is_file()).cloned();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {name} is not installed"
        );
        eprintln!("skipped: {name} is not installed");
    }
    found
}

fn on_path(name: &str) -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A Redis server with an append-only file synced on every write, so a
/// restart keeps what it acknowledged.
struct Redis {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Option<Self> {
        let binary = find("redis-server", &on_path("redis-server"))?;
        let mut redis = Self {
            binary,
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            child: None,
        };
        redis.up();
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn up(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill redis");
            child.wait().expect("wait redis");
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

/// A PostgreSQL cluster of the test's own (as the `postgres` user when the
/// tests run as root, since PostgreSQL refuses to run as root).
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    fn start() -> Option<Self> {
        let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| d.flatten().map(|e| e.path().join("bin/pg_ctl")).collect())
            .unwrap_or_default();
        candidates.sort();
        candidates.reverse();
        candidates.extend(on_path("pg_ctl"));
        let pg_ctl = find("PostgreSQL (pg_ctl)", &candidates)?;
        let pg = Self {
            bin: pg_ctl.parent().expect("bin dir").to_owned(),
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
        };
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(pg.dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster directory to postgres");
        }
        pg.run(
            "initdb",
            &["-U", "gatehouse", "--auth=trust", "-E", "UTF8", "-D"],
            Some(&pg.data()),
        );
        pg.up();
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://gatehouse@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str], path: Option<&Path>) {
        let binary = self.bin.join(tool);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(binary);
            c
        } else {
            Command::new(binary)
        };
        command.args(args);
        if let Some(path) = path {
            command.arg(path);
        }
        let out = command.output().expect(tool);
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-w",
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-D",
                &data.to_string_lossy(),
                "start",
            ],
            None,
        );
        wait_for_port(self.port);
    }

    fn down(&self) {
        self.run(
            "pg_ctl",
            &[
                "-w",
                "-m",
                "fast",
                "-D",
                &self.data().to_string_lossy(),
                "stop",
            ],
            None,
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(data)
            .arg("stop")
            .output();
    }
}

/// The real binary, serving on a free port, with its log collected.
struct Server {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn command(dir: &Path, env: &[(&str, String)]) -> Command {
        let mut c = crate::helpers::command(BIN);
        c.env("GATEHOUSE_DATA", dir)
            .env("GATEHOUSE_BCRYPT_COST", "4")
            .env(
                "GATEHOUSE_SECRETS",
                "outage-test-secret-of-at-least-32-bytes",
            )
            .envs(env.iter().map(|(k, v)| (*k, v)));
        c
    }

    fn start(dir: &Path, env: &[(&str, String)]) -> Self {
        let mut add = Self::command(dir, env)
            .args(["user", "add", "alice", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("user add");
        add.stdin
            .take()
            .expect("stdin")
            .write_all(b"correct horse\n")
            .expect("password");
        let out = add.wait_with_output().expect("user add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let mut child = Self::command(dir, env)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
        let (_, url) = crate::raw::served_url(&mut child);
        let log = crate::raw::collect_log(&mut child);
        Self { child, url, log }
    }

    fn logged(&self, needle: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains(needle))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn visits(b: &Browser) -> i64 {
    let page = b.get("/");
    assert_eq!(page.status, 200, "{}", page.body);
    page.text_of("visits")
        .expect("visits")
        .parse()
        .expect("number")
}

/// The outage itself, the same for every backend: `down` and `up` stop and
/// start it; `name` is what the log line must mention.
fn survive_an_outage(server: &Server, name: &str, down: &mut dyn FnMut(), up: &mut dyn FnMut()) {
    let alice = Browser::new(&server.url);
    assert_eq!(alice.login("alice", "correct horse").status, 303);
    assert_eq!(visits(&alice), 1);
    assert_eq!(visits(&alice), 2);

    down();
    let verify = alice.get("/auth/verify");
    assert_eq!(verify.status, 503, "verify while {name} is down");
    assert_eq!(alice.get("/").status, 503);
    let api = alice.get("/api/session");
    assert_eq!(api.status, 503);
    assert!(api.body.contains("\"error\""), "{}", api.body);
    let stranger = Browser::new(&server.url);
    assert_eq!(stranger.login("alice", "correct horse").status, 503);
    let health = stranger.get("/healthz");
    assert_eq!(health.status, 503);
    assert_eq!(
        health.body,
        format!("{name} unavailable"),
        "the backend is named"
    );
    // What needs no backend is still served.
    assert_eq!(stranger.get("/login").status, 200);
    assert_eq!(stranger.get("/assets/style.css").status, 200);
    assert!(
        server.logged("backend unavailable") && server.logged(name),
        "no log line names {name}: {:?}",
        server.log.lock().expect("log")
    );

    up();
    let deadline = Instant::now() + Duration::from_secs(15);
    while alice.get("/auth/verify").status != 200 {
        assert!(Instant::now() < deadline, "did not recover from the outage");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        visits(&alice),
        3,
        "a visit acknowledged before the outage was lost"
    );
    assert_eq!(stranger.get("/healthz").status, 200);
    assert_eq!(stranger.login("alice", "correct horse").status, 303);
}

#[test]
fn a_redis_outage_gives_503_and_heals_without_losing_sessions() {
    let Some(redis) = Redis::start() else { return };
    let redis = Arc::new(Mutex::new(redis));
    let dir = tempfile::tempdir().expect("temp dir");
    let url = redis.lock().expect("redis").url();
    let server = Server::start(dir.path(), &[("GATEHOUSE_SESSION_STORE", url)]);
    survive_an_outage(
        &server,
        "Redis",
        &mut || redis.lock().expect("redis").down(),
        &mut || redis.lock().expect("redis").up(),
    );
}

#[test]
fn a_postgres_outage_gives_503_and_heals_without_losing_sessions() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[("GATEHOUSE_DATABASE", pg.url())]);
    survive_an_outage(&server, "PostgreSQL", &mut || pg.down(), &mut || pg.up());
}
