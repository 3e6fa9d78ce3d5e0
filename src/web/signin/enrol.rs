//! The set-up a `required` policy asks for right after the password
//! (`/login/enrol`): an authenticator app or a passkey, which finishes the
//! sign-in.

use rouille::{Request, Response};

use crate::accounts::{AccountError, Enabled, Refusal, Subject};
use crate::auth::proxy::Client;
use crate::session::Session;
use crate::web::csrf::{anonymous_csrf, check_anonymous_csrf, with_csrf_cookie};
use crate::web::error::Result;
use crate::web::form::Form;
use crate::web::passkeys;
use crate::web::redirects::next_of;
use crate::web::respond::see_other;
use crate::web::signed_in::signing_in;
use crate::web::state::{State, with_session};
use crate::web::totp::{TOTP_ENROL, WRONG_CODE, codes_or_next, enrol_page};

/// The pending sign-in that must set up a second factor, if this is one
/// (and the user still has none: set up meanwhile elsewhere, it is a
/// second step now).
fn enrolling(state: &State, session: &Session<'_>) -> Result<Option<Subject>> {
    let Some(subject) = state.accounts().subject(session)? else {
        return Ok(None);
    };
    match state.accounts().may_add_factor(session, &subject) {
        Ok(()) if subject.pending.as_ref().is_some_and(|p| p.enrol) => Ok(Some(subject)),
        Ok(()) | Err(AccountError::Refused(Refusal::SecondStepFirst)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `GET /login/enrol`: `required` policy, no second factor yet.
pub(super) fn get_enrol(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let (token, cookie) = anonymous_csrf(state, request, client);
    let response = with_session(state, request, client, |session| {
        let Some(subject) = enrolling(state, session)? else {
            // Set up meanwhile (in another sign-in): a second step now.
            let pending = session.get::<crate::accounts::Pending>(crate::accounts::PENDING);
            return Ok(see_other(if pending.is_some() {
                "/login/second"
            } else {
                "/login"
            }));
        };
        enrol_page(state, session, &subject.user, &token, true, None)
    })?;
    Ok(with_csrf_cookie(response, cookie))
}

/// `POST /login/enrol`: the first code from the new authenticator, which
/// finishes the sign-in.
pub(super) fn post_enrol(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let code = form.get("code").unwrap_or("");
    let token = form.get(crate::auth::csrf::FIELD).unwrap_or("").to_owned();
    let response = signing_in(state, request, client, "", |session, finished| {
        let Some(subject) = enrolling(state, session)? else {
            return Ok(see_other("/login"));
        };
        let user = subject.user.clone();
        let next = next_of(state, &subject, None);
        let sealed = session.get::<String>(TOTP_ENROL).unwrap_or_default();
        match state
            .accounts_for(request, client)
            .enable_totp(session, subject, &sealed, code)?
        {
            Some(Enabled { finished: f, codes }) => {
                session.remove(TOTP_ENROL)?;
                *finished = Some(f);
                Ok(codes_or_next(None, &codes, &next))
            }
            None => Ok(
                enrol_page(state, session, &user, &token, true, Some(WRONG_CODE))?
                    .with_status_code(400),
            ),
        }
    })?;
    Ok(response)
}

/// Who registers a passkey on `/login/enrol/...`: the pending sign-in
/// that must set one up (the anonymous form token checked first).
fn registering(
    state: &State,
    request: &Request,
    session: &Session<'_>,
    form: &Form,
) -> Result<Option<Subject>> {
    check_anonymous_csrf(state, request, form)?;
    enrolling(state, session)
}

/// `POST /login/enrol/passkey/options`.
pub(super) fn post_register_options(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    passkeys::register_options(state, request, client, |session, form| {
        registering(state, request, session, form)
    })
}

/// `POST /login/enrol/passkey`: the passkey that finishes the sign-in.
pub(super) fn post_register(state: &State, request: &Request, client: &Client) -> Result<Response> {
    passkeys::register(state, request, client, false, |session, form| {
        registering(state, request, session, form)
    })
}
