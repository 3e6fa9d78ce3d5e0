//! Users in PostgreSQL: the same statements as SQLite's, with `lower()`
//! standing in for the `NOCASE` collation (usernames are ASCII).

use postgres::types::Type;

use super::factors::{FactorStore, NewPasskeyRow, Passkey, Stored, StoredPasskey, Summary};
use super::{Backend, User, UserError, UserId};
use crate::clock::Millis;
use crate::db::postgres::{PgPool, is_connection_error};

const COLUMNS: &str = crate::identity::USER_COLUMNS;

/// Where `password_hash` is read when selected after [`COLUMNS`].
const HASH: usize = crate::identity::USER_COLUMN_COUNT;

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
    pub(in crate::users) fn client(&self) -> Result<crate::db::postgres::PgConn, UserError> {
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
        stamp: &str,
    ) -> Result<User, UserError> {
        // The user and their membership of `admins` commit together.
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let id: UserId = tx
            .query_typed_one(
                "INSERT INTO users (username, password_hash, created_at, \
                 password_changed_at, stamp) VALUES ($1, $2, $3, $3, $4) RETURNING id",
                &[
                    (&name, Type::TEXT),
                    (&hash, Type::TEXT),
                    (&now, Type::INT8),
                    (&stamp, Type::TEXT),
                ],
            )?
            .try_get(0)?;
        if is_admin {
            tx.execute_typed(
                "INSERT INTO user_groups (user_id, group_id) \
                 SELECT $1, id FROM groups WHERE name = 'admins'",
                &[(&id, Type::INT8)],
            )?;
        }
        let made = user(&tx.query_typed_one(
            &format!("SELECT {COLUMNS} FROM users WHERE id = $1"),
            &[(&id, Type::INT8)],
        )?)?;
        tx.commit()?;
        Ok(made)
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
            .map(|r| Ok((user(&r)?, r.try_get(HASH)?)))
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
            .map(|r| Ok((user(r)?, r.try_get(HASH)?)))
            .collect()
    }

    fn count(&self) -> Result<i64, UserError> {
        Ok(self
            .client()?
            .query_typed_one("SELECT count(*) FROM users", &[])?
            .try_get(0)?)
    }

    fn set_password_hash(&self, id: UserId, hash: &str, now: Millis) -> Result<(), UserError> {
        self.update(
            "UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
            &[(&id, Type::INT8), (&hash, Type::TEXT), (&now, Type::INT8)],
        )
    }

    fn rehash(&self, id: UserId, old: &str, new: &str) -> Result<bool, UserError> {
        Ok(self.client()?.execute_typed(
            "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
            &[(&id, Type::INT8), (&old, Type::TEXT), (&new, Type::TEXT)],
        )? > 0)
    }

    fn hash_kinds(&self) -> Result<Vec<(String, i64)>, UserError> {
        self.client()?
            .query_typed(
                "SELECT substr(password_hash, 1, 7), count(*) FROM users GROUP BY 1",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    fn set_disabled(&self, id: UserId, value: bool) -> Result<(), UserError> {
        self.update(
            "UPDATE users SET disabled = $2 WHERE id = $1",
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
            "INSERT INTO users (id, username, password_hash, disabled, created_at, \
             password_changed_at, stamp) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                (&u.id, Type::INT8),
                (&u.username, Type::TEXT),
                (&hash, Type::TEXT),
                (&u.disabled, Type::BOOL),
                (&u.created_at, Type::INT8),
                (&u.password_changed_at, Type::INT8),
                (&u.stamp, Type::TEXT),
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

impl Postgres {
    fn count_rows(
        &self,
        sql: &str,
        params: &[(&(dyn postgres::types::ToSql + Sync), Type)],
    ) -> Result<u64, UserError> {
        Ok(self.client()?.execute_typed(sql, params)?)
    }
}

impl FactorStore for Postgres {
    fn totp_get(&self, user: UserId) -> Result<Option<Vec<u8>>, UserError> {
        self.client()?
            .query_typed_opt(
                "SELECT seed FROM totp WHERE user_id = $1",
                &[(&user, Type::INT8)],
            )?
            .map(|r| Ok(r.try_get(0)?))
            .transpose()
    }

    fn totp_set(
        &self,
        user: UserId,
        sealed: &[u8],
        step: i64,
        now: Millis,
    ) -> Result<(), UserError> {
        self.count_rows(
            "INSERT INTO totp (user_id, seed, last_step, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET seed = $2, last_step = $3, created_at = $4",
            &[
                (&user, Type::INT8),
                (&sealed, Type::BYTEA),
                (&step, Type::INT8),
                (&now, Type::INT8),
            ],
        )?;
        Ok(())
    }

    fn totp_use(&self, user: UserId, step: i64) -> Result<bool, UserError> {
        Ok(self.count_rows(
            "UPDATE totp SET last_step = $2 WHERE user_id = $1 AND last_step < $2",
            &[(&user, Type::INT8), (&step, Type::INT8)],
        )? > 0)
    }

    fn totp_delete(&self, user: UserId) -> Result<(), UserError> {
        self.count_rows(
            "DELETE FROM totp WHERE user_id = $1",
            &[(&user, Type::INT8)],
        )?;
        Ok(())
    }

    fn recovery_replace(&self, user: UserId, hashes: &[[u8; 32]]) -> Result<(), UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        tx.execute_typed(
            "DELETE FROM recovery_codes WHERE user_id = $1",
            &[(&user, Type::INT8)],
        )?;
        for hash in hashes {
            let hash = &hash[..];
            tx.execute_typed(
                "INSERT INTO recovery_codes (user_id, hash) VALUES ($1, $2)",
                &[(&user, Type::INT8), (&hash, Type::BYTEA)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn recovery_take(&self, user: UserId, hash: &[u8; 32]) -> Result<bool, UserError> {
        let hash = &hash[..];
        Ok(self.count_rows(
            "DELETE FROM recovery_codes WHERE user_id = $1 AND hash = $2",
            &[(&user, Type::INT8), (&hash, Type::BYTEA)],
        )? > 0)
    }

    fn recovery_count(&self, user: UserId) -> Result<i64, UserError> {
        Ok(self
            .client()?
            .query_typed_one(
                "SELECT count(*) FROM recovery_codes WHERE user_id = $1",
                &[(&user, Type::INT8)],
            )?
            .try_get(0)?)
    }

    fn passkey_insert(&self, user: UserId, new: &NewPasskeyRow<'_>) -> Result<(), UserError> {
        self.count_rows(
            "INSERT INTO passkeys (user_id, credential_id, name, credential, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                (&user, Type::INT8),
                (&new.credential_id, Type::BYTEA),
                (&new.name, Type::TEXT),
                (&new.credential, Type::BYTEA),
                (&new.now, Type::INT8),
            ],
        )?;
        Ok(())
    }

    fn passkey_list(&self, user: UserId) -> Result<Vec<Passkey>, UserError> {
        self.client()?
            .query_typed(
                "SELECT id, name, created_at, last_used_at, credential_id FROM passkeys WHERE user_id = $1 \
                 ORDER BY created_at, id",
                &[(&user, Type::INT8)],
            )?
            .iter()
            .map(|r| {
                Ok(Passkey {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    last_used_at: r.try_get(3)?,
                    credential_id: r.try_get(4)?,
                })
            })
            .collect()
    }

    fn passkey_find(&self, credential_id: &[u8]) -> Result<Option<StoredPasskey>, UserError> {
        self.client()?
            .query_typed_opt(
                "SELECT id, user_id, credential FROM passkeys WHERE credential_id = $1",
                &[(&credential_id, Type::BYTEA)],
            )?
            .map(|r| {
                Ok(StoredPasskey {
                    id: r.try_get(0)?,
                    user_id: r.try_get(1)?,
                    credential: r.try_get(2)?,
                })
            })
            .transpose()
    }

    fn passkey_used(
        &self,
        id: i64,
        credential: &[u8],
        started: Millis,
        now: Millis,
    ) -> Result<bool, UserError> {
        // The one-use rule of `Factors::passkey_used`, in the same step as
        // the write, so two answers to one ceremony cannot both pass.
        Ok(self.count_rows(
            "UPDATE passkeys SET credential = $2, last_used_at = $3 WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at < $4 OR last_used_at > $3)",
            &[
                (&id, Type::INT8),
                (&credential, Type::BYTEA),
                (&now, Type::INT8),
                (&started, Type::INT8),
            ],
        )? > 0)
    }

    fn passkey_delete(&self, user: UserId, id: i64) -> Result<bool, UserError> {
        Ok(self.count_rows(
            "DELETE FROM passkeys WHERE user_id = $1 AND id = $2",
            &[(&user, Type::INT8), (&id, Type::INT8)],
        )? > 0)
    }

    fn factors_delete(&self, user: UserId) -> Result<(), UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        for table in ["totp", "recovery_codes", "passkeys"] {
            tx.execute_typed(
                &format!("DELETE FROM {table} WHERE user_id = $1"),
                &[(&user, Type::INT8)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn export(&self, user: UserId) -> Result<Stored, UserError> {
        let mut client = self.client()?;
        let totp = client
            .query_typed_opt(
                "SELECT seed, last_step, created_at FROM totp WHERE user_id = $1",
                &[(&user, Type::INT8)],
            )?
            .map(|r| -> Result<_, UserError> { Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)) })
            .transpose()?;
        let recovery = client
            .query_typed(
                "SELECT hash FROM recovery_codes WHERE user_id = $1 ORDER BY hash",
                &[(&user, Type::INT8)],
            )?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect::<Result<_, UserError>>()?;
        let passkeys = client
            .query_typed(
                "SELECT credential_id, name, credential, created_at, last_used_at FROM passkeys \
                 WHERE user_id = $1 ORDER BY id",
                &[(&user, Type::INT8)],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect::<Result<_, UserError>>()?;
        Ok(Stored {
            totp,
            recovery,
            passkeys,
        })
    }

    fn import(&self, user: UserId, stored: &Stored) -> Result<(), UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        if let Some((seed, step, at)) = &stored.totp {
            tx.execute_typed(
                "INSERT INTO totp (user_id, seed, last_step, created_at) VALUES ($1, $2, $3, $4)",
                &[
                    (&user, Type::INT8),
                    (seed, Type::BYTEA),
                    (step, Type::INT8),
                    (at, Type::INT8),
                ],
            )?;
        }
        for hash in &stored.recovery {
            tx.execute_typed(
                "INSERT INTO recovery_codes (user_id, hash) VALUES ($1, $2)",
                &[(&user, Type::INT8), (hash, Type::BYTEA)],
            )?;
        }
        for (id, name, credential, at, used) in &stored.passkeys {
            tx.execute_typed(
                "INSERT INTO passkeys (user_id, credential_id, name, credential, created_at, \
                 last_used_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    (&user, Type::INT8),
                    (id, Type::BYTEA),
                    (name, Type::TEXT),
                    (credential, Type::BYTEA),
                    (at, Type::INT8),
                    (used, Type::INT8),
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn summary(&self, user: UserId) -> Result<Summary, UserError> {
        let r = self
            .client()?
            .query_typed_one(super::sqlite::SUMMARY, &[(&user, Type::INT8)])?;
        Ok(Summary {
            totp: r.try_get(0)?,
            recovery_left: r.try_get(1)?,
            passkeys: r.try_get(2)?,
        })
    }

    fn summaries(&self) -> Result<Vec<(UserId, Summary)>, UserError> {
        self.client()?
            .query_typed(super::sqlite::SUMMARIES, &[])?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    Summary {
                        totp: r.try_get(1)?,
                        recovery_left: r.try_get(2)?,
                        passkeys: r.try_get(3)?,
                    },
                ))
            })
            .collect()
    }
}
