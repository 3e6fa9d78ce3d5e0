//! `/admin`, an area with its own navigation: the overview (counts, and
//! where to go), the users (their actions, creating one), every session;
//! the confirm steps before what cannot be undone, and the password
//! confirmation ("sudo mode") before an administrator's action.

use maud::{Markup, html};

use super::confirm::{ConfirmStep, confirm_step_page};
use super::{
    Pager, SessionRow, Viewer, csrf_field, messages, pager, sessions_table, when, wide_layout,
};
use crate::clock::Millis;

/// One section of `/admin`, as its navigation lists it.
pub struct Section {
    /// Its id: the navigation link's is `admin-nav-{id}`.
    pub id: &'static str,
    /// The link's words.
    pub label: &'static str,
    /// Where it is.
    pub href: &'static str,
}

/// The sections of `/admin` that exist, in the order the navigation lists
/// them. A section a later feature adds (groups, apps, clients, invites,
/// tokens, audit) is one more entry here, with its page: the navigation
/// shows it from then on.
pub const SECTIONS: &[Section] = &[
    Section {
        id: "overview",
        label: "Overview",
        href: "/admin",
    },
    Section {
        id: "users",
        label: "Users",
        href: "/admin/users",
    },
    Section {
        id: "groups",
        label: "Groups",
        href: "/admin/groups",
    },
    Section {
        id: "sessions",
        label: "Sessions",
        href: "/admin/sessions",
    },
    Section {
        id: "tokens",
        label: "Tokens",
        href: "/admin/tokens",
    },
    Section {
        id: "clients",
        label: "Clients",
        href: "/admin/clients",
    },
    Section {
        id: "invites",
        label: "Invites",
        href: "/admin/invites",
    },
    Section {
        id: "audit",
        label: "Audit log",
        href: "/admin/audit",
    },
];

/// A page of the admin area: the wide layout, the area's heading and
/// navigation (`current` marked), the messages, then `body`.
pub(super) fn area_page(
    title: &str,
    viewer: &Viewer<'_>,
    current: &str,
    notice: Option<&str>,
    error: Option<&str>,
    body: Markup,
) -> Markup {
    wide_layout(
        title,
        Some(viewer),
        html! {
            div.area-head {
                p.area-title { "Administration" }
                nav.tabs id="admin-nav" aria-label="Administration" {
                    @for s in SECTIONS {
                        a href=(s.href) id={ "admin-nav-" (s.id) }
                            aria-current=[(s.id == current).then_some("page")] { (s.label) }
                    }
                }
            }
            (messages(notice, error))
            (body)
        },
    )
}

/// What the overview counts.
pub struct OverviewView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// Every user.
    pub users: usize,
    /// Of them, administrators.
    pub admins: usize,
    /// Of them, disabled.
    pub disabled: usize,
    /// Of them, with a second factor.
    pub with_second_factor: usize,
    /// Live sessions.
    pub sessions: usize,
    /// Of them, signed in (the rest are anonymous: a visit count, a
    /// pending sign-in).
    pub signed_in: usize,
    /// After an action.
    pub notice: Option<&'a str>,
}

/// `GET /admin`: the overview.
pub fn overview_page(v: &OverviewView<'_>) -> Markup {
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    area_page(
        "Admin",
        &v.viewer,
        "overview",
        v.notice,
        None,
        html! {
            div.tiles {
                section.card.tile id="overview-users" {
                    h2 { a href="/admin/users" { "Users" } }
                    p.big id="count-users" { (v.users) }
                    p.muted {
                        (plural(v.admins, "administrator", "administrators")) ", "
                        (v.disabled) " disabled, "
                        (v.with_second_factor) " with a second factor"
                    }
                    p { a.button.small href="/admin/users" { "Manage users" } }
                }
                section.card.tile id="overview-sessions" {
                    h2 { a href="/admin/sessions" { "Sessions" } }
                    p.big id="count-sessions" { (v.sessions) }
                    p.muted { (v.signed_in) " signed in, " (v.sessions - v.signed_in.min(v.sessions)) " anonymous" }
                    p { a.button.small href="/admin/sessions" { "See sessions" } }
                }
            }
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
    /// The display name apps are told.
    pub display_name: Option<String>,
    /// The e-mail address apps are told.
    pub email: Option<String>,
    /// Whether apps are told the address is verified.
    pub email_verified: bool,
    /// A directory user (names are the directory's: no form).
    pub directory: bool,
    /// When their reset link expires, if one is waiting.
    pub reset_link: Option<Millis>,
}

/// What the users page shows.
pub struct UsersView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// This page of the users.
    pub users: Vec<UserRow>,
    /// Where that page is.
    pub pager: Pager,
    /// CSRF token.
    pub csrf: &'a str,
    /// After an action.
    pub notice: Option<&'a str>,
    /// After a failed action.
    pub error: Option<&'a str>,
    /// Now.
    pub now: Millis,
}

/// A button that posts one action on one user; `class` marks what it is
/// (`secondary`, or `danger` for what takes something away).
fn user_action(
    csrf: &str,
    username: &str,
    action: &str,
    label: &str,
    id: &str,
    class: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(format!("/admin/users/{action}")) {
            (csrf_field(csrf))
            input type="hidden" name="username" value=(username);
            button type="submit" id=(id) class={ "small " (class) } { (label) }
        }
    }
}

/// `GET /admin/users`.
pub fn users_page(v: &UsersView<'_>) -> Markup {
    area_page(
        "Users",
        &v.viewer,
        "users",
        v.notice,
        v.error,
        html! {
            section.card {
                h1 { "Users" }
                div.table {
                    table.wide id="users" {
                        thead {
                            tr {
                                th scope="col" { "Name" }
                                th scope="col" { "Role" }
                                th scope="col" { "Created" }
                                th.number scope="col" { "Sessions" }
                                th scope="col" { "Second factor" }
                                th scope="col" { "Actions" }
                            }
                        }
                        tbody {
                            @for u in &v.users {
                                tr id={ "user-" (u.username) } {
                                    td { strong { (u.username) } @if u.is_viewer { " " span.badge.muted { "you" } } }
                                    td {
                                        @if u.is_admin { span.badge { "admin" } } @else { "user" }
                                        @if u.disabled { " " span.badge.danger { "disabled" } }
                                    }
                                    td { (when(u.created_at, v.now)) }
                                    td.number { (u.sessions) }
                                    td.factors {
                                        @if u.factors.is_empty() { span.muted { "none" } } @else { (u.factors.join(", ")) }
                                    }
                                    td.actions {
                                        div.actions {
                                            @if u.is_admin {
                                                (user_action(v.csrf, &u.username, "revoke-admin", "Remove admin", &format!("revoke-admin-{}", u.username), "secondary"))
                                            } @else {
                                                (user_action(v.csrf, &u.username, "grant-admin", "Make admin", &format!("grant-admin-{}", u.username), "secondary"))
                                            }
                                            @if u.disabled {
                                                (user_action(v.csrf, &u.username, "enable", "Enable", &format!("enable-{}", u.username), "secondary"))
                                            } @else {
                                                (user_action(v.csrf, &u.username, "disable", "Disable", &format!("disable-{}", u.username), "danger"))
                                            }
                                            @if !u.factors.is_empty() {
                                                a.button.small.danger href={ "/admin/users/reset-2fa?username=" (u.username) }
                                                    id={ "reset-2fa-" (u.username) } { "Reset second factor…" }
                                            }
                                            a.button.small.danger href={ "/admin/users/delete?username=" (u.username) }
                                                id={ "delete-" (u.username) } { "Delete…" }
                                            @if !u.directory {
                                                a.button.small.secondary href={ "/admin/users/reset-link?username=" (u.username) }
                                                    id={ "reset-link-" (u.username) } { "Reset link…" }
                                            }
                                        }
                                        @if let Some(until) = u.reset_link {
                                            p.muted.reset-link-waiting {
                                                "A reset link waits until " (when(until, v.now)) ". "
                                                form.inline method="post" action="/admin/users/reset-link/revoke" {
                                                    (csrf_field(v.csrf))
                                                    input type="hidden" name="username" value=(u.username);
                                                    button.small.danger type="submit" id={ "revoke-reset-link-" (u.username) } { "Revoke it" }
                                                }
                                            }
                                        }
                                        @if !u.directory {
                                            details.names {
                                                summary { "Name and e-mail" }
                                                form method="post" action="/admin/users/names" {
                                                    (csrf_field(v.csrf))
                                                    input type="hidden" name="username" value=(u.username);
                                                    label for={ "name-" (u.username) } { "Display name" }
                                                    input type="text" id={ "name-" (u.username) } name="display_name" maxlength="64"
                                                        value=(u.display_name.as_deref().unwrap_or(""));
                                                    label for={ "email-" (u.username) } { "E-mail address" }
                                                    input type="email" id={ "email-" (u.username) } name="email" maxlength="254"
                                                        value=(u.email.as_deref().unwrap_or(""));
                                                    label.check for={ "verified-" (u.username) } {
                                                        input type="checkbox" id={ "verified-" (u.username) } name="verified" value="1"
                                                            checked[u.email_verified];
                                                        " Checked by an administrator: apps are told it is verified"
                                                    }
                                                    button.small type="submit" { "Save" }
                                                }
                                            }
                                        }
                                        details.reset {
                                            summary { "Set a new password" }
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
                (pager(v.pager, "users", |n| format!("/admin/users?page={n}")))
            }
            section.card.narrow-form {
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
        },
    )
}

/// What the sessions page shows.
pub struct SessionsView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// This page of every live session.
    pub sessions: Vec<SessionRow>,
    /// Where that page is.
    pub pager: Pager,
    /// CSRF token.
    pub csrf: &'a str,
    /// After an action.
    pub notice: Option<&'a str>,
    /// After a failed action.
    pub error: Option<&'a str>,
    /// Now.
    pub now: Millis,
}

/// `GET /admin/sessions`.
pub fn sessions_page(v: &SessionsView<'_>) -> Markup {
    area_page(
        "Sessions",
        &v.viewer,
        "sessions",
        v.notice,
        v.error,
        html! {
            section.card {
                h1 { "Sessions" }
                p.muted { "Every live session. Ending one signs that browser out; its user can sign in again." }
                (sessions_table(&v.sessions, v.csrf, "/admin/sessions/end", v.now, true))
                (pager(v.pager, "sessions", |n| format!("/admin/sessions?page={n}")))
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
    /// Where "Cancel" goes: the section the action came from.
    pub back: &'a str,
}

/// The password confirmation an admin action asks for when the last one
/// (or the sign-in) is older than `admin_reauth` ("sudo mode"). Submitting
/// it sends the action again, with the password.
pub fn confirm_password_page(v: &ConfirmView<'_>) -> Markup {
    wide_layout(
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
                p { a href=(v.back) { "Cancel" } }
            }
        },
    )
}

/// `GET /admin/users/delete`: the confirm step.
pub fn delete_user_page(viewer: Viewer<'_>, username: &str, csrf: &str) -> Markup {
    let title = format!("Delete {username}?");
    let button = format!("Delete {username}");
    confirm_step_page(&ConfirmStep {
        viewer,
        id: "delete",
        title: &title,
        explain: "The user and all their sessions are removed. This cannot be undone.",
        action: "/admin/users/delete",
        fields: vec![("username", username), ("confirm", "yes")],
        csrf,
        button: &button,
        back: "/admin/users",
    })
}

/// `GET /admin/users/reset-2fa`: the confirm step.
pub fn reset_factors_page(viewer: Viewer<'_>, username: &str, csrf: &str) -> Markup {
    let title = format!("Remove the second factors of {username}?");
    confirm_step_page(&ConfirmStep {
        viewer,
        id: "reset-2fa",
        title: &title,
        explain: "Their authenticator app, passkeys and recovery codes are removed and their \
                  sessions end. They sign in with their password alone, and set up a second \
                  factor again. This cannot be undone.",
        action: "/admin/users/reset-2fa",
        fields: vec![("username", username)],
        csrf,
        button: "Remove their second factors",
        back: "/admin/users",
    })
}
