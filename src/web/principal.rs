//! Who is asking: the one place a request's [`Principal`] is built (the
//! user, their groups, how they proved it), for every caller that needs an
//! identity: forward auth, the built-in proxy, the start page, the pages
//! that need a signed-in user. `auth/access.rs` then decides what they
//! may have.
//!
//! Today a principal comes from the session cookie. Bearer tokens and
//! Basic credentials are read in [`of_request`], before the cookie, when
//! they come: every caller already asks there.

use rouille::Request;

use super::error::Result;
use super::state::State;
use crate::identity::{Credential, Principal, User};
use crate::session::Session;
use crate::users::factors::Policy;

/// The principal of this request: today the session's (see
/// [`of_session`]); the place `Authorization: Bearer` and `Basic` are read
/// from once gatehouse takes them.
///
/// # Errors
///
/// Store errors.
pub(super) fn of_request(
    state: &State,
    _request: &Request,
    session: &Session<'_>,
) -> Result<Option<Principal>> {
    of_session(state, session)
}

/// The signed-in, enabled user of this session as a principal, if any.
/// Read on every request, so a change of rights applies at once: from the
/// row the store read together with the session when it can (one read),
/// else from the users table (a session in Redis); either way only a row
/// with the session's stamp is its user (see [`Session::user`]).
///
/// Under `two_factor = "required"`, a session that signed in without a
/// second factor (made before the policy was set, or by an older version)
/// is signed in nowhere: it signs in again, and sets one up first if it
/// must. Every page, the gate and the API ask here, so none lets it pass.
///
/// # Errors
///
/// Store errors.
pub(super) fn of_session(state: &State, session: &Session<'_>) -> Result<Option<Principal>> {
    let methods = session_methods(session);
    if state.two_factor == Policy::Required && !crate::identity::two_factors(&methods) {
        return Ok(None);
    }
    let user = session
        .user(|id| state.users.find_by_id(id))?
        .filter(|u| !u.disabled);
    Ok(user.map(|user| principal_for(user, Credential::Session(methods))))
}

/// The principal of `user`, proved by `credential`: their groups read in
/// the one place they are. `check-config --explain` builds its asker here
/// too.
pub fn principal_for(user: User, credential: Credential) -> Principal {
    Principal {
        groups: groups_of(&user),
        user,
        credential,
    }
}

/// The groups a user is in: the one place they are taken, for the access
/// decision, `Remote-Groups` and the signed identity header alike. They
/// come with the user's row (read with the session in one statement), so
/// a change applies on the user's next request.
fn groups_of(user: &User) -> Vec<String> {
    user.groups.clone()
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
