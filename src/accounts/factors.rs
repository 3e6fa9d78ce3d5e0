//! Second factors set up and reset: turning one on (which ends the
//! sessions that signed in without it), who may add one now, and the
//! recovery codes that come with the first.

use crate::session::{Session, SessionKey};
use crate::users::{User, UserId};

use super::*;

impl Accounts<'_> {
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
        let replacing = subject.pending.as_ref().is_some_and(|p| p.replace);
        if !factors.confirm_totp(user, sealed, code)? {
            return Ok(None);
        }
        let codes = if replacing {
            self.drop_old_factors(&subject.user, Kept::Totp)?
        } else {
            self.recovery_codes_if_none(user)?
        };
        let name = subject.user.username.clone();
        let finished = self.complete(session, subject, "otp", None)?;
        let ended = self.end_password_only(user, session.key().as_ref())?;
        self.record_factor(&name, "totp", &codes, ended);
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
        let replacing = subject.pending.as_ref().is_some_and(|p| p.replace);
        self.users
            .factors()
            .add_passkey(user, credential_id, name, credential)?;
        let codes = if replacing {
            self.drop_old_factors(&subject.user, Kept::Passkey(credential_id))?
        } else {
            self.recovery_codes_if_none(user)?
        };
        let who = subject.user.username.clone();
        let finished = self.complete(session, subject, "passkey", None)?;
        let ended = self.end_password_only(user, session.key().as_ref())?;
        self.record_factor(
            &who,
            &format!("passkey {}", super::field("name", name)),
            &codes,
            ended,
        );
        Ok(Enabled { finished, codes })
    }

    /// Records a second factor `what` added by `user` themselves.
    fn record_factor(&self, user: &str, what: &str, codes: &[String], ended: usize) {
        let codes = if codes.is_empty() {
            ""
        } else {
            " recovery_codes=new"
        };
        self.users.audit().record(
            &self.origin,
            &Event::ok(Kind::FactorAdded, Some(user), Some(user))
                .detail(format!("factor={what}{codes} sessions_ended={ended}")),
        );
    }

    /// Turns off `user`'s authenticator app (they asked, from a session
    /// that may change their factors).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn remove_totp(&self, user: &User) -> Result<(), AccountError> {
        self.users.factors().remove_totp(user.id)?;
        self.record_removed(user, "factor=totp");
        Ok(())
    }

    /// Removes `user`'s passkey `id`; false when they have no such one.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn remove_passkey(&self, user: &User, id: i64) -> Result<bool, AccountError> {
        let removed = self.users.factors().remove_passkey(user.id, id)?;
        if removed {
            self.record_removed(user, &format!("factor=passkey id={id}"));
        }
        Ok(removed)
    }

    /// Ten new recovery codes for `user`, replacing any left; shown once.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn new_recovery_codes(&self, user: &User) -> Result<Vec<String>, AccountError> {
        let codes = self.users.factors().new_recovery_codes(user.id)?;
        let name = Some(user.username.as_str());
        self.users.audit().record(
            &self.origin,
            &Event::ok(Kind::FactorAdded, name, name).detail("factor=recovery_codes"),
        );
        Ok(codes)
    }

    fn record_removed(&self, user: &User, detail: &str) {
        let name = Some(user.username.as_str());
        self.users.audit().record(
            &self.origin,
            &Event::ok(Kind::FactorRemoved, name, name).detail(detail),
        );
    }

    /// Ends `user`'s sessions, but `keep`, that signed in without a second
    /// factor; returns how many. Called when a second factor is turned
    /// on: the user now means the password alone to be not enough, and a
    /// session it made (perhaps a password thief's) would otherwise stay
    /// signed in everywhere but where a factor is asked for. Ended rather
    /// than sent to step up: nothing then has to check, on every request,
    /// whether the user has a factor the session did not give.
    pub(super) fn end_password_only(
        &self,
        user: UserId,
        keep: Option<&SessionKey>,
    ) -> Result<usize, AccountError> {
        // A sign-in link that waits carries the factors of the session
        // that made it: made before the factor, it would sign another
        // browser in without one.
        self.users.end_signin_links(user)?;
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
                self.end_grants_of(&record)?;
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
            // A reset link's pending sign-in sets up a factor in place of
            // the ones the user has (lost); nothing else that is pending
            // adds one beside them.
            Some(p) => p.enrol && (!has || p.replace),
            None => !has || two_factors(&session.get::<Vec<String>>(METHODS).unwrap_or_default()),
        };
        if allowed {
            Ok(())
        } else {
            Err(AccountError::Refused(Refusal::SecondStepFirst))
        }
    }

    /// Removes every second factor of `user` but the one `kept`, just
    /// set up in place of lost ones (a reset link's new factor), and gives
    /// them new recovery codes (the old ones may have been lost with the
    /// phone). Only now, once the new factor is in force: a reset that is
    /// abandoned half-way leaves the user what they had. Recorded as the
    /// user's factors reset, by them, through the link (the new factor is
    /// recorded as added by the caller).
    fn drop_old_factors(&self, owner: &User, kept: Kept<'_>) -> Result<Vec<String>, AccountError> {
        let factors = self.users.factors();
        let user = owner.id;
        if !matches!(kept, Kept::Totp) {
            factors.remove_totp(user)?;
        }
        let mut passkeys = 0;
        for passkey in factors.passkeys(user)? {
            if !matches!(kept, Kept::Passkey(id) if id == passkey.credential_id.as_slice()) {
                factors.remove_passkey(user, passkey.id)?;
                passkeys += 1;
            }
        }
        let codes = factors.new_recovery_codes(user)?;
        let name = Some(owner.username.as_str());
        let kept = match kept {
            Kept::Totp => "totp",
            Kept::Passkey(_) => "passkey",
        };
        self.users.audit().record(
            &self.origin,
            &Event::ok(Kind::FactorsReset, name, name).detail(format!(
                "through=reset_link kept={kept} passkeys_removed={passkeys} recovery_codes=new"
            )),
        );
        Ok(codes)
    }

    pub(super) fn recovery_codes_if_none(&self, user: UserId) -> Result<Vec<String>, AccountError> {
        let factors = self.users.factors();
        if factors.summary(user)?.recovery_left > 0 {
            return Ok(Vec::new());
        }
        Ok(factors.new_recovery_codes(user)?)
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
        self.end_grants(target.id, None)?;
        // A sign-in that waited at the set-up (with the password only)
        // while the owner set up the factor reset now would otherwise be
        // free to set up its own.
        self.end_pending(target.id)?;
        self.record(
            Kind::FactorsReset,
            Some(&target.username),
            format!("sessions_ended={ended}"),
        );
        Ok(ended)
    }
}

/// The second factor a reset link's sign-in just set up, which stays when
/// the others go.
#[derive(Clone, Copy)]
enum Kept<'a> {
    /// The authenticator app (there is one at most).
    Totp,
    /// The passkey with this credential id.
    Passkey(&'a [u8]),
}
