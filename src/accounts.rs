//! Every account operation and the rules it owns, called alike by the
//! pages, the JSON API, the admin page and the command line.
//!
//! - **Sign-in** ([`Accounts::attempt_sign_in`], then
//!   [`Accounts::finish_sign_in`]): throttling (every password check and
//!   second-step code counted in the throttle before it is checked, so a
//!   burst cannot outrun the lock), one bcrypt verify on the bounded,
//!   fair queue for every outcome (a dummy hash for unknown users),
//!   disabled accounts, the login log lines. The attempt returns an
//!   [`Attempt`] rather than a response, so a second step can sit between
//!   the password and the finished sign-in. The session id changes at
//!   both: when a pending sign-in is stored, and when the sign-in
//!   completes (which also applies the per-user session cap).
//! - **Password checks** that are not sign-ins ([`Accounts::confirm_password`]):
//!   the current password on the account page, the admin page's "confirm
//!   your password"; throttled the same way.
//! - **Revocation**: a new password ends the user's sessions (all but the
//!   one that set it); disabling or deleting a user ends all of them; each
//!   of these, "end all others" and a reset of the second factors also
//!   end the user's sign-ins still waiting for their second step; turning
//!   on a second factor ends the sessions that signed in without one.
//! - **Session ids**: a new one at the password step (a pending sign-in)
//!   and at every sign-in or change of what the session may do.
//! - **The last administrator**: disabling, deleting or demoting the last
//!   enabled administrator (taking them out of `admins`) is refused,
//!   unless the caller forces it (the box's owner at the command line);
//!   `users` checks it again in the transaction that makes the change.
//! - **Credentials without a session** (`accounts/credentials.rs`): a
//!   personal access token, or the account password over Basic, checked
//!   and throttled like sign-ins; nothing is stored.
//! - **Groups** (`accounts/groups.rs`): making, renaming and deleting
//!   groups and their members; `admins` is kept.
//! - **Password rules**: checked by `users` when a password is hashed;
//!   refusals come back as [`AccountError::User`].
//!
//! By feature: `signin` (the password step, the second step, a passkey
//! alone, a password confirmed again), `factors` (second factors set up
//! and reset), `admin` (user administration and the last administrator),
//! `revoke` (ending sessions and pending sign-ins), `groups` (groups and
//! their members), `credentials` (tokens and Basic), `tokens` (tokens made
//! and revoked), `clients` (OpenID Connect clients made, given a new
//! secret, deleted), `directory` (staying in step with the
//! directory), `links` (invites, reset links, sign-in links for a new
//! device: made, used, revoked). This file keeps the
//! types they share and [`Accounts`] itself.
//!
//! - **The audit log**: each operation records what it did in
//!   [`crate::users::audit`], with who asked ([`Accounts::by`]) and where
//!   from ([`Accounts::at`]: the request's address and user agent, or the
//!   command line); sign-in failures are recorded where the throttle has
//!   already let the attempt through, so a flood adds no more rows than it
//!   gets checks.
//!
//! This module never sees HTTP: it takes plain values and the session, and
//! returns plain results; `web` and `cli` turn them into responses and
//! output.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::throttle::Throttle;
use crate::clock::Millis;
use crate::session::{SessionError, Store, StoreError};
use crate::users::audit::{Event, Kind, Origin, Outcome};
use crate::users::{User, UserError, UserId, Users};

mod admin;
mod clients;
pub mod credentials;
pub mod directory;
mod factors;
pub mod groups;
pub mod links;
mod revoke;
mod signin;
mod tokens;

use signin::log;

pub use crate::session::keys::{METHODS, PENDING, REAUTH_AT};

/// How long a pending sign-in waits for its second step.
pub const PENDING_FOR: Millis = 5 * 60 * 1000;

/// How many wrong second steps a pending sign-in survives.
pub const PENDING_ATTEMPTS: u32 = 5;

/// A sign-in waiting for its second step (session data at [`PENDING`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    /// Whose password was right.
    pub user_id: UserId,
    /// Remember-me, as asked with the password.
    pub remember: bool,
    /// Where to go once signed in (already checked by the caller).
    pub next: String,
    /// When the password was right.
    pub at: Millis,
    /// Wrong second steps so far.
    pub attempts: u32,
    /// The user has no second factor and policy requires one: they set
    /// one up instead of using it.
    pub enrol: bool,
    /// When the user's password was last set, as it was when it was
    /// checked: a new password since ends the pending sign-in.
    #[serde(default)]
    pub password_set_at: Millis,
    /// The user's stamp when the password was checked: the pending sign-in
    /// resolves only to that user, never to another who came to have the
    /// id (empty in one from before stamps: it resolves to no one).
    #[serde(default)]
    pub user_stamp: String,
    /// Made by a reset link that asks for a new second factor (a lost
    /// phone): the user sets one up although they have some, and those
    /// go once the new one is set.
    #[serde(default)]
    pub replace: bool,
}

/// A proof offered as the second step.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// A code from the authenticator app.
    Code(&'a str),
    /// One of the user's recovery codes.
    Recovery(&'a str),
    /// A passkey assertion of this user, already verified by the caller.
    Passkey(UserId),
}

impl Proof<'_> {
    fn method(&self) -> &'static str {
        match self {
            Self::Code(_) => "otp",
            Self::Recovery(_) => "recovery",
            Self::Passkey(_) => "passkey",
        }
    }
}

/// Who a second step is for: a pending sign-in, or a signed-in session
/// adding a second factor for an app that needs one.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The user.
    pub user: User,
    /// The pending sign-in, if this is one (else a step-up).
    pub pending: Option<Pending>,
}

/// What the password step led to.
#[derive(Debug)]
pub enum AfterPassword {
    /// Signed in (no second factor, none required).
    Finished(Finished),
    /// Pending: the user has a second factor to give.
    SecondStep,
    /// Pending: policy requires a second factor the user does not have yet.
    Enrol,
}

/// What signing in a new account came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    /// Signed in with its password.
    SignedIn,
    /// Pending: policy requires a second factor, to be set up first.
    Enrol,
}

/// What a second step came to.
#[derive(Debug)]
pub enum Step {
    /// Signed in; with a recovery code, how many are left.
    Finished(Finished, Option<i64>),
    /// Not right (logged `reason=wrong_code`, counted towards a lockout).
    Wrong,
    /// Too many recent failures: wait this long.
    Throttled(Duration),
    /// No pending sign-in (never, expired, or too many wrong attempts).
    Expired,
}

/// The key of a pending sign-in's own budget of wrong second steps in the
/// throttle's store: its user and the moment its password was right.
fn pending_budget(pending: &Pending) -> String {
    format!("{}:{}", pending.user_id, pending.at)
}

/// Whether these sign-in methods make two factors (said once, in
/// `identity`, where the access decision reads it too).
pub use crate::identity::two_factors;

/// Why an account operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A rule forbids it; the message says which, for people.
    #[error("{0}")]
    Refused(Refusal),
    /// The username given to sign in is longer than any username can be.
    #[error("the username is too long")]
    UsernameTooLong,
    /// No such session (among those the caller may end).
    #[error("no such session")]
    NoSuchSession,
    /// A user operation failed: a bad name or password, a taken name, no
    /// such user, a busy hasher, or the database.
    #[error(transparent)]
    User(#[from] UserError),
    /// The session store (or the throttle's store) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request's session could not be changed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The OpenID Connect grants of ended sessions could not be ended.
    #[error("ending the apps' tokens: {0}")]
    Grants(#[from] crate::oidc::OidcError),
}

/// A rule that refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It would leave no enabled administrator.
    #[error("this is the last administrator; make someone else an administrator first")]
    LastAdministrator,
    /// An administrator may not disable themselves.
    #[error("you cannot disable yourself; ask another administrator")]
    DisableSelf,
    /// An administrator may not delete themselves.
    #[error("you cannot delete yourself; ask another administrator")]
    DeleteSelf,
    /// `admins` cannot be renamed or deleted.
    #[error("the admins group cannot be renamed or deleted")]
    BuiltinGroup,
    /// A second factor is added only by a session that gave one already
    /// (when the user has one), or by a sign-in that must set one up.
    #[error("give your current second factor first")]
    SecondStepFirst,
    /// The password or second factors of a user who has a second factor
    /// are changed only by an administrator whose session gave one too.
    #[error(
        "this user has a second factor: only an administrator who signed in with one may change their password or second factors"
    )]
    OverrideNeedsSecondFactor,
}

/// What a sign-in attempt came to.
#[derive(Debug)]
pub enum Attempt {
    /// The password is right and the account enabled: hand this to
    /// [`Accounts::finish_sign_in`] (a second factor will be asked for
    /// between the two).
    Verified(Verified),
    /// Too many recent failures for this username or address: wait this long.
    Throttled(Duration),
    /// Wrong username or password, or a disabled account: callers say the
    /// same thing for all three. Logged and counted towards a lockout.
    Failed,
}

/// A user whose password was just verified; only [`Accounts::attempt_sign_in`]
/// makes one, so a sign-in cannot be finished without it.
#[derive(Debug)]
pub struct Verified {
    user: User,
    /// Whether the user has a second factor (read once, at the check).
    has_factor: bool,
    /// Who checked the password: `password` (gatehouse) or `directory`.
    method: &'static str,
}

impl Verified {
    /// The user who is signing in.
    pub fn user(&self) -> &User {
        &self.user
    }
}

/// `key=value` for an audit row's detail: the value as it is when it is
/// one plain word, else quoted (a name a user or an administrator typed
/// may hold spaces, `=` or quotes, which must not read as more fields:
/// a token named `x via=cli` must not look made by the command line).
pub(crate) fn field(key: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=');
    if plain {
        format!("{key}={value}")
    } else {
        format!("{key}={}", crate::logging::quote(value))
    }
}

/// A sign-in whose session is set; [`committed`](Self::committed) logs it.
#[must_use = "log the sign-in once its session is stored"]
pub struct Finished {
    user: User,
    methods: Vec<String>,
    /// What the audit log records once it is committed: a sign-in or a
    /// second step, and the method that finished it.
    kind: Kind,
    method: &'static str,
    /// Where the audit log is, and where the sign-in came from (boxed: a
    /// `Finished` travels in every sign-in's answer).
    trail: Box<(crate::users::audit::Audit, Origin)>,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished")
            .field("user", &self.user)
            .field("methods", &self.methods)
            .field("kind", &self.kind)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Finished {
    /// The user now signed in.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// Counts and logs `login ok`, and records it in the audit log. Called
    /// once the new session is stored, not before: a sign-in that could
    /// not be committed is no "login ok". `via` is appended to the log line
    /// (`""`, or `" via=api"`).
    pub fn committed(self, guard: &Guard<'_>, ip: IpAddr, via: &str) -> User {
        guard.counters.login("ok");
        let methods = format!(" methods={}{via}", self.methods.join(","));
        log(&self.user.username, "ok", ip, &methods);
        let name = Some(self.user.username.as_str());
        let (audit, origin) = &*self.trail;
        audit.record(
            origin,
            &Event::ok(self.kind, name, name).detail(format!(
                "method={} methods={}",
                self.method,
                self.methods.join(",")
            )),
        );
        self.user
    }
}

/// What a password check that is not a sign-in came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// The password is this user's.
    Confirmed,
    /// Too many recent failures: wait this long.
    Throttled(Duration),
    /// Not the password (logged and counted towards a lockout).
    Wrong,
}

/// Why a password is checked outside a sign-in (it names the log lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The current password, before a new one is set.
    ChangePassword,
    /// An administrator confirms their password before an admin action.
    AdminAction,
    /// A signed-in user gives their password again because an app asked
    /// for a fresh sign-in (OpenID Connect `prompt=login` or `max_age`).
    SignInAgain,
}

/// Counts sign-in events for `/metrics`; `web` implements it, and the
/// command line, which counts nothing, passes [`NoCounters`].
pub trait Counters {
    /// One attempt with this outcome (`ok`, `unknown_user`, ...).
    fn login(&self, outcome: &str);
    /// One attempt refused by throttling.
    fn throttled(&self);
}

/// Counts nothing.
pub struct NoCounters;

impl Counters for NoCounters {
    fn login(&self, _: &str) {}
    fn throttled(&self) {}
}

/// What guards password checks: the throttle and the counters.
pub struct Guard<'a> {
    /// Failed attempts per username and address.
    pub throttle: &'a Throttle,
    /// Where sign-in events are counted.
    pub counters: &'a dyn Counters,
}

/// The accounts, over the users and the session store.
pub struct Accounts<'a> {
    users: &'a Users,
    sessions: &'a dyn Store,
    grants: &'a dyn crate::oidc::Store,
    /// Rung when grants end, to send the back-channel logout notices now
    /// (without it, a running server's senders find them within seconds).
    bell: Option<&'a crate::oidc::logout::Bell>,
    /// Where the operations come from, for the audit log.
    origin: Origin,
    /// Who asks for them (a signed-in user's name), for the audit log.
    actor: Option<String>,
}

/// Whose sessions [`Accounts::end_session`] may end.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    /// Only this user's (the account page: a guessed handle of someone
    /// else's session is simply not found).
    User(crate::users::UserId),
    /// Anyone's (an administrator).
    Anyone,
}

/// What [`Accounts::end_session`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The caller's own session: the browser is signed out.
    This,
    /// Another session.
    Other,
}

impl<'a> Accounts<'a> {
    /// Account operations on `users`, ending sessions in `sessions` and,
    /// with them, the OpenID Connect grants they gave apps in `grants`.
    pub fn new(
        users: &'a Users,
        sessions: &'a dyn Store,
        grants: &'a dyn crate::oidc::Store,
    ) -> Self {
        Self {
            users,
            sessions,
            grants,
            bell: None,
            origin: Origin::default(),
            actor: None,
        }
    }

    /// The same, ringing `bell` whenever grants end (the server's
    /// provider's: its back-channel logout senders then go at once).
    #[must_use]
    pub fn with_bell(mut self, bell: Option<&'a crate::oidc::logout::Bell>) -> Self {
        self.bell = bell;
        self
    }

    /// The same operations, recorded in the audit log as coming from
    /// `origin` (a request's address and user agent, the command line).
    #[must_use]
    pub fn at(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// The same operations, recorded as asked for by `actor`.
    #[must_use]
    pub fn by(mut self, actor: &User) -> Self {
        self.actor = Some(actor.username.clone());
        self
    }

    /// Records `kind`, done by this caller's actor ([`by`](Self::by)) to
    /// `subject`, from its origin ([`at`](Self::at)), with a short
    /// `key=value` detail: the one call a feature that is no operation
    /// here needs.
    /// A row that cannot be written is logged; the caller goes on.
    pub fn record(&self, kind: Kind, subject: Option<&str>, detail: String) {
        self.users.audit().record(
            &self.origin,
            &Event::ok(kind, self.actor.as_deref(), subject).detail(detail),
        );
    }

    /// Records a refused `kind` on `subject` (a name as typed, if any),
    /// by no one known; the detail says why (`reason=...`).
    pub fn record_failed(&self, kind: Kind, subject: Option<&str>, detail: String) {
        self.users
            .audit()
            .record(&self.origin, &Event::failed(kind, subject, detail));
    }

    /// Records a refused `kind` on the account `name` (one that exists),
    /// always: its own throttle bounds such failures, so a flood of
    /// unknown names cannot keep them out (see
    /// [`Audit::record_on_account`](crate::users::audit::Audit::record_on_account)).
    pub fn record_failed_on(&self, kind: Kind, name: &str, detail: String) {
        self.users
            .audit()
            .record_on_account(&self.origin, &Event::failed(kind, Some(name), detail));
    }

    /// [`record_failed_on`](Self::record_failed_on) when `reason` names
    /// an account that exists, else [`record_failed`](Self::record_failed).
    fn record_sign_in_failure(&self, kind: Kind, name: &str, reason: &str, detail: String) {
        if reason.starts_with("unknown") {
            self.record_failed(kind, Some(name), detail);
        } else {
            self.record_failed_on(kind, name, detail);
        }
    }

    /// Records `event` from this caller's origin, for the callers that do
    /// what no operation here does (signing out): the one way in besides
    /// the operations.
    pub fn record_event(&self, event: &Event<'_>) {
        self.users.audit().record(&self.origin, event);
    }

    /// Records that `user` signed out (the caller ended the session), and
    /// ends their sign-in links that wait: a link carries the factors of
    /// the session that made it, which may be the one that ended.
    pub fn signed_out(&self, user: &User) {
        let name = Some(user.username.as_str());
        self.record_event(&Event::ok(Kind::SignOut, name, name));
        if let Err(e) = self.users.end_signin_links(user.id) {
            crate::logging::line(&format!(
                "sign-in links not ended user={} detail={}",
                crate::logging::quote(&user.username),
                crate::logging::quote(&e.to_string())
            ));
        }
    }

    /// The outcome kind `Pending` for a sign-in whose second step is owed.
    fn record_pending(&self, user: &User, method: &str, then: &str) {
        let name = Some(user.username.as_str());
        self.users.audit().record(
            &self.origin,
            &Event {
                kind: Kind::SignIn,
                outcome: Outcome::Pending,
                actor: None,
                subject: name,
                detail: format!("method={method} then={then}"),
            },
        );
    }
}

/// A second factor just set up: the sign-in it finished or upgraded, and
/// the recovery codes to show once (empty when the user had some left).
#[derive(Debug)]
pub struct Enabled {
    /// The session, signed in with the new factor.
    pub finished: Finished,
    /// New recovery codes, if any.
    pub codes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::session::MemoryStore;
    use crate::users::password::Hasher;

    /// Users, and the OpenID Connect grants beside them.
    fn users(dir: &tempfile::TempDir) -> (Users, crate::oidc::SqliteOidc) {
        let pool = crate::db::open(&dir.path().join("u.db"), 2).expect("open");
        let grants = crate::oidc::SqliteOidc(pool.clone());
        let users = Users::new(
            pool,
            Arc::new(Hasher::new(4, 2, std::time::Duration::from_secs(10))),
        );
        (users, grants)
    }

    /// A grant to an app under the session `sid` of `user`, with a live
    /// access token whose hash is `[n; 32]`.
    fn granted(grants: &dyn crate::oidc::Store, user: UserId, sid: &str, n: u8) {
        use crate::oidc::store::{CodeRow, GrantId, GrantRow, TokenKind, TokenRow};
        let now = crate::clock::now();
        let grant = GrantRow {
            id: GrantId::random(),
            client_id: "app".into(),
            user_id: user,
            sid: sid.into(),
            scopes: "openid".into(),
            nonce: None,
            auth_time: now,
            methods: "pwd".into(),
            created_at: now,
            expires_at: now + 60_000,
        };
        let code = CodeRow {
            hash: [n + 100; 32],
            grant_id: grant.id,
            redirect_uri: "https://app/cb".into(),
            challenge: None,
            expires_at: now + 30_000,
        };
        grants.code_create(&grant, &code).expect("grant");
        let token = TokenRow {
            hash: [n; 32],
            grant_id: grant.id,
            kind: TokenKind::Access,
            scopes: "openid".into(),
            created_at: now,
            expires_at: now + 60_000,
            used_at: None,
        };
        assert!(grants.token_create(&token).expect("token"));
    }

    fn live(grants: &dyn crate::oidc::Store, n: u8) -> bool {
        grants.token_find(&[n; 32]).expect("find").is_some()
    }

    /// A signed-in session of `user` under the OpenID Connect `sid`.
    fn session_with_sid(store: &MemoryStore, user: &User, sid: &str) -> crate::session::SessionKey {
        let mut record = crate::session::conformance::record(
            crate::session::SessionId::generate().key(),
            crate::clock::now(),
        );
        record.user_id = Some(user.id);
        record.data.insert(
            crate::session::keys::OIDC_SID.into(),
            serde_json::Value::String(sid.into()),
        );
        store.create(&record).expect("create");
        record.key
    }

    #[test]
    fn ending_sessions_ends_the_grants_they_gave_apps_and_no_others() {
        let dir = tempfile::tempdir().expect("dir");
        let (users, grants) = users(&dir);
        let store = MemoryStore::new();
        let accounts = Accounts::new(&users, &store, &grants);
        let root = accounts
            .create_user("root", "correct horse", true)
            .expect("root");
        let alice = accounts
            .create_user("alice", "correct horse", false)
            .expect("alice");
        let bob = accounts
            .create_user("bob", "correct horse", false)
            .expect("bob");
        let kept = session_with_sid(&store, &alice, "a1");
        session_with_sid(&store, &alice, "a2");
        session_with_sid(&store, &bob, "b1");
        granted(&grants, alice.id, "a1", 1);
        granted(&grants, alice.id, "a2", 2);
        // A grant whose session has ended already (signed out elsewhere).
        granted(&grants, alice.id, "gone", 3);
        granted(&grants, bob.id, "b1", 4);
        // "End all others": the kept session's app stays signed in.
        assert_eq!(accounts.end_sessions(&alice, Some(&kept)).expect("end"), 1);
        assert!(live(&grants, 1));
        assert!(!live(&grants, 2) && !live(&grants, 3));
        assert!(live(&grants, 4), "another user's grant is untouched");
        // A kept session that never signed in to an app keeps none.
        let plain = {
            let mut record = crate::session::conformance::record(
                crate::session::SessionId::generate().key(),
                crate::clock::now(),
            );
            record.user_id = Some(alice.id);
            store.create(&record).expect("create");
            record.key
        };
        granted(&grants, alice.id, "a3", 5);
        accounts.end_sessions(&alice, Some(&plain)).expect("end");
        assert!(!live(&grants, 1) && !live(&grants, 5));
        // Disabling ends them all.
        granted(&grants, bob.id, "b2", 6);
        accounts.disable(Some(&root), &bob, false).expect("disable");
        assert!(!live(&grants, 4) && !live(&grants, 6));
        // So does a reset of the second factors, and a new password set
        // without a session to keep.
        granted(&grants, alice.id, "a4", 7);
        accounts.reset_second_factors(&alice).expect("reset");
        assert!(!live(&grants, 7));
        granted(&grants, alice.id, "a5", 8);
        accounts
            .set_password(&alice, "another good one", None)
            .expect("password");
        assert!(!live(&grants, 8));
    }

    fn refusal(result: Result<impl std::fmt::Debug, AccountError>) -> Option<Refusal> {
        match result {
            Err(AccountError::Refused(r)) => Some(r),
            Err(e) => panic!("failed: {e}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn the_last_enabled_administrator_is_refused_unless_forced() {
        let dir = tempfile::tempdir().expect("dir");
        let (users, grants) = users(&dir);
        let store = MemoryStore::new();
        let accounts = Accounts::new(&users, &store, &grants);
        let root = accounts
            .create_user("root", "correct horse", true)
            .expect("root");
        let bob = accounts
            .create_user("bob", "correct horse", false)
            .expect("bob");
        let last = Some(Refusal::LastAdministrator);
        assert_eq!(refusal(accounts.disable(None, &root, false)), last);
        assert_eq!(refusal(accounts.delete(None, &root, false)), last);
        assert_eq!(refusal(accounts.revoke_admin(&root, None)), last);
        assert_eq!(refusal(accounts.disable(Some(&bob), &root, false)), last);
        // Nothing changed.
        let now = users.get_by_name("root").expect("root");
        assert!(now.is_admin && !now.disabled);

        // A disabled administrator is no second one.
        let spare = accounts
            .create_user("spare", "correct horse", true)
            .expect("spare");
        assert_eq!(refusal(accounts.disable(None, &spare, false)), None);
        let spare = users.get_by_name("spare").expect("spare");
        assert_eq!(refusal(accounts.delete(None, &root, false)), last);
        // Removing a disabled administrator was never the last one's removal.
        assert_eq!(refusal(accounts.delete(None, &spare, false)), None);

        // The box's owner may force it.
        assert_eq!(refusal(accounts.disable(None, &root, true)), None);
        assert!(users.get_by_name("root").expect("root").disabled);
        let root = users.get_by_name("root").expect("root");
        assert_eq!(refusal(accounts.delete(None, &root, true)), None);
        assert!(users.find_by_name("root").expect("find").is_none());
    }

    #[test]
    fn an_administrator_cannot_disable_or_delete_themselves() {
        let dir = tempfile::tempdir().expect("dir");
        let (users, grants) = users(&dir);
        let store = MemoryStore::new();
        let accounts = Accounts::new(&users, &store, &grants);
        let a = accounts.create_user("a", "correct horse", true).expect("a");
        accounts.create_user("b", "correct horse", true).expect("b");
        // Not the last administrator, and still refused: the self rule.
        assert_eq!(
            refusal(accounts.disable(Some(&a), &a, false)),
            Some(Refusal::DisableSelf)
        );
        assert_eq!(
            refusal(accounts.delete(Some(&a), &a, true)),
            Some(Refusal::DeleteSelf)
        );
        assert!(!users.get_by_name("a").expect("a").disabled);
    }

    #[test]
    fn new_users_follow_the_name_and_password_rules() {
        let dir = tempfile::tempdir().expect("dir");
        let (users, grants) = users(&dir);
        let store = MemoryStore::new();
        let accounts = Accounts::new(&users, &store, &grants);
        for (name, password) in [("bad name", "correct horse"), ("carol", "short")] {
            let made = accounts.create_user(name, password, false);
            assert!(matches!(made, Err(AccountError::User(_))), "{made:?}");
        }
        assert_eq!(users.count().expect("count"), 0);
    }
}
