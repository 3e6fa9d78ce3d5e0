//! The second factors on `/account`: turning an authenticator app on and
//! off, new recovery codes, adding and removing passkeys. Each change
//! needs a session that gave a second factor (or a user with none yet).

use rouille::{Request, Response};

use crate::accounts::{AccountError, Enabled, Refusal, Subject};
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::session::Session;
use crate::web::csrf::check_session_csrf;
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::passkeys;
use crate::web::respond::{html, see_other};
use crate::web::signed_in::{current_user, signed_in, signed_in_form, viewer};
use crate::web::state::{State, with_session};
use crate::web::totp::{TOTP_ENROL, WRONG_CODE, codes_or_next, enrol_page};
use crate::web::views::{self, ConfirmStep};

/// Runs an account-page change of second factors: signed in, CSRF, and
/// either a second factor given in this session or none to protect.
fn changing_factors(
    state: &State,
    request: &Request,
    client: &Client,
    f: impl FnOnce(&Session<'_>, Subject, &Form) -> Result<Response>,
) -> Result<Response> {
    signed_in_form(state, request, client, |session, s, form| {
        let subject = Subject {
            user: s.user,
            pending: None,
        };
        match state.accounts().may_add_factor(session, &subject) {
            Ok(()) => f(session, subject, form),
            Err(AccountError::Refused(Refusal::SecondStepFirst)) => {
                Ok(see_other("/login/second?next=/account"))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// The confirm step before a change of second factors that cannot be
/// undone: signed in, and allowed to change them now (else the step-up
/// first, as the change itself would answer). `page` makes the step, with
/// the session's token, or `None` when there is nothing to confirm.
fn confirm_step(
    state: &State,
    request: &Request,
    client: &Client,
    page: impl FnOnce(&Subject, &str) -> Result<Option<maud::Markup>>,
) -> Result<Response> {
    with_session(state, request, client, |session| {
        let s = match signed_in(state, session, request)? {
            Ok(s) => s,
            Err(redirect) => return Ok(redirect),
        };
        let token = csrf::session_token(state.engine().signer(), &s.key);
        let subject = Subject {
            user: s.user,
            pending: None,
        };
        match state.accounts().may_add_factor(session, &subject) {
            Ok(()) => {}
            Err(AccountError::Refused(Refusal::SecondStepFirst)) => {
                return Ok(see_other("/login/second?next=/account"));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(match page(&subject, &token)? {
            Some(markup) => html(markup),
            None => see_other("/account#two-factor"),
        })
    })
}

/// `GET /account/totp/remove`: the confirm step.
pub(super) fn get_totp_remove(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    confirm_step(state, request, client, |subject, token| {
        if !state.users.factors().summary(subject.user.id)?.totp {
            return Ok(None);
        }
        Ok(Some(views::confirm_step_page(&ConfirmStep {
            viewer: viewer(&subject.user),
            id: "turn-off-totp",
            title: "Turn off your authenticator app?",
            explain: "Signing in no longer asks for its codes. To use it again, you set it up \
                      anew, with a new code to scan. This cannot be undone.",
            action: "/account/totp/remove",
            fields: Vec::new(),
            csrf: token,
            button: "Turn off",
            back: "/account#two-factor",
        })))
    })
}

/// `GET /account/passkeys/remove?id=N`: the confirm step.
pub(super) fn get_passkey_remove(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    confirm_step(state, request, client, |subject, token| {
        let id = request
            .get_param("id")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(WebError::BadRequest("No such passkey."))?;
        let passkeys = state.users.factors().passkeys(subject.user.id)?;
        let passkey = passkeys
            .iter()
            .find(|p| p.id == id)
            .ok_or(WebError::NotFound)?;
        let title = format!("Remove the passkey \u{201c}{}\u{201d}?", passkey.name);
        let id = id.to_string();
        Ok(Some(views::confirm_step_page(&ConfirmStep {
            viewer: viewer(&subject.user),
            id: "remove-passkey",
            title: &title,
            explain: "It no longer signs you in. The device keeps it until you delete it \
                      there; to use it here again, you add it anew. This cannot be undone.",
            action: "/account/passkeys/remove",
            fields: vec![("id", &id)],
            csrf: token,
            button: "Remove the passkey",
            back: "/account#two-factor",
        })))
    })
}

/// `POST /account/totp`: start setting up an authenticator.
pub(super) fn post_totp_start(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    changing_factors(state, request, client, |session, subject, form| {
        session.remove(TOTP_ENROL)?;
        let csrf = form.get(crate::auth::csrf::FIELD).unwrap_or("");
        enrol_page(state, session, &subject.user, csrf, false, None)
            .map(|r| r.with_additional_header("Cache-Control", "no-store"))
    })
}

/// `POST /account/totp/confirm`: the first code turns it on.
pub(super) fn post_totp_confirm(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    changing_factors(state, request, client, |session, subject, form| {
        let user = subject.user.clone();
        let sealed = session.get::<String>(TOTP_ENROL).unwrap_or_default();
        let code = form.get("code").unwrap_or("");
        match state
            .accounts_for(request, client)
            .enable_totp(session, subject, &sealed, code)?
        {
            Some(Enabled { finished: _, codes }) => {
                session.remove(TOTP_ENROL)?;
                Ok(codes_or_next(
                    Some(&user),
                    &codes,
                    "/account?done=totp-enabled#two-factor",
                ))
            }
            None => {
                let csrf = form.get(crate::auth::csrf::FIELD).unwrap_or("");
                Ok(
                    enrol_page(state, session, &user, csrf, false, Some(WRONG_CODE))?
                        .with_status_code(400),
                )
            }
        }
    })
}

/// `POST /account/totp/remove`.
pub(super) fn post_totp_remove(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    changing_factors(state, request, client, |_, subject, _| {
        state
            .accounts_for(request, client)
            .remove_totp(&subject.user)?;
        Ok(see_other("/account?done=totp-removed#two-factor"))
    })
}

/// `POST /account/recovery`: ten new recovery codes, shown once.
pub(super) fn post_recovery(state: &State, request: &Request, client: &Client) -> Result<Response> {
    changing_factors(state, request, client, |_, subject, _| {
        let codes = state
            .accounts_for(request, client)
            .new_recovery_codes(&subject.user)?;
        Ok(codes_or_next(
            Some(&subject.user),
            &codes,
            "/account#two-factor",
        ))
    })
}

/// `POST /account/passkeys/remove`.
pub(super) fn post_passkey_remove(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    changing_factors(state, request, client, |_, subject, form| {
        let id = form
            .get("id")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(WebError::BadRequest("No such passkey."))?;
        if state
            .accounts_for(request, client)
            .remove_passkey(&subject.user, id)?
        {
            Ok(see_other("/account?done=passkey-removed#two-factor"))
        } else {
            Err(WebError::NotFound)
        }
    })
}

/// Who registers a passkey on `/account/...`: the signed-in user, with the
/// session's form token, who may add a factor now.
fn registering(state: &State, session: &Session<'_>, form: &Form) -> Result<Option<Subject>> {
    let Some(user) = current_user(state, session)? else {
        return Ok(None);
    };
    let Some(key) = session.key() else {
        return Ok(None);
    };
    check_session_csrf(state, &key, form)?;
    let subject = Subject {
        user,
        pending: None,
    };
    state.accounts().may_add_factor(session, &subject)?;
    Ok(Some(subject))
}

/// `POST /account/passkeys/options`.
pub(super) fn post_register_options(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    passkeys::register_options(state, request, client, |session, form| {
        registering(state, session, form)
    })
}

/// `POST /account/passkeys`: a new passkey for the signed-in user.
pub(super) fn post_register(state: &State, request: &Request, client: &Client) -> Result<Response> {
    passkeys::register(state, request, client, true, |session, form| {
        registering(state, session, form)
    })
}
