//! gatehouse patch: what keeps client connections from taking the server
//! down.
//!
//! - The open connections are counted (a [`Slot`] each, held for as long as
//!   the socket is open), in all and per client address ([`ClientKey`]: an
//!   IPv4 address, or an IPv6 /64, which one subscriber usually holds
//!   whole). Each is in a [`Phase`]: opening (a TLS handshake, a request
//!   head, a body read with its head), idle between kept-alive requests,
//!   busy (a request handed on, an answer being written, an upgraded
//!   connection), or closing (lingering after an unread body).
//! - At a cap (the whole server's, or one client's) a connection that is
//!   not busy is closed to make room, the oldest first (one closing before
//!   any other), and one of that client's own at its cap: so a flood of
//!   unfinished heads or handshakes cannot keep anyone else out, and nobody
//!   being served is cut off for it. Only when every candidate is busy is
//!   the new connection refused.
//! - Each connection has a read deadline that every read of its request
//!   head honours ([`ConnState`]), so a client that sends one byte every few
//!   seconds cannot keep a head open past it; and writes to it wait for the
//!   client only at a minimum rate.
//! - The bodies read ahead with their heads share one memory budget
//!   ([`Budget`]), so many connections each holding a body cannot take the
//!   server's memory.

use std::collections::HashMap;
use std::convert::TryFrom;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::util::refined_tcp_stream::Stream;

/// A lock that outlives a panic elsewhere: the data behind these locks
/// (a deadline, the list of connections, a count) stays valid whatever a
/// panicking thread was doing, so poisoning is ignored rather than spread.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which client a connection counts against: its IPv4 address, or the /64
/// of its IPv6 address (IPv4-mapped IPv6 counts as IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    V4(u32),
    V6(u64),
}

impl ClientKey {
    pub(crate) fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// What a connection is doing, as far as making room goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Phase {
    /// A TLS handshake, a request head, or a body read with its head.
    Opening = 0,
    /// Between two kept-alive requests.
    Idle = 1,
    /// A request handed on, its answer being written, or upgraded.
    Busy = 2,
    /// Lingering after an answer to a request whose body was left unread.
    Closing = 3,
    /// Closed to make room (its thread has yet to notice).
    Evicted = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Opening,
            1 => Phase::Idle,
            2 => Phase::Busy,
            3 => Phase::Closing,
            _ => Phase::Evicted,
        }
    }
}

/// One open connection as the tracker sees it.
struct Entry {
    /// The client it counts against (`None`: a Unix socket).
    key: Option<ClientKey>,
    phase: AtomicU8,
    /// When the current phase began, in nanoseconds from the tracker's
    /// epoch.
    since: AtomicU64,
    /// The socket, to close it by.
    sock: Arc<Connection>,
}

/// The open connections, and how many each client holds.
#[derive(Default)]
struct Registry {
    conns: HashMap<u64, Arc<Entry>>,
    clients: HashMap<ClientKey, usize>,
}

/// Which addresses a client cap does not apply to (gatehouse passes its
/// `trusted_proxies`: a reverse proxy carries many clients).
pub type Uncapped = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// The open client connections of one server.
pub(crate) struct Tracker {
    /// At most this many open at once (0: no cap).
    max: usize,
    /// At most this many from one client (0: no cap).
    per_client: usize,
    uncapped: Option<Uncapped>,
    open: AtomicUsize,
    next_id: AtomicU64,
    epoch: Instant,
    registry: Mutex<Registry>,
    /// The memory bodies read ahead may take, across connections.
    pub(crate) read_ahead: Arc<Budget>,
}

/// Why a new connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server's cap, every connection busy.
    Full,
    /// The client's cap, every one of its connections busy.
    ClientFull,
}

impl Tracker {
    pub(crate) fn new(
        max: usize,
        per_client: usize,
        uncapped: Option<Uncapped>,
        read_ahead: usize,
    ) -> Arc<Tracker> {
        Arc::new(Tracker {
            max,
            per_client,
            uncapped,
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            registry: Mutex::new(Registry::default()),
            read_ahead: Budget::new(read_ahead),
        })
    }

    /// How many connections are open.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Counts a new connection from `peer` (a slot, until dropped), making
    /// room at a cap by closing a connection that is not busy: one of the
    /// same client's at its cap, any at the server's. Refused when every
    /// candidate is busy.
    pub(crate) fn admit(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
        sock: &Arc<Connection>,
    ) -> Result<Slot, Refusal> {
        let ip = peer.map(|p| p.ip());
        let key = ip.map(ClientKey::of);
        let capped = self.per_client != 0
            && ip.is_some_and(|ip| !self.uncapped.as_ref().is_some_and(|f| f(ip)));
        let mut reg = lock(&self.registry);
        if let Some(key) = key.filter(|_| capped) {
            if reg.clients.get(&key).copied().unwrap_or(0) >= self.per_client
                && !self.evict(&mut reg, Some(key))
            {
                return Err(Refusal::ClientFull);
            }
        }
        if self.max != 0 && self.open() >= self.max && !self.evict(&mut reg, None) {
            return Err(Refusal::Full);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            key,
            phase: AtomicU8::new(Phase::Opening as u8),
            since: AtomicU64::new(self.now()),
            sock: Arc::clone(sock),
        });
        reg.conns.insert(id, Arc::clone(&entry));
        if let Some(key) = key {
            *reg.clients.entry(key).or_insert(0) += 1;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        Ok(Slot {
            tracker: Arc::clone(self),
            id,
            entry,
        })
    }

    /// Closes the connection that best makes room (of `key`'s, if given):
    /// one lingering after an unread body, else one in its handshake or
    /// head or idle, from the client that holds the most connections, the
    /// one whose phase began longest ago. (Oldest first alone let a flood
    /// from several addresses, reopening as fast as it was closed, close a
    /// newcomer still in its TLS handshake; a client with one connection is
    /// now the last to lose it.) Its count is given back at once; its
    /// thread sees the end of the stream and lets it go.
    fn evict(&self, reg: &mut Registry, key: Option<ClientKey>) -> bool {
        loop {
            let victim = reg
                .conns
                .iter()
                .filter(|(_, e)| key.is_none() || e.key == key)
                .filter_map(|(id, e)| {
                    let phase = Phase::from_u8(e.phase.load(Ordering::Acquire));
                    let lingering = match phase {
                        Phase::Closing => true,
                        Phase::Opening | Phase::Idle => false,
                        Phase::Busy | Phase::Evicted => return None,
                    };
                    let holds = e.key.and_then(|k| reg.clients.get(&k)).copied().unwrap_or(0);
                    let age = u64::MAX - e.since.load(Ordering::Relaxed);
                    Some(((lingering, holds, age), *id, phase))
                })
                .max();
            let Some((_, id, phase)) = victim else {
                return false;
            };
            let Some(entry) = reg.conns.remove(&id) else {
                return false;
            };
            // The connection's own thread may have moved it on (to busy)
            // meanwhile: then it stays, and another is looked for.
            if entry
                .phase
                .compare_exchange(
                    phase as u8,
                    Phase::Evicted as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                reg.conns.insert(id, entry);
                continue;
            }
            Self::forget(reg, entry.key);
            self.open.fetch_sub(1, Ordering::AcqRel);
            let _ = entry.sock.shutdown(Shutdown::Both);
            return true;
        }
    }

    fn forget(reg: &mut Registry, key: Option<ClientKey>) {
        if let Some(key) = key {
            if let Some(n) = reg.clients.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    reg.clients.remove(&key);
                }
            }
        }
    }

    /// Closes the oldest connection that is not busy, if any (to free a
    /// descriptor when the process has none left).
    pub(crate) fn evict_any(&self) -> bool {
        let mut reg = lock(&self.registry);
        self.evict(&mut reg, None)
    }
}

/// One open connection, counted until this is dropped.
pub(crate) struct Slot {
    tracker: Arc<Tracker>,
    id: u64,
    entry: Arc<Entry>,
}

impl Slot {
    /// Moves the connection to `phase` (from now), unless it was closed to
    /// make room: then false, and the connection must end.
    pub(crate) fn enter(&self, phase: Phase) -> bool {
        let mut current = self.entry.phase.load(Ordering::Acquire);
        loop {
            if current == Phase::Evicted as u8 {
                return false;
            }
            match self.entry.phase.compare_exchange_weak(
                current,
                phase as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        if phase != Phase::Busy {
            self.entry.since.store(self.tracker.now(), Ordering::Relaxed);
        }
        true
    }
}

#[cfg(test)]
impl Slot {
    fn evicted(&self) -> bool {
        self.entry.phase.load(Ordering::Acquire) == Phase::Evicted as u8
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.entry.phase.load(Ordering::Acquire) == Phase::Evicted as u8 {
            // Counted out already, when it was closed.
            return;
        }
        let mut reg = lock(&self.tracker.registry);
        if reg.conns.remove(&self.id).is_some() {
            Tracker::forget(&mut reg, self.entry.key);
            self.tracker.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// How long reads of a connection may wait, and what the socket was told.
struct Reads {
    /// Every read must be done by then (a request head).
    deadline: Option<Instant>,
    /// Without a deadline, each read may stall this long (`None`: for ever).
    per_read: Option<Duration>,
    /// The socket's receive timeout as last set (`None`: none, as a new
    /// socket, and one after its TLS handshake, has).
    applied: Option<Duration>,
}

impl Reads {
    /// A read may outlast what it was allowed by this fraction of it (a
    /// 30 s wait up to 1.9 s more), so waits of nearly the same length
    /// (the keep-alive wait after a 30 s body timeout) share one setting.
    const SLACK: u32 = 16;

    /// Whether a socket told `applied` serves a read that may wait `wait`
    /// (`None`: for ever): not much longer than the wait, and not so much
    /// shorter that the read would wake again and again for nothing (a
    /// timeout left by a head's last moments must not make every later
    /// read spin).
    fn fits(applied: Option<Duration>, wait: Option<Duration>) -> bool {
        match (applied, wait) {
            (None, None) => true,
            (Some(applied), Some(wait)) => {
                applied <= wait + wait / Reads::SLACK && applied >= wait / 2
            }
            _ => false,
        }
    }
}

/// What a connection's halves share: its slot, a handle on its socket, the
/// deadline reads must keep, and how writes to it may wait.
pub(crate) struct ConnState {
    slot: Slot,
    stream: Stream,
    reads: Mutex<Reads>,
    timeouts: Timeouts,
    /// Set while a request thread writes an answer: a write that would
    /// wait for the client then fails at once (`WouldBlock`) and the rest
    /// of the answer is handed to the connection's own thread.
    deferrable: AtomicBool,
    /// Time spent waiting for the client to take an answer, and the bytes
    /// it took meanwhile (reset for every request): the minimum rate.
    waited_nanos: AtomicU64,
    waited_bytes: AtomicU64,
}

impl ConnState {
    pub(crate) fn new(slot: Slot, stream: Stream, timeouts: Timeouts) -> Arc<ConnState> {
        Arc::new(ConnState {
            slot,
            stream,
            reads: Mutex::new(Reads {
                deadline: None,
                per_read: None,
                applied: None,
            }),
            timeouts,
            deferrable: AtomicBool::new(false),
            waited_nanos: AtomicU64::new(0),
            waited_bytes: AtomicU64::new(0),
        })
    }

    /// The moment every read must be done by, if one is set.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        lock(&self.reads).deadline
    }

    /// Reads must be done by `at`: each read waits at most the time left.
    pub(crate) fn set_deadline(&self, at: Instant) {
        lock(&self.reads).deadline = Some(at);
    }

    /// No deadline from here on: each read may wait up to `per_read`.
    ///
    /// # Errors
    ///
    /// The socket refuses the timeout.
    pub(crate) fn clear_deadline(&self, per_read: Option<Duration>) -> io::Result<()> {
        let mut reads = lock(&self.reads);
        reads.deadline = None;
        reads.per_read = per_read;
        Ok(())
    }

    /// Before a read that started at `started` (it may have been tried
    /// before and come back for want of bytes): how long it may still
    /// wait, with the socket's receive timeout made no longer than that
    /// (give or take [`Reads::SLACK`]), and no shorter than half of it.
    /// `TimedOut` when no time is left.
    ///
    /// The socket's timeout is changed only when it would let the read
    /// wait too long (or for ever): a shorter one only makes the read come
    /// back early and be tried again (see `RefinedTcpStream::read`). So a
    /// kept-alive connection whose waits are all alike sets it once, not
    /// twice per request as upstream's per-read `set_read_timeout` did.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the deadline (or the per-read limit) has passed; the
    /// socket refused the timeout.
    pub(crate) fn before_read(&self, started: Instant) -> io::Result<()> {
        let mut reads = lock(&self.reads);
        let wait = match (reads.deadline, reads.per_read) {
            (Some(deadline), _) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "read deadline passed",
                    ));
                }
                Some(left)
            }
            (None, Some(per_read)) => {
                let left = per_read.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
                }
                Some(left)
            }
            (None, None) => None,
        };
        let fits = Reads::fits(reads.applied, wait);
        if !fits {
            self.stream.set_read_timeout(wait)?;
            reads.applied = wait;
        }
        Ok(())
    }

    /// Ends the writing side (the client sees the end of the answer);
    /// reading goes on.
    pub(crate) fn half_close(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Moves the connection to `phase`; false if it was closed to make
    /// room (it must end).
    pub(crate) fn enter(&self, phase: Phase) -> bool {
        self.slot.enter(phase)
    }

    /// The memory budget of bodies read ahead.
    pub(crate) fn read_ahead(&self) -> &Arc<Budget> {
        &self.slot.tracker.read_ahead
    }

    /// The connection's time limits.
    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Whether a write that would wait should fail at once instead.
    pub(crate) fn deferrable(&self) -> bool {
        self.deferrable.load(Ordering::Acquire)
    }

    pub(crate) fn set_deferrable(&self, yes: bool) {
        self.deferrable.store(yes, Ordering::Release);
    }

    /// A new answer: the minimum rate is measured afresh.
    pub(crate) fn reset_pace(&self) {
        self.waited_nanos.store(0, Ordering::Relaxed);
        self.waited_bytes.store(0, Ordering::Relaxed);
    }

    /// A write waited `waited` for the client, and `bytes` went.
    pub(crate) fn waited(&self, waited: Duration, bytes: usize) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.waited_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.waited_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `bytes` went without waiting: they count towards the rate once the
    /// client has made a write of this answer wait (what went before is
    /// no credit for a client that then slows down).
    pub(crate) fn sent(&self, bytes: usize) {
        if self.waited_nanos.load(Ordering::Relaxed) != 0 {
            self.waited_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Whether a write to this connection should give up: it made no
    /// progress for `stalled`, which reached `body_timeout`; or (with a
    /// minimum rate) the client has made writes wait longer than
    /// `body_timeout` (at least a second) in all, and taken less than the
    /// minimum rate over that time.
    pub(crate) fn too_slow(&self, stalled: Duration) -> bool {
        let limit = self.timeouts.body;
        if !limit.is_zero() && stalled >= limit {
            return true;
        }
        let rate = self.timeouts.min_send_rate;
        if rate == 0 {
            return false;
        }
        let waited = Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed));
        if waited <= limit.max(Duration::from_secs(1)) {
            return false;
        }
        let owed = (rate as f64 * waited.as_secs_f64()) as u64;
        self.waited_bytes.load(Ordering::Relaxed) < owed
    }
}

/// The time limits of a connection (see [`crate::Options`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) header: Duration,
    pub(crate) body: Duration,
    pub(crate) keepalive: Duration,
    /// Bytes a second a client must take while it makes writes wait.
    pub(crate) min_send_rate: u64,
}

/// How long one write may wait for room before the writer looks again: a
/// request thread hands the rest of its answer to the connection's thread
/// after this, and that thread checks the client's pace this often. Set
/// once per connection (as the socket's send timeout).
pub(crate) const WRITE_SLICE: Duration = Duration::from_millis(250);

impl Timeouts {
    /// The per-read limit while a body flows (`None` for a zero setting:
    /// a socket refuses a zero timeout).
    pub(crate) fn per_read(&self) -> Option<Duration> {
        Some(self.body).filter(|d| !d.is_zero())
    }

    /// How long a client may keep sending a body that was left unread,
    /// after its answer, before the connection is closed on it.
    pub(crate) fn linger(&self) -> Duration {
        self.header.min(Duration::from_secs(5))
    }
}

/// Memory shared by the bodies read ahead of their requests: a connection
/// takes what it needs beyond a small allowance as data arrives, and waits
/// (under its own deadline) when the budget is spent.
pub(crate) struct Budget {
    limit: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

impl Budget {
    fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    /// An empty reservation, to grow as a body arrives.
    pub(crate) fn reserve(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            n: 0,
        }
    }

    /// Takes `n` bytes, waiting until `deadline` for them if they are not
    /// free (`held` of them are the caller's already); a request for more
    /// than the whole budget gets it once nobody else holds any.
    fn acquire(&self, n: usize, held: usize, deadline: Option<Instant>) -> io::Result<()> {
        let mut used = lock(&self.used);
        while *used > held && *used + n > self.limit {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no memory for the body in time",
                ));
            }
            used = self
                .freed
                .wait_timeout(used, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *used += n;
        Ok(())
    }

    #[cfg(test)]
    fn used(&self) -> usize {
        *lock(&self.used)
    }
}

/// Bytes taken from a [`Budget`], given back when dropped.
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    n: usize,
}

impl Reservation {
    /// Takes `more` bytes, waiting until `deadline` if the budget is spent.
    ///
    /// # Errors
    ///
    /// `TimedOut` when the deadline passes first.
    pub(crate) fn grow(&mut self, more: usize, deadline: Option<Instant>) -> io::Result<()> {
        self.budget.acquire(more, self.n, deadline)?;
        self.n += more;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.n == 0 {
            return;
        }
        let mut used = lock(&self.budget.used);
        *used -= self.n;
        drop(used);
        self.budget.freed.notify_all();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};

    #[test]
    fn a_receive_timeout_is_kept_while_it_fits_the_wait_and_changed_when_not() {
        let s = Duration::from_secs;
        // The keep-alive wait after a body timeout of the same length.
        assert!(Reads::fits(Some(s(30)), Some(s(30) - Duration::from_millis(1))));
        // A head's deadline of 10 s under a 30 s timeout would overshoot.
        assert!(!Reads::fits(Some(s(30)), Some(s(10))));
        // A timeout left by a head's last moment would make reads spin.
        assert!(!Reads::fits(Some(Duration::from_millis(1)), Some(s(30))));
        // For ever needs no timeout, and a timeout needs one.
        assert!(Reads::fits(None, None));
        assert!(!Reads::fits(Some(s(30)), None));
        assert!(!Reads::fits(None, Some(s(30))));
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_its_address() {
        let a: Ipv6Addr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a.into()), ClientKey::of(b.into()));
        assert_ne!(ClientKey::of(a.into()), ClientKey::of(c.into()));
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(
            ClientKey::of(v4.to_ipv6_mapped().into()),
            ClientKey::of(v4.into())
        );
    }

    /// A connected socket to count (its peer end is dropped).
    fn sock() -> Arc<Connection> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        Arc::new(Connection::from(c))
    }

    fn peer(last: u8) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, last], 1000)))
    }

    #[test]
    fn at_a_clients_cap_its_own_oldest_unbusy_connection_makes_room() {
        let t = Tracker::new(0, 2, None, 0);
        let a = t.admit(peer(2), &sock()).unwrap();
        let b = t.admit(peer(2), &sock()).unwrap();
        let other = t.admit(peer(3), &sock()).unwrap();
        assert!(b.enter(Phase::Busy));
        // The third from .2 closes a (opening, the oldest not busy).
        let c = t.admit(peer(2), &sock()).unwrap();
        assert!(!a.enter(Phase::Busy), "a was closed to make room");
        assert!(other.enter(Phase::Idle), "another client's is left alone");
        assert_eq!(t.open(), 3);
        // Now both of .2's are busy: the next is refused.
        assert!(c.enter(Phase::Busy));
        assert_eq!(t.admit(peer(2), &sock()).err(), Some(Refusal::ClientFull));
        drop(a);
        assert_eq!(t.open(), 3, "an evicted slot is counted out once");
        drop(b);
        assert!(t.admit(peer(2), &sock()).is_ok());
    }

    #[test]
    fn at_the_cap_a_lingering_then_the_oldest_opening_or_idle_one_goes() {
        let t = Tracker::new(3, 0, None, 0);
        let old = t.admit(peer(2), &sock()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let busy = t.admit(peer(3), &sock()).unwrap();
        assert!(busy.enter(Phase::Busy));
        let closing = t.admit(peer(4), &sock()).unwrap();
        assert!(closing.enter(Phase::Closing));
        let new = t.admit(peer(5), &sock()).unwrap();
        assert!(closing.evicted(), "the lingering one went first");
        let newer = t.admit(peer(6), &sock()).unwrap();
        assert!(old.evicted(), "then the oldest not busy");
        assert!(!new.evicted(), "not the newer one");
        let newest = t.admit(peer(7), &sock()).unwrap();
        assert!(new.evicted(), "then the next oldest");
        assert!(!busy.evicted(), "and never the busy one");
        // All three busy: the next is refused.
        assert!(newer.enter(Phase::Busy) && newest.enter(Phase::Busy));
        assert_eq!(t.admit(peer(8), &sock()).err(), Some(Refusal::Full));
        assert_eq!(t.open(), 3);
    }

    #[test]
    fn at_the_cap_the_client_holding_the_most_loses_one_first() {
        let t = Tracker::new(4, 0, None, 0);
        let lone = t.admit(peer(2), &sock()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let flood: Vec<Slot> = (0..3).map(|_| t.admit(peer(3), &sock()).unwrap()).collect();
        let _new = t.admit(peer(4), &sock()).unwrap();
        assert!(lone.enter(Phase::Idle), "the oldest, but its client's only one");
        assert_eq!(
            flood.iter().filter(|s| !s.enter(Phase::Opening)).count(),
            1,
            "one of the flood's went"
        );
    }

    #[test]
    fn uncapped_addresses_have_no_client_cap() {
        let t = Tracker::new(0, 1, Some(Arc::new(|ip: IpAddr| ip == IpAddr::from([127, 0, 0, 9]))), 0);
        let a = t.admit(peer(9), &sock()).unwrap();
        let b = t.admit(peer(9), &sock()).unwrap();
        assert!(a.enter(Phase::Busy) && b.enter(Phase::Busy));
        assert!(t.admit(peer(9), &sock()).is_ok());
    }

    #[test]
    fn the_budget_waits_for_memory_and_gives_it_back() {
        let b = Budget::new(100);
        let mut first = b.reserve();
        first.grow(80, None).unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            b.reserve().grow(40, Some(soon)).err().map(|e| e.kind()),
            Some(io::ErrorKind::TimedOut)
        );
        // What one holds itself never makes it wait.
        first.grow(80, Some(soon)).unwrap();
        let waiter = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                let mut r = b.reserve();
                let ok = r.grow(40, Some(Instant::now() + Duration::from_secs(10)));
                (ok.is_ok(), b.used())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        assert_eq!(waiter.join().unwrap(), (true, 40));
        assert_eq!(b.used(), 0);
    }
}
