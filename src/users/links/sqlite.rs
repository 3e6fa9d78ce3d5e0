//! Links in gatehouse's SQLite file: the statements behind
//! [`super::LinkStore`]. Whatever takes a use (an invite's, a reset
//! link's, a sign-in link's) runs in an `IMMEDIATE` transaction or a
//! single statement: SQLite's write lock orders two takers, and the
//! second finds the use gone.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::super::sqlite::Sqlite;
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

fn invite(row: &Row<'_>) -> rusqlite::Result<Invite> {
    let user_id: Option<UserId> = row.get(7)?;
    let username: Option<String> = row.get(8)?;
    Ok(Invite {
        id: row.get(0)?,
        created_by: row.get(1)?,
        created_at: row.get(2)?,
        expires_at: row.get(3)?,
        uses: row.get(4)?,
        used: row.get(5)?,
        groups: split_ids(&row.get::<_, String>(6)?),
        user: user_id.zip(username),
    })
}

const RESET: &str = "r.id, r.user_id, u.username, r.created_by, r.created_at, r.expires_at, \
     r.new_factor, r.password_at";

fn reset(row: &Row<'_>) -> rusqlite::Result<ResetLink> {
    Ok(ResetLink {
        id: row.get(0)?,
        user_id: row.get(1)?,
        username: row.get(2)?,
        created_by: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        new_factor: row.get(6)?,
        password_at: row.get(7)?,
    })
}

const SIGNIN: &str = "id, user_id, methods, created_at, expires_at, password_at, used_at, \
     used_ip, used_agent";

fn signin(row: &Row<'_>) -> rusqlite::Result<SigninLink> {
    Ok(SigninLink {
        id: row.get(0)?,
        user_id: row.get(1)?,
        methods: split_methods(&row.get::<_, String>(2)?),
        created_at: row.get(3)?,
        expires_at: row.get(4)?,
        password_at: row.get(5)?,
        used_at: row.get(6)?,
        used_ip: row.get(7)?,
        used_agent: row.get(8)?,
    })
}

/// Whether `e` is a unique constraint's refusal.
fn taken(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// Puts `user` in each of `groups` that still exists (never `admins`):
/// made no later than `made_at`, the invite's making. SQLite gives a
/// deleted group's id to the next group made, which the invite never
/// named.
fn join_groups(
    tx: &rusqlite::Transaction<'_>,
    user: UserId,
    groups: &[GroupId],
    made_at: Millis,
) -> rusqlite::Result<()> {
    for group in groups {
        tx.execute(
            "INSERT OR IGNORE INTO user_groups (user_id, group_id)
             SELECT ?1, id FROM groups WHERE id = ?2 AND name <> 'admins' AND created_at <= ?3",
            params![user, group, made_at],
        )?;
    }
    Ok(())
}

impl LinkStore for Sqlite {
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
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let user = match user {
            Some((name, stamp)) => {
                // No password: the empty hash no password matches.
                let id: UserId = tx
                    .query_row(
                        "INSERT INTO users (username, password_hash, created_at,
                             password_changed_at, stamp) VALUES (?1, '', ?2, ?2, ?3)
                         RETURNING id",
                        params![name, now, stamp],
                        |r| r.get(0),
                    )
                    .map_err(|e| {
                        if taken(&e) {
                            UserError::Taken
                        } else {
                            e.into()
                        }
                    })?;
                join_groups(&tx, id, groups, now)?;
                Some((id, name.to_owned()))
            }
            None => None,
        };
        let id: LinkId = tx.query_row(
            "INSERT INTO invites (hash, created_by, created_at, expires_at, uses, groups, user_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            params![
                &hash[..],
                created_by,
                now,
                expires_at,
                uses,
                join_ids(groups),
                user.as_ref().map(|(id, _)| *id)
            ],
            |r| r.get(0),
        )?;
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
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {INVITE} FROM invites i LEFT JOIN users u ON u.id = i.user_id
             WHERE i.hash = ?1 AND (i.user_id IS NULL OR u.password_hash = '')"
        ))?;
        Ok(stmt.query_row([&hash[..]], invite).optional()?)
    }

    fn invites(&self) -> Result<Vec<Invite>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {INVITE} FROM invites i LEFT JOIN users u ON u.id = i.user_id
             ORDER BY i.id DESC"
        ))?;
        Ok(stmt.query_map([], invite)?.collect::<Result<_, _>>()?)
    }

    fn invite_delete(&self, id: LinkId) -> Result<bool, UserError> {
        Ok(self
            .0
            .get()?
            .execute("DELETE FROM invites WHERE id = ?1", [id])?
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
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let taken_use: Option<(String, Millis)> = tx
            .query_row(
                "UPDATE invites SET used = used + 1
                 WHERE hash = ?1 AND used < uses AND expires_at > ?2 AND user_id IS NULL
                 RETURNING groups, created_at",
                params![&hash[..], now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((groups, made_at)) = taken_use else {
            return Ok(Redeemed::Unusable);
        };
        let id: UserId = match tx.query_row(
            "INSERT INTO users (username, password_hash, created_at, password_changed_at, stamp)
             VALUES (?1, ?2, ?3, ?3, ?4) RETURNING id",
            params![name, password_hash, now, stamp],
            |r| r.get(0),
        ) {
            Ok(id) => id,
            // The use goes back with the rollback.
            Err(e) if taken(&e) => return Ok(Redeemed::Taken),
            Err(e) => return Err(e.into()),
        };
        join_groups(&tx, id, &split_ids(&groups), made_at)?;
        tx.commit()?;
        Ok(Redeemed::Done(id))
    }

    fn invite_redeem_named(
        &self,
        hash: &[u8; 32],
        now: Millis,
        password_hash: &str,
    ) -> Result<Redeemed, UserError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let user: Option<UserId> = tx
            .query_row(
                "UPDATE invites SET used = used + 1
                 WHERE hash = ?1 AND used < uses AND expires_at > ?2 AND user_id IS NOT NULL
                 RETURNING user_id",
                params![&hash[..], now],
                |r| r.get(0),
            )
            .optional()?;
        let Some(user) = user else {
            return Ok(Redeemed::Unusable);
        };
        // Only a first password: a user who has one (set by an
        // administrator meanwhile) is no longer this invite's to set; nor
        // is one made an administrator meanwhile (a leaked link must never
        // make an administrator).
        let set = tx.execute(
            "UPDATE users SET password_hash = ?2, password_changed_at = ?3
             WHERE id = ?1 AND password_hash = '' AND NOT disabled AND source = 'local'
               AND NOT EXISTS (SELECT 1 FROM user_groups ug JOIN groups g ON g.id = ug.group_id
                               WHERE ug.user_id = users.id AND g.name = 'admins')",
            params![user, password_hash, now],
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
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM reset_links WHERE user_id = ?1", [user.id])?;
        // The password time as stored now: a password changed since `user`
        // was read refuses the link.
        let id: Option<LinkId> = tx
            .query_row(
                "INSERT INTO reset_links (hash, user_id, created_by, created_at, expires_at,
                     new_factor, password_at)
                 SELECT ?1, id, ?3, ?4, ?5, ?6, password_changed_at FROM users
                 WHERE id = ?2 AND password_changed_at = ?7 RETURNING id",
                params![
                    &hash[..],
                    user.id,
                    created_by,
                    now,
                    expires_at,
                    new_factor,
                    user.password_changed_at
                ],
                |r| r.get(0),
            )
            .optional()?;
        let id = id.ok_or(UserError::NotFound)?;
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
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RESET} FROM reset_links r JOIN users u ON u.id = r.user_id
             WHERE r.hash = ?1"
        ))?;
        Ok(stmt.query_row([&hash[..]], reset).optional()?)
    }

    fn resets(&self) -> Result<Vec<ResetLink>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RESET} FROM reset_links r JOIN users u ON u.id = r.user_id
             ORDER BY r.id DESC"
        ))?;
        Ok(stmt.query_map([], reset)?.collect::<Result<_, _>>()?)
    }

    fn reset_delete(&self, user: UserId) -> Result<bool, UserError> {
        Ok(self
            .0
            .get()?
            .execute("DELETE FROM reset_links WHERE user_id = ?1", [user])?
            > 0)
    }

    fn reset_redeem(
        &self,
        hash: &[u8; 32],
        now: Millis,
        password_hash: &str,
    ) -> Result<Option<(UserId, bool)>, UserError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let taken_link: Option<(UserId, bool)> = tx
            .query_row(
                "DELETE FROM reset_links WHERE hash = ?1 AND expires_at > ?2
                     AND password_at = (SELECT password_changed_at FROM users
                                        WHERE users.id = reset_links.user_id)
                 RETURNING user_id, new_factor",
                params![&hash[..], now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((user, new_factor)) = taken_link else {
            return Ok(None);
        };
        let set = tx.execute(
            "UPDATE users SET password_hash = ?2, password_changed_at = ?3
             WHERE id = ?1 AND NOT disabled AND source = 'local'",
            params![user, password_hash, now],
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
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: i64 = tx.query_row(
            "SELECT count(*) FROM signin_links
             WHERE user_id = ?1 AND used_at IS NULL AND expires_at > ?2",
            params![user.id, now],
            |r| r.get(0),
        )?;
        if usize::try_from(held).unwrap_or(usize::MAX) >= MAX_SIGNIN_LINKS {
            return Err(UserError::InvalidLink(
                "you have 5 sign-in links waiting: revoke one first",
            ));
        }
        let today: i64 = tx.query_row(
            "SELECT count(*) FROM signin_links WHERE user_id = ?1 AND created_at > ?2",
            params![user.id, now - DAY],
            |r| r.get(0),
        )?;
        if usize::try_from(today).unwrap_or(usize::MAX) >= MAX_SIGNIN_LINKS_A_DAY {
            return Err(UserError::InvalidLink(
                "you made 20 sign-in links in the last day: try again tomorrow",
            ));
        }
        let expires_at = now + SIGNIN_FOR;
        let id: Option<LinkId> = tx
            .query_row(
                "INSERT INTO signin_links (hash, code_hash, user_id, methods, created_at,
                     expires_at, password_at)
                 SELECT ?1, ?2, id, ?4, ?5, ?6, password_changed_at FROM users
                 WHERE id = ?3 AND password_changed_at = ?7 RETURNING id",
                params![
                    &hash[..],
                    &code_hash[..],
                    user.id,
                    methods,
                    now,
                    expires_at,
                    user.password_changed_at
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| {
                if taken(&e) {
                    UserError::Taken
                } else {
                    e.into()
                }
            })?;
        let id = id.ok_or(UserError::NotFound)?;
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
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SIGNIN} FROM signin_links WHERE hash = ?1 OR code_hash = ?1"
        ))?;
        Ok(stmt.query_row([&hash[..]], signin).optional()?)
    }

    fn signin_of_user(&self, user: UserId) -> Result<Vec<SigninLink>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SIGNIN} FROM signin_links WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        Ok(stmt
            .query_map(params![user, LISTED_SIGNIN_LINKS as i64], signin)?
            .collect::<Result<_, _>>()?)
    }

    fn signin_delete(&self, id: LinkId, user: UserId) -> Result<bool, UserError> {
        Ok(self.0.get()?.execute(
            "DELETE FROM signin_links WHERE id = ?1 AND user_id = ?2 AND used_at IS NULL",
            params![id, user],
        )? > 0)
    }

    fn signin_delete_unused(&self, user: UserId) -> Result<usize, UserError> {
        Ok(self.0.get()?.execute(
            "DELETE FROM signin_links WHERE user_id = ?1 AND used_at IS NULL",
            [user],
        )?)
    }

    fn signin_redeem(
        &self,
        hash: &[u8; 32],
        now: Millis,
        ip: &str,
        agent: &str,
    ) -> Result<Option<SigninLink>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "UPDATE signin_links SET used_at = ?2, used_ip = ?3, used_agent = ?4
             WHERE (hash = ?1 OR code_hash = ?1) AND used_at IS NULL AND expires_at > ?2
                 AND password_at = (SELECT password_changed_at FROM users
                                    WHERE users.id = signin_links.user_id)
             RETURNING {SIGNIN}"
        ))?;
        Ok(stmt
            .query_row(params![&hash[..], now, ip, agent], signin)
            .optional()?)
    }

    fn sweep(&self, now: Millis) -> Result<usize, UserError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut gone = tx.execute("DELETE FROM invites WHERE expires_at <= ?1", [now])?;
        gone += tx.execute(
            "DELETE FROM reset_links WHERE expires_at <= ?1
                 OR password_at <> (SELECT password_changed_at FROM users
                                    WHERE users.id = reset_links.user_id)",
            [now],
        )?;
        gone += tx.execute(
            "DELETE FROM signin_links WHERE
                 (used_at IS NULL AND (expires_at <= ?1
                     OR password_at <> (SELECT password_changed_at FROM users
                                        WHERE users.id = signin_links.user_id)))
                 OR (used_at IS NOT NULL AND used_at <= ?2)",
            params![now, now - KEEP_USED],
        )?;
        tx.commit()?;
        Ok(gone)
    }
}
