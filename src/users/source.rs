//! Where a user comes from: typed in here (`local`, with a bcrypt hash) or
//! vouched for by the directory (`ldap`, keyed by the entry's stable id,
//! without a local password). The `SourceStore` statements live in
//! `source/sqlite.rs` and `source/postgres.rs`; the rules (who may take a
//! name, what an update changes) live here, alike for both.
//!
//! Why a stable id and not the name: a renamed directory account stays the
//! same gatehouse user (its sessions, second factors and tokens with it),
//! and a name given to someone new in the directory is not the old user.

mod postgres;
mod sqlite;

use crate::clock::{self, Millis};

use super::{User, UserError, UserId, Username, Users};

/// Who sets an e-mail address, and so whether apps are told it is
/// verified (`email_verified`). Nothing here sends mail: only a person
/// who checked the address can vouch for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vouch {
    /// The user typed it on their own page: a new address is not
    /// verified; one that stays the same keeps what it was (saving the
    /// page again changes nothing).
    User,
    /// An administrator set it (`gatehouse user profile`): a new address
    /// is verified; one that stays the same keeps what it was (changing
    /// only the display name vouches for nothing).
    Admin,
    /// An administrator says whether the address, new or the one the
    /// user typed, was checked (the admin page's box, `--verified`).
    Checked(bool),
}

/// Where a user comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Made in gatehouse; signs in with a password gatehouse hashed.
    Local,
    /// Made from a directory entry; the directory checks the password.
    Ldap,
}

impl Source {
    /// As stored in the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Ldap => "ldap",
        }
    }

    /// The source a `source` column holds.
    ///
    /// # Errors
    ///
    /// [`UserError::Db`] for a value no gatehouse writes.
    pub fn parse(s: &str) -> Result<Self, UserError> {
        match s {
            "local" => Ok(Self::Local),
            "ldap" => Ok(Self::Ldap),
            other => Err(UserError::Db(crate::db::DbError::Invalid(format!(
                "a user row has the unknown source {other:?} (written by a newer gatehouse?)"
            )))),
        }
    }
}

/// What a user row says beyond [`User`]: the source, and for a directory
/// user the id and the names the directory gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Where the user comes from.
    pub source: Source,
    /// The directory's stable id (`None` for local users).
    pub external_id: Option<String>,
    /// The display name.
    pub display_name: Option<String>,
    /// The e-mail address.
    pub email: Option<String>,
    /// Whether an administrator set the address (a directory user's is
    /// the directory's: see [`Profile::email_vouched`]); `false` when the
    /// user typed it themselves, which nothing checked.
    pub email_verified: bool,
}

impl Profile {
    /// A local user's profile with no names.
    pub fn local() -> Self {
        Self {
            source: Source::Local,
            external_id: None,
            display_name: None,
            email: None,
            email_verified: false,
        }
    }

    /// Whether the e-mail address is vouched for: by the directory it
    /// came from, or by the administrator who set it.
    pub fn email_vouched(&self) -> bool {
        self.email.is_some() && (self.source != Source::Local || self.email_verified)
    }
}

/// A user as another source has them, to make or update locally.
#[derive(Clone, Copy, Debug)]
pub struct External<'a> {
    /// The source's stable id.
    pub id: &'a str,
    /// The name (a valid username).
    pub username: &'a Username,
    /// The display name.
    pub display_name: Option<&'a str>,
    /// The e-mail address.
    pub email: Option<&'a str>,
}

/// What [`Users::upsert_external`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The user was seen for the first time and made.
    Created,
    /// The user's name, display name or e-mail changed.
    Updated,
    /// Nothing changed.
    Unchanged,
}

/// The statements behind sources, one per method.
pub(super) trait SourceStore: Send + Sync {
    fn profile(&self, id: UserId) -> Result<Option<Profile>, UserError>;
    fn find_by_external(&self, source: Source, id: &str) -> Result<Option<User>, UserError>;
    /// The user holding `name` (in any case), with their profile.
    fn holder(&self, name: &str) -> Result<Option<(UserId, Profile)>, UserError>;
    /// A new user without a password hash; [`UserError::Taken`] when the
    /// name or the id is.
    fn insert_external(
        &self,
        source: Source,
        user: &External<'_>,
        now: Millis,
    ) -> Result<User, UserError>;
    /// Sets the name, display name and e-mail.
    fn update_external(&self, id: UserId, user: &External<'_>) -> Result<(), UserError>;
    fn set_username(&self, id: UserId, name: &str) -> Result<(), UserError>;
    fn list_by_source(&self, source: Source) -> Result<Vec<(User, Profile)>, UserError>;
    fn set_profile(&self, id: UserId, profile: &Profile) -> Result<(), UserError>;
}

impl Users {
    /// Where the user with this id comes from, and their names.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn profile(&self, id: UserId) -> Result<Option<Profile>, UserError> {
        self.sources.profile(id)
    }

    /// The user another source knows by `id`.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn find_by_external(&self, source: Source, id: &str) -> Result<Option<User>, UserError> {
        self.sources.find_by_external(source, id)
    }

    /// Every user from `source`, by name, with their profile.
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn list_by_source(&self, source: Source) -> Result<Vec<(User, Profile)>, UserError> {
        self.sources.list_by_source(source)
    }

    /// Copies a profile as stored elsewhere, for moving to another
    /// database (after [`Users::import`]).
    ///
    /// # Errors
    ///
    /// No such user, a taken external id, or database failures.
    pub fn import_profile(&self, id: UserId, profile: &Profile) -> Result<(), UserError> {
        self.sources.set_profile(id, profile)
    }

    /// Sets a local user's display name and e-mail address (`None`:
    /// none); `vouch` says who sets them and so whether apps are told the
    /// address is verified (see [`Vouch`]). A directory user's names are
    /// the directory's.
    ///
    /// # Errors
    ///
    /// [`UserError::InvalidName`] for a display name or address that is
    /// not one (see [`display_name`] and [`email`]),
    /// [`UserError::External`] for a directory user, no such user, or
    /// database failures.
    pub fn set_names(
        &self,
        id: UserId,
        display_name: Option<&str>,
        email_address: Option<&str>,
        vouch: Vouch,
    ) -> Result<Profile, UserError> {
        let display_name = display_name.map(self::display_name).transpose()?;
        let email_address = email_address.map(email).transpose()?;
        let mut profile = self.sources.profile(id)?.ok_or(UserError::NotFound)?;
        if profile.source != Source::Local {
            return Err(UserError::External);
        }
        let kept = email_address.is_some() && profile.email == email_address;
        let verified = match (&email_address, vouch) {
            (None, _) => false,
            (Some(_), Vouch::Checked(checked)) => checked,
            (Some(_), Vouch::User | Vouch::Admin) if kept => profile.email_verified,
            (Some(_), Vouch::User) => false,
            (Some(_), Vouch::Admin) => true,
        };
        profile.display_name = display_name;
        profile.email = email_address;
        profile.email_verified = verified;
        self.sources.set_profile(id, &profile)?;
        Ok(profile)
    }

    /// Makes the user `user` stands for in `source`, or brings their name,
    /// display name and e-mail up to date: found by the source's stable
    /// id, never by name. New users are not administrators, have no local
    /// password and cannot get one.
    ///
    /// A name held by a local user is refused ([`UserError::Taken`]):
    /// threat, a directory entry named like a local administrator (made
    /// by anyone who may add directory accounts) would otherwise become
    /// that administrator. A name held by another user of the same source
    /// was given up by them in the source (it now leads to this entry), so
    /// that user is renamed out of the way to `name~id`, a name nobody can
    /// type, until their own entry is seen again.
    ///
    /// # Errors
    ///
    /// [`UserError::Taken`] as above, or database failures.
    pub fn upsert_external(
        &self,
        source: Source,
        user: &External<'_>,
    ) -> Result<(User, Change), UserError> {
        match self.try_upsert(source, user) {
            // Another sign-in of the same new user made them first (or
            // took the name in between): look again, once.
            Err(UserError::Taken) => self.try_upsert(source, user),
            other => other,
        }
    }

    fn try_upsert(&self, source: Source, new: &External<'_>) -> Result<(User, Change), UserError> {
        let name = new.username.as_str();
        let Some(found) = self.sources.find_by_external(source, new.id)? else {
            self.free_name(source, name, None)?;
            let made = self.sources.insert_external(source, new, clock::now())?;
            return Ok((made, Change::Created));
        };
        let profile = self.sources.profile(found.id)?.ok_or(UserError::NotFound)?;
        if found.username == name
            && profile.display_name.as_deref() == new.display_name
            && profile.email.as_deref() == new.email
        {
            return Ok((found, Change::Unchanged));
        }
        if found.username != name {
            self.free_name(source, name, Some(found.id))?;
        }
        self.sources.update_external(found.id, new)?;
        let updated = self.db.find_by_id(found.id)?.ok_or(UserError::NotFound)?;
        Ok((updated, Change::Updated))
    }

    /// Makes `name` free for a user of `source` (`me`, if they exist).
    fn free_name(&self, source: Source, name: &str, me: Option<UserId>) -> Result<(), UserError> {
        match self.sources.holder(name)? {
            None => Ok(()),
            Some((id, _)) if Some(id) == me => Ok(()),
            Some((id, p)) if p.source == source && source != Source::Local => {
                self.sources.set_username(id, &format!("{name}~{id}"))
            }
            Some(_) => Err(UserError::Taken),
        }
    }
}

/// A display name as given: trimmed; 1 to 64 characters, no control
/// characters and none of the invisible ones that change how a name
/// looks (direction overrides, zero-width characters), which would let
/// one name pass for another in an app.
///
/// # Errors
///
/// [`UserError::InvalidName`] otherwise.
pub fn display_name(s: &str) -> Result<String, UserError> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 64 || s.chars().any(|c| c.is_control() || invisible(c)) {
        return Err(UserError::InvalidName(
            "a display name is 1 to 64 characters, without control characters",
        ));
    }
    Ok(s.to_owned())
}

/// Characters that change how text looks without being seen: the
/// directional marks, embeddings, overrides and isolates, zero-width
/// spaces and joiners, the word joiner and invisible operators, the byte
/// order mark, the soft hyphen.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// An e-mail address as given: trimmed; printable ASCII (lookalike
/// letters from other scripts would let one address pass for another), at
/// most 254 bytes, one `@` with something on both sides and a dot after
/// it, no spaces, quotes or angle brackets. Not checked for delivery:
/// gatehouse sends no mail.
///
/// # Errors
///
/// [`UserError::InvalidName`] otherwise.
pub fn email(s: &str) -> Result<String, UserError> {
    let s = s.trim();
    let bad = |c: char| !c.is_ascii_graphic() || "\"<>(),;:[]\\".contains(c);
    let ok = s.len() <= 254
        && !s.chars().any(bad)
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(UserError::InvalidName(
            "that is not an e-mail address like alice@example.org",
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::users::password::Hasher;
    use crate::users::{Login, UserError};

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
        Username::parse(s).expect("valid")
    }

    fn ext<'a>(id: &'a str, username: &'a Username) -> External<'a> {
        External {
            id,
            username,
            display_name: Some("Alice Liddell"),
            email: Some("alice@example.org"),
        }
    }

    #[test]
    fn a_directory_user_is_made_once_and_kept_up_to_date_by_id() {
        each(|u| {
            let alice = name("alice");
            let (made, change) = u
                .upsert_external(Source::Ldap, &ext("id-1", &alice))
                .expect("made");
            assert_eq!(change, Change::Created);
            // Stamped like any other user, so their sessions are theirs alone.
            assert_eq!(made.stamp.len(), 32, "{:?}", made.stamp);
            assert_eq!(made.username, "alice");
            assert!(!made.is_admin && !made.disabled);
            assert_eq!(
                u.profile(made.id).expect("profile"),
                Some(Profile {
                    source: Source::Ldap,
                    external_id: Some("id-1".into()),
                    display_name: Some("Alice Liddell".into()),
                    email: Some("alice@example.org".into()),
                    email_verified: false,
                })
            );
            let (again, change) = u
                .upsert_external(Source::Ldap, &ext("id-1", &alice))
                .expect("again");
            assert_eq!((again.id, change), (made.id, Change::Unchanged));
            // Renamed in the directory: the same user, under the new name.
            let alicia = name("alicia");
            let renamed = External {
                email: None,
                ..ext("id-1", &alicia)
            };
            let (after, change) = u.upsert_external(Source::Ldap, &renamed).expect("renamed");
            assert_eq!((after.id, change), (made.id, Change::Updated));
            assert_eq!(after.username, "alicia");
            assert_eq!(u.profile(made.id).expect("p").expect("some").email, None);
            assert!(u.find_by_name("alice").expect("find").is_none());
            assert_eq!(
                u.find_by_external(Source::Ldap, "id-1")
                    .expect("find")
                    .map(|x| x.id),
                Some(made.id)
            );
            assert_eq!(u.list_by_source(Source::Ldap).expect("list").len(), 1);
            assert!(u.list_by_source(Source::Local).expect("list").is_empty());
        });
    }

    #[test]
    fn a_name_given_to_someone_new_in_the_directory_is_not_the_old_user() {
        each(|u| {
            let bob = name("bob");
            let (old, _) = u
                .upsert_external(Source::Ldap, &ext("old-bob", &bob))
                .expect("old");
            // The directory now gives "bob" to another entry.
            let (new, change) = u
                .upsert_external(Source::Ldap, &ext("new-bob", &bob))
                .expect("new");
            assert_eq!(change, Change::Created);
            assert_ne!(new.id, old.id);
            assert_eq!(new.username, "bob");
            let moved = u.find_by_id(old.id).expect("find").expect("kept");
            assert_eq!(moved.username, format!("bob~{}", old.id));
            assert!(
                Username::parse(&moved.username).is_err(),
                "nobody can type it"
            );
            // When the old entry shows up again under a name of its own, it
            // gets that name back.
            let robert = name("robert");
            let (back, change) = u
                .upsert_external(Source::Ldap, &ext("old-bob", &robert))
                .expect("back");
            assert_eq!((back.id, change), (old.id, Change::Updated));
            assert_eq!(back.username, "robert");
        });
    }

    #[test]
    fn a_directory_entry_never_takes_over_a_local_user() {
        each(|u| {
            let admin = name("admin");
            let local = u.create(&admin, "password1", true).expect("local");
            let taken = u.upsert_external(Source::Ldap, &ext("evil", &name("ADMIN")));
            assert!(matches!(taken, Err(UserError::Taken)), "{taken:?}");
            let still = u.find_by_id(local.id).expect("find").expect("kept");
            assert_eq!(still, local);
            assert_eq!(u.profile(local.id).expect("p"), Some(Profile::local()));
            assert!(
                u.find_by_external(Source::Ldap, "evil")
                    .expect("find")
                    .is_none()
            );
            // Nor does a rename onto the local name.
            u.upsert_external(Source::Ldap, &ext("carol-id", &name("carol")))
                .expect("carol");
            let onto = u.upsert_external(Source::Ldap, &ext("carol-id", &admin));
            assert!(matches!(onto, Err(UserError::Taken)), "{onto:?}");
        });
    }

    #[test]
    fn a_directory_user_has_no_local_password() {
        each(|u| {
            let dave = name("dave");
            let (made, _) = u
                .upsert_external(Source::Ldap, &ext("dave-id", &dave))
                .expect("made");
            // No password signs them in locally: not the empty one, not any.
            for password in ["", "password1", "anything at all"] {
                assert_eq!(
                    u.authenticate("dave", password).expect("auth"),
                    Login::WrongPassword,
                    "{password:?}"
                );
            }
            let set = u.set_password(made.id, "password1");
            assert!(matches!(set, Err(UserError::External)), "{set:?}");
            assert_eq!(
                u.authenticate("dave", "password1").expect("auth"),
                Login::WrongPassword
            );
        });
    }

    #[test]
    fn refusing_a_directory_users_local_sign_in_costs_a_bcrypt_verify() {
        // Threat: a refusal that skipped bcrypt would answer at once and
        // tell a prober which names belong to the directory. At cost 10 a
        // verify takes tens of milliseconds; noise only adds time, so a
        // lower bound is safe to assert.
        let hasher = Arc::new(Hasher::new(10, 2, std::time::Duration::from_secs(60)));
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = crate::db::open(&dir.path().join("u.db"), 2).expect("open");
        let u = Users::new(pool, Arc::clone(&hasher));
        u.upsert_external(Source::Ldap, &ext("g-id", &name("gina")))
            .expect("made");
        hasher.warm_up().expect("dummy hash made before timing");
        let started = std::time::Instant::now();
        assert_eq!(
            u.authenticate("gina", "password1").expect("auth"),
            Login::WrongPassword
        );
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(10),
            "refused in {took:?}, faster than any bcrypt verify"
        );
    }

    #[test]
    fn a_case_change_in_the_directory_renames_in_place() {
        each(|u| {
            let (made, _) = u
                .upsert_external(Source::Ldap, &ext("e-id", &name("erin")))
                .expect("made");
            let (after, change) = u
                .upsert_external(Source::Ldap, &ext("e-id", &name("Erin")))
                .expect("case");
            assert_eq!((after.id, change), (made.id, Change::Updated));
            assert_eq!(after.username, "Erin");
        });
    }

    #[test]
    fn names_are_checked_and_only_an_administrators_address_is_verified() {
        each(|u| {
            let alice = u.create(&name("alice"), "password1", false).expect("alice");
            for bad in [
                "",
                "a\u{7}b",
                &"x".repeat(65),
                "e\u{202e}nimda",
                "ad\u{200b}min",
                "\u{feff}",
            ] {
                assert!(
                    u.set_names(alice.id, Some(bad), None, Vouch::Admin)
                        .is_err(),
                    "{bad:?}"
                );
            }
            for bad in [
                "alice",
                "@lan.test",
                "a@",
                "a@lan",
                "a b@lan.test",
                "a@@lan.test",
                "<a@lan.test>",
                "a@lan..test",
                "a@lan\ntest",
                "a\"@lan.test",
                "a\u{202e}@b.c",
                "\u{430}dmin@example.org",
            ] {
                assert!(
                    u.set_names(alice.id, None, Some(bad), Vouch::Admin)
                        .is_err(),
                    "{bad:?}"
                );
            }
            let p = u
                .set_names(
                    alice.id,
                    Some(" Alice Liddell "),
                    Some("alice@lan.test"),
                    Vouch::User,
                )
                .expect("names");
            assert_eq!(p.display_name.as_deref(), Some("Alice Liddell"));
            assert!(!p.email_vouched(), "typed by the user");
            // An administrator changing only the name vouches for nothing.
            let p = u
                .set_names(
                    alice.id,
                    Some("Alice"),
                    Some("alice@lan.test"),
                    Vouch::Admin,
                )
                .expect("by an admin");
            assert!(!p.email_vouched());
            // An administrator who checked the address the user typed
            // vouches for it, and can take that back.
            let p = u
                .set_names(
                    alice.id,
                    Some("Alice"),
                    Some("alice@lan.test"),
                    Vouch::Checked(true),
                )
                .expect("checked");
            assert!(p.email_vouched());
            let p = u
                .set_names(
                    alice.id,
                    Some("Alice"),
                    Some("alice@lan.test"),
                    Vouch::Checked(false),
                )
                .expect("unchecked");
            assert!(!p.email_vouched());
            let p = u
                .set_names(
                    alice.id,
                    Some("Alice"),
                    Some("alice@example.org"),
                    Vouch::Admin,
                )
                .expect("by an admin");
            assert!(p.email_vouched());
            // Saved again by the user with the same address: still vouched.
            let p = u
                .set_names(alice.id, None, Some("alice@example.org"), Vouch::User)
                .expect("again");
            assert!(p.email_vouched() && p.display_name.is_none());
            // A new address the user typed is not.
            let p = u
                .set_names(alice.id, None, Some("other@lan.test"), Vouch::User)
                .expect("new");
            assert!(!p.email_vouched());
            assert_eq!(u.profile(alice.id).expect("p"), Some(p));
            // A directory user's names are the directory's.
            let bob = name("bob");
            let (dir_user, _) = u
                .upsert_external(
                    Source::Ldap,
                    &External {
                        id: "b-1",
                        username: &bob,
                        display_name: None,
                        email: Some("bob@lan.test"),
                    },
                )
                .expect("bob");
            assert!(matches!(
                u.set_names(dir_user.id, Some("Bob"), None, Vouch::Admin),
                Err(UserError::External)
            ));
            assert!(
                u.profile(dir_user.id)
                    .expect("p")
                    .expect("bob")
                    .email_vouched()
            );
        });
    }

    #[test]
    fn a_profile_moves_with_its_user() {
        each(|u| {
            let local = u.create(&name("frank"), "password1", false).expect("local");
            let moved = Profile {
                source: Source::Ldap,
                external_id: Some("f-id".into()),
                display_name: Some("Frank".into()),
                email: Some("frank@example.org".into()),
                email_verified: true,
            };
            u.import_profile(local.id, &moved).expect("import");
            assert_eq!(u.profile(local.id).expect("p"), Some(moved));
            assert!(matches!(
                u.import_profile(999, &Profile::local()),
                Err(UserError::NotFound)
            ));
        });
    }
}
