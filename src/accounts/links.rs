//! The flows behind links that stand in for e-mail (their tokens and
//! rows are `users::links`'): an invite that makes an account and signs it
//! in, a reset link that sets a password and ends what the old one let in,
//! and a sign-in link that signs one more browser in as its maker.
//!
//! - **Guessing**: every token or code that does not work counts as a
//!   failure of the address in the sign-in throttle, and a throttled
//!   address is told nothing about any link ([`Accounts::link_wait`],
//!   [`Accounts::link_failed`]); tokens are 256 bits, but sign-in codes
//!   are short.
//! - **Invites** sign the new account in as self-registration does: under
//!   `two_factor = "required"` it sets up a second factor first.
//! - **Reset links**: the new password ends every other session of the
//!   user, their pending sign-ins, their apps' OpenID Connect grants and
//!   (through `password_changed_at`) their tokens and sign-in links. Then
//!   the browser that used the link goes on as a sign-in with that
//!   password would: signed in, or asked for the user's second factor, or
//!   (policy, or a link that asks for a new factor) sent to set one up.
//!   Never more than the password gives: an administrator who made the
//!   link and used it themselves would still meet the user's second
//!   factor (unless the link asked for a new one, which only an
//!   administrator who may reset factors can make).
//! - **Sign-in links** carry the methods of the session that made them:
//!   a user with a second factor makes one only from a session that gave
//!   it, and the new session signs in the same way (with `link` added),
//!   so it is exactly as good as the maker's and never better. It
//!   carries no recent password: an administrator's action or an app's
//!   `prompt=login` asks for the password again.

use std::net::IpAddr;
use std::time::Duration;

use crate::clock::Millis;
use crate::session::{Session, SessionKey};
use crate::users::factors::Policy;
use crate::users::links::{MadeSignin, Redeemed};
use crate::users::{User, Username};

use super::signin::{log, log_lock, pend, pend_as};
use super::*;

/// Where a new account or a new password sends the browser once signed in.
const NEXT_CREATED: &str = "/?done=registered";
const NEXT_RESET: &str = "/?done=password-set";

/// What using an invite came to.
#[derive(Debug)]
pub enum Accepted {
    /// The account is made (or, for a named user, its password set): the
    /// user, and whether they are signed in or set up a factor first.
    Done(User, Created),
    /// The invite does not work (used up meanwhile, expired, revoked).
    Unusable,
    /// The name is taken (no use was spent).
    Taken,
}

/// What using a reset link came to.
#[derive(Debug)]
pub enum AfterReset {
    /// Signed in with the new password.
    Finished(Finished),
    /// Pending: the user gives their second factor.
    SecondStep,
    /// Pending: the user sets up a (new) second factor.
    Enrol,
}

/// What using a sign-in link came to.
#[derive(Debug)]
pub enum LinkSignIn {
    /// Signed in; [`Finished::committed`] logs it.
    Finished(Finished),
    /// Unknown, used, expired, revoked or ended (logged and counted).
    Unknown,
    /// The address is throttled: wait this long.
    Throttled(Duration),
}

impl Accounts<'_> {
    /// How long `ip` must wait before a link or code from it is looked at,
    /// if it is throttled (logged and counted).
    ///
    /// # Errors
    ///
    /// Throttle-store failures.
    pub fn link_wait(
        &self,
        guard: &Guard<'_>,
        ip: IpAddr,
        via: &str,
    ) -> Result<Option<Duration>, AccountError> {
        let Some(wait) = guard.throttle.address_wait(ip)? else {
            return Ok(None);
        };
        guard.counters.throttled();
        log(
            "-",
            "throttled",
            ip,
            &format!(" via={via} retry_after={}", wait.as_secs().max(1)),
        );
        Ok(Some(wait))
    }

    /// A link or code from `ip` that did not work: a failure of the
    /// address, as a wrong password is (never the token in the log).
    ///
    /// # Errors
    ///
    /// Throttle-store failures.
    pub fn link_failed(
        &self,
        guard: &Guard<'_>,
        ip: IpAddr,
        via: &str,
    ) -> Result<(), AccountError> {
        // audit: signin_failed (reason unknown_link, the kind of link in `via`)
        guard.counters.login("unknown_link");
        log(
            "-",
            "failed",
            ip,
            &format!(" reason=unknown_link via={via}"),
        );
        for lock in guard.throttle.address_failure(ip)? {
            log_lock("-", ip, &lock);
        }
        Ok(())
    }

    /// Uses invite `token`: makes the user `name` with `password` (`name`
    /// is `None` for an invite for a named user, whose first password this
    /// sets), then signs them into `session` (see
    /// [`sign_in_created`](Self::sign_in_created)).
    ///
    /// # Errors
    ///
    /// A bad name or password ([`AccountError::User`]), a busy hasher,
    /// database and store failures.
    pub fn accept_invite(
        &self,
        session: &Session<'_>,
        token: &str,
        name: Option<&str>,
        password: &str,
        policy: Policy,
        ip: IpAddr,
    ) -> Result<Accepted, AccountError> {
        let name = name.map(Username::parse).transpose()?;
        let id = match self.users.redeem_invite(token, name.as_ref(), password)? {
            Redeemed::Done(id) => id,
            Redeemed::Unusable => return Ok(Accepted::Unusable),
            Redeemed::Taken => return Ok(Accepted::Taken),
        };
        let user = self
            .users
            .find_by_id(id)?
            .ok_or(crate::users::UserError::NotFound)?;
        // audit: user_created (through an invite; a named user's: password_set)
        log(&user.username, "created", ip, " via=invite");
        let created = self.sign_in_created(session, &user, NEXT_CREATED, policy)?;
        Ok(Accepted::Done(user, created))
    }

    /// Uses reset link `token` to set its user's password to `password`,
    /// ends what the old one let in (every other session, pending sign-in,
    /// app grant, token and sign-in link of theirs), and goes on in
    /// `session` as a sign-in with the new password would (see the
    /// module's notes); `None` for a link that does not work.
    ///
    /// # Errors
    ///
    /// A bad password, a busy hasher, database and store failures.
    pub fn reset_with_link(
        &self,
        session: &Session<'_>,
        token: &str,
        password: &str,
        policy: Policy,
        ip: IpAddr,
    ) -> Result<Option<AfterReset>, AccountError> {
        let Some((user, new_factor)) = self.users.redeem_reset_link(token, password)? else {
            return Ok(None);
        };
        // audit: password_reset (through a reset link)
        log(
            &user.username,
            "password_reset",
            ip,
            if new_factor {
                " via=reset_link new_factor=yes"
            } else {
                " via=reset_link"
            },
        );
        // This browser, when it is signed in as the user already, stays
        // (under a new id, below), as on the account page; every other
        // session of theirs ends.
        let own = session.user_id() == Some(user.id);
        let kept: Option<SessionKey> = if own { session.key() } else { None };
        let kept_sid = if own {
            session.get::<String>(crate::session::keys::OIDC_SID)
        } else {
            None
        };
        self.sessions.delete_by_user(user.id, kept.as_ref())?;
        self.end_grants(user.id, kept_sid.as_deref())?;
        self.end_pending(user.id)?;
        let now = crate::clock::now();
        let pending = |enrol: bool, replace: bool| Pending {
            user_id: user.id,
            remember: false,
            next: NEXT_RESET.to_owned(),
            at: now,
            attempts: 0,
            enrol,
            password_set_at: user.password_changed_at,
            user_stamp: user.stamp.clone(),
            replace,
        };
        if new_factor {
            pend_as(session, pending(true, true))?;
            return Ok(Some(AfterReset::Enrol));
        }
        if self.users.factors().summary(user.id)?.any() {
            pend_as(session, pending(false, false))?;
            return Ok(Some(AfterReset::SecondStep));
        }
        if policy == Policy::Required {
            pend(session, &user, false, NEXT_RESET, true)?;
            return Ok(Some(AfterReset::Enrol));
        }
        let finished = self.sign_in(
            session,
            user,
            false,
            vec!["pwd".to_owned()],
            Some(now),
            (Kind::SignIn, "reset_link"),
        )?;
        Ok(Some(AfterReset::Finished(finished)))
    }

    /// Makes a sign-in link for a new device for `user`, signed into
    /// `session`: it carries the session's methods. A user with a second
    /// factor makes one only from a session that gave it.
    ///
    /// # Errors
    ///
    /// [`Refusal::SecondStepFirst`]; too many waiting
    /// ([`crate::users::UserError::InvalidLink`]); database failures.
    pub fn make_signin_link(
        &self,
        session: &Session<'_>,
        user: &User,
        now: Millis,
    ) -> Result<MadeSignin, AccountError> {
        let methods: Vec<String> = session
            .get::<Vec<String>>(METHODS)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m != "link")
            .collect();
        if !two_factors(&methods) && self.users.factors().summary(user.id)?.any() {
            return Err(AccountError::Refused(Refusal::SecondStepFirst));
        }
        // audit: signin_link_created
        Ok(self.users.create_signin_link(user, &methods, now)?)
    }

    /// Signs `session` in with the sign-in link whose token or code is
    /// `secret`, from `ip` with `agent` (recorded on the link): once, as
    /// its maker, with its maker's methods and `link`. Throttled and
    /// logged like a password.
    ///
    /// # Errors
    ///
    /// Database, store and throttle-store failures.
    pub fn sign_in_with_link(
        &self,
        guard: &Guard<'_>,
        session: &Session<'_>,
        secret: &str,
        ip: IpAddr,
        agent: &str,
    ) -> Result<LinkSignIn, AccountError> {
        if let Some(wait) = self.link_wait(guard, ip, "link")? {
            return Ok(LinkSignIn::Throttled(wait));
        }
        let redeemed =
            self.users
                .redeem_signin_link(secret, &crate::logging::ip_text(ip), agent)?;
        let Some((link, user)) = redeemed else {
            self.link_failed(guard, ip, "link")?;
            return Ok(LinkSignIn::Unknown);
        };
        let mut methods = link.methods;
        methods.push("link".to_owned());
        // No password was given in this browser: a moment some earlier
        // sign-in here left must not count as one.
        session.remove(PENDING)?;
        session.remove(REAUTH_AT)?;
        // audit: signin_link_used (the sign-in itself: login ok via=link)
        let finished = self.sign_in(session, user, false, methods, None, (Kind::SignIn, "link"))?;
        Ok(LinkSignIn::Finished(finished))
    }
}
