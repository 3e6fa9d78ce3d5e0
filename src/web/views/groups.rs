//! `/admin/groups`, the Groups section of the admin area: every group
//! with its member count (create, rename, delete after a confirm step),
//! and one group's members (add, remove). `admins` is listed like the
//! others but offers no rename or delete: being in it is being an
//! administrator.

use maud::{Markup, html};

use super::admin::area_page;
use super::confirm::{ConfirmStep, confirm_step_page};
use super::{Viewer, csrf_field, when};
use crate::clock::Millis;

/// One group in the list.
pub struct GroupRow {
    /// Its name.
    pub name: String,
    /// How many members it has.
    pub members: i64,
    /// When it was made.
    pub created_at: Millis,
    /// Whether it is `admins` (kept: no rename, no delete).
    pub builtin: bool,
}

/// What the groups page shows.
pub struct GroupsView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// Every group, by name.
    pub groups: Vec<GroupRow>,
    /// CSRF token.
    pub csrf: &'a str,
    /// After an action.
    pub notice: Option<&'a str>,
    /// After a failed action.
    pub error: Option<&'a str>,
    /// Now.
    pub now: Millis,
}

/// `GET /admin/groups`.
pub fn groups_page(v: &GroupsView<'_>) -> Markup {
    area_page(
        "Groups",
        &v.viewer,
        "groups",
        v.notice,
        v.error,
        html! {
            section.card {
                h1 { "Groups" }
                p.muted {
                    "Apps and upstreams see a user's groups in " code { "Remote-Groups" } ". "
                    "Members of " strong { "admins" } " are the administrators."
                }
                div.table {
                    table.wide id="groups" {
                        thead {
                            tr {
                                th scope="col" { "Name" }
                                th.number scope="col" { "Members" }
                                th scope="col" { "Created" }
                                th scope="col" { "Actions" }
                            }
                        }
                        tbody {
                            @for g in &v.groups {
                                tr id={ "group-" (g.name) } {
                                    td {
                                        strong { (g.name) }
                                        @if g.builtin { " " span.badge { "administrators" } }
                                    }
                                    td.number { (g.members) }
                                    td { (when(g.created_at, v.now)) }
                                    td.actions {
                                        div.actions {
                                            a.button.small.secondary href={ "/admin/groups/members?group=" (g.name) }
                                                id={ "members-" (g.name) } { "Members" }
                                            @if !g.builtin {
                                                a.button.small.danger href={ "/admin/groups/delete?group=" (g.name) }
                                                    id={ "delete-group-" (g.name) } { "Delete…" }
                                            }
                                        }
                                        @if !g.builtin {
                                            details.reset {
                                                summary { "Rename" }
                                                form method="post" action="/admin/groups/rename" {
                                                    (csrf_field(v.csrf))
                                                    input type="hidden" name="group" value=(g.name);
                                                    label for={ "rename-" (g.name) } { "New name for " (g.name) }
                                                    input type="text" id={ "rename-" (g.name) } name="name" autocomplete="off" autocapitalize="none" maxlength="64" required;
                                                    button.small type="submit" id={ "rename-submit-" (g.name) } { "Rename" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card.narrow-form {
                h2 { "Create a group" }
                form id="create-group-form" method="post" action="/admin/groups" {
                    (csrf_field(v.csrf))
                    label for="new-group" { "Name" }
                    input type="text" id="new-group" name="name" autocomplete="off" autocapitalize="none" maxlength="64" required;
                    p.muted { "Letters, digits, '.', '_', '-' and '@', as a username." }
                    button type="submit" id="create-group-submit" { "Create group" }
                }
            }
        },
    )
}

/// One member in a group's list.
pub struct MemberRow {
    /// Their name.
    pub username: String,
    /// Disabled flag.
    pub disabled: bool,
    /// Whether this is the viewer.
    pub is_viewer: bool,
}

/// What a group's page shows.
pub struct MembersView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// The group's name.
    pub group: &'a str,
    /// Its members, by name.
    pub members: Vec<MemberRow>,
    /// CSRF token.
    pub csrf: &'a str,
    /// After an action.
    pub notice: Option<&'a str>,
}

/// `GET /admin/groups/members?group=NAME`.
pub fn members_page(v: &MembersView<'_>) -> Markup {
    let title = format!("Group {}", v.group);
    area_page(
        &title,
        &v.viewer,
        "groups",
        v.notice,
        None,
        html! {
            section.card {
                h1 { "Group " (v.group) }
                p { a href="/admin/groups" { "All groups" } }
                @if v.members.is_empty() {
                    p.muted id="no-members" { "Nobody is in this group." }
                } @else {
                    div.table {
                        table id="members" {
                            thead {
                                tr {
                                    th scope="col" { "Member" }
                                    th scope="col" { "Actions" }
                                }
                            }
                            tbody {
                                @for m in &v.members {
                                    tr id={ "member-" (m.username) } {
                                        td {
                                            strong { (m.username) }
                                            @if m.is_viewer { " " span.badge.muted { "you" } }
                                            @if m.disabled { " " span.badge.danger { "disabled" } }
                                        }
                                        td.actions {
                                            form.inline method="post" action="/admin/groups/remove" {
                                                (csrf_field(v.csrf))
                                                input type="hidden" name="group" value=(v.group);
                                                input type="hidden" name="username" value=(m.username);
                                                button.small.danger type="submit" id={ "remove-" (m.username) } { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card.narrow-form {
                h2 { "Add a member" }
                form id="add-member-form" method="post" action="/admin/groups/add" {
                    (csrf_field(v.csrf))
                    input type="hidden" name="group" value=(v.group);
                    label for="member-username" { "Username" }
                    input type="text" id="member-username" name="username" autocomplete="off" autocapitalize="none" maxlength="64" required;
                    button type="submit" id="add-member-submit" { "Add to " (v.group) }
                }
            }
        },
    )
}

/// `GET /admin/groups/delete?group=NAME`: the confirm step.
pub fn delete_group_page(viewer: Viewer<'_>, group: &str, csrf: &str) -> Markup {
    let title = format!("Delete the group {group}?");
    let button = format!("Delete {group}");
    confirm_step_page(&ConfirmStep {
        viewer,
        id: "delete-group",
        title: &title,
        explain: "The group goes; its members stay, outside it, and apps that let the group \
                  in no longer let them in through it. This cannot be undone.",
        action: "/admin/groups/delete",
        fields: vec![("group", group), ("confirm", "yes")],
        csrf,
        button: &button,
        back: "/admin/groups",
    })
}
