//! `oidc rotate-key`: new signing keys for the OpenID Provider.

use std::io::Write;

use clap::Subcommand;

use crate::app::{self, AppError};

use super::{CliError, Global, config};

#[derive(Subcommand, Debug)]
pub(super) enum OidcCommand {
    /// Make new signing keys (one per algorithm in use); the old ones stay
    /// in the JWKS until the ID tokens they signed have expired. Running
    /// servers switch within a minute.
    RotateKey,
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
