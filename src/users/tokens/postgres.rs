//! Tokens in PostgreSQL: the statements behind [`super::TokenStore`].

use postgres::types::Type;

use super::super::postgres::Postgres;
use super::{Listed, MAX_PER_USER, NewToken, Token, TokenId, TokenStore, join_apps, split_apps};
use crate::clock::Millis;
use crate::identity::JOINED_USER_COLUMNS;
use crate::users::{User, UserError, UserId};

/// The token columns, in the order [`token`] reads them.
const COLUMNS: &str = "t.id, t.user_id, t.name, t.apps, t.created_at, t.expires_at, \
     t.last_used_at, t.password_at";

/// How many [`COLUMNS`] there are: what follows starts here.
const AFTER: usize = 8;

fn token(row: &postgres::Row) -> Result<Token, UserError> {
    Ok(Token {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        name: row.try_get(2)?,
        apps: split_apps(&row.try_get::<_, String>(3)?),
        created_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        last_used_at: row.try_get(6)?,
        password_at: row.try_get(7)?,
    })
}

impl TokenStore for Postgres {
    fn insert(
        &self,
        user: &User,
        hash: &[u8; 32],
        new: &NewToken,
        now: Millis,
    ) -> Result<Token, UserError> {
        let apps = join_apps(&new.apps);
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        // The user's row locked: two instances making tokens for one user
        // count one after the other.
        let found = tx.query_typed_opt(
            "SELECT 1 FROM users WHERE id = $1 AND password_changed_at = $2 FOR UPDATE",
            &[
                (&user.id, Type::INT8),
                (&user.password_changed_at, Type::INT8),
            ],
        )?;
        if found.is_none() {
            return Err(UserError::NotFound);
        }
        let held: i64 = tx
            .query_typed_one(
                "SELECT count(*) FROM access_tokens WHERE user_id = $1",
                &[(&user.id, Type::INT8)],
            )?
            .try_get(0)?;
        if usize::try_from(held).unwrap_or(usize::MAX) >= MAX_PER_USER {
            return Err(UserError::TooMany);
        }
        let id: TokenId = tx
            .query_typed_one(
                "INSERT INTO access_tokens (hash, user_id, name, apps, created_at, expires_at,
                     password_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    (&&hash[..], Type::BYTEA),
                    (&user.id, Type::INT8),
                    (&new.name, Type::TEXT),
                    (&apps, Type::TEXT),
                    (&now, Type::INT8),
                    (&new.expires_at, Type::INT8),
                    (&user.password_changed_at, Type::INT8),
                ],
            )?
            .try_get(0)?;
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
        let mut client = self.client()?;
        let row = client.query_typed_opt(
            &format!(
                "SELECT {COLUMNS}, {JOINED_USER_COLUMNS} FROM access_tokens t
                 JOIN users u ON u.id = t.user_id WHERE t.hash = $1"
            ),
            &[(&&hash[..], Type::BYTEA)],
        )?;
        row.map(|r| Ok((token(&r)?, User::from_row(&r, AFTER)?)))
            .transpose()
    }

    fn touch(&self, id: TokenId, now: Millis) -> Result<(), UserError> {
        self.client()?.execute_typed(
            "UPDATE access_tokens SET last_used_at = $2 WHERE id = $1",
            &[(&id, Type::INT8), (&now, Type::INT8)],
        )?;
        Ok(())
    }

    fn of_user(&self, user: UserId) -> Result<Vec<Token>, UserError> {
        self.client()?
            .query_typed(
                &format!(
                    "SELECT {COLUMNS} FROM access_tokens t WHERE t.user_id = $1 ORDER BY t.id DESC"
                ),
                &[(&user, Type::INT8)],
            )?
            .iter()
            .map(token)
            .collect()
    }

    fn all(&self) -> Result<Vec<Listed>, UserError> {
        self.client()?
            .query_typed(
                &format!(
                    "SELECT {COLUMNS}, u.username FROM access_tokens t
                     JOIN users u ON u.id = t.user_id ORDER BY t.id DESC"
                ),
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(Listed {
                    token: token(r)?,
                    username: r.try_get(AFTER)?,
                })
            })
            .collect()
    }

    fn delete(&self, id: TokenId, user: Option<UserId>) -> Result<bool, UserError> {
        let n = self.client()?.execute_typed(
            "DELETE FROM access_tokens WHERE id = $1 AND ($2::BIGINT IS NULL OR user_id = $2)",
            &[(&id, Type::INT8), (&user, Type::INT8)],
        )?;
        Ok(n > 0)
    }

    fn delete_of_user(&self, user: UserId) -> Result<usize, UserError> {
        let n = self.client()?.execute_typed(
            "DELETE FROM access_tokens WHERE user_id = $1",
            &[(&user, Type::INT8)],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn sweep(&self, now: Millis) -> Result<usize, UserError> {
        let n = self.client()?.execute_typed(
            "DELETE FROM access_tokens t USING users u WHERE u.id = t.user_id
                 AND ((t.expires_at IS NOT NULL AND t.expires_at <= $1)
                      OR t.password_at <> u.password_changed_at)",
            &[(&now, Type::INT8)],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn export(&self) -> Result<Vec<(Token, Vec<u8>)>, UserError> {
        self.client()?
            .query_typed(
                &format!("SELECT {COLUMNS}, t.hash FROM access_tokens t ORDER BY t.id"),
                &[],
            )?
            .iter()
            .map(|r| Ok((token(r)?, r.try_get(AFTER)?)))
            .collect()
    }

    fn import(&self, tokens: &[(Token, Vec<u8>)]) -> Result<(), UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        for (t, hash) in tokens {
            let apps = join_apps(&t.apps);
            tx.execute_typed(
                "INSERT INTO access_tokens (id, hash, user_id, name, apps, created_at,
                     expires_at, last_used_at, password_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                &[
                    (&t.id, Type::INT8),
                    (hash, Type::BYTEA),
                    (&t.user_id, Type::INT8),
                    (&t.name, Type::TEXT),
                    (&apps, Type::TEXT),
                    (&t.created_at, Type::INT8),
                    (&t.expires_at, Type::INT8),
                    (&t.last_used_at, Type::INT8),
                    (&t.password_at, Type::INT8),
                ],
            )?;
        }
        // Identity columns do not follow ids copied in: the next token
        // made here must not collide with one copied.
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('access_tokens', 'id'),
                 GREATEST((SELECT max(id) FROM access_tokens), 1))",
            &[],
        )?;
        tx.commit()?;
        Ok(())
    }
}
