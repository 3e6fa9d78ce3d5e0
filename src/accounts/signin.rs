//! Signing in: the password step (throttled, one bcrypt verify on the fair
//! queue), the second step, a passkey alone, the sign-in after
//! registration, and a password confirmed again; the login log lines.

use std::net::IpAddr;
use std::time::Duration;

use crate::auth::throttle::{Lockout, Reservation, Reserve};
use crate::clock::Millis;
use crate::logging;
use crate::session::keys::OIDC_SID;
use crate::session::{Session, StoreError};
use crate::users::factors::{CodeCheck, Policy};
use crate::users::password::{PasswordError, Source, Turn};
use crate::users::{Login, MAX_USERNAME, User, UserError, UserId};

use super::*;

impl Accounts<'_> {
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
                let (has_factor, reserved) = self.has_factor(guard, &user, reserved)?;
                guard.throttle.passed(reserved, !has_factor)?;
                let method = self.password_method(&user);
                return Ok(Attempt::Verified(Verified {
                    user,
                    has_factor,
                    method,
                }));
            }
            Login::UnknownUser => "unknown_user",
            Login::WrongPassword => "wrong_password",
            Login::Disabled => "disabled",
        };
        record_failure(guard, username, ip, reason, Some(reserved), true)?;
        self.record_sign_in_failure(
            Kind::SignIn,
            username,
            reason,
            format!("method=password reason={reason}"),
        );
        Ok(Attempt::Failed)
    }

    /// Who checked `user`'s right password, for the audit log: the
    /// directory for a user who comes from it, else gatehouse. Read only
    /// where a directory is configured; a profile that cannot be read
    /// says `password` rather than fail a sign-in over a detail.
    fn password_method(&self, user: &User) -> &'static str {
        if self.users.directory().is_none() {
            return "password";
        }
        match self.users.profile(user.id) {
            Ok(Some(p)) if p.source == crate::users::source::Source::Ldap => "directory",
            _ => "password",
        }
    }

    /// Whether `user`, whose password was right under `reserved`, has a
    /// second factor; the reservation comes back to be confirmed, or is
    /// released when the factors cannot be read.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub(super) fn has_factor(
        &self,
        guard: &Guard<'_>,
        user: &User,
        reserved: Reservation,
    ) -> Result<(bool, Reservation), AccountError> {
        match self.users.factors().summary(user.id) {
            Ok(summary) => Ok((summary.any(), reserved)),
            Err(e) => {
                release(guard, reserved);
                Err(e.into())
            }
        }
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
    pub(super) fn check_password(
        &self,
        guard: &Guard<'_>,
        username: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<Checked, AccountError> {
        // Whether the name is a user's: their name keeps a record of its
        // own however many others a flood leaves, and their attempt never
        // waits with the flood's overflow record (see `auth::throttle`).
        // Wrong names and right ones still get the same answer, in the
        // same time, for a wrong password.
        // (Only a name that could be a user's is looked up: PostgreSQL
        // refuses a NUL in text, and no user has one.)
        let known = crate::users::Username::parse(username).is_ok()
            && self.users.find_by_name(username)?.is_some();
        let look = guard.throttle.look(username, ip, known)?;
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
                match guard.throttle.reserve(username, ip, known) {
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
        self.sign_in(
            session,
            verified.user,
            remember,
            vec!["pwd".to_owned()],
            Some(now),
            (Kind::SignIn, verified.method),
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
        let then = if has { "second_step" } else { "enrol" };
        self.record_pending(&verified.user, verified.method, then);
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
            record_failure(
                guard,
                &user.username,
                ip,
                "wrong_code",
                Some(reserved),
                true,
            )?;
            let reason = match proof {
                Proof::Passkey(_) => "wrong_passkey",
                Proof::Code(_) | Proof::Recovery(_) => "wrong_code",
            };
            self.record_failed_on(
                Kind::SecondStep,
                &user.username,
                format!("method={} reason={reason}", proof.method()),
            );
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
    pub(super) fn complete(
        &self,
        session: &Session<'_>,
        subject: Subject,
        method: &'static str,
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
        self.sign_in(
            session,
            subject.user,
            remember,
            methods,
            typed,
            (Kind::SecondStep, method),
        )
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
            record_failure(guard, &user.username, ip, "disabled", None, true)?;
            self.record_failed_on(
                Kind::SignIn,
                &user.username,
                "method=passkey reason=disabled".to_owned(),
            );
            return Ok(Step::Wrong);
        }
        session.remove(PENDING)?;
        let now = crate::clock::now();
        let finished = self.sign_in(
            session,
            user,
            remember,
            vec!["passkey".to_owned()],
            Some(now),
            (Kind::SignIn, "passkey"),
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
        record_failure(guard, name, ip, "wrong_passkey", None, user.is_some())?;
        self.record_failed(
            Kind::SignIn,
            user.map(|u| u.username.as_str()),
            "method=passkey reason=wrong_passkey".to_owned(),
        );
        Ok(())
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
        // Not logged as a sign-in: the sign-up has its own line (and the
        // audit log its `user_created`).
        let _ = self.sign_in(
            session,
            user.clone(),
            false,
            vec!["pwd".to_owned()],
            Some(crate::clock::now()),
            (Kind::SignIn, "password"),
        )?;
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
                let name = Some(username.as_str());
                let confirmed = |what: &str| {
                    self.users.audit().record(
                        &self.origin,
                        &Event::ok(Kind::PasswordConfirmed, name, name)
                            .detail(format!("for={what}")),
                    );
                };
                match purpose {
                    Purpose::AdminAction => {
                        log(username, "reauth", ip, "");
                        confirmed("admin");
                    }
                    Purpose::SignInAgain => {
                        log(username, "reauth", ip, " for=app");
                        confirmed("app");
                    }
                    // The new password it leads to is what is recorded.
                    Purpose::ChangePassword => {}
                }
                Ok(Check::Confirmed)
            }
            _ => {
                let reason = match purpose {
                    Purpose::ChangePassword => "wrong_current_password",
                    Purpose::AdminAction => "wrong_confirm_password",
                    Purpose::SignInAgain => "wrong_reauth_password",
                };
                record_failure(guard, username, ip, reason, Some(reserved), true)?;
                self.record_failed_on(
                    Kind::PasswordConfirmed,
                    username,
                    format!("reason={reason}"),
                );
                Ok(Check::Wrong)
            }
        }
    }
}

/// Stores a sign-in of `user` that waits for its second step (or, with
/// `enrol`, for a second factor to be set up) in `session`, under a new id.
pub(super) fn pend(
    session: &Session<'_>,
    user: &User,
    remember: bool,
    next: &str,
    enrol: bool,
) -> Result<(), AccountError> {
    pend_as(
        session,
        Pending {
            user_id: user.id,
            remember,
            next: next.to_owned(),
            at: crate::clock::now(),
            attempts: 0,
            enrol,
            password_set_at: user.password_changed_at,
            user_stamp: user.stamp.clone(),
            replace: false,
        },
    )
}

/// Stores `pending` in `session`, under a new id (see [`pend`]).
pub(super) fn pend_as(session: &Session<'_>, pending: Pending) -> Result<(), AccountError> {
    session.insert(PENDING, pending)?;
    // A new id now, not only when the sign-in completes: a session id
    // planted in this browser (from a sibling host under the cookie's
    // domain, or over plain HTTP) must not carry the pending sign-in, or
    // its planter would be shown the set-up or the second step and finish
    // the sign-in as this user.
    session.regenerate()?;
    Ok(())
}

impl Accounts<'_> {
    /// `user` signed into `session` under a new id with these methods;
    /// with `typed`, the time their password (or passkey) was given,
    /// which [`REAUTH_AT`] keeps.
    ///
    /// A sign-in as someone else over a live session replaces the first
    /// user in this browser as signing out would: the apps they signed in
    /// to through it lose their tokens, and the new user gets a `sid` of
    /// their own (never one an app knows as the first user's session).
    ///
    /// `(kind, method)` is what the audit log records once the sign-in is
    /// committed: a sign-in or a second step, and how it was finished.
    pub(super) fn sign_in(
        &self,
        session: &Session<'_>,
        user: User,
        remember: bool,
        methods: Vec<String>,
        typed: Option<Millis>,
        (kind, method): (Kind, &'static str),
    ) -> Result<Finished, AccountError> {
        if session.user_id() != Some(user.id)
            && let Some(sid) = session.get::<String>(OIDC_SID)
        {
            self.grants
                .grants_delete_for_session(&sid, crate::clock::now())?;
            self.grants_ended();
            session.remove(OIDC_SID)?;
        }
        session.insert(METHODS, &methods)?;
        if let Some(at) = typed {
            session.insert(REAUTH_AT, at)?;
        }
        session.login(&user, remember)?;
        Ok(Finished {
            user,
            methods,
            kind,
            method,
            trail: Box::new((self.users.audit().clone(), self.origin.clone())),
        })
    }
}

/// Writes one login event line (never a password).
pub(super) fn log(username: &str, outcome: &str, ip: IpAddr, extra: &str) {
    logging::line(&logging::login_message(outcome, username, ip, extra));
}

/// What [`Accounts::check_password`] came to.
pub(super) enum Checked {
    /// Refused by throttling (logged and counted): wait this long.
    Throttled(Duration),
    /// Checked, under this reservation (to confirm or release).
    Done(Login, Reservation),
}

/// How long this username or address must wait, if throttled; logs and
/// counts the refusal.
pub(super) fn throttle_wait(
    guard: &Guard<'_>,
    username: &str,
    ip: IpAddr,
) -> Result<Option<Duration>, StoreError> {
    // Only ever asked for a user who exists (a second step, a passkey).
    let Some(wait) = guard.throttle.retry_after(username, ip, true)? else {
        return Ok(None);
    };
    Ok(Some(throttled(guard, username, ip, wait)))
}

/// Logs and counts an attempt refused by throttling; returns `wait`.
pub(super) fn throttled(guard: &Guard<'_>, username: &str, ip: IpAddr, wait: Duration) -> Duration {
    let secs = wait.as_secs().max(1);
    guard.counters.throttled();
    log(username, "throttled", ip, &format!(" retry_after={secs}"));
    wait
}

/// Releases an attempt that was never checked to its end; best effort:
/// what cannot be released lapses ([`crate::auth::throttle::HOLD`]).
pub(super) fn release(guard: &Guard<'_>, reserved: Reservation) {
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
pub(super) fn record_failure(
    guard: &Guard<'_>,
    username: &str,
    ip: IpAddr,
    reason: &str,
    reserved: Option<Reservation>,
    known: bool,
) -> Result<(), StoreError> {
    guard.counters.login(reason);
    log(username, "failed", ip, &format!(" reason={reason}"));
    let locks = match reserved {
        Some(r) => guard.throttle.failed(r)?,
        None => guard.throttle.failure(username, ip, known)?,
    };
    for lock in locks {
        log_lock(username, ip, &lock);
    }
    Ok(())
}

pub(super) fn log_lock(username: &str, ip: IpAddr, lock: &Lockout) {
    log(
        username,
        "locked",
        ip,
        &format!(" by={} seconds={}", lock.by, lock.duration.as_secs()),
    );
}
