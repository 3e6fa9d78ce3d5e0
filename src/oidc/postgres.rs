//! The provider's statements on PostgreSQL (tables made by
//! `db/postgres.rs`): the same as SQLite's, so several instances share
//! codes, tokens and keys. A single use is one conditional `UPDATE ...
//! RETURNING`: of two instances racing, the row lock lets one through and
//! the other's re-checked condition fails.

use postgres::Row;
use postgres::types::{ToSql, Type};

use super::OidcError;
use super::sqlite::{classify_code, classify_device, classify_refresh, queue_logouts};
use super::store::{
    ClientRow, CodeClaim, CodeRow, CodeState, CodeTake, DevicePoll, DeviceRow, DeviceStatus,
    GrantId, GrantRow, Hash, KeyRow, LogoutRow, RefreshTake, Store, TokenKind, TokenRow,
    from_json_list, to_json_list,
};
use crate::clock::Millis;
use crate::db::DbError;
use crate::db::postgres::{PgConn, PgPool};
use crate::identity::UserId;

/// The provider's tables in PostgreSQL.
pub struct PostgresOidc(pub PgPool);

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

/// The SQLSTATE of a unique-constraint violation.
const UNIQUE_VIOLATION: &str = "23505";

type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

fn corrupt(what: &str) -> OidcError {
    OidcError::Db(DbError::Invalid(format!(
        "oidc: stored {what} is malformed"
    )))
}

fn grant_id(row: &Row, i: usize) -> Result<GrantId, OidcError> {
    let bytes: Vec<u8> = row.try_get(i)?;
    GrantId::from_slice(&bytes).ok_or_else(|| corrupt("grant id"))
}

fn hash(row: &Row, i: usize) -> Result<Hash, OidcError> {
    let bytes: Vec<u8> = row.try_get(i)?;
    bytes.try_into().map_err(|_| corrupt("hash"))
}

fn grant(row: &Row, at: usize) -> Result<GrantRow, OidcError> {
    Ok(GrantRow {
        id: grant_id(row, at)?,
        client_id: row.try_get(at + 1)?,
        user_id: row.try_get(at + 2)?,
        sid: row.try_get(at + 3)?,
        scopes: row.try_get(at + 4)?,
        nonce: row.try_get(at + 5)?,
        auth_time: row.try_get(at + 6)?,
        methods: row.try_get(at + 7)?,
        created_at: row.try_get(at + 8)?,
        expires_at: row.try_get(at + 9)?,
    })
}

fn token(row: &Row, at: usize) -> Result<TokenRow, OidcError> {
    let kind: String = row.try_get(at + 2)?;
    Ok(TokenRow {
        hash: hash(row, at)?,
        grant_id: grant_id(row, at + 1)?,
        kind: TokenKind::parse(&kind).ok_or_else(|| corrupt("token kind"))?,
        scopes: row.try_get(at + 3)?,
        created_at: row.try_get(at + 4)?,
        expires_at: row.try_get(at + 5)?,
        used_at: row.try_get(at + 6)?,
    })
}

fn device(row: &Row) -> Result<DeviceRow, OidcError> {
    let status: String = row.try_get(8)?;
    let grant: Option<Vec<u8>> = row.try_get(9)?;
    Ok(DeviceRow {
        device_hash: hash(row, 0)?,
        user_code_hash: hash(row, 1)?,
        client_id: row.try_get(2)?,
        scopes: row.try_get(3)?,
        created_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        interval_ms: row.try_get(6)?,
        last_poll_at: row.try_get(7)?,
        status: DeviceStatus::parse(&status).ok_or_else(|| corrupt("device status"))?,
        grant_id: match grant {
            None => None,
            Some(b) => Some(GrantId::from_slice(&b).ok_or_else(|| corrupt("grant id"))?),
        },
    })
}

fn key(row: &Row) -> Result<KeyRow, OidcError> {
    Ok(KeyRow {
        kid: row.try_get(0)?,
        alg: row.try_get(1)?,
        sealed: row.try_get(2)?,
        public_jwk: row.try_get(3)?,
        created_at: row.try_get(4)?,
        retired_at: row.try_get(5)?,
        published_until: row.try_get(6)?,
    })
}

fn client(row: &Row) -> Result<ClientRow, OidcError> {
    let list = |i: usize| -> Result<Vec<String>, OidcError> {
        let text: String = row.try_get(i)?;
        from_json_list(&text).ok_or_else(|| corrupt("client list"))
    };
    let secret: Option<Vec<u8>> = row.try_get(2)?;
    Ok(ClientRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        secret_hash: match secret {
            None => None,
            Some(b) => Some(b.try_into().map_err(|_| corrupt("client secret hash"))?),
        },
        redirect_uris: list(3)?,
        groups: list(4)?,
        two_factor: row.try_get(5)?,
        pkce_required: row.try_get(6)?,
        signing_alg: row.try_get(7)?,
        offline_access: row.try_get(8)?,
        claims_in_id_token: row.try_get(9)?,
        device_grant: row.try_get(10)?,
        launch_url: row.try_get(11)?,
        created_at: row.try_get(12)?,
        secret_set_at: row.try_get(13)?,
        frontchannel_logout_uri: row.try_get(14)?,
        frontchannel_logout_session_required: row.try_get(15)?,
        backchannel_logout_uri: row.try_get(16)?,
        backchannel_logout_session_required: row.try_get(17)?,
        post_logout_redirect_uris: list(18)?,
    })
}

impl PostgresOidc {
    fn client(&self) -> Result<PgConn, OidcError> {
        Ok(crate::db::postgres::client(&self.0)?)
    }

    fn insert_grant(
        client: &mut impl postgres::GenericClient,
        g: &GrantRow,
    ) -> Result<(), OidcError> {
        let id = &g.id.0[..];
        client.execute_typed(
            &format!(
                "INSERT INTO oidc_grants ({GRANT}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            &[
                (&id, Type::BYTEA),
                (&g.client_id, Type::TEXT),
                (&g.user_id, Type::INT8),
                (&g.sid, Type::TEXT),
                (&g.scopes, Type::TEXT),
                (&g.nonce, Type::TEXT),
                (&g.auth_time, Type::INT8),
                (&g.methods, Type::TEXT),
                (&g.created_at, Type::INT8),
                (&g.expires_at, Type::INT8),
            ],
        )?;
        Ok(())
    }

    fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, OidcError> {
        Ok(self.client()?.execute_typed(sql, params)?)
    }
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Store for PostgresOidc {
    fn keys(&self, now: Millis) -> Result<Vec<KeyRow>, OidcError> {
        self.client()?
            .query_typed(
                &format!(
                    "SELECT {KEY} FROM oidc_keys WHERE retired_at IS NULL OR published_until > $1 \
                     ORDER BY created_at, kid"
                ),
                &[(&now, Type::INT8)],
            )?
            .iter()
            .map(key)
            .collect()
    }

    fn key_add(&self, k: &KeyRow) -> Result<bool, OidcError> {
        Ok(self.execute(
            &format!(
                "INSERT INTO oidc_keys ({KEY}) VALUES ($1, $2, $3, $4, $5, NULL, NULL) \
                 ON CONFLICT DO NOTHING"
            ),
            &[
                (&k.kid, Type::TEXT),
                (&k.alg, Type::TEXT),
                (&k.sealed, Type::BYTEA),
                (&k.public_jwk, Type::TEXT),
                (&k.created_at, Type::INT8),
            ],
        )? == 1)
    }

    fn key_rotate(&self, k: &KeyRow, now: Millis, until: Millis) -> Result<(), OidcError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        tx.execute_typed(
            "UPDATE oidc_keys SET retired_at = $2, published_until = $3 \
             WHERE alg = $1 AND retired_at IS NULL",
            &[
                (&k.alg, Type::TEXT),
                (&now, Type::INT8),
                (&until, Type::INT8),
            ],
        )?;
        tx.execute_typed(
            &format!("INSERT INTO oidc_keys ({KEY}) VALUES ($1, $2, $3, $4, $5, NULL, NULL)"),
            &[
                (&k.kid, Type::TEXT),
                (&k.alg, Type::TEXT),
                (&k.sealed, Type::BYTEA),
                (&k.public_jwk, Type::TEXT),
                (&k.created_at, Type::INT8),
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn subject(&self, user: UserId, fresh: &str) -> Result<String, OidcError> {
        let row = self.client()?.query_typed_one(
            "INSERT INTO oidc_subjects (user_id, subject) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET subject = oidc_subjects.subject \
             RETURNING subject",
            &[(&user, Type::INT8), (&fresh, Type::TEXT)],
        )?;
        Ok(row.try_get(0)?)
    }

    fn code_create(&self, g: &GrantRow, code: &CodeRow) -> Result<(), OidcError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        Self::insert_grant(&mut tx, g)?;
        let (h, id) = (&code.hash[..], &code.grant_id.0[..]);
        tx.execute_typed(
            "INSERT INTO oidc_codes (hash, grant_id, redirect_uri, challenge, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                (&h, Type::BYTEA),
                (&id, Type::BYTEA),
                (&code.redirect_uri, Type::TEXT),
                (&code.challenge, Type::TEXT),
                (&code.expires_at, Type::INT8),
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn code_take(&self, c: &CodeClaim<'_>, now: Millis) -> Result<CodeTake, OidcError> {
        let mut client = self.client()?;
        let h = &c.hash[..];
        // The code is used and its grant read in one statement: a second
        // redemption racing this one can revoke the grant only after this
        // statement, never between the use and the read.
        let cols = GRANT
            .split(", ")
            .map(|c| format!("g.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let taken = client.query_typed_opt(
            &format!(
                "WITH used AS (\
                   UPDATE oidc_codes SET used_at = $2 \
                   WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 AND redirect_uri = $4 \
                     AND ((challenge IS NULL AND $5::text IS NULL) OR challenge = $5) \
                     AND grant_id IN (SELECT id FROM oidc_grants WHERE client_id = $3) \
                   RETURNING grant_id) \
                 SELECT {cols} FROM oidc_grants g JOIN used ON g.id = used.grant_id"
            ),
            &[
                (&h, Type::BYTEA),
                (&now, Type::INT8),
                (&c.client_id, Type::TEXT),
                (&c.redirect_uri, Type::TEXT),
                (&c.challenge, Type::TEXT),
            ],
        )?;
        if let Some(row) = taken {
            return Ok(CodeTake::Taken(grant(&row, 0)?));
        }
        let row = client
            .query_typed_opt(
                "SELECT c.grant_id, c.used_at, c.expires_at, c.redirect_uri, c.challenge, g.client_id \
                 FROM oidc_codes c JOIN oidc_grants g ON g.id = c.grant_id WHERE c.hash = $1",
                &[(&h, Type::BYTEA)],
            )?
            .map(|r| -> Result<_, OidcError> {
                Ok(CodeState {
                    grant: grant_id(&r, 0)?,
                    used_at: r.try_get(1)?,
                    expires_at: r.try_get(2)?,
                    redirect_uri: r.try_get(3)?,
                    challenge: r.try_get(4)?,
                    client_id: r.try_get(5)?,
                })
            })
            .transpose()?;
        Ok(classify_code(row, c, now))
    }

    fn token_create(&self, t: &TokenRow) -> Result<bool, OidcError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let (h, id) = (&t.hash[..], &t.grant_id.0[..]);
        // The foreign key locks the grant row: a revocation racing this
        // either finds the token and deletes it with the grant, or runs
        // first and this inserts nothing.
        let n = tx.execute_typed(
            "INSERT INTO oidc_tokens (hash, grant_id, kind, scopes, created_at, expires_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM oidc_grants WHERE id = $2)",
            &[
                (&h, Type::BYTEA),
                (&id, Type::BYTEA),
                (&t.kind.as_str(), Type::TEXT),
                (&t.scopes, Type::TEXT),
                (&t.created_at, Type::INT8),
                (&t.expires_at, Type::INT8),
            ],
        );
        let n = match n {
            // The grant went between the check and the key's lock.
            Err(e) if e.code().is_some_and(|c| c.code() == "23503") => return Ok(false),
            other => other?,
        };
        tx.execute_typed(
            "UPDATE oidc_grants SET expires_at = greatest(expires_at, $2) WHERE id = $1",
            &[(&id, Type::BYTEA), (&t.expires_at, Type::INT8)],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn token_find(&self, h: &Hash) -> Result<Option<(TokenRow, GrantRow)>, OidcError> {
        let cols = TOKEN
            .split(", ")
            .map(|c| format!("t.{c}"))
            .chain(GRANT.split(", ").map(|c| format!("g.{c}")))
            .collect::<Vec<_>>()
            .join(", ");
        let h = &h[..];
        self.client()?
            .query_typed_opt(
                &format!(
                    "SELECT {cols} FROM oidc_tokens t JOIN oidc_grants g ON g.id = t.grant_id \
                     WHERE t.hash = $1"
                ),
                &[(&h, Type::BYTEA)],
            )?
            .map(|r| Ok((token(&r, 0)?, grant(&r, 7)?)))
            .transpose()
    }

    fn refresh_take(&self, h: &Hash, client: &str, now: Millis) -> Result<RefreshTake, OidcError> {
        let mut conn = self.client()?;
        let hb = &h[..];
        // Used and its grant read in one statement, as a code.
        let cols = TOKEN
            .split(", ")
            .map(|c| format!("used.{c}"))
            .chain(GRANT.split(", ").map(|c| format!("g.{c}")))
            .collect::<Vec<_>>()
            .join(", ");
        let taken = conn.query_typed_opt(
            &format!(
                "WITH used AS (\
                   UPDATE oidc_tokens SET used_at = $2 \
                   WHERE hash = $1 AND kind = 'refresh' AND used_at IS NULL AND expires_at > $2 \
                     AND grant_id IN (SELECT id FROM oidc_grants WHERE client_id = $3) \
                   RETURNING {TOKEN}) \
                 SELECT {cols} FROM used JOIN oidc_grants g ON g.id = used.grant_id"
            ),
            &[
                (&hb, Type::BYTEA),
                (&now, Type::INT8),
                (&client, Type::TEXT),
            ],
        )?;
        if let Some(row) = taken {
            let ntoken = TOKEN.split(", ").count();
            return Ok(RefreshTake::Taken(Box::new((
                token(&row, 0)?,
                grant(&row, ntoken)?,
            ))));
        }
        drop(conn);
        Ok(classify_refresh(self.token_find(h)?, client, now))
    }

    fn token_delete(&self, h: &Hash) -> Result<bool, OidcError> {
        let h = &h[..];
        Ok(self.execute(
            "DELETE FROM oidc_tokens WHERE hash = $1",
            &[(&h, Type::BYTEA)],
        )? > 0)
    }

    fn grant_delete(&self, id: &GrantId) -> Result<bool, OidcError> {
        let id = &id.0[..];
        Ok(self.execute(
            "DELETE FROM oidc_grants WHERE id = $1",
            &[(&id, Type::BYTEA)],
        )? > 0)
    }

    fn grants_delete_for_session(&self, sid: &str, now: Millis) -> Result<Vec<String>, OidcError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        tx.execute_typed(
            &queue_logouts("g.sid = $1", "$2"),
            &[(&sid, Type::TEXT), (&now, Type::INT8)],
        )?;
        let mut clients = tx
            .query_typed(
                "DELETE FROM oidc_grants WHERE sid = $1 RETURNING client_id",
                &[(&sid, Type::TEXT)],
            )?
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        clients.sort();
        clients.dedup();
        Ok(clients)
    }

    fn grants_delete_for_user(
        &self,
        user: UserId,
        client_id: Option<&str>,
        now: Millis,
    ) -> Result<usize, OidcError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        tx.execute_typed(
            &queue_logouts(
                "g.user_id = $1 AND ($2::text IS NULL OR g.client_id = $2)",
                "$3",
            ),
            &[
                (&user, Type::INT8),
                (&client_id, Type::TEXT),
                (&now, Type::INT8),
            ],
        )?;
        let n = tx.execute_typed(
            "DELETE FROM oidc_grants WHERE user_id = $1 AND ($2::text IS NULL OR client_id = $2)",
            &[(&user, Type::INT8), (&client_id, Type::TEXT)],
        )?;
        tx.commit()?;
        Ok(count(n))
    }

    fn grants_delete_for_user_but(
        &self,
        user: UserId,
        keep_sid: &str,
        now: Millis,
    ) -> Result<usize, OidcError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        tx.execute_typed(
            &queue_logouts("g.user_id = $1 AND g.sid <> $2", "$3"),
            &[
                (&user, Type::INT8),
                (&keep_sid, Type::TEXT),
                (&now, Type::INT8),
            ],
        )?;
        let n = tx.execute_typed(
            "DELETE FROM oidc_grants WHERE user_id = $1 AND sid <> $2",
            &[(&user, Type::INT8), (&keep_sid, Type::TEXT)],
        )?;
        tx.commit()?;
        Ok(count(n))
    }

    fn grants_for_user(&self, user: UserId, now: Millis) -> Result<Vec<GrantRow>, OidcError> {
        self.client()?
            .query_typed(
                &format!(
                    "SELECT {GRANT} FROM oidc_grants WHERE user_id = $1 AND expires_at > $2 \
                     AND EXISTS (SELECT 1 FROM oidc_tokens t WHERE t.grant_id = oidc_grants.id) \
                     ORDER BY created_at DESC"
                ),
                &[(&user, Type::INT8), (&now, Type::INT8)],
            )?
            .iter()
            .map(|r| grant(r, 0))
            .collect()
    }

    fn device_create(&self, d: &DeviceRow) -> Result<bool, OidcError> {
        let (dh, uh) = (&d.device_hash[..], &d.user_code_hash[..]);
        let result = self.client()?.execute_typed(
            &format!(
                "INSERT INTO oidc_devices ({DEVICE}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 'pending', NULL)"
            ),
            &[
                (&dh, Type::BYTEA),
                (&uh, Type::BYTEA),
                (&d.client_id, Type::TEXT),
                (&d.scopes, Type::TEXT),
                (&d.created_at, Type::INT8),
                (&d.expires_at, Type::INT8),
                (&d.interval_ms, Type::INT8),
            ],
        );
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code().is_some_and(|c| c.code() == UNIQUE_VIOLATION) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn device_find(&self, user_code: &Hash, now: Millis) -> Result<Option<DeviceRow>, OidcError> {
        let uh = &user_code[..];
        self.client()?
            .query_typed_opt(
                &format!(
                    "SELECT {DEVICE} FROM oidc_devices \
                     WHERE user_code_hash = $1 AND status = 'pending' AND expires_at > $2"
                ),
                &[(&uh, Type::BYTEA), (&now, Type::INT8)],
            )?
            .as_ref()
            .map(device)
            .transpose()
    }

    fn device_approve(
        &self,
        user_code: &Hash,
        g: &GrantRow,
        now: Millis,
    ) -> Result<bool, OidcError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        Self::insert_grant(&mut tx, g)?;
        let (uh, id) = (&user_code[..], &g.id.0[..]);
        let n = tx.execute_typed(
            "UPDATE oidc_devices SET status = 'approved', grant_id = $2 \
             WHERE user_code_hash = $1 AND status = 'pending' AND expires_at > $3 \
               AND client_id = $4",
            &[
                (&uh, Type::BYTEA),
                (&id, Type::BYTEA),
                (&now, Type::INT8),
                (&g.client_id, Type::TEXT),
            ],
        )?;
        if n == 0 {
            // Dropping the transaction rolls the grant back.
            return Ok(false);
        }
        tx.commit()?;
        Ok(true)
    }

    fn device_deny(&self, user_code: &Hash, now: Millis) -> Result<bool, OidcError> {
        let uh = &user_code[..];
        Ok(self.execute(
            "UPDATE oidc_devices SET status = 'denied' \
             WHERE user_code_hash = $1 AND status = 'pending' AND expires_at > $2",
            &[(&uh, Type::BYTEA), (&now, Type::INT8)],
        )? > 0)
    }

    fn device_poll(&self, d: &Hash, client: &str, now: Millis) -> Result<DevicePoll, OidcError> {
        let mut conn = self.client()?;
        let dh = &d[..];
        let on_time = "device_hash = $1 AND client_id = $2 AND expires_at > $3 \
                       AND (last_poll_at IS NULL OR last_poll_at + interval_ms <= $3)";
        let params: &Params<'_> = &[
            (&dh, Type::BYTEA),
            (&client, Type::TEXT),
            (&now, Type::INT8),
        ];
        // Collected and its grant read in one statement, so the grant
        // cannot be revoked between the two.
        let cols = GRANT
            .split(", ")
            .map(|c| format!("g.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let collected = conn.query_typed_opt(
            &format!(
                "WITH used AS (\
                   UPDATE oidc_devices SET status = 'used', last_poll_at = $3 \
                   WHERE {on_time} AND status = 'approved' RETURNING grant_id) \
                 SELECT {cols} FROM used JOIN oidc_grants g ON g.id = used.grant_id"
            ),
            params,
        )?;
        if let Some(row) = collected {
            return Ok(DevicePoll::Approved(grant(&row, 0)?));
        }
        let waited = conn.execute_typed(
            &format!(
                "UPDATE oidc_devices SET last_poll_at = $3 WHERE {on_time} AND status = 'pending'"
            ),
            params,
        )?;
        if waited > 0 {
            return Ok(DevicePoll::Pending);
        }
        let row = conn
            .query_typed_opt(
                &format!(
                    "SELECT {DEVICE} FROM oidc_devices WHERE device_hash = $1 AND client_id = $2"
                ),
                &[(&dh, Type::BYTEA), (&client, Type::TEXT)],
            )?
            .as_ref()
            .map(device)
            .transpose()?;
        let poll = classify_device(row.as_ref(), now);
        if poll == DevicePoll::SlowDown {
            conn.execute_typed(
                "UPDATE oidc_devices SET interval_ms = interval_ms + 5000 WHERE device_hash = $1",
                &[(&dh, Type::BYTEA)],
            )?;
        }
        Ok(poll)
    }

    fn logout_next(&self) -> Result<Option<Millis>, OidcError> {
        Ok(self
            .client()?
            .query_typed_one("SELECT min(next_at) FROM oidc_logouts", &[])?
            .try_get(0)?)
    }

    fn logout_claim(
        &self,
        now: Millis,
        until: Millis,
        busy: &[String],
    ) -> Result<Option<LogoutRow>, OidcError> {
        // SKIP LOCKED: instances claiming at once take different rows; the
        // due check outside the subquery is re-read after a row lock, so
        // of two that picked the same row the second takes nothing.
        let busy: Vec<&str> = busy.iter().map(String::as_str).collect();
        let rows = self.client()?.query_typed(
            "UPDATE oidc_logouts SET next_at = $2, attempts = attempts + 1 \
             WHERE (client_id, sid) = (SELECT client_id, sid FROM oidc_logouts \
                 WHERE next_at <= $1 AND NOT (client_id = ANY($3)) \
                 ORDER BY next_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
               AND next_at <= $1 \
             RETURNING client_id, sid, subject, attempts, created_at",
            &[
                (&now, Type::INT8),
                (&until, Type::INT8),
                (&busy, Type::TEXT_ARRAY),
            ],
        )?;
        rows.first()
            .map(|r| {
                Ok(LogoutRow {
                    client_id: r.try_get(0)?,
                    sid: r.try_get(1)?,
                    subject: r.try_get(2)?,
                    attempts: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .transpose()
    }

    fn logout_retry(&self, client: &str, sid: &str, at: Millis) -> Result<(), OidcError> {
        self.execute(
            "UPDATE oidc_logouts SET next_at = $3 \
             WHERE client_id = $1 AND (sid = $2 OR next_at < $3)",
            &[(&client, Type::TEXT), (&sid, Type::TEXT), (&at, Type::INT8)],
        )?;
        Ok(())
    }

    fn logout_delete(&self, client: &str, sid: &str) -> Result<bool, OidcError> {
        Ok(self.execute(
            "DELETE FROM oidc_logouts WHERE client_id = $1 AND sid = $2",
            &[(&client, Type::TEXT), (&sid, Type::TEXT)],
        )? > 0)
    }

    fn delete_expired(&self, now: Millis, n: usize) -> Result<usize, OidcError> {
        let mut client = self.client()?;
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let stale = now.saturating_sub(super::millis(super::LOGOUT_MAX_AGE));
        let mut total = count(client.execute_typed(
            "DELETE FROM oidc_logouts WHERE (client_id, sid) IN (SELECT client_id, sid \
             FROM oidc_logouts WHERE created_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[(&stale, Type::INT8), (&limit, Type::INT8)],
        )?);
        // SKIP LOCKED: instances reaping at once take different rows.
        for sql in [
            "DELETE FROM oidc_tokens WHERE hash IN (SELECT hash FROM oidc_tokens \
             WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            "DELETE FROM oidc_codes WHERE hash IN (SELECT hash FROM oidc_codes \
             WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            "DELETE FROM oidc_devices WHERE device_hash IN (SELECT device_hash FROM oidc_devices \
             WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            "DELETE FROM oidc_grants WHERE id IN (SELECT id FROM oidc_grants \
             WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            "DELETE FROM oidc_keys WHERE kid IN (SELECT kid FROM oidc_keys \
             WHERE retired_at IS NOT NULL AND published_until <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ] {
            total += count(client.execute_typed(sql, &[(&now, Type::INT8), (&limit, Type::INT8)])?);
        }
        Ok(total)
    }

    fn client_create(&self, c: &ClientRow) -> Result<bool, OidcError> {
        let secret = c.secret_hash.as_ref().map(|h| &h[..]);
        let (uris, groups) = (to_json_list(&c.redirect_uris), to_json_list(&c.groups));
        let post_logout = to_json_list(&c.post_logout_redirect_uris);
        let mut conn = self.client()?;
        let mut tx = conn.transaction()?;
        let made = tx.execute_typed(
            &format!(
                "INSERT INTO oidc_clients ({CLIENT}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                 $15, $16, $17, $18, $19) \
                 ON CONFLICT (id) DO NOTHING"
            ),
            &[
                (&c.id, Type::TEXT),
                (&c.name, Type::TEXT),
                (&secret, Type::BYTEA),
                (&uris, Type::TEXT),
                (&groups, Type::TEXT),
                (&c.two_factor, Type::BOOL),
                (&c.pkce_required, Type::BOOL),
                (&c.signing_alg, Type::TEXT),
                (&c.offline_access, Type::BOOL),
                (&c.claims_in_id_token, Type::BOOL),
                (&c.device_grant, Type::BOOL),
                (&c.launch_url, Type::TEXT),
                (&c.created_at, Type::INT8),
                (&c.secret_set_at, Type::INT8),
                (&c.frontchannel_logout_uri, Type::TEXT),
                (&c.frontchannel_logout_session_required, Type::BOOL),
                (&c.backchannel_logout_uri, Type::TEXT),
                (&c.backchannel_logout_session_required, Type::BOOL),
                (&post_logout, Type::TEXT),
            ],
        )? == 1;
        if made {
            // A sign-in under way while a client of this id was deleted may
            // have made a grant after the delete: the new client inherits
            // nothing (see the SQLite store's `forget_grants_of`).
            forget_grants_of(&mut tx, &c.id)?;
        }
        tx.commit()?;
        Ok(made)
    }

    fn client_find(&self, id: &str) -> Result<Option<ClientRow>, OidcError> {
        self.client()?
            .query_typed_opt(
                &format!("SELECT {CLIENT} FROM oidc_clients WHERE id = $1"),
                &[(&id, Type::TEXT)],
            )?
            .as_ref()
            .map(client)
            .transpose()
    }

    fn client_list(&self) -> Result<Vec<ClientRow>, OidcError> {
        // `COLLATE "C"`: ordered by bytes, as SQLite orders them.
        self.client()?
            .query_typed(
                &format!("SELECT {CLIENT} FROM oidc_clients ORDER BY id COLLATE \"C\""),
                &[],
            )?
            .iter()
            .map(client)
            .collect()
    }

    fn client_set_secret(&self, id: &str, h: &Hash, now: Millis) -> Result<bool, OidcError> {
        let h = &h[..];
        Ok(self.execute(
            "UPDATE oidc_clients SET secret_hash = $2, secret_set_at = $3 \
             WHERE id = $1 AND secret_hash IS NOT NULL",
            &[(&id, Type::TEXT), (&h, Type::BYTEA), (&now, Type::INT8)],
        )? == 1)
    }

    fn client_delete(&self, id: &str, end_grants: bool) -> Result<bool, OidcError> {
        let mut conn = self.client()?;
        let mut tx = conn.transaction()?;
        if tx.execute_typed(
            "DELETE FROM oidc_clients WHERE id = $1",
            &[(&id, Type::TEXT)],
        )? == 0
        {
            return Ok(false);
        }
        if end_grants {
            forget_grants_of(&mut tx, id)?;
        }
        tx.commit()?;
        Ok(true)
    }
}

/// Deletes every grant of the client `id` (their codes, tokens and device
/// approvals go with them: ON DELETE CASCADE) and its waiting device
/// codes, which have no grant.
fn forget_grants_of(tx: &mut postgres::Transaction<'_>, id: &str) -> Result<(), OidcError> {
    tx.execute_typed(
        "DELETE FROM oidc_grants WHERE client_id = $1",
        &[(&id, Type::TEXT)],
    )?;
    tx.execute_typed(
        "DELETE FROM oidc_devices WHERE client_id = $1",
        &[(&id, Type::TEXT)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_store_passes_the_conformance_suite() {
        let Some(url) = crate::db::postgres::test_url() else {
            return;
        };
        let url = crate::db::postgres::scratch_schema(&url).expect("schema");
        let pool = crate::db::postgres::open_for_tests(&url, 2).expect("open");
        let mut users = Vec::new();
        for name in ["alice", "bob"] {
            let row = pool
                .get()
                .expect("conn")
                .query_one(
                    "INSERT INTO users (username, password_hash, created_at, password_changed_at) \
                     VALUES ($1, 'x', 0, 0) RETURNING id",
                    &[&name],
                )
                .expect("user");
            users.push(row.get::<_, i64>(0));
        }
        super::super::store::conformance::run(&PostgresOidc(pool), users[0], users[1]);
    }
}
