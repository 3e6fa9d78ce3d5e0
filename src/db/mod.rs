//! The connection pools: SQLite (the default) with its per-connection pragmas
//! and migrations, and PostgreSQL (in `postgres`) for shared deployments.
//!
//! Nothing here knows about users or sessions; the tables are created by
//! `migrations` and read by the modules that own them.

pub mod checked;
mod migrations;
pub mod postgres;

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
    /// PostgreSQL refused a statement or could not be reached.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The database setting could not be used; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// A backup or restore could not be done; the message says why.
    #[error("{0}")]
    Backup(String),
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

/// For tests: the URL of a shared server in the environment variable `var`.
/// Unset, the tests that need it are skipped (with a line saying so),
/// except under CI, where a missing server is a failure.
#[doc(hidden)]
pub fn test_server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {var} is not"
            );
            eprintln!("skipped: set {var} to run the tests that need that server");
            None
        }
    }
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
        // A SQLite connection to a local file does not go stale; checking
        // each one on checkout would cost a statement per request.
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(10))
        .build(manager)?;
    migrate(&mut *pool.get()?)?;
    Ok(pool)
}

/// Copies the live database at `source` into a new file `dest` with
/// SQLite's online backup API, while the server keeps serving.
///
/// The copy is made in one step inside one read transaction: in WAL mode
/// that is a consistent snapshot that writers do not wait for, and that a
/// concurrent write cannot restart. It is written to a temporary file next
/// to `dest`, checked, and renamed into place, so `dest` is either absent or
/// complete.
///
/// # Errors
///
/// When `dest` exists, the source cannot be read, or the copy fails its
/// integrity check.
pub fn backup(source: &Path, dest: &Path) -> Result<(), DbError> {
    if dest.exists() {
        return Err(DbError::Backup(format!(
            "{} already exists; choose a new file name",
            dest.display()
        )));
    }
    let src =
        rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    src.busy_timeout(BUSY_TIMEOUT)?;
    let tmp = dest.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    // A backup holds every hash: 0600 from the start (and so after rename).
    crate::files::touch_private(&tmp)
        .map_err(|e| DbError::Backup(format!("cannot create {}: {e}", tmp.display())))?;
    {
        let mut out = rusqlite::Connection::open(&tmp)?;
        let copy = rusqlite::backup::Backup::new(&src, &mut out)?;
        copy.step(-1)?;
    }
    let found = check(&tmp)?;
    if found > SCHEMA_VERSION {
        return Err(DbError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    std::fs::rename(&tmp, dest)
        .map_err(|e| DbError::Backup(format!("cannot move the copy into place: {e}")))?;
    Ok(())
}

/// Replaces the database at `dest` with the backup at `source`. Stop the
/// server first: sessions and users it holds in memory would not match.
///
/// # Errors
///
/// When the backup fails its integrity check, was made by a newer
/// gatehouse, or cannot be copied.
pub fn restore(source: &Path, dest: &Path) -> Result<(), DbError> {
    let found = check(source)?;
    if found > SCHEMA_VERSION {
        return Err(DbError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    let src =
        rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut out = rusqlite::Connection::open(dest)?;
    out.busy_timeout(BUSY_TIMEOUT)?;
    {
        let copy = rusqlite::backup::Backup::new(&src, &mut out)?;
        copy.step(-1)?;
    }
    // An older backup is brought up to this version's schema.
    migrate(&mut out)?;
    Ok(())
}

/// Checks a database file: `PRAGMA integrity_check` and gatehouse's tables.
/// Returns its schema version.
///
/// # Errors
///
/// When the file is not a sound gatehouse database.
pub fn check(path: &Path) -> Result<i64, DbError> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| DbError::Backup(format!("cannot open {}: {e}", path.display())))?;
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| {
            DbError::Backup(format!(
                "{} is not a readable SQLite database: {e}",
                path.display()
            ))
        })?;
    if integrity != "ok" {
        return Err(DbError::Backup(format!(
            "{} fails its integrity check: {integrity}",
            path.display()
        )));
    }
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('users', 'sessions')",
        [],
        |r| r.get(0),
    )?;
    if tables != 2 {
        return Err(DbError::Backup(format!(
            "{} is not a gatehouse database",
            path.display()
        )));
    }
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
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
    // 1 MiB of page cache per connection (SQLite's default is 2 MiB): the
    // tables are small, and this keeps memory modest on a Raspberry Pi.
    conn.pragma_update(None, "cache_size", -1024)?;
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
