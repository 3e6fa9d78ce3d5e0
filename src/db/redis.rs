//! The Redis (or Valkey) pool, for the shared session store and the shared
//! throttling records: connections with read and write timeouts, checked
//! after idling (see [`super::checked`]).
//!
//! Nothing here knows the keys the stores write; see `session::redis` and
//! `auth::throttle`.

use std::time::Duration;

use super::DbError;
use super::checked::{Checked, Conn};

/// How long connecting, or waiting for Redis to answer, may take before the
/// request that needed it is answered `503`.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A pool of Redis connections.
pub type RedisPool = r2d2::Pool<Checked<redis::Client>>;

/// A connection checked out of a [`RedisPool`].
pub type RedisConn = r2d2::PooledConnection<Checked<redis::Client>>;

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
        "redis+unix://",
        "unix://",
    ]
    .iter()
    .any(|scheme| setting.starts_with(scheme))
}

/// Whether an error means Redis could not be reached or stopped answering
/// (the request may succeed later), as opposed to a command it refused.
pub fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Connects a pool of at most `max_size` connections to the server at `url`
/// and checks that it answers.
///
/// # Errors
///
/// A malformed URL ([`DbError::Invalid`]) or an unreachable server.
pub fn open_pool(url: &str, max_size: u32) -> Result<RedisPool, DbError> {
    let url = url.replacen("valkey://", "redis://", 1);
    let client = redis::Client::open(url.as_str())
        .map_err(|e| DbError::Invalid(format!("invalid Redis URL: {e}")))?;
    let pool = r2d2::Pool::builder()
        .max_size(max_size.max(1))
        .min_idle(Some(1))
        // Only connections that sat idle are pinged (see `db::checked`).
        .test_on_check_out(true)
        .connection_timeout(TIMEOUT)
        .connection_customizer(Box::new(Timeouts))
        .build(Checked(client))
        .map_err(|source| DbError::Checkout {
            backend: "Redis",
            source,
        })?;
    let pong: String = redis::cmd("PING").query(&mut **conn(&pool)?)?;
    if pong != "PONG" {
        return Err(DbError::Invalid(format!("Redis answered PING with {pong}")));
    }
    Ok(pool)
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

/// For tests: a prefix no other test uses.
#[doc(hidden)]
pub fn scratch_prefix() -> String {
    format!("gatehouse-test:{:016x}:", rand::random::<u64>())
}
