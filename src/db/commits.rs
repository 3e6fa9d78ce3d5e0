//! Whether anything may have been committed to the database since the last
//! look, told without a statement: what lets a reader keep what it read
//! (the session cache of issue 22) and still never answer from before a
//! commit, whoever made it (this process, a `gatehouse` command beside it,
//! another server on the same file).
//!
//! In WAL mode every commit, by any process, first writes its frames to
//! the `-wal` file with `write(2)`, and only then publishes them (the
//! wal-index header in the `-shm`), which is the moment readers can see
//! them. The kernel queues an inotify `IN_MODIFY` for the `-wal` inside
//! that `write`, so by the time any reader could see a commit, its event is
//! queued. A look ([`Commits::any_since_last_look`]) reads the queue
//! without waiting (to its end: one `read` that fails with `EAGAIN` when nothing came:
//! one system call, where a statement's read transaction costs SQLite two
//! `fcntl` on a quiet connection) and says "changed" for anything it cannot
//! vouch for: an event, an overflowed queue, the `-wal` deleted or moved
//! (then for good: the holder stops trusting what it kept), no inotify.
//!
//! One inotify instance serves the process (instances are limited per user,
//! 128 by default): the look that reads the queue marks every holder whose
//! file had events, and holds the instance's lock while reading and while
//! asking about its own holder, so an event another thread has taken off
//! the queue is always marked before anyone can ask.
//!
//! What it cannot see: writes from another machine to a file on a network
//! file system (where SQLite's own locking does not hold either).

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// One holder's view of one database's commits.
#[derive(Debug)]
pub struct Commits {
    mark: Arc<Mark>,
}

#[derive(Debug, Default)]
struct Mark {
    /// The `-wal`'s name in the watched directory.
    name: std::ffi::OsString,
    /// Events came for the file since this holder last looked.
    changed: AtomicBool,
    /// The watch is gone (file deleted or moved, queue unreadable): every
    /// look says "changed" from now on.
    lost: AtomicBool,
}

impl Commits {
    /// Watches the `-wal` of the database at `path`, by name in its
    /// directory: SQLite deletes and makes the `-wal` again (when the last
    /// connection to the file closes, in any process), and a watch on the
    /// file itself would go on watching the deleted one while a connection
    /// still holds it open. `None` without inotify: then nothing may be
    /// kept.
    ///
    /// SQLite follows symbolic links and keeps the `-wal` beside the file
    /// they lead to, so that is where the watch goes; a path that cannot
    /// be resolved gets no watch.
    pub fn watch(path: &Path) -> Option<Commits> {
        let path = std::fs::canonicalize(path).ok()?;
        let wal = super::wal::companion(&path, "-wal");
        let name = wal.file_name()?.to_os_string();
        let dir = match wal.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let queue = queue()?;
        let mark = Arc::new(Mark {
            name,
            ..Mark::default()
        });
        let mut marks = queue.marks.lock().unwrap_or_else(PoisonError::into_inner);
        // One watch per directory in one instance: watching it again gives
        // the same descriptor (the flags are the same each time).
        let wd = inotify::add_watch(
            &queue.fd,
            dir,
            WatchFlags::MODIFY
                | WatchFlags::CREATE
                | WatchFlags::DELETE
                | WatchFlags::MOVED_FROM
                | WatchFlags::MOVED_TO
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF
                | WatchFlags::ONLYDIR,
        )
        .ok()?;
        let list = marks.entry(wd).or_default();
        list.retain(|m| m.strong_count() > 0);
        list.push(Arc::downgrade(&mark));
        Some(Commits { mark })
    }

    /// Whether anything may have been committed since the previous look
    /// (or since [`Commits::watch`], for the first).
    #[inline]
    pub fn any_since_last_look(&self) -> bool {
        let Some(queue) = queue() else {
            return true;
        };
        let mut marks = queue.marks.lock().unwrap_or_else(PoisonError::into_inner);
        queue.drain(&mut marks);
        self.mark.lost.load(Ordering::Acquire) | self.mark.changed.swap(false, Ordering::AcqRel)
    }
}

/// How many reads of the queue one look makes at most before it vouches
/// for nothing (64 KiB of events: about two thousand).
const MAX_READS: usize = 16;

/// The process's non-blocking inotify instance and, by watch descriptor,
/// the holders of each watched `-wal`.
struct Queue {
    fd: OwnedFd,
    marks: Mutex<HashMap<i32, Vec<Weak<Mark>>>>,
}

#[inline]
fn queue() -> Option<&'static Queue> {
    static QUEUE: OnceLock<Option<Queue>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok()?;
            Some(Queue {
                fd,
                marks: Mutex::new(HashMap::new()),
            })
        })
        .as_ref()
}

impl Queue {
    /// Takes everything queued (one `read` when nothing is: `EAGAIN`) and
    /// marks its holders. A commit's event may sit behind any number of
    /// others' (files made and written in the same directory), so the
    /// queue is read to its end; a queue longer than [`MAX_READS`] reads
    /// (a directory this busy) marks every holder instead, and what is
    /// left is read at the next look.
    fn drain(&self, marks: &mut HashMap<i32, Vec<Weak<Mark>>>) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        let mut reads = 0;
        loop {
            if reader.is_buffer_empty() {
                reads += 1;
                if reads > MAX_READS {
                    for m in marks.values().flatten().filter_map(Weak::upgrade) {
                        m.changed.store(true, Ordering::Release);
                    }
                    return;
                }
            }
            match reader.next() {
                Ok(event) => {
                    let (wd, flags) = (event.wd(), event.events());
                    let name = event.file_name().map(|n| n.to_bytes());
                    Self::seen(marks, wd, flags, name);
                }
                Err(rustix::io::Errno::AGAIN) => return,
                // Interrupted before reading: what is queued is still there.
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    // The queue cannot be read: nothing is vouched for.
                    for m in marks.drain().flat_map(|(_, l)| l) {
                        if let Some(m) = m.upgrade() {
                            m.lost.store(true, Ordering::Release);
                        }
                    }
                    return;
                }
            }
        }
    }

    fn seen(
        marks: &mut HashMap<i32, Vec<Weak<Mark>>>,
        wd: i32,
        flags: ReadFlags,
        name: Option<&[u8]>,
    ) {
        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            for m in marks.values().flatten().filter_map(Weak::upgrade) {
                m.changed.store(true, Ordering::Release);
            }
            return;
        }
        let gone = flags.intersects(
            ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF | ReadFlags::UNMOUNT,
        );
        let Some(list) = marks.get_mut(&wd) else {
            return;
        };
        list.retain(|m| m.strong_count() > 0);
        for m in list.iter().filter_map(Weak::upgrade) {
            if gone {
                m.changed.store(true, Ordering::Release);
                m.lost.store(true, Ordering::Release);
            } else if name == Some(m.name.as_bytes()) {
                m.changed.store(true, Ordering::Release);
            }
        }
        if gone {
            marks.remove(&wd);
        }
    }
}

impl Drop for Commits {
    fn drop(&mut self) {
        let Some(queue) = queue() else {
            return;
        };
        let mut marks = queue.marks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut unwatched = Vec::new();
        for (wd, list) in marks.iter_mut() {
            list.retain(|m| m.strong_count() > 0 && !std::ptr::eq(m.as_ptr(), &*self.mark));
            if list.is_empty() {
                unwatched.push(*wd);
            }
        }
        for wd in unwatched {
            marks.remove(&wd);
            let _ = inotify::remove_watch(&queue.fd, wd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit that changes a page (rewriting a row with the bytes it
    /// has writes nothing: SQLite compares before it dirties a page).
    fn commit(conn: &rusqlite::Connection) {
        conn.execute(
            "UPDATE meta SET value = value || 'x' WHERE key = 'write_probe'",
            [],
        )
        .expect("commit");
    }

    /// A database file in WAL mode (as gatehouse's are) and a connection.
    fn database() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().expect("dir");
        let conn = open(&dir.path().join("t.db"));
        (dir, conn)
    }

    fn open(path: &Path) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(path).expect("open");
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
             INSERT OR IGNORE INTO meta VALUES ('write_probe', '0');",
        )
        .expect("schema");
        c
    }

    #[test]
    fn a_commit_through_any_connection_is_seen_at_the_next_look_and_reads_are_not() {
        let (dir, conn) = database();
        let commits = Commits::watch(&dir.path().join("t.db")).expect("inotify here");
        let _ = commits.any_since_last_look();
        assert!(!commits.any_since_last_look(), "nothing happened");
        conn.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))
            .expect("read");
        assert!(!commits.any_since_last_look(), "a read is no commit");
        commit(&conn);
        assert!(commits.any_since_last_look(), "this process's commit");
        assert!(!commits.any_since_last_look(), "told once");
        // Another connection, as another process would have: no shared
        // state in this process but the kernel's.
        let other = rusqlite::Connection::open(dir.path().join("t.db")).expect("open");
        commit(&other);
        assert!(commits.any_since_last_look(), "another connection's commit");
    }

    #[test]
    fn every_holder_is_told_whoever_read_the_queue() {
        let (dir, conn) = database();
        let path = dir.path().join("t.db");
        let (a, b) = (
            Commits::watch(&path).expect("a"),
            Commits::watch(&path).expect("b"),
        );
        let (_, _) = (a.any_since_last_look(), b.any_since_last_look());
        commit(&conn);
        assert!(a.any_since_last_look(), "a took the event off the queue");
        assert!(b.any_since_last_look(), "b is told all the same");
        drop(a);
        commit(&conn);

        assert!(b.any_since_last_look(), "b keeps its watch when a goes");
    }

    #[test]
    fn the_wal_deleted_and_made_again_is_still_watched_and_other_files_are_not() {
        // One plain connection (no pool that may still be opening one), so
        // closing it is closing the last.
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        let first = open(&path);
        let commits = Commits::watch(&path).expect("watch");
        let _ = commits.any_since_last_look();
        std::fs::write(dir.path().join("unrelated.log"), b"x").expect("write");
        std::fs::write(dir.path().join("t.db-wal-not"), b"x").expect("write");
        assert!(!commits.any_since_last_look(), "other files are no commits");
        commit(&first);
        assert!(commits.any_since_last_look(), "a commit");
        // The last connection closed: SQLite checkpoints, deletes the -wal.
        drop(first);
        assert!(!dir.path().join("t.db-wal").exists(), "the -wal is gone");
        assert!(commits.any_since_last_look());
        let second = open(&path);
        let _ = commits.any_since_last_look();
        commit(&second);
        assert!(commits.any_since_last_look(), "the new -wal's commit");
        commit(&second);
        assert!(commits.any_since_last_look(), "and the next");
    }

    #[test]
    fn a_commit_behind_many_other_events_is_seen_at_the_next_look() {
        let (dir, conn) = database();
        let commits = Commits::watch(&dir.path().join("t.db")).expect("watch");
        let _ = commits.any_since_last_look();
        // Far more than one read's worth of other files' events first
        // (about 25 KiB: less than a look reads at most).
        for i in 0..400 {
            std::fs::write(dir.path().join(format!("other-{i}")), b"x").expect("write");
        }
        commit(&conn);
        assert!(commits.any_since_last_look(), "the commit behind them");
        // (A queue longer than MAX_READS reads marks every holder of the
        // process, so it is not made here: the other tests' holders share
        // the one queue, and would be told of commits that never were.)
    }

    #[test]
    fn a_database_reached_through_a_symbolic_link_is_watched_where_its_wal_is() {
        let top = tempfile::tempdir().expect("dir");
        for d in ["data", "elsewhere"] {
            std::fs::create_dir(top.path().join(d)).expect("mkdir");
        }
        let real = top.path().join("elsewhere/real.db");
        let conn = open(&real);
        let link = top.path().join("data/t.db");
        std::os::unix::fs::symlink(&real, &link).expect("link");
        let through = open(&link);
        let commits = Commits::watch(&link).expect("watch");
        let _ = commits.any_since_last_look();
        commit(&conn);
        assert!(
            commits.any_since_last_look(),
            "a commit to the file the link leads to"
        );
        commit(&through);
        assert!(commits.any_since_last_look(), "and one through the link");
        assert!(
            !top.path().join("data/t.db-wal").exists(),
            "the -wal is beside the file"
        );
    }

    #[test]
    fn a_directory_moved_away_is_never_vouched_for_again() {
        let top = tempfile::tempdir().expect("dir");
        std::fs::create_dir(top.path().join("data")).expect("mkdir");
        let conn = open(&top.path().join("data/t.db"));
        let commits = Commits::watch(&top.path().join("data/t.db")).expect("watch");
        let _ = commits.any_since_last_look();
        std::fs::rename(top.path().join("data"), top.path().join("moved")).expect("move");
        for _ in 0..3 {
            assert!(commits.any_since_last_look());
        }
        drop(conn);
    }
}
