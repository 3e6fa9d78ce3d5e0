//! HTML views: pure functions from plain data to maud `Markup`.
//!
//! No inline scripts or styles: the Content-Security-Policy forbids them,
//! and every page reads fine without the stylesheet. Elements that tests
//! and scripts look for carry stable `id`s.

use maud::{DOCTYPE, Markup, html};

use crate::clock::Millis;
use crate::logging::rfc3339;

/// The signed-in user as pages show them.
pub struct Viewer<'a> {
    /// Name to show.
    pub username: &'a str,
    /// Whether to offer the admin page.
    pub is_admin: bool,
}

/// The shared layout.
pub fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · gatehouse" }
                link rel="stylesheet" href="/assets/style.css";
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
            }
            body {
                header.top {
                    a.brand href="/" { "gatehouse" }
                    nav aria-label="Main" {
                        @if let Some(v) = viewer {
                            a href="/" { "Home" }
                            a href="/account" id="nav-account" { "Account" }
                            @if v.is_admin {
                                a href="/admin" id="nav-admin" { "Admin" }
                            }
                            a href="/logout" id="nav-logout" { "Sign out" }
                            span.muted id="signed-in-as" { (v.username) }
                        } @else {
                            a href="/login" { "Sign in" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A time as "5 minutes ago" (or "in 2 hours"), exact on hover.
pub fn when(at: Millis, now: Millis) -> Markup {
    html! {
        time datetime=(rfc3339(at)) title=(rfc3339(at)) { (relative(at, now)) }
    }
}

/// "just now", "5 minutes ago", "in 2 hours", "3 days ago".
pub fn relative(at: Millis, now: Millis) -> String {
    let diff = now - at;
    let secs = diff.abs() / 1000;
    let (n, unit) = match secs {
        0..=44 => return "just now".to_owned(),
        45..=3_599 => ((secs + 30) / 60, "minute"),
        3_600..=86_399 => ((secs + 1_800) / 3_600, "hour"),
        _ => ((secs + 43_200) / 86_400, "day"),
    };
    let n = n.max(1);
    let plural = if n == 1 { "" } else { "s" };
    if diff >= 0 {
        format!("{n} {unit}{plural} ago")
    } else {
        format!("in {n} {unit}{plural}")
    }
}

fn messages(notice: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(n) = notice {
            p.notice id="notice" role="status" { (n) }
        }
        @if let Some(e) = error {
            p.error id="error" role="alert" { (e) }
        }
    }
}

fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

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

/// A link on the dashboard.
pub struct AppLink<'a> {
    /// Shown name.
    pub name: &'a str,
    /// Where it goes.
    pub href: &'a str,
}

/// What the dashboard shows.
pub struct DashboardView<'a> {
    /// Who is signed in.
    pub viewer: Viewer<'a>,
    /// This session's visit count.
    pub visits: i64,
    /// Apps the user may open.
    pub apps: Vec<AppLink<'a>>,
    /// A message after an action.
    pub notice: Option<&'a str>,
}

/// `GET /`.
pub fn dashboard_page(v: &DashboardView<'_>) -> Markup {
    layout(
        "Home",
        Some(&v.viewer),
        html! {
            (messages(v.notice, None))
            section.card {
                h1 id="welcome" { "Welcome, " (v.viewer.username) }
                p {
                    "You have opened this page "
                    strong id="visits" { (v.visits) }
                    @if v.visits == 1 { " time" } @else { " times" }
                    " in this session."
                }
            }
            section.card {
                h2 { "Your apps" }
                @if v.apps.is_empty() {
                    p.muted id="no-apps" { "No apps are set up for you yet." }
                } @else {
                    ul id="apps" {
                        @for app in &v.apps {
                            li { a href=(app.href) { (app.name) } }
                        }
                    }
                }
            }
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

/// Where one page of a list is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pager {
    /// This page, from 1.
    pub page: usize,
    /// How many pages there are (at least 1).
    pub pages: usize,
    /// How many rows in all.
    pub total: usize,
}

/// "Page 2 of 3" with previous/next links; `href(n)` is page n's address.
/// Ids start with `id`: `{id}-pager`, `{id}-page`, `{id}-prev`, `{id}-next`.
fn pager(p: Pager, id: &str, href: impl Fn(usize) -> String) -> Markup {
    html! {
        @if p.pages > 1 {
            nav.pager id={ (id) "-pager" } aria-label="Pages" {
                @if p.page > 1 {
                    a.button.small id={ (id) "-prev" } href=(href(p.page - 1)) rel="prev" { "Previous" }
                    " "
                }
                span id={ (id) "-page" } { "Page " (p.page) " of " (p.pages) }
                @if p.page < p.pages {
                    " "
                    a.button.small id={ (id) "-next" } href=(href(p.page + 1)) rel="next" { "Next" }
                }
            }
        }
    }
}

/// One session in a list.
pub struct SessionRow {
    /// Opaque handle (never the id).
    pub handle: String,
    /// Whose (admin list only).
    pub username: Option<String>,
    /// "Firefox on Linux".
    pub device: String,
    /// Client IP when it was made.
    pub ip: String,
    /// Signed in.
    pub created_at: Millis,
    /// Last activity.
    pub last_seen_at: Millis,
    /// Whether it is the viewer's own current session.
    pub current: bool,
    /// Remember-me.
    pub persistent: bool,
}

fn sessions_table(
    rows: &[SessionRow],
    csrf: &str,
    action: &str,
    now: Millis,
    show_user: bool,
) -> Markup {
    html! {
        div.table {
            table id="sessions" {
                thead {
                    tr {
                        @if show_user { th scope="col" { "User" } }
                        th scope="col" { "Device" }
                        th scope="col" { "IP" }
                        th scope="col" { "Signed in" }
                        th scope="col" { "Last seen" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    }
                }
                tbody {
                    @for s in rows {
                        tr id={ "session-" (s.handle) } class=[s.current.then_some("current")] {
                            @if show_user { td { (s.username.as_deref().unwrap_or("(anonymous)")) } }
                            td {
                                (s.device)
                                @if s.current { " " strong.badge id="this-session" { "this session" } }
                                @if s.persistent { " " span.badge.muted { "remembered" } }
                            }
                            td { (s.ip) }
                            td { (when(s.created_at, now)) }
                            td { (when(s.last_seen_at, now)) }
                            td {
                                form.inline method="post" action=(action) {
                                    (csrf_field(csrf))
                                    input type="hidden" name="handle" value=(s.handle);
                                    button.small type="submit" id={ "end-" (s.handle) }
                                        aria-label={ "End session on " (s.device) } { "End" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the account page shows.
pub struct AccountView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// This page of their sessions, this one included.
    pub sessions: Vec<SessionRow>,
    /// Where this page is.
    pub sessions_pager: Pager,
    /// CSRF token.
    pub csrf: &'a str,
    /// After an action.
    pub notice: Option<&'a str>,
    /// After a failed action.
    pub error: Option<&'a str>,
    /// Now, for relative times.
    pub now: Millis,
    /// The second factors.
    pub two_factor: TwoFactorView,
}

/// `GET /account`.
pub fn account_page(v: &AccountView<'_>) -> Markup {
    // All of them, not just this page's: the current one is always among them.
    let others = v.sessions_pager.total.saturating_sub(1);
    layout(
        "Account",
        Some(&v.viewer),
        html! {
            (messages(v.notice, v.error))
            section.card {
                h1 { "Where you are signed in" }
                (sessions_table(&v.sessions, v.csrf, "/account/sessions/end", v.now, false))
                (pager(v.sessions_pager, "sessions", |n| format!("/account?page={n}")))
                @if others > 0 {
                    form method="post" action="/account/sessions/end-others" {
                        (csrf_field(v.csrf))
                        button type="submit" id="end-others" { "Sign out everywhere else (" (others) ")" }
                    }
                }
            }
            section.card {
                h2 { "Change password" }
                form id="password-form" method="post" action="/account/password" {
                    (csrf_field(v.csrf))
                    input type="text" name="username" value=(v.viewer.username) autocomplete="username" hidden;
                    label for="current" { "Current password" }
                    input type="password" id="current" name="current" autocomplete="current-password" required;
                    label for="password" { "New password" }
                    input type="password" id="password" name="password" autocomplete="new-password" minlength="8" required;
                    label for="password2" { "New password again" }
                    input type="password" id="password2" name="password2" autocomplete="new-password" minlength="8" required;
                    p.muted { "Changing it signs you out everywhere else." }
                    button type="submit" id="password-submit" { "Change password" }
                }
            }
            (two_factor_section(&v.two_factor, v.csrf, v.now))
        },
    )
}

/// One user in the admin list.
pub struct UserRow {
    /// Name.
    pub username: String,
    /// Admin flag.
    pub is_admin: bool,
    /// Disabled flag.
    pub disabled: bool,
    /// Created.
    pub created_at: Millis,
    /// Live sessions.
    pub sessions: usize,
    /// Whether this row is the viewer.
    pub is_viewer: bool,
    /// Second factors: "authenticator", "2 passkeys", ...; empty for none.
    pub factors: Vec<String>,
}

/// What the admin page shows.
pub struct AdminView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// This page of the users.
    pub users: Vec<UserRow>,
    /// Where that page is.
    pub users_pager: Pager,
    /// This page of all sessions.
    pub sessions: Vec<SessionRow>,
    /// Where that page is.
    pub sessions_pager: Pager,
    /// CSRF token.
    pub csrf: &'a str,
    /// After an action.
    pub notice: Option<&'a str>,
    /// After a failed action.
    pub error: Option<&'a str>,
    /// Now.
    pub now: Millis,
}

fn user_action(csrf: &str, username: &str, action: &str, label: &str, id: &str) -> Markup {
    html! {
        form.inline method="post" action=(format!("/admin/users/{action}")) {
            (csrf_field(csrf))
            input type="hidden" name="username" value=(username);
            button.small type="submit" id=(id) { (label) }
        }
    }
}

/// `GET /admin`.
pub fn admin_page(v: &AdminView<'_>) -> Markup {
    layout(
        "Admin",
        Some(&v.viewer),
        html! {
            (messages(v.notice, v.error))
            section.card {
                h1 { "Users" }
                div.table {
                    table id="users" {
                        thead {
                            tr {
                                th scope="col" { "Name" }
                                th scope="col" { "Role" }
                                th scope="col" { "Created" }
                                th scope="col" { "Sessions" }
                                th scope="col" { "Second factor" }
                                th scope="col" { "Actions" }
                            }
                        }
                        tbody {
                            @for u in &v.users {
                                tr id={ "user-" (u.username) } {
                                    td { (u.username) @if u.is_viewer { " " span.badge.muted { "you" } } }
                                    td {
                                        @if u.is_admin { span.badge { "admin" } } @else { "user" }
                                        @if u.disabled { " " span.badge.danger { "disabled" } }
                                    }
                                    td { (when(u.created_at, v.now)) }
                                    td { (u.sessions) }
                                    td.factors {
                                        @if u.factors.is_empty() { span.muted { "none" } } @else { (u.factors.join(", ")) }
                                    }
                                    td.actions {
                                        @if u.is_admin {
                                            (user_action(v.csrf, &u.username, "revoke-admin", "Remove admin", &format!("revoke-admin-{}", u.username)))
                                        } @else {
                                            (user_action(v.csrf, &u.username, "grant-admin", "Make admin", &format!("grant-admin-{}", u.username)))
                                        }
                                        @if u.disabled {
                                            (user_action(v.csrf, &u.username, "enable", "Enable", &format!("enable-{}", u.username)))
                                        } @else {
                                            (user_action(v.csrf, &u.username, "disable", "Disable", &format!("disable-{}", u.username)))
                                        }
                                        @if !u.factors.is_empty() {
                                            (user_action(v.csrf, &u.username, "reset-2fa", "Reset second factor", &format!("reset-2fa-{}", u.username)))
                                        }
                                        a.button.small href={ "/admin/users/delete?username=" (u.username) } id={ "delete-" (u.username) } { "Delete…" }
                                        details {
                                            summary { "Reset password" }
                                            form method="post" action="/admin/users/password" {
                                                (csrf_field(v.csrf))
                                                input type="hidden" name="username" value=(u.username);
                                                label for={ "reset-" (u.username) } { "New password for " (u.username) }
                                                input type="password" id={ "reset-" (u.username) } name="password" autocomplete="new-password" minlength="8" required;
                                                button.small type="submit" { "Set password" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                (pager(v.users_pager, "users", |n| format!("/admin?users_page={n}&sessions_page={}", v.sessions_pager.page)))
            }
            section.card {
                h2 { "Create a user" }
                form id="create-user-form" method="post" action="/admin/users" {
                    (csrf_field(v.csrf))
                    label for="new-username" { "Username" }
                    input type="text" id="new-username" name="username" autocomplete="off" autocapitalize="none" maxlength="64" required;
                    label for="new-password" { "Password" }
                    input type="password" id="new-password" name="password" autocomplete="new-password" minlength="8" required;
                    label.check for="new-admin" {
                        input type="checkbox" id="new-admin" name="admin" value="1";
                        "Administrator"
                    }
                    button type="submit" id="create-user-submit" { "Create user" }
                }
            }
            section.card {
                h2 { "All sessions" }
                (sessions_table(&v.sessions, v.csrf, "/admin/sessions/end", v.now, true))
                (pager(v.sessions_pager, "sessions", |n| format!("/admin?users_page={}&sessions_page={n}", v.users_pager.page)))
            }
        },
    )
}

/// What the password confirmation before an admin action shows.
pub struct ConfirmView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// The action the form goes on to (its own path).
    pub action: &'a str,
    /// The action's own fields, carried through unchanged.
    pub fields: Vec<(&'a str, &'a str)>,
    /// CSRF token.
    pub csrf: &'a str,
    /// After a wrong password or while throttled.
    pub error: Option<&'a str>,
}

/// The password confirmation an admin action asks for when the last one
/// (or the sign-in) is older than `admin_reauth` ("sudo mode"). Submitting
/// it sends the action again, with the password.
pub fn confirm_password_page(v: &ConfirmView<'_>) -> Markup {
    layout(
        "Confirm your password",
        Some(&v.viewer),
        html! {
            section.card.narrow {
                h1 { "Confirm your password" }
                p { "Administrator actions need your password again after a few minutes." }
                (messages(None, v.error))
                form id="reauth-form" method="post" action=(v.action) {
                    (csrf_field(v.csrf))
                    @for (name, value) in &v.fields {
                        input type="hidden" name=(name) value=(value);
                    }
                    input type="text" name="reauth_username" value=(v.viewer.username) autocomplete="username" hidden;
                    label for="reauth-password" { "Password for " (v.viewer.username) }
                    input type="password" id="reauth-password" name="reauth_password" autocomplete="current-password" required autofocus;
                    button type="submit" id="reauth-submit" { "Confirm" }
                }
                p { a href="/admin" { "Cancel" } }
            }
        },
    )
}

/// `GET /admin/users/delete`: the confirm step.
pub fn delete_user_page(viewer: &Viewer<'_>, username: &str, csrf: &str) -> Markup {
    layout(
        "Delete user",
        Some(viewer),
        html! {
            section.card.narrow {
                h1 { "Delete " (username) "?" }
                p { "The user and all their sessions are removed. This cannot be undone." }
                form id="delete-form" method="post" action="/admin/users/delete" {
                    (csrf_field(csrf))
                    input type="hidden" name="username" value=(username);
                    input type="hidden" name="confirm" value="yes";
                    button.danger type="submit" id="delete-submit" { "Delete " (username) }
                }
                p { a href="/admin" { "Cancel" } }
            }
        },
    )
}

/// An error page with a fixed, generic message.
pub fn error_page(status: u16, message: &str) -> Markup {
    layout(
        &status.to_string(),
        None,
        html! {
            section.card.narrow {
                h1 { "Error " (status) }
                p.error id="error-message" { (message) }
                p { a href="/" { "Back to the start" } }
            }
        },
    )
}

/// The page script for passkeys, where a page offers them.
fn passkey_script() -> Markup {
    html! { script src="/assets/passkey.js" defer {} }
}

/// A passkey form: the script fetches options from `options`, asks the
/// browser, and posts the credential to `action`. Without a secure context
/// the button is disabled and `unavailable` explains why.
fn passkey_form(
    id: &str,
    purpose: &str,
    options: &str,
    action: &str,
    csrf: &str,
    extra: Markup,
    label: &str,
) -> Markup {
    html! {
        form id=(id) method="post" action=(action) data-passkey=(purpose) data-options-url=(options) {
            (csrf_field(csrf))
            input type="hidden" name="credential" value="";
            (extra)
            p.muted.passkey-unavailable data-passkey-unavailable hidden {
                "Passkeys need a secure context: this page must be served over HTTPS (plain HTTP works only on localhost)."
            }
            p.error data-passkey-error role="alert" hidden {}
            button type="submit" id=(format!("{id}-submit")) { (label) }
        }
    }
}

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
                @if v.passkeys {
                    (passkey_form("second-passkey", "authenticate", "/login/second/passkey/options",
                        "/login/second/passkey", v.csrf,
                        html! { input type="hidden" name="next" value=(v.next); },
                        "Use a passkey"))
                }
                @if v.totp {
                    form id="code-form" method="post" action="/login/second" {
                        (csrf_field(v.csrf))
                        input type="hidden" name="next" value=(v.next);
                        label for="code" { "Code from your authenticator app" }
                        input type="text" id="code" name="code" inputmode="numeric"
                            autocomplete="one-time-code" pattern="[0-9 ]{6,7}" maxlength="7"
                            required autofocus;
                        button type="submit" id="code-submit" { "Verify" }
                    }
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
                    (passkey_form("enrol-passkey", "register", "/login/enrol/passkey/options",
                        "/login/enrol/passkey", v.csrf, html! {}, "Add a passkey"))
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

fn two_factor_section(t: &TwoFactorView, csrf: &str, now: Millis) -> Markup {
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
                form method="post" action="/account/totp/remove" {
                    (csrf_field(csrf))
                    button.danger type="submit" id="totp-remove" disabled[!t.may_change] { "Turn off" }
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
                table id="passkeys" {
                    thead { tr { th { "Name" } th { "Added" } th { "Last used" } th {} } }
                    tbody {
                        @for p in &t.passkeys {
                            tr {
                                td.passkey-name { (p.name) }
                                td { (when(p.created_at, now)) }
                                td { @match p.last_used_at { Some(at) => (when(at, now)), None => "never" } }
                                td {
                                    form method="post" action="/account/passkeys/remove" {
                                        (csrf_field(csrf))
                                        input type="hidden" name="id" value=(p.id);
                                        button.danger type="submit" disabled[!t.may_change] { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if t.may_change {
                (passkey_form("passkey-register", "register", "/account/passkeys/options",
                    "/account/passkeys", csrf,
                    html! {
                        label for="passkey-name" { "Name" }
                        input type="text" id="passkey-name" name="name" maxlength="64" value="Passkey" required;
                    },
                    "Add a passkey"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer() -> Viewer<'static> {
        Viewer {
            username: "a",
            is_admin: true,
        }
    }

    #[test]
    fn user_input_is_escaped() {
        let page = login_page(&LoginView {
            next: "/\"><script>x</script>",
            csrf: "t",
            username: "<b>bob</b>",
            error: Some("bad"),
            registration: false,
        })
        .into_string();
        assert!(!page.contains("<script>x"));
        assert!(!page.contains("<b>bob"));
        assert!(page.contains("&lt;b&gt;bob"));
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = 10_000_000_000;
        assert_eq!(relative(now - 5_000, now), "just now");
        assert_eq!(relative(now - 60_000, now), "1 minute ago");
        assert_eq!(relative(now - 5 * 60_000, now), "5 minutes ago");
        assert_eq!(relative(now - 2 * 3_600_000, now), "2 hours ago");
        assert_eq!(relative(now - 3 * 86_400_000, now), "3 days ago");
        assert_eq!(relative(now + 2 * 3_600_000, now), "in 2 hours");
        let markup = when(now - 60_000, now).into_string();
        assert!(markup.contains("title=\""), "exact time on hover: {markup}");
    }

    #[test]
    fn pages_carry_no_inline_script_or_style() {
        let rows = || {
            vec![SessionRow {
                handle: "h".into(),
                username: Some("a".into()),
                device: "Firefox on Linux".into(),
                ip: "::1".into(),
                created_at: 0,
                last_seen_at: 0,
                current: true,
                persistent: false,
            }]
        };
        let pages = [
            login_page(&LoginView {
                next: "/",
                csrf: "t",
                username: "",
                error: None,
                registration: true,
            }),
            dashboard_page(&DashboardView {
                viewer: viewer(),
                visits: 2,
                apps: vec![],
                notice: None,
            }),
            logout_page(&viewer(), "t"),
            setup_page(&NewUserView {
                csrf: "t",
                username: "",
                error: None,
                setup_token: Some("x"),
            }),
            register_page(&NewUserView {
                csrf: "t",
                username: "",
                error: Some("e"),
                setup_token: None,
            }),
            account_page(&AccountView {
                viewer: viewer(),
                sessions: rows(),
                sessions_pager: Pager {
                    page: 2,
                    pages: 3,
                    total: 120,
                },
                csrf: "t",
                notice: Some("n"),
                error: None,
                now: 0,
                two_factor: TwoFactorView {
                    totp: true,
                    recovery_left: 3,
                    passkeys: vec![PasskeyRow {
                        id: 1,
                        name: "laptop\"><x".into(),
                        created_at: 0,
                        last_used_at: None,
                    }],
                    may_change: true,
                },
            }),
            second_step_page(&SecondStepView {
                csrf: "t",
                next: "/",
                totp: true,
                passkeys: true,
                none: false,
                error: Some("e"),
            }),
            totp_enrol_page(&TotpEnrolView {
                viewer: None,
                csrf: "t",
                qr: "<svg></svg>",
                secret: "ABCDEFGH",
                action: "/login/enrol",
                required: true,
                passkey: true,
                error: None,
            }),
            recovery_codes_page(None, &["a".into()], "/"),
            recovery_used_page(2, "/"),
            admin_page(&AdminView {
                viewer: viewer(),
                users: vec![UserRow {
                    username: "a".into(),
                    is_admin: true,
                    disabled: false,
                    created_at: 0,
                    sessions: 1,
                    is_viewer: true,
                    factors: vec!["1 passkey".into()],
                }],
                users_pager: Pager {
                    page: 1,
                    pages: 2,
                    total: 60,
                },
                sessions: rows(),
                sessions_pager: Pager {
                    page: 1,
                    pages: 1,
                    total: 1,
                },
                csrf: "t",
                notice: None,
                error: None,
                now: 0,
            }),
            delete_user_page(&viewer(), "b", "t"),
            confirm_password_page(&ConfirmView {
                viewer: viewer(),
                action: "/admin/users/grant-admin",
                fields: vec![("username", "b\"><x")],
                csrf: "t",
                error: Some("e"),
            }),
            error_page(404, "x"),
        ];
        for p in pages {
            let s = p.into_string();
            // Scripts only from /assets/, never inline.
            let scripts = s.matches("<script").count();
            let external = s
                .matches("<script src=\"/assets/passkey.js\" defer></script>")
                .count();
            assert_eq!(scripts, external, "{s}");
            assert!(!s.contains("<style"), "{s}");
            assert!(!s.contains(" style="), "{s}");
            assert!(
                !s.contains("http://") && !s.contains("https://"),
                "no external requests: {s}"
            );
        }
    }
}
