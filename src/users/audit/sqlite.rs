//! The audit log in gatehouse's SQLite file: the statements behind
//! [`super::AuditStore`]. The name columns are `NOCASE`, so a user's rows
//! are found in any case through their indexes.

use rusqlite::{Row, params};

use super::super::sqlite::Sqlite;
use super::{AuditStore, Entry, Filter, NewRow, Value, page_sql};
use crate::clock::Millis;
use crate::users::UserError;

fn entry(row: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: row.get(0)?,
        at: row.get(1)?,
        kind: row.get(2)?,
        outcome: row.get(3)?,
        actor: row.get(4)?,
        subject: row.get(5)?,
        ip: row.get(6)?,
        user_agent: row.get(7)?,
        detail: row.get(8)?,
    })
}

impl AuditStore for Sqlite {
    fn insert(&self, row: &NewRow<'_>) -> Result<(), UserError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(
            "INSERT INTO audit (at, kind, outcome, actor, subject, ip, user_agent, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        stmt.execute(params![
            row.at,
            row.kind,
            row.outcome,
            row.actor,
            row.subject,
            row.ip,
            row.user_agent,
            row.detail
        ])?;
        Ok(())
    }

    fn page(&self, filter: &Filter, limit: usize) -> Result<Vec<Entry>, UserError> {
        let (sql, values) = page_sql(
            filter,
            limit,
            |n| format!("?{n}"),
            |column, p| format!("{column} = {p}"),
        );
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&sql)?;
        let values: Vec<rusqlite::types::Value> = values
            .into_iter()
            .map(|v| match v {
                Value::Text(t) => rusqlite::types::Value::Text(t),
                Value::Int(i) => rusqlite::types::Value::Integer(i),
            })
            .collect();
        Ok(stmt
            .query_map(rusqlite::params_from_iter(values), entry)?
            .collect::<Result<_, _>>()?)
    }

    fn trim(&self, before: Millis, batch: usize) -> Result<usize, UserError> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        Ok(self.0.get()?.execute(
            "DELETE FROM audit WHERE id IN
                 (SELECT id FROM audit WHERE at < ?1 ORDER BY at LIMIT ?2)",
            params![before, batch],
        )?)
    }
}
