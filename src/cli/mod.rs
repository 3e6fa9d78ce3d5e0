//! The command line, one file per command group: `serve` and
//! `check-config` (`serve.rs`), `user ...` (`user.rs`), `group ...` and `user groups` (`group.rs`), `session ...`
//! (`session.rs`), `token ...` (`token.rs`), `invite ...` and the link a
//! command prints (`invite.rs`), `backup`, `restore`, `migrate-store` and the checkpoint
//! after a change (`store.rs`), `tls ...` (`tls.rs`), `oidc ...`
//! (`oidc.rs`), `ldap ...` (`ldap.rs`), `audit` (`audit.rs`). This file holds what they share: the parsed command line
//! ([`Cli`], the options every command takes), [`run`], [`CliError`] and
//! the configuration a command works with. Output is for people; every
//! flag has a `GATEHOUSE_*` environment twin.

mod audit;
mod group;
mod invite;
mod ldap;
mod oidc;
mod serve;
mod session;
mod store;
mod tls;
mod token;
mod user;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::accounts::AccountError;
use crate::app::{self, AppError};
use crate::config::{Config, ConfigError};
use crate::session::{Store, StoreError};
use crate::users::{UserError, Users};

use group::GroupCommand;
use invite::InviteCommand;
use ldap::LdapCommand;
use oidc::OidcCommand;
use serve::ServeArgs;
use session::SessionCommand;
use tls::TlsCommand;
use token::TokenCommand;
use user::UserCommand;

/// gatehouse: a login for small intranet apps.
#[derive(Parser, Debug)]
#[command(name = "gatehouse", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub(super) struct Global {
    /// Directory for the database, the generated secret and gatehouse.toml.
    #[arg(
        long = "data",
        env = "GATEHOUSE_DATA",
        default_value = "./gatehouse-data",
        global = true,
        value_name = "DIR"
    )]
    data: PathBuf,
    /// Config file (default: DIR/gatehouse.toml if it exists).
    #[arg(long, env = "GATEHOUSE_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Users and sessions: a SQLite file, or postgres://user:password@host/db
    /// (the `database` setting).
    #[arg(long, global = true, value_name = "URL_OR_FILE")]
    database: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage groups (`admins` is the administrators).
    #[command(subcommand)]
    Group(GroupCommand),
    /// List and revoke sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Personal access tokens (for scripts, WebDAV, phone apps).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Invite links that make accounts.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Check the configuration and print the effective settings (secrets
    /// masked); with --explain, which access rule decides a request and why.
    CheckConfig(serve::CheckArgs),
    /// Copy the database to FILE, safely while the server runs.
    Backup {
        /// Where to write the copy (must not exist yet).
        file: PathBuf,
    },
    /// Copy users (and with --sessions, live sessions) from a SQLite file
    /// into the configured PostgreSQL database and/or Redis session store.
    MigrateStore {
        /// The SQLite file to copy from (e.g. ./gatehouse-data/gatehouse.db).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Copy live sessions too, so nobody has to sign in again (needs the
        /// same `secrets`, or the same secret file, as before).
        #[arg(long)]
        sessions: bool,
    },
    /// HTTPS certificates.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// The OpenID Provider.
    #[command(subcommand)]
    Oidc(OidcCommand),
    /// The directory (LDAP, Active Directory) users sign in with.
    #[command(subcommand)]
    Ldap(LdapCommand),
    /// Show the audit log (sign-ins, sign-outs, changes to accounts),
    /// newest first.
    Audit(audit::AuditArgs),
    /// Replace the database with the backup in FILE (stop the server first).
    Restore {
        /// The backup to restore.
        file: PathBuf,
        /// Confirm that the current users and sessions are to be replaced.
        #[arg(long)]
        yes: bool,
    },
}

/// A command failed; the message is for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server could not start.
    #[error(transparent)]
    App(#[from] AppError),
    /// A user operation failed.
    #[error(transparent)]
    User(#[from] UserError),
    /// An account operation failed or was refused.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading input or writing output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The user asked for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// A certificate could not be made.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The OpenID Provider failed.
    #[error(transparent)]
    Oidc(#[from] crate::oidc::OidcError),
    /// An OpenID Connect client could not be made, changed or deleted.
    #[error(transparent)]
    Client(#[from] crate::oidc::RegistryError),
    /// The directory could not answer.
    #[error(transparent)]
    Directory(#[from] crate::users::directory::DirectoryError),
}

/// Parses the command line and runs it.
///
/// # Errors
///
/// Any failure, for `main` to print.
// `#[inline]` here and down to `app::start_with_logging`: the executable's
// crate, built for speed, compiles the request path (docs/ARCHITECTURE.md,
// "Two packages").
#[inline]
pub fn run() -> Result<(), CliError> {
    let cli = Cli::parse();
    match cli.command {
        None => serve::serve(&cli.global, &ServeArgs::default()),
        Some(Command::Serve(args)) => serve::serve(&cli.global, &args),
        Some(Command::User(cmd)) => {
            user::user(&cli.global, cmd)?;
            store::checkpoint(&cli.global)
        }
        Some(Command::Group(cmd)) => {
            group::group(&cli.global, cmd)?;
            store::checkpoint(&cli.global)
        }
        Some(Command::Session(cmd)) => {
            session::session(&cli.global, cmd)?;
            store::checkpoint(&cli.global)
        }
        Some(Command::Token(cmd)) => {
            token::token(&cli.global, cmd)?;
            store::checkpoint(&cli.global)
        }
        Some(Command::Invite(cmd)) => {
            invite::invite(&cli.global, cmd)?;
            store::checkpoint(&cli.global)
        }
        Some(Command::CheckConfig(args)) => serve::check_config(&cli.global, &args),
        Some(Command::Backup { file }) => store::backup(&cli.global, &file),
        Some(Command::Restore { file, yes }) => store::restore(&cli.global, &file, yes),
        Some(Command::Tls(TlsCommand::SelfSigned { hosts, force })) => {
            tls::self_signed(&cli.global, &hosts, force)
        }
        Some(Command::MigrateStore { from, sessions }) => {
            store::migrate_store(&cli.global, &from, sessions)
        }
        Some(Command::Oidc(OidcCommand::RotateKey)) => {
            oidc::rotate_key(&cli.global)?;
            store::checkpoint(&cli.global)
        }
        Some(Command::Oidc(OidcCommand::Client(cmd))) => {
            oidc::client(&cli.global, cmd)?;
            store::checkpoint(&cli.global)
        }
        Some(Command::Ldap(cmd)) => {
            ldap::ldap(&cli.global, cmd)?;
            store::checkpoint(&cli.global)
        }
        Some(Command::Audit(args)) => {
            audit::audit(&cli.global, &args)?;
            store::checkpoint(&cli.global)
        }
    }
}

pub(super) fn config(
    global: &Global,
    flags: &[(&str, Option<String>)],
) -> Result<Config, CliError> {
    let mut flags = flags.to_vec();
    flags.push(("database", global.database.clone()));
    Ok(Config::load(
        &global.data,
        global.config.as_deref(),
        std::env::vars(),
        &flags,
    )?)
}

/// The users, the session store, and the OpenID Connect grants (which end
/// with the sessions that gave them).
pub(super) type Stores = (Users, Arc<dyn Store>, Arc<dyn crate::oidc::Store>);

pub(super) fn stores(global: &Global) -> Result<Stores, CliError> {
    let config = config(global, &[])?;
    let backends = app::open_backends(&config, app::foreign_wal_for_command(&config.data_dir))?;
    Ok((backends.users, backends.store, backends.oidc))
}

#[cfg(test)]
mod settings_tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every environment variable the command line reads, with the long
    /// flag it belongs to, in every subcommand.
    fn flag_envs(cmd: &clap::Command, out: &mut Vec<(String, String)>) {
        for arg in cmd.get_arguments() {
            if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
                out.push((long.to_owned(), env.to_string_lossy().into_owned()));
            }
        }
        for sub in cmd.get_subcommands() {
            flag_envs(sub, out);
        }
    }

    #[test]
    fn a_flag_that_is_a_setting_reads_that_settings_env_twin_and_no_flag_env_is_unknown() {
        let mut envs = Vec::new();
        flag_envs(&Cli::command(), &mut envs);
        assert!(envs.iter().any(|(long, _)| long == "listen"), "{envs:?}");
        for (long, env) in &envs {
            if let Some(setting) = crate::config::SETTINGS
                .iter()
                .find(|s| s.name == long.replace('-', "_"))
            {
                assert_eq!(*env, setting.env(), "--{long}");
            }
            let warnings = crate::config::unknown_env([(env.clone(), String::new())]);
            assert!(warnings.is_empty(), "--{long}: {warnings:?}");
        }
    }
}
