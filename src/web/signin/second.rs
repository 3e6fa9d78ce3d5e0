//! The step after the password (`/login/second`): a code from the
//! authenticator app, a recovery code, or a passkey; the same step adds a
//! second factor to a signed-in session that an app asks one of.

use rouille::{Request, Response};

use crate::accounts::{Finished, Proof, Step, two_factors};
use crate::auth::proxy::Client;
use crate::session::Session;
use crate::users::User;
use crate::users::passkey;
use crate::web::csrf::{anonymous_csrf, check_anonymous_csrf, with_csrf_cookie};
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::passkeys::{begin, passkey_error, relying_party, take};
use crate::web::principal::session_methods;
use crate::web::redirects::next_of;
use crate::web::respond::{html, see_other, throttled};
use crate::web::signed_in::signing_in;
use crate::web::state::{State, with_session};
use crate::web::totp::WRONG_CODE;
use crate::web::views::{self, SecondStepView};

use super::passkey::verified_passkey;

/// `GET /login/second`.
pub(super) fn get_second(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let asked = request.get_param("next");
    with_session(state, request, client, |session| {
        let Some(subject) = state.accounts().subject(session)? else {
            return Ok(see_other("/login"));
        };
        if subject.pending.as_ref().is_some_and(|p| p.enrol)
            && !state.users.factors().summary(subject.user.id)?.any()
        {
            return Ok(see_other("/login/enrol"));
        }
        let next = next_of(state, &subject, asked.as_deref());
        if subject.pending.is_none() && two_factors(&session_methods(session)) {
            return Ok(see_other(&next));
        }
        second_page(state, request, client, &subject.user, &next, None)
    })
}

fn second_page(
    state: &State,
    request: &Request,
    client: &Client,
    user: &User,
    next: &str,
    error: Option<&str>,
) -> Result<Response> {
    let summary = state.users.factors().summary(user.id)?;
    let (token, cookie) = anonymous_csrf(state, request, client);
    let page = html(views::second_step_page(&SecondStepView {
        csrf: &token,
        next,
        totp: summary.totp,
        passkeys: summary.passkeys > 0,
        none: !summary.any(),
        error,
    }));
    Ok(with_csrf_cookie(page, cookie))
}

/// `POST /login/second`: a code or a recovery code.
pub(super) fn post_second(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let proof = match (form.get("code"), form.get("recovery")) {
        (Some(code), _) => Proof::Code(code),
        (None, Some(code)) => Proof::Recovery(code),
        (None, None) => return Err(WebError::BadRequest("Give a code.")),
    };
    second_step(state, request, client, form.get("next"), proof)
}

/// Runs a second step with `proof` and answers: on to `next`, the
/// recovery-codes-left page, the form again with an error, or `/login`.
fn second_step(
    state: &State,
    request: &Request,
    client: &Client,
    asked: Option<&str>,
    proof: Proof<'_>,
) -> Result<Response> {
    let response = signing_in(state, request, client, "", |session, finished| {
        second_step_in(state, request, client, session, asked, proof, finished)
    })?;
    Ok(response)
}

/// [`second_step`] within a request's session; `finished` gets the
/// sign-in to log once the session is stored.
fn second_step_in(
    state: &State,
    request: &Request,
    client: &Client,
    session: &Session<'_>,
    asked: Option<&str>,
    proof: Proof<'_>,
    finished: &mut Option<Finished>,
) -> Result<Response> {
    let accounts = state.accounts_for(request, client);
    let Some(subject) = accounts.subject(session)? else {
        return Ok(see_other("/login"));
    };
    let next = next_of(state, &subject, asked);
    let user = subject.user.clone();
    match accounts.second_step(&state.guard(), session, client.ip, proof)? {
        Step::Finished(done, left) => {
            *finished = Some(done);
            Ok(match left {
                Some(left) => html(views::recovery_used_page(left, &next)),
                None => see_other(&next),
            })
        }
        Step::Wrong => Ok(
            second_page(state, request, client, &user, &next, Some(WRONG_CODE))?
                .with_status_code(401),
        ),
        Step::Throttled(wait) => {
            let (secs, message) = throttled(wait);
            Ok(
                second_page(state, request, client, &user, &next, Some(&message))?
                    .with_status_code(429)
                    .with_additional_header("Retry-After", secs.to_string()),
            )
        }
        Step::Expired => Ok(see_other("/login")),
    }
}

/// `POST /login/second/passkey/options`: a passkey as the second step.
pub(super) fn post_second_options(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let rp = relying_party(state, request, client)?;
    with_session(state, request, client, |session| {
        let Some(subject) = state.accounts().subject(session)? else {
            return Err(WebError::BadRequest(
                "No sign-in is waiting for a second step.",
            ));
        };
        let ids = state.users.factors().credential_ids(subject.user.id)?;
        let started =
            passkey::start_authentication(&rp, Some(&ids)).map_err(|e| passkey_error(&e))?;
        begin(session, "second", started)
    })
}

/// `POST /login/second/passkey`.
pub(super) fn post_second_passkey(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let rp = relying_party(state, request, client)?;
    let response = form.get("credential").unwrap_or("");
    let answer = signing_in(state, request, client, "", |session, finished| {
        let ceremonies: Vec<Vec<u8>> = take(session, "second")?.into_iter().collect();
        // Whose passkey it was, verified; none (or someone else's) is a
        // wrong second step, counted as one.
        let owner =
            verified_passkey(state, &rp, &ceremonies, response, None)?.map_or(-1, |s| s.user_id);
        second_step_in(
            state,
            request,
            client,
            session,
            form.get("next"),
            Proof::Passkey(owner),
            finished,
        )
    })?;
    Ok(answer)
}
