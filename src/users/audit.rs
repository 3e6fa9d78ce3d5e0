//! The audit log: one row per security event (a sign-in and how it went, a
//! second step, a sign-out, a session ended, a password or a second factor
//! changed, a user, group, token, client, invite or link made or changed, the
//! configuration reloaded), with when, what, how it came out, who did it,
//! to whom, from which address and user agent, and a short detail. Kept in
//! the users' database (SQLite, or PostgreSQL shared by every instance;
//! sessions in Redis change nothing here), for `audit_retention`, trimmed
//! by the reaper in short batches. The statements live in `audit/sqlite.rs`
//! and `audit/postgres.rs`; [`Audit`] keeps the rules.
//!
//! - **Bounded rows.** Every text is cleaned before it is stored: control
//!   characters and the Unicode marks that change how text around them is
//!   shown are dropped, and each field is cut (a user agent to
//!   [`MAX_USER_AGENT`] characters), so a 10 KB header or a forged line
//!   break is stored short and plain.
//! - **Bounded growth under a flood.** Failures are recorded where the
//!   throttle has already let the attempt through, so a flood from one
//!   address or on one name adds no more rows than it gets checks. Across
//!   many addresses, failures are also let through a budget of their own
//!   ([`FLOOD_BURST`], then [`FLOOD_RATE`] a second, per process); what
//!   the budget turns away is counted and written as one
//!   [`Kind::NotRecorded`] row each reaper round (the log lines keep
//!   every attempt for fail2ban). Successes are what people do, and are all recorded, but a
//!   credential that comes with every request (a token, Basic) is recorded
//!   once an hour per user, method and address ([`Audit::record_quietly`]).
//! - **Never a failed action, never a silent loss.** A record that cannot
//!   be written (a full disk, the database down) is logged with what it
//!   said, and the action it records stands: an audit row is bookkeeping
//!   written after the change committed.
//! - **No write on the hot path.** A request signed in by its cookie
//!   records nothing; only what changes something, or a credential
//!   checked without a session, does.

mod postgres;
mod sqlite;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::UserError;
use crate::clock::Millis;

/// The longest user agent stored, in characters.
pub const MAX_USER_AGENT: usize = 256;

/// The longest detail stored, in characters.
pub const MAX_DETAIL: usize = 256;

/// The longest name (actor or subject) stored, in characters: a username
/// is at most 64, but a name typed at a failed sign-in is anything.
pub const MAX_NAME: usize = 64;

/// Rows per page on `/admin/audit`.
pub const PAGE_SIZE: usize = 50;

/// How many rows one trim statement deletes: short, so live requests
/// never wait long behind it.
pub const TRIM_BATCH: usize = 500;

/// How long rows are kept when `audit_retention` is not set.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// How many failures may be recorded at once before the budget applies.
pub const FLOOD_BURST: f64 = 300.0;

/// How many failures a second the budget lets through after the burst.
pub const FLOOD_RATE: f64 = 2.0;

/// How long a credential that comes with every request is not recorded
/// again for the same user, method and address.
pub const QUIET_FOR: Duration = Duration::from_secs(60 * 60);

/// How many (user, method, address) keys [`Audit::record_quietly`]
/// remembers; when full, the stale go, then all.
const QUIET_KEYS: usize = 4096;

/// What happened. Stored as its [`Kind::as_str`] name, which never changes
/// once released (a row of a kind this version does not know is shown by
/// its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A sign-in: with a password (the form, the API, the directory), a
    /// passkey, or a token or Basic at the gate.
    SignIn,
    /// The second step of a sign-in (a code, a recovery code, a passkey),
    /// or a signed-in session giving one for an app that asks.
    SecondStep,
    /// A signed-in user's password given again (before an administrator's
    /// action, for an app that asked for a fresh sign-in, before a new
    /// password).
    PasswordConfirmed,
    /// Signed out.
    SignOut,
    /// Sessions ended by their user (one, or all others) or an
    /// administrator.
    SessionEnded,
    /// A password set: by its user, an administrator or the command line;
    /// or a named user's first, through their invite (`first=yes`).
    PasswordChanged,
    /// A password set through a reset link.
    PasswordReset,
    /// A reset link made.
    ResetLinkCreated,
    /// A reset link revoked.
    ResetLinkRevoked,
    /// A sign-in link for a new device made by its user.
    SigninLinkCreated,
    /// A sign-in link for a new device revoked by its user.
    SigninLinkRevoked,
    /// A second factor added (an authenticator, a passkey, new recovery
    /// codes).
    FactorAdded,
    /// A second factor removed by its user.
    FactorRemoved,
    /// Every second factor of a user removed by an administrator; or
    /// those a new one replaced, through a reset link that asked for one
    /// (`through=reset_link`).
    FactorsReset,
    /// A user made.
    UserCreated,
    /// A user disabled.
    UserDisabled,
    /// A user enabled again.
    UserEnabled,
    /// A user deleted.
    UserDeleted,
    /// A user made an administrator.
    UserPromoted,
    /// A user's administrator rights taken.
    UserDemoted,
    /// A group made.
    GroupCreated,
    /// A group renamed.
    GroupRenamed,
    /// A group deleted.
    GroupDeleted,
    /// A user put in a group.
    GroupMemberAdded,
    /// A user taken out of a group.
    GroupMemberRemoved,
    /// A personal access token made.
    TokenCreated,
    /// A personal access token revoked.
    TokenRevoked,
    /// An OpenID Connect client made.
    ClientCreated,
    /// An OpenID Connect client changed (its secret, its addresses).
    ClientChanged,
    /// An OpenID Connect client revoked.
    ClientRevoked,
    /// An invite link made.
    InviteCreated,
    /// An invite link revoked.
    InviteRevoked,
    /// An invite link used.
    InviteUsed,
    /// The configuration (the certificate) read again.
    ConfigReloaded,
    /// Failures a flood brought that were counted, not recorded one by one.
    NotRecorded,
}

impl Kind {
    /// Every kind, in the order the filters list them.
    pub const ALL: &'static [Kind] = &[
        Kind::SignIn,
        Kind::SecondStep,
        Kind::PasswordConfirmed,
        Kind::SignOut,
        Kind::SessionEnded,
        Kind::PasswordChanged,
        Kind::PasswordReset,
        Kind::ResetLinkCreated,
        Kind::ResetLinkRevoked,
        Kind::SigninLinkCreated,
        Kind::SigninLinkRevoked,
        Kind::FactorAdded,
        Kind::FactorRemoved,
        Kind::FactorsReset,
        Kind::UserCreated,
        Kind::UserDisabled,
        Kind::UserEnabled,
        Kind::UserDeleted,
        Kind::UserPromoted,
        Kind::UserDemoted,
        Kind::GroupCreated,
        Kind::GroupRenamed,
        Kind::GroupDeleted,
        Kind::GroupMemberAdded,
        Kind::GroupMemberRemoved,
        Kind::TokenCreated,
        Kind::TokenRevoked,
        Kind::ClientCreated,
        Kind::ClientChanged,
        Kind::ClientRevoked,
        Kind::InviteCreated,
        Kind::InviteRevoked,
        Kind::InviteUsed,
        Kind::ConfigReloaded,
        Kind::NotRecorded,
    ];

    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SecondStep => "second_step",
            Self::PasswordConfirmed => "password_confirmed",
            Self::SignOut => "sign_out",
            Self::SessionEnded => "session_ended",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
            Self::ResetLinkCreated => "reset_link_created",
            Self::ResetLinkRevoked => "reset_link_revoked",
            Self::SigninLinkCreated => "signin_link_created",
            Self::SigninLinkRevoked => "signin_link_revoked",
            Self::FactorAdded => "factor_added",
            Self::FactorRemoved => "factor_removed",
            Self::FactorsReset => "factors_reset",
            Self::UserCreated => "user_created",
            Self::UserDisabled => "user_disabled",
            Self::UserEnabled => "user_enabled",
            Self::UserDeleted => "user_deleted",
            Self::UserPromoted => "user_promoted",
            Self::UserDemoted => "user_demoted",
            Self::GroupCreated => "group_created",
            Self::GroupRenamed => "group_renamed",
            Self::GroupDeleted => "group_deleted",
            Self::GroupMemberAdded => "group_member_added",
            Self::GroupMemberRemoved => "group_member_removed",
            Self::TokenCreated => "token_created",
            Self::TokenRevoked => "token_revoked",
            Self::ClientCreated => "client_created",
            Self::ClientChanged => "client_changed",
            Self::ClientRevoked => "client_revoked",
            Self::InviteCreated => "invite_created",
            Self::InviteRevoked => "invite_revoked",
            Self::InviteUsed => "invite_used",
            Self::ConfigReloaded => "config_reloaded",
            Self::NotRecorded => "not_recorded",
        }
    }

    /// The kind stored as `s`, if this version knows it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// What people read for it.
    pub fn label(self) -> &'static str {
        match self {
            Self::SignIn => "Sign-in",
            Self::SecondStep => "Second step",
            Self::PasswordConfirmed => "Password confirmed",
            Self::SignOut => "Sign-out",
            Self::SessionEnded => "Session ended",
            Self::PasswordChanged => "Password changed",
            Self::PasswordReset => "Password reset",
            Self::ResetLinkCreated => "Reset link made",
            Self::ResetLinkRevoked => "Reset link revoked",
            Self::SigninLinkCreated => "Sign-in link made",
            Self::SigninLinkRevoked => "Sign-in link revoked",
            Self::FactorAdded => "Second factor added",
            Self::FactorRemoved => "Second factor removed",
            Self::FactorsReset => "Second factors reset",
            Self::UserCreated => "User created",
            Self::UserDisabled => "User disabled",
            Self::UserEnabled => "User enabled",
            Self::UserDeleted => "User deleted",
            Self::UserPromoted => "Made administrator",
            Self::UserDemoted => "Administrator rights taken",
            Self::GroupCreated => "Group created",
            Self::GroupRenamed => "Group renamed",
            Self::GroupDeleted => "Group deleted",
            Self::GroupMemberAdded => "Added to group",
            Self::GroupMemberRemoved => "Removed from group",
            Self::TokenCreated => "Token made",
            Self::TokenRevoked => "Token revoked",
            Self::ClientCreated => "App client made",
            Self::ClientChanged => "App client changed",
            Self::ClientRevoked => "App client revoked",
            Self::InviteCreated => "Invite made",
            Self::InviteRevoked => "Invite revoked",
            Self::InviteUsed => "Invite used",
            Self::ConfigReloaded => "Configuration reloaded",
            Self::NotRecorded => "Failures not recorded",
        }
    }
}

/// The label of a stored kind name (the name itself for a kind this
/// version does not know).
pub fn label_of(kind: &str) -> &str {
    match Kind::parse(kind) {
        Some(k) => k.label(),
        None => kind,
    }
}

/// How it came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused (a wrong password, an unknown token, ...): the detail says
    /// why.
    Failed,
    /// Half done: the password was right, and the second step is owed.
    Pending,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: &'static [Outcome] = &[Outcome::Ok, Outcome::Failed, Outcome::Pending];

    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Pending => "pending",
        }
    }

    /// The outcome stored as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|o| o.as_str() == s)
    }
}

/// Where an event came from: the request's address and user agent, or
/// the command line, or the server itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client's address (after `trusted_proxies`).
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent`, as sent (cleaned when stored).
    pub user_agent: Option<String>,
    /// How it came, when not through a page: `api`, `cli`, `server`;
    /// added to the detail.
    pub via: Option<&'static str>,
}

impl Origin {
    /// A request from `ip` with this user agent.
    pub fn request(ip: IpAddr, user_agent: Option<&str>) -> Self {
        Self {
            ip: Some(ip),
            user_agent: user_agent.map(|ua| clean(ua, MAX_USER_AGENT)),
            via: None,
        }
    }

    /// The command line (the box's owner).
    pub fn cli() -> Self {
        Self {
            via: Some("cli"),
            ..Self::default()
        }
    }

    /// The server itself (a signal, a background task).
    pub fn server() -> Self {
        Self {
            via: Some("server"),
            ..Self::default()
        }
    }

    /// The same origin, marked as coming through `via` (`api`).
    #[must_use]
    pub fn via(mut self, via: &'static str) -> Self {
        self.via = Some(via);
        self
    }
}

/// One event to record: the row but for when and where from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// What happened.
    pub kind: Kind,
    /// How it came out.
    pub outcome: Outcome,
    /// Who did it (a username), if anyone known.
    pub actor: Option<&'a str>,
    /// Whom it was done to (a username, or the name typed at a sign-in).
    pub subject: Option<&'a str>,
    /// A short `key=value` detail (a reason, a method, a group).
    pub detail: String,
}

impl<'a> Event<'a> {
    /// A successful `kind` by `actor` on `subject`.
    pub fn ok(kind: Kind, actor: Option<&'a str>, subject: Option<&'a str>) -> Self {
        Self {
            kind,
            outcome: Outcome::Ok,
            actor,
            subject,
            detail: String::new(),
        }
    }

    /// A refused `kind` on `subject`, by no one known.
    pub fn failed(kind: Kind, subject: Option<&'a str>, detail: String) -> Self {
        Self {
            kind,
            outcome: Outcome::Failed,
            actor: None,
            subject,
            detail,
        }
    }

    /// The same event with `detail`.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// One stored row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its id (rising; with `at`, the pages' cursor).
    pub id: i64,
    /// When, in Unix milliseconds.
    pub at: Millis,
    /// What happened ([`Kind::as_str`]; kept as text so a row of a newer
    /// version still reads).
    pub kind: String,
    /// How it came out ([`Outcome::as_str`]).
    pub outcome: String,
    /// Who did it.
    pub actor: Option<String>,
    /// Whom it was done to.
    pub subject: Option<String>,
    /// From which address.
    pub ip: Option<String>,
    /// With which user agent (cleaned and cut).
    pub user_agent: Option<String>,
    /// The short detail.
    pub detail: String,
}

impl Entry {
    /// The row as one JSON object, for the export and `gatehouse audit
    /// --json`: `at` in RFC 3339 UTC, the rest as stored.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "at": crate::logging::rfc3339(self.at),
            "kind": self.kind,
            "outcome": self.outcome,
            "actor": self.actor,
            "subject": self.subject,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "detail": self.detail,
        })
    }

    /// Where the page after this row starts.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            at: self.at,
            id: self.id,
        }
    }
}

/// Where a page of newest-first rows starts: after the row at `at` with
/// `id` (rows are ordered by time, then id). Written `AT-ID`, two whole
/// numbers, for the pages' links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The last row's time.
    pub at: Millis,
    /// The last row's id.
    pub id: i64,
}

impl Cursor {
    /// The cursor written as `AT-ID` (digits only, each a whole number
    /// that fits), or `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('-')?;
        let number = |t: &str| {
            (!t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<i64>().ok())
                .flatten()
        };
        Some(Self {
            at: number(at)?,
            id: number(id)?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.at, self.id)
    }
}

/// Which rows to read, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Rows where this name (in any case) is the actor or the subject.
    pub user: Option<String>,
    /// Rows of this kind.
    pub kind: Option<Kind>,
    /// Rows with this outcome.
    pub outcome: Option<Outcome>,
    /// Rows at or after this time.
    pub since: Option<Millis>,
    /// Rows before this time.
    pub until: Option<Millis>,
    /// Rows after this one (the next page).
    pub after: Option<Cursor>,
    /// Rows whose subject (only) is this name: a user's own page.
    pub subject: Option<String>,
}

/// A row as the stores write it.
#[derive(Debug)]
pub(super) struct NewRow<'a> {
    pub at: Millis,
    pub kind: &'a str,
    pub outcome: &'a str,
    pub actor: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub detail: &'a str,
}

/// Where the rows are kept: the statements each database runs.
pub(super) trait AuditStore: Send + Sync {
    /// Stores one row.
    fn insert(&self, row: &NewRow<'_>) -> Result<(), UserError>;
    /// Up to `limit` rows that `filter` lets through, newest first.
    fn page(&self, filter: &Filter, limit: usize) -> Result<Vec<Entry>, UserError>;
    /// Deletes up to `batch` of the oldest rows from before `before`; how
    /// many went.
    fn trim(&self, before: Millis, batch: usize) -> Result<usize, UserError>;
}

/// A bound value of a [`Filter`]'s statement.
#[derive(Clone, Debug)]
pub(super) enum Value {
    Text(String),
    Int(i64),
}

/// The statement that reads a page of `filter`, newest first, with its
/// values: `ph(n)` writes the `n`th placeholder, `name_is(column, ph)`
/// the comparison of a name column without regard to case. With a user,
/// the rows where they are the subject and those where they are the actor
/// are read apart, each in its index's order, and merged: neither has to
/// be sorted whole.
pub(super) fn page_sql(
    filter: &Filter,
    limit: usize,
    ph: impl Fn(usize) -> String,
    name_is: impl Fn(&str, &str) -> String,
) -> (String, Vec<Value>) {
    const COLUMNS: &str = "id, at, kind, outcome, actor, subject, ip, user_agent, detail";
    let mut values = Vec::new();
    let next = |v: Value, values: &mut Vec<Value>| {
        values.push(v);
        ph(values.len())
    };
    let mut rest = Vec::new();
    if let Some(kind) = filter.kind {
        rest.push(format!(
            "kind = {}",
            next(Value::Text(kind.as_str().to_owned()), &mut values)
        ));
    }
    if let Some(outcome) = filter.outcome {
        rest.push(format!(
            "outcome = {}",
            next(Value::Text(outcome.as_str().to_owned()), &mut values)
        ));
    }
    if let Some(since) = filter.since {
        rest.push(format!("at >= {}", next(Value::Int(since), &mut values)));
    }
    if let Some(until) = filter.until {
        rest.push(format!("at < {}", next(Value::Int(until), &mut values)));
    }
    if let Some(c) = filter.after {
        let at = next(Value::Int(c.at), &mut values);
        let id = next(Value::Int(c.id), &mut values);
        rest.push(format!("(at < {at} OR (at = {at} AND id < {id}))"));
    }
    if let Some(subject) = &filter.subject {
        let p = next(Value::Text(subject.clone()), &mut values);
        rest.push(name_is("subject", &p));
    }
    let limit = next(
        Value::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
        &mut values,
    );
    let order = "ORDER BY at DESC, id DESC";
    let branch = |extra: Option<String>| {
        let mut clauses: Vec<String> = extra.into_iter().collect();
        clauses.extend(rest.iter().cloned());
        let conditions = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        format!("SELECT {COLUMNS} FROM audit{conditions} {order} LIMIT {limit}")
    };
    let sql = match &filter.user {
        None => branch(None),
        Some(user) => {
            let p = next(Value::Text(user.clone()), &mut values);
            format!(
                "SELECT {COLUMNS} FROM ({}) AS by_subject \
                 UNION SELECT {COLUMNS} FROM ({}) AS by_actor {order} LIMIT {limit}",
                branch(Some(name_is("subject", &p))),
                branch(Some(name_is("actor", &p))),
            )
        }
    };
    (sql, values)
}

/// `text` as stored: control characters and the marks that change how
/// text is shown dropped, plain spaces around it trimmed, cut to `max`
/// characters.
pub fn clean(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !crate::logging::is_format(*c))
        .take(max)
        .collect::<String>()
        .trim_matches(' ')
        .to_owned()
}

/// A bucket of failures the log may record: [`FLOOD_BURST`] at once,
/// refilled at [`FLOOD_RATE`] a second; what it turns away is counted.
#[derive(Debug)]
struct FloodGate {
    tokens: f64,
    last: Option<Instant>,
    dropped: u64,
}

impl Default for FloodGate {
    fn default() -> Self {
        Self {
            tokens: FLOOD_BURST,
            last: None,
            dropped: 0,
        }
    }
}

impl FloodGate {
    /// Whether one more failure may be recorded at `now`.
    fn admit(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let secs = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + secs * FLOOD_RATE).min(FLOOD_BURST);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// How many were turned away since the last call.
    fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

/// The keys [`Audit::record_quietly`] recorded lately, and when.
#[derive(Debug, Default)]
struct Quiet {
    seen: HashMap<String, Instant>,
}

impl Quiet {
    /// Whether `key` was not recorded within [`QUIET_FOR`] of `now` (and
    /// is now marked as recorded). The map is bounded: when full, the
    /// stale keys go, and if none is stale, all.
    fn fresh(&mut self, key: &str, now: Instant) -> bool {
        let recent = |at: &Instant| now.saturating_duration_since(*at) < QUIET_FOR;
        if self.seen.get(key).is_some_and(recent) {
            return false;
        }
        if self.seen.len() >= QUIET_KEYS {
            self.seen.retain(|_, at| recent(at));
            if self.seen.len() >= QUIET_KEYS {
                self.seen.clear();
            }
        }
        self.seen.insert(key.to_owned(), now);
        true
    }
}

/// The audit log of one database, with the rules above.
#[derive(Clone)]
pub struct Audit {
    db: Arc<dyn AuditStore>,
    gate: Arc<Mutex<FloodGate>>,
    quiet: Arc<Mutex<Quiet>>,
}

impl Audit {
    pub(super) fn new(db: Arc<dyn AuditStore>) -> Self {
        Self {
            db,
            gate: Arc::default(),
            quiet: Arc::default(),
        }
    }

    /// Records `event` from `origin`, now. A failure is let through the
    /// flood budget first. A row that cannot be written is logged (with
    /// what it said) and `false` comes back; nothing else happens: the
    /// event's action stands.
    pub fn record(&self, origin: &Origin, event: &Event<'_>) -> bool {
        if event.outcome == Outcome::Failed
            && !self
                .gate
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .admit(Instant::now())
        {
            return false;
        }
        self.write(origin, event)
    }

    /// Records a failure on an account that exists, past the flood
    /// budget: such failures are bounded already, by the account's own
    /// throttle (`login_max_failures` a window per name), and a flood of
    /// unknown names from many addresses must not keep a real brute force
    /// on a real account out of the log (and off its owner's page).
    pub fn record_on_account(&self, origin: &Origin, event: &Event<'_>) -> bool {
        self.write(origin, event)
    }

    /// Records `event` unless an event under `key` was recorded by this
    /// process within [`QUIET_FOR`]: for credentials that come with every
    /// request (a token, Basic at the gate), whose every use would
    /// otherwise be a row and a write.
    pub fn record_quietly(&self, origin: &Origin, event: &Event<'_>, key: &str) -> bool {
        let fresh = self
            .quiet
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fresh(key, Instant::now());
        fresh && self.record(origin, event)
    }

    /// Writes the count of failures the flood budget turned away since the
    /// last call, if any, as one row: the reaper calls it each round, and
    /// the server as it stops, so a flood costs one row a round however
    /// long it lasts.
    pub fn flush(&self) {
        let dropped = self
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_dropped();
        if dropped > 0 {
            self.write_dropped(dropped);
        }
    }

    fn write_dropped(&self, count: u64) {
        let event = Event {
            kind: Kind::NotRecorded,
            outcome: Outcome::Failed,
            actor: None,
            subject: None,
            detail: format!("count={count} reason=flood (the log lines have each one)"),
        };
        self.write(&Origin::server(), &event);
    }

    fn write(&self, origin: &Origin, event: &Event<'_>) -> bool {
        let mut detail = clean(&event.detail, MAX_DETAIL);
        if let Some(via) = origin.via {
            if !detail.is_empty() {
                detail.push(' ');
            }
            detail.push_str("via=");
            detail.push_str(via);
        }
        let name = |n: Option<&str>| n.map(|n| clean(n, MAX_NAME)).filter(|n| !n.is_empty());
        let (actor, subject) = (name(event.actor), name(event.subject));
        let ip = origin.ip.map(crate::logging::ip_text);
        let user_agent = origin
            .user_agent
            .as_deref()
            .map(|ua| clean(ua, MAX_USER_AGENT))
            .filter(|ua| !ua.is_empty());
        let row = NewRow {
            at: crate::clock::now(),
            kind: event.kind.as_str(),
            outcome: event.outcome.as_str(),
            actor: actor.as_deref(),
            subject: subject.as_deref(),
            ip: ip.as_deref(),
            user_agent: user_agent.as_deref(),
            detail: &detail,
        };
        match self.db.insert(&row) {
            Ok(()) => true,
            Err(e) => {
                crate::logging::line(&format!(
                    "audit not recorded kind={} outcome={} actor={} subject={} detail={} error={}",
                    row.kind,
                    row.outcome,
                    crate::logging::quote(row.actor.unwrap_or("-")),
                    crate::logging::quote(row.subject.unwrap_or("-")),
                    crate::logging::quote(row.detail),
                    crate::logging::quote(&e.to_string())
                ));
                false
            }
        }
    }

    /// Up to `limit` rows that `filter` lets through, newest first.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn page(&self, filter: &Filter, limit: usize) -> Result<Vec<Entry>, UserError> {
        // A name that could not have been stored (cleaned names have no
        // control characters, and are at most MAX_NAME long) matches
        // nothing: asked for, it would only reach the database (where
        // PostgreSQL refuses a NUL) to find nothing.
        let storable = |n: &Option<String>| {
            n.as_deref()
                .is_none_or(|n| n.chars().count() <= MAX_NAME && clean(n, MAX_NAME) == n)
        };
        if !storable(&filter.user) || !storable(&filter.subject) {
            return Ok(Vec::new());
        }
        self.db.page(filter, limit)
    }

    /// Every row `filter` lets through, newest first, read a batch at a
    /// time (the memory it takes does not grow with the rows).
    pub fn export(&self, filter: Filter) -> Export {
        Export {
            audit: self.clone(),
            filter,
            buffered: VecDeque::new(),
            done: false,
        }
    }

    /// Deletes the rows older than `retention` at `now`, a batch of
    /// [`TRIM_BATCH`] at a time, asking `go_on` between batches (the
    /// reaper's stop); how many went.
    ///
    /// # Errors
    ///
    /// Database failures (what was deleted before stays deleted).
    pub fn trim(
        &self,
        now: Millis,
        retention: Duration,
        go_on: &mut dyn FnMut() -> bool,
    ) -> Result<usize, UserError> {
        let before = now.saturating_sub(crate::clock::millis(retention));
        let mut deleted = 0;
        loop {
            let n = self.db.trim(before, TRIM_BATCH)?;
            deleted += n;
            if n < TRIM_BATCH || !go_on() {
                return Ok(deleted);
            }
        }
    }
}

/// How many rows [`Export`] reads at a time.
const EXPORT_BATCH: usize = 500;

/// Every row of a filter, newest first, a batch at a time.
pub struct Export {
    audit: Audit,
    filter: Filter,
    buffered: VecDeque<Entry>,
    done: bool,
}

impl Iterator for Export {
    type Item = Result<Entry, UserError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() && !self.done {
            match self.audit.page(&self.filter, EXPORT_BATCH) {
                Ok(rows) => {
                    self.done = rows.len() < EXPORT_BATCH;
                    self.filter.after = rows.last().map(Entry::cursor);
                    self.buffered.extend(rows);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.buffered.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::Users;
    use crate::users::password::Hasher;

    /// Runs `check` on the audit log of a fresh SQLite file and, when a
    /// server is configured for tests, a fresh PostgreSQL schema.
    fn each(check: impl Fn(&Audit)) {
        let hasher = Arc::new(Hasher::new(4, 2, Duration::from_secs(10)));
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(&dir.path().join("a.db"), 4).expect("open");
        check(Users::new(pool, Arc::clone(&hasher)).audit());
        if let Some(url) = crate::db::postgres::test_url() {
            let url = crate::db::postgres::scratch_schema(&url).expect("schema");
            let pool = crate::db::postgres::open_for_tests(&url, 4).expect("open");
            check(Users::postgres(pool, hasher).audit());
        }
    }

    fn origin() -> Origin {
        Origin::request("192.0.2.7".parse().expect("ip"), Some("curl/8"))
    }

    fn all(audit: &Audit, filter: Filter) -> Vec<Entry> {
        audit.page(&filter, 10_000).expect("page")
    }

    #[test]
    fn a_recorded_event_reads_back_with_its_origin_newest_first() {
        each(|audit| {
            assert!(audit.record(
                &origin(),
                &Event::ok(Kind::SignIn, Some("alice"), Some("alice")).detail("method=password")
            ));
            assert!(audit.record(
                &Origin::cli(),
                &Event::ok(Kind::UserDisabled, None, Some("bob"))
            ));
            let rows = all(audit, Filter::default());
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0].kind, "user_disabled");
            assert_eq!(rows[0].detail, "via=cli");
            assert_eq!(rows[0].ip, None);
            let first = &rows[1];
            assert_eq!(
                (first.kind.as_str(), first.outcome.as_str()),
                ("sign_in", "ok")
            );
            assert_eq!(first.actor.as_deref(), Some("alice"));
            assert_eq!(first.ip.as_deref(), Some("192.0.2.7"));
            assert_eq!(first.user_agent.as_deref(), Some("curl/8"));
            assert_eq!(first.detail, "method=password");
            assert!(rows[0].cursor() != rows[1].cursor());
        });
    }

    #[test]
    fn filters_by_user_in_any_case_kind_outcome_and_time_page_by_cursor() {
        each(|audit| {
            let o = origin();
            for i in 0..7 {
                audit.record(
                    &o,
                    &Event::failed(
                        Kind::SignIn,
                        Some(if i % 2 == 0 { "Alice" } else { "bob" }),
                        "reason=wrong_password".into(),
                    ),
                );
            }
            audit.record(
                &o,
                &Event::ok(Kind::UserDisabled, Some("alice"), Some("carol")),
            );
            let user = |name: &str| Filter {
                user: Some(name.into()),
                ..Filter::default()
            };
            // Subject or actor, in any case.
            assert_eq!(all(audit, user("ALICE")).len(), 5);
            assert_eq!(all(audit, user("bob")).len(), 3);
            assert_eq!(all(audit, user("carol")).len(), 1);
            assert_eq!(
                all(
                    audit,
                    Filter {
                        subject: Some("alice".into()),
                        ..Filter::default()
                    }
                )
                .len(),
                4,
                "own page: as the subject only"
            );
            let kind = Filter {
                kind: Some(Kind::UserDisabled),
                ..Filter::default()
            };
            assert_eq!(all(audit, kind).len(), 1);
            let failed = Filter {
                outcome: Some(Outcome::Failed),
                ..Filter::default()
            };
            assert_eq!(all(audit, failed).len(), 7);
            let now = crate::clock::now();
            let future = Filter {
                since: Some(now + 60_000),
                ..Filter::default()
            };
            assert!(all(audit, future).is_empty());
            let past = Filter {
                until: Some(now - 60_000),
                ..Filter::default()
            };
            assert!(all(audit, past).is_empty());
            // Pages of 3 walk every row once, newest first.
            let mut seen = Vec::new();
            let mut filter = Filter::default();
            loop {
                let rows = audit.page(&filter, 3).expect("page");
                seen.extend(rows.iter().map(|r| r.id));
                if rows.len() < 3 {
                    break;
                }
                filter.after = rows.last().map(Entry::cursor);
            }
            let every: Vec<i64> = all(audit, Filter::default()).iter().map(|r| r.id).collect();
            assert_eq!(seen, every);
            assert_eq!(seen.len(), 8);
            // The export reads the same, a batch at a time.
            let exported: Vec<i64> = audit
                .export(Filter::default())
                .map(|r| r.expect("row").id)
                .collect();
            assert_eq!(exported, every);
        });
    }

    #[test]
    fn hostile_filter_values_are_values_not_statements() {
        each(|audit| {
            audit.record(
                &origin(),
                &Event::ok(Kind::SignOut, Some("alice"), Some("alice")),
            );
            for hostile in [
                "' OR 1=1 --",
                "alice' --",
                "\"; DROP TABLE audit; --",
                "%",
                "_",
                "ålîçé\u{202e}",
                "x".repeat(10_000).as_str(),
            ] {
                let rows = all(
                    audit,
                    Filter {
                        user: Some(hostile.to_owned()),
                        ..Filter::default()
                    },
                );
                assert!(rows.is_empty(), "{hostile:?} matched {rows:?}");
            }
            assert_eq!(all(audit, Filter::default()).len(), 1, "the table is there");
        });
    }

    #[test]
    fn stored_text_is_cleaned_and_bounded() {
        each(|audit| {
            let ua = format!("evil\r\nagent\u{0}\u{202e}{}", "a".repeat(10_000));
            let o = Origin::request("2001:db8::1".parse().expect("ip"), Some(&ua));
            let name = format!("mal\nlory\u{0}{}", "z".repeat(500));
            audit.record(
                &o,
                &Event::failed(
                    Kind::SignIn,
                    Some(&name),
                    format!("reason=x\n{}", "d".repeat(5000)),
                ),
            );
            let row = &all(audit, Filter::default())[0];
            let stored = row.user_agent.as_deref().expect("agent");
            assert!(stored.starts_with("evilagent"), "{stored:?}");
            assert_eq!(stored.chars().count(), MAX_USER_AGENT);
            assert!(
                !stored
                    .chars()
                    .any(|c| c.is_control() || crate::logging::is_format(c))
            );
            let subject = row.subject.as_deref().expect("subject");
            assert!(subject.starts_with("mallory"));
            assert_eq!(subject.chars().count(), MAX_NAME);
            assert_eq!(row.detail.chars().count(), MAX_DETAIL);
            assert!(!row.detail.contains('\n'));
            assert_eq!(row.ip.as_deref(), Some("2001:db8::1"));
        });
    }

    #[test]
    fn trimming_takes_only_rows_past_retention_in_batches() {
        each(|audit| {
            for _ in 0..(TRIM_BATCH + 20) {
                audit.record(
                    &Origin::server(),
                    &Event::ok(Kind::ConfigReloaded, None, None),
                );
            }
            let now = crate::clock::now();
            // Nothing is older than a day.
            let mut rounds = 0;
            let kept = audit
                .trim(now, Duration::from_secs(86_400), &mut || {
                    rounds += 1;
                    true
                })
                .expect("trim");
            assert_eq!((kept, rounds), (0, 0));
            // Seen from two days on, all of them are, in two batches.
            let later = now + 2 * 86_400_000;
            let mut asked = 0;
            let n = audit
                .trim(later, Duration::from_secs(86_400), &mut || {
                    asked += 1;
                    true
                })
                .expect("trim");
            assert_eq!(n, TRIM_BATCH + 20);
            assert_eq!(asked, 1, "asked once between the two batches");
            assert!(all(audit, Filter::default()).is_empty());
            // A stop between batches stops it.
            for _ in 0..(TRIM_BATCH + 5) {
                audit.record(
                    &Origin::server(),
                    &Event::ok(Kind::ConfigReloaded, None, None),
                );
            }
            let n = audit
                .trim(later, Duration::from_secs(86_400), &mut || false)
                .expect("trim");
            assert_eq!(n, TRIM_BATCH);
        });
    }

    #[test]
    fn a_flood_of_failures_is_counted_not_recorded_past_the_budget() {
        let mut gate = FloodGate::default();
        let start = Instant::now();
        let admitted = (0..1000).filter(|_| gate.admit(start)).count();
        assert_eq!(admitted, FLOOD_BURST as usize);
        assert_eq!(gate.take_dropped(), 1000 - FLOOD_BURST as u64);
        assert_eq!(gate.take_dropped(), 0);
        // Ten seconds later, twenty more.
        let later = start + Duration::from_secs(10);
        let admitted = (0..100).filter(|_| gate.admit(later)).count();
        assert_eq!(admitted, (10.0 * FLOOD_RATE) as usize);

        each(|audit| {
            let started = Instant::now();
            for _ in 0..(FLOOD_BURST as usize + 50) {
                audit.record(
                    &origin(),
                    &Event::failed(Kind::SignIn, Some("x"), String::new()),
                );
            }
            // What the budget refilled while the rows were written.
            let refilled = (started.elapsed().as_secs_f64() * FLOOD_RATE).ceil() as usize;
            assert!(refilled < 50, "the writes took too long to test the budget");
            // Successes are not held back, nor failures on an account that
            // exists (its own throttle bounds them): a flood of unknown
            // names must not hide a brute force on a real one.
            assert!(audit.record(&origin(), &Event::ok(Kind::SignOut, Some("a"), Some("a"))));
            assert!(audit.record_on_account(
                &origin(),
                &Event::failed(Kind::SignIn, Some("bob"), "reason=wrong_password".into()),
            ));
            audit.flush();
            let rows = all(audit, Filter::default());
            assert!(
                rows.iter()
                    .any(|r| r.subject.as_deref() == Some("bob") && r.kind == "sign_in"),
                "the failure on bob was recorded past the budget"
            );
            let failed = rows
                .iter()
                .filter(|r| r.kind == "sign_in" && r.subject.as_deref() != Some("bob"))
                .count();
            assert!(failed <= FLOOD_BURST as usize + refilled, "{failed}");
            let summary = rows
                .iter()
                .find(|r| r.kind == "not_recorded")
                .expect("the dropped ones are counted");
            assert!(summary.detail.starts_with("count="), "{}", summary.detail);
            audit.flush();
            assert_eq!(
                all(audit, Filter::default()).len(),
                rows.len(),
                "a flush with nothing dropped writes nothing"
            );
        });
    }

    #[test]
    fn a_credential_used_on_every_request_is_recorded_once_an_hour() {
        let mut quiet = Quiet::default();
        let t = Instant::now();
        assert!(quiet.fresh("token:1:ip", t));
        assert!(!quiet.fresh("token:1:ip", t + Duration::from_secs(60)));
        assert!(quiet.fresh("token:2:ip", t));
        assert!(quiet.fresh("token:1:ip", t + QUIET_FOR));
        // Bounded: the map never holds more than its cap.
        for i in 0..(QUIET_KEYS * 3) {
            quiet.fresh(&format!("k{i}"), t);
        }
        assert!(quiet.seen.len() <= QUIET_KEYS);
        each(|audit| {
            for _ in 0..20 {
                audit.record_quietly(
                    &origin(),
                    &Event::ok(Kind::SignIn, Some("a"), Some("a")).detail("method=token"),
                    "token:7:192.0.2.7",
                );
            }
            assert_eq!(all(audit, Filter::default()).len(), 1);
        });
    }

    #[test]
    fn cursors_read_only_two_whole_numbers() {
        assert_eq!(
            Cursor::parse("1700000000000-42"),
            Some(Cursor {
                at: 1_700_000_000_000,
                id: 42
            })
        );
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "a-1",
            "1-b",
            "+1-2",
            " 1-2",
            "1 -2",
            "99999999999999999999-1",
            "1.5-2",
            "１-２",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
        let c = Cursor { at: 5, id: 9 };
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
    }

    #[test]
    fn every_kind_has_one_name_that_reads_back() {
        let mut names = std::collections::BTreeSet::new();
        for k in Kind::ALL {
            assert!(names.insert(k.as_str()), "{} twice", k.as_str());
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
            assert!(!k.label().is_empty());
        }
        assert_eq!(Kind::parse("SIGN_IN"), None);
        assert_eq!(label_of("from_a_newer_version"), "from_a_newer_version");
    }
}
