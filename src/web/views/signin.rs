//! The sign-in pages: the form (password, or a passkey) and the sign-out
//! confirmation.

use maud::{Markup, html};

use super::{Viewer, csrf_field, layout, passkey_form, passkey_script};

/// What the login page shows.
pub struct LoginView<'a> {
    /// Where to go after signing in.
    pub next: &'a str,
    /// The CSRF token for the form.
    pub csrf: &'a str,
    /// The username to refill after a failure.
    pub username: &'a str,
    /// An error to show.
    pub error: Option<&'a str>,
    /// Whether to link to the sign-up page.
    pub registration: bool,
}

/// `GET /login`.
pub fn login_page(v: &LoginView<'_>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in" }
                @if let Some(e) = v.error {
                    p.error id="login-error" role="alert" { (e) }
                }
                form id="login-form" method="post" action="/login" {
                    (csrf_field(v.csrf))
                    input type="hidden" name="next" value=(v.next);
                    label for="username" { "Username" }
                    input type="text" id="username" name="username" value=(v.username)
                        autocomplete="username" autocapitalize="none" spellcheck="false"
                        maxlength="64" required autofocus[v.username.is_empty()];
                    label for="password" { "Password" }
                    input type="password" id="password" name="password"
                        autocomplete="current-password" required autofocus[!v.username.is_empty()];
                    label.check for="remember" {
                        input type="checkbox" id="remember" name="remember" value="1";
                        "Remember me on this device"
                    }
                    button type="submit" id="login-submit" { "Sign in" }
                }
                (passkey_form("passkey-login", "authenticate", "/login/passkey/options",
                    "/login/passkey", v.csrf,
                    html! {
                        input type="hidden" name="next" value=(v.next);
                        label.check for="passkey-remember" {
                            input type="checkbox" id="passkey-remember" name="remember" value="1";
                            "Remember me on this device"
                        }
                    },
                    "Sign in with a passkey"))
                @if v.registration {
                    p.muted { "No account yet? " a href="/register" id="register-link" { "Sign up" } }
                }
            }
            (passkey_script())
        },
    )
}

/// `GET /logout`: one button, so a link or image cannot sign anyone out.
pub fn logout_page(viewer: &Viewer<'_>, csrf: &str) -> Markup {
    layout(
        "Sign out",
        Some(viewer),
        html! {
            section.card.narrow {
                h1 { "Sign out?" }
                p { "You are signed in as " strong { (viewer.username) } "." }
                form id="logout-form" method="post" action="/logout" {
                    (csrf_field(csrf))
                    button type="submit" id="logout-submit" { "Sign out" }
                }
            }
        },
    )
}
