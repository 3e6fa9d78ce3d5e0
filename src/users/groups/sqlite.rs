//! Groups in gatehouse's SQLite file: the statements behind
//! [`super::GroupStore`] (`NOCASE` keeps names unique whatever the case).
//! Every change that may take an administrator away runs in an
//! `IMMEDIATE` transaction: the write lock is held from the check to the
//! commit, so no other writer (another request, another process on the
//! file) changes who is an administrator in between.

use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::super::sqlite::Sqlite;
use super::{COUNT_ACTIVE_ADMINS, Exported, Group, GroupId, GroupStore, IS_LAST_ADMIN, LIST};
use crate::clock::Millis;
use crate::users::{ADMINS, User, UserError, UserId};

const COLUMNS: &str = crate::identity::USER_COLUMNS;

fn group(row: &Row<'_>) -> rusqlite::Result<Group> {
    Ok(Group {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at: row.get(2)?,
        members: row.get(3)?,
    })
}

/// `UserError::GroupTaken` for a broken unique constraint, else the error.
fn taken(e: rusqlite::Error) -> UserError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            UserError::GroupTaken
        }
        e => e.into(),
    }
}

/// Refuses, in `tx`, a change that would take the last enabled
/// administrator `user` away.
fn keep_last_admin(tx: &Transaction<'_>, user: UserId) -> Result<(), UserError> {
    if tx.query_row(IS_LAST_ADMIN, [user], |r| r.get::<_, bool>(0))? {
        return Err(UserError::LastAdministrator);
    }
    Ok(())
}

impl Sqlite {
    /// Runs `change` in an `IMMEDIATE` transaction, after the last-admin
    /// check for `user` when `keep_admin`.
    fn guarded<T>(
        &self,
        user: UserId,
        keep_admin: bool,
        change: impl FnOnce(&Transaction<'_>) -> Result<T, UserError>,
    ) -> Result<T, UserError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if keep_admin {
            keep_last_admin(&tx, user)?;
        }
        let out = change(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn builtin_or_missing(&self, id: GroupId) -> UserError {
        let name: Option<String> = self.0.get().ok().and_then(|c| {
            c.query_row("SELECT name FROM groups WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .ok()
                .flatten()
        });
        match name {
            Some(n) if n == ADMINS => UserError::Builtin,
            _ => UserError::NoSuchGroup,
        }
    }
}

impl GroupStore for Sqlite {
    fn create(&self, name: &str, now: Millis) -> Result<Group, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(
            "INSERT INTO groups (name, created_at) VALUES (?1, ?2) \
             RETURNING id, name, created_at, 0",
        )?;
        crate::db::returning(&mut stmt, params![name, now], group)
            .map_err(taken)?
            .into_iter()
            .next()
            .ok_or_else(|| rusqlite::Error::QueryReturnedNoRows.into())
    }

    fn rename(&self, id: GroupId, name: &str) -> Result<(), UserError> {
        let n = self
            .0
            .get()?
            .execute(
                "UPDATE groups SET name = ?2 WHERE id = ?1 AND name <> 'admins'",
                params![id, name],
            )
            .map_err(taken)?;
        if n == 0 {
            return Err(self.builtin_or_missing(id));
        }
        Ok(())
    }

    fn delete(&self, id: GroupId) -> Result<(), UserError> {
        let n = self.0.get()?.execute(
            "DELETE FROM groups WHERE id = ?1 AND name <> 'admins'",
            [id],
        )?;
        if n == 0 {
            return Err(self.builtin_or_missing(id));
        }
        Ok(())
    }

    fn find_by_name(&self, name: &str) -> Result<Option<Group>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!("{LIST} WHERE g.name = ?1"))?;
        Ok(stmt.query_row([name], group).optional()?)
    }

    fn list(&self) -> Result<Vec<Group>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!("{LIST} ORDER BY g.name COLLATE NOCASE"))?;
        let rows = stmt.query_map([], group)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn members(&self, id: GroupId) -> Result<Vec<User>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM users WHERE id IN \
             (SELECT user_id FROM user_groups WHERE group_id = ?1) \
             ORDER BY username COLLATE NOCASE"
        ))?;
        let rows = stmt.query_map([id], |r| User::from_row(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn groups_of(&self, user: UserId) -> Result<Vec<String>, UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT g.name FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
             WHERE ug.user_id = ?1 ORDER BY g.name COLLATE NOCASE",
        )?;
        let rows = stmt.query_map([user], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn add_member(&self, group: GroupId, user: UserId) -> Result<bool, UserError> {
        let conn = self.0.get()?;
        // Both must exist: checked here rather than left to the foreign
        // keys, so the caller learns which one is missing.
        let (has_group, has_user): (bool, bool) = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM groups WHERE id = ?1), \
                    EXISTS (SELECT 1 FROM users WHERE id = ?2)",
            params![group, user],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if !has_group {
            return Err(UserError::NoSuchGroup);
        }
        if !has_user {
            return Err(UserError::NotFound);
        }
        let n = conn.execute(
            "INSERT INTO user_groups (user_id, group_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![user, group],
        )?;
        Ok(n > 0)
    }

    fn remove_member(
        &self,
        group: GroupId,
        user: UserId,
        keep_admin: bool,
    ) -> Result<bool, UserError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let name: Option<String> = tx
            .query_row("SELECT name FROM groups WHERE id = ?1", [group], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(name) = name else {
            return Err(UserError::NoSuchGroup);
        };
        if keep_admin && name == ADMINS {
            keep_last_admin(&tx, user)?;
        }
        let n = tx.execute(
            "DELETE FROM user_groups WHERE user_id = ?1 AND group_id = ?2",
            params![user, group],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn disable_user(&self, user: UserId, keep_admin: bool) -> Result<(), UserError> {
        self.guarded(user, keep_admin, |tx| {
            match tx.execute("UPDATE users SET disabled = 1 WHERE id = ?1", [user])? {
                0 => Err(UserError::NotFound),
                _ => Ok(()),
            }
        })
    }

    fn delete_user(&self, user: UserId, keep_admin: bool) -> Result<(), UserError> {
        self.guarded(user, keep_admin, |tx| {
            match tx.execute("DELETE FROM users WHERE id = ?1", [user])? {
                0 => Err(UserError::NotFound),
                _ => Ok(()),
            }
        })
    }

    fn count_active_admins(&self) -> Result<i64, UserError> {
        Ok(self
            .0
            .get()?
            .query_row(COUNT_ACTIVE_ADMINS, [], |r| r.get(0))?)
    }

    fn export(&self) -> Result<Exported, UserError> {
        let conn = self.0.get()?;
        let groups = conn
            .prepare(&format!("{LIST} ORDER BY g.id"))?
            .query_map([], group)?
            .collect::<Result<_, _>>()?;
        let members = conn
            .prepare("SELECT user_id, group_id FROM user_groups ORDER BY group_id, user_id")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(Exported { groups, members })
    }

    fn import(&self, exported: &Exported) -> Result<(), UserError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = std::collections::HashMap::new();
        for g in &exported.groups {
            // Matched by name: the target's own `admins`, or a group an
            // earlier, interrupted run copied. Others get a new id (the
            // target's `admins` may hold the old one).
            let found: Option<GroupId> = tx
                .query_row("SELECT id FROM groups WHERE name = ?1", [&g.name], |r| {
                    r.get(0)
                })
                .optional()?;
            let id = match found {
                Some(id) => id,
                None => tx
                    .query_row(
                        "INSERT INTO groups (name, created_at) VALUES (?1, ?2) RETURNING id",
                        params![g.name, g.created_at],
                        |r| r.get(0),
                    )
                    .map_err(taken)?,
            };
            ids.insert(g.id, id);
        }
        for (user, group) in &exported.members {
            let group = ids.get(group).ok_or(UserError::NoSuchGroup)?;
            tx.execute(
                "INSERT INTO user_groups (user_id, group_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![user, group],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
