//! The signed-in user of this request: who it is (read on every request,
//! so a change of rights applies at once), how the session signed in, the
//! redirect to sign in for an anonymous visitor, a signed-in form's run,
//! and a sign-in that is logged only once its session is stored.

use rouille::{Request, Response};

use super::csrf::check_session_csrf;
use super::error::Result;
use super::form::Form;
use super::respond::{encode, see_other};
use super::state::{State, with_session};
use super::views::Viewer;
use crate::accounts::Finished;
use crate::auth::proxy::Client;
use crate::auth::redirect;
use crate::session::{Session, SessionKey};
use crate::users::User;

pub(super) fn viewer(user: &User) -> Viewer<'_> {
    Viewer {
        username: &user.username,
        is_admin: user.is_admin,
    }
}

/// The signed-in, enabled user of this session, if any: the user of its
/// principal (see [`super::principal::of_session`], which says when a
/// session counts as signed in).
///
/// # Errors
///
/// Store errors.
pub(super) fn current_user(state: &State, session: &Session<'_>) -> Result<Option<User>> {
    Ok(super::principal::of_session(state, session)?.map(|p| p.user))
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
