//! `token ...`: make, list and revoke users' personal access tokens from
//! the box (a monitor's token made without a browser). A token is printed
//! once, when it is made; only its hash is kept.

use std::io::Write;

use clap::Subcommand;

use crate::accounts::Accounts;
use crate::logging::rfc3339;
use crate::users::audit::Origin;
use crate::users::tokens::{NewToken, Token};

use super::{CliError, Global, stores};

#[derive(Subcommand, Debug)]
pub(super) enum TokenCommand {
    /// Make a token for a user and print it (once).
    Create {
        /// Whose token it is.
        user: String,
        /// What it is for (shown in the lists).
        #[arg(long)]
        name: String,
        /// The apps it may reach, by name (default: all of the user's).
        #[arg(long, value_delimiter = ',')]
        apps: Vec<String>,
        /// When it stops working, from now (`90d`, `12h`; default: never).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (all, or one user's), without the tokens themselves.
    List {
        /// Only this user's.
        user: Option<String>,
    },
    /// Revoke a token by its id (from `token list`).
    Revoke {
        /// The token's id.
        id: i64,
    },
}

/// One line of `token list`.
fn line(out: &mut impl Write, user: &str, t: &Token) -> std::io::Result<()> {
    let when = |at: Option<i64>| at.map_or_else(|| "-".to_owned(), rfc3339);
    let apps = if t.apps.is_empty() {
        "*".to_owned()
    } else {
        t.apps.join(",")
    };
    writeln!(
        out,
        "{:<6} {:<16} {:<24} {:<16} {:<21} {:<21} {}",
        t.id,
        user,
        t.name,
        apps,
        rfc3339(t.created_at),
        when(t.expires_at),
        when(t.last_used_at)
    )
}

pub(super) fn token(global: &Global, cmd: TokenCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let (users, store, grants) = stores(global)?;
    let accounts = Accounts::new(&users, &*store, &*grants).at(Origin::cli());
    let now = crate::clock::now();
    match cmd {
        TokenCommand::Create {
            user,
            name,
            apps,
            expires,
        } => {
            let user = users.get_by_name(&user)?;
            let expires_at = match expires {
                Some(e) => {
                    let d = crate::config::parse_duration(&e).map_err(CliError::Usage)?;
                    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                    Some(now.saturating_add(ms))
                }
                None => None,
            };
            let (secret, t) = accounts.create_token(
                &user,
                &NewToken {
                    name,
                    apps,
                    expires_at,
                },
                now,
            )?;
            writeln!(out, "{secret}")?;
            eprintln!(
                "token {} for {} made; it is shown only this once",
                t.id, user.username
            );
        }
        TokenCommand::List { user } => {
            writeln!(
                out,
                "{:<6} {:<16} {:<24} {:<16} {:<21} {:<21} LAST USED",
                "ID", "USER", "NAME", "APPS", "CREATED", "EXPIRES"
            )?;
            match user {
                Some(name) => {
                    let user = users.get_by_name(&name)?;
                    for t in users.tokens().of_user(user.id)? {
                        line(&mut out, &user.username, &t)?;
                    }
                }
                None => {
                    for l in users.tokens().all()? {
                        line(&mut out, &l.username, &l.token)?;
                    }
                }
            }
        }
        TokenCommand::Revoke { id } => {
            accounts.revoke_token(id, None)?;
            writeln!(out, "revoked token {id}")?;
        }
    }
    Ok(())
}
