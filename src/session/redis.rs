//! The Redis store (Valkey works the same): sessions with server-side
//! expiry, for several gatehouse instances serving one login.
//!
//! Layout, under a configurable prefix `P` (default `gatehouse:`):
//!
//! - `P s:<hex key>`: a hash per session, which Redis deletes a minute
//!   after its `expires_at` (`PEXPIREAT`; the minute absorbs clock skew
//!   between instances and Redis, and every read checks `expires_at`
//!   itself). Metadata sits in short fields (`u` user, `us` the user's
//!   stamp, `c` created, `l` last seen, `e` expires, `a` absolute expiry,
//!   `p` persistent, `ua`, `ip`); each top-level data key is its own field
//!   `d:<key>` holding JSON,
//!   so a patch writes only the keys a request changed and a counter is a
//!   `HINCRBY`.
//! - `P all`: a sorted set of every session as `<hex>:<user id>`, scored by
//!   expiry, for listing, counting and reaping.
//! - `P u:<user id>`: a sorted set of one user's sessions, for "end all
//!   sessions" and the account page.
//!
//! Every verb that reads before it writes is one Lua script, which Redis runs
//! without interleaving anything else: that is what keeps the guarantees of
//! the SQL stores (no resurrection, no lost update) across instances. The
//! hex key is the SHA-256 of the session id; the raw id is never stored.
//! Scripts name keys from the prefix, so this store needs a single Redis (or
//! a primary with replicas), not a cluster.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::Script;
use serde_json::{Map, Value};

use super::id::SessionKey;
use super::store::{Change, Patch, Record, Store, StoreError, Touch, UserId};
use crate::clock::Millis;
use crate::db::redis::{RedisConn, RedisPool, open_pool};

/// Sessions in Redis.
#[derive(Clone)]
pub struct RedisStore {
    pool: RedisPool,
    prefix: String,
}

/// Helpers every script starts with. `ARGV[1]` is always the prefix.
const PRELUDE: &str = r"
local GRACE = 60000
local P = ARGV[1]
local ALL = P .. 'all'
local function skey(h) return P .. 's:' .. h end
local function ukey(u) return P .. 'u:' .. u end
local function drop(h)
  local k = skey(h)
  local u = redis.call('HGET', k, 'u')
  if redis.call('DEL', k) == 0 then return 0 end
  redis.call('ZREM', ALL, h .. ':' .. (u or ''))
  if u then redis.call('ZREM', ukey(u), h) end
  return 1
end
local function live(k, now)
  local e = redis.call('HGET', k, 'e')
  return e and tonumber(e) > tonumber(now)
end
-- A touch never moves expiry back (a wall clock stepped back, or an
-- instance whose clock is behind, must not shorten a session).
local function later(k, e)
  local old = redis.call('HGET', k, 'e')
  if old and tonumber(old) > tonumber(e) then return old end
  return e
end
local function expire(k, e)
  redis.call('PEXPIREAT', k, tonumber(e) + GRACE)
end
local function index(h, u, e)
  redis.call('ZADD', ALL, e, h .. ':' .. (u or ''))
  if u then redis.call('ZADD', ukey(u), e, h) end
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// ARGV: prefix, old hex ('' for none), new hex, expires_at, user ('' for
/// none), then field/value pairs. Deletes the old session (if any) and
/// creates the new one, in one step.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if ARGV[2] ~= '' then drop(ARGV[2]) end
local k = skey(ARGV[3])
if redis.call('EXISTS', k) == 1 then return 0 end
-- In chunks: unpack() of thousands of arguments overflows Lua's stack.
local i = 6
while i <= #ARGV do
  local last = math.min(i + 199, #ARGV)
  redis.call('HSET', k, unpack(ARGV, i, last))
  i = last + 1
end
expire(k, ARGV[4])
local u = nil
if ARGV[5] ~= '' then u = ARGV[5] end
index(ARGV[3], u, ARGV[4])
return 1
",
    )
});

/// ARGV: prefix, hex, now, last_seen_at, expires_at, number of fields to
/// set, then field/value pairs, then fields to remove.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local k = skey(ARGV[2])
if not live(k, ARGV[3]) then return 0 end
local e = later(k, ARGV[5])
redis.call('HSET', k, 'l', ARGV[4], 'e', e)
local nset = tonumber(ARGV[6])
local i = 7
for _ = 1, nset do
  redis.call('HSET', k, ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', k, ARGV[i])
  i = i + 1
end
expire(k, e)
index(ARGV[2], redis.call('HGET', k, 'u'), e)
return 1
",
    )
});

/// ARGV: prefix, hex, now, last_seen_at, expires_at, field, by. Returns the
/// new value, or nil when the session is gone.
static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local k = skey(ARGV[2])
if not live(k, ARGV[3]) then return nil end
local f = ARGV[6]
local v = redis.call('HGET', k, f)
local n
if v and string.match(v, '^%-?%d+$') then
  n = redis.call('HINCRBY', k, f, ARGV[7])
else
  redis.call('HSET', k, f, ARGV[7])
  n = tonumber(ARGV[7])
end
local e = later(k, ARGV[5])
redis.call('HSET', k, 'l', ARGV[4], 'e', e)
expire(k, e)
index(ARGV[2], redis.call('HGET', k, 'u'), e)
return n
",
    )
});

/// ARGV: prefix, hex. Returns 1 if the session existed.
static DELETE: LazyLock<Script> = LazyLock::new(|| script("return drop(ARGV[2])"));

/// ARGV: prefix, now, limit. Removes the index entries of sessions that
/// have expired (Redis has already dropped most of their hashes) and any
/// hash still there; returns how many sessions that was.
static REAP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local gone = redis.call('ZRANGEBYSCORE', ALL, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(gone) do
  local h, u = string.match(m, '^(%x+):(%d*)$')
  redis.call('ZREM', ALL, m)
  if h then
    redis.call('DEL', skey(h))
    if u ~= '' then redis.call('ZREM', ukey(u), h) end
  end
end
return #gone
",
    )
});

/// ARGV: prefix, user, hex to keep ('' for none). Returns how many
/// sessions were deleted.
static DELETE_BY_USER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local u = ARGV[2]
local n = 0
for _, h in ipairs(redis.call('ZRANGE', ukey(u), 0, -1)) do
  if h ~= ARGV[3] then
    n = n + drop(h)
    redis.call('ZREM', ukey(u), h)
    redis.call('ZREM', ALL, h .. ':' .. u)
  end
end
return n
",
    )
});

/// ARGV: prefix, user, hex to keep, how many others may stay, now. Ends
/// the user's oldest live sessions (by creation) beyond that, and drops
/// index entries of sessions already gone; one script, so exact.
static END_OLDEST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local u = ARGV[2]
local others = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local live_ones = {}
for _, h in ipairs(redis.call('ZRANGE', ukey(u), 0, -1)) do
  if h ~= ARGV[3] then
    local k = skey(h)
    local c = redis.call('HGET', k, 'c')
    local e = redis.call('HGET', k, 'e')
    if c and e and tonumber(e) > now then
      table.insert(live_ones, {h, tonumber(c)})
    elseif not c then
      redis.call('ZREM', ukey(u), h)
      redis.call('ZREM', ALL, h .. ':' .. u)
    end
  end
end
table.sort(live_ones, function(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return a[1] < b[1]
end)
local n = 0
for i = others + 1, #live_ones do
  n = n + drop(live_ones[i][1])
end
return n
",
    )
});

/// The data field that holds one top-level key of a session's data.
fn data_field(key: &str) -> String {
    format!("d:{key}")
}

/// A record as hash fields and values.
fn fields(r: &Record) -> Vec<(String, String)> {
    let mut out = vec![
        ("c".into(), r.created_at.to_string()),
        ("l".into(), r.last_seen_at.to_string()),
        ("e".into(), r.expires_at.to_string()),
        ("a".into(), r.absolute_expires_at.to_string()),
        ("p".into(), if r.persistent { "1" } else { "0" }.into()),
    ];
    if let Some(u) = r.user_id {
        out.push(("u".into(), u.to_string()));
    }
    if let Some(stamp) = &r.user_stamp {
        out.push(("us".into(), stamp.clone()));
    }
    if let Some(ua) = &r.user_agent {
        out.push(("ua".into(), ua.clone()));
    }
    if let Some(ip) = &r.ip {
        out.push(("ip".into(), ip.clone()));
    }
    for (k, v) in &r.data {
        out.push((data_field(k), v.to_string()));
    }
    out
}

/// A record from its hash, or `None` if the hash is empty or has run out.
fn record(
    key: SessionKey,
    mut hash: HashMap<String, String>,
    now: Millis,
) -> Result<Option<Record>, StoreError> {
    if hash.is_empty() {
        return Ok(None);
    }
    let number = |hash: &HashMap<String, String>, f: &str| -> Result<Millis, StoreError> {
        hash.get(f)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("field {f}")))
    };
    let expires_at = number(&hash, "e")?;
    if expires_at <= now {
        return Ok(None);
    }
    let mut data = Map::new();
    for (f, v) in &hash {
        if let Some(k) = f.strip_prefix("d:") {
            let v: Value =
                serde_json::from_str(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            data.insert(k.to_owned(), v);
        }
    }
    Ok(Some(Record {
        key,
        user_id: hash
            .contains_key("u")
            .then(|| number(&hash, "u"))
            .transpose()?,
        data,
        created_at: number(&hash, "c")?,
        last_seen_at: number(&hash, "l")?,
        expires_at,
        absolute_expires_at: number(&hash, "a")?,
        persistent: hash.get("p").is_some_and(|p| p == "1"),
        user_agent: hash.remove("ua"),
        ip: hash.remove("ip"),
        user_stamp: hash.remove("us"),
    }))
}

impl RedisStore {
    /// Connects to the Redis (or Valkey) server at `url` (`redis://host:6379/0`)
    /// with a pool of up to 16 connections; every key goes under `prefix`.
    /// Over TLS (`rediss://`) the certificate is checked against Mozilla's
    /// roots; for a private CA, open the pool with
    /// [`open_pool`](crate::db::redis::open_pool) and its CA file.
    ///
    /// # Errors
    ///
    /// A malformed URL, an unreachable server or a refused certificate.
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self::new(open_pool(url, 16, None)?, prefix))
    }

    /// A store on `pool`, with every key under `prefix`.
    pub fn new(pool: RedisPool, prefix: &str) -> Self {
        Self {
            pool,
            prefix: prefix.to_owned(),
        }
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &RedisPool {
        &self.pool
    }

    fn conn(&self) -> Result<RedisConn, StoreError> {
        Ok(crate::db::redis::conn(&self.pool)?)
    }

    fn put(&self, old: Option<&SessionKey>, new: &Record) -> Result<(), StoreError> {
        let mut call = PUT.prepare_invoke();
        call.arg(&self.prefix)
            .arg(old.map(SessionKey::to_hex).unwrap_or_default())
            .arg(new.key.to_hex())
            .arg(new.expires_at)
            .arg(new.user_id.map(|u| u.to_string()).unwrap_or_default());
        for (f, v) in fields(new) {
            call.arg(f).arg(v);
        }
        match call.invoke::<i64>(&mut **self.conn()?)? {
            0 => Err(StoreError::Exists),
            _ => Ok(()),
        }
    }

    /// The records stored under `hexes` that are still live.
    fn load_many(&self, hexes: &[String], now: Millis) -> Result<Vec<Record>, StoreError> {
        if hexes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for h in hexes {
            pipe.hgetall(format!("{}s:{h}", self.prefix));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query(&mut **self.conn()?)?;
        let mut out = Vec::new();
        for (h, hash) in hexes.iter().zip(hashes) {
            if let Some(key) = SessionKey::from_hex(h)
                && let Some(r) = record(key, hash, now)?
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| {
            b.last_seen_at
                .cmp(&a.last_seen_at)
                .then_with(|| a.key.0.cmp(&b.key.0))
        });
        Ok(out)
    }
}

impl Store for RedisStore {
    fn create(&self, record: &Record) -> Result<(), StoreError> {
        self.put(None, record)
    }

    fn load(&self, key: &SessionKey, now: Millis) -> Result<Option<Record>, StoreError> {
        let hash: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("{}s:{}", self.prefix, key.to_hex()))
            .query(&mut **self.conn()?)?;
        record(*key, hash, now)
    }

    fn save(
        &self,
        key: &SessionKey,
        patch: &Patch,
        touch: Touch,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut call = SAVE.prepare_invoke();
        call.arg(&self.prefix)
            .arg(key.to_hex())
            .arg(now)
            .arg(touch.last_seen_at)
            .arg(touch.expires_at);
        let sets: Vec<_> = patch
            .0
            .iter()
            .filter_map(|(k, c)| match c {
                Change::Set(v) => Some((data_field(k), v.to_string())),
                Change::Remove => None,
            })
            .collect();
        call.arg(sets.len());
        for (f, v) in sets {
            call.arg(f).arg(v);
        }
        for (k, c) in &patch.0 {
            if *c == Change::Remove {
                call.arg(data_field(k));
            }
        }
        Ok(call.invoke::<i64>(&mut **self.conn()?)? == 1)
    }

    fn increment(
        &self,
        key: &SessionKey,
        field: &str,
        by: i64,
        touch: Touch,
        now: Millis,
    ) -> Result<Option<i64>, StoreError> {
        Ok(INCREMENT
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(key.to_hex())
            .arg(now)
            .arg(touch.last_seen_at)
            .arg(touch.expires_at)
            .arg(data_field(field))
            .arg(by)
            .invoke(&mut **self.conn()?)?)
    }

    fn regenerate(&self, old: &SessionKey, new: &Record) -> Result<(), StoreError> {
        self.put(Some(old), new)
    }

    fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let n: i64 = DELETE
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(key.to_hex())
            .invoke(&mut **self.conn()?)?;
        Ok(n == 1)
    }

    fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        // Redis drops expired hashes itself; this clears what points at them.
        let n: usize = REAP
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(now)
            .arg(limit)
            .invoke(&mut **self.conn()?)?;
        Ok(n)
    }

    fn list(&self, user_id: Option<UserId>, now: Millis) -> Result<Vec<Record>, StoreError> {
        let (index, strip) = match user_id {
            Some(u) => (format!("{}u:{u}", self.prefix), false),
            None => (format!("{}all", self.prefix), true),
        };
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(index)
            .arg(format!("({now}"))
            .arg("+inf")
            .query(&mut **self.conn()?)?;
        let hexes: Vec<String> = members
            .into_iter()
            .map(|m| match (strip, m.split_once(':')) {
                (true, Some((h, _))) => h.to_owned(),
                _ => m,
            })
            .collect();
        self.load_many(&hexes, now)
    }

    fn count(&self, now: Millis) -> Result<usize, StoreError> {
        Ok(redis::cmd("ZCOUNT")
            .arg(format!("{}all", self.prefix))
            .arg(format!("({now}"))
            .arg("+inf")
            .query(&mut **self.conn()?)?)
    }

    fn delete_by_user(
        &self,
        user_id: UserId,
        keep: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        Ok(DELETE_BY_USER
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(user_id)
            .arg(keep.map(SessionKey::to_hex).unwrap_or_default())
            .invoke(&mut **self.conn()?)?)
    }

    fn end_oldest(
        &self,
        user_id: UserId,
        keep: &SessionKey,
        max: usize,
        now: Millis,
    ) -> Result<usize, StoreError> {
        Ok(END_OLDEST
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(user_id)
            .arg(keep.to_hex())
            .arg(max.saturating_sub(1))
            .arg(now)
            .invoke(&mut **self.conn()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::redis::{open_pool_for_tests, scratch_prefix, test_url};

    fn scratch() -> Option<RedisStore> {
        let pool = open_pool_for_tests(&test_url()?, 16).expect("redis");
        Some(RedisStore::new(pool, &scratch_prefix()))
    }

    #[test]
    fn hashes_expire_in_redis_and_hold_only_the_hash_of_the_id() {
        let Some(store) = scratch() else { return };
        let id = crate::session::SessionId::generate();
        let now = crate::clock::now();
        let rec = crate::session::conformance::record(id.key(), now);
        store.create(&rec).expect("create");
        let mut conn = store.pool().get().expect("conn");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", store.prefix))
            .query(&mut *conn)
            .expect("keys");
        assert!(
            keys.iter().any(|k| k.ends_with(&id.key().to_hex())),
            "{keys:?}"
        );
        assert!(
            !keys.iter().any(|k| k.contains(id.as_str())),
            "raw id stored"
        );
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{}s:{}", store.prefix, id.key().to_hex()))
            .query(&mut *conn)
            .expect("pttl");
        assert!(ttl > 0 && ttl <= rec.expires_at - now + 60_000, "ttl {ttl}");
    }

    #[test]
    fn the_redis_store_passes_the_conformance_suite() {
        let Some(store) = scratch() else { return };
        crate::session::conformance::run_all(store);
    }
}
