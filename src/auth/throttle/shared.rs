//! Throttling records in the shared backends, so every instance counts the
//! same failures: a row per subject in PostgreSQL, updated under a
//! transaction-scoped advisory lock; a key per subject in Redis, updated in
//! a `WATCH`/`MULTI` transaction and forgotten by Redis when it no longer
//! matters. Either way the rules themselves run here, in Rust, once.

use postgres::types::Type;

use super::{Entry, Records, Room};
use crate::clock::Millis;
use crate::db::postgres::PgPool;
use crate::db::redis::RedisPool;
use crate::session::StoreError;

fn corrupt(e: &serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("throttle record: {e}"))
}

fn parse(text: Option<String>) -> Result<Option<Entry>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(&e)))
        .transpose()
}

fn text(entry: &Entry) -> String {
    serde_json::to_string(entry).expect("a throttle entry always serializes")
}

/// Records in PostgreSQL's `throttle` table (expired rows are deleted by
/// the session reaper's sweep).
pub struct PostgresRecords(pub PgPool);

impl PostgresRecords {
    fn client(&self) -> Result<crate::db::postgres::PgConn, StoreError> {
        Ok(crate::db::postgres::client(&self.0)?)
    }
}

impl Records for PostgresRecords {
    fn get(&self, subject: &str, _room: Room, _now: Millis) -> Result<Option<Entry>, StoreError> {
        let row = self.client()?.query_typed_opt(
            "SELECT entry FROM throttle WHERE subject = $1",
            &[(&subject, Type::TEXT)],
        )?;
        parse(row.map(|r| r.try_get(0)).transpose()?)
    }

    fn update(
        &self,
        subject: &str,
        _room: Room,
        keep_for: Millis,
        now: Millis,
        f: &mut dyn FnMut(Option<Entry>) -> Option<Entry>,
    ) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        // One subject at a time, whichever instance asks; the lock ends
        // with the transaction.
        tx.execute_typed(
            "SELECT pg_advisory_xact_lock(26472, hashtext($1))",
            &[(&subject, Type::TEXT)],
        )?;
        let old = tx
            .query_typed_opt(
                "SELECT entry FROM throttle WHERE subject = $1",
                &[(&subject, Type::TEXT)],
            )?
            .map(|r| r.try_get(0))
            .transpose()?;
        match f(parse(old)?) {
            Some(entry) => {
                let expires_at = now.saturating_add(keep_for);
                tx.execute_typed(
                    "INSERT INTO throttle (subject, entry, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (subject) DO UPDATE \
                     SET entry = excluded.entry, expires_at = excluded.expires_at",
                    &[
                        (&subject, Type::TEXT),
                        (&text(&entry), Type::TEXT),
                        (&expires_at, Type::INT8),
                    ],
                )?;
            }
            None => {
                tx.execute_typed(
                    "DELETE FROM throttle WHERE subject = $1",
                    &[(&subject, Type::TEXT)],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Records in Redis, as `<prefix>t:<subject>`.
pub struct RedisRecords {
    pool: RedisPool,
    prefix: String,
}

impl RedisRecords {
    /// Records on `pool`, under `prefix`.
    pub fn new(pool: RedisPool, prefix: &str) -> Self {
        Self {
            pool,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, subject: &str) -> String {
        format!("{}t:{subject}", self.prefix)
    }

    fn conn(&self) -> Result<crate::db::redis::RedisConn, StoreError> {
        Ok(crate::db::redis::conn(&self.pool)?)
    }
}

impl Records for RedisRecords {
    fn get(&self, subject: &str, _room: Room, _now: Millis) -> Result<Option<Entry>, StoreError> {
        let value: Option<String> = redis::cmd("GET")
            .arg(self.key(subject))
            .query(&mut **self.conn()?)?;
        parse(value)
    }

    fn update(
        &self,
        subject: &str,
        _room: Room,
        keep_for: Millis,
        _now: Millis,
        f: &mut dyn FnMut(Option<Entry>) -> Option<Entry>,
    ) -> Result<(), StoreError> {
        let key = self.key(subject);
        let mut conn = self.conn()?;
        let mut failure = None;
        // WATCH, read, compute, MULTI/EXEC; if another instance wrote the
        // key in between, EXEC does nothing and the loop runs again.
        redis::transaction(&mut *conn, &[&key], |conn, pipe| {
            let old: Option<String> = redis::cmd("GET").arg(&key).query(conn)?;
            let old = match parse(old) {
                Ok(old) => old,
                Err(e) => {
                    failure = Some(e);
                    None
                }
            };
            match f(old) {
                Some(entry) => pipe
                    .cmd("SET")
                    .arg(&key)
                    .arg(text(&entry))
                    .arg("PX")
                    .arg(keep_for.max(1))
                    .ignore(),
                None => pipe.cmd("DEL").arg(&key).ignore(),
            };
            pipe.query::<Option<()>>(conn)
        })?;
        // A record we cannot read is replaced by a fresh one; say so.
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
