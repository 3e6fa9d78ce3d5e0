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
            .accounts()
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
        state.accounts().end_sessions(&s.user, Some(&s.key))?;
        Ok(see_other("/account?done=others-ended"))
    })
}
