//! Ending sessions: one, all of a user's (or all but one), and the
//! sign-ins still waiting for their second step. Every way a session ends
//! here also ends the OpenID Connect grants it gave apps (their access
//! and refresh tokens), as signing out does: an app must not stay signed
//! in on the strength of a session its owner ended. The apps that asked
//! to be told (a `backchannel_logout_uri`) are sent a logout token.

use crate::session::keys::OIDC_SID;
use crate::session::{Change, Patch, Record, Session, SessionKey, Touch};
use crate::users::{User, UserId};

use super::*;

impl Accounts<'_> {
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
        let ended = if current.key().as_ref() == Some(&target.key) {
            current.destroy()?;
            Ended::This
        } else {
            self.sessions.delete(&target.key)?;
            Ended::Other
        };
        self.end_grants_of(target)?;
        // Whose it was, by name (an anonymous one is no one's; a name that
        // cannot be read now leaves the row without one rather than fail
        // what is done); and who ended it: its user, or an administrator.
        let whose = target
            .user_id
            .and_then(|id| self.users.find_by_id(id).ok().flatten())
            .map(|u| u.username);
        let by = match (owner, &whose) {
            (Owner::User(_), _) => "self",
            (Owner::Anyone, Some(w))
                if self
                    .actor
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(w)) =>
            {
                "self"
            }
            (Owner::Anyone, _) => "admin",
        };
        let this = if ended == Ended::This {
            " this=yes"
        } else {
            ""
        };
        self.record(
            Kind::SessionEnded,
            whose.as_deref(),
            format!("by={by} count=1 session={}{this}", target.key.handle()),
        );
        Ok(ended)
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
        let keep_sid = match keep {
            Some(key) => self
                .sessions
                .load(key, crate::clock::now())?
                .and_then(|r| sid_of(&r)),
            None => None,
        };
        let ended = self.sessions.delete_by_user(user.id, keep)?;
        self.end_grants(user.id, keep_sid.as_deref())?;
        self.end_pending(user.id)?;
        let by = match &self.actor {
            Some(a) if a.eq_ignore_ascii_case(&user.username) => "self",
            Some(_) => "admin",
            None => "owner",
        };
        let which = if keep.is_some() { "others" } else { "all" };
        self.record(
            Kind::SessionEnded,
            Some(&user.username),
            format!("by={by} count={ended} which={which}"),
        );
        Ok(ended)
    }

    /// Ends the OpenID Connect grants of every session of `user` but the
    /// one whose `sid` is `keep_sid` (a session that never signed in to an
    /// app has none: then all of them end). Called after the sessions
    /// themselves have ended, so no ended session can make a grant after.
    pub(super) fn end_grants(
        &self,
        user: UserId,
        keep_sid: Option<&str>,
    ) -> Result<usize, AccountError> {
        let now = crate::clock::now();
        let ended = match keep_sid {
            Some(sid) => self.grants.grants_delete_for_user_but(user, sid, now)?,
            None => self.grants.grants_delete_for_user(user, None, now)?,
        };
        self.grants_ended();
        Ok(ended)
    }

    /// Ends the OpenID Connect grants of the session `record` (already
    /// ended).
    pub(super) fn end_grants_of(&self, record: &Record) -> Result<(), AccountError> {
        if let Some(sid) = sid_of(record) {
            self.grants
                .grants_delete_for_session(&sid, crate::clock::now())?;
            self.grants_ended();
        }
        Ok(())
    }

    /// Wakes the back-channel logout senders, when there are any: the
    /// statements that ended grants queued a notice for each client told
    /// of it (see `oidc::logout`).
    pub(super) fn grants_ended(&self) {
        if let Some(bell) = self.bell {
            bell.ring();
        }
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
    pub(super) fn end_pending(&self, user: UserId) -> Result<usize, AccountError> {
        // A sign-in link that waits is a sign-in that waits too (with the
        // factors of the session that made it).
        self.users.end_signin_links(user)?;
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
}

/// The `sid` of a session that signed in to an app.
fn sid_of(record: &Record) -> Option<String> {
    record
        .data
        .get(OIDC_SID)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}
