//! The settings table: one row per setting, and nothing else. A row says
//! the setting's name, its environment twin, its default, how a value is
//! parsed and where it goes in [`Config`], how `check-config` shows it,
//! and what it means. Loading ([`super::Layers`]), the environment names,
//! the unknown-setting errors and warnings and `check-config`'s output all
//! read this table; the settings table of `docs/configuration.md` is
//! tested against it.
//!
//! Rows are in `check-config`'s order.

use std::path::PathBuf;

use crate::auth::access::Access;
use crate::auth::throttle::{Limits, MAX_ENTRIES};
use crate::oidc::OidcOptions;
use crate::session::{CookieOptions, SessionOptions};
use crate::users::directory::settings::{self as ldap, Kind, Lookup};

use super::Config;
use super::values::{
    Database, SessionStore, access, at_least_one, cookie_domain, cookie_name, cookie_path,
    cookie_secure, data_path, database, format_duration, listen, mask_password, masked,
    max_connections, none_if_empty, number_in, optional_secret, parse_bool, parse_duration,
    per_client, public_url, redirect_http, same_site, session_store, show_ca_file,
    show_cookie_secure, show_same_site, signing_secret, store_prefix, threads,
};

/// What the rows parse into: the [`Config`] itself, plus the few values
/// that only become part of it together with others (the certificate
/// pair, the default policy of the apps).
pub(super) struct Draft {
    /// The configuration being filled.
    pub config: Config,
    /// `tls_cert`, resolved against the data directory.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key`, resolved against the data directory.
    pub tls_key: Option<PathBuf>,
    /// `default_policy`.
    pub default_policy: Access,
    /// The `ldap.*` settings, checked together once all are read.
    pub ldap: ldap::Draft,
}

/// One setting: its names, default, parser, display and meaning.
pub struct Setting {
    /// Name in the file (`[cookie] domain` is `cookie.domain`).
    pub name: &'static str,
    /// The environment twin when it is not the derived one (see
    /// [`Setting::env`]); `None` for nearly every setting.
    pub env_twin: Option<&'static str>,
    /// The default, as it would be written.
    pub default: Fallback,
    /// What it does (one line; docs/configuration.md says more).
    pub help: &'static str,
    /// How a value is parsed and where it goes.
    pub(super) set: Set,
    /// How `check-config` shows the effective value (secrets masked).
    pub(super) show: fn(&Config) -> String,
}

/// Where a setting's default comes from.
#[derive(Clone, Copy)]
pub enum Fallback {
    /// Written here; this row is the one place it is said.
    Text(&'static str),
    /// Taken from the type that owns the value (e.g.
    /// [`SessionOptions::default`], which library users get too), so that
    /// the default is said once, there.
    Derived(fn() -> String),
}

/// How a setting's text reaches [`Config`].
pub(super) enum Set {
    /// One value (a list in the file is refused).
    One(fn(&mut Draft, &str) -> Result<(), String>),
    /// A list: a TOML array, or comma-separated text; empty items dropped.
    List(fn(&mut Draft, &[&str]) -> Result<(), String>),
}

impl Setting {
    /// The environment variable: `GATEHOUSE_` + the name upper-cased with
    /// `.` as `_`, unless the row gives another.
    pub fn env(&self) -> String {
        self.env_twin
            .map_or_else(|| derived_env_name(self.name), str::to_owned)
    }

    /// The default, as it would be written.
    pub fn default_text(&self) -> String {
        match self.default {
            Fallback::Text(text) => text.to_owned(),
            Fallback::Derived(make) => make(),
        }
    }
}

fn derived_env_name(name: &str) -> String {
    format!("GATEHOUSE_{}", name.replace('.', "_").to_ascii_uppercase())
}

/// The environment variable for a setting (or, for a name that is no
/// setting, the one it would have).
pub fn env_name(setting: &str) -> String {
    find(setting).map_or_else(|| derived_env_name(setting), Setting::env)
}

/// The row of a setting.
pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The default `min_send_rate`, in bytes a second: far below any real
/// link, far above a client that reads a byte now and then to hold a
/// connection.
pub const MIN_SEND_RATE: u64 = 1024;

/// bcrypt's default work factor: 12 on servers; 10 on ARM boards such as
/// a Raspberry Pi, where 12 takes about a second per sign-in.
#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
pub const DEFAULT_BCRYPT_COST: &str = "12";
/// bcrypt's default work factor: 12 on servers; 10 on ARM boards such as
/// a Raspberry Pi, where 12 takes about a second per sign-in.
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
pub const DEFAULT_BCRYPT_COST: &str = "10";

/// A duration setting's row fields, parsed with [`parse_duration`] and
/// shown with [`format_duration`]: `duration!(session.idle_timeout)` for
/// `Config::session.idle_timeout`.
macro_rules! duration {
    ($($field:ident).+) => {
        (
            Set::One(|d, s| {
                d.config.$($field).+ = parse_duration(s)?;
                Ok(())
            }),
            |c: &Config| format_duration(c.$($field).+),
        )
    };
}

/// A boolean setting's row fields, parsed with [`parse_bool`]:
/// `boolean!(metrics)` for `Config::metrics`.
macro_rules! boolean {
    ($($field:ident).+) => {
        (
            Set::One(|d, s| {
                d.config.$($field).+ = parse_bool(s)?;
                Ok(())
            }),
            |c: &Config| c.$($field).+.to_string(),
        )
    };
}

/// A row whose value goes to one field: the parser and display come as a
/// pair from `duration!`/`boolean!`, or are given.
macro_rules! row {
    ($name:literal, $default:expr, $help:literal, $pair:expr) => {{
        const PAIR: (Set, fn(&Config) -> String) = $pair;
        Setting {
            name: $name,
            env_twin: None,
            default: $default,
            help: $help,
            set: PAIR.0,
            show: PAIR.1,
        }
    }};
}

use Fallback::{Derived, Text};

/// How an `ldap.*` setting is shown: from the resolved directory settings,
/// or `-` when no directory is configured.
fn ldap_shown(c: &Config, show: impl Fn(&ldap::Settings) -> String) -> String {
    c.ldap.as_ref().map_or_else(|| "-".to_owned(), show)
}

/// An `ldap.*` setting that is one piece of text, checked by `parse`, and
/// shown as resolved (with the preset filled in).
macro_rules! ldap_text {
    ($name:literal, $field:ident, $parse:path, $help:literal) => {
        Setting {
            name: $name,
            env_twin: None,
            default: Text(""),
            help: $help,
            set: Set::One(|d, s| {
                d.ldap.$field = $parse(s)?;
                Ok(())
            }),
            show: |c| ldap_shown(c, |l| l.$field.clone()),
        }
    };
}

/// An `ldap.*` duration, shown as resolved.
macro_rules! ldap_duration {
    ($name:literal, $field:ident, $default:literal, $help:literal) => {
        Setting {
            name: $name,
            env_twin: None,
            default: Text($default),
            help: $help,
            set: Set::One(|d, s| {
                d.ldap.$field = parse_duration(s)?;
                Ok(())
            }),
            show: |c| ldap_shown(c, |l| format_duration(l.$field)),
        }
    };
}

/// Text kept as it is (a DN's or a group's name: the directory judges).
fn any_text(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// Every setting, in `check-config`'s order.
pub static SETTINGS: &[Setting] = &[
    Setting {
        name: "database",
        env_twin: None,
        default: Text(""),
        help: "users and sessions: empty = `<data>/gatehouse.db`; a file path (SQLite); or `postgres://user:password@host/db` for several instances (`?sslmode=verify-full` for TLS)",
        set: Set::One(|d, s| {
            d.config.database = database(s, &d.config.data_dir)?;
            Ok(())
        }),
        show: |c| match &c.database {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(u) => mask_password(u.expose_str()),
        },
    },
    Setting {
        name: "database_ca_file",
        env_twin: None,
        default: Text(""),
        help: "PEM file of the CA certificates a PostgreSQL server's certificate must chain to when the URL asks for TLS (`sslmode=verify-full`); empty = Mozilla's roots, built in",
        set: Set::One(|d, s| {
            d.config.database_ca_file = data_path(s, &d.config.data_dir);
            Ok(())
        }),
        show: |c| show_ca_file(c.database_ca_file.as_deref(), c.database.uses_tls()),
    },
    Setting {
        name: "session_store",
        env_twin: None,
        default: Text("database"),
        help: "sessions: `database` (wherever users are) or `redis://host:6379/0` (Redis or Valkey; login throttling moves there too; `rediss://` for TLS)",
        set: Set::One(|d, s| {
            d.config.session_store = session_store(s)?;
            Ok(())
        }),
        show: |c| match &c.session_store {
            SessionStore::Database => "database".to_owned(),
            SessionStore::Redis(u) => mask_password(u.expose_str()),
        },
    },
    Setting {
        name: "session_store_ca_file",
        env_twin: None,
        default: Text(""),
        help: "PEM file of the CA certificates a Redis server's certificate must chain to, for a `rediss://` URL; empty = Mozilla's roots, built in",
        set: Set::One(|d, s| {
            d.config.session_store_ca_file = data_path(s, &d.config.data_dir);
            Ok(())
        }),
        show: |c| {
            show_ca_file(
                c.session_store_ca_file.as_deref(),
                c.session_store.uses_tls(),
            )
        },
    },
    Setting {
        name: "store_prefix",
        env_twin: None,
        default: Text("gatehouse:"),
        help: "prefix of every Redis key gatehouse writes, so several deployments can share one Redis",
        set: Set::One(|d, s| {
            d.config.store_prefix = store_prefix(s)?;
            Ok(())
        }),
        show: |c| c.store_prefix.clone(),
    },
    Setting {
        name: "listen",
        env_twin: None,
        default: Text("127.0.0.1:8080"),
        help: "address and port to listen on (port 0 picks a free one)",
        set: Set::One(|d, s| {
            d.config.listen = listen(s)?;
            Ok(())
        }),
        show: |c| c.listen.to_string(),
    },
    Setting {
        name: "threads",
        env_twin: None,
        default: Text("auto"),
        help: "request threads; auto = 8 per CPU core, at least 8",
        set: Set::One(|d, s| {
            d.config.threads = threads(s)?;
            Ok(())
        }),
        show: |c| c.threads.to_string(),
    },
    Setting {
        name: "bcrypt_cost",
        env_twin: None,
        default: Text(DEFAULT_BCRYPT_COST),
        help: "bcrypt work factor for new password hashes (4-31)",
        set: Set::One(|d, s| {
            d.config.bcrypt_cost = number_in(s, 4..=31)?;
            Ok(())
        }),
        show: |c| c.bcrypt_cost.to_string(),
    },
    row!(
        "idle_timeout",
        Derived(|| format_duration(SessionOptions::default().idle_timeout)),
        "a session unused this long ends",
        duration!(session.idle_timeout)
    ),
    row!(
        "absolute_timeout",
        Derived(|| format_duration(SessionOptions::default().absolute_timeout)),
        "a session ends this long after sign-in",
        duration!(session.absolute_timeout)
    ),
    row!(
        "remember_idle_timeout",
        Derived(|| format_duration(SessionOptions::default().remember_idle_timeout)),
        "idle timeout with \"remember me\"",
        duration!(session.remember_idle_timeout)
    ),
    row!(
        "remember_absolute_timeout",
        Derived(|| format_duration(SessionOptions::default().remember_absolute_timeout)),
        "absolute lifetime with \"remember me\"",
        duration!(session.remember_absolute_timeout)
    ),
    row!(
        "touch_interval",
        // Written as seconds, as it always was (the largest exact unit would
        // say `1m`); a test checks it is the engine's default.
        Text("60s"),
        "read-only requests record activity at most this often",
        duration!(session.touch_interval)
    ),
    row!(
        "reap_interval",
        Text("60s"),
        "how often expired sessions are deleted",
        duration!(reap_interval)
    ),
    row!(
        "audit_retention",
        Derived(|| format_duration(crate::users::audit::DEFAULT_RETENTION)),
        "how long the audit log (sign-ins, changes) keeps a row; the reaper trims older ones",
        duration!(audit_retention)
    ),
    Setting {
        name: "cookie.name",
        env_twin: None,
        default: Derived(|| CookieOptions::default().name),
        help: "session cookie name",
        set: Set::One(|d, s| {
            d.config.session.cookie.name = cookie_name(s)?;
            Ok(())
        }),
        show: |c| c.session.cookie.name.clone(),
    },
    Setting {
        name: "cookie.domain",
        env_twin: None,
        default: Derived(|| CookieOptions::default().domain.unwrap_or_default()),
        help: "cookie Domain, e.g. `lan` to share one login across `*.lan`; empty = this host only",
        set: Set::One(|d, s| {
            d.config.session.cookie.domain = cookie_domain(s)?;
            Ok(())
        }),
        show: |c| {
            c.session
                .cookie
                .domain
                .clone()
                .unwrap_or_else(|| "(this host only)".into())
        },
    },
    Setting {
        name: "cookie.path",
        env_twin: None,
        default: Derived(|| CookieOptions::default().path),
        help: "cookie Path",
        set: Set::One(|d, s| {
            d.config.session.cookie.path = cookie_path(s)?;
            Ok(())
        }),
        show: |c| c.session.cookie.path.clone(),
    },
    Setting {
        name: "cookie.secure",
        env_twin: None,
        default: Derived(|| show_cookie_secure(CookieOptions::default().force_secure)),
        help: "`auto`: Secure on HTTPS requests; `always`: always Secure",
        set: Set::One(|d, s| {
            d.config.session.cookie.force_secure = cookie_secure(s)?;
            Ok(())
        }),
        show: |c| show_cookie_secure(c.session.cookie.force_secure),
    },
    Setting {
        name: "cookie.same_site",
        env_twin: None,
        default: Derived(|| show_same_site(CookieOptions::default().same_site)),
        help: "`lax`, `strict` or `none`",
        set: Set::One(|d, s| {
            d.config.session.cookie.same_site = same_site(s)?;
            Ok(())
        }),
        show: |c| show_same_site(c.session.cookie.same_site),
    },
    Setting {
        name: "secrets",
        env_twin: None,
        default: Text(""),
        help: "cookie signing secrets (32+ bytes each), newest first; empty = generated into `<data>/secret`",
        set: Set::List(|d, items| {
            d.config.secrets = items
                .iter()
                .map(|s| signing_secret(s))
                .collect::<Result<_, _>>()?;
            Ok(())
        }),
        show: |c| {
            if c.secrets.is_empty() {
                format!("(generated in {})", c.secret_file().display())
            } else {
                masked(c.secrets.len())
            }
        },
    },
    row!(
        "allow_registration",
        Text("false"),
        "let visitors create their own accounts at /register",
        boolean!(allow_registration)
    ),
    Setting {
        name: "default_policy",
        env_twin: None,
        default: Text("signed_in"),
        help: "who may pass /auth/verify for a request that matches no app: `signed_in`, `admins` or `deny`",
        set: Set::One(|d, s| {
            d.default_policy = access(s)?;
            Ok(())
        }),
        show: |c| {
            format!(
                "{:?}",
                c.apps
                    .default
                    .clone()
                    .unwrap_or(crate::auth::access::Access::SignedIn)
            )
        },
    },
    Setting {
        name: "public_url",
        env_twin: None,
        default: Text(""),
        help: "gatehouse's address as browsers reach it, e.g. `https://auth.lan`; used to send them to the sign-in page from other hosts",
        set: Set::One(|d, s| {
            d.config.public_url = public_url(s)?;
            d.config.issuer = d.config.public_url.as_ref().map(|_| s.trim().to_owned());
            Ok(())
        }),
        show: |c| c.issuer.clone().unwrap_or_else(|| "(none)".into()),
    },
    row!(
        "proxy_timeout",
        Text("60s"),
        "how long the built-in proxy waits for an upstream to start answering",
        duration!(proxy_timeout)
    ),
    Setting {
        name: "max_connections",
        env_twin: None,
        default: Text("auto"),
        help: "most client connections open at once; auto = (descriptor limit - 64 - 4 per pooled database connection) / 2, from 16 to 4096; at the cap the oldest one not being served is closed, or a new one is refused",
        set: Set::One(|d, s| {
            d.config.max_connections = max_connections(s)?;
            Ok(())
        }),
        show: |c| {
            c.max_connections
                .map_or_else(|| "auto".to_owned(), |n| n.to_string())
        },
    },
    row!(
        "header_timeout",
        Derived(|| format_duration(tiny_http::Options::default().header_timeout)),
        "a request line and headers must arrive within this (in all, not per read); else the connection is closed",
        duration!(header_timeout)
    ),
    row!(
        "body_timeout",
        Derived(|| format_duration(tiny_http::Options::default().body_timeout)),
        "no read of a request body, and no write of an answer, may stall longer than this",
        duration!(body_timeout)
    ),
    row!(
        "keepalive_timeout",
        Derived(|| format_duration(tiny_http::Options::default().keepalive_timeout)),
        "an idle kept-alive connection is closed after this",
        duration!(keepalive_timeout)
    ),
    Setting {
        name: "max_connections_per_client",
        env_twin: None,
        default: Text("auto"),
        help: "most connections one client address (an IPv6 /64) may hold, and most WebSocket tunnels one user may hold; auto = a quarter of max_connections, at least 8; 0 = no such cap; trusted_proxies are not capped",
        set: Set::One(|d, s| {
            d.config.max_connections_per_client = per_client(s)?;
            Ok(())
        }),
        show: |c| {
            c.max_connections_per_client
                .map_or_else(|| "auto".to_owned(), |n| n.to_string())
        },
    },
    Setting {
        name: "min_send_rate",
        env_twin: None,
        default: Derived(|| MIN_SEND_RATE.to_string()),
        help: "bytes a second a client must take an answer at while it makes gatehouse wait (after body_timeout of waiting); a slower one is disconnected; 0 = no minimum",
        set: Set::One(|d, s| {
            d.config.min_send_rate = number_in(s, 0..=1_000_000_000)?;
            Ok(())
        }),
        show: |c| c.min_send_rate.to_string(),
    },
    row!(
        "tunnel_idle_timeout",
        Text("10m"),
        "a WebSocket tunnel through the built-in proxy with no byte either way for this long is closed",
        duration!(tunnel_idle_timeout)
    ),
    row!(
        "proxy_underscore_headers",
        Text("false"),
        "pass client headers with `_` in their name on to upstreams (dropped by default, as nginx does; CGI-style apps read `Remote_User` as `Remote-User`)",
        boolean!(proxy_underscore_headers)
    ),
    row!(
        "log_requests",
        Text("true"),
        "log one line per request (sign-in events are always logged)",
        boolean!(log_requests)
    ),
    row!(
        "metrics",
        Text("false"),
        "serve Prometheus metrics at /metrics",
        boolean!(metrics)
    ),
    Setting {
        name: "metrics_token",
        env_twin: None,
        default: Text(""),
        help: "if set, /metrics wants `Authorization: Bearer <token>`",
        set: Set::One(|d, s| {
            d.config.metrics_token = optional_secret(s)?;
            Ok(())
        }),
        show: |c| masked(usize::from(c.metrics_token.is_some())),
    },
    Setting {
        name: "trusted_proxies",
        env_twin: None,
        default: Text(""),
        help: "addresses/CIDRs whose X-Forwarded-For/-Proto (and forward-auth X-Forwarded-Host/-Uri/-Method, X-Original-URI) are believed",
        set: Set::List(|d, items| {
            d.config.trusted_proxies = items
                .iter()
                .map(|s| crate::auth::proxy::parse_network(s))
                .collect::<Result<_, _>>()?;
            Ok(())
        }),
        show: |c| none_if_empty(c.trusted_proxies.iter().map(ToString::to_string).collect()),
    },
    Setting {
        name: "login_max_failures",
        env_twin: None,
        default: Derived(|| Limits::default().max_failures.to_string()),
        help: "failed logins per user or IP before a lockout",
        set: Set::One(|d, s| {
            d.config.login.max_failures = at_least_one(s)?;
            Ok(())
        }),
        show: |c| c.login.max_failures.to_string(),
    },
    row!(
        "login_window",
        Derived(|| format_duration(Limits::default().window)),
        "window in which failures are counted",
        duration!(login.window)
    ),
    row!(
        "login_lockout",
        Derived(|| format_duration(Limits::default().lockout)),
        "first lockout; each further one doubles",
        duration!(login.lockout)
    ),
    row!(
        "login_max_lockout",
        Derived(|| format_duration(Limits::default().max_lockout)),
        "longest lockout",
        duration!(login.max_lockout)
    ),
    row!(
        "admin_reauth",
        Text("5m"),
        "an administrator action needs the password entered within this long (a sign-in counts); 0s = every action asks",
        duration!(admin_reauth)
    ),
    Setting {
        name: "two_factor",
        env_twin: None,
        default: Text("optional"),
        help: "`optional`: users may set up a second factor (authenticator app or passkey) on /account; `required`: everyone must, right after their password",
        set: Set::One(|d, s| {
            d.config.two_factor = crate::users::factors::Policy::parse(s)?;
            Ok(())
        }),
        show: |c| c.two_factor.as_str().to_owned(),
    },
    Setting {
        name: "max_sessions_per_user",
        env_twin: None,
        default: Derived(|| {
            SessionOptions::default()
                .max_sessions_per_user
                .map_or_else(String::new, |n| n.to_string())
        }),
        help: "sessions one user may have at once; a new sign-in ends that user's oldest beyond it",
        set: Set::One(|d, s| {
            d.config.session.max_sessions_per_user = Some(number_in(s, 1..=100_000)?);
            Ok(())
        }),
        show: |c| {
            c.session
                .max_sessions_per_user
                .map_or_else(String::new, |n| n.to_string())
        },
    },
    Setting {
        name: "tls_cert",
        env_twin: None,
        default: Text(""),
        help: "PEM certificate chain (own certificate first); with `tls_key` the listener speaks HTTPS only; empty = `<data>/tls/cert.pem` when `gatehouse tls self-signed` made one, else plain HTTP",
        set: Set::One(|d, s| {
            d.tls_cert = data_path(s, &d.config.data_dir);
            Ok(())
        }),
        show: |c| {
            c.tls.as_ref().map_or_else(
                || "(none: plain HTTP)".to_owned(),
                |t| t.cert.display().to_string(),
            )
        },
    },
    Setting {
        name: "tls_key",
        env_twin: None,
        default: Text(""),
        help: "PEM private key of `tls_cert`; both are read again on SIGHUP",
        set: Set::One(|d, s| {
            d.tls_key = data_path(s, &d.config.data_dir);
            Ok(())
        }),
        show: |c| {
            c.tls.as_ref().map_or_else(
                || "(none: plain HTTP)".to_owned(),
                |t| t.key.display().to_string(),
            )
        },
    },
    row!(
        "hsts_max_age",
        Text("180d"),
        "over HTTPS, `Strict-Transport-Security: max-age` (`0s` = not sent)",
        duration!(hsts_max_age)
    ),
    row!(
        "hsts_include_subdomains",
        Text("false"),
        "add `includeSubDomains` to Strict-Transport-Security (every subdomain must then speak HTTPS)",
        boolean!(hsts_include_subdomains)
    ),
    Setting {
        name: "redirect_http",
        env_twin: None,
        default: Text(""),
        help: "with HTTPS: a second, plain-HTTP listener (e.g. `0.0.0.0:80`) that only answers 301 to the HTTPS address",
        set: Set::One(|d, s| {
            d.config.redirect_http = redirect_http(s)?;
            Ok(())
        }),
        show: |c| {
            c.redirect_http
                .map_or_else(|| "(none)".to_owned(), |a| a.to_string())
        },
    },
    Setting {
        name: "login_throttle_records",
        env_twin: None,
        default: Derived(|| MAX_ENTRIES.to_string()),
        help: "most throttling records kept in memory (SQLite deployments)",
        set: Set::One(|d, s| {
            d.config.throttle_records = at_least_one(s)?;
            Ok(())
        }),
        show: |c| c.throttle_records.to_string(),
    },
    row!(
        "login_queue_timeout",
        Text("10s"),
        "how long a sign-in may wait for a bcrypt worker; one that would wait longer gets 503 with Retry-After",
        duration!(login_queue_timeout)
    ),
    row!(
        "oidc.code_lifetime",
        Derived(|| format_duration(OidcOptions::default().code_lifetime)),
        "OpenID Connect: how long an authorization code may be redeemed (at most 60s)",
        duration!(oidc.code_lifetime)
    ),
    row!(
        "oidc.access_token_lifetime",
        Derived(|| format_duration(OidcOptions::default().access_token_lifetime)),
        "OpenID Connect: how long an access token is good for",
        duration!(oidc.access_token_lifetime)
    ),
    row!(
        "oidc.refresh_token_lifetime",
        Derived(|| format_duration(OidcOptions::default().refresh_token_lifetime)),
        "OpenID Connect: how long a refresh token is good for (each use gives a new one)",
        duration!(oidc.refresh_token_lifetime)
    ),
    row!(
        "oidc.id_token_lifetime",
        Derived(|| format_duration(OidcOptions::default().id_token_lifetime)),
        "OpenID Connect: how long an ID token is good for (a rotated signing key stays published this long)",
        duration!(oidc.id_token_lifetime)
    ),
    Setting {
        name: "ldap.url",
        env_twin: None,
        default: Text(""),
        help: "the directory users sign in with: `ldaps://host[:port]`, or `ldap://host[:port]` with StartTLS; empty = no directory",
        set: Set::One(|d, s| {
            s.clone_into(&mut d.ldap.url);
            Ok(())
        }),
        show: |c| {
            c.ldap
                .as_ref()
                .map_or_else(|| "(none: no directory)".to_owned(), |l| l.url.clone())
        },
    },
    row!(
        "ldap.insecure",
        Text("false"),
        "allow `ldap://` without TLS: every password crosses the network readable (warned about at start)",
        (
            Set::One(|d, s| {
                d.ldap.insecure = parse_bool(s)?;
                Ok(())
            }),
            |c: &Config| ldap_shown(c, |l| (l.security == ldap::Security::Plain).to_string()),
        )
    ),
    row!(
        "ldap.kind",
        Text("openldap"),
        "`active_directory`, `openldap` or `lldap`: fills the attribute names and filters not set (docs/directory.md)",
        (
            Set::One(|d, s| {
                d.ldap.kind = Kind::parse(s)?;
                Ok(())
            }),
            |c: &Config| ldap_shown(c, |l| l.kind.as_str().to_owned()),
        )
    ),
    Setting {
        name: "ldap.bind_dn",
        env_twin: None,
        default: Text(""),
        help: "the service account that searches the directory; empty = search anonymously",
        set: Set::One(|d, s| {
            d.ldap.bind_dn = ldap::dn(s)?;
            Ok(())
        }),
        show: |c| {
            ldap_shown(c, |l| {
                l.bind_dn.clone().unwrap_or_else(|| "(anonymous)".into())
            })
        },
    },
    Setting {
        name: "ldap.bind_password",
        env_twin: None,
        default: Text(""),
        help: "the service account's password (or `ldap.bind_password_file`); never shown",
        set: Set::One(|d, s| {
            d.ldap.bind_password = ldap::BindPassword::new(s);
            Ok(())
        }),
        show: |c| {
            ldap_shown(c, |l| {
                masked(usize::from(!l.bind_password.expose().is_empty()))
            })
        },
    },
    Setting {
        name: "ldap.bind_password_file",
        env_twin: None,
        default: Text(""),
        help: "a file holding the service account's password (one line break at its end is dropped); relative to the data directory",
        set: Set::One(|d, s| {
            s.clone_into(&mut d.ldap.bind_password_file);
            Ok(())
        }),
        show: |c| {
            ldap_shown(c, |l| {
                masked(usize::from(!l.bind_password.expose().is_empty()))
            })
        },
    },
    ldap_text!(
        "ldap.base_dn",
        base_dn,
        ldap::dn,
        "where users are searched, e.g. `dc=example,dc=org`"
    ),
    ldap_text!(
        "ldap.user_filter",
        user_filter,
        ldap::filter,
        "finds one user by the name typed, `{username}` (escaped); empty = the kind's"
    ),
    ldap_text!(
        "ldap.username_attribute",
        username_attribute,
        ldap::attribute,
        "the attribute holding the user's name; empty = the kind's"
    ),
    ldap_text!(
        "ldap.display_name_attribute",
        display_name_attribute,
        ldap::attribute,
        "the attribute holding the display name; empty = the kind's"
    ),
    ldap_text!(
        "ldap.email_attribute",
        email_attribute,
        ldap::attribute,
        "the attribute holding the e-mail address; empty = the kind's"
    ),
    ldap_text!(
        "ldap.id_attribute",
        id_attribute,
        ldap::attribute,
        "the entry's stable id, kept when the account is renamed (`entryUUID`, `objectGUID`); empty = the kind's"
    ),
    row!(
        "ldap.group_lookup",
        Text(""),
        "how groups are found: `member_of` (an attribute of the user) or `search` (groups whose members include the user); empty = the kind's",
        (
            Set::One(|d, s| {
                d.ldap.group_lookup = if s.is_empty() {
                    None
                } else {
                    Some(Lookup::parse(s)?)
                };
                Ok(())
            }),
            |c: &Config| ldap_shown(c, |l| l.group_lookup.as_str().to_owned()),
        )
    ),
    ldap_text!(
        "ldap.member_of_attribute",
        member_of_attribute,
        ldap::attribute,
        "with `member_of`: the attribute listing the user's groups' DNs; empty = the kind's"
    ),
    ldap_text!(
        "ldap.group_base_dn",
        group_base_dn,
        ldap::dn,
        "with `search`: where groups are searched; empty = `ldap.base_dn`"
    ),
    ldap_text!(
        "ldap.group_filter",
        group_filter,
        ldap::filter,
        "with `search`: finds the user's groups, `{dn}` (the user's DN) or `{username}`; empty = the kind's"
    ),
    ldap_text!(
        "ldap.group_name_attribute",
        group_name_attribute,
        ldap::attribute,
        "with `search`: the attribute holding a group's name; empty = the kind's"
    ),
    Setting {
        name: "ldap.disabled_filter",
        env_twin: None,
        default: Text(""),
        help: "matches a user entry that may not sign in; empty = the kind's, `none` = no such mark",
        set: Set::One(|d, s| {
            d.ldap.disabled_filter = ldap::filter(s)?;
            Ok(())
        }),
        show: |c| {
            ldap_shown(c, |l| {
                l.disabled_filter.clone().unwrap_or_else(|| "none".into())
            })
        },
    },
    Setting {
        name: "ldap.groups",
        env_twin: None,
        default: Text(""),
        help: "only these directory groups count (any case); empty = all",
        set: Set::List(|d, items| {
            d.ldap.groups = items
                .iter()
                .map(|s| any_text(s))
                .collect::<Result<_, _>>()?;
            Ok(())
        }),
        show: |c| ldap_shown(c, |l| none_if_empty(l.groups.clone())),
    },
    Setting {
        name: "ldap.admin_group",
        env_twin: None,
        default: Text(""),
        help: "members of this directory group are administrators; empty = none by the directory",
        set: Set::One(|d, s| {
            d.ldap.admin_group = any_text(s)?;
            Ok(())
        }),
        show: |c| {
            ldap_shown(c, |l| {
                l.admin_group.clone().unwrap_or_else(|| "(none)".into())
            })
        },
    },
    Setting {
        name: "ldap.ca_file",
        env_twin: None,
        default: Text(""),
        help: "PEM CA certificate(s) the directory's certificate must chain to (a private CA); empty = Mozilla's roots, built in; relative to the data directory",
        set: Set::One(|d, s| {
            s.clone_into(&mut d.ldap.ca_file);
            Ok(())
        }),
        show: |c| {
            ldap_shown(c, |l| {
                l.ca_file.as_ref().map_or_else(
                    || "(built-in roots)".to_owned(),
                    |p| p.display().to_string(),
                )
            })
        },
    },
    ldap_duration!(
        "ldap.sync_interval",
        sync_interval,
        "5m",
        "how often directory users are read again (names, groups, removed or disabled)"
    ),
    ldap_duration!(
        "ldap.connect_timeout",
        connect_timeout,
        "5s",
        "the longest a connection to the directory may take (name lookup, TCP, TLS)"
    ),
    ldap_duration!(
        "ldap.operation_timeout",
        operation_timeout,
        "10s",
        "the longest the directory may take to answer one operation (a sign-in's binds and searches together)"
    ),
    Setting {
        name: "ldap.max_connections",
        env_twin: None,
        default: Text("8"),
        help: "most directory operations (connections) at once; a sign-in that finds none free within `ldap.connect_timeout` gets 503",
        set: Set::One(|d, s| {
            d.ldap.max_connections = number_in(s, 1..=256)?;
            Ok(())
        }),
        show: |c| ldap_shown(c, |l| l.max_connections.to_string()),
    },
];
