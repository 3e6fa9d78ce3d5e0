//! Every account operation and the rules it owns, called alike by the
//! pages, the JSON API, the admin page and the command line.
//!
//! - **Sign-in** ([`Accounts::attempt_sign_in`], then
//!   [`Accounts::finish_sign_in`]): throttling (every password check and
//!   second-step code counted in the throttle before it is checked, so a
//!   burst cannot outrun the lock), one bcrypt verify on the bounded,
//!   fair queue for every outcome (a dummy hash for unknown users),
//!   disabled accounts, the login log lines. The attempt returns an
//!   [`Attempt`] rather than a response, so a second step can sit between
//!   the password and the finished sign-in. The session id changes at
//!   both: when a pending sign-in is stored, and when the sign-in
//!   completes (which also applies the per-user session cap).
//! - **Password checks** that are not sign-ins ([`Accounts::confirm_password`]):
//!   the current password on the account page, the admin page's "confirm
//!   your password"; throttled the same way.
//! - **Revocation**: a new password ends the user's sessions (all but the
//!   one that set it); disabling or deleting a user ends all of them; each
//!   of these, "end all others" and a reset of the second factors also
//!   end the user's sign-ins still waiting for their second step; turning
//!   on a second factor ends the sessions that signed in without one.
//! - **Session ids**: a new one at the password step (a pending sign-in)
//!   and at every sign-in or change of what the session may do.
//! - **The last administrator**: disabling, deleting or demoting the last
//!   enabled administrator is refused, unless the caller forces it (the
//!   box's owner at the command line).
//! - **Password rules**: checked by `users` when a password is hashed;
//!   refusals come back as [`AccountError::User`].
//!
//! This module never sees HTTP: it takes plain values and the session, and
//! returns plain results; `web` and `cli` turn them into responses and
//! output.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::throttle::{Lockout, Reservation, Reserve, Throttle};
use crate::clock::Millis;
use crate::logging;
use crate::session::{Change, Patch, Session, SessionError, SessionKey, Store, StoreError, Touch};
use crate::users::factors::{CodeCheck, Policy};
use crate::users::password::{PasswordError, Source, Turn};
use crate::users::{Login, MAX_USERNAME, User, UserError, UserId, Username, Users};

/// Session data: a sign-in whose password was right, waiting for its
/// second step. The session stays anonymous meanwhile, so every page and
/// gate treats it as signed out.
pub const PENDING: &str = "gatehouse:pending";

/// Session data: how the session signed in (`pwd`, `otp`, `passkey`,
/// `recovery`), in order.
pub const METHODS: &str = "gatehouse:amr";

/// Session data: when this session's user last gave their password (or a
/// passkey), in milliseconds: what `admin_reauth` reads. Set by a sign-in
/// and by the admin page's "confirm your password", never by a code
/// alone (a step-up with a code proves the device, not the person at the
/// keyboard now). Under the reserved `gatehouse:` prefix, which `PATCH
/// /api/session/data` refuses: a script must not be able to write itself
/// a fresh confirmation.
pub const REAUTH_AT: &str = "gatehouse:reauth_at";

/// How long a pending sign-in waits for its second step.
pub const PENDING_FOR: Millis = 5 * 60 * 1000;

/// How many wrong second steps a pending sign-in survives.
pub const PENDING_ATTEMPTS: u32 = 5;

/// A sign-in waiting for its second step (session data at [`PENDING`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    /// Whose password was right.
    pub user_id: UserId,
    /// Remember-me, as asked with the password.
    pub remember: bool,
    /// Where to go once signed in (already checked by the caller).
    pub next: String,
    /// When the password was right.
    pub at: Millis,
    /// Wrong second steps so far.
    pub attempts: u32,
    /// The user has no second factor and policy requires one: they set
    /// one up instead of using it.
    pub enrol: bool,
    /// When the user's password was last set, as it was when it was
    /// checked: a new password since ends the pending sign-in.
    #[serde(default)]
    pub password_set_at: Millis,
    /// The user's stamp when the password was checked: the pending sign-in
    /// resolves only to that user, never to another who came to have the
    /// id (empty in one from before stamps: it resolves to no one).
    #[serde(default)]
    pub user_stamp: String,
}

/// A proof offered as the second step.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// A code from the authenticator app.
    Code(&'a str),
    /// One of the user's recovery codes.
    Recovery(&'a str),
    /// A passkey assertion of this user, already verified by the caller.
    Passkey(UserId),
}

impl Proof<'_> {
    fn method(&self) -> &'static str {
        match self {
            Self::Code(_) => "otp",
            Self::Recovery(_) => "recovery",
            Self::Passkey(_) => "passkey",
        }
    }
}

/// Who a second step is for: a pending sign-in, or a signed-in session
/// adding a second factor for an app that needs one.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The user.
    pub user: User,
    /// The pending sign-in, if this is one (else a step-up).
    pub pending: Option<Pending>,
}

/// What the password step led to.
#[derive(Debug)]
pub enum AfterPassword {
    /// Signed in (no second factor, none required).
    Finished(Finished),
    /// Pending: the user has a second factor to give.
    SecondStep,
    /// Pending: policy requires a second factor the user does not have yet.
    Enrol,
}

/// What signing in a new account came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    /// Signed in with its password.
    SignedIn,
    /// Pending: policy requires a second factor, to be set up first.
    Enrol,
}

/// What a second step came to.
#[derive(Debug)]
pub enum Step {
    /// Signed in; with a recovery code, how many are left.
    Finished(Finished, Option<i64>),
    /// Not right (logged `reason=wrong_code`, counted towards a lockout).
    Wrong,
    /// Too many recent failures: wait this long.
    Throttled(Duration),
    /// No pending sign-in (never, expired, or too many wrong attempts).
    Expired,
}

/// The key of a pending sign-in's own budget of wrong second steps in the
/// throttle's store: its user and the moment its password was right.
fn pending_budget(pending: &Pending) -> String {
    format!("{}:{}", pending.user_id, pending.at)
}

/// Whether these sign-in methods make two factors (said once, in
/// `identity`, where the access decision reads it too).
pub use crate::identity::two_factors;

/// Why an account operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A rule forbids it; the message says which, for people.
    #[error("{0}")]
    Refused(Refusal),
    /// The username given to sign in is longer than any username can be.
    #[error("the username is too long")]
    UsernameTooLong,
    /// No such session (among those the caller may end).
    #[error("no such session")]
    NoSuchSession,
    /// A user operation failed: a bad name or password, a taken name, no
    /// such user, a busy hasher, or the database.
    #[error(transparent)]
    User(#[from] UserError),
    /// The session store (or the throttle's store) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request's session could not be changed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// A rule that refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It would leave no enabled administrator.
    #[error("this is the last administrator; make someone else an administrator first")]
    LastAdministrator,
    /// An administrator may not disable themselves.
    #[error("you cannot disable yourself; ask another administrator")]
    DisableSelf,
    /// An administrator may not delete themselves.
    #[error("you cannot delete yourself; ask another administrator")]
    DeleteSelf,
    /// A second factor is added only by a session that gave one already
    /// (when the user has one), or by a sign-in that must set one up.
    #[error("give your current second factor first")]
    SecondStepFirst,
    /// The password or second factors of a user who has a second factor
    /// are changed only by an administrator whose session gave one too.
    #[error(
        "this user has a second factor: only an administrator who signed in with one may change their password or second factors"
    )]
    OverrideNeedsSecondFactor,
}

/// What a sign-in attempt came to.
#[derive(Debug)]
pub enum Attempt {
    /// The password is right and the account enabled: hand this to
    /// [`Accounts::finish_sign_in`] (a second factor will be asked for
    /// between the two).
    Verified(Verified),
    /// Too many recent failures for this username or address: wait this long.
    Throttled(Duration),
    /// Wrong username or password, or a disabled account: callers say the
    /// same thing for all three. Logged and counted towards a lockout.
    Failed,
}

/// A user whose password was just verified; only [`Accounts::attempt_sign_in`]
/// makes one, so a sign-in cannot be finished without it.
#[derive(Debug)]
pub struct Verified {
    user: User,
    /// Whether the user has a second factor (read once, at the check).
    has_factor: bool,
}

impl Verified {
    /// The user who is signing in.
    pub fn user(&self) -> &User {
        &self.user
    }
}

/// A sign-in whose session is set; [`committed`](Self::committed) logs it.
#[derive(Debug)]
#[must_use = "log the sign-in once its session is stored"]
pub struct Finished {
    user: User,
    methods: Vec<String>,
}

impl Finished {
    /// The user now signed in.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// Counts and logs `login ok`. Called once the new session is stored,
    /// not before: a sign-in that could not be committed is no "login ok".
    /// `via` is appended to the log line (`""`, or `" via=api"`).
    pub fn committed(self, guard: &Guard<'_>, ip: IpAddr, via: &str) -> User {
        guard.counters.login("ok");
        let methods = format!(" methods={}{via}", self.methods.join(","));
        log(&self.user.username, "ok", ip, &methods);
        self.user
    }
}

/// What a password check that is not a sign-in came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// The password is this user's.
    Confirmed,
    /// Too many recent failures: wait this long.
    Throttled(Duration),
    /// Not the password (logged and counted towards a lockout).
    Wrong,
}

/// Why a password is checked outside a sign-in (it names the log lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The current password, before a new one is set.
    ChangePassword,
    /// An administrator confirms their password before an admin action.
    AdminAction,
}

/// Counts sign-in events for `/metrics`; `web` implements it, and the
/// command line, which counts nothing, passes [`NoCounters`].
pub trait Counters {
    /// One attempt with this outcome (`ok`, `unknown_user`, ...).
    fn login(&self, outcome: &str);
    /// One attempt refused by throttling.
    fn throttled(&self);
}

/// Counts nothing.
pub struct NoCounters;

impl Counters for NoCounters {
    fn login(&self, _: &str) {}
    fn throttled(&self) {}
}

/// What guards password checks: the throttle and the counters.
pub struct Guard<'a> {
    /// Failed attempts per username and address.
    pub throttle: &'a Throttle,
    /// Where sign-in events are counted.
    pub counters: &'a dyn Counters,
}

/// The accounts, over the users and the session store.
pub struct Accounts<'a> {
    users: &'a Users,
    sessions: &'a dyn Store,
}

/// Whose sessions [`Accounts::end_session`] may end.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    /// Only this user's (the account page: a guessed handle of someone
    /// else's session is simply not found).
    User(crate::users::UserId),
    /// Anyone's (an administrator).
    Anyone,
}

/// What [`Accounts::end_session`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The caller's own session: the browser is signed out.
    This,
    /// Another session.
    Other,
}

impl<'a> Accounts<'a> {
    /// Account operations on `users`, ending sessions in `sessions`.
    pub fn new(users: &'a Users, sessions: &'a dyn Store) -> Self {
        Self { users, sessions }
    }

    /// The first step of signing in: throttle, then one password check.
    ///
    /// `username` loses its surrounding spaces (only spaces: see `users::trim_spaces`). Every outcome is logged (`login throttled`,
    /// `login failed ... reason=`, `login locked`) except success, which
    /// [`Finished::committed`] logs once the session is stored.
    ///
    /// # Errors
    ///
    /// [`AccountError::UsernameTooLong`]; a busy hasher or a database or
    /// throttle-store failure.
    pub fn attempt_sign_in(
        &self,
        guard: &Guard<'_>,
        username: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<Attempt, AccountError> {
        let username = crate::users::trim_spaces(username);
        if username.len() > MAX_USERNAME {
            return Err(AccountError::UsernameTooLong);
        }
        let (login, reserved) = match self.check_password(guard, username, password, ip)? {
            Checked::Throttled(wait) => return Ok(Attempt::Throttled(wait)),
            Checked::Done(login, reserved) => (login, reserved),
        };
        let reason = match login {
            Login::Ok(user) => {
                // A right password clears the name's failures only when it
                // is the whole sign-in: else re-entering it between wrong
                // codes would wash out the count of the second step.
                let has_factor = match self.users.factors().summary(user.id) {
                    Ok(summary) => summary.any(),
                    Err(e) => {
                        release(guard, reserved);
                        return Err(e.into());
                    }
                };
                guard.throttle.passed(reserved, !has_factor)?;
                return Ok(Attempt::Verified(Verified { user, has_factor }));
            }
            Login::UnknownUser => "unknown_user",
            Login::WrongPassword => "wrong_password",
            Login::Disabled => "disabled",
        };
        record_failure(guard, username, ip, reason, Some(reserved))?;
        Ok(Attempt::Failed)
    }

    /// One password check, counted before it runs: a cheap look at the
    /// locks first (a locked name or address never takes a place in the
    /// bcrypt queue, and the address's standing orders the queue), then,
    /// once a worker is free for it, a reservation
    /// on the name and the address ([`Throttle::reserve`]); only a
    /// granted attempt runs bcrypt, and the caller confirms or releases
    /// it. An attempt the queue refuses counts against its address.
    ///
    /// # Errors
    ///
    /// A busy hasher (counted, and logged `login busy`), or a database or
    /// throttle-store failure.
    fn check_password(
        &self,
        guard: &Guard<'_>,
        username: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<Checked, AccountError> {
        let look = guard.throttle.look(username, ip)?;
        if let Some(wait) = look.wait {
            return Ok(Checked::Throttled(throttled(guard, username, ip, wait)));
        }
        let mut reserved = None;
        let mut locked = None;
        let mut failed = None;
        let key = crate::auth::throttle::ip_subject(ip);
        let source = Source {
            key: &key,
            standing: look.standing,
        };
        let checked = self
            .users
            .authenticate_as(source, username, password, &mut || {
                match guard.throttle.reserve(username, ip) {
                    Ok(Reserve::Granted(r)) => {
                        reserved = Some(r);
                        Turn::Go
                    }
                    Ok(Reserve::Locked(wait)) => {
                        locked = Some(wait);
                        Turn::Stop
                    }
                    // Every attempt the limits allow is being checked (here
                    // or on another instance): wait for one to finish. (A
                    // password check has no budget to spend.)
                    Ok(Reserve::Full | Reserve::Spent) => Turn::Later,
                    Err(e) => {
                        failed = Some(e);
                        Turn::Stop
                    }
                }
            });
        if let Some(e) = failed {
            return Err(e.into());
        }
        match (checked, reserved) {
            (Ok(Some(login)), Some(reserved)) => Ok(Checked::Done(login, reserved)),
            (Ok(_), reserved) => {
                if let Some(r) = reserved {
                    release(guard, r);
                }
                let wait = locked.unwrap_or(Duration::from_secs(1));
                Ok(Checked::Throttled(throttled(guard, username, ip, wait)))
            }
            (Err(UserError::Password(PasswordError::Busy)), reserved) => {
                if let Some(r) = reserved {
                    release(guard, r);
                }
                guard.counters.login("busy");
                log(username, "busy", ip, "");
                for lock in guard.throttle.refused(ip)? {
                    log_lock(username, ip, &lock);
                }
                Err(UserError::Password(PasswordError::Busy).into())
            }
            (Err(e), reserved) => {
                if let Some(r) = reserved {
                    release(guard, r);
                }
                Err(e.into())
            }
        }
    }

    /// The last step of signing in: the session becomes `verified`'s user's
    /// under a new id (session-fixation defence; the engine also ends the
    /// user's oldest sessions past the per-user cap). Call
    /// [`Finished::committed`] once the session is stored.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub fn finish_sign_in(
        &self,
        session: &Session<'_>,
        verified: Verified,
        remember: bool,
    ) -> Result<Finished, AccountError> {
        let now = crate::clock::now();
        sign_in(
            session,
            verified.user,
            remember,
            vec!["pwd".to_owned()],
            Some(now),
        )
    }

    /// What follows a right password: signed in at once, or a pending
    /// sign-in that waits for a second factor (the user has one), or for
    /// one to be set up (`policy` requires it). A pending sign-in leaves
    /// the session anonymous, under a new id; `next` goes with it.
    ///
    /// # Errors
    ///
    /// Database and store failures.
    pub fn after_password(
        &self,
        session: &Session<'_>,
        verified: Verified,
        remember: bool,
        next: &str,
        policy: Policy,
    ) -> Result<AfterPassword, AccountError> {
        let has = verified.has_factor;
        if !has && policy == Policy::Optional {
            return Ok(AfterPassword::Finished(
                self.finish_sign_in(session, verified, remember)?,
            ));
        }
        pend(session, &verified.user, remember, next, !has)?;
        Ok(if has {
            AfterPassword::SecondStep
        } else {
            AfterPassword::Enrol
        })
    }

    /// Who a second step on `session` is for: its pending sign-in (still
    /// fresh, with attempts left, the user still enabled), or else its
    /// signed-in user (adding a second factor to a password-only session).
    /// A pending sign-in that is stale is removed.
    ///
    /// A pending sign-in in a session already signed in (as someone else,
    /// or the same user) leaves that sign-in as it is until the second
    /// step replaces it.
    ///
    /// # Errors
    ///
    /// Database and store failures.
    pub fn subject(&self, session: &Session<'_>) -> Result<Option<Subject>, AccountError> {
        // A pending sign-in first: a browser signed in as one user that
        // signs in as another is signing in as that other one.
        if let Some(pending) = session.get::<Pending>(PENDING) {
            let fresh = crate::clock::now().saturating_sub(pending.at) < PENDING_FOR
                && pending.attempts < PENDING_ATTEMPTS;
            // The user as they are now: still enabled, the password the
            // sign-in gave still theirs.
            let user = if fresh {
                self.users.find_by_id(pending.user_id)?.filter(|u| {
                    !u.disabled
                        && u.password_changed_at == pending.password_set_at
                        && !u.stamp.is_empty()
                        && u.stamp == pending.user_stamp
                })
            } else {
                None
            };
            if let Some(user) = user {
                return Ok(Some(Subject {
                    user,
                    pending: Some(pending),
                }));
            }
            session.remove(PENDING)?;
        }
        Ok(session
            .user(|id| self.users.find_by_id(id))?
            .filter(|u| !u.disabled)
            .map(|user| Subject {
                user,
                pending: None,
            }))
    }

    /// The second step: a code, a recovery code or a passkey for the
    /// subject of `session`. Throttled and logged like a password
    /// (`reason=wrong_code`); a pending sign-in survives
    /// [`PENDING_ATTEMPTS`] wrong ones. Only success regenerates the id:
    /// it signs the user in (a pending sign-in, with its remember-me), or
    /// adds the method to the signed-in session.
    ///
    /// # Errors
    ///
    /// Database and store failures.
    pub fn second_step(
        &self,
        guard: &Guard<'_>,
        session: &Session<'_>,
        ip: IpAddr,
        proof: Proof<'_>,
    ) -> Result<Step, AccountError> {
        let Some(subject) = self.subject(session)? else {
            return Ok(Step::Expired);
        };
        let user = &subject.user;
        if let Some(wait) = throttle_wait(guard, &user.username, ip)? {
            return Ok(Step::Throttled(wait));
        }
        // Counted before the code is checked, on the name, the address and
        // the pending sign-in's own budget, atomically in the throttle's
        // store: a burst of codes (through any number of instances) gets
        // no more checks than the limits allow.
        let budget = subject.pending.as_ref().map(pending_budget);
        let budget = budget.as_ref().map(|key| (key.as_str(), PENDING_ATTEMPTS));
        let reserved = match guard.throttle.reserve_step(&user.username, ip, budget)? {
            Reserve::Granted(r) => r,
            Reserve::Locked(wait) => {
                return Ok(Step::Throttled(throttled(guard, &user.username, ip, wait)));
            }
            // The codes the limits allow are being checked right now.
            Reserve::Full => {
                let wait = Duration::from_secs(1);
                return Ok(Step::Throttled(throttled(guard, &user.username, ip, wait)));
            }
            Reserve::Spent => {
                session.remove(PENDING)?;
                return Ok(Step::Expired);
            }
        };
        let factors = self.users.factors();
        let checked = match proof {
            Proof::Code(code) => factors.check_totp(user.id, code).map(|c| match c {
                CodeCheck::Accepted => (true, None),
                CodeCheck::Replayed => {
                    log(&user.username, "replayed_code", ip, "");
                    (false, None)
                }
                CodeCheck::Wrong => (false, None),
            }),
            Proof::Recovery(code) => factors
                .use_recovery_code(user.id, code)
                .map(|left| (left.is_some(), left)),
            Proof::Passkey(id) => Ok((id == user.id, None)),
        };
        let (right, left) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                release(guard, reserved);
                return Err(e.into());
            }
        };
        if !right {
            record_failure(guard, &user.username, ip, "wrong_code", Some(reserved))?;
            if let Some(mut pending) = subject.pending {
                pending.attempts += 1;
                if pending.attempts >= PENDING_ATTEMPTS {
                    session.remove(PENDING)?;
                } else {
                    session.insert(PENDING, pending)?;
                }
            }
            return Ok(Step::Wrong);
        }
        guard.throttle.passed(reserved, true)?;
        if let Some(left) = left {
            log(
                &user.username,
                "recovery_code_used",
                ip,
                &format!(" left={left}"),
            );
        }
        // A passkey is given now, like a password; a code or a recovery
        // code alone renews no password window.
        let typed = matches!(proof, Proof::Passkey(_)).then(crate::clock::now);
        let finished = self.complete(session, subject, proof.method(), typed)?;
        Ok(Step::Finished(finished, left))
    }

    /// Signs the subject in with `method` added to the password: a pending
    /// sign-in becomes the user's session, a signed-in one gains the
    /// method; either way under a new id. [`REAUTH_AT`] becomes when a
    /// pending sign-in's password was given, or `typed` (a passkey given
    /// now) for a signed-in one.
    fn complete(
        &self,
        session: &Session<'_>,
        subject: Subject,
        method: &str,
        typed: Option<Millis>,
    ) -> Result<Finished, AccountError> {
        let (remember, mut methods) = match &subject.pending {
            Some(p) => (p.remember, vec!["pwd".to_owned()]),
            None => (
                session.record().persistent,
                session.get::<Vec<String>>(METHODS).unwrap_or_default(),
            ),
        };
        if !methods.iter().any(|m| m == method) {
            methods.push(method.to_owned());
        }
        let typed = subject.pending.as_ref().map(|p| p.at).or(typed);
        session.remove(PENDING)?;
        sign_in(session, subject.user, remember, methods, typed)
    }

    /// A TOTP enrolment confirmed by `code` for the subject of `session`:
    /// the authenticator is in force, and a pending sign-in (policy
    /// required one) is finished with it. New recovery codes when the user
    /// had none left (shown once by the caller).
    ///
    /// # Errors
    ///
    /// Database and store failures.
    pub fn enable_totp(
        &self,
        session: &Session<'_>,
        subject: Subject,
        sealed: &str,
        code: &str,
    ) -> Result<Option<Enabled>, AccountError> {
        self.may_add_factor(session, &subject)?;
        let factors = self.users.factors();
        let user = subject.user.id;
        if !factors.confirm_totp(user, sealed, code)? {
            return Ok(None);
        }
        let codes = self.recovery_codes_if_none(user)?;
        let finished = self.complete(session, subject, "otp", None)?;
        self.end_password_only(user, session.key().as_ref())?;
        Ok(Some(Enabled { finished, codes }))
    }

    /// A passkey registered for the subject of `session`: stored, and (as
    /// with a TOTP) a pending sign-in finished with it.
    ///
    /// # Errors
    ///
    /// A credential already registered, or database and store failures.
    pub fn enable_passkey(
        &self,
        session: &Session<'_>,
        subject: Subject,
        credential_id: &[u8],
        name: &str,
        credential: &[u8],
    ) -> Result<Enabled, AccountError> {
        self.may_add_factor(session, &subject)?;
        let user = subject.user.id;
        self.users
            .factors()
            .add_passkey(user, credential_id, name, credential)?;
        let codes = self.recovery_codes_if_none(user)?;
        let finished = self.complete(session, subject, "passkey", None)?;
        self.end_password_only(user, session.key().as_ref())?;
        Ok(Enabled { finished, codes })
    }

    /// Ends `user`'s sessions, but `keep`, that signed in without a second
    /// factor; returns how many. Called when a second factor is turned
    /// on: the user now means the password alone to be not enough, and a
    /// session it made (perhaps a password thief's) would otherwise stay
    /// signed in everywhere but where a factor is asked for. Ended rather
    /// than sent to step up: nothing then has to check, on every request,
    /// whether the user has a factor the session did not give.
    fn end_password_only(
        &self,
        user: UserId,
        keep: Option<&SessionKey>,
    ) -> Result<usize, AccountError> {
        let mut ended = 0;
        for record in self.sessions.list(Some(user), crate::clock::now())? {
            let methods: Vec<String> = record
                .data
                .get(METHODS)
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            if Some(&record.key) != keep
                && !two_factors(&methods)
                && self.sessions.delete(&record.key)?
            {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Whether the subject may add a second factor: a pending sign-in
    /// only when it must set one up; a signed-in session only when it gave
    /// a second factor, or the user has none yet (a password thief could
    /// otherwise add their own authenticator beside the owner's).
    ///
    /// # Errors
    ///
    /// [`Refusal::SecondStepFirst`], or database failures.
    pub fn may_add_factor(
        &self,
        session: &Session<'_>,
        subject: &Subject,
    ) -> Result<(), AccountError> {
        // A user who has a factor now (whenever it was added) gets another
        // only from a session that gave one: never from a sign-in still
        // pending, even one that was sent to set one up before the owner
        // did.
        let has = self.users.factors().summary(subject.user.id)?.any();
        let allowed = match &subject.pending {
            Some(p) => p.enrol && !has,
            None => !has || two_factors(&session.get::<Vec<String>>(METHODS).unwrap_or_default()),
        };
        if allowed {
            Ok(())
        } else {
            Err(AccountError::Refused(Refusal::SecondStepFirst))
        }
    }

    fn recovery_codes_if_none(&self, user: UserId) -> Result<Vec<String>, AccountError> {
        let factors = self.users.factors();
        if factors.summary(user)?.recovery_left > 0 {
            return Ok(Vec::new());
        }
        Ok(factors.new_recovery_codes(user)?)
    }

    /// Signs in with a passkey alone (discoverable, user-verified, checked
    /// by the caller), which counts as two factors.
    ///
    /// # Errors
    ///
    /// Database and store failures.
    pub fn sign_in_passkey(
        &self,
        guard: &Guard<'_>,
        session: &Session<'_>,
        user_id: UserId,
        remember: bool,
        ip: IpAddr,
    ) -> Result<Step, AccountError> {
        let Some(user) = self.users.find_by_id(user_id)? else {
            return Ok(Step::Wrong);
        };
        if let Some(wait) = throttle_wait(guard, &user.username, ip)? {
            return Ok(Step::Throttled(wait));
        }
        if user.disabled {
            record_failure(guard, &user.username, ip, "disabled", None)?;
            return Ok(Step::Wrong);
        }
        session.remove(PENDING)?;
        let now = crate::clock::now();
        let finished = sign_in(
            session,
            user,
            remember,
            vec!["passkey".to_owned()],
            Some(now),
        )?;
        Ok(Step::Finished(finished, None))
    }

    /// Logs and counts a passkey that did not verify (unknown, for another
    /// user, or a bad signature) against `ip` and, when known, the user.
    ///
    /// # Errors
    ///
    /// Throttle-store failures.
    pub fn passkey_failed(
        &self,
        guard: &Guard<'_>,
        user: Option<&User>,
        ip: IpAddr,
    ) -> Result<(), AccountError> {
        let name = user.map_or("-", |u| u.username.as_str());
        Ok(record_failure(guard, name, ip, "wrong_passkey", None)?)
    }

    /// Refuses an administrator signed into `session` who gave no second
    /// factor the power to reset the password or the second factors of a
    /// `target` who has one ([`Refusal::OverrideNeedsSecondFactor`]): else
    /// a stolen password of a password-only administrator would strip
    /// another administrator's factors, set their password and sign in as
    /// them. The same rule as for changing one's own factors; the command
    /// line (the box's owner) does not ask.
    ///
    /// # Errors
    ///
    /// The refusal, or database failures.
    pub fn may_override(&self, session: &Session<'_>, target: &User) -> Result<(), AccountError> {
        let methods = session.get::<Vec<String>>(METHODS).unwrap_or_default();
        if two_factors(&methods) || !self.users.factors().summary(target.id)?.any() {
            Ok(())
        } else {
            Err(AccountError::Refused(Refusal::OverrideNeedsSecondFactor))
        }
    }

    /// Removes every second factor of `target` and ends all their
    /// sessions (an administrator's reset, for a lost phone); returns how
    /// many sessions ended.
    ///
    /// # Errors
    ///
    /// Database and store failures.
    pub fn reset_second_factors(&self, target: &User) -> Result<usize, AccountError> {
        self.users.factors().reset(target.id)?;
        let ended = self.sessions.delete_by_user(target.id, None)?;
        // A sign-in that waited at the set-up (with the password only)
        // while the owner set up the factor reset now would otherwise be
        // free to set up its own.
        self.end_pending(target.id)?;
        Ok(ended)
    }

    /// Signs a user created this moment (first-run setup, self-registration)
    /// into `session`: they have just chosen their password, so there is
    /// nothing to verify. A new id, as with every sign-in. When `policy`
    /// requires a second factor, the new account is not signed in but
    /// sent to set one up first, as a password sign-in would be (and then
    /// on to `next`): a sign-up must not be a way around the policy.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub fn sign_in_created(
        &self,
        session: &Session<'_>,
        user: &User,
        next: &str,
        policy: Policy,
    ) -> Result<Created, AccountError> {
        if policy == Policy::Required {
            pend(session, user, false, next, true)?;
            return Ok(Created::Enrol);
        }
        session.insert(METHODS, ["pwd"])?;
        session.insert(REAUTH_AT, crate::clock::now())?;
        session.login(user, false)?;
        Ok(Created::SignedIn)
    }

    /// Checks that `password` is `user`'s, throttled like a sign-in: a
    /// stolen session must not be able to guess it. A right password
    /// clears no failures (it finishes no sign-in).
    ///
    /// # Errors
    ///
    /// A busy hasher, or a database or throttle-store failure.
    pub fn confirm_password(
        &self,
        guard: &Guard<'_>,
        user: &User,
        password: &str,
        ip: IpAddr,
        purpose: Purpose,
    ) -> Result<Check, AccountError> {
        let username = &user.username;
        let (login, reserved) = match self.check_password(guard, username, password, ip)? {
            Checked::Throttled(wait) => return Ok(Check::Throttled(wait)),
            Checked::Done(login, reserved) => (login, reserved),
        };
        match login {
            Login::Ok(found) if found.id == user.id => {
                // The name's failures stay: only a finished sign-in clears
                // them. Else a password-only session could guess a second
                // step's codes, confirm its password (with new passwords
                // that do not match, so nothing changes), and guess on.
                guard.throttle.passed(reserved, false)?;
                if purpose == Purpose::AdminAction {
                    log(username, "reauth", ip, "");
                }
                Ok(Check::Confirmed)
            }
            _ => {
                let reason = match purpose {
                    Purpose::ChangePassword => "wrong_current_password",
                    Purpose::AdminAction => "wrong_confirm_password",
                };
                record_failure(guard, username, ip, reason, Some(reserved))?;
                Ok(Check::Wrong)
            }
        }
    }

    /// Creates a user. Checks the name and the password rules.
    ///
    /// # Errors
    ///
    /// A bad name or password, a taken name ([`UserError::Taken`]), or a
    /// database failure.
    pub fn create_user(
        &self,
        name: &str,
        password: &str,
        is_admin: bool,
    ) -> Result<User, AccountError> {
        let name = Username::parse(name)?;
        Ok(self.users.create(&name, password, is_admin)?)
    }

    /// Sets `target`'s password (the password rules apply) and ends their
    /// sessions: all of them, or all but `keep` when `keep` is `target`'s
    /// own session (their account page, or an administrator resetting
    /// their own password), which then gets a new id, since new
    /// credentials are a change of privilege. Returns how many sessions
    /// ended.
    ///
    /// # Errors
    ///
    /// A bad password, a busy hasher, or a database or store failure.
    pub fn set_password(
        &self,
        target: &User,
        password: &str,
        keep: Option<&Session<'_>>,
    ) -> Result<usize, AccountError> {
        self.users.set_password(target.id, password)?;
        let keep = keep.filter(|s| s.user_id() == Some(target.id));
        let kept_key: Option<SessionKey> = keep.and_then(Session::key);
        let ended = self.sessions.delete_by_user(target.id, kept_key.as_ref())?;
        self.end_pending(target.id)?;
        if let Some(session) = keep {
            session.regenerate()?;
        }
        Ok(ended)
    }

    /// Disables `target` and ends all their sessions; returns how many.
    /// `actor` is the administrator asking, if any (an administrator may not
    /// disable themselves). The last enabled administrator is not disabled
    /// unless `force`.
    ///
    /// # Errors
    ///
    /// [`AccountError::Refused`], or a database or store failure.
    pub fn disable(
        &self,
        actor: Option<&User>,
        target: &User,
        force: bool,
    ) -> Result<usize, AccountError> {
        self.refuse_removal(actor, target, force, Refusal::DisableSelf)?;
        self.users.set_disabled(target.id, true)?;
        let ended = self.sessions.delete_by_user(target.id, None)?;
        // Refused while the user is disabled, but alive again if they are
        // enabled within its five minutes: ended now.
        self.end_pending(target.id)?;
        Ok(ended)
    }

    /// Lets a disabled user sign in again.
    ///
    /// # Errors
    ///
    /// No such user, or a database failure.
    pub fn enable(&self, target: &User) -> Result<(), AccountError> {
        Ok(self.users.set_disabled(target.id, false)?)
    }

    /// Deletes `target` and all their sessions; returns how many sessions
    /// ended. The rules are those of [`disable`](Self::disable).
    ///
    /// # Errors
    ///
    /// [`AccountError::Refused`], or a database or store failure.
    pub fn delete(
        &self,
        actor: Option<&User>,
        target: &User,
        force: bool,
    ) -> Result<usize, AccountError> {
        self.refuse_removal(actor, target, force, Refusal::DeleteSelf)?;
        // Sessions first: a store outside the users' database (Redis) has no
        // cascade to take them with the user.
        let ended = self.sessions.delete_by_user(target.id, None)?;
        self.end_pending(target.id)?;
        self.users.delete(target.id)?;
        Ok(ended)
    }

    /// Makes `target` an administrator.
    ///
    /// # Errors
    ///
    /// No such user, or a database failure.
    pub fn grant_admin(&self, target: &User) -> Result<(), AccountError> {
        Ok(self.users.set_admin(target.id, true)?)
    }

    /// Takes `target`'s administrator rights; refused for the last enabled
    /// administrator. When `session` is `target`'s own, it gets a new id (a
    /// change of privilege).
    ///
    /// # Errors
    ///
    /// [`AccountError::Refused`], or a database or store failure.
    pub fn revoke_admin(
        &self,
        target: &User,
        session: Option<&Session<'_>>,
    ) -> Result<(), AccountError> {
        self.refuse_last_admin(target, false)?;
        self.users.set_admin(target.id, false)?;
        if let Some(session) = session.filter(|s| s.user_id() == Some(target.id)) {
            session.regenerate()?;
        }
        Ok(())
    }

    /// Ends the session with this `handle` among `owner`'s; when it is
    /// `current` (the caller's own), it is destroyed, cookie and all.
    ///
    /// # Errors
    ///
    /// [`AccountError::NoSuchSession`], or a store failure.
    pub fn end_session(
        &self,
        current: &Session<'_>,
        owner: Owner,
        handle: &str,
    ) -> Result<Ended, AccountError> {
        let user = match owner {
            Owner::User(id) => Some(id),
            Owner::Anyone => None,
        };
        let records = self.sessions.list(user, crate::clock::now())?;
        let target = records
            .iter()
            .find(|r| r.key.handle() == handle)
            .ok_or(AccountError::NoSuchSession)?;
        if current.key().as_ref() == Some(&target.key) {
            current.destroy()?;
            return Ok(Ended::This);
        }
        self.sessions.delete(&target.key)?;
        Ok(Ended::Other)
    }

    /// Ends every session of `user` but `keep`, and every sign-in of
    /// theirs still waiting for its second step; returns how many sessions.
    ///
    /// # Errors
    ///
    /// Store failures.
    pub fn end_sessions(
        &self,
        user: &User,
        keep: Option<&SessionKey>,
    ) -> Result<usize, AccountError> {
        let ended = self.sessions.delete_by_user(user.id, keep)?;
        self.end_pending(user.id)?;
        Ok(ended)
    }

    /// Ends every sign-in of `user` that waits for its second step (or
    /// set-up), wherever it waits; returns how many. Part of every
    /// clean-up of a user's sessions ("end all others", disabling, a new
    /// password, a reset of the factors): the owner cleaning up must not
    /// leave a password thief's pending sign-in running, guessing codes
    /// or waiting at the set-up.
    ///
    /// A pending sign-in is anonymous, so no per-user index finds it: this
    /// reads every live session (as the admin page's list does). A session
    /// that is nothing else is deleted; one signed in as someone keeps that
    /// sign-in and loses only the pending one.
    fn end_pending(&self, user: UserId) -> Result<usize, AccountError> {
        let now = crate::clock::now();
        let mut ended = 0;
        for record in self.sessions.list(None, now)? {
            let waiting = record
                .data
                .get(PENDING)
                .and_then(|v| serde_json::from_value::<Pending>(v.clone()).ok())
                .is_some_and(|p| p.user_id == user);
            if !waiting {
                continue;
            }
            let gone = if record.user_id.is_none() {
                self.sessions.delete(&record.key)?
            } else {
                let mut patch = Patch::default();
                patch.0.insert(PENDING.to_owned(), Change::Remove);
                let touch = Touch {
                    last_seen_at: record.last_seen_at,
                    expires_at: record.expires_at,
                };
                self.sessions.save(&record.key, &patch, touch, now)?
            };
            if gone {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// The rules [`disable`](Self::disable) and [`delete`](Self::delete)
    /// share: an administrator may not remove themselves (`own`, the refusal
    /// to give), nor the last enabled administrator unless `force`.
    fn refuse_removal(
        &self,
        actor: Option<&User>,
        target: &User,
        force: bool,
        own: Refusal,
    ) -> Result<(), AccountError> {
        if actor.is_some_and(|a| a.id == target.id) {
            return Err(AccountError::Refused(own));
        }
        self.refuse_last_admin(target, force)
    }

    /// Refuses to remove (disable, delete, demote) the last enabled
    /// administrator: nobody could then use the admin page. `force` is for
    /// the box's owner at the command line, who can always add another.
    fn refuse_last_admin(&self, target: &User, force: bool) -> Result<(), AccountError> {
        if force || !target.is_admin || target.disabled {
            return Ok(());
        }
        if self.users.count_active_admins()? <= 1 {
            return Err(AccountError::Refused(Refusal::LastAdministrator));
        }
        Ok(())
    }
}

/// A second factor just set up: the sign-in it finished or upgraded, and
/// the recovery codes to show once (empty when the user had some left).
#[derive(Debug)]
pub struct Enabled {
    /// The session, signed in with the new factor.
    pub finished: Finished,
    /// New recovery codes, if any.
    pub codes: Vec<String>,
}

/// Stores a sign-in of `user` that waits for its second step (or, with
/// `enrol`, for a second factor to be set up) in `session`, under a new id.
fn pend(
    session: &Session<'_>,
    user: &User,
    remember: bool,
    next: &str,
    enrol: bool,
) -> Result<(), AccountError> {
    session.insert(
        PENDING,
        Pending {
            user_id: user.id,
            remember,
            next: next.to_owned(),
            at: crate::clock::now(),
            attempts: 0,
            enrol,
            password_set_at: user.password_changed_at,
            user_stamp: user.stamp.clone(),
        },
    )?;
    // A new id now, not only when the sign-in completes: a session id
    // planted in this browser (from a sibling host under the cookie's
    // domain, or over plain HTTP) must not carry the pending sign-in, or
    // its planter would be shown the set-up or the second step and finish
    // the sign-in as this user.
    session.regenerate()?;
    Ok(())
}

/// `user` signed into `session` under a new id with these methods; with
/// `typed`, the time their password (or passkey) was given, which
/// [`REAUTH_AT`] keeps.
fn sign_in(
    session: &Session<'_>,
    user: User,
    remember: bool,
    methods: Vec<String>,
    typed: Option<Millis>,
) -> Result<Finished, AccountError> {
    session.insert(METHODS, &methods)?;
    if let Some(at) = typed {
        session.insert(REAUTH_AT, at)?;
    }
    session.login(&user, remember)?;
    Ok(Finished { user, methods })
}

/// Writes one login event line (never a password).
fn log(username: &str, outcome: &str, ip: IpAddr, extra: &str) {
    logging::line(&logging::login_message(outcome, username, ip, extra));
}

/// What [`Accounts::check_password`] came to.
enum Checked {
    /// Refused by throttling (logged and counted): wait this long.
    Throttled(Duration),
    /// Checked, under this reservation (to confirm or release).
    Done(Login, Reservation),
}

/// How long this username or address must wait, if throttled; logs and
/// counts the refusal.
fn throttle_wait(
    guard: &Guard<'_>,
    username: &str,
    ip: IpAddr,
) -> Result<Option<Duration>, StoreError> {
    let Some(wait) = guard.throttle.retry_after(username, ip)? else {
        return Ok(None);
    };
    Ok(Some(throttled(guard, username, ip, wait)))
}

/// Logs and counts an attempt refused by throttling; returns `wait`.
fn throttled(guard: &Guard<'_>, username: &str, ip: IpAddr, wait: Duration) -> Duration {
    let secs = wait.as_secs().max(1);
    guard.counters.throttled();
    log(username, "throttled", ip, &format!(" retry_after={secs}"));
    wait
}

/// Releases an attempt that was never checked to its end; best effort:
/// what cannot be released lapses ([`crate::auth::throttle::HOLD`]).
fn release(guard: &Guard<'_>, reserved: Reservation) {
    if let Err(e) = guard.throttle.release(reserved) {
        logging::line(&format!(
            "throttle release failed detail={}",
            logging::quote(&e.to_string())
        ));
    }
}

/// Logs and counts a failed check towards a lockout: the attempt it
/// reserved, or (a passkey that did not verify, which reserves nothing)
/// a failure of its own.
fn record_failure(
    guard: &Guard<'_>,
    username: &str,
    ip: IpAddr,
    reason: &str,
    reserved: Option<Reservation>,
) -> Result<(), StoreError> {
    guard.counters.login(reason);
    log(username, "failed", ip, &format!(" reason={reason}"));
    let locks = match reserved {
        Some(r) => guard.throttle.failed(r)?,
        None => guard.throttle.failure(username, ip)?,
    };
    for lock in locks {
        log_lock(username, ip, &lock);
    }
    Ok(())
}

fn log_lock(username: &str, ip: IpAddr, lock: &Lockout) {
    log(
        username,
        "locked",
        ip,
        &format!(" by={} seconds={}", lock.by, lock.duration.as_secs()),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::session::MemoryStore;
    use crate::users::password::Hasher;

    fn users(dir: &tempfile::TempDir) -> Users {
        let pool = crate::db::open(&dir.path().join("u.db"), 2).expect("open");
        Users::new(
            pool,
            Arc::new(Hasher::new(4, 2, std::time::Duration::from_secs(10))),
        )
    }

    fn refusal(result: Result<impl std::fmt::Debug, AccountError>) -> Option<Refusal> {
        match result {
            Err(AccountError::Refused(r)) => Some(r),
            Err(e) => panic!("failed: {e}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn the_last_enabled_administrator_is_refused_unless_forced() {
        let dir = tempfile::tempdir().expect("dir");
        let users = users(&dir);
        let store = MemoryStore::new();
        let accounts = Accounts::new(&users, &store);
        let root = accounts
            .create_user("root", "correct horse", true)
            .expect("root");
        let bob = accounts
            .create_user("bob", "correct horse", false)
            .expect("bob");
        let last = Some(Refusal::LastAdministrator);
        assert_eq!(refusal(accounts.disable(None, &root, false)), last);
        assert_eq!(refusal(accounts.delete(None, &root, false)), last);
        assert_eq!(refusal(accounts.revoke_admin(&root, None)), last);
        assert_eq!(refusal(accounts.disable(Some(&bob), &root, false)), last);
        // Nothing changed.
        let now = users.get_by_name("root").expect("root");
        assert!(now.is_admin && !now.disabled);

        // A disabled administrator is no second one.
        let spare = accounts
            .create_user("spare", "correct horse", true)
            .expect("spare");
        assert_eq!(refusal(accounts.disable(None, &spare, false)), None);
        let spare = users.get_by_name("spare").expect("spare");
        assert_eq!(refusal(accounts.delete(None, &root, false)), last);
        // Removing a disabled administrator was never the last one's removal.
        assert_eq!(refusal(accounts.delete(None, &spare, false)), None);

        // The box's owner may force it.
        assert_eq!(refusal(accounts.disable(None, &root, true)), None);
        assert!(users.get_by_name("root").expect("root").disabled);
        let root = users.get_by_name("root").expect("root");
        assert_eq!(refusal(accounts.delete(None, &root, true)), None);
        assert!(users.find_by_name("root").expect("find").is_none());
    }

    #[test]
    fn an_administrator_cannot_disable_or_delete_themselves() {
        let dir = tempfile::tempdir().expect("dir");
        let users = users(&dir);
        let store = MemoryStore::new();
        let accounts = Accounts::new(&users, &store);
        let a = accounts.create_user("a", "correct horse", true).expect("a");
        accounts.create_user("b", "correct horse", true).expect("b");
        // Not the last administrator, and still refused: the self rule.
        assert_eq!(
            refusal(accounts.disable(Some(&a), &a, false)),
            Some(Refusal::DisableSelf)
        );
        assert_eq!(
            refusal(accounts.delete(Some(&a), &a, true)),
            Some(Refusal::DeleteSelf)
        );
        assert!(!users.get_by_name("a").expect("a").disabled);
    }

    #[test]
    fn new_users_follow_the_name_and_password_rules() {
        let dir = tempfile::tempdir().expect("dir");
        let users = users(&dir);
        let store = MemoryStore::new();
        let accounts = Accounts::new(&users, &store);
        for (name, password) in [("bad name", "correct horse"), ("carol", "short")] {
            let made = accounts.create_user(name, password, false);
            assert!(matches!(made, Err(AccountError::User(_))), "{made:?}");
        }
        assert_eq!(users.count().expect("count"), 0);
    }
}
