//! Who may use `/admin` (an administrator), what every administrator's
//! action passes before it runs (the session's token, a second factor
//! where there is one, a recent password), and how its outcome is
//! answered: back to its section with a notice, or the section again with
//! why it was refused.

use rouille::{Request, Response};

use crate::accounts::{AccountError, two_factors};
use crate::auth::proxy::Client;
use crate::session::Session;
use crate::users::UserError;
use crate::users::password::PasswordError;
use crate::web::csrf::check_session_csrf;
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::principal::session_methods;
use crate::web::respond::{capitalise, logged_out, see_other};
use crate::web::signed_in::{SignedIn, signed_in};
use crate::web::state::{State, with_session};

use super::reauth::{Asked, confirm_password, person_clicked};

/// The signed-in administrator, a redirect for anonymous visitors, or 403.
pub(super) fn admin(
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

/// A page of the area: `page` for the signed-in administrator, else the
/// way to sign in (anonymous) or `403` (anyone else).
pub(super) fn as_admin(
    state: &State,
    request: &Request,
    client: &Client,
    page: impl FnOnce(&SignedIn) -> Result<Response>,
) -> Result<Response> {
    with_session(state, request, client, |session| {
        match admin(state, session, request)? {
            Ok(s) => page(&s),
            Err(redirect) => Ok(redirect),
        }
    })
}

/// The section of `/admin` an action belongs to.
pub(super) struct Section {
    /// Its page: where a done action goes, with its notice, and where a
    /// confirmation's "Cancel" goes.
    pub path: &'static str,
    /// Its first page with a refusal's message.
    pub refused: fn(&State, &SignedIn, &str) -> Result<Response>,
}

/// What an action did, or why it was refused (status and message).
pub(super) enum Outcome {
    Done(&'static str),
    /// Done, answered on another page of the section than its first (a
    /// group's members), with the notice appended to its query.
    DoneAt(String, &'static str),
    Refused(u16, String),
    /// The admin ended their own session.
    SignedOut,
    /// Answered by the action's own page: one that shows something the
    /// one time it exists (a secret, a link just made: never carried in a
    /// URL), or a form shown again with what was typed and why it was
    /// refused.
    Page(Response),
}

pub(super) fn refused(status: u16, message: &str) -> Outcome {
    Outcome::Refused(status, message.to_owned())
}

/// Runs an administrator's action: reads the form, sends anonymous
/// visitors to sign in (403 for a user who is no administrator), refuses a
/// wrong token, steps a password-only session of an administrator with a
/// second factor up first, asks for the password when the last one is not
/// recent (see `reauth`), then runs `action` and answers its outcome in
/// `section`.
pub(super) fn act(
    state: &State,
    request: &Request,
    client: &Client,
    section: &Section,
    action: impl FnOnce(&Session<'_>, &SignedIn, &Form) -> Result<Outcome>,
) -> Result<Response> {
    let url = request.url();
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
        let asked = Asked {
            action: &url,
            back: section.path,
            clicked: person_clicked(request),
        };
        if let Some(page) = confirm_password(state, session, &s, &form, (request, client), &asked)?
        {
            return Ok(page);
        }
        match action(session, &s, &form)? {
            Outcome::Done(code) => Ok(see_other(&format!("{}?done={code}", section.path))),
            Outcome::DoneAt(page, code) => Ok(see_other(&format!("{page}&done={code}"))),
            Outcome::SignedOut => Ok(logged_out()),
            Outcome::Page(page) => Ok(page),
            Outcome::Refused(status, message) => {
                // Re-read: the action may have changed the admin themselves.
                match admin(state, session, request) {
                    Ok(Ok(s)) => {
                        Ok((section.refused)(state, &s, &message)?.with_status_code(status))
                    }
                    _ => Err(WebError::Forbidden),
                }
            }
        }
    })
}

fn password_message(e: &UserError) -> Option<String> {
    match e {
        UserError::Password(p) if *p != PasswordError::Busy => Some(capitalise(&p.to_string())),
        UserError::InvalidName(m) => Some(capitalise(m)),
        UserError::Taken => Some("That username is taken.".to_owned()),
        // A directory user's password is the directory's.
        UserError::External => Some(capitalise(&e.to_string())),
        _ => None,
    }
}

/// An account operation's result as an admin page outcome: a rule's
/// refusal (409) or a bad name or password (400, 409 for a taken name) is
/// shown on the page; anything else is an error.
pub(super) fn outcome<T>(
    result: std::result::Result<T, AccountError>,
    done: &'static str,
) -> Result<Outcome> {
    match result {
        Ok(_) => Ok(Outcome::Done(done)),
        Err(AccountError::Refused(why)) => Ok(Outcome::Refused(409, capitalise(&why.to_string()))),
        Err(AccountError::User(e)) => match password_message(&e) {
            Some(m) => Ok(Outcome::Refused(
                if matches!(e, UserError::Taken | UserError::External) {
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
