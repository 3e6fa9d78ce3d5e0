//! One validated [`Config`], layered: defaults < file (`gatehouse.toml`) <
//! environment (`GATEHOUSE_*`) < command-line flags.
//!
//! Every setting has one name, used as is in the file (`idle_timeout = "2h"`,
//! `[cookie] domain = "lan"`) and upper-cased with a `GATEHOUSE_` prefix in
//! the environment (`GATEHOUSE_IDLE_TIMEOUT`, `GATEHOUSE_COOKIE_DOMAIN`). A
//! bad value stops start-up with a message naming the setting and where the
//! value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::apps::{Access, AppSpec, Apps};
use crate::auth::proxy::IpNet;
use crate::session::{CookieOptions, SameSite, SessionOptions};

/// A setting's name, default and one-line meaning.
pub struct Setting {
    /// Name in the file; env twin is `GATEHOUSE_` + upper case, `.` -> `_`.
    pub name: &'static str,
    /// Default value, as it would be written.
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// bcrypt's default work factor: 12 on servers; 10 on ARM boards such as
/// a Raspberry Pi, where 12 takes about a second per sign-in.
#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
pub const DEFAULT_BCRYPT_COST: &str = "12";
/// bcrypt's default work factor: 12 on servers; 10 on ARM boards such as
/// a Raspberry Pi, where 12 takes about a second per sign-in.
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
pub const DEFAULT_BCRYPT_COST: &str = "10";

/// Every setting, in the order the README documents them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "database",
        default: "",
        help: "users and sessions: empty = `<data>/gatehouse.db`; a file path (SQLite); or `postgres://user:password@host/db` for several instances",
    },
    Setting {
        name: "session_store",
        default: "database",
        help: "sessions: `database` (wherever users are) or `redis://host:6379/0` (Redis or Valkey; login throttling moves there too)",
    },
    Setting {
        name: "store_prefix",
        default: "gatehouse:",
        help: "prefix of every Redis key gatehouse writes, so several deployments can share one Redis",
    },
    Setting {
        name: "listen",
        default: "127.0.0.1:8080",
        help: "address and port to listen on (port 0 picks a free one)",
    },
    Setting {
        name: "threads",
        default: "auto",
        help: "request threads; auto = 8 per CPU core, at least 8",
    },
    Setting {
        name: "bcrypt_cost",
        default: DEFAULT_BCRYPT_COST,
        help: "bcrypt work factor for new password hashes (4-31)",
    },
    Setting {
        name: "idle_timeout",
        default: "2h",
        help: "a session unused this long ends",
    },
    Setting {
        name: "absolute_timeout",
        default: "12h",
        help: "a session ends this long after sign-in",
    },
    Setting {
        name: "remember_idle_timeout",
        default: "7d",
        help: "idle timeout with \"remember me\"",
    },
    Setting {
        name: "remember_absolute_timeout",
        default: "30d",
        help: "absolute lifetime with \"remember me\"",
    },
    Setting {
        name: "touch_interval",
        default: "60s",
        help: "read-only requests record activity at most this often",
    },
    Setting {
        name: "reap_interval",
        default: "60s",
        help: "how often expired sessions are deleted",
    },
    Setting {
        name: "cookie.name",
        default: "gatehouse_session",
        help: "session cookie name",
    },
    Setting {
        name: "cookie.domain",
        default: "",
        help: "cookie Domain, e.g. `lan` to share one login across `*.lan`; empty = this host only",
    },
    Setting {
        name: "cookie.path",
        default: "/",
        help: "cookie Path",
    },
    Setting {
        name: "cookie.secure",
        default: "auto",
        help: "`auto`: Secure on HTTPS requests; `always`: always Secure",
    },
    Setting {
        name: "cookie.same_site",
        default: "lax",
        help: "`lax`, `strict` or `none`",
    },
    Setting {
        name: "secrets",
        default: "",
        help: "cookie signing secrets (32+ bytes each), newest first; empty = generated into `<data>/secret`",
    },
    Setting {
        name: "allow_registration",
        default: "false",
        help: "let visitors create their own accounts at /register",
    },
    Setting {
        name: "default_policy",
        default: "signed_in",
        help: "who may pass /auth/verify for a request that matches no app: `signed_in`, `admins` or `deny`",
    },
    Setting {
        name: "public_url",
        default: "",
        help: "gatehouse's address as browsers reach it, e.g. `https://auth.lan`; used to send them to the sign-in page from other hosts",
    },
    Setting {
        name: "proxy_timeout",
        default: "60s",
        help: "how long the built-in proxy waits for an upstream to start answering",
    },
    Setting {
        name: "max_connections",
        default: "auto",
        help: "most client connections open at once; auto = (descriptor limit - 64 - 4 per pooled database connection) / 2, from 16 to 4096; at the cap the longest idle one is closed, or a new one gets `503`",
    },
    Setting {
        name: "header_timeout",
        default: "10s",
        help: "a request line and headers must arrive within this (in all, not per read); else the connection is closed",
    },
    Setting {
        name: "body_timeout",
        default: "30s",
        help: "no read of a request body, and no write of an answer, may stall longer than this",
    },
    Setting {
        name: "keepalive_timeout",
        default: "30s",
        help: "an idle kept-alive connection is closed after this",
    },
    Setting {
        name: "proxy_underscore_headers",
        default: "false",
        help: "pass client headers with `_` in their name on to upstreams (dropped by default, as nginx does; CGI-style apps read `Remote_User` as `Remote-User`)",
    },
    Setting {
        name: "metrics",
        default: "false",
        help: "serve Prometheus metrics at /metrics",
    },
    Setting {
        name: "metrics_token",
        default: "",
        help: "if set, /metrics wants `Authorization: Bearer <token>`",
    },
    Setting {
        name: "log_requests",
        default: "true",
        help: "log one line per request (sign-in events are always logged)",
    },
    Setting {
        name: "trusted_proxies",
        default: "",
        help: "addresses/CIDRs whose X-Forwarded-For/-Proto (and forward-auth X-Forwarded-Host/-Uri/-Method, X-Original-URI) are believed",
    },
    Setting {
        name: "tls_cert",
        default: "",
        help: "PEM certificate chain (own certificate first); with `tls_key` the listener speaks HTTPS only; empty = `<data>/tls/cert.pem` when `gatehouse tls self-signed` made one, else plain HTTP",
    },
    Setting {
        name: "tls_key",
        default: "",
        help: "PEM private key of `tls_cert`; both are read again on SIGHUP",
    },
    Setting {
        name: "hsts_max_age",
        default: "180d",
        help: "over HTTPS, `Strict-Transport-Security: max-age` (`0s` = not sent)",
    },
    Setting {
        name: "hsts_include_subdomains",
        default: "false",
        help: "add `includeSubDomains` to Strict-Transport-Security (every subdomain must then speak HTTPS)",
    },
    Setting {
        name: "redirect_http",
        default: "",
        help: "with HTTPS: a second, plain-HTTP listener (e.g. `0.0.0.0:80`) that only answers 301 to the HTTPS address",
    },
    Setting {
        name: "login_max_failures",
        default: "5",
        help: "failed logins per user or IP before a lockout",
    },
    Setting {
        name: "login_window",
        default: "10m",
        help: "window in which failures are counted",
    },
    Setting {
        name: "login_lockout",
        default: "1m",
        help: "first lockout; each further one doubles",
    },
    Setting {
        name: "login_max_lockout",
        default: "15m",
        help: "longest lockout",
    },
    Setting {
        name: "admin_reauth",
        default: "5m",
        help: "an administrator action needs the password entered within this long (a sign-in counts); 0s = every action asks",
    },
    Setting {
        name: "max_sessions_per_user",
        default: "100",
        help: "sessions one user may have at once; a new sign-in ends that user's oldest beyond it",
    },
    Setting {
        name: "login_throttle_records",
        default: "10000",
        help: "most throttling records kept in memory (SQLite deployments)",
    },
];

/// The environment variable for a setting.
pub fn env_name(setting: &str) -> String {
    format!(
        "GATEHOUSE_{}",
        setting.replace('.', "_").to_ascii_uppercase()
    )
}

/// A signing secret. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a TLS connection to a backend is refused: the binary links no TLS
/// library (nothing but libc).
const NO_TLS: &str = "asks for TLS, which this build does not include (it links nothing but libc); \
                      reach the server over loopback, a private network or a tunnel (WireGuard, stunnel)";

/// A URL with any password replaced by `***`, fit to print.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Where users (and, by default, sessions) are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server; the URL may hold a password, so it is masked.
    Postgres(Secret),
}

/// Where sessions are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionStore {
    /// In the database, beside the users.
    Database,
    /// In Redis (or Valkey); the URL may hold a password.
    Redis(Secret),
}

impl Secret {
    /// The secret as text (settings are read as UTF-8, so it is).
    pub fn expose_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// Whether the session cookie is always `Secure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecureMode {
    /// Only on requests that arrived over HTTPS.
    Auto,
    /// On every response.
    Always,
}

/// Login throttling limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures within `window` before a lockout.
    pub max_failures: u32,
    /// How long failures are remembered.
    pub window: Duration,
    /// First lockout.
    pub lockout: Duration,
    /// Cap on the doubling lockout.
    pub max_lockout: Duration,
    /// Most records kept in memory (with SQLite); active ones are never
    /// evicted, so past this an overflow budget counts for the rest.
    pub records: usize,
}

/// Cookie settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieConfig {
    /// Name.
    pub name: String,
    /// Domain, if any.
    pub domain: Option<String>,
    /// Path.
    pub path: String,
    /// Secure mode.
    pub secure: SecureMode,
    /// SameSite.
    pub same_site: SameSite,
}

/// Everything gatehouse runs with, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the database and generated secret live.
    pub data_dir: PathBuf,
    /// Where users are kept.
    pub database: Database,
    /// Where sessions are kept.
    pub session_store: SessionStore,
    /// The prefix of Redis keys.
    pub store_prefix: String,
    /// Listen address.
    pub listen: SocketAddr,
    /// Request threads.
    pub threads: usize,
    /// bcrypt cost for new hashes.
    pub bcrypt_cost: u32,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Absolute lifetime.
    pub absolute_timeout: Duration,
    /// Remember-me idle timeout.
    pub remember_idle_timeout: Duration,
    /// Remember-me absolute lifetime.
    pub remember_absolute_timeout: Duration,
    /// Touch interval.
    pub touch_interval: Duration,
    /// Reap interval.
    pub reap_interval: Duration,
    /// Cookie settings.
    pub cookie: CookieConfig,
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
    /// gatehouse's external address, if set (no trailing slash).
    pub public_url: Option<String>,
    /// How long the built-in proxy waits for an upstream's answer to start.
    pub proxy_timeout: Duration,
    /// The cap on open client connections (`None`: derived from the
    /// descriptor limit at start, see [`crate::app::descriptors::max_connections`]).
    pub max_connections: Option<usize>,
    /// The deadline of a request's head.
    pub header_timeout: Duration,
    /// The longest a body read or an answer's write may stall.
    pub body_timeout: Duration,
    /// How long a kept-alive connection may wait idle.
    pub keepalive_timeout: Duration,
    /// Whether client headers with `_` in their name reach upstreams.
    pub proxy_underscore_headers: bool,
    /// Login throttling.
    pub login: LoginLimits,
    /// How long a password confirmation lets an administrator act.
    pub admin_reauth: Duration,
    /// Sessions one user may have at once.
    pub max_sessions_per_user: usize,
    /// The certificate and key to serve HTTPS with, if any.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `Strict-Transport-Security` max-age over HTTPS (zero: not sent).
    pub hsts_max_age: Duration,
    /// Whether that header covers subdomains.
    pub hsts_include_subdomains: bool,
    /// The plain listener that redirects to HTTPS, if any.
    pub redirect_http: Option<SocketAddr>,
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
    /// One app's settings are wrong.
    #[error("app {app:?}: invalid {field}: {reason}")]
    App {
        /// The app.
        app: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The secret file could not be read or written.
    #[error("cannot use secret file {path}: {reason}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

#[derive(Clone, Debug)]
enum Raw {
    One(String),
    List(Vec<String>),
}

#[derive(Clone, Debug)]
struct Value {
    raw: Raw,
    source: String,
}

/// Collects raw values from each layer, later layers winning.
#[derive(Default)]
pub struct Layers {
    values: BTreeMap<&'static str, Value>,
    apps: Vec<AppSpec>,
}

fn known(name: &str) -> Option<&'static str> {
    SETTINGS.iter().find(|s| s.name == name).map(|s| s.name)
}

/// Environment variables gatehouse reads that are not settings.
const OTHER_VARS: &[&str] = &["GATEHOUSE_DATA", "GATEHOUSE_CONFIG"];

/// Warnings for `GATEHOUSE_*` variables that are no setting (a typo such as
/// `GATEHOUSE_IDLE_TIMOUT` is otherwise ignored in silence), each naming
/// the setting it probably meant.
pub fn unknown_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let known: Vec<String> = SETTINGS
        .iter()
        .map(|s| env_name(s.name))
        .chain(OTHER_VARS.iter().map(|v| (*v).to_owned()))
        .collect();
    let mut warnings = Vec::new();
    for (var, _) in vars {
        // Test-suite switches are not settings and not typos.
        if !var.starts_with("GATEHOUSE_")
            || var.starts_with("GATEHOUSE_TEST_")
            || known.contains(&var)
        {
            continue;
        }
        let closest = known
            .iter()
            .map(|k| (edit_distance(&var, k), k))
            .min()
            .filter(|(d, _)| *d <= 3);
        warnings.push(match closest {
            Some((_, k)) => format!("warning: unknown environment variable {var} (ignored); did you mean {k}?"),
            None => format!("warning: unknown environment variable {var} (ignored); `gatehouse check-config` lists the settings"),
        });
    }
    warnings
}

/// Levenshtein distance between two short ASCII names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

impl Layers {
    /// Starts from nothing (defaults apply to what no layer sets).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TOML file's settings.
    ///
    /// # Errors
    ///
    /// An unreadable file, bad TOML, an unknown setting or a value of the
    /// wrong type.
    pub fn file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let file_err = |reason: String| ConfigError::File {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
        let source = path.display().to_string();
        let mut entries = Vec::new();
        for (key, value) in table {
            match value {
                toml::Value::Array(items) if key == "apps" => {
                    for item in items {
                        let spec: AppSpec = item
                            .try_into()
                            .map_err(|e: toml::de::Error| file_err(format!("in [[apps]]: {e}")))?;
                        self.apps.push(spec);
                    }
                }
                toml::Value::Table(sub) => {
                    for (k, v) in sub {
                        entries.push((format!("{key}.{k}"), v));
                    }
                }
                v => entries.push((key, v)),
            }
        }
        for (key, value) in entries {
            let name = known(&key).ok_or_else(|| file_err(format!("unknown setting `{key}`")))?;
            let raw = match value {
                toml::Value::String(s) => Raw::One(s),
                toml::Value::Integer(i) => Raw::One(i.to_string()),
                toml::Value::Boolean(b) => Raw::One(b.to_string()),
                toml::Value::Array(items) => Raw::List(
                    items
                        .into_iter()
                        .map(|i| match i {
                            toml::Value::String(s) => Ok(s),
                            other => Err(file_err(format!(
                                "`{key}` must be a list of strings, found {other}"
                            ))),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => {
                    return Err(file_err(format!(
                        "`{key}` has an unsupported value {other}"
                    )));
                }
            };
            self.values.insert(
                name,
                Value {
                    raw,
                    source: source.clone(),
                },
            );
        }
        Ok(())
    }

    /// Adds settings from environment variables (`GATEHOUSE_*`); list
    /// settings are comma-separated there.
    pub fn env(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        for setting in SETTINGS {
            let var = env_name(setting.name);
            if let Some(v) = vars.get(&var) {
                self.values.insert(
                    setting.name,
                    Value {
                        raw: Raw::One(v.clone()),
                        source: format!("${var}"),
                    },
                );
            }
        }
    }

    /// Adds a command-line flag's value.
    ///
    /// # Panics
    ///
    /// When `name` is not a setting: flags are fixed at compile time.
    pub fn flag(&mut self, name: &str, value: String) {
        let name = known(name).expect("flags name real settings");
        self.values.insert(
            name,
            Value {
                raw: Raw::One(value),
                source: format!("--{}", name.replace('_', "-")),
            },
        );
    }

    fn get(&self, name: &'static str) -> (Raw, String) {
        match self.values.get(name) {
            Some(v) => (v.raw.clone(), v.source.clone()),
            None => {
                let default = SETTINGS
                    .iter()
                    .find(|s| s.name == name)
                    .map_or("", |s| s.default);
                (Raw::One(default.to_owned()), "the default".to_owned())
            }
        }
    }

    fn parse<T>(
        &self,
        name: &'static str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let (raw, source) = self.get(name);
        let text = match raw {
            Raw::One(s) => s,
            // A list where one value is expected was joined with commas and
            // could pass as one odd value; say so instead.
            Raw::List(_) => {
                return Err(ConfigError::Invalid {
                    setting: name.to_owned(),
                    origin: source,
                    reason: "takes one value, not a list".to_owned(),
                });
            }
        };
        f(text.trim()).map_err(|reason| ConfigError::Invalid {
            setting: name.to_owned(),
            origin: source,
            reason,
        })
    }

    fn list<T>(
        &self,
        name: &'static str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        let (raw, source) = self.get(name);
        let items: Vec<String> = match raw {
            Raw::One(s) => s.split(',').map(str::to_owned).collect(),
            Raw::List(l) => l,
        };
        items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                f(s).map_err(|reason| ConfigError::Invalid {
                    setting: name.to_owned(),
                    origin: source.clone(),
                    reason,
                })
            })
            .collect()
    }

    fn apps(&self) -> Result<Apps, ConfigError> {
        let to_config = |e: crate::auth::apps::AppError| ConfigError::App {
            app: e.app,
            field: e.field,
            reason: e.reason,
        };
        let default = self.parse("default_policy", |s| match s {
            "signed_in" => Ok(Access::SignedIn),
            "admins" => Ok(Access::Admins),
            "deny" => Ok(Access::Nobody),
            _ => Err(format!("{s:?} is not `signed_in`, `admins` or `deny`")),
        })?;
        let apps = self
            .apps
            .iter()
            .map(|spec| spec.build().map_err(to_config))
            .collect::<Result<Vec<_>, _>>()?;
        Apps::new(apps, default).map_err(to_config)
    }

    /// The certificate files: `tls_cert` and `tls_key` (relative paths are
    /// in the data directory), both or neither; with neither, the pair
    /// `gatehouse tls self-signed` writes, when it is there.
    fn tls_files(&self, data_dir: &Path) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
        let path = |s: &str| Ok((!s.is_empty()).then(|| data_dir.join(s)));
        let cert = self.parse("tls_cert", path)?;
        let key = self.parse("tls_key", path)?;
        let missing = |setting: &str, other: &str| ConfigError::Invalid {
            setting: setting.to_owned(),
            origin: "the combined settings".to_owned(),
            reason: format!("is needed with {other}"),
        };
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles { cert, key })),
            (Some(_), None) => Err(missing("tls_key", "tls_cert")),
            (None, Some(_)) => Err(missing("tls_cert", "tls_key")),
            (None, None) => {
                let made = crate::tls::TlsFiles::in_data_dir(data_dir);
                Ok((made.cert.exists() || made.key.exists()).then_some(made))
            }
        }
    }

    /// Validates everything into a [`Config`].
    ///
    /// # Errors
    ///
    /// The first setting that is invalid.
    pub fn build(&self, data_dir: PathBuf) -> Result<Config, ConfigError> {
        let duration = |s: &str| parse_duration(s);
        let data_dir_for_tls = data_dir.clone();
        let config = Config {
            database: self.parse("database", |s| {
                if s.is_empty() {
                    Ok(Database::Sqlite(data_dir.join("gatehouse.db")))
                } else if crate::db::postgres::is_url(s) {
                    let parsed = s
                        .parse::<postgres::Config>()
                        .map_err(|e| format!("is not a PostgreSQL URL gatehouse can use: {e}"))?;
                    if parsed.get_ssl_mode() == postgres::config::SslMode::Require {
                        return Err(NO_TLS.to_owned());
                    }
                    Ok(Database::Postgres(Secret(s.as_bytes().to_vec())))
                } else if s.contains("://") {
                    Err(format!(
                        "{:?} is neither a file path nor a postgres:// URL",
                        s.split("://").next().unwrap_or("")
                    ))
                } else {
                    Ok(Database::Sqlite(data_dir.join(s)))
                }
            })?,
            session_store: self.parse("session_store", |s| {
                if s == "database" || s.is_empty() {
                    Ok(SessionStore::Database)
                } else if s.starts_with("rediss://") {
                    Err(NO_TLS.to_owned())
                } else if crate::session::redis::is_url(s) {
                    Ok(SessionStore::Redis(Secret(s.as_bytes().to_vec())))
                } else {
                    Err("must be `database` or a redis:// URL".to_owned())
                }
            })?,
            store_prefix: self.parse("store_prefix", |s| {
                if s.is_empty() || s.len() > 64 || s.bytes().any(|b| !b.is_ascii_graphic()) {
                    Err("must be 1 to 64 printable ASCII characters without spaces".to_owned())
                } else {
                    Ok(s.to_owned())
                }
            })?,
            data_dir,
            listen: self.parse("listen", |s| {
                s.parse()
                    .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:8080"))
            })?,
            threads: self.parse("threads", |s| {
                if s == "auto" {
                    let cores = std::thread::available_parallelism().map_or(1, usize::from);
                    Ok((cores * 8).max(8))
                } else {
                    s.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or_else(|| format!("{s:?} is not `auto` or a number from 1 to 1024"))
                }
            })?,
            bcrypt_cost: self.parse("bcrypt_cost", |s| {
                s.parse::<u32>()
                    .ok()
                    .filter(|n| (4..=31).contains(n))
                    .ok_or_else(|| format!("{s:?} is not a number from 4 to 31"))
            })?,
            idle_timeout: self.parse("idle_timeout", duration)?,
            absolute_timeout: self.parse("absolute_timeout", duration)?,
            remember_idle_timeout: self.parse("remember_idle_timeout", duration)?,
            remember_absolute_timeout: self.parse("remember_absolute_timeout", duration)?,
            touch_interval: self.parse("touch_interval", duration)?,
            reap_interval: self.parse("reap_interval", duration)?,
            cookie: CookieConfig {
                name: self.parse("cookie.name", |s| {
                    let ok = !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                    if ok {
                        Ok(s.to_owned())
                    } else {
                        Err(format!("{s:?} is not a valid cookie name"))
                    }
                })?,
                domain: self.parse("cookie.domain", |s| {
                    let s = s.trim_start_matches('.');
                    if s.is_empty() {
                        Ok(None)
                    } else if s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
                    {
                        Ok(Some(s.to_ascii_lowercase()))
                    } else {
                        Err(format!("{s:?} is not a domain name"))
                    }
                })?,
                path: self.parse("cookie.path", |s| {
                    if s.starts_with('/') && !s.bytes().any(|b| b.is_ascii_control() || b == b';') {
                        Ok(s.to_owned())
                    } else {
                        Err(format!("{s:?} must start with / and contain no ';'"))
                    }
                })?,
                secure: self.parse("cookie.secure", |s| match s.to_ascii_lowercase().as_str() {
                    "auto" | "false" => Ok(SecureMode::Auto),
                    "always" | "true" => Ok(SecureMode::Always),
                    _ => Err(format!("{s:?} is not `auto` or `always`")),
                })?,
                same_site: self.parse("cookie.same_site", |s| {
                    match s.to_ascii_lowercase().as_str() {
                        "lax" => Ok(SameSite::Lax),
                        "strict" => Ok(SameSite::Strict),
                        "none" => Ok(SameSite::None),
                        _ => Err(format!("{s:?} is not `lax`, `strict` or `none`")),
                    }
                })?,
            },
            secrets: self.list("secrets", |s| {
                if s.len() >= 32 {
                    Ok(Secret(s.as_bytes().to_vec()))
                } else {
                    Err("each secret must be at least 32 bytes long".to_owned())
                }
            })?,
            trusted_proxies: self.list("trusted_proxies", |s| s.parse())?,
            allow_registration: self.parse("allow_registration", parse_bool)?,
            apps: self.apps()?,
            log_requests: self.parse("log_requests", parse_bool)?,
            metrics: self.parse("metrics", parse_bool)?,
            metrics_token: self.parse("metrics_token", |s| {
                Ok((!s.is_empty()).then(|| Secret(s.as_bytes().to_vec())))
            })?,
            public_url: self.parse("public_url", |s| {
                let s = s.trim_end_matches('/');
                if s.is_empty() {
                    Ok(None)
                } else if (s.starts_with("http://") || s.starts_with("https://"))
                    && !s
                        .bytes()
                        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
                {
                    Ok(Some(s.to_owned()))
                } else {
                    Err(format!("{s:?} is not a URL like https://auth.lan"))
                }
            })?,
            proxy_timeout: self.parse("proxy_timeout", duration)?,
            max_connections: self.parse("max_connections", |s| {
                if s == "auto" {
                    Ok(None)
                } else {
                    s.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                        .map(Some)
                        .ok_or_else(|| format!("{s:?} is not `auto` or a number from 1 to 1000000"))
                }
            })?,
            header_timeout: self.parse("header_timeout", duration)?,
            body_timeout: self.parse("body_timeout", duration)?,
            keepalive_timeout: self.parse("keepalive_timeout", duration)?,
            proxy_underscore_headers: self.parse("proxy_underscore_headers", parse_bool)?,
            login: LoginLimits {
                max_failures: self.parse("login_max_failures", |s| {
                    s.parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("{s:?} is not a whole number of at least 1"))
                })?,
                window: self.parse("login_window", duration)?,
                lockout: self.parse("login_lockout", duration)?,
                max_lockout: self.parse("login_max_lockout", duration)?,
                records: self.parse("login_throttle_records", |s| {
                    s.parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("{s:?} is not a whole number of at least 1"))
                })?,
            },
            admin_reauth: self.parse("admin_reauth", duration)?,
            max_sessions_per_user: self.parse("max_sessions_per_user", |s| {
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| format!("{s:?} is not a number from 1 to 100000"))
            })?,
            tls: self.tls_files(&data_dir_for_tls)?,
            hsts_max_age: self.parse("hsts_max_age", duration)?,
            hsts_include_subdomains: self.parse("hsts_include_subdomains", parse_bool)?,
            redirect_http: self.parse("redirect_http", |s| {
                if s.is_empty() {
                    Ok(None)
                } else {
                    s.parse()
                        .map(Some)
                        .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:80"))
                }
            })?,
        };
        config.check()?;
        Ok(config)
    }
}

impl Config {
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &str, reason: &str| ConfigError::Invalid {
            setting: setting.to_owned(),
            origin: "the combined settings".to_owned(),
            reason: reason.to_owned(),
        };
        for (name, d) in [
            ("idle_timeout", self.idle_timeout),
            ("absolute_timeout", self.absolute_timeout),
            ("remember_idle_timeout", self.remember_idle_timeout),
            ("remember_absolute_timeout", self.remember_absolute_timeout),
            ("reap_interval", self.reap_interval),
            ("login_window", self.login.window),
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("keepalive_timeout", self.keepalive_timeout),
            // 0s would switch lockouts off, or time out every proxied request.
            ("login_lockout", self.login.lockout),
            ("login_max_lockout", self.login.max_lockout),
            ("proxy_timeout", self.proxy_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(name, "must be longer than 0"));
            }
        }
        if self.absolute_timeout < self.idle_timeout {
            return Err(invalid(
                "absolute_timeout",
                "must not be shorter than idle_timeout",
            ));
        }
        if self.remember_absolute_timeout < self.remember_idle_timeout {
            return Err(invalid(
                "remember_absolute_timeout",
                "must not be shorter than remember_idle_timeout",
            ));
        }
        if self.login.max_lockout < self.login.lockout {
            return Err(invalid(
                "login_max_lockout",
                "must not be shorter than login_lockout",
            ));
        }
        if self.redirect_http.is_some() && self.tls.is_none() {
            return Err(invalid(
                "redirect_http",
                "needs HTTPS (tls_cert and tls_key, or `gatehouse tls self-signed`)",
            ));
        }
        if self
            .redirect_http
            .is_some_and(|r| r == self.listen && r.port() != 0)
        {
            return Err(invalid("redirect_http", "must differ from listen"));
        }
        if self.cookie.same_site == SameSite::None && self.cookie.secure != SecureMode::Always {
            return Err(invalid(
                "cookie.same_site",
                "`none` needs cookie.secure = \"always\" (browsers drop such cookies otherwise)",
            ));
        }
        Ok(())
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

    /// Every setting's effective value, as it would be written, with
    /// secrets masked.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        let d = format_duration;
        let masked = |n: usize| {
            if n == 0 {
                "(none)".to_owned()
            } else {
                format!("*** ({n} configured)")
            }
        };
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(", ")
            }
        };
        let url = |secret: &Secret| mask_password(secret.expose_str());
        vec![
            (
                "database",
                match &self.database {
                    Database::Sqlite(path) => path.display().to_string(),
                    Database::Postgres(u) => url(u),
                },
            ),
            (
                "session_store",
                match &self.session_store {
                    SessionStore::Database => "database".to_owned(),
                    SessionStore::Redis(u) => url(u),
                },
            ),
            ("store_prefix", self.store_prefix.clone()),
            ("listen", self.listen.to_string()),
            ("threads", self.threads.to_string()),
            ("bcrypt_cost", self.bcrypt_cost.to_string()),
            ("idle_timeout", d(self.idle_timeout)),
            ("absolute_timeout", d(self.absolute_timeout)),
            ("remember_idle_timeout", d(self.remember_idle_timeout)),
            (
                "remember_absolute_timeout",
                d(self.remember_absolute_timeout),
            ),
            ("touch_interval", d(self.touch_interval)),
            ("reap_interval", d(self.reap_interval)),
            ("cookie.name", self.cookie.name.clone()),
            (
                "cookie.domain",
                self.cookie
                    .domain
                    .clone()
                    .unwrap_or_else(|| "(this host only)".into()),
            ),
            ("cookie.path", self.cookie.path.clone()),
            (
                "cookie.secure",
                format!("{:?}", self.cookie.secure).to_ascii_lowercase(),
            ),
            (
                "cookie.same_site",
                format!("{:?}", self.cookie.same_site).to_ascii_lowercase(),
            ),
            (
                "secrets",
                if self.secrets.is_empty() {
                    format!("(generated in {})", self.data_dir.join("secret").display())
                } else {
                    masked(self.secrets.len())
                },
            ),
            ("allow_registration", self.allow_registration.to_string()),
            (
                "default_policy",
                format!(
                    "{:?}",
                    self.apps.default.clone().unwrap_or(Access::SignedIn)
                ),
            ),
            (
                "public_url",
                self.public_url.clone().unwrap_or_else(|| "(none)".into()),
            ),
            ("proxy_timeout", d(self.proxy_timeout)),
            (
                "max_connections",
                self.max_connections
                    .map_or_else(|| "auto".to_owned(), |n| n.to_string()),
            ),
            ("header_timeout", d(self.header_timeout)),
            ("body_timeout", d(self.body_timeout)),
            ("keepalive_timeout", d(self.keepalive_timeout)),
            (
                "proxy_underscore_headers",
                self.proxy_underscore_headers.to_string(),
            ),
            ("log_requests", self.log_requests.to_string()),
            ("metrics", self.metrics.to_string()),
            (
                "metrics_token",
                masked(usize::from(self.metrics_token.is_some())),
            ),
            (
                "trusted_proxies",
                list(
                    self.trusted_proxies
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                ),
            ),
            ("login_max_failures", self.login.max_failures.to_string()),
            ("login_window", d(self.login.window)),
            ("login_lockout", d(self.login.lockout)),
            ("login_max_lockout", d(self.login.max_lockout)),
            ("admin_reauth", d(self.admin_reauth)),
            (
                "max_sessions_per_user",
                self.max_sessions_per_user.to_string(),
            ),
            (
                "tls_cert",
                self.tls.as_ref().map_or_else(
                    || "(none: plain HTTP)".to_owned(),
                    |t| t.cert.display().to_string(),
                ),
            ),
            (
                "tls_key",
                self.tls.as_ref().map_or_else(
                    || "(none: plain HTTP)".to_owned(),
                    |t| t.key.display().to_string(),
                ),
            ),
            ("hsts_max_age", d(self.hsts_max_age)),
            (
                "hsts_include_subdomains",
                self.hsts_include_subdomains.to_string(),
            ),
            (
                "redirect_http",
                self.redirect_http
                    .map_or_else(|| "(none)".to_owned(), |a| a.to_string()),
            ),
            ("login_throttle_records", self.login.records.to_string()),
        ]
    }

    /// The session settings these values describe.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            cookie: CookieOptions {
                name: self.cookie.name.clone(),
                domain: self.cookie.domain.clone(),
                path: self.cookie.path.clone(),
                force_secure: self.cookie.secure == SecureMode::Always,
                same_site: self.cookie.same_site,
            },
            idle_timeout: self.idle_timeout,
            absolute_timeout: self.absolute_timeout,
            remember_idle_timeout: self.remember_idle_timeout,
            remember_absolute_timeout: self.remember_absolute_timeout,
            touch_interval: self.touch_interval,
            rolling: false,
            max_sessions_per_user: Some(self.max_sessions_per_user),
        }
    }

    /// Path of the database file, when the database is SQLite.
    pub fn database_path(&self) -> Option<&Path> {
        match &self.database {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }

    /// The secrets to sign with: the configured ones, or else the contents
    /// of `<data>/secret`, generated (64 random bytes, mode 0600) on first use
    /// so that a restart logs nobody out.
    ///
    /// # Errors
    ///
    /// When the secret file cannot be read or created.
    pub fn signing_secrets(&self) -> Result<Vec<Vec<u8>>, ConfigError> {
        if !self.secrets.is_empty() {
            return Ok(self.secrets.iter().map(|s| s.expose().to_vec()).collect());
        }
        let path = self.data_dir.join("secret");
        let err = |e: std::io::Error| ConfigError::SecretFile {
            path: path.clone(),
            reason: e.to_string(),
        };
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 32 => return Ok(vec![bytes]),
            Ok(_) => {
                return Err(ConfigError::SecretFile {
                    path,
                    reason: "shorter than 32 bytes; delete it to have a new one made".into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let secret = crate::session::random_bytes::<64>();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                file.write_all(&secret)
                    .and_then(|()| file.sync_all())
                    .map_err(err)?;
                Ok(vec![secret.to_vec()])
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok(vec![std::fs::read(&path).map_err(err)?])
            }
            Err(e) => Err(err(e)),
        }
    }
}

/// Parses `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
///
/// # Errors
///
/// A message naming the accepted words.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" | "" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// Parses `500ms`, `90s`, `10m`, `2h`, `30d`.
///
/// # Errors
///
/// A message saying what a duration looks like.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 90s, 10m, 2h or 30d");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let ms_per = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per)
        .filter(|ms| *ms <= 3_650 * 86_400_000)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is longer than ten years"))
}

/// Writes a duration the way the config reads it, in the largest exact unit.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= per && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in [
            "",
            "h",
            "2",
            "2 hours",
            "-1s",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
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
                .max_sessions_per_user,
            3
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
        assert_eq!(c.idle_timeout, Duration::from_secs(2 * 3600));
        assert_eq!(c.absolute_timeout, Duration::from_secs(12 * 3600));
        assert_eq!(c.remember_idle_timeout, Duration::from_secs(7 * 86_400));
        assert_eq!(
            c.remember_absolute_timeout,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(c.touch_interval, Duration::from_secs(60));
        assert_eq!(c.admin_reauth, Duration::from_secs(300));
        assert_eq!(c.max_sessions_per_user, 100);
        assert_eq!(c.session_options().max_sessions_per_user, Some(100));
        assert_eq!(c.cookie.name, "gatehouse_session");
        assert_eq!(c.cookie.same_site, SameSite::Lax);
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
            c.idle_timeout,
            Duration::from_secs(3 * 3600),
            "file beats default"
        );
        assert_eq!(c.bcrypt_cost, 11, "env beats file");
        assert_eq!(c.listen.port(), 3, "flag beats env");
        assert_eq!(c.cookie.domain.as_deref(), Some("lan"));
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
            ("GATEHOUSE_SESSION_STORE", "rediss://cache.lan"),
            ("GATEHOUSE_DATABASE", "postgres://db.lan/x?sslmode=require"),
        ] {
            let err = build(&[(name, value)]).expect_err(value).to_string();
            assert!(
                err.contains(&name["GATEHOUSE_".len()..].to_ascii_lowercase()),
                "{err}"
            );
        }
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_password("postgres://u:p@h/db?x=1"),
            "postgres://u:***@h/db?x=1"
        );
        assert_eq!(
            mask_password("redis://:p@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(mask_password("redis://h:6379"), "redis://h:6379");
        assert_eq!(mask_password("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn a_generated_secret_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let c = Layers::new().build(dir.path().to_owned()).expect("valid");
        let first = c.signing_secrets().expect("made");
        assert_eq!(first[0].len(), 64);
        assert_eq!(c.signing_secrets().expect("read"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
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
        let recipe =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/recipes/gatehouse.toml");
        let c = Config::load(dir.path(), Some(&recipe), Vec::new(), &[]).expect("the recipe loads");
        assert_eq!(c.apps.all().len(), 3);
        assert_eq!(c.cookie.domain.as_deref(), Some("lan"));
    }

    #[test]
    fn the_readme_documents_every_setting_and_its_env_twin() {
        let readme = include_str!("../README.md");
        for s in SETTINGS {
            let row = format!("| `{}` | `{}` |", s.name, env_name(s.name));
            assert!(readme.contains(&row), "README lacks a row for {}", s.name);
        }
    }
}
