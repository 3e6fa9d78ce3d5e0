//! Login throttling per username and per client IP.
//!
//! After `max_failures` failures within `window`, further attempts for that
//! username or from that IP are refused for a lockout that starts at
//! `lockout` and doubles with each further lockout up to `max_lockout`.
//! While locked, even the right password is refused, so a guesser learns
//! nothing. A success clears the username's record (not the IP's: one valid
//! account must not reset an attacker's address).
//!
//! Memory is bounded: at most [`MAX_ENTRIES`] records are kept; when full,
//! idle records go first, then the least recently active, so a flood of
//! random usernames cannot grow the table without limit.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most records kept at once.
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

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Ip(IpAddr),
}

#[derive(Debug)]
struct Entry {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    lockouts: u32,
    last_activity: Instant,
}

/// What a failure led to.
#[derive(Debug, PartialEq, Eq)]
pub struct Lockout {
    /// `"user"` or `"ip"`.
    pub by: &'static str,
    /// How long.
    pub duration: Duration,
}

/// Failure counts and lockouts, shared by all request threads.
pub struct Throttle {
    limits: Limits,
    entries: Mutex<HashMap<Subject, Entry>>,
}

fn user_subject(username: &str) -> Subject {
    Subject::User(username.trim().to_ascii_lowercase())
}

impl Throttle {
    /// An empty throttle.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long the caller must wait before trying `username` from `ip`, or
    /// `None` if an attempt may go ahead.
    pub fn retry_after(&self, username: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        let entries = self.lock();
        [user_subject(username), Subject::Ip(ip)]
            .iter()
            .filter_map(|s| entries.get(s)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Records a failed attempt; returns the lockouts it started.
    pub fn failure(&self, username: &str, ip: IpAddr, now: Instant) -> Vec<Lockout> {
        let mut entries = self.lock();
        if entries.len() + 2 > MAX_ENTRIES {
            self.evict(&mut entries, now);
        }
        let mut started = Vec::new();
        for (subject, by) in [(user_subject(username), "user"), (Subject::Ip(ip), "ip")] {
            let entry = entries.entry(subject).or_insert_with(|| Entry {
                failures: VecDeque::new(),
                locked_until: None,
                lockouts: 0,
                last_activity: now,
            });
            // A long quiet spell forgives earlier lockouts.
            if now.saturating_duration_since(entry.last_activity)
                > self.limits.window + self.limits.max_lockout
            {
                entry.lockouts = 0;
            }
            entry.last_activity = now;
            while entry
                .failures
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= self.limits.window)
            {
                entry.failures.pop_front();
            }
            entry.failures.push_back(now);
            if entry.failures.len() >= self.limits.max_failures as usize {
                let factor = 1u32.checked_shl(entry.lockouts).unwrap_or(u32::MAX);
                let duration = self
                    .limits
                    .lockout
                    .saturating_mul(factor)
                    .min(self.limits.max_lockout);
                entry.lockouts = entry.lockouts.saturating_add(1);
                entry.locked_until = Some(now + duration);
                entry.failures.clear();
                started.push(Lockout { by, duration });
            }
        }
        started
    }

    /// Records a success: the username's failures and lockouts are cleared.
    pub fn success(&self, username: &str) {
        self.lock().remove(&user_subject(username));
    }

    /// How many records are held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no records are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict(&self, entries: &mut HashMap<Subject, Entry>, now: Instant) {
        let keep_for = self.limits.window + self.limits.max_lockout;
        entries.retain(|_, e| {
            e.locked_until.is_some_and(|u| u > now)
                || now.saturating_duration_since(e.last_activity) < keep_for
        });
        if entries.len() + 2 > MAX_ENTRIES {
            // Still full of recent records: drop the least recently active half.
            // Locked records are never dropped: that would unlock them.
            let mut by_age: Vec<(Instant, Subject)> = entries
                .iter()
                .filter(|(_, e)| e.locked_until.is_none_or(|u| u <= now))
                .map(|(s, e)| (e.last_activity, s.clone()))
                .collect();
            by_age.sort_by_key(|(t, _)| *t);
            for (_, s) in by_age.into_iter().take(MAX_ENTRIES / 2) {
                entries.remove(&s);
            }
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

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn five_failures_lock_the_user_and_the_ip() {
        let t = Throttle::new(limits());
        let now = Instant::now();
        for i in 0..4 {
            assert!(t.failure("alice", ip(1), now).is_empty(), "failure {i}");
            assert_eq!(t.retry_after("alice", ip(1), now), None);
        }
        let locks = t.failure("alice", ip(1), now);
        assert_eq!(locks.len(), 2);
        assert_eq!(
            t.retry_after("Alice", ip(9), now),
            Some(Duration::from_secs(60)),
            "by user, any case"
        );
        assert_eq!(
            t.retry_after("bob", ip(1), now),
            Some(Duration::from_secs(60)),
            "by ip"
        );
        assert_eq!(t.retry_after("bob", ip(2), now), None);
        assert_eq!(
            t.retry_after("alice", ip(1), now + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn lockouts_double_up_to_the_cap() {
        let t = Throttle::new(limits());
        let mut now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..6 {
            let mut locks = Vec::new();
            for _ in 0..5 {
                locks = t.failure("alice", ip(1), now);
            }
            let d = locks
                .iter()
                .find(|l| l.by == "user")
                .expect("locked")
                .duration;
            seen.push(d.as_secs());
            now += d;
        }
        assert_eq!(seen, [60, 120, 240, 480, 900, 900]);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let t = Throttle::new(limits());
        let start = Instant::now();
        for i in 0..4 {
            t.failure("alice", ip(i), start);
        }
        let later = start + Duration::from_secs(601);
        assert!(t.failure("alice", ip(9), later).is_empty());
    }

    #[test]
    fn a_success_clears_the_user_but_not_the_ip() {
        let t = Throttle::new(limits());
        let now = Instant::now();
        for _ in 0..4 {
            t.failure("alice", ip(1), now);
        }
        t.success("alice");
        assert!(
            t.failure("alice", ip(2), now).is_empty(),
            "user count was reset"
        );
        let locks = t.failure("mallory", ip(1), now);
        assert_eq!(
            locks,
            [Lockout {
                by: "ip",
                duration: Duration::from_secs(60)
            }]
        );
    }

    #[test]
    fn a_flood_of_usernames_stays_bounded() {
        let t = Throttle::new(limits());
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES * 2) {
            t.failure(&format!("user{i}"), ip(1), now);
        }
        assert!(t.len() <= MAX_ENTRIES, "{} entries", t.len());
        assert!(
            t.retry_after("anyone", ip(1), now).is_some(),
            "the flooding IP stays locked"
        );
    }
}
