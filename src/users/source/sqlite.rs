//! Sources in gatehouse's SQLite file: the statements behind
//! [`super::SourceStore`] (`NOCASE` keeps names unique whatever the case).

use rusqlite::{OptionalExtension, Row, params};

use super::super::sqlite::Sqlite;
use super::{External, Profile, Source, SourceStore};
use crate::clock::Millis;
use crate::users::{User, UserError, UserId};

const COLUMNS: &str = crate::identity::USER_COLUMNS;
const PROFILE: &str = "source, external_id, display_name, email, email_verified";

/// A profile in the columns of [`PROFILE`], starting at `first`.
fn profile(row: &Row<'_>, first: usize) -> Result<Profile, UserError> {
    Ok(Profile {
        source: Source::parse(&row.get::<_, String>(first)?)?,
        external_id: row.get(first + 1)?,
        display_name: row.get(first + 2)?,
        email: row.get(first + 3)?,
        email_verified: row.get(first + 4)?,
    })
}

/// `UserError::Taken` for a broken unique constraint, else the error.
fn taken(e: rusqlite::Error) -> UserError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            UserError::Taken
        }
        e => e.into(),
    }
}

fn changed(n: usize) -> Result<(), UserError> {
    if n == 0 {
        Err(UserError::NotFound)
    } else {
        Ok(())
    }
}

impl SourceStore for Sqlite {
    fn profile(&self, id: UserId) -> Result<Option<Profile>, UserError> {
        let conn = self.0.get()?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {PROFILE} FROM users WHERE id = ?1"))?;
        let mut rows = stmt.query([id])?;
        rows.next()?.map(|r| profile(r, 0)).transpose()
    }

    fn find_by_external(&self, source: Source, id: &str) -> Result<Option<User>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM users WHERE source = ?1 AND external_id = ?2"
        ))?;
        Ok(stmt
            .query_row(params![source.as_str(), id], |r| User::from_row(r, 0))
            .optional()?)
    }

    fn holder(&self, name: &str) -> Result<Option<(UserId, Profile)>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, {PROFILE} FROM users WHERE username = ?1"
        ))?;
        let mut rows = stmt.query([name])?;
        rows.next()?
            .map(|r| Ok((r.get(0)?, profile(r, 1)?)))
            .transpose()
    }

    fn insert_external(
        &self,
        source: Source,
        u: &External<'_>,
        now: Millis,
    ) -> Result<User, UserError> {
        let conn = self.0.get()?;
        // No password hash: the empty text no bcrypt hash can be, which
        // `Users::authenticate` refuses (after a dummy verify).
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO users (username, password_hash, created_at, password_changed_at, \
             source, external_id, display_name, email, stamp) \
             VALUES (?1, '', ?2, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING {COLUMNS}"
        ))?;
        let rows = crate::db::returning(
            &mut stmt,
            params![
                u.username.as_str(),
                now,
                source.as_str(),
                u.id,
                u.display_name,
                u.email,
                crate::identity::new_stamp()
            ],
            |r| User::from_row(r, 0),
        )
        .map_err(taken)?;
        rows.into_iter()
            .next()
            .ok_or_else(|| rusqlite::Error::QueryReturnedNoRows.into())
    }

    fn update_external(&self, id: UserId, u: &External<'_>) -> Result<(), UserError> {
        let n = self
            .0
            .get()?
            .execute(
                "UPDATE users SET username = ?2, display_name = ?3, email = ?4 WHERE id = ?1",
                params![id, u.username.as_str(), u.display_name, u.email],
            )
            .map_err(taken)?;
        changed(n)
    }

    fn set_username(&self, id: UserId, name: &str) -> Result<(), UserError> {
        let n = self
            .0
            .get()?
            .execute(
                "UPDATE users SET username = ?2 WHERE id = ?1",
                params![id, name],
            )
            .map_err(taken)?;
        changed(n)
    }

    fn list_by_source(&self, source: Source) -> Result<Vec<(User, Profile)>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, {PROFILE} FROM users WHERE source = ?1 \
             ORDER BY username COLLATE NOCASE"
        ))?;
        let mut rows = stmt.query([source.as_str()])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push((
                User::from_row(r, 0)?,
                profile(r, crate::identity::USER_COLUMN_COUNT)?,
            ));
        }
        Ok(out)
    }

    fn set_profile(&self, id: UserId, p: &Profile) -> Result<(), UserError> {
        let n = self
            .0
            .get()?
            .execute(
                "UPDATE users SET source = ?2, external_id = ?3, display_name = ?4, email = ?5, \
                 email_verified = ?6 WHERE id = ?1",
                params![
                    id,
                    p.source.as_str(),
                    p.external_id,
                    p.display_name,
                    p.email,
                    p.email_verified
                ],
            )
            .map_err(taken)?;
        changed(n)
    }
}
