//! One validated [`Config`], layered: defaults < file (`gatehouse.toml`) <
//! environment (`GATEHOUSE_*`) < command-line flags.
//!
//! Every setting has one name, used as is in the file (`idle_timeout = "2h"`,
//! `[cookie] domain = "lan"`) and upper-cased with a `GATEHOUSE_` prefix in
//! the environment (`GATEHOUSE_IDLE_TIMEOUT`, `GATEHOUSE_COOKIE_DOMAIN`). A
//! bad value stops start-up with a message naming the setting and where the
//! value came from.
//!
//! Each setting is declared once, as a row of [`SETTINGS`] in `table.rs`;
//! the other files have one job each:
//!
//! | file | job |
//! | --- | --- |
//! | `mod.rs` | [`Config`], [`ConfigError`], [`Config::load`] |
//! | `table.rs` | the rows: name, env twin, default, parser, display, help |
//! | `layers.rs` | defaults < file < env < flags; unknown names |
//! | `values.rs` | value types and parsers (durations, booleans, URLs, secrets, ...) |
//! | `check.rs` | rules between settings |
//! | `effective.rs` | `check-config`'s output |
//!
//! # Adding a setting
//!
//! 1. Add a field for it to [`Config`] (or use one in [`SessionOptions`] or
//!    [`Limits`], which `Config` holds as they are).
//! 2. Add its row to [`SETTINGS`] where `check-config` should list it: the
//!    name, the default (`Text("30s")`, or `Derived` from the type that
//!    owns the value, such as `SessionOptions::default()`), a one-line
//!    help, and how the value is parsed into the field and shown
//!    (`row!(.., duration!(field))` or `boolean!` for the common kinds; a
//!    parser from `values.rs`, or a new one there, otherwise). The
//!    environment twin (derived from the name unless the row gives
//!    `env_twin`), the file key, the unknown-setting errors and warnings and
//!    `check-config`'s line all follow from the row.
//! 3. Give the field a placeholder in `Config::unfilled` (it is always
//!    overwritten by the row).
//! 4. Add the row to the settings table in `docs/configuration.md` (a test fails until it is
//!    there) and, if it must agree with other settings, a rule to
//!    `check.rs`.

mod check;
mod effective;
mod layers;
mod table;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::apps::Apps;
use crate::auth::proxy::IpNet;
use crate::auth::throttle::Limits;
use crate::oidc::{Clients, OidcOptions};
use crate::session::SessionOptions;

pub use layers::{Layers, unknown_env};
pub use table::{DEFAULT_BCRYPT_COST, Fallback, SETTINGS, Setting, env_name};
pub use values::{
    Database, Secret, SessionStore, format_duration, mask_password, parse_bool, parse_duration,
    parse_instant,
};

/// Everything gatehouse runs with, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the database and generated secret live.
    pub data_dir: PathBuf,
    /// Where users are kept.
    pub database: Database,
    /// The CA certificates a PostgreSQL server's certificate must chain
    /// to (`None`: Mozilla's roots, built in), when its URL asks for TLS.
    pub database_ca_file: Option<PathBuf>,
    /// Where sessions are kept.
    pub session_store: SessionStore,
    /// The CA certificates a Redis server's certificate must chain to
    /// (`None`: Mozilla's roots, built in), for a `rediss://` URL.
    pub session_store_ca_file: Option<PathBuf>,
    /// The prefix of Redis keys.
    pub store_prefix: String,
    /// Listen address.
    pub listen: SocketAddr,
    /// Request threads.
    pub threads: usize,
    /// bcrypt cost for new hashes.
    pub bcrypt_cost: u32,
    /// The session engine's options (timeouts, touch interval, cookie,
    /// the per-user cap), handed to it as they are.
    pub session: SessionOptions,
    /// Reap interval.
    pub reap_interval: Duration,
    /// How long the audit log keeps a row.
    pub audit_retention: Duration,
    /// Configured secrets; empty means use `<data>/secret`.
    pub secrets: Vec<Secret>,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Whether visitors may sign up at `/register`.
    pub allow_registration: bool,
    /// The guarded apps and the default policy.
    pub apps: Apps,
    /// Whether each request is logged.
    pub log_requests: bool,
    /// Whether `/metrics` is served.
    pub metrics: bool,
    /// The bearer token `/metrics` wants, if any.
    pub metrics_token: Option<Secret>,
    /// gatehouse's external address, if set (no trailing slash: the base
    /// of the URLs gatehouse makes).
    pub public_url: Option<String>,
    /// `public_url` exactly as written, trailing slash and all: the
    /// OpenID Provider's issuer, which relying parties such as Proxmox
    /// compare byte for byte with the one they were given.
    pub issuer: Option<String>,
    /// How long the built-in proxy waits for an upstream's answer to start.
    pub proxy_timeout: Duration,
    /// The cap on open client connections (`None`: derived from the
    /// descriptor limit at start).
    pub max_connections: Option<usize>,
    /// The deadline of a request's head.
    pub header_timeout: Duration,
    /// The longest a body read or an answer's write may stall.
    pub body_timeout: Duration,
    /// How long a kept-alive connection may wait idle.
    pub keepalive_timeout: Duration,
    /// The cap on connections per client address, and on one user's
    /// WebSocket tunnels (`None`: derived from `max_connections`; 0: none).
    pub max_connections_per_client: Option<usize>,
    /// Bytes a second a client must take an answer at while it makes
    /// writes wait (0: no minimum).
    pub min_send_rate: u64,
    /// How long a WebSocket tunnel may go without a byte either way.
    pub tunnel_idle_timeout: Duration,
    /// Whether client headers with `_` in their name reach upstreams.
    pub proxy_underscore_headers: bool,
    /// Login throttling limits, handed to the throttle as they are.
    pub login: Limits,
    /// Most throttling records kept in memory (with SQLite); active ones
    /// are never evicted, so past this an overflow budget counts for the
    /// rest.
    pub throttle_records: usize,
    /// How long a sign-in (or any other bcrypt caller) may wait for a
    /// worker before it is told to come back.
    pub login_queue_timeout: Duration,
    /// How long a password confirmation lets an administrator act.
    pub admin_reauth: Duration,
    /// Who must have a second factor.
    pub two_factor: crate::users::factors::Policy,
    /// The certificate and key to serve HTTPS with, if any.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `Strict-Transport-Security` max-age over HTTPS (zero: not sent).
    pub hsts_max_age: Duration,
    /// Whether that header covers subdomains.
    pub hsts_include_subdomains: bool,
    /// The plain listener that redirects to HTTPS, if any.
    pub redirect_http: Option<SocketAddr>,
    /// The OpenID Provider's lifetimes, handed to it as they are.
    pub oidc: OidcOptions,
    /// The OpenID Connect clients (`[[clients]]`).
    pub clients: Clients,
    /// The directory users may sign in with, if any.
    pub ldap: Option<crate::users::directory::Settings>,
}

/// A configuration problem, naming the setting and the value's source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("invalid {setting} (from {origin}): {reason}")]
    Invalid {
        /// The setting's name.
        setting: String,
        /// Where the value came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The config file could not be read or parsed.
    #[error("cannot read config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// One OpenID Connect client's settings are wrong.
    #[error("client {client:?}: invalid {field}: {reason}")]
    Client {
        /// The client's id.
        client: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// One app's settings are wrong.
    #[error("app {app:?}: invalid {field}: {reason}")]
    App {
        /// The app.
        app: String,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// A configuration whose every setting is still to be filled in by its
    /// row: these are placeholders, not defaults (the defaults are the
    /// rows' own), and [`Layers::build`] overwrites each of them.
    fn unfilled(data_dir: PathBuf) -> Self {
        Self {
            database: Database::Sqlite(PathBuf::new()),
            database_ca_file: None,
            session_store: SessionStore::Database,
            session_store_ca_file: None,
            store_prefix: String::new(),
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: 1,
            bcrypt_cost: 4,
            session: SessionOptions::default(),
            reap_interval: Duration::ZERO,
            audit_retention: Duration::ZERO,
            secrets: Vec::new(),
            trusted_proxies: Vec::new(),
            allow_registration: false,
            apps: Apps::default(),
            log_requests: false,
            metrics: false,
            metrics_token: None,
            public_url: None,
            issuer: None,
            proxy_timeout: Duration::ZERO,
            max_connections: None,
            header_timeout: Duration::ZERO,
            body_timeout: Duration::ZERO,
            keepalive_timeout: Duration::ZERO,
            max_connections_per_client: None,
            min_send_rate: 0,
            tunnel_idle_timeout: Duration::ZERO,
            proxy_underscore_headers: false,
            login: Limits::default(),
            throttle_records: 0,
            login_queue_timeout: Duration::ZERO,
            admin_reauth: Duration::ZERO,
            two_factor: crate::users::factors::Policy::Optional,
            tls: None,
            hsts_max_age: Duration::ZERO,
            hsts_include_subdomains: false,
            redirect_http: None,
            oidc: OidcOptions::default(),
            clients: Clients::default(),
            ldap: None,
        }
    }

    /// Loads the layers for `data_dir`: the config file (`config_file`, or
    /// `<data>/gatehouse.toml` if it exists), then the environment. Flags are
    /// added by the caller through `flags`.
    ///
    /// # Errors
    ///
    /// Any invalid setting or unreadable file.
    pub fn load(
        data_dir: &Path,
        config_file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, Option<String>)],
    ) -> Result<Self, ConfigError> {
        let mut layers = Layers::new();
        let default_file = data_dir.join("gatehouse.toml");
        match config_file {
            Some(path) => layers.file(path)?,
            // Anything at that name (a dangling link, a file this user may
            // not read) is read and its failure reported: skipping it would
            // start on defaults the operator did not choose.
            None => match std::fs::symlink_metadata(&default_file) {
                Ok(_) => layers.file(&default_file)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ConfigError::File {
                        path: default_file,
                        reason: e.to_string(),
                    });
                }
            },
        }
        layers.env(env);
        for (name, value) in flags {
            if let Some(v) = value {
                layers.flag(name, v.clone());
            }
        }
        layers.build(data_dir.to_owned())
    }

    /// Path of the database file, when the database is SQLite.
    pub fn database_path(&self) -> Option<&Path> {
        match &self.database {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }

    /// Where the signing secret is kept when no `secrets` are configured
    /// (`app` creates it; configuration only names it).
    pub fn secret_file(&self) -> PathBuf {
        self.data_dir.join("secret")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SameSite;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn admin_reauth_and_the_session_cap_are_checked() {
        let build = |k: &str, v: &str| {
            let mut layers = Layers::new();
            layers.env(vec![(env_name(k), v.to_owned())]);
            layers.build("d".into())
        };
        let c = build("admin_reauth", "0s").expect("zero asks every time");
        assert_eq!(c.admin_reauth, Duration::ZERO);
        assert!(build("admin_reauth", "soon").is_err());
        assert_eq!(
            build("max_sessions_per_user", "3")
                .expect("valid")
                .session
                .max_sessions_per_user,
            Some(3)
        );
        for bad in ["0", "-1", "lots", "100001"] {
            let e = build("max_sessions_per_user", bad)
                .expect_err(bad)
                .to_string();
            assert!(e.contains("max_sessions_per_user"), "{e}");
        }
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Layers::new().build("d".into()).expect("defaults are valid");
        assert_eq!(c.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(c.bcrypt_cost.to_string(), DEFAULT_BCRYPT_COST);
        assert_eq!(c.session.idle_timeout, Duration::from_secs(2 * 3600));
        assert_eq!(c.session.absolute_timeout, Duration::from_secs(12 * 3600));
        assert_eq!(
            c.session.remember_idle_timeout,
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            c.session.remember_absolute_timeout,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(c.session.touch_interval, Duration::from_secs(60));
        assert_eq!(c.admin_reauth, Duration::from_secs(300));
        assert_eq!(c.session.max_sessions_per_user, Some(100));
        assert_eq!(c.session.cookie.name, "gatehouse_session");
        assert_eq!(c.session.cookie.same_site, SameSite::Lax);
        assert_eq!(c.login.max_failures, 5);
        assert!(c.secrets.is_empty());
    }

    #[test]
    fn later_layers_win() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("g.toml");
        std::fs::write(
            &file,
            "idle_timeout = \"3h\"\nbcrypt_cost = 10\nlisten = \"0.0.0.0:1\"\n[cookie]\ndomain = \"lan\"\n",
        )
        .expect("write");
        let c = Config::load(
            dir.path(),
            Some(&file),
            env(&[
                ("GATEHOUSE_BCRYPT_COST", "11"),
                ("GATEHOUSE_LISTEN", "0.0.0.0:2"),
            ]),
            &[("listen", Some("127.0.0.1:3".into()))],
        )
        .expect("valid");
        assert_eq!(
            c.session.idle_timeout,
            Duration::from_secs(3 * 3600),
            "file beats default"
        );
        assert_eq!(c.bcrypt_cost, 11, "env beats file");
        assert_eq!(c.listen.port(), 3, "flag beats env");
        assert_eq!(c.session.cookie.domain.as_deref(), Some("lan"));
    }

    #[test]
    fn a_bad_value_names_the_setting_and_its_source() {
        let err = Config::load(
            Path::new("."),
            None,
            env(&[("GATEHOUSE_IDLE_TIMEOUT", "soon")]),
            &[],
        )
        .expect_err("invalid");
        let msg = err.to_string();
        assert!(msg.contains("idle_timeout"), "{msg}");
        assert!(msg.contains("GATEHOUSE_IDLE_TIMEOUT"), "{msg}");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("g.toml");
        std::fs::write(&file, "idle_timeot = \"3h\"\n").expect("write");
        let err = Config::load(dir.path(), Some(&file), env(&[]), &[]).expect_err("typo");
        assert!(err.to_string().contains("idle_timeot"));
    }

    #[test]
    fn secrets_are_lists_and_never_printed() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("g.toml");
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        std::fs::write(&file, format!("secrets = [\"{a}\", \"{b}\"]\n")).expect("write");
        let c = Config::load(dir.path(), Some(&file), env(&[]), &[]).expect("valid");
        assert_eq!(c.secrets.len(), 2);
        let debug = format!("{c:?}");
        assert!(!debug.contains(&a) && !debug.contains(&b), "{debug}");
        let short = Config::load(
            dir.path(),
            None,
            env(&[("GATEHOUSE_SECRETS", "short")]),
            &[],
        );
        assert!(short.expect_err("short").to_string().contains("32 bytes"));
    }

    #[test]
    fn settings_that_make_no_sense_stop_the_start_naming_the_setting() {
        for (var, value, setting) in [
            ("GATEHOUSE_LOGIN_LOCKOUT", "0s", "login_lockout"),
            ("GATEHOUSE_PROXY_TIMEOUT", "0s", "proxy_timeout"),
        ] {
            let err = Config::load(Path::new("."), None, env(&[(var, value)]), &[]).expect_err(var);
            assert!(err.to_string().contains(setting), "{err}");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("g.toml");
        std::fs::write(&file, "cookie.name = [\"a\", \"b\"]\n").expect("write");
        let err = Config::load(dir.path(), Some(&file), env(&[]), &[]).expect_err("a list");
        assert!(
            err.to_string().contains("cookie.name") && err.to_string().contains("not a list"),
            "{err}"
        );
        std::fs::write(
            &file,
            "[[apps]]\nname = \"wiki\"\nprefix = \"/apps/wiki/\"\nupstream = \"http://127.0.0.1:70000\"\n",
        )
        .expect("write");
        let err = Config::load(dir.path(), Some(&file), env(&[]), &[]).expect_err("port");
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn clients_are_read_in_the_order_written_and_their_secrets_never_shown() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("g.toml");
        let secret = "grafana-secret-0123456789-abcdef";
        let text = format!(
            r#"public_url = "https://auth.lan"
[oidc]
code_lifetime = "20s"

[[clients]]
id = "grafana"
secret = "{secret}"
redirect_uris = ["https://grafana.lan/login/generic_oauth"]
[clients.claims]
role = {{ from_groups = {{ ops = "Editor", admins = "Admin" }}, default = "Viewer" }}

[[clients]]
id = "immich"
redirect_uris = ["app.immich:///oauth-callback"]
"#
        );
        std::fs::write(&file, &text).expect("write");
        let c = Config::load(dir.path(), Some(&file), env(&[]), &[]).expect("valid");
        assert_eq!(c.oidc.code_lifetime, Duration::from_secs(20));
        let ids: Vec<&str> = c.clients.all().iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["grafana", "immich"]);
        let grafana = c.clients.find("grafana").expect("grafana");
        assert!(grafana.verify_secret(secret));
        assert_eq!(
            grafana.extra_claims(&["admins".into(), "ops".into()])[0].1,
            serde_json::json!("Editor"),
            "from_groups in the order written"
        );
        assert!(c.clients.find("immich").expect("immich").is_public());
        let shown = format!("{c:?} {:?}", c.effective());
        assert!(!shown.contains(secret), "{shown}");
        let load = |t: &str| {
            std::fs::write(&file, t).expect("write");
            Config::load(dir.path(), Some(&file), env(&[]), &[])
        };
        let e = load(&text.replace("app.immich:///", "javascript:///"))
            .expect_err("a bad redirect URI")
            .to_string();
        assert!(
            e.contains("client \"immich\"") && e.contains("redirect_uris"),
            "{e}"
        );
        let e = load(&text.replace("public_url = \"https://auth.lan\"", ""))
            .expect_err("no issuer")
            .to_string();
        assert!(e.contains("public_url"), "{e}");
        let e = load(&text.replace("\"20s\"", "\"2m\""))
            .expect_err("a long code")
            .to_string();
        assert!(e.contains("oidc.code_lifetime"), "{e}");
        let e = load(&text.replace("id = \"immich\"", "id = \"immich\"\nscopes = [\"x\"]"))
            .expect_err("an unknown field")
            .to_string();
        assert!(e.contains("[[clients]]") && e.contains("scopes"), "{e}");
        let e = load(&text.replace("\"immich\"", "\"grafana\""))
            .expect_err("an id twice")
            .to_string();
        assert!(e.contains("client \"grafana\": invalid id"), "{e}");
    }

    #[test]
    fn a_config_file_that_exists_but_cannot_be_read_stops_the_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A dangling link: `exists()` says no, yet someone put it there.
        std::os::unix::fs::symlink(
            dir.path().join("gone.toml"),
            dir.path().join("gatehouse.toml"),
        )
        .expect("link");
        let err = Config::load(dir.path(), None, env(&[]), &[]).expect_err("unreadable");
        assert!(err.to_string().contains("gatehouse.toml"), "{err}");
    }

    #[test]
    fn an_unknown_gatehouse_variable_is_named_with_the_setting_it_probably_meant() {
        let warnings = unknown_env(env(&[
            ("GATEHOUSE_IDLE_TIMOUT", "1h"),
            ("GATEHOUSE_IDLE_TIMEOUT", "1h"),
            ("GATEHOUSE_DATA", "/tmp"),
            ("GATEHOUSE_TEST_BACKEND", "sqlite"),
            ("HOME", "/root"),
            ("GATEHOUSE_ZZZZZZZZZZZZZZZZZZ", "x"),
        ]));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("GATEHOUSE_IDLE_TIMOUT")
                && warnings[0].contains("did you mean GATEHOUSE_IDLE_TIMEOUT"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("GATEHOUSE_ZZZZZZZZZZZZZZZZZZ"),
            "{warnings:?}"
        );
        assert!(!warnings[1].contains("did you mean"), "{warnings:?}");
    }

    #[test]
    fn inconsistent_values_are_refused() {
        let err = Config::load(
            Path::new("."),
            None,
            env(&[("GATEHOUSE_IDLE_TIMEOUT", "13h")]),
            &[],
        )
        .expect_err("idle > absolute");
        assert!(err.to_string().contains("absolute_timeout"));
        let err = Config::load(
            Path::new("."),
            None,
            env(&[("GATEHOUSE_COOKIE_SAME_SITE", "none")]),
            &[],
        )
        .expect_err("none without secure");
        assert!(err.to_string().contains("cookie.same_site"));
    }

    #[test]
    fn database_and_session_store_settings_pick_the_backends() {
        let build = |vars: &[(&str, &str)]| Config::load(Path::new("d"), None, env(vars), &[]);
        let c = build(&[]).expect("defaults");
        assert_eq!(
            c.database,
            Database::Sqlite(Path::new("d/gatehouse.db").into())
        );
        assert_eq!(c.session_store, SessionStore::Database);
        let c = build(&[
            ("GATEHOUSE_DATABASE", "postgres://gh:hunter2@db.lan:5433/gh"),
            ("GATEHOUSE_SESSION_STORE", "redis://:pw@cache.lan:6379/2"),
        ])
        .expect("shared");
        assert!(matches!(c.database, Database::Postgres(_)));
        assert!(matches!(c.session_store, SessionStore::Redis(_)));
        let shown = format!("{:?} {:?}", c.effective(), c);
        assert!(
            !shown.contains("hunter2") && !shown.contains(":pw@"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://gh:***@db.lan:5433/gh"),
            "{shown}"
        );
        let c = build(&[("GATEHOUSE_DATABASE", "/srv/users.db")]).expect("a file");
        assert_eq!(c.database, Database::Sqlite("/srv/users.db".into()));
        for (name, value) in [
            ("GATEHOUSE_DATABASE", "mysql://db/x"),
            ("GATEHOUSE_SESSION_STORE", "memcached://x"),
            ("GATEHOUSE_STORE_PREFIX", "has space"),
            ("GATEHOUSE_SESSION_STORE", "rediss://cache.lan#insecure"),
            ("GATEHOUSE_DATABASE", "postgres://db.lan/x?sslmode=prefer"),
            ("GATEHOUSE_DATABASE", "postgres://db.lan/x?sslmode=allow"),
        ] {
            let err = build(&[(name, value)]).expect_err(value).to_string();
            assert!(
                err.contains(&name["GATEHOUSE_".len()..].to_ascii_lowercase()),
                "{err}"
            );
        }
    }

    #[test]
    fn tls_to_the_backends_is_taken_with_its_ca_files() {
        let build = |vars: &[(&str, &str)]| Config::load(Path::new("d"), None, env(vars), &[]);
        let c = build(&[
            (
                "GATEHOUSE_DATABASE",
                "postgres://gh:hunter2@db.lan/gh?sslmode=verify-full",
            ),
            ("GATEHOUSE_DATABASE_CA_FILE", "/etc/gatehouse/db-ca.pem"),
            ("GATEHOUSE_SESSION_STORE", "rediss://:pw@cache.lan:6380/0"),
            ("GATEHOUSE_SESSION_STORE_CA_FILE", "redis-ca.pem"),
        ])
        .expect("TLS to both");
        assert!(c.database.uses_tls() && c.session_store.uses_tls());
        assert_eq!(
            c.database_ca_file.as_deref(),
            Some(Path::new("/etc/gatehouse/db-ca.pem"))
        );
        assert_eq!(
            c.session_store_ca_file.as_deref(),
            Some(Path::new("d/redis-ca.pem"))
        );
        let shown = c.effective();
        let show = |name: &str| {
            shown
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .expect(name)
        };
        assert_eq!(show("database_ca_file"), "/etc/gatehouse/db-ca.pem");
        assert_eq!(show("session_store_ca_file"), "d/redis-ca.pem");
        assert_eq!(
            show("database"),
            "postgres://gh:***@db.lan/gh?sslmode=verify-full"
        );
        assert_eq!(show("session_store"), "rediss://:***@cache.lan:6380/0");
        // Every mode that asks for TLS is taken (and checked in full).
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!("postgres://db.lan/x?sslmode={mode}");
            let c = build(&[("GATEHOUSE_DATABASE", url.as_str())]).expect(mode);
            assert!(c.database.uses_tls(), "{mode}");
            let shown = c.effective();
            assert!(
                shown.contains(&(
                    "database_ca_file",
                    "(none: Mozilla's roots, built in)".to_owned()
                )),
                "{shown:?}"
            );
        }
        let c = build(&[("GATEHOUSE_DATABASE", "postgres://db.lan/x")]).expect("plain");
        assert!(!c.database.uses_tls());
        assert!(
            c.effective()
                .contains(&("database_ca_file", "(none: no TLS)".to_owned()))
        );
    }

    #[test]
    fn a_ca_file_without_tls_is_refused_rather_than_ignored() {
        let build = |vars: &[(&str, &str)]| Config::load(Path::new("d"), None, env(vars), &[]);
        for (vars, setting) in [
            (
                &[("GATEHOUSE_DATABASE_CA_FILE", "ca.pem")][..],
                "database_ca_file",
            ),
            (
                &[
                    ("GATEHOUSE_DATABASE", "postgres://db.lan/x?sslmode=disable"),
                    ("GATEHOUSE_DATABASE_CA_FILE", "ca.pem"),
                ][..],
                "database_ca_file",
            ),
            (
                &[
                    ("GATEHOUSE_SESSION_STORE", "redis://cache.lan"),
                    ("GATEHOUSE_SESSION_STORE_CA_FILE", "ca.pem"),
                ][..],
                "session_store_ca_file",
            ),
        ] {
            let err = build(vars).expect_err(setting).to_string();
            assert!(err.contains(setting) && err.contains("TLS"), "{err}");
        }
    }
}

#[cfg(test)]
mod ldap {
    use super::*;
    use crate::users::directory::{Kind, Lookup, Security};

    fn file(dir: &Path, text: &str) -> Result<Config, ConfigError> {
        let path = dir.join("g.toml");
        std::fs::write(&path, text).expect("write");
        Config::load(dir, Some(&path), Vec::new(), &[])
    }

    #[test]
    fn an_ldap_table_configures_the_directory_with_the_kinds_preset() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("ldap.pw"), "s3cret-bind\n").expect("pw");
        let c = file(
            dir.path(),
            "[ldap]\nurl = \"ldaps://dc1.corp.lan\"\nkind = \"active_directory\"\n\
             bind_dn = \"CN=gatehouse,CN=Users,DC=corp,DC=lan\"\n\
             bind_password_file = \"ldap.pw\"\nbase_dn = \"DC=corp,DC=lan\"\n\
             groups = [\"Staff\", \"IT, Europe\"]\nadmin_group = \"IT, Europe\"\n",
        )
        .expect("valid");
        let l = c.ldap.as_ref().expect("a directory");
        assert_eq!(l.kind, Kind::ActiveDirectory);
        assert_eq!(l.security, Security::Ldaps);
        assert_eq!(l.port, 636);
        assert_eq!(l.username_attribute, "sAMAccountName");
        assert_eq!(l.id_attribute, "objectGUID");
        assert_eq!(l.group_lookup, Lookup::MemberOf);
        assert_eq!(l.groups, ["Staff", "IT, Europe"]);
        assert_eq!(l.sync_interval, Duration::from_secs(300));
        assert_eq!(l.bind_password.expose(), "s3cret-bind");
        let shown = format!("{:?} {c:?}", c.effective());
        assert!(!shown.contains("s3cret-bind"), "{shown}");
        // Without [ldap], no directory.
        assert!(file(dir.path(), "").expect("valid").ldap.is_none());
    }

    #[test]
    fn ldap_mistakes_stop_the_start_naming_the_setting() {
        let dir = tempfile::tempdir().expect("dir");
        let base = "[ldap]\nurl = \"ldap://ldap.lan\"\nbase_dn = \"dc=lan\"\n";
        assert!(file(dir.path(), base).expect("valid").ldap.is_some());
        for (extra, setting) in [
            ("kind = \"novell\"\n", "ldap.kind"),
            ("user_filter = \"(uid=alice)\"\n", "ldap.user_filter"),
            ("user_filter = \"uid={username}\"\n", "ldap.user_filter"),
            ("group_lookup = \"nested\"\n", "ldap.group_lookup"),
            (
                "username_attribute = \"uid)(x\"\n",
                "ldap.username_attribute",
            ),
            ("bind_dn = \"cn=svc,dc=lan\"\n", "ldap.bind_password"),
            ("bind_password = \"pw\"\n", "ldap.bind_dn"),
            (
                "bind_password_file = \"missing\"\nbind_dn = \"cn=x\"\n",
                "ldap.bind_password_file",
            ),
            ("ca_file = \"missing.pem\"\n", "ldap.ca_file"),
            ("connect_timeout = \"0s\"\n", "ldap.connect_timeout"),
            ("max_connections = 0\n", "ldap.max_connections"),
            ("sync_interval = \"soon\"\n", "ldap.sync_interval"),
            (
                "groups = \"staff\"\nadmin_group = [\"a\"]\n",
                "ldap.admin_group",
            ),
            ("bindpassword = \"x\"\n", "ldap.bindpassword"),
        ] {
            let err = file(dir.path(), &format!("{base}{extra}"))
                .expect_err(extra)
                .to_string();
            assert!(err.contains(setting), "{extra}: {err}");
            assert!(!err.contains("\"pw\""), "{err}");
        }
        let err = file(
            dir.path(),
            "[ldap]\nurl = \"https://ldap.lan\"\nbase_dn = \"dc=x\"\n",
        )
        .expect_err("scheme")
        .to_string();
        assert!(err.contains("ldap.url"), "{err}");
        let err = file(dir.path(), "[ldap]\nurl = \"ldap://ldap.lan\"\n")
            .expect_err("no base")
            .to_string();
        assert!(err.contains("ldap.base_dn"), "{err}");
        let err = file(dir.path(), "[ldap]\nbase_dn = \"dc=x\"\n")
            .expect_err("no url")
            .to_string();
        assert!(
            err.contains("ldap.base_dn") && err.contains("ldap.url"),
            "{err}"
        );
    }

    #[test]
    fn the_environment_configures_the_directory_too() {
        let c = Config::load(
            Path::new("d"),
            None,
            vec![
                ("GATEHOUSE_LDAP_URL".into(), "ldap://127.0.0.1:3389".into()),
                ("GATEHOUSE_LDAP_INSECURE".into(), "true".into()),
                ("GATEHOUSE_LDAP_BASE_DN".into(), "dc=example,dc=org".into()),
                ("GATEHOUSE_LDAP_KIND".into(), "lldap".into()),
                ("GATEHOUSE_LDAP_GROUPS".into(), "a, b".into()),
            ],
            &[],
        )
        .expect("valid");
        let l = c.ldap.expect("a directory");
        assert_eq!(l.security, Security::Plain);
        assert!(l.warning().is_some());
        assert_eq!(l.kind, Kind::Lldap);
        assert_eq!(l.groups, ["a", "b"]);
        assert_eq!(l.bind_dn, None);
    }
}

#[cfg(test)]
mod readme {
    use super::*;

    #[test]
    fn effective_settings_cover_every_setting_and_mask_secrets() {
        let mut layers = Layers::new();
        let secret = "s".repeat(40);
        layers.env(vec![
            ("GATEHOUSE_SECRETS".to_owned(), secret.clone()),
            (
                "GATEHOUSE_METRICS_TOKEN".to_owned(),
                "token-value".to_owned(),
            ),
        ]);
        let c = layers.build("d".into()).expect("valid");
        let effective = c.effective();
        for s in SETTINGS {
            assert!(
                effective.iter().any(|(n, _)| *n == s.name),
                "{} missing",
                s.name
            );
        }
        let text = format!("{effective:?}");
        assert!(
            !text.contains(&secret) && !text.contains("token-value"),
            "{text}"
        );
    }

    #[test]
    fn the_built_in_proxy_recipe_is_a_valid_config() {
        let dir = tempfile::tempdir().expect("dir");
        let recipe = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/recipes/gatehouse.toml"
        ));
        let c = Config::load(dir.path(), Some(recipe), Vec::new(), &[]).expect("the recipe loads");
        assert_eq!(c.apps.all().len(), 3);
        assert_eq!(c.session.cookie.domain.as_deref(), Some("lan"));
    }

    #[test]
    fn the_configuration_guide_documents_every_setting_and_its_env_twin() {
        let guide = include_str!("../../docs/configuration.md");
        for s in SETTINGS {
            let row = format!("| `{}` | `{}` |", s.name, env_name(s.name));
            assert!(
                guide.contains(&row),
                "docs/configuration.md lacks a row for {}",
                s.name
            );
        }
    }

    /// The settings table of docs/configuration.md: each row's name,
    /// environment variable and default cell, in order.
    fn guide_rows() -> Vec<(String, String, String)> {
        let guide = include_str!("../../docs/configuration.md");
        let start = guide
            .find("| setting | environment | default | meaning |")
            .expect("docs/configuration.md has a settings table");
        guide[start..]
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.split(" | ").collect();
                let unquote = |s: &str| s.trim_matches(['|', ' ', '`']).to_owned();
                (unquote(cells[0]), unquote(cells[1]), cells[2].to_owned())
            })
            .collect()
    }

    #[test]
    fn the_settings_table_has_exactly_the_rows_with_their_defaults() {
        let rows = guide_rows();
        for s in SETTINGS {
            let Some((_, env, default)) = rows.iter().find(|(name, _, _)| name == s.name) else {
                panic!("docs/configuration.md lacks a row for {}", s.name);
            };
            assert_eq!(
                *env,
                s.env(),
                "docs/configuration.md's env twin of {}",
                s.name
            );
            let text = s.default_text();
            if text.is_empty() {
                assert!(
                    default.starts_with("(empty"),
                    "docs/configuration.md's default of {} is {default:?}, not empty",
                    s.name
                );
            } else {
                assert!(
                    default.contains(&format!("`{text}`")),
                    "docs/configuration.md's default of {} is {default:?}, not `{text}`",
                    s.name
                );
            }
        }
        for (name, _, _) in &rows {
            assert!(
                SETTINGS.iter().any(|s| s.name == name),
                "docs/configuration.md documents {name}, which is no setting"
            );
        }
    }

    #[test]
    fn every_rows_default_parses_and_means_the_same_when_written_out() {
        let defaults = Layers::new().build("d".into()).expect("defaults are valid");
        let expected = defaults.effective();
        for s in SETTINGS {
            let mut layers = Layers::new();
            layers.env(vec![(s.env(), s.default_text())]);
            let c = layers
                .build("d".into())
                .unwrap_or_else(|e| panic!("{}'s default does not parse: {e}", s.name));
            assert_eq!(c.effective(), expected, "{} written out", s.name);
        }
    }

    #[test]
    fn the_defaults_are_the_session_engines_and_the_throttles() {
        let c = Layers::new().build("d".into()).expect("defaults are valid");
        assert_eq!(
            format!("{:?}", c.session),
            format!("{:?}", SessionOptions::default())
        );
        assert_eq!(c.login, Limits::default());
    }

    #[test]
    fn names_are_unique_and_every_env_twin_is_one_setting() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        let mut envs: Vec<String> = SETTINGS.iter().map(Setting::env).collect();
        names.sort_unstable();
        names.dedup();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(names.len(), SETTINGS.len(), "a name is declared twice");
        assert_eq!(envs.len(), SETTINGS.len(), "two settings share a variable");
        assert_eq!(env_name("cookie.same_site"), "GATEHOUSE_COOKIE_SAME_SITE");
    }

    #[test]
    fn a_given_env_twin_replaces_the_derived_one() {
        let listen = table::find("listen").expect("listen is a setting");
        let row = Setting {
            name: listen.name,
            env_twin: Some("GATEHOUSE_OTHER"),
            default: listen.default,
            help: listen.help,
            set: table::Set::One(|_, _| Ok(())),
            show: listen.show,
        };
        assert_eq!(row.env(), "GATEHOUSE_OTHER");
        assert_eq!(listen.env(), "GATEHOUSE_LISTEN");
    }
}
