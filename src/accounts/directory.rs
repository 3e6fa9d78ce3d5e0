//! Staying in step with the directory: every directory user here is read
//! again by their stable id; one whose entry is gone or disabled is
//! disabled and signed out everywhere (sessions, sign-ins waiting for a
//! second step, tokens); the others get the directory's name, display
//! name, e-mail and groups. Run by `gatehouse ldap sync` and every
//! `ldap.sync_interval` by the server.

use super::{AccountError, Accounts};
use crate::users::directory::{Directory, Entry};
use crate::users::source::{External, Profile, Source};
use crate::users::{User, Username, directory_groups_wanted};

/// What a sync does (or would do) to one directory user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncChange {
    /// The entry is gone: disabled and signed out.
    Gone,
    /// The entry is disabled in the directory: disabled and signed out.
    Disabled,
    /// Names or groups brought up to date (what changed, for people).
    Updated(Vec<String>),
}

/// One directory user a sync changed (or would).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    /// Their name here, before the sync.
    pub username: String,
    /// What changed.
    pub change: SyncChange,
    /// Why it could not be done, if it could not (the last enabled
    /// administrator stays one; a name a local user holds).
    pub refused: Option<String>,
}

/// What a sync found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// How many directory users there are here.
    pub users: usize,
    /// Those that changed (or would).
    pub changed: Vec<Synced>,
}

impl Accounts<'_> {
    /// Reads every directory user again from `directory` and, when
    /// `apply`, makes the changes (see the module docs); either way says
    /// what changes. A user already disabled here whose entry is gone or
    /// disabled is left as they are.
    ///
    /// # Errors
    ///
    /// The directory cannot be read (nothing is changed then: a directory
    /// that is down never disables anyone), or database and store failures.
    pub fn sync_directory(
        &self,
        directory: &Directory,
        apply: bool,
    ) -> Result<SyncReport, AccountError> {
        let linked = self.users.list_by_source(Source::Ldap)?;
        // (A row without an id has no entry: it shows as gone.)
        let ids: Vec<String> = linked
            .iter()
            .map(|(_, p)| p.external_id.clone().unwrap_or_default())
            .collect();
        let entries = directory.find_by_ids(&ids);
        directory.reached(entries.as_ref().map_or_else(|e| !e.is_outage(), |_| true));
        let entries =
            entries.map_err(|e| crate::users::UserError::DirectoryUnavailable(e.to_string()))?;
        let mut report = SyncReport {
            users: linked.len(),
            changed: Vec::new(),
        };
        for ((user, profile), entry) in linked.iter().zip(&entries) {
            let change = match entry {
                None if !user.disabled => SyncChange::Gone,
                Some(e) if e.disabled && !user.disabled => SyncChange::Disabled,
                None | Some(_) if user.disabled => continue,
                Some(e) => {
                    let changes = differences(user, profile, e, directory);
                    if changes.is_empty() {
                        continue;
                    }
                    SyncChange::Updated(changes)
                }
                None => continue,
            };
            let refused = if apply {
                self.apply(user, entry.as_ref(), directory, &change)
                    .err()
                    .map(|e| e.to_string())
            } else {
                None
            };
            report.changed.push(Synced {
                username: user.username.clone(),
                change,
                refused,
            });
        }
        Ok(report)
    }

    /// Makes one sync change.
    fn apply(
        &self,
        user: &User,
        entry: Option<&Entry>,
        directory: &Directory,
        change: &SyncChange,
    ) -> Result<(), AccountError> {
        match (change, entry) {
            (SyncChange::Gone | SyncChange::Disabled, _) => {
                self.disable(None, user, false)?;
            }
            (SyncChange::Updated(_), Some(e)) => {
                let Ok(username) = Username::parse(&e.username) else {
                    return Ok(());
                };
                let (updated, _) = self.users.upsert_external(
                    Source::Ldap,
                    &External {
                        id: &e.id,
                        username: &username,
                        display_name: e.display_name.as_deref(),
                        email: e.email.as_deref(),
                    },
                )?;
                self.users
                    .sync_directory_groups(&updated, &e.groups, directory.settings())?;
            }
            (SyncChange::Updated(_), None) => {}
        }
        Ok(())
    }
}

/// What differs between `user` here and their directory entry, for people.
fn differences(user: &User, profile: &Profile, e: &Entry, directory: &Directory) -> Vec<String> {
    let mut changes = Vec::new();
    if e.username != user.username {
        changes.push(format!("name -> {}", e.username));
    }
    if e.display_name != profile.display_name {
        changes.push(format!(
            "display name -> {}",
            e.display_name.as_deref().unwrap_or("(none)")
        ));
    }
    if e.email != profile.email {
        changes.push(format!(
            "e-mail -> {}",
            e.email.as_deref().unwrap_or("(none)")
        ));
    }
    let mut wanted = directory_groups_wanted(&e.groups, directory.settings());
    wanted.sort_unstable_by_key(|g| g.to_ascii_lowercase());
    let same = wanted.len() == user.groups.len()
        && wanted
            .iter()
            .all(|w| user.groups.iter().any(|g| g.eq_ignore_ascii_case(w)));
    if !same {
        changes.push(format!("groups -> {}", wanted.join(",")));
    }
    changes
}
