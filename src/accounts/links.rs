//! The flows behind links that stand in for e-mail (their tokens and
//! rows are `users::links`'): an invite that makes an account and signs it
//! in, a reset link that sets a password and ends what the old one let in,
//! and a sign-in link that signs one more browser in as its maker.
//!
//! - **Guessing**: every token or code that does not work counts as a
//!   failure of the address in the sign-in throttle, and a throttled
//!   address is told nothing about any link ([`Accounts::link_attempt`],
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
//! - **The audit log**: a link made or revoked is recorded as done by the
//!   caller's actor (an administrator, the command line, the user) to
//!   the user it is for; a link used, as done by that user: an invite's
//!   account as a sign-up is (`user_created`, by no one), a named user's
//!   first password as `password_changed` with `first=yes`, a reset
//!   link's as `password_reset` (and the factors a new one replaced as
//!   `factors_reset`); a link or code that does not work as a failed
//!   sign-in (`reason=unknown_link`), once the throttle let it through
//!   and within the log's flood budget. Never a token or a code.

use std::net::IpAddr;
use std::time::Duration;

use crate::auth::throttle::Reserve;
use crate::clock::Millis;
use crate::logging;
use crate::session::{Session, SessionKey};
use crate::users::factors::Policy;
use crate::users::links::{Invite, LinkId, MadeSignin, NewInvite, Redeemed, ResetLink};
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

/// A link or code from an address, let through the throttle: one of the
/// attempts the address may have checked at once (a slot reserved before
/// the check, as a password's is: a burst from one address, or across
/// instances, gets no more checked than the limit). Given to
/// [`Accounts::link_failed`] when the link does not work; dropped
/// otherwise, which frees the slot.
#[must_use = "a link that does not work is given to `link_failed`"]
pub struct LinkAttempt<'g> {
    throttle: &'g crate::auth::throttle::Throttle,
    reservation: Option<crate::auth::throttle::Reservation>,
}

impl std::fmt::Debug for LinkAttempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkAttempt").finish_non_exhaustive()
    }
}

impl Drop for LinkAttempt<'_> {
    fn drop(&mut self) {
        if let Some(reserved) = self.reservation.take()
            && let Err(e) = self.throttle.release(reserved)
        {
            // Best effort: what cannot be released lapses.
            logging::line(&format!(
                "throttle release failed detail={}",
                logging::quote(&e.to_string())
            ));
        }
    }
}

/// Whether a link or code from an address may be looked at.
#[derive(Debug)]
pub enum LinkTurn<'g> {
    /// It may: its slot, for [`Accounts::link_failed`] if it does not work.
    Go(LinkAttempt<'g>),
    /// The address is throttled (or has as many being checked as it may):
    /// wait this long.
    Wait(Duration),
}

impl Accounts<'_> {
    /// Whether a link or code from `ip` may be looked at: a slot of the
    /// address's attempts, or how long to wait (logged and counted).
    ///
    /// # Errors
    ///
    /// Throttle-store failures.
    pub fn link_attempt<'g>(
        &self,
        guard: &Guard<'g>,
        ip: IpAddr,
        via: &str,
    ) -> Result<LinkTurn<'g>, AccountError> {
        let wait = match guard.throttle.reserve_address(ip)? {
            Reserve::Granted(reserved) => {
                return Ok(LinkTurn::Go(LinkAttempt {
                    throttle: guard.throttle,
                    reservation: Some(reserved),
                }));
            }
            Reserve::Locked(wait) => wait,
            // As many from the address as it may have are being checked:
            // one of them may lock it.
            Reserve::Full | Reserve::Spent => Duration::from_secs(1),
        };
        guard.counters.throttled();
        log(
            "-",
            "throttled",
            ip,
            &format!(" via={via} retry_after={}", wait.as_secs().max(1)),
        );
        Ok(LinkTurn::Wait(wait))
    }

    /// A link or code from `ip` that did not work: a failure of the
    /// address, as a wrong password is (never the token in the log),
    /// counted on the slot `attempt` reserved.
    ///
    /// # Errors
    ///
    /// Throttle-store failures.
    pub fn link_failed(
        &self,
        guard: &Guard<'_>,
        mut attempt: LinkAttempt<'_>,
        ip: IpAddr,
        via: &str,
    ) -> Result<(), AccountError> {
        guard.counters.login("unknown_link");
        log(
            "-",
            "failed",
            ip,
            &format!(" reason=unknown_link via={via}"),
        );
        // Let through the throttle (the attempt holds its slot), then the
        // log's flood budget.
        self.record_failed(
            Kind::SignIn,
            None,
            format!("method={via} reason=unknown_link"),
        );
        if let Some(reserved) = attempt.reservation.take() {
            for lock in guard.throttle.failed(reserved)? {
                log_lock("-", ip, &lock);
            }
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
        // Which invite it is, for the audit log: read before its use is
        // taken (the use itself is taken, or not, in one transaction).
        let invite = self.users.find_invite(token, crate::clock::now())?;
        let id = match self.users.redeem_invite(token, name.as_ref(), password)? {
            Redeemed::Done(id) => id,
            Redeemed::Unusable => return Ok(Accepted::Unusable),
            Redeemed::Taken => return Ok(Accepted::Taken),
        };
        let user = self
            .users
            .find_by_id(id)?
            .ok_or(crate::users::UserError::NotFound)?;
        self.record_invite_used(&user, invite.as_ref(), name.is_none());
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
        // Which link it is, for the audit log: read before it is used.
        let link = self
            .users
            .find_reset_link(token, crate::clock::now())?
            .map(|(link, _)| link);
        let Some((user, new_factor)) = self.users.redeem_reset_link(token, password)? else {
            return Ok(None);
        };
        // Recorded once the password is set (committed), before what it
        // ends: the user, through the link an administrator gave them.
        let name = Some(user.username.as_str());
        let about = link.as_ref().map_or_else(String::new, |l| {
            format!("link={} made_by={} ", l.id, made_by(&l.created_by))
        });
        self.record_event(
            &Event::ok(Kind::PasswordReset, name, name)
                .detail(format!("{about}new_factor={}", yes_no(new_factor))),
        );
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
        let made = self.users.create_signin_link(user, &methods, now)?;
        let name = Some(user.username.as_str());
        self.record_event(
            &Event::ok(Kind::SigninLinkCreated, name, name).detail(format!(
                "link={} methods={}",
                made.link.id,
                made.link.methods.join(",")
            )),
        );
        Ok(made)
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
        let attempt = match self.link_attempt(guard, ip, "link")? {
            LinkTurn::Go(attempt) => attempt,
            LinkTurn::Wait(wait) => return Ok(LinkSignIn::Throttled(wait)),
        };
        let redeemed =
            self.users
                .redeem_signin_link(secret, &crate::logging::ip_text(ip), agent)?;
        let Some((link, user)) = redeemed else {
            self.link_failed(guard, attempt, ip, "link")?;
            return Ok(LinkSignIn::Unknown);
        };
        drop(attempt);
        let mut methods = link.methods;
        methods.push("link".to_owned());
        // No password was given in this browser: a moment some earlier
        // sign-in here left must not count as one.
        session.remove(PENDING)?;
        session.remove(REAUTH_AT)?;
        // Recorded by `Finished::committed` as a sign-in, method `link`.
        let finished = self.sign_in(session, user, false, methods, None, (Kind::SignIn, "link"))?;
        Ok(LinkSignIn::Finished(finished))
    }
}

impl Accounts<'_> {
    /// Revokes `user`'s unused sign-in link `id` (their own only).
    ///
    /// # Errors
    ///
    /// [`crate::users::UserError::NoSuchLink`] (also for another user's);
    /// database failures.
    pub fn revoke_signin_link(&self, id: LinkId, user: &User) -> Result<(), AccountError> {
        self.users.revoke_signin_link(id, user.id)?;
        let name = Some(user.username.as_str());
        self.record_event(
            &Event::ok(Kind::SigninLinkRevoked, name, name).detail(format!("link={id}")),
        );
        Ok(())
    }

    /// Makes an invite (see [`crate::users::Users::create_invite`]): its
    /// token, shown once, and its row. Recorded as made by this caller's
    /// actor; an invite that names a user makes them now, recorded too.
    ///
    /// # Errors
    ///
    /// As [`crate::users::Users::create_invite`].
    pub fn create_invite(
        &self,
        new: &NewInvite,
        now: Millis,
    ) -> Result<(String, Invite), AccountError> {
        let (token, invite) = self.users.create_invite(new, now)?;
        let named = invite.user.as_ref().map(|(_, name)| name.as_str());
        if named.is_some() {
            self.record(
                Kind::UserCreated,
                named,
                format!("role=user invite={}", invite.id),
            );
        }
        let groups = if new.groups.is_empty() {
            "-".to_owned()
        } else {
            new.groups.join(",")
        };
        self.record(
            Kind::InviteCreated,
            named,
            format!(
                "invite={} uses={} groups={groups} expires={}",
                invite.id,
                invite.uses,
                crate::logging::rfc3339(invite.expires_at)
            ),
        );
        Ok((token, invite))
    }

    /// Revokes invite `id`; recorded with the user it names, if any.
    ///
    /// # Errors
    ///
    /// [`crate::users::UserError::NoSuchLink`]; database failures.
    pub fn revoke_invite(&self, id: LinkId) -> Result<(), AccountError> {
        let named = self
            .users
            .invites()?
            .into_iter()
            .find(|l| l.invite.id == id)
            .and_then(|l| l.invite.user.map(|(_, name)| name));
        self.users.revoke_invite(id)?;
        self.record(
            Kind::InviteRevoked,
            named.as_deref(),
            format!("invite={id}"),
        );
        Ok(())
    }

    /// Makes a reset link for `user` (replacing theirs), made by
    /// `created_by` (empty: the command line): its token, shown once, and
    /// its row. Recorded as done by this caller's actor to `user`.
    ///
    /// # Errors
    ///
    /// As [`crate::users::Users::create_reset_link`].
    pub fn create_reset_link(
        &self,
        user: &User,
        created_by: &str,
        expires_at: Millis,
        new_factor: bool,
        now: Millis,
    ) -> Result<(String, ResetLink), AccountError> {
        let (token, link) = self
            .users
            .create_reset_link(user, created_by, expires_at, new_factor, now)?;
        self.record(
            Kind::ResetLinkCreated,
            Some(&user.username),
            format!(
                "link={} expires={} new_factor={}",
                link.id,
                crate::logging::rfc3339(link.expires_at),
                yes_no(link.new_factor)
            ),
        );
        Ok((token, link))
    }

    /// Revokes `user`'s reset link.
    ///
    /// # Errors
    ///
    /// [`crate::users::UserError::NoSuchLink`]; database failures.
    pub fn revoke_reset_link(&self, user: &User) -> Result<(), AccountError> {
        self.users.revoke_reset_link(user.id)?;
        self.record(Kind::ResetLinkRevoked, Some(&user.username), String::new());
        Ok(())
    }

    /// Records an invite used by `user`: the account it made (or, for a
    /// named user, `named`, their first password), and the use.
    fn record_invite_used(&self, user: &User, invite: Option<&Invite>, named: bool) {
        let name = Some(user.username.as_str());
        let about = invite.map_or_else(String::new, |i| {
            format!("invite={} made_by={}", i.id, made_by(&i.created_by))
        });
        if named {
            self.record_event(
                &Event::ok(Kind::PasswordChanged, name, name).detail(format!("first=yes {about}")),
            );
        } else {
            // As a sign-up: no one made it but the invitee, with the invite.
            self.record_event(
                &Event::ok(Kind::UserCreated, None, name).detail(format!("role=user {about}")),
            );
        }
        self.record_event(&Event::ok(Kind::InviteUsed, name, name).detail(about));
    }
}

/// Who made a link, as the audit log's detail says it: their name, or
/// `(cli)` for the command line (no username has parentheses).
fn made_by(created_by: &str) -> &str {
    if created_by.is_empty() {
        "(cli)"
    } else {
        created_by
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
