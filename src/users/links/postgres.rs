//! Links in PostgreSQL: the statements behind [`super::LinkStore`]. A
//! use is taken by an `UPDATE` (or `DELETE`) whose `WHERE` checks one is
//! left: it locks the row, and a second taker waits, then finds the row
//! as the first left it (PostgreSQL checks the condition again on the
//! updated row), so two instances cannot both have the last use.

use postgres::types::Type;

use super::super::postgres::Postgres;
use super::{
    DAY, Invite, KEEP_USED, LISTED_SIGNIN_LINKS, LinkId, LinkStore, MAX_SIGNIN_LINKS,
    MAX_SIGNIN_LINKS_A_DAY, Redeemed, ResetLink, SIGNIN_FOR, SigninLink, join_ids, split_ids,
    split_methods,
};
use crate::clock::Millis;
use crate::users::groups::GroupId;
use crate::users::{User, UserError, UserId};

const INVITE: &str = "i.id, i.created_by, i.created_at, i.expires_at, i.uses, i.used, i.groups, \
     i.user_id, u.username";

/// A count as stored (BIGINT) as the type the rules use.
fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn invite(row: &postgres::Row) -> Result<Invite, UserError> {
    let user_id: Option<UserId> = row.try_get(7)?;
    let username: Option<String> = row.try_get(8)?;
    Ok(Invite {
        id: row.try_get(0)?,
        created_by: row.try_get(1)?,
        created_at: row.try_get(2)?,
        expires_at: row.try_get(3)?,
        uses: count(row.try_get(4)?),
        used: count(row.try_get(5)?),
        groups: split_ids(&row.try_get::<_, String>(6)?),
        user: user_id.zip(username),
    })
}

const RESET: &str = "r.id, r.user_id, u.username, r.created_by, r.created_at, r.expires_at, \
     r.new_factor, r.password_at";

fn reset(row: &postgres::Row) -> Result<ResetLink, UserError> {
    Ok(ResetLink {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        username: row.try_get(2)?,
        created_by: row.try_get(3)?,
        created_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        new_factor: row.try_get(6)?,
        password_at: row.try_get(7)?,
    })
}

const SIGNIN: &str = "id, user_id, methods, created_at, expires_at, password_at, used_at, \
     used_ip, used_agent";

/// [`SIGNIN`] of the link `s` in a statement that joins its user.
const SIGNIN_S: &str = "s.id, s.user_id, s.methods, s.created_at, s.expires_at, s.password_at, \
     s.used_at, s.used_ip, s.used_agent";

fn signin(row: &postgres::Row) -> Result<SigninLink, UserError> {
    Ok(SigninLink {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        methods: split_methods(&row.try_get::<_, String>(2)?),
        created_at: row.try_get(3)?,
        expires_at: row.try_get(4)?,
        password_at: row.try_get(5)?,
        used_at: row.try_get(6)?,
        used_ip: row.try_get(7)?,
        used_agent: row.try_get(8)?,
    })
}

/// Puts `user` in each of `groups` that still exists (never `admins`):
/// made no later than `made_at`, the invite's making (see the SQLite
/// store's: there a deleted group's id is given again).
fn join_groups(
    tx: &mut postgres::Transaction<'_>,
    user: UserId,
    groups: &[GroupId],
    made_at: Millis,
) -> Result<(), UserError> {
    for group in groups {
        tx.execute_typed(
            "INSERT INTO user_groups (user_id, group_id)
             SELECT $1, id FROM groups WHERE id = $2 AND name <> 'admins' AND created_at <= $3
             ON CONFLICT DO NOTHING",
            &[
                (&user, Type::INT8),
                (group, Type::INT8),
                (&made_at, Type::INT8),
            ],
        )?;
    }
    Ok(())
}

impl LinkStore for Postgres {
    fn invite_insert(
        &self,
        hash: &[u8; 32],
        created_by: &str,
        now: Millis,
        expires_at: Millis,
        uses: u32,
        groups: &[GroupId],
        user: Option<(&str, &str)>,
    ) -> Result<Invite, UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let user = match user {
            Some((name, stamp)) => {
                // No password: the empty hash no password matches. A taken
                // name is the unique index's refusal (`UserError::Taken`).
                let id: UserId = tx
                    .query_typed_one(
                        "INSERT INTO users (username, password_hash, created_at,
                             password_changed_at, stamp) VALUES ($1, '', $2, $2, $3)
                         RETURNING id",
                        &[
                            (&name, Type::TEXT),
                            (&now, Type::INT8),
                            (&stamp, Type::TEXT),
                        ],
                    )?
                    .try_get(0)?;
                join_groups(&mut tx, id, groups, now)?;
                Some((id, name.to_owned()))
            }
            None => None,
        };
        let user_id = user.as_ref().map(|(id, _)| *id);
        let id: LinkId = tx
            .query_typed_one(
                "INSERT INTO invites (hash, created_by, created_at, expires_at, uses, groups,
                     user_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    (&&hash[..], Type::BYTEA),
                    (&created_by, Type::TEXT),
                    (&now, Type::INT8),
                    (&expires_at, Type::INT8),
                    (&i64::from(uses), Type::INT8),
                    (&join_ids(groups), Type::TEXT),
                    (&user_id, Type::INT8),
                ],
            )?
            .try_get(0)?;
        tx.commit()?;
        Ok(Invite {
            id,
            created_by: created_by.to_owned(),
            created_at: now,
            expires_at,
            uses,
            used: 0,
            groups: groups.to_vec(),
            user,
        })
    }

    fn invite_find(&self, hash: &[u8; 32]) -> Result<Option<Invite>, UserError> {
        self.client()?
            .query_typed_opt(
                &format!(
                    "SELECT {INVITE} FROM invites i LEFT JOIN users u ON u.id = i.user_id
                     WHERE i.hash = $1 AND (i.user_id IS NULL OR u.password_hash = '')"
                ),
                &[(&&hash[..], Type::BYTEA)],
            )?
            .as_ref()
            .map(invite)
            .transpose()
    }

    fn invites(&self) -> Result<Vec<Invite>, UserError> {
        self.client()?
            .query_typed(
                &format!(
                    "SELECT {INVITE} FROM invites i LEFT JOIN users u ON u.id = i.user_id
                     ORDER BY i.id DESC"
                ),
                &[],
            )?
            .iter()
            .map(invite)
            .collect()
    }

    fn invite_delete(&self, id: LinkId) -> Result<bool, UserError> {
        Ok(self
            .client()?
            .execute_typed("DELETE FROM invites WHERE id = $1", &[(&id, Type::INT8)])?
            > 0)
    }

    fn invite_redeem(
        &self,
        hash: &[u8; 32],
        now: Millis,
        name: &str,
        password_hash: &str,
        stamp: &str,
    ) -> Result<Redeemed, UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let taken_use = tx.query_typed_opt(
            "UPDATE invites SET used = used + 1
             WHERE hash = $1 AND used < uses AND expires_at > $2 AND user_id IS NULL
             RETURNING groups, created_at",
            &[(&&hash[..], Type::BYTEA), (&now, Type::INT8)],
        )?;
        let Some(row) = taken_use else {
            return Ok(Redeemed::Unusable);
        };
        let groups: String = row.try_get(0)?;
        let made_at: Millis = row.try_get(1)?;
        // A taken name is the unique index's refusal: the transaction is
        // dropped, and the rollback gives the use back.
        let made = tx.query_typed_one(
            "INSERT INTO users (username, password_hash, created_at, password_changed_at, stamp)
             VALUES ($1, $2, $3, $3, $4) RETURNING id",
            &[
                (&name, Type::TEXT),
                (&password_hash, Type::TEXT),
                (&now, Type::INT8),
                (&stamp, Type::TEXT),
            ],
        );
        let id: UserId = match made.map_err(UserError::from) {
            Ok(row) => row.try_get(0)?,
            Err(UserError::Taken) => return Ok(Redeemed::Taken),
            Err(e) => return Err(e),
        };
        join_groups(&mut tx, id, &split_ids(&groups), made_at)?;
        tx.commit()?;
        Ok(Redeemed::Done(id))
    }

    fn invite_redeem_named(
        &self,
        hash: &[u8; 32],
        now: Millis,
        password_hash: &str,
    ) -> Result<Redeemed, UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let taken_use = tx.query_typed_opt(
            "UPDATE invites SET used = used + 1
             WHERE hash = $1 AND used < uses AND expires_at > $2 AND user_id IS NOT NULL
             RETURNING user_id",
            &[(&&hash[..], Type::BYTEA), (&now, Type::INT8)],
        )?;
        let Some(row) = taken_use else {
            return Ok(Redeemed::Unusable);
        };
        let user: UserId = row.try_get(0)?;
        // Not for a user made an administrator meanwhile (see the SQLite
        // store's).
        let set = tx.execute_typed(
            "UPDATE users SET password_hash = $2, password_changed_at = $3
             WHERE id = $1 AND password_hash = '' AND NOT disabled AND source = 'local'
               AND NOT EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id
                               WHERE ug.user_id = users.id AND lower(g.name) = 'admins')",
            &[
                (&user, Type::INT8),
                (&password_hash, Type::TEXT),
                (&now, Type::INT8),
            ],
        )?;
        if set == 0 {
            return Ok(Redeemed::Unusable);
        }
        tx.commit()?;
        Ok(Redeemed::Done(user))
    }

    fn reset_put(
        &self,
        hash: &[u8; 32],
        user: &User,
        created_by: &str,
        now: Millis,
        expires_at: Millis,
        new_factor: bool,
    ) -> Result<ResetLink, UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        // The user's row locked: two administrators making links for one
        // user at once leave one link, the second's.
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
        tx.execute_typed(
            "DELETE FROM reset_links WHERE user_id = $1",
            &[(&user.id, Type::INT8)],
        )?;
        let id: LinkId = tx
            .query_typed_one(
                "INSERT INTO reset_links (hash, user_id, created_by, created_at, expires_at,
                     new_factor, password_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    (&&hash[..], Type::BYTEA),
                    (&user.id, Type::INT8),
                    (&created_by, Type::TEXT),
                    (&now, Type::INT8),
                    (&expires_at, Type::INT8),
                    (&new_factor, Type::BOOL),
                    (&user.password_changed_at, Type::INT8),
                ],
            )?
            .try_get(0)?;
        tx.commit()?;
        Ok(ResetLink {
            id,
            user_id: user.id,
            username: user.username.clone(),
            created_by: created_by.to_owned(),
            created_at: now,
            expires_at,
            new_factor,
            password_at: user.password_changed_at,
        })
    }

    fn reset_find(&self, hash: &[u8; 32]) -> Result<Option<ResetLink>, UserError> {
        self.client()?
            .query_typed_opt(
                &format!(
                    "SELECT {RESET} FROM reset_links r JOIN users u ON u.id = r.user_id
                     WHERE r.hash = $1"
                ),
                &[(&&hash[..], Type::BYTEA)],
            )?
            .as_ref()
            .map(reset)
            .transpose()
    }

    fn resets(&self) -> Result<Vec<ResetLink>, UserError> {
        self.client()?
            .query_typed(
                &format!(
                    "SELECT {RESET} FROM reset_links r JOIN users u ON u.id = r.user_id
                     ORDER BY r.id DESC"
                ),
                &[],
            )?
            .iter()
            .map(reset)
            .collect()
    }

    fn reset_delete(&self, user: UserId) -> Result<bool, UserError> {
        Ok(self.client()?.execute_typed(
            "DELETE FROM reset_links WHERE user_id = $1",
            &[(&user, Type::INT8)],
        )? > 0)
    }

    fn reset_redeem(
        &self,
        hash: &[u8; 32],
        now: Millis,
        password_hash: &str,
    ) -> Result<Option<(UserId, bool)>, UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let taken_link = tx.query_typed_opt(
            "DELETE FROM reset_links r USING users u
             WHERE u.id = r.user_id AND r.hash = $1 AND r.expires_at > $2
                 AND r.password_at = u.password_changed_at
             RETURNING r.user_id, r.new_factor",
            &[(&&hash[..], Type::BYTEA), (&now, Type::INT8)],
        )?;
        let Some(row) = taken_link else {
            return Ok(None);
        };
        let (user, new_factor): (UserId, bool) = (row.try_get(0)?, row.try_get(1)?);
        let set = tx.execute_typed(
            "UPDATE users SET password_hash = $2, password_changed_at = $3
             WHERE id = $1 AND NOT disabled AND source = 'local'",
            &[
                (&user, Type::INT8),
                (&password_hash, Type::TEXT),
                (&now, Type::INT8),
            ],
        )?;
        if set == 0 {
            return Ok(None);
        }
        tx.commit()?;
        Ok(Some((user, new_factor)))
    }

    fn signin_insert(
        &self,
        hash: &[u8; 32],
        code_hash: &[u8; 32],
        user: &User,
        methods: &str,
        now: Millis,
    ) -> Result<SigninLink, UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        // The user's row locked: two links made at once count one after
        // the other.
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
                "SELECT count(*) FROM signin_links
                 WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2",
                &[(&user.id, Type::INT8), (&now, Type::INT8)],
            )?
            .try_get(0)?;
        if usize::try_from(held).unwrap_or(usize::MAX) >= MAX_SIGNIN_LINKS {
            return Err(UserError::InvalidLink(
                "you have 5 sign-in links waiting: revoke one first",
            ));
        }
        let since = now - DAY;
        let today: i64 = tx
            .query_typed_one(
                "SELECT count(*) FROM signin_links WHERE user_id = $1 AND created_at > $2",
                &[(&user.id, Type::INT8), (&since, Type::INT8)],
            )?
            .try_get(0)?;
        if usize::try_from(today).unwrap_or(usize::MAX) >= MAX_SIGNIN_LINKS_A_DAY {
            return Err(UserError::InvalidLink(
                "you made 20 sign-in links in the last day: try again tomorrow",
            ));
        }
        let expires_at = now + SIGNIN_FOR;
        let id: LinkId = tx
            .query_typed_one(
                "INSERT INTO signin_links (hash, code_hash, user_id, methods, created_at,
                     expires_at, password_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    (&&hash[..], Type::BYTEA),
                    (&&code_hash[..], Type::BYTEA),
                    (&user.id, Type::INT8),
                    (&methods, Type::TEXT),
                    (&now, Type::INT8),
                    (&expires_at, Type::INT8),
                    (&user.password_changed_at, Type::INT8),
                ],
            )?
            .try_get(0)?;
        tx.commit()?;
        Ok(SigninLink {
            id,
            user_id: user.id,
            methods: split_methods(methods),
            created_at: now,
            expires_at,
            password_at: user.password_changed_at,
            used_at: None,
            used_ip: None,
            used_agent: None,
        })
    }

    fn signin_find(&self, hash: &[u8; 32]) -> Result<Option<SigninLink>, UserError> {
        self.client()?
            .query_typed_opt(
                &format!("SELECT {SIGNIN} FROM signin_links WHERE hash = $1 OR code_hash = $1"),
                &[(&&hash[..], Type::BYTEA)],
            )?
            .as_ref()
            .map(signin)
            .transpose()
    }

    fn signin_of_user(&self, user: UserId) -> Result<Vec<SigninLink>, UserError> {
        self.client()?
            .query_typed(
                &format!(
                    "SELECT {SIGNIN} FROM signin_links WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
                ),
                &[
                    (&user, Type::INT8),
                    (&(LISTED_SIGNIN_LINKS as i64), Type::INT8),
                ],
            )?
            .iter()
            .map(signin)
            .collect()
    }

    fn signin_delete(&self, id: LinkId, user: UserId) -> Result<bool, UserError> {
        Ok(self.client()?.execute_typed(
            "DELETE FROM signin_links WHERE id = $1 AND user_id = $2 AND used_at IS NULL",
            &[(&id, Type::INT8), (&user, Type::INT8)],
        )? > 0)
    }

    fn signin_delete_unused(&self, user: UserId) -> Result<usize, UserError> {
        let n = self.client()?.execute_typed(
            "DELETE FROM signin_links WHERE user_id = $1 AND used_at IS NULL",
            &[(&user, Type::INT8)],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn signin_redeem(
        &self,
        hash: &[u8; 32],
        now: Millis,
        ip: &str,
        agent: &str,
    ) -> Result<Option<SigninLink>, UserError> {
        self.client()?
            .query_typed_opt(
                &format!(
                    "UPDATE signin_links s SET used_at = $2, used_ip = $3, used_agent = $4
                     FROM users u
                     WHERE u.id = s.user_id AND s.password_at = u.password_changed_at
                         AND (s.hash = $1 OR s.code_hash = $1) AND s.used_at IS NULL
                         AND s.expires_at > $2
                     RETURNING {SIGNIN_S}"
                ),
                &[
                    (&&hash[..], Type::BYTEA),
                    (&now, Type::INT8),
                    (&ip, Type::TEXT),
                    (&agent, Type::TEXT),
                ],
            )?
            .as_ref()
            .map(signin)
            .transpose()
    }

    fn sweep(&self, now: Millis) -> Result<usize, UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let mut gone = tx.execute_typed(
            "DELETE FROM invites WHERE expires_at <= $1",
            &[(&now, Type::INT8)],
        )?;
        gone += tx.execute_typed(
            "DELETE FROM reset_links r USING users u WHERE u.id = r.user_id
                 AND (r.expires_at <= $1 OR r.password_at <> u.password_changed_at)",
            &[(&now, Type::INT8)],
        )?;
        gone += tx.execute_typed(
            "DELETE FROM signin_links s USING users u WHERE u.id = s.user_id
                 AND ((s.used_at IS NULL
                       AND (s.expires_at <= $1 OR s.password_at <> u.password_changed_at))
                      OR (s.used_at IS NOT NULL AND s.used_at <= $2))",
            &[(&now, Type::INT8), (&(now - KEEP_USED), Type::INT8)],
        )?;
        tx.commit()?;
        Ok(usize::try_from(gone).unwrap_or(usize::MAX))
    }
}
