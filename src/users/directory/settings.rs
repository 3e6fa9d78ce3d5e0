//! The `[ldap]` settings, resolved: the presets for Active Directory,
//! OpenLDAP and lldap that fill the attribute names and filters, the
//! parsers the settings table calls for each value (each refusal a
//! sentence the error names the setting in front of), and [`Draft`], what
//! the rows fill in before [`Draft::resolve`] checks them together and
//! makes the [`Settings`] the directory client runs with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use super::escape;

/// What kind of directory it is: which preset fills the attribute names
/// and filters the settings leave empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Microsoft Active Directory (and Samba as a domain controller).
    ActiveDirectory,
    /// OpenLDAP (and most RFC-shaped directories: 389-DS, a NAS's LDAP).
    OpenLdap,
    /// lldap.
    Lldap,
}

/// How a user's groups are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// From an attribute of the user's entry that lists the groups' DNs
    /// (`memberOf`); the group's name is the value of its DN's first RDN.
    MemberOf,
    /// By a search for group entries whose member attribute holds the
    /// user's DN (`member`, `uniqueMember`).
    Search,
}

/// The attribute names and filters a [`Kind`] stands for.
#[derive(Clone, Copy, Debug)]
pub struct Preset {
    /// Finds a user by the name typed: `{username}` is the name.
    pub user_filter: &'static str,
    /// The user's name.
    pub username_attribute: &'static str,
    /// The user's display name.
    pub display_name_attribute: &'static str,
    /// The user's e-mail address.
    pub email_attribute: &'static str,
    /// The entry's stable id, which survives a rename.
    pub id_attribute: &'static str,
    /// How groups are found.
    pub group_lookup: Lookup,
    /// The attribute listing a user's groups ([`Lookup::MemberOf`]).
    pub member_of_attribute: &'static str,
    /// Finds a user's groups ([`Lookup::Search`]): `{dn}` is the user's DN,
    /// `{username}` their name.
    pub group_filter: &'static str,
    /// A group's name, in a group entry.
    pub group_name_attribute: &'static str,
    /// Matches a user entry that may not sign in; empty for none.
    pub disabled_filter: &'static str,
}

impl Kind {
    /// The names the setting takes.
    pub const NAMES: &'static str = "`active_directory`, `openldap` or `lldap`";

    /// Parses `ldap.kind`.
    ///
    /// # Errors
    ///
    /// A sentence naming the kinds there are.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "active_directory" => Ok(Self::ActiveDirectory),
            "openldap" => Ok(Self::OpenLdap),
            "lldap" => Ok(Self::Lldap),
            _ => Err(format!("{s:?} is not {}", Self::NAMES)),
        }
    }

    /// The name as written in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActiveDirectory => "active_directory",
            Self::OpenLdap => "openldap",
            Self::Lldap => "lldap",
        }
    }

    /// What this kind of directory is read with unless the settings say
    /// otherwise.
    pub fn preset(self) -> Preset {
        match self {
            // Computer accounts are class `user` too, but their names end
            // in `$`, which no username may hold. `memberOf` is kept by
            // the directory itself (without the primary group, as always
            // in Active Directory). The disabled bit (ACCOUNTDISABLE, 2) of
            // userAccountControl, by the bitwise-AND matching rule.
            Self::ActiveDirectory => Preset {
                user_filter: "(&(objectClass=user)(sAMAccountName={username}))",
                username_attribute: "sAMAccountName",
                display_name_attribute: "displayName",
                email_attribute: "mail",
                id_attribute: "objectGUID",
                group_lookup: Lookup::MemberOf,
                member_of_attribute: "memberOf",
                group_filter: "(&(objectClass=group)(member={dn}))",
                group_name_attribute: "cn",
                disabled_filter: "(userAccountControl:1.2.840.113556.1.4.803:=2)",
            },
            // memberOf needs an overlay OpenLDAP does not load by default,
            // so groups are searched for, of either standard class. A
            // password policy's lock (ppolicy) is the disabled mark.
            Self::OpenLdap => Preset {
                user_filter: "(&(objectClass=inetOrgPerson)(uid={username}))",
                username_attribute: "uid",
                display_name_attribute: "cn",
                email_attribute: "mail",
                id_attribute: "entryUUID",
                group_lookup: Lookup::Search,
                member_of_attribute: "memberOf",
                group_filter: "(|(&(objectClass=groupOfNames)(member={dn}))(&(objectClass=groupOfUniqueNames)(uniqueMember={dn})))",
                group_name_attribute: "cn",
                disabled_filter: "(pwdAccountLockedTime=*)",
            },
            // lldap answers memberOf on users and has no disabled state.
            Self::Lldap => Preset {
                user_filter: "(&(objectClass=person)(uid={username}))",
                username_attribute: "uid",
                display_name_attribute: "cn",
                email_attribute: "mail",
                id_attribute: "entryUUID",
                group_lookup: Lookup::MemberOf,
                member_of_attribute: "memberOf",
                group_filter: "(&(objectClass=groupOfUniqueNames)(uniqueMember={dn}))",
                group_name_attribute: "cn",
                disabled_filter: "",
            },
        }
    }
}

impl Lookup {
    /// Parses `ldap.group_lookup`.
    ///
    /// # Errors
    ///
    /// A sentence naming the ways there are.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "member_of" => Ok(Self::MemberOf),
            "search" => Ok(Self::Search),
            _ => Err(format!("{s:?} is not `member_of` or `search`")),
        }
    }

    /// The name as written in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemberOf => "member_of",
            Self::Search => "search",
        }
    }
}

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldap://` upgraded with StartTLS before anything else is sent.
    StartTls,
    /// `ldap://` in the clear (`insecure = true`): passwords cross the
    /// network readable.
    Plain,
}

/// The service account's password. `Debug` never shows it; the memory is
/// wiped when it is dropped.
#[derive(Clone, Default)]
pub struct BindPassword(Zeroizing<String>);

impl BindPassword {
    /// The password, to send in a bind.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A password from its text.
    pub fn new(text: &str) -> Self {
        Self(Zeroizing::new(text.to_owned()))
    }
}

impl fmt::Debug for BindPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Everything the directory client runs with, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `ldap://host[:port]` or `ldaps://host[:port]`, as configured.
    pub url: String,
    /// The host name the certificate must name.
    pub host: String,
    /// The port.
    pub port: u16,
    /// TLS, StartTLS or neither.
    pub security: Security,
    /// The preset in use.
    pub kind: Kind,
    /// The service account; `None` searches anonymously.
    pub bind_dn: Option<String>,
    /// Its password.
    pub bind_password: BindPassword,
    /// Where users are searched.
    pub base_dn: String,
    /// Finds one user by the typed name (`{username}`).
    pub user_filter: String,
    /// The user's name.
    pub username_attribute: String,
    /// The display name.
    pub display_name_attribute: String,
    /// The e-mail address.
    pub email_attribute: String,
    /// The stable id.
    pub id_attribute: String,
    /// How groups are found.
    pub group_lookup: Lookup,
    /// The attribute listing the user's groups (for [`Lookup::MemberOf`]).
    pub member_of_attribute: String,
    /// Where groups are searched (for [`Lookup::Search`]).
    pub group_base_dn: String,
    /// Finds the user's groups (`{dn}`, `{username}`).
    pub group_filter: String,
    /// A group's name in its entry.
    pub group_name_attribute: String,
    /// Matches a disabled user entry; `None` when there is no such mark.
    pub disabled_filter: Option<String>,
    /// Only these directory groups count (empty: all); compared without
    /// regard to case.
    pub groups: Vec<String>,
    /// Members of this directory group are administrators.
    pub admin_group: Option<String>,
    /// The CA certificate(s) the directory's certificate must chain to;
    /// `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// How often the directory is read again for the users it made.
    pub sync_interval: Duration,
    /// The longest a connection (name lookup, TCP, TLS) may take.
    pub connect_timeout: Duration,
    /// The longest the requests of one operation may take together, once
    /// connected.
    pub operation_timeout: Duration,
    /// Most directory operations (connections) at once.
    pub max_connections: usize,
}

impl Settings {
    /// The warning to log at start, if these settings deserve one.
    pub fn warning(&self) -> Option<String> {
        (self.security == Security::Plain).then(|| {
            format!(
                "warning: ldap.insecure = true: the directory at {} is reached without TLS; \
                 the service account's and every user's password cross the network readable",
                self.url
            )
        })
    }

    /// The directory groups that count, of `groups`: all of them, or only
    /// those `ldap.groups` names (in any case), in the order given.
    pub fn kept_groups<'a>(&self, groups: &'a [String]) -> Vec<&'a str> {
        groups
            .iter()
            .map(String::as_str)
            .filter(|g| {
                self.groups.is_empty() || self.groups.iter().any(|k| k.eq_ignore_ascii_case(g))
            })
            .collect()
    }

    /// Whether `groups` make their member an administrator.
    pub fn is_admin(&self, groups: &[String]) -> bool {
        self.admin_group
            .as_ref()
            .is_some_and(|admin| groups.iter().any(|g| g.eq_ignore_ascii_case(admin)))
    }
}

/// What the settings rows fill in: the text of each `ldap.*` setting,
/// parsed on its own but not yet checked together; empty text is "not
/// set" (the preset or another setting decides).
#[derive(Clone, Debug)]
pub struct Draft {
    /// `ldap.url`.
    pub url: String,
    /// `ldap.insecure`.
    pub insecure: bool,
    /// `ldap.kind`.
    pub kind: Kind,
    /// `ldap.bind_dn`.
    pub bind_dn: String,
    /// `ldap.bind_password`.
    pub bind_password: BindPassword,
    /// `ldap.bind_password_file`.
    pub bind_password_file: String,
    /// `ldap.base_dn`.
    pub base_dn: String,
    /// `ldap.user_filter`.
    pub user_filter: String,
    /// `ldap.username_attribute`.
    pub username_attribute: String,
    /// `ldap.display_name_attribute`.
    pub display_name_attribute: String,
    /// `ldap.email_attribute`.
    pub email_attribute: String,
    /// `ldap.id_attribute`.
    pub id_attribute: String,
    /// `ldap.group_lookup`.
    pub group_lookup: Option<Lookup>,
    /// `ldap.member_of_attribute`.
    pub member_of_attribute: String,
    /// `ldap.group_base_dn`.
    pub group_base_dn: String,
    /// `ldap.group_filter`.
    pub group_filter: String,
    /// `ldap.group_name_attribute`.
    pub group_name_attribute: String,
    /// `ldap.disabled_filter`: empty for the preset's, `none` for none.
    pub disabled_filter: String,
    /// `ldap.groups`.
    pub groups: Vec<String>,
    /// `ldap.admin_group`.
    pub admin_group: String,
    /// `ldap.ca_file`.
    pub ca_file: String,
    /// `ldap.sync_interval`.
    pub sync_interval: Duration,
    /// `ldap.connect_timeout`.
    pub connect_timeout: Duration,
    /// `ldap.operation_timeout`.
    pub operation_timeout: Duration,
    /// `ldap.max_connections`.
    pub max_connections: usize,
}

impl Default for Draft {
    /// Placeholders only: every field is overwritten by its row.
    fn default() -> Self {
        Self {
            url: String::new(),
            insecure: false,
            kind: Kind::OpenLdap,
            bind_dn: String::new(),
            bind_password: BindPassword::default(),
            bind_password_file: String::new(),
            base_dn: String::new(),
            user_filter: String::new(),
            username_attribute: String::new(),
            display_name_attribute: String::new(),
            email_attribute: String::new(),
            id_attribute: String::new(),
            group_lookup: None,
            member_of_attribute: String::new(),
            group_base_dn: String::new(),
            group_filter: String::new(),
            group_name_attribute: String::new(),
            disabled_filter: String::new(),
            groups: Vec::new(),
            admin_group: String::new(),
            ca_file: String::new(),
            sync_interval: Duration::ZERO,
            connect_timeout: Duration::ZERO,
            operation_timeout: Duration::ZERO,
            max_connections: 1,
        }
    }
}

/// A refusal of the settings taken together: the setting to change and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The setting (`ldap.base_dn`).
    pub setting: &'static str,
    /// Why, as a sentence.
    pub reason: String,
}

fn refuse(setting: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        setting,
        reason: reason.into(),
    }
}

/// The setting's text, or the preset's when it is empty.
fn or_preset(text: &str, preset: &str) -> String {
    if text.is_empty() { preset } else { text }.to_owned()
}

impl Draft {
    /// Checks the settings together and fills in the preset: `None` when
    /// no `ldap.url` is set (and nothing else that needs one is).
    /// Relative files are in `data_dir`; the password file is read here,
    /// so a missing one stops the start naming the setting.
    ///
    /// # Errors
    ///
    /// The first setting that does not fit the others, and why.
    pub fn resolve(self, data_dir: &Path) -> Result<Option<Settings>, Refusal> {
        if self.url.is_empty() {
            // A directory half configured is a mistake to point out, not
            // to ignore.
            for (setting, text) in [
                ("ldap.bind_dn", &self.bind_dn),
                ("ldap.base_dn", &self.base_dn),
                ("ldap.user_filter", &self.user_filter),
                ("ldap.bind_password_file", &self.bind_password_file),
            ] {
                if !text.is_empty() {
                    return Err(refuse(setting, "is set, but ldap.url is not"));
                }
            }
            if !self.bind_password.expose().is_empty() {
                return Err(refuse("ldap.bind_password", "is set, but ldap.url is not"));
            }
            return Ok(None);
        }
        let (scheme, host, port) = split_url(&self.url).map_err(|r| refuse("ldap.url", r))?;
        let security = match (scheme, self.insecure) {
            ("ldaps", false) => Security::Ldaps,
            ("ldaps", true) => {
                return Err(refuse(
                    "ldap.insecure",
                    "applies to ldap:// only (ldaps:// always uses TLS); remove it",
                ));
            }
            (_, false) => Security::StartTls,
            (_, true) => Security::Plain,
        };
        if self.base_dn.is_empty() {
            return Err(refuse("ldap.base_dn", "is needed with ldap.url"));
        }
        let password = match (
            self.bind_password.expose().is_empty(),
            self.bind_password_file.is_empty(),
        ) {
            (false, false) => {
                return Err(refuse(
                    "ldap.bind_password_file",
                    "cannot be set together with ldap.bind_password: keep one",
                ));
            }
            (true, false) => read_password_file(&data_dir.join(&self.bind_password_file))
                .map_err(|r| refuse("ldap.bind_password_file", r))?,
            (false, true) => self.bind_password.clone(),
            (true, true) => BindPassword::default(),
        };
        let bind_dn = (!self.bind_dn.is_empty()).then(|| self.bind_dn.clone());
        match (&bind_dn, password.expose().is_empty()) {
            (Some(_), true) => {
                return Err(refuse(
                    "ldap.bind_password",
                    "is needed with ldap.bind_dn (or ldap.bind_password_file)",
                ));
            }
            (None, false) => {
                return Err(refuse(
                    "ldap.bind_dn",
                    "is needed with a bind password (without both, the directory is searched anonymously)",
                ));
            }
            _ => {}
        }
        let preset = self.kind.preset();
        let user_filter = or_preset(&self.user_filter, preset.user_filter);
        check_filter(&user_filter, &["username"], true)
            .map_err(|r| refuse("ldap.user_filter", r))?;
        let group_lookup = self.group_lookup.unwrap_or(preset.group_lookup);
        let group_filter = or_preset(&self.group_filter, preset.group_filter);
        if group_lookup == Lookup::Search {
            check_filter(&group_filter, &["dn", "username"], true)
                .map_err(|r| refuse("ldap.group_filter", r))?;
        }
        let disabled_filter = match self.disabled_filter.as_str() {
            "none" => None,
            "" => (!preset.disabled_filter.is_empty()).then(|| preset.disabled_filter.to_owned()),
            text => Some(text.to_owned()),
        };
        if let Some(filter) = &disabled_filter {
            check_filter(filter, &[], false).map_err(|r| refuse("ldap.disabled_filter", r))?;
        }
        let ca_file = (!self.ca_file.is_empty()).then(|| data_dir.join(&self.ca_file));
        if let Some(file) = &ca_file {
            if security == Security::Plain {
                return Err(refuse(
                    "ldap.ca_file",
                    "is set, but ldap.insecure = true turns TLS off",
                ));
            }
            crate::tls::client::CaFile::read(file)
                .map_err(|e| refuse("ldap.ca_file", e.to_string()))?;
        }
        for (setting, d) in [
            ("ldap.sync_interval", self.sync_interval),
            ("ldap.connect_timeout", self.connect_timeout),
            ("ldap.operation_timeout", self.operation_timeout),
        ] {
            if d.is_zero() {
                return Err(refuse(setting, "must be longer than 0"));
            }
        }
        Ok(Some(Settings {
            url: self.url.clone(),
            host: host.to_owned(),
            port,
            security,
            kind: self.kind,
            bind_dn,
            bind_password: password,
            group_base_dn: or_preset(&self.group_base_dn, &self.base_dn),
            base_dn: self.base_dn,
            user_filter,
            username_attribute: or_preset(&self.username_attribute, preset.username_attribute),
            display_name_attribute: or_preset(
                &self.display_name_attribute,
                preset.display_name_attribute,
            ),
            email_attribute: or_preset(&self.email_attribute, preset.email_attribute),
            id_attribute: or_preset(&self.id_attribute, preset.id_attribute),
            group_lookup,
            member_of_attribute: or_preset(&self.member_of_attribute, preset.member_of_attribute),
            group_filter,
            group_name_attribute: or_preset(
                &self.group_name_attribute,
                preset.group_name_attribute,
            ),
            disabled_filter,
            groups: self.groups,
            admin_group: (!self.admin_group.is_empty()).then_some(self.admin_group),
            ca_file,
            sync_interval: self.sync_interval,
            connect_timeout: self.connect_timeout,
            operation_timeout: self.operation_timeout,
            max_connections: self.max_connections,
        }))
    }
}

/// Reads the service account's password from `path`: the whole file but
/// one line break at its end (as `echo secret > file` writes it).
fn read_password_file(path: &Path) -> Result<BindPassword, String> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    let text =
        std::str::from_utf8(&bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(BindPassword::new(text))
}

/// `ldap.url`'s scheme, host and port: `ldap://host[:port]` or
/// `ldaps://host[:port]`, nothing after but an optional `/`.
fn split_url(url: &str) -> Result<(&'static str, &str, u16), String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("ldaps://") {
        ("ldaps", rest)
    } else if let Some(rest) = url.strip_prefix("ldap://") {
        ("ldap", rest)
    } else {
        return Err(format!(
            "{url:?} is not an ldaps:// or ldap:// URL (ldap:// uses StartTLS)"
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let bad = || {
        format!(
            "{url:?} must be ldap[s]://host or ldap[s]://host:port, without a path, query or user"
        )
    };
    if authority.is_empty()
        || authority
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b"-.:".contains(&b)))
    {
        return Err(bad());
    }
    let default_port = if scheme == "ldaps" { 636 } else { 389 };
    let (host, port) = match authority.split_once(':') {
        None => (authority, default_port),
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(bad)?,
        ),
    };
    if host.is_empty() || host.starts_with(['-', '.']) {
        return Err(bad());
    }
    Ok((scheme, host, port))
}

/// Parses an attribute name setting: a name (`sAMAccountName`) or an OID.
///
/// # Errors
///
/// A sentence saying what an attribute name looks like.
pub fn attribute(s: &str) -> Result<String, String> {
    let name = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let oid = s.starts_with(|c: char| c.is_ascii_digit())
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if s.is_empty() || name || oid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an attribute name (letters, digits and '-', or an OID)"
        ))
    }
}

/// Parses a DN setting: text without control characters (the directory
/// judges the rest and says so when it is used).
///
/// # Errors
///
/// A sentence saying what is wrong.
pub fn dn(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        Err("must not contain control characters".to_owned())
    } else if !s.is_empty() && !s.contains('=') {
        Err(format!("{s:?} is not a DN like dc=example,dc=org"))
    } else {
        Ok(s.to_owned())
    }
}

/// Parses a filter setting on its own (placeholders are checked with the
/// others, by [`Draft::resolve`]).
///
/// # Errors
///
/// A sentence saying what is wrong.
pub fn filter(s: &str) -> Result<String, String> {
    if s.is_empty() || s == "none" {
        return Ok(s.to_owned());
    }
    check_filter(s, &["username", "dn"], false)?;
    Ok(s.to_owned())
}

/// Whether `template` is a filter once its placeholders (of `names`) are
/// filled in, and holds at least one of them when `needs_one`.
fn check_filter(template: &str, names: &[&str], needs_one: bool) -> Result<(), String> {
    let values: Vec<(&str, &[u8])> = names.iter().map(|n| (*n, &b"x"[..])).collect();
    if needs_one && !names.iter().any(|n| template.contains(&format!("{{{n}}}"))) {
        let wanted: Vec<String> = names.iter().map(|n| format!("{{{n}}}")).collect();
        return Err(format!("{template:?} must contain {}", wanted.join(" or ")));
    }
    let filled = escape::fill(template, &values);
    if !filled.starts_with('(') || ldap3::parse_filter(&filled).is_err() {
        return Err(format!(
            "{template:?} is not an LDAP filter like (&(objectClass=person)(uid={{username}}))"
        ));
    }
    if filled.contains('{') {
        return Err(format!(
            "{template:?} has a placeholder other than {}",
            names
                .iter()
                .map(|n| format!("{{{n}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            url: "ldaps://ldap.lan".into(),
            base_dn: "dc=example,dc=org".into(),
            bind_dn: "cn=svc,dc=example,dc=org".into(),
            bind_password: BindPassword::new("pw"),
            sync_interval: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
            max_connections: 8,
            ..Draft::default()
        }
    }

    fn resolve(d: Draft) -> Result<Settings, Refusal> {
        d.resolve(Path::new("/nonexistent"))
            .map(|s| s.expect("configured"))
    }

    #[test]
    fn no_url_is_no_directory_but_half_a_configuration_is_refused() {
        let none = Draft::default().resolve(Path::new("d")).expect("valid");
        assert!(none.is_none());
        let half = Draft {
            base_dn: "dc=x".into(),
            ..Draft::default()
        };
        assert_eq!(
            half.resolve(Path::new("d")).expect_err("half").setting,
            "ldap.base_dn"
        );
    }

    #[test]
    fn each_preset_fills_what_is_not_set_and_settings_win() {
        for kind in [Kind::ActiveDirectory, Kind::OpenLdap, Kind::Lldap] {
            let s = resolve(Draft { kind, ..draft() }).expect("valid");
            let p = kind.preset();
            assert_eq!(s.user_filter, p.user_filter);
            assert_eq!(s.id_attribute, p.id_attribute);
            assert_eq!(s.group_lookup, p.group_lookup);
            assert_eq!(s.group_base_dn, "dc=example,dc=org");
            assert_eq!(
                s.disabled_filter.as_deref(),
                (!p.disabled_filter.is_empty()).then_some(p.disabled_filter)
            );
            // Every preset's filters are filters.
            check_filter(p.user_filter, &["username"], true).expect("user filter");
            check_filter(p.group_filter, &["dn", "username"], true).expect("group filter");
        }
        let s = resolve(Draft {
            kind: Kind::ActiveDirectory,
            id_attribute: "objectSid".into(),
            disabled_filter: "none".into(),
            group_lookup: Some(Lookup::Search),
            group_base_dn: "ou=groups,dc=example,dc=org".into(),
            ..draft()
        })
        .expect("valid");
        assert_eq!(s.id_attribute, "objectSid");
        assert_eq!(s.username_attribute, "sAMAccountName");
        assert_eq!(s.disabled_filter, None);
        assert_eq!(s.group_lookup, Lookup::Search);
        assert_eq!(s.group_base_dn, "ou=groups,dc=example,dc=org");
    }

    #[test]
    fn urls_say_how_the_connection_is_protected() {
        let url = |u: &str, insecure: bool| {
            resolve(Draft {
                url: u.into(),
                insecure,
                ..draft()
            })
        };
        let s = url("ldaps://dc1.corp.lan", false).expect("ldaps");
        assert_eq!(
            (s.security, s.host.as_str(), s.port),
            (Security::Ldaps, "dc1.corp.lan", 636)
        );
        let s = url("ldap://127.0.0.1:3389/", false).expect("starttls");
        assert_eq!(
            (s.security, s.host.as_str(), s.port),
            (Security::StartTls, "127.0.0.1", 3389)
        );
        assert!(s.warning().is_none());
        let s = url("ldap://ldap.lan", true).expect("plain");
        assert_eq!(s.security, Security::Plain);
        assert!(s.warning().expect("warned").contains("without TLS"));
        assert_eq!(
            url("ldaps://ldap.lan", true).expect_err("both").setting,
            "ldap.insecure"
        );
        for bad in [
            "http://ldap.lan",
            "ldap.lan",
            "ldaps://",
            "ldaps://:636",
            "ldaps://ldap.lan:0",
            "ldaps://ldap.lan:99999",
            "ldaps://u:p@ldap.lan",
            "ldaps://ldap.lan/dc=x",
            "ldaps://ldap.lan/?x",
            "ldapi:///run/slapd.sock",
        ] {
            let e = url(bad, false).expect_err(bad);
            assert_eq!(e.setting, "ldap.url", "{bad}");
        }
    }

    #[test]
    fn the_service_account_needs_a_password_from_one_place() {
        let e = resolve(Draft {
            bind_password: BindPassword::default(),
            ..draft()
        })
        .expect_err("no password");
        assert_eq!(e.setting, "ldap.bind_password");
        let e = resolve(Draft {
            bind_dn: String::new(),
            ..draft()
        })
        .expect_err("a password alone");
        assert_eq!(e.setting, "ldap.bind_dn");
        let anonymous = resolve(Draft {
            bind_dn: String::new(),
            bind_password: BindPassword::default(),
            ..draft()
        })
        .expect("anonymous search");
        assert_eq!(anonymous.bind_dn, None);
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("pw"), "from the file\n").expect("write");
        let both = Draft {
            bind_password_file: "pw".into(),
            ..draft()
        };
        assert_eq!(
            both.resolve(dir.path()).expect_err("both").setting,
            "ldap.bind_password_file"
        );
        let file = Draft {
            bind_password: BindPassword::default(),
            bind_password_file: "pw".into(),
            ..draft()
        };
        let s = file
            .clone()
            .resolve(dir.path())
            .expect("valid")
            .expect("on");
        assert_eq!(s.bind_password.expose(), "from the file");
        assert_eq!(format!("{s:?}").matches("from the file").count(), 0);
        let missing = Draft {
            bind_password_file: "nope".into(),
            ..file.clone()
        };
        let e = missing.resolve(dir.path()).expect_err("missing");
        assert_eq!(e.setting, "ldap.bind_password_file");
        assert!(e.reason.contains("nope"), "{}", e.reason);
        std::fs::write(dir.path().join("empty"), "\n").expect("write");
        let empty = Draft {
            bind_password_file: "empty".into(),
            ..file
        };
        assert!(empty.resolve(dir.path()).is_err());
    }

    #[test]
    fn filters_must_parse_and_hold_their_placeholder() {
        let e = resolve(Draft {
            user_filter: "(uid=alice)".into(),
            ..draft()
        })
        .expect_err("no placeholder");
        assert_eq!(e.setting, "ldap.user_filter");
        assert!(e.reason.contains("{username}"), "{}", e.reason);
        for bad in [
            "uid={username}",
            "(uid={username}",
            "(uid={user})",
            "(&(uid={username})",
        ] {
            assert!(
                filter(bad).is_err()
                    || resolve(Draft {
                        user_filter: bad.into(),
                        ..draft()
                    })
                    .is_err(),
                "{bad}"
            );
        }
        let e = resolve(Draft {
            group_lookup: Some(Lookup::Search),
            group_filter: "(member=x)".into(),
            ..draft()
        })
        .expect_err("no {dn}");
        assert_eq!(e.setting, "ldap.group_filter");
        assert!(filter("(userAccountControl:1.2.840.113556.1.4.803:=2)").is_ok());
        assert!(filter("(pwdAccountLockedTime=*)").is_ok());
        assert!(filter("(&(a=b)").is_err());
        assert!(filter("(x={password})").is_err());
    }

    #[test]
    fn attribute_names_and_dns_are_checked() {
        for good in [
            "uid",
            "sAMAccountName",
            "entryUUID",
            "x-custom",
            "1.2.840.113556.1.4.2",
        ] {
            assert_eq!(attribute(good).as_deref(), Ok(good));
        }
        for bad in ["uid)", "u id", "-x", "1..2", "uid;binary", "uid=*"] {
            assert!(attribute(bad).is_err(), "{bad}");
        }
        assert!(dn("dc=example,dc=org").is_ok());
        assert!(dn("dc=x\nuid=y").is_err());
        assert!(dn("example.org").is_err());
    }

    #[test]
    fn groups_kept_and_the_admin_group_ignore_case() {
        let s = resolve(Draft {
            groups: vec!["Staff".into(), "admins".into()],
            admin_group: "Admins".into(),
            ..draft()
        })
        .expect("valid");
        let read = vec!["staff".to_owned(), "ADMINS".to_owned(), "other".to_owned()];
        assert_eq!(s.kept_groups(&read), ["staff", "ADMINS"]);
        assert!(s.is_admin(&read));
        assert!(!s.is_admin(&["staff".to_owned()]));
        let all = resolve(draft()).expect("valid");
        assert_eq!(all.kept_groups(&read).len(), 3);
        assert!(!all.is_admin(&read));
    }
}
