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
//! slot taken waits on its own connection's thread, in turn, as it waited
//! in the pool's queue before.
//!
//! Taking and giving back a free slot is one atomic operation each; only a
//! full house touches the lock. Then requests are served in turn: a slot
//! given back while others wait is handed straight to the one waiting
//! longest (and only that thread is woken), and a request that arrives
//! meanwhile queues behind them. (With a shared wake-up, a waiter that
//! failed woke the next, which spun every waiting thread on the processors;
//! with newcomers taking freed slots first, some waiters waited for their
//! recheck: a p99 of 60-110 ms where the old pool's queue had 12 ms, at 256
//! connections on 4 slots. Both found by hostile passes.) On shutdown the
//! slots close: a request read after that is answered `503` and its
//! connection closed, and shutdown waits until the requests under way have
//! answered, for a grace at most.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The request slots of one listener.
#[derive(Debug)]
pub struct Slots {
    limit: usize,
    busy: AtomicUsize,
    /// How many wait: the length of `queue`, readable without its lock
    /// (counted up just before a waiter queues).
    waiting: AtomicUsize,
    closed: AtomicBool,
    /// Those waiting, longest first.
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    /// Attempts that found every slot taken (for tests).
    #[cfg(test)]
    missed: AtomicUsize,
}

/// A request waiting for a slot: its thread, and whether a slot was
/// handed to it.
#[derive(Debug)]
struct Waiter {
    thread: Thread,
    granted: AtomicBool,
}

/// A slot held: given back when dropped (also when its handler panics).
#[derive(Debug)]
pub struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// How long a waiter sleeps before it looks again on its own: a safety net
/// only (a slot given back always goes to the first waiter and wakes it),
/// so long enough that thousands of waiters cost nothing (each look takes
/// the lock: at 100 ms, 2,000 waiters took a fifth of a core).
const RECHECK: Duration = Duration::from_secs(1);

impl Slots {
    /// `limit` slots (at least one).
    pub fn new(limit: usize) -> Slots {
        Slots {
            limit: limit.max(1),
            busy: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            #[cfg(test)]
            missed: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn queue(&self) -> MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot, waiting in turn while all are held; `None` once the
    /// slots are closed.
    #[inline]
    pub fn take(&self) -> Option<Slot<'_>> {
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        // A free slot, and nobody waiting for one before this request.
        let got =
            (self.waiting.load(Ordering::SeqCst) == 0 && self.try_take()) || self.wait_in_turn();
        if !got {
            return None;
        }
        let slot = Slot(self);
        // Closed meanwhile: shutdown may already have seen no request under
        // way, so this one must not start.
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        Some(slot)
    }

    /// Takes a free slot if there is one; the count never goes past the
    /// limit, not even for a moment.
    #[inline]
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

    /// Queues this thread and sleeps until a slot is handed to it: true
    /// with the slot held, false once closed.
    fn wait_in_turn(&self) -> bool {
        let me = Arc::new(Waiter {
            thread: std::thread::current(),
            granted: AtomicBool::new(false),
        });
        {
            let mut queue = self.queue();
            // Counted as waiting before looking for a free slot: a slot
            // given back from here on either is seen free here, or its
            // giver sees this waiter and hands it over (under the lock, so
            // after this thread has queued). No wake-up is lost.
            self.waiting.fetch_add(1, Ordering::SeqCst);
            if queue.is_empty() && self.try_take() {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
            queue.push_back(Arc::clone(&me));
        }
        loop {
            if me.granted.load(Ordering::SeqCst) {
                return true;
            }
            if self.closed.load(Ordering::SeqCst) {
                let mut queue = self.queue();
                if let Some(at) = queue.iter().position(|w| Arc::ptr_eq(w, &me)) {
                    queue.remove(at);
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return false;
                }
                drop(queue);
                // Taken off the queue by a giver, who is about to say so:
                // the slot is this thread's, and the caller, seeing the
                // slots closed, gives it back.
                while !me.granted.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                return true;
            }
            std::thread::park_timeout(RECHECK);
            // The safety net: first in line and a slot is free.
            let mut queue = self.queue();
            if !me.granted.load(Ordering::SeqCst)
                && queue.front().is_some_and(|w| Arc::ptr_eq(w, &me))
                && self.try_take()
            {
                queue.pop_front();
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
        }
    }

    /// Gives a slot back: handed to the request waiting longest, if any.
    fn give_back(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            // Under the lock: handed to the first waiter, if one is there.
            let first = self.queue().pop_front();
            if let Some(first) = first {
                self.grant(&first);
                return;
            }
        }
        self.busy.fetch_sub(1, Ordering::SeqCst);
        // A request that queued meanwhile (it found every slot taken just
        // before this one was given back) takes it now.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let first = {
                let mut queue = self.queue();
                if !queue.is_empty() && self.try_take() {
                    queue.pop_front()
                } else {
                    None
                }
            };
            if let Some(first) = first {
                self.grant(&first);
            }
        }
    }

    /// Gives `first`, just taken off the queue, a slot already counted in
    /// `busy`, and wakes it (after the queue's lock is let go, so that the
    /// woken thread does not wait for it).
    fn grant(&self, first: &Waiter) {
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        first.granted.store(true, Ordering::SeqCst);
        first.thread.unpark();
    }

    /// Closes the slots (no request starts from now on) and waits until
    /// every request under way has answered, for `grace` at most; the
    /// requests still under way then (e.g. a proxied upload a client
    /// trickles) are counted in the answer, and end with the process.
    pub fn close_and_wait(&self, grace: Duration) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        for waiter in self.queue().iter() {
            waiter.thread.unpark();
        }
        let deadline = Instant::now() + grace;
        loop {
            let busy = self.busy.load(Ordering::SeqCst);
            if busy == 0 || Instant::now() >= deadline {
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
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};

    /// A thread that takes a slot of `slots` (waiting for one) and lets it
    /// go at once: whether it got one.
    fn waiter(slots: &Arc<Slots>) -> std::thread::JoinHandle<bool> {
        let slots = Arc::clone(slots);
        std::thread::spawn(move || slots.take().is_some())
    }

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
        let waiter = waiter(&slots);
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "took a slot that was held");
        drop(held);
        assert!(waiter.join().expect("waiter"));
    }

    #[test]
    fn closing_refuses_new_takers_wakes_waiters_and_waits_for_those_under_way() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.take().expect("open");
        let waiter = waiter(&slots);
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

    /// A slot given back while requests wait goes to the one waiting
    /// longest, not to a request that arrives at that moment.
    #[test]
    fn a_slot_given_back_goes_to_those_waiting_in_turn() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.take().expect("open");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..4 {
            let (mine, order) = (Arc::clone(&slots), Arc::clone(&order));
            waiters.push(std::thread::spawn(move || {
                let _slot = mine.take().expect("open");
                order.lock().expect("order").push(i);
                std::thread::sleep(Duration::from_millis(5));
            }));
            // Each one waits before the next arrives.
            while slots.waiting.load(Ordering::SeqCst) < i + 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(held);
        // A newcomer queues behind them.
        let late = slots.take().expect("open");
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3]);
        drop(late);
        for w in waiters {
            w.join().expect("waiter");
        }
        assert_eq!(slots.busy(), 0);
    }

    /// Closing while slots are taken, handed over and waited for leaves
    /// none counted: every slot comes back.
    #[test]
    fn closing_amid_takers_and_waiters_leaks_no_slot() {
        for _ in 0..20 {
            let slots = Arc::new(Slots::new(2));
            let takers: Vec<_> = (0..16)
                .map(|_| {
                    let slots = Arc::clone(&slots);
                    std::thread::spawn(move || {
                        while let Some(_slot) = slots.take() {
                            std::thread::yield_now();
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(5));
            slots.close_and_wait(Duration::from_secs(5));
            for t in takers {
                t.join().expect("taker");
            }
            assert_eq!(slots.busy(), 0);
            assert_eq!(slots.waiting.load(Ordering::SeqCst), 0);
        }
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
        let waiters: Vec<_> = (0..20).map(|_| waiter(&slots)).collect();
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
