//! An in-memory store: for tests, development, and library users who accept
//! that a restart logs everyone out.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use super::id::SessionKey;
use super::store::{Patch, Record, Store, StoreError, Touch, UserId};
use crate::clock::Millis;

/// Sessions in a `HashMap` behind one mutex.
///
/// Every verb holds the lock for its whole read-modify-write, which is what
/// makes `save` and `increment` atomic here.
#[derive(Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<SessionKey, Record>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionKey, Record>> {
        // A panic while holding the lock cannot leave a record half-written
        // (each verb replaces whole values), so a poisoned map is still sound.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn live<'m>(
    map: &'m mut HashMap<SessionKey, Record>,
    key: &SessionKey,
    now: Millis,
) -> Option<&'m mut Record> {
    map.get_mut(key).filter(|r| r.expires_at > now)
}

impl Store for MemoryStore {
    fn create(&self, record: &Record) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.contains_key(&record.key) {
            return Err(StoreError::Exists);
        }
        map.insert(record.key, record.clone());
        Ok(())
    }

    fn load(&self, key: &SessionKey, now: Millis) -> Result<Option<Record>, StoreError> {
        Ok(live(&mut self.lock(), key, now).map(|r| r.clone()))
    }

    fn save(
        &self,
        key: &SessionKey,
        patch: &Patch,
        touch: Touch,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut map = self.lock();
        let Some(record) = live(&mut map, key, now) else {
            return Ok(false);
        };
        patch.apply(&mut record.data);
        record.last_seen_at = touch.last_seen_at;
        record.expires_at = record.expires_at.max(touch.expires_at);
        Ok(true)
    }

    fn increment(
        &self,
        key: &SessionKey,
        field: &str,
        by: i64,
        touch: Touch,
        now: Millis,
    ) -> Result<Option<i64>, StoreError> {
        let mut map = self.lock();
        let Some(record) = live(&mut map, key, now) else {
            return Ok(None);
        };
        let current = record.data.get(field).and_then(Value::as_i64).unwrap_or(0);
        let next = current.saturating_add(by);
        record.data.insert(field.to_owned(), Value::from(next));
        record.last_seen_at = touch.last_seen_at;
        record.expires_at = record.expires_at.max(touch.expires_at);
        Ok(Some(next))
    }

    fn regenerate(&self, old: &SessionKey, new: &Record) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.contains_key(&new.key) {
            return Err(StoreError::Backend("session key already exists".into()));
        }
        map.remove(old);
        map.insert(new.key, new.clone());
        Ok(())
    }

    fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        Ok(self.lock().remove(key).is_some())
    }

    fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        let mut map = self.lock();
        let doomed: Vec<SessionKey> = map
            .values()
            .filter(|r| r.expires_at <= now)
            .take(limit)
            .map(|r| r.key)
            .collect();
        for key in &doomed {
            map.remove(key);
        }
        Ok(doomed.len())
    }

    fn list(&self, user_id: Option<UserId>, now: Millis) -> Result<Vec<Record>, StoreError> {
        let map = self.lock();
        let mut out: Vec<Record> = map
            .values()
            .filter(|r| r.expires_at > now && (user_id.is_none() || r.user_id == user_id))
            .cloned()
            .collect();
        out.sort_by(|a, b| b.last_seen_at.cmp(&a.last_seen_at).then(a.key.cmp(&b.key)));
        Ok(out)
    }

    fn delete_by_user(
        &self,
        user_id: UserId,
        keep: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|k, r| r.user_id != Some(user_id) || Some(k) == keep);
        Ok(before - map.len())
    }

    fn end_oldest(
        &self,
        user_id: UserId,
        keep: &SessionKey,
        max: usize,
        now: Millis,
    ) -> Result<usize, StoreError> {
        // Under the one lock: exact, whatever runs at the same time.
        let mut map = self.lock();
        let mut others: Vec<(Millis, SessionKey)> = map
            .values()
            .filter(|r| r.user_id == Some(user_id) && &r.key != keep && r.expires_at > now)
            .map(|r| (r.created_at, r.key))
            .collect();
        others.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let doomed: Vec<SessionKey> = others
            .into_iter()
            .skip(max.saturating_sub(1))
            .map(|(_, k)| k)
            .collect();
        for k in &doomed {
            map.remove(k);
        }
        Ok(doomed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_store_passes_the_conformance_suite() {
        crate::session::conformance::run_all(MemoryStore::new());
    }

    /// A store that keeps the trait's default `end_oldest` (and `count`,
    /// `load_with_user`), delegating the rest to the memory store, so the
    /// defaults a library user's own store inherits pass the suite too.
    struct Defaults(MemoryStore);

    impl Store for Defaults {
        fn create(&self, record: &Record) -> Result<(), StoreError> {
            self.0.create(record)
        }
        fn load(&self, key: &SessionKey, now: Millis) -> Result<Option<Record>, StoreError> {
            self.0.load(key, now)
        }
        fn save(
            &self,
            key: &SessionKey,
            patch: &Patch,
            touch: Touch,
            now: Millis,
        ) -> Result<bool, StoreError> {
            self.0.save(key, patch, touch, now)
        }
        fn increment(
            &self,
            key: &SessionKey,
            field: &str,
            by: i64,
            touch: Touch,
            now: Millis,
        ) -> Result<Option<i64>, StoreError> {
            self.0.increment(key, field, by, touch, now)
        }
        fn regenerate(&self, old: &SessionKey, new: &Record) -> Result<(), StoreError> {
            self.0.regenerate(old, new)
        }
        fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
            self.0.delete(key)
        }
        fn delete_expired(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
            self.0.delete_expired(now, limit)
        }
        fn list(&self, user_id: Option<UserId>, now: Millis) -> Result<Vec<Record>, StoreError> {
            self.0.list(user_id, now)
        }
        fn delete_by_user(
            &self,
            user_id: UserId,
            keep: Option<&SessionKey>,
        ) -> Result<usize, StoreError> {
            self.0.delete_by_user(user_id, keep)
        }
    }

    #[test]
    fn the_default_methods_pass_the_conformance_suite() {
        crate::session::conformance::run_all(Defaults(MemoryStore::new()));
    }
}
