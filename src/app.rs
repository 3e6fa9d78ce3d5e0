//! Starting and stopping the server: open the database, build the shared
//! state, listen (port 0 allowed), start the reaper; and on shutdown stop
//! accepting, finish what is in flight, stop the reaper.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::auth::throttle::{
    Limits, MemoryRecords, PostgresRecords, Records, RedisRecords, Throttle,
};
use crate::config::{Config, ConfigError, Database, SessionStore};
use crate::db::{self, DbError};
use crate::password::Hasher;
use crate::session::{
    Engine, PostgresStore, Reaper, RedisStore, Signer, SqliteStore, Store, StoreError,
};
use crate::users::Users;
use crate::web::{self, Health};

pub mod watchdog;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Configuration (secrets included) was unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
}

/// Connections each pool may hold: requests beyond 16 at once wait briefly
/// for one; each SQLite connection has its own page cache, so this also
/// bounds memory on small boards.
fn pool_size(config: &Config) -> u32 {
    u32::try_from(config.threads.min(16) + 2).unwrap_or(18)
}

/// What the HTTP layer (the vendored tiny_http) is configured with.
fn server_options(_config: &Config) -> tiny_http::Options {
    tiny_http::Options::default()
}

/// Opens the configured database and session store.
///
/// # Errors
///
/// When the data directory cannot be created, or a backend cannot be
/// reached or migrated.
pub fn open_backends(config: &Config) -> Result<Backends, AppError> {
    crate::files::create_private_dir(&config.data_dir).map_err(|source| AppError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let max = pool_size(config);
    let hasher = hasher(config);
    let (users, store, records, db_health): (Users, Arc<dyn Store>, Box<dyn Records>, Health) =
        match &config.database {
            Database::Sqlite(path) => {
                // Made 0600 before SQLite opens it: its -wal and -shm files
                // take the database's mode.
                crate::files::touch_private(path).map_err(|source| AppError::DataDir {
                    path: path.clone(),
                    source,
                })?;
                let pool = db::open(path, max)?;
                let health = pool.clone();
                (
                    Users::new(pool.clone(), hasher),
                    Arc::new(SqliteStore::new(pool)),
                    Box::new(MemoryRecords::default()),
                    Box::new(move || sqlite_health(&health)),
                )
            }
            Database::Postgres(url) => {
                let pool = db::postgres::open(url.expose_str(), max)?;
                let health = pool.clone();
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
        },
        SessionStore::Redis(url) => {
            let pool = crate::session::redis::open_pool(url.expose_str(), max)?;
            let health = pool.clone();
            Backends {
                users,
                store: Arc::new(RedisStore::new(pool.clone(), &config.store_prefix)),
                records: Box::new(RedisRecords::new(pool, &config.store_prefix)),
                health: Box::new(move || {
                    db_health()?;
                    redis_health(&health)
                }),
            }
        }
    })
}

fn sqlite_health(pool: &db::Pool) -> Result<(), String> {
    let conn = pool.get().map_err(|e| e.to_string())?;
    // Both tables answer: the file is there, readable and migrated.
    conn.query_row(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM users LIMIT 1)) \
                  + (SELECT count(*) FROM (SELECT 1 FROM sessions LIMIT 1)) >= 0",
        [],
        |r| r.get::<_, bool>(0),
    )
    .map(drop)
    .map_err(|e| e.to_string())
}

fn postgres_health(pool: &db::postgres::PgPool) -> Result<(), String> {
    let mut client = pool.get().map_err(|e| format!("PostgreSQL: {e}"))?;
    client
        .simple_query("SELECT 1 FROM users LIMIT 1; SELECT 1 FROM sessions LIMIT 1")
        .map(drop)
        .map_err(|e| format!("PostgreSQL: {e}"))
}

fn redis_health(pool: &crate::session::redis::RedisPool) -> Result<(), String> {
    let mut conn = pool.get().map_err(|e| format!("Redis: {e}"))?;
    redis::cmd("PING")
        .query::<String>(&mut *conn)
        .map(drop)
        .map_err(|e| format!("Redis: {e}"))
}

/// The password hasher with the config's bcrypt settings.
fn hasher(config: &Config) -> Arc<Hasher> {
    // Callers wait for a worker up to `login_queue_timeout`; the request
    // pool is grown by the most that can wait (see `start`), so a login
    // storm never takes the threads everything else is answered on.
    Arc::new(Hasher::new(
        config.bcrypt_cost,
        bcrypt_workers(),
        config.login.queue_timeout,
    ))
}

/// A running server.
pub struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    server: JoinHandle<()>,
    reaper: Reaper,
    state: Arc<web::State>,
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
        if self.addr.ip().is_unspecified() {
            format!("http://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Stops accepting, waits for in-flight requests, stops the reaper.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.server.join().is_err() {
            crate::logging::line("server thread panicked during shutdown");
        }
        self.reaper.stop();
    }
}

/// Starts gatehouse with `config`.
///
/// # Errors
///
/// Any [`AppError`].
pub fn start(config: &Config) -> Result<Running, AppError> {
    start_with_logging(config, config.log_requests)
}

/// Like [`start`], with per-request logging switched on or off.
///
/// # Errors
///
/// Any [`AppError`].
pub fn start_with_logging(config: &Config, log_requests: bool) -> Result<Running, AppError> {
    let shared = matches!(config.database, Database::Postgres(_))
        || matches!(config.session_store, SessionStore::Redis(_));
    if shared && config.secrets.is_empty() {
        // Each instance would sign with its own generated secret and refuse
        // the others' cookies, unless they all have a copy of the file.
        crate::logging::line(&format!(
            "warning: shared database or session store but no `secrets` configured; \
             signing with {} (every instance needs the same secrets)",
            config.data_dir.join("secret").display()
        ));
    }
    let Backends {
        users,
        store,
        records,
        health,
    } = open_backends(config)?;
    let mut private = vec![config.data_dir.as_path()];
    private.extend(config.database_path());
    crate::files::warn_if_readable(&private);
    let signer = Signer::new(config.signing_secrets()?);
    users
        .hasher()
        .warm_up()
        .map_err(|e| AppError::Setup(format!("bcrypt: {e}")))?;
    let state = Arc::new(web::State {
        sessions: web::layer::SessionLayer::from_engine(Engine::new(
            Arc::clone(&store),
            signer,
            config.session_options(),
        )),
        users,
        throttle: Throttle::with_records(
            Limits {
                max_failures: config.login.max_failures,
                window: config.login.window,
                lockout: config.login.lockout,
                max_lockout: config.login.max_lockout,
            },
            records,
        ),
        trusted_proxies: config.trusted_proxies.clone(),
        health,
        log_requests,
        allow_registration: config.allow_registration,
        apps: config.apps.clone(),
        public_url: config.public_url.clone(),
        proxy: web::gate::client(config.proxy_timeout),
        proxy_timeout: config.proxy_timeout,
        metrics: web::metrics::Metrics::new(),
        metrics_access: config.metrics.then(|| config.metrics_token.clone()),
        setup_token: std::sync::Mutex::new(None),
    });
    if state
        .users
        .count()
        .map_err(|e| AppError::Setup(e.to_string()))?
        == 0
    {
        let token = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            crate::session::random_bytes::<24>(),
        );
        *state
            .setup_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token);
    }

    let handler_state = Arc::clone(&state);
    let server = tiny_http::with_options(server_options(config), || {
        rouille::Server::new(config.listen, move |request| {
            web::handle(&handler_state, request)
        })
    })
    .map_err(|e| AppError::Listen {
        addr: config.listen,
        reason: e.to_string(),
    })?
    .pool_size(request_threads(config, state.users.hasher()));
    let addr = server.server_addr();

    let reaper_state = Arc::clone(&state);
    let reaper = Reaper::start(store, config.reap_interval, move |n| {
        reaper_state.metrics.reaped(n);
        crate::logging::line(&format!("reaper deleted={n}"));
    })?;

    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    let server = std::thread::Builder::new()
        .name("gatehouse-accept".into())
        .spawn(move || {
            while !stop_flag.load(Ordering::SeqCst) {
                server.poll_timeout(Duration::from_millis(50));
            }
            // No new requests are taken from here on; let the ones already
            // handed to the pool finish and answer before the listener goes.
            server.join();
        })?;
    Ok(Running {
        addr,
        stop,
        server,
        reaper,
        state,
    })
}
