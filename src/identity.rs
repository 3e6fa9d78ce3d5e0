//! Who a user is, as every layer names it: the [`UserId`] the users table
//! numbers them by and the [`User`] row. A bottom-layer module so that the
//! session stores can hand back the user they read with a session (one
//! joined read) without importing `users`, which sits beside them.

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
    /// May administer gatehouse.
    pub is_admin: bool,
    /// May not sign in.
    pub disabled: bool,
    /// When the user was created.
    pub created_at: Millis,
    /// When the password last changed.
    pub password_changed_at: Millis,
}
