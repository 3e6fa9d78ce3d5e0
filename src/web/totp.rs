//! Setting up an authenticator app, as `/login/enrol` and `/account` both
//! do it: the seed kept (sealed) in the session until a code confirms it,
//! its QR code, the set-up page; and the new recovery codes, shown once.

use rouille::Response;

use super::error::{Result, WebError};
use super::respond::{html, see_other};
use super::signed_in::viewer;
use super::state::State;
use super::views::{self, TotpEnrolView};
use crate::session::Session;
use crate::users::User;

pub(super) use crate::session::keys::TOTP_ENROL;

pub(super) const WRONG_CODE: &str =
    "That code is not right. Codes change every 30 seconds; try the current one.";

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
pub(super) fn enrol_page(
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

/// The new recovery codes, once, or straight on to `next`.
pub(super) fn codes_or_next(user: Option<&User>, codes: &[String], next: &str) -> Response {
    if codes.is_empty() {
        see_other(next)
    } else {
        let viewer = user.map(viewer);
        html(views::recovery_codes_page(viewer.as_ref(), codes, next))
            .with_additional_header("Cache-Control", "no-store")
    }
}
