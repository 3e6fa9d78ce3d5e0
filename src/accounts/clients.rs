//! OpenID Connect clients made, given a new secret and deleted by an
//! administrator (the admin page) or the box's owner (the command line),
//! each recorded in the audit log with the client's id (never its
//! secret). The rules are `oidc::registry`'s.

use crate::clock::Millis;
use crate::oidc::{Created, NewClient, Registry, RegistryError};

use super::*;

impl Accounts<'_> {
    /// Makes a client in `registry` (see [`Registry::create`]): the
    /// client and its secret, shown once by the caller.
    ///
    /// # Errors
    ///
    /// As [`Registry::create`].
    pub fn create_client(
        &self,
        registry: &Registry<'_>,
        new: &NewClient,
        now: Millis,
    ) -> Result<Created, RegistryError> {
        let created = registry.create(new, now)?;
        let kind = if created.client.is_public() {
            "public"
        } else {
            "confidential"
        };
        self.record(
            Kind::ClientCreated,
            None,
            format!("{} type={kind}", client_field(&created.client.id)),
        );
        Ok(created)
    }

    /// Gives client `id` of `registry` a new secret (see
    /// [`Registry::rotate_secret`]), returned to show once.
    ///
    /// # Errors
    ///
    /// As [`Registry::rotate_secret`].
    pub fn rotate_client_secret(
        &self,
        registry: &Registry<'_>,
        id: &str,
        now: Millis,
    ) -> Result<String, RegistryError> {
        let secret = registry.rotate_secret(id, now)?;
        self.record(
            Kind::ClientChanged,
            None,
            format!("{} change=secret", client_field(id)),
        );
        Ok(secret)
    }

    /// Deletes client `id` of `registry` and every grant it holds (see
    /// [`Registry::delete`]).
    ///
    /// # Errors
    ///
    /// As [`Registry::delete`].
    pub fn delete_client(&self, registry: &Registry<'_>, id: &str) -> Result<(), RegistryError> {
        registry.delete(id)?;
        self.record(Kind::ClientRevoked, None, client_field(id));
        Ok(())
    }
}

/// `client=ID` for the detail (see [`super::field`]).
fn client_field(id: &str) -> String {
    super::field("client", id)
}

#[cfg(test)]
mod tests {
    use super::client_field;

    #[test]
    fn a_client_id_that_is_not_one_plain_word_is_quoted() {
        assert_eq!(client_field("grafana"), "client=grafana");
        assert_eq!(
            client_field("https://wiki.test/app"),
            "client=https://wiki.test/app"
        );
        assert_eq!(
            client_field("x change=secret"),
            "client=\"x change=secret\""
        );
        assert_eq!(client_field("a=b"), "client=\"a=b\"");
        assert_eq!(client_field("say \"hi\""), "client=\"say \\\"hi\\\"\"");
        assert_eq!(client_field("ünï"), "client=\"ünï\"");
    }
}
