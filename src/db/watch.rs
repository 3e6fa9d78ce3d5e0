//! Watches the SQLite database's path for being renamed over, moved away or
//! deleted (inotify on its directory, one watcher thread per process), so
//! that a checkout from the pool looks at the path (a `stat`) only when
//! something happened there, instead of on every request.
//!
//! The kernel queues an event as part of the rename or unlink itself, so
//! the watcher marks the path changed before the next request can usually
//! get to the pool; what it cannot promise (the watcher thread not yet
//! scheduled, a queue that overflowed, a file system that reports nothing,
//! inotify unavailable) is covered by `identity`: a look at least once a
//! second, a look at every checkout when there is no watch, and a look
//! before every commit, which is what keeps writes off a swapped file.

use std::collections::HashMap;
use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// What the watcher saw of one database path.
#[derive(Debug)]
pub struct Watch {
    /// The file's name in its directory.
    name: OsString,
    /// The directory is watched (false: no watch could be made, or it went
    /// away with its directory; then every checkout must look).
    watching: AtomicBool,
    /// The name was created, renamed or deleted since the last
    /// [`Watch::rearm`] (set at first, so the first checkout looks).
    changed: AtomicBool,
}

impl Watch {
    /// Watches `path`'s directory for changes to `path`; without inotify
    /// (or its limits reached) the watch is never quiet.
    pub fn start(path: &Path) -> Arc<Watch> {
        let watch = Arc::new(Watch {
            name: path.file_name().unwrap_or_default().to_os_string(),
            watching: AtomicBool::new(false),
            changed: AtomicBool::new(true),
        });
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Some(watcher) = watcher()
            && watcher.add(dir, &watch)
        {
            watch.watching.store(true, Ordering::Release);
        }
        watch
    }

    /// Whether nothing happened to the path since the last rearm, as far
    /// as a live watch can tell.
    pub fn quiet(&self) -> bool {
        self.watching.load(Ordering::Acquire) && !self.changed.load(Ordering::Acquire)
    }

    /// Called just before the path is looked at: a change from here on is
    /// seen by the next [`Watch::quiet`].
    pub fn rearm(&self) {
        self.changed.store(false, Ordering::Release);
    }

    fn lost(&self) {
        self.watching.store(false, Ordering::Release);
        self.changed.store(true, Ordering::Release);
    }
}

/// The process's inotify instance and what each of its watches is for.
struct Watcher {
    fd: OwnedFd,
    /// By watch descriptor (one per directory): the paths watched there.
    watches: Mutex<HashMap<i32, Vec<Weak<Watch>>>>,
}

/// The process's watcher, started on first use; `None` without inotify
/// (instances are limited per user: 128 by default).
fn watcher() -> Option<&'static Arc<Watcher>> {
    static WATCHER: OnceLock<Option<Arc<Watcher>>> = OnceLock::new();
    WATCHER
        .get_or_init(|| {
            let fd = inotify::init(CreateFlags::CLOEXEC).ok()?;
            let watcher = Arc::new(Watcher {
                fd,
                watches: Mutex::new(HashMap::new()),
            });
            let running = Arc::clone(&watcher);
            std::thread::Builder::new()
                .name("gatehouse-dbwatch".into())
                .spawn(move || running.run())
                .ok()?;
            Some(watcher)
        })
        .as_ref()
}

impl Watcher {
    /// Adds `watch` under a watch on `dir`; false if none could be made.
    fn add(&self, dir: &Path, watch: &Arc<Watch>) -> bool {
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR;
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        match inotify::add_watch(&self.fd, dir, flags) {
            Ok(wd) => {
                let list = watches.entry(wd).or_default();
                list.retain(|w| w.strong_count() > 0);
                list.push(Arc::downgrade(watch));
                true
            }
            Err(_) => false,
        }
    }

    /// Reads events for as long as the process runs.
    fn run(&self) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        loop {
            match reader.next() {
                Ok(event) => {
                    let (wd, flags) = (event.wd(), event.events());
                    let name = event.file_name().map(|n| n.to_bytes().to_vec());
                    self.seen(wd, flags, name.as_deref());
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    // Nothing more will be seen: every path is looked at
                    // on every checkout from now on.
                    let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
                    for w in watches.drain().flat_map(|(_, l)| l) {
                        if let Some(w) = w.upgrade() {
                            w.lost();
                        }
                    }
                    return;
                }
            }
        }
    }

    fn seen(&self, wd: i32, flags: ReadFlags, name: Option<&[u8]>) {
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            // Events were dropped: any path may have changed.
            for w in watches.values().flatten().filter_map(Weak::upgrade) {
                w.changed.store(true, Ordering::Release);
            }
            return;
        }
        let gone = flags.intersects(
            ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF | ReadFlags::UNMOUNT,
        );
        let Some(list) = watches.get_mut(&wd) else {
            return;
        };
        list.retain(|w| w.strong_count() > 0);
        for w in list.iter().filter_map(Weak::upgrade) {
            if gone {
                w.lost();
            } else if name == Some(w.name.as_bytes()) {
                w.changed.store(true, Ordering::Release);
            }
        }
        if gone || list.is_empty() {
            watches.remove(&wd);
            if !gone {
                let _ = inotify::remove_watch(&self.fd, wd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Waits (generously) for `watch` to stop being quiet.
    fn noticed(watch: &Watch) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if !watch.quiet() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn a_rename_over_the_path_or_its_deletion_is_noticed_and_other_files_are_not() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        std::fs::write(&path, b"one").expect("write");
        let watch = Watch::start(&path);
        assert!(!watch.quiet(), "a new watch makes the first checkout look");
        watch.rearm();
        assert!(watch.quiet(), "inotify is available here");

        // Another file beside it coming and going changes nothing.
        std::fs::write(dir.path().join("t.db-wal"), b"x").expect("wal");
        std::fs::remove_file(dir.path().join("t.db-wal")).expect("rm wal");
        std::thread::sleep(Duration::from_millis(100));
        assert!(watch.quiet(), "another file's events marked the path");

        let other = dir.path().join("other.db");
        std::fs::write(&other, b"two").expect("write");
        std::fs::rename(&other, &path).expect("rename over");
        assert!(noticed(&watch), "a rename over the path went unseen");

        watch.rearm();
        std::fs::remove_file(&path).expect("delete");
        assert!(noticed(&watch), "a deletion went unseen");
    }

    #[test]
    fn a_watch_whose_directory_is_gone_is_never_quiet_again() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.db");
        std::fs::write(&path, b"one").expect("write");
        let watch = Watch::start(&path);
        watch.rearm();
        drop(dir);
        // The file's deletion may be seen before the directory's: wait for
        // the watch to be lost, then it stays lost.
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            watch.rearm();
            if !watch.quiet() {
                break;
            }
            assert!(Instant::now() < end, "the directory's deletion went unseen");
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..3 {
            watch.rearm();
            assert!(
                !watch.quiet(),
                "a lost watch must leave every checkout looking"
            );
        }
    }
}
