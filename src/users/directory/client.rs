//! The directory client: one connection per operation over ldap3's
//! synchronous `LdapConn`, TLS through rustls with ring, and every wait
//! bounded.
//!
//! Why a connection per operation rather than a pool: a bind changes who a
//! connection speaks for (checking a password is a bind as the user), a
//! directory closes idle connections on its own schedule (Active Directory
//! after 15 minutes), and sign-ins are rare next to requests (sessions
//! carry them). A new connection costs a TCP and TLS handshake on the LAN,
//! a few milliseconds; a stale pooled one would cost a failed sign-in.
//!
//! Threat: a directory that is down, slow or refuses the service account
//! must not hold request threads. So at most `max_connections` operations
//! run at once (a caller waits at most `connect_timeout` for a turn, else
//! gets [`DirectoryError::Busy`]); the name lookup, TCP connect and TLS
//! handshake together end within `connect_timeout`; and the requests of an
//! operation share one deadline, `operation_timeout` after connecting
//! (each request waits at most what is left of it, and a search stops
//! reading at the deadline). An operation therefore ends within
//! `connect_timeout` (turn) + `connect_timeout` + `operation_timeout`, plus
//! at most one more `operation_timeout` for the last search result a
//! server trickles.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use ldap3::{
    DerefAliases, LdapConn, LdapConnSettings, LdapError, ResultEntry, Scope, SearchEntry,
    SearchOptions, StdStream,
};

use super::escape;
use super::settings::{Lookup, Security, Settings};
use crate::users::Username;

/// The most groups read for one user; more is a misconfigured group filter.
const MAX_GROUPS: usize = 1000;

/// The longest password sent to the directory; longer ones are refused
/// without asking (a form body is capped anyway; this keeps a bind small).
const MAX_PASSWORD: usize = 1024;

/// The longest display name, e-mail address or group name kept.
const MAX_VALUE: usize = 256;

/// Name lookups still running after their caller gave up on them (a DNS
/// server that does not answer): past this many, a new connection fails
/// at once rather than leaving one more thread behind.
const MAX_HANGING_LOOKUPS: usize = 16;

static HANGING_LOOKUPS: AtomicUsize = AtomicUsize::new(0);

/// Why the directory could not answer. The web layer turns all of these
/// but [`DirectoryError::BadEntry`] into `503` ("the directory cannot be
/// reached") and logs the text; none of them is a wrong password.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// No connection: the name does not resolve, nothing listens, TLS
    /// failed (a certificate not trusted or for another name), or the
    /// directory did not answer in time or dropped the connection.
    #[error("the directory cannot be reached: {0}")]
    Unreachable(String),
    /// The directory refused the service account's bind.
    #[error("the directory refused the service account (check ldap.bind_dn and its password): {0}")]
    ServiceAccount(String),
    /// `max_connections` operations were running and none ended in time.
    #[error("the directory is busy: ldap.max_connections operations are running")]
    Busy,
    /// The directory answered a request with an error (a base DN that
    /// does not exist, a filter it refuses, no permission to read).
    #[error("the directory refused a request: {0}")]
    Refused(String),
    /// The entry found cannot be a gatehouse user (no stable id, a name
    /// no username can be).
    #[error("the directory entry {dn:?} cannot be used: {reason}")]
    BadEntry {
        /// The entry.
        dn: String,
        /// Why.
        reason: String,
    },
    /// The TLS configuration could not be made (an unreadable CA file).
    #[error("the directory's TLS settings: {0}")]
    Tls(String),
}

impl DirectoryError {
    /// Whether this means "the directory cannot be used now" (`503`), as
    /// opposed to one entry that cannot be a user.
    pub fn is_outage(&self) -> bool {
        !matches!(self, Self::BadEntry { .. })
    }
}

/// A user as the directory has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's DN.
    pub dn: String,
    /// The stable id (see [`escape::id_text`]).
    pub id: String,
    /// The user's name in the directory (a valid username).
    pub username: String,
    /// The display name, if the entry has one.
    pub display_name: Option<String>,
    /// The e-mail address, if the entry has one.
    pub email: Option<String>,
    /// The names of every group the directory lists for the user.
    pub groups: Vec<String>,
    /// Whether the entry matches the disabled filter.
    pub disabled: bool,
}

/// What a sign-in against the directory found. The caller must answer
/// every refusal alike (one message, one throttle); the variants are told
/// apart only for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The password is right and the entry is not disabled.
    Ok(Entry),
    /// No entry, or more than one, matches the name (or the name cannot
    /// be a username at all).
    UnknownUser,
    /// The directory refused the password (or it was empty).
    WrongPassword,
    /// The password is right but the entry is disabled.
    Disabled,
}

/// What a look-up of a name found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// Exactly one entry.
    One(Box<Entry>),
    /// No entry.
    Nothing,
    /// More than one entry: the user filter does not single a user out.
    Several,
}

/// How long after a failed operation sign-ins are told at once that the
/// directory cannot be reached.
pub const RETRY_AFTER_OUTAGE: Duration = Duration::from_secs(2);

/// The directory as a source of users.
pub struct Directory {
    settings: Arc<Settings>,
    tls: Option<Arc<rustls::ClientConfig>>,
    slots: Arc<Slots>,
    /// When the last operation that needed the directory could not reach
    /// it, if it could not (for `/healthz`, and to answer at once for a
    /// moment after: see [`Directory::just_failed`]).
    unreachable: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.settings.url)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// A client for the directory `settings` describe. Nothing is sent
    /// until an operation needs it.
    ///
    /// # Errors
    ///
    /// [`DirectoryError::Tls`] when the CA certificates cannot be read.
    pub fn new(settings: Settings) -> Result<Self, DirectoryError> {
        let tls = match settings.security {
            Security::Plain => None,
            Security::Ldaps | Security::StartTls => {
                let tls = |e: crate::tls::TlsError| DirectoryError::Tls(e.to_string());
                let ca = settings
                    .ca_file
                    .as_deref()
                    .map(crate::tls::client::CaFile::read)
                    .transpose()
                    .map_err(tls)?;
                Some(Arc::new(
                    crate::tls::client::client_config(ca.as_ref()).map_err(tls)?,
                ))
            }
        };
        Ok(Self {
            slots: Arc::new(Slots::new(settings.max_connections)),
            settings: Arc::new(settings),
            tls,
            unreachable: Arc::default(),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.unreachable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records whether the directory could be reached by the last
    /// operation that needed it (a sign-in, a sync).
    pub fn reached(&self, yes: bool) {
        *self.outage() = (!yes).then(Instant::now);
    }

    /// Whether the last operation that needed the directory could not
    /// reach it.
    pub fn unreachable(&self) -> bool {
        self.outage().is_some()
    }

    /// Whether an operation failed to reach the directory within the last
    /// [`RETRY_AFTER_OUTAGE`]: a sign-in is then answered "unreachable" at
    /// once instead of waiting out the timeouts again (a burst of sign-ins
    /// during an outage queued for a connection, each waiting its full
    /// timeout: seconds past `operation_timeout`, a hostile pass found).
    /// The first after that tries the directory again.
    pub fn just_failed(&self) -> bool {
        self.outage()
            .is_some_and(|at| at.elapsed() < RETRY_AFTER_OUTAGE)
    }

    /// Checks a sign-in: finds the one entry the name stands for with the
    /// service account, then binds as that entry with `password` (the
    /// directory checks it; no hash is ever read). An empty password is
    /// refused before anything is sent: a simple bind with a DN and no
    /// password is an "unauthenticated bind", which many directories
    /// answer with success. Whether the entry is disabled is told only
    /// after the password was right, so it tells a guesser nothing.
    ///
    /// # Errors
    ///
    /// A [`DirectoryError`] when the directory cannot give an answer.
    pub fn authenticate(&self, name: &str, password: &str) -> Result<Outcome, DirectoryError> {
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return Ok(Outcome::WrongPassword);
        }
        // Threat: filter injection, and names no local user could have.
        // Only a valid username is looked up (and it is escaped besides).
        let Ok(name) = Username::parse(name) else {
            return Ok(Outcome::UnknownUser);
        };
        let mut op = self.open()?;
        op.bind_service()?;
        let Some(raw) = op.find_user(&name)? else {
            // As long as a wrong password takes: one more round trip, a
            // bind to a DN that does not exist. Whatever the directory
            // answers means the same here (directories differ on such a
            // DN); only a lost connection is an error.
            let dummy = format!("cn=gatehouse-no-such-entry,{}", self.settings.base_dn);
            op.bind_code(&dummy, password)?;
            op.close();
            return Ok(Outcome::UnknownUser);
        };
        let entry = op.complete(&raw, &name)?;
        let right = op.bind(&entry.dn, password)?;
        op.close();
        Ok(match (right, entry.disabled) {
            (false, _) => Outcome::WrongPassword,
            (true, true) => Outcome::Disabled,
            (true, false) => Outcome::Ok(entry),
        })
    }

    /// What the directory has for a name, without checking a password
    /// (for `gatehouse ldap test`): the entry, its groups, and whether it
    /// is disabled.
    ///
    /// # Errors
    ///
    /// A [`DirectoryError`] when the directory cannot give an answer.
    pub fn lookup(&self, name: &Username) -> Result<Found, DirectoryError> {
        let mut op = self.open()?;
        op.bind_service()?;
        let found = match op.find_users(name)?.as_slice() {
            [] => Found::Nothing,
            [raw] => Found::One(Box::new(op.complete(raw, name)?)),
            _ => Found::Several,
        };
        op.close();
        Ok(found)
    }

    /// The entries of the stable ids `ids` (as [`escape::id_text`] wrote
    /// them), over one connection, each within its own
    /// `operation_timeout`: `None` for an id no entry has any more, or
    /// whose entry the user filter no longer finds by its name (moved out
    /// of the users, or renamed onto another entry's name).
    ///
    /// # Errors
    ///
    /// A [`DirectoryError`] when the directory cannot give an answer; an
    /// entry that cannot be a user counts as gone.
    pub fn find_by_ids(&self, ids: &[String]) -> Result<Vec<Option<Entry>>, DirectoryError> {
        let mut op = self.open()?;
        op.bind_service()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            op.deadline = Instant::now() + self.settings.operation_timeout;
            out.push(match op.find_by_id(id) {
                Err(DirectoryError::BadEntry { .. }) => None,
                other => other?,
            });
        }
        op.close();
        Ok(out)
    }

    /// Connects and binds as the service account, and nothing else: that
    /// the directory can be used (for health checks and `ldap test`).
    ///
    /// # Errors
    ///
    /// A [`DirectoryError`] saying why it cannot.
    pub fn check(&self) -> Result<(), DirectoryError> {
        let mut op = self.open()?;
        op.bind_service()?;
        op.close();
        Ok(())
    }

    /// A connection for one operation, once a turn is free.
    fn open(&self) -> Result<Operation<'_>, DirectoryError> {
        let s = &*self.settings;
        let slot = self.slots.take(s.connect_timeout)?;
        let deadline = Instant::now() + s.connect_timeout;
        let stream = connect(&s.host, s.port, deadline)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out("connecting"));
        }
        let mut with = LdapConnSettings::new()
            .set_conn_timeout(left)
            .set_std_stream(StdStream::Tcp(stream));
        if let Some(tls) = &self.tls {
            with = with.set_config(Arc::clone(tls));
        }
        let scheme = match s.security {
            Security::Ldaps => "ldaps",
            Security::StartTls => {
                with = with.set_starttls(true);
                "ldap"
            }
            Security::Plain => "ldap",
        };
        let url = format!("{scheme}://{}:{}", s.host, s.port);
        let ldap = LdapConn::with_settings(with, &url).map_err(|e| unreachable(&e))?;
        Ok(Operation {
            ldap,
            settings: s,
            deadline: Instant::now() + s.operation_timeout,
            _slot: slot,
        })
    }
}

/// One operation's connection and deadline, holding a turn.
struct Operation<'a> {
    ldap: LdapConn,
    settings: &'a Settings,
    deadline: Instant,
    _slot: Slot<'a>,
}

impl<'a> Operation<'a> {
    /// What is left of the deadline.
    fn left(&self) -> Result<Duration, DirectoryError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(timed_out("waiting for an answer"))
        } else {
            Ok(left)
        }
    }

    /// Binds as the service account (or anonymously, with none).
    fn bind_service(&mut self) -> Result<(), DirectoryError> {
        let (dn, password) = match &self.settings.bind_dn {
            Some(dn) => (dn.as_str(), self.settings.bind_password.expose()),
            None => ("", ""),
        };
        let left = self.left()?;
        let result = self
            .ldap
            .with_timeout(left)
            .simple_bind(dn, password)
            .map_err(|e| unreachable(&e))?;
        match result.rc {
            0 => Ok(()),
            rc => Err(DirectoryError::ServiceAccount(describe(rc, &result.text))),
        }
    }

    /// Binds as `dn` with `password`: the result code and text.
    fn bind_code(&mut self, dn: &str, password: &str) -> Result<(u32, String), DirectoryError> {
        let left = self.left()?;
        let result = self
            .ldap
            .with_timeout(left)
            .simple_bind(dn, password)
            .map_err(|e| unreachable(&e))?;
        Ok((result.rc, result.text))
    }

    /// Binds as `dn` with `password`: whether the directory accepted it.
    fn bind(&mut self, dn: &str, password: &str) -> Result<bool, DirectoryError> {
        let (rc, text) = self.bind_code(dn, password)?;
        match rc {
            0 => Ok(true),
            // invalidCredentials (also Active Directory's answer for a
            // disabled, expired or locked account), unwillingToPerform
            // (an account the directory will not let bind).
            49 | 53 => Ok(false),
            rc => Err(DirectoryError::Refused(format!(
                "bind: {}",
                describe(rc, &text)
            ))),
        }
    }

    /// The attributes read with a user entry.
    fn user_attributes(&self) -> Vec<&'a str> {
        let s: &'a Settings = self.settings;
        let mut attrs = vec![
            s.username_attribute.as_str(),
            s.display_name_attribute.as_str(),
            s.email_attribute.as_str(),
            s.id_attribute.as_str(),
        ];
        if s.group_lookup == Lookup::MemberOf {
            attrs.push(&s.member_of_attribute);
        }
        attrs
    }

    /// The entries the user filter finds for `name` (two at most: more
    /// than one is already too many).
    fn find_users(&mut self, name: &Username) -> Result<Vec<SearchEntry>, DirectoryError> {
        let filter = escape::fill(
            &self.settings.user_filter,
            &[("username", name.as_str().as_bytes())],
        );
        let attrs = self.user_attributes();
        let base: &'a str = &self.settings.base_dn;
        self.search(base, Scope::Subtree, &filter, &attrs, 2)
    }

    /// The one entry the user filter finds for `name`, if exactly one.
    fn find_user(&mut self, name: &Username) -> Result<Option<SearchEntry>, DirectoryError> {
        let mut found = self.find_users(name)?;
        if found.len() > 1 {
            crate::logging::line(&format!(
                "directory: the user filter finds several entries for {}; none is used",
                crate::logging::quote(name.as_str())
            ));
            return Ok(None);
        }
        Ok(found.pop())
    }

    /// The entry with stable id `id`, if the user filter still finds it by
    /// its name.
    fn find_by_id(&mut self, id: &str) -> Result<Option<Entry>, DirectoryError> {
        let Some(bytes) = escape::id_bytes(id) else {
            return Ok(None);
        };
        let filter = format!(
            "({}={})",
            self.settings.id_attribute,
            escape::filter_value(&bytes)
        );
        let attrs = self.user_attributes();
        let base: &'a str = &self.settings.base_dn;
        let found = self.search(base, Scope::Subtree, &filter, &attrs, 2)?;
        let [raw] = found.as_slice() else {
            return Ok(None);
        };
        let Some(name) = first_text(raw, &self.settings.username_attribute)
            .and_then(|n| Username::parse(&n).ok())
        else {
            return Ok(None);
        };
        match self.find_user(&name)? {
            Some(again) if again.dn == raw.dn => Ok(Some(self.complete(&again, &name)?)),
            _ => Ok(None),
        }
    }

    /// The entry read from `raw`, with its groups and disabled mark.
    fn complete(&mut self, raw: &SearchEntry, typed: &Username) -> Result<Entry, DirectoryError> {
        let s = self.settings;
        let bad = |reason: String| DirectoryError::BadEntry {
            dn: raw.dn.clone(),
            reason,
        };
        let id = values(raw, &s.id_attribute)
            .into_iter()
            .next()
            .ok_or_else(|| bad(format!("it has no {}", s.id_attribute)))?;
        let names: Vec<String> = values(raw, &s.username_attribute)
            .into_iter()
            .filter_map(|v| String::from_utf8(v.into_owned()).ok())
            .collect();
        // The directory's spelling of the name typed (uid may hold several
        // names; the filter matched one of them without regard to case).
        let username = names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(typed.as_str()))
            .or(names.first())
            .map_or_else(|| typed.as_str().to_owned(), Clone::clone);
        let username = Username::parse(&username)
            .map_err(|e| bad(format!("its {} {username:?}: {e}", s.username_attribute)))?;
        let mut entry = Entry {
            dn: raw.dn.clone(),
            id: escape::id_text(&id),
            username: username.as_str().to_owned(),
            display_name: first_text(raw, &s.display_name_attribute),
            email: first_text(raw, &s.email_attribute).filter(|e| e.contains('@')),
            groups: Vec::new(),
            disabled: false,
        };
        entry.groups = match s.group_lookup {
            Lookup::MemberOf => values(raw, &s.member_of_attribute)
                .into_iter()
                .filter_map(|dn| escape::first_rdn_value(&String::from_utf8(dn.into_owned()).ok()?))
                .filter_map(|g| exact(&g))
                .collect(),
            Lookup::Search => self.search_groups(&entry)?,
        };
        entry.groups.sort_by_key(|g| g.to_ascii_lowercase());
        entry.groups.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        if let Some(filter) = &s.disabled_filter {
            entry.disabled = !self
                .search(&entry.dn, Scope::Base, filter, &["1.1"], 1)?
                .is_empty();
        }
        Ok(entry)
    }

    /// The names of the groups the group filter finds for `entry`.
    fn search_groups(&mut self, entry: &Entry) -> Result<Vec<String>, DirectoryError> {
        let s = self.settings;
        let filter = escape::fill(
            &s.group_filter,
            &[
                ("dn", entry.dn.as_bytes()),
                ("username", entry.username.as_bytes()),
            ],
        );
        let found = self.search(
            &s.group_base_dn,
            Scope::Subtree,
            &filter,
            &[s.group_name_attribute.as_str()],
            MAX_GROUPS,
        )?;
        Ok(found
            .iter()
            .filter_map(|g| {
                let named = values(g, &s.group_name_attribute)
                    .into_iter()
                    .next()
                    .map(|v| std::str::from_utf8(&v).ok().and_then(exact));
                match named {
                    Some(name) => name,
                    None => escape::first_rdn_value(&g.dn).and_then(|n| exact(&n)),
                }
            })
            .collect())
    }

    /// The entries a search finds (search references skipped), at most
    /// `limit`; more is an error, except when the caller asked for one or
    /// two (whether there is more than one is all it needs to know).
    fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        limit: usize,
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        let left = self.left()?;
        let deadline = self.deadline;
        let seconds = i32::try_from(left.as_secs().max(1)).unwrap_or(i32::MAX);
        let options = SearchOptions::new()
            .deref(DerefAliases::Never)
            .sizelimit(i32::try_from(limit).unwrap_or(i32::MAX))
            .timelimit(seconds);
        let mut stream = self
            .ldap
            .with_search_options(options)
            .with_timeout(left)
            .streaming_search(base, scope, filter, attrs.to_vec())
            .map_err(|e| unreachable(&e))?;
        let mut found = Vec::new();
        let too_many =
            || DirectoryError::Refused(format!("more than {limit} entries match {filter:?}"));
        while let Some(next) = stream.next().map_err(|e| unreachable(&e))? {
            if next.is_ref() || next.is_intermediate() {
                continue;
            }
            if found.len() == limit {
                // The server ignored the size limit; the connection is
                // dropped with the operation, so the rest is never read.
                return if limit <= 2 {
                    Ok(found)
                } else {
                    Err(too_many())
                };
            }
            found.push(entry(next)?);
            if Instant::now() >= deadline {
                return Err(timed_out("reading search results"));
            }
        }
        let result = stream.result();
        match result.rc {
            // success; referral (a part of the tree held elsewhere: not
            // followed).
            0 | 10 => Ok(found),
            // sizeLimitExceeded: `limit` entries came, and there are more.
            4 if limit <= 2 => Ok(found),
            4 => Err(too_many()),
            rc => Err(DirectoryError::Refused(format!(
                "search of {base:?} for {filter:?}: {}",
                describe(rc, &result.text)
            ))),
        }
    }

    /// Ends the operation politely (the connection closes either way).
    fn close(mut self) {
        let _ = self.ldap.unbind();
    }
}

/// A search result as an entry. ldap3 panics on a malformed one; that is
/// caught here, so a broken directory cannot take down a request thread.
fn entry(raw: ResultEntry) -> Result<SearchEntry, DirectoryError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(raw))).map_err(|_| {
        DirectoryError::Refused("the directory sent a malformed search result".to_owned())
    })
}

/// The values of attribute `name` in `entry` (names compared without
/// regard to case, as LDAP does; options such as `;binary` not matched).
fn values<'e>(entry: &'e SearchEntry, name: &str) -> Vec<Cow<'e, [u8]>> {
    let text = entry
        .attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.iter().map(|s| Cow::Borrowed(s.as_bytes())));
    let binary = entry
        .bin_attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.iter().map(|b| Cow::Borrowed(b.as_slice())));
    text.chain(binary).collect()
}

/// The first value of `name` as clean text (see [`clean`]).
fn first_text(entry: &SearchEntry, name: &str) -> Option<String> {
    values(entry, name)
        .into_iter()
        .find_map(|v| clean(std::str::from_utf8(&v).ok()?))
}

/// `value` fit to show and to put in a header: trimmed, without control or
/// bidi-format characters, at most [`MAX_VALUE`] bytes; `None` when
/// nothing is left.
///
/// Threat: directory values reach log lines, pages and the identity
/// headers apps trust (`Remote-Name`); a line break in a display name
/// would forge a header or a log line, a bidi override would disguise a
/// name.
fn clean(value: &str) -> Option<String> {
    let kept: String = value
        .chars()
        .filter(|c| !c.is_control() && !crate::logging::is_format(*c))
        .collect();
    let kept = kept.trim();
    if kept.is_empty() {
        return None;
    }
    let mut end = kept.len().min(MAX_VALUE);
    while !kept.is_char_boundary(end) {
        end -= 1;
    }
    Some(kept[..end].to_owned())
}

/// `value` as a name that decides something (a group's: it may make its
/// member an administrator), never rewritten: plain spaces around it
/// dropped, and `None` when it holds a control or bidi-format character
/// or is empty or longer than [`MAX_VALUE`]. ([`clean`] would make
/// `ad<TAB>mins` into `admins`: a hostile pass made a user an
/// administrator with such a group.)
fn exact(value: &str) -> Option<String> {
    let kept = value.trim_matches(' ');
    let fine = !kept.is_empty()
        && kept.len() <= MAX_VALUE
        && !kept
            .chars()
            .any(|c| c.is_control() || crate::logging::is_format(c));
    fine.then(|| kept.to_owned())
}

/// An LDAP result code and text, for a message.
fn describe(rc: u32, text: &str) -> String {
    let name = match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        13 => "confidentialityRequired",
        32 => "noSuchObject (is the DN right?)",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        _ => "error",
    };
    let text = text.trim();
    if text.is_empty() {
        format!("{name} ({rc})")
    } else {
        format!("{name} ({rc}): {}", clean(text).unwrap_or_default())
    }
}

fn timed_out(what: &str) -> DirectoryError {
    DirectoryError::Unreachable(format!("timed out {what}"))
}

/// What an ldap3 failure means: the connection failed or timed out (the
/// directory cannot be reached), or a request was wrong (a filter that
/// does not parse: the settings' fault, not the network's).
fn unreachable(e: &LdapError) -> DirectoryError {
    match e {
        LdapError::Timeout { .. } => timed_out("waiting for the directory"),
        LdapError::FilterParsing => DirectoryError::Refused(
            "a search filter does not parse (check the ldap.*_filter settings)".to_owned(),
        ),
        LdapError::LdapResult { result } => {
            DirectoryError::Refused(describe(result.rc, &result.text))
        }
        e => DirectoryError::Unreachable(e.to_string()),
    }
}

/// A TCP connection to `host:port` made before `deadline`: each address
/// the name resolves to, in turn.
fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, DirectoryError> {
    let addrs = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => resolve(host, port, deadline)?,
    };
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(DirectoryError::Unreachable(last.unwrap_or_else(|| {
        format!("timed out connecting to {host}:{port}")
    })))
}

/// The addresses of `host`, looked up on a thread of its own so that a
/// DNS server that does not answer costs the caller no more than the
/// deadline (the lookup itself ends when the resolver gives up).
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, DirectoryError> {
    if HANGING_LOOKUPS.load(Ordering::Relaxed) >= MAX_HANGING_LOOKUPS {
        return Err(DirectoryError::Unreachable(format!(
            "name lookups of {host} are not answered"
        )));
    }
    let (tx, rx) = mpsc::channel();
    let name = (host.to_owned(), port);
    let spawned = std::thread::Builder::new()
        .name("ldap-resolve".into())
        .spawn(move || {
            let found = name.to_socket_addrs().map(Iterator::collect::<Vec<_>>);
            // The caller may have given up; then the answer is dropped.
            if tx.send(found).is_err() {
                HANGING_LOOKUPS.fetch_sub(1, Ordering::Relaxed);
            }
        });
    if let Err(e) = spawned {
        return Err(DirectoryError::Unreachable(format!(
            "cannot look up {host}: {e}"
        )));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(DirectoryError::Unreachable(format!(
            "{host} has no address"
        ))),
        Ok(Err(e)) => Err(DirectoryError::Unreachable(format!(
            "cannot look up {host}: {e}"
        ))),
        Err(_) => {
            // The thread now finishes unwatched: count it until it does.
            HANGING_LOOKUPS.fetch_add(1, Ordering::Relaxed);
            drop(rx);
            Err(DirectoryError::Unreachable(format!(
                "timed out looking up {host}"
            )))
        }
    }
}

/// The cap on operations at once.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

/// One operation's turn; given back when dropped.
struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(max: usize) -> Self {
        Self {
            used: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    /// A turn, waiting at most `wait` for one.
    fn take(&self, wait: Duration) -> Result<Slot<'_>, DirectoryError> {
        let deadline = Instant::now() + wait;
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        while *used >= self.max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DirectoryError::Busy);
            }
            used = self
                .freed
                .wait_timeout(used, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *used += 1;
        Ok(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used = used.saturating_sub(1);
        drop(used);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::path::Path;

    use super::*;
    use crate::users::directory::settings::{BindPassword, Draft};

    /// A directory at `url` (plain LDAP unless it says ldaps), with short
    /// timeouts.
    fn directory(url: &str, timeouts: Duration, max: usize) -> Directory {
        with_ca(url, timeouts, max, "")
    }

    /// The same, trusting the CA certificate in `ca_file`.
    fn with_ca(url: &str, timeouts: Duration, max: usize, ca_file: &str) -> Directory {
        let draft = Draft {
            url: url.to_owned(),
            ca_file: ca_file.to_owned(),
            insecure: url.starts_with("ldap://"),
            base_dn: "dc=example,dc=org".into(),
            bind_dn: "cn=svc,dc=example,dc=org".into(),
            bind_password: BindPassword::new("pw"),
            sync_interval: Duration::from_secs(300),
            connect_timeout: timeouts,
            operation_timeout: timeouts,
            max_connections: max,
            ..Draft::default()
        };
        let settings = draft
            .resolve(Path::new("."))
            .expect("valid")
            .expect("configured");
        Directory::new(settings).expect("client")
    }

    /// A port nothing listens on (bound, then closed).
    fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    #[test]
    fn a_stopped_directory_is_unreachable_not_a_wrong_password() {
        let d = directory(
            &format!("ldap://127.0.0.1:{}", closed_port()),
            Duration::from_secs(5),
            2,
        );
        let err = d.authenticate("alice", "password1").expect_err("down");
        assert!(matches!(err, DirectoryError::Unreachable(_)), "{err:?}");
        assert!(err.is_outage());
        assert!(err.to_string().contains("cannot be reached"), "{err}");
        assert!(matches!(d.check(), Err(DirectoryError::Unreachable(_))));
    }

    #[test]
    fn a_directory_that_never_answers_times_out() {
        // Accepts connections (the kernel's backlog does) and never says a
        // word: each wait ends at its timeout.
        let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = silent.local_addr().expect("addr").port();
        // A CA of our own, so the TLS variant needs nothing from the system.
        let dir = tempfile::tempdir().expect("dir");
        let ca = crate::tls::TlsFiles::in_data_dir(dir.path());
        crate::tls::self_signed(&ca, &["127.0.0.1".into()], false).expect("certificate");
        for url in [
            format!("ldap://127.0.0.1:{port}"),
            format!("ldaps://127.0.0.1:{port}"),
        ] {
            let ca_file = if url.starts_with("ldaps") {
                ca.cert.to_str().expect("a UTF-8 temp path")
            } else {
                ""
            };
            let d = with_ca(&url, Duration::from_millis(300), 2, ca_file);
            let started = Instant::now();
            let err = d.authenticate("alice", "password1").expect_err("silent");
            assert!(
                matches!(err, DirectoryError::Unreachable(_)),
                "{url}: {err:?}"
            );
            assert!(err.to_string().contains("timed out"), "{url}: {err}");
            // Generous: the point is that it ends, not how fast.
            assert!(started.elapsed() < Duration::from_secs(30), "{url}");
        }
    }

    #[test]
    fn an_empty_password_or_an_impossible_name_never_reaches_the_directory() {
        // Anything that connects would be seen by this listener.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let d = directory(
            &format!("ldap://127.0.0.1:{port}"),
            Duration::from_secs(5),
            2,
        );
        assert_eq!(
            d.authenticate("alice", "").expect("no bind"),
            Outcome::WrongPassword
        );
        let long = "x".repeat(MAX_PASSWORD + 1);
        assert_eq!(
            d.authenticate("alice", &long).expect("no bind"),
            Outcome::WrongPassword
        );
        for name in [
            "*",
            ")(",
            "a*",
            "alice)(uid=*",
            "\0",
            "\\",
            "al\0ice",
            "é",
            "",
        ] {
            assert_eq!(
                d.authenticate(name, "password1").expect("refused here"),
                Outcome::UnknownUser,
                "{name:?}"
            );
        }
        assert!(
            listener.accept().is_err(),
            "a connection was made for input that must never reach the directory"
        );
    }

    #[test]
    fn operations_beyond_the_cap_wait_then_are_told_busy() {
        let slots = Slots::new(2);
        let a = slots.take(Duration::from_millis(10)).expect("first");
        let _b = slots.take(Duration::from_millis(10)).expect("second");
        assert!(matches!(
            slots.take(Duration::from_millis(50)),
            Err(DirectoryError::Busy)
        ));
        // A turn given back is taken by a waiter.
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| slots.take(Duration::from_secs(30)).map(|_| ()));
            std::thread::sleep(Duration::from_millis(50));
            drop(a);
            assert!(waiter.join().expect("joined").is_ok());
        });
    }

    #[test]
    fn values_from_the_directory_are_cleaned_for_headers_and_logs() {
        assert_eq!(clean("  Alice Liddell ").as_deref(), Some("Alice Liddell"));
        assert_eq!(
            clean("Alice\r\nX-Forged: 1").as_deref(),
            Some("AliceX-Forged: 1")
        );
        assert_eq!(clean("al\u{202e}ice").as_deref(), Some("alice"));
        assert_eq!(clean("\n\t"), None);
        // A name that decides something is never rewritten.
        assert_eq!(exact(" admins ").as_deref(), Some("admins"));
        for bad in [
            "ad\tmins",
            "ad\u{1b}mins",
            "st\u{7f}aff",
            "ad\u{202e}mins",
            "",
            "   ",
        ] {
            assert_eq!(exact(bad), None, "{bad:?}");
        }
        let long = "é".repeat(MAX_VALUE);
        let kept = clean(&long).expect("kept");
        assert!(kept.len() <= MAX_VALUE && kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_name_that_does_not_resolve_is_unreachable() {
        let d = directory("ldap://no-such-host.invalid", Duration::from_secs(10), 2);
        let err = d.check().expect_err("no such host");
        assert!(matches!(err, DirectoryError::Unreachable(_)), "{err:?}");
    }

    #[test]
    fn after_an_outage_sign_ins_are_told_at_once_for_a_moment() {
        let d = directory("ldap://127.0.0.1:1", Duration::from_secs(1), 1);
        assert!(!d.unreachable() && !d.just_failed());
        d.reached(false);
        assert!(d.unreachable() && d.just_failed());
        *d.outage() = Some(Instant::now() - RETRY_AFTER_OUTAGE);
        assert!(d.unreachable(), "still named by /healthz");
        assert!(!d.just_failed(), "the next sign-in tries again");
        d.reached(true);
        assert!(!d.unreachable());
    }
}
