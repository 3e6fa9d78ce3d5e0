//! `/account`: where you are signed in, changing the password, and the
//! second-factor section.

use maud::{Markup, html};

use super::factors::{TwoFactorView, two_factor_section};
use super::{Pager, SessionRow, Viewer, csrf_field, layout, messages, pager, sessions_table, when};
use crate::clock::Millis;

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
    /// Personal access tokens.
    pub tokens: super::TokensView,
    /// The apps signed in to through gatehouse (OpenID Connect), newest
    /// first.
    pub apps: Vec<AppRow>,
    /// The display name and e-mail address apps are told.
    pub names: NamesView,
    /// Sign-in links for a new device.
    pub signin_links: super::SigninLinksView,
    /// The user's recent activity (they are its subject), newest first.
    pub activity: Vec<super::AuditRow>,
}

/// The account page's names.
pub struct NamesView {
    /// The display name, if any.
    pub display_name: Option<String>,
    /// The e-mail address, if any.
    pub email: Option<String>,
    /// Whether the address is vouched for (an administrator or the
    /// directory set it).
    pub vouched: bool,
    /// A directory user's names are the directory's (no form).
    pub directory: bool,
}

/// An app (an OpenID Connect client) the user signed in to, and holds
/// tokens of.
pub struct AppRow {
    /// The client's id (what the form sends).
    pub client_id: String,
    /// What people call it.
    pub name: String,
    /// When the latest sign-in to it was.
    pub since: Millis,
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
                        button.danger type="submit" id="end-others" { "Sign out everywhere else (" (others) ")" }
                    }
                }
            }
            (super::activity_section(&v.activity, v.viewer.username, v.now))
            section.card id="profile" {
                h2 { "Name and e-mail" }
                @if v.names.directory {
                    p { "Name: " (v.names.display_name.as_deref().unwrap_or("-")) }
                    p { "E-mail: " (v.names.email.as_deref().unwrap_or("-")) }
                    p.muted { "These are the directory's: change them there." }
                } @else {
                    form id="profile-form" method="post" action="/account/profile" {
                        (csrf_field(v.csrf))
                        label for="display_name" { "Display name" }
                        input type="text" id="display_name" name="display_name" maxlength="64"
                            autocomplete="name" value=(v.names.display_name.as_deref().unwrap_or(""));
                        label for="email" { "E-mail address" }
                        input type="email" id="email" name="email" maxlength="254"
                            autocomplete="email" value=(v.names.email.as_deref().unwrap_or(""));
                        @if v.names.email.is_some() && !v.names.vouched {
                            p.muted id="email-unverified" { "Apps are told this address is not verified; an administrator can vouch for it." }
                        }
                        p.muted { "What the apps you sign in to through gatehouse are told." }
                        button type="submit" id="profile-submit" { "Save" }
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
            @if !v.apps.is_empty() {
                section.card id="apps" {
                    h2 { "Apps you signed in to" }
                    table {
                        thead { tr { th { "App" } th { "Signed in" } th {} } }
                        tbody {
                            @for a in &v.apps {
                                tr.app-row {
                                    td.app-name { (a.name) }
                                    td { (when(a.since, v.now)) }
                                    td {
                                        form method="post" action="/account/apps/sign-out" {
                                            (csrf_field(v.csrf))
                                            input type="hidden" name="client" value=(a.client_id);
                                            button.danger type="submit" { "Sign out of it" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    p.muted { "Signing out of an app here ends what it holds from gatehouse: it asks you to sign in again." }
                }
            }
            (two_factor_section(&v.two_factor, v.csrf, v.now))
            (super::tokens_section(&v.tokens, v.csrf, v.now))
            (super::signin_links_section(&v.signin_links, v.csrf, v.now))
        },
    )
}
