//! The reaper: a background thread that deletes expired sessions, and then
//! does whatever other clearing up its owner gives it (the server trims
//! its audit log there).
//!
//! It deletes in short batches, each its own statement, so a live request
//! never waits behind one long delete; it logs a failure and tries again at
//! the next interval rather than taking the server down; and it notices a
//! stop request between batches, so shutdown never waits long for it.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::store::Store;
use crate::clock;

/// Rows deleted per batch.
pub const BATCH: usize = 500;

/// A running reaper; [`Reaper::stop`] ends it.
pub struct Reaper {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Reaper {
    /// Starts the `gatehouse-reaper` thread, reaping every `interval`.
    ///
    /// `on_deleted` is called with each batch's count (for metrics and logs).
    ///
    /// # Errors
    ///
    /// When the thread cannot be spawned.
    pub fn start(
        store: Arc<dyn Store>,
        interval: Duration,
        on_deleted: impl Fn(usize) + Send + 'static,
    ) -> std::io::Result<Self> {
        Self::start_with(store, interval, on_deleted, |_| {})
    }

    /// Like [`start`](Self::start), and after the sessions each round runs
    /// `chores`, which does its own work in short batches and calls the
    /// function it is given between them: `false` means stop now (the
    /// reaper is being stopped), after a short pause that gives writers a
    /// turn.
    ///
    /// # Errors
    ///
    /// When the thread cannot be spawned.
    pub fn start_with(
        store: Arc<dyn Store>,
        interval: Duration,
        on_deleted: impl Fn(usize) + Send + 'static,
        mut chores: impl FnMut(&mut dyn FnMut() -> bool) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("gatehouse-reaper".into())
            .spawn(move || {
                loop {
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    loop {
                        match store.delete_expired(clock::now(), BATCH) {
                            Ok(n) => {
                                if n > 0 {
                                    on_deleted(n);
                                }
                                if n < BATCH {
                                    break;
                                }
                            }
                            Err(e) => {
                                eprintln!("reaper: deleting expired sessions failed: {e}");
                                break;
                            }
                        }
                        // Between batches: give writers a turn and honour a stop.
                        match stopped.recv_timeout(Duration::from_millis(5)) {
                            Err(RecvTimeoutError::Timeout) => {}
                            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    let mut stopping = false;
                    chores(&mut || {
                        stopping = stopping
                            || !matches!(
                                stopped.recv_timeout(Duration::from_millis(5)),
                                Err(RecvTimeoutError::Timeout)
                            );
                        !stopping
                    });
                    if stopping {
                        return;
                    }
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread and waits for it (at most one batch).
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            eprintln!("reaper: thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::conformance::record;
    use crate::session::{MemoryStore, SessionId};
    use std::time::Instant;

    #[test]
    fn the_reaper_deletes_expired_sessions_and_stops_promptly() {
        let store = Arc::new(MemoryStore::new());
        let now = clock::now();
        let mut dead = Vec::new();
        for _ in 0..(BATCH * 2 + 7) {
            let mut r = record(SessionId::generate().key(), now - 10_000);
            r.expires_at = now - 1;
            store.create(&r).expect("create");
            dead.push(r.key);
        }
        let live = record(SessionId::generate().key(), now);
        store.create(&live).expect("create");

        let (tx, rx) = mpsc::channel();
        let reaper = Reaper::start(store.clone(), Duration::from_millis(20), move |n| {
            let _ = tx.send(n);
        })
        .expect("start");
        let mut total = 0;
        while total < dead.len() {
            total += rx.recv_timeout(Duration::from_secs(5)).expect("a batch");
        }
        let started = Instant::now();
        reaper.stop();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "stop took {:?}",
            started.elapsed()
        );
        assert_eq!(total, BATCH * 2 + 7);
        assert!(store.load(&live.key, clock::now()).expect("load").is_some());
    }

    #[test]
    fn a_long_interval_does_not_delay_stop() {
        let store = Arc::new(MemoryStore::new());
        let reaper = Reaper::start(store, Duration::from_secs(3600), |_| {}).expect("start");
        let started = Instant::now();
        reaper.stop();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
