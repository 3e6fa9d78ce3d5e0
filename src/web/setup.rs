//! First-run setup (`/setup`, guarded by a one-time token printed at start)
//! and optional self-registration (`/register`).

use rouille::{Request, Response};
use subtle::ConstantTimeEq;

use super::csrf::{anonymous_csrf, check_anonymous_csrf, with_csrf_cookie};
use super::error::{Result, WebError};
use super::form::Form;
use super::respond::{capitalise, html, see_other};
use super::router::{Route, Token};
use super::signed_in::current_user;
use super::state::{State, with_session};
use super::views::{self, NewUserView};
use crate::accounts::{AccountError, Created};
use crate::auth::proxy::Client;
use crate::logging;
use crate::users::{User, UserError, Username};

/// First run, and sign-up while it is open (closed, `/register` is no
/// route at all).
pub(super) const ROUTES: &[Route] = &[
    Route::at("/setup")
        .get(get_setup)
        .form(Token::Anonymous, post_setup),
    Route::at("/register")
        .get(get_register)
        .form(Token::Anonymous, post_register)
        .when(|state| state.allow_registration),
];

/// Whether `token` is the live setup token (and so no user exists yet).
fn setup_open(state: &State, token: Option<&str>) -> Result<bool> {
    let held = state
        .setup_token
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let matches = match (held.as_deref(), token) {
        (Some(expected), Some(got)) => bool::from(expected.as_bytes().ct_eq(got.as_bytes())),
        _ => false,
    };
    drop(held);
    Ok(matches && state.users.count()? == 0)
}

pub(super) fn get_setup(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let token = request.get_param("token");
    if !setup_open(state, token.as_deref())? {
        return Err(WebError::NotFound);
    }
    let (csrf, cookie) = anonymous_csrf(state, request, client);
    let page = views::setup_page(&NewUserView {
        csrf: &csrf,
        username: "",
        error: None,
        setup_token: token.as_deref(),
    });
    Ok(with_csrf_cookie(html(page), cookie))
}

/// Checks a new-user form; `Err` holds the message to show.
fn new_user_fields(form: &Form) -> std::result::Result<(Username, String), String> {
    let name = Username::parse(form.get("username").unwrap_or("")).map_err(|e| e.to_string())?;
    let password = form.get("password").unwrap_or("");
    if password != form.get("password2").unwrap_or("") {
        return Err("The two passwords do not match.".to_owned());
    }
    crate::users::password::validate(password).map_err(|e| capitalise(&e.to_string()))?;
    Ok((name, password.to_owned()))
}

fn new_user_error(
    state: &State,
    request: &Request,
    client: &Client,
    form: &Form,
    status: u16,
    message: &str,
    setup: bool,
) -> Response {
    let (csrf, cookie) = anonymous_csrf(state, request, client);
    let v = NewUserView {
        csrf: &csrf,
        username: form.get("username").unwrap_or(""),
        error: Some(message),
        setup_token: if setup { form.get("token") } else { None },
    };
    let page = if setup {
        views::setup_page(&v)
    } else {
        views::register_page(&v)
    };
    with_csrf_cookie(html(page).with_status_code(status), cookie)
}

/// Creates a user and signs them in, or says what is wrong with the form.
fn create_and_sign_in(
    state: &State,
    request: &Request,
    client: &Client,
    form: &Form,
    admin: bool,
    done: &str,
) -> Result<Response> {
    let setup = admin;
    let (name, password) = match new_user_fields(form) {
        Ok(v) => v,
        Err(message) => {
            return Ok(new_user_error(
                state, request, client, form, 400, &message, setup,
            ));
        }
    };
    let user: User =
        match state
            .accounts_for(request, client)
            .create_user(name.as_str(), &password, admin)
        {
            Ok(u) => u,
            Err(AccountError::User(UserError::Taken)) => {
                return Ok(new_user_error(
                    state,
                    request,
                    client,
                    form,
                    409,
                    "That username is taken.",
                    setup,
                ));
            }
            Err(e) => return Err(e.into()),
        };
    logging::line(&logging::login_message(
        "created",
        &user.username,
        client.ip,
        if admin { " role=admin" } else { "" },
    ));
    with_session(state, request, client, |session| {
        let next = format!("/?done={done}");
        Ok(
            match state
                .accounts()
                .sign_in_created(session, &user, &next, state.two_factor)?
            {
                Created::SignedIn => see_other(&next),
                Created::Enrol => see_other("/login/enrol"),
            },
        )
    })
}

pub(super) fn post_setup(state: &State, request: &Request, client: &Client) -> Result<Response> {
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    if !setup_open(state, form.get("token"))? {
        return Err(WebError::NotFound);
    }
    let response = create_and_sign_in(state, request, client, &form, true, "welcome")?;
    if state.users.count()? > 0 {
        // The first administrator exists: the token is spent.
        *state
            .setup_token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
    Ok(response)
}

pub(super) fn get_register(state: &State, request: &Request, client: &Client) -> Result<Response> {
    if !state.allow_registration {
        return Err(WebError::NotFound);
    }
    with_session(state, request, client, |session| {
        if current_user(state, session)?.is_some() {
            return Ok(see_other("/"));
        }
        let (csrf, cookie) = anonymous_csrf(state, request, client);
        let page = views::register_page(&NewUserView {
            csrf: &csrf,
            username: "",
            error: None,
            setup_token: None,
        });
        Ok(with_csrf_cookie(html(page), cookie))
    })
}

pub(super) fn post_register(state: &State, request: &Request, client: &Client) -> Result<Response> {
    if !state.allow_registration {
        return Err(WebError::NotFound);
    }
    let form = Form::from_request(request)?;
    check_anonymous_csrf(state, request, &form)?;
    create_and_sign_in(state, request, client, &form, false, "registered")
}
