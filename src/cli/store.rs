//! The database as files and stores: `backup` (safe while the server
//! runs), `restore` (with the server stopped), `migrate-store` (SQLite into
//! PostgreSQL and/or Redis, resumable), and the checkpoint that moves a
//! short command's change out of the `-wal` before it exits.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::app::{self, AppError};
use crate::clock;
use crate::config::{Config, Database, SessionStore};
use crate::session::{Store, StoreError};
use crate::users::Users;

use super::{CliError, Global, config};

pub(super) fn backup(global: &Global, file: &std::path::Path) -> Result<(), CliError> {
    let config = config(global, &[])?;
    let source = sqlite_file(&config, "backup")?;
    if !source.exists() {
        return Err(CliError::Usage(format!(
            "there is no database at {}",
            source.display()
        )));
    }
    crate::db::backup(
        &source,
        file,
        app::foreign_wal_for_command(&config.data_dir),
    )
    .map_err(|e| CliError::Usage(format!("backup failed: {}", e.detail())))?;
    let size = std::fs::metadata(file).map_or(0, |m| m.len());
    writeln!(
        std::io::stdout(),
        "backed up {} to {} ({size} bytes)",
        source.display(),
        file.display()
    )?;
    Ok(())
}

pub(super) fn restore(global: &Global, file: &std::path::Path, yes: bool) -> Result<(), CliError> {
    let config = config(global, &[])?;
    let dest = sqlite_file(&config, "restore")?;
    if !yes {
        return Err(CliError::Usage(format!(
            "this replaces every user and session in {} with the backup; stop the server, then run again with --yes",
            dest.display()
        )));
    }
    crate::files::create_private_dir(&config.data_dir)?;
    // Held for the restore: a server that starts meanwhile waits its turn
    // by refusing to start, and one already serving makes this refuse.
    let _lock = app::lock_data_dir(&config.data_dir)?;
    crate::files::touch_private(&dest)?;
    crate::db::restore(file, &dest)
        .map_err(|e| CliError::Usage(format!("restore failed: {}", e.detail())))?;
    writeln!(
        std::io::stdout(),
        "restored {} into {}",
        file.display(),
        dest.display()
    )?;
    Ok(())
}

pub(super) fn migrate_store(global: &Global, from: &Path, sessions: bool) -> Result<(), CliError> {
    let config = config(global, &[])?;
    let users_move = matches!(config.database, Database::Postgres(_));
    let sessions_move = users_move || matches!(config.session_store, SessionStore::Redis(_));
    if !sessions_move {
        return Err(CliError::Usage(
            "the configured database and session store are SQLite; set `database` to a \
             postgres:// URL and/or `session_store` to a redis:// URL first"
                .into(),
        ));
    }
    if !from.is_file() {
        return Err(CliError::Usage(format!(
            "there is no SQLite file at {}",
            from.display()
        )));
    }
    // A server may be running on the file to copy from (its data directory
    // is the file's).
    let foreign_wal = app::foreign_wal_for_command(from.parent().unwrap_or(Path::new(".")));
    let source = crate::db::open_with(from, 2, foreign_wal).map_err(AppError::Db)?;
    let source_users = Users::new(
        source.clone(),
        Arc::new(crate::users::password::Hasher::new(
            4,
            1,
            std::time::Duration::from_secs(10),
        )),
    );
    let source_store = crate::session::SqliteStore::new(source);
    let dest = app::open_backends(&config, app::foreign_wal_for_command(&config.data_dir))?;
    let mut out = std::io::stdout().lock();
    if users_move {
        // Resumable: a run killed half way (or one without --sessions) left
        // some of the source's users behind it, each committed on its own;
        // those are skipped. Any other user means this is not an empty
        // database nor one this command filled, and nothing is copied.
        let all = source_users.export()?;
        let present = dest.users.export()?;
        if let Some((stranger, _)) = present.iter().find(|(p, _)| {
            !all.iter()
                .any(|(u, _)| u.id == p.id && u.username == p.username)
        }) {
            return Err(CliError::Usage(format!(
                "the PostgreSQL database already has users that are not in {} (such as {:?}); \
                 migrate-store copies into an empty database or finishes its own earlier run, \
                 so nothing was copied",
                from.display(),
                stranger.username
            )));
        }
        let mut copied = 0;
        for (user, hash) in &all {
            if !present.iter().any(|(p, _)| p.id == user.id) {
                dest.users.import(user, hash)?;
                copied += 1;
            }
            // Where the user comes from goes with them: a directory user
            // copied without it would be a local user with no password,
            // and their next sign-in would find their name taken.
            if let Some(profile) = source_users.profile(user.id)?
                && dest.users.profile(user.id)?.as_ref() != Some(&profile)
            {
                dest.users.import_profile(user.id, &profile)?;
            }
            // Second factors go with the user (seeds still sealed: the
            // same secrets open them on the other side), also for a user
            // an interrupted run copied without them.
            let factors = source_users.factors().export(user.id)?;
            let none = crate::users::factors::Stored::default();
            if factors != none && dest.users.factors().export(user.id)? == none {
                dest.users.factors().import(user.id, &factors)?;
            }
        }
        writeln!(
            out,
            "copied {copied} users ({} already there)",
            present.len()
        )?;
        // Groups and who is in them, administrators among them (being in
        // `admins` is what makes one): copied after the users they name,
        // skipping what an earlier run copied.
        let groups = source_users.export_groups()?;
        dest.users.import_groups(&groups)?;
        writeln!(
            out,
            "copied {} groups and {} memberships",
            groups.groups.len(),
            groups.members.len()
        )?;
        // Tokens, after their users; a token copied before is left.
        let tokens = source_users.tokens().export()?;
        dest.users.tokens().import(&tokens)?;
        writeln!(out, "copied {} tokens", tokens.len())?;
    }
    if sessions {
        let live = source_store.list(None, clock::now())?;
        let mut copied = 0;
        for record in &live {
            match dest.store.create(record) {
                Ok(()) => copied += 1,
                // Already there from an earlier run: leave it.
                Err(StoreError::Exists) => {}
                Err(e) => return Err(e.into()),
            }
        }
        writeln!(out, "copied {copied} live sessions")?;
        if config.secrets.is_empty() {
            writeln!(
                out,
                "sessions stay valid on instances that sign with {} (copy it, or set `secrets`)",
                config.secret_file().display()
            )?;
        }
    }
    Ok(())
}

/// Moves what a short command wrote out of the `-wal` into the database
/// file before the command exits. A server still holding the file open
/// keeps the `-wal`, so without this a change could exist only there, and a
/// copy of `gatehouse.db` alone would miss it.
pub(super) fn checkpoint(global: &Global) -> Result<(), CliError> {
    let config = config(global, &[])?;
    if let Some(path) = config.database_path()
        && let Err(e) = crate::db::checkpoint(path)
    {
        crate::logging::line(&format!(
            "warning: the change is committed, but stays in {}-wal until the next checkpoint: {}",
            path.display(),
            e.detail()
        ));
    }
    Ok(())
}

/// The SQLite file `command` works on; PostgreSQL has its own tools.
fn sqlite_file(config: &Config, command: &str) -> Result<PathBuf, CliError> {
    config
        .database_path()
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "`{command}` works on a SQLite file; for PostgreSQL use pg_dump and pg_restore"
            ))
        })
}
