//! `/account`: the signed-in user's sessions (end one, end all others) and
//! changing their password.

use rouille::{Request, Response};

use super::error::WebError;
use super::shared::{
    Result, capitalise, html, logged_out, notice, page_param, paged, record_failure, see_other,
    session_rows, signed_in, signed_in_form, throttle_wait, throttled, viewer,
};
use super::state::{State, with_session};
use super::views::{self, AccountView};
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::session::SessionKey;
use crate::users::{Login, User, UserError};

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
            Err(UserError::Password(e)) if e != crate::password::PasswordError::Busy => {
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
