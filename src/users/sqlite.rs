//! Users in gatehouse's SQLite file: the statements behind [`super::Users`]
//! for the default backend (`NOCASE` keeps usernames unique whatever the
//! case).

use rusqlite::{OptionalExtension, Row, params};

use super::{Backend, Flag, User, UserError, UserId};
use crate::clock::Millis;
use crate::db::Pool;

const COLUMNS: &str = crate::identity::USER_COLUMNS;

fn user(row: &Row<'_>) -> rusqlite::Result<User> {
    User::from_row(row, 0)
}

/// Users in gatehouse's SQLite file.
pub(super) struct Sqlite(pub(super) Pool);

impl Sqlite {
    fn update(&self, sql: &str, args: impl rusqlite::Params) -> Result<(), UserError> {
        match self.0.get()?.execute(sql, args)? {
            0 => Err(UserError::NotFound),
            _ => Ok(()),
        }
    }
}

impl Backend for Sqlite {
    fn insert(
        &self,
        name: &str,
        hash: &str,
        is_admin: bool,
        now: Millis,
    ) -> Result<User, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO users (username, password_hash, is_admin, created_at, password_changed_at) \
             VALUES (?1, ?2, ?3, ?4, ?4) RETURNING {COLUMNS}"
        ))?;
        match crate::db::returning(&mut stmt, params![name, hash, is_admin, now], user) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(UserError::Taken)
            }
            Err(e) => Err(e.into()),
            Ok(rows) => rows
                .into_iter()
                .next()
                .ok_or_else(|| rusqlite::Error::QueryReturnedNoRows.into()),
        }
    }

    fn find_by_id(&self, id: UserId) -> Result<Option<User>, UserError> {
        let conn = self.0.get()?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"))?;
        Ok(stmt.query_row([id], user).optional()?)
    }

    fn find_by_name(&self, name: &str) -> Result<Option<User>, UserError> {
        let conn = self.0.get()?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE username = ?1"))?;
        Ok(stmt.query_row([name], user).optional()?)
    }

    fn find_with_hash(&self, name: &str) -> Result<Option<(User, String)>, UserError> {
        let conn = self.0.get()?;
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, password_hash FROM users WHERE username = ?1"
            ))?
            .query_row([name], |r| Ok((user(r)?, r.get::<_, String>(6)?)))
            .optional()?)
    }

    fn list(&self) -> Result<Vec<User>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM users ORDER BY username COLLATE NOCASE"
        ))?;
        let rows = stmt.query_map([], user)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn export(&self) -> Result<Vec<(User, String)>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS}, password_hash FROM users ORDER BY id"
        ))?;
        let rows = stmt.query_map([], |r| Ok((user(r)?, r.get::<_, String>(6)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count(&self, only_active_admins: bool) -> Result<i64, UserError> {
        let sql = if only_active_admins {
            "SELECT count(*) FROM users WHERE is_admin AND NOT disabled"
        } else {
            "SELECT count(*) FROM users"
        };
        Ok(self.0.get()?.query_row(sql, [], |r| r.get(0))?)
    }

    fn set_password_hash(&self, id: UserId, hash: &str, now: Millis) -> Result<(), UserError> {
        self.update(
            "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
            params![id, hash, now],
        )
    }

    fn set_flag(&self, id: UserId, flag: Flag, value: bool) -> Result<(), UserError> {
        self.update(
            &format!("UPDATE users SET {} = ?2 WHERE id = ?1", flag.column()),
            params![id, value],
        )
    }

    fn delete(&self, id: UserId) -> Result<(), UserError> {
        self.update("DELETE FROM users WHERE id = ?1", params![id])
    }

    fn import(&self, u: &User, hash: &str) -> Result<(), UserError> {
        self.0.get()?.execute(
            "INSERT INTO users (id, username, password_hash, is_admin, disabled, created_at, \
             password_changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                u.id,
                u.username,
                hash,
                u.is_admin,
                u.disabled,
                u.created_at,
                u.password_changed_at
            ],
        )?;
        Ok(())
    }
}
