//! "Sudo mode": an administrator's action goes ahead only if they gave
//! their password recently, and (where the browser says so) a person's
//! click started it; otherwise the confirmation page asks for it.

use rouille::{Request, Response};

use crate::accounts::{Check, Purpose, REAUTH_AT};
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock::{self, Millis};
use crate::session::Session;
use crate::web::error::Result;
use crate::web::form::Form;
use crate::web::respond::{html, throttled};
use crate::web::signed_in::{SignedIn, viewer};
use crate::web::state::State;
use crate::web::views::{self, ConfirmView};

/// The fields an admin form may carry through the confirmation page.
const CARRIED: &[&str] = &[
    "username",
    "password",
    "admin",
    "handle",
    "confirm",
    "display_name",
    "email",
    "verified",
    // `/admin/groups`: a group's name, the group a change is to.
    "name",
    "group",
    // `/admin/tokens`: the token to revoke.
    "id",
    // `/admin/clients`.
    "client_id",
    "client_name",
    "redirect_uris",
    "client_type",
    "allowed_groups",
    "two_factor",
    "pkce",
    "signing_alg",
    "launch_url",
    "offline_access",
    "claims_in_id_token",
    "device_grant",
    "frontchannel_logout_uri",
    "frontchannel_logout_session_required",
    "backchannel_logout_uri",
    "backchannel_logout_session_required",
    "post_logout_redirect_uris",
    // `/admin/invites`, a user's reset link: the invite to revoke, what a
    // new one is made with.
    "uses",
    "expires",
    "groups",
    "new_factor",
];

/// Whether a person's click (or key press) may have started this request.
///
/// A browser that sends fetch metadata marks a navigation a person started
/// with `Sec-Fetch-User: ?1` and leaves it off when a script started it. A
/// same-origin script (a prefix-mode app) can open `/admin` in a window and
/// call `click()` on its buttons: that is a top-level navigation like any
/// other, but without `?1`. Such a request gets the password page however
/// recent the last confirmation, and the script does not have the password.
/// Safari sends fetch metadata but never `Sec-Fetch-User`, so Safari users
/// confirm every admin action: slower, never locked out. Clients without
/// fetch metadata (curl, old browsers) rely on the time window alone.
pub(super) fn person_clicked(request: &Request) -> bool {
    request.header("Sec-Fetch-Mode").is_none()
        || request
            .header("Sec-Fetch-User")
            .is_some_and(|v| v.trim() == "?1")
}

/// The action a confirmation is asked for.
pub(super) struct Asked<'a> {
    /// Its path, where the confirmation page posts it again.
    pub action: &'a str,
    /// The section it came from, where "Cancel" goes.
    pub back: &'a str,
    /// Whether a person's click started it (see [`person_clicked`]).
    pub clicked: bool,
}

/// The confirmation page's password field.
const REAUTH_FIELD: &str = "reauth_password";

/// "Sudo mode": an admin action goes ahead only if this administrator
/// entered their password (at sign-in or on the confirmation page) within
/// `admin_reauth`. Otherwise it answers the confirmation page, or checks
/// the password the page sent back, throttled like a sign-in.
///
/// The threat is a script that can act with the admin's session (an app
/// proxied in prefix mode is the same origin as gatehouse): with this it
/// also needs the password, which it does not have.
///
/// `asked.clicked` is false when the browser says no person's click
/// started this request: then even a recent confirmation does not count
/// (see [`person_clicked`]).
///
/// `Ok(None)` means go ahead.
pub(super) fn confirm_password(
    state: &State,
    session: &Session<'_>,
    s: &SignedIn,
    form: &Form,
    (request, client): (&Request, &Client),
    asked: &Asked<'_>,
) -> Result<Option<Response>> {
    let (path, clicked) = (asked.action, asked.clicked);
    let now = clock::now();
    // When a password (or passkey) was last given in this session: set by
    // the sign-in and by this page, not by a step-up with a code. (Not the
    // session's creation time, which a step-up renews.)
    let confirmed_at = session.get::<Millis>(REAUTH_AT).unwrap_or(0);
    // A confirmation "in the future" (the wall clock stepped back) is
    // stale: a clock step must not stretch the window.
    let age = now - confirmed_at;
    if clicked && age >= 0 && age < clock::millis(state.admin_reauth) {
        return Ok(None);
    }
    let page = |status: u16, error: Option<&str>| {
        let token = csrf::session_token(state.engine().signer(), &s.key);
        let fields = CARRIED
            .iter()
            .filter_map(|name| form.get(name).map(|v| (*name, v)))
            .collect();
        html(views::confirm_password_page(&ConfirmView {
            viewer: viewer(&s.user),
            action: path,
            fields,
            csrf: &token,
            back: asked.back,
            error,
        }))
        .with_status_code(status)
    };
    let Some(password) = form.get(REAUTH_FIELD) else {
        return Ok(Some(page(200, None)));
    };
    let check = state.accounts_for(request, client).confirm_password(
        &state.guard(),
        &s.user,
        password,
        client.ip,
        Purpose::AdminAction,
    )?;
    match check {
        Check::Confirmed => {
            session.insert(REAUTH_AT, now)?;
            Ok(None)
        }
        Check::Throttled(wait) => {
            let (secs, message) = throttled(wait);
            Ok(Some(
                page(429, Some(&message)).with_additional_header("Retry-After", secs.to_string()),
            ))
        }
        Check::Wrong => Ok(Some(page(403, Some("That password is not right.")))),
    }
}
