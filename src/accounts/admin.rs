//! User administration: creating users, setting passwords, disabling,
//! enabling, deleting, administrator rights, and the rules they share (no
//! administrator removes themselves; the last one stays unless forced).

use crate::session::{Session, SessionKey};
use crate::users::{User, Username};

use super::*;

impl Accounts<'_> {
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
        let user = self.users.create(&name, password, is_admin)?;
        let role = if is_admin { "admin" } else { "user" };
        self.record(
            Kind::UserCreated,
            Some(&user.username),
            format!("role={role}"),
        );
        Ok(user)
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
        let kept_sid = keep.and_then(|s| s.get::<String>(crate::session::keys::OIDC_SID));
        let ended = self.sessions.delete_by_user(target.id, kept_key.as_ref())?;
        self.end_grants(target.id, kept_sid.as_deref())?;
        self.end_pending(target.id)?;
        if let Some(session) = keep {
            session.regenerate()?;
        }
        self.record(
            Kind::PasswordChanged,
            Some(&target.username),
            format!("sessions_ended={ended}"),
        );
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
        self.users
            .disable(target.id, !force)
            .map_err(super::groups::refusal)?;
        let ended = self.sessions.delete_by_user(target.id, None)?;
        self.end_grants(target.id, None)?;
        // Refused while the user is disabled, but alive again if they are
        // enabled within its five minutes: ended now.
        self.end_pending(target.id)?;
        self.record(
            Kind::UserDisabled,
            Some(&target.username),
            format!("sessions_ended={ended}"),
        );
        Ok(ended)
    }

    /// Lets a disabled user sign in again.
    ///
    /// # Errors
    ///
    /// No such user, or a database failure.
    pub fn enable(&self, target: &User) -> Result<(), AccountError> {
        self.users.set_disabled(target.id, false)?;
        self.record(Kind::UserEnabled, Some(&target.username), String::new());
        Ok(())
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
        // cascade to take them with the user. The grants too, before the
        // cascade would take them in silence: their ending queues the
        // back-channel logout notices, with the `sub` that goes with the user.
        let ended = self.sessions.delete_by_user(target.id, None)?;
        self.end_grants(target.id, None)?;
        self.end_pending(target.id)?;
        self.users
            .remove(target.id, !force)
            .map_err(super::groups::refusal)?;
        self.record(
            Kind::UserDeleted,
            Some(&target.username),
            format!("sessions_ended={ended}"),
        );
        Ok(ended)
    }

    /// Makes `target` an administrator.
    ///
    /// # Errors
    ///
    /// No such user, or a database failure.
    pub fn grant_admin(&self, target: &User) -> Result<(), AccountError> {
        self.users.set_admin(target.id, true)?;
        self.record(Kind::UserPromoted, Some(&target.username), String::new());
        Ok(())
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
        let admins = self.users.get_group(crate::users::ADMINS)?;
        self.users
            .leave_group(&admins, target.id, true)
            .map_err(super::groups::refusal)?;
        if let Some(session) = session.filter(|s| s.user_id() == Some(target.id)) {
            session.regenerate()?;
        }
        self.record(Kind::UserDemoted, Some(&target.username), String::new());
        Ok(())
    }

    /// The rules [`disable`](Self::disable) and [`delete`](Self::delete)
    /// share: an administrator may not remove themselves (`own`, the refusal
    /// to give), nor the last enabled administrator unless `force`.
    pub(super) fn refuse_removal(
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
    pub(super) fn refuse_last_admin(&self, target: &User, force: bool) -> Result<(), AccountError> {
        if force || !target.is_admin || target.disabled {
            return Ok(());
        }
        if self.users.count_active_admins()? <= 1 {
            return Err(AccountError::Refused(Refusal::LastAdministrator));
        }
        Ok(())
    }
}
