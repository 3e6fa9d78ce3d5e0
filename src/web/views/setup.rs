//! The new-user pages: the first administrator (first run) and sign-up.

use maud::{Markup, html};

use super::{csrf_field, layout, messages};

/// The fields of a "new user" form (setup and sign-up).
pub struct NewUserView<'a> {
    /// CSRF token.
    pub csrf: &'a str,
    /// Refill.
    pub username: &'a str,
    /// Error to show.
    pub error: Option<&'a str>,
    /// The one-time setup token (setup only).
    pub setup_token: Option<&'a str>,
}

fn new_user_fields(v: &NewUserView<'_>) -> Markup {
    html! {
        (csrf_field(v.csrf))
        @if let Some(t) = v.setup_token {
            input type="hidden" name="token" value=(t);
        }
        label for="username" { "Username" }
        input type="text" id="username" name="username" value=(v.username)
            autocomplete="username" autocapitalize="none" spellcheck="false" maxlength="64" required;
        label for="password" { "Password" }
        input type="password" id="password" name="password" autocomplete="new-password"
            minlength="8" required aria-describedby="password-rules";
        label for="password2" { "Password again" }
        input type="password" id="password2" name="password2" autocomplete="new-password"
            minlength="8" required;
        p.muted id="password-rules" { "8 characters or more, at most 72 bytes." }
    }
}

/// `GET /setup`: create the first administrator.
pub fn setup_page(v: &NewUserView<'_>) -> Markup {
    layout(
        "Set up",
        None,
        html! {
            section.card.narrow {
                h1 { "Welcome to gatehouse" }
                p { "Create the first administrator. This page works once, with the link printed when the server started." }
                (messages(None, v.error))
                form id="setup-form" method="post" action="/setup" {
                    (new_user_fields(v))
                    button type="submit" id="setup-submit" { "Create administrator" }
                }
            }
        },
    )
}

/// `GET /register`: self-service sign-up.
pub fn register_page(v: &NewUserView<'_>) -> Markup {
    layout(
        "Sign up",
        None,
        html! {
            section.card.narrow {
                h1 { "Sign up" }
                (messages(None, v.error))
                form id="register-form" method="post" action="/register" {
                    (new_user_fields(v))
                    button type="submit" id="register-submit" { "Create account" }
                }
                p.muted { "Already have an account? " a href="/login" { "Sign in" } }
            }
        },
    )
}
