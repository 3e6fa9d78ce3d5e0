//! `/account`: the signed-in user's sessions (end one, end all others) and
//! changing their password.

use rouille::{Request, Response};

use super::device::session_rows;
use super::error::Result;
use super::factors;
use super::paging::{page_param, paged};
use super::respond::{capitalise, html, logged_out, notice, see_other, throttled};
use super::router::{Route, Token};
use super::signed_in::{session_methods, signed_in, signed_in_form, viewer};
use super::state::{State, with_session};
use super::views::{self, AccountView, PasskeyRow, TwoFactorView};
use crate::accounts::{AccountError, Check, Ended, Owner, Purpose, two_factors};
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::session::{Session, SessionKey};
use crate::users::password::PasswordError;
use crate::users::{User, UserError};

/// `/account` and its forms: sessions, the password, second factors.
pub(super) const ROUTES: &[Route] = &[
    Route::at("/account").get(get_account).token_page(),
    Route::at("/account/sessions/end").form(Token::Session, post_end_session),
    Route::at("/account/sessions/end-others").form(Token::Session, post_end_others),
    Route::at("/account/password").form(Token::Session, post_password),
    Route::at("/account/totp").form(Token::Session, factors::post_totp_start),
    Route::at("/account/totp/confirm").form(Token::Session, factors::post_totp_confirm),
    Route::at("/account/totp/remove").form(Token::Session, factors::post_totp_remove),
    Route::at("/account/recovery").form(Token::Session, factors::post_recovery),
    Route::at("/account/passkeys/options")
        .form(Token::Session, factors::post_register_options)
        .script(),
    Route::at("/account/passkeys").form(Token::Session, factors::post_register),
    Route::at("/account/passkeys/remove").form(Token::Session, factors::post_passkey_remove),
];

fn render(
    state: &State,
    session: &Session<'_>,
    user: &User,
    key: &SessionKey,
    page: usize,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response> {
    let now = clock::now();
    let factors = state.users.factors();
    let summary = factors.summary(user.id)?;
    let two_factor = TwoFactorView {
        totp: summary.totp,
        recovery_left: summary.recovery_left,
        passkeys: factors
            .passkeys(user.id)?
            .into_iter()
            .map(|p| PasskeyRow {
                id: p.id,
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            })
            .collect(),
        may_change: !summary.any() || two_factors(&session_methods(session)),
    };
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
        two_factor,
    })))
}

pub(super) fn get_account(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        match signed_in(state, session, request)? {
            Ok(s) => render(
                state,
                session,
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

pub(super) fn post_password(state: &State, request: &Request, client: &Client) -> Result<Response> {
    signed_in_form(state, request, client, |session, s, form| {
        let fail = |status: u16, message: &str| -> Result<Response> {
            Ok(
                render(state, session, &s.user, &s.key, 1, None, Some(message))?
                    .with_status_code(status),
            )
        };
        let accounts = state.accounts();
        let current = form.get("current").unwrap_or("");
        match accounts.confirm_password(
            &state.guard(),
            &s.user,
            current,
            client.ip,
            Purpose::ChangePassword,
        )? {
            Check::Confirmed => {}
            Check::Throttled(wait) => {
                let (secs, message) = throttled(wait);
                return Ok(
                    fail(429, &message)?.with_additional_header("Retry-After", secs.to_string())
                );
            }
            Check::Wrong => return fail(403, "Your current password is not right."),
        }
        let new = form.get("password").unwrap_or("");
        if new != form.get("password2").unwrap_or("") {
            return fail(400, "The two new passwords do not match.");
        }
        match accounts.set_password(&s.user, new, Some(session)) {
            Ok(_) => Ok(see_other("/account?done=password-changed")),
            Err(AccountError::User(UserError::Password(e))) if e != PasswordError::Busy => {
                fail(400, &capitalise(&e.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    })
}
