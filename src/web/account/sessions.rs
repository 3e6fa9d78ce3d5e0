//! Ending sessions from `/account`: one of one's own (this one signs out),
//! or every other.

use rouille::{Request, Response};

use crate::accounts::{Ended, Owner};
use crate::auth::proxy::Client;
use crate::web::error::Result;
use crate::web::respond::{logged_out, see_other};
use crate::web::signed_in::signed_in_form;
use crate::web::state::State;

pub(super) fn post_end_session(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    signed_in_form(state, request, client, |session, s, form| {
        let handle = form.get("handle").unwrap_or("");
        match state
            .accounts_for(request, client)
            .by(&s.user)
            .end_session(session, Owner::User(s.user.id), handle)?
        {
            Ended::This => Ok(logged_out()),
            Ended::Other => Ok(see_other("/account?done=session-ended")),
        }
    })
}

pub(super) fn post_end_others(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    signed_in_form(state, request, client, |_, s, _| {
        state
            .accounts_for(request, client)
            .by(&s.user)
            .end_sessions(&s.user, Some(&s.key))?;
        Ok(see_other("/account?done=others-ended"))
    })
}

/// `POST /account/apps/sign-out`: ends every grant of one app (an OpenID
/// Connect client) the user signed in to: its tokens stop working, and
/// it asks the user to sign in again. Another user's grants, and other
/// apps', are untouched; an app the user holds nothing of is no error.
pub(super) fn post_app_sign_out(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    signed_in_form(state, request, client, |_, s, form| {
        let Some(provider) = &state.oidc else {
            return Err(crate::web::error::WebError::NotFound);
        };
        let app = form.get("client").unwrap_or("");
        let ended = provider
            .revoke_user(s.user.id, Some(app))
            .map_err(crate::web::error::WebError::provider_fault)?;
        if ended > 0 {
            crate::logging::line(&format!(
                "oidc app signed out user={} client={}",
                crate::logging::quote(&s.user.username),
                crate::logging::quote(app)
            ));
        }
        Ok(see_other("/account?done=app-signed-out"))
    })
}
