//! Route table, the helpers handlers share, and the sign-in pages.
//! Handlers are thin: they read the request, call `users`, `auth` and the
//! session, and pick a view.

use rouille::{Request, Response};

use super::form::Form;
use super::views::{self, DashboardView, LoginView, Viewer};
use super::{State, WebError, account, admin, api, assets, gate, setup, with_session};
use crate::auth::fetch::FetchMetadata;
use crate::auth::proxy::Client;
use crate::auth::{csrf, redirect};
use crate::logging;
use crate::session::{CookieOptions, SameSite, Session, SessionError, SessionKey, cookie};
use crate::users::{Login, MAX_USERNAME, User};

pub(super) type Result<T> = std::result::Result<T, WebError>;

/// The generic message for every failed sign-in: it must not tell an
/// unknown user from a wrong password or a disabled account.
const LOGIN_FAILED: &str = "Wrong username or password.";

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
        "/healthz" if get => Ok(healthz(state)),
        "/metrics" if get => metrics(state, request),
        "/" if get => get_dashboard(state, request, client),
        "/login" if get => get_login(state, request, client),
        "/login" if post => post_login(state, request, client),
        "/logout" if get => get_logout(state, request, client),
        "/logout" if post => post_logout(state, request, client),
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
        "/api/login" if post => api::post_login(state, request, client),
        "/api/logout" if post => api::post_logout(state, request, client),
        "/api/session" if get => api::get_session(state, request, client),
        "/api/session/data" if method == "PATCH" => api::patch_data(state, request, client),
        "/api/openapi.yaml" if get => Ok(api::openapi()),
        "/api/login" | "/api/logout" => Err(WebError::MethodNotAllowed("POST")),
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
        | "/admin/sessions/end"
            if post =>
        {
            admin::post_action(state, request, client, &path)
        }
        "/" | "/healthz" | "/auth/verify" | "/auth/forward" | "/account" | "/admin" => {
            Err(WebError::MethodNotAllowed("GET, HEAD"))
        }
        "/login" | "/logout" | "/setup" | "/register" | "/admin/users/delete" => {
            Err(WebError::MethodNotAllowed("GET, HEAD, POST"))
        }
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
const TOKEN_PAGES: &[&str] = &["/account", "/admin", "/admin/users/delete", "/logout"];

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
    let verdict = if path.starts_with("/api/") {
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

pub(super) fn html(markup: maud::Markup) -> Response {
    Response::html(markup.into_string())
}

pub(super) fn see_other(location: &str) -> Response {
    Response::redirect_303(location.to_owned())
}

pub(super) fn viewer(user: &User) -> Viewer<'_> {
    Viewer {
        username: &user.username,
        is_admin: user.is_admin,
    }
}

/// The signed-in, enabled user of this session, if any. Read on every
/// request, so a change of rights applies at once.
///
/// Rights are read on every request: from the row the store read together
/// with the session when it can (one read), else from the users table.
pub(super) fn current_user(state: &State, session: &Session<'_>) -> Result<Option<User>> {
    let Some(id) = session.user_id() else {
        return Ok(None);
    };
    let user = match session.principal() {
        Some(user) => Some(user),
        None => state.users.find_by_id(id)?,
    };
    Ok(user.filter(|u| !u.disabled))
}

/// A signed-in visitor: the user and the stored session key.
pub(super) struct SignedIn {
    pub user: User,
    pub key: SessionKey,
}

/// The signed-in visitor, or the redirect to send an anonymous one to.
pub(super) fn signed_in(
    state: &State,
    session: &Session<'_>,
    request: &Request,
) -> Result<std::result::Result<SignedIn, Response>> {
    match (current_user(state, session)?, session.key()) {
        (Some(user), Some(key)) => Ok(Ok(SignedIn { user, key })),
        _ => {
            let next = redirect::or_root(Some(request.raw_url()));
            Ok(Err(see_other(&format!("/login?next={}", encode(next)))))
        }
    }
}

/// Everything but RFC 3986's unreserved characters is encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Runs a signed-in form POST: reads the form, sends anonymous visitors to
/// sign in, refuses a missing or wrong CSRF token, then calls `f`.
///
/// # Errors
///
/// Form, CSRF and store errors, or `f`'s.
pub(super) fn signed_in_form(
    state: &State,
    request: &Request,
    client: &Client,
    f: impl FnOnce(&Session<'_>, SignedIn, &Form) -> Result<Response>,
) -> Result<Response> {
    let form = Form::from_request(request)?;
    with_session(state, request, client, |session| {
        let s = match signed_in(state, session, request)? {
            Ok(s) => s,
            Err(redirect) => return Ok(redirect),
        };
        check_session_csrf(state, &s.key, &form)?;
        f(session, s, &form)
    })
}

/// How long this username or IP must wait, if throttled; logs the refusal.
pub(super) fn throttle_wait(
    state: &State,
    username: &str,
    client: &Client,
) -> Result<Option<std::time::Duration>> {
    let Some(wait) = state.throttle.retry_after(username, client.ip)? else {
        return Ok(None);
    };
    let secs = wait.as_secs().max(1);
    log_login(
        state,
        "throttled",
        username,
        client,
        &format!(" retry_after={secs}"),
    );
    Ok(Some(wait))
}

/// Rows per page in the account and admin lists: a user with many
/// sessions, or a deployment with many users, must not make one page huge.
pub(super) const PAGE_SIZE: usize = 50;

/// The 1-based page a query parameter asks for; absent means the first.
///
/// # Errors
///
/// A value that is not a whole number from 1 up (400).
pub(super) fn page_param(request: &Request, name: &str) -> Result<usize> {
    match request.get_param(name) {
        None => Ok(1),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(WebError::BadRequest(
                "The page must be a whole number from 1 up.",
            )),
    }
}

/// One page of `items` (a page past the end shows the last) and where it is.
pub(super) fn paged<T>(items: Vec<T>, page: usize) -> (Vec<T>, views::Pager) {
    let total = items.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages);
    let rows = items
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .collect();
    (rows, views::Pager { page, pages, total })
}

/// Percent-encodes a query value.
pub(super) fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Refuses a signed-in form whose token is not this session's.
pub(super) fn check_session_csrf(state: &State, key: &SessionKey, form: &Form) -> Result<()> {
    if csrf::check_session(state.engine().signer(), key, form.get(csrf::FIELD)) {
        Ok(())
    } else {
        Err(WebError::Csrf)
    }
}

/// The fixed message for a `?done=` code after a redirect (post/redirect/get).
/// Only known codes show anything, so a link cannot put words on our pages.
pub(super) fn notice(request: &Request) -> Option<&'static str> {
    Some(match request.get_param("done")?.as_str() {
        "welcome" => "Your administrator account is ready. Welcome!",
        "registered" => "Your account is ready. Welcome!",
        "session-ended" => "The session has been ended.",
        "others-ended" => "You have been signed out everywhere else.",
        "password-changed" => {
            "Your password has been changed, and your other sessions were signed out."
        }
        "user-created" => "The user has been created.",
        "password-reset" => "The password has been set, and the user's sessions were ended.",
        "user-disabled" => "The user has been disabled and signed out everywhere.",
        "user-enabled" => "The user has been enabled.",
        "admin-granted" => "The user is now an administrator.",
        "admin-revoked" => "The user is no longer an administrator.",
        "user-deleted" => "The user has been deleted.",
        _ => return None,
    })
}

fn healthz(state: &State) -> Response {
    match (state.health)() {
        Ok(()) => Response::text("ok"),
        Err(e) => {
            logging::line(&format!(
                "healthz failed reason={} detail={}",
                logging::quote(e.reason),
                logging::quote(&e.detail)
            ));
            Response::text(e.reason)
                .with_status_code(503)
                .with_additional_header("Retry-After", "5")
        }
    }
}

/// `GET /metrics`: 404 unless enabled; 401 without the configured token.
fn metrics(state: &State, request: &Request) -> Result<Response> {
    let Some(token) = &state.metrics_access else {
        return Err(WebError::NotFound);
    };
    if let Some(token) = token {
        let given = request
            .header("Authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.expose()).into();
        if !ok {
            return Ok(Response::text("a bearer token is required")
                .with_status_code(401)
                .with_additional_header("WWW-Authenticate", "Bearer"));
        }
    }
    let active = state.engine().store().count(crate::clock::now())?;
    let text = state
        .metrics
        .render(i64::try_from(active).unwrap_or(i64::MAX));
    Ok(Response::from_data(
        "text/plain; version=0.0.4; charset=utf-8",
        text,
    ))
}

fn get_dashboard(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        let Some(user) = current_user(state, session)? else {
            return Ok(see_other("/login?next=/"));
        };
        let visits = match session.increment("visits", 1) {
            Ok(n) => n,
            Err(SessionError::Gone) => return Ok(see_other("/login?next=/")),
            Err(e) => return Err(e.into()),
        };
        let links: Vec<(String, String)> = state
            .apps
            .all()
            .iter()
            .filter(|a| a.access.allows(&user.username, user.is_admin))
            .map(|a| (a.name.clone(), a.link()))
            .collect();
        Ok(html(views::dashboard_page(&DashboardView {
            viewer: viewer(&user),
            visits,
            apps: links
                .iter()
                .map(|(name, href)| views::AppLink { name, href })
                .collect(),
            notice: notice(request),
        })))
    })
}

/// Cookie settings for the anonymous CSRF cookie: host-only, strict.
fn csrf_cookie_options(state: &State) -> CookieOptions {
    CookieOptions {
        name: csrf::COOKIE.to_owned(),
        domain: None,
        path: "/".to_owned(),
        force_secure: state.engine().options().cookie.force_secure,
        same_site: SameSite::Strict,
    }
}

/// The anonymous CSRF token for a form: the one in the browser's valid
/// cookie, or a new one with the `Set-Cookie` value to send.
pub(super) fn anonymous_csrf(
    state: &State,
    request: &Request,
    client: &Client,
) -> (String, Option<String>) {
    let existing = request.header("Cookie").and_then(|header| {
        cookie::find(header, csrf::COOKIE)
            .find_map(|v| csrf::anonymous_token(state.engine().signer(), v))
            .map(str::to_owned)
    });
    match existing {
        Some(t) => (t, None),
        None => {
            let (t, value) = csrf::new_anonymous(state.engine().signer());
            (
                t,
                Some(csrf_cookie_options(state).set_cookie(&value, None, client.https)),
            )
        }
    }
}

/// Adds the CSRF cookie to a response when one was made.
pub(super) fn with_csrf_cookie(response: Response, cookie: Option<String>) -> Response {
    match cookie {
        Some(c) => response.with_additional_header("Set-Cookie", c),
        None => response,
    }
}

/// Refuses an anonymous form whose token does not match its signed cookie.
pub(super) fn check_anonymous_csrf(state: &State, request: &Request, form: &Form) -> Result<()> {
    let valid = request.header("Cookie").is_some_and(|h| {
        cookie::find(h, csrf::COOKIE)
            .any(|v| csrf::check_anonymous(state.engine().signer(), Some(v), form.get(csrf::FIELD)))
    });
    if valid { Ok(()) } else { Err(WebError::Csrf) }
}

/// Where to go after signing in: a local path, or a URL on a configured
/// app's host (or gatehouse's public URL); anything else is `/`.
fn safe_next(state: &State, next: Option<&str>) -> String {
    let public_host = state
        .public_url
        .as_deref()
        .and_then(|u| u.split("://").nth(1))
        .map(|h| h.split('/').next().unwrap_or(h).to_ascii_lowercase());
    redirect::target(next, |host| {
        state.apps.is_app_host(host) || public_host.as_deref() == Some(host)
    })
    .to_owned()
}

/// The `next` query parameter. nginx cannot percent-encode the URL it
/// sends along (`?next=$scheme://$host$request_uri`), so a `next` that is
/// the last parameter and holds a raw `http(s)://` URL is taken whole,
/// `&` and all.
fn next_param(request: &Request) -> Option<String> {
    let query = request.raw_query_string();
    let raw = query
        .strip_prefix("next=")
        .or_else(|| query.find("&next=").map(|i| &query[i + "&next=".len()..]))?;
    if raw.starts_with("http://") || raw.starts_with("https://") {
        return Some(raw.to_owned());
    }
    request.get_param("next")
}

fn get_login(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let next = next_param(request);
    let next = safe_next(state, next.as_deref());
    with_session(state, request, client, |session| {
        if current_user(state, session)?.is_some() {
            return Ok(see_other(&next));
        }
        Ok(login_form(state, request, client, &next, "", None))
    })
}

/// The login page, reusing the browser's CSRF cookie or setting a new one.
fn login_form(
    state: &State,
    request: &Request,
    client: &Client,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let (token, cookie) = anonymous_csrf(state, request, client);
    let page = html(views::login_page(&LoginView {
        next,
        csrf: &token,
        username,
        error,
        registration: state.allow_registration,
    }));
    with_csrf_cookie(page, cookie)
}

pub(super) fn log_login(
    state: &State,
    outcome: &str,
    username: &str,
    client: &Client,
    extra: &str,
) {
    match outcome {
        "throttled" => state.metrics.throttled(),
        "ok" => state.metrics.login("ok"),
        _ => {}
    }
    logging::line(&logging::login_message(outcome, username, client.ip, extra));
}

/// `Retry-After` seconds and a sentence for a throttled attempt.
pub(super) fn throttled(wait: std::time::Duration) -> (u64, String) {
    let secs = wait.as_secs().max(1);
    let human = match secs {
        0..=59 => format!("{secs} seconds"),
        60..=119 => "a minute".to_owned(),
        s => format!("{} minutes", s.div_ceil(60)),
    };
    (
        secs,
        format!("Too many failed attempts. Try again in {human}."),
    )
}

fn post_login(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let username = crate::users::trim_spaces(form.get("username").unwrap_or(""));
    let password = form.get("password").unwrap_or("");
    let remember = form.get("remember").is_some_and(|v| !v.is_empty());
    let next = safe_next(state, form.get("next"));
    if username.len() > MAX_USERNAME {
        return Err(WebError::BadRequest("The username is too long."));
    }

    if let Some(wait) = throttle_wait(state, username, client)? {
        let (secs, message) = throttled(wait);
        return Ok(
            login_form(state, request, client, &next, username, Some(&message))
                .with_status_code(429)
                .with_additional_header("Retry-After", secs.to_string()),
        );
    }

    let reason = match state.users.authenticate(username, password)? {
        Login::Ok(user) => {
            state.throttle.success(username)?;
            let response = with_session(state, request, client, |session| {
                session.login(user.id, remember)?;
                Ok(see_other(&next))
            })?;
            // Logged once the new session is stored, not before: a sign-in
            // that could not be committed is no "login ok".
            log_login(state, "ok", &user.username, client, "");
            return Ok(response);
        }
        Login::UnknownUser => "unknown_user",
        Login::WrongPassword => "wrong_password",
        Login::Disabled => "disabled",
    };
    record_failure(state, username, client, reason)?;
    Ok(
        login_form(state, request, client, &next, username, Some(LOGIN_FAILED))
            .with_status_code(401),
    )
}

/// Logs a failed password check and counts it towards a lockout.
///
/// # Errors
///
/// The throttle's store failed (the failure is logged either way).
pub(super) fn record_failure(
    state: &State,
    username: &str,
    client: &Client,
    reason: &str,
) -> Result<()> {
    state.metrics.login(reason);
    log_login(
        state,
        "failed",
        username,
        client,
        &format!(" reason={reason}"),
    );
    for lock in state.throttle.failure(username, client.ip)? {
        log_login(
            state,
            "locked",
            username,
            client,
            &format!(" by={} seconds={}", lock.by, lock.duration.as_secs()),
        );
    }
    Ok(())
}

fn get_logout(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        let (Some(user), Some(key)) = (current_user(state, session)?, session.key()) else {
            return Ok(see_other("/login"));
        };
        let token = csrf::session_token(state.engine().signer(), &key);
        Ok(html(views::logout_page(&viewer(&user), &token)))
    })
}

fn post_logout(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    with_session(state, request, client, |session| {
        let Some(key) = session.key() else {
            return Ok(see_other("/login"));
        };
        check_session_csrf(state, &key, &form)?;
        session.destroy()?;
        Ok(logged_out())
    })
}

/// The answer after this browser's session ended: back to the sign-in page,
/// with the browser told to drop what it kept for this site.
pub(super) fn logged_out() -> Response {
    see_other("/login").with_additional_header("Clear-Site-Data", "\"cookies\", \"storage\"")
}
