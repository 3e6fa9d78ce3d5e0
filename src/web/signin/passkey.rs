//! Signing in with a passkey alone (`/login/passkey`): its ceremony in a
//! signed short-lived cookie, since the visitor has no session yet; and
//! verifying an assertion, for this and for a second step.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rouille::{Request, Response};

use crate::accounts::Step;
use crate::auth::proxy::Client;
use crate::session::{CookieOptions, SameSite, cookie};
use crate::users::factors::StoredPasskey;
use crate::users::passkey::{self, RelyingParty};
use crate::web::csrf::check_anonymous_csrf;
use crate::web::error::Result;
use crate::web::form::Form;
use crate::web::passkeys::{log_refused, passkey_error, relying_party};
use crate::web::redirects::safe_next;
use crate::web::respond::{see_other, throttled};
use crate::web::signed_in::signing_in;
use crate::web::state::State;

/// The cookie that carries a passkey-only sign-in's ceremony instead. The
/// visitor is anonymous: keeping it in a session would store a row (that
/// lives for the idle timeout and fills `/admin`) for anyone who asks, and
/// hand out a session id that could be planted in someone else's browser.
const SIGNIN_COOKIE: &str = "gatehouse_passkey";

/// What the sign-in ceremony cookie is signed under: a value signed for
/// another purpose (a session id, a CSRF token) is no ceremony.
const SIGNIN_CONTEXT: &str = "passkey-signin";

/// The sign-in ceremony cookie goes only to the options and the answer.
const SIGNIN_PATH: &str = "/login/passkey";

/// How many ceremony cookies one answer tries (a browser may hold one set
/// by a sibling host too): a header stuffed with copies costs no more.
const SIGNIN_COOKIES_TRIED: usize = 4;

/// The sign-in ceremony cookie's settings: host-only, `SameSite=Strict`
/// (only the page's own script asks for it), `Secure` as the session
/// cookie is.
fn signin_cookie(state: &State) -> CookieOptions {
    CookieOptions {
        name: SIGNIN_COOKIE.to_owned(),
        domain: None,
        path: SIGNIN_PATH.to_owned(),
        force_secure: state.engine().options().cookie.force_secure,
        same_site: SameSite::Strict,
    }
}

/// Answers a passkey-only sign-in's options, its ceremony in a signed
/// cookie that expires with the ceremony. Nothing is stored.
fn begin_signin(state: &State, client: &Client, (bytes, json): (Vec<u8>, String)) -> Response {
    let value = state
        .engine()
        .signer()
        .sign(SIGNIN_CONTEXT, &URL_SAFE_NO_PAD.encode(bytes));
    let cookie =
        signin_cookie(state).set_cookie(&value, Some(passkey::CEREMONY_TTL / 1000), client.https);
    Response::from_data("application/json", json)
        .with_additional_header("Cache-Control", "no-store")
        .with_additional_header("Set-Cookie", cookie)
}

/// The sign-in ceremonies in the request's cookies whose signature holds.
/// They are not removed by reading (a cookie cannot be taken back from a
/// copy): the answer clears the browser's, and `Factors::passkey_used`
/// refuses a second answer to one ceremony.
fn signin_ceremonies(state: &State, request: &Request) -> Vec<Vec<u8>> {
    let Some(header) = request.header("Cookie") else {
        return Vec::new();
    };
    let signer = state.engine().signer();
    cookie::find(header, SIGNIN_COOKIE)
        .take(SIGNIN_COOKIES_TRIED)
        .filter_map(|v| signer.verify(SIGNIN_CONTEXT, v))
        .filter_map(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .collect()
}

/// The user and stored passkey an assertion names, verified against one
/// of the `ceremonies` (and that passkey not used since that ceremony
/// began); `None` when it does not verify, then logged, counted against
/// the address and recorded when `failed_from` gives the request (a second
/// step counts its own failure).
pub(super) fn verified_passkey(
    state: &State,
    rp: &RelyingParty,
    ceremonies: &[Vec<u8>],
    response: &str,
    failed_from: Option<(&Request, &Client)>,
) -> Result<Option<StoredPasskey>> {
    let factors = state.users.factors();
    let named = passkey::credential_of(response).ok();
    let stored = match &named {
        Some((id, _)) => factors.find_passkey(id)?,
        None => None,
    };
    let mut ok = false;
    if let (Some(s), Some((_, handle))) = (&stored, &named)
        && handle.is_none_or(|h| h == s.user_id)
    {
        for ceremony in ceremonies {
            match passkey::finish_authentication(rp, ceremony, response, &s.credential) {
                Ok(updated) => {
                    // A verified state always has its start time.
                    ok = match passkey::started_at(ceremony) {
                        Some(started) => factors.passkey_used(s.id, &updated, started)?,
                        None => false,
                    };
                    if !ok {
                        crate::logging::line(&format!(
                            "passkey refused detail={}",
                            crate::logging::quote(
                                "the passkey was used since this ceremony began (a replayed answer?)"
                            )
                        ));
                    }
                    break;
                }
                Err(e) => log_refused(&e),
            }
        }
    }
    if ok {
        return Ok(stored);
    }
    // Counted against the address only: a credential id is no secret
    // (a second step lists them), so a failure naming one must not lock
    // its owner out.
    if let Some((request, client)) = failed_from {
        state
            .accounts_for(request, client)
            .passkey_failed(&state.guard(), None, client.ip)?;
    }
    Ok(None)
}

/// `POST /login/passkey/options`: a passkey-only sign-in begins.
pub(super) fn post_signin_options(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let rp = relying_party(state, request, client)?;
    let started = passkey::start_authentication(&rp, None).map_err(|e| passkey_error(&e))?;
    Ok(begin_signin(state, client, started))
}

/// `POST /login/passkey`: a passkey alone signs in (two factors: the
/// device and its user verification).
pub(super) fn post_signin_passkey(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    let rp = relying_party(state, request, client)?;
    let response = form.get("credential").unwrap_or("");
    let remember = form.get("remember").is_some_and(|v| !v.is_empty());
    let next = safe_next(state, form.get("next"));
    let guard = state.guard();
    // The browser's ceremony cookie goes, whatever the outcome.
    let clear = signin_cookie(state).clear_cookie(client.https);
    let ceremonies = signin_ceremonies(state, request);
    // Verified before the session is touched: a failed answer stores
    // nothing either.
    let Some(stored) =
        verified_passkey(state, &rp, &ceremonies, response, Some((request, client)))?
    else {
        return Ok(see_other("/login?passkey=failed").with_additional_header("Set-Cookie", clear));
    };
    let answer = signing_in(state, request, client, "", |session, finished| match state
        .accounts_for(request, client)
        .sign_in_passkey(&guard, session, stored.user_id, remember, client.ip)?
    {
        Step::Finished(done, _) => {
            *finished = Some(done);
            Ok(see_other(&next))
        }
        Step::Throttled(wait) => {
            let (secs, _) = throttled(wait);
            Ok(see_other("/login?passkey=throttled")
                .with_additional_header("Retry-After", secs.to_string()))
        }
        Step::Wrong | Step::Expired => Ok(see_other("/login?passkey=failed")),
    })?;
    Ok(answer.with_additional_header("Set-Cookie", clear))
}
