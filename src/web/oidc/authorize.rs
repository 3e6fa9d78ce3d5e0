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
/// `next` (a POSTed request comes back as a GET). `prompt=login` and
/// `max_age` are left out: the round trip is the fresh sign-in they ask
/// for (a sign-in, a second step, or the password again), which the ID
/// token's `auth_time` then shows; kept, they would ask for it again (with
/// `max_age=0`, for ever).
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
        .filter(|p| !p.is_empty() && *p != "login")
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
    let auth = who.map(|p| Authentication {
        user_id: p.user.id,
        // Filled in below, once a code is to be issued (a session that
        // is only asked about stores nothing new).
        sid: String::new(),
        auth_time: auth_time(session),
        methods: principal::session_methods(session),
        groups: p.groups,
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
    // `prompt=login` counts a sign-in from this request on; the sign-in
    // page's round trip drops it from the request it comes back with.
    let requested_at = now;
    match provider.decide(authz, auth.as_ref(), requested_at, now) {
        Decision::IssueCode => {
            let Some(mut auth) = auth else {
                return Ok(back(OidcError::LoginRequired("nobody is signed in".into())));
            };
            auth.sid = sso::sid(session)?;
            match provider.issue_code(authz, &auth, requested_at, now) {
                Ok(url) => Ok(see_other(&url)),
                Err(e @ (OidcError::Db(_) | OidcError::Key(_))) => {
                    if e.is_unavailable() {
                        Err(WebError::Unavailable(e.to_string()))
                    } else {
                        Err(WebError::Internal(e.to_string()))
                    }
                }
                Err(e) => Ok(back(e)),
            }
        }
        Decision::SignIn if auth.is_none() => Ok(round_trip("/login", req)),
        // Signed in, but longer ago than `max_age` allows, or `prompt=login`:
        // the password again (the sign-in page would pass a signed-in
        // visitor straight on), and back here without `prompt=login`.
        Decision::SignIn => Ok(round_trip("/oidc/reauth", req)),
        Decision::SecondFactor => Ok(round_trip("/login/second", req)),
        // `prompt=none` shows nothing (OpenID Connect Core §3.1.2.1): the
        // refusal goes back to the client as `access_denied`.
        Decision::Refuse if authz.prompt_none => Ok(back(OidcError::AccessDenied(
            "this user may not use this app".into(),
        ))),
        Decision::Refuse => {
            let name = provider
                .clients()
                .find(&authz.client_id)
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

/// When the session's user last authenticated: signed in (the session's
/// sign-in time, renewed by a second step), or gave their password again
/// for an app that asked (`REAUTH_AT`, see `reauth.rs`), whichever is
/// later.
pub(super) fn auth_time(session: &crate::session::Session<'_>) -> crate::clock::Millis {
    let signed_in = session.record().created_at;
    session
        .get::<crate::clock::Millis>(crate::accounts::REAUTH_AT)
        .filter(|&at| at <= crate::clock::now())
        .map_or(signed_in, |at| at.max(signed_in))
}
