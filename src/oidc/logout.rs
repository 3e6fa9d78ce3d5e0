//! Telling the clients that a session ended, both ways the OpenID
//! specifications give:
//!
//! - **Front-channel** (OpenID Connect Front-Channel Logout 1.0): when the
//!   user signs out in the browser, [`Provider::end_session`] returns, for
//!   each client the session had signed in to that registered a
//!   `frontchannel_logout_uri`, the URL the signed-out page loads in a
//!   hidden frame (`iss` and `sid` added, unless the client said it does
//!   not need them) and its origin: the one the page's
//!   `Content-Security-Policy` lets it frame.
//! - **Back-channel** (OpenID Connect Back-Channel Logout 1.0): every
//!   statement that ends grants (signing out, `end_session`, an ended
//!   session, a new password, a disabled or deleted user, ...) queues a
//!   notice per client and session in the same transaction, with the
//!   user's `sub` as it was then ([`LogoutRow`]). A [`Sender`] (a few
//!   background threads, never a request thread) claims due notices,
//!   signs a logout token for each ([`Provider::logout_token`]) and POSTs
//!   it to the client's `backchannel_logout_uri`, with short timeouts and
//!   at most [`MAX_ATTEMPTS`] tries. Only one notice per client is in
//!   flight in a process, so a client that accepts and never answers holds
//!   one sender thread for one timeout at a time, and nothing else; the
//!   queue is in the database, so what is waiting costs no memory,
//!   survives a restart, and a `gatehouse` command's notices are sent by
//!   the server. A [`Bell`] wakes the senders when this process queued
//!   something; others' notices are found within [`POLL`].
//!
//! A logout token is typed `logout+jwt` and carries no `nonce`, and
//! [`KeyRing::verify`](super::KeyRing::verify) accepts only `JWT`: one can
//! never pass for an ID token (an `id_token_hint`), nor an ID token for a
//! logout token at a client that checks the type (Back-Channel Logout
//! §4.1, cross-JWT confusion).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::clients::{Client, web_origin};
use super::grants::with_query;
use super::store::LogoutRow;
use super::{LOGOUT_MAX_AGE, OidcError, Provider, millis};
use crate::clock::{self, Millis};

/// The `events` member that makes a JWT a logout token (Back-Channel
/// Logout §2.4).
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The `typ` header of a logout token (Back-Channel Logout §2.4).
pub const LOGOUT_TOKEN_TYPE: &str = "logout+jwt";

/// How long a logout token is good for: it is sent at once, and a copy
/// that leaks should be useless soon (the specification suggests minutes).
pub const LOGOUT_TOKEN_LIFETIME: Duration = Duration::from_secs(120);

/// How many times a notice is tried before it is given up (logged).
pub const MAX_ATTEMPTS: i64 = 3;

/// How long a sender waits to connect to a client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one delivery may take in all (connect, send, the answer's
/// head): a client slower than this is counted as failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a claimed notice is left to its sender before another may
/// take it (a sender that died mid-send): well past [`SEND_TIMEOUT`].
const LEASE: Duration = Duration::from_secs(30);

/// When a failed notice is tried again, by the attempt that failed.
const RETRY_AFTER: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(30)];

/// How often an idle sender looks for notices queued by another process
/// (a `gatehouse` command, another instance): this process's own wake it
/// at once.
pub const POLL: Duration = Duration::from_secs(5);

/// What the signed-out page loads for one client (Front-Channel Logout
/// §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontChannel {
    /// The client's name (the frame's title).
    pub client_name: String,
    /// The URL to load, `iss` and `sid` added when the client wants them.
    pub url: String,
    /// Its origin (`https://app.lan`, `http://127.0.0.1:8080`), as a
    /// `frame-src` source.
    pub origin: String,
}

impl Provider {
    /// Ends every grant of the gatehouse session `sid` (sign-out, or
    /// `end_session`): their tokens stop working at once, and each client
    /// with a `backchannel_logout_uri` is told (queued in the same
    /// transaction, sent by the [`Sender`](Sender)).
    /// Returns the front-channel logout frames (OpenID Connect
    /// Front-Channel Logout 1.0) of the clients the session had signed in
    /// to that registered one.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn end_session(&self, sid: &str) -> Result<Vec<FrontChannel>, OidcError> {
        let ended = self
            .store()
            .grants_delete_for_session(sid, crate::clock::now())?;
        self.bell().ring();
        Ok(self.front_channels(&ended, sid))
    }

    /// The front-channel logout frames for the clients `ended` (those the
    /// ended session `sid` had signed in to), for those that registered a
    /// `frontchannel_logout_uri`: the file's and those made by an
    /// administrator (a client the store cannot give now is left out, and
    /// logged: the session has ended either way).
    fn front_channels(&self, ended: &[String], sid: &str) -> Vec<FrontChannel> {
        ended
            .iter()
            .filter_map(|id| match self.client(id) {
                Ok(c) => c,
                Err(e) => {
                    crate::logging::line(&format!(
                        "oidc frontchannel logout left out client={} detail={}",
                        crate::logging::quote(id),
                        crate::logging::quote(&e.to_string())
                    ));
                    None
                }
            })
            .filter_map(|c| {
                let uri = c.frontchannel_logout_uri.as_deref()?;
                let origin = web_origin(uri)?;
                let url = if c.frontchannel_logout_session_required {
                    with_query(uri, &[("iss", self.issuer()), ("sid", sid)])
                } else {
                    uri.to_owned()
                };
                Some(FrontChannel {
                    client_name: c.name.clone(),
                    url,
                    origin,
                })
            })
            .collect()
    }

    /// A logout token (Back-Channel Logout §2.4) telling `client` that the
    /// session `sid` of the user `subject` ended: signed with the current
    /// key of the client's algorithm, as its ID tokens are; `typ`
    /// `logout+jwt`; `iss`, `aud`, `iat`, a short `exp`, a fresh `jti`,
    /// `sub`, `sid` and the back-channel logout event; never a `nonce`.
    ///
    /// # Errors
    ///
    /// [`OidcError::Key`] when the key cannot be had or used; database
    /// failures.
    pub fn logout_token(
        &self,
        client: &Client,
        subject: &str,
        sid: &str,
        now: Millis,
    ) -> Result<String, OidcError> {
        let iat = now / 1000;
        let claims = json!({
            "iss": self.issuer(),
            "aud": client.id,
            "iat": iat,
            "exp": iat.saturating_add(super::seconds(LOGOUT_TOKEN_LIFETIME)),
            "jti": URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<16>()),
            "sub": subject,
            "sid": sid,
            "events": { BACKCHANNEL_EVENT: {} },
        });
        self.keys()
            .signing_key(client.signing_alg)?
            .sign_typed(&claims, LOGOUT_TOKEN_TYPE)
    }
}

/// Wakes the back-channel senders: rung after grants end in this process
/// (and by a sender done with a client, so another may take that client's
/// next notice). Cheap to clone; one per provider.
#[derive(Clone, Default)]
pub struct Bell(Arc<(Mutex<u64>, Condvar)>);

impl std::fmt::Debug for Bell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bell")
    }
}

impl Bell {
    /// Wakes every waiting sender.
    pub fn ring(&self) {
        let (count, wake) = &*self.0;
        let mut n = count.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.wrapping_add(1);
        wake.notify_all();
    }

    /// How many times it has rung (what [`wait`](Self::wait) compares).
    fn rung(&self) -> u64 {
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until it rings after `seen` (at once if it already has) or
    /// `timeout` passes; returns the count now.
    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let (count, wake) = &*self.0;
        let guard = count.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = wake
            .wait_timeout_while(guard, timeout, |n| *n == seen)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// What one delivery came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The client answered 2xx.
    Sent(u16),
    /// Nothing to send (the client is gone or has no back-channel URI).
    Nothing,
    /// Not worth trying again: the client refused the token (4xx), or the
    /// notice is too old to matter.
    Refused(String),
    /// Try again later: no answer, a timeout, a 5xx, a key that could not
    /// sign.
    Failed(String),
}

/// The back-channel logout sender: claims due notices from the store and
/// delivers them. One is shared by a few threads ([`Sender::run`] on
/// each); the HTTP client is ureq with short timeouts, no redirects
/// followed, nothing of the answer read but its status.
pub struct Sender {
    provider: Provider,
    agent: ureq::Agent,
    /// The clients a notice is being delivered to in this process.
    busy: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender for `provider`'s notices.
    pub fn new(provider: Provider) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(SEND_TIMEOUT))
            .user_agent("gatehouse")
            .build()
            .into();
        Self {
            provider,
            agent,
            busy: Mutex::new(Vec::new()),
        }
    }

    /// One sender thread's loop: delivers what is due, then waits for the
    /// bell, the next notice's time or [`POLL`], until `stop` (checked
    /// between deliveries; the caller rings the bell after setting it).
    pub fn run(&self, stop: &AtomicBool) {
        let bell = self.provider.bell().clone();
        let mut seen = bell.rung();
        while !stop.load(Ordering::SeqCst) {
            loop {
                match self.deliver_one() {
                    Ok(true) if !stop.load(Ordering::SeqCst) => {}
                    Ok(_) => break,
                    Err(e) => {
                        crate::logging::line(&format!(
                            "oidc backchannel queue failed detail={}",
                            crate::logging::quote(&e.to_string())
                        ));
                        break;
                    }
                }
            }
            let now = clock::now();
            // A notice due now that this sender could not claim belongs to
            // a client another thread is busy with: the bell rings when it
            // is done.
            let wait = match self.provider.store().logout_next() {
                Ok(Some(at)) if at > now => {
                    Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(POLL)
                }
                _ => POLL,
            };
            seen = bell.wait(seen, wait);
        }
    }

    /// Claims and delivers one due notice; `false` when none could be
    /// claimed.
    ///
    /// # Errors
    ///
    /// Database failures (the notice then waits for its lease to end).
    pub fn deliver_one(&self) -> Result<bool, OidcError> {
        let store = self.provider.store();
        let now = clock::now();
        let row = {
            // Claimed under the lock, so two threads of this process never
            // deliver to one client at once.
            let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(row) = store.logout_claim(now, now.saturating_add(millis(LEASE)), &busy)?
            else {
                return Ok(false);
            };
            busy.push(row.client_id.clone());
            row
        };
        let outcome = self.deliver(&row, now);
        {
            let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(at) = busy.iter().position(|c| *c == row.client_id) {
                busy.swap_remove(at);
            }
        }
        self.provider.bell().ring();
        let client = crate::logging::quote(&row.client_id);
        match outcome {
            Outcome::Sent(status) => {
                crate::logging::line(&format!(
                    "oidc backchannel logout sent client={client} status={status}"
                ));
                store.logout_delete(&row.client_id, &row.sid)?;
            }
            Outcome::Nothing => {
                store.logout_delete(&row.client_id, &row.sid)?;
            }
            Outcome::Refused(why) => {
                crate::logging::line(&format!(
                    "oidc backchannel logout refused client={client} detail={}",
                    crate::logging::quote(&why)
                ));
                store.logout_delete(&row.client_id, &row.sid)?;
            }
            Outcome::Failed(why) if row.attempts < MAX_ATTEMPTS => {
                let after = RETRY_AFTER
                    .get(usize::try_from(row.attempts - 1).unwrap_or(0))
                    .copied()
                    .unwrap_or(POLL);
                crate::logging::line(&format!(
                    "oidc backchannel logout failed client={client} attempt={} retry_in={}s detail={}",
                    row.attempts,
                    after.as_secs(),
                    crate::logging::quote(&why)
                ));
                store.logout_retry(
                    &row.client_id,
                    &row.sid,
                    clock::now().saturating_add(millis(after)),
                )?;
            }
            Outcome::Failed(why) => {
                crate::logging::line(&format!(
                    "oidc backchannel logout given up client={client} attempts={} detail={}",
                    row.attempts,
                    crate::logging::quote(&why)
                ));
                store.logout_delete(&row.client_id, &row.sid)?;
                // Its other notices wait too (the given-up one is gone).
                let last = RETRY_AFTER.last().copied().unwrap_or(POLL);
                store.logout_retry(
                    &row.client_id,
                    &row.sid,
                    clock::now().saturating_add(millis(last)),
                )?;
            }
        }
        Ok(true)
    }

    /// Signs and POSTs the logout token of `row` (never logged).
    fn deliver(&self, row: &LogoutRow, now: Millis) -> Outcome {
        // The file's clients and those made by an administrator; a store
        // that cannot say now is tried again later.
        let client = match self.provider.client(&row.client_id) {
            Ok(Some(c)) => c,
            Ok(None) => return Outcome::Nothing,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let Some(uri) = client.backchannel_logout_uri.as_deref() else {
            return Outcome::Nothing;
        };
        if now.saturating_sub(row.created_at) > millis(LOGOUT_MAX_AGE) {
            return Outcome::Refused("queued too long ago".into());
        }
        let token = match self
            .provider
            .logout_token(&client, &row.subject, &row.sid, now)
        {
            Ok(t) => t,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        match self
            .agent
            .post(uri)
            .send_form([("logout_token", token.as_str())])
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match status {
                    200..=299 => Outcome::Sent(status),
                    // Too early or too many: worth another try.
                    408 | 425 | 429 => Outcome::Failed(format!("status {status}")),
                    400..=499 => Outcome::Refused(format!("status {status}")),
                    _ => Outcome::Failed(format!("status {status}")),
                }
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bell_wakes_a_waiter_and_is_not_missed_when_rung_before_the_wait() {
        let bell = Bell::default();
        let seen = bell.rung();
        bell.ring();
        let started = std::time::Instant::now();
        assert_eq!(bell.wait(seen, Duration::from_secs(10)), seen + 1);
        assert!(started.elapsed() < Duration::from_secs(1));
        let other = bell.clone();
        let waiter = std::thread::spawn(move || other.wait(seen + 1, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        bell.ring();
        assert_eq!(waiter.join().expect("woke"), seen + 2);
        let started = std::time::Instant::now();
        assert_eq!(bell.wait(seen + 2, Duration::from_millis(50)), seen + 2);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
