//! The SQLite store: sessions in the `sessions` table of gatehouse's file.
//!
//! Every verb is one statement or one short transaction on a pooled
//! connection. Saves are `UPDATE`s guarded by `expires_at > now`, so a
//! session deleted by a concurrent logout is never written back, and a patch
//! is applied inside SQLite with `json_set`/`json_remove` so only the keys a
//! request changed are written.

use std::path::Path;

use rusqlite::{OptionalExtension, Row, params, params_from_iter, types::Value as SqlValue};
use serde_json::{Map, Value};

use super::id::SessionKey;
use super::store::{Change, Patch, Record, Store, StoreError, Touch, User, UserId};
use crate::clock::Millis;
use crate::db::{self, DbError, Pool};

/// Sessions in SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Pool,
    /// The id of the database this store opened; rows are written with it
    /// and read only when they carry it.
    database_id: std::sync::Arc<str>,
    /// Writers take turns here rather than in SQLite's busy handler, which
    /// sleeps 1, 2, 5, 10... ms between retries: under contention (many
    /// requests counting visits at once) a queue on a mutex is far faster.
    writer: std::sync::Arc<std::sync::Mutex<()>>,
    /// Signed-in reads kept in memory until the next commit (`None`
    /// without inotify).
    kept: Option<std::sync::Arc<Kept>>,
}

/// Every signed-in request reads its session and user
/// ([`Store::load_with_user`]): about 21,000 instructions in SQLite and,
/// on a quiet connection, two `fcntl` for the read lock (issue 22). Those
/// reads are kept here and answered again until anything is committed to
/// the file, by this process or any other (a `gatehouse` command, another
/// server), which [`db::Commits`] tells with one `read` that finds nothing.
/// Whatever is committed empties the whole store, so a revoked session, a
/// disabled user, a new password stamp, a changed group or a session's own
/// save is never answered from before it. Only time changes a kept answer
/// without a commit (`expires_at > now`), and that is checked on each use.
struct Kept {
    commits: db::Commits,
    entries: std::sync::Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// Counts the emptyings: a read that began before one is not kept.
    generation: u64,
    /// When a commit was last told (`None`: not since the start).
    last_commit: Option<std::time::Instant>,
    map: std::collections::HashMap<SessionKey, (Record, Option<User>)>,
}

/// How long the file must have been quiet before a read is kept: while
/// commits keep coming (a busy visit counter) every read would be emptied
/// again at once, and keeping one costs a turn at SQLite's write lock.
const QUIET: std::time::Duration = std::time::Duration::from_millis(50);

/// At most this many sessions are kept (about 600 bytes each, 2 KiB at
/// most); a full store is emptied and fills again with the sessions in
/// use.
const KEPT_MAX: usize = 1024;

/// Only sessions whose data is at most this large (as JSON) are kept:
/// gatehouse's own keys take about 200 bytes, and an app that stores more
/// in its sessions (up to the 16 KiB each may hold) would otherwise make
/// the store hold 16 MiB, and copy kilobytes on every hit. Larger ones are
/// read from the file each time, as before there was a store.
const KEPT_DATA_MAX: usize = 1024;

/// The size of `record`'s data as JSON.
#[inline]
fn kept_size(record: &Record) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, &record.data) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

impl Kept {
    #[inline]
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

const COLUMNS: &str = "key, user_id, data, created_at, last_seen_at, expires_at, \
                       absolute_expires_at, persistent, user_agent, ip, user_stamp";

/// [`COLUMNS`] of the session `s`, in a statement that joins its user `u`.
const JOINED: &str = "s.key, s.user_id, s.data, s.created_at, s.last_seen_at, s.expires_at, \
                      s.absolute_expires_at, s.persistent, s.user_agent, s.ip, s.user_stamp";

/// The joined user's columns (their groups among them).
const USER_COLUMNS: &str = crate::identity::JOINED_USER_COLUMNS;

/// Where the joined user's columns start, after [`JOINED`].
const USER_AT: usize = 11;

/// The rows of `sessions s LEFT JOIN users u` that are sessions: anonymous,
/// or signed in as a user whose stamp is still the one the session was
/// signed in with. A row bound to another user's stamp (a row written into
/// a file where its user id names someone else) is no session at all.
const OWNED: &str = "(s.user_id IS NULL OR u.stamp = s.user_stamp)";

/// The statement of `load_with_user` (every signed-in request's read),
/// built once: a `format!` per request cost an allocation and about 1,000
/// instructions before the statement cache was even asked (issue 22).
static LOAD_WITH_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {JOINED}, {USER_COLUMNS} \
         FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
         WHERE s.key = ?1 AND s.expires_at > ?2 AND s.database_id = ?3 AND {OWNED}"
    )
});

/// How many keys one `json_set` or `json_remove` of a save takes.
const PER_CALL: usize = 100;

/// The JSON path of a top-level key. Keys were checked by `valid_key`, so
/// they hold no `"` that could end the quoted label early.
fn path(key: &str) -> String {
    format!("$.\"{key}\"")
}

fn record(row: &Row<'_>) -> rusqlite::Result<Record> {
    let key: Vec<u8> = row.get(0)?;
    let data: String = row.get(2)?;
    let key: [u8; 32] = key.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            "key length".into(),
        )
    })?;
    let data: Map<String, Value> = serde_json::from_str(&data).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(Record {
        key: SessionKey(key),
        user_id: row.get(1)?,
        data,
        created_at: row.get(3)?,
        last_seen_at: row.get(4)?,
        expires_at: row.get(5)?,
        absolute_expires_at: row.get(6)?,
        persistent: row.get(7)?,
        user_agent: row.get(8)?,
        ip: row.get(9)?,
        user_stamp: row.get(10)?,
    })
}

fn data_text(data: &Map<String, Value>) -> String {
    serde_json::to_string(data).expect("a JSON map always serializes")
}

impl SqliteStore {
    /// A store on an existing pool (gatehouse's own database).
    pub fn new(pool: Pool) -> Self {
        let kept = pool.commits().map(|commits| {
            std::sync::Arc::new(Kept {
                commits,
                entries: std::sync::Mutex::default(),
            })
        });
        Self {
            database_id: pool.database_id().into(),
            pool,
            writer: std::sync::Arc::default(),
            kept,
        }
    }

    /// The turn of one writer in this process.
    fn write_turn(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens or creates a database file holding only what sessions need.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        Ok(Self::new(db::open(path, 16)?))
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The read behind [`Store::load_with_user`]: one indexed statement,
    /// the session by its key, its user by id, and the two stamps compared
    /// in the same statement.
    fn read_with_user(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<(Record, Option<User>)>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&LOAD_WITH_USER)?;
        stmt.query_row(params![&key.0[..], now, &*self.database_id], |row| {
            let r = record(row)?;
            let user = User::from_joined_row(row, USER_AT)?;
            Ok((r, user))
        })
        .optional()
        .map_err(|e| match e {
            rusqlite::Error::FromSqlConversionFailure(..) => StoreError::Corrupt(e.to_string()),
            e => e.into(),
        })
    }

    /// [`SqliteStore::read_with_user`] inside `BEGIN IMMEDIATE`: after
    /// every commit that was under way when it began is visible. `None`
    /// when the lock cannot be had.
    fn read_at_write_lock(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Option<Option<(Record, Option<User>)>> {
        let _turn = self.write_turn();
        let mut conn = self.pool.get().ok()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .ok()?;
        let found = tx
            .prepare_cached(&LOAD_WITH_USER)
            .and_then(|mut stmt| {
                stmt.query_row(params![&key.0[..], now, &*self.database_id], |row| {
                    let r = record(row)?;
                    let user = User::from_joined_row(row, USER_AT)?;
                    Ok((r, user))
                })
                .optional()
            })
            .ok()?;
        // Nothing was written: ending it is a rollback either way.
        tx.rollback().ok()?;
        Some(found)
    }

    fn insert(&self, conn: &rusqlite::Connection, r: &Record) -> rusqlite::Result<()> {
        conn.prepare_cached(&format!(
            "INSERT INTO sessions ({COLUMNS}, database_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ))?
        .execute(params![
            &r.key.0[..],
            r.user_id,
            data_text(&r.data),
            r.created_at,
            r.last_seen_at,
            r.expires_at,
            r.absolute_expires_at,
            r.persistent,
            r.user_agent,
            r.ip,
            r.user_stamp,
            &*self.database_id,
        ])?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn create(&self, record: &Record) -> Result<(), StoreError> {
        let _turn = self.write_turn();
        self.insert(&*self.pool.get()?, record)?;
        Ok(())
    }

    fn load(&self, key: &SessionKey, now: Millis) -> Result<Option<Record>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {JOINED} FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
             WHERE s.key = ?1 AND s.expires_at > ?2 AND s.database_id = ?3 AND {OWNED}"
        ))?;
        stmt.query_row(params![&key.0[..], now, &*self.database_id], record)
            .optional()
            .map_err(|e| match e {
                rusqlite::Error::FromSqlConversionFailure(..) => StoreError::Corrupt(e.to_string()),
                e => e.into(),
            })
    }

    #[inline]
    fn load_with_user(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<(Record, Option<User>)>, StoreError> {
        let Some(kept) = &self.kept else {
            return self.read_with_user(key, now);
        };
        // Refused whenever a checkout would be (a replaced file).
        self.pool.still_the_file()?;
        let generation = {
            let mut entries = kept.entries();
            // Under the lock: whoever is told of a commit empties the
            // store before anyone else can answer from it.
            if kept.commits.any_since_last_look() {
                entries.map.clear();
                entries.generation += 1;
                entries.last_commit = Some(std::time::Instant::now());
            }
            if let Some((r, u)) = entries.map.get(key)
                && r.expires_at > now
            {
                return Ok(Some((r.clone(), u.clone())));
            }
            if entries.last_commit.is_some_and(|t| t.elapsed() < QUIET) {
                drop(entries);
                return self.read_with_user(key, now);
            }
            entries.generation
        };
        // A commit's event is queued when its frames are written, a moment
        // before readers can see it: a read that follows the event in that
        // moment would see the file from before the commit, and nothing
        // more would come to empty it. So a read that is kept is made at
        // SQLite's write lock, which the committer holds until its commit
        // is visible. Should that fail (a read-only file), the read is
        // made as usual and not kept.
        let Some(found) = self.read_at_write_lock(key, now) else {
            return self.read_with_user(key, now);
        };
        if let Some((r, u)) = &found
            && kept_size(r) <= KEPT_DATA_MAX
        {
            let mut entries = kept.entries();
            // A commit told since the look above may be newer than what
            // was read, or older: either way this read is not kept.
            if entries.generation == generation {
                if entries.map.len() >= KEPT_MAX {
                    entries.map.clear();
                }
                entries.map.insert(*key, (r.clone(), u.clone()));
            }
        }
        Ok(found)
    }

    fn save(
        &self,
        key: &SessionKey,
        patch: &Patch,
        touch: Touch,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn();
        // Build `json_set(json_remove(data, ?, ?, ...), ?, json(?), ...)`
        // so the whole patch lands in one UPDATE against the row as it is
        // now, not as it was when this request read it. A patch changes
        // each key once, so removals and sets commute. Each call takes
        // [`PER_CALL`] keys at most: one call per key nested a thousand
        // deep, past SQLite's limit on an expression's depth (a `500` for
        // a patch of a thousand small keys).
        let mut expr = String::from("data");
        let mut args: Vec<SqlValue> = vec![
            SqlValue::Integer(touch.last_seen_at),
            SqlValue::Integer(touch.expires_at),
            SqlValue::Blob(key.0.to_vec()),
            SqlValue::Integer(now),
        ];
        let removed: Vec<&String> = patch
            .0
            .iter()
            .filter(|(_, c)| matches!(c, Change::Remove))
            .map(|(k, _)| k)
            .collect();
        for chunk in removed.chunks(PER_CALL) {
            let mut call = format!("json_remove({expr}");
            for k in chunk {
                args.push(SqlValue::Text(path(k)));
                call.push_str(&format!(", ?{}", args.len()));
            }
            expr = call + ")";
        }
        let set: Vec<(&String, &Value)> = patch
            .0
            .iter()
            .filter_map(|(k, c)| match c {
                Change::Set(v) => Some((k, v)),
                Change::Remove => None,
            })
            .collect();
        for chunk in set.chunks(PER_CALL) {
            let mut call = format!("json_set({expr}");
            for (k, v) in chunk {
                args.push(SqlValue::Text(path(k)));
                args.push(SqlValue::Text(v.to_string()));
                call.push_str(&format!(", ?{}, json(?{})", args.len() - 1, args.len()));
            }
            expr = call + ")";
        }
        let sql = format!(
            "UPDATE sessions SET data = {expr}, last_seen_at = ?1, expires_at = MAX(expires_at, ?2) \
             WHERE key = ?3 AND expires_at > ?4"
        );
        let conn = self.pool.get()?;
        let changed = conn.prepare_cached(&sql)?.execute(params_from_iter(args))?;
        Ok(changed == 1)
    }

    fn increment(
        &self,
        key: &SessionKey,
        field: &str,
        by: i64,
        touch: Touch,
        now: Millis,
    ) -> Result<Option<i64>, StoreError> {
        let _turn = self.write_turn();
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "UPDATE sessions \
             SET data = json_set(data, ?1, CAST(coalesce(json_extract(data, ?1), 0) AS INTEGER) + ?2), \
                 last_seen_at = ?3, expires_at = MAX(expires_at, ?4) \
             WHERE key = ?5 AND expires_at > ?6 \
             RETURNING json_extract(data, ?1)",
        )?;
        let values = db::returning(
            &mut stmt,
            params![
                path(field),
                by,
                touch.last_seen_at,
                touch.expires_at,
                &key.0[..],
                now
            ],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(values.into_iter().next())
    }

    fn regenerate(&self, old: &SessionKey, new: &Record) -> Result<(), StoreError> {
        let _turn = self.write_turn();
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.prepare_cached("DELETE FROM sessions WHERE key = ?1")?
            .execute([&old.0[..]])?;
        self.insert(&tx, new)?;
        tx.commit()?;
        Ok(())
    }

    fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let _turn = self.write_turn();
        let conn = self.pool.get()?;
        let n = conn
            .prepare_cached("DELETE FROM sessions WHERE key = ?1")?
            .execute([&key.0[..]])?;
        Ok(n == 1)
    }

    fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        let _turn = self.write_turn();
        let conn = self.pool.get()?;
        let n = conn
            .prepare_cached(
                "DELETE FROM sessions WHERE key IN \
                 (SELECT key FROM sessions WHERE expires_at <= ?1 LIMIT ?2)",
            )?
            .execute(params![now, i64::try_from(limit).unwrap_or(i64::MAX)])?;
        Ok(n)
    }

    fn list(&self, user_id: Option<UserId>, now: Millis) -> Result<Vec<Record>, StoreError> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {JOINED} FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
             WHERE s.expires_at > ?1 AND (?2 IS NULL OR s.user_id = ?2) AND {OWNED} \
             ORDER BY s.last_seen_at DESC, s.key"
        ))?;
        let rows = stmt.query_map(params![now, user_id], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count(&self, now: Millis) -> Result<usize, StoreError> {
        let conn = self.pool.get()?;
        let n: i64 = conn
            .prepare_cached("SELECT count(*) FROM sessions WHERE expires_at > ?1")?
            .query_row([now], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn delete_by_user(
        &self,
        user_id: UserId,
        keep: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        let _turn = self.write_turn();
        let conn = self.pool.get()?;
        let keep = keep.map(|k| k.0.to_vec());
        let n = conn
            .prepare_cached(
                "DELETE FROM sessions WHERE user_id = ?1 AND (?2 IS NULL OR key != ?2)",
            )?
            .execute(params![user_id, keep])?;
        Ok(n)
    }

    fn end_oldest(
        &self,
        user_id: UserId,
        keep: &SessionKey,
        max: usize,
        now: Millis,
    ) -> Result<usize, StoreError> {
        // One statement under this process's write turn: exact. It also
        // clears the user's expired rows, which the reaper would take anyway.
        let _turn = self.write_turn();
        let conn = self.pool.get()?;
        let others = i64::try_from(max.saturating_sub(1)).unwrap_or(i64::MAX);
        let n = conn
            .prepare_cached(
                "DELETE FROM sessions WHERE user_id = ?1 AND key != ?2 AND key NOT IN \
                 (SELECT key FROM sessions WHERE user_id = ?1 AND key != ?2 AND expires_at > ?3 \
                  ORDER BY created_at DESC, key LIMIT ?4)",
            )?
            .execute(params![user_id, &keep.0[..], now, others])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::conformance::{signed_in, stamp};

    /// A store in a fresh file, with the users `insert` adds.
    fn store_with(insert: &str) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
        store
            .pool()
            .get()
            .expect("conn")
            .execute_batch(insert)
            .expect("users");
        (dir, store)
    }

    #[test]
    fn the_sqlite_store_passes_the_conformance_suite() {
        // The suite uses users 1 and 2; sessions reference the users table.
        let (_dir, store) = store_with(crate::session::conformance::USERS);
        crate::session::conformance::run_all(store);
    }

    #[test]
    fn a_session_and_its_user_are_read_in_one_step() {
        let (_dir, store) = store_with(&format!(
            "INSERT INTO users (id, username, password_hash, created_at, \
             password_changed_at, stamp) VALUES (7, 'Alice', 'x', 5, 6, '{}');
             INSERT INTO groups (name, created_at) VALUES ('ops', 0);
             INSERT INTO user_groups (user_id, group_id) SELECT 7, id FROM groups;",
            stamp(7)
        ));
        let now = crate::clock::now();
        let mut rec =
            crate::session::conformance::record(crate::session::SessionId::generate().key(), now);
        let anonymous = rec.clone();
        rec.key = crate::session::SessionId::generate().key();
        rec = signed_in(rec, 7);
        store.create(&rec).expect("create");
        store.create(&anonymous).expect("create");
        let (loaded, user) = store
            .load_with_user(&rec.key, now)
            .expect("load")
            .expect("live");
        assert_eq!(loaded, rec);
        let user = user.expect("joined");
        assert_eq!(
            (
                user.id,
                user.username.as_str(),
                user.is_admin,
                user.disabled,
                user.stamp,
                user.groups
            ),
            (
                7,
                "Alice",
                true,
                false,
                stamp(7),
                vec!["admins".to_owned(), "ops".to_owned()]
            )
        );
        let (_, none) = store
            .load_with_user(&anonymous.key, now)
            .expect("load")
            .expect("live");
        assert_eq!(none, None);
    }

    /// A signed-in session of user 1 in a store with the suite's users,
    /// read once (so it is kept), and a connection of its own to the file,
    /// as a `gatehouse` command beside the server would have.
    fn kept_session() -> (tempfile::TempDir, SqliteStore, Record, rusqlite::Connection) {
        let (dir, store) = store_with(crate::session::conformance::USERS);
        assert!(store.kept.is_some(), "inotify is available here");
        let now = crate::clock::now();
        let rec = signed_in(
            crate::session::conformance::record(crate::session::SessionId::generate().key(), now),
            1,
        );
        store.create(&rec).expect("create");
        for _ in 0..2 {
            let (loaded, user) = store
                .load_with_user(&rec.key, now)
                .expect("load")
                .expect("live");
            assert_eq!((loaded, user.map(|u| u.id)), (rec.clone(), Some(1)));
        }
        let other = rusqlite::Connection::open(dir.path().join("s.db")).expect("other");
        (dir, store, rec, other)
    }

    #[test]
    fn a_kept_read_never_outlives_a_commit_by_another_process() {
        let now = crate::clock::now();
        type Change = fn(&rusqlite::Connection);
        let cases: [(&str, Change); 4] = [
            ("the session deleted", |c| {
                c.execute("DELETE FROM sessions", []).expect("delete");
            }),
            ("the user's stamp changed", |c| {
                c.execute("UPDATE users SET stamp = 'another' WHERE id = 1", [])
                    .expect("stamp");
            }),
            ("the user deleted", |c| {
                c.execute("DELETE FROM users WHERE id = 1", [])
                    .expect("user");
            }),
            ("the session expired early", |c| {
                c.execute("UPDATE sessions SET expires_at = 1", [])
                    .expect("expire");
            }),
        ];
        for (what, change) in cases {
            let (_dir, store, rec, other) = kept_session();
            change(&other);
            assert_eq!(
                store.load_with_user(&rec.key, now).expect("load"),
                None,
                "{what}: answered from before the commit"
            );
        }
        // A change that keeps the session shows at once too.
        let (_dir, store, rec, other) = kept_session();
        other
            .execute("UPDATE users SET disabled = 1 WHERE id = 1", [])
            .expect("disable");
        let (_, user) = store
            .load_with_user(&rec.key, now)
            .expect("load")
            .expect("live");
        assert!(
            user.expect("user").disabled,
            "answered from before the commit"
        );
    }

    #[test]
    fn a_session_with_much_data_is_read_each_time_not_kept() {
        let (_dir, store) = store_with(crate::session::conformance::USERS);
        let now = crate::clock::now();
        let session = |data: usize| {
            let mut rec = signed_in(
                crate::session::conformance::record(
                    crate::session::SessionId::generate().key(),
                    now,
                ),
                1,
            );
            rec.data
                .insert("notes".into(), Value::String("x".repeat(data)));
            store.create(&rec).expect("create");
            rec.key
        };
        let (small, large) = (session(100), session(KEPT_DATA_MAX));
        // The first look is told of the commits above; reads are kept once
        // the file has been quiet a while.
        for _ in 0..2 {
            std::thread::sleep(QUIET * 2);
            for key in [&small, &large] {
                store.load_with_user(key, now).expect("load").expect("live");
            }
        }
        let kept = store.kept.as_ref().expect("inotify is available here");
        let entries = kept.entries();
        assert!(entries.map.contains_key(&small));
        assert!(!entries.map.contains_key(&large));
    }

    #[test]
    fn a_kept_read_runs_out_with_time_alone() {
        let (_dir, store, rec, _other) = kept_session();
        assert_eq!(
            store
                .load_with_user(&rec.key, rec.expires_at)
                .expect("load"),
            None
        );
        assert!(
            store
                .load_with_user(&rec.key, rec.expires_at - 1)
                .expect("load")
                .is_some()
        );
    }

    #[test]
    fn no_read_after_a_concurrent_revocation_returns_is_answered_from_before_it() {
        // Readers hammer the kept session while another connection revokes
        // sessions one after another; once a revocation's statement has
        // returned, no read that starts after it may find that session.
        let (dir, store, _, _) = kept_session();
        let now = crate::clock::now();
        let keys: Vec<SessionKey> = (0..20)
            .map(|_| {
                let rec = signed_in(
                    crate::session::conformance::record(
                        crate::session::SessionId::generate().key(),
                        now,
                    ),
                    2,
                );
                store.create(&rec).expect("create");
                rec.key
            })
            .collect();
        let revoked = std::sync::Mutex::new(std::collections::HashSet::new());
        let done = std::sync::atomic::AtomicBool::new(false);
        /// Ends the readers however the revoking side ends (a failed
        /// assertion must not leave them running forever).
        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        for key in &keys {
                            let gone_before = revoked.lock().expect("lock").contains(key);
                            let found = store.load_with_user(key, now).expect("load");
                            assert!(
                                !(gone_before && found.is_some()),
                                "a revoked session was answered from memory"
                            );
                        }
                    }
                });
            }
            let _done = Done(&done);
            let other = rusqlite::Connection::open(dir.path().join("s.db")).expect("other");
            other
                .busy_timeout(std::time::Duration::from_secs(5))
                .expect("busy");
            for key in &keys {
                // Each revocation comes once the readers keep what they
                // read again (the file quiet for QUIET), so it has kept
                // reads to empty.
                let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while store
                    .kept
                    .as_ref()
                    .is_some_and(|k| k.entries().map.is_empty())
                {
                    assert!(
                        std::time::Instant::now() < end,
                        "reads are kept between revocations"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other
                    .execute("DELETE FROM sessions WHERE key = ?1", [&key.0[..]])
                    .expect("revoke");
                revoked.lock().expect("lock").insert(*key);
            }
        });
    }

    #[test]
    fn an_increment_whose_commit_fails_is_an_error_not_a_count() {
        let (_dir, store) = store_with(
            "INSERT INTO users (id, username, password_hash, created_at, password_changed_at) \
             VALUES (1, 'one', 'x', 0, 0);",
        );
        let now = crate::clock::now();
        let rec = crate::session::conformance::created(&store, now);
        // From here on every update of a session fails at commit (a
        // deferred foreign key broken by a trigger), as a full disk would.
        store
            .pool()
            .get()
            .expect("conn")
            .execute_batch(&crate::db::fail_at_commit("sessions", "UPDATE"))
            .expect("trigger");
        let touch = Touch {
            last_seen_at: now,
            expires_at: rec.expires_at,
        };
        let result = store.increment(&rec.key, "visits", 1, touch, now);
        assert!(result.is_err(), "{result:?}");
        let stored = store.load(&rec.key, now).expect("load").expect("live");
        assert_eq!(stored.data.get("visits"), None, "nothing was stored");
    }

    #[test]
    fn a_row_written_for_another_database_is_no_session() {
        let (_dir, store) = store_with(crate::session::conformance::USERS);
        let now = crate::clock::now();
        let rec = signed_in(
            crate::session::conformance::record(crate::session::SessionId::generate().key(), now),
            1,
        );
        store.create(&rec).expect("create");
        assert!(store.load(&rec.key, now).expect("load").is_some());
        // As if a server whose file was swapped under it had written it.
        store
            .pool()
            .get()
            .expect("conn")
            .execute_batch("UPDATE sessions SET database_id = 'another database'")
            .expect("update");
        assert!(store.load(&rec.key, now).expect("load").is_none());
        assert!(store.load_with_user(&rec.key, now).expect("load").is_none());
    }

    #[test]
    fn a_session_whose_stamp_is_not_its_users_is_no_session_in_the_one_read() {
        let (_dir, store) = store_with(crate::session::conformance::USERS);
        let now = crate::clock::now();
        let rec = signed_in(
            crate::session::conformance::record(crate::session::SessionId::generate().key(), now),
            1,
        );
        store.create(&rec).expect("create");
        assert!(store.load_with_user(&rec.key, now).expect("load").is_some());
        // As in a file where user 1 is someone else: a replayed -wal, a
        // swapped or restored file. The row still names user 1.
        store
            .pool()
            .get()
            .expect("conn")
            .execute_batch("UPDATE users SET stamp = lower(hex(randomblob(16))) WHERE id = 1")
            .expect("another user 1");
        assert!(store.load_with_user(&rec.key, now).expect("load").is_none());
        assert!(store.load(&rec.key, now).expect("load").is_none());
        assert!(
            store.list(Some(1), now).expect("list").is_empty(),
            "listed as the new user 1's"
        );
        // Still a row: nothing was deleted behind anyone's back.
        let rows: i64 = store
            .pool()
            .get()
            .expect("conn")
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 1);
    }

    #[test]
    fn only_the_hash_of_the_id_is_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("s.db")).expect("open");
        let id = crate::session::SessionId::generate();
        let rec = crate::session::conformance::record(id.key(), crate::clock::now());
        store.create(&rec).expect("create");
        let conn = store.pool().get().expect("conn");
        let stored: Vec<u8> = conn
            .query_row("SELECT key FROM sessions", [], |r| r.get(0))
            .expect("row");
        assert_eq!(stored, id.key().0.to_vec());
        assert_ne!(stored, id.as_str().as_bytes());
    }
}
