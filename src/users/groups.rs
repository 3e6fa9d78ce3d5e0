//! Groups of users: [`GroupName::parse`], the [`Group`] rows, and the
//! statements behind them (`groups/sqlite.rs`, `groups/postgres.rs`),
//! reached through [`Users`](super::Users).
//!
//! `admins` ([`ADMINS`]) is a group like the others: being in it is being
//! an administrator. It is made by the migration, cannot be renamed or
//! deleted, and its last enabled member cannot leave it, be disabled or
//! be deleted unless the caller forces it. That rule is checked in the
//! same transaction as the change, holding the database's write lock
//! (SQLite) or a lock on the `admins` row (PostgreSQL), so two
//! administrators removing the last two administrators at once leave one:
//! a check before the change, in another statement, would let both pass.
//!
//! A user's groups are read with the user row itself (see
//! [`crate::identity::USER_COLUMNS`]); `GroupStore::groups_of` is the
//! same one indexed range on its own.

mod postgres;
mod sqlite;

use crate::clock::Millis;

use super::{ADMINS, NameProblem, User, UserError, UserId, check_name};

/// The id of a group, as the groups table numbers them.
pub type GroupId = i64;

/// A validated group name: the rules of a username (see
/// [`super::Username::parse`]). A group name travels in `Remote-Groups`,
/// joined by `,`, and in the signed identity header between `;`: a name
/// holding either, a space, a control character or anything outside ASCII
/// could split into two groups (`ops,admins`) or pass for another one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupName(String);

impl GroupName {
    /// Accepts what [`super::Username::parse`] accepts; plain spaces around
    /// the name are dropped, nothing else is.
    ///
    /// # Errors
    ///
    /// [`UserError::InvalidName`] saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, UserError> {
        let s = check_name(s).map_err(|p| {
            UserError::InvalidName(match p {
                NameProblem::Empty => "the group name is empty",
                NameProblem::TooLong => "the group name is longer than 64 characters",
                NameProblem::Start => "the group name must start with a letter or digit",
                NameProblem::Character => {
                    "the group name may contain only letters, digits, '.', '_', '-' and '@'"
                }
            })
        })?;
        Ok(Self(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `admins` (in any case: names are unique without
    /// regard to case, so `Admins` names the same group).
    pub fn is_admins(&self) -> bool {
        self.0.eq_ignore_ascii_case(ADMINS)
    }
}

impl std::fmt::Display for GroupName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group as stored, with how many members it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The group's id.
    pub id: GroupId,
    /// Its name, as first typed.
    pub name: String,
    /// When it was made.
    pub created_at: Millis,
    /// How many users are in it.
    pub members: i64,
}

impl Group {
    /// Whether this is the `admins` group.
    pub fn is_admins(&self) -> bool {
        self.name == ADMINS
    }
}

/// Every group and membership, for moving to another database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    /// The groups (ids kept).
    pub groups: Vec<Group>,
    /// Who is in what: (user, group).
    pub members: Vec<(UserId, GroupId)>,
}

/// Where groups are kept: the statements each database runs.
pub(super) trait GroupStore: Send + Sync {
    fn create(&self, name: &str, now: Millis) -> Result<Group, UserError>;
    /// Renames a group other than `admins` ([`UserError::Builtin`]).
    fn rename(&self, id: GroupId, name: &str) -> Result<(), UserError>;
    /// Deletes a group other than `admins` ([`UserError::Builtin`]).
    fn delete(&self, id: GroupId) -> Result<(), UserError>;
    fn find_by_name(&self, name: &str) -> Result<Option<Group>, UserError>;
    /// Every group with its member count, by name.
    fn list(&self) -> Result<Vec<Group>, UserError>;
    /// The members of a group, by name.
    fn members(&self, id: GroupId) -> Result<Vec<User>, UserError>;
    /// The names of `user`'s groups: one indexed range.
    fn groups_of(&self, user: UserId) -> Result<Vec<String>, UserError>;
    /// Puts `user` in `group`; false when they were in it.
    fn add_member(&self, group: GroupId, user: UserId) -> Result<bool, UserError>;
    /// Takes `user` out of `group`; false when they were not in it. With
    /// `keep_admin`, [`UserError::LastAdministrator`] when that would
    /// leave `admins` without an enabled member.
    fn remove_member(
        &self,
        group: GroupId,
        user: UserId,
        keep_admin: bool,
    ) -> Result<bool, UserError>;
    /// Disables `user`, under the same rule as `remove_member`.
    fn disable_user(&self, user: UserId, keep_admin: bool) -> Result<(), UserError>;
    /// Deletes `user` (their memberships go with them), under the same rule.
    fn delete_user(&self, user: UserId, keep_admin: bool) -> Result<(), UserError>;
    /// How many enabled users are in `admins`.
    fn count_active_admins(&self) -> Result<i64, UserError>;
    fn export(&self) -> Result<Exported, UserError>;
    /// Copies groups and memberships as exported, skipping what is there
    /// (a run may resume). Groups are matched by name (`admins`, made by
    /// the target's migration, among them); the others get new ids
    /// (nothing refers to a group by id but its memberships).
    fn import(&self, exported: &Exported) -> Result<(), UserError>;
}

/// Whether `$1` is an enabled member of `admins` and no one else is: the
/// one user whose removal would leave nobody to administer gatehouse
/// (the same statement on both databases; `$1` is positional in SQLite).
pub(super) const IS_LAST_ADMIN: &str = "SELECT \
     EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
             JOIN users u ON u.id = ug.user_id \
             WHERE g.name = 'admins' AND u.id = $1 AND NOT u.disabled) \
     AND NOT EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
             JOIN users u ON u.id = ug.user_id \
             WHERE g.name = 'admins' AND u.id <> $1 AND NOT u.disabled)";

/// How many enabled users are in `admins`.
pub(super) const COUNT_ACTIVE_ADMINS: &str = "SELECT count(*) FROM user_groups ug \
     JOIN groups g ON g.id = ug.group_id JOIN users u ON u.id = ug.user_id \
     WHERE g.name = 'admins' AND NOT u.disabled";

/// Every group with its member count (the same on both databases, bar the
/// order, which each appends).
pub(super) const LIST: &str = "SELECT g.id, g.name, g.created_at, \
     (SELECT count(*) FROM user_groups ug WHERE ug.group_id = g.id) FROM groups g";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_follow_the_username_rules() {
        for good in ["ops", "Dev-Team", "a.b_c@lan", "0day", &"g".repeat(64)] {
            assert_eq!(GroupName::parse(good).expect(good).as_str(), good);
        }
        assert_eq!(GroupName::parse("  ops ").expect("trimmed").as_str(), "ops");
        assert!(GroupName::parse("Admins").expect("admins").is_admins());
        assert!(!GroupName::parse("admins2").expect("other").is_admins());
    }

    #[test]
    fn nothing_that_could_split_a_header_value_is_a_group_name() {
        let mut bad: Vec<String> = [
            "",
            "   ",
            "ops,admins",
            "ops;admins",
            "ops admins",
            "ops=1",
            "ops\"",
            "ops\\",
            "ops/dev",
            ",ops",
            "-ops",
            ".ops",
            "ops\r\nRemote-User: root",
            "ops\n",
            "\tops",
            "ops\0",
            "ops\u{7f}",
            "ops\u{85}",
            "ops\u{a0}",
            "ops\u{2028}",
            "ops\u{202e}",
            "\u{200b}ops",
            "ops\u{feff}",
            // Look-alikes: Cyrillic `а` and `о`, a fullwidth `ｏ`, an
            // accented letter, a dotless `ı`.
            "\u{430}dmins",
            "\u{43e}ps",
            "\u{ff4f}ps",
            "opś",
            "adm\u{131}ns",
        ]
        .map(str::to_owned)
        .to_vec();
        bad.push("g".repeat(65));
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            bad.push(format!("{c}ops"));
            bad.push(format!("ops{c}"));
        }
        for name in &bad {
            assert!(
                matches!(GroupName::parse(name), Err(UserError::InvalidName(_))),
                "{name:?} was accepted"
            );
        }
    }

    #[test]
    fn a_refused_group_name_says_it_is_a_group_name() {
        let Err(UserError::InvalidName(why)) = GroupName::parse("a,b") else {
            panic!("accepted");
        };
        assert!(why.contains("group name"), "{why}");
    }
}
