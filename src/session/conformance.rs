//! The conformance suite every [`Store`] must pass.
//!
//! It is public so that a library user writing their own store can run the
//! same checks: call [`run`] from a test. Sessions are made for user ids 1
//! and 2, with the stamps [`stamp`] gives them; a store that checks user ids
//! must know both (the SQL stores' tests add them with [`USERS`]). Each
//! check panics with a message naming the broken rule.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::id::{SessionId, SessionKey};
use super::store::{Change, Patch, Record, Store, StoreError, Touch, UserId};
use crate::clock::{self, Millis};

const HOUR: Millis = 3_600_000;

/// A live, anonymous record under `key`, made at `now`, expiring in an hour.
pub fn record(key: SessionKey, now: Millis) -> Record {
    Record {
        key,
        user_id: None,
        user_stamp: None,
        data: Map::new(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + HOUR,
        absolute_expires_at: now + 2 * HOUR,
        persistent: false,
        user_agent: Some("conformance".into()),
        ip: Some("127.0.0.1".into()),
    }
}

/// A live, anonymous record made at `now` under a fresh key, already
/// created in `store`: how most checks (and most stores' own tests) begin.
///
/// # Panics
///
/// When the store cannot create it.
pub fn created<S: Store + ?Sized>(store: &S, now: Millis) -> Record {
    let rec = record(fresh(), now);
    store.create(&rec).expect("create");
    rec
}

/// SQL that adds the users the suite makes sessions for (ids 1 and 2, with
/// the stamps [`stamp`] gives them), for a store whose sessions reference a
/// `users` table.
pub const USERS: &str = "INSERT INTO users (id, username, password_hash, created_at, \
                         password_changed_at, stamp) VALUES \
                         (1, 'one', 'x', 0, 0, '00000000000000000000000000000001'), \
                         (2, 'two', 'x', 0, 0, '00000000000000000000000000000002');";

/// The stamp of the suite's user `user` (as [`USERS`] stores it).
pub fn stamp(user: UserId) -> String {
    format!("{user:032x}")
}

/// `record` signed in as the suite's user `user`: their id and stamp.
pub fn signed_in(mut record: Record, user: UserId) -> Record {
    record.user_id = Some(user);
    record.user_stamp = Some(stamp(user));
    record
}

/// Fails with `why` unless `key` loads as no session at `now`.
fn assert_gone<S: Store + ?Sized>(store: &S, key: &SessionKey, now: Millis, why: &str) {
    assert_eq!(store.load(key, now).expect("load"), None, "{why}");
}

/// The live session under `key` at `now`; fails when there is none.
fn live<S: Store + ?Sized>(store: &S, key: &SessionKey, now: Millis) -> Record {
    store.load(key, now).expect("load").expect("live")
}

fn fresh() -> SessionKey {
    SessionId::generate().key()
}

fn touch(now: Millis) -> Touch {
    Touch {
        last_seen_at: now,
        expires_at: now + HOUR,
    }
}

fn patch(changes: &[(&str, Change)]) -> Patch {
    Patch(
        changes
            .iter()
            .map(|(k, c)| ((*k).to_owned(), c.clone()))
            .collect(),
    )
}

/// Runs [`run`] and then [`run_concurrent`] against `store`: the one test
/// every store has.
///
/// # Panics
///
/// On the first rule the store breaks.
pub fn run_all<S: Store + 'static>(store: S) {
    run(&store);
    run_concurrent(Arc::new(store));
}

/// Runs every check against `store`.
///
/// # Panics
///
/// On the first rule the store breaks.
pub fn run<S: Store>(store: &S) {
    create_then_load_round_trips(store);
    load_of_an_unknown_key_is_none(store);
    an_expired_session_is_not_loaded(store);
    save_applies_only_the_patch(store);
    save_never_resurrects(store);
    save_never_revives_an_expired_session(store);
    a_touch_never_moves_expiry_back(store);
    increment_counts_from_zero_and_returns_the_value(store);
    increment_on_a_missing_session_is_none(store);
    regenerate_replaces_the_old_key(store);
    delete_reports_whether_it_existed(store);
    delete_expired_is_batched_and_spares_live_sessions(store);
    list_and_delete_by_user(store);
    end_oldest_caps_one_users_sessions(store);
    odd_keys_round_trip(store);
    many_keys_survive_create_and_regenerate(store);
    a_session_keeps_its_users_stamp(store);
    a_session_never_comes_back_with_a_user_of_another_stamp(store);
}

/// Runs the concurrency checks, which need a store shared across threads.
///
/// # Panics
///
/// When concurrent increments or patches lose an update.
pub fn run_concurrent(store: Arc<dyn Store>) {
    let now = clock::now();
    let key = fresh();
    store.create(&record(key, now)).expect("create");
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for _ in 0..20 {
                    store
                        .increment(&key, "n", 1, touch(clock::now()), clock::now())
                        .expect("increment")
                        .expect("live");
                }
                let p = patch(&[(&format!("k{i}"), Change::Set(json!(i)))]);
                assert!(
                    store
                        .save(&key, &p, touch(clock::now()), clock::now())
                        .expect("save")
                );
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let rec = live(&*store, &key, clock::now());
    assert_eq!(rec.data["n"], json!(320), "an increment was lost");
    for i in 0..16 {
        assert_eq!(rec.data[&format!("k{i}")], json!(i), "patch k{i} was lost");
    }
    concurrent_sign_ins_stay_under_the_cap(&store);
}

/// Four clients signing one user in over and over, each capping after its
/// own sign-in as the engine does: the user never keeps more than the cap
/// (plus the sign-ins in flight) and ends at or under it.
fn concurrent_sign_ins_stay_under_the_cap(store: &Arc<dyn Store>) {
    const MAX: usize = 5;
    const USER: i64 = 2;
    store.delete_by_user(USER, None).expect("clear");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                let mut most = 0;
                for _ in 0..40 {
                    let now = clock::now();
                    let r = signed_in(record(fresh(), now), USER);
                    store.create(&r).expect("create");
                    store.end_oldest(USER, &r.key, MAX, now).expect("cap");
                    most = most.max(store.list(Some(USER), now).expect("list").len());
                }
                most
            })
        })
        .collect();
    for t in threads {
        let most = t.join().expect("thread");
        assert!(
            most <= MAX + 4,
            "{most} sessions seen at once: more than the cap plus the sign-ins in flight"
        );
    }
    let left = store.list(Some(USER), clock::now()).expect("list").len();
    assert!(
        (1..=MAX).contains(&left),
        "{left} sessions left for a cap of {MAX}"
    );
    store.delete_by_user(USER, None).expect("clear");
}

fn create_then_load_round_trips<S: Store>(store: &S) {
    let now = clock::now();
    let mut rec = signed_in(record(fresh(), now), 1);
    rec.persistent = true;
    rec.data.insert("cart".into(), json!({"items": [1, 2]}));
    store.create(&rec).expect("create");
    let loaded = store.load(&rec.key, now).expect("load");
    assert_eq!(
        loaded,
        Some(rec.clone()),
        "load must return what create stored"
    );
    // A second create under the same key is refused as `Exists` (what
    // `migrate-store` relies on to skip what an earlier run copied), and
    // leaves the first record as it was.
    let mut other = rec.clone();
    other.data.insert("cart".into(), json!("replaced"));
    assert!(
        matches!(store.create(&other), Err(StoreError::Exists)),
        "create must refuse an existing key as Exists"
    );
    assert_eq!(store.load(&rec.key, now).expect("load"), Some(rec));
}

fn load_of_an_unknown_key_is_none<S: Store>(store: &S) {
    assert_eq!(store.load(&fresh(), clock::now()).expect("load"), None);
}

fn an_expired_session_is_not_loaded<S: Store>(store: &S) {
    let now = clock::now();
    let mut rec = record(fresh(), now - 2 * HOUR);
    rec.expires_at = now;
    store.create(&rec).expect("create");
    assert_gone(store, &rec.key, now, "expires_at == now is expired");
    assert!(store.load(&rec.key, now - 1).expect("load").is_some());
}

fn save_applies_only_the_patch<S: Store>(store: &S) {
    let now = clock::now();
    let mut rec = record(fresh(), now);
    rec.data.insert("keep".into(), json!("me"));
    rec.data.insert("drop".into(), json!(1));
    store.create(&rec).expect("create");
    let p = patch(&[
        ("drop", Change::Remove),
        ("new", Change::Set(json!({"nested": [true, null]}))),
        ("null", Change::Set(Value::Null)),
    ]);
    let later = Touch {
        last_seen_at: now + 10,
        expires_at: now + HOUR + 10,
    };
    assert!(store.save(&rec.key, &p, later, now).expect("save"));
    let loaded = live(store, &rec.key, now);
    assert_eq!(
        Value::Object(loaded.data),
        json!({"keep": "me", "new": {"nested": [true, null]}, "null": null})
    );
    assert_eq!(loaded.last_seen_at, now + 10);
    assert_eq!(loaded.expires_at, now + HOUR + 10);
    assert_eq!(loaded.created_at, now, "save must not move created_at");

    // A second writer's patch must not undo the first's keys.
    let other = patch(&[("second", Change::Set(json!(2)))]);
    assert!(store.save(&rec.key, &other, later, now).expect("save"));
    let loaded = live(store, &rec.key, now);
    assert_eq!(loaded.data["new"], json!({"nested": [true, null]}));
    assert_eq!(loaded.data["second"], json!(2));
}

fn save_never_resurrects<S: Store>(store: &S) {
    let now = clock::now();
    let rec = created(store, now);
    assert!(store.delete(&rec.key).expect("delete"));
    let p = patch(&[("x", Change::Set(json!(1)))]);
    assert!(
        !store.save(&rec.key, &p, touch(now), now).expect("save"),
        "save of a deleted session must report false"
    );
    assert_gone(store, &rec.key, now, "a deleted session came back");
}

fn save_never_revives_an_expired_session<S: Store>(store: &S) {
    let now = clock::now();
    let mut rec = record(fresh(), now - HOUR);
    rec.expires_at = now - 1;
    store.create(&rec).expect("create");
    assert!(
        !store
            .save(&rec.key, &Patch::default(), touch(now), now)
            .expect("save")
    );
    assert_gone(store, &rec.key, now, "an expired session came back");
}

/// A touch computed from a wall clock stepped back (or another instance's
/// clock running behind) must not shorten a session: once the clock is put
/// right, its user would be signed out.
fn a_touch_never_moves_expiry_back<S: Store>(store: &S) {
    let now = clock::now();
    let rec = created(store, now);
    let behind = now - 24 * HOUR;
    let p = patch(&[("x", Change::Set(json!(1)))]);
    assert!(store.save(&rec.key, &p, touch(behind), now).expect("save"));
    assert_eq!(
        live(store, &rec.key, now).expires_at,
        rec.expires_at,
        "save moved expiry back"
    );
    let n = store
        .increment(&rec.key, "n", 1, touch(behind), now)
        .expect("increment");
    assert_eq!(n, Some(1));
    assert_eq!(
        live(store, &rec.key, now).expires_at,
        rec.expires_at,
        "increment moved expiry back"
    );
    // A later expiry still slides it forward.
    let ahead = touch(now + HOUR);
    assert!(
        store
            .save(&rec.key, &Patch::default(), ahead, now)
            .expect("save")
    );
    assert_eq!(live(store, &rec.key, now).expires_at, ahead.expires_at);
}

fn increment_counts_from_zero_and_returns_the_value<S: Store>(store: &S) {
    let now = clock::now();
    let mut rec = record(fresh(), now);
    rec.data.insert("text".into(), json!("not a number"));
    store.create(&rec).expect("create");
    assert_eq!(
        store
            .increment(&rec.key, "visits", 1, touch(now), now)
            .expect("inc"),
        Some(1)
    );
    assert_eq!(
        store
            .increment(&rec.key, "visits", 5, touch(now), now)
            .expect("inc"),
        Some(6)
    );
    assert_eq!(
        store
            .increment(&rec.key, "visits", -2, touch(now), now)
            .expect("inc"),
        Some(4)
    );
    assert_eq!(
        store
            .increment(&rec.key, "text", 1, touch(now), now)
            .expect("inc"),
        Some(1)
    );
    let loaded = live(store, &rec.key, now);
    assert_eq!(loaded.data["visits"], json!(4));
}

fn increment_on_a_missing_session_is_none<S: Store>(store: &S) {
    let now = clock::now();
    assert_eq!(
        store
            .increment(&fresh(), "visits", 1, touch(now), now)
            .expect("inc"),
        None
    );
}

fn regenerate_replaces_the_old_key<S: Store>(store: &S) {
    let now = clock::now();
    let old = record(fresh(), now);
    store.create(&old).expect("create");
    let mut new = signed_in(record(fresh(), now), 2);
    new.data.insert("carried".into(), json!(true));
    store.regenerate(&old.key, &new).expect("regenerate");
    assert_eq!(
        store.load(&old.key, now).expect("load"),
        None,
        "old key must be gone"
    );
    assert_eq!(store.load(&new.key, now).expect("load"), Some(new.clone()));
    // Regenerating from a session that is already gone still creates the new one.
    let newer = record(fresh(), now);
    store
        .regenerate(&fresh(), &newer)
        .expect("regenerate from nothing");
    assert!(store.load(&newer.key, now).expect("load").is_some());
}

fn delete_reports_whether_it_existed<S: Store>(store: &S) {
    let now = clock::now();
    let rec = created(store, now);
    assert!(store.delete(&rec.key).expect("delete"));
    assert!(!store.delete(&rec.key).expect("delete twice"));
}

fn delete_expired_is_batched_and_spares_live_sessions<S: Store>(store: &S) {
    let now = clock::now();
    // Clear what earlier checks left expired.
    while store.delete_expired(now, 1000).expect("reap") > 0 {}
    let live = record(fresh(), now);
    store.create(&live).expect("create");
    for _ in 0..5 {
        let mut dead = record(fresh(), now - 2 * HOUR);
        dead.expires_at = now - 1;
        store.create(&dead).expect("create");
    }
    assert_eq!(store.delete_expired(now, 3).expect("reap"), 3);
    assert_eq!(store.delete_expired(now, 3).expect("reap"), 2);
    assert_eq!(store.delete_expired(now, 3).expect("reap"), 0);
    assert!(
        store.load(&live.key, now).expect("load").is_some(),
        "a live session was reaped"
    );
}

fn list_and_delete_by_user<S: Store>(store: &S) {
    let now = clock::now();
    for k in store.list(None, now).expect("list") {
        store.delete(&k.key).expect("delete");
    }
    let mut a1 = signed_in(record(fresh(), now), 1);
    a1.last_seen_at = now - 10;
    let a2 = signed_in(record(fresh(), now), 1);
    let b = signed_in(record(fresh(), now), 2);
    let anon = record(fresh(), now);
    for r in [&a1, &a2, &b, &anon] {
        store.create(r).expect("create");
    }
    let mine = store.list(Some(1), now).expect("list");
    assert_eq!(
        mine.iter().map(|r| r.key).collect::<Vec<_>>(),
        vec![a2.key, a1.key],
        "one user's sessions, most recently seen first"
    );
    assert_eq!(store.list(None, now).expect("list").len(), 4);
    assert_eq!(store.delete_by_user(1, Some(&a2.key)).expect("delete"), 1);
    assert_eq!(store.load(&a1.key, now).expect("load"), None);
    assert!(
        store.load(&a2.key, now).expect("load").is_some(),
        "the kept session was deleted"
    );
    assert!(
        store.load(&b.key, now).expect("load").is_some(),
        "another user's session was deleted"
    );
    assert_eq!(store.delete_by_user(1, None).expect("delete"), 1);
    assert!(store.list(Some(1), now).expect("list").is_empty());
}

fn end_oldest_caps_one_users_sessions<S: Store>(store: &S) {
    let now = clock::now();
    store.delete_by_user(1, None).expect("clear");
    store.delete_by_user(2, None).expect("clear");
    // The session just made is kept even when its clock says it is the
    // oldest (a sign-in that raced a clock step).
    let mut keep = signed_in(record(fresh(), now), 1);
    keep.created_at = now - 1_000;
    let mut made = Vec::new();
    for age in [50, 40, 30, 20, 10] {
        let mut r = signed_in(record(fresh(), now), 1);
        r.created_at = now - age;
        made.push(r);
    }
    let mut expired = signed_in(record(fresh(), now), 1);
    expired.expires_at = now - 1;
    let mut theirs = signed_in(record(fresh(), now), 2);
    theirs.created_at = now - 5_000;
    let anon = record(fresh(), now);
    for r in made.iter().chain([&keep, &expired, &theirs, &anon]) {
        store.create(r).expect("create");
    }
    assert!(store.end_oldest(1, &keep.key, 3, now).expect("cap") >= 3);
    let mut left: Vec<SessionKey> = store
        .list(Some(1), now)
        .expect("list")
        .iter()
        .map(|r| r.key)
        .collect();
    left.sort();
    let mut wanted = vec![keep.key, made[3].key, made[4].key];
    wanted.sort();
    assert_eq!(left, wanted, "the kept one and the two newest remain");
    assert!(
        store.load(&theirs.key, now).expect("load").is_some(),
        "another user's session was ended"
    );
    assert!(
        store.load(&anon.key, now).expect("load").is_some(),
        "an anonymous session was ended"
    );
    // Under the cap: nothing to do.
    assert_eq!(store.end_oldest(1, &keep.key, 3, now).expect("cap"), 0);
    assert_eq!(store.end_oldest(2, &theirs.key, 1, now).expect("cap"), 0);
    store.delete_by_user(1, None).expect("clear");
    store.delete_by_user(2, None).expect("clear");
    store.delete(&anon.key).expect("delete");
}

fn many_keys_survive_create_and_regenerate<S: Store>(store: &S) {
    // As many keys as a 64 KiB API body can carry: no store may trip over
    // an argument or stack limit.
    let now = clock::now();
    let mut rec = record(fresh(), now);
    for i in 0..9000 {
        rec.data.insert(format!("k{i}"), json!(i));
    }
    store.create(&rec).expect("create");
    let mut next = rec.clone();
    next.key = fresh();
    store.regenerate(&rec.key, &next).expect("regenerate");
    let loaded = live(store, &next.key, now);
    assert_eq!(loaded.data.len(), 9000);
    assert_eq!(loaded.data["k8999"], json!(8999));
    // And as many changes in one save: half the keys removed, the other
    // half set anew, and as many new ones.
    let changes = Patch(
        (0..9000)
            .map(|i| {
                let change = if i % 2 == 0 {
                    Change::Remove
                } else {
                    Change::Set(json!(-i))
                };
                (format!("k{i}"), change)
            })
            .chain((0..4500).map(|i| (format!("n{i}"), Change::Set(json!(i)))))
            .collect(),
    );
    assert!(
        store
            .save(&next.key, &changes, touch(now), now)
            .expect("save")
    );
    let loaded = live(store, &next.key, now);
    assert_eq!(loaded.data.len(), 9000);
    assert_eq!(loaded.data.get("k0"), None);
    assert_eq!(loaded.data["k8999"], json!(-8999));
    assert_eq!(loaded.data["n4499"], json!(4499));
}

fn odd_keys_round_trip<S: Store>(store: &S) {
    let now = clock::now();
    let rec = created(store, now);
    let keys = ["a.b", "[0]", "$", "with space", "'quote'", "x:y/z"];
    let p = Patch(
        keys.iter()
            .map(|k| ((*k).to_owned(), Change::Set(json!(k))))
            .collect(),
    );
    assert!(store.save(&rec.key, &p, touch(now), now).expect("save"));
    let loaded = live(store, &rec.key, now);
    for k in keys {
        assert_eq!(
            loaded.data.get(k),
            Some(&json!(k)),
            "key {k:?} did not round-trip"
        );
    }
    assert_eq!(
        loaded.data.len(),
        keys.len(),
        "a key landed somewhere else: {:?}",
        loaded.data
    );
}

/// A session keeps the stamp of the user it was signed in as through every
/// verb: what binds it to that user and no other.
fn a_session_keeps_its_users_stamp<S: Store>(store: &S) {
    let now = clock::now();
    let rec = signed_in(record(fresh(), now), 1);
    store.create(&rec).expect("create");
    assert_eq!(live(store, &rec.key, now).user_stamp, Some(stamp(1)));
    let (loaded, user) = store
        .load_with_user(&rec.key, now)
        .expect("load")
        .expect("live");
    assert_eq!(
        loaded.user_stamp,
        Some(stamp(1)),
        "load_with_user lost the stamp"
    );
    if let Some(user) = user {
        assert_eq!((user.id, user.stamp), (1, stamp(1)));
    }
    let p = patch(&[("x", Change::Set(json!(1)))]);
    assert!(store.save(&rec.key, &p, touch(now), now).expect("save"));
    store
        .increment(&rec.key, "n", 1, touch(now), now)
        .expect("increment");
    assert_eq!(
        live(store, &rec.key, now).user_stamp,
        Some(stamp(1)),
        "a save or an increment changed the stamp"
    );
    let next = Record {
        key: fresh(),
        ..rec.clone()
    };
    store.regenerate(&rec.key, &next).expect("regenerate");
    assert_eq!(live(store, &next.key, now).user_stamp, Some(stamp(1)));
    let listed = store.list(Some(1), now).expect("list");
    assert!(
        listed
            .iter()
            .any(|r| r.key == next.key && r.user_stamp == Some(stamp(1))),
        "list lost the stamp"
    );
    let anonymous = created(store, now);
    assert_eq!(live(store, &anonymous.key, now).user_stamp, None);
    store.delete(&next.key).expect("delete");
    store.delete(&anonymous.key).expect("delete");
}

/// A session stored with a stamp that is not its user's (a row written for
/// a user who had this id in another database) never comes back with that
/// user: it is no session, or it comes back with the stamp it was stored
/// with and no user, so the caller, comparing stamps, refuses it.
fn a_session_never_comes_back_with_a_user_of_another_stamp<S: Store>(store: &S) {
    let now = clock::now();
    let mut rec = signed_in(record(fresh(), now), 1);
    rec.user_stamp = Some("f".repeat(32));
    store.create(&rec).expect("create");
    if let Some((loaded, user)) = store.load_with_user(&rec.key, now).expect("load") {
        assert_eq!(
            loaded.user_stamp, rec.user_stamp,
            "the stamp was replaced by the user's"
        );
        assert_eq!(
            user, None,
            "a session came back with a user whose stamp is not its own"
        );
    }
    if let Some(loaded) = store.load(&rec.key, now).expect("load") {
        assert_eq!(loaded.user_stamp, rec.user_stamp);
    }
    let mut unstamped = signed_in(record(fresh(), now), 1);
    unstamped.user_stamp = None;
    store.create(&unstamped).expect("create");
    if let Some((loaded, user)) = store.load_with_user(&unstamped.key, now).expect("load") {
        assert_eq!(loaded.user_stamp, None);
        assert_eq!(
            user, None,
            "a session without a stamp came back with a user"
        );
    }
    store.delete(&rec.key).expect("delete");
    store.delete(&unstamped.key).expect("delete");
}
