//! Every connection pool: SQLite (the default) with its per-connection
//! pragmas and migrations, PostgreSQL (in `postgres`) and Redis (in `redis`)
//! for shared deployments; each returns [`DbError`].
//!
//! Nothing here knows about users or sessions; the tables are created by
//! `migrations` and read by the modules that own them.
//!
//! | module | owns |
//! | --- | --- |
//! | `mod.rs` | opening SQLite (pragmas, pool), [`DbError`], backup, restore, checkpoint |
//! | `sqlite` | the SQLite pool and the identity of the file it serves (device, inode, database id) |
//! | `wal` | which database file a `-wal` belongs to |
//! | `watch` | the inotify watch on the data directory that tells the pool when to look at the file again |
//! | `commits` | whether anything was committed to the file since a reader last looked, without a statement |
//! | `migrations` | the schema, one step per version |
//! | `checked` | pooled connections to network servers, checked before use after idling |
//! | `postgres`, `redis` | the pools for shared deployments |

pub mod checked;
mod commits;
mod migrations;
pub mod postgres;
pub mod redis;

mod sqlite;
mod wal;
mod watch;

use std::path::Path;
use std::time::Duration;

pub use commits::Commits;
pub use migrations::{SCHEMA_VERSION, migrate};
pub use sqlite::{Manager, Pool, probe_write};
pub use wal::ForeignWal;

/// A connection checked out of a [`Pool`].
pub type Conn = r2d2::PooledConnection<Manager>;

/// How long the first connection to a network server at start may take
/// (connecting, TLS, signing in): generous, since a slow start is only
/// late, while one that waits on a server that never answers never ends.
/// The connections the pools make later have a short limit of their own,
/// so that a request waits little.
pub(crate) const FIRST_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection waits on a lock held by another before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors opening or using the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused a statement.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// No connection could be had from the pool in time.
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    /// PostgreSQL refused a statement or could not be reached.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// Redis refused a command or could not be reached.
    #[error("Redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// No connection to a network server could be had from its pool in time.
    #[error("{backend}: {source}")]
    Checkout {
        /// Which server: `PostgreSQL` or `Redis`.
        backend: &'static str,
        /// What the pool said.
        source: r2d2::Error,
    },
    /// A server's TLS certificate was refused: not from a trusted CA, out
    /// of date, or for another name.
    #[error(
        "{backend}: the server's TLS certificate is refused ({reason}); it must be signed by a \
         CA in the CA file (by a public CA when none is set) and name the host in the URL"
    )]
    Certificate {
        /// Which server: `PostgreSQL` or `Redis`.
        backend: &'static str,
        /// What rustls said.
        reason: String,
    },
    /// The database setting could not be used; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// A backup or restore could not be done; the message says why.
    #[error("{0}")]
    Backup(String),
    /// The database file was replaced, moved or deleted behind the server's
    /// back; the message says which and what to do.
    #[error("{0}")]
    Replaced(String),
    /// The database file cannot be written.
    #[error(
        "the database {path} cannot be written ({reason}); fix its permissions or the file system \
         (the file, its -wal and -shm, and the directory must be writable)"
    )]
    ReadOnly {
        /// The file.
        path: std::path::PathBuf,
        /// What SQLite said.
        reason: String,
    },
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

/// Whether SQLite failed for a reason of the storage underneath (a full
/// disk, a read-only file or mount, an I/O error, a lock held too long, a
/// file that cannot be opened) rather than of the statement: such a request
/// may succeed later, and is answered `503`, not `500`.
pub fn is_storage_error(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, FileLockingProtocolFailed, ReadOnly,
        SystemIoFailure,
    };
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if matches!(
            f.code,
            DiskFull | ReadOnly | SystemIoFailure | CannotOpen | DatabaseBusy | DatabaseLocked
                | FileLockingProtocolFailed
        )
        // A commit the identity check rolled back: the file was swapped
        // (see `identity`).
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_COMMITHOOK
    )
}

impl DbError {
    /// Whether a row with the same unique key was there already: SQLite's
    /// and PostgreSQL's unique constraints (read from their codes, not
    /// their messages).
    pub fn is_duplicate(&self) -> bool {
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            ),
            Self::Postgres(e) => e.code() == Some(&::postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }

    /// Whether the request may succeed later (answered `503`): storage
    /// failures, no connection in time, a replaced file.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Sqlite(e) => is_storage_error(e),
            Self::Pool(_) | Self::Replaced(_) | Self::ReadOnly { .. } | Self::Checkout { .. } => {
                true
            }
            Self::Postgres(e) => postgres::is_connection_error(e),
            Self::Redis(e) => redis::is_connection_error(e),
            _ => false,
        }
    }

    /// The message without the variant's wrapping, for logs and the
    /// terminal: SQLite's own words for a failed statement.
    pub fn detail(&self) -> String {
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(f, Some(m))) if *m != f.to_string() => {
                format!("SQLite: {m} ({f})")
            }
            Self::Sqlite(e) => format!("SQLite: {e}"),
            e => e.to_string(),
        }
    }
}

/// `e` as [`DbError::Certificate`] when a TLS certificate was refused
/// under it, so the start-up error says what to fix.
pub(crate) fn certificate_or<E>(backend: &'static str, e: E) -> DbError
where
    E: std::error::Error + Into<DbError> + 'static,
{
    match crate::tls::client::refused_certificate(&e) {
        Some(refused) => DbError::Certificate {
            backend,
            reason: refused.to_string(),
        },
        None => e.into(),
    }
}

/// A connection from the pool of a network server (`backend` names it in
/// the error), for every PostgreSQL and Redis user alike.
///
/// # Errors
///
/// [`DbError::Checkout`] when none could be had in time; the request that
/// needed it may succeed later.
pub(crate) fn checkout<M: r2d2::ManageConnection>(
    pool: &r2d2::Pool<M>,
    backend: &'static str,
) -> Result<r2d2::PooledConnection<M>, DbError> {
    pool.get()
        .map_err(|source| DbError::Checkout { backend, source })
}

// How SQLite's and PostgreSQL's rows give the columns of a user row; what
// the columns mean is `identity`'s.
impl crate::identity::UserRow for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn int(&self, index: usize) -> Result<i64, Self::Error> {
        self.get(index)
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, Self::Error> {
        self.get(index)
    }

    fn text(&self, index: usize) -> Result<String, Self::Error> {
        self.get(index)
    }

    fn flag(&self, index: usize) -> Result<bool, Self::Error> {
        self.get(index)
    }
}

impl crate::identity::UserRow for ::postgres::Row {
    type Error = ::postgres::Error;

    fn int(&self, index: usize) -> Result<i64, Self::Error> {
        self.try_get(index)
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>, Self::Error> {
        self.try_get(index)
    }

    fn text(&self, index: usize) -> Result<String, Self::Error> {
        self.try_get(index)
    }

    fn flag(&self, index: usize) -> Result<bool, Self::Error> {
        self.try_get(index)
    }
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

/// For tests: the CA file named by the environment variable `var`, for a
/// test server whose certificate comes from a private CA.
///
/// # Panics
///
/// When the variable names a file that is not a usable CA file: the tests
/// would otherwise fail later, on an unexplained handshake error.
#[doc(hidden)]
pub fn test_ca_file(var: &str) -> Option<crate::tls::client::CaFile> {
    let path = std::env::var_os(var).filter(|v| !v.is_empty())?;
    Some(
        crate::tls::client::CaFile::read(Path::new(&path)).unwrap_or_else(|e| panic!("{var}: {e}")),
    )
}

/// Runs a statement that writes and returns rows (`... RETURNING ...`):
/// every row is read and the statement stepped until SQLite reports it
/// done, and any error on the way is returned.
///
/// SQLite commits such a statement when it finishes or is reset; rusqlite's
/// `query_row` reads one row and resets, dropping the reset's error, so a
/// commit that failed (disk full, read-only file) would be reported as a
/// success. Every `RETURNING` statement goes through here instead.
///
/// # Errors
///
/// Any error from stepping the statement, including the commit's.
pub fn returning<T>(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    mut row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    // `next` returns `None` only once the statement stepped to SQLITE_DONE
    // and its reset succeeded; a failed commit surfaces as an error here.
    while let Some(r) = rows.next()? {
        out.push(row(r)?);
    }
    Ok(out)
}

/// Opens (creating if needed) the database file at `path`, migrates it to the
/// current schema and returns a pool of at most `max_size` connections.
///
/// # Errors
///
/// Fails when the file cannot be opened, a migration fails, or the file was
/// made by a newer gatehouse.
pub fn open(path: &Path, max_size: u32) -> Result<Pool, DbError> {
    open_with(path, max_size, ForeignWal::MoveAside)
}

/// [`open`], saying what to do with a `-wal` beside the file that was
/// written for another file: [`ForeignWal::Refuse`] where a gatehouse
/// server may have the database open (a command run beside it).
///
/// # Errors
///
/// As [`open`]'s, and a foreign `-wal` with [`ForeignWal::Refuse`].
pub fn open_with(path: &Path, max_size: u32, foreign_wal: ForeignWal) -> Result<Pool, DbError> {
    before_sqlite_opens(path, foreign_wal)?;
    // The one connection allowed to create the file: the pool's connections
    // open it without SQLITE_OPEN_CREATE, so a file deleted while serving is
    // an error, never a fresh empty database behind the server's back.
    let mut first = rusqlite::Connection::open(path)?;
    configure(&mut first)?;
    migrate(&mut first)?;
    // A file that opened read-only (permissions, a read-only mount) would
    // serve reads and fail every sign-in; refuse to start instead.
    sqlite::probe_write(&first).map_err(|e| DbError::ReadOnly {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let database_id = sqlite::database_id(&first)?;
    wal::record(path, Some(&database_id))?;
    drop(first);
    Pool::build(path, database_id, max_size)
}

/// What every opening of gatehouse's database file does before SQLite sees
/// it: a `-wal` beside it that was written for another file is moved aside
/// (never replayed), the file is made (`0600`) if it is new, and the `-wal`
/// is recorded for this file before SQLite writes to it (see [`wal`]).
///
/// # Errors
///
/// When the files cannot be examined, made or recorded, or a foreign
/// `-wal` cannot be moved aside.
fn before_sqlite_opens(path: &Path, foreign_wal: ForeignWal) -> Result<(), DbError> {
    wal::guard(path, foreign_wal)?;
    crate::files::touch_private(path).map_err(|e| {
        DbError::Invalid(format!(
            "cannot create the database {}: {e}",
            path.display()
        ))
    })?;
    wal::record(path, wal::id_in_file(path).as_deref())
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
/// When `dest` exists, the source cannot be read, has a `-wal` of another
/// file beside it (moved aside or refused as `foreign_wal` says), or the
/// copy fails its integrity check.
pub fn backup(source: &Path, dest: &Path, foreign_wal: ForeignWal) -> Result<(), DbError> {
    if dest.exists() {
        return Err(DbError::Backup(format!(
            "{} already exists; choose a new file name",
            dest.display()
        )));
    }
    // A -wal of another file beside the source would be copied into the
    // backup as if it were the source's.
    wal::guard(source, foreign_wal)?;
    let src =
        rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    src.busy_timeout(BUSY_TIMEOUT)?;
    // A name of its own, so a file that happens to be called `X.partial`
    // is never touched, and two backups at once never share one.
    let name = dest
        .file_name()
        .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dest.with_file_name(format!(".{name}.{:016x}.partial", rand::random::<u64>()));
    // A backup holds every hash: 0600 from the start (and so after rename).
    crate::files::touch_private(&tmp)
        .map_err(|e| DbError::Backup(format!("cannot create {}: {e}", tmp.display())))?;
    let result = copy_checked(&src, &tmp);
    drop(src);
    let result = result.and_then(|()| {
        std::fs::rename(&tmp, dest)
            .map_err(|e| DbError::Backup(format!("cannot move the copy into place: {e}")))
    });
    if result.is_err() {
        remove_with_companions(&tmp);
    }
    result
}

/// Copies `src` into a new file `tmp`, takes the copy out of WAL mode (a
/// backup is one self-contained file: no `-wal` or `-shm` beside it) and
/// checks it.
fn copy_checked(src: &rusqlite::Connection, tmp: &Path) -> Result<(), DbError> {
    {
        let mut out = rusqlite::Connection::open(tmp)?;
        {
            let copy = rusqlite::backup::Backup::new(src, &mut out)?;
            copy.step(-1)?;
        }
        let mode: String = out.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(DbError::Backup(format!(
                "cannot take the copy out of WAL mode (journal mode {mode})"
            )));
        }
        out.close().map_err(|(_, e)| e)?;
    }
    let found = check(tmp)?;
    if found > SCHEMA_VERSION {
        return Err(DbError::TooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Removes a database file and whatever SQLite (and gatehouse) keeps
/// beside it.
fn remove_with_companions(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm", "-identity"] {
        let _ = std::fs::remove_file(wal::companion(path, suffix));
    }
}

/// Copies everything in the `-wal` of the database at `path` into the
/// file itself and empties the `-wal` (`wal_checkpoint(TRUNCATE)`). A
/// missing file is left missing.
///
/// # Errors
///
/// When the file cannot be opened, or a reader kept part of the `-wal`
/// from being copied.
pub fn checkpoint(path: &Path) -> Result<(), DbError> {
    if !path.exists() {
        return Ok(());
    }
    // Run after a command that opened the file (and so judged its -wal),
    // maybe beside a server: a -wal of another file now is left alone.
    wal::guard(path, ForeignWal::Refuse)?;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let (busy, log, done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 || log != done {
        return Err(DbError::Backup(format!(
            "{done} of {log} pages of the -wal copied; a reader held the rest"
        )));
    }
    Ok(())
}

/// Replaces the database at `dest` with the backup at `source`. Stop the
/// server first: sessions and users it holds in memory would not match
/// (the caller holds the data directory, so none runs). A `-wal` of
/// another file beside `dest` is moved aside first.
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
    // The caller holds the data directory: no server has the file open.
    before_sqlite_opens(dest, ForeignWal::MoveAside)?;
    let mut out = rusqlite::Connection::open(dest)?;
    out.busy_timeout(BUSY_TIMEOUT)?;
    {
        let copy = rusqlite::backup::Backup::new(&src, &mut out)?;
        copy.step(-1)?;
    }
    // An older backup is brought up to this version's schema.
    migrate(&mut out)?;
    // The file holds another database now (the backup's id): everything
    // goes into the file itself, and the -wal is recorded for what it
    // holds, so the next start does not take it for another file's.
    let _: (i64, i64, i64) = out.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    wal::record(dest, Some(&sqlite::database_id(&out)?))?;
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
pub(crate) fn configure(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // 1 MiB of page cache per connection (SQLite's default is 2 MiB): the
    // tables are small, and this keeps memory modest on a Raspberry Pi.
    conn.pragma_update(None, "cache_size", -1024)?;
    Ok(())
}

/// For tests: SQL that makes every `on` (`INSERT`, `UPDATE`) on `table`
/// fail at commit, as a full disk does: a deferred foreign key that a
/// trigger breaks, checked only when the statement's transaction ends.
#[cfg(test)]
pub(crate) fn fail_at_commit(table: &str, on: &str) -> String {
    format!(
        "CREATE TABLE broken (u INTEGER REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED);
         CREATE TRIGGER fail_at_commit AFTER {on} ON {table} \
         BEGIN INSERT INTO broken VALUES (999); END;"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection whose every insert into `t` fails at commit: a trigger
    /// writes a row that breaks a deferred foreign key, which SQLite checks
    /// only when the statement's implicit transaction commits.
    fn failing_at_commit() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TABLE t (x INTEGER);
             CREATE TRIGGER t_fails AFTER INSERT ON t BEGIN INSERT INTO child VALUES (999); END;",
        )
        .expect("schema");
        conn
    }

    #[test]
    fn a_returning_statement_whose_commit_fails_is_an_error() {
        let conn = failing_at_commit();
        let mut stmt = conn
            .prepare("INSERT INTO t VALUES (?1) RETURNING x")
            .expect("prepare");
        let result = returning(&mut stmt, [7], |r| r.get::<_, i64>(0));
        assert!(result.is_err(), "{result:?}");
        let stored: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(stored, 0, "the failed commit stored nothing");
    }

    #[test]
    fn query_row_would_have_reported_the_failed_commit_as_a_row() {
        // Why `returning` exists: this is what rusqlite's `query_row` does.
        let conn = failing_at_commit();
        let row = conn.query_row("INSERT INTO t VALUES (7) RETURNING x", [], |r| {
            r.get::<_, i64>(0)
        });
        assert_eq!(row.ok(), Some(7));
        let stored: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(stored, 0);
    }

    #[test]
    fn a_returning_statement_that_commits_returns_its_rows() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (x INTEGER)")
            .expect("schema");
        let mut stmt = conn
            .prepare("INSERT INTO t VALUES (1), (2) RETURNING x")
            .expect("prepare");
        let rows = returning(&mut stmt, [], |r| r.get::<_, i64>(0)).expect("rows");
        assert_eq!(rows, vec![1, 2]);
    }

    #[test]
    fn a_checkout_that_times_out_is_unavailable_and_names_the_server() {
        // Nothing listens on port 1; the pool is built without connecting.
        let config: ::postgres::Config = "postgres://nobody@127.0.0.1:1/none".parse().expect("url");
        let manager = checked::Checked::new(r2d2_postgres::PostgresConnectionManager::new(
            config,
            postgres::connector(None).expect("connector"),
        ));
        let pool = r2d2::Pool::builder()
            .connection_timeout(Duration::from_millis(200))
            .build_unchecked(manager);
        let Err(err) = postgres::client(&pool) else {
            panic!("a connection from a port nothing listens on");
        };
        assert!(err.is_unavailable(), "{err:?}");
        assert!(err.detail().starts_with("PostgreSQL: "), "{}", err.detail());
    }

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
