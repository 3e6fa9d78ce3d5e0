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
use crate::users::factors::Policy;

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
