//! Credentials without a session: a personal access token (`Bearer`, or
//! as Basic's password) and the account password over Basic. Checked like
//! sign-ins (throttled per address, and per name for a password; logged
//! `via=token` or `via=basic`), but nothing is stored: no session, no
//! cookie.
//!
//! - A token is looked up by its hash (see [`crate::users::tokens`]); a
//!   token of the wrong shape, unknown, expired, revoked or ended by a new
//!   password fails alike, and counts against the address.
//! - A password goes through the same bcrypt queue and throttle as the
//!   sign-in page, once a minute at most for the same name and password
//!   ([`crate::users::basic`]); a user with a second factor is refused (a
//!   password alone must never pass where a sign-in would ask for more:
//!   they use a token).

use std::net::IpAddr;

use super::signin::{Checked, log, log_lock, release};
use super::{AccountError, Accounts, Guard};
use crate::clock::Millis;
use crate::users::audit::{Event, Kind};
use crate::users::tokens::Token;
use crate::users::{Login, User, Username};

/// What a credential proved.
#[derive(Debug)]
pub enum Proved {
    /// A live token and its enabled user.
    Token(Token, User),
    /// The account password of an enabled user without a second factor.
    Password(User),
    /// Nothing: the same for every reason (logged with it).
    Nothing,
}

impl Accounts<'_> {
    /// Checks a personal access token from `ip`; `name`, when the token came
    /// as Basic's password, must be its user's.
    ///
    /// # Errors
    ///
    /// Database and throttle-store failures.
    pub fn check_token(
        &self,
        guard: &Guard<'_>,
        token: &str,
        name: Option<&str>,
        ip: IpAddr,
        now: Millis,
    ) -> Result<Proved, AccountError> {
        let who = name.unwrap_or("");
        if let Some(wait) = guard.throttle.address_wait(ip)? {
            guard.counters.throttled();
            log(
                who,
                "throttled",
                ip,
                &format!(" via=token retry_after={}", wait.as_secs().max(1)),
            );
            return Ok(Proved::Nothing);
        }
        let found = self.users.tokens().check(token, now)?;
        let reason = match found {
            Some((token, user)) => {
                if name.is_none_or(|n| n.eq_ignore_ascii_case(&user.username)) {
                    self.used_without_session(&user, "token", &format!(" token={}", token.id));
                    return Ok(Proved::Token(token, user));
                }
                "token_of_another_user"
            }
            None => "unknown_token",
        };
        guard.counters.login(reason);
        log(who, "failed", ip, &format!(" reason={reason} via=token"));
        self.record_failed(Kind::SignIn, name, format!("method=token reason={reason}"));
        for lock in guard.throttle.address_failure(ip)? {
            log_lock(who, ip, &lock);
        }
        Ok(Proved::Nothing)
    }

    /// Checks `name`'s account password from `ip`, as sent over Basic to
    /// an app that allows it: a right password of a user with a second
    /// factor proves nothing.
    ///
    /// # Errors
    ///
    /// A busy hasher; database and throttle-store failures.
    pub fn check_basic_password(
        &self,
        guard: &Guard<'_>,
        name: &str,
        password: &str,
        ip: IpAddr,
        now: Millis,
    ) -> Result<Proved, AccountError> {
        if Username::parse(name).is_err() || name != crate::users::trim_spaces(name) {
            return self.basic_failed(guard, name, ip, "unknown_user", None);
        }
        let cache = self.users.basic_cache();
        if let Some((id, password_at)) = cache.get(name, password, now) {
            // Still theirs: the same user, enabled, with the password it
            // was verified under (a new one, here or on another instance,
            // ends it at once).
            if let Some(user) = self.users.find_by_id(id)?
                && !user.disabled
                && user.password_changed_at == password_at
                && user.username.eq_ignore_ascii_case(name)
            {
                self.used_without_session(&user, "basic", "");
                return Ok(Proved::Password(user));
            }
        }
        let (login, reserved) = match self.check_password(guard, name, password, ip)? {
            Checked::Throttled(_) => return Ok(Proved::Nothing),
            Checked::Done(login, reserved) => (login, reserved),
        };
        let reason = match login {
            Login::Ok(user) => {
                let (has_factor, reserved) = self.has_factor(guard, &user, reserved)?;
                if has_factor {
                    // The right password, but it is not enough: not a
                    // failure to lock the user out for, and no pass.
                    release(guard, reserved);
                    guard.counters.login("second_factor_needed");
                    log(
                        name,
                        "refused",
                        ip,
                        " reason=second_factor_needed via=basic (use a token)",
                    );
                    self.record_failed_on(
                        Kind::SignIn,
                        name,
                        "method=basic reason=second_factor_needed".to_owned(),
                    );
                    return Ok(Proved::Nothing);
                }
                guard.throttle.passed(reserved, true)?;
                cache.put(name, password, &user, now);
                self.used_without_session(&user, "basic", "");
                return Ok(Proved::Password(user));
            }
            Login::UnknownUser => "unknown_user",
            Login::WrongPassword => "wrong_password",
            Login::Disabled => "disabled",
        };
        self.basic_failed(guard, name, ip, reason, Some(reserved))
    }

    fn basic_failed(
        &self,
        guard: &Guard<'_>,
        name: &str,
        ip: IpAddr,
        reason: &str,
        reserved: Option<crate::auth::throttle::Reservation>,
    ) -> Result<Proved, AccountError> {
        guard.counters.login(reason);
        log(name, "failed", ip, &format!(" reason={reason} via=basic"));
        self.record_sign_in_failure(
            Kind::SignIn,
            name,
            reason,
            format!("method=basic reason={reason}"),
        );
        let locks = match reserved {
            Some(r) => guard.throttle.failed(r)?,
            None => guard.throttle.address_failure(ip)?,
        };
        for lock in locks {
            log_lock(name, ip, &lock);
        }
        Ok(Proved::Nothing)
    }

    /// Records a request let in by a token or Basic: once an hour per
    /// user, method and address (see
    /// [`crate::users::audit::Audit::record_quietly`]), since these come
    /// with every request a script makes.
    fn used_without_session(&self, user: &crate::users::User, method: &str, extra: &str) {
        let name = Some(user.username.as_str());
        let ip = self
            .origin
            .ip
            .map_or_else(|| "-".to_owned(), crate::logging::ip_text);
        let key = format!("{method}:{}:{ip}{extra}", user.id);
        self.users.audit().record_quietly(
            &self.origin,
            &Event::ok(Kind::SignIn, name, name).detail(format!("method={method}{extra}")),
            &key,
        );
    }
}
