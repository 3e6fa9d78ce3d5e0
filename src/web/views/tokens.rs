//! Personal access tokens on the pages: the user's own on `/account`
//! (make one, see it once, revoke), and everyone's on `/admin/tokens`
//! (revoke).

use maud::{Markup, html};

use super::admin::area_page;
use super::{Viewer, csrf_field, when};
use crate::clock::Millis;
use crate::users::tokens::{Listed, Token};

/// The tokens section of `/account`.
pub struct TokensView {
    /// The user's tokens, newest first.
    pub tokens: Vec<Token>,
    /// The apps a new token may be limited to (those open to the user).
    pub apps: Vec<String>,
    /// A token just made: shown this once.
    pub made: Option<String>,
}

/// What a token may reach, for a list.
fn reach(t: &Token) -> String {
    if t.apps.is_empty() {
        "all your apps".to_owned()
    } else {
        t.apps.join(", ")
    }
}

/// Its expiry, for a list.
fn expiry(t: &Token, now: Millis) -> Markup {
    match t.expires_at {
        Some(at) => when(at, now),
        None => html! { "never" },
    }
}

/// The section on `/account`.
pub fn tokens_section(v: &TokensView, csrf: &str, now: Millis) -> Markup {
    html! {
        section.card id="tokens-section" {
            h2 { "Tokens for scripts and apps" }
            p.muted {
                "A token signs a script, a monitor or a WebDAV or phone app in as you, without a browser: "
                code { "Authorization: Bearer TOKEN" } ", or your username and the token as the password. "
                "It never counts as a second factor, and a new password ends every token."
            }
            @if let Some(made) = &v.made {
                div.notice role="status" {
                    p { strong { "Copy your new token now: it is not shown again." } }
                    input type="text" id="new-token" value=(made) readonly;
                }
            }
            @if v.tokens.is_empty() {
                p.muted id="no-tokens" { "None yet." }
            } @else {
                div.table { table id="tokens" {
                    thead { tr { th { "Name" } th { "Reaches" } th { "Made" } th { "Expires" } th { "Last used" } th {} } }
                    tbody {
                        @for t in &v.tokens {
                            tr id={ "token-" (t.id) } {
                                td.token-name { (t.name) }
                                td { (reach(t)) }
                                td { (when(t.created_at, now)) }
                                td { (expiry(t, now)) }
                                td { @match t.last_used_at { Some(at) => (when(at, now)), None => "never" } }
                                td {
                                    form method="post" action="/account/tokens/revoke" {
                                        (csrf_field(csrf))
                                        input type="hidden" name="id" value=(t.id);
                                        button.small.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            h3 { "Make a token" }
            form id="token-form" method="post" action="/account/tokens" {
                (csrf_field(csrf))
                label for="token-name" { "Name" }
                input type="text" id="token-name" name="name" maxlength="64" placeholder="backup script" required;
                @if !v.apps.is_empty() {
                    fieldset {
                        legend { "Only for these apps (none ticked: all of yours)" }
                        @for app in &v.apps {
                            label.check {
                                input type="checkbox" name={ "app:" (app) } value="on";
                                " " (app)
                            }
                        }
                    }
                }
                label for="token-expires" { "Expires" }
                select id="token-expires" name="expires" {
                    option value="30d" selected { "in 30 days" }
                    option value="7d" { "in 7 days" }
                    option value="90d" { "in 90 days" }
                    option value="365d" { "in a year" }
                    option value="never" { "never" }
                }
                button type="submit" id="token-submit" { "Make token" }
            }
        }
    }
}

/// What `/admin/tokens` shows.
pub struct AdminTokensView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// Every token, newest first.
    pub tokens: Vec<Listed>,
    /// CSRF token.
    pub csrf: &'a str,
    /// After an action.
    pub notice: Option<&'a str>,
    /// Now.
    pub now: Millis,
}

/// `GET /admin/tokens`.
pub fn admin_tokens_page(v: &AdminTokensView<'_>) -> Markup {
    area_page(
        "Tokens",
        &v.viewer,
        "tokens",
        v.notice,
        None,
        html! {
            section.card {
                h1 { "Tokens" }
                p.muted { "Every user's personal access tokens. Revoking one refuses it from the next request on." }
                @if v.tokens.is_empty() {
                    p.muted id="no-tokens" { "None." }
                } @else {
                    div.table { table.wide id="tokens" {
                        thead { tr {
                            th scope="col" { "User" } th scope="col" { "Name" } th scope="col" { "Reaches" }
                            th scope="col" { "Made" } th scope="col" { "Expires" } th scope="col" { "Last used" }
                            th scope="col" { "Actions" }
                        } }
                        tbody {
                            @for l in &v.tokens {
                                tr id={ "token-" (l.token.id) } {
                                    td { (l.username) }
                                    td.token-name { (l.token.name) }
                                    td { @if l.token.apps.is_empty() { "all" } @else { (l.token.apps.join(", ")) } }
                                    td { (when(l.token.created_at, v.now)) }
                                    td { (expiry(&l.token, v.now)) }
                                    td { @match l.token.last_used_at { Some(at) => (when(at, v.now)), None => "never" } }
                                    td.actions {
                                        form method="post" action="/admin/tokens/revoke" {
                                            (csrf_field(v.csrf))
                                            input type="hidden" name="id" value=(l.token.id);
                                            button.small.danger type="submit" id={ "revoke-" (l.token.id) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        },
    )
}
