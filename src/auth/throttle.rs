//! Login throttling per username and per client IP.
//!
//! After `max_failures` failures within `window`, further attempts for that
//! username or from that IP are refused for a lockout that starts at
//! `lockout` and doubles with each further lockout up to `max_lockout`.
//! While locked, even the right password is refused, so a guesser learns
//! nothing. A success clears the username's record (not the IP's: one valid
//! account must not reset an attacker's address). IPv6 clients are counted
//! per /64 (one host usually holds a whole /64, so counting single
//! addresses would give it 2^64 fresh starts); IPv4-mapped IPv6 addresses
//! count as the IPv4 address they carry.
//!
//! The rules live here; the records live in a [`Records`] store: in memory
//! for one instance ([`MemoryRecords`]), or in the shared backend when
//! several instances serve one login, so an attacker cannot spread guesses
//! across them.
//!
//! Records in memory are bounded, and that bound must not become a way to
//! wash a record out: a flood of failures on fresh usernames once evicted
//! the record of the user it was meant to hide. So a record with failures
//! in its window or a running lockout is never evicted; when room is
//! needed the oldest clean records go first, and when only active ones are
//! left, the failures of subjects without a record count against one shared
//! overflow record instead. Once that overflow record locks, every subject
//! without a record of its own waits with it: the flood is throttled as a
//! whole, and no guess goes uncounted. Subjects with records of their own
//! (and anyone at all while the overflow record is not locked) are judged
//! as usual, and a correct password never needs a record to succeed.
//!
//! Times: records in memory are measured on the monotonic clock, so no step
//! of the wall clock lengthens or shortens a lockout. Shared records must
//! use wall time (every instance reads them); there, times read back are
//! clamped to the reader's present, so a lockout never runs longer than
//! `max_lockout` from now, whatever any clock did.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, Millis, SystemClock, millis};
use crate::session::StoreError;

mod shared;

pub use shared::{PostgresRecords, RedisRecords};

/// The most records kept at once in memory, by default.
pub const MAX_ENTRIES: usize = 10_000;

/// Throttling limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Failures within the window that trigger a lockout.
    pub max_failures: u32,
    /// How long a failure counts.
    pub window: Duration,
    /// The first lockout.
    pub lockout: Duration,
    /// The longest lockout.
    pub max_lockout: Duration,
}

/// The design's limits, and the source of the `login_*` settings'
/// defaults: 5 failures in 10 minutes, then a 1-minute lockout that
/// doubles up to 15 minutes.
impl Default for Limits {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(600),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(900),
        }
    }
}

impl Limits {
    /// How long a record matters after its last activity.
    fn keep_for(&self) -> Millis {
        millis(self.window + self.max_lockout)
    }
}

/// One subject's failures and lockouts, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entry {
    /// When the failures still in the window happened.
    #[serde(rename = "f")]
    pub failures: Vec<Millis>,
    /// Locked until then (0: not locked).
    #[serde(rename = "u")]
    pub locked_until: Millis,
    /// How many lockouts so far (each doubles the next).
    #[serde(rename = "n")]
    pub lockouts: u32,
    /// The last failure.
    #[serde(rename = "a")]
    pub last_activity: Millis,
}

impl Entry {
    fn locked_at(&self, now: Millis) -> bool {
        self.locked_until > now
    }

    /// Until when this record holds failures in their window or a lockout;
    /// after that it is clean, and may be forgotten when room is needed.
    fn active_until(&self, window: Millis) -> Millis {
        let newest = self.failures.iter().copied().max().unwrap_or(Millis::MIN);
        self.locked_until.max(newest.saturating_add(window))
    }

    /// Brings times written by a clock ahead of ours (another instance, or
    /// ours before it was stepped back) to `now`, and a lockout to at most
    /// `max_lockout` from `now`: a record never holds anyone longer than
    /// the configured maximum because of a clock.
    fn clamp(&mut self, now: Millis, max_lockout: Millis) {
        for t in &mut self.failures {
            *t = (*t).min(now);
        }
        self.last_activity = self.last_activity.min(now);
        self.locked_until = self.locked_until.min(now.saturating_add(max_lockout));
    }
}

/// Where throttling records are kept.
///
/// Subjects are `user:<lowercased name>` or `ip:<address or /64>`. `update`
/// must be atomic per subject across every instance sharing the store: read
/// the record, apply `f`, write the result (`None` deletes), with nothing
/// in between; `f` may be called more than once (only the last result
/// counts). `keep_for` is how long the written record matters; a store may
/// forget it after that. A store may answer for a subject with a record
/// that stands for several subjects (the overflow record of
/// [`MemoryRecords`]).
pub trait Records: Send + Sync {
    /// The record of `subject`, if any.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn get(&self, subject: &str, now: Millis) -> Result<Option<Entry>, StoreError>;

    /// Replaces the record of `subject` with `f` of it, atomically.
    ///
    /// # Errors
    ///
    /// Backend failures; nothing changes then.
    fn update(
        &self,
        subject: &str,
        keep_for: Millis,
        now: Millis,
        f: &mut dyn FnMut(Option<Entry>) -> Option<Entry>,
    ) -> Result<(), StoreError>;

    /// Whether the records live in this process alone, so their times may
    /// come from the monotonic clock. Shared stores keep wall time.
    fn local(&self) -> bool {
        false
    }
}

/// What a failure led to.
#[derive(Debug, PartialEq, Eq)]
pub struct Lockout {
    /// `"user"` or `"ip"`.
    pub by: &'static str,
    /// How long.
    pub duration: Duration,
}

/// Failure counts and lockouts, shared by all request threads (and, with a
/// shared store, all instances).
pub struct Throttle {
    limits: Limits,
    records: Box<dyn Records>,
    clock: Box<dyn Clock>,
}

/// The subject a username is counted under: only plain spaces trimmed (as
/// at sign-in, so `"\r\nalice"` is not alice), and control characters
/// escaped, so every record store can keep it (PostgreSQL's text refuses
/// NUL) and a disguised name is throttled like any other.
fn user_subject(username: &str) -> String {
    let mut subject = String::from("user:");
    for c in username.trim_matches(' ').chars() {
        if c.is_control() {
            subject.extend(c.escape_unicode());
        } else {
            subject.push(c.to_ascii_lowercase());
        }
    }
    subject
}

/// The subject an address is counted under: an IPv4 address (also when it
/// arrives IPv4-mapped), or the /64 an IPv6 address belongs to.
fn ip_subject(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX));
            format!("ip:{net}/64")
        }
    }
}

impl Throttle {
    /// A throttle keeping its records in this process.
    pub fn new(limits: Limits) -> Self {
        let records = MemoryRecords::new(MAX_ENTRIES, limits.window);
        Self::with_records(limits, Box::new(records))
    }

    /// A throttle keeping its records in `records`.
    pub fn with_records(limits: Limits, records: Box<dyn Records>) -> Self {
        Self::with_clock(limits, records, Box::new(SystemClock))
    }

    /// A throttle keeping its records in `records`, reading `clock`.
    pub fn with_clock(limits: Limits, records: Box<dyn Records>, clock: Box<dyn Clock>) -> Self {
        Self {
            limits,
            records,
            clock,
        }
    }

    /// The present on the clock the records are kept in.
    fn now(&self) -> Millis {
        if self.records.local() {
            self.clock.monotonic()
        } else {
            self.clock.wall()
        }
    }

    /// How long the caller must wait before trying `username` from `ip`, or
    /// `None` if an attempt may go ahead. Never more than `max_lockout`.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn retry_after(&self, username: &str, ip: IpAddr) -> Result<Option<Duration>, StoreError> {
        let now = self.now();
        let max_lockout = millis(self.limits.max_lockout);
        let mut wait = None;
        for subject in [user_subject(username), ip_subject(ip)] {
            if let Some(mut e) = self.records.get(&subject, now)? {
                e.clamp(now, max_lockout);
                if e.locked_at(now) {
                    let d = Duration::from_millis(u64::try_from(e.locked_until - now).unwrap_or(0));
                    wait = wait.max(Some(d));
                }
            }
        }
        Ok(wait)
    }

    /// Records a failed attempt; returns the lockouts it started.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn failure(&self, username: &str, ip: IpAddr) -> Result<Vec<Lockout>, StoreError> {
        let now = self.now();
        let mut started = Vec::new();
        let limits = &self.limits;
        let max_lockout = millis(limits.max_lockout);
        for (subject, by) in [(user_subject(username), "user"), (ip_subject(ip), "ip")] {
            let mut lock = None;
            self.records
                .update(&subject, limits.keep_for(), now, &mut |entry| {
                    let mut entry = entry.unwrap_or_default();
                    entry.clamp(now, max_lockout);
                    lock = fail(&mut entry, limits, now);
                    Some(entry)
                })?;
            if let Some(duration) = lock {
                started.push(Lockout { by, duration });
            }
        }
        Ok(started)
    }

    /// Records a success: the username's failures and lockouts are cleared.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn success(&self, username: &str) -> Result<(), StoreError> {
        self.records.update(
            &user_subject(username),
            self.limits.keep_for(),
            self.now(),
            &mut |_| None,
        )
    }
}

/// Counts one failure against `entry`; returns the lockout it started.
fn fail(entry: &mut Entry, limits: &Limits, now: Millis) -> Option<Duration> {
    // A long quiet spell forgives earlier lockouts.
    if now.saturating_sub(entry.last_activity) > limits.keep_for() {
        entry.lockouts = 0;
    }
    entry.last_activity = now;
    let window = millis(limits.window);
    entry.failures.retain(|t| now.saturating_sub(*t) < window);
    entry.failures.push(now);
    if entry.failures.len() < limits.max_failures as usize {
        return None;
    }
    let factor = 1u32.checked_shl(entry.lockouts).unwrap_or(u32::MAX);
    let duration = limits
        .lockout
        .saturating_mul(factor)
        .min(limits.max_lockout);
    entry.lockouts = entry.lockouts.saturating_add(1);
    entry.locked_until = now.saturating_add(millis(duration));
    entry.failures.clear();
    Some(duration)
}

impl<R: Records> Records for std::sync::Arc<R> {
    fn get(&self, subject: &str, now: Millis) -> Result<Option<Entry>, StoreError> {
        (**self).get(subject, now)
    }

    fn update(
        &self,
        subject: &str,
        keep_for: Millis,
        now: Millis,
        f: &mut dyn FnMut(Option<Entry>) -> Option<Entry>,
    ) -> Result<(), StoreError> {
        (**self).update(subject, keep_for, now, f)
    }

    fn local(&self) -> bool {
        (**self).local()
    }
}

/// Records in this process's memory (on the monotonic clock), at most
/// `capacity` of them plus one overflow record.
pub struct MemoryRecords {
    capacity: usize,
    window: Millis,
    inner: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    entries: HashMap<String, Entry>,
    /// The record shared by every subject that found no room.
    overflow: Option<Entry>,
    /// No record turns clean before then: while full, no need to look.
    full_until: Millis,
}

impl Default for MemoryRecords {
    fn default() -> Self {
        Self::new(MAX_ENTRIES, Limits::default().window)
    }
}

impl MemoryRecords {
    /// Room for `capacity` records; a failure counts for `window` (the
    /// throttle's window: what makes a record active).
    pub fn new(capacity: usize, window: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            window: millis(window),
            inner: Mutex::new(Memory::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many records are held (the overflow record not counted).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no records are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Memory {
    /// Makes room for one more record by forgetting clean ones, oldest
    /// first (an eighth of the capacity at once, so a full table is not
    /// scanned on every failure). Active records are never dropped: that
    /// would wash out their failures. Returns whether there is room.
    fn make_room(&mut self, capacity: usize, window: Millis, now: Millis) -> bool {
        if self.entries.len() < capacity {
            return true;
        }
        if now < self.full_until {
            return false;
        }
        let mut clean: Vec<(Millis, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.active_until(window) <= now)
            .map(|(s, e)| (e.last_activity, s.clone()))
            .collect();
        if clean.is_empty() {
            self.full_until = self
                .entries
                .values()
                .map(|e| e.active_until(window))
                .min()
                .unwrap_or(now);
            return false;
        }
        clean.sort_unstable();
        for (_, s) in clean.into_iter().take((capacity / 8).max(1)) {
            self.entries.remove(&s);
        }
        true
    }
}

impl Records for MemoryRecords {
    fn get(&self, subject: &str, now: Millis) -> Result<Option<Entry>, StoreError> {
        let memory = self.lock();
        let own = memory.entries.get(subject);
        // A subject without a record of its own waits with the overflow
        // record while that is locked.
        let overflow = memory.overflow.as_ref().filter(|o| o.locked_at(now));
        Ok(own.or(overflow).cloned())
    }

    fn update(
        &self,
        subject: &str,
        keep_for: Millis,
        now: Millis,
        f: &mut dyn FnMut(Option<Entry>) -> Option<Entry>,
    ) -> Result<(), StoreError> {
        let mut memory = self.lock();
        if let Some(old) = memory.entries.remove(subject) {
            if let Some(e) = f(Some(old)) {
                memory.entries.insert(subject.to_owned(), e);
            }
            return Ok(());
        }
        let Some(fresh) = f(None) else {
            return Ok(()); // nothing to forget, and the overflow record is not this subject's
        };
        if memory.make_room(self.capacity, self.window, now) {
            memory.entries.insert(subject.to_owned(), fresh);
            return Ok(());
        }
        // No room without evicting an active record: this failure counts
        // against the overflow record, which a long quiet spell forgets.
        let overflow = memory
            .overflow
            .take()
            .filter(|o| o.locked_at(now) || now.saturating_sub(o.last_activity) < keep_for);
        memory.overflow = f(overflow);
        Ok(())
    }

    fn local(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    const DAY: Millis = 86_400_000;

    fn limits() -> Limits {
        Limits {
            max_failures: 5,
            window: Duration::from_secs(600),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(900),
        }
    }

    fn failure(t: &Throttle, user: &str, ip: IpAddr) -> Vec<Lockout> {
        t.failure(user, ip).expect("failure")
    }

    fn wait(t: &Throttle, user: &str, ip: IpAddr) -> Option<Duration> {
        t.retry_after(user, ip).expect("retry_after")
    }

    fn throttle(records: Box<dyn Records>, clock: &Arc<ManualClock>) -> Throttle {
        Throttle::with_clock(limits(), records, Box::new(Arc::clone(clock)))
    }

    /// Runs `check` on a throttle with records in memory (room for
    /// `capacity`) and, when servers are configured for tests, in
    /// PostgreSQL and in Redis; each with its own manual clock.
    fn each_with(capacity: usize, check: impl Fn(&Throttle, &ManualClock)) {
        let clock = Arc::new(ManualClock::at(crate::clock::now()));
        let memory = MemoryRecords::new(capacity, limits().window);
        check(&throttle(Box::new(memory), &clock), &clock);
        if let Some(url) = crate::db::postgres::test_url() {
            let url = crate::db::postgres::scratch_schema(&url).expect("schema");
            let pool = crate::db::postgres::open_for_tests(&url, 2).expect("open");
            let clock = Arc::new(ManualClock::at(crate::clock::now()));
            check(&throttle(Box::new(PostgresRecords(pool)), &clock), &clock);
        }
        if let Some(url) = crate::db::redis::test_url() {
            let pool = crate::db::redis::open_pool_for_tests(&url, 2).expect("redis");
            let prefix = crate::db::redis::scratch_prefix();
            let clock = Arc::new(ManualClock::at(crate::clock::now()));
            check(
                &throttle(Box::new(RedisRecords::new(pool, &prefix)), &clock),
                &clock,
            );
        }
    }

    fn each(check: impl Fn(&Throttle, &ManualClock)) {
        each_with(MAX_ENTRIES, check);
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    /// The `i`th of many distinct IPv4 addresses in 10.0.0.0/8.
    fn many(i: usize) -> IpAddr {
        let i = u32::try_from(i).expect("small");
        IpAddr::V4(std::net::Ipv4Addr::from((10u32 << 24) | (i & 0x00ff_ffff)))
    }

    #[test]
    fn five_failures_lock_the_user_and_the_ip() {
        each(|t, _| {
            for i in 0..4 {
                assert!(failure(t, "alice", ip(1)).is_empty(), "failure {i}");
                assert_eq!(wait(t, "alice", ip(1)), None);
            }
            let locks = failure(t, "alice", ip(1));
            assert_eq!(locks.len(), 2);
            assert_eq!(
                wait(t, "Alice", ip(9)),
                Some(Duration::from_secs(60)),
                "by user, any case"
            );
            assert_eq!(
                wait(t, "bob", ip(1)),
                Some(Duration::from_secs(60)),
                "by ip"
            );
            assert_eq!(wait(t, "bob", ip(2)), None);
        });
    }

    #[test]
    fn a_lockout_ends_on_time() {
        each(|t, clock| {
            for _ in 0..5 {
                failure(t, "alice", ip(1));
            }
            clock.advance(Duration::from_secs(59));
            assert_eq!(wait(t, "alice", ip(1)), Some(Duration::from_secs(1)));
            clock.advance(Duration::from_secs(1));
            assert_eq!(wait(t, "alice", ip(1)), None);
        });
    }

    #[test]
    fn lockouts_double_up_to_the_cap() {
        each(|t, clock| {
            let mut seen = Vec::new();
            for _ in 0..6 {
                let mut locks = Vec::new();
                for _ in 0..5 {
                    locks = failure(t, "alice", ip(1));
                }
                let d = locks
                    .iter()
                    .find(|l| l.by == "user")
                    .expect("locked")
                    .duration;
                seen.push(d.as_secs());
                clock.advance(d);
            }
            assert_eq!(seen, [60, 120, 240, 480, 900, 900]);
        });
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        each(|t, clock| {
            for i in 0..4 {
                failure(t, "alice", ip(i));
            }
            clock.advance(Duration::from_secs(601));
            assert!(failure(t, "alice", ip(9)).is_empty());
        });
    }

    #[test]
    fn a_success_clears_the_user_but_not_the_ip() {
        each(|t, _| {
            for _ in 0..4 {
                failure(t, "alice", ip(1));
            }
            t.success("alice").expect("success");
            assert!(
                failure(t, "alice", ip(2)).is_empty(),
                "user count was reset"
            );
            let locks = failure(t, "mallory", ip(1));
            assert_eq!(
                locks,
                [Lockout {
                    by: "ip",
                    duration: Duration::from_secs(60)
                }]
            );
        });
    }

    #[test]
    fn a_flood_of_usernames_stays_bounded() {
        let records = Arc::new(MemoryRecords::new(100, limits().window));
        let clock = Arc::new(ManualClock::at(0));
        let t = throttle(Box::new(Arc::clone(&records)), &clock);
        for i in 0..1_000 {
            failure(&t, &format!("user{i}"), ip(1));
        }
        assert!(records.len() <= 100, "{} entries", records.len());
        assert!(
            wait(&t, "anyone", ip(1)).is_some(),
            "the flooding IP stays locked"
        );
    }

    /// The reported attack, at its reported size against the default
    /// capacity: 4 failures on alice, then 8,200 failures on unique
    /// usernames from 2,050 addresses (4 each, under the IP limit).
    #[test]
    fn a_flood_of_unique_usernames_does_not_wash_out_a_users_failures() {
        let clock = Arc::new(ManualClock::at(0));
        let t = throttle(Box::new(MemoryRecords::default()), &clock);
        for _ in 0..4 {
            failure(&t, "alice", ip(1));
        }
        for i in 0..8_200 {
            failure(&t, &format!("spray{i}"), many(i / 4));
        }
        let locks = failure(&t, "alice", ip(2));
        assert!(
            locks.iter().any(|l| l.by == "user"),
            "alice's earlier failures were forgotten: {locks:?}"
        );
        assert!(wait(&t, "alice", ip(3)).is_some());
    }

    /// The same attack against every store, with a small capacity in memory.
    #[test]
    fn records_with_recent_failures_are_never_evicted() {
        each_with(64, |t, clock| {
            for _ in 0..4 {
                failure(t, "alice", ip(1));
            }
            clock.advance(Duration::from_secs(1));
            for i in 0..512 {
                failure(t, &format!("spray{i}"), many(i / 4));
            }
            let locks = failure(t, "alice", ip(2));
            assert!(
                locks.iter().any(|l| l.by == "user"),
                "washed out: {locks:?}"
            );
        });
    }

    #[test]
    fn a_running_lockout_is_never_evicted() {
        each_with(64, |t, clock| {
            for _ in 0..5 {
                failure(t, "alice", ip(1));
            }
            // Long enough for alice's failures to leave the window, not
            // for her lockout to end.
            clock.advance(Duration::from_secs(50));
            for i in 0..512 {
                failure(t, &format!("spray{i}"), many(i / 4));
            }
            assert_eq!(wait(t, "alice", ip(1)), Some(Duration::from_secs(10)));
        });
    }

    #[test]
    fn clean_records_make_room_oldest_first() {
        let records = Arc::new(MemoryRecords::new(16, limits().window));
        let clock = Arc::new(ManualClock::at(0));
        let t = throttle(Box::new(Arc::clone(&records)), &clock);
        for i in 0..8 {
            failure(&t, &format!("old{i}"), many(i));
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(records.len(), 16);
        // All clean now; four new failures need room.
        clock.advance(Duration::from_secs(600));
        for i in 0..2 {
            failure(&t, &format!("new{i}"), many(100 + i));
        }
        assert!(records.len() <= 16);
        let held: Vec<bool> = (0..8)
            .map(|i| {
                records
                    .get(&user_subject(&format!("old{i}")), 0)
                    .expect("get")
                    .is_some()
            })
            .collect();
        assert!(!held[0], "the oldest clean record went first: {held:?}");
        for i in 0..2 {
            let e = records
                .get(&user_subject(&format!("new{i}")), 0)
                .expect("get");
            assert!(e.is_some(), "new{i} was not kept");
        }
    }

    /// Fills a throttle with room for 8 records with active ones.
    fn full_of_active(t: &Throttle) {
        for i in 0..4 {
            failure(t, &format!("active{i}"), many(i));
        }
    }

    #[test]
    fn when_only_active_records_remain_unknown_subjects_share_one_overflow_budget() {
        let records = Arc::new(MemoryRecords::new(10, limits().window));
        let clock = Arc::new(ManualClock::at(0));
        let t = throttle(Box::new(Arc::clone(&records)), &clock);
        failure(&t, "carol", ip(7)); // a record of her own, and her IP's
        full_of_active(&t);
        assert_eq!(records.len(), 10);
        // A flood of unique usernames from fresh addresses: each subject
        // (username and address) counts against the overflow budget, and
        // none evicts anybody.
        assert_eq!(wait(&t, "spray0", many(50)), None);
        assert!(failure(&t, "spray0", many(50)).is_empty());
        assert!(failure(&t, "spray1", many(51)).is_empty());
        assert_eq!(records.len(), 10);
        assert_eq!(wait(&t, "spray2", many(52)), None, "4 of 5 used");
        let locks = failure(&t, "spray2", many(52));
        assert_eq!(records.len(), 10);
        assert!(!locks.is_empty(), "the fifth failure locks the overflow");
        // The flood is throttled as a whole...
        assert_eq!(wait(&t, "spray99", many(99)), Some(Duration::from_secs(60)));
        // ...while subjects with records of their own are judged by them.
        assert_eq!(wait(&t, "carol", ip(7)), None);
        assert_eq!(wait(&t, "active0", many(0)), None);
        // And the overflow lockout ends like any other.
        clock.advance(Duration::from_secs(60));
        assert_eq!(wait(&t, "spray99", many(99)), None);
    }

    #[test]
    fn a_correct_password_without_a_record_still_signs_in_during_a_flood() {
        let records = Arc::new(MemoryRecords::new(8, limits().window));
        let clock = Arc::new(ManualClock::at(0));
        let t = throttle(Box::new(Arc::clone(&records)), &clock);
        full_of_active(&t);
        failure(&t, "spray0", many(50));
        failure(&t, "spray1", many(51));
        // Alice has no record and finds no room for one: her attempt goes
        // ahead, and her success needs no record.
        assert_eq!(wait(&t, "alice", ip(1)), None);
        t.success("alice").expect("success");
        assert_eq!(records.len(), 8);
        // A success does not clear the shared overflow budget: an attacker
        // signing in to an account of their own must not reset it.
        t.success("spray0").expect("success");
        failure(&t, "spray2", many(52));
        assert!(
            wait(&t, "spray99", many(99)).is_some(),
            "the overflow was reset"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        each(|t, _| {
            let host = |n: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, n]);
            for i in 0..5 {
                failure(t, &format!("guess{i}"), host(i + 1));
            }
            let elsewhere = IpAddr::from([0x2001, 0xdb8, 0, 1, 0xffff, 1, 2, 3]);
            assert_eq!(
                wait(t, "someone", elsewhere),
                Some(Duration::from_secs(60)),
                "another address in the same /64"
            );
            let next_64 = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
            assert_eq!(wait(t, "someone", next_64), None);
        });
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        each(|t, _| {
            let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("address");
            for i in 0..5 {
                failure(t, &format!("guess{i}"), mapped);
            }
            assert_eq!(wait(t, "someone", ip(1)), Some(Duration::from_secs(60)));
        });
    }

    #[test]
    fn a_wall_clock_step_back_never_lengthens_a_lockout() {
        each(|t, clock| {
            for _ in 0..5 {
                failure(t, "alice", ip(1));
            }
            clock.advance(Duration::from_secs(1));
            clock.step_wall(-DAY);
            let w = wait(t, "alice", ip(1)).expect("still locked");
            assert!(w <= limits().max_lockout, "{w:?}");
            // Another round of failures after the step: still capped.
            clock.advance(Duration::from_secs(900));
            for _ in 0..5 {
                failure(t, "alice", ip(1));
            }
            let w = wait(t, "alice", ip(1)).expect("locked again");
            assert!(w <= limits().max_lockout, "{w:?}");
        });
    }

    #[test]
    fn in_memory_lockouts_ignore_wall_clock_steps_entirely() {
        let clock = Arc::new(ManualClock::at(DAY * 20_000));
        let t = throttle(Box::new(MemoryRecords::default()), &clock);
        for _ in 0..5 {
            failure(&t, "alice", ip(1));
        }
        clock.step_wall(-DAY);
        assert_eq!(wait(&t, "alice", ip(1)), Some(Duration::from_secs(60)));
        clock.step_wall(2 * DAY);
        assert_eq!(wait(&t, "alice", ip(1)), Some(Duration::from_secs(60)));
    }
}
