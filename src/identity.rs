//! Who a user is, as every layer names it: the [`UserId`] the users table
//! numbers them by, and the [`User`] row with the stamp that binds
//! sessions to one user; who is asking (a [`Principal`]: the user, their
//! groups, how they proved it) and what for (a [`Target`]). A bottom-layer
//! module so that the session stores can hand back the user they read with
//! a session (one joined read) without importing `users`, which sits
//! beside them, and so that `auth/access.rs` decides on plain data.

use std::net::IpAddr;

use crate::clock::Millis;

/// The id of a user, as the users table numbers them.
pub type UserId = i64;

/// A user's row (without the password hash). `users` reads and writes it;
/// the SQL session stores read it together with a session by joining the
/// users table, so an authenticated request is one indexed read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// Name as first typed.
    pub username: String,
    /// May administer gatehouse: a member of [`ADMINS`] (read from
    /// [`groups`](Self::groups), never stored apart from it).
    pub is_admin: bool,
    /// May not sign in.
    pub disabled: bool,
    /// When the user was created.
    pub created_at: Millis,
    /// When the password last changed.
    pub password_changed_at: Millis,
    /// A random value made with the user (see [`new_stamp`]) and stored
    /// with each of their sessions: a session is theirs only when both the
    /// id and the stamp match, so a session can never resolve to another
    /// user who came to have its user id (another database file swapped
    /// in, a backup restored, a stale `-wal` replayed).
    pub stamp: String,
    /// The names of the groups the user is in, sorted: read in the same
    /// statement as the user (see [`USER_COLUMNS`]), so the hot path pays
    /// no second query for them.
    pub groups: Vec<String>,
}

/// The group whose members administer gatehouse. A group like the others,
/// except that it cannot be renamed or deleted and its last enabled member
/// cannot leave it.
pub const ADMINS: &str = "admins";

/// A fresh stamp for a new user: 32 lowercase hex digits (128 bits from the
/// OS random source).
pub fn new_stamp() -> String {
    crate::crypto::random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The columns of a user row selected `FROM users` (not aliased), in the
/// order [`User::from_row`] reads them. The third is the user's groups,
/// joined by `,` (a character no group name may hold: see
/// `users::groups::GroupName`), from one indexed range of `user_groups`.
pub const USER_COLUMNS: &str = "id, username, \
     (SELECT coalesce(string_agg(g.name, ','), '') FROM user_groups ug \
      JOIN groups g ON g.id = ug.group_id WHERE ug.user_id = users.id), \
     disabled, created_at, password_changed_at, stamp";

/// [`USER_COLUMNS`] of the user `u`, in a statement that joins it to
/// another table (the session stores' read of a session and its user).
pub const JOINED_USER_COLUMNS: &str = "u.id, u.username, \
     (SELECT coalesce(string_agg(g.name, ','), '') FROM user_groups ug \
      JOIN groups g ON g.id = ug.group_id WHERE ug.user_id = u.id), \
     u.disabled, u.created_at, u.password_changed_at, u.stamp";

/// How many columns [`USER_COLUMNS`] names: a statement that selects more
/// after them reads those from this index on.
pub const USER_COLUMN_COUNT: usize = 7;

/// A database row a [`User`] can be read from: SQLite's and PostgreSQL's
/// rows implement it (in `db`), so the users backends and the session
/// stores' joined read map a user row in one place.
pub trait UserRow {
    /// What reading a column can fail with.
    type Error;
    /// An integer column.
    fn int(&self, index: usize) -> Result<i64, Self::Error>;
    /// An integer column that may be `NULL`.
    fn opt_int(&self, index: usize) -> Result<Option<i64>, Self::Error>;
    /// A text column.
    fn text(&self, index: usize) -> Result<String, Self::Error>;
    /// A yes/no column.
    fn flag(&self, index: usize) -> Result<bool, Self::Error>;
}

impl User {
    /// The user in the columns of [`USER_COLUMNS`], starting at `first`.
    ///
    /// # Errors
    ///
    /// When a column is missing or of another type.
    pub fn from_row<R: UserRow + ?Sized>(row: &R, first: usize) -> Result<Self, R::Error> {
        let groups = groups_from(&row.text(first + 2)?);
        Ok(Self {
            id: row.int(first)?,
            username: row.text(first + 1)?,
            is_admin: groups.iter().any(|g| g == ADMINS),
            disabled: row.flag(first + 3)?,
            created_at: row.int(first + 4)?,
            password_changed_at: row.int(first + 5)?,
            stamp: row.text(first + 6)?,
            groups,
        })
    }

    /// Whether the user is in the group `name` (group names are compared
    /// without regard to case, as they are kept unique).
    pub fn in_group(&self, name: &str) -> bool {
        self.groups.iter().any(|g| g.eq_ignore_ascii_case(name))
    }

    /// The user in the columns from `first` of an outer join: `None` when
    /// the row has no user (its id column is `NULL`).
    ///
    /// # Errors
    ///
    /// When a column is missing or of another type.
    pub fn from_joined_row<R: UserRow + ?Sized>(
        row: &R,
        first: usize,
    ) -> Result<Option<Self>, R::Error> {
        match row.opt_int(first)? {
            Some(_) => Self::from_row(row, first).map(Some),
            None => Ok(None),
        }
    }
}

/// The group names of a `,`-joined list as the database aggregates them,
/// sorted (the aggregate's order is not defined).
fn groups_from(joined: &str) -> Vec<String> {
    let mut groups: Vec<String> = joined
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    groups.sort_unstable_by_key(|g| g.to_ascii_lowercase());
    groups
}

/// Whether sign-in `methods` (`pwd`, `otp`, `passkey`, `recovery`) include
/// a second factor.
pub fn two_factors(methods: &[String]) -> bool {
    methods
        .iter()
        .any(|m| matches!(m.as_str(), "otp" | "passkey" | "recovery"))
}

/// How a [`Principal`] proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A session cookie: the methods it signed in with (`pwd`, `otp`, ...).
    Session(Vec<String>),
    /// A personal access token (`Authorization: Bearer`, or as Basic's
    /// password), and the apps it may reach (empty: all of its user's).
    Token(Vec<String>),
    /// The account password over `Authorization: Basic`.
    Basic,
}

/// Who is asking: a signed-in, enabled user, their groups, and how they
/// proved it. Built in one place (`web/principal.rs`); `auth/access.rs`
/// decides on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// The groups the user is in (group names; `admins` for an
    /// administrator).
    pub groups: Vec<String>,
    /// How they proved it.
    pub credential: Credential,
}

impl Principal {
    /// Whether they proved it with a second factor: a session that signed
    /// in with one. A token or Basic request never did (a token is one
    /// factor, whatever made it).
    pub fn second_factor(&self) -> bool {
        match &self.credential {
            Credential::Session(methods) => two_factors(methods),
            Credential::Token(_) | Credential::Basic => false,
        }
    }

    /// Whether this credential may be used for the app named `app`
    /// (`None`: a request for no app): a token only for the apps it
    /// names, when it names some; anything else everywhere.
    pub fn reaches(&self, app: Option<&str>) -> bool {
        match &self.credential {
            Credential::Token(apps) => {
                apps.is_empty()
                    || app.is_some_and(|a| apps.iter().any(|t| t.eq_ignore_ascii_case(a)))
            }
            Credential::Session(_) | Credential::Basic => true,
        }
    }

    /// Whether it came without a session (a token or Basic): such a
    /// request is never sent to a sign-in page.
    pub fn sessionless(&self) -> bool {
        !matches!(self.credential, Credential::Session(_))
    }

    /// Whether they are in `group` (group names compare without regard to
    /// ASCII case, as usernames do).
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.eq_ignore_ascii_case(group))
    }

    /// How they signed in, as `Remote-Auth-Methods` says it: the session's
    /// methods (`pwd,otp`), `token`, or `pwd` for Basic.
    pub fn methods(&self) -> String {
        match &self.credential {
            Credential::Session(methods) => methods.join(","),
            Credential::Token(_) => "token".to_owned(),
            Credential::Basic => "pwd".to_owned(),
        }
    }
}

/// What a request asks for: the app (by name; `None` for a request that
/// matches no app), the normalised path (see `auth/path.rs`), the method,
/// and the client address after `trusted_proxies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The app's name, if the request is for one.
    pub app: Option<&'a str>,
    /// The normalised path.
    pub path: &'a str,
    /// The method, as sent (`GET`, `POST`, ...).
    pub method: &'a str,
    /// The client's address.
    pub client: IpAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aggregated_group_list_is_split_and_sorted() {
        assert_eq!(groups_from(""), Vec::<String>::new());
        assert_eq!(groups_from("ops,admins,Dev"), ["admins", "Dev", "ops"]);
    }
}
