//! Every session on `/admin`: an administrator may end any one (their
//! own signs them out).

use rouille::{Request, Response};

use crate::accounts::{Ended, Owner};
use crate::auth::proxy::Client;
use crate::web::error::Result;
use crate::web::state::State;

use super::act::{Outcome, act};

/// `POST /admin/sessions/end`.
pub(super) fn post_end_session(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    act(state, request, client, |session, _, form| {
        let handle = form.get("handle").unwrap_or("");
        Ok(
            match state
                .accounts()
                .end_session(session, Owner::Anyone, handle)?
            {
                Ended::This => Outcome::SignedOut,
                Ended::Other => Outcome::Done("session-ended"),
            },
        )
    })
}
