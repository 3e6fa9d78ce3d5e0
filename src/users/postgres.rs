//! Users in PostgreSQL: the same statements as SQLite's, with `lower()`
//! standing in for the `NOCASE` collation (usernames are ASCII).

use postgres::types::Type;

use super::{Backend, Flag, User, UserError, UserId};
use crate::clock::Millis;
use crate::db::postgres::{PgPool, is_connection_error};

const COLUMNS: &str = crate::identity::USER_COLUMNS;

/// The SQLSTATE of a unique-constraint violation.
const UNIQUE_VIOLATION: &str = "23505";

pub(super) struct Postgres(pub(super) PgPool);

impl From<postgres::Error> for UserError {
    fn from(e: postgres::Error) -> Self {
        if is_connection_error(&e) {
            Self::Unavailable(format!("PostgreSQL: {e}"))
        } else if e.code().is_some_and(|c| c.code() == UNIQUE_VIOLATION) {
            Self::Taken
        } else {
            Self::Db(e.into())
        }
    }
}

fn user(row: &postgres::Row) -> Result<User, UserError> {
    Ok(User::from_row(row, 0)?)
}

impl Postgres {
    fn client(&self) -> Result<crate::db::postgres::PgConn, UserError> {
        crate::db::postgres::client(&self.0).map_err(|e| UserError::Unavailable(e.detail()))
    }

    fn one(
        &self,
        sql: &str,
        arg: &(dyn postgres::types::ToSql + Sync),
        ty: Type,
    ) -> Result<Option<User>, UserError> {
        self.client()?
            .query_typed_opt(sql, &[(arg, ty)])?
            .as_ref()
            .map(user)
            .transpose()
    }

    fn update(
        &self,
        sql: &str,
        params: &[(&(dyn postgres::types::ToSql + Sync), Type)],
    ) -> Result<(), UserError> {
        match self.client()?.execute_typed(sql, params)? {
            0 => Err(UserError::NotFound),
            _ => Ok(()),
        }
    }
}

impl Backend for Postgres {
    fn insert(
        &self,
        name: &str,
        hash: &str,
        is_admin: bool,
        now: Millis,
    ) -> Result<User, UserError> {
        user(&self.client()?.query_typed_one(
            &format!(
                "INSERT INTO users (username, password_hash, is_admin, created_at, password_changed_at) \
                 VALUES ($1, $2, $3, $4, $4) RETURNING {COLUMNS}"
            ),
            &[
                (&name, Type::TEXT),
                (&hash, Type::TEXT),
                (&is_admin, Type::BOOL),
                (&now, Type::INT8),
            ],
        )?)
    }

    fn find_by_id(&self, id: UserId) -> Result<Option<User>, UserError> {
        self.one(
            &format!("SELECT {COLUMNS} FROM users WHERE id = $1"),
            &id,
            Type::INT8,
        )
    }

    fn find_by_name(&self, name: &str) -> Result<Option<User>, UserError> {
        self.one(
            &format!("SELECT {COLUMNS} FROM users WHERE lower(username) = lower($1)"),
            &name,
            Type::TEXT,
        )
    }

    fn find_with_hash(&self, name: &str) -> Result<Option<(User, String)>, UserError> {
        self.client()?
            .query_typed_opt(
                &format!(
                    "SELECT {COLUMNS}, password_hash FROM users WHERE lower(username) = lower($1)"
                ),
                &[(&name, Type::TEXT)],
            )?
            .map(|r| Ok((user(&r)?, r.try_get(6)?)))
            .transpose()
    }

    fn list(&self) -> Result<Vec<User>, UserError> {
        self.client()?
            .query_typed(
                &format!("SELECT {COLUMNS} FROM users ORDER BY lower(username)"),
                &[],
            )?
            .iter()
            .map(user)
            .collect()
    }

    fn export(&self) -> Result<Vec<(User, String)>, UserError> {
        self.client()?
            .query_typed(
                &format!("SELECT {COLUMNS}, password_hash FROM users ORDER BY id"),
                &[],
            )?
            .iter()
            .map(|r| Ok((user(r)?, r.try_get(6)?)))
            .collect()
    }

    fn count(&self, only_active_admins: bool) -> Result<i64, UserError> {
        let sql = if only_active_admins {
            "SELECT count(*) FROM users WHERE is_admin AND NOT disabled"
        } else {
            "SELECT count(*) FROM users"
        };
        Ok(self.client()?.query_typed_one(sql, &[])?.try_get(0)?)
    }

    fn set_password_hash(&self, id: UserId, hash: &str, now: Millis) -> Result<(), UserError> {
        self.update(
            "UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
            &[(&id, Type::INT8), (&hash, Type::TEXT), (&now, Type::INT8)],
        )
    }

    fn set_flag(&self, id: UserId, flag: Flag, value: bool) -> Result<(), UserError> {
        self.update(
            &format!("UPDATE users SET {} = $2 WHERE id = $1", flag.column()),
            &[(&id, Type::INT8), (&value, Type::BOOL)],
        )
    }

    fn delete(&self, id: UserId) -> Result<(), UserError> {
        self.update("DELETE FROM users WHERE id = $1", &[(&id, Type::INT8)])
    }

    fn import(&self, u: &User, hash: &str) -> Result<(), UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        tx.execute_typed(
            "INSERT INTO users (id, username, password_hash, is_admin, disabled, created_at, \
             password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                (&u.id, Type::INT8),
                (&u.username, Type::TEXT),
                (&hash, Type::TEXT),
                (&u.is_admin, Type::BOOL),
                (&u.disabled, Type::BOOL),
                (&u.created_at, Type::INT8),
                (&u.password_changed_at, Type::INT8),
            ],
        )?;
        // New users must not be numbered into the ids just copied.
        tx.batch_execute(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), \
             (SELECT coalesce(max(id), 1) FROM users))",
        )?;
        tx.commit()?;
        Ok(())
    }
}
