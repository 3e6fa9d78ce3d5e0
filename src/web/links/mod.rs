//! The pages a link that stands in for e-mail opens: an invite
//! (`/invite/<token>`, `invite.rs`), a reset link (`/reset/<token>`,
//! `reset.rs`), and a sign-in link for a new device
//! (`/login/link/<token>`) or its code (`/login/code`, `device.rs`). The
//! rules are `accounts`'; this area reads the token from the path, asks
//! the throttle first, and answers a link that does not work with one
//! page whatever the reason.
//!
//! Every answer under a token's path carries `Referrer-Policy:
//! no-referrer`, and the request log line names the path without the
//! token (`web::TOKEN_PATHS`); a GET never uses a link up (a preview or a
//! prefetch of it uses nothing): only the page's form does.

mod device;
mod invite;
mod reset;

use rouille::{Request, Response};

use super::respond::{html, throttled};
use super::router::{Route, Token};
use super::views;

/// The links' paths.
pub(super) const ROUTES: &[Route] = &[
    Route::at("/invite/*")
        .get(invite::get_invite)
        .form(Token::Anonymous, invite::post_invite),
    Route::at("/reset/*")
        .get(reset::get_reset)
        .form(Token::Anonymous, reset::post_reset),
    Route::at("/login/code")
        .get(device::get_code)
        .form(Token::Anonymous, device::post_code),
    Route::at("/login/link/*")
        .get(device::get_link)
        .form(Token::Anonymous, device::post_link),
];

/// The token in `request`'s path after `prefix` (decoded as the router
/// decoded the path; whatever it is, the lookup checks its shape).
fn token_in(request: &Request, prefix: &str) -> String {
    request
        .url()
        .strip_prefix(prefix)
        .unwrap_or_default()
        .to_owned()
}

/// The one answer to a link that does not work, whatever the reason
/// (unknown, used, expired, revoked): `404`.
fn gone(what: &str, message: &str) -> Response {
    html(views::link_gone_page(what, message)).with_status_code(404)
}

/// The answer to a throttled address: `429` with `Retry-After`, and not a
/// word about the link.
fn too_many(what: &str, wait: std::time::Duration) -> Response {
    let (secs, message) = throttled(wait);
    html(views::link_gone_page(what, &message))
        .with_status_code(429)
        .with_unique_header("Retry-After", secs.to_string())
}
