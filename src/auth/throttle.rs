//! Login throttling per username and per client IP.
//!
//! After `max_failures` failures within `window`, further attempts for that
//! username or from that IP are refused for a lockout that starts at
//! `lockout` and doubles with each further lockout up to `max_lockout`.
//! While locked, even the right password is refused, so a guesser learns
//! nothing. A success clears the username's record (not the IP's: one valid
//! account must not reset an attacker's address).
//!
//! The rules live here; the records live in a [`Records`] store: in memory
//! for one instance ([`MemoryRecords`], bounded to [`MAX_ENTRIES`]: when
//! full, idle records go first, then the least recently active), or in the
//! shared backend when several instances serve one login, so an attacker
//! cannot spread guesses across them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Millis, millis};
use crate::session::StoreError;

mod shared;

pub use shared::{PostgresRecords, RedisRecords};

/// The most records kept at once in memory.
pub const MAX_ENTRIES: usize = 10_000;

/// Throttling limits.
#[derive(Clone, Debug)]
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
}

/// Where throttling records are kept.
///
/// Subjects are `user:<lowercased name>` or `ip:<address>`. `update` must
/// be atomic per subject across every instance sharing the store: read the
/// record, apply `f`, write the result (`None` deletes), with nothing in
/// between. `keep_for` is how long the written record matters; a store may
/// forget it after that.
pub trait Records: Send + Sync {
    /// The record of `subject`, if any.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn get(&self, subject: &str) -> Result<Option<Entry>, StoreError>;

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
}

fn user_subject(username: &str) -> String {
    format!("user:{}", username.trim().to_ascii_lowercase())
}

fn ip_subject(ip: IpAddr) -> String {
    format!("ip:{ip}")
}

impl Throttle {
    /// A throttle keeping its records in this process.
    pub fn new(limits: Limits) -> Self {
        Self::with_records(limits, Box::new(MemoryRecords::default()))
    }

    /// A throttle keeping its records in `records`.
    pub fn with_records(limits: Limits, records: Box<dyn Records>) -> Self {
        Self { limits, records }
    }

    /// How long the caller must wait before trying `username` from `ip`, or
    /// `None` if an attempt may go ahead.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn retry_after(
        &self,
        username: &str,
        ip: IpAddr,
        now: Millis,
    ) -> Result<Option<Duration>, StoreError> {
        let mut wait = None;
        for subject in [user_subject(username), ip_subject(ip)] {
            if let Some(e) = self.records.get(&subject)?
                && e.locked_at(now)
            {
                let d = Duration::from_millis(u64::try_from(e.locked_until - now).unwrap_or(0));
                wait = wait.max(Some(d));
            }
        }
        Ok(wait)
    }

    /// Records a failed attempt; returns the lockouts it started.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn failure(
        &self,
        username: &str,
        ip: IpAddr,
        now: Millis,
    ) -> Result<Vec<Lockout>, StoreError> {
        let mut started = Vec::new();
        let limits = &self.limits;
        for (subject, by) in [(user_subject(username), "user"), (ip_subject(ip), "ip")] {
            let mut lock = None;
            self.records
                .update(&subject, limits.keep_for(), now, &mut |entry| {
                    let mut entry = entry.unwrap_or_default();
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
            crate::clock::now(),
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
    fn get(&self, subject: &str) -> Result<Option<Entry>, StoreError> {
        (**self).get(subject)
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
}

/// Records in this process's memory, bounded to [`MAX_ENTRIES`].
#[derive(Default)]
pub struct MemoryRecords {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryRecords {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no records are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Records for MemoryRecords {
    fn get(&self, subject: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.lock().get(subject).cloned())
    }

    fn update(
        &self,
        subject: &str,
        keep_for: Millis,
        now: Millis,
        f: &mut dyn FnMut(Option<Entry>) -> Option<Entry>,
    ) -> Result<(), StoreError> {
        let mut entries = self.lock();
        if entries.len() + 1 > MAX_ENTRIES {
            evict(&mut entries, keep_for, now);
        }
        match f(entries.remove(subject)) {
            Some(e) => entries.insert(subject.to_owned(), e),
            None => None,
        };
        Ok(())
    }
}

fn evict(entries: &mut HashMap<String, Entry>, keep_for: Millis, now: Millis) {
    entries.retain(|_, e| e.locked_at(now) || now.saturating_sub(e.last_activity) < keep_for);
    if entries.len() + 1 > MAX_ENTRIES {
        // Still full of recent records: drop the least recently active half.
        // Locked records are never dropped: that would unlock them.
        let mut by_age: Vec<(Millis, String)> = entries
            .iter()
            .filter(|(_, e)| !e.locked_at(now))
            .map(|(s, e)| (e.last_activity, s.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, s) in by_age.into_iter().take(MAX_ENTRIES / 2) {
            entries.remove(&s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_failures: 5,
            window: Duration::from_secs(600),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(900),
        }
    }

    fn failure(t: &Throttle, user: &str, ip: IpAddr, now: Millis) -> Vec<Lockout> {
        t.failure(user, ip, now).expect("failure")
    }

    fn wait(t: &Throttle, user: &str, ip: IpAddr, now: Millis) -> Option<Duration> {
        t.retry_after(user, ip, now).expect("retry_after")
    }

    /// Runs `check` on a throttle with records in memory and, when servers
    /// are configured for tests, in PostgreSQL and in Redis.
    fn each(check: impl Fn(&Throttle)) {
        check(&Throttle::new(limits()));
        if let Some(url) = crate::db::postgres::test_url() {
            let url = crate::db::postgres::scratch_schema(&url).expect("schema");
            let pool = crate::db::postgres::open(&url, 2).expect("open");
            check(&Throttle::with_records(
                limits(),
                Box::new(PostgresRecords(pool)),
            ));
        }
        if let Some(url) = crate::session::redis::test_url() {
            let pool = crate::session::redis::open_pool(&url, 2).expect("redis");
            let prefix = crate::session::redis::scratch_prefix();
            check(&Throttle::with_records(
                limits(),
                Box::new(RedisRecords::new(pool, &prefix)),
            ));
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn five_failures_lock_the_user_and_the_ip() {
        each(|t| {
            let now = crate::clock::now();
            for i in 0..4 {
                assert!(failure(t, "alice", ip(1), now).is_empty(), "failure {i}");
                assert_eq!(wait(t, "alice", ip(1), now), None);
            }
            let locks = failure(t, "alice", ip(1), now);
            assert_eq!(locks.len(), 2);
            assert_eq!(
                wait(t, "Alice", ip(9), now),
                Some(Duration::from_secs(60)),
                "by user, any case"
            );
            assert_eq!(
                wait(t, "bob", ip(1), now),
                Some(Duration::from_secs(60)),
                "by ip"
            );
            assert_eq!(wait(t, "bob", ip(2), now), None);
            assert_eq!(wait(t, "alice", ip(1), now + 61_000), None);
        });
    }

    #[test]
    fn lockouts_double_up_to_the_cap() {
        each(|t| {
            let mut now = crate::clock::now();
            let mut seen = Vec::new();
            for _ in 0..6 {
                let mut locks = Vec::new();
                for _ in 0..5 {
                    locks = failure(t, "alice", ip(1), now);
                }
                let d = locks
                    .iter()
                    .find(|l| l.by == "user")
                    .expect("locked")
                    .duration;
                seen.push(d.as_secs());
                now += millis(d);
            }
            assert_eq!(seen, [60, 120, 240, 480, 900, 900]);
        });
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        each(|t| {
            let start = crate::clock::now();
            for i in 0..4 {
                failure(t, "alice", ip(i), start);
            }
            let later = start + 601_000;
            assert!(failure(t, "alice", ip(9), later).is_empty());
        });
    }

    #[test]
    fn a_success_clears_the_user_but_not_the_ip() {
        each(|t| {
            let now = crate::clock::now();
            for _ in 0..4 {
                failure(t, "alice", ip(1), now);
            }
            t.success("alice").expect("success");
            assert!(
                failure(t, "alice", ip(2), now).is_empty(),
                "user count was reset"
            );
            let locks = failure(t, "mallory", ip(1), now);
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
        let records = std::sync::Arc::new(MemoryRecords::default());
        let t = Throttle::with_records(limits(), Box::new(std::sync::Arc::clone(&records)));
        let now = crate::clock::now();
        for i in 0..(MAX_ENTRIES * 2) {
            failure(&t, &format!("user{i}"), ip(1), now);
        }
        assert!(records.len() <= MAX_ENTRIES, "{} entries", records.len());
        assert!(
            wait(&t, "anyone", ip(1), now).is_some(),
            "the flooding IP stays locked"
        );
    }
}
