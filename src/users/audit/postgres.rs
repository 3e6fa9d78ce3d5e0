//! The audit log in PostgreSQL, shared by every instance: the statements
//! behind [`super::AuditStore`], with `lower()` standing in for SQLite's
//! `NOCASE` (the name indexes are on `lower(...)`).

use postgres::types::{ToSql, Type};

use super::super::postgres::Postgres;
use super::{AuditStore, Entry, Filter, NewRow, Value, page_sql};
use crate::clock::Millis;
use crate::users::UserError;

fn entry(row: &postgres::Row) -> Result<Entry, UserError> {
    Ok(Entry {
        id: row.try_get(0)?,
        at: row.try_get(1)?,
        kind: row.try_get(2)?,
        outcome: row.try_get(3)?,
        actor: row.try_get(4)?,
        subject: row.try_get(5)?,
        ip: row.try_get(6)?,
        user_agent: row.try_get(7)?,
        detail: row.try_get(8)?,
    })
}

impl AuditStore for Postgres {
    fn insert(&self, row: &NewRow<'_>) -> Result<(), UserError> {
        self.client()?.execute_typed(
            "INSERT INTO audit (at, kind, outcome, actor, subject, ip, user_agent, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                (&row.at, Type::INT8),
                (&row.kind, Type::TEXT),
                (&row.outcome, Type::TEXT),
                (&row.actor, Type::TEXT),
                (&row.subject, Type::TEXT),
                (&row.ip, Type::TEXT),
                (&row.user_agent, Type::TEXT),
                (&row.detail, Type::TEXT),
            ],
        )?;
        Ok(())
    }

    fn page(&self, filter: &Filter, limit: usize) -> Result<Vec<Entry>, UserError> {
        let (sql, values) = page_sql(
            filter,
            limit,
            |n| format!("${n}"),
            |column, p| format!("lower({column}) = lower({p})"),
        );
        let params: Vec<(&(dyn ToSql + Sync), Type)> = values
            .iter()
            .map(|v| match v {
                Value::Text(t) => (t as &(dyn ToSql + Sync), Type::TEXT),
                Value::Int(i) => (i as &(dyn ToSql + Sync), Type::INT8),
            })
            .collect();
        self.client()?
            .query_typed(&sql, &params)?
            .iter()
            .map(entry)
            .collect()
    }

    fn trim(&self, before: Millis, batch: usize) -> Result<usize, UserError> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let n = self.client()?.execute_typed(
            "DELETE FROM audit WHERE id IN
                 (SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2)",
            &[(&before, Type::INT8), (&batch, Type::INT8)],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
