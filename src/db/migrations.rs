//! Schema migrations, one step per version, tracked in `PRAGMA user_version`.
//!
//! A step is applied in its own transaction together with the version bump,
//! so a crash mid-migration leaves the file at the previous version. A file
//! whose version is newer than [`SCHEMA_VERSION`] is refused, never touched.

use rusqlite::Connection;

use super::DbError;

/// The steps, in order: `STEPS[n]` takes a file from version `n` to `n + 1`.
const STEPS: &[&str] = &[
    // 1: users and sessions.
    "CREATE TABLE users (
         id INTEGER PRIMARY KEY,
         username TEXT NOT NULL COLLATE NOCASE UNIQUE,
         password_hash TEXT NOT NULL,
         is_admin INTEGER NOT NULL DEFAULT 0,
         disabled INTEGER NOT NULL DEFAULT 0,
         created_at INTEGER NOT NULL,
         password_changed_at INTEGER NOT NULL
     );
     CREATE TABLE sessions (
         key BLOB PRIMARY KEY NOT NULL,
         user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
         data TEXT NOT NULL DEFAULT '{}',
         created_at INTEGER NOT NULL,
         last_seen_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         absolute_expires_at INTEGER NOT NULL,
         persistent INTEGER NOT NULL DEFAULT 0,
         user_agent TEXT,
         ip TEXT
     ) WITHOUT ROWID;
     CREATE INDEX sessions_by_expiry ON sessions(expires_at);
     CREATE INDEX sessions_by_user ON sessions(user_id);",
    // 2: a user's sessions are listed newest activity first; index that order.
    "DROP INDEX sessions_by_user;
     CREATE INDEX sessions_by_user ON sessions(user_id, last_seen_at);",
    // 3: what this file is: a random id made once, when the file is created
    // or first migrated, so a server notices when the file at its path is
    // another database; and a row the health check rewrites to prove that
    // writes still commit.
    // Each session row carries the id of the database it was written for,
    // and is read only by a server that opened that database: a row written
    // into another file (by a server whose file was swapped under it) never
    // maps a cookie onto that file's users.
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;
     INSERT INTO meta (key, value) VALUES ('database_id', lower(hex(randomblob(16))));
     INSERT INTO meta (key, value) VALUES ('write_probe', '0');
     ALTER TABLE sessions ADD COLUMN database_id TEXT NOT NULL DEFAULT '';
     UPDATE sessions SET database_id = (SELECT value FROM meta WHERE key = 'database_id');",
    // 4: second factors: authenticator seeds (sealed with a key that is not
    // in this file), recovery code hashes, passkeys.
    "CREATE TABLE totp (
         user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
         seed BLOB NOT NULL,
         last_step INTEGER NOT NULL,
         created_at INTEGER NOT NULL
     );
     CREATE TABLE recovery_codes (
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         hash BLOB NOT NULL,
         PRIMARY KEY (user_id, hash)
     ) WITHOUT ROWID;
     CREATE TABLE passkeys (
         id INTEGER PRIMARY KEY,
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         credential_id BLOB NOT NULL UNIQUE,
         name TEXT NOT NULL,
         credential BLOB NOT NULL,
         created_at INTEGER NOT NULL,
         last_used_at INTEGER
     );
     CREATE INDEX passkeys_by_user ON passkeys(user_id);",
    // 5: a random stamp per user, stored with each of their sessions and
    // compared in the read that loads a session, so a session resolves
    // only to the user it was made for, never to another who came to have
    // its user id. Signed-in sessions from before carry no stamp and are
    // ended (their users sign in again once): the file they are in may be
    // the very one a stale -wal of another file was replayed into, before
    // gatehouse recorded which file its -wal belongs to.
    "ALTER TABLE users ADD COLUMN stamp TEXT NOT NULL DEFAULT '';
     UPDATE users SET stamp = lower(hex(randomblob(16)));
     ALTER TABLE sessions ADD COLUMN user_stamp TEXT;
     DELETE FROM sessions WHERE user_id IS NOT NULL;",
    // 6: the OpenID Provider (src/oidc/): each user's subject identifier
    // (random, so a deleted user's reused id never gets their `sub`);
    // signing keys (the private key sealed with a key that is not in this
    // file; one current key per algorithm); grants, each the root of its
    // code, tokens and device approval (deleting it ends them all); codes,
    // tokens and device codes stored as SHA-256 hashes.
    "CREATE TABLE oidc_subjects (
         user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
         subject TEXT NOT NULL UNIQUE
     );
     CREATE TABLE oidc_keys (
         kid TEXT PRIMARY KEY NOT NULL,
         alg TEXT NOT NULL,
         sealed BLOB NOT NULL,
         public_jwk TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         retired_at INTEGER,
         published_until INTEGER
     ) WITHOUT ROWID;
     CREATE UNIQUE INDEX oidc_keys_current ON oidc_keys(alg) WHERE retired_at IS NULL;
     CREATE TABLE oidc_grants (
         id BLOB PRIMARY KEY NOT NULL,
         client_id TEXT NOT NULL,
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         sid TEXT NOT NULL,
         scopes TEXT NOT NULL,
         nonce TEXT,
         auth_time INTEGER NOT NULL,
         methods TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX oidc_grants_by_sid ON oidc_grants(sid);
     CREATE INDEX oidc_grants_by_user ON oidc_grants(user_id, created_at);
     CREATE INDEX oidc_grants_by_expiry ON oidc_grants(expires_at);
     CREATE TABLE oidc_codes (
         hash BLOB PRIMARY KEY NOT NULL,
         grant_id BLOB NOT NULL REFERENCES oidc_grants(id) ON DELETE CASCADE,
         redirect_uri TEXT NOT NULL,
         challenge TEXT,
         expires_at INTEGER NOT NULL,
         used_at INTEGER
     ) WITHOUT ROWID;
     CREATE INDEX oidc_codes_by_grant ON oidc_codes(grant_id);
     CREATE INDEX oidc_codes_by_expiry ON oidc_codes(expires_at);
     CREATE TABLE oidc_tokens (
         hash BLOB PRIMARY KEY NOT NULL,
         grant_id BLOB NOT NULL REFERENCES oidc_grants(id) ON DELETE CASCADE,
         kind TEXT NOT NULL,
         scopes TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         used_at INTEGER
     ) WITHOUT ROWID;
     CREATE INDEX oidc_tokens_by_grant ON oidc_tokens(grant_id);
     CREATE INDEX oidc_tokens_by_expiry ON oidc_tokens(expires_at);
     CREATE TABLE oidc_devices (
         device_hash BLOB PRIMARY KEY NOT NULL,
         user_code_hash BLOB NOT NULL UNIQUE,
         client_id TEXT NOT NULL,
         scopes TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         interval_ms INTEGER NOT NULL,
         last_poll_at INTEGER,
         status TEXT NOT NULL,
         grant_id BLOB REFERENCES oidc_grants(id) ON DELETE CASCADE
     ) WITHOUT ROWID;
     CREATE INDEX oidc_devices_by_grant ON oidc_devices(grant_id);
     CREATE INDEX oidc_devices_by_expiry ON oidc_devices(expires_at);",
    // 7: where a user comes from: `local` (a bcrypt hash here) or `ldap`
    // (the directory checks the password; the hash is empty), keyed by the
    // directory's stable id so a rename keeps the user; and the names the
    // directory gives (display name, e-mail).
    "ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
     ALTER TABLE users ADD COLUMN external_id TEXT;
     ALTER TABLE users ADD COLUMN display_name TEXT;
     ALTER TABLE users ADD COLUMN email TEXT;
     CREATE UNIQUE INDEX users_by_external_id ON users(source, external_id)
         WHERE external_id IS NOT NULL;",
    // 8: groups, and users in them (two lookups, both indexed: a user's
    // groups by the primary key, read with every user row; a group's
    // members by `user_groups_by_group`). The admin flag becomes
    // membership of `admins`: every administrator so far is made a member
    // and the column goes, so nothing can read a flag that membership no
    // longer backs.
    "CREATE TABLE groups (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL COLLATE NOCASE UNIQUE,
         created_at INTEGER NOT NULL
     );
     CREATE TABLE user_groups (
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
         PRIMARY KEY (user_id, group_id)
     ) WITHOUT ROWID;
     CREATE INDEX user_groups_by_group ON user_groups(group_id);
     INSERT INTO groups (name, created_at)
         VALUES ('admins', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
     INSERT INTO user_groups (user_id, group_id)
         SELECT id, (SELECT id FROM groups WHERE name = 'admins') FROM users WHERE is_admin;
     ALTER TABLE users DROP COLUMN is_admin;",
    // 9: personal access tokens (see `users::tokens`): looked up by the
    // SHA-256 of the token (never stored), listed by user. A token holds
    // the user's `password_changed_at` as it was when it was made: a new
    // password ends every token at once, on every instance, with no write
    // to the tokens.
    "CREATE TABLE access_tokens (
         id INTEGER PRIMARY KEY,
         hash BLOB NOT NULL UNIQUE,
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         name TEXT NOT NULL,
         apps TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         expires_at INTEGER,
         last_used_at INTEGER,
         password_at INTEGER NOT NULL
     );
     CREATE INDEX access_tokens_by_user ON access_tokens(user_id);",
    // 10: whether a local user's e-mail address was set by an
    // administrator (vouched for) or typed by the user on their account
    // page (not checked: gatehouse sends no mail). An app that links
    // accounts by a verified address must never be handed one a user
    // typed. A directory user's address is the directory's, vouched for
    // whatever this says.
    "ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;",
    // 11: OpenID Connect clients made on `/admin/clients` or with `gatehouse
    // oidc client create` (those of gatehouse.toml are not stored): read
    // by id on each request that names one, so every instance sees a new,
    // rotated or deleted client at once. The secret is kept as its
    // SHA-256 (NULL: a public client); the lists are JSON arrays.
    "CREATE TABLE oidc_clients (
         id TEXT PRIMARY KEY NOT NULL,
         name TEXT NOT NULL,
         secret_hash BLOB,
         redirect_uris TEXT NOT NULL,
         allowed_groups TEXT NOT NULL,
         two_factor INTEGER NOT NULL,
         pkce_required INTEGER NOT NULL,
         signing_alg TEXT NOT NULL,
         offline_access INTEGER NOT NULL,
         claims_in_id_token INTEGER NOT NULL,
         device_grant INTEGER NOT NULL,
         launch_url TEXT,
         created_at INTEGER NOT NULL,
         secret_set_at INTEGER
     ) WITHOUT ROWID;",
    // 12: back-channel logout notices waiting to be sent (OpenID Connect
    // Back-Channel Logout 1.0): one per client and ended session, queued
    // with the grants' end, holding the user's `sub` (no reference to the
    // user: the notice of a deleted user's sessions must outlive them).
    "CREATE TABLE oidc_logouts (
         client_id TEXT NOT NULL,
         sid TEXT NOT NULL,
         subject TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         next_at INTEGER NOT NULL,
         attempts INTEGER NOT NULL DEFAULT 0,
         PRIMARY KEY (client_id, sid)
     ) WITHOUT ROWID;
     CREATE INDEX oidc_logouts_by_next ON oidc_logouts(next_at);",
    // 13: links that stand in for e-mail (see `users::links`), each looked up
    // by the SHA-256 of its token (never stored): invites (uses counted
    // down in the statement that takes one; preset groups as their ids;
    // optionally for a user made with it, who has no password yet), reset
    // links (one per user: a new one replaces the old), and sign-in links
    // for a new device (a link and a short code, used once; kept a while
    // after use so the account page can say where they were used). Reset
    // and sign-in links keep the user's `password_changed_at`: a new
    // password ends them, as it ends tokens.
    "CREATE TABLE invites (
         id INTEGER PRIMARY KEY,
         hash BLOB NOT NULL UNIQUE,
         created_by TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         uses INTEGER NOT NULL,
         used INTEGER NOT NULL DEFAULT 0,
         groups TEXT NOT NULL DEFAULT '',
         user_id INTEGER REFERENCES users(id) ON DELETE CASCADE
     );
     CREATE TABLE reset_links (
         id INTEGER PRIMARY KEY,
         hash BLOB NOT NULL UNIQUE,
         user_id INTEGER NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
         created_by TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         new_factor INTEGER NOT NULL DEFAULT 0,
         password_at INTEGER NOT NULL
     );
     CREATE TABLE signin_links (
         id INTEGER PRIMARY KEY,
         hash BLOB NOT NULL UNIQUE,
         code_hash BLOB NOT NULL UNIQUE,
         user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
         methods TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         password_at INTEGER NOT NULL,
         used_at INTEGER,
         used_ip TEXT,
         used_agent TEXT
     );
     CREATE INDEX signin_links_by_user ON signin_links(user_id);",
    // 14: the audit log (see `users::audit`): one row per security event,
    // kept for `audit_retention`. Names are kept as text, not user ids: a
    // row outlives its user, and an id can come to name someone else. The
    // name columns are NOCASE so a user's rows are found in any case;
    // every index ends in time order (SQLite adds the rowid), so a page
    // of the newest rows of a user, a kind or a time range is read in
    // index order, never sorted whole.
    "CREATE TABLE audit (
         id INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         kind TEXT NOT NULL,
         outcome TEXT NOT NULL,
         actor TEXT COLLATE NOCASE,
         subject TEXT COLLATE NOCASE,
         ip TEXT,
         user_agent TEXT,
         detail TEXT NOT NULL DEFAULT ''
     );
     CREATE INDEX audit_by_time ON audit(at);
     CREATE INDEX audit_by_subject ON audit(subject, at);
     CREATE INDEX audit_by_actor ON audit(actor, at);
     CREATE INDEX audit_by_kind ON audit(kind, at);",
    // The logout settings of a client an administrator made (as
    // `[[clients]]` takes them): the front- and back-channel logout URIs
    // (NULL: none), whether each wants `iss` and `sid` (default yes, as
    // the file's), and the post-logout redirect URIs (a JSON array).
    "ALTER TABLE oidc_clients ADD COLUMN frontchannel_logout_uri TEXT;
     ALTER TABLE oidc_clients ADD COLUMN frontchannel_logout_session_required INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE oidc_clients ADD COLUMN backchannel_logout_uri TEXT;
     ALTER TABLE oidc_clients ADD COLUMN backchannel_logout_session_required INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE oidc_clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';",
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = STEPS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`].
///
/// # Errors
///
/// [`DbError::TooNew`] for a file made by a newer gatehouse; SQLite errors
/// from a failed step (the file then stays at the last good version).
pub fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (version, step) in pending(STEPS, found)? {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

/// The steps a database at version `found` still needs, each with the
/// version it reaches: the one loop both databases' migrations run.
///
/// # Errors
///
/// [`DbError::TooNew`] when `found` is past the last step: such a database
/// is refused, never touched.
pub(crate) fn pending<'a>(
    steps: &'a [&'a str],
    found: i64,
) -> Result<impl Iterator<Item = (i64, &'a str)> + 'a, DbError> {
    let known = i64::try_from(steps.len()).unwrap_or(i64::MAX);
    if found > known {
        return Err(DbError::TooNew { found, known });
    }
    Ok(steps
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
        .map(|(index, step)| (i64::try_from(index + 1).unwrap_or(i64::MAX), *step)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_reaches_the_current_version() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("migrate");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        migrate(&mut conn).expect("migrating twice is a no-op");
    }

    #[test]
    fn a_version_1_file_is_migrated_with_its_data() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(STEPS[0]).expect("v1 schema");
        conn.pragma_update(None, "user_version", 1).expect("v1");
        conn.execute_batch(
            "INSERT INTO users (id, username, password_hash, created_at, password_changed_at) VALUES (1, 'old', 'h', 0, 0);
             INSERT INTO sessions (key, user_id, data, created_at, last_seen_at, expires_at, absolute_expires_at)
             VALUES (x'00', 1, '{}', 0, 0, 1, 1);",
        )
        .expect("v1 data");
        migrate(&mut conn).expect("migrate");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM users WHERE id = 1", [], |r| r.get(0))
            .expect("rows");
        assert_eq!(n, 1);
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'sessions_by_user'",
                [],
                |r| r.get(0),
            )
            .expect("index");
        assert!(sql.contains("last_seen_at"), "{sql}");
        // Users made before there were sources are local ones.
        let (source, external): (String, Option<String>) = conn
            .query_row(
                "SELECT source, external_id FROM users WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("user");
        assert_eq!((source.as_str(), external), ("local", None));
    }

    #[test]
    fn an_upgrade_gives_every_user_a_stamp_of_their_own_and_ends_signed_in_sessions() {
        let mut conn = Connection::open_in_memory().expect("open");
        for step in &STEPS[..4] {
            conn.execute_batch(step).expect("steps 1 to 4");
        }
        conn.pragma_update(None, "user_version", 4).expect("v4");
        conn.execute_batch(
            "INSERT INTO users (id, username, password_hash, created_at, password_changed_at)
             VALUES (1, 'one', 'h', 0, 0), (2, 'two', 'h', 0, 0);
             INSERT INTO sessions (key, user_id, created_at, last_seen_at, expires_at,
                                   absolute_expires_at)
             VALUES (x'01', 1, 0, 0, 1, 1), (x'02', NULL, 0, 0, 1, 1);",
        )
        .expect("v4 data");
        migrate(&mut conn).expect("migrate");
        let stamps: Vec<String> = conn
            .prepare("SELECT stamp FROM users ORDER BY id")
            .expect("select")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect();
        assert_eq!(stamps.len(), 2);
        assert!(
            stamps
                .iter()
                .all(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())),
            "{stamps:?}"
        );
        assert_ne!(stamps[0], stamps[1], "two users share a stamp");
        let left: Vec<Option<i64>> = conn
            .prepare("SELECT user_id FROM sessions")
            .expect("select")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect();
        assert_eq!(left, [None], "only the anonymous session is kept");
    }

    #[test]
    fn an_upgrade_makes_every_administrator_a_member_of_admins() {
        let mut conn = Connection::open_in_memory().expect("open");
        for step in &STEPS[..7] {
            conn.execute_batch(step).expect("steps 1 to 7");
        }
        conn.pragma_update(None, "user_version", 7).expect("v7");
        conn.execute_batch(
            "INSERT INTO users (id, username, password_hash, is_admin, disabled, created_at,
                                password_changed_at)
             VALUES (1, 'root', 'h', 1, 0, 0, 0), (2, 'bob', 'h', 0, 0, 0, 0),
                    (3, 'old', 'h', 1, 1, 0, 0);",
        )
        .expect("v7 data");
        migrate(&mut conn).expect("migrate");
        let members: Vec<(i64, String)> = conn
            .prepare(
                "SELECT ug.user_id, g.name FROM user_groups ug JOIN groups g ON g.id = ug.group_id
                 ORDER BY ug.user_id",
            )
            .expect("select")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect();
        // A disabled administrator stays one (enabling them again gives
        // back what they had).
        assert_eq!(
            members,
            [(1, "admins".to_owned()), (3, "admins".to_owned())]
        );
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('users')")
            .expect("select")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect();
        assert!(!columns.iter().any(|c| c == "is_admin"), "{columns:?}");
        // The user row as every reader selects it says who is an admin.
        let admins: Vec<(i64, String)> = conn
            .prepare(&format!(
                "SELECT {} FROM users ORDER BY id",
                crate::identity::USER_COLUMNS
            ))
            .expect("select")
            .query_map([], |r| Ok((r.get(0)?, r.get(2)?)))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect();
        assert_eq!(
            admins,
            [
                (1, "admins".to_owned()),
                (2, String::new()),
                (3, "admins".to_owned())
            ]
        );
    }

    #[test]
    fn pending_yields_the_missing_steps_with_the_version_each_reaches() {
        let steps = ["one", "two", "three"];
        let all: Vec<_> = pending(&steps, 0).expect("fresh").collect();
        assert_eq!(all, [(1, "one"), (2, "two"), (3, "three")]);
        let rest: Vec<_> = pending(&steps, 2).expect("old").collect();
        assert_eq!(rest, [(3, "three")]);
        assert_eq!(pending(&steps, 3).expect("current").count(), 0);
        assert!(matches!(
            pending(&steps, 4).map(|_| ()),
            Err(DbError::TooNew { found: 4, known: 3 })
        ));
        // A negative version (a file written by something else) runs every
        // step rather than panicking.
        assert_eq!(pending(&steps, -1).expect("negative").count(), 3);
    }

    #[test]
    fn a_file_from_a_newer_gatehouse_is_refused() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("set version");
        let err = migrate(&mut conn).expect_err("must refuse");
        assert!(matches!(err, DbError::TooNew { .. }));
        assert!(err.to_string().contains("newer"));
    }
}
