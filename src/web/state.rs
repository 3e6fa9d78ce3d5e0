//! The state every request thread shares, and the glue between a rouille
//! request and the session engine (`with_session`).

use rouille::{Request, Response};

use super::error::WebError;
use super::{layer, metrics};
use crate::accounts::{Accounts, Guard};
use crate::auth::proxy::{Client, IpNet};
use crate::auth::throttle::Throttle;
use crate::session::{Engine, RequestInfo, Session};
use crate::users::Users;
use crate::users::audit::Origin;

/// Everything a handler may use; shared by all request threads.
pub struct State {
    /// Sessions: the same layer the library offers rouille apps.
    pub sessions: layer::SessionLayer,
    /// Users.
    pub users: Users,
    /// Login throttling.
    pub throttle: Throttle,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The database, for the health check.
    pub health: Health,
    /// Whether to log one line per request.
    pub log_requests: bool,
    /// Whether visitors may sign up.
    pub allow_registration: bool,
    /// The one-time first-run token, while no user exists.
    pub setup_token: std::sync::Mutex<Option<String>>,
    /// The guarded apps.
    pub apps: crate::auth::apps::Apps,
    /// gatehouse's external address, if configured.
    pub public_url: Option<String>,
    /// The built-in proxy's HTTP client.
    pub proxy: ureq::Agent,
    /// Whether client headers with `_` in their name reach upstreams.
    pub proxy_underscore_headers: bool,
    /// How long the built-in proxy waits for an upstream.
    pub proxy_timeout: std::time::Duration,
    /// The proxy's open WebSocket tunnels, counted per user, and their
    /// limits.
    pub tunnels: std::sync::Arc<super::tunnel::Tunnels>,
    /// The proxied requests waiting on upstreams, and their limits.
    pub forwarding: std::sync::Arc<super::gate::InFlight>,
    /// Counters for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Whether `/metrics` is served, and the bearer token it wants.
    pub metrics_access: Option<Option<crate::config::Secret>>,
    /// How long a password confirmation lets an administrator act.
    pub admin_reauth: std::time::Duration,
    /// Who must have a second factor.
    pub two_factor: crate::users::factors::Policy,
    /// Whether the listener speaks HTTPS (every request then came over
    /// TLS: rouille's `Request::is_secure` is always false, see `client`).
    pub https: bool,
    /// The `Strict-Transport-Security` value sent over HTTPS, if any.
    pub hsts: Option<String>,
    /// The OpenID Provider, when `public_url` is set (its endpoints are
    /// routes only then).
    pub oidc: Option<crate::oidc::Provider>,
    /// Where the OpenID Connect grants are kept (with the provider on or
    /// off): ending a user's sessions ends their apps' tokens too.
    pub grants: std::sync::Arc<dyn crate::oidc::Store>,
}

impl State {
    /// The session engine.
    pub fn engine(&self) -> &Engine {
        self.sessions.engine()
    }

    /// The account operations, over this server's users and sessions,
    /// for what records nothing (reads, checks); see
    /// [`accounts_for`](Self::accounts_for).
    pub fn accounts(&self) -> Accounts<'_> {
        Accounts::new(
            &self.users,
            self.engine().store().as_ref(),
            self.grants.as_ref(),
        )
        .with_bell(self.oidc.as_ref().map(crate::oidc::Provider::bell))
    }

    /// The account operations for `request`: what they change is recorded
    /// in the audit log with its address and user agent (and, given
    /// [`Accounts::by`], who asked).
    pub fn accounts_for(&self, request: &Request, client: &Client) -> Accounts<'_> {
        self.accounts().at(origin(request, client))
    }

    /// What guards password checks here: the throttle, counted in `/metrics`.
    pub(super) fn guard(&self) -> Guard<'_> {
        Guard {
            throttle: &self.throttle,
            counters: &self.metrics,
        }
    }
}

/// Where `request` comes from, as the audit log records it: the client's
/// address (after `trusted_proxies`) and its user agent.
pub fn origin(request: &Request, client: &Client) -> Origin {
    Origin::request(client.ip, request.header("User-Agent"))
}

/// Checks that the backends answer, for `/healthz`; `Err` says what failed.
pub type Health = Box<dyn Fn() -> Result<(), Unhealthy> + Send + Sync>;

/// Why `/healthz` answers `503`.
#[derive(Debug, Clone)]
pub struct Unhealthy {
    /// What the response says: the backend and what is wrong with it, in a
    /// few fixed words (no paths, no server messages).
    pub reason: &'static str,
    /// The full cause, for the log.
    pub detail: String,
}

/// Runs `f` with the request's session, then saves what changed and adds
/// the `Set-Cookie` header. When `f` fails, its buffered changes are dropped.
///
/// # Errors
///
/// `f`'s error, or a store failure while loading or saving.
pub fn with_session(
    state: &State,
    request: &Request,
    client: &Client,
    f: impl FnOnce(&Session<'_>) -> Result<Response, WebError>,
) -> Result<Response, WebError> {
    let info = RequestInfo {
        cookie_header: request.header("Cookie"),
        https: client.https,
        user_agent: request.header("User-Agent"),
        ip: Some(crate::logging::ip_text(client.ip)),
    };
    state.sessions.handle_with(info, f)
}
