//! `/admin`: the users and their actions, creating a user, every session;
//! the delete confirmation and the password confirmation ("sudo mode")
//! before an administrator's action.

use maud::{Markup, html};

use super::{Pager, SessionRow, Viewer, csrf_field, layout, messages, pager, sessions_table, when};
use crate::clock::Millis;

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
