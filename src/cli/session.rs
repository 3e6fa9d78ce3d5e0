//! `session ...`: list live sessions, end all of a user's.

use std::io::Write;

use clap::Subcommand;

use crate::accounts::Accounts;
use crate::clock;
use crate::logging::rfc3339;
use crate::users::User;
use crate::users::audit::Origin;

use super::{CliError, Global, stores};

#[derive(Subcommand, Debug)]
pub(super) enum SessionCommand {
    /// List live sessions.
    List {
        /// Only this user's sessions.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// End all sessions of a user.
    Revoke {
        /// Whose sessions to end.
        #[arg(long, value_name = "NAME")]
        user: String,
    },
}

pub(super) fn session(global: &Global, cmd: SessionCommand) -> Result<(), CliError> {
    let (users, store, grants) = stores(global)?;
    let mut out = std::io::stdout().lock();
    match cmd {
        SessionCommand::List { user } => {
            let filter = match user {
                Some(name) => Some(users.get_by_name(&name)?),
                None => None,
            };
            let all: Vec<User> = users.list()?;
            let name_of = |id: Option<i64>| {
                id.and_then(|id| all.iter().find(|u| u.id == id))
                    .map_or("(anonymous)", |u| u.username.as_str())
            };
            let sessions = store.list(filter.map(|u| u.id), clock::now())?;
            writeln!(
                out,
                "{:<32} {:<20} {:<24} {:<24} {:<24} {:<16} AGENT",
                "HANDLE", "USER", "CREATED", "LAST SEEN", "EXPIRES", "IP"
            )?;
            for s in &sessions {
                writeln!(
                    out,
                    "{:<32} {:<20} {:<24} {:<24} {:<24} {:<16} {}",
                    s.key.handle(),
                    name_of(s.user_id),
                    rfc3339(s.created_at),
                    rfc3339(s.last_seen_at),
                    rfc3339(s.expires_at),
                    s.ip.as_deref().unwrap_or("-"),
                    s.user_agent.as_deref().unwrap_or("-"),
                )?;
            }
            writeln!(out, "{} session(s)", sessions.len())?;
        }
        SessionCommand::Revoke { user } => {
            let user = users.get_by_name(&user)?;
            let ended = Accounts::new(&users, &*store, &*grants)
                .at(Origin::cli())
                .end_sessions(&user, None)?;
            writeln!(out, "ended {ended} session(s) of {}", user.username)?;
        }
    }
    Ok(())
}
