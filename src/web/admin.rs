//! `/admin`: users (create, reset password, disable/enable, delete with a
//! confirm step, grant/revoke admin) and every session. Admins only; the
//! last enabled administrator cannot be removed.

use rouille::{Request, Response};

use super::csrf::check_session_csrf;
use super::device::session_rows;
use super::error::{Result, WebError};
use super::form::Form;
use super::paging::{page_param, paged};
use super::respond::{capitalise, html, logged_out, notice, see_other, throttled};
use super::router::{Route, Token};
use super::signed_in::{SignedIn, session_methods, signed_in, viewer};
use super::state::{State, with_session};
use super::views::{self, AdminView, ConfirmView, UserRow};
use crate::accounts::{AccountError, Check, Ended, Owner, Purpose, REAUTH_AT, two_factors};
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock::{self, Millis};
use crate::session::Session;
use crate::users::password::PasswordError;
use crate::users::{User, UserError};

/// `/admin` and its actions.
pub(super) const ROUTES: &[Route] = &[
    Route::at("/admin").get(get_admin).token_page(),
    Route::at("/admin/users").form(Token::Session, post_action),
    Route::at("/admin/users/password").form(Token::Session, post_action),
    Route::at("/admin/users/disable").form(Token::Session, post_action),
    Route::at("/admin/users/enable").form(Token::Session, post_action),
    Route::at("/admin/users/grant-admin").form(Token::Session, post_action),
    Route::at("/admin/users/revoke-admin").form(Token::Session, post_action),
    Route::at("/admin/users/delete")
        .get(get_delete_user)
        .form(Token::Session, post_action)
        .token_page(),
    Route::at("/admin/users/reset-2fa").form(Token::Session, post_action),
    Route::at("/admin/sessions/end").form(Token::Session, post_action),
];

/// The signed-in administrator, a redirect for anonymous visitors, or 403.
fn admin(
    state: &State,
    session: &Session<'_>,
    request: &Request,
) -> Result<std::result::Result<SignedIn, Response>> {
    match signed_in(state, session, request)? {
        Ok(s) if s.user.is_admin => Ok(Ok(s)),
        Ok(_) => Err(WebError::Forbidden),
        Err(redirect) => Ok(Err(redirect)),
    }
}

/// Which page of each admin list to show.
#[derive(Clone, Copy)]
struct Pages {
    users: usize,
    sessions: usize,
}

impl Pages {
    const FIRST: Self = Self {
        users: 1,
        sessions: 1,
    };

    fn of(request: &Request) -> Result<Self> {
        Ok(Self {
            users: page_param(request, "users_page")?,
            sessions: page_param(request, "sessions_page")?,
        })
    }
}

fn render(
    state: &State,
    s: &SignedIn,
    pages: Pages,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response> {
    let now = clock::now();
    let users = state.users.list()?;
    let records = state.engine().store().list(None, now)?;
    let mut per_user = std::collections::HashMap::new();
    for r in &records {
        if let Some(id) = r.user_id {
            *per_user.entry(id).or_insert(0usize) += 1;
        }
    }
    let summaries = state.users.factors().summaries()?;
    let (page_users, users_pager) = paged(users.iter().collect(), pages.users);
    let (page_records, sessions_pager) = paged(records, pages.sessions);
    let rows = page_users
        .into_iter()
        .map(|u| UserRow {
            username: u.username.clone(),
            is_admin: u.is_admin,
            disabled: u.disabled,
            created_at: u.created_at,
            sessions: per_user.get(&u.id).copied().unwrap_or(0),
            is_viewer: u.id == s.user.id,
            factors: summaries.get(&u.id).map(describe).unwrap_or_default(),
        })
        .collect();
    let name_of = |id: Option<i64>| {
        id.and_then(|id| users.iter().find(|u| u.id == id))
            .map(|u| u.username.clone())
    };
    let token = csrf::session_token(state.engine().signer(), &s.key);
    Ok(html(views::admin_page(&AdminView {
        viewer: viewer(&s.user),
        users: rows,
        users_pager,
        sessions: session_rows(&page_records, &s.key, name_of),
        sessions_pager,
        csrf: &token,
        notice,
        error,
        now,
    })))
}

pub(super) fn get_admin(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        match admin(state, session, request)? {
            Ok(s) => render(state, &s, Pages::of(request)?, notice(request), None),
            Err(redirect) => Ok(redirect),
        }
    })
}

pub(super) fn get_delete_user(
    state: &State,
    request: &Request,
    client: &Client,
) -> Result<Response> {
    with_session(state, request, client, |session| {
        let s = match admin(state, session, request)? {
            Ok(s) => s,
            Err(redirect) => return Ok(redirect),
        };
        let name = request.get_param("username").unwrap_or_default();
        let target = state.users.find_by_name(&name)?.ok_or(WebError::NotFound)?;
        let token = csrf::session_token(state.engine().signer(), &s.key);
        Ok(html(views::delete_user_page(
            &viewer(&s.user),
            &target.username,
            &token,
        )))
    })
}

/// What an action did, or why it was refused (status and message).
enum Outcome {
    Done(&'static str),
    Refused(u16, String),
    /// The admin ended their own session.
    SignedOut,
}

fn refused(status: u16, message: &str) -> Outcome {
    Outcome::Refused(status, message.to_owned())
}

/// Every admin action: its path says which.
fn post_action(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let url = request.url();
    let path = url.as_str();
    let form = Form::from_request(request)?;
    with_session(state, request, client, |session| {
        let s = match admin(state, session, request)? {
            Ok(s) => s,
            Err(redirect) => return Ok(redirect),
        };
        check_session_csrf(state, &s.key, &form)?;
        // An administrator with a second factor acts only from a session
        // that gave it (an older password-only one steps up first).
        if !two_factors(&session_methods(session))
            && state.users.factors().summary(s.user.id)?.any()
        {
            return Ok(see_other("/login/second?next=/admin"));
        }
        let clicked = person_clicked(request);
        if let Some(page) = confirm_password(state, session, &s, &form, client, path, clicked)? {
            return Ok(page);
        }
        let outcome = match path {
            "/admin/users" => create_user(state, &form)?,
            "/admin/sessions/end" => end_session(state, session, &form)?,
            _ => {
                let target = state
                    .users
                    .find_by_name(form.get("username").unwrap_or(""))?
                    .ok_or(WebError::NotFound)?;
                user_action(state, session, &s, &target, path, &form)?
            }
        };
        match outcome {
            Outcome::Done(code) => Ok(see_other(&format!("/admin?done={code}"))),
            Outcome::SignedOut => Ok(logged_out()),
            Outcome::Refused(status, message) => {
                // Re-read: the action may have changed the admin themselves.
                match admin(state, session, request) {
                    Ok(Ok(s)) => Ok(render(state, &s, Pages::FIRST, None, Some(&message))?
                        .with_status_code(status)),
                    _ => Err(WebError::Forbidden),
                }
            }
        }
    })
}

/// The fields an admin form may carry through the confirmation page.
const CARRIED: &[&str] = &["username", "password", "admin", "handle", "confirm"];

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
fn person_clicked(request: &Request) -> bool {
    request.header("Sec-Fetch-Mode").is_none()
        || request
            .header("Sec-Fetch-User")
            .is_some_and(|v| v.trim() == "?1")
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
/// `clicked` is false when the browser says no person's click started this
/// request: then even a recent confirmation does not count (see
/// [`person_clicked`]).
///
/// `Ok(None)` means go ahead.
fn confirm_password(
    state: &State,
    session: &Session<'_>,
    s: &SignedIn,
    form: &Form,
    client: &Client,
    path: &str,
    clicked: bool,
) -> Result<Option<Response>> {
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
            error,
        }))
        .with_status_code(status)
    };
    let Some(password) = form.get(REAUTH_FIELD) else {
        return Ok(Some(page(200, None)));
    };
    let check = state.accounts().confirm_password(
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

fn password_message(e: &UserError) -> Option<String> {
    match e {
        UserError::Password(p) if *p != PasswordError::Busy => Some(capitalise(&p.to_string())),
        UserError::InvalidName(m) => Some(capitalise(m)),
        UserError::Taken => Some("That username is taken.".to_owned()),
        _ => None,
    }
}

/// An account operation's result as an admin page outcome: a rule's
/// refusal (409) or a bad name or password (400, 409 for a taken name) is
/// shown on the page; anything else is an error.
fn outcome<T>(result: std::result::Result<T, AccountError>, done: &'static str) -> Result<Outcome> {
    match result {
        Ok(_) => Ok(Outcome::Done(done)),
        Err(AccountError::Refused(why)) => Ok(Outcome::Refused(409, capitalise(&why.to_string()))),
        Err(AccountError::User(e)) => match password_message(&e) {
            Some(m) => Ok(Outcome::Refused(
                if matches!(e, UserError::Taken) {
                    409
                } else {
                    400
                },
                m,
            )),
            None => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

fn create_user(state: &State, form: &Form) -> Result<Outcome> {
    let is_admin = form.get("admin").is_some_and(|v| !v.is_empty());
    let created = state.accounts().create_user(
        form.get("username").unwrap_or(""),
        form.get("password").unwrap_or(""),
        is_admin,
    );
    outcome(created, "user-created")
}

fn end_session(state: &State, session: &Session<'_>, form: &Form) -> Result<Outcome> {
    let handle = form.get("handle").unwrap_or("");
    Ok(
        match state
            .accounts()
            .end_session(session, Owner::Anyone, handle)?
        {
            Ended::This => Outcome::SignedOut,
            Ended::Other => Outcome::Done("session-ended"),
        },
    )
}

fn user_action(
    state: &State,
    session: &Session<'_>,
    s: &SignedIn,
    target: &User,
    path: &str,
    form: &Form,
) -> Result<Outcome> {
    let accounts = state.accounts();
    let me = Some(&s.user);
    match path {
        "/admin/users/password" => outcome(
            accounts.may_override(session, target).and_then(|()| {
                accounts.set_password(target, form.get("password").unwrap_or(""), Some(session))
            }),
            "password-reset",
        ),
        "/admin/users/disable" => outcome(accounts.disable(me, target, false), "user-disabled"),
        "/admin/users/enable" => outcome(accounts.enable(target), "user-enabled"),
        "/admin/users/grant-admin" => outcome(accounts.grant_admin(target), "admin-granted"),
        "/admin/users/reset-2fa" => outcome(
            accounts
                .may_override(session, target)
                .and_then(|()| accounts.reset_second_factors(target)),
            "factors-reset",
        ),
        "/admin/users/revoke-admin" => outcome(
            accounts.revoke_admin(target, Some(session)),
            "admin-revoked",
        ),
        "/admin/users/delete" => {
            if form.get("confirm") == Some("yes") {
                outcome(accounts.delete(me, target, false), "user-deleted")
            } else {
                Ok(refused(400, "Deleting a user needs the confirm step."))
            }
        }
        _ => Err(WebError::NotFound),
    }
}

/// What the admin list says of a user's second factors.
fn describe(s: &crate::users::factors::Summary) -> Vec<String> {
    let mut out = Vec::new();
    if s.totp {
        out.push("authenticator app".to_owned());
    }
    match s.passkeys {
        0 => {}
        1 => out.push("1 passkey".to_owned()),
        n => out.push(format!("{n} passkeys")),
    }
    if s.recovery_left > 0 {
        out.push(format!("{} recovery codes", s.recovery_left));
    }
    out
}
