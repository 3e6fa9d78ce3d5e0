//! The SQLite pool and the identity of the file it serves: the device and
//! inode the file had when the server opened it, and the random database id
//! stored in it (`meta.database_id`).
//!
//! A file replaced, moved or deleted while the server runs used to split the
//! server's view (old connections on the old file, new ones on the new) or,
//! with SQLite's create-on-open, start an empty database behind its back.
//! Now:
//!
//! - a new connection is opened only after the path was found to be the
//!   file opened at start (a `stat`) and the `-wal` beside it recorded for
//!   that file (see [`super::wal`]): SQLite, once it opens a path, reads the
//!   `-wal` and `-shm` beside it, so checking after opening would be too
//!   late. The path is compared again once it is open (a swap between the
//!   two looks), and the database id read through the connection;
//! - a checkout compares the path's identity (a `stat`, no statement) when
//!   the directory's watch ([`super::watch`], inotify) saw the path change,
//!   at least once a second whatever it saw, and every time when there is
//!   no watch; a checkout in between costs no system call;
//! - every commit compares it first (a `stat` in SQLite's commit hook) and
//!   is rolled back on a mismatch, so nothing is ever written to a file
//!   that is no longer the one at the path, however soon after a swap;
//! - connections never create the file.
//!
//! On a mismatch the pool refuses to hand out connections, so writes (and
//! reads) answer `503` with one clear log line until the file is put back or
//! the server restarted on purpose. A `-wal` found recorded for another file
//! (another gatehouse process, one that did not know this server was
//! running, such as one with another data directory, opened a file that
//! replaced this one and moved this server's `-wal` aside) is for good:
//! this server's own `-wal` is no longer at the path, so it serves nothing
//! more until restarted.
//!
//! Connections that SQLite opened read-only (the file was not writable at
//! that moment) are dropped when handed back, so once permissions are fixed
//! the pool reopens them writable by itself.
//!
//! Upstream of this (until issue 22) every checkout ran the `stat`: one
//! system call on every request. The watch makes a swap seen at the next
//! checkout all the same (the event is queued by the rename or unlink
//! itself), the once-a-second look covers a watch that missed something
//! (an overflowed queue, a file system that reports nothing), and the
//! commit hook is what refuses writes before any reaches the old file.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::OpenFlags;

use super::DbError;

/// What the server opened: the path, its device and inode, the database id.
#[derive(Debug)]
struct Identity {
    path: PathBuf,
    dev: u64,
    ino: u64,
    database_id: String,
    /// Whether a mismatch was seen and logged (and not yet cleared).
    broken: AtomicBool,
    /// Whether the `-wal` at the path was found recorded for another file:
    /// this server's `-wal` is gone from the path, for good.
    wal_lost: AtomicBool,
    /// What the directory's watch saw of the path since the last look.
    watch: Arc<super::watch::Watch>,
    /// When the path was last found to be the file (milliseconds since
    /// `born`).
    last_seen: AtomicU64,
    born: Instant,
}

/// How long a checkout trusts the last look at the path when the watch saw
/// nothing: the watch is what notices a swap at once; this bounds what a
/// watch that missed one costs.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Why the `-wal` at the path is no longer this server's.
const WAL_LOST: &str = "has a -wal beside it that another gatehouse process recorded for \
                        another database file (it opened a file that replaced this one)";

impl Identity {
    /// Compares the file at the path with the one opened at start.
    fn check(&self) -> Result<(), DbError> {
        if self.wal_lost.load(Ordering::SeqCst) {
            return Err(self.fail(WAL_LOST));
        }
        let why = match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == (self.dev, self.ino) => {
                self.last_seen
                    .store(millis(self.born.elapsed()), Ordering::Release);
                if self.broken.swap(false, Ordering::SeqCst) {
                    crate::logging::line(&format!(
                        "database {} is back; serving again",
                        self.path.display()
                    ));
                }
                return Ok(());
            }
            Ok(_) => "was replaced by another file",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was deleted or moved away",
            Err(e) => {
                return Err(DbError::Replaced(format!(
                    "cannot check the database {}: {e}",
                    self.path.display()
                )));
            }
        };
        Err(self.fail(why))
    }

    /// At a checkout: [`Identity::check`], unless the watch saw no change
    /// to the path since it was last found to be the file, less than
    /// [`LOOK_EVERY`] ago (then no system call).
    #[inline]
    fn check_at_checkout(&self) -> Result<(), DbError> {
        let fresh = self.watch.quiet()
            && !self.broken.load(Ordering::Acquire)
            && !self.wal_lost.load(Ordering::Acquire)
            && millis(self.born.elapsed()).saturating_sub(self.last_seen.load(Ordering::Acquire))
                < millis(LOOK_EVERY);
        if fresh {
            return Ok(());
        }
        // Rearmed before the look, so a change during it is not lost.
        self.watch.rearm();
        self.check()
    }

    /// Run before a new connection opens the path: the file there is the
    /// one opened at start, and the `-wal` beside it recorded for it.
    fn check_before_open(&self) -> Result<(), DbError> {
        self.check()?;
        if super::wal::still_owned_by(&self.path, self.ino, &self.database_id) {
            Ok(())
        } else {
            self.wal_lost.store(true, Ordering::SeqCst);
            Err(self.fail(WAL_LOST))
        }
    }

    /// Records a mismatch: logged once, and the error every checkout gets.
    fn fail(&self, why: &str) -> DbError {
        let message = format!(
            "the database {} {why} while gatehouse was serving; refusing to use it (nothing is \
             written) until the original file is put back or gatehouse is restarted",
            self.path.display()
        );
        if !self.broken.swap(true, Ordering::SeqCst) {
            crate::logging::line(&format!("error: {message}"));
        }
        DbError::Replaced(message)
    }
}

/// The connection manager: opens the file without creating it, applies
/// the pragmas, checks the database id, and drops read-only connections.
#[derive(Debug)]
pub struct Manager {
    inner: SqliteConnectionManager,
    identity: Arc<Identity>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = rusqlite::Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<rusqlite::Connection, rusqlite::Error> {
        let refused = |e: DbError| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(e.to_string()),
            )
        };
        // Before SQLite opens the path, and so reads the -wal and -shm
        // beside it; the pool opens connections by itself too (to keep one
        // idle), so this cannot wait for a checkout.
        self.identity.check_before_open().map_err(refused)?;
        let conn = self.inner.connect()?;
        // A swap between the look and the open is seen here.
        self.identity.check().map_err(refused)?;
        // Every commit looks at the path first: a write is never committed
        // to a file that was swapped out from under the server, even in the
        // moment before the watch tells the next checkout (SQLite rolls the
        // transaction back when the hook says so).
        let identity = Arc::clone(&self.identity);
        conn.commit_hook(Some(move || identity.check().is_err()))?;
        match database_id(&conn) {
            Ok(id) if id == self.identity.database_id => Ok(conn),
            _ => {
                let e = self.identity.fail("was replaced by another database");
                Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(e.to_string()),
                ))
            }
        }
    }

    fn is_valid(&self, conn: &mut rusqlite::Connection) -> Result<(), rusqlite::Error> {
        // Checked at every checkout (a flag in memory, no I/O): the pool
        // also opens connections by itself to keep one idle, and one opened
        // while the file was read-only must not serve the first write after
        // the permissions are fixed.
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                Some("connection opened read-only".into()),
            ));
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut rusqlite::Connection) -> bool {
        // SQLite falls back to read-only when the file cannot be opened for
        // writing; such a connection would fail every write for good.
        conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
    }
}

/// A pool of SQLite connections to one identified file.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: r2d2::Pool<Manager>,
    identity: Arc<Identity>,
}

impl Pool {
    /// The pool on the existing, migrated file at `path` whose id is
    /// `database_id`.
    pub(super) fn build(path: &Path, database_id: String, max_size: u32) -> Result<Self, DbError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            DbError::Invalid(format!("cannot read the database {}: {e}", path.display()))
        })?;
        let identity = Arc::new(Identity {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            database_id,
            broken: AtomicBool::new(false),
            wal_lost: AtomicBool::new(false),
            watch: super::watch::Watch::start(path),
            last_seen: AtomicU64::new(0),
            born: Instant::now(),
        });
        let manager = Manager {
            inner: SqliteConnectionManager::file(path)
                .with_flags(
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_URI
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .with_init(super::configure),
            identity: Arc::clone(&identity),
        };
        let inner = r2d2::Pool::builder()
            .max_size(max_size.max(1))
            .min_idle(Some(1))
            // A SQLite connection to a local file does not go stale, so the
            // check on checkout runs no statement: it only refuses a
            // connection SQLite opened read-only (see `is_valid`). The file's
            // identity is checked in `Pool::get` (see `check_at_checkout`).
            .test_on_check_out(true)
            .connection_timeout(Duration::from_secs(10))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)?;
        Ok(Self { inner, identity })
    }

    /// A connection to the file the server opened.
    ///
    /// # Errors
    ///
    /// [`DbError::Replaced`] when the file at the path is no longer that
    /// file; [`DbError::Pool`] when no connection could be had in time.
    pub fn get(&self) -> Result<super::Conn, DbError> {
        self.identity.check_at_checkout()?;
        Ok(self.inner.get()?)
    }

    /// What a checkout checks before handing out a connection (the file
    /// at the path is still the one opened), for a reader that answers
    /// from what it kept without a connection: it must refuse when a
    /// checkout would.
    ///
    /// # Errors
    ///
    /// [`DbError::Replaced`], as [`Pool::get`].
    #[inline]
    pub fn still_the_file(&self) -> Result<(), DbError> {
        self.identity.check_at_checkout()
    }

    /// A watch on this database's commits (see [`super::Commits`]).
    pub fn commits(&self) -> Option<super::Commits> {
        super::Commits::watch(&self.identity.path)
    }

    /// The random id stored in the database when it was created.
    pub fn database_id(&self) -> &str {
        &self.identity.database_id
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.identity.path
    }
}

/// `d` in whole milliseconds.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The database id stored in `meta`.
pub(super) fn database_id(conn: &rusqlite::Connection) -> rusqlite::Result<String> {
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'database_id'",
        [],
        |r| r.get(0),
    )
}

/// Proves that a write commits: rewrites one row of `meta`.
///
/// # Errors
///
/// Whatever stops the commit: a read-only file or mount, a full disk.
pub fn probe_write(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'write_probe'")?
        .execute([crate::clock::now().to_string()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use r2d2::ManageConnection as _;

    use super::*;

    fn opened() -> (tempfile::TempDir, Pool) {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = super::super::open(&dir.path().join("t.db"), 2).expect("open");
        (dir, pool)
    }

    #[test]
    fn a_deleted_database_is_refused_and_never_recreated() {
        let (dir, pool) = opened();
        let path = dir.path().join("t.db");
        std::fs::remove_file(&path).expect("delete");
        let err = pool.get().expect_err("refused");
        assert!(
            err.to_string().contains("was deleted or moved away"),
            "{err}"
        );
        assert!(!path.exists(), "a fresh database was created");
    }

    #[test]
    fn a_replaced_database_is_refused() {
        let (dir, pool) = opened();
        let path = dir.path().join("t.db");
        let other = dir.path().join("other.db");
        drop(super::super::open(&other, 1).expect("another database"));
        std::fs::rename(&other, &path).expect("replace");
        let err = pool.get().expect_err("refused");
        assert!(err.to_string().contains("was replaced"), "{err}");
    }

    #[test]
    fn a_write_through_a_connection_taken_before_a_swap_is_rolled_back() {
        let (dir, pool) = opened();
        let path = dir.path().join("t.db");
        // Taken while the file was the server's: the checkout's look passed.
        let conn = pool.get().expect("served");
        let other = dir.path().join("other.db");
        drop(super::super::open(&other, 1).expect("another database"));
        std::fs::rename(&other, &path).expect("replace");
        let err = conn
            .execute(
                "UPDATE meta SET value = 'written' WHERE key = 'write_probe'",
                [],
            )
            .expect_err("committed to a swapped-out file");
        assert!(
            matches!(&err, rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_COMMITHOOK),
            "{err}"
        );
        assert!(
            super::super::is_storage_error(&err),
            "answered 500, not 503"
        );
        let probe: String = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'write_probe'",
                [],
                |r| r.get(0),
            )
            .expect("read the old file");
        assert_ne!(probe, "written", "the write stayed");
        assert!(pool.get().is_err(), "the swap is refused at checkout too");
    }

    #[test]
    fn a_database_put_back_is_served_again() {
        let (dir, pool) = opened();
        let path = dir.path().join("t.db");
        let aside = dir.path().join("aside.db");
        std::fs::rename(&path, &aside).expect("move away");
        assert!(pool.get().is_err());
        std::fs::rename(&aside, &path).expect("put back");
        pool.get().expect("served again");
    }

    #[test]
    fn a_new_connection_to_another_database_is_refused() {
        let (dir, pool) = opened();
        let other = dir.path().join("other.db");
        drop(super::super::open(&other, 1).expect("another database"));
        // The same path identity, another id: a manager for `other` that
        // expects this pool's id.
        let manager = Manager {
            inner: SqliteConnectionManager::file(&other),
            identity: Arc::clone(&pool.identity),
        };
        let err = manager.connect().expect_err("refused");
        assert!(err.to_string().contains("another database"), "{err}");
    }

    /// The manager the pool of `pool` uses, on its path.
    fn manager_of(pool: &Pool) -> Manager {
        Manager {
            inner: SqliteConnectionManager::file(&pool.identity.path)
                .with_init(super::super::configure),
            identity: Arc::clone(&pool.identity),
        }
    }

    #[test]
    fn no_connection_is_opened_on_a_path_that_is_another_file_now() {
        let (dir, pool) = opened();
        let path = dir.path().join("t.db");
        // A database in rollback mode: a connection opened on it would turn
        // it to WAL and make a -wal and -shm beside it.
        let other = dir.path().join("other.db");
        rusqlite::Connection::open(&other)
            .expect("open")
            .execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            .expect("schema");
        std::fs::rename(&other, &path).expect("replace");
        let err = manager_of(&pool).connect().expect_err("refused");
        assert!(err.to_string().contains("was replaced"), "{err}");
        let header = std::fs::read(&path).expect("read");
        assert_eq!(header[18], 1, "SQLite opened it and set WAL mode");
    }

    #[test]
    fn no_connection_is_opened_once_the_wal_is_recorded_for_another_file() {
        let (dir, pool) = opened();
        let path = dir.path().join("t.db");
        pool.get().expect("served");
        let ino = std::fs::metadata(&path).expect("stat").ino();
        std::fs::write(
            super::super::wal::sidecar(&path),
            format!("gatehouse-database-identity-v1 dev=1 ino={} id=\n", ino + 1),
        )
        .expect("a record for another file");
        let err = manager_of(&pool).connect().expect_err("refused");
        assert!(err.to_string().contains("recorded for"), "{err}");
        // For good: the path is still this file, but its -wal is not.
        assert!(pool.get().is_err());
    }

    #[test]
    fn a_read_only_connection_is_never_handed_out_and_dropped_when_handed_back() {
        let (dir, pool) = opened();
        let path = dir.path().join("t.db");
        let mut ro = rusqlite::Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open read-only");
        let manager = Manager {
            inner: SqliteConnectionManager::file(&path),
            identity: Arc::clone(&pool.identity),
        };
        assert!(manager.has_broken(&mut ro));
        assert!(manager.is_valid(&mut ro).is_err(), "handed out read-only");
        let mut rw = manager.connect().expect("connect");
        assert!(!manager.has_broken(&mut rw));
        manager
            .is_valid(&mut rw)
            .expect("a writable connection is valid");
    }

    #[test]
    fn the_write_probe_fails_on_a_read_only_connection() {
        let (dir, _pool) = opened();
        let ro = rusqlite::Connection::open_with_flags(
            dir.path().join("t.db"),
            OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open read-only");
        assert!(probe_write(&ro).is_err());
    }
}
