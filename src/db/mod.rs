//! The SQLite connection pool: per-connection pragmas and schema migrations.
//!
//! Nothing here knows about users or sessions; the tables are created by
//! `migrations` and read by the modules that own them.

mod migrations;

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;

pub use migrations::{SCHEMA_VERSION, migrate};

/// A pool of SQLite connections, each with gatehouse's pragmas applied.
pub type Pool = r2d2::Pool<SqliteConnectionManager>;

/// A connection checked out of a [`Pool`].
pub type Conn = r2d2::PooledConnection<SqliteConnectionManager>;

/// How long a connection waits on a lock held by another before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors opening or using the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused a statement.
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    /// No connection could be had from the pool in time.
    #[error("no database connection available")]
    Pool(#[from] r2d2::Error),
    /// The file was written by a newer gatehouse.
    #[error(
        "the database has schema version {found}, newer than this gatehouse knows ({known}); \
         run a newer gatehouse or restore a backup made by this version"
    )]
    TooNew {
        /// The file's `PRAGMA user_version`.
        found: i64,
        /// The newest version this binary can migrate to.
        known: i64,
    },
}

/// Opens (creating if needed) the database file at `path`, migrates it to the
/// current schema and returns a pool of at most `max_size` connections.
///
/// # Errors
///
/// Fails when the file cannot be opened, a migration fails, or the file was
/// made by a newer gatehouse.
pub fn open(path: &Path, max_size: u32) -> Result<Pool, DbError> {
    let manager = SqliteConnectionManager::file(path).with_init(configure);
    let pool = r2d2::Pool::builder()
        .max_size(max_size.max(1))
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(10))
        .build(manager)?;
    migrate(&mut *pool.get()?)?;
    Ok(pool)
}

/// Applies the pragmas every connection needs.
///
/// WAL lets readers proceed while one writer commits; NORMAL synchronous is
/// durable across application crashes and is SQLite's advice for WAL; the busy
/// timeout turns brief writer contention into a wait instead of an error.
fn configure(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_gets_the_pragmas() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = open(&dir.path().join("t.db"), 2).expect("open");
        let conn = pool.get().expect("conn");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal_mode");
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .expect("foreign_keys");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("synchronous");
        assert_eq!(mode, "wal");
        assert_eq!(fk, 1);
        assert_eq!(sync, 1, "NORMAL is 1");
    }
}
