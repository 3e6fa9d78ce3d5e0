//! Users in gatehouse's SQLite file: the statements behind [`super::Users`]
//! for the default backend (`NOCASE` keeps usernames unique whatever the
//! case).

use rusqlite::{OptionalExtension, Row, params};

use super::factors::{FactorStore, NewPasskeyRow, Passkey, Stored, StoredPasskey, Summary};
use super::{Backend, User, UserError, UserId};
use crate::clock::Millis;
use crate::db::Pool;

const COLUMNS: &str = crate::identity::USER_COLUMNS;

/// Where `password_hash` is read when selected after [`COLUMNS`].
const HASH: usize = crate::identity::USER_COLUMN_COUNT;

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
        stamp: &str,
    ) -> Result<User, UserError> {
        // The user and their membership of `admins` commit together: a
        // first administrator is never left made but powerless.
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        let id: UserId = match tx.query_row(
            "INSERT INTO users (username, password_hash, created_at, password_changed_at, \
             stamp) VALUES (?1, ?2, ?3, ?3, ?4) RETURNING id",
            params![name, hash, now, stamp],
            |r| r.get(0),
        ) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(UserError::Taken);
            }
            other => other?,
        };
        if is_admin {
            tx.execute(
                "INSERT INTO user_groups (user_id, group_id) \
                 SELECT ?1, id FROM groups WHERE name = 'admins'",
                [id],
            )?;
        }
        let made = tx.query_row(
            &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
            [id],
            user,
        )?;
        tx.commit()?;
        Ok(made)
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
            .query_row([name], |r| Ok((user(r)?, r.get::<_, String>(HASH)?)))
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
        let rows = stmt.query_map([], |r| Ok((user(r)?, r.get::<_, String>(HASH)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count(&self) -> Result<i64, UserError> {
        Ok(self
            .0
            .get()?
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
    }

    fn set_password_hash(&self, id: UserId, hash: &str, now: Millis) -> Result<(), UserError> {
        self.update(
            "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
            params![id, hash, now],
        )
    }

    fn rehash(&self, id: UserId, old: &str, new: &str) -> Result<bool, UserError> {
        Ok(self.0.get()?.execute(
            "UPDATE users SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2",
            params![id, old, new],
        )? > 0)
    }

    fn hash_kinds(&self) -> Result<Vec<(String, i64)>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn
            .prepare_cached("SELECT substr(password_hash, 1, 7), count(*) FROM users GROUP BY 1")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_disabled(&self, id: UserId, value: bool) -> Result<(), UserError> {
        self.update(
            "UPDATE users SET disabled = ?2 WHERE id = ?1",
            params![id, value],
        )
    }

    fn delete(&self, id: UserId) -> Result<(), UserError> {
        self.update("DELETE FROM users WHERE id = ?1", params![id])
    }

    fn import(&self, u: &User, hash: &str) -> Result<(), UserError> {
        self.0.get()?.execute(
            "INSERT INTO users (id, username, password_hash, disabled, created_at, \
             password_changed_at, stamp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                u.id,
                u.username,
                hash,
                u.disabled,
                u.created_at,
                u.password_changed_at,
                u.stamp
            ],
        )?;
        Ok(())
    }
}

impl FactorStore for Sqlite {
    fn totp_get(&self, user: UserId) -> Result<Option<Vec<u8>>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached("SELECT seed FROM totp WHERE user_id = ?1")?;
        Ok(stmt.query_row([user], |r| r.get(0)).optional()?)
    }

    fn totp_set(
        &self,
        user: UserId,
        sealed: &[u8],
        step: i64,
        now: Millis,
    ) -> Result<(), UserError> {
        self.0.get()?.execute(
            "INSERT INTO totp (user_id, seed, last_step, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (user_id) DO UPDATE SET seed = ?2, last_step = ?3, created_at = ?4",
            params![user, sealed, step, now],
        )?;
        Ok(())
    }

    fn totp_use(&self, user: UserId, step: i64) -> Result<bool, UserError> {
        let n = self.0.get()?.execute(
            "UPDATE totp SET last_step = ?2 WHERE user_id = ?1 AND last_step < ?2",
            params![user, step],
        )?;
        Ok(n > 0)
    }

    fn totp_delete(&self, user: UserId) -> Result<(), UserError> {
        self.0
            .get()?
            .execute("DELETE FROM totp WHERE user_id = ?1", [user])?;
        Ok(())
    }

    fn recovery_replace(&self, user: UserId, hashes: &[[u8; 32]]) -> Result<(), UserError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user])?;
        for hash in hashes {
            tx.execute(
                "INSERT INTO recovery_codes (user_id, hash) VALUES (?1, ?2)",
                params![user, &hash[..]],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn recovery_take(&self, user: UserId, hash: &[u8; 32]) -> Result<bool, UserError> {
        let n = self.0.get()?.execute(
            "DELETE FROM recovery_codes WHERE user_id = ?1 AND hash = ?2",
            params![user, &hash[..]],
        )?;
        Ok(n > 0)
    }

    fn recovery_count(&self, user: UserId) -> Result<i64, UserError> {
        Ok(self.0.get()?.query_row(
            "SELECT count(*) FROM recovery_codes WHERE user_id = ?1",
            [user],
            |r| r.get(0),
        )?)
    }

    fn passkey_insert(&self, user: UserId, new: &NewPasskeyRow<'_>) -> Result<(), UserError> {
        match self.0.get()?.execute(
            "INSERT INTO passkeys (user_id, credential_id, name, credential, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user, new.credential_id, new.name, new.credential, new.now],
        ) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(UserError::Taken)
            }
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }

    fn passkey_list(&self, user: UserId) -> Result<Vec<Passkey>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, created_at, last_used_at, credential_id FROM passkeys WHERE user_id = ?1 \
             ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([user], |r| {
            Ok(Passkey {
                id: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(2)?,
                last_used_at: r.get(3)?,
                credential_id: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn passkey_find(&self, credential_id: &[u8]) -> Result<Option<StoredPasskey>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, user_id, credential FROM passkeys WHERE credential_id = ?1",
        )?;
        Ok(stmt
            .query_row([credential_id], |r| {
                Ok(StoredPasskey {
                    id: r.get(0)?,
                    user_id: r.get(1)?,
                    credential: r.get(2)?,
                })
            })
            .optional()?)
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
        let n = self.0.get()?.execute(
            "UPDATE passkeys SET credential = ?2, last_used_at = ?3 WHERE id = ?1 \
             AND (last_used_at IS NULL OR last_used_at < ?4 OR last_used_at > ?3)",
            params![id, credential, now, started],
        )?;
        Ok(n > 0)
    }

    fn passkey_delete(&self, user: UserId, id: i64) -> Result<bool, UserError> {
        let n = self.0.get()?.execute(
            "DELETE FROM passkeys WHERE user_id = ?1 AND id = ?2",
            params![user, id],
        )?;
        Ok(n > 0)
    }

    fn factors_delete(&self, user: UserId) -> Result<(), UserError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        for table in ["totp", "recovery_codes", "passkeys"] {
            tx.execute(&format!("DELETE FROM {table} WHERE user_id = ?1"), [user])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn export(&self, user: UserId) -> Result<Stored, UserError> {
        self.export_factors(user)
    }

    fn import(&self, user: UserId, stored: &Stored) -> Result<(), UserError> {
        self.import_factors(user, stored)
    }

    fn summary(&self, user: UserId) -> Result<Summary, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(SUMMARY)?;
        Ok(stmt.query_row([user], |r| {
            Ok(Summary {
                totp: r.get(0)?,
                recovery_left: r.get(1)?,
                passkeys: r.get(2)?,
            })
        })?)
    }

    fn summaries(&self) -> Result<Vec<(UserId, Summary)>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(SUMMARIES)?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                Summary {
                    totp: r.get(1)?,
                    recovery_left: r.get(2)?,
                    passkeys: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Sqlite {
    fn export_factors(&self, user: UserId) -> Result<Stored, UserError> {
        let conn = self.0.get()?;
        let totp = conn
            .query_row(
                "SELECT seed, last_step, created_at FROM totp WHERE user_id = ?1",
                [user],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let recovery = conn
            .prepare("SELECT hash FROM recovery_codes WHERE user_id = ?1 ORDER BY hash")?
            .query_map([user], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let passkeys = conn
            .prepare(
                "SELECT credential_id, name, credential, created_at, last_used_at FROM passkeys \
                 WHERE user_id = ?1 ORDER BY id",
            )?
            .query_map([user], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(Stored {
            totp,
            recovery,
            passkeys,
        })
    }

    fn import_factors(&self, user: UserId, stored: &Stored) -> Result<(), UserError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        if let Some((seed, step, at)) = &stored.totp {
            tx.execute(
                "INSERT INTO totp (user_id, seed, last_step, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![user, seed, step, at],
            )?;
        }
        for hash in &stored.recovery {
            tx.execute(
                "INSERT INTO recovery_codes (user_id, hash) VALUES (?1, ?2)",
                params![user, hash],
            )?;
        }
        for (id, name, credential, at, used) in &stored.passkeys {
            tx.execute(
                "INSERT INTO passkeys (user_id, credential_id, name, credential, created_at, \
                 last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![user, id, name, credential, at, used],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Each user with a second factor or recovery codes, and what they have
/// (the same statement on both databases).
pub(super) const SUMMARIES: &str = "SELECT u.id, \
     EXISTS (SELECT 1 FROM totp t WHERE t.user_id = u.id), \
     (SELECT count(*) FROM recovery_codes c WHERE c.user_id = u.id), \
     (SELECT count(*) FROM passkeys p WHERE p.user_id = u.id) \
     FROM users u WHERE EXISTS (SELECT 1 FROM totp t WHERE t.user_id = u.id) \
     OR EXISTS (SELECT 1 FROM recovery_codes c WHERE c.user_id = u.id) \
     OR EXISTS (SELECT 1 FROM passkeys p WHERE p.user_id = u.id)";

/// What one user (`$1`) has: the columns of [`SUMMARIES`] after the id
/// (`$1` is positional in SQLite too).
pub(super) const SUMMARY: &str = "SELECT \
     EXISTS (SELECT 1 FROM totp WHERE user_id = $1), \
     (SELECT count(*) FROM recovery_codes WHERE user_id = $1), \
     (SELECT count(*) FROM passkeys WHERE user_id = $1)";
