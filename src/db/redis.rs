//! The Redis (or Valkey) pool, for the shared session store and the shared
//! throttling records: connections with read and write timeouts, checked
//! after idling (see [`super::checked`]).
//!
//! Nothing here knows the keys the stores write; see `session::redis` and
//! `auth::throttle`.
//!
//! TLS (`rediss://`): the certificate is checked in full against the CA
//! file, or against Mozilla's roots built in, exactly as for PostgreSQL
//! (`tls::client`). The Redis client builds its rustls configuration
//! itself (it takes no ready one): it is given the CA file's certificates,
//! and without them uses the same built-in roots (its `webpki-roots`
//! feature), and the `ring` provider as the process default.

use std::time::Duration;

use super::DbError;
use super::checked::{Checked, Conn};
use crate::tls::client::{CaFile, install_default_provider};

/// How long connecting, or waiting for Redis to answer, may take before the
/// request that needed it is answered `503`.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A pool of Redis connections.
pub type RedisPool = r2d2::Pool<Checked<Server>>;

/// A connection checked out of a [`RedisPool`].
pub type RedisConn = r2d2::PooledConnection<Checked<Server>>;

/// Makes the pool's connections, each within [`TIMEOUT`]: the client's own
/// pool support connects with no limit, so a server that accepts and then
/// says nothing (or never finishes a TLS handshake) would hold one of the
/// pool's few connecting threads for good.
#[derive(Debug)]
pub struct Server(redis::Client);

impl r2d2::ManageConnection for Server {
    type Connection = redis::Connection;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<redis::Connection, redis::RedisError> {
        self.0.get_connection_with_timeout(TIMEOUT)
    }

    fn is_valid(&self, conn: &mut redis::Connection) -> Result<(), redis::RedisError> {
        r2d2::ManageConnection::is_valid(&self.0, conn)
    }

    fn has_broken(&self, conn: &mut redis::Connection) -> bool {
        r2d2::ManageConnection::has_broken(&self.0, conn)
    }
}

/// Puts read and write timeouts on every new connection, so a Redis that
/// stops answering costs a request [`TIMEOUT`], not a thread forever.
#[derive(Debug)]
struct Timeouts;

impl r2d2::CustomizeConnection<Conn<redis::Connection>, redis::RedisError> for Timeouts {
    fn on_acquire(&self, conn: &mut Conn<redis::Connection>) -> Result<(), redis::RedisError> {
        conn.set_read_timeout(Some(TIMEOUT))?;
        conn.set_write_timeout(Some(TIMEOUT))
    }
}

/// Whether `setting` names a Redis server.
pub fn is_url(setting: &str) -> bool {
    [
        "redis://",
        "rediss://",
        "valkey://",
        "valkeys://",
        "redis+unix://",
        "unix://",
    ]
    .iter()
    .any(|scheme| setting.starts_with(scheme))
}

/// Whether `url` asks for TLS (`rediss://`, `valkeys://`).
pub fn uses_tls(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("valkeys://")
}

/// Checks what the Redis client would not refuse by itself: a `rediss://`
/// URL with `#insecure`, which turns the certificate check off (threat:
/// anyone on the path poses as the session store and reads or forges
/// every session).
///
/// # Errors
///
/// [`DbError::Invalid`] saying why.
pub fn check_url(url: &str) -> Result<(), DbError> {
    if uses_tls(url) && url.contains('#') {
        return Err(DbError::Invalid(
            "a rediss:// URL with a #fragment (#insecure turns the certificate check off) is \
             refused; for a private CA, name its certificate in session_store_ca_file"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Whether an error means Redis could not be reached or stopped answering
/// (the request may succeed later), as opposed to a command it refused.
pub fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Connects a pool of at most `max_size` connections to the server at `url`
/// and checks that it answers. Over TLS (`rediss://`) the server's
/// certificate must chain to one in `ca`, or to Mozilla's roots when `ca`
/// is `None`, and name the URL's host.
///
/// # Errors
///
/// A malformed URL ([`DbError::Invalid`]), a CA file given for a URL
/// without TLS, an unreachable server or a refused certificate.
pub fn open_pool(url: &str, max_size: u32, ca: Option<&CaFile>) -> Result<RedisPool, DbError> {
    check_url(url)?;
    let url = url
        .replacen("valkeys://", "rediss://", 1)
        .replacen("valkey://", "redis://", 1);
    let invalid = |e: redis::RedisError| DbError::Invalid(format!("invalid Redis URL: {e}"));
    let client = if uses_tls(&url) {
        install_default_provider();
        let roots = redis::TlsCertificates {
            client_tls: None,
            root_cert: ca.map(|ca| ca.pem().to_vec()),
        };
        redis::Client::build_with_tls(url.as_str(), roots).map_err(invalid)?
    } else if let Some(ca) = ca {
        return Err(DbError::Invalid(format!(
            "a CA file ({}) is set, but the Redis URL does not ask for TLS (rediss://)",
            ca.path().display()
        )));
    } else {
        redis::Client::open(url.as_str()).map_err(invalid)?
    };
    // One connection made here, not by the pool, so that a refused
    // certificate or password is reported as itself, not as a pool that
    // timed out waiting.
    let mut first = client
        .get_connection_with_timeout(super::FIRST_CONNECTION_TIMEOUT)
        .map_err(|e| super::certificate_or("Redis", e))?;
    first.set_read_timeout(Some(TIMEOUT))?;
    first.set_write_timeout(Some(TIMEOUT))?;
    let pong: String = redis::cmd("PING").query(&mut first)?;
    if pong != "PONG" {
        return Err(DbError::Invalid(format!("Redis answered PING with {pong}")));
    }
    // The first connection is the pool's first: nothing more to wait for.
    r2d2::Pool::builder()
        .max_size(max_size.max(1))
        .min_idle(Some(1))
        // Only connections that sat idle are pinged (see `db::checked`).
        .test_on_check_out(true)
        .connection_timeout(TIMEOUT)
        .connection_customizer(Box::new(Timeouts))
        .build(Checked::seeded(Server(client), first))
        .map_err(|source| DbError::Checkout {
            backend: "Redis",
            source,
        })
}

/// A connection from `pool`.
///
/// # Errors
///
/// [`DbError::Checkout`] when none could be had in time.
pub fn conn(pool: &RedisPool) -> Result<RedisConn, DbError> {
    super::checkout(pool, "Redis")
}

/// The server tests run against: `GATEHOUSE_TEST_REDIS`, a URL. Unset,
/// Redis tests are skipped, except under CI, where that is a failure.
#[doc(hidden)]
pub fn test_url() -> Option<String> {
    super::test_server("GATEHOUSE_TEST_REDIS")
}

/// For tests: the CA file of the server tests run against,
/// `GATEHOUSE_TEST_REDIS_CA_FILE`, when its URL is `rediss://` with a
/// private CA.
#[doc(hidden)]
pub fn test_ca_file() -> Option<CaFile> {
    super::test_ca_file("GATEHOUSE_TEST_REDIS_CA_FILE")
}

/// For tests: [`open_pool`] with [`test_ca_file`].
///
/// # Errors
///
/// As [`open_pool`].
#[doc(hidden)]
pub fn open_pool_for_tests(url: &str, max_size: u32) -> Result<RedisPool, DbError> {
    open_pool(url, max_size, test_ca_file().as_ref())
}

/// For tests: a prefix no other test uses.
#[doc(hidden)]
pub fn scratch_prefix() -> String {
    format!("gatehouse-test:{:016x}:", rand::random::<u64>())
}
