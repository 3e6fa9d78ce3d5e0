//! The audit log as pages show it: `/admin/audit` (every event, filtered,
//! 50 a page, newest first) and the account page's "Recent activity"
//! (the signed-in user's own sign-ins, failed attempts on their name, and
//! changes to their account).

use maud::{Markup, html};

use super::admin::area_page;
use super::{Viewer, when};
use crate::clock::Millis;

/// One event, as the tables show it.
pub struct AuditRow {
    /// Its id (the row's `id` is `audit-{id}`).
    pub id: i64,
    /// When.
    pub at: Millis,
    /// The kind's stored name.
    pub kind: String,
    /// The kind as people read it.
    pub label: String,
    /// `ok`, `failed` or `pending`.
    pub outcome: String,
    /// Who did it.
    pub actor: Option<String>,
    /// Whom it was done to.
    pub subject: Option<String>,
    /// From which address (`-` for none).
    pub ip: String,
    /// The device, read loosely from the user agent.
    pub device: String,
    /// The user agent as stored (shown on hover).
    pub user_agent: String,
    /// The short detail.
    pub detail: String,
}

/// The filter form's values, as given.
#[derive(Default)]
pub struct AuditFilterView {
    /// A username.
    pub user: String,
    /// A kind's stored name.
    pub kind: String,
    /// An outcome.
    pub outcome: String,
    /// From when.
    pub since: String,
    /// Until when.
    pub until: String,
}

/// What `/admin/audit` shows.
pub struct AuditView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// This page, newest first.
    pub rows: Vec<AuditRow>,
    /// The filters.
    pub filter: AuditFilterView,
    /// Every kind: its stored name and label, for the filter.
    pub kinds: Vec<(&'static str, &'static str)>,
    /// Every outcome, for the filter.
    pub outcomes: Vec<&'static str>,
    /// The next (older) page, when there is one.
    pub older: Option<String>,
    /// The first page of the same filter, when this is not it.
    pub newest: Option<String>,
    /// The JSON lines export of the same filter.
    pub export: String,
    /// Now, for relative times.
    pub now: Millis,
}

fn outcome_badge(outcome: &str) -> Markup {
    html! {
        @match outcome {
            "ok" => span.badge { "ok" },
            "failed" => span.badge.danger { "failed" },
            other => span.badge.muted { (other) },
        }
    }
}

/// `GET /admin/audit`.
pub fn audit_page(v: &AuditView<'_>) -> Markup {
    let f = &v.filter;
    area_page(
        "Audit log",
        &v.viewer,
        "audit",
        None,
        None,
        html! {
            section.card {
                h1 { "Audit log" }
                p.muted { "Sign-ins, sign-outs and every change to accounts, newest first. Times are UTC." }
                form id="audit-filter" method="get" action="/admin/audit" {
                    label for="audit-user" { "User" }
                    input type="text" id="audit-user" name="user" maxlength="64" value=(f.user)
                        placeholder="who did it, or whom it was done to";
                    label for="audit-kind" { "Event" }
                    select id="audit-kind" name="kind" {
                        option value="" selected[f.kind.is_empty()] { "any" }
                        @for (name, label) in &v.kinds {
                            option value=(name) selected[f.kind == *name] { (label) }
                        }
                    }
                    label for="audit-outcome" { "Outcome" }
                    select id="audit-outcome" name="outcome" {
                        option value="" selected[f.outcome.is_empty()] { "any" }
                        @for o in &v.outcomes {
                            option value=(o) selected[f.outcome == *o] { (o) }
                        }
                    }
                    label for="audit-since" { "From" }
                    input type="text" id="audit-since" name="since" maxlength="32" value=(f.since)
                        placeholder="7d, or 2026-01-31, or 2026-01-31T12:00";
                    label for="audit-until" { "Until" }
                    input type="text" id="audit-until" name="until" maxlength="32" value=(f.until)
                        placeholder="(now)";
                    button type="submit" id="audit-submit" { "Show" }
                    " "
                    a.button id="audit-export" href=(v.export) { "Export as JSON lines" }
                }
            }
            section.card {
                @if v.rows.is_empty() {
                    p.muted id="audit-empty" { "No events." }
                } @else {
                    div.table { table.wide id="audit" {
                        thead { tr {
                            th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Outcome" }
                            th scope="col" { "By" } th scope="col" { "User" } th scope="col" { "Address" }
                            th scope="col" { "Device" } th scope="col" { "Detail" }
                        } }
                        tbody {
                            @for r in &v.rows {
                                tr id={ "audit-" (r.id) } data-kind=(r.kind) data-outcome=(r.outcome) {
                                    td { (when(r.at, v.now)) }
                                    td.audit-kind { (r.label) }
                                    td { (outcome_badge(&r.outcome)) }
                                    td.audit-actor { (r.actor.as_deref().unwrap_or("-")) }
                                    td.audit-subject { (r.subject.as_deref().unwrap_or("-")) }
                                    td.audit-ip { (r.ip) }
                                    td.audit-device title=(r.user_agent) { (r.device) }
                                    td.audit-detail { (r.detail) }
                                }
                            }
                        }
                    } }
                }
                @if v.newest.is_some() || v.older.is_some() {
                    nav.pager id="audit-pager" aria-label="Pages" {
                        @if let Some(href) = &v.newest {
                            a.button.small id="audit-newest" href=(href) { "Newest" }
                            " "
                        }
                        @if let Some(href) = &v.older {
                            a.button.small id="audit-older" href=(href) rel="next" { "Older" }
                        }
                    }
                }
            }
        },
    )
}

/// The account page's "Recent activity": `rows` are the viewer's own
/// (they are the subject), newest first. A change an administrator made
/// says who made it rather than where from.
pub fn activity_section(rows: &[AuditRow], viewer: &str, now: Millis) -> Markup {
    html! {
        section.card id="activity" {
            h2 { "Recent activity" }
            p.muted { "Sign-ins, failed attempts on your name, and changes to your account. One you do not recognise? Change your password and sign out everywhere else." }
            @if rows.is_empty() {
                p.muted id="activity-empty" { "Nothing yet." }
            } @else {
                div.table { table id="activity-table" {
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "What" }
                        th scope="col" { "From" } th scope="col" { "Detail" }
                    } }
                    tbody {
                        @for r in rows {
                            tr id={ "activity-" (r.id) } data-kind=(r.kind) data-outcome=(r.outcome) {
                                td { (when(r.at, now)) }
                                td { (r.label) " " (outcome_badge(&r.outcome)) }
                                td {
                                    @match &r.actor {
                                        Some(a) if !a.eq_ignore_ascii_case(viewer) => { "by " (a) }
                                        _ => { (r.ip) " · " span title=(r.user_agent) { (r.device) } }
                                    }
                                }
                                td.activity-detail { (r.detail) }
                            }
                        }
                    }
                } }
            }
        }
    }
}
