//! Users and their bcrypt hashes: [`Username::parse`], the [`Users`] rules
//! over a backend trait whose statements live in `sqlite` (the default) and
//! `postgres` (a shared database), and the password rules in [`password`].
//! Second factors (authenticator codes, recovery codes, passkeys, kept
//! beside the users) are [`factors`]; the WebAuthn relying party's checks
//! are [`passkey`]; groups and their members (the admin flag is membership
//! of `admins`) are [`groups`]; personal access tokens are [`tokens`], and the passwords lately
//! verified over Basic [`basic`]; invites, reset links and sign-in links for a
//! new device are [`links`]; where a user comes from is [`source`], and the
//! directory (LDAP) as a source of users is [`directory`]; the audit log of
//! security events, kept beside the users, is [`audit`].
//!
//! Usernames are ASCII so that SQLite's `NOCASE` collation (and `lower()` in
//! PostgreSQL) makes them unique without regard to case, exactly; the name
//! is kept as first typed.

use std::sync::Arc;

pub mod audit;
pub mod basic;
pub mod directory;
pub mod factors;
pub mod groups;
pub mod links;
pub mod passkey;
pub mod password;
mod postgres;
pub mod source;
mod sqlite;
pub mod tokens;

use crate::clock::{self, Millis};
use crate::db::{DbError, Pool};
use password::{Hasher, PasswordError, Source, Turn};

/// The longest username accepted.
pub const MAX_USERNAME: usize = 64;

/// A validated username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Accepts 1 to 64 ASCII letters, digits, `.`, `_`, `-` and `@`,
    /// starting with a letter or digit. Plain spaces around the name (a
    /// slip of the keyboard) are dropped; nothing else is: a name with a
    /// line break, a NUL, a tab, any other control character, a bidi
    /// override or a zero-width character is refused, never trimmed into
    /// someone else's name (a `"\r\nalice"` would otherwise sign in as
    /// `alice` and forge log lines; an `"alice\u{202e}"` would look like
    /// her in a list).
    ///
    /// # Errors
    ///
    /// [`UserError::InvalidName`] saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, UserError> {
        let s = check_name(s).map_err(|p| {
            UserError::InvalidName(match p {
                NameProblem::Empty => "the username is empty",
                NameProblem::TooLong => "the username is longer than 64 characters",
                NameProblem::Start => "the username must start with a letter or digit",
                NameProblem::Character => {
                    "the username may contain only letters, digits, '.', '_', '-' and '@'"
                }
            })
        })?;
        Ok(Self(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a name (a username or a group name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameProblem {
    Empty,
    TooLong,
    Start,
    Character,
}

/// The rules usernames and group names share: `s` without the plain
/// spaces around it, 1 to [`MAX_USERNAME`] ASCII letters, digits, `.`,
/// `_`, `-` and `@`, starting with a letter or digit. Nothing a header
/// value or a list could be split at (`,`, `;`, `=`, spaces), no control
/// character and nothing outside ASCII (no look-alike of another name)
/// gets through.
pub(crate) fn check_name(s: &str) -> Result<&str, NameProblem> {
    let s = trim_spaces(s);
    if s.is_empty() {
        return Err(NameProblem::Empty);
    }
    if s.len() > MAX_USERNAME {
        return Err(NameProblem::TooLong);
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(NameProblem::Start);
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(NameProblem::Character);
    }
    Ok(s)
}

/// `s` without the plain spaces (U+0020) around it, and nothing else:
/// every place that reads a username from a client trims with this, so a
/// line break or a control character stays in the name and gets it
/// refused. (`str::trim` would drop `\r`, `\n`, `\t`, U+0085 and U+2028.)
pub fn trim_spaces(s: &str) -> &str {
    s.trim_matches(' ')
}

/// A user as stored, without the hash, and its id: defined in the bottom
/// layer [`crate::identity`], because the session stores read the same row
/// along with a session.
pub use crate::identity::{ADMINS, User, UserId};

/// Errors from user operations.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The username breaks the rules.
    #[error("{0}")]
    InvalidName(&'static str),
    /// Another user has that name (in any case).
    #[error("a user with that name already exists")]
    Taken,
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// The password breaks the rules or could not be hashed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The database could not be reached; the request may succeed later.
    #[error("user database unavailable: {0}")]
    Unavailable(String),
    /// The directory could not answer a sign-in (down, slow, refusing the
    /// service account): why, for the log; the page says it in its own
    /// words. Local users are not affected.
    #[error("{0}")]
    DirectoryUnavailable(String),
    /// No secrets to seal second-factor seeds with.
    #[error("no secrets configured to seal second-factor seeds with")]
    NoSeedKey,
    /// A second factor could not be used (a seed no secret opens).
    #[error("{0}")]
    Factor(String),
    /// The change would leave no enabled member of `admins`.
    #[error("this is the last administrator; make someone else an administrator first")]
    LastAdministrator,
    /// No such group.
    #[error("no such group")]
    NoSuchGroup,
    /// No such token (or not the caller's).
    #[error("no such token")]
    NoSuchToken,
    /// A token name must be 1 to 64 printable characters.
    #[error("a token name must be 1 to 64 printable characters, and app names hold no ','")]
    InvalidTokenName,
    /// The user holds as many tokens as they may.
    #[error("no more tokens: revoke one first (at most 50 each)")]
    TooMany,
    /// Another group has that name (in any case).
    #[error("a group with that name already exists")]
    GroupTaken,
    /// `admins` is kept: it cannot be renamed or deleted.
    #[error("the admins group cannot be renamed or deleted")]
    Builtin,
    /// The user comes from the directory, which keeps their password.
    #[error("this user's password is kept by the directory; change it there")]
    External,
    /// No such invite, reset link or sign-in link (or not the caller's).
    #[error("no such link")]
    NoSuchLink,
    /// A link's settings break a rule; the message says which.
    #[error("{0}")]
    InvalidLink(&'static str),
}

impl From<rusqlite::Error> for UserError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

impl From<r2d2::Error> for UserError {
    fn from(e: r2d2::Error) -> Self {
        Self::Db(DbError::Pool(e))
    }
}

/// The outcome of a sign-in attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    /// The password matched an enabled user.
    Ok(User),
    /// No such user (a dummy hash was verified to spend the same time).
    UnknownUser,
    /// The user exists but the password is wrong.
    WrongPassword,
    /// The password matched but the user is disabled.
    Disabled,
}

/// Where users are kept: the statements each database runs.
///
/// Each method is one statement; the rules (hashing, validation, the
/// dummy verify) live in [`Users`], so both databases behave alike.
trait Backend: Send + Sync {
    fn insert(
        &self,
        name: &str,
        hash: &str,
        is_admin: bool,
        now: Millis,
        stamp: &str,
    ) -> Result<User, UserError>;
    fn find_by_id(&self, id: UserId) -> Result<Option<User>, UserError>;
    fn find_by_name(&self, name: &str) -> Result<Option<User>, UserError>;
    fn find_with_hash(&self, name: &str) -> Result<Option<(User, String)>, UserError>;
    fn list(&self) -> Result<Vec<User>, UserError>;
    fn count(&self) -> Result<i64, UserError>;
    fn set_password_hash(&self, id: UserId, hash: &str, now: Millis) -> Result<(), UserError>;
    /// Replaces the hash `old` by `new` (the same password at another
    /// cost), leaving `password_changed_at` alone; false when the hash is
    /// no longer `old` (the password changed meanwhile).
    fn rehash(&self, id: UserId, old: &str, new: &str) -> Result<bool, UserError>;
    /// How many stored hashes begin with each 7-character head
    /// (`$2b$10$`): their kind and cost.
    fn hash_kinds(&self) -> Result<Vec<(String, i64)>, UserError>;
    fn set_disabled(&self, id: UserId, value: bool) -> Result<(), UserError>;
    fn delete(&self, id: UserId) -> Result<(), UserError>;
    fn import(&self, user: &User, hash: &str) -> Result<(), UserError>;
    fn export(&self) -> Result<Vec<(User, String)>, UserError>;
}

/// The gatehouse groups a directory user in `directory_groups` is in:
/// those `ldap.groups` keeps that can be group names here (not `admins`),
/// and `admins` for a member of `ldap.admin_group`.
pub fn directory_groups_wanted(
    directory_groups: &[String],
    settings: &directory::Settings,
) -> Vec<String> {
    let mut wanted: Vec<String> = settings
        .kept_groups(directory_groups)
        .into_iter()
        .filter_map(|g| groups::GroupName::parse(g).ok())
        .filter(|g| !g.is_admins())
        .map(|g| g.as_str().to_owned())
        .collect();
    if settings.is_admin(directory_groups) {
        wanted.push(ADMINS.to_owned());
    }
    wanted
}

/// The users table and the hasher that guards it.
#[derive(Clone)]
pub struct Users {
    db: Arc<dyn Backend>,
    sources: Arc<dyn source::SourceStore>,
    groups: Arc<dyn groups::GroupStore>,
    tokens: tokens::Tokens,
    links: Arc<dyn links::LinkStore>,
    audit: audit::Audit,
    basic: Arc<basic::BasicCache>,
    /// The directory users from it sign in with, if one is configured.
    directory: Option<Arc<directory::Directory>>,
    hasher: Arc<Hasher>,
    factors: factors::Factors,
    /// When the dummy hash's cost was last matched to the stored hashes
    /// (see [`Users::refresh_dummy_cost`]).
    dummy_checked: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// How often a sign-in looks again at the costs of the stored hashes: the
/// other instances of a shared database rehash too.
const DUMMY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Users {
    /// Users in the SQLite `pool`, hashing with `hasher`.
    pub fn new(pool: Pool, hasher: Arc<Hasher>) -> Self {
        let db = Arc::new(sqlite::Sqlite(pool));
        let basic = Arc::new(basic::BasicCache::new());
        Self {
            sources: Arc::clone(&db) as Arc<dyn source::SourceStore>,
            groups: Arc::clone(&db) as Arc<dyn groups::GroupStore>,
            tokens: tokens::Tokens {
                db: Arc::clone(&db) as Arc<dyn tokens::TokenStore>,
            },
            links: Arc::clone(&db) as Arc<dyn links::LinkStore>,
            audit: audit::Audit::new(Arc::clone(&db) as Arc<dyn audit::AuditStore>),
            factors: factors::Factors {
                db: Arc::clone(&db) as Arc<dyn factors::FactorStore>,
                seeds: factors::SeedKey::new(&[]),
                basic: Arc::clone(&basic),
            },
            basic,
            directory: None,
            db,
            hasher,
            dummy_checked: Arc::default(),
        }
    }

    /// Users in a PostgreSQL database, hashing with `hasher`.
    pub fn postgres(pool: crate::db::postgres::PgPool, hasher: Arc<Hasher>) -> Self {
        let db = Arc::new(postgres::Postgres(pool));
        let basic = Arc::new(basic::BasicCache::new());
        Self {
            sources: Arc::clone(&db) as Arc<dyn source::SourceStore>,
            groups: Arc::clone(&db) as Arc<dyn groups::GroupStore>,
            tokens: tokens::Tokens {
                db: Arc::clone(&db) as Arc<dyn tokens::TokenStore>,
            },
            links: Arc::clone(&db) as Arc<dyn links::LinkStore>,
            audit: audit::Audit::new(Arc::clone(&db) as Arc<dyn audit::AuditStore>),
            factors: factors::Factors {
                db: Arc::clone(&db) as Arc<dyn factors::FactorStore>,
                seeds: factors::SeedKey::new(&[]),
                basic: Arc::clone(&basic),
            },
            basic,
            directory: None,
            db,
            hasher,
            dummy_checked: Arc::default(),
        }
    }

    /// The same users, sealing second-factor seeds with keys derived from
    /// `secrets` (the first seals, any opens).
    #[must_use]
    pub fn with_seed_key(mut self, secrets: &[Vec<u8>]) -> Self {
        self.factors.seeds = factors::SeedKey::new(secrets);
        self
    }

    /// The same users, signing in anyone who is not a local user against
    /// `directory` (see [`Users::authenticate_as`]).
    #[must_use]
    pub fn with_directory(mut self, directory: directory::Directory) -> Self {
        self.directory = Some(Arc::new(directory));
        self
    }

    /// The directory users sign in with, if one is configured.
    pub fn directory(&self) -> Option<&directory::Directory> {
        self.directory.as_deref()
    }

    /// The users' second factors.
    pub fn factors(&self) -> &factors::Factors {
        &self.factors
    }

    /// The users' personal access tokens.
    pub fn tokens(&self) -> &tokens::Tokens {
        &self.tokens
    }

    /// The audit log, in the same database.
    pub fn audit(&self) -> &audit::Audit {
        &self.audit
    }

    /// The passwords lately verified over Basic.
    pub fn basic_cache(&self) -> &basic::BasicCache {
        &self.basic
    }

    /// The hasher in use.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// Creates a user.
    ///
    /// # Errors
    ///
    /// A bad password, a taken name, or a database failure.
    pub fn create(
        &self,
        name: &Username,
        password: &str,
        is_admin: bool,
    ) -> Result<User, UserError> {
        let hash = self.hasher.hash(password)?;
        let stamp = crate::identity::new_stamp();
        let user = self
            .db
            .insert(name.as_str(), &hash, is_admin, clock::now(), &stamp)?;
        self.keep_dummy_current();
        Ok(user)
    }

    /// Copies a user as stored elsewhere (id, hash, times and stamp kept),
    /// for moving to another database: their sessions, copied too, stay
    /// theirs. Their groups (`admins` among them) are not: they follow
    /// with [`import_groups`](Self::import_groups).
    ///
    /// # Errors
    ///
    /// A taken name or id, or a database failure.
    pub fn import(&self, user: &User, hash: &str) -> Result<(), UserError> {
        self.db.import(user, hash)
    }

    /// Every user with their hash, for moving to another database.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn export(&self) -> Result<Vec<(User, String)>, UserError> {
        self.db.export()
    }

    /// The user with this id.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn find_by_id(&self, id: UserId) -> Result<Option<User>, UserError> {
        self.db.find_by_id(id)
    }

    /// The user with this name, in any case.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn find_by_name(&self, name: &str) -> Result<Option<User>, UserError> {
        self.db.find_by_name(name)
    }

    /// Like [`find_by_name`](Self::find_by_name), but a missing user is an error.
    ///
    /// # Errors
    ///
    /// [`UserError::NotFound`] or database failures.
    pub fn get_by_name(&self, name: &str) -> Result<User, UserError> {
        self.find_by_name(name)?.ok_or(UserError::NotFound)
    }

    /// Every user, by name.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn list(&self) -> Result<Vec<User>, UserError> {
        self.db.list()
    }

    /// How many users exist.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn count(&self) -> Result<i64, UserError> {
        self.db.count()
    }

    /// How many enabled administrators exist.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn count_active_admins(&self) -> Result<i64, UserError> {
        self.groups.count_active_admins()
    }

    /// Checks a sign-in. Every outcome costs one bcrypt verify, so the time
    /// taken does not tell an unknown user from a wrong password.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`] (as [`UserError::Password`]) or database failures.
    pub fn authenticate(&self, name: &str, password: &str) -> Result<Login, UserError> {
        let login = self.authenticate_as(Source::NONE, name, password, &mut || Turn::Go)?;
        Ok(login.expect("a check that is always let go runs"))
    }

    /// [`authenticate`](Self::authenticate) for a caller from `source` (the
    /// bcrypt queue serves sources fairly), asking `turn` once a
    /// worker is free whether the check may run (see
    /// [`Hasher::verify_as`]); `None` when it said no.
    ///
    /// A right password whose hash has another cost than the server's
    /// `bcrypt_cost` is hashed again at that cost (best effort), so a
    /// change of cost reaches every user who signs in.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Busy`] (as [`UserError::Password`]) or database failures.
    pub fn authenticate_as(
        &self,
        source: Source<'_>,
        name: &str,
        password: &str,
        turn: &mut dyn FnMut() -> Turn,
    ) -> Result<Option<Login>, UserError> {
        // Only a name that could have been created is looked up: anything
        // else (control characters, overlong) is an unknown user, with the
        // same dummy verify, message and throttling as a wrong password.
        let found = match Username::parse(name) {
            Ok(name) => self.db.find_with_hash(name.as_str())?,
            Err(_) => None,
        };
        // Anyone who is not a local user (no row, or a directory user's row
        // without a hash) signs in against the directory, when there is one.
        if let Some(dir) = &self.directory
            && found.as_ref().is_none_or(|(_, hash)| hash.is_empty())
        {
            return self.authenticate_in_directory(dir, source, name, password, turn);
        }
        let Some((user, hash)) = found else {
            let checked = self.hasher.dummy_verify_as(source, password, turn)?;
            return Ok(checked.map(|()| Login::UnknownUser));
        };
        // A user from the directory has no hash here: no local password
        // signs them in, and refusing takes as long as a wrong password.
        if hash.is_empty() {
            let checked = self.hasher.dummy_verify_as(source, password, turn)?;
            return Ok(checked.map(|()| Login::WrongPassword));
        }
        match self.hasher.verify_as(source, password, &hash, turn)? {
            None => Ok(None),
            Some(false) => Ok(Some(Login::WrongPassword)),
            Some(true) if user.disabled => Ok(Some(Login::Disabled)),
            Some(true) => {
                self.rehash(&user, password, &hash);
                self.keep_dummy_current();
                Ok(Some(Login::Ok(user)))
            }
        }
    }

    /// A sign-in against the directory: first the same (dummy) bcrypt a
    /// local sign-in pays, through the same fair queue and `turn` (so the
    /// throttle reserves the attempt exactly as for a local password, and
    /// an answer takes as long whether the name is local, the directory's
    /// or no one's), then the directory's search and bind. A right
    /// password makes or updates the user (found by the entry's stable id,
    /// never by name: see [`Users::upsert_external`]) and sets their
    /// groups to the directory's, mapped (see [`Users::sync_directory_groups`]).
    fn authenticate_in_directory(
        &self,
        dir: &directory::Directory,
        source: Source<'_>,
        name: &str,
        password: &str,
        turn: &mut dyn FnMut() -> Turn,
    ) -> Result<Option<Login>, UserError> {
        let just_failed = || {
            UserError::DirectoryUnavailable(
                "the directory could not be reached a moment ago".into(),
            )
        };
        // Just failed: answered at once, before the queue and the
        // throttle (an outage is no failed attempt).
        if dir.just_failed() {
            return Err(just_failed());
        }
        if self
            .hasher
            .dummy_verify_as(source, password, turn)?
            .is_none()
        {
            return Ok(None);
        }
        if dir.just_failed() {
            return Err(just_failed());
        }
        let outcome = dir.authenticate(name, password);
        dir.reached(outcome.as_ref().map_or_else(|e| !e.is_outage(), |_| true));
        let outcome = outcome.map_err(|e| {
            crate::logging::line(&format!(
                "directory sign-in failed user={} detail={}",
                crate::logging::quote(name),
                crate::logging::quote(&e.to_string())
            ));
            UserError::DirectoryUnavailable(e.to_string())
        })?;
        let entry = match outcome {
            directory::Outcome::Ok(entry) => entry,
            directory::Outcome::UnknownUser => return Ok(Some(Login::UnknownUser)),
            directory::Outcome::WrongPassword => return Ok(Some(Login::WrongPassword)),
            directory::Outcome::Disabled => return Ok(Some(Login::Disabled)),
        };
        let Ok(username) = Username::parse(&entry.username) else {
            return Ok(Some(Login::UnknownUser));
        };
        let external = source::External {
            id: &entry.id,
            username: &username,
            display_name: entry.display_name.as_deref(),
            email: entry.email.as_deref(),
        };
        let user = match self.upsert_external(source::Source::Ldap, &external) {
            Ok((user, _)) => user,
            // A local user holds the name: the directory's entry is not
            // them, and never signs in as them.
            Err(UserError::Taken) => {
                crate::logging::line(&format!(
                    "directory sign-in refused user={} reason=local_user_has_the_name",
                    crate::logging::quote(&entry.username)
                ));
                return Ok(Some(Login::UnknownUser));
            }
            Err(e) => return Err(e),
        };
        self.sync_directory_groups(&user, &entry.groups, dir.settings())?;
        let user = self.find_by_id(user.id)?.ok_or(UserError::NotFound)?;
        Ok(Some(if user.disabled {
            Login::Disabled
        } else {
            Login::Ok(user)
        }))
    }

    /// Makes a directory user's groups the directory's: those `ldap.groups`
    /// keeps (all, when it names none), made here when missing, and
    /// `admins` for a member of `ldap.admin_group`; groups they are no
    /// longer in are left (but the last enabled administrator stays one).
    /// A directory group whose name cannot be a group name here (a `,` or
    /// a space in it) is skipped.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn sync_directory_groups(
        &self,
        user: &User,
        directory_groups: &[String],
        settings: &directory::Settings,
    ) -> Result<(), UserError> {
        let wanted = directory_groups_wanted(directory_groups, settings);
        for name in &wanted {
            if user.groups.iter().any(|g| g.eq_ignore_ascii_case(name)) {
                continue;
            }
            let group = match self.find_group(name)? {
                Some(g) => g,
                None => match groups::GroupName::parse(name).map(|n| self.create_group(&n)) {
                    Ok(Ok(g)) => g,
                    // Made by a sign-in beside this one.
                    Ok(Err(UserError::GroupTaken)) => self.get_group(name)?,
                    Ok(Err(e)) | Err(e) => return Err(e),
                },
            };
            self.join_group(&group, user.id)?;
        }
        for name in &user.groups {
            if wanted.iter().any(|w| w.eq_ignore_ascii_case(name)) {
                continue;
            }
            if let Some(group) = self.find_group(name)? {
                match self.leave_group(&group, user.id, true) {
                    Ok(_) | Err(UserError::LastAdministrator) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Hashes `password` again at the server's cost when `hash` has
    /// another: the stored costs follow a change of `bcrypt_cost` as users
    /// sign in, and with them the dummy hash's (see
    /// [`refresh_dummy_cost`](Self::refresh_dummy_cost)). Best effort: a
    /// busy queue or a failed write leaves it for the next sign-in.
    fn rehash(&self, user: &User, password: &str, hash: &str) {
        if password::cost_of(hash).is_none_or(|c| c == self.hasher.cost()) {
            return;
        }
        let done = self
            .hasher
            .hash_again(password)
            .map_err(UserError::from)
            .and_then(|new| self.db.rehash(user.id, hash, &new));
        match done {
            Ok(_) => {}
            Err(e) => crate::logging::line(&format!(
                "rehash failed user={} detail={}",
                crate::logging::quote(&user.username),
                crate::logging::quote(&e.to_string())
            )),
        }
    }

    /// Makes the dummy hash (spent on unknown names) cost what most stored
    /// hashes cost, ties to the higher cost: right after `bcrypt_cost`
    /// changes, most users still have hashes at the old cost, and an
    /// unknown name answered at the new one would stand out (64 ms against
    /// 3.8 ms). As users sign in they are rehashed at the new cost, and the
    /// dummy follows once they are the most. With no users, the server's
    /// cost. Returns the cost now used.
    ///
    /// # Errors
    ///
    /// Database failures, a busy hasher or a bcrypt failure.
    pub fn refresh_dummy_cost(&self) -> Result<u32, UserError> {
        let mut counts: std::collections::BTreeMap<u32, i64> = std::collections::BTreeMap::new();
        for (head, n) in self.db.hash_kinds()? {
            if let Some(cost) = password::cost_of(&format!("{head}x")) {
                *counts.entry(cost).or_default() += n;
            }
        }
        // The most common; among equals the higher (the later in order).
        let cost = counts
            .iter()
            .max_by_key(|(cost, n)| (**n, **cost))
            .map_or(self.hasher.cost(), |(cost, _)| *cost);
        self.hasher.set_dummy_cost(cost)?;
        Ok(cost)
    }

    /// Refreshes the dummy's cost at most once a [`DUMMY_CHECK_EVERY`];
    /// called where timing does not matter (after a right password, after
    /// a password is set), never on the way to refusing an unknown name.
    /// Best effort.
    fn keep_dummy_current(&self) {
        {
            let mut last = self
                .dummy_checked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < DUMMY_CHECK_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        if let Err(e) = self.refresh_dummy_cost() {
            crate::logging::line(&format!(
                "dummy hash cost not refreshed detail={}",
                crate::logging::quote(&e.to_string())
            ));
        }
    }

    /// Sets a new password.
    ///
    /// # Errors
    ///
    /// A bad password, no such user, [`UserError::External`] for a user
    /// whose password the directory keeps, or database failures.
    pub fn set_password(&self, id: UserId, password: &str) -> Result<(), UserError> {
        if self
            .sources
            .profile(id)?
            .is_some_and(|p| p.source != source::Source::Local)
        {
            return Err(UserError::External);
        }
        let hash = self.hasher.hash(password)?;
        self.db.set_password_hash(id, &hash, clock::now())?;
        self.keep_dummy_current();
        Ok(())
    }

    /// Disables or enables a user, whatever their groups (see
    /// [`disable`](Self::disable) for the rule-keeping way).
    ///
    /// # Errors
    ///
    /// No such user, or database failures.
    pub fn set_disabled(&self, id: UserId, disabled: bool) -> Result<(), UserError> {
        self.db.set_disabled(id, disabled)?;
        if disabled {
            self.tokens.end_all(id)?;
        }
        Ok(())
    }

    /// Disables a user; with `keep_admin`, refused when they are the last
    /// enabled member of `admins`, checked in the same transaction.
    ///
    /// # Errors
    ///
    /// [`UserError::LastAdministrator`], no such user, or database failures.
    pub fn disable(&self, id: UserId, keep_admin: bool) -> Result<(), UserError> {
        self.groups.disable_user(id, keep_admin)?;
        // Their tokens end, as their sessions do (the check refuses a
        // disabled user's token meanwhile).
        self.tokens.end_all(id)?;
        Ok(())
    }

    /// Grants (puts in `admins`) or revokes (takes out of it) admin rights,
    /// whatever the last-administrator rule says (see
    /// [`leave_group`](Self::leave_group) for the rule-keeping way).
    ///
    /// # Errors
    ///
    /// No such user, or database failures.
    pub fn set_admin(&self, id: UserId, is_admin: bool) -> Result<(), UserError> {
        let admins = self.admins()?;
        if is_admin {
            self.groups.add_member(admins.id, id)?;
        } else if !self.groups.remove_member(admins.id, id, false)?
            && self.find_by_id(id)?.is_none()
        {
            return Err(UserError::NotFound);
        }
        Ok(())
    }

    /// Deletes a user, whatever their groups. Sessions in the same SQL
    /// database go with them (foreign-key cascade); callers end sessions
    /// kept elsewhere first.
    ///
    /// # Errors
    ///
    /// No such user, or database failures.
    pub fn delete(&self, id: UserId) -> Result<(), UserError> {
        self.db.delete(id)
    }

    /// [`delete`](Self::delete); with `keep_admin`, refused when the user
    /// is the last enabled member of `admins`, checked in the same
    /// transaction.
    ///
    /// # Errors
    ///
    /// [`UserError::LastAdministrator`], no such user, or database failures.
    pub fn remove(&self, id: UserId, keep_admin: bool) -> Result<(), UserError> {
        self.groups.delete_user(id, keep_admin)
    }

    /// Makes a group.
    ///
    /// # Errors
    ///
    /// [`UserError::GroupTaken`] or database failures.
    pub fn create_group(&self, name: &groups::GroupName) -> Result<groups::Group, UserError> {
        self.groups.create(name.as_str(), clock::now())
    }

    /// Renames a group; `admins` is kept ([`UserError::Builtin`]), and so
    /// is its name: no other group may be renamed to it.
    ///
    /// # Errors
    ///
    /// [`UserError::Builtin`], [`UserError::GroupTaken`],
    /// [`UserError::NoSuchGroup`] or database failures.
    pub fn rename_group(
        &self,
        group: &groups::Group,
        name: &groups::GroupName,
    ) -> Result<(), UserError> {
        if group.is_admins() {
            return Err(UserError::Builtin);
        }
        self.groups.rename(group.id, name.as_str())
    }

    /// Deletes a group (its memberships go with it); `admins` is kept.
    ///
    /// # Errors
    ///
    /// [`UserError::Builtin`], [`UserError::NoSuchGroup`] or database
    /// failures.
    pub fn delete_group(&self, group: &groups::Group) -> Result<(), UserError> {
        if group.is_admins() {
            return Err(UserError::Builtin);
        }
        self.groups.delete(group.id)
    }

    /// The group with this name, in any case.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn find_group(&self, name: &str) -> Result<Option<groups::Group>, UserError> {
        self.groups.find_by_name(name)
    }

    /// Like [`find_group`](Self::find_group), but a missing group is an error.
    ///
    /// # Errors
    ///
    /// [`UserError::NoSuchGroup`] or database failures.
    pub fn get_group(&self, name: &str) -> Result<groups::Group, UserError> {
        self.find_group(name)?.ok_or(UserError::NoSuchGroup)
    }

    fn admins(&self) -> Result<groups::Group, UserError> {
        self.get_group(ADMINS)
    }

    /// Every group with its member count, by name.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn groups(&self) -> Result<Vec<groups::Group>, UserError> {
        self.groups.list()
    }

    /// The members of `group`, by name.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn members(&self, group: &groups::Group) -> Result<Vec<User>, UserError> {
        self.groups.members(group.id)
    }

    /// The names of the groups user `id` is in, sorted: one indexed read.
    /// (A user read by id or name, or with their session, carries them
    /// already in [`User::groups`].)
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn groups_of(&self, id: UserId) -> Result<Vec<String>, UserError> {
        self.groups.groups_of(id)
    }

    /// Puts a user in a group; false when they were in it.
    ///
    /// # Errors
    ///
    /// [`UserError::NoSuchGroup`], [`UserError::NotFound`] or database
    /// failures.
    pub fn join_group(&self, group: &groups::Group, user: UserId) -> Result<bool, UserError> {
        self.groups.add_member(group.id, user)
    }

    /// Takes a user out of a group; false when they were not in it. With
    /// `keep_admin`, leaving `admins` is refused for its last enabled
    /// member, checked in the same transaction as the change.
    ///
    /// # Errors
    ///
    /// [`UserError::LastAdministrator`], [`UserError::NoSuchGroup`] or
    /// database failures.
    pub fn leave_group(
        &self,
        group: &groups::Group,
        user: UserId,
        keep_admin: bool,
    ) -> Result<bool, UserError> {
        self.groups.remove_member(group.id, user, keep_admin)
    }

    /// Every group and membership, for moving to another database.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn export_groups(&self) -> Result<groups::Exported, UserError> {
        self.groups.export()
    }

    /// Copies groups and memberships exported from another database, after
    /// their users were imported.
    ///
    /// # Errors
    ///
    /// A taken group name, or database failures.
    pub fn import_groups(&self, exported: &groups::Exported) -> Result<(), UserError> {
        self.groups.import(exported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `check` on users in SQLite and, when a server is configured
    /// for tests, in PostgreSQL.
    fn each(check: impl Fn(&Users)) {
        let hasher = Arc::new(Hasher::new(4, 2, std::time::Duration::from_secs(10)));
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(&dir.path().join("u.db"), 2).expect("open");
        check(&Users::new(pool, Arc::clone(&hasher)));
        if let Some(url) = crate::db::postgres::test_url() {
            let url = crate::db::postgres::scratch_schema(&url).expect("schema");
            let pool = crate::db::postgres::open_for_tests(&url, 2).expect("open");
            check(&Users::postgres(pool, hasher));
        }
    }

    fn name(s: &str) -> Username {
        Username::parse(s).expect("valid name")
    }

    #[test]
    fn second_factors_behave_alike_on_every_backend() {
        each(|users| {
            let users = users.clone().with_seed_key(&[b"a test secret".to_vec()]);
            factors::conformance(users.factors(), &users);
        });
    }

    #[test]
    fn a_user_whose_commit_fails_is_not_reported_created() {
        let hasher = Arc::new(Hasher::new(4, 2, std::time::Duration::from_secs(10)));
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(&dir.path().join("u.db"), 2).expect("open");
        // Every insert of a user fails at commit (a deferred foreign key
        // broken by a trigger), as it does when the disk is full.
        pool.get()
            .expect("conn")
            .execute_batch(&crate::db::fail_at_commit("users", "INSERT"))
            .expect("trigger");
        let users = Users::new(pool, hasher);
        let result = users.create(&name("bob"), "password1", false);
        assert!(result.is_err(), "{result:?}");
        assert!(users.find_by_name("bob").expect("find").is_none());
    }

    #[test]
    fn a_user_whose_commit_fails_is_not_reported_created_on_postgres() {
        let Some(url) = crate::db::postgres::test_url() else {
            return;
        };
        let url = crate::db::postgres::scratch_schema(&url).expect("schema");
        let pool = crate::db::postgres::open_for_tests(&url, 2).expect("open");
        pool.get()
            .expect("conn")
            .batch_execute(&crate::db::postgres::fail_at_commit("users", "INSERT"))
            .expect("trigger");
        let users = Users::postgres(
            pool,
            Arc::new(Hasher::new(4, 2, std::time::Duration::from_secs(10))),
        );
        let result = users.create(&name("bob"), "password1", false);
        assert!(result.is_err(), "{result:?}");
        assert!(users.find_by_name("bob").expect("find").is_none());
    }

    #[test]
    fn usernames_are_checked() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("a.b-c_d@lan").is_ok());
        assert_eq!(Username::parse("  bob ").expect("trimmed").as_str(), "bob");
        for bad in ["", "-x", "has space", "é", "a/b", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn control_and_format_characters_are_refused_not_trimmed() {
        let mut bad: Vec<String> = [
            "\r\nalice",
            "alice\r\n",
            "\nalice",
            "\talice",
            "alice\0",
            "\0alice",
            "al\u{7f}ice",
            "\u{85}alice",
            "alice\u{85}",
            "\u{a0}alice",
            "\u{2028}alice",
            "alice\u{202e}",
            "\u{202e}alice",
            "\u{2066}alice\u{2069}",
            "\u{2067}alice",
            "\u{2068}alice",
            "\u{200b}alice",
            "alice\u{200d}",
            "\u{feff}alice",
            "\u{3000}alice",
        ]
        .map(str::to_owned)
        .to_vec();
        // Every C0 and C1 control, before and after the name.
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            bad.push(format!("{c}alice"));
            bad.push(format!("alice{c}"));
        }
        for name in &bad {
            assert!(Username::parse(name).is_err(), "{name:?} was accepted");
        }
        assert_eq!(
            Username::parse(" alice ").expect("spaces").as_str(),
            "alice"
        );
    }

    #[test]
    fn a_name_with_control_characters_does_not_sign_in_as_the_user() {
        each(|u| {
            u.create(&name("alice"), "password1", false)
                .expect("create");
            for n in [
                "\r\nalice",
                "alice\n",
                "\0alice",
                "alice\u{202e}",
                "\u{200b}alice",
            ] {
                assert_eq!(
                    u.authenticate(n, "password1").expect("auth"),
                    Login::UnknownUser,
                    "{n:?}"
                );
            }
            assert!(matches!(
                u.authenticate(" alice ", "password1").expect("auth"),
                Login::Ok(_)
            ));
        });
    }

    #[test]
    fn names_are_unique_whatever_the_case() {
        each(|u| {
            u.create(&name("Alice"), "password1", false)
                .expect("create");
            assert!(matches!(
                u.create(&name("alice"), "password1", false),
                Err(UserError::Taken)
            ));
            let found = u.find_by_name("ALICE").expect("find").expect("exists");
            assert_eq!(found.username, "Alice");
        });
    }

    #[test]
    fn authenticate_tells_the_outcomes_apart_for_the_log() {
        each(|u| {
            let alice = u.create(&name("alice"), "password1", true).expect("create");
            assert!(alice.is_admin);
            assert_eq!(
                u.authenticate("alice", "password1").expect("auth"),
                Login::Ok(alice.clone())
            );
            assert_eq!(
                u.authenticate("ALICE", "password1").expect("auth"),
                Login::Ok(alice.clone())
            );
            assert_eq!(
                u.authenticate("alice", "password2").expect("auth"),
                Login::WrongPassword
            );
            assert_eq!(
                u.authenticate("nobody", "password1").expect("auth"),
                Login::UnknownUser
            );
            assert_eq!(
                u.authenticate(&"x".repeat(500), "pw").expect("auth"),
                Login::UnknownUser
            );
            u.set_disabled(alice.id, true).expect("disable");
            assert_eq!(
                u.authenticate("alice", "password1").expect("auth"),
                Login::Disabled
            );
        });
    }

    #[test]
    fn a_new_password_replaces_the_old() {
        each(|u| {
            let bob = u.create(&name("bob"), "password1", false).expect("create");
            assert!(matches!(
                u.set_password(bob.id, "short"),
                Err(UserError::Password(PasswordError::TooShort))
            ));
            u.set_password(bob.id, "password2").expect("set");
            assert_eq!(
                u.authenticate("bob", "password1").expect("auth"),
                Login::WrongPassword
            );
            assert!(matches!(
                u.authenticate("bob", "password2").expect("auth"),
                Login::Ok(_)
            ));
        });
    }

    #[test]
    fn changes_to_a_missing_user_are_not_found() {
        each(|u| {
            assert!(matches!(u.set_admin(99, true), Err(UserError::NotFound)));
            assert!(matches!(u.delete(99), Err(UserError::NotFound)));
        });
    }

    /// Runs `check` with a maker of users over one fresh database (SQLite,
    /// and PostgreSQL when configured for tests) and a hasher of the cost
    /// given: the same users, as a server at another `bcrypt_cost` sees them.
    fn each_at_costs(check: impl Fn(&dyn Fn(u32) -> Users)) {
        let hasher = |cost| Arc::new(Hasher::new(cost, 2, std::time::Duration::from_secs(10)));
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(&dir.path().join("u.db"), 2).expect("open");
        check(&|cost| Users::new(pool.clone(), hasher(cost)));
        if let Some(url) = crate::db::postgres::test_url() {
            let url = crate::db::postgres::scratch_schema(&url).expect("schema");
            let pool = crate::db::postgres::open_for_tests(&url, 2).expect("open");
            check(&|cost| Users::postgres(pool.clone(), hasher(cost)));
        }
    }

    fn stored_cost(u: &Users, name: &str) -> Option<u32> {
        let (_, hash) = u
            .export()
            .expect("export")
            .into_iter()
            .find(|(user, _)| user.username == name)
            .expect("stored");
        password::cost_of(&hash)
    }

    /// Users hashed at cost 5, a server now at 4: an unknown name must
    /// cost what their hashes cost, not the server's 4.
    #[test]
    fn the_dummy_hash_costs_what_most_stored_hashes_cost() {
        each_at_costs(|at| {
            let old = at(5);
            for n in ["a", "b", "c"] {
                old.create(&name(n), "password1", false).expect("create");
            }
            let server = at(4);
            server
                .create(&name("d"), "password1", false)
                .expect("create");
            assert_eq!(server.refresh_dummy_cost().expect("refresh"), 5);
            assert_eq!(server.hasher().dummy_cost(), 5);
            // Unknown names are refused with that dummy.
            assert_eq!(
                server.authenticate("nobody", "password1").expect("auth"),
                Login::UnknownUser
            );
            // As users sign in they move to the server's cost, and once
            // most hashes are at 4 so is the dummy.
            for n in ["a", "b"] {
                assert!(matches!(
                    server.authenticate(n, "password1").expect("auth"),
                    Login::Ok(_)
                ));
            }
            assert_eq!(server.refresh_dummy_cost().expect("refresh"), 4);
            assert_eq!(server.hasher().dummy_cost(), 4);
        });
    }

    #[test]
    fn with_no_users_the_dummy_uses_the_servers_cost_and_ties_go_up() {
        each_at_costs(|at| {
            let server = at(5);
            assert_eq!(server.refresh_dummy_cost().expect("refresh"), 5);
            at(4)
                .create(&name("a"), "password1", false)
                .expect("create");
            server
                .create(&name("b"), "password1", false)
                .expect("create");
            assert_eq!(server.refresh_dummy_cost().expect("refresh"), 5);
            assert_eq!(at(4).refresh_dummy_cost().expect("refresh"), 5);
        });
    }

    #[test]
    fn a_sign_in_at_a_new_cost_rehashes_the_password() {
        each_at_costs(|at| {
            let alice = at(5)
                .create(&name("alice"), "password1", false)
                .expect("create");
            let server = at(4);
            // A wrong password changes nothing.
            assert_eq!(
                server.authenticate("alice", "password2").expect("auth"),
                Login::WrongPassword
            );
            assert_eq!(stored_cost(&server, "alice"), Some(5));
            assert!(matches!(
                server.authenticate("alice", "password1").expect("auth"),
                Login::Ok(_)
            ));
            assert_eq!(stored_cost(&server, "alice"), Some(4), "not rehashed");
            let now = server.get_by_name("alice").expect("alice");
            assert_eq!(
                now.password_changed_at, alice.password_changed_at,
                "a rehash is no password change (it would end pending sign-ins)"
            );
            assert!(matches!(
                server.authenticate("alice", "password1").expect("auth"),
                Login::Ok(_)
            ));
            // Back up again, when the cost is raised.
            assert!(matches!(
                at(6).authenticate("alice", "password1").expect("auth"),
                Login::Ok(_)
            ));
            assert_eq!(stored_cost(&server, "alice"), Some(6));
            // A disabled user's right password does not rehash.
            server.set_disabled(now.id, true).expect("disable");
            assert_eq!(
                server.authenticate("alice", "password1").expect("auth"),
                Login::Disabled
            );
            assert_eq!(stored_cost(&server, "alice"), Some(6));
        });
    }
}
