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
//! whole, and no guess goes uncounted. The users who exist are never part
//! of it ([`Room`]): their names always keep a record of their own (past
//! the bound: there are only as many as there are users), so their
//! guessers are held to the limits and their sign-ins are judged by their
//! own records, never locked out by a flood of wrong names.
//!
//! Attempts are counted *before* they are checked: [`Throttle::reserve`]
//! takes a slot on the name's and the address's records atomically (one
//! [`Records::update`] each), and only a granted attempt may verify a
//! password or a code; it is then confirmed as a failure
//! ([`Throttle::failed`]), or released ([`Throttle::passed`],
//! [`Throttle::release`]). A subject's failures in the window plus its
//! attempts being checked never exceed `max_failures`, so however many
//! attempts arrive at once (a burst, or several instances), at most
//! `max_failures` are ever evaluated before the lockout, and the right
//! password in the same burst finds the lock. (Checking the lock first and
//! recording the failure after the check let every attempt in flight
//! through: 200 of a burst of 300 reached bcrypt.) A slot whose holder
//! never comes back (an instance that died mid-check) lapses after
//! [`HOLD`].
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
    /// Attempts being checked now: each counts as a failure until it is
    /// confirmed or released, and lapses at its `until`.
    #[serde(rename = "r", skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<Held>,
    /// Set by a store on a record that stands for several subjects (the
    /// overflow record of [`MemoryRecords`]); never stored.
    #[serde(skip)]
    pub shared: bool,
}

/// One attempt being checked, as stored in a record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The attempt's id (the same in every record it holds a slot in).
    #[serde(rename = "i")]
    pub id: u64,
    /// When the slot lapses if the attempt never comes back.
    #[serde(rename = "u")]
    pub until: Millis,
}

/// How long an attempt may hold its slots between reserving them and
/// confirming or releasing them: far longer than any check takes, so a
/// slot lapses only when its holder is gone (an instance that died
/// mid-check), and then frees the subject's budget within a minute.
pub const HOLD: Duration = Duration::from_secs(60);

impl Entry {
    fn locked_at(&self, now: Millis) -> bool {
        self.locked_until > now
    }

    /// Until when this record holds failures in their window or a lockout;
    /// after that it is clean, and may be forgotten when room is needed.
    fn active_until(&self, window: Millis) -> Millis {
        let newest = self.failures.iter().copied().max().unwrap_or(Millis::MIN);
        let held = self.reserved.iter().map(|h| h.until).max().unwrap_or(0);
        self.locked_until
            .max(newest.saturating_add(window))
            .max(held)
    }

    /// Whether the record says nothing any more: no failures, lockout,
    /// lockout history or attempt in flight (it may then be deleted).
    fn is_empty(&self, now: Millis) -> bool {
        self.failures.is_empty()
            && self.reserved.is_empty()
            && self.lockouts == 0
            && !self.locked_at(now)
    }

    /// Forgets the slot of attempt `id`, and slots that lapsed.
    fn unhold(&mut self, id: u64, now: Millis) {
        self.reserved.retain(|h| h.id != id && h.until > now);
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
        let hold = now.saturating_add(millis(HOLD));
        for h in &mut self.reserved {
            h.until = h.until.min(hold);
        }
        self.reserved.retain(|h| h.until > now);
    }
}

/// How a subject may take room in a bounded store ([`MemoryRecords`]);
/// stores without a bound keep every subject alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// A record of its own while there is room, else the one overflow
    /// record that stands for every subject without one.
    Bounded,
    /// Always a record of its own, past the bound if need be: the name of
    /// a user who exists. There are only as many as there are users, and
    /// their failures must never be washed out or merged with a flood's,
    /// nor their sign-ins wait with the flood's overflow record.
    Kept,
    /// A record of its own while there is room, else none (never the
    /// overflow record): the address of an attempt on a user who exists,
    /// which that user's own record already limits.
    OwnOnly,
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
/// [`MemoryRecords`]); it marks that record [`Entry::shared`], and offers
/// it to `f` also when `f(None)` is `None` for a subject without a record
/// of its own, so an attempt counted there can be confirmed or released.
pub trait Records: Send + Sync {
    /// The record of `subject`, if any.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn get(&self, subject: &str, room: Room, now: Millis) -> Result<Option<Entry>, StoreError>;

    /// Replaces the record of `subject` with `f` of it, atomically.
    ///
    /// # Errors
    ///
    /// Backend failures; nothing changes then.
    fn update(
        &self,
        subject: &str,
        room: Room,
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

/// What the records say before an attempt ([`Throttle::look`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// Locked: the attempt must wait this long.
    pub wait: Option<Duration>,
    /// The address's standing: its failures in the window, and for each
    /// lockout it has had (since a long quiet spell) `max_failures` more;
    /// 0 is a clean record. The bcrypt queue serves better standing first.
    pub standing: u32,
}

/// What a failure led to.
#[derive(Debug, PartialEq, Eq)]
pub struct Lockout {
    /// `"user"` or `"ip"`.
    pub by: &'static str,
    /// How long.
    pub duration: Duration,
}

/// What [`Throttle::reserve`] came to.
#[derive(Debug)]
pub enum Reserve {
    /// The attempt may be checked; then [`Throttle::failed`],
    /// [`Throttle::passed`] or [`Throttle::release`] it.
    Granted(Reservation),
    /// Locked for this long: refuse the attempt, even with the right
    /// password.
    Locked(Duration),
    /// Every attempt the limits still allow is being checked right now;
    /// try again once one of them is done (its failure may lock the
    /// subject, or its success free the slot).
    Full,
    /// A second step's own budget (a pending sign-in's attempts) is used up.
    Spent,
}

/// The slots one attempt holds, from [`Throttle::reserve`] until it is
/// confirmed as a failure or released; one that is dropped instead holds
/// its slots until they lapse ([`HOLD`]).
#[derive(Debug)]
#[must_use = "confirm the attempt as a failure, or release it"]
pub struct Reservation {
    id: u64,
    holds: Vec<Hold>,
}

/// One subject an attempt is counted against.
#[derive(Debug)]
struct Hold {
    subject: String,
    by: &'static str,
    /// At most this many failures at all, and no lockout (a pending
    /// sign-in's own budget); `None`: the throttle's limits.
    budget: Option<u32>,
    /// Held in a record that stands for several subjects.
    shared: bool,
    /// Not held: a budget for which the store had only a shared record
    /// (the name's and the address's limits still hold the attempt).
    skipped: bool,
    /// How the subject may take room in a bounded store.
    room: Room,
}

impl Hold {
    fn new(subject: String, by: &'static str, budget: Option<u32>, room: Room) -> Self {
        Self {
            subject,
            by,
            budget,
            shared: false,
            skipped: false,
            room,
        }
    }
}

/// The rooms of an attempt's name and address: a user who exists keeps
/// a record of their own name, past the bound if need be, and their
/// attempt never waits with (nor counts against) the flood's overflow
/// record; their name's record limits their guesses. (With one overflow
/// record for everyone, a flood of wrong names from a few thousand
/// addresses filled the records, locked the overflow and so every user.)
fn rooms(known: bool) -> (Room, Room) {
    if known {
        (Room::Kept, Room::OwnOnly)
    } else {
        (Room::Bounded, Room::Bounded)
    }
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
/// arrives IPv4-mapped), or the /64 an IPv6 address belongs to. The
/// bcrypt queue serves its callers fairly by the same key.
pub fn ip_subject(ip: IpAddr) -> String {
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
    pub fn retry_after(
        &self,
        username: &str,
        ip: IpAddr,
        known: bool,
    ) -> Result<Option<Duration>, StoreError> {
        Ok(self.look(username, ip, known)?.wait)
    }

    /// What the records say before an attempt on `username` from `ip`:
    /// [`retry_after`](Self::retry_after), and the address's standing.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn look(&self, username: &str, ip: IpAddr, known: bool) -> Result<Look, StoreError> {
        let now = self.now();
        let max_lockout = millis(self.limits.max_lockout);
        let window = millis(self.limits.window);
        let mut look = Look {
            wait: None,
            standing: 0,
        };
        let (name_room, ip_room) = rooms(known);
        for (subject, by, room) in [
            (user_subject(username), "user", name_room),
            (ip_subject(ip), "ip", ip_room),
        ] {
            let Some(mut e) = self.records.get(&subject, room, now)? else {
                continue;
            };
            e.clamp(now, max_lockout);
            if e.locked_at(now) {
                let d = Duration::from_millis(u64::try_from(e.locked_until - now).unwrap_or(0));
                look.wait = look.wait.max(Some(d));
            }
            if by == "ip" && !e.shared {
                let recent = e
                    .failures
                    .iter()
                    .filter(|t| now.saturating_sub(**t) < window)
                    .count();
                // A lockout clears the failures that made it: count it as
                // that many, or an address would look clean again the
                // moment its lockout ended.
                look.standing = e
                    .lockouts
                    .saturating_mul(self.limits.max_failures)
                    .saturating_add(u32::try_from(recent).unwrap_or(u32::MAX));
            }
        }
        Ok(look)
    }

    /// Records a failed attempt that held no reservation (a passkey that
    /// did not verify); returns the lockouts it started.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn failure(
        &self,
        username: &str,
        ip: IpAddr,
        known: bool,
    ) -> Result<Vec<Lockout>, StoreError> {
        let (name_room, ip_room) = rooms(known);
        self.fail_subjects(&[
            (user_subject(username), "user", name_room),
            (ip_subject(ip), "ip", ip_room),
        ])
    }

    /// Counts against `ip` an attempt that was refused before it could be
    /// checked (the bcrypt queue was full): a flood of refused attempts
    /// locks its address like a flood of wrong ones, instead of going on
    /// uncounted for ever. The name is not charged: it may be anyone's.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn refused(&self, ip: IpAddr) -> Result<Vec<Lockout>, StoreError> {
        self.fail_subjects(&[(ip_subject(ip), "ip", Room::Bounded)])
    }

    /// Counts a failed credential that names no one it could be charged to
    /// (an unknown or expired token) against `ip`: a flood of guessed
    /// tokens locks its address like a flood of wrong passwords.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn address_failure(&self, ip: IpAddr) -> Result<Vec<Lockout>, StoreError> {
        self.fail_subjects(&[(ip_subject(ip), "ip", Room::Bounded)])
    }

    /// How long `ip` must wait before its next attempt, if it is locked
    /// (what [`Throttle::address_failure`] and every other failure from it
    /// added up to).
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn address_wait(&self, ip: IpAddr) -> Result<Option<Duration>, StoreError> {
        let now = self.now();
        let Some(mut e) = self.records.get(&ip_subject(ip), Room::Bounded, now)? else {
            return Ok(None);
        };
        e.clamp(now, millis(self.limits.max_lockout));
        Ok(e.locked_at(now)
            .then(|| Duration::from_millis(u64::try_from(e.locked_until - now).unwrap_or(0))))
    }

    fn fail_subjects(
        &self,
        subjects: &[(String, &'static str, Room)],
    ) -> Result<Vec<Lockout>, StoreError> {
        let now = self.now();
        let mut started = Vec::new();
        let limits = &self.limits;
        let max_lockout = millis(limits.max_lockout);
        for (subject, by, room) in subjects {
            let mut lock = None;
            self.records
                .update(subject, *room, limits.keep_for(), now, &mut |entry| {
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

    /// Records a success: the username's failures and lockouts are cleared
    /// (not a shared record's: one account of the attacker's own must not
    /// reset the flood's budget).
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn success(&self, username: &str) -> Result<(), StoreError> {
        self.records.update(
            &user_subject(username),
            Room::Kept,
            self.limits.keep_for(),
            self.now(),
            &mut |entry| entry.filter(|e| e.shared),
        )
    }

    /// Counts an attempt on `username` from `ip` before it is checked:
    /// one slot on each record, taken atomically, granted only while
    /// neither is locked and the failures in the window plus the attempts
    /// being checked stay under `max_failures`.
    ///
    /// # Errors
    ///
    /// The store's failures (no slot is left held then, as far as the
    /// store lets us release it).
    pub fn reserve(&self, username: &str, ip: IpAddr, known: bool) -> Result<Reserve, StoreError> {
        self.reserve_as(username, ip, known, None)
    }

    /// [`reserve`](Self::reserve), and a slot in `budget`: a subject of
    /// its own (a pending sign-in) that allows at most `cap` failures at
    /// all, however many arrive at once ([`Reserve::Spent`] after that).
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn reserve_step(
        &self,
        username: &str,
        ip: IpAddr,
        budget: Option<(&str, u32)>,
    ) -> Result<Reserve, StoreError> {
        // A second step is always a user who exists.
        self.reserve_as(username, ip, true, budget)
    }

    /// Counts an attempt from `ip` that names no user (an invite's, reset
    /// link's or sign-in link's token, a sign-in code) before it is
    /// checked: one slot on the address's record, taken atomically, as
    /// [`reserve`](Self::reserve) takes one on a name's and an address's.
    /// A burst from one address (or on several instances) gets no more
    /// checked than the limit; then [`Throttle::failed`] or
    /// [`Throttle::release`] it.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn reserve_address(&self, ip: IpAddr) -> Result<Reserve, StoreError> {
        let (_, ip_room) = rooms(false);
        self.reserve_holds(vec![Hold::new(ip_subject(ip), "ip", None, ip_room)])
    }

    fn reserve_as(
        &self,
        username: &str,
        ip: IpAddr,
        known: bool,
        budget: Option<(&str, u32)>,
    ) -> Result<Reserve, StoreError> {
        let (name_room, ip_room) = rooms(known);
        let mut holds = vec![
            Hold::new(user_subject(username), "user", None, name_room),
            Hold::new(ip_subject(ip), "ip", None, ip_room),
        ];
        if let Some((key, cap)) = budget {
            holds.push(Hold::new(
                format!("step:{key}"),
                "step",
                Some(cap),
                Room::Bounded,
            ));
        }
        self.reserve_holds(holds)
    }

    /// Takes a slot on each of `holds` in turn, or none.
    fn reserve_holds(&self, holds: Vec<Hold>) -> Result<Reserve, StoreError> {
        let id = u64::from_le_bytes(crate::crypto::random_bytes::<8>());
        let mut taken = Reservation {
            id,
            holds: Vec::new(),
        };
        for mut hold in holds {
            let outcome = match self.hold(id, &hold) {
                Ok(outcome) => outcome,
                Err(e) => {
                    // Best effort: the slots lapse anyway.
                    let _ = self.release(taken);
                    return Err(e);
                }
            };
            let refused = match outcome {
                Taking::Granted => None,
                Taking::Shared => {
                    hold.shared = true;
                    None
                }
                Taking::Skipped => {
                    hold.skipped = true;
                    None
                }
                Taking::Locked(wait) => Some(Reserve::Locked(wait)),
                Taking::Full => Some(Reserve::Full),
                Taking::Spent => Some(Reserve::Spent),
            };
            if let Some(refused) = refused {
                self.release(taken)?;
                return Ok(refused);
            }
            taken.holds.push(hold);
        }
        Ok(Reserve::Granted(taken))
    }

    /// Takes one slot for attempt `id` on `hold`'s record.
    fn hold(&self, id: u64, hold: &Hold) -> Result<Taking, StoreError> {
        let now = self.now();
        let limits = &self.limits;
        let max_lockout = millis(limits.max_lockout);
        let window = millis(limits.window);
        let mut outcome = Taking::Granted;
        self.records.update(
            &hold.subject,
            hold.room,
            limits.keep_for(),
            now,
            &mut |entry| {
                let mut e = entry.unwrap_or_default();
                e.clamp(now, max_lockout);
                if e.shared && hold.budget.is_some() {
                    // A budget is one pending sign-in's: a record shared
                    // by many cannot keep it.
                    outcome = Taking::Skipped;
                    return Some(e);
                }
                if e.reserved.iter().any(|h| h.id == id) {
                    // The name and the address of one attempt both landed
                    // in the shared record: one attempt, one slot (else it
                    // would wait for ever for a second slot of its own).
                    outcome = Taking::Shared;
                    return Some(e);
                }
                if e.locked_at(now) {
                    let wait = u64::try_from(e.locked_until - now).unwrap_or(0);
                    outcome = Taking::Locked(Duration::from_millis(wait));
                    return Some(e);
                }
                let (counted, cap) = match hold.budget {
                    Some(cap) => (e.failures.len(), cap),
                    None => (
                        e.failures
                            .iter()
                            .filter(|t| now.saturating_sub(**t) < window)
                            .count(),
                        limits.max_failures,
                    ),
                };
                let cap = cap as usize;
                if hold.budget.is_some() && counted >= cap {
                    outcome = Taking::Spent;
                    return Some(e);
                }
                // With nothing in flight one attempt may always go (unless
                // locked), so a lowered limit never leaves a subject stuck.
                if !e.reserved.is_empty() && counted + e.reserved.len() >= cap {
                    outcome = Taking::Full;
                    return Some(e);
                }
                e.reserved.push(Held {
                    id,
                    until: now.saturating_add(millis(HOLD)),
                });
                outcome = if e.shared {
                    Taking::Shared
                } else {
                    Taking::Granted
                };
                Some(e)
            },
        )?;
        Ok(outcome)
    }

    /// Confirms a reserved attempt as a failure: its slots become
    /// failures (which may lock, as [`failure`](Self::failure)); returns
    /// the lockouts it started.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn failed(&self, reservation: Reservation) -> Result<Vec<Lockout>, StoreError> {
        let now = self.now();
        let limits = &self.limits;
        let max_lockout = millis(limits.max_lockout);
        let id = reservation.id;
        let mut started = Vec::new();
        for hold in reservation.holds.iter().filter(|h| !h.skipped) {
            let mut lock = None;
            self.records.update(
                &hold.subject,
                hold.room,
                limits.keep_for(),
                now,
                &mut |entry| {
                    if entry.is_none() && hold.shared {
                        return None; // the store offers the shared record next
                    }
                    let mut e = entry.unwrap_or_default();
                    e.clamp(now, max_lockout);
                    e.unhold(id, now);
                    match hold.budget {
                        None => lock = fail(&mut e, limits, now),
                        Some(_) => {
                            e.failures.push(now);
                            e.last_activity = now;
                        }
                    }
                    Some(e)
                },
            )?;
            if let Some(duration) = lock {
                started.push(Lockout {
                    by: hold.by,
                    duration,
                });
            }
        }
        Ok(started)
    }

    /// Releases a reserved attempt that succeeded; with `clear`, the
    /// username's failures and lockouts are cleared too (a finished
    /// sign-in: not a password that still owes its second step).
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn passed(&self, reservation: Reservation, clear: bool) -> Result<(), StoreError> {
        self.unhold(reservation, clear)
    }

    /// Releases a reserved attempt that was never checked (a store or
    /// database failure on the way): nothing is counted.
    ///
    /// # Errors
    ///
    /// The store's failures.
    pub fn release(&self, reservation: Reservation) -> Result<(), StoreError> {
        self.unhold(reservation, false)
    }

    fn unhold(&self, reservation: Reservation, clear: bool) -> Result<(), StoreError> {
        let now = self.now();
        let max_lockout = millis(self.limits.max_lockout);
        let id = reservation.id;
        for hold in reservation.holds.iter().filter(|h| !h.skipped) {
            self.records.update(
                &hold.subject,
                hold.room,
                self.limits.keep_for(),
                now,
                &mut |entry| {
                    let mut e = entry?;
                    e.clamp(now, max_lockout);
                    e.unhold(id, now);
                    if clear && hold.by == "user" && !e.shared {
                        e.failures.clear();
                        e.lockouts = 0;
                        e.locked_until = 0;
                    }
                    (!e.is_empty(now)).then_some(e)
                },
            )?;
        }
        Ok(())
    }
}

/// What taking one slot came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taking {
    Granted,
    /// Granted, in a record shared by several subjects.
    Shared,
    /// Not held: a budget offered only a shared record.
    Skipped,
    Locked(Duration),
    Full,
    Spent,
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
    fn get(&self, subject: &str, room: Room, now: Millis) -> Result<Option<Entry>, StoreError> {
        (**self).get(subject, room, now)
    }

    fn update(
        &self,
        subject: &str,
        room: Room,
        keep_for: Millis,
        now: Millis,
        f: &mut dyn FnMut(Option<Entry>) -> Option<Entry>,
    ) -> Result<(), StoreError> {
        (**self).update(subject, room, keep_for, now, f)
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
    fn get(&self, subject: &str, room: Room, now: Millis) -> Result<Option<Entry>, StoreError> {
        let memory = self.lock();
        let own = memory.entries.get(subject);
        // A subject without a record of its own waits with the overflow
        // record while that is locked; a user who exists never does.
        let overflow = memory
            .overflow
            .as_ref()
            .filter(|o| room == Room::Bounded && o.locked_at(now));
        Ok(own.or(overflow).cloned())
    }

    fn update(
        &self,
        subject: &str,
        room: Room,
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
        if room != Room::Bounded {
            // Never the overflow record: a record of its own, made past
            // the bound for a user who exists (`Kept`), or none at all
            // when there is no room (`OwnOnly`).
            if let Some(fresh) = f(None)
                && (memory.make_room(self.capacity, self.window, now) || room == Room::Kept)
            {
                memory.entries.insert(subject.to_owned(), fresh);
            }
            return Ok(());
        }
        // The overflow record, unless a long quiet spell forgot it.
        let overflow = memory
            .overflow
            .take()
            .filter(|o| {
                o.locked_at(now)
                    || o.reserved.iter().any(|h| h.until > now)
                    || now.saturating_sub(o.last_activity) < keep_for
            })
            .map(|mut o| {
                o.shared = true;
                o
            });
        let Some(fresh) = f(None) else {
            // Nothing of this subject's own: what `f` asks of it (releasing
            // a slot held there) concerns the overflow record, if any.
            memory.overflow = overflow.and_then(|o| f(Some(o)));
            return Ok(());
        };
        if memory.make_room(self.capacity, self.window, now) {
            memory.entries.insert(subject.to_owned(), fresh);
            memory.overflow = overflow;
            return Ok(());
        }
        // No room without evicting an active record: this failure counts
        // against the overflow record.
        let overflow = overflow.unwrap_or_else(|| Entry {
            shared: true,
            ..Entry::default()
        });
        memory.overflow = f(Some(overflow));
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
        t.failure(user, ip, false).expect("failure")
    }

    fn wait(t: &Throttle, user: &str, ip: IpAddr) -> Option<Duration> {
        t.retry_after(user, ip, false).expect("retry_after")
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
                    .get(&user_subject(&format!("old{i}")), Room::Bounded, 0)
                    .expect("get")
                    .is_some()
            })
            .collect();
        assert!(!held[0], "the oldest clean record went first: {held:?}");
        for i in 0..2 {
            let e = records
                .get(&user_subject(&format!("new{i}")), Room::Bounded, 0)
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
    fn a_user_who_exists_never_waits_with_a_locked_overflow() {
        let records = Arc::new(MemoryRecords::new(10, limits().window));
        let clock = Arc::new(ManualClock::at(0));
        let t = throttle(Box::new(Arc::clone(&records)), &clock);
        full_of_active(&t);
        for i in 0..5 {
            failure(&t, &format!("spray{i}"), many(50 + i));
        }
        // The flood of wrong names is throttled as a whole...
        assert!(wait(&t, "spray99", many(99)).is_some());
        // ...but alice, who exists, from an address that never failed, is
        // judged by her own records (none): she may go ahead.
        let look = t.look("alice", ip(1), true).expect("look");
        assert_eq!(look.wait, None);
        let Reserve::Granted(r) = t.reserve("alice", ip(1), true).expect("reserve") else {
            panic!("alice's attempt must be granted");
        };
        t.passed(r, true).expect("passed");
        // Her name keeps a record of its own past the bound, so a guesser
        // of her password is limited however full the table is: five
        // wrong passwords lock her name, and the sixth (the right one)
        // waits.
        for i in 0..5 {
            let Reserve::Granted(r) = t.reserve("alice", many(200 + i), true).expect("reserve")
            else {
                panic!("attempt {i} must be granted");
            };
            t.failed(r).expect("failed");
        }
        assert!(records.len() > 10, "her record is kept past the bound");
        assert!(
            t.look("alice", many(250), true)
                .expect("look")
                .wait
                .is_some(),
            "her name locks on its own"
        );
        assert!(matches!(
            t.reserve("alice", many(251), true).expect("reserve"),
            Reserve::Locked(_)
        ));
        // Her guessers' fresh addresses took no room and no overflow: the
        // flood's lock is unchanged, and bob, who exists, still goes.
        assert_eq!(t.look("bob", many(252), true).expect("look").wait, None);
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

    fn reserve(t: &Throttle, user: &str, ip: IpAddr) -> Reserve {
        t.reserve(user, ip, false).expect("reserve")
    }

    fn granted(r: Reserve) -> Reservation {
        match r {
            Reserve::Granted(r) => r,
            other => panic!("not granted: {other:?}"),
        }
    }

    /// The reported burst, without the network: attempts that all arrive
    /// before any is checked. The old check-then-record let every one of
    /// them through.
    #[test]
    fn a_burst_reserves_no_more_attempts_than_failures_allowed() {
        each(|t, _| {
            let held: Vec<Reservation> = (0..300)
                .filter_map(|_| match reserve(t, "alice", ip(1)) {
                    Reserve::Granted(r) => Some(r),
                    Reserve::Full => None,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(held.len(), 5, "attempts let through at once");
            let mut locks = Vec::new();
            for r in held {
                locks.extend(t.failed(r).expect("failed"));
            }
            assert_eq!(locks.len(), 2, "the fifth failure locks name and address");
            // The right password, next in the burst, finds the lock.
            assert!(matches!(reserve(t, "alice", ip(9)), Reserve::Locked(_)));
            assert!(matches!(reserve(t, "bob", ip(1)), Reserve::Locked(_)));
            assert_eq!(wait(t, "alice", ip(9)), Some(Duration::from_secs(60)));
        });
    }

    /// The same, with the attempts really concurrent (threads through the
    /// store's pool): exactly `max_failures` are ever granted.
    #[test]
    fn concurrent_attempts_never_exceed_the_limit() {
        each(|t, _| {
            let granted = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for i in 0..48u8 {
                    let granted = &granted;
                    scope.spawn(move || {
                        // Address and name both limit; half the threads
                        // share the name, all share the address.
                        let name = if i % 2 == 0 { "alice" } else { "bob" };
                        if let Reserve::Granted(r) = reserve(t, name, ip(1)) {
                            granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(2));
                            t.failed(r).expect("failed");
                        }
                    });
                }
            });
            assert_eq!(granted.into_inner(), 5);
            assert!(wait(t, "carol", ip(1)).is_some(), "the address is locked");
        });
    }

    #[test]
    fn a_released_or_passed_attempt_frees_its_slot_and_counts_nothing() {
        each(|t, _| {
            let mut held: Vec<Reservation> = (0..5)
                .map(|_| granted(reserve(t, "alice", ip(1))))
                .collect();
            assert!(matches!(reserve(t, "alice", ip(1)), Reserve::Full));
            t.release(held.pop().expect("one")).expect("release");
            held.push(granted(reserve(t, "alice", ip(1))));
            t.passed(held.pop().expect("one"), false).expect("passed");
            held.push(granted(reserve(t, "alice", ip(1))));
            for r in held {
                t.release(r).expect("release");
            }
            // Nothing was counted: five failures are still needed to lock.
            for _ in 0..4 {
                assert!(failure(t, "alice", ip(1)).is_empty());
            }
            assert_eq!(wait(t, "alice", ip(1)), None);
        });
    }

    #[test]
    fn a_finished_sign_in_clears_the_name_but_not_attempts_in_flight() {
        each(|t, _| {
            for i in 0..3 {
                failure(t, "alice", ip(i));
            }
            let other = granted(reserve(t, "alice", ip(7)));
            let mine = granted(reserve(t, "alice", ip(8)));
            t.passed(mine, true).expect("passed");
            // Alice's three failures are gone, the attempt in flight still
            // holds its slot: four more may go at once, not five.
            let more: Vec<Reservation> = (0..4)
                .map(|i| granted(reserve(t, "alice", ip(20 + i))))
                .collect();
            assert!(matches!(reserve(t, "alice", ip(30)), Reserve::Full));
            t.release(other).expect("release");
            for r in more {
                t.release(r).expect("release");
            }
        });
    }

    #[test]
    fn a_slot_whose_holder_never_comes_back_lapses() {
        each(|t, clock| {
            let lost: Vec<Reservation> = (0..5)
                .map(|_| granted(reserve(t, "alice", ip(1))))
                .collect();
            assert!(matches!(reserve(t, "alice", ip(1)), Reserve::Full));
            // The instance holding them died: nothing confirms or releases.
            drop(lost);
            clock.advance(HOLD);
            let r = granted(reserve(t, "alice", ip(1)));
            t.release(r).expect("release");
        });
    }

    #[test]
    fn a_step_budget_allows_its_cap_of_failures_however_they_arrive() {
        each(|t, _| {
            // Each attempt from another name and address: only the budget
            // of the pending sign-in binds.
            let step = |i: usize| {
                t.reserve_step(&format!("u{i}"), many(i), Some(("7:1234", 5)))
                    .expect("reserve")
            };
            let held: Vec<Reservation> = (0..20)
                .filter_map(|i| match step(i) {
                    Reserve::Granted(r) => Some(r),
                    Reserve::Full => None,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(held.len(), 5);
            for r in held {
                assert!(
                    t.failed(r).expect("failed").is_empty(),
                    "a budget never locks"
                );
            }
            assert!(matches!(step(30), Reserve::Spent));
            // Another pending sign-in has a budget of its own.
            let other = t
                .reserve_step("u31", many(31), Some(("7:5678", 5)))
                .expect("reserve");
            t.release(granted(other)).expect("release");
        });
    }

    #[test]
    fn refused_attempts_count_against_the_address_only() {
        each(|t, _| {
            for _ in 0..4 {
                assert!(t.refused(ip(1)).expect("refused").is_empty());
            }
            let locks = t.refused(ip(1)).expect("refused");
            assert_eq!(locks.len(), 1);
            assert_eq!(locks[0].by, "ip");
            assert!(wait(t, "anyone", ip(1)).is_some());
            assert_eq!(wait(t, "anyone", ip(2)), None, "no name was charged");
        });
    }

    #[test]
    fn slots_held_in_the_overflow_record_are_released_there() {
        let records = Arc::new(MemoryRecords::new(8, limits().window));
        let clock = Arc::new(ManualClock::at(0));
        let t = throttle(Box::new(Arc::clone(&records)), &clock);
        full_of_active(&t);
        // No room: fresh subjects' attempts hold slots in the overflow
        // record, one each, so a sixth at once finds all five taken and
        // must wait.
        let held: Vec<Reservation> = (0..5)
            .map(|i| granted(reserve(&t, &format!("spray{i}"), many(50 + i))))
            .collect();
        assert!(matches!(reserve(&t, "spray9", many(59)), Reserve::Full));
        for r in held {
            t.release(r).expect("release");
        }
        // Released there, not left to lapse. An attempt whose name and
        // address both have no room takes one slot, not two, and fails
        // twice (as before reservations): with four failures there, one
        // more attempt may still go (it once waited for ever for a second
        // slot of its own).
        let r = granted(reserve(&t, "spray9", many(59)));
        t.failed(r).expect("failed");
        let r = granted(reserve(&t, "spray10", many(60)));
        t.failed(r).expect("failed");
        let r = granted(reserve(&t, "spray12", many(62)));
        assert!(matches!(reserve(&t, "spray13", many(63)), Reserve::Full));
        t.failed(r).expect("failed");
        assert!(matches!(
            reserve(&t, "spray14", many(64)),
            Reserve::Locked(_)
        ));
        assert_eq!(records.len(), 8);
        // A pending sign-in's budget cannot live in a shared record: its
        // slot is skipped, the name's and the address's still count.
        clock.advance(Duration::from_secs(60));
        let r = t
            .reserve_step("spray20", many(70), Some(("1:1", 5)))
            .expect("reserve");
        t.failed(granted(r)).expect("failed");
    }

    #[test]
    fn an_addresss_standing_counts_its_failures_and_lockouts() {
        each(|t, clock| {
            let standing = |ip| t.look("anyone", ip, false).expect("look").standing;
            assert_eq!(standing(ip(1)), 0, "a clean record");
            failure(t, "a", ip(1));
            t.refused(ip(1)).expect("refused");
            assert_eq!(standing(ip(1)), 2, "refusals count too");
            for i in 0..3 {
                failure(t, &format!("b{i}"), ip(1));
            }
            // The lockout cleared the failures that made it; it counts as
            // them, so the address does not look clean once it ends.
            clock.advance(Duration::from_secs(60));
            assert_eq!(t.look("anyone", ip(1), false).expect("look").wait, None);
            assert_eq!(standing(ip(1)), 5);
            failure(t, "c", ip(1));
            assert_eq!(standing(ip(1)), 6);
            assert_eq!(standing(ip(2)), 0);
            // Only the address: a name's failures are not its standing.
            for _ in 0..3 {
                failure(t, "alice", ip(3));
            }
            assert_eq!(t.look("alice", ip(4), false).expect("look").standing, 0);
        });
    }
}
