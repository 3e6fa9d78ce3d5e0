//! Rules between settings, checked once every value parsed on its own:
//! durations that must not be zero, lifetimes that must not be shorter
//! than idle timeouts, HTTPS that some settings need, the certificate
//! pair. Each refusal names the setting to change.

use std::path::{Path, PathBuf};

use crate::session::SameSite;
use crate::tls::TlsFiles;

use super::{Config, ConfigError};

fn invalid(setting: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_owned(),
        origin: "the combined settings".to_owned(),
        reason: reason.to_owned(),
    }
}

/// The certificate files: `tls_cert` and `tls_key`, both or neither; with
/// neither, the pair `gatehouse tls self-signed` writes, when it is there.
pub(super) fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    data_dir: &Path,
) -> Result<Option<TlsFiles>, ConfigError> {
    let missing = |setting: &str, other: &str| invalid(setting, &format!("is needed with {other}"));
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (Some(_), None) => Err(missing("tls_key", "tls_cert")),
        (None, Some(_)) => Err(missing("tls_cert", "tls_key")),
        (None, None) => {
            let made = TlsFiles::in_data_dir(data_dir);
            Ok((made.cert.exists() || made.key.exists()).then_some(made))
        }
    }
}

impl Config {
    /// The rules between settings.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let session = &self.session;
        for (name, d) in [
            ("idle_timeout", session.idle_timeout),
            ("absolute_timeout", session.absolute_timeout),
            ("remember_idle_timeout", session.remember_idle_timeout),
            (
                "remember_absolute_timeout",
                session.remember_absolute_timeout,
            ),
            ("reap_interval", self.reap_interval),
            ("audit_retention", self.audit_retention),
            ("login_window", self.login.window),
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("keepalive_timeout", self.keepalive_timeout),
            // 0s would switch lockouts off, or time out every proxied request.
            ("login_lockout", self.login.lockout),
            ("login_max_lockout", self.login.max_lockout),
            ("proxy_timeout", self.proxy_timeout),
            ("oidc.code_lifetime", self.oidc.code_lifetime),
            (
                "oidc.access_token_lifetime",
                self.oidc.access_token_lifetime,
            ),
            (
                "oidc.refresh_token_lifetime",
                self.oidc.refresh_token_lifetime,
            ),
            ("oidc.id_token_lifetime", self.oidc.id_token_lifetime),
        ] {
            if d.is_zero() {
                return Err(invalid(name, "must be longer than 0"));
            }
        }
        if session.absolute_timeout < session.idle_timeout {
            return Err(invalid(
                "absolute_timeout",
                "must not be shorter than idle_timeout",
            ));
        }
        if session.remember_absolute_timeout < session.remember_idle_timeout {
            return Err(invalid(
                "remember_absolute_timeout",
                "must not be shorter than remember_idle_timeout",
            ));
        }
        if self.login.max_lockout < self.login.lockout {
            return Err(invalid(
                "login_max_lockout",
                "must not be shorter than login_lockout",
            ));
        }
        if self.redirect_http.is_some() && self.tls.is_none() {
            return Err(invalid(
                "redirect_http",
                "needs HTTPS (tls_cert and tls_key, or `gatehouse tls self-signed`)",
            ));
        }
        if self
            .redirect_http
            .is_some_and(|r| r == self.listen && r.port() != 0)
        {
            return Err(invalid("redirect_http", "must differ from listen"));
        }
        if self.oidc.code_lifetime > crate::oidc::MAX_CODE_LIFETIME {
            // A code crosses the browser: the shorter it lives, the less a
            // stolen one is worth.
            return Err(invalid(
                "oidc.code_lifetime",
                "must be at most 60s (codes are redeemed within seconds)",
            ));
        }
        if !self.clients.all().is_empty() && self.public_url.is_none() {
            return Err(invalid(
                "public_url",
                "is needed with [[clients]]: it is the OpenID issuer every token names",
            ));
        }
        // A CA file where no TLS is used would read as if the connection
        // were protected; it is not, so say so instead of ignoring it.
        if self.database_ca_file.is_some() && !self.database.uses_tls() {
            return Err(invalid(
                "database_ca_file",
                "is set, but the database is not reached over TLS (add `sslmode=verify-full` \
                 to the postgres:// URL)",
            ));
        }
        if self.session_store_ca_file.is_some() && !self.session_store.uses_tls() {
            return Err(invalid(
                "session_store_ca_file",
                "is set, but the session store is not reached over TLS (use a rediss:// URL)",
            ));
        }
        if session.cookie.same_site == SameSite::None && !session.cookie.force_secure {
            return Err(invalid(
                "cookie.same_site",
                "`none` needs cookie.secure = \"always\" (browsers drop such cookies otherwise)",
            ));
        }
        Ok(())
    }
}
