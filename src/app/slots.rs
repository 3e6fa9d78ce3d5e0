//! How many requests are answered at once: the slots a request takes on the
//! thread of the connection that read it.
//!
//! The server answers each request on its connection's own thread
//! (tiny_http's `Options::serve`) instead of handing it to a pool of request
//! threads and back: three thread switches a request, most of the hot
//! path's cost once the rest was trimmed (gatehouse issue 22). The pool did
//! one more thing, which this keeps: at most `threads` + bcrypt workers +
//! waiting sign-ins handlers run at once, whatever the number of
//! connections, so a flood cannot run more database checkouts, bcrypt
//! waits or upstream calls at once than before. A request that finds every
//! slot taken waits on its own connection's thread, as it waited in the
//! pool's queue before.
//!
//! Taking and giving back a free slot is one atomic operation each; only a
//! full house touches the lock. On shutdown the slots close: a request read
//! after that is answered `503` and its connection closed, and shutdown
//! waits until the requests under way have answered.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// The request slots of one listener.
#[derive(Debug)]
pub struct Slots {
    limit: usize,
    busy: AtomicUsize,
    waiting: AtomicUsize,
    closed: AtomicBool,
    lock: Mutex<()>,
    freed: Condvar,
    /// Attempts that found every slot taken (for tests).
    #[cfg(test)]
    missed: AtomicUsize,
}

/// A slot held: given back when dropped (also when its handler panics).
#[derive(Debug)]
pub struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// How long a waiter sleeps before it looks again on its own (a safety net:
/// a slot given back always wakes one).
const RECHECK: Duration = Duration::from_millis(100);

impl Slots {
    /// `limit` slots (at least one).
    pub fn new(limit: usize) -> Slots {
        Slots {
            limit: limit.max(1),
            busy: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            lock: Mutex::new(()),
            freed: Condvar::new(),
            #[cfg(test)]
            missed: AtomicUsize::new(0),
        }
    }

    /// Takes a slot, waiting for one while all are held; `None` once the
    /// slots are closed.
    pub fn take(&self) -> Option<Slot<'_>> {
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            if self.try_take() {
                let slot = Slot(self);
                // Closed meanwhile: shutdown may already have seen no
                // request under way, so this one must not start.
                if self.closed.load(Ordering::SeqCst) {
                    return None;
                }
                return Some(slot);
            }
            self.wait_for_one();
        }
    }

    /// Takes a free slot if there is one. The count never goes past the
    /// limit, not even for a moment, and a taker that finds none wakes
    /// nobody: counting up and back down woke the next waiter, which
    /// failed and woke the next, and a full house spun every waiting
    /// thread on the processors (a hostile pass: 30 waiters took a whole
    /// core).
    fn try_take(&self) -> bool {
        let mut busy = self.busy.load(Ordering::SeqCst);
        while busy < self.limit {
            match self.busy.compare_exchange_weak(
                busy,
                busy + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => busy = now,
            }
        }
        #[cfg(test)]
        self.missed.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Sleeps until a slot may be free (or the slots close).
    fn wait_for_one(&self) {
        let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Counted as waiting before looking: a slot given back from here on
        // sees the waiter and wakes it under the lock, which this thread
        // holds until it sleeps. So no wake-up is lost.
        if self.busy.load(Ordering::SeqCst) >= self.limit && !self.closed.load(Ordering::SeqCst) {
            let _ = self
                .freed
                .wait_timeout(guard, RECHECK)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Gives a slot back and wakes one waiter, if any.
    fn give_back(&self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.freed.notify_one();
        }
    }

    /// Closes the slots (no request starts from now on) and waits until
    /// every request under way has answered, for `grace` at most; the
    /// requests still under way then (e.g. a proxied upload a client
    /// trickles) are counted in the answer, and end with the process.
    pub fn close_and_wait(&self, grace: Duration) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.freed.notify_all();
        }
        let deadline = std::time::Instant::now() + grace;
        loop {
            let busy = self.busy.load(Ordering::SeqCst);
            if busy == 0 || std::time::Instant::now() >= deadline {
                return busy;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Requests under way (for tests).
    #[cfg(test)]
    fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn never_more_than_the_limit_at_once_and_every_taker_served() {
        let slots = Arc::new(Slots::new(3));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..24)
            .map(|_| {
                let (slots, running, most, served) = (
                    Arc::clone(&slots),
                    Arc::clone(&running),
                    Arc::clone(&most),
                    Arc::clone(&served),
                );
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _slot = slots.take().expect("open");
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        running.fetch_sub(1, Ordering::SeqCst);
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("taker");
        }
        assert_eq!(served.load(Ordering::SeqCst), 24 * 50);
        assert!(most.load(Ordering::SeqCst) <= 3, "{most:?}");
        assert_eq!(slots.busy(), 0);
    }

    #[test]
    fn a_waiter_gets_the_slot_given_back() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.take().expect("open");
        let waiter = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || slots.take().is_some())
        };
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "took a slot that was held");
        drop(held);
        assert!(waiter.join().expect("waiter"));
    }

    #[test]
    fn closing_refuses_new_takers_wakes_waiters_and_waits_for_those_under_way() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.take().expect("open");
        let waiter = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || slots.take().is_some())
        };
        std::thread::sleep(Duration::from_millis(30));
        let closer = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || slots.close_and_wait(Duration::from_secs(10)))
        };
        // The waiter is refused, not served, and closing waits for `held`.
        assert!(!waiter.join().expect("waiter"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!closer.is_finished(), "closed with a request under way");
        drop(held);
        assert_eq!(closer.join().expect("closer"), 0);
        assert!(slots.take().is_none());
    }

    #[test]
    fn closing_waits_no_longer_than_the_grace() {
        let slots = Slots::new(2);
        let _held = slots.take().expect("open");
        let started = std::time::Instant::now();
        assert_eq!(slots.close_and_wait(Duration::from_millis(50)), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A hostile pass: with every slot held, waiters woke each other in a
    /// ring (each failed attempt counted up, back down, and woke the next)
    /// and spun. Now a waiter looks again only when a slot is given back or
    /// its recheck comes: a few times each in 300 ms, not thousands.
    #[test]
    fn waiters_for_a_full_house_sleep_instead_of_waking_each_other() {
        let slots = Arc::new(Slots::new(4));
        let held: Vec<_> = (0..4).map(|_| slots.take().expect("open")).collect();
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let slots = Arc::clone(&slots);
                std::thread::spawn(move || slots.take().is_some())
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let missed = slots.missed.load(Ordering::Relaxed);
        assert!(
            missed <= 20 * 8,
            "{missed} failed attempts by 20 waiters in 300 ms"
        );
        drop(held);
        for w in waiters {
            assert!(w.join().expect("waiter"));
        }
    }
}
