//! `oidc ...`: the OpenID Provider from the box. `oidc rotate-key` makes
//! new signing keys; `oidc client create|list|rotate-secret|delete`
//! manages the clients an administrator makes (kept in the configured
//! database, the same ones `/admin/clients` shows): a secret is printed
//! once, when it is made; only its hash is kept. Clients of
//! gatehouse.toml are listed, and changed in the file.

use std::io::Write;

use clap::{Args, Subcommand};

use crate::accounts::Accounts;
use crate::app::{self, AppError};
use crate::config::Config;
use crate::oidc::{Alg, NewClient, Pkce, Registry};
use crate::users::audit::Origin;

use super::{CliError, Global, config};

#[derive(Subcommand, Debug)]
pub(super) enum OidcCommand {
    /// Make new signing keys (one per algorithm in use); the old ones stay
    /// in the JWKS until the ID tokens they signed have expired. Running
    /// servers switch within a minute.
    RotateKey,
    /// The clients made by an administrator (kept in the database; those
    /// of gatehouse.toml are changed in the file).
    #[command(subcommand)]
    Client(ClientCommand),
}

#[derive(Subcommand, Debug)]
pub(super) enum ClientCommand {
    /// Make a client and print its secret (once: only its hash is kept).
    Create(Box<CreateArgs>),
    /// List every client: those of gatehouse.toml and those made here.
    List,
    /// Give a client made here a new secret, printed once; the old one is
    /// refused from now on, by every running server.
    RotateSecret {
        /// The client id.
        id: String,
    },
    /// Delete a client made here; every sign-in it holds ends (its codes,
    /// access and refresh tokens stop working at once).
    Delete {
        /// The client id.
        id: String,
    },
}

/// What `oidc client create` takes: what `[[clients]]` takes, less the
/// extra claims.
#[derive(Args, Debug)]
pub(super) struct CreateArgs {
    /// The client id the app insists on (default: a random one).
    #[arg(long)]
    id: Option<String>,
    /// The name people see (default: the id).
    #[arg(long)]
    name: Option<String>,
    /// A redirect URI, matched exactly (http://127.0.0.1 and
    /// http://[::1] ones on any port); repeat for more.
    #[arg(long = "redirect-uri", value_name = "URI", required = true)]
    redirect_uris: Vec<String>,
    /// A public client (a browser or phone app): no secret, PKCE always
    /// required.
    #[arg(long)]
    public: bool,
    /// Only members of this group may use it; repeat for more (default:
    /// anyone signed in).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Only with a sign-in that used a second factor.
    #[arg(long)]
    two_factor: bool,
    /// Whether a confidential client must use PKCE.
    #[arg(long, value_name = "RULE", default_value = "optional", value_parser = ["optional", "required"])]
    pkce: String,
    /// How its ID tokens are signed.
    #[arg(long, value_name = "ALG", default_value = "RS256", value_parser = ["RS256", "ES256", "EdDSA"])]
    signing_alg: String,
    /// Where the start page's "my apps" links to.
    #[arg(long, value_name = "URL")]
    launch_url: Option<String>,
    /// It may have refresh tokens (asked for with `offline_access`).
    #[arg(long)]
    offline_access: bool,
    /// Name, e-mail and groups from userinfo only, not in the ID token.
    #[arg(long)]
    lean_id_token: bool,
    /// It may use the device authorization grant.
    #[arg(long)]
    device_grant: bool,
    /// The page the signed-out page loads in a hidden frame (Front-Channel
    /// Logout): https, or http to 127.0.0.1/localhost or a host of an
    /// http redirect URI.
    #[arg(long, value_name = "URI")]
    frontchannel_logout_uri: Option<String>,
    /// Whether that page is given `iss` and `sid` (default: true; give
    /// `=false` for an app that wants neither).
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    frontchannel_logout_session_required: bool,
    /// Where a logout token is POSTed when a session that signed in to it
    /// ends (Back-Channel Logout), by the front-channel URI's rules.
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// Whether the app needs `sid` in the logout token (default: true; it
    /// is always sent).
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    backchannel_logout_session_required: bool,
    /// Where `end_session` may send the browser after signing out, matched
    /// exactly (checked as redirect URIs are); repeat for more.
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
}

/// `oidc rotate-key`: new signing keys, sealed with the same secrets the
/// server uses (the configured ones, or the data directory's file).
pub(super) fn rotate_key(global: &Global) -> Result<(), CliError> {
    let config = config(global, &[])?;
    let backends = app::open_backends(&config, app::foreign_wal_for_command(&config.data_dir))?;
    let secrets = app::secret::signing_secrets(&config).map_err(AppError::from)?;
    let keys = crate::oidc::KeyRing::new(backends.oidc, &secrets, config.oidc.id_token_lifetime);
    let mut out = std::io::stdout().lock();
    for (alg, kid) in keys.rotate()? {
        writeln!(out, "new {} signing key: kid {kid}", alg.as_str())?;
    }
    writeln!(
        out,
        "the previous keys stay published for {} (oidc.id_token_lifetime) and a few minutes more",
        crate::config::format_duration(config.oidc.id_token_lifetime)
    )?;
    Ok(())
}

impl CreateArgs {
    fn new_client(self: Box<Self>) -> NewClient {
        NewClient {
            id: self.id.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
            redirect_uris: self.redirect_uris,
            public: self.public,
            groups: self.groups,
            two_factor: self.two_factor,
            pkce: if self.pkce == "required" {
                Pkce::Required
            } else {
                Pkce::Optional
            },
            signing_alg: Alg::parse(&self.signing_alg).unwrap_or(Alg::Rs256),
            offline_access: self.offline_access,
            claims_in_id_token: !self.lean_id_token,
            device_grant: self.device_grant,
            launch_url: self.launch_url,
            frontchannel_logout_uri: self.frontchannel_logout_uri,
            frontchannel_logout_session_required: self.frontchannel_logout_session_required,
            backchannel_logout_uri: self.backchannel_logout_uri,
            backchannel_logout_session_required: self.backchannel_logout_session_required,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
        }
    }
}

/// Makes the signing key of `alg` now (as a server does at start), so the
/// JWKS a relying party reads first has it; a key that cannot be made
/// here is made by the server at the first sign-in.
fn prepare_key(config: &Config, store: std::sync::Arc<dyn crate::oidc::Store>, alg: Alg) {
    let made = app::secret::signing_secrets(config)
        .map_err(|e| e.to_string())
        .and_then(|secrets| {
            crate::oidc::KeyRing::new(store, &secrets, config.oidc.id_token_lifetime)
                .prepare([alg])
                .map_err(|e| e.to_string())
        });
    if let Err(e) = made {
        eprintln!(
            "note: the {} signing key is made at the first sign-in ({e})",
            alg.as_str()
        );
    }
}

/// `oidc client ...`, on the configured database.
pub(super) fn client(global: &Global, cmd: ClientCommand) -> Result<(), CliError> {
    let config = config(global, &[])?;
    let backends = app::open_backends(&config, app::foreign_wal_for_command(&config.data_dir))?;
    let registry = Registry::new(&config.clients, backends.oidc.as_ref());
    // What changes is recorded in the audit log as the command line's.
    let accounts =
        Accounts::new(&backends.users, &*backends.store, &*backends.oidc).at(Origin::cli());
    let mut out = std::io::stdout().lock();
    let now = crate::clock::now();
    match cmd {
        ClientCommand::Create(args) => {
            let created = accounts.create_client(&registry, &args.new_client(), now)?;
            prepare_key(&config, backends.oidc.clone(), created.client.signing_alg);
            writeln!(out, "client id: {}", created.client.id)?;
            match created.secret {
                Some(secret) => {
                    writeln!(out, "client secret: {secret}")?;
                    writeln!(
                        out,
                        "copy the secret now: it is not shown again (only its hash is kept)"
                    )?;
                }
                None => writeln!(out, "a public client: no secret, PKCE required")?,
            }
        }
        ClientCommand::List => {
            let listing = registry.list()?;
            let kind = |public: bool| if public { "public" } else { "confidential" };
            for c in listing.configured {
                writeln!(
                    out,
                    "{:<32} {:<13} {:<26} {:<24} {}",
                    c.id,
                    kind(c.is_public()),
                    "gatehouse.toml",
                    c.name,
                    c.redirect_uris.join(" ")
                )?;
            }
            for s in listing.stored {
                let r = &s.row;
                writeln!(
                    out,
                    "{:<32} {:<13} {:<26} {:<24} {}",
                    r.id,
                    kind(r.secret_hash.is_none()),
                    if s.shadowed {
                        "made here (hidden by toml)"
                    } else {
                        "made here"
                    },
                    r.name,
                    r.redirect_uris.join(" ")
                )?;
            }
        }
        ClientCommand::RotateSecret { id } => {
            let secret = accounts.rotate_client_secret(&registry, &id, now)?;
            writeln!(out, "client id: {id}")?;
            writeln!(out, "client secret: {secret}")?;
            writeln!(
                out,
                "the old secret is refused from now on; copy this one now: it is not shown again"
            )?;
        }
        ClientCommand::Delete { id } => {
            accounts.delete_client(&registry, &id)?;
            writeln!(out, "deleted client {id}: every sign-in it held has ended")?;
        }
    }
    Ok(())
}
