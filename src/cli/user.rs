//! `user ...`: add, list, set a password, disable, enable, reset second
//! factors, delete, groups (run in `group.rs`); the last-administrator rule as the command line says
//! it.

use std::io::{BufRead, IsTerminal, Write};

use clap::Subcommand;

use crate::accounts::{AccountError, Accounts, Refusal};
use crate::clock;
use crate::logging::rfc3339;
use crate::users::audit::Origin;
use crate::users::source::Vouch;
use crate::users::{User, UserError, Username};

use super::{CliError, Global, stores};

#[derive(Subcommand, Debug)]
pub(super) enum UserCommand {
    /// Create a user (prompts for the password twice).
    Add {
        /// Username: letters, digits, '.', '_', '-', '@'.
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Set a user's password; ends all their sessions.
    Passwd {
        /// Username.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user; ends all their sessions. Refused for the last
    /// enabled administrator unless --force.
    Disable {
        /// Username.
        name: String,
        /// Disable even the last enabled administrator (nobody can then use
        /// the admin page until `user add NAME --admin` or `user enable`).
        #[arg(long)]
        force: bool,
    },
    /// Enable a disabled user.
    Enable {
        /// Username.
        name: String,
    },
    /// Remove a user's second factors (authenticator app, passkeys,
    /// recovery codes), for a lost phone; ends all their sessions.
    #[command(name = "reset-2fa")]
    Reset2fa {
        /// Username.
        name: String,
    },
    /// Make a reset link for a user and print it (once): with it they set
    /// a new password themselves, which ends all their sessions and
    /// tokens. A new link replaces an older one.
    #[command(name = "reset-link")]
    ResetLink {
        /// Username.
        name: String,
        /// When it stops working, from now (default 1h; at most 7d).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// They also set up a new second factor (a lost phone); their old
        /// ones go once it is set.
        #[arg(long)]
        new_factor: bool,
        /// Revoke the user's waiting reset link instead.
        #[arg(long, conflicts_with_all = ["expires", "new_factor"])]
        revoke: bool,
    },
    /// Delete a user and all their sessions. Refused for the last
    /// enabled administrator unless --force.
    Delete {
        /// Username.
        name: String,
        /// Delete even the last enabled administrator (nobody can then use
        /// the admin page until `user add NAME --admin`).
        #[arg(long)]
        force: bool,
    },
    /// Show a local user's display name and e-mail address, and with
    /// --display-name or --email set them ("" clears one). A new address
    /// set here is one an administrator vouches for (apps are told it is
    /// verified); --verified true|false says so of the address, new or
    /// the one the user typed.
    Profile {
        /// Username.
        name: String,
        /// The name apps show (up to 64 characters).
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        /// The e-mail address.
        #[arg(long, value_name = "ADDRESS")]
        email: Option<String>,
        /// Whether the address was checked (apps are told it is verified).
        #[arg(long, value_name = "BOOL")]
        verified: Option<bool>,
    },
    /// Show a user's groups, and with --add or --remove change them.
    /// Taking the last enabled administrator out of `admins` is refused
    /// unless --force.
    Groups {
        /// Username.
        name: String,
        /// A group to put the user in (may be given several times).
        #[arg(long, value_name = "GROUP")]
        add: Vec<String>,
        /// A group to take the user out of (may be given several times).
        #[arg(long, value_name = "GROUP")]
        remove: Vec<String>,
        /// Take even the last enabled administrator out of `admins`.
        #[arg(long)]
        force: bool,
    },
}

fn read_password(from_stdin: bool) -> Result<String, CliError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        crate::users::password::validate(&password).map_err(|e| CliError::Usage(e.to_string()))?;
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "standard input is not a terminal: pass --password-stdin to read the password from it"
                .into(),
        ));
    }
    let first = rpassword::prompt_password("Password: ")?;
    crate::users::password::validate(&first).map_err(|e| CliError::Usage(e.to_string()))?;
    let second = rpassword::prompt_password("Repeat password: ")?;
    if first != second {
        return Err(CliError::Usage("the passwords do not match".into()));
    }
    Ok(first)
}

pub(super) fn user(global: &Global, cmd: UserCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match cmd {
        UserCommand::Add {
            name,
            admin,
            password_stdin,
        } => {
            let name = Username::parse(&name)?;
            let (users, store, grants) = stores(global)?;
            if users.find_by_name(name.as_str())?.is_some() {
                return Err(UserError::Taken.into());
            }
            let password = read_password(password_stdin)?;
            let user = Accounts::new(&users, &*store, &*grants)
                .at(Origin::cli())
                .create_user(name.as_str(), &password, admin)?;
            let role = if user.is_admin {
                "administrator"
            } else {
                "user"
            };
            writeln!(out, "created {role} {}", user.username)?;
        }
        UserCommand::List => {
            let (users, store, _) = stores(global)?;
            let sessions = store.list(None, clock::now())?;
            writeln!(
                out,
                "{:<24} {:<6} {:<9} {:<8} CREATED",
                "NAME", "ADMIN", "DISABLED", "SESSIONS"
            )?;
            for u in users.list()? {
                let n = sessions.iter().filter(|s| s.user_id == Some(u.id)).count();
                writeln!(
                    out,
                    "{:<24} {:<6} {:<9} {:<8} {}",
                    u.username,
                    yes_no(u.is_admin),
                    yes_no(u.disabled),
                    n,
                    rfc3339(u.created_at)
                )?;
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let (users, store, grants) = stores(global)?;
            let user = users.get_by_name(&name)?;
            let password = read_password(password_stdin)?;
            let ended = Accounts::new(&users, &*store, &*grants)
                .at(Origin::cli())
                .set_password(&user, &password, None)?;
            writeln!(
                out,
                "password changed for {}; ended {ended} session(s)",
                user.username
            )?;
        }
        UserCommand::Disable { name, force } => {
            let (users, store, grants) = stores(global)?;
            let user = users.get_by_name(&name)?;
            let ended = Accounts::new(&users, &*store, &*grants)
                .at(Origin::cli())
                .disable(None, &user, force)
                .map_err(|e| last_admin(e, &user, "disable"))?;
            writeln!(out, "disabled {}; ended {ended} session(s)", user.username)?;
        }
        UserCommand::Enable { name } => {
            let (users, store, grants) = stores(global)?;
            let user = users.get_by_name(&name)?;
            Accounts::new(&users, &*store, &*grants)
                .at(Origin::cli())
                .enable(&user)?;
            writeln!(out, "enabled {}", user.username)?;
        }
        UserCommand::ResetLink {
            name,
            expires,
            new_factor,
            revoke,
        } => {
            let config = super::config(global, &[])?;
            let (users, store, grants) = stores(global)?;
            let user = users.get_by_name(&name)?;
            let accounts = Accounts::new(&users, &*store, &*grants).at(Origin::cli());
            if revoke {
                accounts.revoke_reset_link(&user)?;
                writeln!(out, "revoked the reset link of {}", user.username)?;
                return Ok(());
            }
            let now = clock::now();
            let expires_at = match expires {
                Some(e) => super::invite::from_now(&e, now)?,
                None => now.saturating_add(crate::users::links::RESET_FOR),
            };
            let (token, link) =
                accounts.create_reset_link(&user, "", expires_at, new_factor, now)?;
            let (url, known) = super::invite::address(&config, &format!("/reset/{token}"));
            writeln!(out, "{url}")?;
            super::invite::say_path_only(known);
            eprintln!(
                "reset link for {} made, until {}{}; it is shown only this once",
                user.username,
                rfc3339(link.expires_at),
                if link.new_factor {
                    ", with a new second factor"
                } else {
                    ""
                }
            );
        }
        UserCommand::Reset2fa { name } => {
            let (users, store, grants) = stores(global)?;
            let user = users.get_by_name(&name)?;
            let ended = Accounts::new(&users, &*store, &*grants)
                .at(Origin::cli())
                .reset_second_factors(&user)?;
            writeln!(
                out,
                "removed the second factors of {}; ended {ended} session(s)",
                user.username
            )?;
        }
        UserCommand::Delete { name, force } => {
            let (users, store, grants) = stores(global)?;
            let user = users.get_by_name(&name)?;
            let ended = Accounts::new(&users, &*store, &*grants)
                .at(Origin::cli())
                .delete(None, &user, force)
                .map_err(|e| last_admin(e, &user, "delete"))?;
            writeln!(out, "deleted {}; ended {ended} session(s)", user.username)?;
        }
        UserCommand::Profile {
            name,
            display_name,
            email,
            verified,
        } => {
            let (users, _, _) = stores(global)?;
            let user = users.get_by_name(&name)?;
            let mut profile = users
                .profile(user.id)?
                .ok_or(crate::users::UserError::NotFound)?;
            let changes = display_name.is_some() || email.is_some() || verified.is_some();
            if changes && profile.source != crate::users::source::Source::Local {
                return Err(CliError::Usage(format!(
                    "{} comes from the directory: their names are the directory's",
                    user.username
                )));
            }
            if changes {
                let given = |new: Option<String>, old: Option<String>| match new {
                    Some(s) if s.trim().is_empty() => None,
                    Some(s) => Some(s),
                    None => old,
                };
                let d = given(display_name, profile.display_name.clone());
                let e = given(email, profile.email.clone());
                let vouch = verified.map_or(Vouch::Admin, Vouch::Checked);
                profile = users.set_names(user.id, d.as_deref(), e.as_deref(), vouch)?;
            }
            writeln!(
                out,
                "display name: {}",
                profile.display_name.as_deref().unwrap_or("-")
            )?;
            let vouched = if profile.email_vouched() {
                " (verified)"
            } else if profile.email.is_some() {
                " (not verified)"
            } else {
                ""
            };
            writeln!(
                out,
                "e-mail: {}{vouched}",
                profile.email.as_deref().unwrap_or("-")
            )?;
        }
        UserCommand::Groups {
            name,
            add,
            remove,
            force,
        } => {
            drop(out);
            return super::group::user_groups(global, &name, &add, &remove, force);
        }
    }
    Ok(())
}

/// The command line's word for the last-administrator rule: refused, and
/// how to go ahead anyway (the box's owner may).
fn last_admin(e: AccountError, user: &User, command: &str) -> CliError {
    match e {
        AccountError::Refused(Refusal::LastAdministrator) => CliError::Usage(format!(
            "{} is the last enabled administrator: make someone else an administrator first \
             (`gatehouse user add NAME --admin`), or pass --force to {command} them anyway",
            user.username
        )),
        e => e.into(),
    }
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
