//! Passwords: the rules for new ones, and bcrypt hashing on a bounded number
//! of threads.
//!
//! bcrypt is slow on purpose. Unbounded, a burst of logins would occupy every
//! CPU and the server would stop answering anything else; so at most
//! `workers` hashes run at once. The others wait their turn, first come
//! first served, for up to the queue timeout (`login_queue_timeout`). A
//! caller who would wait longer than that, judged on arrival from the
//! measured hash time and the queue ahead, or who has waited that long, is
//! told to come back ([`PasswordError::Busy`]). The number waiting is capped
//! too ([`Hasher::max_waiting`]), so a storm holds bounded memory and
//! threads.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Shortest password accepted when one is set.
pub const MIN_LEN: usize = 8;
/// bcrypt reads only the first 72 bytes; longer passwords are refused, not
/// silently truncated.
pub const MAX_BYTES: usize = 72;

/// Errors from setting or checking a password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// Fewer than [`MIN_LEN`] characters.
    #[error("the password must be at least {MIN_LEN} characters long")]
    TooShort,
    /// More than [`MAX_BYTES`] bytes.
    #[error("the password must be at most {MAX_BYTES} bytes long (bcrypt ignores the rest)")]
    TooLong,
    /// Too many password checks are already queued.
    #[error("too many sign-ins at once; try again in a moment")]
    Busy,
    /// bcrypt itself failed.
    #[error("password hashing failed")]
    Hash,
}

/// Checks a password someone wants to set.
///
/// # Errors
///
/// [`PasswordError::TooShort`] or [`PasswordError::TooLong`].
pub fn validate(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_LEN {
        Err(PasswordError::TooShort)
    } else if password.len() > MAX_BYTES {
        Err(PasswordError::TooLong)
    } else {
        Ok(())
    }
}

/// The most callers that may wait for a worker at once, whatever the
/// timeout: each holds a request thread, and the request pool grows by this
/// much (see `app::start`), so this caps the threads and memory a storm of
/// sign-ins can hold.
pub const MAX_WAITING: usize = 256;

/// How many callers `workers` can serve within `timeout` when a hash takes
/// `hash_time`, at most [`MAX_WAITING`].
fn waiting_bound(timeout: Duration, hash_time: Duration, workers: usize) -> usize {
    let rounds = timeout.as_nanos() / hash_time.as_nanos().max(1);
    usize::try_from(rounds)
        .unwrap_or(usize::MAX)
        .saturating_mul(workers)
        .min(MAX_WAITING)
}

/// Hashes and verifies with a fixed bcrypt cost and bounded concurrency.
pub struct Hasher {
    cost: u32,
    workers: usize,
    timeout: Duration,
    state: Mutex<Slots>,
    freed: Condvar,
    dummy: OnceLock<String>,
}

#[derive(Default)]
struct Slots {
    running: usize,
    /// The tickets of the callers waiting, oldest first: the front one
    /// takes the next free worker, so nobody is overtaken.
    queue: VecDeque<u64>,
    next_ticket: u64,
    /// The most that may wait; derived from the timeout and the measured
    /// hash time once [`Hasher::warm_up`] has run.
    max_waiting: usize,
    /// How long one hash takes, as last measured (zero: not yet known).
    hash_time: Duration,
    peak_running: usize,
    peak_waiting: usize,
    verified: u64,
    turned_away: u64,
}

/// What the hasher has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HasherStats {
    /// Hashes running now.
    pub running: usize,
    /// Callers waiting now.
    pub waiting: usize,
    /// Most hashes that ever ran at once.
    pub peak_running: usize,
    /// Most callers that ever waited at once.
    pub peak_waiting: usize,
    /// Password checks run (real and dummy).
    pub verified: u64,
    /// Callers refused because the queue was full or too slow.
    pub turned_away: u64,
}

/// Holds one of the hasher's worker slots until dropped.
struct Permit<'a>(&'a Hasher);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.slots().running -= 1;
        // Every waiter checks whether it is now at the front.
        self.0.freed.notify_all();
    }
}

impl Hasher {
    /// A hasher with bcrypt `cost` and `workers` concurrent hashes, whose
    /// callers wait up to `timeout` for a worker.
    pub fn new(cost: u32, workers: usize, timeout: Duration) -> Self {
        Self {
            cost,
            workers: workers.max(1),
            timeout,
            state: Mutex::new(Slots {
                max_waiting: if timeout.is_zero() { 0 } else { MAX_WAITING },
                ..Slots::default()
            }),
            freed: Condvar::new(),
            dummy: OnceLock::new(),
        }
    }

    /// The bcrypt cost new hashes use.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counters since start.
    pub fn stats(&self) -> HasherStats {
        let s = self.slots();
        HasherStats {
            running: s.running,
            waiting: s.queue.len(),
            peak_running: s.peak_running,
            peak_waiting: s.peak_waiting,
            verified: s.verified,
            turned_away: s.turned_away,
        }
    }

    /// How many hashes may run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// How many callers may wait at once: as many as the workers can serve
    /// within the timeout at the measured hash time, at most
    /// [`MAX_WAITING`].
    pub fn max_waiting(&self) -> usize {
        self.slots().max_waiting
    }

    /// How long a caller may wait for a worker.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one bcrypt operation on a worker, keeping the hash time
    /// estimate current (a moving average, so a busy machine's slower
    /// hashes shorten the queue a newcomer is admitted to).
    fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, PasswordError> {
        let permit = self.permit()?;
        let started = Instant::now();
        let out = f();
        let took = started.elapsed();
        {
            let mut s = self.slots();
            s.hash_time = if s.hash_time.is_zero() {
                took
            } else {
                (s.hash_time * 3 + took) / 4
            };
        }
        drop(permit);
        Ok(out)
    }

    /// How long a caller arriving behind `ahead` waiters would wait, at the
    /// measured hash time (zero until measured: then only the deadline
    /// and the cap turn callers away).
    fn expected_wait(&self, s: &Slots, ahead: usize) -> Duration {
        let rounds = u32::try_from(ahead / self.workers + 1).unwrap_or(u32::MAX);
        s.hash_time.saturating_mul(rounds)
    }

    fn permit(&self) -> Result<Permit<'_>, PasswordError> {
        let mut s = self.slots();
        if s.running < self.workers && s.queue.is_empty() {
            s.running += 1;
            s.peak_running = s.peak_running.max(s.running);
            return Ok(Permit(self));
        }
        let ahead = s.queue.len();
        if ahead >= s.max_waiting || self.expected_wait(&s, ahead) > self.timeout {
            s.turned_away += 1;
            return Err(PasswordError::Busy);
        }
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        s.queue.push_back(ticket);
        s.peak_waiting = s.peak_waiting.max(s.queue.len());
        let deadline = Instant::now() + self.timeout;
        loop {
            if s.running < self.workers && s.queue.front() == Some(&ticket) {
                s.queue.pop_front();
                s.running += 1;
                s.peak_running = s.peak_running.max(s.running);
                drop(s);
                // The next in line may find a worker free too.
                self.freed.notify_all();
                return Ok(Permit(self));
            }
            let now = Instant::now();
            if now >= deadline {
                s.queue.retain(|t| *t != ticket);
                s.turned_away += 1;
                drop(s);
                // Whoever was behind this caller may now be at the front.
                self.freed.notify_all();
                return Err(PasswordError::Busy);
            }
            s = self
                .freed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Hashes a new password after checking the rules.
    ///
    /// # Errors
    ///
    /// The rules in [`validate`], [`PasswordError::Busy`], or a bcrypt failure.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        validate(password)?;
        // `validate` refused anything over 72 bytes, and bcrypt uses all of
        // the first 72, so nothing is ever cut off here.
        self.run(|| bcrypt::hash(password, self.cost))?
            .map_err(|_| PasswordError::Hash)
    }

    /// Whether `password` matches `hash`. Always costs one bcrypt run, also
    /// for overlong input, so timing does not reveal why a check failed.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`] when no worker is free in time.
    pub fn verify(&self, password: &str, hash: &str) -> Result<bool, PasswordError> {
        let bytes = password.as_bytes();
        let head = &bytes[..bytes.len().min(MAX_BYTES)];
        let ok = self.run(|| bcrypt::verify(head, hash).unwrap_or(false))?;
        self.slots().verified += 1;
        Ok(ok && bytes.len() <= MAX_BYTES)
    }

    /// Spends the time of one verify against a hash nobody has, so an
    /// unknown username takes as long to refuse as a wrong password.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`] when no worker is free in time.
    pub fn dummy_verify(&self, password: &str) -> Result<(), PasswordError> {
        let hash = self.dummy_hash()?.to_owned();
        self.verify(password, &hash).map(|_| ())
    }

    /// Computes the dummy hash now rather than on the first unknown user,
    /// and derives from the time it took how many callers may wait: as
    /// many as the workers can serve within the timeout, at most
    /// [`MAX_WAITING`].
    ///
    /// # Errors
    ///
    /// A bcrypt failure (or [`PasswordError::Busy`] if called during a
    /// storm).
    pub fn warm_up(&self) -> Result<(), PasswordError> {
        self.dummy_hash()?;
        let mut s = self.slots();
        if !s.hash_time.is_zero() {
            s.max_waiting = waiting_bound(self.timeout, s.hash_time, self.workers);
        }
        Ok(())
    }

    /// The hash nobody has, made on a worker like every other hash.
    fn dummy_hash(&self) -> Result<&str, PasswordError> {
        if let Some(hash) = self.dummy.get() {
            return Ok(hash);
        }
        let secret = crate::crypto::random_bytes::<18>();
        let hash = self
            .run(|| bcrypt::hash(secret, self.cost))?
            .map_err(|_| PasswordError::Hash)?;
        Ok(self.dummy.get_or_init(|| hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const TEN_S: Duration = Duration::from_secs(10);

    /// Waits until `n` callers are queued.
    fn until_waiting(h: &Hasher, n: usize) {
        let started = Instant::now();
        while h.slots().queue.len() < n {
            assert!(started.elapsed() < TEN_S, "callers never queued");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn short_and_overlong_passwords_are_refused() {
        assert_eq!(validate("1234567"), Err(PasswordError::TooShort));
        assert_eq!(validate("12345678"), Ok(()));
        assert_eq!(validate(&"a".repeat(72)), Ok(()));
        assert_eq!(validate(&"a".repeat(73)), Err(PasswordError::TooLong));
        // 24 three-byte characters are 72 bytes; one more is too many.
        assert_eq!(validate(&"€".repeat(24)), Ok(()));
        assert_eq!(validate(&"€".repeat(25)), Err(PasswordError::TooLong));
    }

    #[test]
    fn a_hash_verifies_only_its_password() {
        let h = Hasher::new(4, 1, TEN_S);
        let hash = h.hash("correct horse").expect("hash");
        assert!(h.verify("correct horse", &hash).expect("verify"));
        assert!(!h.verify("correct horsf", &hash).expect("verify"));
    }

    #[test]
    fn input_past_72_bytes_never_matches_a_72_byte_password() {
        let h = Hasher::new(4, 1, TEN_S);
        let pw = "p".repeat(72);
        let hash = h.hash(&pw).expect("hash");
        assert!(h.verify(&pw, &hash).expect("verify"));
        assert!(!h.verify(&format!("{pw}extra"), &hash).expect("verify"));
    }

    #[test]
    fn a_garbage_hash_is_a_mismatch_not_an_error() {
        let h = Hasher::new(4, 1, TEN_S);
        assert!(!h.verify("whatever1", "not a bcrypt hash").expect("verify"));
        h.dummy_verify("whatever1").expect("dummy");
    }

    #[test]
    fn callers_beyond_the_queue_are_turned_away() {
        let h = Arc::new(Hasher::new(4, 1, Duration::ZERO));
        let held = h.permit().expect("first permit");
        assert_eq!(h.verify("x", "y"), Err(PasswordError::Busy));
        drop(held);
        assert_eq!(h.verify("x", "y"), Ok(false));
    }

    #[test]
    fn an_unknown_user_costs_one_verify_like_a_known_one() {
        let h = Hasher::new(4, 1, TEN_S);
        h.dummy_verify("whatever1").expect("dummy");
        assert_eq!(h.stats().verified, 1);
    }

    #[test]
    fn waiting_callers_get_their_turn() {
        let h = Arc::new(Hasher::new(4, 1, TEN_S));
        let hash = h.hash("password1").expect("hash");
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (h, hash) = (h.clone(), hash.clone());
                std::thread::spawn(move || h.verify("password1", &hash))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("join"), Ok(true));
        }
    }

    #[test]
    fn a_caller_who_waited_the_whole_timeout_is_turned_away() {
        let h = Arc::new(Hasher::new(4, 1, Duration::from_millis(50)));
        let held = h.permit().expect("the only worker");
        let waiter = {
            let h = Arc::clone(&h);
            std::thread::spawn(move || h.verify("x", "y"))
        };
        // The worker stays taken until the waiter has given up.
        assert_eq!(waiter.join().expect("join"), Err(PasswordError::Busy));
        assert_eq!(h.stats().peak_waiting, 1, "it did wait");
        assert!(h.slots().queue.is_empty(), "it left the queue");
        drop(held);
        assert_eq!(h.verify("x", "y"), Ok(false));
    }

    #[test]
    fn a_caller_who_would_wait_too_long_is_turned_away_at_once() {
        let h = Hasher::new(4, 1, Duration::from_millis(100));
        h.slots().hash_time = Duration::from_secs(1);
        let _held = h.permit().expect("the only worker");
        assert_eq!(h.verify("x", "y"), Err(PasswordError::Busy));
        assert_eq!(h.stats().peak_waiting, 0, "it never queued");
        assert_eq!(h.stats().turned_away, 1);
    }

    #[test]
    fn waiters_are_served_in_the_order_they_came() {
        let h = Arc::new(Hasher::new(4, 1, TEN_S));
        let held = h.permit().expect("the only worker");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..8 {
            let (h2, order) = (Arc::clone(&h), Arc::clone(&order));
            threads.push(std::thread::spawn(move || {
                let _p = h2.permit().expect("turn");
                order.lock().expect("order").push(i);
            }));
            until_waiting(&h, i + 1);
        }
        drop(held);
        // A newcomer while others wait queues behind them, not before.
        let _late = h.permit().expect("turn");
        for t in threads {
            t.join().expect("join");
        }
        assert_eq!(*order.lock().expect("order"), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn the_queue_holds_what_the_workers_serve_within_the_timeout() {
        let ms = Duration::from_millis;
        assert_eq!(waiting_bound(TEN_S, ms(100), 2), 200);
        assert_eq!(waiting_bound(TEN_S, ms(1000), 1), 10);
        assert_eq!(waiting_bound(TEN_S, ms(1), 2), MAX_WAITING);
        assert_eq!(waiting_bound(ms(10), ms(100), 4), 0);
        assert_eq!(waiting_bound(TEN_S, Duration::ZERO, 1), MAX_WAITING);
        let h = Hasher::new(4, 2, TEN_S);
        h.warm_up().expect("warm up");
        assert!(h.max_waiting() >= 1 && h.max_waiting() <= MAX_WAITING);
        assert!(!h.slots().hash_time.is_zero(), "the hash was timed");
    }

    #[test]
    fn callers_beyond_the_bound_are_turned_away_without_waiting() {
        let h = Arc::new(Hasher::new(4, 1, TEN_S));
        h.slots().max_waiting = 2;
        let held = h.permit().expect("the only worker");
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || h.verify("x", "y"))
            })
            .collect();
        until_waiting(&h, 2);
        assert_eq!(h.verify("x", "y"), Err(PasswordError::Busy));
        drop(held);
        for w in waiters {
            assert_eq!(w.join().expect("join"), Ok(false));
        }
        assert_eq!(h.stats().peak_waiting, 2);
    }
}
