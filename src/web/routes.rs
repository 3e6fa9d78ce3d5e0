//! The route table: method and path to handler. Also the checks every
//! route passes first: fetch metadata, and for a form its CSRF token.

use rouille::{Request, Response};

use super::error::WebError;
use super::form::{self, Form};
use super::shared::Result;
use super::state::State;
use super::{account, admin, api, assets, dashboard, factors, gate, ops, setup, signin};
use crate::auth::csrf;
use crate::auth::fetch::FetchMetadata;
use crate::auth::proxy::Client;
use crate::logging;

/// The CSRF token a form route takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// The signed double-submit cookie's token: forms shown to visitors
    /// who may have no session yet (sign-in and its steps, setup, sign-up).
    Anonymous,
    /// The token bound to the session: the forms of a signed-in visitor.
    Session,
}

type Handler = fn(&State, &Request, &Client) -> Result<Response>;

/// Every form route (a `POST` outside the JSON API): its path, the token it
/// takes and its handler. [`route`] checks the token before the handler
/// runs (see [`token_first`]).
const FORMS: &[(&str, Token, Handler)] = &[
    ("/login", Token::Anonymous, signin::post_login),
    ("/login/second", Token::Anonymous, factors::post_second),
    ("/login/enrol", Token::Anonymous, factors::post_enrol),
    (
        "/login/passkey/options",
        Token::Anonymous,
        factors::post_signin_options,
    ),
    (
        "/login/passkey",
        Token::Anonymous,
        factors::post_signin_passkey,
    ),
    (
        "/login/second/passkey/options",
        Token::Anonymous,
        factors::post_second_options,
    ),
    (
        "/login/second/passkey",
        Token::Anonymous,
        factors::post_second_passkey,
    ),
    (
        "/login/enrol/passkey/options",
        Token::Anonymous,
        factors::post_register_options,
    ),
    (
        "/login/enrol/passkey",
        Token::Anonymous,
        factors::post_register,
    ),
    ("/setup", Token::Anonymous, setup::post_setup),
    ("/register", Token::Anonymous, setup::post_register),
    ("/logout", Token::Session, signin::post_logout),
    (
        "/account/sessions/end",
        Token::Session,
        account::post_end_session,
    ),
    (
        "/account/sessions/end-others",
        Token::Session,
        account::post_end_others,
    ),
    ("/account/password", Token::Session, account::post_password),
    ("/account/totp", Token::Session, factors::post_totp_start),
    (
        "/account/totp/confirm",
        Token::Session,
        factors::post_totp_confirm,
    ),
    (
        "/account/totp/remove",
        Token::Session,
        factors::post_totp_remove,
    ),
    ("/account/recovery", Token::Session, factors::post_recovery),
    (
        "/account/passkeys/options",
        Token::Session,
        factors::post_register_options,
    ),
    ("/account/passkeys", Token::Session, factors::post_register),
    (
        "/account/passkeys/remove",
        Token::Session,
        factors::post_passkey_remove,
    ),
    ("/admin/users", Token::Session, admin_action),
    ("/admin/users/password", Token::Session, admin_action),
    ("/admin/users/disable", Token::Session, admin_action),
    ("/admin/users/enable", Token::Session, admin_action),
    ("/admin/users/grant-admin", Token::Session, admin_action),
    ("/admin/users/revoke-admin", Token::Session, admin_action),
    ("/admin/users/delete", Token::Session, admin_action),
    ("/admin/users/reset-2fa", Token::Session, admin_action),
    ("/admin/sessions/end", Token::Session, admin_action),
];

fn admin_action(state: &State, request: &Request, client: &Client) -> Result<Response> {
    admin::post_action(state, request, client, &request.url())
}

/// Every form route's path and the token it takes (for the test that
/// walks them all).
#[doc(hidden)]
pub fn form_routes() -> impl Iterator<Item = (&'static str, Token)> {
    FORMS.iter().map(|(path, token, _)| (*path, *token))
}

/// Dispatches on method and path.
///
/// # Errors
///
/// Whatever the handler returns.
pub fn route(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let path = request.url();
    let method = request.method();
    let get = method == "GET" || method == "HEAD";
    let post = method == "POST";
    check_fetch_metadata(request, &path, post)?;
    if path == "/register" && !state.allow_registration {
        // A closed sign-up is no route at all, for every method: not a
        // form that refuses.
        return Err(WebError::NotFound);
    }
    let form = FORMS.iter().find(|(p, ..)| post && *p == path);
    if let Some((_, token, handler)) = form {
        let request = token_first(state, request, *token)?;
        return handler(state, &request, client);
    }
    // A new form route goes in `FORMS`, never here, so that its token is
    // checked first; the POSTs below are the JSON API's.
    match path.as_str() {
        "/healthz" if get => Ok(ops::healthz(state)),
        "/metrics" if get => ops::metrics(state, request),
        "/" if get => dashboard::get_dashboard(state, request, client),
        "/login" if get => signin::get_login(state, request, client),
        "/login/second" if get => factors::get_second(state, request, client),
        "/login/enrol" if get => factors::get_enrol(state, request, client),
        "/logout" if get => signin::get_logout(state, request, client),
        "/auth/verify" if get => gate::get_verify(state, request, client),
        "/auth/forward" if get => gate::get_forward(state, request, client),
        "/setup" if get => setup::get_setup(state, request, client),
        "/register" if get => setup::get_register(state, request, client),
        "/account" if get => account::get_account(state, request, client),
        "/api/login/second" if post => api::post_login_second(state, request, client),
        "/api/login" if post => api::post_login(state, request, client),
        "/api/logout" if post => api::post_logout(state, request, client),
        "/api/session" if get => api::get_session(state, request, client),
        "/api/session/data" if method == "PATCH" => api::patch_data(state, request, client),
        "/api/openapi.yaml" if get => Ok(api::openapi()),
        "/api/login" | "/api/logout" | "/api/login/second" => {
            Err(WebError::MethodNotAllowed("POST"))
        }
        "/api/session" | "/api/openapi.yaml" => Err(WebError::MethodNotAllowed("GET, HEAD")),
        "/api/session/data" => Err(WebError::MethodNotAllowed("PATCH")),
        "/admin" if get => admin::get_admin(state, request, client),
        "/admin/users/delete" if get => admin::get_delete_user(state, request, client),
        "/" | "/healthz" | "/auth/verify" | "/auth/forward" | "/account" | "/admin" => {
            Err(WebError::MethodNotAllowed("GET, HEAD"))
        }
        "/login"
        | "/logout"
        | "/setup"
        | "/register"
        | "/admin/users/delete"
        | "/login/second"
        | "/login/enrol" => Err(WebError::MethodNotAllowed("GET, HEAD, POST")),
        p if p.starts_with("/login/") => Err(WebError::MethodNotAllowed("POST")),
        p if p.starts_with("/account/") || p.starts_with("/admin/") => {
            if post {
                Err(WebError::NotFound)
            } else {
                Err(WebError::MethodNotAllowed("POST"))
            }
        }
        p => match p.strip_prefix("/assets/") {
            Some(name) if get => assets::get(name).ok_or(WebError::NotFound),
            Some(_) => Err(WebError::MethodNotAllowed("GET, HEAD")),
            None => Err(WebError::NotFound),
        },
    }
}

/// Checks a form's CSRF token before anything else looks at the request,
/// and hands on the request with its body still to be read.
///
/// A page elsewhere can make a browser POST any of these forms with its
/// cookies. Refused here, such a request never reaches code that reads the
/// form's fields, finds the user, looks at the host or answers by what it
/// found (a `400` for a host that is an address, a `303` to sign in, a
/// `404` for a closed sign-up): whatever the route, it gets the same `403`.
/// Only what finding the token needs comes first: the content type (`415`,
/// from the header alone), the body cap (`413`) and the form's syntax
/// (`400`).
///
/// A session-bound token is checked against the sessions the cookie names
/// (their signatures only, no store read); the handler checks it once more
/// against the session it loads.
///
/// # Errors
///
/// [`WebError::Csrf`] for a missing or wrong token, and those of reading
/// and parsing the form.
fn token_first(state: &State, request: &Request, token: Token) -> Result<Request> {
    let body = Form::body_of(request)?;
    let submitted = Form::parse(&body)?;
    let submitted = submitted.get(csrf::FIELD);
    let engine = state.engine();
    let cookies = request.header("Cookie");
    let valid = match token {
        Token::Anonymous => csrf::check_anonymous_header(engine.signer(), cookies, submitted),
        Token::Session => cookies.is_some_and(|header| {
            engine
                .cookie_keys(header)
                .iter()
                .any(|key| csrf::check_session(engine.signer(), key, submitted))
        }),
    };
    if valid {
        Ok(form::with_body(request, body))
    } else {
        Err(WebError::Csrf)
    }
}

/// Pages that carry the session's CSRF token: a script must not read them.
const TOKEN_PAGES: &[&str] = &[
    "/account",
    "/admin",
    "/admin/users/delete",
    "/logout",
    "/login/second",
    "/login/enrol",
];

/// Refuses what the browser says is not a top-level navigation: a form
/// POST to one of gatehouse's own pages sent by `fetch`/XHR, from a frame
/// or from another origin, and a script's read of a page that carries the
/// session's CSRF token. The threat is a script served by a prefix-mode app
/// (same origin as gatehouse) driving `/admin`; see `auth::fetch`. The JSON
/// API is meant for scripts and is left to its own checks.
fn check_fetch_metadata(request: &Request, path: &str, post: bool) -> Result<()> {
    let meta = FetchMetadata {
        site: request.header("Sec-Fetch-Site"),
        mode: request.header("Sec-Fetch-Mode"),
        dest: request.header("Sec-Fetch-Dest"),
    };
    let verdict = if path.starts_with("/api/")
        || path.ends_with("/passkey/options")
        || path == "/account/passkeys/options"
    {
        // The passkey options are fetched by the page's script, with the
        // form's CSRF token; they change nothing but the ceremony's
        // challenge (in the session, or in the sign-in's own cookie).
        Ok(())
    } else if post {
        meta.check_form_post()
    } else if request.method() == "GET" || request.method() == "HEAD" {
        if TOKEN_PAGES.contains(&path) {
            meta.check_page()
        } else {
            Ok(())
        }
    } else {
        Ok(())
    };
    verdict.map_err(|why| {
        logging::line(&format!(
            "refused request method={} path={} reason={why:?} sec_fetch_site={} sec_fetch_mode={} sec_fetch_dest={}",
            logging::quote(request.method()),
            logging::quote(path),
            logging::quote(meta.site.unwrap_or("-")),
            logging::quote(meta.mode.unwrap_or("-")),
            logging::quote(meta.dest.unwrap_or("-")),
        ));
        WebError::Forbidden
    })
}
