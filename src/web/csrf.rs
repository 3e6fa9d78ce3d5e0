//! The CSRF checks of gatehouse's own forms, as pages meet them: the
//! anonymous token (a signed double-submit cookie, for visitors who may
//! have no session yet), the session's token, and the `Origin` check that
//! stands in for a token on the JSON API and the proxy's upgrades. The
//! rules are `auth::csrf`'s; the router checks a form's token before its
//! handler runs, and the handlers check it again here.

use rouille::{Request, Response};

use super::error::{Result, WebError};
use super::form::Form;
use super::state::State;
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::session::{CookieOptions, SameSite, SessionKey, cookie};

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

/// Refuses a signed-in form whose token is not this session's.
pub(super) fn check_session_csrf(state: &State, key: &SessionKey, form: &Form) -> Result<()> {
    if csrf::check_session(state.engine().signer(), key, form.get(csrf::FIELD)) {
        Ok(())
    } else {
        Err(WebError::Csrf)
    }
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
