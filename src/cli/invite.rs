//! `invite ...`: make, list and revoke invite links from the box; and the
//! address a link is printed with (`public_url`, or only its path with a
//! note when it is not set). A link's token is printed once, when it is
//! made; only its hash is kept.

use std::io::Write;

use clap::Subcommand;

use crate::accounts::Accounts;
use crate::config::Config;
use crate::logging::rfc3339;
use crate::users::Username;
use crate::users::audit::Origin;
use crate::users::links::{INVITE_FOR, ListedInvite, NewInvite};

use super::{CliError, Global, config, stores};

#[derive(Subcommand, Debug)]
pub(super) enum InviteCommand {
    /// Make an invite link and print it (once).
    Create {
        /// The groups its accounts join, by name (never `admins`).
        #[arg(long, value_delimiter = ',', value_name = "GROUP,...")]
        groups: Vec<String>,
        /// How many accounts it may make (1 to 1000).
        #[arg(long, default_value_t = 1, value_name = "N")]
        uses: u32,
        /// When it stops working, from now (`7d`, `12h`; at most 90 days).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Make this user now; the link only sets their password.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// List invites (who made them, uses left, expiry), without the links.
    List,
    /// Revoke an invite by its id (from `invite list`).
    Revoke {
        /// The invite's id.
        id: i64,
    },
}

/// `path` at gatehouse's public address, and whether that address is
/// known (`public_url`); without it, the path alone.
pub(super) fn address(config: &Config, path: &str) -> (String, bool) {
    match &config.public_url {
        Some(base) => (format!("{base}{path}"), true),
        None => (path.to_owned(), false),
    }
}

/// `d` (`7d`, `1h`) from now, in milliseconds.
pub(super) fn from_now(
    d: &str,
    now: crate::clock::Millis,
) -> Result<crate::clock::Millis, CliError> {
    let d = crate::config::parse_duration(d).map_err(CliError::Usage)?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Ok(now.saturating_add(ms))
}

/// Says on stderr that a printed link is only a path.
pub(super) fn say_path_only(known: bool) {
    if !known {
        eprintln!(
            "public_url is not set: put gatehouse's address in front of the path above \
             (set public_url to print whole links)"
        );
    }
}

fn line(out: &mut impl Write, l: &ListedInvite) -> std::io::Result<()> {
    let i = &l.invite;
    let by = if i.created_by.is_empty() {
        "(command line)"
    } else {
        i.created_by.as_str()
    };
    let groups = if l.group_names.is_empty() {
        "-".to_owned()
    } else {
        l.group_names.join(",")
    };
    let user = i.user.as_ref().map_or("-", |(_, name)| name.as_str());
    writeln!(
        out,
        "{:<6} {:<16} {:<21} {:<21} {:>4}/{:<4} {:<20} {}",
        i.id,
        by,
        rfc3339(i.created_at),
        rfc3339(i.expires_at),
        i.left(),
        i.uses,
        groups,
        user
    )
}

pub(super) fn invite(global: &Global, cmd: InviteCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let config = config(global, &[])?;
    let (users, store, grants) = stores(global)?;
    // What changes is recorded in the audit log as the command line's.
    let accounts = Accounts::new(&users, &*store, &*grants).at(Origin::cli());
    let now = crate::clock::now();
    match cmd {
        InviteCommand::Create {
            groups,
            uses,
            expires,
            user,
        } => {
            let expires_at = match expires {
                Some(e) => from_now(&e, now)?,
                None => now.saturating_add(INVITE_FOR),
            };
            let user = user.as_deref().map(Username::parse).transpose()?;
            let new = NewInvite {
                created_by: String::new(),
                expires_at,
                uses,
                groups: groups
                    .iter()
                    .map(|g| g.trim().to_owned())
                    .filter(|g| !g.is_empty())
                    .collect(),
                user,
            };
            let (token, invite) = accounts.create_invite(&new, now)?;
            let (url, known) = address(&config, &format!("/invite/{token}"));
            writeln!(out, "{url}")?;
            say_path_only(known);
            eprintln!(
                "invite {} made: {} use(s), until {}; the link is shown only this once",
                invite.id,
                invite.uses,
                rfc3339(invite.expires_at)
            );
        }
        InviteCommand::List => {
            writeln!(
                out,
                "{:<6} {:<16} {:<21} {:<21} {:>9} {:<20} USER",
                "ID", "MADE BY", "CREATED", "EXPIRES", "LEFT/USES", "GROUPS"
            )?;
            for l in users.invites()? {
                line(&mut out, &l)?;
            }
        }
        InviteCommand::Revoke { id } => {
            accounts.revoke_invite(id)?;
            writeln!(out, "revoked invite {id}")?;
        }
    }
    Ok(())
}
