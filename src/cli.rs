//! The command line: `serve`, `user ...`, `session ...`, `ldap ...`, with
//! output for people. Every flag has a `GATEHOUSE_*` environment twin.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::accounts::{AccountError, Accounts, Refusal};
use crate::app::{self, AppError};
use crate::clock;
use crate::config::{Config, ConfigError, Database, SessionStore};
use crate::logging::rfc3339;
use crate::session::{Store, StoreError};
use crate::users::directory::{Directory, DirectoryError, Found};
use crate::users::source::Source;
use crate::users::{User, UserError, Username, Users};

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
struct Global {
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
    /// List and revoke sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Check the configuration and print the effective settings (secrets masked).
    CheckConfig(ServeArgs),
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
    /// Replace the database with the backup in FILE (stop the server first).
    Restore {
        /// The backup to restore.
        file: PathBuf,
        /// Confirm that the current users and sessions are to be replaced.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:8080 (port 0 picks a free port).
    #[arg(long, env = "GATEHOUSE_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Number of request threads, or `auto`.
    #[arg(long, env = "GATEHOUSE_THREADS", value_name = "N")]
    threads: Option<String>,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
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
}

#[derive(Subcommand, Debug)]
enum SessionCommand {
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

#[derive(Subcommand, Debug)]
enum OidcCommand {
    /// Make new signing keys (one per algorithm in use); the old ones stay
    /// in the JWKS until the ID tokens they signed have expired. Running
    /// servers switch within a minute.
    RotateKey,
}

#[derive(Subcommand, Debug)]
enum TlsCommand {
    /// Make a key and a self-signed certificate for HOSTs in DIR/tls/, which
    /// `serve` then uses (HTTPS only) when tls_cert and tls_key are not set.
    SelfSigned {
        /// A name (or IP address) browsers use to reach gatehouse; repeat for more.
        #[arg(long = "host", value_name = "HOST", required = true)]
        hosts: Vec<String>,
        /// Replace a key and certificate already there.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum LdapCommand {
    /// Show what gatehouse reads from the directory for NAME (the entry,
    /// its attributes, groups, whether it is disabled) without signing in.
    Test {
        /// The name as a user would type it.
        name: String,
    },
    /// List what a sync would change: the directory's users here whose
    /// entry is gone or disabled, or whose names changed (changes nothing).
    Sync,
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
    /// The directory could not answer.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// Parses the command line and runs it.
///
/// # Errors
///
/// Any failure, for `main` to print.
pub fn run() -> Result<(), CliError> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(&cli.global, &ServeArgs::default()),
        Some(Command::Serve(args)) => serve(&cli.global, &args),
        Some(Command::User(cmd)) => {
            user(&cli.global, cmd)?;
            checkpoint(&cli.global)
        }
        Some(Command::Session(cmd)) => {
            session(&cli.global, cmd)?;
            checkpoint(&cli.global)
        }
        Some(Command::CheckConfig(args)) => check_config(&cli.global, &args),
        Some(Command::Backup { file }) => backup(&cli.global, &file),
        Some(Command::Restore { file, yes }) => restore(&cli.global, &file, yes),
        Some(Command::Tls(TlsCommand::SelfSigned { hosts, force })) => {
            self_signed(&cli.global, &hosts, force)
        }
        Some(Command::MigrateStore { from, sessions }) => {
            migrate_store(&cli.global, &from, sessions)
        }
        Some(Command::Oidc(OidcCommand::RotateKey)) => {
            rotate_key(&cli.global)?;
            checkpoint(&cli.global)
        }
        Some(Command::Ldap(cmd)) => ldap(&cli.global, cmd),
    }
}

/// `oidc rotate-key`: new signing keys, sealed with the same secrets the
/// server uses (the configured ones, or the data directory's file).
fn rotate_key(global: &Global) -> Result<(), CliError> {
    let config = config(global, &[])?;
    let backends = app::open_backends(&config, app::foreign_wal_for_command(&config.data_dir))?;
    let secrets = app::secret::signing_secrets(&config).map_err(AppError::from)?;
    let keys = crate::oidc::KeyRing::new(backends.oidc, &secrets, config.oidc.id_token_lifetime);
    let mut out = std::io::stdout().lock();
    for (alg, kid) in keys.rotate()? {
        writeln!(out, "new {} signing key: kid {kid}", alg.as_str())?;
    }
    writeln!(
        out,
        "the previous keys stay published for {} (oidc.id_token_lifetime) and a few minutes more",
        crate::config::format_duration(config.oidc.id_token_lifetime)
    )?;
    Ok(())
}

fn config(global: &Global, flags: &[(&str, Option<String>)]) -> Result<Config, CliError> {
    let mut flags = flags.to_vec();
    flags.push(("database", global.database.clone()));
    Ok(Config::load(
        &global.data,
        global.config.as_deref(),
        std::env::vars(),
        &flags,
    )?)
}

fn serve(global: &Global, args: &ServeArgs) -> Result<(), CliError> {
    for warning in crate::config::unknown_env(std::env::vars()) {
        crate::logging::line(&warning);
    }
    let config = config(
        global,
        &[
            ("listen", args.listen.clone()),
            ("threads", args.threads.clone()),
        ],
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    // SIGHUP reads the certificate again (renewals apply without a restart).
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))?;
    if let Some(warning) = config.ldap.as_ref().and_then(|l| l.warning()) {
        crate::logging::line(&warning);
    }
    let running = app::start(&config)?;
    // Listening: tell systemd, and let its watchdog see us answer.
    let watchdog = app::watchdog::Watchdog::start(running.addr())?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "gatehouse {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        running.url()
    )?;
    writeln!(out, "data directory: {}", config.data_dir.display())?;
    if let Some(url) = running.setup_url() {
        writeln!(out, "no users yet: create the first administrator at")?;
        writeln!(out, "    {url}")?;
        writeln!(
            out,
            "(this link works once), or with `gatehouse user add NAME --admin --data {}`",
            config.data_dir.display()
        )?;
    }
    out.flush()?;
    drop(out);
    if let Some(certs) = running.certificates() {
        crate::logging::line(&format!(
            "tls cert={} sha256={}",
            crate::logging::quote(&certs.files().cert.display().to_string()),
            certs.fingerprint()
        ));
    }
    if let Some(at) = running.redirect_addr() {
        crate::logging::line(&format!(
            "redirect_http listening on http://{at}: every request gets 301 to HTTPS"
        ));
    }
    while !stop.load(Ordering::SeqCst) {
        if reload.swap(false, Ordering::SeqCst) {
            // reload_tls logs the outcome; a refused file keeps the old one.
            let _ = running.reload_tls();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    crate::logging::line("shutting down: finishing requests in flight");
    watchdog.stop();
    running.shutdown();
    crate::logging::line("stopped");
    Ok(())
}

fn self_signed(global: &Global, hosts: &[String], force: bool) -> Result<(), CliError> {
    let files = crate::tls::TlsFiles::in_data_dir(&global.data);
    let made = crate::tls::self_signed(&files, hosts, force)?;
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote the private key {} (mode 0600)",
        made.files.key.display()
    )?;
    writeln!(
        out,
        "wrote the certificate {} for {} (valid until {})",
        made.files.cert.display(),
        hosts.join(", "),
        made.valid_until
    )?;
    writeln!(out, "SHA-256 fingerprint: {}", made.fingerprint)?;
    writeln!(
        out,
        "`gatehouse serve` with this data directory now speaks HTTPS only, with these files \
         (restart it; a running one that already serves them picks up new ones on SIGHUP)."
    )?;
    writeln!(
        out,
        "Unless tls_cert and tls_key name other files; to name these ones explicitly:"
    )?;
    writeln!(
        out,
        "    tls_cert = \"{}\"",
        absolute(&made.files.cert).display()
    )?;
    writeln!(
        out,
        "    tls_key = \"{}\"",
        absolute(&made.files.key).display()
    )?;
    writeln!(
        out,
        "Browsers warn about a self-signed certificate: accept it once after checking that \
         the fingerprint they show is the one above."
    )?;
    Ok(())
}

fn backup(global: &Global, file: &std::path::Path) -> Result<(), CliError> {
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

fn restore(global: &Global, file: &std::path::Path, yes: bool) -> Result<(), CliError> {
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

fn migrate_store(global: &Global, from: &Path, sessions: bool) -> Result<(), CliError> {
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
    }
    if sessions {
        let live = source_store.list(None, clock::now())?;
        let mut copied = 0;
        for record in &live {
            match dest.store.create(record) {
                Ok(()) => copied += 1,
                // Already there from an earlier run: leave it.
                Err(StoreError::Backend(m)) if m.contains("exists") || m.contains("duplicate") => {}
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

fn check_config(global: &Global, args: &ServeArgs) -> Result<(), CliError> {
    let config = config(
        global,
        &[
            ("listen", args.listen.clone()),
            ("threads", args.threads.clone()),
        ],
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "configuration is valid")?;
    if let Some(warning) = config.ldap.as_ref().and_then(|l| l.warning()) {
        writeln!(out, "{warning}")?;
    }
    writeln!(out, "data directory: {}", config.data_dir.display())?;
    for (name, value) in config.effective() {
        writeln!(out, "{name:<26} {value}")?;
    }
    for app in config.apps.all() {
        writeln!(
            out,
            "app {:?}: prefix {}, host {}, upstream {}, access {:?}{}",
            app.name,
            app.prefix.as_deref().unwrap_or("-"),
            app.host.as_deref().unwrap_or("-"),
            app.upstream.as_ref().map_or("-".to_owned(), |u| format!(
                "http://{}{}",
                u.authority, u.base
            )),
            app.access,
            if app.case_insensitive {
                ", prefix in any case"
            } else {
                ""
            }
        )?;
    }
    for client in config.clients.all() {
        // Never the secret, nor its hash: whether it has one is enough.
        writeln!(
            out,
            "client {:?}: name {:?}, {}, redirect_uris {}, groups {}, pkce {:?}, signing_alg {}",
            client.id,
            client.name,
            if client.is_public() {
                "public (no secret)"
            } else {
                "secret ***"
            },
            client.redirect_uris.join(" "),
            if client.groups.is_empty() {
                "(any signed-in user)".to_owned()
            } else {
                client.groups.join(" ")
            },
            client.pkce,
            client.signing_alg.as_str(),
        )?;
    }
    Ok(())
}

/// Moves what a short command wrote out of the `-wal` into the database
/// file before the command exits. A server still holding the file open
/// keeps the `-wal`, so without this a change could exist only there, and a
/// copy of `gatehouse.db` alone would miss it.
fn checkpoint(global: &Global) -> Result<(), CliError> {
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

fn stores(global: &Global) -> Result<(Users, Arc<dyn Store>), CliError> {
    let config = config(global, &[])?;
    let backends = app::open_backends(&config, app::foreign_wal_for_command(&config.data_dir))?;
    Ok((backends.users, backends.store))
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

fn user(global: &Global, cmd: UserCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match cmd {
        UserCommand::Add {
            name,
            admin,
            password_stdin,
        } => {
            let name = Username::parse(&name)?;
            let (users, store) = stores(global)?;
            if users.find_by_name(name.as_str())?.is_some() {
                return Err(UserError::Taken.into());
            }
            let password = read_password(password_stdin)?;
            let user =
                Accounts::new(&users, &*store).create_user(name.as_str(), &password, admin)?;
            let role = if user.is_admin {
                "administrator"
            } else {
                "user"
            };
            writeln!(out, "created {role} {}", user.username)?;
        }
        UserCommand::List => {
            let (users, store) = stores(global)?;
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
            let (users, store) = stores(global)?;
            let user = users.get_by_name(&name)?;
            let password = read_password(password_stdin)?;
            let ended = Accounts::new(&users, &*store).set_password(&user, &password, None)?;
            writeln!(
                out,
                "password changed for {}; ended {ended} session(s)",
                user.username
            )?;
        }
        UserCommand::Disable { name, force } => {
            let (users, store) = stores(global)?;
            let user = users.get_by_name(&name)?;
            let ended = Accounts::new(&users, &*store)
                .disable(None, &user, force)
                .map_err(|e| last_admin(e, &user, "disable"))?;
            writeln!(out, "disabled {}; ended {ended} session(s)", user.username)?;
        }
        UserCommand::Enable { name } => {
            let (users, store) = stores(global)?;
            let user = users.get_by_name(&name)?;
            Accounts::new(&users, &*store).enable(&user)?;
            writeln!(out, "enabled {}", user.username)?;
        }
        UserCommand::Reset2fa { name } => {
            let (users, store) = stores(global)?;
            let user = users.get_by_name(&name)?;
            let ended = Accounts::new(&users, &*store).reset_second_factors(&user)?;
            writeln!(
                out,
                "removed the second factors of {}; ended {ended} session(s)",
                user.username
            )?;
        }
        UserCommand::Delete { name, force } => {
            let (users, store) = stores(global)?;
            let user = users.get_by_name(&name)?;
            let ended = Accounts::new(&users, &*store)
                .delete(None, &user, force)
                .map_err(|e| last_admin(e, &user, "delete"))?;
            writeln!(out, "deleted {}; ended {ended} session(s)", user.username)?;
        }
    }
    Ok(())
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

fn ldap(global: &Global, cmd: LdapCommand) -> Result<(), CliError> {
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
            if !s.groups.is_empty() {
                writeln!(
                    out,
                    "groups kept:    {} (ldap.groups)",
                    list(s.kept_groups(&entry.groups))
                )?;
            }
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
        LdapCommand::Sync => {
            let users =
                app::open_backends(&config, app::foreign_wal_for_command(&config.data_dir))?.users;
            let linked = users.list_by_source(Source::Ldap)?;
            // (A row without an id has no entry: it shows as gone.)
            let ids: Vec<String> = linked
                .iter()
                .map(|(_, p)| p.external_id.clone().unwrap_or_default())
                .collect();
            let entries = directory.find_by_ids(&ids)?;
            let mut unchanged = 0;
            let mut lines = Vec::new();
            for ((user, profile), entry) in linked.iter().zip(&entries) {
                let change = match entry {
                    None => "gone from the directory: would be disabled and signed out".to_owned(),
                    Some(e) if e.disabled => {
                        "disabled in the directory: would be disabled and signed out".to_owned()
                    }
                    Some(e) => {
                        let mut changes = Vec::new();
                        if e.username != user.username {
                            changes.push(format!("name -> {}", e.username));
                        }
                        if e.display_name != profile.display_name {
                            changes.push(format!(
                                "display name -> {}",
                                e.display_name.as_deref().unwrap_or("(none)")
                            ));
                        }
                        if e.email != profile.email {
                            changes.push(format!(
                                "e-mail -> {}",
                                e.email.as_deref().unwrap_or("(none)")
                            ));
                        }
                        if changes.is_empty() {
                            unchanged += 1;
                            continue;
                        }
                        format!("would update: {}", changes.join(", "))
                    }
                };
                lines.push(format!("{:<24} {change}", user.username));
            }
            for line in &lines {
                writeln!(out, "{line}")?;
            }
            writeln!(
                out,
                "{} directory user(s): {} to change, {unchanged} unchanged (nothing was changed:                  `ldap sync` only lists for now)",
                linked.len(),
                lines.len()
            )?;
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

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn session(global: &Global, cmd: SessionCommand) -> Result<(), CliError> {
    let (users, store) = stores(global)?;
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
            let ended = Accounts::new(&users, &*store).end_sessions(&user, None)?;
            writeln!(out, "ended {ended} session(s) of {}", user.username)?;
        }
    }
    Ok(())
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
