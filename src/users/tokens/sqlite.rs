//! Tokens in gatehouse's SQLite file: the statements behind
//! [`super::TokenStore`].

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::super::sqlite::Sqlite;
use super::{Listed, MAX_PER_USER, NewToken, Token, TokenId, TokenStore, join_apps, split_apps};
use crate::clock::Millis;
use crate::identity::JOINED_USER_COLUMNS;
use crate::users::{User, UserError, UserId};

/// The token columns, in the order [`token`] reads them.
const COLUMNS: &str = "t.id, t.user_id, t.name, t.apps, t.created_at, t.expires_at, \
     t.last_used_at, t.password_at";

/// How many [`COLUMNS`] there are: what follows starts here.
const AFTER: usize = 8;

fn token(row: &Row<'_>) -> rusqlite::Result<Token> {
    Ok(Token {
        id: row.get(0)?,
        user_id: row.get(1)?,
        name: row.get(2)?,
        apps: split_apps(&row.get::<_, String>(3)?),
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        last_used_at: row.get(6)?,
        password_at: row.get(7)?,
    })
}

impl TokenStore for Sqlite {
    fn insert(
        &self,
        user: &User,
        hash: &[u8; 32],
        new: &NewToken,
        now: Millis,
    ) -> Result<Token, UserError> {
        let apps = join_apps(&new.apps);
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: i64 = tx.query_row(
            "SELECT count(*) FROM access_tokens WHERE user_id = ?1",
            [user.id],
            |r| r.get(0),
        )?;
        if usize::try_from(held).unwrap_or(usize::MAX) >= MAX_PER_USER {
            return Err(UserError::TooMany);
        }
        // The user's password time as stored now, in the same transaction:
        // a password changed since `user` was read ends this token too.
        let id: Option<TokenId> = tx
            .query_row(
                "INSERT INTO access_tokens (hash, user_id, name, apps, created_at, expires_at,
                     password_at)
                 SELECT ?1, id, ?3, ?4, ?5, ?6, password_changed_at FROM users
                 WHERE id = ?2 AND password_changed_at = ?7 RETURNING id",
                params![
                    &hash[..],
                    user.id,
                    new.name,
                    apps,
                    now,
                    new.expires_at,
                    user.password_changed_at
                ],
                |r| r.get(0),
            )
            .optional()?;
        let id = id.ok_or(UserError::NotFound)?;
        tx.commit()?;
        Ok(Token {
            id,
            user_id: user.id,
            name: new.name.clone(),
            apps: new.apps.clone(),
            created_at: now,
            expires_at: new.expires_at,
            last_used_at: None,
            password_at: user.password_changed_at,
        })
    }

    fn find(&self, hash: &[u8; 32]) -> Result<Option<(Token, User)>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, {JOINED_USER_COLUMNS} FROM access_tokens t
             JOIN users u ON u.id = t.user_id WHERE t.hash = ?1"
        ))?;
        Ok(stmt
            .query_row([&hash[..]], |r| Ok((token(r)?, User::from_row(r, AFTER)?)))
            .optional()?)
    }

    fn touch(&self, id: TokenId, now: Millis) -> Result<(), UserError> {
        self.0.get()?.execute(
            "UPDATE access_tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    fn of_user(&self, user: UserId) -> Result<Vec<Token>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM access_tokens t WHERE t.user_id = ?1 ORDER BY t.id DESC"
        ))?;
        Ok(stmt.query_map([user], token)?.collect::<Result<_, _>>()?)
    }

    fn all(&self) -> Result<Vec<Listed>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, u.username FROM access_tokens t
             JOIN users u ON u.id = t.user_id ORDER BY t.id DESC"
        ))?;
        Ok(stmt
            .query_map([], |r| {
                Ok(Listed {
                    token: token(r)?,
                    username: r.get(AFTER)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    fn delete(&self, id: TokenId, user: Option<UserId>) -> Result<bool, UserError> {
        let n = self.0.get()?.execute(
            "DELETE FROM access_tokens WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
            params![id, user],
        )?;
        Ok(n > 0)
    }

    fn delete_of_user(&self, user: UserId) -> Result<usize, UserError> {
        Ok(self
            .0
            .get()?
            .execute("DELETE FROM access_tokens WHERE user_id = ?1", [user])?)
    }

    fn sweep(&self, now: Millis) -> Result<usize, UserError> {
        Ok(self.0.get()?.execute(
            "DELETE FROM access_tokens WHERE (expires_at IS NOT NULL AND expires_at <= ?1)
                 OR password_at <> (SELECT password_changed_at FROM users
                                    WHERE users.id = access_tokens.user_id)",
            [now],
        )?)
    }

    fn export(&self) -> Result<Vec<(Token, Vec<u8>)>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS}, t.hash FROM access_tokens t ORDER BY t.id"
        ))?;
        Ok(stmt
            .query_map([], |r| Ok((token(r)?, r.get(AFTER)?)))?
            .collect::<Result<_, _>>()?)
    }

    fn import(&self, tokens: &[(Token, Vec<u8>)]) -> Result<(), UserError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (t, hash) in tokens {
            tx.execute(
                "INSERT INTO access_tokens (id, hash, user_id, name, apps, created_at,
                     expires_at, last_used_at, password_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                params![
                    t.id,
                    hash,
                    t.user_id,
                    t.name,
                    join_apps(&t.apps),
                    t.created_at,
                    t.expires_at,
                    t.last_used_at,
                    t.password_at
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
