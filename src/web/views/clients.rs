//! `/admin/clients`, the Clients section of the admin area: the OpenID
//! Connect clients of `gatehouse.toml` (read only), those made here (a
//! new secret, delete, each after a confirm step), the form that makes
//! one, and a secret shown the one time it exists in the clear.

use maud::{Markup, html};

use super::admin::area_page;
use super::confirm::{ConfirmStep, confirm_step_page};
use super::{Viewer, csrf_field, when};
use crate::clock::Millis;

/// One client in a list.
pub struct ClientItem {
    /// Its `client_id`.
    pub id: String,
    /// The name people see.
    pub name: String,
    /// No secret.
    pub public: bool,
    /// Its redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The groups that may use it (empty: anyone signed in).
    pub groups: Vec<String>,
    /// A second factor is needed.
    pub two_factor: bool,
    /// PKCE is required.
    pub pkce_required: bool,
    /// Its ID token signing algorithm.
    pub signing_alg: String,
    /// It may have refresh tokens.
    pub offline_access: bool,
    /// It may use the device grant.
    pub device_grant: bool,
    /// Where "my apps" links to.
    pub launch_url: Option<String>,
    /// The page the signed-out page frames.
    pub frontchannel_logout_uri: Option<String>,
    /// That page is given `iss` and `sid`.
    pub frontchannel_logout_session_required: bool,
    /// Where logout tokens are POSTed.
    pub backchannel_logout_uri: Option<String>,
    /// It needs `sid` in the logout token.
    pub backchannel_logout_session_required: bool,
    /// Where `end_session` may send the browser.
    pub post_logout_redirect_uris: Vec<String>,
    /// When it was made here (`None`: a client of gatehouse.toml).
    pub created_at: Option<Millis>,
    /// When its secret was made or last rotated.
    pub secret_set_at: Option<Millis>,
    /// Made here, but gatehouse.toml has a client with its id, which is
    /// used instead.
    pub shadowed: bool,
}

/// What the create form holds: empty at first, what was typed after a
/// refusal.
pub struct ClientForm {
    /// `client_id`.
    pub id: String,
    /// The name.
    pub name: String,
    /// Redirect URIs, one per line.
    pub redirect_uris: String,
    /// `confidential` or `public`.
    pub client_type: String,
    /// Groups, one per line (or comma-separated).
    pub groups: String,
    /// Needs a second factor.
    pub two_factor: bool,
    /// `optional` or `required`.
    pub pkce: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub signing_alg: String,
    /// Launch URL.
    pub launch_url: String,
    /// May have refresh tokens.
    pub offline_access: bool,
    /// Profile claims in the ID token too.
    pub claims_in_id_token: bool,
    /// May use the device grant.
    pub device_grant: bool,
    /// Front-channel logout URI.
    pub frontchannel_logout_uri: String,
    /// `iss` and `sid` given to it.
    pub frontchannel_logout_session_required: bool,
    /// Back-channel logout URI.
    pub backchannel_logout_uri: String,
    /// `sid` needed in the logout token.
    pub backchannel_logout_session_required: bool,
    /// Post-logout redirect URIs, one per line.
    pub post_logout_redirect_uris: String,
}

impl Default for ClientForm {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            redirect_uris: String::new(),
            client_type: "confidential".into(),
            groups: String::new(),
            two_factor: false,
            pkce: "optional".into(),
            signing_alg: "RS256".into(),
            launch_url: String::new(),
            offline_access: false,
            claims_in_id_token: true,
            device_grant: false,
            frontchannel_logout_uri: String::new(),
            frontchannel_logout_session_required: true,
            backchannel_logout_uri: String::new(),
            backchannel_logout_session_required: true,
            post_logout_redirect_uris: String::new(),
        }
    }
}

/// A client just made, or given a new secret: the one time its secret
/// is shown.
pub struct Shown<'a> {
    /// Its `client_id`.
    pub client_id: &'a str,
    /// Its secret (`None`: a public client has none).
    pub secret: Option<&'a str>,
    /// A new secret for a client made before (else a new client).
    pub rotated: bool,
}

/// What the clients page shows.
pub struct ClientsView<'a> {
    /// Who.
    pub viewer: Viewer<'a>,
    /// The provider's issuer; `None`: the provider is off (no `public_url`).
    pub issuer: Option<&'a str>,
    /// The clients of gatehouse.toml.
    pub configured: Vec<ClientItem>,
    /// The clients made here.
    pub made: Vec<ClientItem>,
    /// A secret to show this once.
    pub shown: Option<Shown<'a>>,
    /// The create form's values.
    pub form: &'a ClientForm,
    /// CSRF token.
    pub csrf: &'a str,
    /// After an action.
    pub notice: Option<&'a str>,
    /// After a failed action.
    pub error: Option<&'a str>,
    /// Now.
    pub now: Millis,
}

/// What a client is allowed, in a few words.
fn rules(c: &ClientItem) -> Markup {
    html! {
        @if c.public { span.badge { "public" } } @else { span.badge { "confidential" } }
        " " span.badge.muted { (c.signing_alg) }
        @if c.pkce_required { " " span.badge.muted { "PKCE required" } }
        @if c.two_factor { " " span.badge.muted { "second factor" } }
        @if c.offline_access { " " span.badge.muted { "refresh tokens" } }
        @if c.device_grant { " " span.badge.muted { "device grant" } }
    }
}

/// One client's row; `actions` for one made here.
fn client_row(c: &ClientItem, now: Millis, actions: bool) -> Markup {
    html! {
        tr.client data-client-id=(c.id) {
            td {
                strong { (c.name) }
                br;
                code.client-id { (c.id) }
                @if c.shadowed {
                    br;
                    span.badge.danger { "hidden by gatehouse.toml (its client of this id is used)" }
                }
            }
            td { (rules(c)) }
            td {
                @for uri in &c.redirect_uris { code { (uri) } br; }
            }
            td.logout {
                @if let Some(uri) = &c.frontchannel_logout_uri {
                    span.muted { "front-channel" }
                    @if !c.frontchannel_logout_session_required { " " span.badge.muted { "no iss/sid" } }
                    br;
                    code.frontchannel { (uri) } br;
                }
                @if let Some(uri) = &c.backchannel_logout_uri {
                    span.muted { "back-channel" }
                    @if !c.backchannel_logout_session_required { " " span.badge.muted { "sid not needed" } }
                    br;
                    code.backchannel { (uri) } br;
                }
                @if !c.post_logout_redirect_uris.is_empty() {
                    span.muted { "after sign-out" } br;
                    @for uri in &c.post_logout_redirect_uris { code.post-logout { (uri) } br; }
                }
                @if c.frontchannel_logout_uri.is_none() && c.backchannel_logout_uri.is_none()
                    && c.post_logout_redirect_uris.is_empty() {
                    span.muted { "none" }
                }
            }
            td {
                @if c.groups.is_empty() { span.muted { "anyone signed in" } } @else { (c.groups.join(", ")) }
            }
            @if actions {
                td {
                    @if let Some(at) = c.created_at { "made " (when(at, now)) }
                    @if let Some(at) = c.secret_set_at { br; "secret " (when(at, now)) }
                }
                td.actions {
                    div.actions {
                        @if !c.public && !c.shadowed {
                            form.inline method="get" action="/admin/clients/rotate" {
                                input type="hidden" name="client_id" value=(c.id);
                                button.small.secondary type="submit" { "New secret…" }
                            }
                        }
                        form.inline method="get" action="/admin/clients/delete" {
                            input type="hidden" name="client_id" value=(c.id);
                            button.small.danger type="submit" { "Delete…" }
                        }
                    }
                }
            }
        }
    }
}

/// A list of clients; `actions` for those made here (the confirm steps
/// are reached by a GET, so no token is needed until they post).
fn clients_table(id: &str, clients: &[ClientItem], now: Millis, actions: bool) -> Markup {
    html! {
        div.table {
            table.wide id=(id) {
                thead {
                    tr {
                        th scope="col" { "Client" }
                        th scope="col" { "Kind" }
                        th scope="col" { "Redirect URIs" }
                        th scope="col" { "Logout" }
                        th scope="col" { "Groups" }
                        @if actions {
                            th scope="col" { "Made" }
                            th scope="col" { "Actions" }
                        }
                    }
                }
                tbody {
                    @for c in clients { (client_row(c, now, actions)) }
                }
            }
        }
    }
}

/// The box that shows a secret once.
fn shown_box(s: &Shown<'_>, issuer: Option<&str>) -> Markup {
    html! {
        div.notice id="client-made" role="status" {
            @if s.rotated {
                p { strong { "The client has a new secret. Copy it now: it is not shown again, and the old one no longer works." } }
            } @else if s.secret.is_some() {
                p { strong { "The client has been made. Copy its secret now: it is not shown again." } }
            } @else {
                p { strong { "The public client has been made (it has no secret: it uses PKCE)." } }
            }
            label for="made-client-id" { "Client id" }
            input type="text" id="made-client-id" value=(s.client_id) readonly;
            @if let Some(secret) = s.secret {
                label for="made-client-secret" { "Client secret" }
                input type="text" id="made-client-secret" value=(secret) readonly autocomplete="off";
            }
            @if let Some(issuer) = issuer {
                p.muted { "Issuer (discovery): " code { (issuer) } }
            }
        }
    }
}

/// `GET /admin/clients`.
pub fn clients_page(v: &ClientsView<'_>) -> Markup {
    let f = v.form;
    area_page(
        "Clients",
        &v.viewer,
        "clients",
        v.notice,
        v.error,
        html! {
            @if let Some(s) = &v.shown { (shown_box(s, v.issuer)) }
            section.card {
                h1 { "OpenID Connect clients" }
                @if v.issuer.is_none() {
                    p id="provider-off" {
                        "The OpenID Provider is off: set " code { "public_url" }
                        " in gatehouse.toml to turn it on. Clients can then be made here."
                    }
                } @else {
                    p.muted {
                        "Apps that sign their users in through gatehouse. Those of gatehouse.toml are changed there; "
                        "those made here are kept in the database, shared by every instance."
                    }
                }
                h2 { "From gatehouse.toml" }
                @if v.configured.is_empty() {
                    p.muted id="no-configured-clients" { "None." }
                } @else {
                    (clients_table("configured-clients", &v.configured, v.now, false))
                }
                h2 { "Made here" }
                @if v.made.is_empty() {
                    p.muted id="no-made-clients" { "None yet." }
                } @else {
                    (clients_table("made-clients", &v.made, v.now, true))
                }
            }
            @if v.issuer.is_some() {
                section.card.narrow-form {
                    h2 { "Make a client" }
                    form id="create-client-form" method="post" action="/admin/clients" {
                        (csrf_field(v.csrf))
                        label for="client-id" { "Client id (empty: a random one)" }
                        input type="text" id="client-id" name="client_id" maxlength="255" autocomplete="off"
                            autocapitalize="none" value=(f.id);
                        label for="client-name" { "Name people see" }
                        input type="text" id="client-name" name="client_name" maxlength="100" value=(f.name);
                        label for="client-redirect-uris" { "Redirect URIs, one per line (matched exactly; http://127.0.0.1 and http://[::1] on any port)" }
                        textarea id="client-redirect-uris" name="redirect_uris" rows="3" required { (f.redirect_uris) }
                        fieldset {
                            legend { "Kind" }
                            label.check {
                                input type="radio" name="client_type" value="confidential" checked[f.client_type != "public"];
                                "Confidential (a server that keeps a secret)"
                            }
                            label.check {
                                input type="radio" name="client_type" value="public" checked[f.client_type == "public"];
                                "Public (a browser or phone app: no secret, PKCE always required)"
                            }
                        }
                        label for="client-groups" { "Only members of these groups, one per line (empty: anyone signed in)" }
                        textarea id="client-groups" name="allowed_groups" rows="2" { (f.groups) }
                        label for="client-pkce" { "PKCE for a confidential client" }
                        select id="client-pkce" name="pkce" {
                            option value="optional" selected[f.pkce != "required"] { "optional (many apps send none)" }
                            option value="required" selected[f.pkce == "required"] { "required" }
                        }
                        label for="client-alg" { "ID token signing algorithm" }
                        select id="client-alg" name="signing_alg" {
                            @for alg in ["RS256", "ES256", "EdDSA"] {
                                option value=(alg) selected[f.signing_alg == alg] { (alg) }
                            }
                        }
                        label for="client-launch-url" { "Launch URL for the start page (optional)" }
                        input type="text" id="client-launch-url" name="launch_url" maxlength="2000" value=(f.launch_url);
                        label.check {
                            input type="checkbox" name="two_factor" value="1" checked[f.two_factor];
                            "Needs a sign-in with a second factor"
                        }
                        label.check {
                            input type="checkbox" name="offline_access" value="1" checked[f.offline_access];
                            "May have refresh tokens (offline_access)"
                        }
                        label.check {
                            input type="checkbox" name="claims_in_id_token" value="1" checked[f.claims_in_id_token];
                            "Name, e-mail and groups in the ID token too (not only from userinfo)"
                        }
                        label.check {
                            input type="checkbox" name="device_grant" value="1" checked[f.device_grant];
                            "May use the device grant (TVs, command-line tools)"
                        }
                        fieldset {
                            legend { "Logout (optional)" }
                            label for="client-frontchannel-logout-uri" { "Front-channel logout URI: loaded in a hidden frame on the signed-out page (https; http only to 127.0.0.1, localhost or a host of an http redirect URI)" }
                            input type="text" id="client-frontchannel-logout-uri" name="frontchannel_logout_uri" maxlength="2000"
                                autocomplete="off" autocapitalize="none" value=(f.frontchannel_logout_uri);
                            label.check {
                                input type="checkbox" name="frontchannel_logout_session_required" value="1" checked[f.frontchannel_logout_session_required];
                                "Give it iss and sid (session required)"
                            }
                            label for="client-backchannel-logout-uri" { "Back-channel logout URI: a logout token is POSTed here when a session ends (same rules)" }
                            input type="text" id="client-backchannel-logout-uri" name="backchannel_logout_uri" maxlength="2000"
                                autocomplete="off" autocapitalize="none" value=(f.backchannel_logout_uri);
                            label.check {
                                input type="checkbox" name="backchannel_logout_session_required" value="1" checked[f.backchannel_logout_session_required];
                                "It needs sid in the logout token (session required)"
                            }
                            label for="client-post-logout-redirect-uris" { "Post-logout redirect URIs, one per line: where end_session may send the browser afterwards (matched exactly)" }
                            textarea id="client-post-logout-redirect-uris" name="post_logout_redirect_uris" rows="2" { (f.post_logout_redirect_uris) }
                        }
                        button type="submit" id="create-client-submit" { "Make client" }
                    }
                }
            }
        },
    )
}

/// `GET /admin/clients/rotate`: the confirm step.
pub fn rotate_client_page(viewer: Viewer<'_>, id: &str, csrf: &str) -> Markup {
    let title = format!("A new secret for {id}?");
    confirm_step_page(&ConfirmStep {
        viewer,
        id: "rotate-client",
        title: &title,
        explain: "A new secret is made and shown once. The old one is refused from now on, \
                  by every instance: the app stops working until it is given the new one.",
        action: "/admin/clients/rotate",
        fields: vec![("client_id", id), ("confirm", "yes")],
        csrf,
        button: "Make a new secret",
        back: "/admin/clients",
    })
}

/// `GET /admin/clients/delete`: the confirm step.
pub fn delete_client_page(viewer: Viewer<'_>, id: &str, csrf: &str) -> Markup {
    let title = format!("Delete the client {id}?");
    confirm_step_page(&ConfirmStep {
        viewer,
        id: "delete-client",
        title: &title,
        explain: "The client is removed, and every sign-in it holds ends: its codes, access \
                  and refresh tokens stop working at once. This cannot be undone.",
        action: "/admin/clients/delete",
        fields: vec![("client_id", id), ("confirm", "yes")],
        csrf,
        button: "Delete the client",
        back: "/admin/clients",
    })
}
