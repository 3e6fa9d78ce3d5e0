//! The provider's statements on gatehouse's SQLite file (tables made by
//! `db/migrations.rs`). Each single use is one conditional `UPDATE ...
//! RETURNING` run through [`crate::db::returning`], so a commit that
//! failed is never reported as a success.

use rusqlite::{OptionalExtension, Row, params};

use super::OidcError;
use super::store::{
    ClientRow, CodeClaim, CodeRow, CodeState, CodeTake, DevicePoll, DeviceRow, DeviceStatus,
    GrantId, GrantRow, Hash, KeyRow, LogoutRow, RefreshTake, Store, TokenKind, TokenRow,
    from_json_list, to_json_list,
};
use crate::clock::Millis;
use crate::db::{Pool, returning};
use crate::identity::UserId;

/// The provider's tables in SQLite.
pub struct SqliteOidc(pub Pool);

const GRANT: &str =
    "id, client_id, user_id, sid, scopes, nonce, auth_time, methods, created_at, expires_at";
const TOKEN: &str = "hash, grant_id, kind, scopes, created_at, expires_at, used_at";
const DEVICE: &str = "device_hash, user_code_hash, client_id, scopes, created_at, expires_at, \
                      interval_ms, last_poll_at, status, grant_id";
const KEY: &str = "kid, alg, sealed, public_jwk, created_at, retired_at, published_until";
const CLIENT: &str = "id, name, secret_hash, redirect_uris, allowed_groups, two_factor, \
                      pkce_required, signing_alg, offline_access, claims_in_id_token, \
                      device_grant, launch_url, created_at, secret_set_at, \
                      frontchannel_logout_uri, frontchannel_logout_session_required, \
                      backchannel_logout_uri, backchannel_logout_session_required, \
                      post_logout_redirect_uris";

fn bad(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Blob,
        what.to_owned().into(),
    )
}

fn grant_id(row: &Row<'_>, i: usize) -> rusqlite::Result<GrantId> {
    let bytes: Vec<u8> = row.get(i)?;
    GrantId::from_slice(&bytes).ok_or_else(|| bad(i, "grant id length"))
}

fn hash(row: &Row<'_>, i: usize) -> rusqlite::Result<Hash> {
    let bytes: Vec<u8> = row.get(i)?;
    bytes.try_into().map_err(|_| bad(i, "hash length"))
}

fn grant(row: &Row<'_>, at: usize) -> rusqlite::Result<GrantRow> {
    Ok(GrantRow {
        id: grant_id(row, at)?,
        client_id: row.get(at + 1)?,
        user_id: row.get(at + 2)?,
        sid: row.get(at + 3)?,
        scopes: row.get(at + 4)?,
        nonce: row.get(at + 5)?,
        auth_time: row.get(at + 6)?,
        methods: row.get(at + 7)?,
        created_at: row.get(at + 8)?,
        expires_at: row.get(at + 9)?,
    })
}

fn token(row: &Row<'_>, at: usize) -> rusqlite::Result<TokenRow> {
    let kind: String = row.get(at + 2)?;
    Ok(TokenRow {
        hash: hash(row, at)?,
        grant_id: grant_id(row, at + 1)?,
        kind: TokenKind::parse(&kind).ok_or_else(|| bad(at + 2, "token kind"))?,
        scopes: row.get(at + 3)?,
        created_at: row.get(at + 4)?,
        expires_at: row.get(at + 5)?,
        used_at: row.get(at + 6)?,
    })
}

fn device(row: &Row<'_>) -> rusqlite::Result<DeviceRow> {
    let status: String = row.get(8)?;
    let grant: Option<Vec<u8>> = row.get(9)?;
    Ok(DeviceRow {
        device_hash: hash(row, 0)?,
        user_code_hash: hash(row, 1)?,
        client_id: row.get(2)?,
        scopes: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        interval_ms: row.get(6)?,
        last_poll_at: row.get(7)?,
        status: DeviceStatus::parse(&status).ok_or_else(|| bad(8, "device status"))?,
        grant_id: match grant {
            None => None,
            Some(b) => Some(GrantId::from_slice(&b).ok_or_else(|| bad(9, "grant id length"))?),
        },
    })
}

fn key(row: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow {
        kid: row.get(0)?,
        alg: row.get(1)?,
        sealed: row.get(2)?,
        public_jwk: row.get(3)?,
        created_at: row.get(4)?,
        retired_at: row.get(5)?,
        published_until: row.get(6)?,
    })
}

fn client(row: &Row<'_>) -> rusqlite::Result<ClientRow> {
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(i)?;
        from_json_list(&text).ok_or_else(|| bad(i, "client list"))
    };
    let secret: Option<Vec<u8>> = row.get(2)?;
    Ok(ClientRow {
        id: row.get(0)?,
        name: row.get(1)?,
        secret_hash: match secret {
            None => None,
            Some(b) => Some(b.try_into().map_err(|_| bad(2, "hash length"))?),
        },
        redirect_uris: list(3)?,
        groups: list(4)?,
        two_factor: row.get(5)?,
        pkce_required: row.get(6)?,
        signing_alg: row.get(7)?,
        offline_access: row.get(8)?,
        claims_in_id_token: row.get(9)?,
        device_grant: row.get(10)?,
        launch_url: row.get(11)?,
        created_at: row.get(12)?,
        secret_set_at: row.get(13)?,
        frontchannel_logout_uri: row.get(14)?,
        frontchannel_logout_session_required: row.get(15)?,
        backchannel_logout_uri: row.get(16)?,
        backchannel_logout_session_required: row.get(17)?,
        post_logout_redirect_uris: list(18)?,
    })
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SqliteOidc {
    fn find_grant(conn: &rusqlite::Connection, id: &GrantId) -> Result<GrantRow, OidcError> {
        Ok(conn
            .prepare_cached(&format!("SELECT {GRANT} FROM oidc_grants WHERE id = ?1"))?
            .query_row([&id.0[..]], |r| grant(r, 0))?)
    }

    fn insert_grant(conn: &rusqlite::Connection, g: &GrantRow) -> Result<(), OidcError> {
        conn.prepare_cached(&format!(
            "INSERT INTO oidc_grants ({GRANT}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?
        .execute(params![
            &g.id.0[..],
            g.client_id,
            g.user_id,
            g.sid,
            g.scopes,
            g.nonce,
            g.auth_time,
            g.methods,
            g.created_at,
            g.expires_at
        ])?;
        Ok(())
    }
}

impl Store for SqliteOidc {
    fn keys(&self, now: Millis) -> Result<Vec<KeyRow>, OidcError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {KEY} FROM oidc_keys WHERE retired_at IS NULL OR published_until > ?1 \
             ORDER BY created_at, kid"
        ))?;
        let rows = stmt.query_map([now], key)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn key_add(&self, k: &KeyRow) -> Result<bool, OidcError> {
        // The partial unique index on current keys makes the loser of two
        // instances generating at once insert nothing.
        let n = self.0.get()?.execute(
            &format!(
                "INSERT INTO oidc_keys ({KEY}) VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL) \
                 ON CONFLICT DO NOTHING"
            ),
            params![k.kid, k.alg, k.sealed, k.public_jwk, k.created_at],
        )?;
        Ok(n == 1)
    }

    fn key_rotate(&self, k: &KeyRow, now: Millis, until: Millis) -> Result<(), OidcError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE oidc_keys SET retired_at = ?2, published_until = ?3 \
             WHERE alg = ?1 AND retired_at IS NULL",
            params![k.alg, now, until],
        )?;
        tx.execute(
            &format!("INSERT INTO oidc_keys ({KEY}) VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL)"),
            params![k.kid, k.alg, k.sealed, k.public_jwk, k.created_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn subject(&self, user: UserId, fresh: &str) -> Result<String, OidcError> {
        let conn = self.0.get()?;
        // The no-op update makes RETURNING give the stored subject when
        // there is one: one statement, whoever came first.
        let mut stmt = conn.prepare_cached(
            "INSERT INTO oidc_subjects (user_id, subject) VALUES (?1, ?2) \
             ON CONFLICT (user_id) DO UPDATE SET subject = oidc_subjects.subject \
             RETURNING subject",
        )?;
        returning(&mut stmt, params![user, fresh], |r| r.get::<_, String>(0))?
            .into_iter()
            .next()
            .ok_or_else(|| rusqlite::Error::QueryReturnedNoRows.into())
    }

    fn code_create(&self, g: &GrantRow, code: &CodeRow) -> Result<(), OidcError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        Self::insert_grant(&tx, g)?;
        tx.execute(
            "INSERT INTO oidc_codes (hash, grant_id, redirect_uri, challenge, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                &code.hash[..],
                &code.grant_id.0[..],
                code.redirect_uri,
                code.challenge,
                code.expires_at
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn code_take(&self, c: &CodeClaim<'_>, now: Millis) -> Result<CodeTake, OidcError> {
        let mut conn = self.0.get()?;
        // The code is used and its grant read in one write transaction: a
        // second redemption racing this one revokes the grant only after
        // this one has read it, never between the two.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut stmt = tx.prepare_cached(
            "UPDATE oidc_codes SET used_at = ?2 \
             WHERE hash = ?1 AND used_at IS NULL AND expires_at > ?2 AND redirect_uri = ?4 \
               AND ((challenge IS NULL AND ?5 IS NULL) OR challenge = ?5) \
               AND grant_id IN (SELECT id FROM oidc_grants WHERE client_id = ?3) \
             RETURNING grant_id",
        )?;
        let taken = returning(
            &mut stmt,
            params![&c.hash[..], now, c.client_id, c.redirect_uri, c.challenge],
            |r| grant_id(r, 0),
        )?;
        drop(stmt);
        if let Some(id) = taken.first() {
            let grant = Self::find_grant(&tx, id)?;
            tx.commit()?;
            return Ok(CodeTake::Taken(grant));
        }
        // Why not: read only to say so (nothing is granted from here on).
        let row = tx
            .prepare_cached(
                "SELECT c.grant_id, c.used_at, c.expires_at, c.redirect_uri, c.challenge, g.client_id \
                 FROM oidc_codes c JOIN oidc_grants g ON g.id = c.grant_id WHERE c.hash = ?1",
            )?
            .query_row([&c.hash[..]], |r| {
                Ok(CodeState {
                    grant: grant_id(r, 0)?,
                    used_at: r.get(1)?,
                    expires_at: r.get(2)?,
                    redirect_uri: r.get(3)?,
                    challenge: r.get(4)?,
                    client_id: r.get(5)?,
                })
            })
            .optional()?;
        Ok(classify_code(row, c, now))
    }

    fn token_create(&self, t: &TokenRow) -> Result<bool, OidcError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        let n = tx.execute(
            "INSERT INTO oidc_tokens (hash, grant_id, kind, scopes, created_at, expires_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM oidc_grants WHERE id = ?2)",
            params![
                &t.hash[..],
                &t.grant_id.0[..],
                t.kind.as_str(),
                t.scopes,
                t.created_at,
                t.expires_at
            ],
        )?;
        tx.execute(
            "UPDATE oidc_grants SET expires_at = max(expires_at, ?2) WHERE id = ?1",
            params![&t.grant_id.0[..], t.expires_at],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn token_find(&self, h: &Hash) -> Result<Option<(TokenRow, GrantRow)>, OidcError> {
        let conn = self.0.get()?;
        let cols = TOKEN
            .split(", ")
            .map(|c| format!("t.{c}"))
            .chain(GRANT.split(", ").map(|c| format!("g.{c}")))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {cols} FROM oidc_tokens t JOIN oidc_grants g ON g.id = t.grant_id \
                 WHERE t.hash = ?1"
            ))?
            .query_row([&h[..]], |r| Ok((token(r, 0)?, grant(r, 7)?)))
            .optional()?)
    }

    fn refresh_take(&self, h: &Hash, client: &str, now: Millis) -> Result<RefreshTake, OidcError> {
        let mut conn = self.0.get()?;
        // Used and its grant read in one write transaction, as a code.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut stmt = tx.prepare_cached(&format!(
            "UPDATE oidc_tokens SET used_at = ?2 \
             WHERE hash = ?1 AND kind = 'refresh' AND used_at IS NULL AND expires_at > ?2 \
               AND grant_id IN (SELECT id FROM oidc_grants WHERE client_id = ?3) \
             RETURNING {TOKEN}"
        ))?;
        let taken = returning(&mut stmt, params![&h[..], now, client], |r| token(r, 0))?;
        drop(stmt);
        if let Some(t) = taken.into_iter().next() {
            let g = Self::find_grant(&tx, &t.grant_id)?;
            tx.commit()?;
            return Ok(RefreshTake::Taken(Box::new((t, g))));
        }
        drop(tx);
        drop(conn);
        Ok(classify_refresh(self.token_find(h)?, client, now))
    }

    fn token_delete(&self, h: &Hash) -> Result<bool, OidcError> {
        Ok(self
            .0
            .get()?
            .execute("DELETE FROM oidc_tokens WHERE hash = ?1", [&h[..]])?
            > 0)
    }

    fn grant_delete(&self, id: &GrantId) -> Result<bool, OidcError> {
        Ok(self
            .0
            .get()?
            .execute("DELETE FROM oidc_grants WHERE id = ?1", [&id.0[..]])?
            > 0)
    }

    fn grants_delete_for_session(&self, sid: &str, now: Millis) -> Result<Vec<String>, OidcError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        tx.prepare_cached(&queue_logouts("g.sid = ?1", "?2"))?
            .execute(params![sid, now])?;
        let mut stmt =
            tx.prepare_cached("DELETE FROM oidc_grants WHERE sid = ?1 RETURNING client_id")?;
        let mut clients = returning(&mut stmt, [sid], |r| r.get::<_, String>(0))?;
        drop(stmt);
        tx.commit()?;
        clients.sort();
        clients.dedup();
        Ok(clients)
    }

    fn grants_delete_for_user(
        &self,
        user: UserId,
        client: Option<&str>,
        now: Millis,
    ) -> Result<usize, OidcError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        tx.prepare_cached(&queue_logouts(
            "g.user_id = ?1 AND (?2 IS NULL OR g.client_id = ?2)",
            "?3",
        ))?
        .execute(params![user, client, now])?;
        let n = tx.execute(
            "DELETE FROM oidc_grants WHERE user_id = ?1 AND (?2 IS NULL OR client_id = ?2)",
            params![user, client],
        )?;
        tx.commit()?;
        Ok(n)
    }

    fn grants_delete_for_user_but(
        &self,
        user: UserId,
        keep_sid: &str,
        now: Millis,
    ) -> Result<usize, OidcError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        tx.prepare_cached(&queue_logouts("g.user_id = ?1 AND g.sid <> ?2", "?3"))?
            .execute(params![user, keep_sid, now])?;
        let n = tx.execute(
            "DELETE FROM oidc_grants WHERE user_id = ?1 AND sid <> ?2",
            params![user, keep_sid],
        )?;
        tx.commit()?;
        Ok(n)
    }

    fn grants_for_user(&self, user: UserId, now: Millis) -> Result<Vec<GrantRow>, OidcError> {
        let conn = self.0.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {GRANT} FROM oidc_grants WHERE user_id = ?1 AND expires_at > ?2 \
             AND EXISTS (SELECT 1 FROM oidc_tokens t WHERE t.grant_id = oidc_grants.id) \
             ORDER BY created_at DESC"
        ))?;
        let rows = stmt.query_map(params![user, now], |r| grant(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn device_create(&self, d: &DeviceRow) -> Result<bool, OidcError> {
        match self.0.get()?.execute(
            &format!(
                "INSERT INTO oidc_devices ({DEVICE}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, NULL)"
            ),
            params![
                &d.device_hash[..],
                &d.user_code_hash[..],
                d.client_id,
                d.scopes,
                d.created_at,
                d.expires_at,
                d.interval_ms,
                DeviceStatus::Pending.as_str()
            ],
        ) {
            Ok(_) => Ok(true),
            Err(e) if is_constraint(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn device_find(&self, user_code: &Hash, now: Millis) -> Result<Option<DeviceRow>, OidcError> {
        let conn = self.0.get()?;
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {DEVICE} FROM oidc_devices \
                 WHERE user_code_hash = ?1 AND status = 'pending' AND expires_at > ?2"
            ))?
            .query_row(params![&user_code[..], now], device)
            .optional()?)
    }

    fn device_approve(
        &self,
        user_code: &Hash,
        g: &GrantRow,
        now: Millis,
    ) -> Result<bool, OidcError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction()?;
        Self::insert_grant(&tx, g)?;
        let n = tx.execute(
            "UPDATE oidc_devices SET status = 'approved', grant_id = ?2 \
             WHERE user_code_hash = ?1 AND status = 'pending' AND expires_at > ?3 \
               AND client_id = ?4",
            params![&user_code[..], &g.id.0[..], now, g.client_id],
        )?;
        if n == 0 {
            // Dropping the transaction rolls the grant back.
            return Ok(false);
        }
        tx.commit()?;
        Ok(true)
    }

    fn device_deny(&self, user_code: &Hash, now: Millis) -> Result<bool, OidcError> {
        Ok(self.0.get()?.execute(
            "UPDATE oidc_devices SET status = 'denied' \
             WHERE user_code_hash = ?1 AND status = 'pending' AND expires_at > ?2",
            params![&user_code[..], now],
        )? > 0)
    }

    fn device_poll(&self, d: &Hash, client: &str, now: Millis) -> Result<DevicePoll, OidcError> {
        let mut conn = self.0.get()?;
        // One write transaction, so the grant an approval names cannot be
        // revoked between the poll that collects it and its read.
        let conn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let on_time = "device_hash = ?1 AND client_id = ?2 AND expires_at > ?3 \
                       AND (last_poll_at IS NULL OR last_poll_at + interval_ms <= ?3)";
        let mut stmt = conn.prepare_cached(&format!(
            "UPDATE oidc_devices SET status = 'used', last_poll_at = ?3 \
             WHERE {on_time} AND status = 'approved' RETURNING grant_id"
        ))?;
        let collected = returning(&mut stmt, params![&d[..], client, now], |r| {
            r.get::<_, Option<Vec<u8>>>(0)
        })?;
        if let Some(id) = collected.into_iter().next() {
            let id = id
                .as_deref()
                .and_then(GrantId::from_slice)
                .ok_or_else(|| OidcError::from(bad(0, "approved without a grant")))?;
            drop(stmt);
            let grant = Self::find_grant(&conn, &id)?;
            conn.commit()?;
            return Ok(DevicePoll::Approved(grant));
        }
        drop(stmt);
        let waited = conn.execute(
            &format!(
                "UPDATE oidc_devices SET last_poll_at = ?3 WHERE {on_time} AND status = 'pending'"
            ),
            params![&d[..], client, now],
        )?;
        if waited > 0 {
            conn.commit()?;
            return Ok(DevicePoll::Pending);
        }
        let row = conn
            .prepare_cached(&format!(
                "SELECT {DEVICE} FROM oidc_devices WHERE device_hash = ?1 AND client_id = ?2"
            ))?
            .query_row(params![&d[..], client], device)
            .optional()?;
        let poll = classify_device(row.as_ref(), now);
        if poll == DevicePoll::SlowDown {
            conn.execute(
                "UPDATE oidc_devices SET interval_ms = interval_ms + 5000 WHERE device_hash = ?1",
                [&d[..]],
            )?;
        }
        conn.commit()?;
        Ok(poll)
    }

    fn logout_next(&self) -> Result<Option<Millis>, OidcError> {
        Ok(self
            .0
            .get()?
            .prepare_cached("SELECT min(next_at) FROM oidc_logouts")?
            .query_row([], |r| r.get(0))?)
    }

    fn logout_claim(
        &self,
        now: Millis,
        until: Millis,
        busy: &[String],
    ) -> Result<Option<LogoutRow>, OidcError> {
        let busy = serde_json::to_string(busy).map_err(|e| {
            OidcError::Db(crate::db::DbError::Invalid(format!("busy clients: {e}")))
        })?;
        let conn = self.0.get()?;
        // The due check is repeated outside the subquery: of two senders
        // that picked the same row, the second finds it not due any more.
        let mut stmt = conn.prepare_cached(
            "UPDATE oidc_logouts SET next_at = ?2, attempts = attempts + 1 \
             WHERE (client_id, sid) = (SELECT client_id, sid FROM oidc_logouts \
                 WHERE next_at <= ?1 AND client_id NOT IN (SELECT value FROM json_each(?3)) \
                 ORDER BY next_at LIMIT 1) \
               AND next_at <= ?1 \
             RETURNING client_id, sid, subject, attempts, created_at",
        )?;
        let rows = returning(&mut stmt, params![now, until, busy], |r| {
            Ok(LogoutRow {
                client_id: r.get(0)?,
                sid: r.get(1)?,
                subject: r.get(2)?,
                attempts: r.get(3)?,
                created_at: r.get(4)?,
            })
        })?;
        Ok(rows.into_iter().next())
    }

    fn logout_retry(&self, client: &str, sid: &str, at: Millis) -> Result<(), OidcError> {
        self.0.get()?.execute(
            "UPDATE oidc_logouts SET next_at = ?3 \
             WHERE client_id = ?1 AND (sid = ?2 OR next_at < ?3)",
            params![client, sid, at],
        )?;
        Ok(())
    }

    fn logout_delete(&self, client: &str, sid: &str) -> Result<bool, OidcError> {
        Ok(self.0.get()?.execute(
            "DELETE FROM oidc_logouts WHERE client_id = ?1 AND sid = ?2",
            params![client, sid],
        )? > 0)
    }

    fn delete_expired(&self, now: Millis, n: usize) -> Result<usize, OidcError> {
        let conn = self.0.get()?;
        let mut total = conn
            .prepare_cached(
                "DELETE FROM oidc_logouts WHERE (client_id, sid) IN \
                 (SELECT client_id, sid FROM oidc_logouts WHERE created_at <= ?1 LIMIT ?2)",
            )?
            .execute(params![
                now.saturating_sub(super::millis(super::LOGOUT_MAX_AGE)),
                limit(n)
            ])?;
        for sql in [
            "DELETE FROM oidc_tokens WHERE hash IN \
             (SELECT hash FROM oidc_tokens WHERE expires_at <= ?1 LIMIT ?2)",
            "DELETE FROM oidc_codes WHERE hash IN \
             (SELECT hash FROM oidc_codes WHERE expires_at <= ?1 LIMIT ?2)",
            "DELETE FROM oidc_devices WHERE device_hash IN \
             (SELECT device_hash FROM oidc_devices WHERE expires_at <= ?1 LIMIT ?2)",
            "DELETE FROM oidc_grants WHERE id IN \
             (SELECT id FROM oidc_grants WHERE expires_at <= ?1 LIMIT ?2)",
            "DELETE FROM oidc_keys WHERE kid IN (SELECT kid FROM oidc_keys \
             WHERE retired_at IS NOT NULL AND published_until <= ?1 LIMIT ?2)",
        ] {
            total += conn.prepare_cached(sql)?.execute(params![now, limit(n)])?;
        }
        Ok(total)
    }

    fn client_create(&self, c: &ClientRow) -> Result<bool, OidcError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            &format!(
                "INSERT INTO oidc_clients ({CLIENT}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                 ?15, ?16, ?17, ?18, ?19) \
                 ON CONFLICT (id) DO NOTHING"
            ),
            params![
                c.id,
                c.name,
                c.secret_hash.as_ref().map(|h| &h[..]),
                to_json_list(&c.redirect_uris),
                to_json_list(&c.groups),
                c.two_factor,
                c.pkce_required,
                c.signing_alg,
                c.offline_access,
                c.claims_in_id_token,
                c.device_grant,
                c.launch_url,
                c.created_at,
                c.secret_set_at,
                c.frontchannel_logout_uri,
                c.frontchannel_logout_session_required,
                c.backchannel_logout_uri,
                c.backchannel_logout_session_required,
                to_json_list(&c.post_logout_redirect_uris)
            ],
        )?;
        if n == 1 {
            forget_grants_of(&tx, &c.id)?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    fn client_find(&self, id: &str) -> Result<Option<ClientRow>, OidcError> {
        let conn = self.0.get()?;
        Ok(conn
            .prepare_cached(&format!("SELECT {CLIENT} FROM oidc_clients WHERE id = ?1"))?
            .query_row([id], client)
            .optional()?)
    }

    fn client_list(&self) -> Result<Vec<ClientRow>, OidcError> {
        let conn = self.0.get()?;
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {CLIENT} FROM oidc_clients ORDER BY id"))?;
        let rows = stmt.query_map([], client)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn client_set_secret(&self, id: &str, h: &Hash, now: Millis) -> Result<bool, OidcError> {
        Ok(self.0.get()?.execute(
            "UPDATE oidc_clients SET secret_hash = ?2, secret_set_at = ?3 \
             WHERE id = ?1 AND secret_hash IS NOT NULL",
            params![id, &h[..], now],
        )? == 1)
    }

    fn client_delete(&self, id: &str, end_grants: bool) -> Result<bool, OidcError> {
        let mut conn = self.0.get()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if tx.execute("DELETE FROM oidc_clients WHERE id = ?1", [id])? == 0 {
            return Ok(false);
        }
        if end_grants {
            forget_grants_of(&tx, id)?;
        }
        tx.commit()?;
        Ok(true)
    }
}

/// Deletes every grant of the client `id` and its waiting device codes: a
/// deleted client's, and a new client's of the same id (a sign-in that
/// was under way while the old one was deleted may have made a grant
/// after the delete: it must not come back to life with the new client).
/// The codes, tokens and device approvals of each grant go with it (ON
/// DELETE CASCADE); a device still waiting has no grant.
fn forget_grants_of(tx: &rusqlite::Transaction<'_>, id: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM oidc_grants WHERE client_id = ?1", [id])?;
    tx.execute("DELETE FROM oidc_devices WHERE client_id = ?1", [id])?;
    Ok(())
}

/// The statement that queues a back-channel logout notice for each client
/// and session of the grants `condition` (on `g`, the grants) selects,
/// whose user has a `sub` (one who never had an ID token has no session at
/// any app to end); `now` is the parameter holding the time. The same
/// text serves both databases (their placeholders differ only in the
/// caller's `condition` and `now`).
pub(super) fn queue_logouts(condition: &str, now: &str) -> String {
    format!(
        "INSERT INTO oidc_logouts (client_id, sid, subject, created_at, next_at, attempts) \
         SELECT DISTINCT g.client_id, g.sid, s.subject, {now}, {now}, 0 \
         FROM oidc_grants g JOIN oidc_subjects s ON s.user_id = g.user_id \
         WHERE {condition} \
         ON CONFLICT DO NOTHING"
    )
}

/// Why a code was not redeemed, from its row, shared by both stores.
pub(super) fn classify_code(row: Option<CodeState>, c: &CodeClaim<'_>, now: Millis) -> CodeTake {
    let Some(row) = row else {
        return CodeTake::Unknown;
    };
    if row.used_at.is_some() {
        CodeTake::Reused(row.grant)
    } else if row.expires_at <= now {
        CodeTake::Expired
    } else if row.client_id != c.client_id {
        CodeTake::Mismatch("client")
    } else if row.redirect_uri != c.redirect_uri {
        CodeTake::Mismatch("redirect_uri")
    } else if row.challenge.as_deref() != c.challenge {
        CodeTake::Mismatch("code_verifier")
    } else {
        // It matched after all: it was redeemed between the two statements.
        CodeTake::Reused(row.grant)
    }
}

/// Why a refresh token was not used, shared by both stores.
pub(super) fn classify_refresh(
    found: Option<(TokenRow, GrantRow)>,
    client: &str,
    now: Millis,
) -> RefreshTake {
    match found {
        Some((t, g)) if t.kind == TokenKind::Refresh => {
            if g.client_id != client {
                RefreshTake::OtherClient
            } else if t.used_at.is_some() {
                RefreshTake::Reused(g.id)
            } else if t.expires_at <= now {
                RefreshTake::Expired
            } else {
                // Used between the two statements.
                RefreshTake::Reused(g.id)
            }
        }
        _ => RefreshTake::Unknown,
    }
}

/// What a poll that collected nothing and found nothing pending came to,
/// shared by both stores.
pub(super) fn classify_device(row: Option<&DeviceRow>, now: Millis) -> DevicePoll {
    let Some(d) = row else {
        return DevicePoll::Unknown;
    };
    if d.expires_at <= now {
        return DevicePoll::Expired;
    }
    match d.status {
        DeviceStatus::Denied => DevicePoll::Denied,
        DeviceStatus::Used => match d.grant_id {
            Some(g) => DevicePoll::Reused(g),
            None => DevicePoll::Unknown,
        },
        // Pending or approved, yet neither update matched: too soon.
        DeviceStatus::Pending | DeviceStatus::Approved => DevicePoll::SlowDown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(pool: &Pool, name: &str) -> UserId {
        pool.get()
            .expect("conn")
            .query_row(
                "INSERT INTO users (username, password_hash, created_at, password_changed_at) \
                 VALUES (?1, 'x', 0, 0) RETURNING id",
                [name],
                |r| r.get(0),
            )
            .expect("user")
    }

    #[test]
    fn the_sqlite_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = crate::db::open(&dir.path().join("g.db"), 2).expect("open");
        let (a, b) = (user(&pool, "alice"), user(&pool, "bob"));
        super::super::store::conformance::run(&SqliteOidc(pool), a, b);
    }

    #[test]
    fn deleting_a_user_ends_their_grants_and_subject() {
        let dir = tempfile::tempdir().expect("dir");
        let pool = crate::db::open(&dir.path().join("g.db"), 2).expect("open");
        let a = user(&pool, "alice");
        let store = SqliteOidc(pool.clone());
        assert_eq!(store.subject(a, "s1").expect("made"), "s1");
        let g = GrantRow {
            id: GrantId::random(),
            client_id: "app".into(),
            user_id: a,
            sid: "sid".into(),
            scopes: "openid".into(),
            nonce: None,
            auth_time: 0,
            methods: "pwd".into(),
            created_at: 0,
            expires_at: i64::MAX,
        };
        let code = CodeRow {
            hash: [9; 32],
            grant_id: g.id,
            redirect_uri: "https://a/".into(),
            challenge: None,
            expires_at: i64::MAX,
        };
        store.code_create(&g, &code).expect("code");
        pool.get()
            .expect("conn")
            .execute("DELETE FROM users WHERE id = ?1", [a])
            .expect("delete");
        assert!(!store.grant_delete(&g.id).expect("gone with the user"));
        // The id SQLite may hand out again gets a new subject: `sub` is
        // never reused for someone else.
        let again = user(&pool, "mallory");
        assert_eq!(again, a, "SQLite reuses the highest id");
        assert_eq!(store.subject(again, "s2").expect("new"), "s2");
    }
}
