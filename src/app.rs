//! Starting and stopping the server: open the database, build the shared
//! state, listen (port 0 allowed), start the reaper; and on shutdown stop
//! accepting, finish what is in flight, stop the reaper.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::auth::throttle::{MemoryRecords, PostgresRecords, Records, RedisRecords, Throttle};
use crate::config::{Config, ConfigError, Database, SessionStore};
use crate::crypto::Signer;
use crate::db::{self, DbError};
use crate::session::{Engine, PostgresStore, Reaper, RedisStore, SqliteStore, Store, StoreError};
use crate::users::Users;
use crate::users::password::Hasher;
use crate::web::{self, Health, Unhealthy};

pub mod slots;
pub mod watchdog;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Configuration was unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The secret file could not be read or made.
    #[error(transparent)]
    SecretFile(#[from] secret::SecretFileError),
    /// The database could not be opened.
    #[error("cannot open the database: {0}")]
    Db(#[from] DbError),
    /// The session store could not be opened.
    #[error("cannot open the session store: {0}")]
    Store(#[from] StoreError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The first-run check failed.
    #[error("cannot check for users: {0}")]
    Setup(String),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The certificate or key could not be used.
    #[error("cannot serve HTTPS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A backend's CA file could not be used.
    #[error("cannot use {setting}: {source}")]
    CaFile {
        /// The setting that names the file.
        setting: &'static str,
        /// Why.
        source: crate::tls::TlsError,
    },
    /// The database is missing from a data directory that had one.
    #[error(
        "there is no database at {path}, but this data directory has been used before \
         ({secret} exists); put the database back (or restore a backup with \
         `gatehouse restore`), or remove {secret} to start afresh with no users"
    )]
    MissingDatabase {
        /// Where the database should be.
        path: std::path::PathBuf,
        /// The secret that shows the directory was used.
        secret: std::path::PathBuf,
    },
    /// Another gatehouse server holds the data directory.
    #[error(
        "another gatehouse server is running on the data directory {0} (it holds {0}/{LOCK_FILE}); \
         stop it first, or give this one its own data directory"
    )]
    InUse(std::path::PathBuf),
    /// The data directory's lock file could not be opened or locked.
    #[error("cannot lock the data directory ({path}): {source}")]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The file in the data directory a server holds locked while it runs.
pub const LOCK_FILE: &str = "gatehouse.lock";

/// The data directory, held by this process: an exclusive `flock` on
/// [`LOCK_FILE`], released when this is dropped (or the process dies, so a
/// crash never leaves a stale lock behind).
///
/// One server per data directory: two would keep separate throttles,
/// separate first-run tokens and separate ideas of what the file holds.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the data directory `dir` for this process (creating it if needed).
///
/// # Errors
///
/// [`AppError::InUse`] when another process holds it; [`AppError::Lock`]
/// or [`AppError::DataDir`] when the directory or its lock file cannot be
/// used.
pub fn lock_data_dir(dir: &std::path::Path) -> Result<DataDirLock, AppError> {
    std::fs::create_dir_all(dir).map_err(|source| AppError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        // On a read-only directory the lock file of an earlier start can
        // still be locked (flock needs no write access), so the error that
        // follows is the one that matters: the database cannot be written.
        .or_else(|_| std::fs::File::open(&path))
        .map_err(|source| AppError::Lock {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(AppError::InUse(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(source)) => Err(AppError::Lock { path, source }),
    }
}

/// How many bcrypt hashes run at once: one per core, so logins cannot take
/// more CPU than the machine has while other requests wait.
fn bcrypt_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The size of the request pool: the configured `threads` for everything
/// else, plus one for each sign-in that may run or wait for bcrypt. A
/// caller waiting for a worker holds its request thread; sized like this,
/// a login storm can hold at most the extra threads, and `/healthz`,
/// `/auth/verify` and the pages are still answered on the rest.
pub fn request_threads(config: &Config, hasher: &Hasher) -> usize {
    config.threads + hasher.workers() + hasher.max_waiting()
}

/// Everything the configured backends provide.
pub struct Backends {
    /// The users.
    pub users: Users,
    /// The sessions.
    pub store: Arc<dyn Store>,
    /// Where throttling records go: memory for SQLite, else the shared store.
    pub records: Box<dyn Records>,
    /// The health check behind `/healthz`.
    pub health: Health,
    /// The OpenID Provider's codes, tokens and keys (in the database,
    /// beside the users, also when sessions are in Redis).
    pub oidc: Arc<dyn crate::oidc::Store>,
}

/// Connections each pool may hold: requests beyond 16 at once wait briefly
/// for one; each SQLite connection has its own page cache, so this also
/// bounds memory on small boards.
fn pool_size(config: &Config) -> u32 {
    u32::try_from(config.threads.min(16) + 2).unwrap_or(18)
}

pub mod descriptors;
pub mod secret;

/// What the HTTP layer (the vendored tiny_http) is configured with: the
/// connection cap (`max_connections`, or derived from the descriptor limit
/// in force), the time limits, and `tls`, which when set makes the listener
/// speak HTTPS only. Writes to a client share `body_timeout`.
fn server_options(
    config: &Config,
    limit: &descriptors::Limit,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> tiny_http::Options {
    let max_connections = config
        .max_connections
        .unwrap_or_else(|| descriptors::max_connections(limit.soft, pooled(config)));
    // A reverse proxy in front carries many clients over its connections:
    // no per-client cap for it.
    let trusted = config.trusted_proxies.clone();
    let uncapped: Arc<dyn Fn(std::net::IpAddr) -> bool + Send + Sync> =
        Arc::new(move |ip| trusted.iter().any(|n| crate::auth::proxy::contains(n, ip)));
    tiny_http::Options {
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        min_send_rate: config.min_send_rate,
        keepalive_timeout: config.keepalive_timeout,
        max_connections,
        max_connections_per_client: per_client(config, max_connections),
        uncapped: Some(uncapped),
        tls,
        log: server_log,
        ..tiny_http::Options::default()
    }
}

/// The cap on one client address's connections (and one user's WebSocket
/// tunnels) under a cap of `max_connections` in all.
fn per_client(config: &Config, max_connections: usize) -> usize {
    config
        .max_connections_per_client
        .unwrap_or_else(|| descriptors::per_client(max_connections))
}

/// The most database and Redis connections the pools may hold at once.
fn pooled(config: &Config) -> u64 {
    let pools = 1 + u64::from(matches!(config.session_store, SessionStore::Redis(_)));
    pools * u64::from(pool_size(config))
}

/// The HTTP layer's own events (an accept that failed, a connection refused
/// at the cap) as gatehouse log lines.
fn server_log(line: &str) {
    crate::logging::line(&format!("server {line}"));
}

/// Raises the descriptor limit and logs what is in force.
fn raise_descriptor_limit(config: &Config) -> descriptors::Limit {
    let limit = descriptors::raise();
    let show = |n: Option<u64>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let cap = config
        .max_connections
        .unwrap_or_else(|| descriptors::max_connections(limit.soft, pooled(config)));
    let mut line = format!(
        "descriptors limit={} max_connections={cap}",
        show(limit.soft)
    );
    if limit.soft != limit.before {
        line.push_str(&format!(" raised_from={}", show(limit.before)));
    }
    if let Some(e) = limit.error {
        line.push_str(&format!(" not_raised=\"{e}\""));
    }
    let room = descriptors::max_connections(limit.soft, pooled(config));
    if cap > room {
        // Still safe (accept errors are survived), but clients past the
        // descriptors wait in the backlog instead of getting a quick 503.
        line.push_str(&format!(
            " warning=\"max_connections is above the {room} the descriptor limit leaves room for\""
        ));
    }
    crate::logging::line(&line);
    limit
}

/// The `Strict-Transport-Security` value over HTTPS, if any.
fn hsts(config: &Config) -> Option<String> {
    if config.tls.is_none() || config.hsts_max_age.is_zero() {
        return None;
    }
    let mut value = format!("max-age={}", config.hsts_max_age.as_secs());
    if config.hsts_include_subdomains {
        value.push_str("; includeSubDomains");
    }
    Some(value)
}

/// Whether a gatehouse server holds the data directory `dir` now (see
/// [`lock_data_dir`]); changes nothing (no directory or lock file is made).
pub fn server_holds(dir: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        // Cannot tell: assume one does, so nothing is taken from under it.
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}

/// What a command does with a `-wal` of another file beside the SQLite
/// database in `dir`: moves it aside, unless a server holds the directory
/// and may have it open (then the command refuses the database).
pub fn foreign_wal_for_command(dir: &std::path::Path) -> db::ForeignWal {
    if server_holds(dir) {
        db::ForeignWal::Refuse
    } else {
        db::ForeignWal::MoveAside
    }
}

/// Opens the configured database and session store; `foreign_wal` says what
/// to do with a `-wal` of another file beside a SQLite database (see
/// [`foreign_wal_for_command`]; a server, holding its data directory, moves
/// it aside).
///
/// # Errors
///
/// When the data directory cannot be created, or a backend cannot be
/// reached or migrated.
#[inline]
pub fn open_backends(config: &Config, foreign_wal: db::ForeignWal) -> Result<Backends, AppError> {
    crate::files::create_private_dir(&config.data_dir).map_err(|source| AppError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let max = pool_size(config);
    let hasher = hasher(config);
    // The provider's store goes where the users are (set by each arm).
    let oidc: Arc<dyn crate::oidc::Store>;
    let database_ca = ca_file("database_ca_file", config.database_ca_file.as_deref())?;
    let session_store_ca = ca_file(
        "session_store_ca_file",
        config.session_store_ca_file.as_deref(),
    )?;
    let (users, store, records, db_health): (Users, Arc<dyn Store>, Box<dyn Records>, Health) =
        match &config.database {
            Database::Sqlite(path) => {
                refuse_missing_database(config, path)?;
                // Made 0600 before SQLite opens it: its -wal and -shm files
                // take the database's mode.
                crate::files::touch_private(path).map_err(|source| AppError::DataDir {
                    path: path.clone(),
                    source,
                })?;
                let pool = db::open_with(path, max, foreign_wal)?;
                let health = pool.clone();
                let probe = WriteProbe::default();
                oidc = Arc::new(crate::oidc::SqliteOidc(pool.clone()));
                (
                    Users::new(pool.clone(), hasher),
                    Arc::new(SqliteStore::new(pool)),
                    Box::new(MemoryRecords::new(
                        config.throttle_records,
                        config.login.window,
                    )),
                    Box::new(move || sqlite_health(&health, &probe)),
                )
            }
            Database::Postgres(url) => {
                let pool = db::postgres::open(url.expose_str(), max, database_ca.as_ref())?;
                let health = pool.clone();
                oidc = Arc::new(crate::oidc::PostgresOidc(pool.clone()));
                (
                    Users::postgres(pool.clone(), hasher),
                    Arc::new(PostgresStore::new(pool.clone())),
                    Box::new(PostgresRecords(pool)),
                    Box::new(move || postgres_health(&health)),
                )
            }
        };
    Ok(match &config.session_store {
        SessionStore::Database => Backends {
            users,
            store,
            records,
            health: db_health,
            oidc,
        },
        SessionStore::Redis(url) => {
            let pool =
                crate::db::redis::open_pool(url.expose_str(), max, session_store_ca.as_ref())
                    .map_err(StoreError::from)?;
            let health = pool.clone();
            Backends {
                users,
                store: Arc::new(RedisStore::new(pool.clone(), &config.store_prefix)),
                records: Box::new(RedisRecords::new(pool, &config.store_prefix)),
                health: Box::new(move || {
                    db_health()?;
                    redis_health(&health)
                }),
                oidc,
            }
        }
    })
}

/// The CA file `setting` names, read and checked, if it names one.
fn ca_file(
    setting: &'static str,
    path: Option<&std::path::Path>,
) -> Result<Option<crate::tls::client::CaFile>, AppError> {
    path.map(crate::tls::client::CaFile::read)
        .transpose()
        .map_err(|source| AppError::CaFile { setting, source })
}

/// A fresh database is made only on a first start: a data directory that
/// already holds its secret had a database, and one that is missing now was
/// moved or deleted; making an empty one would sign everyone out and offer
/// the first-run setup page to whoever comes first.
fn refuse_missing_database(config: &Config, path: &std::path::Path) -> Result<(), AppError> {
    let secret = config.data_dir.join("secret");
    if !path.exists() && secret.exists() {
        return Err(AppError::MissingDatabase {
            path: path.to_path_buf(),
            secret,
        });
    }
    Ok(())
}

/// `/healthz` on SQLite: the file is the one the server opened, both tables
/// answer, and a write commits (one row of `meta` rewritten, at most once a
/// second however often the check is polled), so a full disk or a read-only
/// file shows as `503` rather than `ok`.
fn sqlite_health(pool: &db::Pool, probe: &WriteProbe) -> Result<(), Unhealthy> {
    let unavailable = |detail: String| Unhealthy {
        reason: "SQLite database unavailable",
        detail,
    };
    let conn = pool.get().map_err(|e| match e {
        DbError::Replaced(m) => Unhealthy {
            reason: "SQLite database replaced or deleted",
            detail: m,
        },
        e => unavailable(e.detail()),
    })?;
    conn.query_row(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM users LIMIT 1)) \
                  + (SELECT count(*) FROM (SELECT 1 FROM sessions LIMIT 1)) >= 0",
        [],
        |r| r.get::<_, bool>(0),
    )
    .map_err(|e| unavailable(DbError::Sqlite(e).detail()))?;
    probe.check(|| db::probe_write(&conn).map_err(|e| DbError::Sqlite(e).detail()))
}

/// The last write probe: when it ran and what it found.
#[derive(Default)]
struct WriteProbe(std::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>);

impl WriteProbe {
    /// Runs `probe` unless it ran within the last second; the result then
    /// is the last one.
    fn check(&self, probe: impl FnOnce() -> Result<(), String>) -> Result<(), Unhealthy> {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = match &*last {
            Some((at, result)) if at.elapsed() < Duration::from_secs(1) => result.clone(),
            _ => {
                let result = probe();
                *last = Some((std::time::Instant::now(), result.clone()));
                result
            }
        };
        result.map_err(|detail| Unhealthy {
            reason: "SQLite database cannot be written",
            detail,
        })
    }
}

fn postgres_health(pool: &db::postgres::PgPool) -> Result<(), Unhealthy> {
    let unavailable = |e: &dyn std::fmt::Display| Unhealthy {
        reason: "PostgreSQL unavailable",
        detail: format!("PostgreSQL: {e}"),
    };
    let mut client = pool.get().map_err(|e| unavailable(&e))?;
    let messages = client
        .simple_query(
            "SELECT 1 FROM users LIMIT 1; SELECT 1 FROM sessions LIMIT 1; \
             SHOW transaction_read_only",
        )
        .map_err(|e| unavailable(&e))?;
    // A standby, or a server set read-only (as it is when its disk fills
    // and an operator stops writes), answers reads and refuses every write.
    let read_only = messages.iter().any(|m| match m {
        postgres::SimpleQueryMessage::Row(row) => row.get(0) == Some("on"),
        _ => false,
    });
    if read_only {
        return Err(Unhealthy {
            reason: "PostgreSQL cannot be written",
            detail: "PostgreSQL: transaction_read_only is on (a standby, or a read-only server)"
                .to_owned(),
        });
    }
    Ok(())
}

fn redis_health(pool: &crate::db::redis::RedisPool) -> Result<(), Unhealthy> {
    let unavailable = |e: &dyn std::fmt::Display| Unhealthy {
        reason: "Redis unavailable",
        detail: format!("Redis: {e}"),
    };
    let mut conn = pool.get().map_err(|e| unavailable(&e))?;
    redis::cmd("PING")
        .query::<String>(&mut *conn)
        .map(drop)
        .map_err(|e| unavailable(&e))
}

/// The password hasher with the config's bcrypt settings.
fn hasher(config: &Config) -> Arc<Hasher> {
    // Callers wait for a worker up to `login_queue_timeout`; the request
    // pool is grown by the most that can wait (see `start`), so a login
    // storm never takes the threads everything else is answered on.
    Arc::new(Hasher::new(
        config.bcrypt_cost,
        bcrypt_workers(),
        config.login_queue_timeout,
    ))
}

/// A running server.
pub struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    server: JoinHandle<()>,
    certificates: Option<Arc<crate::tls::Certificates>>,
    redirect: Option<(SocketAddr, JoinHandle<()>)>,
    reaper: Reaper,
    /// The directory sync's thread, when a directory is configured.
    directory_sync: Option<JoinHandle<()>>,
    /// The OpenID Provider's reaper thread, when the provider is on.
    oidc_reaper: Option<JoinHandle<()>>,
    /// The back-channel logout senders, when a client takes notices.
    backchannel: Vec<JoinHandle<()>>,
    state: Arc<web::State>,
    /// Held until the server is gone.
    _lock: DataDirLock,
}

impl Running {
    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &web::State {
        &self.state
    }

    /// The one-time first-run URL, while no user exists.
    pub fn setup_url(&self) -> Option<String> {
        let token = self
            .state
            .setup_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        Some(format!("{}/setup?token={token}", self.url()))
    }

    /// The base URL to open in a browser (`localhost` for a wildcard address).
    pub fn url(&self) -> String {
        let scheme = if self.certificates.is_some() {
            "https"
        } else {
            "http"
        };
        if self.addr.ip().is_unspecified() {
            format!("{scheme}://localhost:{}", self.addr.port())
        } else {
            format!("{scheme}://{}", self.addr)
        }
    }

    /// The certificate served, when the listener speaks HTTPS.
    pub fn certificates(&self) -> Option<&crate::tls::Certificates> {
        self.certificates.as_deref()
    }

    /// The address of the plain listener that redirects to HTTPS, if any.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().map(|(addr, _)| *addr)
    }

    /// Reads the certificate and key again (on `SIGHUP`) and serves them
    /// to new connections, logging the outcome and recording it in the
    /// audit log (`config_reloaded`); `Ok(None)` without HTTPS. A bad new
    /// file keeps the old certificate.
    ///
    /// # Errors
    ///
    /// Why the new files were refused.
    pub fn reload_tls(&self) -> Result<Option<String>, crate::tls::TlsError> {
        use crate::users::audit::{Event, Kind, Origin};
        let record = |event: Event<'_>| {
            let origin = Origin::server().via("sighup");
            self.state.users.audit().record(&origin, &event);
        };
        let Some(certs) = &self.certificates else {
            crate::logging::line("reload: no certificate to reload (plain HTTP)");
            record(Event::ok(Kind::ConfigReloaded, None, None).detail("tls=none"));
            return Ok(None);
        };
        match certs.reload() {
            Ok(print) => {
                crate::logging::line(&format!(
                    "tls reloaded cert={} sha256={print}",
                    crate::logging::quote(&certs.files().cert.display().to_string())
                ));
                record(
                    Event::ok(Kind::ConfigReloaded, None, None)
                        .detail(format!("tls=reloaded sha256={print}")),
                );
                Ok(Some(print))
            }
            Err(e) => {
                crate::logging::line(&format!(
                    "tls reload refused, keeping the old certificate sha256={}: {}",
                    certs.fingerprint(),
                    crate::logging::quote(&e.to_string())
                ));
                record(Event::failed(
                    Kind::ConfigReloaded,
                    None,
                    format!("tls=refused kept_sha256={}", certs.fingerprint()),
                ));
                Err(e)
            }
        }
    }

    /// Stops accepting, waits for in-flight requests, stops the reaper.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.server.join().is_err() {
            crate::logging::line("server thread panicked during shutdown");
        }
        if let Some((_, redirect)) = self.redirect
            && redirect.join().is_err()
        {
            crate::logging::line("redirect thread panicked during shutdown");
        }
        self.reaper.stop();
        // Failures a flood kept out of the audit log since the reaper's
        // last round are counted before the server goes.
        self.state.users.audit().flush();
        if let Some(sync) = self.directory_sync
            && sync.join().is_err()
        {
            crate::logging::line("directory sync thread panicked during shutdown");
        }
        if let Some(reaper) = self.oidc_reaper
            && reaper.join().is_err()
        {
            crate::logging::line("oidc reaper thread panicked during shutdown");
        }
        stop_backchannel(&self.state, self.backchannel);
        crate::logging::flush();
    }
}

/// Brings the directory's users in step with it every `interval` (see
/// [`crate::accounts::directory`]) until `stop`; logs what it did. A
/// directory that cannot be read changes nothing: the next round tries
/// again.
fn start_directory_sync(
    state: &Arc<web::State>,
    stop: &Arc<AtomicBool>,
) -> std::io::Result<Option<JoinHandle<()>>> {
    let Some(interval) = state.users.directory().map(|d| d.settings().sync_interval) else {
        return Ok(None);
    };
    let (state, stop) = (Arc::clone(state), Arc::clone(stop));
    std::thread::Builder::new()
        .name("gatehouse-ldap-sync".into())
        .spawn(move || {
            while wait_unless_stopped(&stop, interval) {
                let Some(directory) = state.users.directory() else {
                    return;
                };
                let accounts = state
                    .accounts()
                    .at(crate::users::audit::Origin::server().via("directory_sync"));
                match accounts.sync_directory(directory, true) {
                    Ok(report) => {
                        for c in &report.changed {
                            crate::logging::line(&format!(
                                "directory sync user={} change={:?}{}",
                                crate::logging::quote(&c.username),
                                c.change,
                                c.refused
                                    .as_deref()
                                    .map(|r| format!(" refused={}", crate::logging::quote(r)))
                                    .unwrap_or_default()
                            ));
                        }
                        crate::logging::line(&format!(
                            "directory sync users={} changed={}",
                            report.users,
                            report.changed.len()
                        ));
                    }
                    Err(e) => crate::logging::line(&format!(
                        "directory sync failed detail={}",
                        crate::logging::quote(&e.to_string())
                    )),
                }
            }
        })
        .map(Some)
}

/// Waits `interval`, looking at `stop` every 100 ms: `false` once it is
/// set (the caller's thread then ends, so shutdown never waits a whole
/// interval), `true` when the interval is over.
fn wait_unless_stopped(stop: &AtomicBool, interval: Duration) -> bool {
    let due = std::time::Instant::now() + interval;
    while std::time::Instant::now() < due {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// The reaper's round for the audit log: the count of failures a flood
/// kept out is written, then the rows older than `retention` go, in short
/// batches (see [`crate::users::audit::Audit::trim`]). A failure is
/// logged and the next round tries again.
fn trim_audit(
    audit: &crate::users::audit::Audit,
    retention: Duration,
    go_on: &mut dyn FnMut() -> bool,
) {
    audit.flush();
    match audit.trim(crate::clock::now(), retention, go_on) {
        Ok(0) => {}
        Ok(n) => crate::logging::line(&format!("reaper audit_deleted={n}")),
        Err(e) => crate::logging::line(&format!(
            "reaper audit trim failed detail={}",
            crate::logging::quote(&e.to_string())
        )),
    }
}

/// How many expired OpenID Connect rows one reaper statement deletes:
/// short batches, so live token requests never wait long behind it.
const OIDC_REAP_BATCH: usize = 500;

/// Deletes the OpenID Provider's expired codes, tokens, device codes,
/// grants and retired keys every `interval` until `stop`, in short
/// batches, as the session reaper does for sessions (a thread of its own:
/// the session reaper is the session layer's, and knows no provider). A
/// failure is logged and the next round tries again; it never takes the
/// server down.
fn start_oidc_reaper(
    state: &Arc<web::State>,
    stop: &Arc<AtomicBool>,
    interval: Duration,
) -> std::io::Result<Option<JoinHandle<()>>> {
    if state.oidc.is_none() {
        return Ok(None);
    }
    // A zero interval would spin; a second is as often as it is useful.
    let interval = interval.max(Duration::from_secs(1));
    let (state, stop) = (Arc::clone(state), Arc::clone(stop));
    std::thread::Builder::new()
        .name("gatehouse-oidc-reaper".into())
        .spawn(move || {
            while wait_unless_stopped(&stop, interval) {
                let Some(provider) = &state.oidc else {
                    return;
                };
                let mut deleted = 0;
                loop {
                    match provider.reap(crate::clock::now(), OIDC_REAP_BATCH) {
                        Ok(n) => {
                            deleted += n;
                            if n < OIDC_REAP_BATCH || stop.load(Ordering::SeqCst) {
                                break;
                            }
                        }
                        Err(e) => {
                            crate::logging::line(&format!(
                                "oidc reaper failed detail={}",
                                crate::logging::quote(&e.to_string())
                            ));
                            break;
                        }
                    }
                }
                if deleted > 0 {
                    crate::logging::line(&format!("oidc reaper deleted={deleted}"));
                }
            }
        })
        .map(Some)
}

/// How many threads send back-channel logout notices: a client that
/// never answers holds one of them (one notice per client is in flight),
/// the other serves everyone else.
const BACKCHANNEL_SENDERS: usize = 2;

/// How long shutdown waits for a sender in the middle of a delivery.
const BACKCHANNEL_STOP_WAIT: Duration = Duration::from_secs(1);

/// Starts the back-channel logout senders (see [`crate::oidc::logout`]),
/// when the provider is on and a client registered a
/// `backchannel_logout_uri` (without one, what is queued is reaped).
fn start_backchannel(
    state: &Arc<web::State>,
    stop: &Arc<AtomicBool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let Some(provider) = &state.oidc else {
        return Ok(Vec::new());
    };
    if !provider
        .clients()
        .all()
        .iter()
        .any(|c| c.backchannel_logout_uri.is_some())
    {
        return Ok(Vec::new());
    }
    let sender = Arc::new(crate::oidc::logout::Sender::new(provider.clone()));
    (0..BACKCHANNEL_SENDERS)
        .map(|n| {
            let (sender, stop) = (Arc::clone(&sender), Arc::clone(stop));
            std::thread::Builder::new()
                .name(format!("gatehouse-oidc-logout-{n}"))
                .spawn(move || sender.run(&stop))
        })
        .collect()
}

/// Wakes the senders to see the stop, and waits a moment for them. One
/// still waiting on a client's answer (at most its timeout) is left to
/// end by itself: what it was sending stays queued, and is sent again
/// once its lease ends.
fn stop_backchannel(state: &web::State, senders: Vec<JoinHandle<()>>) {
    if let Some(provider) = &state.oidc {
        provider.bell().ring();
    }
    let deadline = std::time::Instant::now() + BACKCHANNEL_STOP_WAIT;
    for sender in senders {
        while !sender.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !sender.is_finished() {
            crate::logging::line("oidc backchannel sender still waiting on a client; left to end");
        } else if sender.join().is_err() {
            crate::logging::line("oidc backchannel sender panicked during shutdown");
        }
    }
}

/// Starts gatehouse with `config`.
///
/// # Errors
///
/// Any [`AppError`].
#[inline]
pub fn start(config: &Config) -> Result<Running, AppError> {
    start_with_logging(config, config.log_requests)
}

/// Like [`start`], with per-request logging switched on or off.
///
/// # Errors
///
/// Any [`AppError`].
// `#[inline]`, as are the request path's functions: compiled in the crate
// that calls it, the executable's, built for speed (docs/ARCHITECTURE.md,
// "Two packages").
#[inline]
pub fn start_with_logging(config: &Config, log_requests: bool) -> Result<Running, AppError> {
    if log_requests {
        crate::logging::write_behind();
    }
    let shared = matches!(config.database, Database::Postgres(_))
        || matches!(config.session_store, SessionStore::Redis(_));
    if shared && config.secrets.is_empty() {
        // Each instance would sign with its own generated secret and refuse
        // the others' cookies, unless they all have a copy of the file.
        crate::logging::line(&format!(
            "warning: shared database or session store but no `secrets` configured; \
             signing with {} (every instance needs the same secrets)",
            config.secret_file().display()
        ));
    }
    let lock = lock_data_dir(&config.data_dir)?;
    let Backends {
        users,
        store,
        records,
        health,
        oidc,
    } = open_backends(config, db::ForeignWal::MoveAside)?;
    // Read before anything listens: a bad certificate stops start-up.
    let certificates = match &config.tls {
        Some(files) => Some(crate::tls::Certificates::open(files.clone())?),
        None => None,
    };
    let tls = match &certificates {
        Some(certs) => Some(crate::tls::server_config(Arc::clone(certs))?),
        None => None,
    };
    let mut private = vec![config.data_dir.as_path()];
    private.extend(config.database_path());
    crate::files::warn_if_readable(&private);
    let secrets = secret::signing_secrets(config)?;
    let mut users = users.with_seed_key(&secrets);
    // Anyone who is not a local user signs in against the directory, when
    // one is configured (nothing is sent to it until a sign-in needs it).
    if let Some(settings) = &config.ldap {
        let directory = crate::users::directory::Directory::new(settings.clone())
            .map_err(|e| AppError::Setup(format!("the directory: {e}")))?;
        users = users.with_directory(directory);
    }
    let provider = provider(config, Arc::clone(&oidc), &secrets)?;
    let signer = Signer::new(secrets);
    users
        .hasher()
        .warm_up()
        .map_err(|e| AppError::Setup(format!("bcrypt: {e}")))?;
    // Unknown names must cost what the stored hashes cost, also right
    // after `bcrypt_cost` changed; a failure here is no reason not to
    // serve (the next sign-in tries again).
    if let Err(e) = users.refresh_dummy_cost() {
        crate::logging::line(&format!(
            "dummy hash cost not matched to the stored hashes detail={}",
            crate::logging::quote(&e.to_string())
        ));
    }
    let limit = raise_descriptor_limit(config);
    let max_connections = config
        .max_connections
        .unwrap_or_else(|| descriptors::max_connections(limit.soft, pooled(config)));
    let state = Arc::new(web::State {
        sessions: web::layer::SessionLayer::from_engine(Engine::new(
            Arc::clone(&store),
            signer,
            config.session.clone(),
        )),
        users,
        throttle: Throttle::with_records(config.login.clone(), records),
        trusted_proxies: config.trusted_proxies.clone(),
        health,
        log_requests,
        allow_registration: config.allow_registration,
        apps: config.apps.clone(),
        public_url: config.public_url.clone(),
        proxy: web::gate::client(config.proxy_timeout),
        proxy_timeout: config.proxy_timeout,
        tunnels: web::Tunnels::new(
            per_client(config, max_connections),
            config.tunnel_idle_timeout,
        ),
        forwarding: web::gate::InFlight::new(config.threads),
        proxy_underscore_headers: config.proxy_underscore_headers,
        metrics: web::metrics::Metrics::new(),
        metrics_access: config.metrics.then(|| config.metrics_token.clone()),
        setup_token: std::sync::Mutex::new(None),
        admin_reauth: config.admin_reauth,
        two_factor: config.two_factor,
        https: config.tls.is_some(),
        hsts: hsts(config),
        oidc: provider,
        grants: oidc,
    });
    if state
        .users
        .count()
        .map_err(|e| AppError::Setup(e.to_string()))?
        == 0
    {
        let token = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            crate::crypto::random_bytes::<24>(),
        );
        *state
            .setup_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token);
    }

    // Each request is answered on the thread of the connection that read
    // it, in one of the slots (see `slots.rs`); rouille's server is the
    // listener, and its pool is left for requests that reach its queue
    // (none do with `serve` set).
    let slots = Arc::new(slots::Slots::new(request_threads(
        config,
        state.users.hasher(),
    )));
    let handler = {
        let state = Arc::clone(&state);
        Arc::new(move |request: &rouille::Request| web::handle(&state, request))
    };
    let mut options = server_options(config, &limit, tls);
    options.serve = Some(serve_in_slots(Arc::clone(&handler), &slots));
    let server = tiny_http::with_options(options, || {
        rouille::Server::new(config.listen, move |request| handler(request))
    })
    .map_err(|e| AppError::Listen {
        addr: config.listen,
        reason: e.to_string(),
    })?
    .pool_size(1);
    let addr = server.server_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let redirect = match config.redirect_http {
        Some(at) => Some(start_redirect(
            config,
            &limit,
            at,
            addr.port(),
            Arc::clone(&stop),
        )?),
        None => None,
    };

    let reaper_state = Arc::clone(&state);
    let audit = state.users.audit().clone();
    let retention = config.audit_retention;
    let reaper = Reaper::start_with(
        store,
        config.reap_interval,
        move |n| {
            reaper_state.metrics.reaped(n);
            crate::logging::line(&format!("reaper deleted={n}"));
        },
        move |go_on| trim_audit(&audit, retention, go_on),
    )
    .inspect_err(|_| stop.store(true, Ordering::SeqCst))?;
    let directory_sync =
        start_directory_sync(&state, &stop).inspect_err(|_| stop.store(true, Ordering::SeqCst))?;
    let oidc_reaper = start_oidc_reaper(&state, &stop, config.reap_interval)
        .inspect_err(|_| stop.store(true, Ordering::SeqCst))?;
    let backchannel =
        start_backchannel(&state, &stop).inspect_err(|_| stop.store(true, Ordering::SeqCst))?;

    let stop_flag = Arc::clone(&stop);
    let server = std::thread::Builder::new()
        .name("gatehouse-accept".into())
        .spawn(move || {
            while !stop_flag.load(Ordering::SeqCst) {
                server.poll_timeout(Duration::from_millis(50));
            }
            // No new requests start from here on (one read now is answered
            // 503 and its connection closed); let the ones under way finish
            // and answer before the listener goes.
            let left = slots.close_and_wait(SHUTDOWN_GRACE);
            if left > 0 {
                crate::logging::line(&format!(
                    "shutdown: {left} requests still under way after {}s, stopping without them",
                    SHUTDOWN_GRACE.as_secs()
                ));
            }
            server.join();
        })?;
    Ok(Running {
        addr,
        stop,
        server,
        certificates,
        redirect,
        reaper,
        directory_sync,
        oidc_reaper,
        backchannel,
        state,
        _lock: lock,
    })
}

/// How long shutdown waits for the requests under way: a request bounded
/// by the server's own limits ends well within it, and one that goes at a
/// client's pace (a proxied upload trickled a byte at a time, each read
/// allowed `body_timeout`) does not hold the server up past it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What answers a request on its connection's thread: `handler` (the one
/// rouille's server also holds) in one of `slots`, or, once they are closed
/// for shutdown, a `503` that ends the connection.
#[inline]
fn serve_in_slots<H>(handler: Arc<H>, slots: &Arc<slots::Slots>) -> tiny_http::Serve
where
    H: Fn(&rouille::Request) -> rouille::Response + Send + Sync + 'static,
{
    let slots = Arc::clone(slots);
    Arc::new(move |request: tiny_http::Request| match slots.take() {
        Some(_slot) => rouille::serve(&*handler, request),
        None => {
            let mut stopping =
                tiny_http::Response::from_string("shutting down, retry\n").with_status_code(503);
            if let Ok(retry) = tiny_http::Header::from_bytes(&b"Retry-After"[..], &b"1"[..]) {
                stopping.add_header(retry);
            }
            let _ = request.respond_and_close(stopping);
        }
    })
}

/// The OpenID Provider, when `public_url` is set: its issuer is
/// `public_url` as the configuration holds it (every token's `iss`, which
/// relying parties compare byte for byte), its clients the `[[clients]]`
/// of the file and those made on `/admin` (read from the store when a
/// request names one), its store the one opened beside the users. Without
/// `public_url` there is no issuer to name, and no provider: its routes
/// are then no routes at all.
///
/// The signing keys of the algorithms the clients use are made (or
/// opened) here, before anything listens: an RSA key takes a moment to
/// generate, and the first relying party to read the JWKS must find them.
///
/// # Errors
///
/// [`AppError::Setup`] when a signing key cannot be made or opened.
fn provider(
    config: &Config,
    store: Arc<dyn crate::oidc::Store>,
    secrets: &[Vec<u8>],
) -> Result<Option<crate::oidc::Provider>, AppError> {
    let Some(issuer) = config.issuer.as_deref() else {
        return Ok(None);
    };
    let provider =
        crate::oidc::Provider::new(issuer, config.clients.clone(), config.oidc, store, secrets);
    let mut algs: Vec<crate::oidc::Alg> = vec![crate::oidc::Alg::Rs256];
    let mut add = |alg: crate::oidc::Alg| {
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    };
    for client in config.clients.all() {
        add(client.signing_alg);
    }
    // And those of the clients made on `/admin` (when the store cannot be
    // read now, their keys are made at their first sign-in).
    let made = match provider.registry().all() {
        Ok(all) => {
            let made = all.len() - config.clients.all().len();
            all.iter().for_each(|c| add(c.signing_alg));
            made
        }
        Err(e) => {
            crate::logging::line(&format!(
                "oidc clients made on /admin not read at start: {e}"
            ));
            0
        }
    };
    provider
        .keys()
        .prepare(algs)
        .map_err(|e| AppError::Setup(format!("OpenID Connect signing keys: {e}")))?;
    crate::logging::line(&format!(
        "oidc provider on issuer={} clients={} made_on_admin={made}",
        crate::logging::quote(issuer),
        config.clients.all().len()
    ));
    Ok(Some(provider))
}

/// Starts the plain listener of `redirect_http`: every request is answered
/// `301` to the same path over HTTPS and nothing else is served, so it is
/// no second way in (no pages, no session, no proxy).
fn start_redirect(
    config: &Config,
    limit: &descriptors::Limit,
    at: SocketAddr,
    https_port: u16,
    stop: Arc<AtomicBool>,
) -> Result<(SocketAddr, JoinHandle<()>), AppError> {
    let public_url = config.public_url.clone();
    let server = tiny_http::with_options(server_options(config, limit, None), || {
        rouille::Server::new(at, move |request| {
            web::redirect_to_https(request, public_url.as_deref(), https_port)
        })
    })
    .map_err(|e| AppError::Listen {
        addr: at,
        reason: e.to_string(),
    })?
    .pool_size(2);
    let addr = server.server_addr();
    let thread = std::thread::Builder::new()
        .name("gatehouse-redirect".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                server.poll_timeout(Duration::from_millis(50));
            }
            server.join();
        })?;
    Ok((addr, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_moves_a_foreign_wal_aside_only_when_no_server_holds_the_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("never used");
        assert!(!server_holds(&missing));
        assert!(!missing.exists(), "the probe made the directory");
        assert_eq!(foreign_wal_for_command(&missing), db::ForeignWal::MoveAside);
        let lock = lock_data_dir(dir.path()).expect("lock");
        assert!(server_holds(dir.path()));
        assert_eq!(foreign_wal_for_command(dir.path()), db::ForeignWal::Refuse);
        drop(lock);
        assert!(!server_holds(dir.path()));
        // The probe left the directory free for a server.
        drop(lock_data_dir(dir.path()).expect("lock again"));
    }

    #[test]
    fn healthz_on_a_read_only_postgres_says_it_cannot_be_written() {
        let Some(url) = db::postgres::test_url() else {
            return;
        };
        let url = db::postgres::scratch_schema(&url).expect("schema");
        // One connection, so the health check gets the one set read-only.
        let pool = db::postgres::open_for_tests(&url, 1).expect("open");
        postgres_health(&pool).expect("a writable server is healthy");
        pool.get()
            .expect("conn")
            .batch_execute("SET SESSION default_transaction_read_only = on")
            .expect("read-only");
        let err = postgres_health(&pool).expect_err("read-only");
        assert_eq!(err.reason, "PostgreSQL cannot be written");
    }
}
