//! The gate: forward auth for nginx (`/auth/verify`) and for Caddy and
//! Traefik (`/auth/forward`), and the built-in reverse proxy that serves
//! apps under a path prefix or on their own host name.
//!
//! | file | owns |
//! | --- | --- |
//! | `forward_auth.rs` | `/auth/verify` and `/auth/forward`: what a trusted proxy says about the original request, and the answer |
//! | `proxy.rs` | the built-in reverse proxy: which app a request is for, the request forwarded, the answer passed back |
//! | `identity.rs` | the identity headers both send, built once, and the signed `X-Gatehouse-Identity` |
//! | `inflight.rs` | how many proxied requests may wait on upstreams at once, in all and per user |
//!
//! Every decision (which app, which nested prefix) is made on the one
//! normalised target of [`crate::auth::path`]; who may pass is asked of
//! [`crate::auth::access::decide`] in one place (`ask`), and the proxy
//! forwards exactly the target it was asked about under the app's
//! configured upstream.

mod forward_auth;
mod identity;
mod inflight;
mod proxy;

use rouille::{Request, Response};

use super::error::Result;
use super::principal::{self, Asker};
use super::redirects::origin;
use super::respond::{encode, html};
use super::router::Route;
use super::state::State;
use super::views;
use crate::auth::access::{self, Decision, Verdict};
use crate::auth::apps::App;
use crate::auth::proxy::Client;
use crate::identity::{Principal, Target};
use crate::session::Session;

pub use identity::identity_header;
pub use inflight::InFlight;
pub use proxy::client;
pub(super) use proxy::{proxied_app, proxy};

/// The forward-auth paths (the built-in proxy answers before any route).
pub(super) const ROUTES: &[Route] = &[
    Route::at("/auth/verify").get(forward_auth::get_verify),
    Route::at("/auth/forward").get(forward_auth::get_forward),
];

/// Who asks, and what the rules make of their request.
struct Asked {
    /// The principal, when someone is signed in.
    who: Option<Principal>,
    /// The decision, with its reason.
    verdict: Verdict,
    /// Credentials came (a token, Basic) that do not let this request
    /// through: it is answered `401` with a challenge, never sent to a
    /// sign-in page.
    challenge: bool,
}

impl Asked {
    /// The `401` or `403` for a request whose credentials came without a
    /// session and do not let it through, if this is one: `401` with the
    /// challenges for credentials that prove no one here (unknown, bad,
    /// a token for other apps), `403` for someone the rules keep out (and
    /// for an app that needs a second factor, which a token or a password
    /// alone never gives). `None` for a browser's request, which the
    /// caller answers as it does.
    #[inline]
    fn sessionless_refusal(&self) -> Option<Response> {
        if self.verdict.decision == Decision::Allow {
            return None;
        }
        if self.challenge {
            return Some(challenge());
        }
        match &self.who {
            Some(who) if who.sessionless() => Some(
                Response::text("this token or password may not open this").with_status_code(403),
            ),
            _ => None,
        }
    }
}

/// `401` asking for a token (or Basic's pair), the same for every reason.
fn challenge() -> Response {
    Response::text("a valid token is needed")
        .with_status_code(401)
        .with_additional_header("WWW-Authenticate", r#"Bearer realm="gatehouse""#)
        .with_additional_header(
            "WWW-Authenticate",
            r#"Basic realm="gatehouse", charset="UTF-8""#,
        )
        .with_additional_header("Cache-Control", "no-store")
}

/// Asks the one access decision about a request for `app` (`None`: one
/// that matches no app): the principal of this request, and `path` (the
/// path the app sees, normalised) with `method` from `client`.
///
/// # Errors
///
/// Store errors.
#[inline]
fn ask(
    state: &State,
    request: &Request,
    session: &Session<'_>,
    app: Option<&App>,
    path: &str,
    method: &str,
    client: &Client,
) -> Result<Asked> {
    let (who, refused) = match principal::of_request(state, request, session, app, client.ip)? {
        Asker::Nobody => (None, false),
        Asker::Someone(p) => (Some(p), false),
        Asker::Refused => (None, true),
    };
    let target = Target {
        app: app.map(|a| a.name.as_str()),
        path,
        method,
        client: client.ip,
    };
    let rules = state.apps.rules_for(app);
    let mut verdict = access::decide(rules, who.as_ref(), &target);
    // A method override is judged too, and the stricter answer stands: a
    // `GET` with `X-HTTP-Method-Override: DELETE` reached an upstream that
    // honours it past a rule denying `DELETE` (a hostile pass).
    for name in access::METHOD_OVERRIDES {
        for value in request
            .headers()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
        {
            let other = value.trim().to_ascii_uppercase();
            if other.is_empty() || other == method {
                continue;
            }
            let as_other = access::decide(
                rules,
                who.as_ref(),
                &Target {
                    method: &other,
                    ..target
                },
            );
            if as_other.decision.strictness() > verdict.decision.strictness() {
                verdict = as_other;
            }
        }
    }
    // Someone whose token is for other apps is judged as nobody (see
    // `access::decide`): asked to authenticate, they get the challenge.
    let challenge = refused || (who.is_some() && verdict.decision == Decision::SignIn);
    Ok(Asked {
        who,
        verdict,
        challenge,
    })
}

/// Where a browser goes to sign in, coming back to `next` afterwards.
fn login_url(state: &State, request: &Request, client: &Client, next: &str) -> String {
    let base = origin(state, request, client)
        .unwrap_or_else(|| format!("{}://localhost", client.scheme()));
    format!("{base}/login?next={}", encode(next))
}

/// The page for a signed-in user an app is not open to.
fn forbidden_page() -> Response {
    html(views::error_page(
        403,
        "You are signed in, but this app is not open to you. Ask an administrator.",
    ))
    .with_status_code(403)
}
