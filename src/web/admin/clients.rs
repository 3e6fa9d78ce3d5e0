//! `/admin/clients`: the OpenID Connect clients. Those of gatehouse.toml
//! are listed read only; an administrator makes others here (the secret
//! shown once, on the page the form answers with: never in a URL, never
//! stored in the clear), gives one a new secret (shown once; the old one
//! is refused at once), or deletes one (every grant, code and token it
//! holds ends), each of the last two after a confirm step. The rules are
//! `oidc::registry`'s; every action passes `act` (the session's token, a
//! second factor where there is one, a recent password); each is recorded
//! in the audit log as the administrator's (`accounts::clients`).

use rouille::{Request, Response};

use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::logging;
use crate::oidc::registry::Stored;
use crate::oidc::{Alg, NewClient, Pkce, Provider, RegistryError};
use crate::web::error::{Result, WebError};
use crate::web::form::Form;
use crate::web::respond::{capitalise, html, notice};
use crate::web::signed_in::{SignedIn, viewer};
use crate::web::state::State;
use crate::web::views::{self, ClientForm, ClientItem, ClientsView, Shown};

use super::act::{Outcome, Section, act, as_admin, refused};

/// The clients section: where its actions go back to.
const CLIENTS: Section = Section {
    path: "/admin/clients",
    refused: |state, s, message| {
        render(
            state,
            s,
            Extra {
                error: Some(message),
                ..Extra::default()
            },
        )
    },
};

/// What the page shows beside the lists.
#[derive(Default)]
struct Extra<'a> {
    notice: Option<&'a str>,
    error: Option<&'a str>,
    shown: Option<Shown<'a>>,
    form: Option<&'a ClientForm>,
}

fn configured_item(c: &crate::oidc::Client) -> ClientItem {
    ClientItem {
        id: c.id.clone(),
        name: c.name.clone(),
        public: c.is_public(),
        redirect_uris: c.redirect_uris.clone(),
        groups: c.groups.clone(),
        two_factor: c.two_factor,
        pkce_required: c.pkce_required(),
        signing_alg: c.signing_alg.as_str().to_owned(),
        offline_access: c.offline_access,
        device_grant: c.device_grant,
        launch_url: c.launch_url.clone(),
        frontchannel_logout_uri: c.frontchannel_logout_uri.clone(),
        frontchannel_logout_session_required: c.frontchannel_logout_session_required,
        backchannel_logout_uri: c.backchannel_logout_uri.clone(),
        backchannel_logout_session_required: c.backchannel_logout_session_required,
        post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        created_at: None,
        secret_set_at: None,
        shadowed: false,
    }
}

fn stored_item(s: Stored) -> ClientItem {
    let r = s.row;
    ClientItem {
        public: r.secret_hash.is_none(),
        id: r.id,
        name: r.name,
        redirect_uris: r.redirect_uris,
        groups: r.groups,
        two_factor: r.two_factor,
        pkce_required: r.pkce_required,
        signing_alg: r.signing_alg,
        offline_access: r.offline_access,
        device_grant: r.device_grant,
        launch_url: r.launch_url,
        frontchannel_logout_uri: r.frontchannel_logout_uri,
        frontchannel_logout_session_required: r.frontchannel_logout_session_required,
        backchannel_logout_uri: r.backchannel_logout_uri,
        backchannel_logout_session_required: r.backchannel_logout_session_required,
        post_logout_redirect_uris: r.post_logout_redirect_uris,
        created_at: Some(r.created_at),
        secret_set_at: r.secret_set_at,
        shadowed: s.shadowed,
    }
}

fn render(state: &State, s: &SignedIn, extra: Extra<'_>) -> Result<Response> {
    let (issuer, configured, made) = match &state.oidc {
        None => (None, Vec::new(), Vec::new()),
        Some(provider) => {
            let listing = provider
                .registry()
                .list()
                .map_err(WebError::provider_fault)?;
            (
                Some(provider.issuer()),
                listing.configured.iter().map(configured_item).collect(),
                listing.stored.into_iter().map(stored_item).collect(),
            )
        }
    };
    let empty = ClientForm::default();
    let token = csrf::session_token(state.engine().signer(), &s.key);
    Ok(html(views::clients_page(&ClientsView {
        viewer: viewer(&s.user),
        issuer,
        configured,
        made,
        shown: extra.shown,
        form: extra.form.unwrap_or(&empty),
        csrf: &token,
        notice: extra.notice,
        error: extra.error,
        now: clock::now(),
    })))
}

/// `GET /admin/clients`.
pub(super) fn get_clients(state: &State, request: &Request, client: &Client) -> Result<Response> {
    as_admin(state, request, client, |s| {
        render(
            state,
            s,
            Extra {
                notice: notice(request),
                ..Extra::default()
            },
        )
    })
}

/// The provider, or the refusal of an action while it is off.
fn provider(state: &State) -> std::result::Result<&Provider, Outcome> {
    state.oidc.as_ref().ok_or_else(|| {
        refused(
            409,
            "The OpenID Provider is off: set public_url in gatehouse.toml first.",
        )
    })
}

/// The create form as typed.
fn typed(form: &Form) -> ClientForm {
    let text = |name: &str| form.get(name).unwrap_or("").to_owned();
    let ticked = |name: &str| form.get(name).is_some();
    ClientForm {
        id: text("client_id"),
        name: text("client_name"),
        redirect_uris: text("redirect_uris"),
        client_type: text("client_type"),
        groups: text("allowed_groups"),
        two_factor: ticked("two_factor"),
        pkce: text("pkce"),
        signing_alg: text("signing_alg"),
        launch_url: text("launch_url"),
        offline_access: ticked("offline_access"),
        claims_in_id_token: ticked("claims_in_id_token"),
        device_grant: ticked("device_grant"),
        frontchannel_logout_uri: text("frontchannel_logout_uri"),
        frontchannel_logout_session_required: ticked("frontchannel_logout_session_required"),
        backchannel_logout_uri: text("backchannel_logout_uri"),
        backchannel_logout_session_required: ticked("backchannel_logout_session_required"),
        post_logout_redirect_uris: text("post_logout_redirect_uris"),
    }
}

/// What the form asks for, or why it cannot be read (a choice the form
/// does not offer). The values themselves are judged by the registry.
fn new_client(f: &ClientForm) -> std::result::Result<NewClient, &'static str> {
    let public = match f.client_type.as_str() {
        "confidential" => false,
        "public" => true,
        _ => return Err("Choose whether the client is confidential or public."),
    };
    let pkce = match f.pkce.as_str() {
        "optional" => Pkce::Optional,
        "required" => Pkce::Required,
        _ => return Err("PKCE is either optional or required."),
    };
    let signing_alg = Alg::parse(&f.signing_alg)
        .ok_or("The signing algorithm is one of RS256, ES256 and EdDSA.")?;
    let lines = |text: &str, also: &[char]| -> Vec<String> {
        text.split(|c| c == '\n' || also.contains(&c))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let optional = |text: &str| {
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    };
    Ok(NewClient {
        id: f.id.trim().to_owned(),
        name: f.name.trim().to_owned(),
        redirect_uris: lines(&f.redirect_uris, &[]),
        public,
        groups: lines(&f.groups, &[',']),
        two_factor: f.two_factor,
        pkce,
        signing_alg,
        offline_access: f.offline_access,
        claims_in_id_token: f.claims_in_id_token,
        device_grant: f.device_grant,
        launch_url: optional(&f.launch_url),
        frontchannel_logout_uri: optional(&f.frontchannel_logout_uri),
        frontchannel_logout_session_required: f.frontchannel_logout_session_required,
        backchannel_logout_uri: optional(&f.backchannel_logout_uri),
        backchannel_logout_session_required: f.backchannel_logout_session_required,
        post_logout_redirect_uris: lines(&f.post_logout_redirect_uris, &[]),
    })
}

/// The form's words for a field the rules name.
fn label(field: &str) -> &str {
    match field {
        "id" => "Client id",
        "name" => "Name",
        "redirect_uris" => "Redirect URIs",
        "groups" => "Groups",
        "launch_url" => "Launch URL",
        "frontchannel_logout_uri" => "Front-channel logout URI",
        "backchannel_logout_uri" => "Back-channel logout URI",
        "post_logout_redirect_uris" => "Post-logout redirect URIs",
        "pkce" => "PKCE",
        "signing_alg" => "Signing algorithm",
        other => other,
    }
}

/// A registry refusal as a status and a sentence for the page; a store
/// failure stays an error.
fn refusal(e: RegistryError) -> Result<(u16, String)> {
    Ok(match e {
        RegistryError::Invalid(e) => (400, format!("{}: {}.", label(e.field), e.reason)),
        RegistryError::Configured(id) => (
            409,
            format!("The client id {id:?} is configured in gatehouse.toml: change it there."),
        ),
        RegistryError::Taken(id) => (409, format!("A client with the id {id:?} exists already.")),
        RegistryError::Public(id) => (409, format!("{id:?} is a public client: it has no secret.")),
        RegistryError::Unknown(_) => return Err(WebError::NotFound),
        RegistryError::Oidc(e) => return Err(WebError::provider_fault(e)),
    })
}

/// `POST /admin/clients`: a new client, its secret shown on the page this
/// answers with (or the form again, with what was typed and why not).
pub(super) fn post_create(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, &CLIENTS, |_, s, form| {
        let provider = match provider(state) {
            Ok(p) => p,
            Err(off) => return Ok(off),
        };
        let typed = typed(form);
        let again = |status: u16, message: &str| -> Result<Outcome> {
            let page = render(
                state,
                s,
                Extra {
                    error: Some(message),
                    form: Some(&typed),
                    ..Extra::default()
                },
            )?;
            Ok(Outcome::Page(page.with_status_code(status)))
        };
        let new = match new_client(&typed) {
            Ok(n) => n,
            Err(why) => return again(400, why),
        };
        let accounts = state.accounts_for(request, client).by(&s.user);
        let created = match accounts.create_client(&provider.registry(), &new, clock::now()) {
            Ok(c) => {
                provider.prepare_client_key(&c.client);
                c
            }
            Err(e) => {
                let (status, message) = refusal(e)?;
                return again(status, &capitalise(&message));
            }
        };
        logging::line(&format!(
            "oidc client created client={} public={} by={}",
            logging::quote(&created.client.id),
            created.client.is_public(),
            logging::quote(&s.user.username)
        ));
        let page = render(
            state,
            s,
            Extra {
                shown: Some(Shown {
                    client_id: &created.client.id,
                    secret: created.secret.as_deref(),
                    rotated: false,
                }),
                ..Extra::default()
            },
        )?;
        Ok(Outcome::Page(page))
    })
}

/// The stored client a confirm step's query names (404 for none, and
/// while the provider is off).
fn stored(state: &State, request: &Request) -> Result<Stored> {
    let provider = state.oidc.as_ref().ok_or(WebError::NotFound)?;
    let id = request.get_param("client_id").unwrap_or_default();
    provider
        .registry()
        .find_stored(&id)
        .map_err(WebError::provider_fault)?
        .ok_or(WebError::NotFound)
}

/// `GET /admin/clients/rotate?client_id=ID`: the confirm step.
pub(super) fn get_rotate(state: &State, request: &Request, client: &Client) -> Result<Response> {
    as_admin(state, request, client, |s| {
        let found = stored(state, request)?;
        let token = csrf::session_token(state.engine().signer(), &s.key);
        Ok(html(views::rotate_client_page(
            viewer(&s.user),
            &found.row.id,
            &token,
        )))
    })
}

/// `POST /admin/clients/rotate`, from the confirm step only: a new
/// secret, shown once; the old one is refused from now on.
pub(super) fn post_rotate(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, &CLIENTS, |_, s, form| {
        let provider = match provider(state) {
            Ok(p) => p,
            Err(off) => return Ok(off),
        };
        if form.get("confirm") != Some("yes") {
            return Ok(refused(400, "A new secret needs the confirm step."));
        }
        let id = form.get("client_id").unwrap_or("");
        let accounts = state.accounts_for(request, client).by(&s.user);
        let secret = match accounts.rotate_client_secret(&provider.registry(), id, clock::now()) {
            Ok(secret) => secret,
            Err(e) => {
                let (status, message) = refusal(e)?;
                return Ok(refused(status, &message));
            }
        };
        logging::line(&format!(
            "oidc client secret rotated client={} by={}",
            logging::quote(id),
            logging::quote(&s.user.username)
        ));
        let page = render(
            state,
            s,
            Extra {
                shown: Some(Shown {
                    client_id: id,
                    secret: Some(&secret),
                    rotated: true,
                }),
                ..Extra::default()
            },
        )?;
        Ok(Outcome::Page(page))
    })
}

/// `GET /admin/clients/delete?client_id=ID`: the confirm step.
pub(super) fn get_delete(state: &State, request: &Request, client: &Client) -> Result<Response> {
    as_admin(state, request, client, |s| {
        let found = stored(state, request)?;
        let token = csrf::session_token(state.engine().signer(), &s.key);
        Ok(html(views::delete_client_page(
            viewer(&s.user),
            &found.row.id,
            &token,
        )))
    })
}

/// `POST /admin/clients/delete`, from the confirm step only: the client,
/// and every grant, code and token it holds.
pub(super) fn post_delete(state: &State, request: &Request, client: &Client) -> Result<Response> {
    act(state, request, client, &CLIENTS, |_, s, form| {
        let provider = match provider(state) {
            Ok(p) => p,
            Err(off) => return Ok(off),
        };
        if form.get("confirm") != Some("yes") {
            return Ok(refused(400, "Deleting a client needs the confirm step."));
        }
        let id = form.get("client_id").unwrap_or("");
        let accounts = state.accounts_for(request, client).by(&s.user);
        if let Err(e) = accounts.delete_client(&provider.registry(), id) {
            let (status, message) = refusal(e)?;
            return Ok(refused(status, &message));
        }
        logging::line(&format!(
            "oidc client deleted client={} by={}",
            logging::quote(id),
            logging::quote(&s.user.username)
        ));
        Ok(Outcome::Done("client-deleted"))
    })
}
