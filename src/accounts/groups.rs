//! Group operations and their rules, called alike by the admin page and
//! the command line: making, renaming and deleting groups, putting users
//! in them and taking them out.
//!
//! `admins` is a group like the others, with the rules of the last
//! administrator (see the module above): it cannot be renamed or deleted,
//! and its last enabled member cannot leave it unless the caller forces
//! it. Leaving `admins` is a change of what the session may do, so the
//! leaver's own session gets a new id, as for [`Accounts::revoke_admin`].

use crate::session::Session;
use crate::users::groups::{Group, GroupName};
use crate::users::{User, UserError};

use super::{AccountError, Accounts, Refusal};
use crate::users::audit::Kind;

/// A rule the users layer kept, as the refusal the caller shows; other
/// errors as they are.
pub(super) fn refusal(e: UserError) -> AccountError {
    match e {
        UserError::LastAdministrator => AccountError::Refused(Refusal::LastAdministrator),
        UserError::Builtin => AccountError::Refused(Refusal::BuiltinGroup),
        e => AccountError::User(e),
    }
}

impl Accounts<'_> {
    /// Every group with its member count, by name.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn groups(&self) -> Result<Vec<Group>, AccountError> {
        Ok(self.users.groups()?)
    }

    /// The group named `name` (in any case) and its members.
    ///
    /// # Errors
    ///
    /// [`UserError::NoSuchGroup`] or database failures.
    pub fn group(&self, name: &str) -> Result<(Group, Vec<User>), AccountError> {
        let group = self.users.get_group(name)?;
        let members = self.users.members(&group)?;
        Ok((group, members))
    }

    /// Makes a group named `name` (the username rules apply).
    ///
    /// # Errors
    ///
    /// A bad name, [`UserError::GroupTaken`], or database failures.
    pub fn create_group(&self, name: &str) -> Result<Group, AccountError> {
        let name = GroupName::parse(name)?;
        let group = self.users.create_group(&name)?;
        self.record(Kind::GroupCreated, None, format!("group={}", group.name));
        Ok(group)
    }

    /// Renames the group `from` to `to`; `admins` keeps its name.
    ///
    /// # Errors
    ///
    /// [`Refusal::BuiltinGroup`], a bad name, a taken one, no such group,
    /// or database failures.
    pub fn rename_group(&self, from: &str, to: &str) -> Result<(), AccountError> {
        let to = GroupName::parse(to)?;
        let group = self.users.get_group(from)?;
        self.users.rename_group(&group, &to).map_err(refusal)?;
        self.record(
            Kind::GroupRenamed,
            None,
            format!("group={} name={}", group.name, to.as_str()),
        );
        Ok(())
    }

    /// Deletes the group `name` and its memberships; `admins` is kept.
    ///
    /// # Errors
    ///
    /// [`Refusal::BuiltinGroup`], no such group, or database failures.
    pub fn delete_group(&self, name: &str) -> Result<(), AccountError> {
        let group = self.users.get_group(name)?;
        self.users.delete_group(&group).map_err(refusal)?;
        self.record(
            Kind::GroupDeleted,
            None,
            format!("group={} members={}", group.name, group.members),
        );
        Ok(())
    }

    /// Puts `target` in the group `name`; false when they were in it.
    ///
    /// # Errors
    ///
    /// No such group or user, or database failures.
    pub fn add_to_group(&self, name: &str, target: &User) -> Result<bool, AccountError> {
        let group = self.users.get_group(name)?;
        let joined = self.users.join_group(&group, target.id)?;
        if joined {
            // Into `admins` is a promotion, and filed as one.
            let kind = if group.is_admins() {
                Kind::UserPromoted
            } else {
                Kind::GroupMemberAdded
            };
            self.record(
                kind,
                Some(&target.username),
                format!("group={}", group.name),
            );
        }
        Ok(joined)
    }

    /// Takes `target` out of the group `name`; false when they were not in
    /// it. Taking the last enabled administrator out of `admins` is
    /// refused unless `force`; when `session` is `target`'s own and the
    /// group is `admins`, it gets a new id (a change of privilege).
    ///
    /// # Errors
    ///
    /// [`Refusal::LastAdministrator`], no such group, or database or store
    /// failures.
    pub fn remove_from_group(
        &self,
        name: &str,
        target: &User,
        session: Option<&Session<'_>>,
        force: bool,
    ) -> Result<bool, AccountError> {
        let group = self.users.get_group(name)?;
        let left = self
            .users
            .leave_group(&group, target.id, !force)
            .map_err(refusal)?;
        let own = session.filter(|s| left && group.is_admins() && s.user_id() == Some(target.id));
        if let Some(session) = own {
            session.regenerate()?;
        }
        if left {
            let kind = if group.is_admins() {
                Kind::UserDemoted
            } else {
                Kind::GroupMemberRemoved
            };
            self.record(
                kind,
                Some(&target.username),
                format!("group={}", group.name),
            );
        }
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::session::Store;
    use crate::users::Users;
    use crate::users::password::Hasher;

    /// Runs `check` on accounts over users in SQLite and, when a server is
    /// configured for tests, in PostgreSQL.
    fn each(check: impl Fn(&Users, &Accounts<'_>)) {
        let hasher = Arc::new(Hasher::new(4, 2, std::time::Duration::from_secs(10)));
        let sessions = crate::session::MemoryStore::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(&dir.path().join("u.db"), 4).expect("open");
        let grants = crate::oidc::SqliteOidc(pool.clone());
        let users = Users::new(pool, Arc::clone(&hasher));
        check(
            &users,
            &Accounts::new(&users, &sessions as &dyn Store, &grants),
        );
        if let Some(url) = crate::db::postgres::test_url() {
            let url = crate::db::postgres::scratch_schema(&url).expect("schema");
            let pool = crate::db::postgres::open_for_tests(&url, 4).expect("open");
            let grants = crate::oidc::PostgresOidc(pool.clone());
            let users = Users::postgres(pool, hasher);
            check(
                &users,
                &Accounts::new(&users, &sessions as &dyn Store, &grants),
            );
        }
    }

    fn refused(result: Result<impl std::fmt::Debug, AccountError>) -> Option<Refusal> {
        match result {
            Err(AccountError::Refused(r)) => Some(r),
            Ok(_) => None,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    #[test]
    fn groups_are_made_renamed_listed_and_deleted() {
        each(|users, accounts| {
            let ops = accounts.create_group("ops").expect("create");
            assert_eq!((ops.name.as_str(), ops.members), ("ops", 0));
            assert!(matches!(
                accounts.create_group("OPS"),
                Err(AccountError::User(UserError::GroupTaken))
            ));
            assert!(matches!(
                accounts.create_group("ops,admins"),
                Err(AccountError::User(UserError::InvalidName(_)))
            ));
            let alice = accounts
                .create_user("alice", "password1", false)
                .expect("alice");
            assert!(accounts.add_to_group("Ops", &alice).expect("add"));
            assert!(!accounts.add_to_group("ops", &alice).expect("again"));
            accounts.rename_group("ops", "sre").expect("rename");
            let again = users.find_by_id(alice.id).expect("find").expect("alice");
            assert_eq!(again.groups, ["sre"]);
            assert_eq!(users.groups_of(alice.id).expect("groups"), ["sre"]);
            let names: Vec<(String, i64)> = accounts
                .groups()
                .expect("list")
                .into_iter()
                .map(|g| (g.name, g.members))
                .collect();
            assert_eq!(names, [("admins".to_owned(), 0), ("sre".to_owned(), 1)]);
            let (group, members) = accounts.group("SRE").expect("group");
            assert_eq!(group.name, "sre");
            assert_eq!(members, [again]);
            assert!(matches!(
                accounts.rename_group("sre", "Admins"),
                Err(AccountError::User(UserError::GroupTaken))
            ));
            accounts.delete_group("sre").expect("delete");
            assert!(
                users
                    .find_by_id(alice.id)
                    .expect("find")
                    .expect("alice")
                    .groups
                    .is_empty()
            );
            assert!(matches!(
                accounts.delete_group("sre"),
                Err(AccountError::User(UserError::NoSuchGroup))
            ));
            assert!(matches!(
                accounts.add_to_group("nope", &alice),
                Err(AccountError::User(UserError::NoSuchGroup))
            ));
        });
    }

    #[test]
    fn admins_cannot_be_renamed_or_deleted() {
        each(|users, accounts| {
            let builtin = Some(Refusal::BuiltinGroup);
            assert_eq!(refused(accounts.delete_group("admins")), builtin);
            assert_eq!(refused(accounts.delete_group("ADMINS")), builtin);
            assert_eq!(refused(accounts.rename_group("admins", "root")), builtin);
            assert!(users.find_group("admins").expect("find").is_some());
        });
    }

    #[test]
    fn membership_of_admins_is_the_admin_flag() {
        each(|users, accounts| {
            let root = accounts
                .create_user("root", "password1", true)
                .expect("root");
            assert!(root.is_admin);
            assert_eq!(root.groups, ["admins"]);
            let bob = accounts
                .create_user("bob", "password1", false)
                .expect("bob");
            assert!(!bob.is_admin);
            accounts.add_to_group("admins", &bob).expect("add");
            let bob = users.find_by_id(bob.id).expect("find").expect("bob");
            assert!(bob.is_admin);
            assert_eq!(users.count_active_admins().expect("count"), 2);
            accounts
                .remove_from_group("admins", &bob, None, false)
                .expect("remove");
            assert!(
                !users
                    .find_by_name("bob")
                    .expect("find")
                    .expect("bob")
                    .is_admin
            );
        });
    }

    #[test]
    fn the_last_administrator_cannot_leave_admins_unless_forced() {
        each(|users, accounts| {
            let root = accounts
                .create_user("root", "password1", true)
                .expect("root");
            let last = Some(Refusal::LastAdministrator);
            assert_eq!(
                refused(accounts.remove_from_group("admins", &root, None, false)),
                last
            );
            // A disabled member is no second administrator.
            let off = accounts.create_user("off", "password1", true).expect("off");
            users.set_disabled(off.id, true).expect("disable");
            assert_eq!(
                refused(accounts.remove_from_group("admins", &root, None, false)),
                last
            );
            // The rule is checked below the accounts layer too, in the
            // transaction that makes the change: every path keeps it.
            assert!(matches!(
                users.leave_group(&users.get_group("admins").expect("admins"), root.id, true),
                Err(UserError::LastAdministrator)
            ));
            assert!(matches!(
                users.disable(root.id, true),
                Err(UserError::LastAdministrator)
            ));
            assert!(matches!(
                users.remove(root.id, true),
                Err(UserError::LastAdministrator)
            ));
            // Leaving another group is no leaving of admins.
            accounts.create_group("ops").expect("ops");
            accounts.add_to_group("ops", &root).expect("add");
            assert!(
                accounts
                    .remove_from_group("ops", &root, None, false)
                    .expect("leave ops")
            );
            // The disabled one may go; with a second enabled one, so may root.
            assert!(
                accounts
                    .remove_from_group("admins", &off, None, false)
                    .expect("off leaves")
            );
            let ann = accounts.create_user("ann", "password1", true).expect("ann");
            assert!(
                accounts
                    .remove_from_group("admins", &root, None, false)
                    .expect("root leaves")
            );
            assert_eq!(
                refused(accounts.remove_from_group("admins", &ann, None, false)),
                last
            );
            // Forced (the box's owner at the command line).
            assert!(
                accounts
                    .remove_from_group("admins", &ann, None, true)
                    .expect("forced")
            );
            assert_eq!(users.count_active_admins().expect("count"), 0);
        });
    }

    #[test]
    fn two_administrators_removing_the_last_two_at_once_leave_one() {
        each(|users, _| {
            for round in 0..10 {
                let a = users
                    .create(
                        &crate::users::Username::parse(&format!("a{round}")).expect("a"),
                        "password1",
                        true,
                    )
                    .expect("a");
                let b = users
                    .create(
                        &crate::users::Username::parse(&format!("b{round}")).expect("b"),
                        "password1",
                        true,
                    )
                    .expect("b");
                // Every other admin from earlier rounds is gone, so a and
                // b are the last two. Each path that takes an admin away,
                // raced against another.
                let admins = users.get_group("admins").expect("admins");
                let barrier = std::sync::Barrier::new(2);
                let take = |id| {
                    barrier.wait();
                    match round % 3 {
                        0 => users.leave_group(&admins, id, true).map(|_| ()),
                        1 => users.disable(id, true),
                        _ => users.remove(id, true),
                    }
                };
                let (ra, rb) = std::thread::scope(|s| {
                    let ta = s.spawn(|| take(a.id));
                    let tb = s.spawn(|| take(b.id));
                    (ta.join().expect("a"), tb.join().expect("b"))
                });
                let refusals = [&ra, &rb]
                    .iter()
                    .filter(|r| matches!(r, Err(UserError::LastAdministrator)))
                    .count();
                assert_eq!(refusals, 1, "round {round}: {ra:?} {rb:?}");
                assert!(ra.is_ok() || rb.is_ok(), "round {round}: {ra:?} {rb:?}");
                assert_eq!(users.count_active_admins().expect("count"), 1);
                // Clear the survivor for the next round.
                for u in [&a, &b] {
                    let _ = users.remove(u.id, false);
                }
            }
        });
    }
}
