//! The sign-in pages: the form (password, or a passkey) and the sign-out
//! confirmation.

use maud::{Markup, html};

use super::layout::layout_with_head;
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
    /// The app being signed in to, when the sign-in is an OpenID Connect
    /// client's (named so the user knows where the password goes on to).
    pub app: Option<&'a str>,
}

/// `GET /login`.
pub fn login_page(v: &LoginView<'_>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in" }
                @if let Some(app) = v.app {
                    p id="login-app" { "to continue to " strong { (app) } }
                }
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
                p.muted { "Signed in on another device? " a href="/login/code" id="code-link" { "Sign in with a code from it" } }
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

/// How long the signed-out page waits before it moves on without its
/// script (the script moves on as soon as every frame has loaded, and
/// after three seconds at most).
const SIGNED_OUT_REFRESH_SECONDS: u32 = 5;

/// The page after a sign-out that signed out of apps with front-channel
/// logout (OpenID Connect Front-Channel Logout 1.0): each app's logout
/// URL, `(name, url)`, loads in a hidden frame, then the browser goes on
/// to `next` (`/login`, or the app's `post_logout_redirect_uri`): the
/// script (`/assets/signed-out.js`, loaded before the frames so it sees
/// each one load) goes when all have loaded or after three seconds; the
/// refresh goes after five without it; the link is for whoever is
/// quicker.
pub fn signed_out_page(frames: &[(&str, &str)], next: &str) -> Markup {
    let refresh = format!("{SIGNED_OUT_REFRESH_SECONDS}; url={next}");
    layout_with_head(
        "Signed out",
        None,
        html! { meta http-equiv="refresh" content=(refresh); },
        html! {
            script src="/assets/signed-out.js" {}
            section.card.narrow id="signed-out" {
                h1 { "You are signed out" }
                p { "Signing you out of your apps as well\u{2026}" }
                @for (n, (name, url)) in frames.iter().enumerate() {
                    iframe.frontchannel id=(format!("frontchannel-{n}")) src=(url)
                        title=(format!("Signing out of {name}")) hidden {}
                }
                p { a href=(next) id="signed-out-continue" { "Continue" } }
            }
        },
    )
}

/// What `/device` shows.
pub struct DeviceView<'a> {
    /// The signed-in user.
    pub viewer: &'a Viewer<'a>,
    /// The session's CSRF token.
    pub csrf: &'a str,
    /// The code as typed (or filled from the device's link).
    pub user_code: &'a str,
    /// The app the code is for, when it is a pending one.
    pub app: Option<&'a str>,
    /// An error to show.
    pub message: Option<&'a str>,
    /// The outcome, once allowed or declined (no form then).
    pub done: Option<&'a str>,
}

/// `/device` (RFC 8628 §3.3): the user types the code their device shows
/// and allows or declines it. The app is named once the code is known.
pub fn device_page(v: &DeviceView<'_>) -> Markup {
    layout(
        "Sign in a device",
        Some(v.viewer),
        html! {
            section.card.narrow {
                h1 { "Sign in a device" }
                @if let Some(done) = v.done {
                    p id="device-done" { (done) }
                } @else {
                    @if let Some(message) = v.message {
                        p.error id="device-error" { (message) }
                    }
                    @if let Some(app) = v.app {
                        p id="device-app" { "Sign in " strong { (app) } " as " strong { (v.viewer.username) } "?" }
                    } @else {
                        p { "Type the code your device shows." }
                    }
                    form id="device-form" method="post" action="/device" {
                        (csrf_field(v.csrf))
                        label for="user_code" { "Code" }
                        input type="text" id="user_code" name="user_code" value=(v.user_code)
                            autocomplete="off" autocapitalize="characters" spellcheck="false" required;
                        button type="submit" id="device-allow" name="action" value="allow" { "Allow" }
                        button type="submit" id="device-deny" name="action" value="deny" { "Decline" }
                    }
                }
            }
        },
    )
}

/// What the fresh-sign-in page shows.
pub struct ReauthView<'a> {
    /// The signed-in user.
    pub viewer: &'a Viewer<'a>,
    /// The app that asked for it.
    pub app: &'a str,
    /// The authorization request to go on with.
    pub next: &'a str,
    /// The session's CSRF token.
    pub csrf: &'a str,
    /// An error to show.
    pub error: Option<&'a str>,
}

/// `/oidc/reauth`: an app asked for a fresh sign-in (`prompt=login`, or
/// a `max_age` the sign-in is older than); the signed-in user gives their
/// password again, and goes on to the app.
pub fn reauth_page(v: &ReauthView<'_>) -> Markup {
    layout(
        "Sign in again",
        Some(v.viewer),
        html! {
            section.card.narrow {
                h1 { "Sign in again" }
                p id="reauth-app" { strong { (v.app) } " asks you to give your password again." }
                @if let Some(e) = v.error {
                    p.error id="reauth-error" role="alert" { (e) }
                }
                form id="reauth-form" method="post" action="/oidc/reauth" {
                    (csrf_field(v.csrf))
                    input type="hidden" name="next" value=(v.next);
                    input type="text" name="username" value=(v.viewer.username) autocomplete="username" hidden;
                    label for="reauth-password" { "Password for " (v.viewer.username) }
                    input type="password" id="reauth-password" name="reauth_password" autocomplete="current-password" required autofocus;
                    button type="submit" id="reauth-submit" { "Continue" }
                }
                p { a href="/" { "Cancel" } }
            }
        },
    )
}
