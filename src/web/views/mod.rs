//! HTML views: pure functions from plain data to maud `Markup`, one file
//! per area (`signin`, `dashboard`, `account`, `admin`, `groups` (the admin
//! area's Groups section), `clients` (its OpenID Connect clients), `tokens` (personal access tokens on `/account` and
//! `/admin/tokens`), `links` (invites, reset links, sign-in links for a new
//! device), `audit` (`/admin/audit` and the account page's recent
//! activity), `setup`, `factors`,
//! `errors`, and `confirm`, the confirm step before what cannot be undone)
//! in the shared `layout`; this file holds the partials they
//! share (messages, the CSRF field, the pager, the sessions table, the
//! passkey form and script) and [`Viewer`], and re-exports the pages.
//!
//! No inline scripts or styles: the Content-Security-Policy forbids them,
//! and every page reads fine without the stylesheet. Elements that tests
//! and scripts look for carry stable `id`s.

mod account;
mod admin;
mod audit;
mod clients;
mod confirm;
mod dashboard;
mod errors;
mod factors;
mod groups;
mod layout;
mod links;
mod setup;
mod signin;
mod tokens;

use maud::{Markup, html};

use crate::clock::Millis;
use crate::logging::rfc3339;

pub use account::{AccountView, AppRow, NamesView, account_page};
pub use admin::{
    ConfirmView, OverviewView, SECTIONS, Section, SessionsView, UserRow, UsersView,
    confirm_password_page, delete_user_page, overview_page, reset_factors_page, sessions_page,
    users_page,
};
pub use audit::{AuditFilterView, AuditRow, AuditView, activity_section, audit_page};
pub use clients::{
    ClientForm, ClientItem, ClientsView, Shown, clients_page, delete_client_page,
    rotate_client_page,
};
pub use confirm::{ConfirmStep, confirm_step_page};
pub use dashboard::{AppLink, DashboardView, dashboard_page};
pub use errors::error_page;
pub use factors::{
    PasskeyRow, SecondStepView, TotpEnrolView, TwoFactorView, recovery_codes_page,
    recovery_used_page, second_step_page, totp_enrol_page,
};
pub use groups::{
    GroupRow, GroupsView, MemberRow, MembersView, delete_group_page, groups_page, members_page,
};
pub use layout::{layout, wide_layout};
pub use links::{
    AdminInvitesView, CodeView, InviteView, LinkView, ResetLinkView, ResetView, SigninLinkRow,
    SigninLinksView, admin_invites_page, code_page, invite_page, link_gone_page, link_page,
    reset_link_page, reset_page, signin_links_section,
};
pub use setup::{NewUserView, register_page, setup_page};
pub use signin::{
    DeviceView, LoginView, ReauthView, device_page, end_session_page, login_page, logout_page,
    reauth_page, signed_out_page,
};
pub use tokens::{AdminTokensView, TokensView, admin_tokens_page, tokens_section};

/// The signed-in user as pages show them.
pub struct Viewer<'a> {
    /// Name to show.
    pub username: &'a str,
    /// Whether to offer the admin page.
    pub is_admin: bool,
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
                                    button.small.danger type="submit" id={ "end-" (s.handle) }
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

/// The page script for passkeys, where a page offers them.
fn passkey_script() -> Markup {
    html! { script src="/assets/passkey.js" defer {} }
}

/// A form whose button runs a passkey ceremony (see [`passkey_form`]).
struct PasskeyForm<'a> {
    /// The form's id; its button's is `{id}-submit`.
    id: &'a str,
    /// `register` or `authenticate`.
    purpose: &'a str,
    /// Where the script fetches the ceremony's options.
    options: &'a str,
    /// Where the credential is posted.
    action: &'a str,
    /// The form's CSRF token.
    csrf: &'a str,
    /// More fields.
    extra: Markup,
    /// The button's words.
    label: &'a str,
    /// Whether the button is the page's other choice (outlined, after an
    /// "or"), not its main one.
    secondary: bool,
}

/// A passkey form: the script fetches options from `options`, asks the
/// browser, and posts the credential to `action`. Without a secure context
/// the button is disabled and a note explains why.
fn passkey_form(f: PasskeyForm<'_>) -> Markup {
    html! {
        form id=(f.id) method="post" action=(f.action) data-passkey=(f.purpose) data-options-url=(f.options) {
            (csrf_field(f.csrf))
            input type="hidden" name="credential" value="";
            (f.extra)
            p.muted.passkey-unavailable data-passkey-unavailable hidden {
                "Passkeys need a secure context: this page must be served over HTTPS (plain HTTP works only on localhost)."
            }
            p.error data-passkey-error role="alert" hidden {}
            button type="submit" id=(format!("{}-submit", f.id)) class=[f.secondary.then_some("secondary")] { (f.label) }
        }
    }
}

/// The word between two ways to do one thing (a password or a passkey).
fn or() -> Markup {
    html! { p.or { "or" } }
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
            app: None,
        })
        .into_string();
        assert!(!page.contains("<script>x"));
        assert!(!page.contains("<b>bob"));
        assert!(page.contains("&lt;b&gt;bob"));
    }

    #[test]
    fn the_sign_in_page_has_one_remember_me_for_both_ways_in_and_an_or_between() {
        let page = login_page(&LoginView {
            next: "/",
            csrf: "t",
            username: "",
            error: None,
            registration: false,
            app: None,
        })
        .into_string();
        assert_eq!(page.matches("Remember me on this device").count(), 1);
        assert_eq!(page.matches("type=\"checkbox\"").count(), 1);
        // The passkey form carries the one checkbox's answer.
        assert!(page.contains("name=\"remember\" value=\"\" data-checked-from=\"remember\""));
        let password = page
            .find("id=\"login-submit\"")
            .expect("the password's button");
        let or = page.find("<p class=\"or\">or</p>").expect("an or");
        let passkey = page
            .find("id=\"passkey-login-submit\"")
            .expect("the passkey's button");
        assert!(password < or && or < passkey);
        assert!(page.contains("class=\"secondary\">Sign in with a passkey"));
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
        let audit_rows = || {
            vec![AuditRow {
                id: 7,
                at: 0,
                kind: "sign_in\"><x".into(),
                label: "Sign-in".into(),
                outcome: "failed".into(),
                actor: Some("root\"><x".into()),
                subject: Some("<script>alert(1)</script>".into()),
                ip: "::1".into(),
                device: "curl".into(),
                user_agent: "curl/8\" onmouseover=\"x".into(),
                detail: "reason=<b>x</b>".into(),
            }]
        };
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
                app: None,
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
            reauth_page(&ReauthView {
                viewer: &viewer(),
                app: "Grafana\"><x",
                next: "/oidc/authorize?client_id=a\"><x",
                csrf: "t",
                error: Some("e"),
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
                tokens: TokensView {
                    tokens: vec![crate::users::tokens::Token {
                        id: 1,
                        user_id: 1,
                        name: "backup\"><x".into(),
                        apps: vec!["wiki".into()],
                        created_at: 0,
                        expires_at: Some(1),
                        last_used_at: None,
                        password_at: 0,
                    }],
                    apps: vec!["wiki".into()],
                    made: Some("ght_x".into()),
                },
                apps: vec![AppRow {
                    client_id: "graf\"><x".into(),
                    name: "Grafana\"><x".into(),
                    since: 0,
                }],
                names: NamesView {
                    display_name: Some("A\"><x".into()),
                    email: Some("a\"><x@lan.test".into()),
                    vouched: false,
                    directory: false,
                },
                signin_links: SigninLinksView {
                    links: vec![SigninLinkRow {
                        link: crate::users::links::SigninLink {
                            id: 1,
                            user_id: 1,
                            methods: vec!["pwd".into()],
                            created_at: 0,
                            expires_at: 1,
                            password_at: 0,
                            used_at: Some(0),
                            used_ip: Some("192.0.2.1\"><x".into()),
                            used_agent: Some("x\"><x".into()),
                        },
                        device: Some("Firefox\"><x".into()),
                    }],
                    made: Some(("BCDF-GHJK".into(), "/login/link/t\"><x".into(), 1)),
                },
                activity: audit_rows(),
            }),
            invite_page(&InviteView {
                csrf: "t",
                action: "/invite/t\"><x",
                username: "b\"><x",
                preset: Some("c\"><x"),
                groups: &["ops\"><x".to_owned()],
                error: Some("e"),
            }),
            reset_page(&ResetView {
                csrf: "t",
                action: "/reset/t",
                username: "b\"><x",
                new_factor: true,
                error: Some("e"),
            }),
            code_page(&CodeView {
                csrf: "t",
                code: "b\"><x",
                error: Some("e"),
            }),
            link_page(&LinkView {
                csrf: "t",
                action: "/login/link/t",
                username: "b\"><x",
            }),
            link_gone_page("Invitation", "gone"),
            admin_invites_page(&AdminInvitesView {
                viewer: viewer(),
                invites: vec![crate::users::links::ListedInvite {
                    invite: crate::users::links::Invite {
                        id: 1,
                        created_by: "a\"><x".into(),
                        created_at: 0,
                        expires_at: 1,
                        uses: 3,
                        used: 1,
                        groups: vec![2],
                        user: Some((3, "b\"><x".into())),
                    },
                    group_names: vec!["ops\"><x".into()],
                }],
                groups: vec!["ops".into()],
                csrf: "t",
                notice: None,
                error: Some("e"),
                made: Some("/invite/t\"><x"),
                now: 0,
            }),
            reset_link_page(&ResetLinkView {
                viewer: viewer(),
                username: "b\"><x",
                has_factor: true,
                csrf: "t",
                made: Some(("/reset/t\"><x", 1, true)),
                now: 0,
            }),
            audit_page(&AuditView {
                viewer: viewer(),
                rows: audit_rows(),
                filter: AuditFilterView {
                    user: "a\"><script>x</script>".into(),
                    kind: "sign_in".into(),
                    outcome: "failed".into(),
                    since: "1d\"><x".into(),
                    until: String::new(),
                },
                kinds: vec![("sign_in", "Sign-in")],
                outcomes: vec!["ok", "failed"],
                older: Some("/admin/audit?after=1-2&user=%22".into()),
                newest: Some("/admin/audit".into()),
                export: "/admin/audit.jsonl?user=%22".into(),
                now: 0,
            }),
            admin_tokens_page(&AdminTokensView {
                viewer: viewer(),
                tokens: Vec::new(),
                csrf: "t",
                notice: None,
                now: 0,
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
            overview_page(&OverviewView {
                viewer: viewer(),
                users: 3,
                admins: 1,
                disabled: 1,
                with_second_factor: 2,
                sessions: 4,
                signed_in: 3,
                notice: Some("n"),
            }),
            users_page(&UsersView {
                viewer: viewer(),
                users: vec![UserRow {
                    username: "a".into(),
                    is_admin: true,
                    disabled: false,
                    created_at: 0,
                    sessions: 1,
                    is_viewer: true,
                    factors: vec!["1 passkey".into()],
                    display_name: Some("A\"><x".into()),
                    email: Some("a\"><x@lan.test".into()),
                    email_verified: true,
                    directory: false,
                    reset_link: Some(1),
                }],
                pager: Pager {
                    page: 1,
                    pages: 2,
                    total: 60,
                },
                csrf: "t",
                notice: None,
                error: Some("e"),
                now: 0,
            }),
            sessions_page(&SessionsView {
                viewer: viewer(),
                sessions: rows(),
                pager: Pager {
                    page: 1,
                    pages: 1,
                    total: 1,
                },
                csrf: "t",
                notice: None,
                error: None,
                now: 0,
            }),
            delete_user_page(viewer(), "b", "t"),
            reset_factors_page(viewer(), "b\"><x", "t"),
            confirm_password_page(&ConfirmView {
                viewer: viewer(),
                action: "/admin/users/grant-admin",
                fields: vec![("username", "b\"><x")],
                csrf: "t",
                error: Some("e"),
                back: "/admin/users",
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
