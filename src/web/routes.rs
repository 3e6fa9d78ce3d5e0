//! The route table: method and path to handler. Also the fetch-metadata
//! check every route passes first.

use rouille::{Request, Response};

use super::error::WebError;
use super::shared::Result;
use super::state::State;
use super::{account, admin, api, assets, dashboard, factors, gate, ops, setup, signin};
use crate::auth::fetch::FetchMetadata;
use crate::auth::proxy::Client;
use crate::logging;

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
    match path.as_str() {
        "/healthz" if get => Ok(ops::healthz(state)),
        "/metrics" if get => ops::metrics(state, request),
        "/" if get => dashboard::get_dashboard(state, request, client),
        "/login" if get => signin::get_login(state, request, client),
        "/login" if post => signin::post_login(state, request, client),
        "/login/second" if get => factors::get_second(state, request, client),
        "/login/second" if post => factors::post_second(state, request, client),
        "/login/enrol" if get => factors::get_enrol(state, request, client),
        "/login/enrol" if post => factors::post_enrol(state, request, client),
        "/login/passkey/options" if post => factors::post_signin_options(state, request, client),
        "/login/passkey" if post => factors::post_signin_passkey(state, request, client),
        "/login/second/passkey/options" if post => {
            factors::post_second_options(state, request, client)
        }
        "/login/second/passkey" if post => factors::post_second_passkey(state, request, client),
        "/login/enrol/passkey/options" if post => {
            factors::post_register_options(state, request, client)
        }
        "/login/enrol/passkey" if post => factors::post_register(state, request, client),
        "/logout" if get => signin::get_logout(state, request, client),
        "/logout" if post => signin::post_logout(state, request, client),
        "/auth/verify" if get => gate::get_verify(state, request, client),
        "/auth/forward" if get => gate::get_forward(state, request, client),
        "/setup" if get => setup::get_setup(state, request, client),
        "/setup" if post => setup::post_setup(state, request, client),
        "/register" if get => setup::get_register(state, request, client),
        "/register" if post => setup::post_register(state, request, client),
        "/account" if get => account::get_account(state, request, client),
        "/account/sessions/end" if post => account::post_end_session(state, request, client),
        "/account/sessions/end-others" if post => account::post_end_others(state, request, client),
        "/account/password" if post => account::post_password(state, request, client),
        "/account/totp" if post => factors::post_totp_start(state, request, client),
        "/account/totp/confirm" if post => factors::post_totp_confirm(state, request, client),
        "/account/totp/remove" if post => factors::post_totp_remove(state, request, client),
        "/account/recovery" if post => factors::post_recovery(state, request, client),
        "/account/passkeys/options" if post => {
            factors::post_register_options(state, request, client)
        }
        "/account/passkeys" if post => factors::post_register(state, request, client),
        "/account/passkeys/remove" if post => factors::post_passkey_remove(state, request, client),
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
        "/admin/users"
        | "/admin/users/password"
        | "/admin/users/disable"
        | "/admin/users/enable"
        | "/admin/users/grant-admin"
        | "/admin/users/revoke-admin"
        | "/admin/users/delete"
        | "/admin/users/reset-2fa"
        | "/admin/sessions/end"
            if post =>
        {
            admin::post_action(state, request, client, &path)
        }
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
        // form's CSRF token; they change nothing but the session's challenge.
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
