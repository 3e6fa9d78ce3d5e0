//! The sign-in pages: the form (password, or a passkey) and the sign-out
//! confirmation.

use maud::{Markup, html};

use super::{PasskeyForm, Viewer, csrf_field, layout, or, passkey_form, passkey_script};

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
                    // One "remember me" for both ways in: the passkey
                    // form's script copies it (the passkey needs the
                    // script anyway; the password form needs none).
                    label.check for="remember" {
                        input type="checkbox" id="remember" name="remember" value="1";
                        "Remember me on this device"
                    }
                    button.block type="submit" id="login-submit" { "Sign in" }
                }
                (or())
                (passkey_form(PasskeyForm {
                    id: "passkey-login",
                    purpose: "authenticate",
                    options: "/login/passkey/options",
                    action: "/login/passkey",
                    csrf: v.csrf,
                    extra: html! {
                        input type="hidden" name="next" value=(v.next);
                        input type="hidden" name="remember" value="" data-checked-from="remember";
                    },
                    label: "Sign in with a passkey",
                    secondary: true,
                }))
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

/// RP-initiated logout without proof of which session it is for (no
/// `id_token_hint` naming this one): one button, as for `/logout`, so a
/// link from anywhere cannot sign anyone out. `fields` are the request's
/// own parameters, carried to the POST.
pub fn end_session_page(
    viewer: &Viewer<'_>,
    csrf: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> Markup {
    layout(
        "Sign out",
        Some(viewer),
        html! {
            section.card.narrow {
                h1 { "Sign out?" }
                p { "An app asks to sign you out. You are signed in as " strong { (viewer.username) } "." }
                form id="end-session-form" method="post" action=(action) {
                    (csrf_field(csrf))
                    input type="hidden" name="confirm" value="yes";
                    @for (name, value) in fields {
                        input type="hidden" name=(name) value=(value);
                    }
                    button type="submit" id="end-session-submit" { "Sign out" }
                }
            }
        },
    )
}
