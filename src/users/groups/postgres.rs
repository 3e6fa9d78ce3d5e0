//! Groups in PostgreSQL: the statements behind [`super::GroupStore`], with
//! `lower()` standing in for SQLite's `NOCASE`. Every change that may take
//! an administrator away first locks the `admins` row (`FOR UPDATE`), so
//! such changes run one at a time across every instance, each one's check
//! reading what the one before it committed.

use postgres::Transaction;
use postgres::types::Type;

use super::super::postgres::Postgres;
use super::{COUNT_ACTIVE_ADMINS, Exported, Group, GroupId, GroupStore, IS_LAST_ADMIN, LIST};
use crate::clock::Millis;
use crate::users::{ADMINS, User, UserError, UserId};

const COLUMNS: &str = crate::identity::USER_COLUMNS;

fn group(row: &postgres::Row) -> Result<Group, UserError> {
    Ok(Group {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        created_at: row.try_get(2)?,
        members: row.try_get(3)?,
    })
}

/// A unique-name violation is a taken group name here, not a username.
fn taken(e: postgres::Error) -> UserError {
    match UserError::from(e) {
        UserError::Taken => UserError::GroupTaken,
        e => e,
    }
}

/// Takes the lock every change of who administers gatehouse takes, then
/// refuses, in `tx`, a change that would take the last enabled
/// administrator `user` away.
fn keep_last_admin(tx: &mut Transaction<'_>, user: UserId) -> Result<(), UserError> {
    tx.execute("SELECT 1 FROM groups WHERE name = 'admins' FOR UPDATE", &[])?;
    let last: bool = tx
        .query_typed_one(IS_LAST_ADMIN, &[(&user, Type::INT8)])?
        .try_get(0)?;
    if last {
        return Err(UserError::LastAdministrator);
    }
    Ok(())
}

impl Postgres {
    fn guarded(&self, user: UserId, keep_admin: bool, sql: &str) -> Result<(), UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        if keep_admin {
            keep_last_admin(&mut tx, user)?;
        }
        let n = tx.execute_typed(sql, &[(&user, Type::INT8)])?;
        if n == 0 {
            return Err(UserError::NotFound);
        }
        tx.commit()?;
        Ok(())
    }

    fn builtin_or_missing(&self, id: GroupId) -> UserError {
        let name = self.client().ok().and_then(|mut c| {
            c.query_typed_opt(
                "SELECT name FROM groups WHERE id = $1",
                &[(&id, Type::INT8)],
            )
            .ok()
            .flatten()
            .and_then(|r| r.try_get::<_, String>(0).ok())
        });
        match name {
            Some(n) if n == ADMINS => UserError::Builtin,
            _ => UserError::NoSuchGroup,
        }
    }
}

impl GroupStore for Postgres {
    fn create(&self, name: &str, now: Millis) -> Result<Group, UserError> {
        let row = self
            .client()?
            .query_typed_one(
                "INSERT INTO groups (name, created_at) VALUES ($1, $2) \
                 RETURNING id, name, created_at, 0::BIGINT",
                &[(&name, Type::TEXT), (&now, Type::INT8)],
            )
            .map_err(taken)?;
        group(&row)
    }

    fn rename(&self, id: GroupId, name: &str) -> Result<(), UserError> {
        let n = self
            .client()?
            .execute_typed(
                "UPDATE groups SET name = $2 WHERE id = $1 AND name <> 'admins'",
                &[(&id, Type::INT8), (&name, Type::TEXT)],
            )
            .map_err(taken)?;
        if n == 0 {
            return Err(self.builtin_or_missing(id));
        }
        Ok(())
    }

    fn delete(&self, id: GroupId) -> Result<(), UserError> {
        let n = self.client()?.execute_typed(
            "DELETE FROM groups WHERE id = $1 AND name <> 'admins'",
            &[(&id, Type::INT8)],
        )?;
        if n == 0 {
            return Err(self.builtin_or_missing(id));
        }
        Ok(())
    }

    fn find_by_name(&self, name: &str) -> Result<Option<Group>, UserError> {
        self.client()?
            .query_typed_opt(
                &format!("{LIST} WHERE lower(g.name) = lower($1)"),
                &[(&name, Type::TEXT)],
            )?
            .as_ref()
            .map(group)
            .transpose()
    }

    fn list(&self) -> Result<Vec<Group>, UserError> {
        self.client()?
            .query_typed(&format!("{LIST} ORDER BY lower(g.name)"), &[])?
            .iter()
            .map(group)
            .collect()
    }

    fn members(&self, id: GroupId) -> Result<Vec<User>, UserError> {
        self.client()?
            .query_typed(
                &format!(
                    "SELECT {COLUMNS} FROM users WHERE id IN \
                     (SELECT user_id FROM user_groups WHERE group_id = $1) \
                     ORDER BY lower(username)"
                ),
                &[(&id, Type::INT8)],
            )?
            .iter()
            .map(|r| Ok(User::from_row(r, 0)?))
            .collect()
    }

    fn groups_of(&self, user: UserId) -> Result<Vec<String>, UserError> {
        self.client()?
            .query_typed(
                "SELECT g.name FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
                 WHERE ug.user_id = $1 ORDER BY lower(g.name)",
                &[(&user, Type::INT8)],
            )?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }

    fn add_member(&self, group: GroupId, user: UserId) -> Result<bool, UserError> {
        let mut client = self.client()?;
        let row = client.query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM groups WHERE id = $1), \
                    EXISTS (SELECT 1 FROM users WHERE id = $2)",
            &[(&group, Type::INT8), (&user, Type::INT8)],
        )?;
        if !row.try_get::<_, bool>(0)? {
            return Err(UserError::NoSuchGroup);
        }
        if !row.try_get::<_, bool>(1)? {
            return Err(UserError::NotFound);
        }
        let n = client.execute_typed(
            "INSERT INTO user_groups (user_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[(&user, Type::INT8), (&group, Type::INT8)],
        )?;
        Ok(n > 0)
    }

    fn remove_member(
        &self,
        group: GroupId,
        user: UserId,
        keep_admin: bool,
    ) -> Result<bool, UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let name: Option<String> = tx
            .query_typed_opt(
                "SELECT name FROM groups WHERE id = $1",
                &[(&group, Type::INT8)],
            )?
            .map(|r| r.try_get(0))
            .transpose()?;
        let Some(name) = name else {
            return Err(UserError::NoSuchGroup);
        };
        if keep_admin && name == ADMINS {
            keep_last_admin(&mut tx, user)?;
        }
        let n = tx.execute_typed(
            "DELETE FROM user_groups WHERE user_id = $1 AND group_id = $2",
            &[(&user, Type::INT8), (&group, Type::INT8)],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn disable_user(&self, user: UserId, keep_admin: bool) -> Result<(), UserError> {
        self.guarded(
            user,
            keep_admin,
            "UPDATE users SET disabled = TRUE WHERE id = $1",
        )
    }

    fn delete_user(&self, user: UserId, keep_admin: bool) -> Result<(), UserError> {
        self.guarded(user, keep_admin, "DELETE FROM users WHERE id = $1")
    }

    fn count_active_admins(&self) -> Result<i64, UserError> {
        Ok(self
            .client()?
            .query_typed_one(COUNT_ACTIVE_ADMINS, &[])?
            .try_get(0)?)
    }

    fn export(&self) -> Result<Exported, UserError> {
        let mut client = self.client()?;
        let groups = client
            .query_typed(&format!("{LIST} ORDER BY g.id"), &[])?
            .iter()
            .map(group)
            .collect::<Result<_, _>>()?;
        let members = client
            .query_typed(
                "SELECT user_id, group_id FROM user_groups ORDER BY group_id, user_id",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, UserError>>()?;
        Ok(Exported { groups, members })
    }

    fn import(&self, exported: &Exported) -> Result<(), UserError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let mut ids = std::collections::HashMap::new();
        for g in &exported.groups {
            // Matched by name, as in SQLite.
            let found = tx.query_typed_opt(
                "SELECT id FROM groups WHERE lower(name) = lower($1)",
                &[(&g.name, Type::TEXT)],
            )?;
            let id: GroupId = match found {
                Some(row) => row.try_get(0)?,
                None => tx
                    .query_typed_one(
                        "INSERT INTO groups (name, created_at) VALUES ($1, $2) RETURNING id",
                        &[(&g.name, Type::TEXT), (&g.created_at, Type::INT8)],
                    )
                    .map_err(taken)?
                    .try_get(0)?,
            };
            ids.insert(g.id, id);
        }
        for (user, group) in &exported.members {
            let group = ids.get(group).ok_or(UserError::NoSuchGroup)?;
            tx.execute_typed(
                "INSERT INTO user_groups (user_id, group_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[(user, Type::INT8), (group, Type::INT8)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
