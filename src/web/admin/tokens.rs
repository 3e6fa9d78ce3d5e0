//! `/admin/tokens`: every user's personal access tokens, revocable.

use rouille::{Request, Response};

use crate::accounts::AccountError;
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::users::UserError;
use crate::web::error::{Result, WebError};
use crate::web::respond::{html, notice};
use crate::web::signed_in::{SignedIn, viewer};
use crate::web::state::State;
use crate::web::views::{self, AdminTokensView};

use super::act::{Outcome, Section, act, as_admin};

/// The tokens section: where its actions go back to.
const TOKENS: Section = Section {
    path: "/admin/tokens",
    refused: |state, s, _| render(state, s, None),
};

fn render(state: &State, s: &SignedIn, notice: Option<&str>) -> Result<Response> {
    let token = csrf::session_token(state.engine().signer(), &s.key);
    Ok(html(views::admin_tokens_page(&AdminTokensView {
        viewer: viewer(&s.user),
        tokens: state.users.tokens().all()?,
        csrf: &token,
        notice,
        now: clock::now(),
    })))
}

/// `GET /admin/tokens`.
pub(super) fn get_tokens(state: &State, request: &Request, client: &Client) -> Result<Response> {
    as_admin(state, request, client, |s| {
        render(state, s, notice(request))
    })
}

/// `POST /admin/tokens/revoke`: anyone's token.
pub(super) fn post_revoke(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, &TOKENS, |_, s, form| {
        let id = form
            .get("id")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(WebError::NotFound)?;
        let accounts = state.accounts_for(request, client).by(&s.user);
        match accounts.revoke_token(id, None) {
            Ok(()) => Ok(Outcome::Done("token-revoked")),
            Err(AccountError::User(UserError::NoSuchToken)) => Err(WebError::NotFound),
            Err(e) => Err(e.into()),
        }
    })
}
