//! Links that stand in for e-mail, as pages: the invite page (pick a name
//! and a password), the reset page (a new password), the sign-in code and
//! link pages (sign this browser in), the page of a link that does not
//! work; `/admin/invites`, the reset link an administrator makes for a
//! user, and the sign-in links section of `/account`.

use maud::{Markup, html};

use super::admin::area_page;
use super::{Viewer, csrf_field, layout, messages, when};
use crate::clock::Millis;
use crate::users::links::{ListedInvite, SigninLink};

/// The password fields a new password is set with (twice).
fn new_password_fields() -> Markup {
    html! {
        label for="password" { "Password" }
        input type="password" id="password" name="password" autocomplete="new-password"
            minlength="8" required aria-describedby="password-rules";
        label for="password2" { "Password again" }
        input type="password" id="password2" name="password2" autocomplete="new-password"
            minlength="8" required;
        p.muted id="password-rules" { "8 characters or more, at most 72 bytes." }
    }
}

/// What the invite page shows.
pub struct InviteView<'a> {
    /// CSRF token (the anonymous one).
    pub csrf: &'a str,
    /// Where the form posts: the invite's own address.
    pub action: &'a str,
    /// The name typed, to fill in again.
    pub username: &'a str,
    /// The name the invite was made for, if any (then not asked).
    pub preset: Option<&'a str>,
    /// The groups the account joins.
    pub groups: &'a [String],
    /// Why the last try was refused.
    pub error: Option<&'a str>,
}

/// `GET /invite/<token>`: pick a name and a password.
pub fn invite_page(v: &InviteView<'_>) -> Markup {
    layout(
        "Invitation",
        None,
        html! {
            section.card.narrow {
                h1 { "You are invited" }
                @match v.preset {
                    Some(name) => p { "Set a password for your account " strong id="invite-name" { (name) } "." },
                    None => p { "Pick a username and a password for your account." },
                }
                @if !v.groups.is_empty() {
                    p.muted id="invite-groups" { "You will be in: " (v.groups.join(", ")) "." }
                }
                (messages(None, v.error))
                form id="invite-form" method="post" action=(v.action) {
                    (csrf_field(v.csrf))
                    @match v.preset {
                        Some(name) => {
                            input type="text" name="preset" value=(name) autocomplete="username" hidden;
                        }
                        None => {
                            label for="username" { "Username" }
                            input type="text" id="username" name="username" value=(v.username)
                                autocomplete="username" autocapitalize="none" spellcheck="false"
                                maxlength="64" required;
                        }
                    }
                    (new_password_fields())
                    button type="submit" id="invite-submit" { "Create account" }
                }
            }
        },
    )
}

/// What the reset page shows.
pub struct ResetView<'a> {
    /// CSRF token (the anonymous one).
    pub csrf: &'a str,
    /// Where the form posts: the link's own address.
    pub action: &'a str,
    /// Whose password it sets.
    pub username: &'a str,
    /// Whether a new second factor is set up next.
    pub new_factor: bool,
    /// Why the last try was refused.
    pub error: Option<&'a str>,
}

/// `GET /reset/<token>`: a new password.
pub fn reset_page(v: &ResetView<'_>) -> Markup {
    layout(
        "New password",
        None,
        html! {
            section.card.narrow {
                h1 { "A new password for " span id="reset-name" { (v.username) } }
                p { "Setting it signs you out everywhere else and ends your tokens." }
                @if v.new_factor {
                    p id="reset-new-factor" {
                        "Next you set up a new second factor (an authenticator app or a passkey). "
                        "Your old ones stop working once it is set."
                    }
                }
                (messages(None, v.error))
                form id="reset-form" method="post" action=(v.action) {
                    (csrf_field(v.csrf))
                    input type="text" name="username" value=(v.username) autocomplete="username" hidden;
                    (new_password_fields())
                    button type="submit" id="reset-submit" { "Set password" }
                }
            }
        },
    )
}

/// What the page to type a sign-in code shows.
pub struct CodeView<'a> {
    /// CSRF token (the anonymous one).
    pub csrf: &'a str,
    /// The code typed, to fill in again.
    pub code: &'a str,
    /// Why the last try was refused.
    pub error: Option<&'a str>,
}

/// `GET /login/code`: type the code shown on the device already signed in.
pub fn code_page(v: &CodeView<'_>) -> Markup {
    layout(
        "Sign in with a code",
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in with a code" }
                p { "On a device where you are signed in, open your account page and make a sign-in code; type it here within five minutes." }
                (messages(None, v.error))
                form id="code-form" method="post" action="/login/code" {
                    (csrf_field(v.csrf))
                    label for="code" { "Code" }
                    input type="text" id="code" name="code" value=(v.code) autocomplete="one-time-code"
                        autocapitalize="characters" spellcheck="false" maxlength="16"
                        placeholder="XXXX-XXXX" required;
                    button type="submit" id="code-submit" { "Sign in" }
                }
                p.muted { a href="/login" { "Sign in with your password instead" } }
            }
        },
    )
}

/// What a sign-in link's page shows.
pub struct LinkView<'a> {
    /// CSRF token (the anonymous one).
    pub csrf: &'a str,
    /// Where the form posts: the link's own address.
    pub action: &'a str,
    /// Who it signs in.
    pub username: &'a str,
}

/// `GET /login/link/<token>`: one button, so that a preview or a prefetch
/// of the link uses nothing.
pub fn link_page(v: &LinkView<'_>) -> Markup {
    layout(
        "Sign in on this device",
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in as " span id="link-name" { (v.username) } "?" }
                p { "This signs this browser in once, as the account that made the link." }
                p.muted { "Use it only if you made it yourself: whoever made it owns what you do here once signed in." }
                form id="link-form" method="post" action=(v.action) {
                    (csrf_field(v.csrf))
                    button type="submit" id="link-submit" { "Sign in on this device" }
                }
            }
        },
    )
}

/// The page of a link that does not work (whatever the reason).
pub fn link_gone_page(what: &str, message: &str) -> Markup {
    layout(
        what,
        None,
        html! {
            section.card.narrow {
                h1 { (what) }
                p.error id="link-error" role="alert" { (message) }
                p { a href="/login" { "Go to the sign-in page" } }
            }
        },
    )
}

/// What `/admin/invites` shows.
pub struct AdminInvitesView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// Every invite, newest first.
    pub invites: Vec<ListedInvite>,
    /// The groups an invite may name (all but `admins`).
    pub groups: Vec<String>,
    /// CSRF token.
    pub csrf: &'a str,
    /// After an action.
    pub notice: Option<&'a str>,
    /// After a failed action.
    pub error: Option<&'a str>,
    /// An invite's address just made: shown this once.
    pub made: Option<&'a str>,
    /// Now.
    pub now: Millis,
}

/// `GET /admin/invites`.
pub fn admin_invites_page(v: &AdminInvitesView<'_>) -> Markup {
    area_page(
        "Invites",
        &v.viewer,
        "invites",
        v.notice,
        v.error,
        html! {
            @if let Some(url) = v.made {
                section.card.notice role="status" {
                    p { strong { "Send this link to the person you invite: it is not shown again." } }
                    input type="text" id="new-invite" value=(url) readonly;
                }
            }
            section.card {
                h1 { "Invites" }
                p.muted {
                    "An invite link makes an account: the invitee picks a name (unless you chose one) and a password. "
                    "Sign-up stays as the settings say; invites work either way."
                }
                @if v.invites.is_empty() {
                    p.muted id="no-invites" { "None." }
                } @else {
                    div.table { table.wide id="invites" {
                        thead { tr {
                            th scope="col" { "Made by" } th scope="col" { "Made" } th scope="col" { "Expires" }
                            th.number scope="col" { "Uses left" } th scope="col" { "Groups" } th scope="col" { "For" }
                            th scope="col" { "Actions" }
                        } }
                        tbody {
                            @for l in &v.invites {
                                @let i = &l.invite;
                                tr id={ "invite-" (i.id) } {
                                    td { @if i.created_by.is_empty() { span.muted { "command line" } } @else { (i.created_by) } }
                                    td { (when(i.created_at, v.now)) }
                                    td { (when(i.expires_at, v.now)) }
                                    td.number.uses-left { (i.left()) " of " (i.uses) }
                                    td { @if l.group_names.is_empty() { span.muted { "none" } } @else { (l.group_names.join(", ")) } }
                                    td { @match &i.user { Some((_, name)) => (name), None => span.muted { "anyone" } } }
                                    td.actions {
                                        form method="post" action="/admin/invites/revoke" {
                                            (csrf_field(v.csrf))
                                            input type="hidden" name="id" value=(i.id);
                                            button.small.danger type="submit" id={ "revoke-invite-" (i.id) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
            section.card.narrow-form {
                h2 { "Make an invite" }
                form id="invite-create-form" method="post" action="/admin/invites" {
                    (csrf_field(v.csrf))
                    label for="invite-uses" { "How many accounts it may make" }
                    input type="number" id="invite-uses" name="uses" value="1" min="1" max="1000" required;
                    label for="invite-expires" { "Expires" }
                    select id="invite-expires" name="expires" {
                        option value="1d" { "in a day" }
                        option value="7d" selected { "in 7 days" }
                        option value="30d" { "in 30 days" }
                    }
                    label for="invite-groups" { "Groups (names, separated by commas)" }
                    input type="text" id="invite-groups" name="groups" autocomplete="off"
                        autocapitalize="none" spellcheck="false" maxlength="1024" aria-describedby="invite-groups-known";
                    p.muted id="invite-groups-known" {
                        @if v.groups.is_empty() { "No groups yet." } @else { "Groups: " (v.groups.join(", ")) "." }
                        " An invite never makes an administrator."
                    }
                    label for="invite-username" { "For a user named (optional: made now, sets only a password)" }
                    input type="text" id="invite-username" name="username" autocomplete="off"
                        autocapitalize="none" spellcheck="false" maxlength="64";
                    button type="submit" id="invite-submit" { "Make invite link" }
                }
            }
        },
    )
}

/// What the page of a reset link for a user shows.
pub struct ResetLinkView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// Whose password the link sets.
    pub username: &'a str,
    /// Whether they have a second factor now.
    pub has_factor: bool,
    /// CSRF token.
    pub csrf: &'a str,
    /// A link just made, its expiry and whether it asks for a new factor:
    /// shown this once.
    pub made: Option<(&'a str, Millis, bool)>,
    /// Now.
    pub now: Millis,
}

/// `GET /admin/users/reset-link?username=...`: make a reset link.
pub fn reset_link_page(v: &ResetLinkView<'_>) -> Markup {
    area_page(
        "Reset link",
        &v.viewer,
        "users",
        None,
        None,
        html! {
            @if let Some((url, expires_at, new_factor)) = v.made {
                section.card.notice role="status" {
                    p { strong { "Give this link to " (v.username) ": it is not shown again." } }
                    input type="text" id="new-reset-link" value=(url) readonly;
                    p.muted {
                        "It works once, until " (when(expires_at, v.now)) ". "
                        @if new_factor { "They set a new password and a new second factor with it." }
                        @else { "They set a new password with it." }
                    }
                }
            }
            section.card.narrow-form {
                h1 { "A reset link for " (v.username) }
                p {
                    "With it " (v.username) " sets a new password themselves (you never learn it); "
                    "that ends all their sessions and tokens. A new link replaces an older one."
                }
                form id="reset-link-form" method="post" action="/admin/users/reset-link" {
                    (csrf_field(v.csrf))
                    input type="hidden" name="username" value=(v.username);
                    label for="reset-link-expires" { "Expires" }
                    select id="reset-link-expires" name="expires" {
                        option value="15m" { "in 15 minutes" }
                        option value="1h" selected { "in an hour" }
                        option value="4h" { "in 4 hours" }
                        option value="24h" { "in a day" }
                    }
                    @if v.has_factor {
                        label.check for="reset-link-new-factor" {
                            input type="checkbox" id="reset-link-new-factor" name="new_factor" value="1";
                            "Also a new second factor (a lost phone): the old ones go once the new one is set"
                        }
                    }
                    button type="submit" id="reset-link-submit" { "Make reset link" }
                }
                p { a href="/admin/users" id="cancel" { "Back to the users" } }
            }
        },
    )
}

/// One sign-in link on the account page.
pub struct SigninLinkRow {
    /// The link.
    pub link: SigninLink,
    /// The device it was used from ("Firefox on Linux"), if used.
    pub device: Option<String>,
}

/// The sign-in links section of `/account`.
pub struct SigninLinksView {
    /// The user's links, newest first.
    pub links: Vec<SigninLinkRow>,
    /// A link just made: its code, its address and its expiry, shown once.
    pub made: Option<(String, String, Millis)>,
}

/// The section on `/account`.
pub fn signin_links_section(v: &SigninLinksView, csrf: &str, now: Millis) -> Markup {
    html! {
        section.card id="signin-links-section" {
            h2 { "Sign in on another device" }
            p.muted {
                "A code or a link that signs one other browser in as you, once, within five minutes: "
                "type the code at " code { "/login/code" } " there, or open the link. "
                "It signs in as this session did (with its second factor, if it gave one)."
            }
            @if let Some((code, url, expires_at)) = &v.made {
                div.notice role="status" {
                    p { strong { "Your code: " } code id="new-signin-code" { (code) } " (until " (when(*expires_at, now)) ")" }
                    p { "Or open this link on the other device:" }
                    input type="text" id="new-signin-link" value=(url) readonly;
                    p.muted { "Shown only this once." }
                }
            }
            @if !v.links.is_empty() {
                div.table { table id="signin-links" {
                    thead { tr { th { "Made" } th { "Used" } th { "From" } th {} } }
                    tbody {
                        @for row in &v.links {
                            @let l = &row.link;
                            tr id={ "signin-link-" (l.id) } {
                                td { (when(l.created_at, now)) }
                                @match l.used_at {
                                    Some(at) => {
                                        td.used { (when(at, now)) }
                                        td.used-from {
                                            (row.device.as_deref().unwrap_or("Unknown device"))
                                            ", " (l.used_ip.as_deref().unwrap_or("-"))
                                        }
                                        td {}
                                    }
                                    None => {
                                        td { @if l.live(now) { "not yet (expires " (when(l.expires_at, now)) ")" } @else { "expired unused" } }
                                        td { "-" }
                                        td {
                                            @if l.live(now) {
                                                form method="post" action="/account/signin-links/revoke" {
                                                    (csrf_field(csrf))
                                                    input type="hidden" name="id" value=(l.id);
                                                    button.small.danger type="submit" id={ "revoke-signin-link-" (l.id) } { "Revoke" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            form id="signin-link-form" method="post" action="/account/signin-links" {
                (csrf_field(csrf))
                button type="submit" id="signin-link-make" { "Make a sign-in code" }
            }
        }
    }
}
