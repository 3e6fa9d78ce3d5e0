//! The authorization endpoint (OpenID Connect Core §3.1.2): a browser
//! sent by a relying party, with the request in the query (GET) or a
//! form (POST).
//!
//! - Until the client and its redirect URI are known good, an error is a
//!   page here, never a redirect: redirecting to an unchecked URI is how
//!   an open redirector hands out codes.
//! - After, an error goes back to the client's redirect URI with `error`,
//!   `error_description`, `state` and `iss`.
//! - A signed-out visitor goes to the real sign-in page with the request
//!   as its `next`, and comes back here (a GET) to finish; a session that
//!   lacks the second factor the client needs goes to the second step the
//!   same way.
//! - A user the client does not admit sees a refusal page naming the
//!   app, never a code.

use rouille::{Request, Response};

use super::provider;
use crate::auth::fetch::FetchMetadata;
use crate::auth::proxy::Client;
use crate::oidc::grants::{
    Authentication, Authorization, AuthorizationError, AuthorizationRequest, Decision,
};
use crate::oidc::{OidcError, Provider};
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::principal;
use crate::web::respond::{encode, html, see_other};
use crate::web::state::{State, with_session};
use crate::web::{sso, views};

/// `GET` the authorization endpoint: the request in the query.
pub(super) fn get_authorize(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let query = request.raw_query_string();
    authorize(state, request, client, Form::parse(query.as_bytes()))
}

/// `POST` the authorization endpoint: the request as a form.
pub(super) fn post_authorize(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    let form = match Form::from_request(request) {
        Err(WebError::TooLarge) => return Err(WebError::TooLarge),
        other => other,
    };
    authorize(state, request, client, form)
}

/// The request's parameters, each at most once (the form parser refuses
/// a repeated one: OAuth 2.0 §3.1 makes that an error).
fn parameters(form: &Form) -> AuthorizationRequest {
    let get = |name: &str| form.get(name).map(str::to_owned);
    AuthorizationRequest {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        response_type: get("response_type"),
        scope: get("scope"),
        state: get("state"),
        nonce: get("nonce"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        prompt: get("prompt"),
        max_age: get("max_age"),
        login_hint: get("login_hint"),
        response_mode: get("response_mode"),
        request: get("request"),
        request_uri: get("request_uri"),
    }
}

/// The request again as a GET of this endpoint, for the sign-in page's
/// `next` (a POSTed request comes back as a GET), every parameter kept:
/// `prompt=login` and `max_age` too, which the moment kept in the session
/// (see [`Fresh`]) answers when the request comes back.
fn again(req: &AuthorizationRequest) -> String {
    let fields = [
        ("client_id", &req.client_id),
        ("redirect_uri", &req.redirect_uri),
        ("response_type", &req.response_type),
        ("scope", &req.scope),
        ("state", &req.state),
        ("nonce", &req.nonce),
        ("code_challenge", &req.code_challenge),
        ("code_challenge_method", &req.code_challenge_method),
        ("max_age", &req.max_age),
        ("login_hint", &req.login_hint),
        ("response_mode", &req.response_mode),
    ];
    let mut url = String::from(crate::oidc::discovery::AUTHORIZE);
    let mut sep = '?';
    for (name, value) in fields {
        if let Some(v) = value {
            url.push(sep);
            url.push_str(name);
            url.push('=');
            url.push_str(&encode(v));
            sep = '&';
        }
    }
    let prompts: Vec<&str> = req
        .prompt
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .filter(|p| !p.is_empty())
        .collect();
    if !prompts.is_empty() {
        url.push(sep);
        url.push_str("prompt=");
        url.push_str(&encode(&prompts.join(" ")));
    }
    url
}

/// The longest request the sign-in page carries back as its `next` (the
/// sign-in page's own limit on a local `next`, less room for encoding).
const MAX_ROUND_TRIP: usize = 2000;

/// Sends the browser to `page` (the sign-in, or its second step) with the
/// request as `next`, to come back here and finish. A request too long to
/// carry is refused here as a page, rather than dropped by the sign-in
/// page's own limit and the user left at the start page, signed in and
/// lost.
fn round_trip(page: &str, req: &AuthorizationRequest) -> Response {
    let next = again(req);
    if next.len() > MAX_ROUND_TRIP {
        return refused_page(
            400,
            &OidcError::InvalidRequest(
                "the request is too long to carry through the sign-in".into(),
            ),
        );
    }
    see_other(&format!("{page}?next={}", encode(&next)))
}

/// The page for a request that cannot go back to its client.
fn refused_page(status: u16, e: &OidcError) -> Response {
    html(views::error_page(
        status,
        &format!("This sign-in request cannot be completed ({e})."),
    ))
    .with_status_code(status)
    .with_unique_header("Cache-Control", "no-store")
}

fn authorize(
    state: &State,
    request: &Request,
    client: &Client,
    form: Result<Form>,
) -> Result<Response> {
    let provider = provider(state)?;
    // Only a top-level navigation (from anywhere: the relying party's
    // page sends it) is answered. A script on gatehouse's origin (an app
    // proxied in prefix mode) must not drive the flow with the visitor's
    // cookie and catch the code on its way (see `auth::fetch`), nor a
    // frame run it out of the visitor's sight.
    let meta = FetchMetadata {
        site: request.header("Sec-Fetch-Site"),
        mode: request.header("Sec-Fetch-Mode"),
        dest: request.header("Sec-Fetch-Dest"),
    };
    if let Err(why) = meta.check_page() {
        crate::logging::line(&format!(
            "oidc authorization refused reason={why:?} (not a top-level navigation)"
        ));
        return Ok(refused_page(
            403,
            &OidcError::InvalidRequest("only a top-level navigation may ask for a code".into()),
        ));
    }
    let form = match form {
        Ok(f) => f,
        Err(e) => {
            return Ok(refused_page(
                400,
                &OidcError::InvalidRequest(format!(
                    "the request cannot be read: {}",
                    e.public_message()
                )),
            ));
        }
    };
    let req = parameters(&form);
    let authz = match provider.authorization(&req) {
        Ok(a) => a,
        // A store that fails is no bad request.
        Err(AuthorizationError::Show(e @ (OidcError::Db(_) | OidcError::Key(_)))) => {
            return Err(WebError::provider_fault(e));
        }
        Err(AuthorizationError::Show(e)) => {
            crate::logging::line(&format!(
                "oidc authorization refused client={} error={}",
                crate::logging::quote(req.client_id.as_deref().unwrap_or("")),
                crate::logging::quote(&e.to_string())
            ));
            return Ok(refused_page(400, &e));
        }
        Err(e) => {
            return Ok(match e.redirect_url(provider.issuer()) {
                Some(url) => see_other(&url),
                None => refused_page(400, &OidcError::InvalidRequest("refused".into())),
            });
        }
    };
    with_session(state, request, client, |session| {
        decide(state, provider, session, &req, &authz)
    })
}

/// What the signed-in session (or its absence) makes of the checked
/// request.
fn decide(
    state: &State,
    provider: &Provider,
    session: &crate::session::Session<'_>,
    req: &AuthorizationRequest,
    authz: &Authorization,
) -> Result<Response> {
    let now = crate::clock::now();
    let who = principal::of_session(state, session)?;
    // A request that wants a fresh sign-in (`prompt=login`, `max_age`)
    // counts one from the moment it first asked: that moment is kept in
    // the session, with the request's fingerprint, across the round trip
    // to the sign-in (or the password again) and back. The same request
    // opened again without that round trip (its URL copied out of the
    // address bar) finds no sign-in since, and is sent to give one.
    let fresh = Provider::wants_fresh(authz).then(|| fingerprint(req));
    let requested_at = match (&fresh, session.get::<Fresh>(OIDC_FRESH)) {
        (Some(this), Some(kept)) if kept.request == *this && kept.at <= now => kept.at,
        _ => now,
    };
    let auth = who.map(|p| {
        let signed_in = session.record().created_at;
        // The sign-in, and how it was made, when that is fresh enough;
        // else the password given again since (`/oidc/reauth`), which is
        // all that moment proves: the ID token's `amr` then says `pwd`
        // alone.
        let again = session
            .get::<crate::clock::Millis>(crate::accounts::REAUTH_AT)
            .filter(|&at| at <= now && at > signed_in);
        let (auth_time, proved) = match again {
            Some(at)
                if fresh.is_some()
                    && !Provider::fresh_enough(authz, signed_in, requested_at, now)
                    && Provider::fresh_enough(authz, at, requested_at, now) =>
            {
                (at, Some(vec!["pwd".to_owned()]))
            }
            _ => (signed_in, None),
        };
        Authentication {
            user_id: p.user.id,
            // Filled in below, once a code is to be issued (a session that
            // is only asked about stores nothing new).
            sid: String::new(),
            auth_time,
            // The client's `two_factor` is judged on the session, as the
            // gate judges apps; the ID token says only what `auth_time`
            // proved.
            methods: principal::session_methods(session),
            proved,
            groups: p.groups,
        }
    });
    let back = |error: OidcError| {
        AuthorizationError::Redirect {
            redirect_uri: authz.redirect_uri.clone(),
            state: authz.state.clone(),
            error,
        }
        .redirect_url(provider.issuer())
        .map_or_else(|| see_other("/"), |url| see_other(&url))
    };
    let decision = provider
        .decide(authz, auth.as_ref(), requested_at, now)
        .map_err(WebError::provider_fault)?;
    match decision {
        Decision::IssueCode => {
            let Some(mut auth) = auth else {
                return Ok(back(OidcError::LoginRequired("nobody is signed in".into())));
            };
            auth.sid = sso::sid(session)?;
            if fresh.is_some() {
                session.remove(OIDC_FRESH)?;
            }
            match provider.issue_code(authz, &auth, requested_at, now) {
                Ok(url) => Ok(see_other(&url)),
                Err(e @ (OidcError::Db(_) | OidcError::Key(_))) => Err(WebError::provider_fault(e)),
                Err(e) => Ok(back(e)),
            }
        }
        Decision::SignIn => {
            if let Some(request) = fresh {
                session.insert(OIDC_FRESH, Fresh { at: now, request })?;
            }
            // Signed out: the sign-in. Signed in, but longer ago than
            // `max_age` allows, or before a `prompt=login`: the password
            // again (the sign-in page would pass a signed-in visitor
            // straight on).
            Ok(round_trip(
                if auth.is_none() {
                    "/login"
                } else {
                    "/oidc/reauth"
                },
                req,
            ))
        }
        Decision::SecondFactor => Ok(round_trip("/login/second", req)),
        // `prompt=none` shows nothing (OpenID Connect Core §3.1.2.1): the
        // refusal goes back to the client as `access_denied`.
        Decision::Refuse if authz.prompt_none => Ok(back(OidcError::AccessDenied(
            "this user may not use this app".into(),
        ))),
        Decision::Refuse => {
            // The name the refusal shows: the client was read just now.
            let client = provider.client(&authz.client_id).ok().flatten();
            let name = client
                .as_ref()
                .map_or(authz.client_id.as_str(), |c| c.name.as_str());
            crate::logging::line(&format!(
                "oidc access refused client={} user_id={}",
                crate::logging::quote(&authz.client_id),
                auth.as_ref().map_or(0, |a| a.user_id)
            ));
            Ok(html(views::error_page(
                403,
                &format!("Your account may not use {name}. Ask an administrator for access."),
            ))
            .with_status_code(403)
            .with_unique_header("Cache-Control", "no-store"))
        }
        Decision::Redirect(e) => Ok(back(e)),
    }
}

/// A request that wants a fresh sign-in, as the session keeps it across
/// the round trip: when it first asked, and its fingerprint.
#[derive(serde::Serialize, serde::Deserialize)]
struct Fresh {
    at: crate::clock::Millis,
    request: String,
}

/// The session data key of [`Fresh`].
const OIDC_FRESH: &str = crate::session::keys::OIDC_FRESH;

/// A request's fingerprint: SHA-256 of all its parameters, as the round
/// trip carries them.
fn fingerprint(req: &AuthorizationRequest) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(again(req)))
}
