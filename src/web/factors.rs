//! Second factors in pages: the step after the password (`/login/second`),
//! the set-up a `required` policy asks for right after it
//! (`/login/enrol`), and the account page's authenticator, recovery code
//! and passkey actions. The rules are in `accounts`; this file reads forms
//! and renders.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rouille::{Request, Response};

use super::csrf::{anonymous_csrf, check_anonymous_csrf, with_csrf_cookie};
use super::error::Result;
use super::error::WebError;
use super::form::Form;
use super::redirects::safe_next;
use super::respond::{html, see_other, throttled};
use super::signed_in::{session_methods, signed_in_form, signing_in, viewer};
use super::state::{State, with_session};
use super::views::{self, SecondStepView, TotpEnrolView};
use crate::accounts::{AccountError, Enabled, Proof, Refusal, Step, Subject, two_factors};
use crate::auth::proxy::Client;
use crate::session::{CookieOptions, SameSite, Session, cookie};
use crate::users::User;
use crate::users::factors::StoredPasskey;
use crate::users::passkey::{self, PasskeyError, RelyingParty};

/// Session data: the sealed seed of an authenticator being set up, until
/// a code confirms it.
const TOTP_ENROL: &str = "gatehouse:totp_enrol";

const WRONG_CODE: &str =
    "That code is not right. Codes change every 30 seconds; try the current one.";

/// Where a second step goes when done: the pending sign-in's `next`, or
/// (adding a factor to a signed-in session) the `next` asked for.
fn next_of(state: &State, subject: &Subject, asked: Option<&str>) -> String {
    match &subject.pending {
        Some(p) => p.next.clone(),
        None => safe_next(state, asked),
    }
}

/// The QR code of `uri` as inline SVG (no script, no style: the CSP holds).
fn qr_svg(uri: &str) -> Result<String> {
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|_| WebError::BadRequest("The account name is too long for a QR code."))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    // Inline in HTML: without the XML declaration.
    Ok(match svg.find("<svg") {
        Some(i) => svg[i..].to_owned(),
        None => svg,
    })
}

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
pub(super) fn second_step(
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
    finished: &mut Option<crate::accounts::Finished>,
) -> Result<Response> {
    let accounts = state.accounts();
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

/// The enrolment kept in the session, or a new one stored there.
fn enrolment(
    state: &State,
    session: &Session<'_>,
    user: &User,
) -> Result<crate::users::factors::Enrolment> {
    let factors = state.users.factors();
    if let Some(e) = session
        .get::<String>(TOTP_ENROL)
        .and_then(|sealed| factors.reopen_totp(user.id, &user.username, &sealed))
    {
        return Ok(e);
    }
    let e = factors.start_totp(user.id, &user.username)?;
    session.insert(TOTP_ENROL, &e.sealed)?;
    Ok(e)
}

/// The authenticator set-up page for `user`.
fn enrol_page(
    state: &State,
    session: &Session<'_>,
    user: &User,
    csrf: &str,
    required: bool,
    error: Option<&str>,
) -> Result<Response> {
    let e = enrolment(state, session, user)?;
    let qr = qr_svg(&e.uri)?;
    let page = views::totp_enrol_page(&TotpEnrolView {
        viewer: (!required).then(|| viewer(user)),
        csrf,
        qr: &qr,
        secret: &e.secret,
        action: if required {
            "/login/enrol"
        } else {
            "/account/totp/confirm"
        },
        required,
        passkey: required,
        error,
    });
    Ok(html(page))
}

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
            .accounts()
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

/// The new recovery codes, once, or straight on to `next`.
fn codes_or_next(user: Option<&User>, codes: &[String], next: &str) -> Response {
    if codes.is_empty() {
        see_other(next)
    } else {
        let viewer = user.map(viewer);
        html(views::recovery_codes_page(viewer.as_ref(), codes, next))
            .with_additional_header("Cache-Control", "no-store")
    }
}

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
            .accounts()
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
        state.users.factors().remove_totp(subject.user.id)?;
        Ok(see_other("/account?done=totp-removed#two-factor"))
    })
}

/// `POST /account/recovery`: ten new recovery codes, shown once.
pub(super) fn post_recovery(state: &State, request: &Request, client: &Client) -> Result<Response> {
    changing_factors(state, request, client, |_, subject, _| {
        let codes = state.users.factors().new_recovery_codes(subject.user.id)?;
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
        if state.users.factors().remove_passkey(subject.user.id, id)? {
            Ok(see_other("/account?done=passkey-removed#two-factor"))
        } else {
            Err(WebError::NotFound)
        }
    })
}

/// Session data: the passkey ceremony in progress for a session that
/// exists anyway (a second step, a set-up, the account page): its purpose
/// and the opaque state, good for one try.
const PASSKEY_STATE: &str = "gatehouse:passkey";

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

#[derive(serde::Serialize, serde::Deserialize)]
struct Ceremony {
    purpose: String,
    state: String,
}

/// The relying party for this request: the host of `public_url`, else the
/// request's host, with the origin the browser reports.
fn relying_party(state: &State, request: &Request, client: &Client) -> Result<RelyingParty> {
    let origin = super::redirects::origin(state, request, client)
        .ok_or(WebError::BadRequest("The request has no Host."))?;
    let authority = crate::auth::redirect::split_absolute(&origin).map_or("", |(a, _)| a);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    RelyingParty::new(&host.to_ascii_lowercase(), &origin)
        .map_err(|_| WebError::BadRequest("Passkeys need a host name, not an address."))
}

/// Keeps a new ceremony in the session and answers its options.
fn begin(
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

/// Takes the session's ceremony for `purpose` (removing it, whatever
/// follows: one try each).
fn take(session: &Session<'_>, purpose: &str) -> Result<Option<Vec<u8>>> {
    let found = session.get::<Ceremony>(PASSKEY_STATE);
    session.remove(PASSKEY_STATE)?;
    Ok(found
        .filter(|c| c.purpose == purpose)
        .and_then(|c| URL_SAFE_NO_PAD.decode(c.state).ok()))
}

/// Logs why a passkey (or its ceremony) was refused.
fn log_refused(e: &PasskeyError) {
    crate::logging::line(&format!(
        "passkey refused detail={}",
        crate::logging::quote(&e.to_string())
    ));
}

fn passkey_error(e: &PasskeyError) -> WebError {
    log_refused(e);
    WebError::BadRequest("The passkey could not be used. Try again.")
}

/// The user and stored passkey an assertion names, verified against one
/// of the `ceremonies` (and that passkey not used since that ceremony
/// began); `None` when it does not verify, then logged and counted
/// against `ip` when given (a second step counts its own failure).
fn verified_passkey(
    state: &State,
    rp: &RelyingParty,
    ceremonies: &[Vec<u8>],
    response: &str,
    ip: Option<std::net::IpAddr>,
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
    if let Some(ip) = ip {
        state.accounts().passkey_failed(&state.guard(), None, ip)?;
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
    let Some(stored) = verified_passkey(state, &rp, &ceremonies, response, Some(client.ip))? else {
        return Ok(see_other("/login?passkey=failed").with_additional_header("Set-Cookie", clear));
    };
    let answer =
        signing_in(state, request, client, "", |session, finished| match state
            .accounts()
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

/// Who registers a passkey here: the signed-in user on `/account/...`
/// (session CSRF), or the pending sign-in that must set one up on
/// `/login/enrol/...` (anonymous CSRF).
fn registering(
    state: &State,
    request: &Request,
    session: &Session<'_>,
    form: &Form,
) -> Result<Option<Subject>> {
    if request.url().starts_with("/account/") {
        let Some(user) = super::signed_in::current_user(state, session)? else {
            return Ok(None);
        };
        let Some(key) = session.key() else {
            return Ok(None);
        };
        super::csrf::check_session_csrf(state, &key, form)?;
        let subject = Subject {
            user,
            pending: None,
        };
        state.accounts().may_add_factor(session, &subject)?;
        Ok(Some(subject))
    } else {
        check_anonymous_csrf(state, request, form)?;
        enrolling(state, session)
    }
}

/// `POST /account/passkeys/options`, `POST /login/enrol/passkey/options`.
pub(super) fn post_register_options(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    let form = Form::from_request(request)?;
    let rp = relying_party(state, request, client)?;
    with_session(state, request, client, |session| {
        let Some(subject) = registering(state, request, session, &form)? else {
            return Err(WebError::BadRequest("Sign in first."));
        };
        let user = &subject.user;
        let existing = state.users.factors().credential_ids(user.id)?;
        let started = passkey::start_registration(&rp, user.id, &user.username, &existing)
            .map_err(|e| passkey_error(&e))?;
        begin(session, "register", started)
    })
}

/// `POST /account/passkeys`, `POST /login/enrol/passkey`: the new passkey,
/// verified and stored (new recovery codes shown once if none were left).
pub(super) fn post_register(state: &State, request: &Request, client: &Client) -> Result<Response> {
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
    let on_account = request.url().starts_with("/account/");
    let answer = signing_in(state, request, client, "", |session, finished| {
        let Some(subject) = registering(state, request, session, &form)? else {
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
        let enabled = match state.accounts().enable_passkey(
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
