//! Passkey ceremonies as `signin/` and `account/` both run them: the
//! relying party for this request, the ceremony kept in the session for
//! one try, and registering a new passkey (on `/account`, or during a
//! sign-in that must set one up). The WebAuthn work is
//! `users::passkey`'s; this file carries its state between the two
//! requests of a ceremony.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rouille::{Request, Response};

use super::error::{Result, WebError};
use super::form::Form;
use super::redirects::{next_of, origin};
use super::respond::see_other;
use super::signed_in::signing_in;
use super::state::{State, with_session};
use super::totp::codes_or_next;
use crate::accounts::{AccountError, Subject};
use crate::auth::proxy::Client;
use crate::session::Session;
use crate::users::passkey::{self, PasskeyError, RelyingParty};

use crate::session::keys::PASSKEY_STATE;

#[derive(serde::Serialize, serde::Deserialize)]
struct Ceremony {
    purpose: String,
    state: String,
}

/// The relying party for this request: the host of `public_url`, else the
/// request's host, with the origin the browser reports.
pub(super) fn relying_party(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<RelyingParty> {
    let origin =
        origin(state, request, client).ok_or(WebError::BadRequest("The request has no Host."))?;
    let authority = crate::auth::redirect::split_absolute(&origin).map_or("", |(a, _)| a);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    RelyingParty::new(&host.to_ascii_lowercase(), &origin)
        .map_err(|_| WebError::BadRequest("Passkeys need a host name, not an address."))
}

/// Keeps a new ceremony in the session and answers its options.
pub(super) fn begin(
    session: &Session<'_>,
    purpose: &str,
    (bytes, json): (Vec<u8>, String),
) -> Result<Response> {
    session.insert(
        PASSKEY_STATE,
        Ceremony {
            purpose: purpose.to_owned(),
            state: URL_SAFE_NO_PAD.encode(bytes),
        },
    )?;
    Ok(Response::from_data("application/json", json)
        .with_additional_header("Cache-Control", "no-store"))
}

/// Takes the session's ceremony for `purpose` (removing it, whatever
/// follows: one try each).
pub(super) fn take(session: &Session<'_>, purpose: &str) -> Result<Option<Vec<u8>>> {
    let found = session.get::<Ceremony>(PASSKEY_STATE);
    session.remove(PASSKEY_STATE)?;
    Ok(found
        .filter(|c| c.purpose == purpose)
        .and_then(|c| URL_SAFE_NO_PAD.decode(c.state).ok()))
}

/// Logs why a passkey (or its ceremony) was refused.
pub(super) fn log_refused(e: &PasskeyError) {
    crate::logging::line(&format!(
        "passkey refused detail={}",
        crate::logging::quote(&e.to_string())
    ));
}

pub(super) fn passkey_error(e: &PasskeyError) -> WebError {
    log_refused(e);
    WebError::BadRequest("The passkey could not be used. Try again.")
}

/// `POST .../passkeys/options`: a new passkey's ceremony begins, for the
/// user `registering` finds (after checking the form's token), kept in
/// the session.
pub(super) fn register_options(
    state: &State,
    request: &Request,
    client: &Client,
    registering: impl FnOnce(&Session<'_>, &Form) -> Result<Option<Subject>>,
) -> Result<Response> {
    let form = Form::from_request(request)?;
    let rp = relying_party(state, request, client)?;
    with_session(state, request, client, |session| {
        let Some(subject) = registering(session, &form)? else {
            return Err(WebError::BadRequest("Sign in first."));
        };
        let user = &subject.user;
        let existing = state.users.factors().credential_ids(user.id)?;
        let started = passkey::start_registration(&rp, user.id, &user.username, &existing)
            .map_err(|e| passkey_error(&e))?;
        begin(session, "register", started)
    })
}

/// `POST .../passkeys`: the new passkey, verified and stored for the user
/// `registering` finds (new recovery codes shown once if none were left).
/// On the account page (`on_account`) it adds a factor to a signed-in
/// session; otherwise it finishes the sign-in that had to set one up.
pub(super) fn register(
    state: &State,
    request: &Request,
    client: &Client,
    on_account: bool,
    registering: impl FnOnce(&Session<'_>, &Form) -> Result<Option<Subject>>,
) -> Result<Response> {
    let form = Form::from_request(request)?;
    let rp = relying_party(state, request, client)?;
    let response = form.get("credential").unwrap_or("");
    let name: String = form
        .get("name")
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let name = if name.is_empty() {
        "Passkey".to_owned()
    } else {
        name
    };
    let answer = signing_in(state, request, client, "", |session, finished| {
        let Some(subject) = registering(session, &form)? else {
            return Ok(see_other("/login"));
        };
        let ceremony = take(session, "register")?.unwrap_or_default();
        let new = passkey::finish_registration(&rp, &ceremony, response)
            .map_err(|e| passkey_error(&e))?;
        let user = subject.user.clone();
        let next = next_of(
            state,
            &subject,
            Some("/account?done=passkey-added#two-factor"),
        );
        let enabled = match state.accounts_for(request, client).enable_passkey(
            session,
            subject,
            &new.credential_id,
            &name,
            &new.stored,
        ) {
            Err(AccountError::User(crate::users::UserError::Taken)) => {
                return Err(WebError::BadRequest("That passkey is registered already."));
            }
            other => other?,
        };
        let codes = enabled.codes;
        if !on_account {
            *finished = Some(enabled.finished);
        }
        Ok(codes_or_next(on_account.then_some(&user), &codes, &next))
    })?;
    Ok(answer)
}
