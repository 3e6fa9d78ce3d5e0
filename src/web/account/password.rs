//! Changing one's password on `/account`: the current one first
//! (throttled like a sign-in), the new one twice; the other sessions end.

use rouille::{Request, Response};

use crate::accounts::{AccountError, Check, Purpose};
use crate::auth::proxy::Client;
use crate::users::UserError;
use crate::users::password::PasswordError;
use crate::web::error::Result;
use crate::web::respond::{capitalise, see_other, throttled};
use crate::web::signed_in::signed_in_form;
use crate::web::state::State;

use super::page::render;

pub(super) fn post_password(state: &State, request: &Request, client: &Client) -> Result<Response> {
    signed_in_form(state, request, client, |session, s, form| {
        let fail = |status: u16, message: &str| -> Result<Response> {
            Ok(
                render(state, session, &s.user, &s.key, 1, None, Some(message))?
                    .with_status_code(status),
            )
        };
        let accounts = state.accounts_for(request, client).by(&s.user);
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
            // A directory account's password is the directory's.
            Err(AccountError::User(UserError::External)) => fail(
                409,
                "Your password is the directory's (the one you use for the office network): \
                 change it there, and sign in here with the new one.",
            ),
            Err(e) => Err(e.into()),
        }
    })
}
