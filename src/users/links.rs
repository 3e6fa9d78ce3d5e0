//! Links that stand in for e-mail on an intranet without a mail server:
//! invites (an administrator's link that makes an account), reset links
//! (an administrator's link with which a user sets a new password, and
//! perhaps a new second factor), and sign-in links for a new device (a
//! user's own link, with a short code to type instead, that signs one
//! other browser in). The statements live in `links/sqlite.rs` and
//! `links/postgres.rs`; the rules are here, and the flows that also touch
//! sessions are `accounts`'.
//!
//! - A link's token is 43 characters of base64url (256 bits from the OS
//!   random source), shown once; only its SHA-256 is stored, and a link is
//!   looked up by that hash (as personal access tokens are: there is
//!   nothing to guess, so no slow hash). A sign-in code is 8 characters
//!   from an alphabet with nothing to mistake (no vowels, no `0`/`O`,
//!   `1`/`I`/`L`): 27^8, about 2^38, stored as its SHA-256 too, lives five
//!   minutes, and is guessed only as fast as the sign-in throttle lets an
//!   address fail.
//! - An invite has an expiry and a number of uses; a use is taken in the
//!   same statement that checks one is left, inside the transaction that
//!   makes the user, so two invitees racing for the last use cannot both
//!   have it, and a use whose account could not be made (a taken name) is
//!   not spent. Its groups are kept by id (a renamed group stays, a
//!   deleted one is skipped); `admins` is never one of them: a leaked
//!   link must not make administrators. An invite for a named user makes
//!   that user at once, without a password (no password signs them in),
//!   and is used once, by setting it.
//! - A reset link is one per user (a new one replaces the old), used
//!   once, short-lived; like a sign-in link it keeps the user's
//!   `password_changed_at` and is refused once that differs, so a new
//!   password set any other way ends it.
//! - A sign-in link carries the sign-in methods of the session that made
//!   it; it is used once and kept for a while after, with where it was
//!   used from, for the account page.

mod postgres;
mod sqlite;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::groups::GroupId;
use super::{User, UserError, UserId, Username, Users};
use crate::clock::Millis;

/// How long a link's token is: 32 bytes in base64url.
pub const TOKEN_LEN: usize = 43;

/// The most uses one invite may have.
pub const MAX_USES: u32 = 1000;

/// The longest an invite may live.
pub const MAX_INVITE_FOR: Millis = 90 * DAY;

/// How long an invite lives unless told.
pub const INVITE_FOR: Millis = 7 * DAY;

/// How long a reset link lives unless told.
pub const RESET_FOR: Millis = 60 * 60 * 1000;

/// The longest a reset link may live.
pub const MAX_RESET_FOR: Millis = 7 * DAY;

/// How long a sign-in link (and its code) lives.
pub const SIGNIN_FOR: Millis = 5 * 60 * 1000;

/// How many unused sign-in links one user may hold at once.
pub const MAX_SIGNIN_LINKS: usize = 5;

/// The most sign-in links one user makes in a day (used or not): each
/// used one is kept [`KEEP_USED`] and shown on the account page.
pub const MAX_SIGNIN_LINKS_A_DAY: usize = 20;

/// The most of a user's sign-in links the account page lists (newest).
pub const LISTED_SIGNIN_LINKS: usize = 20;

/// How long a used sign-in link is kept, to be shown on the account page.
pub const KEEP_USED: Millis = 30 * DAY;

/// The longest user agent kept with a used sign-in link.
const MAX_AGENT: usize = 256;

pub(super) const DAY: Millis = 24 * 60 * 60 * 1000;

/// The sign-in code's alphabet: consonants but `L`, and the digits but
/// `0` and `1`, so nothing in it reads as anything else in it, and no word
/// can be spelt.
const CODE_ALPHABET: &[u8; 27] = b"BCDFGHJKMNPQRSTVWXZ23456789";

/// How many characters a sign-in code has (shown as two groups of four).
pub const CODE_LEN: usize = 8;

/// A link's id, as its table numbers them.
pub type LinkId = i64;

/// The SHA-256 a link's token (or a sign-in code, normalised) is stored
/// and looked up by.
pub fn hash(token: &str) -> [u8; 32] {
    super::tokens::hash(token)
}

/// Whether `s` has a link token's shape: exactly 43 base64url characters.
/// Anything else is refused before any lookup.
pub fn well_formed(s: &str) -> bool {
    s.len() == TOKEN_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new link token.
fn fresh() -> String {
    URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>())
}

/// A code as typed, normalised: letters upper-cased, dashes and spaces
/// dropped; `None` unless it is [`CODE_LEN`] characters of the alphabet.
pub fn normalise_code(typed: &str) -> Option<String> {
    if typed.len() > 32 {
        return None;
    }
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

/// A new code, `XXXX-XXXX`.
fn new_code() -> String {
    let mut out = String::with_capacity(CODE_LEN + 1);
    let mut letters = 0;
    while letters < CODE_LEN {
        let [b] = crate::crypto::random_bytes::<1>();
        // 256 is no multiple of 27: the top bytes are dropped so that each
        // character is equally likely (no bias to guess along).
        if b >= 243 {
            continue;
        }
        if letters == CODE_LEN / 2 {
            out.push('-');
        }
        out.push(char::from(CODE_ALPHABET[usize::from(b % 27)]));
        letters += 1;
    }
    out
}

/// An invite as stored (never its token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    /// Its id, for the lists and for revoking it.
    pub id: LinkId,
    /// Who made it (an administrator's name; empty: the command line).
    pub created_by: String,
    /// When it was made.
    pub created_at: Millis,
    /// When it stops working.
    pub expires_at: Millis,
    /// How many accounts it may make.
    pub uses: u32,
    /// How many it has made.
    pub used: u32,
    /// The groups its accounts join, by id.
    pub groups: Vec<GroupId>,
    /// The user it was made for (made with it), and their name.
    pub user: Option<(UserId, String)>,
}

impl Invite {
    /// How many uses are left.
    pub fn left(&self) -> u32 {
        self.uses.saturating_sub(self.used)
    }

    /// Whether it still works at `now`.
    pub fn live(&self, now: Millis) -> bool {
        self.left() > 0 && now < self.expires_at
    }
}

/// An invite with its groups' names, for the lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedInvite {
    /// The invite.
    pub invite: Invite,
    /// Its groups that still exist, by name.
    pub group_names: Vec<String>,
}

/// What a new invite is made with.
#[derive(Clone, Debug)]
pub struct NewInvite {
    /// Who makes it (empty: the command line).
    pub created_by: String,
    /// When it stops working: at most [`MAX_INVITE_FOR`] from now.
    pub expires_at: Millis,
    /// How many accounts it may make: 1 to [`MAX_USES`]; 1 for a named user.
    pub uses: u32,
    /// The groups its accounts join, by name (never `admins`).
    pub groups: Vec<String>,
    /// A user to make now, who sets their password with the invite.
    pub user: Option<Username>,
}

/// A reset link as stored (never its token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetLink {
    /// Its id.
    pub id: LinkId,
    /// Whose password it sets.
    pub user_id: UserId,
    /// Their name.
    pub username: String,
    /// Who made it (empty: the command line).
    pub created_by: String,
    /// When it was made.
    pub created_at: Millis,
    /// When it stops working.
    pub expires_at: Millis,
    /// Whether the user must set up a new second factor with it (their
    /// old ones go once the new one is set).
    pub new_factor: bool,
    /// The user's `password_changed_at` when it was made.
    pub password_at: Millis,
}

/// A sign-in link for a new device as stored (never its token or code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigninLink {
    /// Its id.
    pub id: LinkId,
    /// Whose it is.
    pub user_id: UserId,
    /// How the session that made it signed in (`pwd`, `otp`, ...): the
    /// session it makes signed in the same way.
    pub methods: Vec<String>,
    /// When it was made.
    pub created_at: Millis,
    /// When it stops working.
    pub expires_at: Millis,
    /// The user's `password_changed_at` when it was made.
    pub password_at: Millis,
    /// When it was used, if it was.
    pub used_at: Option<Millis>,
    /// From which address.
    pub used_ip: Option<String>,
    /// With which user agent (cut to 256 characters).
    pub used_agent: Option<String>,
}

impl SigninLink {
    /// Whether it may still be used at `now`.
    pub fn live(&self, now: Millis) -> bool {
        self.used_at.is_none() && now < self.expires_at
    }
}

/// A sign-in link just made: its token and code (shown once), and its row.
#[derive(Clone, Debug)]
pub struct MadeSignin {
    /// The link's token (`{public_url}/login/link/<token>`).
    pub token: String,
    /// The code to type instead (`XXXX-XXXX`).
    pub code: String,
    /// The row.
    pub link: SigninLink,
}

/// What taking a use of an invite came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// The account was made (or, for a named user, its password set).
    Done(UserId),
    /// The invite is unknown, used up, expired or revoked.
    Unusable,
    /// The name is taken: no use was spent.
    Taken,
}

/// Where links are kept: the statements each database runs.
pub(super) trait LinkStore: Send + Sync {
    /// Stores an invite; with `user`, makes that user (no password) and
    /// puts them in `groups`, in one transaction ([`UserError::Taken`]).
    #[allow(clippy::too_many_arguments)]
    fn invite_insert(
        &self,
        hash: &[u8; 32],
        created_by: &str,
        now: Millis,
        expires_at: Millis,
        uses: u32,
        groups: &[GroupId],
        user: Option<(&str, &str)>,
    ) -> Result<Invite, UserError>;
    /// The invite stored under `hash`, live or not.
    fn invite_find(&self, hash: &[u8; 32]) -> Result<Option<Invite>, UserError>;
    /// Every invite, newest first.
    fn invites(&self) -> Result<Vec<Invite>, UserError>;
    /// Deletes an invite; whether one went.
    fn invite_delete(&self, id: LinkId) -> Result<bool, UserError>;
    /// Takes a use of the live invite under `hash` (not one for a named
    /// user) and makes the user `name` with `password_hash` and the
    /// invite's groups, in one transaction.
    fn invite_redeem(
        &self,
        hash: &[u8; 32],
        now: Millis,
        name: &str,
        password_hash: &str,
        stamp: &str,
    ) -> Result<Redeemed, UserError>;
    /// Takes the use of the live invite for a named user under `hash` and
    /// sets that user's first password, in one transaction (unusable once
    /// they have one, or are disabled).
    fn invite_redeem_named(
        &self,
        hash: &[u8; 32],
        now: Millis,
        password_hash: &str,
    ) -> Result<Redeemed, UserError>;
    /// Stores a reset link for `user`, replacing theirs if any.
    fn reset_put(
        &self,
        hash: &[u8; 32],
        user: &User,
        created_by: &str,
        now: Millis,
        expires_at: Millis,
        new_factor: bool,
    ) -> Result<ResetLink, UserError>;
    /// The reset link stored under `hash`, live or not.
    fn reset_find(&self, hash: &[u8; 32]) -> Result<Option<ResetLink>, UserError>;
    /// Every reset link, newest first.
    fn resets(&self) -> Result<Vec<ResetLink>, UserError>;
    /// Deletes `user`'s reset link; whether one went.
    fn reset_delete(&self, user: UserId) -> Result<bool, UserError>;
    /// Takes the live reset link under `hash` (deleting it) and sets its
    /// user's password, in one transaction: the user and whether a new
    /// second factor is due, or `None`.
    fn reset_redeem(
        &self,
        hash: &[u8; 32],
        now: Millis,
        password_hash: &str,
    ) -> Result<Option<(UserId, bool)>, UserError>;
    /// Stores a sign-in link for `user` if they hold fewer than
    /// [`MAX_SIGNIN_LINKS`] unused live ones.
    fn signin_insert(
        &self,
        hash: &[u8; 32],
        code_hash: &[u8; 32],
        user: &User,
        methods: &str,
        now: Millis,
    ) -> Result<SigninLink, UserError>;
    /// The sign-in link whose token or code hashes to `hash`.
    fn signin_find(&self, hash: &[u8; 32]) -> Result<Option<SigninLink>, UserError>;
    /// `user`'s newest [`LISTED_SIGNIN_LINKS`] sign-in links, newest first.
    fn signin_of_user(&self, user: UserId) -> Result<Vec<SigninLink>, UserError>;
    /// Deletes `user`'s unused sign-in link `id`; whether one went.
    fn signin_delete(&self, id: LinkId, user: UserId) -> Result<bool, UserError>;
    /// Deletes every unused sign-in link of `user`; how many went.
    fn signin_delete_unused(&self, user: UserId) -> Result<usize, UserError>;
    /// Marks the live sign-in link whose token or code hashes to `hash`
    /// used, at `now` from `ip` with `agent`, in the statement that checks
    /// it is unused: the link as it was, or `None`.
    fn signin_redeem(
        &self,
        hash: &[u8; 32],
        now: Millis,
        ip: &str,
        agent: &str,
    ) -> Result<Option<SigninLink>, UserError>;
    /// Deletes what can no longer be used (and used sign-in links past
    /// [`KEEP_USED`]); how many went.
    fn sweep(&self, now: Millis) -> Result<usize, UserError>;
}

/// Group ids as the `groups` column keeps them.
fn join_ids(ids: &[GroupId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The `groups` column read back.
fn split_ids(s: &str) -> Vec<GroupId> {
    s.split(',').filter_map(|id| id.parse().ok()).collect()
}

/// Methods as the `methods` column keeps them.
fn join_methods(methods: &[String]) -> String {
    methods.join(",")
}

/// The `methods` column read back.
fn split_methods(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

/// How often the lists sweep what can no longer be used (every lookup
/// checks expiry and use itself: this only keeps the tables small).
const SWEEP_EVERY: Millis = 60 * 1000;

/// When this process last swept the links (Unix milliseconds).
static SWEPT_AT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

impl Users {
    /// Deletes the links that can no longer be used before a list shows
    /// them, at most once a [`SWEEP_EVERY`] (the account page lists a
    /// user's sign-in links on every view: no write each time); a failure
    /// (a read-only database) only leaves them listed.
    fn sweep_links_quietly(&self) {
        use std::sync::atomic::Ordering;
        let now = crate::clock::now();
        let last = SWEPT_AT.load(Ordering::Relaxed);
        if (0..SWEEP_EVERY).contains(&(now - last))
            || SWEPT_AT
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = self.links.sweep(now) {
            crate::logging::line(&format!(
                "link sweep failed detail={}",
                crate::logging::quote(&e.to_string())
            ));
        }
    }

    /// Deletes the links that can no longer be used; how many went.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn sweep_links(&self, now: Millis) -> Result<usize, UserError> {
        self.links.sweep(now)
    }

    /// Makes an invite: its token (shown once, never stored) and its row.
    /// With [`NewInvite::user`], the user is made now, without a password,
    /// and put in the groups.
    ///
    /// # Errors
    ///
    /// [`UserError::InvalidLink`] for uses or an expiry out of bounds,
    /// `admins` among the groups, or a named user with more than one use;
    /// [`UserError::NoSuchGroup`]; [`UserError::Taken`] for a named user
    /// who exists; database failures.
    pub fn create_invite(
        &self,
        new: &NewInvite,
        now: Millis,
    ) -> Result<(String, Invite), UserError> {
        if new.uses == 0 || new.uses > MAX_USES {
            return Err(UserError::InvalidLink(
                "an invite may be used 1 to 1000 times",
            ));
        }
        if new.user.is_some() && new.uses != 1 {
            return Err(UserError::InvalidLink(
                "an invite for a named user is used once",
            ));
        }
        if new.expires_at <= now || new.expires_at - now > MAX_INVITE_FOR {
            return Err(UserError::InvalidLink("an invite expires within 90 days"));
        }
        let mut ids = Vec::new();
        for name in &new.groups {
            // Only a name that could be a group's is looked up (PostgreSQL
            // refuses a NUL in text, and no group has one).
            let name = super::groups::GroupName::parse(name).map_err(|_| UserError::NoSuchGroup)?;
            let group = self.get_group(name.as_str())?;
            if group.is_admins() {
                return Err(UserError::InvalidLink(
                    "an invite never makes an administrator: make them one once they have signed in",
                ));
            }
            if !ids.contains(&group.id) {
                ids.push(group.id);
            }
        }
        self.sweep_links_quietly();
        let token = fresh();
        let stamp = crate::identity::new_stamp();
        let user = new.user.as_ref().map(|u| (u.as_str(), stamp.as_str()));
        let invite = self.links.invite_insert(
            &hash(&token),
            &new.created_by,
            now,
            new.expires_at,
            new.uses,
            &ids,
            user,
        )?;
        Ok((token, invite))
    }

    /// The live invite `token`, or `None` for one of the wrong shape,
    /// unknown, used up, expired or revoked (or for a named user who has
    /// set a password since).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn find_invite(&self, token: &str, now: Millis) -> Result<Option<Invite>, UserError> {
        if !well_formed(token) {
            return Ok(None);
        }
        Ok(self
            .links
            .invite_find(&hash(token))?
            .filter(|i| i.live(now)))
    }

    /// Every invite with its groups' names, newest first.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn invites(&self) -> Result<Vec<ListedInvite>, UserError> {
        self.sweep_links_quietly();
        let groups = self.groups()?;
        Ok(self
            .links
            .invites()?
            .into_iter()
            .map(|invite| ListedInvite {
                group_names: invite
                    .groups
                    .iter()
                    .filter_map(|id| groups.iter().find(|g| g.id == *id))
                    .map(|g| g.name.clone())
                    .collect(),
                invite,
            })
            .collect())
    }

    /// Revokes invite `id`: it fails from the next request on. (A user
    /// made with it stays, without a password, until deleted.)
    ///
    /// # Errors
    ///
    /// [`UserError::NoSuchLink`]; database failures.
    pub fn revoke_invite(&self, id: LinkId) -> Result<(), UserError> {
        if self.links.invite_delete(id)? {
            Ok(())
        } else {
            Err(UserError::NoSuchLink)
        }
    }

    /// Uses invite `token`: makes the user `name` (for an invite for a
    /// named user, `name` is not asked: their first password is set) with
    /// `password` (the password rules apply; hashed before the one
    /// transaction that takes the use and makes the account).
    ///
    /// # Errors
    ///
    /// A bad name or password ([`UserError::InvalidName`],
    /// [`UserError::Password`]), a busy hasher, database failures.
    pub fn redeem_invite(
        &self,
        token: &str,
        name: Option<&Username>,
        password: &str,
    ) -> Result<Redeemed, UserError> {
        if !well_formed(token) {
            return Ok(Redeemed::Unusable);
        }
        let hashed = self.hasher.hash(password)?;
        let now = crate::clock::now();
        let redeemed = match name {
            Some(name) => self.links.invite_redeem(
                &hash(token),
                now,
                name.as_str(),
                &hashed,
                &crate::identity::new_stamp(),
            )?,
            None => self.links.invite_redeem_named(&hash(token), now, &hashed)?,
        };
        if matches!(redeemed, Redeemed::Done(_)) {
            self.keep_dummy_current();
        }
        Ok(redeemed)
    }

    /// Makes a reset link for `user` (replacing theirs if any): its token
    /// (shown once) and its row.
    ///
    /// # Errors
    ///
    /// [`UserError::External`] for a directory user;
    /// [`UserError::InvalidLink`] for an expiry out of bounds;
    /// [`UserError::NotFound`] when the user changed meanwhile; database
    /// failures.
    pub fn create_reset_link(
        &self,
        user: &User,
        created_by: &str,
        expires_at: Millis,
        new_factor: bool,
        now: Millis,
    ) -> Result<(String, ResetLink), UserError> {
        if expires_at <= now || expires_at - now > MAX_RESET_FOR {
            return Err(UserError::InvalidLink("a reset link expires within 7 days"));
        }
        if self
            .sources
            .profile(user.id)?
            .is_some_and(|p| p.source != super::source::Source::Local)
        {
            return Err(UserError::External);
        }
        self.sweep_links_quietly();
        let token = fresh();
        let link =
            self.links
                .reset_put(&hash(&token), user, created_by, now, expires_at, new_factor)?;
        Ok((token, link))
    }

    /// The live reset link `token` and its enabled user, or `None`.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn find_reset_link(
        &self,
        token: &str,
        now: Millis,
    ) -> Result<Option<(ResetLink, User)>, UserError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let Some(link) = self.links.reset_find(&hash(token))? else {
            return Ok(None);
        };
        if now >= link.expires_at {
            return Ok(None);
        }
        Ok(self
            .find_by_id(link.user_id)?
            .filter(|u| !u.disabled && u.password_changed_at == link.password_at)
            .map(|u| (link, u)))
    }

    /// Every live reset link, newest first.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn reset_links(&self) -> Result<Vec<ResetLink>, UserError> {
        self.sweep_links_quietly();
        self.links.resets()
    }

    /// Revokes `user`'s reset link.
    ///
    /// # Errors
    ///
    /// [`UserError::NoSuchLink`]; database failures.
    pub fn revoke_reset_link(&self, user: UserId) -> Result<(), UserError> {
        if self.links.reset_delete(user)? {
            Ok(())
        } else {
            Err(UserError::NoSuchLink)
        }
    }

    /// Uses reset link `token` to set its user's password (the rules
    /// apply; hashed before the transaction that takes the link and sets
    /// it): the user, and whether they must set up a new second factor;
    /// `None` for a link that does not work. Ending their sessions is the
    /// caller's (`accounts`).
    ///
    /// # Errors
    ///
    /// A bad password, a busy hasher, database failures.
    pub fn redeem_reset_link(
        &self,
        token: &str,
        password: &str,
    ) -> Result<Option<(User, bool)>, UserError> {
        if !well_formed(token) {
            return Ok(None);
        }
        let hashed = self.hasher.hash(password)?;
        let Some((id, new_factor)) =
            self.links
                .reset_redeem(&hash(token), crate::clock::now(), &hashed)?
        else {
            return Ok(None);
        };
        self.keep_dummy_current();
        Ok(self.find_by_id(id)?.map(|u| (u, new_factor)))
    }

    /// Makes a sign-in link for `user`, carrying `methods` (how the
    /// session that asks signed in): its token, its code, and its row.
    ///
    /// # Errors
    ///
    /// [`UserError::InvalidLink`] past [`MAX_SIGNIN_LINKS`] unused ones;
    /// [`UserError::NotFound`] when the user changed meanwhile; database
    /// failures.
    pub fn create_signin_link(
        &self,
        user: &User,
        methods: &[String],
        now: Millis,
    ) -> Result<MadeSignin, UserError> {
        self.sweep_links_quietly();
        let methods = join_methods(methods);
        // A code is short: it may clash with one kept (used, within
        // `KEEP_USED`). Another is drawn then.
        let mut tries = 0;
        loop {
            let token = fresh();
            let code = new_code();
            let normal = normalise_code(&code).expect("a code made from the alphabet");
            match self
                .links
                .signin_insert(&hash(&token), &hash(&normal), user, &methods, now)
            {
                Ok(link) => return Ok(MadeSignin { token, code, link }),
                Err(UserError::Taken) if tries < 3 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The live sign-in link whose token or code is `secret`, and its
    /// enabled user (without using it).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn find_signin_link(
        &self,
        secret: &str,
        now: Millis,
    ) -> Result<Option<(SigninLink, User)>, UserError> {
        let Some(key) = signin_key(secret) else {
            return Ok(None);
        };
        let Some(link) = self.links.signin_find(&key)?.filter(|l| l.live(now)) else {
            return Ok(None);
        };
        Ok(self
            .find_by_id(link.user_id)?
            .filter(|u| !u.disabled && u.password_changed_at == link.password_at)
            .map(|u| (link, u)))
    }

    /// Uses the sign-in link whose token or code is `secret`, once, from
    /// `ip` with `agent`: the link and its enabled user, whose password is
    /// still the one it was made under; `None` otherwise.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn redeem_signin_link(
        &self,
        secret: &str,
        ip: &str,
        agent: &str,
    ) -> Result<Option<(SigninLink, User)>, UserError> {
        let Some(key) = signin_key(secret) else {
            return Ok(None);
        };
        let agent: String = agent
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_AGENT)
            .collect();
        let Some(link) = self
            .links
            .signin_redeem(&key, crate::clock::now(), ip, &agent)?
        else {
            return Ok(None);
        };
        Ok(self
            .find_by_id(link.user_id)?
            .filter(|u| !u.disabled && u.password_changed_at == link.password_at)
            .map(|u| (link, u)))
    }

    /// `user`'s sign-in links (live and used), newest first.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn signin_links(&self, user: UserId) -> Result<Vec<SigninLink>, UserError> {
        self.sweep_links_quietly();
        self.links.signin_of_user(user)
    }

    /// Ends every sign-in link of `user` that waits to be used: a link
    /// carries the factors of the session that made it, so it ends with
    /// that session (a sign-out) and with everything that ends all of a
    /// user's sessions (ending the others, a second factor set up or
    /// reset, disabling). How many ended.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn end_signin_links(&self, user: UserId) -> Result<usize, UserError> {
        self.links.signin_delete_unused(user)
    }

    /// Revokes `user`'s unused sign-in link `id`.
    ///
    /// # Errors
    ///
    /// [`UserError::NoSuchLink`]; database failures.
    pub fn revoke_signin_link(&self, id: LinkId, user: UserId) -> Result<(), UserError> {
        if self.links.signin_delete(id, user)? {
            Ok(())
        } else {
            Err(UserError::NoSuchLink)
        }
    }
}

/// The hash a sign-in link is found by: of its token, or of its code
/// normalised; `None` for anything that is neither.
fn signin_key(secret: &str) -> Option<[u8; 32]> {
    if well_formed(secret) {
        return Some(hash(secret));
    }
    normalise_code(secret).map(|c| hash(&c))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::users::password::Hasher;

    #[test]
    fn a_fresh_token_is_well_formed_and_unlike_the_next() {
        let (a, b) = (fresh(), fresh());
        assert!(well_formed(&a) && well_formed(&b));
        assert_ne!(a, b);
        for bad in [
            String::new(),
            a[..42].to_owned(),
            format!("{a}A"),
            format!("{}+", &a[..42]),
            format!("{}%", &a[..42]),
            format!("{}\u{e9}", &a[..41]),
            format!("{}/", &a[..42]),
        ] {
            assert!(!well_formed(&bad), "{bad:?}");
        }
    }

    #[test]
    fn codes_are_made_from_the_alphabet_and_read_back_however_typed() {
        for _ in 0..200 {
            let code = new_code();
            assert_eq!(code.len(), CODE_LEN + 1, "{code}");
            assert_eq!(&code[4..5], "-");
            let normal = normalise_code(&code).expect("its own code");
            assert_eq!(normal.len(), CODE_LEN);
            let typed = code.to_lowercase().replace('-', " ");
            assert_eq!(normalise_code(&typed).as_deref(), Some(normal.as_str()));
        }
        for bad in [
            "",
            "BCDF",
            "BCDF-GHJKM",
            "BCDF-GHJ0",
            "BCDF-GHJO",
            "BCDF-GHJ1",
            "BCDF-GHJL",
            "BCDF-GHJA",
            "BCDF\u{0}GHJK",
            "ＢCDF-GHJK",
        ] {
            assert!(normalise_code(bad).is_none(), "{bad:?}");
        }
        assert!(normalise_code(&"B".repeat(10_000)).is_none());
    }

    /// Runs `check` on users in SQLite and, when a server is configured
    /// for tests, in PostgreSQL.
    fn each(check: impl Fn(&Users)) {
        let hasher = Arc::new(Hasher::new(4, 2, std::time::Duration::from_secs(10)));
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(&dir.path().join("u.db"), 4).expect("open");
        check(&Users::new(pool, Arc::clone(&hasher)));
        if let Some(url) = crate::db::postgres::test_url() {
            let url = crate::db::postgres::scratch_schema(&url).expect("schema");
            let pool = crate::db::postgres::open_for_tests(&url, 4).expect("open");
            check(&Users::postgres(pool, hasher));
        }
    }

    fn name(s: &str) -> Username {
        Username::parse(s).expect("name")
    }

    fn invite(users: &Users, uses: u32, groups: &[&str], user: Option<&str>) -> String {
        let now = crate::clock::now();
        users
            .create_invite(
                &NewInvite {
                    created_by: "root".into(),
                    expires_at: now + DAY,
                    uses,
                    groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                    user: user.map(name),
                },
                now,
            )
            .expect("invite")
            .0
    }

    #[test]
    fn an_invite_makes_accounts_up_to_its_uses_with_its_groups() {
        each(|users| {
            let ops = users.create_group(&groups_name("ops")).expect("ops");
            let token = invite(users, 2, &["ops"], None);
            let Redeemed::Done(a) = users
                .redeem_invite(&token, Some(&name("ann")), "password1")
                .expect("ann")
            else {
                panic!("ann not made");
            };
            assert_eq!(users.groups_of(a).expect("groups"), vec!["ops".to_owned()]);
            // A taken name spends no use.
            assert_eq!(
                users
                    .redeem_invite(&token, Some(&name("ANN")), "password1")
                    .expect("taken"),
                Redeemed::Taken
            );
            assert!(matches!(
                users
                    .redeem_invite(&token, Some(&name("bea")), "password1")
                    .expect("bea"),
                Redeemed::Done(_)
            ));
            assert_eq!(
                users
                    .redeem_invite(&token, Some(&name("cid")), "password1")
                    .expect("cid"),
                Redeemed::Unusable
            );
            assert!(users.find_by_name("cid").expect("find").is_none());
            let listed = users.invites().expect("list");
            assert_eq!(listed.len(), 1);
            assert_eq!((listed[0].invite.used, listed[0].invite.left()), (2, 0));
            assert_eq!(listed[0].group_names, ["ops"]);
            let _ = ops;
        });
    }

    fn groups_name(s: &str) -> crate::users::groups::GroupName {
        crate::users::groups::GroupName::parse(s).expect("group")
    }

    #[test]
    fn an_invite_never_names_admins_or_an_unknown_group_or_odd_uses() {
        each(|users| {
            let now = crate::clock::now();
            let new =
                |uses: u32, groups: &[&str], user: Option<&str>, expires_at: Millis| NewInvite {
                    created_by: String::new(),
                    expires_at,
                    uses,
                    groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                    user: user.map(name),
                };
            for bad in [
                new(1, &["admins"], None, now + DAY),
                new(1, &["Admins"], None, now + DAY),
                new(1, &["nope"], None, now + DAY),
                new(0, &[], None, now + DAY),
                new(MAX_USES + 1, &[], None, now + DAY),
                new(2, &[], Some("dan"), now + DAY),
                new(1, &[], None, now),
                new(1, &[], None, now + MAX_INVITE_FOR + 1),
            ] {
                assert!(users.create_invite(&bad, now).is_err(), "{bad:?}");
            }
            assert!(users.find_by_name("dan").expect("find").is_none());
            assert!(users.invites().expect("list").is_empty());
        });
    }

    #[test]
    fn an_invite_for_a_named_user_sets_their_first_password_once() {
        each(|users| {
            let token = invite(users, 1, &[], Some("dan"));
            let dan = users.get_by_name("dan").expect("made at once");
            // No password signs the invited user in meanwhile.
            for pw in ["", "password1"] {
                assert_eq!(
                    users.authenticate("dan", pw).expect("auth"),
                    crate::users::Login::WrongPassword
                );
            }
            assert_eq!(
                users.redeem_invite(&token, None, "password1").expect("set"),
                Redeemed::Done(dan.id)
            );
            assert!(matches!(
                users.authenticate("dan", "password1").expect("auth"),
                crate::users::Login::Ok(_)
            ));
            assert_eq!(
                users
                    .redeem_invite(&token, None, "password2")
                    .expect("again"),
                Redeemed::Unusable
            );
            // One whose user set a password otherwise is no longer usable.
            let token = invite(users, 1, &[], Some("eve"));
            let eve = users.get_by_name("eve").expect("eve");
            users.set_password(eve.id, "password9").expect("set");
            assert_eq!(
                users
                    .redeem_invite(&token, None, "password2")
                    .expect("late"),
                Redeemed::Unusable
            );
            // Its user name is taken already: nothing is made.
            let now = crate::clock::now();
            let taken = users.create_invite(
                &NewInvite {
                    created_by: String::new(),
                    expires_at: now + DAY,
                    uses: 1,
                    groups: Vec::new(),
                    user: Some(name("DAN")),
                },
                now,
            );
            assert!(matches!(taken, Err(UserError::Taken)), "{taken:?}");
        });
    }

    #[test]
    fn a_reset_link_works_once_and_a_new_one_replaces_it() {
        each(|users| {
            let bob = users.create(&name("bob"), "password1", false).expect("bob");
            let now = crate::clock::now();
            let (first, _) = users
                .create_reset_link(&bob, "root", now + RESET_FOR, false, now)
                .expect("first");
            let (second, link) = users
                .create_reset_link(&bob, "root", now + RESET_FOR, true, now)
                .expect("second");
            assert!(link.new_factor);
            assert_eq!(users.reset_links().expect("list").len(), 1);
            assert!(users.find_reset_link(&first, now).expect("find").is_none());
            assert!(
                users
                    .redeem_reset_link(&first, "password2")
                    .expect("old")
                    .is_none()
            );
            let (user, new_factor) = users
                .redeem_reset_link(&second, "password2")
                .expect("use")
                .expect("works");
            assert!(new_factor && user.id == bob.id);
            assert!(matches!(
                users.authenticate("bob", "password2").expect("auth"),
                crate::users::Login::Ok(_)
            ));
            assert!(
                users
                    .redeem_reset_link(&second, "password3")
                    .expect("again")
                    .is_none()
            );
            // A new password set another way ends a link.
            let bob = users.get_by_name("bob").expect("bob");
            let (third, _) = users
                .create_reset_link(&bob, "root", now + RESET_FOR, false, now)
                .expect("third");
            std::thread::sleep(std::time::Duration::from_millis(2));
            users.set_password(bob.id, "password4").expect("set");
            assert!(
                users
                    .redeem_reset_link(&third, "password5")
                    .expect("ended")
                    .is_none()
            );
        });
    }

    #[test]
    fn a_sign_in_link_works_once_by_its_token_or_its_code() {
        each(|users| {
            let bob = users.create(&name("bob"), "password1", false).expect("bob");
            let now = crate::clock::now();
            let methods = vec!["pwd".to_owned(), "otp".to_owned()];
            let by_code = users.create_signin_link(&bob, &methods, now).expect("one");
            let by_link = users.create_signin_link(&bob, &methods, now).expect("two");
            assert!(
                users
                    .find_signin_link(&by_code.code, now)
                    .expect("find")
                    .is_some()
            );
            let (link, user) = users
                .redeem_signin_link(&by_code.code.to_lowercase(), "192.0.2.7", "Firefox\nx")
                .expect("use")
                .expect("works");
            assert_eq!((user.id, link.methods.clone()), (bob.id, methods.clone()));
            assert!(
                users
                    .redeem_signin_link(&by_code.code, "ip", "ua")
                    .expect("again")
                    .is_none()
            );
            assert!(
                users
                    .redeem_signin_link(&by_code.token, "ip", "ua")
                    .expect("token")
                    .is_none()
            );
            assert!(
                users
                    .redeem_signin_link(&by_link.token, "ip", "ua")
                    .expect("link")
                    .is_some()
            );
            let listed = users.signin_links(bob.id).expect("list");
            assert_eq!(listed.len(), 2);
            let used = listed
                .iter()
                .find(|l| l.id == by_code.link.id)
                .expect("kept");
            assert_eq!(used.used_ip.as_deref(), Some("192.0.2.7"));
            assert_eq!(used.used_agent.as_deref(), Some("Firefoxx"));
            // At most a few unused at once; a used one cannot be revoked.
            for _ in 0..MAX_SIGNIN_LINKS {
                users.create_signin_link(&bob, &methods, now).expect("more");
            }
            assert!(matches!(
                users.create_signin_link(&bob, &methods, now),
                Err(UserError::InvalidLink(_))
            ));
            assert!(matches!(
                users.revoke_signin_link(by_code.link.id, bob.id),
                Err(UserError::NoSuchLink)
            ));
        });
    }

    #[test]
    fn the_sweep_deletes_what_can_no_longer_be_used() {
        each(|users| {
            let bob = users.create(&name("bob"), "password1", false).expect("bob");
            let now = crate::clock::now();
            invite(users, 1, &[], None);
            users
                .create_reset_link(&bob, "", now + RESET_FOR, false, now)
                .expect("reset");
            let used = users.create_signin_link(&bob, &[], now).expect("one");
            users.create_signin_link(&bob, &[], now).expect("two");
            users
                .redeem_signin_link(&used.code, "ip", "ua")
                .expect("use")
                .expect("used");
            // An hour on: the reset link and the unused sign-in link go;
            // the used one is kept for the account page.
            assert_eq!(users.sweep_links(now + RESET_FOR + 1).expect("sweep"), 2);
            assert_eq!(users.links.signin_of_user(bob.id).expect("list").len(), 1);
            assert_eq!(users.links.invites().expect("list").len(), 1);
            // Past every expiry and the time used ones are kept: none left.
            assert_eq!(users.sweep_links(now + KEEP_USED + DAY).expect("sweep"), 2);
            assert!(users.links.signin_of_user(bob.id).expect("list").is_empty());
            assert!(users.links.invites().expect("list").is_empty());
            assert!(users.links.resets().expect("list").is_empty());
        });
    }
}
