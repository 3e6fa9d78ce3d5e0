//! The helpers every page uses: who is signed in, CSRF checks (session and
//! anonymous), redirects, paging, notices, session rows, and the small
//! response builders. Page modules import this file, never each other.

use rouille::{Request, Response};

use super::error::WebError;
use super::form::Form;
use super::state::{State, with_session};
use super::views::{self, SessionRow, Viewer};
use crate::accounts::Finished;
use crate::auth::proxy::Client;
use crate::auth::{csrf, redirect};
use crate::session::{CookieOptions, Record, SameSite, Session, SessionKey, cookie};
use crate::users::User;
use crate::users::factors::Policy;

pub(super) use super::error::Result;

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
/// with the session when it can (one read), else from the users table (a
/// session in Redis); either way only a row with the session's stamp is
/// its user (see [`Session::user`]).
///
/// Under `two_factor = "required"`, a session that signed in without a
/// second factor (made before the policy was set, or by an older version)
/// is signed in nowhere: it signs in again, and sets one up first if it
/// must. Every page, the gate and the API ask here, so none lets it pass.
pub(super) fn current_user(state: &State, session: &Session<'_>) -> Result<Option<User>> {
    if state.two_factor == Policy::Required
        && !crate::accounts::two_factors(&session_methods(session))
    {
        return Ok(None);
    }
    Ok(session
        .user(|id| state.users.find_by_id(id))?
        .filter(|u| !u.disabled))
}

/// Runs `f` in the request's session, as [`with_session`] does; a sign-in
/// that `f` finishes (put in its slot) is logged (`login ok`, then `via`)
/// only once the session is stored: one that could not be committed is no
/// "login ok".
///
/// # Errors
///
/// `f`'s, and store errors.
pub(super) fn signing_in(
    state: &State,
    request: &Request,
    client: &Client,
    via: &str,
    f: impl FnOnce(&Session<'_>, &mut Option<Finished>) -> Result<Response>,
) -> Result<Response> {
    let mut finished = None;
    let response = with_session(state, request, client, |session| f(session, &mut finished))?;
    if let Some(finished) = finished {
        finished.committed(&state.guard(), client.ip, via);
    }
    Ok(response)
}

/// How the session signed in (`pwd`, `otp`, ...); empty when anonymous
/// or signed in before methods were recorded.
pub(super) fn session_methods(session: &Session<'_>) -> Vec<String> {
    if session.user_id().is_none() {
        return Vec::new();
    }
    session
        .get::<Vec<String>>(crate::accounts::METHODS)
        .unwrap_or_default()
}

/// gatehouse's own origin as the browser sees it: `public_url`, else the
/// scheme and `Host` of this request (`None` without a `Host`).
pub(super) fn origin(state: &State, request: &Request, client: &Client) -> Option<String> {
    if let Some(url) = &state.public_url {
        return Some(url.clone());
    }
    let host = request.header("Host")?;
    Some(format!("{}://{host}", client.scheme()))
}

/// Where to go after signing in: a local path, or a URL on a configured
/// app's host (or gatehouse's public URL); anything else is `/`.
pub(super) fn safe_next(state: &State, next: Option<&str>) -> String {
    let public_host = state
        .public_url
        .as_deref()
        .and_then(redirect::split_absolute)
        .map(|(authority, _)| authority.to_ascii_lowercase());
    redirect::target(next, |host| {
        state.apps.is_app_host(host) || public_host.as_deref() == Some(host)
    })
    .to_owned()
}

/// Where a signed-in visitor of `/login` goes: to the second step when
/// `next` leads into an app that needs one this session has not given.
pub(super) fn signed_in_next(state: &State, session: &Session<'_>, next: &str) -> String {
    if next_needs_second_factor(state, next)
        && !crate::accounts::two_factors(&session_methods(session))
    {
        format!("/login/second?next={}", encode(next))
    } else {
        next.to_owned()
    }
}

/// Whether `next` (a local path or a URL on an app's host) leads into an
/// app that needs a second factor.
pub(super) fn next_needs_second_factor(state: &State, next: &str) -> bool {
    // The browser keeps a fragment to itself: the request it makes has none.
    let next = next.split('#').next().unwrap_or(next);
    // `http://vault.lan?x` is the path `/` of vault.lan, as for the
    // redirect that follows.
    let (host, path) = match redirect::split_absolute(next) {
        Some((authority, rest)) if rest.starts_with('/') => (Some(authority), rest.to_owned()),
        Some((authority, rest)) => (Some(authority), format!("/{rest}")),
        None => (None, next.to_owned()),
    };
    let Ok(target) = crate::auth::path::Target::parse(&path) else {
        return false;
    };
    let raw = path.split('?').next().unwrap_or(&path);
    let host = host.map(str::to_ascii_lowercase);
    matches!(
        state.apps.for_request(host.as_deref(), &target, raw),
        Ok(Some(app)) if app.two_factor
    )
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
        "totp-enabled" => "Your authenticator app is on: signing in now asks for its code.",
        "totp-removed" => "Your authenticator app is off.",
        "passkey-added" => "The passkey has been added.",
        "passkey-removed" => "The passkey has been removed.",
        "factors-reset" => "The user's second factors were removed and their sessions ended.",
        _ => return None,
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

/// The answer after this browser's session ended: back to the sign-in page,
/// with the browser told to drop what it kept for this site.
pub(super) fn logged_out() -> Response {
    see_other("/login").with_additional_header("Clear-Site-Data", "\"cookies\", \"storage\"")
}

/// Refuses a request whose `Origin` is another site.
///
/// Browsers send `Origin` on cross-site requests; a page elsewhere that
/// calls this API (or opens a WebSocket through the proxy) with the user's
/// cookie is stopped here.
pub(super) fn same_origin(state: &State, request: &Request) -> Result<()> {
    let Some(origin) = request.header("Origin") else {
        return Ok(()); // not a browser cross-origin call (curl, same-origin GET)
    };
    let host = origin.split("://").nth(1).unwrap_or("");
    let own = request
        .header("Host")
        .is_some_and(|h| h.eq_ignore_ascii_case(host));
    let public = state
        .public_url
        .as_deref()
        .is_some_and(|u| u.eq_ignore_ascii_case(origin.trim_end_matches('/')));
    if own || public {
        Ok(())
    } else {
        Err(WebError::Csrf)
    }
}

/// "the password ..." -> "The password ...".
pub(super) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => format!(
            "{}{}.",
            first.to_uppercase(),
            c.as_str().trim_end_matches('.')
        ),
        None => String::new(),
    }
}

/// "Firefox on Linux", read loosely from a User-Agent.
pub(super) fn device(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|ua| !ua.is_empty()) else {
        return "Unknown device".to_owned();
    };
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("OPR/") || ua.contains("Opera") {
        "Opera"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Chromium/") {
        "Chromium"
    } else if ua.contains("Chrome/") || ua.contains("CriOS/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else if ua.starts_with("curl/") {
        "curl"
    } else {
        ua.split(['/', ' '])
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("Unknown browser")
    };
    let os = if ua.contains("iPhone") || ua.contains("iPad") {
        Some("iOS")
    } else if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Some("macOS")
    } else if ua.contains("CrOS") {
        Some("ChromeOS")
    } else if ua.contains("Linux") {
        Some("Linux")
    } else {
        None
    };
    let browser: String = browser.chars().take(40).collect();
    match os {
        Some(os) => format!("{browser} on {os}"),
        None => browser,
    }
}

/// Rows for a session table; `names` maps user ids to names (admin list).
pub(super) fn session_rows(
    records: &[Record],
    current: &SessionKey,
    name_of: impl Fn(Option<i64>) -> Option<String>,
) -> Vec<SessionRow> {
    records
        .iter()
        .map(|r| SessionRow {
            handle: r.key.handle(),
            username: name_of(r.user_id),
            device: device(r.user_agent.as_deref()),
            ip: r.ip.clone().unwrap_or_else(|| "-".to_owned()),
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            current: &r.key == current,
            persistent: r.persistent,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_from_the_user_agent() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                "Safari on macOS",
            ),
            ("curl/8.5.0", "curl"),
            ("ureq/3.0", "ureq"),
        ];
        for (ua, expected) in cases {
            assert_eq!(device(Some(ua)), expected, "{ua}");
        }
        assert_eq!(device(None), "Unknown device");
    }
}
