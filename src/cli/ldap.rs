//! `ldap test` (what gatehouse reads from the directory for a name) and
//! `ldap sync` (the directory's users here brought in step with it).

use std::io::Write;

use clap::Subcommand;

use crate::accounts::directory::SyncChange;
use crate::app;
use crate::config::Config;
use crate::users::Username;
use crate::users::directory::{Directory, Found};
use crate::users::source::Source;

use super::user::yes_no;
use super::{CliError, Global, config};

#[derive(Subcommand, Debug)]
pub(super) enum LdapCommand {
    /// Show what gatehouse reads from the directory for NAME (the entry,
    /// its attributes, groups, whether it is disabled) without signing in.
    Test {
        /// The name as a user would type it.
        name: String,
    },
    /// Bring the directory's users here in step: disable and sign out
    /// those whose entry is gone or disabled, update names, e-mail and
    /// groups (the server does this every `ldap.sync_interval`).
    Sync {
        /// Only list what would change.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The directory the configuration names.
fn directory(config: &Config) -> Result<Directory, CliError> {
    let settings = config.ldap.clone().ok_or_else(|| {
        CliError::Usage(
            "no directory is configured: set ldap.url and ldap.base_dn (see docs/directory.md)"
                .into(),
        )
    })?;
    Ok(Directory::new(settings)?)
}

pub(super) fn ldap(global: &Global, cmd: LdapCommand) -> Result<(), CliError> {
    let config = config(global, &[])?;
    let directory = directory(&config)?;
    let s = directory.settings();
    let mut out = std::io::stdout().lock();
    match cmd {
        LdapCommand::Test { name } => {
            // Only a name that could be a username is ever sent (escaped
            // besides): the same rule as a sign-in.
            let name = Username::parse(&name)?;
            let security = match s.security {
                crate::users::directory::Security::Ldaps => "TLS",
                crate::users::directory::Security::StartTls => "StartTLS",
                crate::users::directory::Security::Plain => "no TLS (insecure)",
            };
            writeln!(
                out,
                "directory:      {} ({}, {} preset)",
                s.url,
                security,
                s.kind.as_str()
            )?;
            writeln!(
                out,
                "bound as:       {}",
                s.bind_dn.as_deref().unwrap_or("(anonymous)")
            )?;
            let filter = crate::users::directory::escape::fill(
                &s.user_filter,
                &[("username", name.as_str().as_bytes())],
            );
            writeln!(out, "searched:       {filter} under {}", s.base_dn)?;
            let entry = match directory.lookup(&name)? {
                Found::One(entry) => entry,
                Found::Nothing => {
                    return Err(CliError::Usage(format!(
                        "no entry in the directory matches {:?}",
                        name.as_str()
                    )));
                }
                Found::Several => {
                    return Err(CliError::Usage(format!(
                        "several entries match {:?}; the user filter must single one out                          (nobody can sign in with that name)",
                        name.as_str()
                    )));
                }
            };
            let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
            writeln!(out, "entry:          {}", entry.dn)?;
            writeln!(out, "id:             {} ({})", entry.id, s.id_attribute)?;
            writeln!(
                out,
                "username:       {} ({})",
                entry.username, s.username_attribute
            )?;
            writeln!(
                out,
                "display name:   {} ({})",
                or_none(&entry.display_name),
                s.display_name_attribute
            )?;
            writeln!(
                out,
                "e-mail:         {} ({})",
                or_none(&entry.email),
                s.email_attribute
            )?;
            let how = match s.group_lookup {
                crate::users::directory::Lookup::MemberOf => s.member_of_attribute.clone(),
                crate::users::directory::Lookup::Search => format!("search: {}", s.group_filter),
            };
            let list = |g: Vec<&str>| {
                if g.is_empty() {
                    "(none)".to_owned()
                } else {
                    g.join(", ")
                }
            };
            writeln!(
                out,
                "groups:         {} ({how})",
                list(entry.groups.iter().map(String::as_str).collect())
            )?;
            // What a sign-in makes of them here: the same function.
            let here = crate::users::directory_groups_wanted(&entry.groups, s);
            writeln!(
                out,
                "groups here:    {} (ldap.groups, ldap.admin_group; names no group here can have are skipped)",
                list(here.iter().map(String::as_str).collect())
            )?;
            writeln!(
                out,
                "administrator:  {}",
                match &s.admin_group {
                    Some(g) => format!(
                        "{} (ldap.admin_group = {g})",
                        yes_no(s.is_admin(&entry.groups))
                    ),
                    None => "no (no ldap.admin_group)".to_owned(),
                }
            )?;
            writeln!(
                out,
                "disabled:       {}",
                match &s.disabled_filter {
                    Some(f) => format!("{} ({f})", yes_no(entry.disabled)),
                    None => "no (no ldap.disabled_filter)".to_owned(),
                }
            )?;
            let users =
                app::open_backends(&config, app::foreign_wal_for_command(&config.data_dir))?.users;
            let local = match users.find_by_external(Source::Ldap, &entry.id)? {
                Some(user) => format!("{} (id {})", user.username, user.id),
                None => match users.find_by_name(&entry.username)? {
                    Some(other) => format!(
                        "none yet; the name {} is taken by another user (id {}), so this entry                          cannot sign in",
                        other.username, other.id
                    ),
                    None => "none yet (made at the first sign-in)".to_owned(),
                },
            };
            writeln!(out, "gatehouse user: {local}")?;
        }
        LdapCommand::Sync { dry_run } => {
            let backends =
                app::open_backends(&config, app::foreign_wal_for_command(&config.data_dir))?;
            let accounts =
                crate::accounts::Accounts::new(&backends.users, &*backends.store, &*backends.oidc)
                    .at(crate::users::audit::Origin::cli());
            let report = accounts.sync_directory(&directory, !dry_run)?;
            for c in &report.changed {
                let what = match (&c.change, dry_run) {
                    (SyncChange::Gone, true) => {
                        "gone from the directory: would be disabled and signed out".to_owned()
                    }
                    (SyncChange::Gone, false) => {
                        "gone from the directory: disabled and signed out".to_owned()
                    }
                    (SyncChange::Disabled, true) => {
                        "disabled in the directory: would be disabled and signed out".to_owned()
                    }
                    (SyncChange::Disabled, false) => {
                        "disabled in the directory: disabled and signed out".to_owned()
                    }
                    (SyncChange::Updated(changes), true) => {
                        format!("would update: {}", changes.join(", "))
                    }
                    (SyncChange::Updated(changes), false) => {
                        format!("updated: {}", changes.join(", "))
                    }
                };
                match &c.refused {
                    Some(why) => writeln!(out, "{:<24} {what}: refused: {why}", c.username)?,
                    None => writeln!(out, "{:<24} {what}", c.username)?,
                }
            }
            let unchanged = report.users - report.changed.len();
            if dry_run {
                writeln!(
                    out,
                    "{} directory user(s): {} to change, {unchanged} unchanged (nothing was changed: --dry-run)",
                    report.users,
                    report.changed.len()
                )?;
            } else {
                writeln!(
                    out,
                    "{} directory user(s): {} changed, {unchanged} unchanged",
                    report.users,
                    report.changed.len()
                )?;
            }
        }
    }
    Ok(())
}
