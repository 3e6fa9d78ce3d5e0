//! Sources in PostgreSQL: the same statements as SQLite's, with `lower()`
//! standing in for the `NOCASE` collation.

use postgres::types::Type;

use super::super::postgres::Postgres;
use super::{External, Profile, Source, SourceStore};
use crate::clock::Millis;
use crate::users::{User, UserError, UserId};

const COLUMNS: &str = crate::identity::USER_COLUMNS;
const PROFILE: &str = "source, external_id, display_name, email, email_verified";

/// A profile in the columns of [`PROFILE`], starting at `first`.
fn profile(row: &postgres::Row, first: usize) -> Result<Profile, UserError> {
    Ok(Profile {
        source: Source::parse(&row.try_get::<_, String>(first)?)?,
        external_id: row.try_get(first + 1)?,
        display_name: row.try_get(first + 2)?,
        email: row.try_get(first + 3)?,
        email_verified: row.try_get(first + 4)?,
    })
}

fn changed(n: u64) -> Result<(), UserError> {
    if n == 0 {
        Err(UserError::NotFound)
    } else {
        Ok(())
    }
}

impl SourceStore for Postgres {
    fn profile(&self, id: UserId) -> Result<Option<Profile>, UserError> {
        self.client()?
            .query_typed_opt(
                &format!("SELECT {PROFILE} FROM users WHERE id = $1"),
                &[(&id, Type::INT8)],
            )?
            .map(|r| profile(&r, 0))
            .transpose()
    }

    fn find_by_external(&self, source: Source, id: &str) -> Result<Option<User>, UserError> {
        self.client()?
            .query_typed_opt(
                &format!("SELECT {COLUMNS} FROM users WHERE source = $1 AND external_id = $2"),
                &[(&source.as_str(), Type::TEXT), (&id, Type::TEXT)],
            )?
            .map(|r| Ok(User::from_row(&r, 0)?))
            .transpose()
    }

    fn holder(&self, name: &str) -> Result<Option<(UserId, Profile)>, UserError> {
        self.client()?
            .query_typed_opt(
                &format!("SELECT id, {PROFILE} FROM users WHERE lower(username) = lower($1)"),
                &[(&name, Type::TEXT)],
            )?
            .map(|r| Ok((r.try_get(0)?, profile(&r, 1)?)))
            .transpose()
    }

    fn insert_external(
        &self,
        source: Source,
        u: &External<'_>,
        now: Millis,
    ) -> Result<User, UserError> {
        // No password hash: see the SQLite statement.
        let row = self.client()?.query_typed_one(
            &format!(
                "INSERT INTO users (username, password_hash, created_at, password_changed_at, \
                 source, external_id, display_name, email, stamp) \
                 VALUES ($1, '', $2, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                (&u.username.as_str(), Type::TEXT),
                (&now, Type::INT8),
                (&source.as_str(), Type::TEXT),
                (&u.id, Type::TEXT),
                (&u.display_name, Type::TEXT),
                (&u.email, Type::TEXT),
                (&crate::identity::new_stamp(), Type::TEXT),
            ],
        )?;
        Ok(User::from_row(&row, 0)?)
    }

    fn update_external(&self, id: UserId, u: &External<'_>) -> Result<(), UserError> {
        changed(self.client()?.execute_typed(
            "UPDATE users SET username = $2, display_name = $3, email = $4 WHERE id = $1",
            &[
                (&id, Type::INT8),
                (&u.username.as_str(), Type::TEXT),
                (&u.display_name, Type::TEXT),
                (&u.email, Type::TEXT),
            ],
        )?)
    }

    fn set_username(&self, id: UserId, name: &str) -> Result<(), UserError> {
        changed(self.client()?.execute_typed(
            "UPDATE users SET username = $2 WHERE id = $1",
            &[(&id, Type::INT8), (&name, Type::TEXT)],
        )?)
    }

    fn list_by_source(&self, source: Source) -> Result<Vec<(User, Profile)>, UserError> {
        self.client()?
            .query_typed(
                &format!(
                    "SELECT {COLUMNS}, {PROFILE} FROM users WHERE source = $1 \
                     ORDER BY lower(username)"
                ),
                &[(&source.as_str(), Type::TEXT)],
            )?
            .iter()
            .map(|r| {
                Ok((
                    User::from_row(r, 0)?,
                    profile(r, crate::identity::USER_COLUMN_COUNT)?,
                ))
            })
            .collect()
    }

    fn set_profile(&self, id: UserId, p: &Profile) -> Result<(), UserError> {
        changed(self.client()?.execute_typed(
            "UPDATE users SET source = $2, external_id = $3, display_name = $4, email = $5, \
             email_verified = $6 WHERE id = $1",
            &[
                (&id, Type::INT8),
                (&p.source.as_str(), Type::TEXT),
                (&p.external_id, Type::TEXT),
                (&p.display_name, Type::TEXT),
                (&p.email, Type::TEXT),
                (&p.email_verified, Type::BOOL),
            ],
        )?)
    }
}
