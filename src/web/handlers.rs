//! Route table and handlers. Handlers are thin: they read the request,
//! call `users`, `auth` and the session, and pick a view.

use std::time::Instant;

use rouille::{Request, Response};

use super::form::Form;
use super::views::{self, DashboardView, LoginView};
use super::{State, WebError, assets, with_session};
use crate::auth::proxy::Client;
use crate::auth::{csrf, redirect};
use crate::logging;
use crate::session::{CookieOptions, SameSite, Session, SessionError, cookie};
use crate::users::{Login, MAX_USERNAME, User};

type Result<T> = std::result::Result<T, WebError>;

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
    match path.as_str() {
        "/healthz" if get => Ok(healthz(state)),
        "/" if get => get_dashboard(state, request, client),
        "/login" if get => get_login(state, request, client),
        "/login" if method == "POST" => post_login(state, request, client),
        "/logout" if get => get_logout(state, request, client),
        "/logout" if method == "POST" => post_logout(state, request, client),
        "/auth/verify" if get => get_verify(state, request, client),
        "/" | "/healthz" | "/auth/verify" => Err(WebError::MethodNotAllowed("GET, HEAD")),
        "/login" | "/logout" => Err(WebError::MethodNotAllowed("GET, HEAD, POST")),
        p => match p.strip_prefix("/assets/") {
            Some(name) if get => assets::get(name).ok_or(WebError::NotFound),
            Some(_) => Err(WebError::MethodNotAllowed("GET, HEAD")),
            None => Err(WebError::NotFound),
        },
    }
}

fn html(markup: maud::Markup) -> Response {
    Response::html(markup.into_string())
}

fn see_other(location: &str) -> Response {
    Response::redirect_303(location.to_owned())
}

/// The signed-in, enabled user of this session, if any. Read on every
/// request, so a change of rights applies at once.
fn current_user(state: &State, session: &Session<'_>) -> Result<Option<User>> {
    let Some(id) = session.user_id() else {
        return Ok(None);
    };
    Ok(state.users.find_by_id(id)?.filter(|u| !u.disabled))
}

fn healthz(state: &State) -> Response {
    let ok = state
        .pool
        .get()
        .ok()
        .and_then(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).ok())
        == Some(1);
    if ok {
        Response::text("ok")
    } else {
        Response::text("database unavailable").with_status_code(503)
    }
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
        Ok(html(views::dashboard_page(&DashboardView {
            username: &user.username,
            visits,
        })))
    })
}

fn get_verify(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        Ok(match current_user(state, session)? {
            Some(user) => Response::text("ok")
                .with_additional_header("Remote-User", user.username.clone())
                .with_additional_header("Remote-Name", user.username.clone())
                .with_additional_header("Remote-Groups", if user.is_admin { "admins" } else { "" }),
            None => Response::text("not signed in").with_status_code(401),
        })
    })
}

/// Cookie settings for the anonymous CSRF cookie: host-only, strict.
fn csrf_cookie_options(state: &State) -> CookieOptions {
    CookieOptions {
        name: csrf::COOKIE.to_owned(),
        domain: None,
        path: "/".to_owned(),
        force_secure: state.engine.options().cookie.force_secure,
        same_site: SameSite::Strict,
    }
}

/// The valid anonymous CSRF token the browser already holds, if any.
fn existing_csrf_token(state: &State, request: &Request) -> Option<String> {
    let header = request.header("Cookie")?;
    cookie::find(header, csrf::COOKIE)
        .find_map(|v| csrf::anonymous_token(state.engine.signer(), v))
        .map(str::to_owned)
}

fn get_login(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let next = request.get_param("next");
    let next = redirect::or_root(next.as_deref()).to_owned();
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
    let (token, new_cookie) = match existing_csrf_token(state, request) {
        Some(t) => (t, None),
        None => {
            let (t, c) = csrf::new_anonymous(state.engine.signer());
            (t, Some(c))
        }
    };
    let response = html(views::login_page(&LoginView {
        next,
        csrf: &token,
        username,
        error,
    }));
    match new_cookie {
        Some(value) => response.with_additional_header(
            "Set-Cookie",
            csrf_cookie_options(state).set_cookie(&value, None, client.https),
        ),
        None => response,
    }
}

fn log_login(outcome: &str, username: &str, client: &Client, extra: &str) {
    logging::line(&logging::login_message(outcome, username, client.ip, extra));
}

fn post_login(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    let valid = request.header("Cookie").is_some_and(|h| {
        cookie::find(h, csrf::COOKIE)
            .any(|v| csrf::check_anonymous(state.engine.signer(), Some(v), form.get(csrf::FIELD)))
    });
    if !valid {
        return Err(WebError::Csrf);
    }
    let username = form.get("username").unwrap_or("").trim();
    let password = form.get("password").unwrap_or("");
    let remember = form.get("remember").is_some_and(|v| !v.is_empty());
    let next = redirect::or_root(form.get("next")).to_owned();
    if username.len() > MAX_USERNAME {
        return Err(WebError::BadRequest("The username is too long."));
    }

    let now = Instant::now();
    if let Some(wait) = state.throttle.retry_after(username, client.ip, now) {
        let secs = wait.as_secs().max(1);
        log_login(
            "throttled",
            username,
            client,
            &format!(" retry_after={secs}"),
        );
        let message = format!(
            "Too many failed attempts. Try again in {}.",
            human_wait(secs)
        );
        return Ok(
            login_form(state, request, client, &next, username, Some(&message))
                .with_status_code(429)
                .with_additional_header("Retry-After", secs.to_string()),
        );
    }

    let reason = match state.users.authenticate(username, password)? {
        Login::Ok(user) => {
            state.throttle.success(username);
            log_login("ok", &user.username, client, "");
            return with_session(state, request, client, |session| {
                session.login(user.id, remember)?;
                Ok(see_other(&next))
            });
        }
        Login::UnknownUser => "unknown_user",
        Login::WrongPassword => "wrong_password",
        Login::Disabled => "disabled",
    };
    log_login("failed", username, client, &format!(" reason={reason}"));
    for lock in state.throttle.failure(username, client.ip, now) {
        log_login(
            "locked",
            username,
            client,
            &format!(" by={} seconds={}", lock.by, lock.duration.as_secs()),
        );
    }
    Ok(
        login_form(state, request, client, &next, username, Some(LOGIN_FAILED))
            .with_status_code(401),
    )
}

fn human_wait(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} seconds"),
        60..=119 => "a minute".to_owned(),
        s => format!("{} minutes", s.div_ceil(60)),
    }
}

fn get_logout(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        let (Some(user), Some(key)) = (current_user(state, session)?, session.key()) else {
            return Ok(see_other("/login"));
        };
        let token = csrf::session_token(state.engine.signer(), &key);
        Ok(html(views::logout_page(&user.username, &token)))
    })
}

fn post_logout(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    with_session(state, request, client, |session| {
        let Some(key) = session.key() else {
            return Ok(see_other("/login"));
        };
        if !csrf::check_session(state.engine.signer(), &key, form.get(csrf::FIELD)) {
            return Err(WebError::Csrf);
        }
        session.destroy()?;
        Ok(see_other("/login")
            .with_additional_header("Clear-Site-Data", "\"cookies\", \"storage\""))
    })
}
