//! The PostgreSQL store: sessions in the `sessions` table of a shared
//! database, for several gatehouse instances serving one login.
//!
//! The guarantees are the SQLite store's, kept by the same means: every
//! write is one statement guarded by `expires_at > now` (no resurrection);
//! a patch is applied inside the database (`data - removed || set`), and a
//! counter is incremented inside one `UPDATE`, whose row lock makes
//! concurrent requests, on any instance, queue rather than overwrite.
//! Statements are sent with their parameter types (`query_typed`), so each
//! costs one round trip and no server-side prepared statement.

use postgres::types::{ToSql, Type};
use serde_json::{Map, Value};

use super::id::SessionKey;
use super::store::{Change, Patch, Record, Store, StoreError, Touch, User, UserId};
use crate::clock::Millis;
use crate::db::postgres::PgPool;

/// Sessions in PostgreSQL.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

const COLUMNS: &str = "key, user_id, data::text, created_at, last_seen_at, expires_at, \
                       absolute_expires_at, persistent, user_agent, ip, user_stamp";

/// [`COLUMNS`] of the session `s`, in a statement that joins its user `u`.
const JOINED: &str = "s.key, s.user_id, s.data::text, s.created_at, s.last_seen_at, \
                      s.expires_at, s.absolute_expires_at, s.persistent, s.user_agent, s.ip, \
                      s.user_stamp";

/// The joined user's columns (their groups among them).
const USER_COLUMNS: &str = crate::identity::JOINED_USER_COLUMNS;

/// Where the joined user's columns start, after [`JOINED`].
const USER_AT: usize = 11;

/// The rows of `sessions s LEFT JOIN users u` that are sessions: anonymous,
/// or signed in as a user whose stamp is still the one the session was
/// signed in with (see the SQLite store).
const OWNED: &str = "(s.user_id IS NULL OR u.stamp = s.user_stamp)";

type Param<'a> = (&'a (dyn ToSql + Sync), Type);

fn record(row: &postgres::Row) -> Result<Record, StoreError> {
    let key: Vec<u8> = row.try_get(0)?;
    let data: String = row.try_get(2)?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("key length".into()))?;
    let data: Map<String, Value> =
        serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Record {
        key: SessionKey(key),
        user_id: row.try_get(1)?,
        data,
        created_at: row.try_get(3)?,
        last_seen_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        absolute_expires_at: row.try_get(6)?,
        persistent: row.try_get(7)?,
        user_agent: row.try_get(8)?,
        ip: row.try_get(9)?,
        user_stamp: row.try_get(10)?,
    })
}

fn data_text(data: &Map<String, Value>) -> String {
    serde_json::to_string(data).expect("a JSON map always serializes")
}

fn insert(client: &mut impl Execute, r: &Record) -> Result<(), postgres::Error> {
    let key = &r.key.0[..];
    let data = data_text(&r.data);
    client.execute_typed(
        &format!(
            "INSERT INTO sessions ({}) \
             VALUES ($1, $2, ($3::text)::jsonb, $4, $5, $6, $7, $8, $9, $10, $11)",
            COLUMNS.replace("::text", "")
        ),
        &[
            (&key, Type::BYTEA),
            (&r.user_id, Type::INT8),
            (&data, Type::TEXT),
            (&r.created_at, Type::INT8),
            (&r.last_seen_at, Type::INT8),
            (&r.expires_at, Type::INT8),
            (&r.absolute_expires_at, Type::INT8),
            (&r.persistent, Type::BOOL),
            (&r.user_agent, Type::TEXT),
            (&r.ip, Type::TEXT),
            (&r.user_stamp, Type::TEXT),
        ],
    )?;
    Ok(())
}

/// What a client and a transaction share, for statements sent either way.
trait Execute {
    fn execute_typed(&mut self, query: &str, params: &[Param<'_>]) -> Result<u64, postgres::Error>;
}

impl Execute for postgres::Client {
    fn execute_typed(&mut self, query: &str, params: &[Param<'_>]) -> Result<u64, postgres::Error> {
        postgres::Client::execute_typed(self, query, params)
    }
}

impl Execute for postgres::Transaction<'_> {
    fn execute_typed(&mut self, query: &str, params: &[Param<'_>]) -> Result<u64, postgres::Error> {
        postgres::Transaction::execute_typed(self, query, params)
    }
}

impl PostgresStore {
    /// A store on an open pool (see [`crate::db::postgres::open`]).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn client(&self) -> Result<crate::db::postgres::PgConn, StoreError> {
        Ok(crate::db::postgres::client(&self.pool)?)
    }
}

impl Store for PostgresStore {
    fn create(&self, record: &Record) -> Result<(), StoreError> {
        insert(&mut **self.client()?, record)?;
        Ok(())
    }

    fn load(&self, key: &SessionKey, now: Millis) -> Result<Option<Record>, StoreError> {
        let key = &key.0[..];
        self.client()?
            .query_typed_opt(
                &format!(
                    "SELECT {JOINED} FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
                     WHERE s.key = $1 AND s.expires_at > $2 AND {OWNED}"
                ),
                &[(&key, Type::BYTEA), (&now, Type::INT8)],
            )?
            .as_ref()
            .map(record)
            .transpose()
    }

    fn load_with_user(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<(Record, Option<User>)>, StoreError> {
        let key = &key.0[..];
        // One indexed read: the session by its key, its user by id, and
        // the two stamps compared in the same statement.
        let Some(row) = self.client()?.query_typed_opt(
            &format!(
                "SELECT {JOINED}, {USER_COLUMNS} \
                 FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
                 WHERE s.key = $1 AND s.expires_at > $2 AND {OWNED}"
            ),
            &[(&key, Type::BYTEA), (&now, Type::INT8)],
        )?
        else {
            return Ok(None);
        };
        let r = record(&row)?;
        let user = User::from_joined_row(&row, USER_AT)?;
        Ok(Some((r, user)))
    }

    fn save(
        &self,
        key: &SessionKey,
        patch: &Patch,
        touch: Touch,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut removed = Vec::new();
        let mut set = Map::new();
        for (k, change) in &patch.0 {
            match change {
                Change::Set(v) => {
                    set.insert(k.clone(), v.clone());
                }
                Change::Remove => removed.push(k.clone()),
            }
        }
        let set = data_text(&set);
        let key = &key.0[..];
        let n = self.client()?.execute_typed(
            "UPDATE sessions SET data = (data - $1::text[]) || ($2::text)::jsonb, \
                 last_seen_at = $3, expires_at = GREATEST(expires_at, $4) \
             WHERE key = $5 AND expires_at > $6",
            &[
                (&removed, Type::TEXT_ARRAY),
                (&set, Type::TEXT),
                (&touch.last_seen_at, Type::INT8),
                (&touch.expires_at, Type::INT8),
                (&key, Type::BYTEA),
                (&now, Type::INT8),
            ],
        )?;
        Ok(n == 1)
    }

    fn increment(
        &self,
        key: &SessionKey,
        field: &str,
        by: i64,
        touch: Touch,
        now: Millis,
    ) -> Result<Option<i64>, StoreError> {
        let key = &key.0[..];
        // A number counts as its integer part, anything else as 0, as in
        // SQLite's `CAST(... AS INTEGER)`.
        let row = self.client()?.query_typed_opt(
            "UPDATE sessions SET data = jsonb_set(data, ARRAY[$1::text], to_jsonb( \
                 CASE WHEN jsonb_typeof(data -> $1::text) = 'number' \
                      THEN trunc((data ->> $1::text)::numeric)::bigint ELSE 0 END + $2::bigint)), \
                 last_seen_at = $3, expires_at = GREATEST(expires_at, $4) \
             WHERE key = $5 AND expires_at > $6 \
             RETURNING (data ->> $1::text)::bigint",
            &[
                (&field, Type::TEXT),
                (&by, Type::INT8),
                (&touch.last_seen_at, Type::INT8),
                (&touch.expires_at, Type::INT8),
                (&key, Type::BYTEA),
                (&now, Type::INT8),
            ],
        )?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    fn regenerate(&self, old: &SessionKey, new: &Record) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let old = &old.0[..];
        tx.execute_typed(
            "DELETE FROM sessions WHERE key = $1",
            &[(&old, Type::BYTEA)],
        )?;
        insert(&mut tx, new)?;
        tx.commit()?;
        Ok(())
    }

    fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let key = &key.0[..];
        let n = self.client()?.execute_typed(
            "DELETE FROM sessions WHERE key = $1",
            &[(&key, Type::BYTEA)],
        )?;
        Ok(n == 1)
    }

    fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        // SKIP LOCKED: instances reaping at once take different rows rather
        // than queueing on the same ones.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut client = self.client()?;
        let n = client.execute_typed(
            "DELETE FROM sessions WHERE key IN \
             (SELECT key FROM sessions WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[(&now, Type::INT8), (&limit, Type::INT8)],
        )?;
        // Throttling records that have run out go in the same sweep.
        client.execute_typed(
            "DELETE FROM throttle WHERE subject IN \
             (SELECT subject FROM throttle WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[(&now, Type::INT8), (&limit, Type::INT8)],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn list(&self, user_id: Option<UserId>, now: Millis) -> Result<Vec<Record>, StoreError> {
        self.client()?
            .query_typed(
                &format!(
                    "SELECT {JOINED} FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
                     WHERE s.expires_at > $1 AND ($2::bigint IS NULL OR s.user_id = $2) \
                     AND {OWNED} ORDER BY s.last_seen_at DESC, s.key"
                ),
                &[(&now, Type::INT8), (&user_id, Type::INT8)],
            )?
            .iter()
            .map(record)
            .collect()
    }

    fn count(&self, now: Millis) -> Result<usize, StoreError> {
        let n: i64 = self
            .client()?
            .query_typed_one(
                "SELECT count(*) FROM sessions WHERE expires_at > $1",
                &[(&now, Type::INT8)],
            )?
            .try_get(0)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn delete_by_user(
        &self,
        user_id: UserId,
        keep: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        let keep = keep.map(|k| k.0.to_vec());
        let n = self.client()?.execute_typed(
            "DELETE FROM sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR key <> $2)",
            &[(&user_id, Type::INT8), (&keep, Type::BYTEA)],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn end_oldest(
        &self,
        user_id: UserId,
        keep: &SessionKey,
        max: usize,
        now: Millis,
    ) -> Result<usize, StoreError> {
        // One statement. Instances signing the same user in at once each
        // see their own snapshot, so the count may pass `max` by the
        // sign-ins in flight until the next one trims it.
        let keep = &keep.0[..];
        let others = i64::try_from(max.saturating_sub(1)).unwrap_or(i64::MAX);
        let n = self.client()?.execute_typed(
            "DELETE FROM sessions WHERE user_id = $1 AND key <> $2 AND key NOT IN \
             (SELECT key FROM sessions WHERE user_id = $1 AND key <> $2 AND expires_at > $3 \
              ORDER BY created_at DESC, key LIMIT $4)",
            &[
                (&user_id, Type::INT8),
                (&keep, Type::BYTEA),
                (&now, Type::INT8),
                (&others, Type::INT8),
            ],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::postgres;

    /// A store on a fresh schema, with the users the suite refers to.
    pub(crate) fn scratch() -> Option<PostgresStore> {
        let url = postgres::scratch_schema(&postgres::test_url()?).expect("scratch schema");
        let pool = postgres::open_for_tests(&url, 20).expect("open");
        pool.get()
            .expect("conn")
            .batch_execute(crate::session::conformance::USERS)
            .expect("users");
        Some(PostgresStore::new(pool))
    }

    #[test]
    fn the_postgres_store_passes_the_conformance_suite() {
        let Some(store) = scratch() else { return };
        crate::session::conformance::run_all(store);
    }

    #[test]
    fn an_increment_whose_commit_fails_is_an_error_on_postgres() {
        let Some(store) = scratch() else { return };
        let now = crate::clock::now();
        let rec = crate::session::conformance::created(&store, now);
        store
            .pool
            .get()
            .expect("conn")
            .batch_execute(&postgres::fail_at_commit("sessions", "UPDATE"))
            .expect("trigger");
        let touch = Touch {
            last_seen_at: now,
            expires_at: rec.expires_at,
        };
        let result = store.increment(&rec.key, "visits", 1, touch, now);
        assert!(result.is_err(), "{result:?}");
        let stored = store.load(&rec.key, now).expect("load").expect("live");
        assert_eq!(stored.data.get("visits"), None);
        let patch = Patch([("k".to_owned(), Change::Set(Value::from(1)))].into());
        assert!(store.save(&rec.key, &patch, touch, now).is_err());
    }

    #[test]
    fn a_session_whose_stamp_is_not_its_users_is_no_session_in_the_one_read() {
        let Some(store) = scratch() else { return };
        let now = crate::clock::now();
        let rec = crate::session::conformance::signed_in(
            crate::session::conformance::record(crate::session::SessionId::generate().key(), now),
            1,
        );
        store.create(&rec).expect("create");
        assert!(store.load_with_user(&rec.key, now).expect("load").is_some());
        store
            .pool()
            .get()
            .expect("conn")
            .batch_execute("UPDATE users SET stamp = md5(random()::text) WHERE id = 1")
            .expect("another user 1");
        assert!(store.load_with_user(&rec.key, now).expect("load").is_none());
        assert!(store.load(&rec.key, now).expect("load").is_none());
        assert!(store.list(Some(1), now).expect("list").is_empty());
    }

    #[test]
    fn only_the_hash_of_the_id_is_stored() {
        let Some(store) = scratch() else { return };
        let id = crate::session::SessionId::generate();
        let rec = crate::session::conformance::record(id.key(), crate::clock::now());
        store.create(&rec).expect("create");
        let stored: Vec<u8> = store
            .pool()
            .get()
            .expect("conn")
            .query_one("SELECT key FROM sessions", &[])
            .expect("row")
            .get(0);
        assert_eq!(stored, id.key().0.to_vec());
    }

    #[test]
    fn instances_migrating_at_once_run_each_step_once() {
        let Some(url) = postgres::test_url() else {
            return;
        };
        let url = postgres::scratch_schema(&url).expect("scratch schema");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || postgres::open_for_tests(&url, 1).map(|_| ()))
            })
            .collect();
        for h in handles {
            h.join().expect("thread").expect("migrated");
        }
    }
}
