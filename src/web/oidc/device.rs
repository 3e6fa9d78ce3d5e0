//! The device authorization grant (RFC 8628): a TV, a set-top app or a
//! command-line tool asks `POST /oidc/device_authorization` for a device
//! code and a short user code, shows the user code, and polls the token
//! endpoint; the user types the code at `/device` while signed in (the
//! ordinary sign-in, second factor as the client requires) and allows or
//! declines. The rules (who may use the client, single use, the polling
//! interval) are the provider's.
//!
//! A user code is 8 letters from 20 (about 2^34 codes) and lives ten
//! minutes; every unknown code typed (or opened from a link) counts as a
//! failure of the address in the sign-in throttle, and a throttled address
//! is told nothing about any code, so codes cannot be guessed at speed.

use rouille::{Request, Response};

use super::{error_response, form_and_client, no_store, provider};
use crate::auth::proxy::Client;
use crate::oidc::OidcError;
use crate::oidc::grants::Authentication;
use crate::web::csrf::check_session_csrf;
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::principal;
use crate::web::respond::{html, throttled};
use crate::web::signed_in::{signed_in, viewer};
use crate::web::state::{State, with_session};
use crate::web::{sso, views};

/// `POST /oidc/device_authorization` (RFC 8628 §3.1): the client,
/// authenticated as at the token endpoint (a public client by its id),
/// gets a device code and a user code.
pub(super) fn post_device_authorization(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    let provider = provider(state)?;
    let (form, relying_party) = match form_and_client(state, provider, request, client) {
        Ok(found) => found,
        Err(r) => return Ok(r),
    };
    Ok(
        match provider.device_start(&relying_party, form.get("scope"), crate::clock::now()) {
            Ok(started) => no_store(200, &started.to_json()),
            Err(e) => error_response(state, &e),
        },
    )
}

/// `GET /device`: the form to type the code in (filled from
/// `verification_uri_complete`'s `user_code`), naming the app when the
/// code is a pending one. A signed-out visitor signs in first.
pub(super) fn get_device(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let provider = provider(state)?;
    let typed = request.get_param("user_code").unwrap_or_default();
    with_session(state, request, client, |session| {
        let me = match signed_in(state, session, request)? {
            Ok(me) => me,
            Err(to_sign_in) => return Ok(to_sign_in),
        };
        let token = crate::auth::csrf::session_token(state.engine().signer(), &me.key);
        let view = |status: u16, app: Option<&str>, message: Option<&str>| {
            page(
                status,
                views::device_page(&views::DeviceView {
                    viewer: &viewer(&me.user),
                    csrf: &token,
                    user_code: &typed,
                    app,
                    message,
                    done: None,
                }),
            )
        };
        if typed.is_empty() {
            return Ok(view(200, None, None));
        }
        // A code in the link is a guess like one typed into the form: it
        // names the app only while the address may guess, and an unknown
        // one counts against it.
        if let Some(wait) = state
            .throttle
            .address_wait(client.ip)
            .map_err(crate::web::error::WebError::from)?
        {
            let (secs, message) = throttled(wait);
            return Ok(
                view(429, None, Some(&message)).with_unique_header("Retry-After", secs.to_string())
            );
        }
        match provider
            .device_pending(&typed, crate::clock::now())
            .map_err(WebError::provider_fault)?
        {
            Some(pending) => Ok(view(200, Some(&pending.client_name), None)),
            None => {
                unknown_code(state, client, &me.user.username)?;
                Ok(view(200, None, Some(UNKNOWN)))
            }
        }
    })
}

/// `POST /device`: allow or decline (`action`) the device code typed.
pub(super) fn post_device(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let provider = provider(state)?;
    let form = Form::from_request(request)?;
    let typed = form.get("user_code").unwrap_or("").to_owned();
    let allow = form.get("action") == Some("allow");
    with_session(state, request, client, |session| {
        let me = match signed_in(state, session, request)? {
            Ok(me) => me,
            Err(to_sign_in) => return Ok(to_sign_in),
        };
        check_session_csrf(state, &me.key, &form)?;
        let token = crate::auth::csrf::session_token(state.engine().signer(), &me.key);
        let answer = |status: u16, message: Option<&str>, done: Option<&str>| {
            page(
                status,
                views::device_page(&views::DeviceView {
                    viewer: &viewer(&me.user),
                    csrf: &token,
                    user_code: &typed,
                    app: None,
                    message,
                    done,
                }),
            )
        };
        if let Some(wait) = state
            .throttle
            .address_wait(client.ip)
            .map_err(crate::web::error::WebError::from)?
        {
            let (secs, message) = throttled(wait);
            return Ok(answer(429, Some(&message), None)
                .with_unique_header("Retry-After", secs.to_string()));
        }
        let now = crate::clock::now();
        let outcome = if allow {
            let Some(who) = principal::of_session(state, session)? else {
                return Ok(answer(403, Some("Sign in again to allow a device."), None));
            };
            let auth = Authentication {
                user_id: who.user.id,
                sid: sso::sid(session)?,
                auth_time: session.record().created_at,
                methods: principal::session_methods(session),
                proved: None,
                groups: who.groups,
            };
            provider.device_approve(&typed, &auth, now)
        } else {
            let Some(who) = principal::of_session(state, session)? else {
                return Ok(answer(403, Some("Sign in again to answer a device."), None));
            };
            provider.device_deny(&typed, &who.groups, now)
        };
        match outcome {
            Ok(true) => {
                crate::logging::line(&format!(
                    "oidc device {} user={}",
                    if allow { "allowed" } else { "declined" },
                    crate::logging::quote(&me.user.username)
                ));
                Ok(answer(
                    200,
                    None,
                    Some(if allow {
                        "Done: your device is signed in. You can close this page."
                    } else {
                        "Declined: the device was not signed in."
                    }),
                ))
            }
            Ok(false) => {
                unknown_code(state, client, &me.user.username)?;
                Ok(answer(400, Some(UNKNOWN), None))
            }
            Err(OidcError::AccessDenied(why)) => {
                crate::logging::line(&format!(
                    "oidc device refused user={} reason={}",
                    crate::logging::quote(&me.user.username),
                    crate::logging::quote(&why)
                ));
                Ok(answer(
                    403,
                    Some(
                        "Your account may not use this app on a device, or it needs a sign-in with a second factor.",
                    ),
                    None,
                ))
            }
            Err(e) => Err(WebError::provider_fault(e)),
        }
    })
}

/// What a page says of a code that is not a pending one.
const UNKNOWN: &str = "That code is unknown or has expired. Check the code on your device.";

/// An unknown code counts like a wrong password from this address: user
/// codes are short, and must not be guessed.
fn unknown_code(state: &State, client: &Client, username: &str) -> Result<()> {
    let locks = state
        .throttle
        .address_failure(client.ip)
        .map_err(crate::web::error::WebError::from)?;
    crate::logging::line(&format!(
        "oidc device code unknown user={} ip={} locked={}",
        crate::logging::quote(username),
        crate::logging::ip_text(client.ip),
        !locks.is_empty()
    ));
    Ok(())
}

fn page(status: u16, markup: maud::Markup) -> Response {
    html(markup)
        .with_status_code(status)
        .with_unique_header("Cache-Control", "no-store")
}
