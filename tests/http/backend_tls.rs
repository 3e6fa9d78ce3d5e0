//! TLS to the backends, against throw-away servers started here: a
//! PostgreSQL cluster (Debian's `initdb` and `pg_ctl`) and a `redis-server`
//! on loopback, each with a certificate made here with rcgen (a CA, a
//! server certificate for `localhost` and 127.0.0.1, and one for another
//! name). gatehouse signs users in over `sslmode=verify-full` and
//! `rediss://` with the CA file, and refuses, at start, a certificate for
//! another name or from a CA it was not given.
//!
//! Without PostgreSQL's or Redis's binaries the tests say so and skip,
//! except under CI, where that is a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gatehouse::app::{self, AppError};
use gatehouse::db::DbError;
use gatehouse::session::StoreError;

use crate::helpers::{TestApp, config};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// The password of the throw-away servers' `gatehouse` user.
const PASSWORD: &str = "tls-test-password";

/// Whether the machine has what a test needs; skipping says why, and CI
/// (which installs both) fails instead.
fn have(what: &str, found: bool, test: &str) -> bool {
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {what} is not installed"
        );
        eprintln!("{test}: skipped: {what} is not installed");
    }
    found
}

fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    // The newest, when there are several.
    found.sort();
    found.pop()
}

fn redis_server() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A port for a server that cannot be told to pick its own: chosen at
/// random below Linux's ephemeral range, and tried again elsewhere when
/// the server finds it taken.
fn some_port() -> u16 {
    20_000 + (rand::random::<u16>() % 12_000)
}

/// Whether the tests run as root, where PostgreSQL refuses to run: its
/// commands then run as the `postgres` user, and its files are that
/// user's.
fn as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A command, run as `postgres` when the tests run as root.
fn as_postgres(program: &Path) -> Command {
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn give_to_postgres(path: &Path) {
    if as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {}", path.display());
    }
}

/// The certificates: a CA, a server certificate it signed for `localhost`
/// and 127.0.0.1, one it signed for another name, and another CA that
/// signed nothing here.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let ca = Self::ca("gatehouse test CA");
        let issuer = &ca.1;
        std::fs::write(dir.path().join("ca.pem"), ca.0.pem()).expect("ca");
        for (name, names) in [
            ("right", &["localhost", "127.0.0.1"][..]),
            ("wrong", &["wrong.example"][..]),
        ] {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::new(
                names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
            )
            .expect("params");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, names[0]);
            let cert = params.signed_by(&key, issuer).expect("cert");
            std::fs::write(dir.path().join(format!("{name}.crt")), cert.pem()).expect("crt");
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem())
                .expect("key");
        }
        let other = Self::ca("another CA");
        std::fs::write(dir.path().join("other-ca.pem"), other.0.pem()).expect("other ca");
        Self { dir }
    }

    fn ca(name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).expect("ca cert");
        (cert, rcgen::Issuer::new(params, key))
    }

    fn ca_file(&self) -> String {
        self.path("ca.pem")
    }

    fn other_ca_file(&self) -> String {
        self.path("other-ca.pem")
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}

/// Which server certificate a throw-away server presents.
#[derive(Clone, Copy)]
enum Cert {
    /// For `localhost` and 127.0.0.1.
    Right,
    /// For `wrong.example`.
    Wrong,
}

impl Cert {
    fn name(self) -> &'static str {
        match self {
            Self::Right => "right",
            Self::Wrong => "wrong",
        }
    }
}

/// A PostgreSQL cluster of its own in a temporary directory, on a
/// loopback port, with `ssl = on`; stopped when dropped. Its superuser is
/// `gatehouse` (password [`PASSWORD`] over TCP, trusted on its socket).
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    fn start(bin: &Path, pki: &Pki, cert: Cert) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        std::fs::copy(
            pki.path(&format!("{}.crt", cert.name())),
            root.join("server.crt"),
        )
        .expect("crt");
        std::fs::copy(
            pki.path(&format!("{}.key", cert.name())),
            root.join("server.key"),
        )
        .expect("key");
        std::fs::write(root.join("pwfile"), PASSWORD).expect("pwfile");
        set_mode(&root.join("server.key"), 0o600);
        give_to_postgres(root);
        let data = root.join("data");
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "gatehouse",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", root.join("pwfile").display()))
            .args(["--no-sync", "-E", "UTF8", "--no-instructions"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n\
             ssl = on\nssl_cert_file = '{root}/server.crt'\nssl_key_file = '{root}/server.key'\n\
             fsync = off\nmax_connections = 40\n",
            root = root.display()
        );
        let conf_file = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_file).expect("postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_file, text).expect("postgresql.conf");
        give_to_postgres(root);
        for _ in 0..20 {
            let port = some_port();
            let status = as_postgres(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(root.join("log"))
                .args(["-w", "-t", "120", "-o"])
                .arg(format!("-p {port}"))
                .arg("start")
                .stdout(Stdio::null())
                .status()
                .expect("pg_ctl");
            if status.success() {
                return Self {
                    bin: bin.to_owned(),
                    dir,
                    port,
                };
            }
        }
        panic!(
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(root.join("log")).unwrap_or_default()
        );
    }

    /// A URL for this server by `host`, with `tail` (`?sslmode=...`).
    fn url(&self, host: &str, tail: &str) -> String {
        format!(
            "postgres://gatehouse:{PASSWORD}@{host}:{}/postgres{tail}",
            self.port
        )
    }

    /// How many of gatehouse's connections use TLS, and how many do not,
    /// asked over the cluster's own socket.
    fn gatehouse_connections(&self) -> (i64, i64) {
        let mut admin = postgres::Config::new()
            .host_path(self.dir.path())
            .port(self.port)
            .user("gatehouse")
            .dbname("postgres")
            .connect(postgres::NoTls)
            .expect("the socket");
        let row = admin
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'gatehouse'",
                &[],
            )
            .expect("pg_stat_ssl");
        (row.get(0), row.get(1))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A `redis-server` with TLS only (`--port 0`), on a loopback port, with
/// the password [`PASSWORD`]; killed when dropped.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start(pki: &Pki, cert: Cert) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        for _ in 0..20 {
            let port = some_port();
            let mut child = Command::new("redis-server")
                .args(["--port", "0", "--bind", "127.0.0.1"])
                .args(["--tls-port", &port.to_string()])
                .args([
                    "--tls-cert-file",
                    &pki.path(&format!("{}.crt", cert.name())),
                ])
                .args(["--tls-key-file", &pki.path(&format!("{}.key", cert.name()))])
                .args(["--tls-ca-cert-file", &pki.ca_file()])
                .args(["--tls-auth-clients", "no"])
                .args(["--requirepass", PASSWORD])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server");
            // Ready when it says so (another server already on the port
            // would answer a probe too); gone when the port was taken.
            let (tx, rx) = mpsc::channel();
            let stdout = child.stdout.take().expect("stdout");
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("Ready to accept connections") {
                        let _ = tx.send(());
                    }
                }
            });
            let ready = rx.recv_timeout(Duration::from_secs(60)).is_ok();
            if ready {
                return Self {
                    child,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start with TLS");
    }

    fn url(&self, host: &str) -> String {
        format!("rediss://:{PASSWORD}@{host}:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Settings for every backend setting, so that none comes from the
/// suite's own backend (`GATEHOUSE_TEST_BACKEND`).
fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = [
        ("database", ""),
        ("database_ca_file", ""),
        ("session_store", "database"),
        ("session_store_ca_file", ""),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in pairs {
        all.retain(|(name, _)| name != k);
        all.push(((*k).to_owned(), (*v).to_owned()));
    }
    all
}

/// Why a server with `pairs` does not start.
fn start_error(pairs: &[(&str, &str)]) -> AppError {
    let dir = tempfile::tempdir().expect("dir");
    let config = config(dir.path(), &settings(pairs));
    match app::start_with_logging(&config, false) {
        Ok(running) => {
            running.shutdown();
            panic!("started with {pairs:?}");
        }
        Err(e) => e,
    }
}

/// Runs `gatehouse serve` with `pairs` as environment variables, and
/// returns its error output once it has stopped by itself (it must, well
/// within a minute).
fn serve_fails(pairs: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = crate::helpers::command(BIN)
        .arg("serve")
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_LISTEN", "127.0.0.1:0")
        .envs(
            settings(pairs)
                .into_iter()
                .map(|(k, v)| (gatehouse::config::env_name(&k), v)),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gatehouse serve");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gatehouse serve kept running with {pairs:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn gatehouse_signs_in_over_tls_to_postgresql_and_redis_with_verify_full_and_a_ca_file() {
    let test = "gatehouse_signs_in_over_tls_to_postgresql_and_redis_with_verify_full_and_a_ca_file";
    let Some(bin) = postgres_bin() else {
        have("PostgreSQL", false, test);
        return;
    };
    if !have("redis-server", redis_server(), test) {
        return;
    }
    let pki = Pki::new();
    let pg = Postgres::start(&bin, &pki, Cert::Right);
    let redis = Redis::start(&pki, Cert::Right);
    let database = pg.url("localhost", "?sslmode=verify-full");
    let session_store = redis.url("127.0.0.1");
    let app = TestApp::spawn_in(
        tempfile::tempdir().expect("dir"),
        settings(&[
            ("database", &database),
            ("database_ca_file", &pki.ca_file()),
            ("session_store", &session_store),
            ("session_store_ca_file", &pki.ca_file()),
        ]),
    );
    app.add_user("alice", "correct horse", false);
    let browser = app.browser();
    assert_eq!(browser.login("alice", "correct horse").status, 303);
    let verify = browser.get("/auth/verify");
    assert_eq!(verify.status, 200);
    assert_eq!(verify.header("Remote-User"), Some("alice"));
    // The session is in Redis, which listens with TLS only.
    assert_eq!(app.stored_sessions().len(), 1);
    assert_eq!(browser.get("/healthz").status, 200);
    // Every connection gatehouse holds to PostgreSQL is encrypted.
    let (tls, plain) = pg.gatehouse_connections();
    assert!(tls >= 1 && plain == 0, "{tls} over TLS, {plain} without");
}

#[test]
fn a_postgresql_certificate_for_another_name_stops_the_start_saying_why() {
    let test = "a_postgresql_certificate_for_another_name_stops_the_start_saying_why";
    let Some(bin) = postgres_bin() else {
        have("PostgreSQL", false, test);
        return;
    };
    let pki = Pki::new();
    let pg = Postgres::start(&bin, &pki, Cert::Wrong);
    let database = pg.url("localhost", "?sslmode=verify-full");
    let stderr = serve_fails(&[
        ("database", &database),
        ("database_ca_file", &pki.ca_file()),
    ]);
    assert!(
        stderr.contains("PostgreSQL: the server's TLS certificate is refused")
            && stderr.contains("not valid for name")
            && stderr.contains("localhost"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    // libpq's weaker modes are checked in full all the same.
    for mode in ["require", "verify-ca"] {
        let url = pg.url("localhost", &format!("?sslmode={mode}"));
        let err = start_error(&[("database", &url), ("database_ca_file", &pki.ca_file())]);
        assert!(
            matches!(err, AppError::Db(DbError::Certificate { .. })),
            "{mode}: {err}"
        );
    }
}

#[test]
fn a_redis_certificate_for_another_name_stops_the_start_saying_why() {
    let test = "a_redis_certificate_for_another_name_stops_the_start_saying_why";
    if !have("redis-server", redis_server(), test) {
        return;
    }
    let pki = Pki::new();
    let redis = Redis::start(&pki, Cert::Wrong);
    let url = redis.url("127.0.0.1");
    let stderr = serve_fails(&[
        ("session_store", &url),
        ("session_store_ca_file", &pki.ca_file()),
    ]);
    assert!(
        stderr.contains("Redis: the server's TLS certificate is refused")
            && stderr.contains("not valid for name")
            && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[test]
fn a_private_ca_is_trusted_only_through_its_own_file() {
    let test = "a_private_ca_is_trusted_only_through_its_own_file";
    let Some(bin) = postgres_bin() else {
        have("PostgreSQL", false, test);
        return;
    };
    if !have("redis-server", redis_server(), test) {
        return;
    }
    let pki = Pki::new();
    let pg = Postgres::start(&bin, &pki, Cert::Right);
    let redis = Redis::start(&pki, Cert::Right);
    let database = pg.url("127.0.0.1", "?sslmode=verify-full");
    let session_store = redis.url("localhost");
    // Without a CA file (Mozilla's roots), and with another CA's file.
    for ca in ["", pki.other_ca_file().as_str()] {
        let err = start_error(&[("database", &database), ("database_ca_file", ca)]);
        assert!(
            matches!(err, AppError::Db(DbError::Certificate { .. })),
            "{ca:?}: {err}"
        );
        let err = start_error(&[
            ("session_store", &session_store),
            ("session_store_ca_file", ca),
        ]);
        assert!(
            matches!(
                &err,
                AppError::Store(StoreError::Backend(why)) if why.contains("TLS certificate is refused")
            ),
            "{ca:?}: {err}"
        );
    }
    // A CA file that is not one stops the start naming the setting.
    let err = start_error(&[
        ("database", &database),
        ("database_ca_file", &pki.path("right.key")),
    ]);
    assert!(
        err.to_string().starts_with("cannot use database_ca_file:"),
        "{err}"
    );
}

#[test]
fn without_sslmode_the_connection_stays_plain_even_to_a_server_offering_tls() {
    // libpq's default would try TLS first; gatehouse's is no TLS, as it
    // was, so a server with a certificate nobody trusts (Debian's
    // snake-oil one) still serves a URL that never asked for TLS.
    let test = "without_sslmode_the_connection_stays_plain_even_to_a_server_offering_tls";
    let Some(bin) = postgres_bin() else {
        have("PostgreSQL", false, test);
        return;
    };
    let pki = Pki::new();
    let pg = Postgres::start(&bin, &pki, Cert::Wrong);
    let app = TestApp::spawn_in(
        tempfile::tempdir().expect("dir"),
        settings(&[("database", &pg.url("127.0.0.1", ""))]),
    );
    app.add_user("alice", "correct horse", false);
    assert_eq!(app.browser().login("alice", "correct horse").status, 303);
    let (tls, plain) = pg.gatehouse_connections();
    assert!(tls == 0 && plain >= 1, "{tls} over TLS, {plain} without");
}

#[test]
fn check_config_shows_the_tls_settings_with_passwords_masked() {
    let dir = tempfile::tempdir().expect("dir");
    let out = crate::helpers::command(BIN)
        .args(["check-config"])
        .env("GATEHOUSE_DATA", dir.path())
        .env(
            "GATEHOUSE_DATABASE",
            "postgres://gh:db-secret@db.lan/gh?sslmode=verify-full",
        )
        .env("GATEHOUSE_DATABASE_CA_FILE", "/etc/gatehouse/db-ca.pem")
        .env(
            "GATEHOUSE_SESSION_STORE",
            "rediss://:redis-secret@cache.lan:6380/0",
        )
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for shown in [
        "postgres://gh:***@db.lan/gh?sslmode=verify-full",
        "/etc/gatehouse/db-ca.pem",
        "rediss://:***@cache.lan:6380/0",
        "(none: Mozilla's roots, built in)",
    ] {
        assert!(text.contains(shown), "{shown} missing in\n{text}");
    }
    assert!(
        !text.contains("db-secret") && !text.contains("redis-secret"),
        "{text}"
    );
    let bad = crate::helpers::command(BIN)
        .args(["check-config"])
        .env("GATEHOUSE_DATA", dir.path())
        .env(
            "GATEHOUSE_DATABASE",
            "postgres://gh:db-secret@db.lan/gh?sslmode=prefer",
        )
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("database") && err.contains("sslmode=prefer falls back"),
        "{err}"
    );
    assert!(!err.contains("db-secret"), "{err}");
}

#[test]
fn a_server_that_accepts_and_never_answers_the_handshake_stops_the_start_in_time() {
    // A listener that is never read from: the kernel accepts the
    // connections, and the TLS handshake (or PostgreSQL's reply to the
    // request for TLS) never comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let pki = Pki::new();
    for (setting, url, ca_setting) in [
        (
            "database",
            format!("postgres://gatehouse:{PASSWORD}@localhost:{port}/x?sslmode=verify-full"),
            "database_ca_file",
        ),
        (
            "session_store",
            format!("rediss://:{PASSWORD}@localhost:{port}/0"),
            "session_store_ca_file",
        ),
    ] {
        let ca = pki.ca_file();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let err = start_error(&[(setting, &url), (ca_setting, &ca)]);
            let _ = tx.send(err.to_string());
        });
        // Generous (qemu, a loaded machine): the limit is a few seconds.
        let err = rx
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| panic!("the start hung on a silent {setting}"));
        eprintln!("{setting}: {err}");
        assert!(!err.contains(PASSWORD), "{err}");
    }
    drop(silent);
}
