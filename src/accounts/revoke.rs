//! Ending sessions: one, all of a user's (or all but one), and the
//! sign-ins still waiting for their second step.

use crate::session::{Change, Patch, Session, SessionKey, Touch};
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
    pub(super) fn end_pending(&self, user: UserId) -> Result<usize, AccountError> {
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
