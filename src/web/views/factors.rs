//! Second factors as pages show them: the step after the password, the
//! authenticator set-up, the recovery codes (shown once, and what is left
//! after using one), and the account page's second-factor section.

use maud::{Markup, html};

use super::{PasskeyForm, Viewer, csrf_field, layout, or, passkey_form, passkey_script, when};
use crate::clock::Millis;

/// What the second-step page shows.
pub struct SecondStepView<'a> {
    /// Anonymous CSRF token.
    pub csrf: &'a str,
    /// Where to go afterwards (a signed-in session adding a factor).
    pub next: &'a str,
    /// Whether the user has an authenticator app.
    pub totp: bool,
    /// Whether the user has passkeys.
    pub passkeys: bool,
    /// Whether the user has none at all (a signed-in session sent here
    /// by an app that needs one).
    pub none: bool,
    /// After a wrong code.
    pub error: Option<&'a str>,
}

/// `GET /login/second`: the step after the password.
pub fn second_step_page(v: &SecondStepView<'_>) -> Markup {
    layout(
        "Second step",
        None,
        html! {
            section.card.narrow {
                h1 { "One more step" }
                @if let Some(e) = v.error {
                    p.error id="second-error" role="alert" { (e) }
                }
                @if v.none {
                    p id="needs-factor" {
                        "This app asks for a second factor, and your account has none yet. "
                        a href="/account#two-factor" { "Set one up on your account" }
                        ", then open the app again."
                    }
                }
                @if v.totp {
                    form id="code-form" method="post" action="/login/second" {
                        (csrf_field(v.csrf))
                        input type="hidden" name="next" value=(v.next);
                        label for="code" { "Code from your authenticator app" }
                        input type="text" id="code" name="code" inputmode="numeric"
                            autocomplete="one-time-code" pattern="[0-9 ]{6,7}" maxlength="7"
                            required autofocus;
                        button.block type="submit" id="code-submit" { "Verify" }
                    }
                }
                @if v.totp && v.passkeys { (or()) }
                @if v.passkeys {
                    (passkey_form(PasskeyForm {
                        id: "second-passkey",
                        purpose: "authenticate",
                        options: "/login/second/passkey/options",
                        action: "/login/second/passkey",
                        csrf: v.csrf,
                        extra: html! { input type="hidden" name="next" value=(v.next); },
                        label: "Use a passkey",
                        secondary: v.totp,
                    }))
                }
                @if !v.none {
                    details id="recovery" {
                        summary { "Lost your device? Use a recovery code" }
                        form id="recovery-form" method="post" action="/login/second" {
                            (csrf_field(v.csrf))
                            input type="hidden" name="next" value=(v.next);
                            label for="recovery-code" { "Recovery code" }
                            input type="text" id="recovery-code" name="recovery"
                                autocomplete="off" autocapitalize="none" spellcheck="false"
                                maxlength="64" required;
                            button type="submit" id="recovery-submit" { "Use recovery code" }
                        }
                    }
                }
                p.muted { a href="/login" { "Start again" } }
            }
            (passkey_script())
        },
    )
}

/// What the authenticator set-up page shows.
pub struct TotpEnrolView<'a> {
    /// Who, when signed in (not during a sign-in that must set one up).
    pub viewer: Option<Viewer<'a>>,
    /// CSRF token (the session's, or the anonymous one).
    pub csrf: &'a str,
    /// The QR code of the `otpauth://` URI, as SVG.
    pub qr: &'a str,
    /// The secret in base32.
    pub secret: &'a str,
    /// Where the code goes.
    pub action: &'a str,
    /// Whether this is a sign-in that must set one up first.
    pub required: bool,
    /// Whether to offer a passkey instead (a sign-in that must set one up).
    pub passkey: bool,
    /// After a wrong code.
    pub error: Option<&'a str>,
}

/// The authenticator set-up page: QR code, secret, a code to confirm.
pub fn totp_enrol_page(v: &TotpEnrolView<'_>) -> Markup {
    let grouped: Vec<String> = v
        .secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    layout(
        "Set up an authenticator app",
        v.viewer.as_ref(),
        html! {
            section.card.narrow {
                h1 { "Set up an authenticator app" }
                @if v.required {
                    p id="enrol-required" { "This server asks everyone for a second factor. Set one up to finish signing in." }
                }
                @if let Some(e) = v.error {
                    p.error id="enrol-error" role="alert" { (e) }
                }
                p { "Scan this code with an authenticator app (Aegis, Google Authenticator, 1Password, ...):" }
                div.qr id="totp-qr" { (maud::PreEscaped(v.qr)) }
                p { "Or type this key into the app:" }
                p { code id="totp-secret" data-secret=(v.secret) { (grouped.join(" ")) } }
                form id="enrol-form" method="post" action=(v.action) {
                    (csrf_field(v.csrf))
                    label for="code" { "The code the app shows now" }
                    input type="text" id="code" name="code" inputmode="numeric"
                        autocomplete="one-time-code" pattern="[0-9 ]{6,7}" maxlength="7" required autofocus;
                    button type="submit" id="enrol-submit" { "Turn on" }
                }
                @if v.passkey {
                    h2 { "Or use a passkey" }
                    (passkey_form(PasskeyForm {
                        id: "enrol-passkey",
                        purpose: "register",
                        options: "/login/enrol/passkey/options",
                        action: "/login/enrol/passkey",
                        csrf: v.csrf,
                        extra: html! {},
                        label: "Add a passkey",
                        secondary: true,
                    }))
                }
            }
            @if v.passkey { (passkey_script()) }
        },
    )
}

/// The recovery codes, shown once.
pub fn recovery_codes_page(viewer: Option<&Viewer<'_>>, codes: &[String], next: &str) -> Markup {
    layout(
        "Recovery codes",
        viewer,
        html! {
            section.card.narrow {
                h1 { "Your recovery codes" }
                p {
                    "Each code signs you in once if you lose your authenticator or passkeys. "
                    strong { "They are shown only now:" }
                    " print them or keep them in a password manager."
                }
                ol.codes id="recovery-codes" {
                    @for c in codes { li { code { (c) } } }
                }
                p { a.button href=(next) id="continue" { "Continue" } }
            }
        },
    )
}

/// After a sign-in with a recovery code: how many are left.
pub fn recovery_used_page(left: i64, next: &str) -> Markup {
    layout(
        "Signed in",
        None,
        html! {
            section.card.narrow {
                h1 { "Signed in with a recovery code" }
                p id="recovery-left" {
                    @if left == 1 { "1 recovery code is left." } @else { (left) " recovery codes are left." }
                }
                @if left <= 3 {
                    p { "Make new ones, or set up your authenticator again, on " a href="/account#two-factor" { "your account" } "." }
                }
                p { a.button href=(next) id="continue" { "Continue" } }
            }
        },
    )
}

/// One passkey on the account page.
pub struct PasskeyRow {
    /// Row id, for removing.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// When added.
    pub created_at: Millis,
    /// When last used.
    pub last_used_at: Option<Millis>,
}

/// The account page's second-factor section.
pub struct TwoFactorView {
    /// An authenticator app is set up.
    pub totp: bool,
    /// Recovery codes left.
    pub recovery_left: i64,
    /// The passkeys.
    pub passkeys: Vec<PasskeyRow>,
    /// The session gave a second factor (or the user has none): changes
    /// are allowed without stepping up first.
    pub may_change: bool,
}

pub(super) fn two_factor_section(t: &TwoFactorView, csrf: &str, now: Millis) -> Markup {
    html! {
        section.card id="two-factor" {
            h2 { "Second factor" }
            @if !t.may_change {
                p id="step-up" {
                    "To change these, first "
                    a href="/login/second?next=/account" { "confirm with your current second factor" } "."
                }
            }
            h3 { "Authenticator app" }
            @if t.totp {
                p id="totp-on" { "On." }
                // Turning it off cannot be undone (a new set-up is a new
                // seed): the button leads to a confirm step.
                form method="get" action="/account/totp/remove" {
                    button.danger type="submit" id="totp-remove" disabled[!t.may_change] { "Turn off…" }
                }
            } @else {
                p id="totp-off" { "Off." }
                form method="post" action="/account/totp" {
                    (csrf_field(csrf))
                    button type="submit" id="totp-start" disabled[!t.may_change] { "Set up an authenticator app" }
                }
            }
            h3 { "Passkeys" }
            @if t.passkeys.is_empty() {
                p.muted id="no-passkeys" { "None yet." }
            } @else {
                div.table { table id="passkeys" {
                    thead { tr { th { "Name" } th { "Added" } th { "Last used" } th {} } }
                    tbody {
                        @for p in &t.passkeys {
                            tr {
                                td.passkey-name { (p.name) }
                                td { (when(p.created_at, now)) }
                                td { @match p.last_used_at { Some(at) => (when(at, now)), None => "never" } }
                                td {
                                    // The confirm step first: a removed
                                    // passkey cannot be put back.
                                    form method="get" action="/account/passkeys/remove" {
                                        input type="hidden" name="id" value=(p.id);
                                        button.small.danger type="submit" disabled[!t.may_change] { "Remove…" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            @if t.may_change {
                (passkey_form(PasskeyForm {
                    id: "passkey-register",
                    purpose: "register",
                    options: "/account/passkeys/options",
                    action: "/account/passkeys",
                    csrf,
                    extra: html! {
                        label for="passkey-name" { "Name" }
                        input type="text" id="passkey-name" name="name" maxlength="64" value="Passkey" required;
                    },
                    label: "Add a passkey",
                    secondary: false,
                }))
            }
            h3 { "Recovery codes" }
            p id="recovery-count" {
                @if t.recovery_left == 1 { "1 code left." } @else { (t.recovery_left) " codes left." }
            }
            @if t.totp || !t.passkeys.is_empty() {
                form method="post" action="/account/recovery" {
                    (csrf_field(csrf))
                    button type="submit" id="recovery-new" disabled[!t.may_change] { "Make new recovery codes" }
                }
            }
        }
        (passkey_script())
    }
}
