//! gatehouse patch: what keeps client connections from taking the server
//! down. The open connections are counted (a [`Slot`] each, held for as long
//! as the socket is open); those waiting idle between kept-alive requests are
//! listed, so that at the cap, or when the process runs out of descriptors,
//! the one idle longest can be closed to make room; and each connection has
//! a read deadline that every read of its request head honours
//! ([`ConnState`]), so a client that sends one byte every few seconds cannot
//! keep a head open past it.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::util::refined_tcp_stream::Stream;

/// A lock that outlives a panic elsewhere: the data behind these locks
/// (a deadline, a list of idle connections) stays valid whatever a panicking
/// thread was doing, so poisoning is ignored rather than spread.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The open client connections of one server.
pub(crate) struct Tracker {
    /// At most this many open at once (0: no cap).
    max: usize,
    open: AtomicUsize,
    next_id: AtomicU64,
    /// The connections idle between requests: since when, and a handle to
    /// close them by.
    idle: Mutex<HashMap<u64, (Instant, Stream)>>,
}

impl Tracker {
    pub(crate) fn new(max: usize) -> Arc<Tracker> {
        Arc::new(Tracker {
            max,
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// How many connections are open.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Whether a new connection would go over the cap.
    pub(crate) fn is_full(&self) -> bool {
        self.max != 0 && self.open() >= self.max
    }

    /// Counts a new connection until the slot is dropped.
    pub(crate) fn slot(self: &Arc<Self>) -> Slot {
        self.open.fetch_add(1, Ordering::AcqRel);
        Slot {
            tracker: Arc::clone(self),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Closes the connection that has been idle the longest, if any is
    /// idle. Its thread then sees the end of the stream and lets it go.
    pub(crate) fn evict_idle(&self) -> bool {
        let victim = {
            let mut idle = lock(&self.idle);
            let oldest = idle
                .iter()
                .min_by_key(|(_, (since, _))| *since)
                .map(|(id, _)| *id);
            oldest.and_then(|id| idle.remove(&id))
        };
        match victim {
            Some((_, mut stream)) => {
                let _ = stream.shutdown(Shutdown::Both);
                true
            }
            None => false,
        }
    }
}

/// One open connection, counted until this is dropped.
pub(crate) struct Slot {
    tracker: Arc<Tracker>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.tracker.idle).remove(&self.id);
        self.tracker.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection's halves share: its slot, a handle on its socket, and
/// the deadline reads must keep.
pub(crate) struct ConnState {
    slot: Slot,
    stream: Stream,
    deadline: Mutex<Option<Instant>>,
}

impl ConnState {
    pub(crate) fn new(slot: Slot, stream: Stream) -> Arc<ConnState> {
        Arc::new(ConnState {
            slot,
            stream,
            deadline: Mutex::new(None),
        })
    }

    /// The moment every read must be done by, if one is set.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        *lock(&self.deadline)
    }

    /// Reads must be done by `at`: each read waits at most the time left.
    pub(crate) fn set_deadline(&self, at: Instant) {
        *lock(&self.deadline) = Some(at);
    }

    /// No deadline from here on: each read may wait up to `per_read`.
    ///
    /// # Errors
    ///
    /// The socket refuses the timeout.
    pub(crate) fn clear_deadline(&self, per_read: Option<Duration>) -> io::Result<()> {
        *lock(&self.deadline) = None;
        self.stream.set_read_timeout(per_read)
    }

    /// Lists the connection as idle (closable to make room) until the
    /// returned guard is dropped.
    pub(crate) fn idle(&self) -> IdleGuard<'_> {
        lock(&self.slot.tracker.idle).insert(self.slot.id, (Instant::now(), self.stream.clone()));
        IdleGuard(&self.slot)
    }
}

/// Keeps a connection listed as idle; dropping it takes it off the list.
pub(crate) struct IdleGuard<'a>(&'a Slot);

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.tracker.idle).remove(&self.0.id);
    }
}

/// The time limits of a connection (see [`crate::Options`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) header: Duration,
    pub(crate) body: Duration,
    pub(crate) keepalive: Duration,
}

impl Timeouts {
    /// The per-read limit while a body flows (`None` for a zero setting:
    /// a socket refuses a zero timeout).
    pub(crate) fn per_read(&self) -> Option<Duration> {
        Some(self.body).filter(|d| !d.is_zero())
    }
}

/// At most one log line per interval for a repeating event, saying how many
/// were left unsaid: an accept loop failing a thousand times a second must
/// not flood the log.
pub(crate) struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    skipped: u64,
}

impl RateLimited {
    pub(crate) fn new(every: Duration) -> RateLimited {
        RateLimited {
            every,
            last: None,
            skipped: 0,
        }
    }

    /// Logs `message()` through `log` unless a line went out less than an
    /// interval ago.
    pub(crate) fn log(&mut self, log: fn(&str), message: impl FnOnce() -> String) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < self.every) {
            self.skipped += 1;
            return;
        }
        let mut line = message();
        if self.skipped > 0 {
            line.push_str(&format!(" ({} more since the last such line)", self.skipped));
        }
        log(&line);
        self.last = Some(now);
        self.skipped = 0;
    }
}
