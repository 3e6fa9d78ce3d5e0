//! Passwords: the rules for new ones, and bcrypt hashing on a bounded number
//! of threads.
//!
//! bcrypt is slow on purpose. Unbounded, a burst of logins would occupy every
//! CPU and the server would stop answering anything else; so at most
//! `workers` hashes run at once. The others wait their turn for up to the
//! queue timeout (`login_queue_timeout`). A caller who would wait longer
//! than that, judged on arrival from the measured hash time and the queue
//! ahead, or who has waited that long, is told to come back
//! ([`PasswordError::Busy`]). The number waiting is capped too
//! ([`Hasher::max_waiting`]), so a storm holds bounded memory and threads.
//!
//! The queue is fair by source ([`Source`]: the caller's address as the
//! throttle counts it, an IPv4 address or an IPv6 /64, and its standing,
//! the failures counted against that address recently). Each source waits
//! in a lane of its own, first come first served within it. Lanes are
//! served best standing first, and in turn (round robin) among equals, so
//! a source with one caller waiting is served after at most one caller of
//! every other source as good as it, however many those have queued.
//! When the queue is full, a newcomer takes the place of the newest
//! caller of the source that deserves a place least (the worst standing,
//! then the most waiting), who is turned away, if that source deserves it
//! less than the newcomer's.
//!
//! What "fair" must mean: the reported flood came from 253 addresses
//! (127.0.0.2-254) and the user from one more (127.0.0.1). By address
//! alone the user is one source in 254, with a 254th of the queue; by
//! network (a /24) the user would even share the flood's lane. What tells
//! them apart is the record: every attempt of the flood fails, and so,
//! counted by the throttle (refusals by this queue included), every flood
//! address soon has failures, while the user's has none. So a clean
//! address is served before any address with failures, and takes the
//! place of one in a full queue: the user waits about one hash, not the
//! flood's length, and the flood's addresses lock themselves out within
//! a few attempts each. Among clean addresses (a flood's very first
//! attempts) the round robin shares the queue evenly. Many users behind
//! one address (a NAT) are never refused for sharing it while the queue
//! has room: a lane may use every free place.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex};
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

/// What a caller decides once a worker is free for it (see
/// [`Hasher::verify_as`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Run the check now.
    Go,
    /// Do not run it (the caller refuses the attempt).
    Stop,
    /// Not yet: give the worker to the next caller and queue again, at
    /// the back of this source's lane, with the same deadline.
    Later,
}

/// Hashes and verifies with a fixed bcrypt cost and bounded concurrency.
pub struct Hasher {
    cost: u32,
    workers: usize,
    timeout: Duration,
    state: Mutex<Slots>,
    freed: Condvar,
    /// The hash nobody has, and its cost (see [`Hasher::set_dummy_cost`]).
    dummy: Mutex<Option<(u32, String)>>,
}

/// Who is asking for a check, for the fair queue: the source's key (its
/// address as the throttle counts it) and its standing, the failures
/// counted against that address recently (0: a clean record). Sources
/// with a better standing are served first.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The lane the caller waits in.
    pub key: &'a str,
    /// Recent failures of the source: lower is served first.
    pub standing: u32,
}

impl Source<'_> {
    /// Callers that name no source (hashing a new password, the command
    /// line, tests): one lane, a clean standing.
    pub const NONE: Source<'static> = Source {
        key: "",
        standing: 0,
    };
}

/// One caller waiting for a worker.
struct Waiter {
    ticket: u64,
    /// Not to be served before then (a caller that was told
    /// [`Turn::Later`] rests a moment before it asks again).
    resting_until: Option<Instant>,
}

/// The callers of one source, oldest first.
#[derive(Default)]
struct Lane {
    waiters: VecDeque<Waiter>,
    /// The source's standing, as its newest caller reported it.
    standing: u32,
}

#[derive(Default)]
struct Slots {
    running: usize,
    /// The callers waiting, per source.
    lanes: HashMap<String, Lane>,
    /// The sources with callers waiting, in the order they are served
    /// among equals: a source that was served goes to the back.
    ring: VecDeque<String>,
    /// How many callers wait, in all lanes.
    waiting: usize,
    /// Callers whose place was taken by a newcomer from a source that
    /// deserved it more.
    evicted: HashSet<u64>,
    next_ticket: u64,
    /// The most that may wait; derived from the timeout and the measured
    /// hash time once [`Hasher::warm_up`] has run.
    max_waiting: usize,
    /// How long one hash takes, as last measured (zero: not yet known).
    hash_time: Duration,
    /// Picks among equally placed sources when one must give up a place.
    rng: u64,
    /// [`Slots::next`] as last worked out, and until when it holds (a
    /// resting caller may become next then); `None`: work it out again.
    /// Every waiter asks on every freed worker: without this, each would
    /// walk every lane.
    next_cached: Option<(Option<u64>, Option<Instant>)>,
    peak_running: usize,
    peak_waiting: usize,
    verified: u64,
    turned_away: u64,
}

impl Slots {
    fn lane_len(&self, lane: &str) -> usize {
        self.lanes.get(lane).map_or(0, |l| l.waiters.len())
    }

    /// The ticket to serve next: the oldest caller, not resting, of the
    /// first source in the ring among those with the best standing.
    fn next(&mut self, now: Instant) -> Option<u64> {
        if let Some((next, until)) = self.next_cached
            && until.is_none_or(|t| now < t)
        {
            return next;
        }
        let mut best: Option<(u32, u64)> = None;
        let mut until: Option<Instant> = None;
        for key in &self.ring {
            let Some(lane) = self.lanes.get(key) else {
                continue;
            };
            let Some(front) = lane.waiters.front() else {
                continue;
            };
            if let Some(t) = front.resting_until.filter(|t| *t > now) {
                until = Some(until.map_or(t, |u| u.min(t)));
                continue;
            }
            if best.is_none_or(|(standing, _)| lane.standing < standing) {
                best = Some((lane.standing, front.ticket));
            }
        }
        let next = best.map(|(_, ticket)| ticket);
        self.next_cached = Some((next, until));
        next
    }

    /// Queues `ticket` at the back of `source`'s lane.
    fn push(&mut self, source: Source<'_>, ticket: u64, resting_until: Option<Instant>) {
        self.next_cached = None;
        let lane = self.lanes.entry(source.key.to_owned()).or_default();
        if lane.waiters.is_empty() {
            self.ring.push_back(source.key.to_owned());
        }
        lane.standing = source.standing;
        lane.waiters.push_back(Waiter {
            ticket,
            resting_until,
        });
        self.waiting += 1;
        self.peak_waiting = self.peak_waiting.max(self.waiting);
    }

    /// Takes `ticket` out of `key`'s lane; `served`: it is going to a
    /// worker, so its source moves to the back of the ring.
    fn remove(&mut self, key: &str, ticket: u64, served: bool) {
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        let before = lane.waiters.len();
        lane.waiters.retain(|w| w.ticket != ticket);
        if lane.waiters.len() == before {
            return;
        }
        self.next_cached = None;
        self.waiting -= 1;
        let empty = lane.waiters.is_empty();
        if empty {
            self.lanes.remove(key);
        }
        if (empty || served)
            && let Some(at) = self.ring.iter().position(|l| l == key)
        {
            let source = self.ring.remove(at).expect("the position was just found");
            if !empty {
                self.ring.push_back(source);
            }
        }
    }

    /// Callers a newcomer from `source` would wait behind: all those of
    /// sources with a better standing, its own lane's, and from every
    /// other source of the same standing at most one more than that
    /// (they are served in turn).
    fn ahead_of(&self, source: Source<'_>) -> usize {
        let mine = self.lane_len(source.key);
        self.lanes
            .iter()
            .map(|(key, lane)| {
                let n = lane.waiters.len();
                if key == source.key || lane.standing < source.standing {
                    n
                } else if lane.standing == source.standing {
                    n.min(mine + 1)
                } else {
                    0
                }
            })
            .sum()
    }

    /// Makes room for a newcomer from `source` in a full queue. The
    /// source that deserves a place least gives up its newest caller's:
    /// the one with the worst standing, and among those the most callers
    /// waiting (one of them at random). It must deserve it less than the
    /// newcomer: a worse standing; or the same, and either the newcomer's
    /// source has nobody waiting (with more sources than places each
    /// newcomer still gets its chance) or the other has at least two more
    /// waiting (the places end up shared more evenly). Returns whether
    /// there is room.
    fn make_room(&mut self, source: Source<'_>) -> bool {
        let mine = self.lane_len(source.key);
        let Some(worst) = self
            .lanes
            .values()
            .map(|l| (l.standing, l.waiters.len()))
            .max()
        else {
            return false;
        };
        let (standing, most) = worst;
        let yields = standing > source.standing
            || (standing == source.standing && (mine == 0 || mine + 1 < most));
        if !yields {
            return false;
        }
        let candidates: Vec<&String> = self
            .lanes
            .iter()
            .filter(|(_, l)| (l.standing, l.waiters.len()) == worst)
            .map(|(key, _)| key)
            .collect();
        // xorshift: the choice needs to be unpredictable to a flood that
        // times its arrivals, not cryptographic.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let pick = usize::try_from(self.rng % candidates.len() as u64).unwrap_or(0);
        let victim = candidates[pick].clone();
        let Some(ticket) = self
            .lanes
            .get(&victim)
            .and_then(|l| l.waiters.back())
            .map(|w| w.ticket)
        else {
            return false;
        };
        self.remove(&victim, ticket, false);
        self.evicted.insert(ticket);
        true
    }
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
        // Every waiter checks whether it is now next.
        self.0.freed.notify_all();
    }
}

impl Hasher {
    /// A hasher with bcrypt `cost` and `workers` concurrent hashes, whose
    /// callers wait up to `timeout` for a worker.
    pub fn new(cost: u32, workers: usize, timeout: Duration) -> Self {
        let seed = u64::from_le_bytes(crate::crypto::random_bytes::<8>());
        Self {
            cost,
            workers: workers.max(1),
            timeout,
            state: Mutex::new(Slots {
                max_waiting: if timeout.is_zero() { 0 } else { MAX_WAITING },
                rng: seed | 1,
                ..Slots::default()
            }),
            freed: Condvar::new(),
            dummy: Mutex::new(None),
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
            waiting: s.waiting,
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
        let mut deadline = None;
        let permit = self.permit(Source::NONE, &mut deadline, None)?;
        Ok(self.timed(permit, f))
    }

    fn timed<T>(&self, permit: Permit<'_>, f: impl FnOnce() -> T) -> T {
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
        out
    }

    /// How long a caller arriving behind `ahead` waiters would wait, at the
    /// measured hash time (zero until measured: then only the deadline
    /// and the cap turn callers away).
    fn expected_wait(&self, s: &Slots, ahead: usize) -> Duration {
        let rounds = u32::try_from(ahead / self.workers + 1).unwrap_or(u32::MAX);
        s.hash_time.saturating_mul(rounds)
    }

    /// How long a caller told [`Turn::Later`] rests before it asks again:
    /// about one hash, the time the attempt it waits for takes.
    fn rest(&self) -> Duration {
        self.slots()
            .hash_time
            .clamp(Duration::from_millis(5), Duration::from_millis(250))
    }

    /// A worker for a caller from `source`. On its first call (`deadline`
    /// unset) the caller is admitted or turned away, and its deadline set;
    /// a caller coming back after [`Turn::Later`] queues again, resting
    /// until `resting_until`, under the deadline it had.
    fn permit(
        &self,
        source: Source<'_>,
        deadline: &mut Option<Instant>,
        resting_until: Option<Instant>,
    ) -> Result<Permit<'_>, PasswordError> {
        let mut s = self.slots();
        // The newest word on a source's standing applies to the callers it
        // has waiting: a flood's addresses, clean when their first callers
        // queued, fall behind as their failures (and refusals) are counted.
        if let Some(lane) = s.lanes.get_mut(source.key)
            && lane.standing != source.standing
        {
            lane.standing = source.standing;
            s.next_cached = None;
        }
        let deadline = match *deadline {
            Some(d) => d,
            None => {
                if s.running < self.workers && s.waiting == 0 {
                    s.running += 1;
                    s.peak_running = s.peak_running.max(s.running);
                    *deadline = Some(Instant::now() + self.timeout);
                    return Ok(Permit(self));
                }
                // A caller with failures who would wait past the timeout
                // is told at once. One with the best standing waits its
                // chance instead: ahead of it are callers as clean as it
                // (a flood's first wave), and as their failures are
                // counted they fall behind it, or find their address
                // locked when their turn comes and leave without a check.
                let best = s.lanes.values().all(|l| source.standing <= l.standing);
                let too_long = !best && self.expected_wait(&s, s.ahead_of(source)) > self.timeout;
                if too_long || (s.waiting >= s.max_waiting && !s.make_room(source)) {
                    s.turned_away += 1;
                    return Err(PasswordError::Busy);
                }
                let d = Instant::now() + self.timeout;
                *deadline = Some(d);
                d
            }
        };
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        s.push(source, ticket, resting_until);
        // A caller turned out to make room may be waiting: tell it.
        self.freed.notify_all();
        loop {
            if s.evicted.remove(&ticket) {
                s.turned_away += 1;
                return Err(PasswordError::Busy);
            }
            let now = Instant::now();
            if s.running < self.workers && s.next(now) == Some(ticket) {
                s.remove(source.key, ticket, true);
                s.running += 1;
                s.peak_running = s.peak_running.max(s.running);
                drop(s);
                // The next in line may find a worker free too.
                self.freed.notify_all();
                return Ok(Permit(self));
            }
            if now >= deadline {
                s.remove(source.key, ticket, false);
                s.turned_away += 1;
                drop(s);
                // Whoever was behind this caller may now be next.
                self.freed.notify_all();
                return Err(PasswordError::Busy);
            }
            // A resting caller (or one behind it) must look again when the
            // rest ends, even if no worker is freed meanwhile.
            let wake = resting_until
                .filter(|t| *t > now)
                .map_or(deadline, |t| t.min(deadline))
                .min(now + Duration::from_millis(250));
            s = self
                .freed
                .wait_timeout(s, wake - now)
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

    /// Hashes at this hasher's cost a password that was just verified
    /// against its hash at another cost; the rules for new passwords are
    /// not applied again (it may predate them).
    ///
    /// # Errors
    ///
    /// [`PasswordError::TooLong`] (no stored password is), [`PasswordError::Busy`],
    /// or a bcrypt failure.
    pub fn hash_again(&self, password: &str) -> Result<String, PasswordError> {
        if password.len() > MAX_BYTES {
            return Err(PasswordError::TooLong);
        }
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
        let checked = self.verify_as(Source::NONE, password, hash, &mut || Turn::Go)?;
        Ok(checked.unwrap_or(false))
    }

    /// [`verify`](Self::verify) for a caller from `source`, served fairly
    /// among sources; once a worker is free for it, `turn` decides
    /// whether the check runs (the throttle counts the attempt there, on
    /// the worker, so no attempt waiting in the queue holds a count).
    /// `None`: `turn` said [`Turn::Stop`].
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`] when no worker is free in time (or the
    /// caller's place went to a caller from a quieter source).
    pub fn verify_as(
        &self,
        source: Source<'_>,
        password: &str,
        hash: &str,
        turn: &mut dyn FnMut() -> Turn,
    ) -> Result<Option<bool>, PasswordError> {
        let bytes = password.as_bytes();
        let head = &bytes[..bytes.len().min(MAX_BYTES)];
        let mut deadline = None;
        let mut resting_until = None;
        loop {
            let permit = self.permit(source, &mut deadline, resting_until)?;
            match turn() {
                Turn::Go => {
                    let ok = self.timed(permit, || bcrypt::verify(head, hash).unwrap_or(false));
                    self.slots().verified += 1;
                    return Ok(Some(ok && bytes.len() <= MAX_BYTES));
                }
                Turn::Stop => return Ok(None),
                Turn::Later => {
                    drop(permit);
                    resting_until = Some(Instant::now() + self.rest());
                }
            }
        }
    }

    /// Spends the time of one verify against a hash nobody has, so an
    /// unknown username takes as long to refuse as a wrong password.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`] when no worker is free in time.
    pub fn dummy_verify(&self, password: &str) -> Result<(), PasswordError> {
        self.dummy_verify_as(Source::NONE, password, &mut || Turn::Go)
            .map(|_| ())
    }

    /// [`dummy_verify`](Self::dummy_verify) as [`verify_as`](Self::verify_as)
    /// does it: `None` when `turn` said [`Turn::Stop`].
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`] when no worker is free in time.
    pub fn dummy_verify_as(
        &self,
        source: Source<'_>,
        password: &str,
        turn: &mut dyn FnMut() -> Turn,
    ) -> Result<Option<()>, PasswordError> {
        let hash = self.dummy_hash()?;
        Ok(self.verify_as(source, password, &hash, turn)?.map(|_| ()))
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

    fn dummy(&self) -> std::sync::MutexGuard<'_, Option<(u32, String)>> {
        self.dummy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cost the dummy hash has (or will have when first made).
    pub fn dummy_cost(&self) -> u32 {
        self.dummy().as_ref().map_or(self.cost, |(cost, _)| *cost)
    }

    /// Makes the dummy hash cost `cost`, the cost the stored hashes have
    /// (see `Users::refresh_dummy_cost`): an unknown name must take as
    /// long to refuse as a known one, whatever cost the server hashes new
    /// passwords at. Does nothing when it already does.
    ///
    /// # Errors
    ///
    /// A bcrypt failure, or [`PasswordError::Busy`]; the old dummy stays.
    pub fn set_dummy_cost(&self, cost: u32) -> Result<(), PasswordError> {
        if self.dummy().as_ref().is_some_and(|(c, _)| *c == cost) {
            return Ok(());
        }
        let hash = self.make_dummy(cost)?;
        *self.dummy() = Some((cost, hash));
        Ok(())
    }

    /// The hash nobody has, made on a worker like every other hash.
    fn dummy_hash(&self) -> Result<String, PasswordError> {
        if let Some((_, hash)) = self.dummy().as_ref() {
            return Ok(hash.clone());
        }
        let hash = self.make_dummy(self.cost)?;
        Ok(self.dummy().get_or_insert((self.cost, hash)).1.clone())
    }

    fn make_dummy(&self, cost: u32) -> Result<String, PasswordError> {
        let secret = crate::crypto::random_bytes::<18>();
        self.run(|| bcrypt::hash(secret, cost))?
            .map_err(|_| PasswordError::Hash)
    }
}

/// The cost of a bcrypt hash (`$2b$10$...`), if it is one.
pub fn cost_of(hash: &str) -> Option<u32> {
    let mut parts = hash.split('$');
    let (Some(""), Some(variant), Some(cost)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if !variant.starts_with('2') || cost.len() != 2 {
        return None;
    }
    cost.parse().ok().filter(|c| (4..=31).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const TEN_S: Duration = Duration::from_secs(10);

    fn source(key: &str, standing: u32) -> Source<'_> {
        Source { key, standing }
    }

    /// A worker for a caller from no source in particular.
    fn take(h: &Hasher) -> Result<Permit<'_>, PasswordError> {
        h.permit(Source::NONE, &mut None, None)
    }

    /// Waits until `n` callers are queued.
    fn until_waiting(h: &Hasher, n: usize) {
        let started = Instant::now();
        while h.slots().waiting < n {
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
        let held = take(&h).expect("first permit");
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
        let held = take(&h).expect("the only worker");
        let waiter = {
            let h = Arc::clone(&h);
            std::thread::spawn(move || h.verify("x", "y"))
        };
        // The worker stays taken until the waiter has given up.
        assert_eq!(waiter.join().expect("join"), Err(PasswordError::Busy));
        assert_eq!(h.stats().peak_waiting, 1, "it did wait");
        assert!(h.slots().waiting == 0, "it left the queue");
        drop(held);
        assert_eq!(h.verify("x", "y"), Ok(false));
    }

    #[test]
    fn a_caller_with_failures_who_would_wait_too_long_is_turned_away_at_once() {
        let h = Arc::new(Hasher::new(4, 1, Duration::from_millis(300)));
        h.slots().hash_time = Duration::from_secs(1);
        let held = take(&h).expect("the only worker");
        // A clean caller waits its chance (and here, with the worker held,
        // is turned away at its deadline)...
        let clean = {
            let h = Arc::clone(&h);
            std::thread::spawn(move || h.verify_as(source("ip:a", 0), "x", "y", &mut || Turn::Go))
        };
        until_waiting(&h, 1);
        // ...one with failures is told at once.
        let got = h.verify_as(source("ip:b", 2), "x", "y", &mut || Turn::Go);
        assert_eq!(got, Err(PasswordError::Busy));
        assert_eq!(h.stats().peak_waiting, 1, "it never queued");
        assert_eq!(clean.join().expect("join"), Err(PasswordError::Busy));
        assert_eq!(h.stats().turned_away, 2);
        drop(held);
    }

    #[test]
    fn waiters_are_served_in_the_order_they_came() {
        let h = Arc::new(Hasher::new(4, 1, TEN_S));
        let held = take(&h).expect("the only worker");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..8 {
            let (h2, order) = (Arc::clone(&h), Arc::clone(&order));
            threads.push(std::thread::spawn(move || {
                let _p = take(&h2).expect("turn");
                order.lock().expect("order").push(i);
            }));
            until_waiting(&h, i + 1);
        }
        drop(held);
        // A newcomer while others wait queues behind them, not before.
        let _late = take(&h).expect("turn");
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
        let held = take(&h).expect("the only worker");
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

    /// Queues a caller from `lane` that records when it got its worker
    /// (holding it a moment), or `None` if it was turned away.
    fn queue_from(
        h: &Arc<Hasher>,
        (key, standing): (&str, u32),
        order: &Arc<Mutex<Vec<String>>>,
        tag: String,
    ) -> std::thread::JoinHandle<Result<(), PasswordError>> {
        let (h, key, order) = (Arc::clone(h), key.to_owned(), Arc::clone(order));
        std::thread::spawn(move || {
            let source = Source {
                key: &key,
                standing,
            };
            let _p = h.permit(source, &mut None, None)?;
            order.lock().expect("order").push(tag);
            Ok(())
        })
    }

    #[test]
    fn sources_are_served_in_turn_whatever_one_of_them_queued() {
        let h = Arc::new(Hasher::new(4, 1, TEN_S));
        let held = take(&h).expect("the only worker");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut callers = Vec::new();
        for i in 0..6 {
            callers.push(queue_from(&h, ("ip:flood", 0), &order, format!("flood{i}")));
            until_waiting(&h, i + 1);
        }
        callers.push(queue_from(&h, ("ip:alice", 0), &order, "alice".into()));
        until_waiting(&h, 7);
        drop(held);
        for c in callers {
            c.join().expect("join").expect("served");
        }
        let order = order.lock().expect("order").clone();
        // The flood's first caller was first in line; alice comes next,
        // not after the flood's other five.
        assert_eq!(order[..2], ["flood0", "alice"], "{order:?}");
    }

    #[test]
    fn a_newcomer_from_a_quieter_source_takes_the_place_of_the_busiest_sources_newest() {
        let h = Arc::new(Hasher::new(4, 1, TEN_S));
        h.slots().max_waiting = 3;
        let held = take(&h).expect("the only worker");
        let order = Arc::new(Mutex::new(Vec::new()));
        let flood: Vec<_> = (0..3)
            .map(|i| {
                let c = queue_from(&h, ("ip:flood", 0), &order, format!("flood{i}"));
                until_waiting(&h, i + 1);
                c
            })
            .collect();
        // Full. One more from the flood is turned away at once...
        assert_eq!(
            h.permit(source("ip:flood", 0), &mut None, None).err(),
            Some(PasswordError::Busy)
        );
        // ...alice gets a place: the flood's newest gives it up.
        let alice = queue_from(&h, ("ip:alice", 0), &order, "alice".into());
        let started = Instant::now();
        while h.stats().turned_away < 2 {
            assert!(started.elapsed() < TEN_S, "nobody gave up a place");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(h.stats().waiting, 3);
        // With the flood at two and alice at one, a second caller of
        // alice's is not let in: the flood has no more than its share.
        assert_eq!(
            h.permit(source("ip:alice", 0), &mut None, None).err(),
            Some(PasswordError::Busy)
        );
        drop(held);
        let results: Vec<_> = flood.into_iter().map(|c| c.join().expect("join")).collect();
        assert_eq!(results, [Ok(()), Ok(()), Err(PasswordError::Busy)]);
        alice.join().expect("join").expect("alice served");
        assert_eq!(*order.lock().expect("order"), ["flood0", "alice", "flood1"]);
    }

    #[test]
    fn one_source_may_use_every_free_place() {
        // Many users behind one address (a NAT) are never refused for
        // sharing it while there is room.
        let h = Arc::new(Hasher::new(4, 1, TEN_S));
        h.slots().max_waiting = 8;
        let held = take(&h).expect("the only worker");
        let order = Arc::new(Mutex::new(Vec::new()));
        let callers: Vec<_> = (0..8)
            .map(|i| {
                let c = queue_from(&h, ("ip:nat", 0), &order, format!("{i}"));
                until_waiting(&h, i + 1);
                c
            })
            .collect();
        drop(held);
        for c in callers {
            c.join().expect("join").expect("served");
        }
        assert_eq!(h.stats().turned_away, 0);
    }

    #[test]
    fn a_caller_told_later_queues_again_and_runs_once_let_go() {
        let h = Hasher::new(4, 1, TEN_S);
        let hash = h.hash("password1").expect("hash");
        let mut asked = 0;
        let ok = h
            .verify_as(source("ip:a", 0), "password1", &hash, &mut || {
                asked += 1;
                if asked < 3 { Turn::Later } else { Turn::Go }
            })
            .expect("verify");
        assert_eq!(ok, Some(true));
        assert_eq!(asked, 3);
        assert_eq!(h.stats().verified, 1, "bcrypt ran once");
        assert_eq!(h.stats().running, 0);
        assert_eq!(h.stats().waiting, 0);
    }

    #[test]
    fn a_caller_told_later_until_its_deadline_is_turned_away() {
        let h = Hasher::new(4, 1, Duration::from_millis(100));
        let got = h.verify_as(source("ip:a", 0), "x", "y", &mut || Turn::Later);
        assert_eq!(got, Err(PasswordError::Busy));
        assert_eq!(h.stats().verified, 0);
        assert_eq!(h.stats().waiting, 0, "it left the queue");
    }

    #[test]
    fn a_caller_told_stop_runs_nothing() {
        let h = Hasher::new(4, 1, TEN_S);
        assert_eq!(
            h.verify_as(source("ip:a", 0), "x", "y", &mut || Turn::Stop),
            Ok(None)
        );
        assert_eq!(
            h.dummy_verify_as(source("ip:a", 0), "x", &mut || Turn::Stop),
            Ok(None)
        );
        // Making the dummy is a hash, not a check.
        assert_eq!(h.stats().verified, 0);
        assert_eq!(h.stats().running, 0);
    }

    #[test]
    fn the_dummy_hash_has_the_cost_it_is_set_to() {
        let h = Hasher::new(4, 1, TEN_S);
        assert_eq!(h.dummy_cost(), 4, "the server's cost until told otherwise");
        h.warm_up().expect("warm up");
        assert_eq!(cost_of(&h.dummy_hash().expect("dummy")), Some(4));
        h.set_dummy_cost(6).expect("set");
        assert_eq!(h.dummy_cost(), 6);
        assert_eq!(cost_of(&h.dummy_hash().expect("dummy")), Some(6));
        // New passwords still use the server's cost.
        assert_eq!(cost_of(&h.hash("password1").expect("hash")), Some(4));
    }

    #[test]
    fn the_cost_of_a_hash_is_read_from_its_head() {
        assert_eq!(cost_of("$2b$10$abcdefghijklmnopqrstuv"), Some(10));
        assert_eq!(cost_of("$2a$04$x"), Some(4));
        assert_eq!(cost_of("$2y$31$x"), Some(31));
        for bad in [
            "",
            "x",
            "$2b$",
            "$2b$1$x",
            "$2b$99$x",
            "$argon2id$v=19$x",
            "$2b$ab$x",
        ] {
            assert_eq!(cost_of(bad), None, "{bad:?}");
        }
    }

    /// The reported flood: many addresses, each as good as the user's by
    /// address alone; what tells them apart is their record. Sources with
    /// failures wait behind a clean one, and give up their places to it.
    #[test]
    fn a_clean_source_goes_before_sources_with_failures() {
        let h = Arc::new(Hasher::new(4, 1, TEN_S));
        h.slots().max_waiting = 4;
        let held = take(&h).expect("the only worker");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut flood = Vec::new();
        for i in 0..4u32 {
            let key = format!("ip:10.0.0.{i}");
            flood.push(queue_from(&h, (&key, 1 + i % 2), &order, key.clone()));
            until_waiting(&h, usize::try_from(i).expect("small") + 1);
        }
        // Full of sources with failures: alice, clean, takes the place of
        // one with the worst standing, and goes first.
        let alice = queue_from(&h, ("ip:alice", 0), &order, "alice".into());
        let started = Instant::now();
        while h.stats().turned_away < 1 {
            assert!(started.elapsed() < TEN_S, "nobody gave up a place");
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(held);
        alice.join().expect("join").expect("alice served");
        let refused = flood
            .into_iter()
            .map(|c| c.join().expect("join"))
            .filter(Result::is_err)
            .count();
        assert_eq!(refused, 1);
        let order = order.lock().expect("order").clone();
        assert_eq!(order[0], "alice", "{order:?}");
        // Then the better standing (1) before the worse (2).
        let standing = |tag: &str| {
            tag.trim_start_matches("ip:10.0.0.")
                .parse::<u32>()
                .map_or(0, |i| 1 + i % 2)
        };
        let rest: Vec<u32> = order[1..].iter().map(|t| standing(t)).collect();
        assert!(rest.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        // A source with failures does not push a clean one out.
        let h = Hasher::new(4, 1, TEN_S);
        h.slots().max_waiting = 0;
        assert!(!h.slots().make_room(source("ip:x", 3)));
    }
}
