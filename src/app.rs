//! Starting and stopping the server: open the database, build the shared
//! state, listen (port 0 allowed), start the reaper; and on shutdown stop
//! accepting, finish what is in flight, stop the reaper.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::auth::throttle::{Limits, Throttle};
use crate::config::{Config, ConfigError};
use crate::db::{self, DbError};
use crate::password::Hasher;
use crate::session::{Engine, Reaper, Signer, SqliteStore, Store};
use crate::users::Users;
use crate::web;

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

/// Opens the data directory and database with the config's settings.
///
/// # Errors
///
/// When the directory cannot be created or the database opened.
pub fn open_database(config: &Config) -> Result<db::Pool, AppError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AppError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // Requests beyond 16 at once wait briefly for a connection; each
    // connection has its own page cache, so this bounds memory on small boards.
    let max = u32::try_from(config.threads.min(16) + 2).unwrap_or(18);
    Ok(db::open(&config.database_path(), max)?)
}

/// The user table with the config's bcrypt settings.
pub fn users(config: &Config, pool: db::Pool) -> Users {
    // Logins beyond what the workers can take plus a queue of half the
    // request threads are refused at once, so at least half the threads
    // stay free for everything else during a login storm.
    let queue = (config.threads / 2).max(1);
    Users::new(
        pool,
        Arc::new(Hasher::new(config.bcrypt_cost, bcrypt_workers(), queue)),
    )
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
    let pool = open_database(config)?;
    let signer = Signer::new(config.signing_secrets()?);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::new(pool.clone()));
    let users = users(config, pool.clone());
    users.hasher().warm_up();
    let state = Arc::new(web::State {
        sessions: web::layer::SessionLayer::from_engine(Engine::new(
            Arc::clone(&store),
            signer,
            config.session_options(),
        )),
        users,
        throttle: Throttle::new(Limits {
            max_failures: config.login.max_failures,
            window: config.login.window,
            lockout: config.login.lockout,
            max_lockout: config.login.max_lockout,
        }),
        trusted_proxies: config.trusted_proxies.clone(),
        pool,
        log_requests,
        allow_registration: config.allow_registration,
        apps: config.apps.clone(),
        public_url: config.public_url.clone(),
        proxy: web::gate::client(config.proxy_timeout),
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
    let server = rouille::Server::new(config.listen, move |request| {
        web::handle(&handler_state, request)
    })
    .map_err(|e| AppError::Listen {
        addr: config.listen,
        reason: e.to_string(),
    })?
    .pool_size(config.threads);
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
