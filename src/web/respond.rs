//! The small answers every page gives: an HTML page, a `303`, the answer
//! after a session ended, a query value encoded for a `Location`, and the
//! fixed sentences pages show (a notice after an action, a throttled
//! attempt, an error message made a sentence).

use rouille::{Request, Response};

pub(super) fn html(markup: maud::Markup) -> Response {
    Response::html(markup.into_string())
}

pub(super) fn see_other(location: &str) -> Response {
    Response::redirect_303(location.to_owned())
}

/// What the browser is told to drop once its session ended
/// (`Clear-Site-Data`): what it kept for this site.
pub(super) const LOGGED_OUT_CLEARS: &str = "\"cookies\", \"storage\"";

/// The answer after this browser's session ended: back to the sign-in page,
/// with the browser told to drop what it kept for this site.
pub(super) fn logged_out() -> Response {
    see_other("/login").with_additional_header("Clear-Site-Data", LOGGED_OUT_CLEARS)
}

/// Everything but RFC 3986's unreserved characters is encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value.
pub(super) fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// The fixed message for a `?done=` code after a redirect (post/redirect/get).
/// Only known codes show anything, so a link cannot put words on our pages.
pub(super) fn notice(request: &Request) -> Option<&'static str> {
    Some(match request.get_param("done")?.as_str() {
        "welcome" => "Your administrator account is ready. Welcome!",
        "registered" => "Your account is ready. Welcome!",
        "password-set" => "Your new password is set, and you were signed out everywhere else.",
        "invite-revoked" => "The invite has been revoked.",
        "reset-link-revoked" => "The reset link has been revoked.",
        "signin-link-revoked" => "The sign-in link has been revoked.",
        "session-ended" => "The session has been ended.",
        "others-ended" => "You have been signed out everywhere else.",
        "app-signed-out" => "You have been signed out of the app.",
        "profile-saved" => "Your name and address have been saved.",
        "names-saved" => "The user's name and address have been saved.",
        "password-changed" => {
            "Your password has been changed, and your other sessions were signed out."
        }
        "user-created" => "The user has been created.",
        "password-reset" => "The password has been set, and the user's sessions were ended.",
        "user-disabled" => "The user has been disabled and signed out everywhere.",
        "user-enabled" => "The user has been enabled.",
        "admin-granted" => "The user is now an administrator.",
        "admin-revoked" => "The user is no longer an administrator.",
        "user-deleted" => "The user has been deleted.",
        "totp-enabled" => "Your authenticator app is on: signing in now asks for its code.",
        "totp-removed" => "Your authenticator app is off.",
        "passkey-added" => "The passkey has been added.",
        "passkey-removed" => "The passkey has been removed.",
        "factors-reset" => "The user's second factors were removed and their sessions ended.",
        "token-revoked" => "The token has been revoked.",
        "group-created" => "The group has been created.",
        "group-renamed" => "The group has been renamed.",
        "group-deleted" => "The group has been deleted.",
        "member-added" => "The user has been added to the group.",
        "member-removed" => "The user has been taken out of the group.",
        "client-deleted" => "The client has been deleted, and every sign-in it held has ended.",
        _ => return None,
    })
}

/// `Retry-After` seconds and a sentence for a throttled attempt.
pub(super) fn throttled(wait: std::time::Duration) -> (u64, String) {
    let secs = wait.as_secs().max(1);
    let human = match secs {
        0..=59 => format!("{secs} seconds"),
        60..=119 => "a minute".to_owned(),
        s => format!("{} minutes", s.div_ceil(60)),
    };
    (
        secs,
        format!("Too many failed attempts. Try again in {human}."),
    )
}

/// "the password ..." -> "The password ...".
pub(super) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => format!(
            "{}{}.",
            first.to_uppercase(),
            c.as_str().trim_end_matches('.')
        ),
        None => String::new(),
    }
}
