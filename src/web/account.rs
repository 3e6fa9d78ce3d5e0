//! `/account`: the signed-in user's sessions (end one, end all others) and
//! changing their password.

use rouille::{Request, Response};

use super::handlers::{
    Result, html, logged_out, notice, page_param, paged, record_failure, see_other, signed_in,
    signed_in_form, throttle_wait, throttled, viewer,
};
use super::setup::capitalise;
use super::views::{self, AccountView, SessionRow};
use super::{State, WebError, with_session};
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::session::{Record, SessionKey};
use crate::users::{Login, User, UserError};

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

fn render(
    state: &State,
    user: &User,
    key: &SessionKey,
    page: usize,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response> {
    let now = clock::now();
    let records = state.engine().store().list(Some(user.id), now)?;
    let (records, sessions_pager) = paged(records, page);
    let token = csrf::session_token(state.engine().signer(), key);
    Ok(html(views::account_page(&AccountView {
        viewer: viewer(user),
        sessions: session_rows(&records, key, |_| None),
        sessions_pager,
        csrf: &token,
        notice,
        error,
        now,
    })))
}

pub(super) fn get_account(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        match signed_in(state, session, request)? {
            Ok(s) => render(
                state,
                &s.user,
                &s.key,
                page_param(request, "page")?,
                notice(request),
                None,
            ),
            Err(redirect) => Ok(redirect),
        }
    })
}

pub(super) fn post_end_session(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    signed_in_form(state, request, client, |session, s, form| {
        let handle = form.get("handle").unwrap_or("");
        // Only the user's own sessions are searched: a guessed handle of
        // someone else's session is simply not found.
        let mine = state.engine().store().list(Some(s.user.id), clock::now())?;
        let Some(target) = mine.iter().find(|r| r.key.handle() == handle) else {
            return Err(WebError::NotFound);
        };
        if target.key == s.key {
            session.destroy()?;
            return Ok(logged_out());
        }
        state.engine().store().delete(&target.key)?;
        Ok(see_other("/account?done=session-ended"))
    })
}

pub(super) fn post_end_others(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    signed_in_form(state, request, client, |_, s, _| {
        state
            .engine()
            .store()
            .delete_by_user(s.user.id, Some(&s.key))?;
        Ok(see_other("/account?done=others-ended"))
    })
}

pub(super) fn post_password(state: &State, request: &Request, client: &Client) -> Result<Response> {
    signed_in_form(state, request, client, |session, s, form| {
        let fail = |status: u16, message: &str| -> Result<Response> {
            Ok(render(state, &s.user, &s.key, 1, None, Some(message))?.with_status_code(status))
        };
        // The current password is a password check like a sign-in: it is
        // throttled the same way, so a stolen session cannot guess it.
        if let Some(wait) = throttle_wait(state, &s.user.username, client)? {
            let (secs, message) = throttled(wait);
            return Ok(fail(429, &message)?.with_additional_header("Retry-After", secs.to_string()));
        }
        let current = form.get("current").unwrap_or("");
        match state.users.authenticate(&s.user.username, current)? {
            Login::Ok(_) => state.throttle.success(&s.user.username)?,
            _ => {
                record_failure(state, &s.user.username, client, "wrong_current_password")?;
                return fail(403, "Your current password is not right.");
            }
        }
        let new = form.get("password").unwrap_or("");
        if new != form.get("password2").unwrap_or("") {
            return fail(400, "The two new passwords do not match.");
        }
        match state.users.set_password(s.user.id, new) {
            Ok(()) => {}
            Err(UserError::Password(e)) if e != crate::users::password::PasswordError::Busy => {
                return fail(400, &capitalise(&e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        state
            .engine()
            .store()
            .delete_by_user(s.user.id, Some(&s.key))?;
        // A change of credentials is a change of privilege: new id.
        session.regenerate()?;
        Ok(see_other("/account?done=password-changed"))
    })
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
