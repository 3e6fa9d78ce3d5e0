//! One's personal access tokens on `/account`: make one (shown once, on
//! the page the form answers with: never in a URL), revoke one.

use rouille::{Request, Response};

use super::page::render_with_token;
use crate::accounts::AccountError;
use crate::auth::proxy::Client;
use crate::clock;
use crate::users::UserError;
use crate::users::tokens::NewToken;
use crate::web::error::{Result, WebError};
use crate::web::respond::see_other;
use crate::web::signed_in::signed_in_form;
use crate::web::state::State;

/// The expiries the form offers.
fn expiry(value: Option<&str>) -> Option<Option<clock::Millis>> {
    const DAY: clock::Millis = 24 * 60 * 60 * 1000;
    let days = match value? {
        "never" => return Some(None),
        "7d" => 7,
        "30d" => 30,
        "90d" => 90,
        "365d" => 365,
        _ => return None,
    };
    Some(Some(clock::now().saturating_add(days * DAY)))
}

/// `POST /account/tokens`: a new token, shown once on the page.
pub(super) fn post_create(state: &State, request: &Request, client: &Client) -> Result<Response> {
    signed_in_form(state, request, client, |session, s, form| {
        let Some(expires_at) = expiry(form.get("expires")) else {
            return Err(WebError::BadRequest(
                "the expiry is not one the form offers",
            ));
        };
        let apps: Vec<String> = state
            .apps
            .all()
            .iter()
            .filter(|a| form.get(&format!("app:{}", a.name)) == Some("on"))
            .map(|a| a.name.clone())
            .collect();
        let new = NewToken {
            name: form.get("name").unwrap_or("").to_owned(),
            apps,
            expires_at,
        };
        let page = |notice, error, made| {
            render_with_token(state, session, &s.user, &s.key, (1, notice, error), made)
        };
        let accounts = state.accounts_for(request, client).by(&s.user);
        match accounts.create_token(&s.user, &new, clock::now()) {
            Ok((token, _)) => page(Some("Your token has been made."), None, Some(token)),
            Err(AccountError::User(e @ (UserError::InvalidTokenName | UserError::TooMany))) => {
                let message = crate::web::respond::capitalise(&e.to_string());
                Ok(page(None, Some(&message), None)?.with_status_code(400))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// `POST /account/tokens/revoke`: one of one's own tokens (404 for any
/// other).
pub(super) fn post_revoke(state: &State, request: &Request, client: &Client) -> Result<Response> {
    signed_in_form(state, request, client, |_, s, form| {
        let id = form
            .get("id")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(WebError::NotFound)?;
        let accounts = state.accounts_for(request, client).by(&s.user);
        match accounts.revoke_token(id, Some(&s.user)) {
            Ok(()) => Ok(see_other("/account?done=token-revoked")),
            Err(AccountError::User(UserError::NoSuchToken)) => Err(WebError::NotFound),
            Err(e) => Err(e.into()),
        }
    })
}
