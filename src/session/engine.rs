//! The engine: turns a request's cookie into a [`Session`] and a finished
//! session back into store writes and a `Set-Cookie` header.
//!
//! It holds the rules of DESIGN.md's "Sessions" section: lazy creation, idle
//! and absolute expiry, the touch interval, saving only what changed,
//! regenerate and destroy. It knows nothing of any HTTP library; the web
//! layer hands it the `Cookie` header and gets back a header value.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Map;

use super::cookie::{self, CookieOptions};
use super::id::{SessionId, SessionKey};
use super::sealed::{MAX_SEALED, Sealer};
use super::store::{Change, Patch, Record, Store, StoreError, Touch, User, UserId, valid_key};
use crate::clock::{self, Millis, millis};
use crate::crypto::Signer;

/// The context string session cookies are signed under.
const COOKIE_CONTEXT: &str = "session";

/// Expiry and cookie settings of a [`SessionLayer`](crate::SessionLayer)'s
/// sessions (and of the engine underneath it).
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// How the cookie is named and scoped.
    pub cookie: CookieOptions,
    /// A session unused for this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however active.
    pub absolute_timeout: Duration,
    /// Idle timeout of a remember-me session.
    pub remember_idle_timeout: Duration,
    /// Absolute lifetime of a remember-me session.
    pub remember_absolute_timeout: Duration,
    /// A read-only request records activity at most this often.
    ///
    /// The effective interval is also capped at half the idle timeout, so
    /// that an active user never expires between two touches.
    pub touch_interval: Duration,
    /// Send the cookie again on every response (express-session's
    /// `rolling`), refreshing a remember-me cookie's `Max-Age`. The stored
    /// idle expiry slides with activity either way.
    pub rolling: bool,
    /// The most sessions one user may have; signing in (or regenerating
    /// into a user) ends that user's oldest sessions beyond it, so a client
    /// that signs in over and over cannot fill the store or the account
    /// pages. `None`: no cap.
    pub max_sessions_per_user: Option<usize>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            cookie: CookieOptions::default(),
            idle_timeout: Duration::from_secs(2 * 3600),
            absolute_timeout: Duration::from_secs(12 * 3600),
            remember_idle_timeout: Duration::from_secs(7 * 86_400),
            remember_absolute_timeout: Duration::from_secs(30 * 86_400),
            touch_interval: Duration::from_secs(60),
            rolling: false,
            max_sessions_per_user: Some(100),
        }
    }
}

impl SessionOptions {
    #[inline]
    fn limits(&self, persistent: bool) -> (Millis, Millis) {
        if persistent {
            (
                millis(self.remember_idle_timeout),
                millis(self.remember_absolute_timeout),
            )
        } else {
            (millis(self.idle_timeout), millis(self.absolute_timeout))
        }
    }

    #[inline]
    fn touch_interval_for(&self, persistent: bool) -> Millis {
        let (idle, _) = self.limits(persistent);
        millis(self.touch_interval).min(idle / 2)
    }
}

/// What the sessions need to know of a request, for
/// [`SessionLayer::handle_with`](crate::SessionLayer::handle_with).
#[derive(Clone, Debug, Default)]
pub struct RequestInfo<'a> {
    /// The raw `Cookie` header.
    pub cookie_header: Option<&'a str>,
    /// Whether the request reached us over HTTPS (directly or via a trusted proxy).
    pub https: bool,
    /// The `User-Agent` header, kept with new sessions.
    pub user_agent: Option<&'a str>,
    /// The client's address, kept with new sessions.
    pub ip: Option<String>,
}

/// Errors from session operations.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key cannot name a session value (see [`valid_key`]).
    #[error("invalid session key {0:?}")]
    InvalidKey(String),
    /// The value could not be converted to JSON.
    #[error("session value does not serialize: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The session was destroyed (here or by a concurrent request).
    #[error("the session no longer exists")]
    Gone,
}

/// Loads and saves sessions through a [`Store`], or in sealed cookies.
pub struct Engine {
    store: Arc<dyn Store>,
    signer: Signer,
    options: SessionOptions,
    /// Where sessions are kept between requests: the one place where the
    /// server-side store and the cookie store differ.
    keeping: Box<dyn Keeping>,
    /// Cookies that verified, with their ids and keys (see
    /// [`super::verified`]); it lives and dies with `signer`.
    verified: super::verified::Verified,
}

impl Engine {
    /// An engine on `store`, signing cookies with `signer`.
    #[inline]
    pub fn new(store: Arc<dyn Store>, signer: Signer, options: SessionOptions) -> Self {
        Self {
            store,
            signer,
            options,
            keeping: Box::new(InStore),
            verified: super::verified::Verified::new(),
        }
    }

    /// An engine that keeps each session in its own cookie, encrypted (see
    /// [`Sealer`] for the size limit and the weaker revocation). Its
    /// [`store`](Self::store) is an unused empty memory store.
    pub fn cookie_store(secrets: &[Vec<u8>], options: SessionOptions) -> Self {
        Self {
            store: Arc::new(super::MemoryStore::new()),
            signer: Signer::new(secrets.to_vec()),
            options,
            keeping: Box::new(InCookie(Sealer::new(secrets))),
            verified: super::verified::Verified::new(),
        }
    }

    /// The store sessions live in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The settings in force.
    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// The signer (also used for CSRF tokens).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The verified session ids in a `Cookie` header, in order.
    ///
    /// A cookie with a bad signature is dropped here, before any store read.
    /// At most four same-named cookies are tried, so a header stuffed with
    /// copies cannot make one request cost many signature checks.
    #[inline]
    fn session_ids<'h>(
        &'h self,
        cookie_header: &'h str,
    ) -> impl Iterator<Item = (SessionId, SessionKey)> + 'h {
        cookie::find(cookie_header, &self.options.cookie.name)
            .take(4)
            .filter_map(|v| {
                if let Some(known) = self.verified.get(v) {
                    return Some(known);
                }
                let id = SessionId::parse(self.signer.verify(COOKIE_CONTEXT, v)?)?;
                let key = id.key();
                self.verified.put(v, &id, key);
                Some((id, key))
            })
    }

    /// The keys of the verified session ids in a `Cookie` header (at most
    /// four), without a store read: what a session-bound CSRF token can be
    /// checked against before the session is loaded.
    pub fn cookie_keys(&self, cookie_header: &str) -> Vec<SessionKey> {
        self.session_ids(cookie_header)
            .map(|(_, key)| key)
            .collect()
    }

    /// The session a request belongs to; a new, empty one when its cookie
    /// is missing, forged, unknown or expired.
    ///
    /// # Errors
    ///
    /// Only store failures: a bad cookie is "no session", not an error.
    #[inline]
    pub fn start(&self, request: RequestInfo<'_>) -> Result<Session<'_>, StoreError> {
        let now = clock::now();
        let loaded = match request.cookie_header {
            Some(header) => self.keeping.load(self, header, now)?,
            None => None,
        };
        let (status, record, id, principal) = match loaded {
            Some((record, id, user)) => (Status::Live, record, id, user),
            None => (Status::New, self.blank(now, &request), None, None),
        };
        let state = Inner {
            status,
            record,
            patch: Patch::default(),
            id,
            new_id: None,
            dirty: false,
            principal,
            now,
            https: request.https,
        };
        Ok(Session {
            engine: self,
            inner: Mutex::new(state),
        })
    }

    /// Writes what the request changed and returns the `Set-Cookie` value
    /// the response must carry, if any.
    ///
    /// # Errors
    ///
    /// Store failures; the response must then not claim success.
    #[inline]
    pub fn finish(&self, session: Session<'_>) -> Result<Option<String>, StoreError> {
        let inner = session
            .inner
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.keeping.finish(self, inner, clock::now())
    }

    fn blank(&self, now: Millis, request: &RequestInfo<'_>) -> Record {
        let (idle, absolute) = self.options.limits(false);
        Record {
            key: SessionKey([0; 32]),
            user_id: None,
            user_stamp: None,
            data: Map::new(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + idle.min(absolute),
            absolute_expires_at: now + absolute,
            persistent: false,
            user_agent: request.user_agent.map(|ua| ua.chars().take(256).collect()),
            ip: request.ip.clone(),
        }
    }

    #[inline]
    fn touch(&self, record: &Record, now: Millis) -> Touch {
        let (idle, _) = self.options.limits(record.persistent);
        Touch {
            last_seen_at: now,
            // Never earlier than the expiry the record already has: a
            // touch computed from a clock stepped back must not shorten
            // the session (the stores keep the later of the two as well).
            expires_at: (now + idle)
                .min(record.absolute_expires_at)
                .max(record.expires_at),
        }
    }

    fn cookie_for(&self, id: &SessionId, record: &Record, now: Millis, https: bool) -> String {
        let value = self.signer.sign(COOKIE_CONTEXT, id.as_str());
        let max_age = record
            .persistent
            .then(|| (record.absolute_expires_at - now) / 1000);
        self.options.cookie.set_cookie(&value, max_age, https)
    }
}

/// When a failed touch was last logged (milliseconds since the epoch).
static TOUCH_FAILURE_LOGGED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Logs a failed touch, at most once a minute: while the disk is full every
/// due session would otherwise log a line per request.
fn touch_failed(e: &StoreError, now: Millis) {
    use std::sync::atomic::Ordering;
    let last = TOUCH_FAILURE_LOGGED.load(Ordering::Relaxed);
    if now - last >= 60_000
        && TOUCH_FAILURE_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        crate::logging::line(&format!(
            "warning: cannot record session activity (the request was answered;              logged at most once a minute): {e}"
        ));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// No stored row yet; one is made at finish if anything was set.
    New,
    /// Loaded from (or already written to) the store.
    Live,
    /// Destroyed by this request.
    Destroyed,
    /// Found missing mid-request (destroyed by another request).
    Gone,
}

struct Inner {
    status: Status,
    record: Record,
    patch: Patch,
    /// The verified id the session was loaded with (server mode).
    id: Option<SessionId>,
    /// Changed outside the patch (cookie store).
    dirty: bool,
    /// An id issued during this request, to be sent in a cookie.
    new_id: Option<SessionId>,
    /// The user as read with the session, if the store joined it.
    principal: Option<User>,
    now: Millis,
    https: bool,
}

/// One request's view of its session.
///
/// Reads see the data as loaded plus this request's own changes. Changes
/// made with [`insert`](Self::insert) and [`remove`](Self::remove) are
/// written when the engine finishes the request, and only if there are any;
/// [`increment`](Self::increment), [`login`](Self::login),
/// [`regenerate`](Self::regenerate) and [`destroy`](Self::destroy) act on
/// the store at once.
pub struct Session<'e> {
    engine: &'e Engine,
    inner: Mutex<Inner>,
}

impl Session<'_> {
    #[inline]
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the session existed before this request.
    pub fn is_new(&self) -> bool {
        self.lock().status == Status::New
    }

    /// The signed-in user, if any.
    #[inline]
    pub fn user_id(&self) -> Option<UserId> {
        let inner = self.lock();
        match inner.status {
            Status::Live | Status::New => inner.record.user_id,
            Status::Destroyed | Status::Gone => None,
        }
    }

    /// The signed-in user's row as read with the session at the start of
    /// this request, when the store read it (see [`Store::load_with_user`])
    /// and the session still belongs to that user.
    #[inline]
    pub fn principal(&self) -> Option<User> {
        let inner = self.lock();
        match (&inner.principal, inner.status) {
            (Some(p), Status::Live) if owns(&inner.record, p) => Some(p.clone()),
            _ => None,
        }
    }

    /// The signed-in user: the row read with the session when the store
    /// read it, else the one `find` reads by the session's user id (the
    /// read a request that needs the user makes anyway: no extra one). A
    /// row whose stamp is not the one the session was signed in with is
    /// another user who came to have the id (another database file, a
    /// restored backup): the session is then no one's.
    ///
    /// # Errors
    ///
    /// `find`'s.
    pub fn user<E>(
        &self,
        find: impl FnOnce(UserId) -> Result<Option<User>, E>,
    ) -> Result<Option<User>, E> {
        if let Some(user) = self.principal() {
            return Ok(Some(user));
        }
        let record = {
            let inner = self.lock();
            match inner.status {
                Status::Live | Status::New => inner.record.clone(),
                Status::Destroyed | Status::Gone => return Ok(None),
            }
        };
        let Some(id) = record.user_id else {
            return Ok(None);
        };
        Ok(find(id)?.filter(|user| owns(&record, user)))
    }

    /// The stored key, for binding tokens to this session; `None` until the
    /// session has been stored, and always with the cookie store (which
    /// stores nothing to bind to).
    pub fn key(&self) -> Option<SessionKey> {
        let inner = self.lock();
        (inner.status == Status::Live && self.engine.keeping.binds_key())
            .then_some(inner.record.key)
    }

    /// A copy of the record as this request sees it.
    pub fn record(&self) -> Record {
        let inner = self.lock();
        let mut record = inner.record.clone();
        inner.patch.apply(&mut record.data);
        record
    }

    /// The value at `key`, if present and of type `T`.
    #[inline]
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let inner = self.lock();
        let value = match inner.patch.0.get(key) {
            Some(Change::Set(v)) => v.clone(),
            Some(Change::Remove) => return None,
            None => inner.record.data.get(key)?.clone(),
        };
        serde_json::from_value(value).ok()
    }

    /// Sets `key` to `value`; written when the request finishes.
    ///
    /// # Errors
    ///
    /// An invalid key, or a value that does not serialize to JSON.
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        check_key(key)?;
        let value = serde_json::to_value(value)?;
        self.lock()
            .patch
            .0
            .insert(key.to_owned(), Change::Set(value));
        Ok(())
    }

    /// Removes `key`; written when the request finishes.
    ///
    /// # Errors
    ///
    /// An invalid key.
    pub fn remove(&self, key: &str) -> Result<(), SessionError> {
        check_key(key)?;
        self.lock().patch.0.insert(key.to_owned(), Change::Remove);
        Ok(())
    }

    /// Atomically adds `by` to the integer at `key` and returns the new
    /// value. Concurrent increments on one session never lose a count.
    /// A session that does not exist yet is created.
    ///
    /// # Errors
    ///
    /// An invalid key, a store failure, or [`SessionError::Gone`] when the
    /// session was destroyed meanwhile.
    pub fn increment(&self, key: &str, by: i64) -> Result<i64, SessionError> {
        check_key(key)?;
        let mut inner = self.lock();
        self.engine.keeping.increment(self, &mut inner, key, by)
    }

    /// Signs `user` in: a new id (the old one stops working at once),
    /// fresh lifetimes, and the data carried over. `persistent` selects
    /// remember-me. The session keeps the user's id and stamp: it is
    /// theirs only while their row has both.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub fn login(&self, user: &User, persistent: bool) -> Result<(), SessionError> {
        let mut inner = self.lock();
        let now = clock::now();
        let (idle, absolute) = self.engine.options.limits(persistent);
        inner.record.user_id = Some(user.id);
        inner.record.user_stamp = Some(user.stamp.clone());
        inner.record.persistent = persistent;
        inner.record.created_at = now;
        inner.record.last_seen_at = now;
        inner.record.absolute_expires_at = now + absolute;
        inner.record.expires_at = now + idle.min(absolute);
        self.regenerate_locked(&mut inner)
    }

    /// Gives the session a new id, deleting the old one in the same step.
    /// Call it on any change of privilege (session-fixation defence).
    ///
    /// # Errors
    ///
    /// Store failures.
    pub fn regenerate(&self) -> Result<(), SessionError> {
        let mut inner = self.lock();
        self.regenerate_locked(&mut inner)
    }

    fn regenerate_locked(&self, inner: &mut Inner) -> Result<(), SessionError> {
        self.engine.keeping.regenerate(self, inner)
    }

    /// Stores the session as this request sees it (data plus patch) under a
    /// fresh id: replacing the row under `replacing` in one step, or as a
    /// new row.
    fn store_under_new_id(
        &self,
        inner: &mut Inner,
        replacing: Option<SessionKey>,
    ) -> Result<(), SessionError> {
        let id = SessionId::generate();
        let mut record = inner.record.clone();
        inner.patch.apply(&mut record.data);
        record.key = id.key();
        match replacing {
            Some(old) => self.engine.store.regenerate(&old, &record)?,
            None => self.engine.store.create(&record)?,
        }
        if let (Some(user_id), Some(max)) =
            (record.user_id, self.engine.options.max_sessions_per_user)
        {
            // Housekeeping after the new session is stored: a failure here
            // is logged, and the next sign-in trims again.
            if let Err(e) = self
                .engine
                .store
                .end_oldest(user_id, &record.key, max, clock::now())
            {
                crate::logging::line(&format!(
                    "session cap not applied user_id={user_id} detail={}",
                    crate::logging::quote(&e.to_string())
                ));
            }
        }
        inner.record = record;
        inner.patch = Patch::default();
        inner.new_id = Some(id);
        inner.status = Status::Live;
        Ok(())
    }

    /// Ends the session: the row is deleted now and the response clears
    /// the cookie.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub fn destroy(&self) -> Result<(), SessionError> {
        let mut inner = self.lock();
        if inner.status == Status::Live {
            self.engine.keeping.forget(self.engine, &inner.record.key)?;
        }
        inner.status = Status::Destroyed;
        inner.patch = Patch::default();
        inner.new_id = None;
        Ok(())
    }

    /// When this request started, as the engine saw it.
    pub fn started_at(&self) -> Millis {
        self.lock().now
    }
}

/// Where sessions are kept between requests: the one seam between the
/// server-side [`Store`] ([`InStore`]) and the sealed cookie ([`InCookie`]).
/// Everything else the engine does (lifetimes, touches, lazy creation,
/// cookies' attributes) is the same for both.
trait Keeping: Send + Sync {
    /// The session the `Cookie` header names, with the verified id and the
    /// user when the store read them.
    fn load(
        &self,
        engine: &Engine,
        header: &str,
        now: Millis,
    ) -> Result<Option<Loaded>, StoreError>;

    /// Writes what the request changed; the `Set-Cookie` value, if any.
    fn finish(
        &self,
        engine: &Engine,
        inner: Inner,
        now: Millis,
    ) -> Result<Option<String>, StoreError>;

    /// Adds `by` to the integer at `key` (a valid key) and returns it.
    fn increment(
        &self,
        session: &Session<'_>,
        inner: &mut Inner,
        key: &str,
        by: i64,
    ) -> Result<i64, SessionError>;

    /// A new id for the session; the old one stops carrying it.
    fn regenerate(&self, session: &Session<'_>, inner: &mut Inner) -> Result<(), SessionError>;

    /// Removes the live session under `key` from wherever it is kept.
    fn forget(&self, engine: &Engine, key: &SessionKey) -> Result<(), StoreError>;

    /// Whether a live session has a stored key that tokens may be bound to.
    fn binds_key(&self) -> bool;
}

/// A loaded session: its record, the verified id it was loaded with, and
/// the user read with it.
type Loaded = (Record, Option<SessionId>, Option<User>);

/// Sessions in the engine's [`Store`], named by a signed id in the cookie.
struct InStore;

impl Keeping for InStore {
    #[inline]
    fn load(
        &self,
        engine: &Engine,
        header: &str,
        now: Millis,
    ) -> Result<Option<Loaded>, StoreError> {
        for (id, key) in engine.session_ids(header) {
            if let Some((record, user)) = engine.store.load_with_user(&key, now)? {
                return Ok(Some((record, Some(id), user)));
            }
        }
        Ok(None)
    }

    #[inline]
    fn finish(
        &self,
        engine: &Engine,
        inner: Inner,
        now: Millis,
    ) -> Result<Option<String>, StoreError> {
        match inner.status {
            Status::Destroyed => Ok(Some(engine.options.cookie.clear_cookie(inner.https))),
            Status::Gone => Ok(None),
            Status::New => {
                if inner.patch.is_empty() && inner.record.user_id.is_none() {
                    return Ok(None); // lazy: nothing worth keeping, no row, no cookie
                }
                let mut record = inner.record;
                inner.patch.apply(&mut record.data);
                let id = inner.new_id.unwrap_or_else(SessionId::generate);
                record.key = id.key();
                engine.store.create(&record)?;
                Ok(Some(engine.cookie_for(&id, &record, now, inner.https)))
            }
            Status::Live => {
                let record = &inner.record;
                let due = now - record.last_seen_at
                    >= engine.options.touch_interval_for(record.persistent);
                if !inner.patch.is_empty() {
                    // `false` means a concurrent request destroyed it: leave it gone.
                    engine
                        .store
                        .save(&record.key, &inner.patch, engine.touch(record, now), now)?;
                } else if due {
                    // Only the touch: bookkeeping, best effort. A read that
                    // cannot record its activity still answers (forward auth
                    // must not lock everyone out while the disk is full);
                    // the session then slides on the next touch that works.
                    if let Err(e) =
                        engine
                            .store
                            .save(&record.key, &inner.patch, engine.touch(record, now), now)
                    {
                        touch_failed(&e, now);
                    }
                }
                let resend = match (&inner.new_id, engine.options.rolling) {
                    (Some(id), _) => Some(id),
                    (None, true) => inner.id.as_ref(),
                    (None, false) => None,
                };
                Ok(resend.map(|id| engine.cookie_for(id, record, now, inner.https)))
            }
        }
    }

    fn increment(
        &self,
        session: &Session<'_>,
        inner: &mut Inner,
        key: &str,
        by: i64,
    ) -> Result<i64, SessionError> {
        match inner.status {
            Status::Destroyed | Status::Gone => Err(SessionError::Gone),
            Status::New => {
                // Create the row now, with this value, so later increments
                // by concurrent requests have something to add to.
                let base = match inner.patch.0.get(key) {
                    Some(Change::Set(v)) => v.as_i64().unwrap_or(0),
                    _ => 0,
                };
                let value = base.saturating_add(by);
                inner
                    .patch
                    .0
                    .insert(key.to_owned(), Change::Set(value.into()));
                session.store_under_new_id(inner, None)?;
                Ok(value)
            }
            Status::Live => {
                let now = clock::now();
                let touch = session.engine.touch(&inner.record, now);
                match session
                    .engine
                    .store
                    .increment(&inner.record.key, key, by, touch, now)?
                {
                    Some(value) => {
                        inner.record.data.insert(key.to_owned(), value.into());
                        inner.record.last_seen_at = touch.last_seen_at;
                        inner.record.expires_at = touch.expires_at;
                        if let Some(Change::Set(_)) = inner.patch.0.get(key) {
                            inner.patch.0.remove(key);
                        }
                        Ok(value)
                    }
                    None => {
                        inner.status = Status::Gone;
                        Err(SessionError::Gone)
                    }
                }
            }
        }
    }

    fn regenerate(&self, session: &Session<'_>, inner: &mut Inner) -> Result<(), SessionError> {
        match inner.status {
            Status::Live => {
                let old = inner.record.key;
                session.store_under_new_id(inner, Some(old))
            }
            Status::New | Status::Gone | Status::Destroyed => {
                session.store_under_new_id(inner, None)
            }
        }
    }

    fn forget(&self, engine: &Engine, key: &SessionKey) -> Result<(), StoreError> {
        engine.store.delete(key)?;
        Ok(())
    }

    fn binds_key(&self) -> bool {
        true
    }
}

/// Sessions sealed into the cookie itself (see [`Sealer`]): nothing is
/// stored, so nothing can be shared, revoked or bound to.
struct InCookie(Sealer);

impl Keeping for InCookie {
    #[inline]
    fn load(
        &self,
        engine: &Engine,
        header: &str,
        now: Millis,
    ) -> Result<Option<Loaded>, StoreError> {
        let name = &engine.options.cookie.name;
        Ok(cookie::find(header, name)
            .take(4)
            .find_map(|v| self.0.open(v, name, now))
            .map(|r| (r, None, None)))
    }

    /// The session is sealed into the cookie whenever it changed, is new,
    /// is due a touch, or `rolling` is on.
    #[inline]
    fn finish(
        &self,
        engine: &Engine,
        inner: Inner,
        now: Millis,
    ) -> Result<Option<String>, StoreError> {
        let mut record = inner.record;
        inner.patch.apply(&mut record.data);
        let changed = !inner.patch.is_empty() || inner.dirty || inner.new_id.is_some();
        let send = match inner.status {
            Status::Destroyed => return Ok(Some(engine.options.cookie.clear_cookie(inner.https))),
            Status::Gone => return Ok(None),
            Status::New => changed || record.user_id.is_some(),
            Status::Live => {
                let due = now - record.last_seen_at
                    >= engine.options.touch_interval_for(record.persistent);
                changed || due || engine.options.rolling
            }
        };
        if !send {
            return Ok(None);
        }
        let touch = engine.touch(&record, now);
        record.last_seen_at = touch.last_seen_at;
        record.expires_at = touch.expires_at;
        let name = &engine.options.cookie.name;
        let value = self.0.seal(&record, name).map_err(|len| {
            StoreError::Backend(format!(
                "the session is {len} bytes sealed, over the cookie store's limit of {MAX_SEALED}"
            ))
        })?;
        let max_age = record
            .persistent
            .then(|| (record.absolute_expires_at - now) / 1000);
        Ok(Some(engine.options.cookie.set_cookie(
            &value,
            max_age,
            inner.https,
        )))
    }

    fn increment(
        &self,
        _session: &Session<'_>,
        inner: &mut Inner,
        key: &str,
        by: i64,
    ) -> Result<i64, SessionError> {
        if inner.status == Status::Destroyed {
            return Err(SessionError::Gone);
        }
        // One cookie per session: nothing shared to add to atomically.
        let current = match inner.patch.0.get(key) {
            Some(Change::Set(v)) => v.as_i64(),
            Some(Change::Remove) => None,
            None => inner
                .record
                .data
                .get(key)
                .and_then(serde_json::Value::as_i64),
        };
        let value = current.unwrap_or(0).saturating_add(by);
        inner
            .patch
            .0
            .insert(key.to_owned(), Change::Set(value.into()));
        Ok(value)
    }

    fn regenerate(&self, _session: &Session<'_>, inner: &mut Inner) -> Result<(), SessionError> {
        // A fresh nonce seals a new cookie; the old one cannot be
        // revoked (see `Sealer`), but it no longer carries the login.
        inner.status = Status::Live;
        inner.new_id = Some(SessionId::generate());
        inner.dirty = true;
        Ok(())
    }

    fn forget(&self, _engine: &Engine, _key: &SessionKey) -> Result<(), StoreError> {
        // Nothing is stored: the cleared cookie is all there is to remove.
        Ok(())
    }

    fn binds_key(&self) -> bool {
        false
    }
}

/// Whether `user` is the one `record` was signed in as: the same id and
/// the same stamp (a stamp is never empty; see [`crate::identity::new_stamp`]).
#[inline]
fn owns(record: &Record, user: &User) -> bool {
    record.user_id == Some(user.id)
        && !user.stamp.is_empty()
        && record.user_stamp.as_deref() == Some(user.stamp.as_str())
}

fn check_key(key: &str) -> Result<(), SessionError> {
    if valid_key(key) {
        Ok(())
    } else {
        Err(SessionError::InvalidKey(key.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::MemoryStore;

    fn engine(store: Arc<MemoryStore>) -> Engine {
        Engine::new(
            store,
            Signer::new(vec![b"engine test secret, 32 bytes long!".to_vec()]),
            SessionOptions::default(),
        )
    }

    fn request(cookie: Option<&str>) -> RequestInfo<'_> {
        RequestInfo {
            cookie_header: cookie,
            ..RequestInfo::default()
        }
    }

    /// A user with the id `id` and a stamp of its own.
    fn user(id: UserId) -> User {
        User {
            id,
            username: format!("user{id}"),
            is_admin: false,
            disabled: false,
            created_at: 0,
            password_changed_at: 0,
            stamp: format!("{id:032x}"),
            groups: Vec::new(),
        }
    }

    /// `name=value` from a `Set-Cookie` value, as a browser would send it back.
    fn cookie_pair(set_cookie: &str) -> String {
        set_cookie.split(';').next().expect("pair").to_owned()
    }

    #[test]
    fn a_touch_from_a_clock_stepped_back_keeps_the_expiry() {
        let e = engine(Arc::new(MemoryStore::new()));
        let now = clock::now();
        let record = e.blank(now, &request(None));
        let day = 86_400_000;
        let t = e.touch(&record, now - day);
        assert_eq!(t.expires_at, record.expires_at);
        // Time really passing still slides it (up to the absolute expiry).
        let later = e.touch(&record, now + 1_000);
        assert_eq!(later.expires_at, record.expires_at + 1_000);
    }

    #[test]
    fn a_visitor_who_sets_nothing_gets_no_row_and_no_cookie() {
        let store = Arc::new(MemoryStore::new());
        let e = engine(store.clone());
        let s = e.start(request(None)).expect("start");
        assert_eq!(s.get::<i64>("x"), None);
        assert_eq!(e.finish(s).expect("finish"), None);
        assert!(store.list(None, clock::now()).expect("list").is_empty());
    }

    #[test]
    fn setting_a_value_creates_the_session_and_the_cookie() {
        let store = Arc::new(MemoryStore::new());
        let e = engine(store.clone());
        let s = e.start(request(None)).expect("start");
        s.insert("theme", "dark").expect("insert");
        let cookie = cookie_pair(&e.finish(s).expect("finish").expect("a cookie"));
        let s = e.start(request(Some(&cookie))).expect("start");
        assert!(!s.is_new());
        assert_eq!(s.get::<String>("theme").as_deref(), Some("dark"));
    }

    #[test]
    fn a_save_after_a_concurrent_destroy_does_not_resurrect() {
        let store = Arc::new(MemoryStore::new());
        let e = engine(store.clone());
        let s = e.start(request(None)).expect("start");
        s.login(&user(1), false).expect("login");
        let cookie = cookie_pair(&e.finish(s).expect("finish").expect("cookie"));

        let in_flight = e.start(request(Some(&cookie))).expect("start");
        let logout = e.start(request(Some(&cookie))).expect("start");
        logout.destroy().expect("destroy");
        assert!(
            e.finish(logout)
                .expect("finish")
                .expect("clear")
                .contains("Max-Age=0")
        );

        in_flight.insert("late", true).expect("insert");
        assert_eq!(
            e.finish(in_flight).expect("finish"),
            None,
            "no cookie for a dead session"
        );
        assert!(
            store.list(None, clock::now()).expect("list").is_empty(),
            "resurrected"
        );
    }

    #[test]
    fn concurrent_requests_changing_different_keys_both_survive() {
        let store = Arc::new(MemoryStore::new());
        let e = engine(store.clone());
        let s = e.start(request(None)).expect("start");
        s.insert("a", 0).expect("insert");
        let cookie = cookie_pair(&e.finish(s).expect("finish").expect("cookie"));

        let first = e.start(request(Some(&cookie))).expect("start");
        let second = e.start(request(Some(&cookie))).expect("start");
        first.insert("a", 1).expect("insert");
        second.insert("b", 2).expect("insert");
        e.finish(first).expect("finish");
        e.finish(second).expect("finish");
        let s = e.start(request(Some(&cookie))).expect("start");
        assert_eq!(s.get::<i64>("a"), Some(1));
        assert_eq!(s.get::<i64>("b"), Some(2));
    }

    #[test]
    fn reads_within_the_touch_interval_write_nothing() {
        let store = Arc::new(MemoryStore::new());
        let e = engine(store.clone());
        let s = e.start(request(None)).expect("start");
        s.login(&user(1), false).expect("login");
        let cookie = cookie_pair(&e.finish(s).expect("finish").expect("cookie"));
        let before = store.list(None, clock::now()).expect("list");
        std::thread::sleep(Duration::from_millis(5));
        let s = e.start(request(Some(&cookie))).expect("start");
        assert_eq!(s.user_id(), Some(1));
        assert_eq!(e.finish(s).expect("finish"), None);
        assert_eq!(
            store.list(None, clock::now()).expect("list"),
            before,
            "a read wrote"
        );
    }

    #[test]
    fn a_session_resolves_only_to_the_user_with_its_stamp() {
        // A store that reads no user with the session (memory, Redis): the
        // user row is read by id, and its stamp decides.
        let e = engine(Arc::new(MemoryStore::new()));
        let s = e.start(request(None)).expect("start");
        s.login(&user(1), false).expect("login");
        let cookie = cookie_pair(&e.finish(s).expect("finish").expect("cookie"));
        let s = e.start(request(Some(&cookie))).expect("start");
        let found = |u: User| move |id: UserId| Ok::<_, ()>((id == u.id).then(|| u.clone()));
        assert_eq!(s.user(found(user(1))), Ok(Some(user(1))));
        // Another user 1: a database file swapped in, a backup restored.
        let other = User {
            username: "someone else".into(),
            stamp: "f".repeat(32),
            ..user(1)
        };
        assert_eq!(s.user(found(other)), Ok(None), "resolved to another user");
        let unstamped = User {
            stamp: String::new(),
            ..user(1)
        };
        assert_eq!(s.user(found(unstamped)), Ok(None));
        assert_eq!(s.user(|_| Err::<Option<User>, _>("down")), Err("down"));
        // An anonymous session asks for no user at all.
        let anonymous = e.start(request(None)).expect("start");
        assert_eq!(
            anonymous.user(|_| -> Result<Option<User>, ()> { panic!("read a user") }),
            Ok(None)
        );
    }

    /// A memory store whose saves fail while `failing` is set, as a full
    /// disk makes them.
    struct FailingSaves {
        inner: MemoryStore,
        failing: std::sync::atomic::AtomicBool,
    }

    impl Store for FailingSaves {
        fn create(&self, r: &Record) -> Result<(), StoreError> {
            self.inner.create(r)
        }
        fn load(&self, k: &SessionKey, now: Millis) -> Result<Option<Record>, StoreError> {
            self.inner.load(k, now)
        }
        fn save(
            &self,
            k: &SessionKey,
            p: &Patch,
            t: Touch,
            now: Millis,
        ) -> Result<bool, StoreError> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unavailable("disk full".into()));
            }
            self.inner.save(k, p, t, now)
        }
        fn increment(
            &self,
            k: &SessionKey,
            f: &str,
            by: i64,
            t: Touch,
            now: Millis,
        ) -> Result<Option<i64>, StoreError> {
            self.inner.increment(k, f, by, t, now)
        }
        fn regenerate(&self, old: &SessionKey, new: &Record) -> Result<(), StoreError> {
            self.inner.regenerate(old, new)
        }
        fn delete(&self, k: &SessionKey) -> Result<bool, StoreError> {
            self.inner.delete(k)
        }
        fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
            self.inner.delete_expired(now, limit)
        }
        fn list(&self, u: Option<UserId>, now: Millis) -> Result<Vec<Record>, StoreError> {
            self.inner.list(u, now)
        }
        fn delete_by_user(
            &self,
            u: UserId,
            keep: Option<&SessionKey>,
        ) -> Result<usize, StoreError> {
            self.inner.delete_by_user(u, keep)
        }
    }

    #[test]
    fn a_touch_that_cannot_be_stored_does_not_fail_the_read_but_a_change_does() {
        let store = Arc::new(FailingSaves {
            inner: MemoryStore::new(),
            failing: std::sync::atomic::AtomicBool::new(false),
        });
        let e = Engine::new(
            store.clone(),
            Signer::new(vec![b"engine test secret, 32 bytes long!".to_vec()]),
            SessionOptions {
                touch_interval: Duration::ZERO,
                ..SessionOptions::default()
            },
        );
        let s = e.start(request(None)).expect("start");
        s.login(&user(1), false).expect("login");
        let cookie = cookie_pair(&e.finish(s).expect("finish").expect("cookie"));
        store
            .failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(2));
        // Due a touch, nothing changed: answered although the touch failed.
        let s = e.start(request(Some(&cookie))).expect("start");
        assert_eq!(s.user_id(), Some(1));
        e.finish(s).expect("a failed touch does not fail the read");
        // A change that cannot be stored is an error, never acknowledged.
        let s = e.start(request(Some(&cookie))).expect("start");
        s.insert("theme", "dark").expect("insert");
        assert!(e.finish(s).is_err(), "a lost change was acknowledged");
    }

    #[test]
    fn login_regenerates_and_carries_the_data() {
        let store = Arc::new(MemoryStore::new());
        let e = engine(store.clone());
        let s = e.start(request(None)).expect("start");
        s.insert("cart", [1, 2]).expect("insert");
        let before = cookie_pair(&e.finish(s).expect("finish").expect("cookie"));
        let s = e.start(request(Some(&before))).expect("start");
        s.login(&user(7), true).expect("login");
        let after = e.finish(s).expect("finish").expect("new cookie");
        assert!(after.contains("Max-Age="), "remember-me cookie persists");
        let after = cookie_pair(&after);
        assert_ne!(before, after);
        assert!(
            e.start(request(Some(&before))).expect("start").is_new(),
            "old id still works"
        );
        let s = e.start(request(Some(&after))).expect("start");
        assert_eq!(s.user_id(), Some(7));
        assert_eq!(s.get::<Vec<i64>>("cart"), Some(vec![1, 2]));
    }

    #[test]
    fn a_sign_in_past_the_cap_ends_the_users_oldest_session() {
        let store = Arc::new(MemoryStore::new());
        let options = SessionOptions {
            max_sessions_per_user: Some(2),
            ..SessionOptions::default()
        };
        let e = Engine::new(
            store.clone(),
            Signer::new(vec![b"engine test secret, 32 bytes long!".to_vec()]),
            options,
        );
        let sign_in = |id| {
            let s = e.start(request(None)).expect("start");
            s.login(&user(id), false).expect("login");
            cookie_pair(&e.finish(s).expect("finish").expect("cookie"))
        };
        let first = sign_in(1);
        let other_user = sign_in(2);
        std::thread::sleep(Duration::from_millis(2));
        let second = sign_in(1);
        std::thread::sleep(Duration::from_millis(2));
        let third = sign_in(1);
        let now = clock::now();
        assert_eq!(store.list(Some(1), now).expect("list").len(), 2);
        assert!(
            e.start(request(Some(&first))).expect("start").is_new(),
            "the oldest lives"
        );
        for kept in [&second, &third, &other_user] {
            assert!(!e.start(request(Some(kept))).expect("start").is_new());
        }
        // Without a cap nothing is ended.
        let e = Engine::new(
            store.clone(),
            Signer::new(vec![b"engine test secret, 32 bytes long!".to_vec()]),
            SessionOptions {
                max_sessions_per_user: None,
                ..SessionOptions::default()
            },
        );
        for _ in 0..3 {
            let s = e.start(request(None)).expect("start");
            s.login(&user(1), false).expect("login");
            e.finish(s).expect("finish");
        }
        assert_eq!(store.list(Some(1), clock::now()).expect("list").len(), 5);
    }

    #[test]
    fn rolling_resends_the_cookie_on_every_response() {
        let store = Arc::new(MemoryStore::new());
        let options = SessionOptions {
            rolling: true,
            ..SessionOptions::default()
        };
        let e = Engine::new(
            store,
            Signer::new(vec![b"engine test secret, 32 bytes long!".to_vec()]),
            options,
        );
        let s = e.start(request(None)).expect("start");
        s.login(&user(1), true).expect("login");
        let first = e.finish(s).expect("finish").expect("cookie");
        let pair = cookie_pair(&first);
        let s = e.start(request(Some(&pair))).expect("start");
        let again = e
            .finish(s)
            .expect("finish")
            .expect("rolling sends it again");
        assert_eq!(cookie_pair(&again), pair, "same id");
        assert!(again.contains("Max-Age="));
        // Without rolling, a read sends nothing (checked in reads_within_...).
    }

    #[test]
    fn the_cookie_store_keeps_the_session_in_the_cookie() {
        let secrets = vec![b"cookie store secret, 32 bytes long!".to_vec()];
        let e = Engine::cookie_store(&secrets, SessionOptions::default());
        let s = e.start(request(None)).expect("start");
        assert_eq!(s.increment("visits", 1).expect("inc"), 1);
        s.insert("cart", vec![1, 2]).expect("insert");
        let set = e.finish(s).expect("finish").expect("cookie");
        assert!(!set.contains("cart"), "the data is encrypted");
        let pair = cookie_pair(&set);
        let s = e.start(request(Some(&pair))).expect("start");
        assert_eq!(s.increment("visits", 1).expect("inc"), 2);
        assert_eq!(s.get::<Vec<i64>>("cart"), Some(vec![1, 2]));
        assert!(s.key().is_none(), "nothing stored to bind tokens to");
        let pair2 = cookie_pair(&e.finish(s).expect("finish").expect("changed: new cookie"));
        let s = e.start(request(Some(&pair2))).expect("start");
        s.destroy().expect("destroy");
        assert!(
            e.finish(s)
                .expect("finish")
                .expect("clear")
                .contains("Max-Age=0")
        );
        // A tampered cookie is no session.
        let mut bad = pair2.clone();
        bad.pop();
        bad.push(if pair2.ends_with('A') { 'B' } else { 'A' });
        assert!(e.start(request(Some(&bad))).expect("start").is_new());
        // Reading without changes inside the touch interval sends nothing.
        let s = e.start(request(Some(&pair2))).expect("start");
        assert_eq!(s.get::<i64>("visits"), Some(2));
        assert_eq!(e.finish(s).expect("finish"), None);
    }

    #[test]
    fn the_cookie_store_refuses_data_too_big_for_a_cookie() {
        let e = Engine::cookie_store(
            &[b"cookie store secret, 32 bytes long!".to_vec()],
            SessionOptions::default(),
        );
        let s = e.start(request(None)).expect("start");
        s.insert("big", "x".repeat(5000)).expect("insert");
        assert!(e.finish(s).is_err());
    }

    #[test]
    fn a_forged_cookie_never_reaches_the_store() {
        struct Panicking;
        impl Store for Panicking {
            fn create(&self, _: &Record) -> Result<(), StoreError> {
                unreachable!()
            }
            fn load(&self, _: &SessionKey, _: Millis) -> Result<Option<Record>, StoreError> {
                panic!("a bad signature caused a store read")
            }
            fn save(
                &self,
                _: &SessionKey,
                _: &Patch,
                _: Touch,
                _: Millis,
            ) -> Result<bool, StoreError> {
                unreachable!()
            }
            fn increment(
                &self,
                _: &SessionKey,
                _: &str,
                _: i64,
                _: Touch,
                _: Millis,
            ) -> Result<Option<i64>, StoreError> {
                unreachable!()
            }
            fn regenerate(&self, _: &SessionKey, _: &Record) -> Result<(), StoreError> {
                unreachable!()
            }
            fn delete(&self, _: &SessionKey) -> Result<bool, StoreError> {
                unreachable!()
            }
            fn delete_expired(&self, _: Millis, _: usize) -> Result<usize, StoreError> {
                unreachable!()
            }
            fn list(&self, _: Option<UserId>, _: Millis) -> Result<Vec<Record>, StoreError> {
                unreachable!()
            }
            fn delete_by_user(
                &self,
                _: UserId,
                _: Option<&SessionKey>,
            ) -> Result<usize, StoreError> {
                unreachable!()
            }
        }
        let e = Engine::new(
            Arc::new(Panicking),
            Signer::new(vec![b"engine test secret, 32 bytes long!".to_vec()]),
            SessionOptions::default(),
        );
        let id = SessionId::generate();
        let forged = format!("gatehouse_session={}.{}", id.as_str(), "A".repeat(43));
        let s = e.start(request(Some(&forged))).expect("start");
        assert!(s.is_new());
    }
}
