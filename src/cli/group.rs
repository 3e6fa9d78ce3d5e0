//! `group ...`: add, rename, delete and list groups; and `user groups
//! NAME [--add G] [--remove G]`, a user's groups (declared with the other
//! `user` commands, run here). `admins` is kept, and its last enabled
//! member leaves only with `--force`.

use std::io::Write;

use clap::Subcommand;

use crate::accounts::{AccountError, Accounts, Refusal};
use crate::logging::rfc3339;
use crate::users::User;
use crate::users::audit::Origin;

use super::{CliError, Global, stores};

#[derive(Subcommand, Debug)]
pub(super) enum GroupCommand {
    /// Create a group.
    Add {
        /// Group name: letters, digits, '.', '_', '-', '@' (as a username).
        name: String,
    },
    /// Rename a group (not `admins`).
    Rename {
        /// The group's name now.
        name: String,
        /// Its new name.
        new_name: String,
    },
    /// Delete a group; its members stay, outside it. `admins` cannot be
    /// deleted.
    Delete {
        /// Group name.
        name: String,
    },
    /// List groups with their members.
    List,
}

pub(super) fn group(global: &Global, cmd: GroupCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let (users, store, grants) = stores(global)?;
    let accounts = Accounts::new(&users, &*store, &*grants).at(Origin::cli());
    match cmd {
        GroupCommand::Add { name } => {
            let group = accounts.create_group(&name)?;
            writeln!(out, "created group {}", group.name)?;
        }
        GroupCommand::Rename { name, new_name } => {
            accounts.rename_group(&name, &new_name).map_err(kept)?;
            writeln!(
                out,
                "renamed group {name} to {}",
                new_name.trim_matches(' ')
            )?;
        }
        GroupCommand::Delete { name } => {
            accounts.delete_group(&name).map_err(kept)?;
            writeln!(out, "deleted group {name}")?;
        }
        GroupCommand::List => {
            writeln!(
                out,
                "{:<24} {:<8} {:<21} MEMBERS",
                "NAME", "COUNT", "CREATED"
            )?;
            for g in accounts.groups()? {
                let (_, members) = accounts.group(&g.name)?;
                let names: Vec<&str> = members.iter().map(|u| u.username.as_str()).collect();
                writeln!(
                    out,
                    "{:<24} {:<8} {:<21} {}",
                    g.name,
                    g.members,
                    rfc3339(g.created_at),
                    names.join(",")
                )?;
            }
        }
    }
    Ok(())
}

/// `user groups NAME`: adds the user to each of `add`, takes them out of
/// each of `remove` (the last enabled administrator leaves `admins` only
/// with `force`), then prints their groups.
pub(super) fn user_groups(
    global: &Global,
    name: &str,
    add: &[String],
    remove: &[String],
    force: bool,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let (users, store, grants) = stores(global)?;
    let accounts = Accounts::new(&users, &*store, &*grants).at(Origin::cli());
    let user = users.get_by_name(name)?;
    for g in add {
        if accounts.add_to_group(g, &user)? {
            writeln!(out, "added {} to {g}", user.username)?;
        }
    }
    for g in remove {
        let left = accounts
            .remove_from_group(g, &user, None, force)
            .map_err(|e| last_admin(e, &user))?;
        if left {
            writeln!(out, "removed {} from {g}", user.username)?;
        }
    }
    let now = users.get_by_name(name)?;
    writeln!(out, "{}: {}", now.username, now.groups.join(","))?;
    Ok(())
}

/// `admins` is kept, said the command line's way.
fn kept(e: AccountError) -> CliError {
    match e {
        AccountError::Refused(Refusal::BuiltinGroup) => CliError::Usage(
            "the admins group is built in: it cannot be renamed or deleted (being in it is \
             what makes an administrator)"
                .into(),
        ),
        e => e.into(),
    }
}

fn last_admin(e: AccountError, user: &User) -> CliError {
    match e {
        AccountError::Refused(Refusal::LastAdministrator) => CliError::Usage(format!(
            "{} is the last enabled administrator: make someone else an administrator first \
             (`gatehouse user groups NAME --add admins`), or pass --force to remove them anyway",
            user.username
        )),
        e => e.into(),
    }
}
