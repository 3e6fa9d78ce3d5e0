//! Sign-in links for a new device on `/account`: make one (its code and
//! address shown once, on the page the form answers with: never in a
//! URL), revoke one not yet used; each recorded in the audit log.

use rouille::{Request, Response};

use super::page::{render, render_with_made};
use crate::accounts::{AccountError, Refusal};
use crate::auth::proxy::Client;
use crate::clock;
use crate::users::UserError;
use crate::web::error::{Result, WebError};
use crate::web::redirects::origin;
use crate::web::respond::{capitalise, see_other};
use crate::web::signed_in::signed_in_form;
use crate::web::state::State;

/// `POST /account/signin-links`: a new link and code, shown once.
pub(super) fn post_create(state: &State, request: &Request, client: &Client) -> Result<Response> {
    signed_in_form(state, request, client, |session, s, _| {
        let refused = |message: &str| {
            Ok(
                render(state, session, &s.user, &s.key, 1, None, Some(message))?
                    .with_status_code(409),
            )
        };
        match state
            .accounts_for(request, client)
            .make_signin_link(session, &s.user, clock::now())
        {
            Ok(made) => {
                let url = format!(
                    "{}/login/link/{}",
                    origin(state, request, client).unwrap_or_default(),
                    made.token
                );
                render_with_made(
                    state,
                    session,
                    &s.user,
                    &s.key,
                    (1, Some("Your sign-in code has been made."), None),
                    None,
                    Some((made.code, url, made.link.expires_at)),
                )
            }
            Err(AccountError::Refused(Refusal::SecondStepFirst)) => refused(
                "Give your second factor in this session first: a sign-in link signs in as this session did.",
            ),
            Err(AccountError::User(UserError::InvalidLink(m))) => refused(&capitalise(m)),
            Err(e) => Err(e.into()),
        }
    })
}

/// `POST /account/signin-links/revoke`: one of one's own unused links
/// (404 for any other).
pub(super) fn post_revoke(state: &State, request: &Request, client: &Client) -> Result<Response> {
    signed_in_form(state, request, client, |_, s, form| {
        let id = form
            .get("id")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(WebError::NotFound)?;
        match state
            .accounts_for(request, client)
            .revoke_signin_link(id, &s.user)
        {
            Ok(()) => Ok(see_other("/account?done=signin-link-revoked")),
            Err(AccountError::User(UserError::NoSuchLink)) => Err(WebError::NotFound),
            Err(e) => Err(e.into()),
        }
    })
}
