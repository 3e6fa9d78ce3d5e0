//! The clients an administrator makes (on `/admin/clients`, or with
//! `gatehouse oidc client ...`), beside those of `gatehouse.toml`:
//! [`Registry`] finds a client in either, makes one with a fresh secret
//! (shown once, by the caller), gives one a new secret, and deletes one
//! with everything it holds.
//!
//! - **The file wins.** A client of `gatehouse.toml` is found first, and
//!   its id cannot be made here; a stored client whose id the file gained
//!   later is hidden by it (and listed so).
//! - **Read when needed, never cached**: the store is asked by id each
//!   time a request names a client the file does not have (one read by
//!   primary key), so every instance on the database sees a new, rotated
//!   or deleted client at its next request, and a rotated secret is
//!   refused at once.
//! - **The same rules as the file**: a stored client is validated by
//!   [`ClientSpec::build`] (redirect URIs matched exactly, custom schemes
//!   and loopback ones on any port, nothing else relaxed; logout URIs
//!   `https`, or `http` only where the file allows it), with bounds on how
//!   many redirect URIs, post-logout redirect URIs and groups it lists.
//! - **Secrets**: 256 random bits, base64url; only their SHA-256 is
//!   stored, and checked as a configured `sha256:` secret is.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::clients::{Client, ClientError, ClientSpec, Clients, Pkce};
use super::keys::Alg;
use super::store::{ClientRow, Hash, Store};
use super::{OidcError, Provider};
use crate::clock::Millis;
use crate::db::DbError;

/// The longest client id (as for a client of the file).
pub const MAX_ID_LEN: usize = 255;

/// The most redirect URIs (and, apart, post-logout redirect URIs and
/// groups) a client made here lists: it is read on every request that
/// names it.
pub const MAX_LISTED: usize = 20;

/// The most bytes of URIs one client made here lists (its redirect URIs,
/// post-logout redirect URIs and logout URIs, all together): the list
/// page and every start page show them.
pub const MAX_URI_BYTES: usize = 4096;

/// The most clients made here: every start page reads them all (for the
/// launch links), and the admin page lists them.
pub const MAX_CLIENTS: usize = 100;

/// What an administrator asks for: what `[[clients]]` takes, less the
/// extra claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewClient {
    /// The `client_id`; empty: a random one.
    pub id: String,
    /// The name people see; empty: the id.
    pub name: String,
    /// Where the app may be sent back to, matched exactly (loopback ones
    /// on any port).
    pub redirect_uris: Vec<String>,
    /// No secret (a browser or native app that cannot keep one; PKCE is
    /// then always required).
    pub public: bool,
    /// The groups whose members may use it; empty: anyone signed in.
    pub groups: Vec<String>,
    /// Whether the sign-in must have used a second factor.
    pub two_factor: bool,
    /// Whether a confidential client must use PKCE.
    pub pkce: Pkce,
    /// How its ID tokens are signed.
    pub signing_alg: Alg,
    /// Whether it may have refresh tokens.
    pub offline_access: bool,
    /// Whether the profile claims go in the ID token too.
    pub claims_in_id_token: bool,
    /// Whether it may use the device authorization grant.
    pub device_grant: bool,
    /// Where "my apps" links to.
    pub launch_url: Option<String>,
    /// The page the signed-out page loads in a hidden frame (Front-Channel
    /// Logout): `https`, or `http` to loopback or a host of an `http`
    /// redirect URI.
    pub frontchannel_logout_uri: Option<String>,
    /// Whether that page is given `iss` and `sid` (the file's default: yes).
    pub frontchannel_logout_session_required: bool,
    /// Where a logout token is POSTed when a session ends (Back-Channel
    /// Logout), by the same rules as the front-channel URI.
    pub backchannel_logout_uri: Option<String>,
    /// Whether the client needs `sid` in the logout token (the file's
    /// default: yes; it is always sent).
    pub backchannel_logout_session_required: bool,
    /// Where `end_session` may send the browser afterwards, matched
    /// exactly (checked as redirect URIs are).
    pub post_logout_redirect_uris: Vec<String>,
}

impl Default for NewClient {
    /// The file's defaults: confidential, PKCE optional, RS256, claims in
    /// the ID token, no refresh tokens, no device grant, no logout URIs
    /// (`iss` and `sid` wanted when one is given).
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            redirect_uris: Vec::new(),
            public: false,
            groups: Vec::new(),
            two_factor: false,
            pkce: Pkce::Optional,
            signing_alg: Alg::Rs256,
            offline_access: false,
            claims_in_id_token: true,
            device_grant: false,
            launch_url: None,
            frontchannel_logout_uri: None,
            frontchannel_logout_session_required: true,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: true,
            post_logout_redirect_uris: Vec::new(),
        }
    }
}

/// A client just made, and its secret (`None` for a public client): the
/// one time the secret is seen.
pub struct Created {
    /// The client.
    pub client: Client,
    /// Its secret, to show once.
    pub secret: Option<String>,
}

impl fmt::Debug for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Created")
            .field("client", &self.client)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Every client: the file's, and the stored ones.
pub struct Listing<'a> {
    /// The clients of `gatehouse.toml`, in the order written (read only).
    pub configured: &'a [Client],
    /// The clients made here, by id.
    pub stored: Vec<Stored>,
}

/// A client made here, as listed.
#[derive(Debug)]
pub struct Stored {
    /// As stored.
    pub row: ClientRow,
    /// Whether a client of the file has its id (and is used instead).
    pub shadowed: bool,
}

/// Why a change to the stored clients did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A field breaks the rules (the file's, or the bounds above).
    #[error(transparent)]
    Invalid(#[from] ClientError),
    /// The id is a client of `gatehouse.toml`: it is changed there.
    #[error("the client id {0:?} is configured in gatehouse.toml")]
    Configured(String),
    /// A stored client has that id already.
    #[error("a client with the id {0:?} exists already")]
    Taken(String),
    /// No stored client has that id.
    #[error("there is no client {0:?} made here")]
    Unknown(String),
    /// A public client has no secret to rotate.
    #[error("client {0:?} is public: it has no secret")]
    Public(String),
    /// The store failed.
    #[error(transparent)]
    Oidc(#[from] OidcError),
}

/// The clients of the file and of the store, together.
#[derive(Clone, Copy)]
pub struct Registry<'a> {
    configured: &'a Clients,
    store: &'a dyn Store,
}

/// A new secret (256 random bits, base64url) and its SHA-256.
fn new_secret() -> (String, Hash) {
    let secret = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>());
    let hash = Sha256::digest(secret.as_bytes()).into();
    (secret, hash)
}

/// A random client id: 128 bits, as lower-case hex.
fn random_id() -> String {
    crate::crypto::random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A stored client as a [`Client`]; a row that no longer passes the
/// rules (edited by hand) is a fault of the store, not an unknown client.
fn built(row: &ClientRow) -> Result<Client, OidcError> {
    ClientSpec::from_row(row)
        .build()
        .map_err(|e| OidcError::Db(DbError::Invalid(format!("stored OpenID Connect {e}"))))
}

impl<'a> Registry<'a> {
    /// The clients of `configured` (the file) and of `store`.
    pub fn new(configured: &'a Clients, store: &'a dyn Store) -> Self {
        Self { configured, store }
    }

    /// The client with this id (compared exactly): the file's, else the
    /// stored one, read now.
    ///
    /// # Errors
    ///
    /// Database failures, and a stored row that breaks the rules.
    pub fn find(&self, id: &str) -> Result<Option<Cow<'a, Client>>, OidcError> {
        if let Some(c) = self.configured.find(id) {
            return Ok(Some(Cow::Borrowed(c)));
        }
        // No id can be this: no read for it.
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Ok(None);
        }
        match self.store.client_find(id)? {
            Some(row) => Ok(Some(Cow::Owned(built(&row)?))),
            None => Ok(None),
        }
    }

    /// Every client: the file's, and the stored ones (those whose id the
    /// file has marked so).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn list(&self) -> Result<Listing<'a>, OidcError> {
        let stored = self
            .store
            .client_list()?
            .into_iter()
            .map(|row| Stored {
                shadowed: self.configured.find(&row.id).is_some(),
                row,
            })
            .collect();
        Ok(Listing {
            configured: self.configured.all(),
            stored,
        })
    }

    /// A stored client, as listed (`None`: no client of this id was made
    /// here).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn find_stored(&self, id: &str) -> Result<Option<Stored>, OidcError> {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Ok(None);
        }
        Ok(self.store.client_find(id)?.map(|row| Stored {
            shadowed: self.configured.find(&row.id).is_some(),
            row,
        }))
    }

    /// Every client in use: the file's, then the stored ones the file
    /// does not hide (a stored one that no longer passes the rules is
    /// left out, and logged).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn all(&self) -> Result<Vec<Cow<'a, Client>>, OidcError> {
        let mut out: Vec<Cow<'a, Client>> =
            self.configured.all().iter().map(Cow::Borrowed).collect();
        for row in self.store.client_list()? {
            if self.configured.find(&row.id).is_some() {
                continue;
            }
            match built(&row) {
                Ok(c) => out.push(Cow::Owned(c)),
                Err(e) => crate::logging::line(&format!("oidc client left out: {e}")),
            }
        }
        Ok(out)
    }

    /// Makes a client from `new`, with a fresh secret unless it is public.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Invalid`] naming the field that breaks the rules,
    /// [`RegistryError::Configured`] for an id of the file,
    /// [`RegistryError::Taken`] for one made here already; database
    /// failures.
    pub fn create(&self, new: &NewClient, now: Millis) -> Result<Created, RegistryError> {
        let id = if new.id.is_empty() {
            random_id()
        } else {
            new.id.clone()
        };
        let invalid = |field: &'static str, reason: String| {
            RegistryError::Invalid(ClientError {
                client: id.clone(),
                field,
                reason,
            })
        };
        if id.trim() != id {
            return Err(invalid(
                "id",
                "must not start or end with spaces (an app would never send them)".into(),
            ));
        }
        // Characters that show as nothing, or turn the text around: an id
        // or name that looks like another client's (`Grafana` and
        // `Grafana` with a zero-width space) on the page and in the
        // command line's list.
        for (field, text) in [("id", &id), ("name", &new.name)] {
            if text.chars().any(crate::logging::is_format) {
                return Err(invalid(
                    field,
                    "must not contain invisible or direction-changing characters".into(),
                ));
            }
        }
        if new
            .groups
            .iter()
            .any(|g| g.chars().any(crate::logging::is_format))
        {
            return Err(invalid(
                "groups",
                "must not contain invisible or direction-changing characters".into(),
            ));
        }
        if self.configured.find(&id).is_some() {
            return Err(RegistryError::Configured(id));
        }
        // Every URI counts: the field named is the one that takes the
        // total over.
        let mut bytes = 0usize;
        for (field, uris) in [
            (
                "redirect_uris",
                new.redirect_uris.iter().collect::<Vec<_>>(),
            ),
            (
                "post_logout_redirect_uris",
                new.post_logout_redirect_uris.iter().collect(),
            ),
            (
                "frontchannel_logout_uri",
                new.frontchannel_logout_uri.iter().collect(),
            ),
            (
                "backchannel_logout_uri",
                new.backchannel_logout_uri.iter().collect(),
            ),
        ] {
            bytes = bytes.saturating_add(uris.iter().map(|u| u.len()).sum::<usize>());
            if bytes > MAX_URI_BYTES {
                return Err(invalid(
                    field,
                    format!(
                        "bring the client's URIs (redirect, post-logout redirect and logout URIs) to more than {MAX_URI_BYTES} bytes together"
                    ),
                ));
            }
        }
        if self.store.client_list()?.len() >= MAX_CLIENTS {
            return Err(invalid(
                "id",
                format!(
                    "cannot be made: there are {MAX_CLIENTS} clients made here already (delete one, or configure clients in gatehouse.toml)"
                ),
            ));
        }
        if new.redirect_uris.len() > MAX_LISTED {
            return Err(invalid(
                "redirect_uris",
                format!("lists more than {MAX_LISTED} URIs"),
            ));
        }
        if new.post_logout_redirect_uris.len() > MAX_LISTED {
            return Err(invalid(
                "post_logout_redirect_uris",
                format!("lists more than {MAX_LISTED} URIs"),
            ));
        }
        if new.groups.len() > MAX_LISTED {
            return Err(invalid(
                "groups",
                format!("lists more than {MAX_LISTED} groups"),
            ));
        }
        let secret = (!new.public).then(new_secret);
        let row = ClientRow {
            id: id.clone(),
            // An id longer than a name may be names the client by its
            // first 100 characters.
            name: if new.name.is_empty() {
                id.chars().take(100).collect()
            } else {
                new.name.clone()
            },
            secret_hash: secret.as_ref().map(|(_, h)| *h),
            redirect_uris: new.redirect_uris.clone(),
            groups: new.groups.clone(),
            two_factor: new.two_factor,
            pkce_required: new.public || new.pkce == Pkce::Required,
            signing_alg: new.signing_alg.as_str().to_owned(),
            offline_access: new.offline_access,
            claims_in_id_token: new.claims_in_id_token,
            device_grant: new.device_grant,
            launch_url: new.launch_url.clone(),
            frontchannel_logout_uri: new.frontchannel_logout_uri.clone(),
            frontchannel_logout_session_required: new.frontchannel_logout_session_required,
            backchannel_logout_uri: new.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: new.backchannel_logout_session_required,
            post_logout_redirect_uris: new.post_logout_redirect_uris.clone(),
            created_at: now,
            secret_set_at: secret.as_ref().map(|_| now),
        };
        let client = ClientSpec::from_row(&row).build()?;
        if !self.store.client_create(&row)? {
            return Err(RegistryError::Taken(id));
        }
        Ok(Created {
            client,
            secret: secret.map(|(s, _)| s),
        })
    }

    /// Gives a stored confidential client a new secret, and returns it;
    /// the old one is refused from the next request on, on every instance.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Configured`] for a client of the file,
    /// [`RegistryError::Unknown`] for no such client,
    /// [`RegistryError::Public`] for a public one; database failures.
    pub fn rotate_secret(&self, id: &str, now: Millis) -> Result<String, RegistryError> {
        if self.configured.find(id).is_some() {
            return Err(RegistryError::Configured(id.to_owned()));
        }
        let (secret, hash) = new_secret();
        if self.store.client_set_secret(id, &hash, now)? {
            return Ok(secret);
        }
        Err(match self.store.client_find(id)? {
            Some(_) => RegistryError::Public(id.to_owned()),
            None => RegistryError::Unknown(id.to_owned()),
        })
    }

    /// Deletes a stored client, and with it every grant it was given: its
    /// codes, access and refresh tokens and device authorizations stop
    /// working at once. A stored client the file hides goes alone (the
    /// grants under its id are the configured client's).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Configured`] for a client only the file has,
    /// [`RegistryError::Unknown`] for no such client; database failures.
    pub fn delete(&self, id: &str) -> Result<(), RegistryError> {
        let configured = self.configured.find(id).is_some();
        if self.store.client_delete(id, !configured)? {
            return Ok(());
        }
        Err(if configured {
            RegistryError::Configured(id.to_owned())
        } else {
            RegistryError::Unknown(id.to_owned())
        })
    }
}

impl Provider {
    /// The clients of the file and of the store.
    pub fn registry(&self) -> Registry<'_> {
        Registry::new(self.clients(), self.store())
    }

    /// The client with this id: the file's, else one made by an
    /// administrator (read from the store now).
    ///
    /// # Errors
    ///
    /// Database failures.
    pub fn client(&self, id: &str) -> Result<Option<Cow<'_, Client>>, OidcError> {
        self.registry().find(id)
    }

    /// Makes the signing key of `client`'s algorithm now (as the file's
    /// are at start), so the JWKS a relying party reads first already has
    /// it: called once a client is made ([`Registry::create`]). A key that
    /// cannot be made now is made at the first sign-in (and the failure
    /// logged).
    pub fn prepare_client_key(&self, client: &Client) {
        if let Err(e) = self.keys().prepare([client.signing_alg]) {
            crate::logging::line(&format!(
                "oidc key alg={} for client={} not made yet: {e}",
                client.signing_alg.as_str(),
                crate::logging::quote(&client.id)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::SqliteOidc;
    use crate::oidc::store::conformance::client_row;

    fn configured() -> Clients {
        #[derive(serde::Deserialize)]
        struct File {
            clients: Vec<ClientSpec>,
        }
        let file: File = toml::from_str(
            "[[clients]]\nid = \"grafana\"\nsecret = \"a-long-random-client-secret-0123456789\"\n\
             redirect_uris = [\"https://grafana.lan/cb\"]\n",
        )
        .expect("toml");
        Clients::new(
            file.clients
                .iter()
                .map(|s| s.build().expect("valid"))
                .collect(),
        )
        .expect("clients")
    }

    fn store() -> (tempfile::TempDir, SqliteOidc) {
        let dir = tempfile::tempdir().expect("dir");
        let pool = crate::db::open(&dir.path().join("g.db"), 2).expect("open");
        (dir, SqliteOidc(pool))
    }

    fn new(id: &str) -> NewClient {
        NewClient {
            id: id.to_owned(),
            redirect_uris: vec!["https://app.lan/cb".into()],
            ..NewClient::default()
        }
    }

    #[test]
    fn a_made_client_is_found_beside_the_files_and_its_secret_is_checked_hashed() {
        let (_dir, store) = store();
        let file = configured();
        let r = Registry::new(&file, &store);
        let made = r.create(&new("app"), 1000).expect("made");
        let shown = format!("{made:?}");
        let secret = made.secret.expect("confidential");
        assert_eq!(secret.len(), 43);
        assert!(!shown.contains(&secret), "{shown}");
        let found = r.find("app").expect("find").expect("there");
        assert!(matches!(found, Cow::Owned(_)));
        assert!(found.verify_secret(&secret));
        assert!(!found.verify_secret(&secret[..42]));
        assert_eq!(found.name, "app", "the name defaults to the id");
        assert_eq!(found.signing_alg, Alg::Rs256);
        assert!(!found.pkce_required());
        let stored = store.client_find("app").expect("find").expect("row");
        assert_eq!(
            stored.secret_hash,
            Some(Sha256::digest(secret.as_bytes()).into())
        );
        assert!(matches!(
            r.find("grafana").expect("find"),
            Some(Cow::Borrowed(_))
        ));
        assert!(r.find("App").expect("find").is_none());
        assert!(r.find(&"x".repeat(300)).expect("find").is_none());
    }

    #[test]
    fn at_most_max_clients_are_made_and_a_long_id_names_its_client() {
        let (_dir, store) = store();
        let file = configured();
        let r = Registry::new(&file, &store);
        let long = "x".repeat(MAX_ID_LEN);
        let made = r.create(&new(&long), 1).expect("a 255-byte id");
        assert_eq!(made.client.name.chars().count(), 100);
        for i in 1..MAX_CLIENTS {
            r.create(&new(&format!("c{i}")), 1).expect("room");
        }
        match r.create(&new("one-more"), 1) {
            Err(RegistryError::Invalid(e)) => assert_eq!(e.field, "id"),
            other => panic!("{other:?}"),
        }
        assert!(r.find_stored("one-more").expect("find").is_none());
        r.delete("c1").expect("delete");
        r.create(&new("one-more"), 1).expect("room again");
    }

    #[test]
    fn an_empty_id_gets_a_random_one_and_a_public_client_no_secret() {
        let (_dir, store) = store();
        let file = configured();
        let r = Registry::new(&file, &store);
        let a = r.create(&new(""), 1).expect("a");
        let b = r
            .create(
                &NewClient {
                    public: true,
                    pkce: Pkce::Optional,
                    ..new("")
                },
                1,
            )
            .expect("b");
        assert_eq!(a.client.id.len(), 32);
        assert_ne!(a.client.id, b.client.id);
        assert!(b.secret.is_none());
        let b = r.find(&b.client.id).expect("find").expect("there");
        assert!(
            b.is_public() && b.pkce_required(),
            "a public client needs PKCE"
        );
        assert!(!b.verify_secret(""));
    }

    #[test]
    fn ids_of_the_file_and_ids_made_before_are_refused() {
        let (_dir, store) = store();
        let file = configured();
        let r = Registry::new(&file, &store);
        assert!(matches!(
            r.create(&new("grafana"), 1),
            Err(RegistryError::Configured(_))
        ));
        r.create(&new("app"), 1).expect("first");
        assert!(matches!(
            r.create(&new("app"), 2),
            Err(RegistryError::Taken(_))
        ));
        assert_eq!(store.client_list().expect("list").len(), 1);
    }

    #[test]
    fn every_field_is_held_to_the_files_rules_and_nothing_is_stored_when_one_breaks() {
        let (_dir, store) = store();
        let file = configured();
        let r = Registry::new(&file, &store);
        let cases: Vec<(NewClient, &str)> = vec![
            (
                NewClient {
                    redirect_uris: vec![],
                    ..new("a")
                },
                "redirect_uris",
            ),
            (
                NewClient {
                    redirect_uris: vec!["https://app.lan/cb*".into()],
                    ..new("a")
                },
                "redirect_uris",
            ),
            (
                NewClient {
                    redirect_uris: vec!["javascript:alert(1)".into()],
                    ..new("a")
                },
                "redirect_uris",
            ),
            (
                NewClient {
                    redirect_uris: vec!["https://app.lan/cb#x".into()],
                    ..new("a")
                },
                "redirect_uris",
            ),
            (
                NewClient {
                    redirect_uris: vec!["https://x/".into(); MAX_LISTED + 1],
                    ..new("a")
                },
                "redirect_uris",
            ),
            (
                NewClient {
                    redirect_uris: vec![format!("https://x/{}", "a".repeat(1100)); 4],
                    ..new("a")
                },
                "redirect_uris",
            ),
            (
                NewClient {
                    redirect_uris: vec!["https://app.test/\u{e9}".into()],
                    ..new("a")
                },
                "redirect_uris",
            ),
            (new("Grafana\u{200b}"), "id"),
            (new("Graf\u{202e}ana"), "id"),
            (
                NewClient {
                    name: "Grafana\u{2060}".into(),
                    ..new("a")
                },
                "name",
            ),
            (
                NewClient {
                    groups: vec!["ad\u{200d}mins".into()],
                    ..new("a")
                },
                "groups",
            ),
            (
                NewClient {
                    groups: vec!["g".into(); MAX_LISTED + 1],
                    ..new("a")
                },
                "groups",
            ),
            (
                NewClient {
                    groups: vec![String::new()],
                    ..new("a")
                },
                "groups",
            ),
            (new(&"x".repeat(256)), "id"),
            (new("a\nb"), "id"),
            (new(" a"), "id"),
            (
                NewClient {
                    name: "n".repeat(101),
                    ..new("a")
                },
                "name",
            ),
            (
                NewClient {
                    launch_url: Some("ftp://x/".into()),
                    ..new("a")
                },
                "launch_url",
            ),
            (
                NewClient {
                    frontchannel_logout_uri: Some("https://app.lan/logout#x".into()),
                    ..new("a")
                },
                "frontchannel_logout_uri",
            ),
            (
                NewClient {
                    frontchannel_logout_uri: Some("app.native:/logout".into()),
                    ..new("a")
                },
                "frontchannel_logout_uri",
            ),
            (
                NewClient {
                    backchannel_logout_uri: Some("http://app.lan/logout".into()),
                    ..new("a")
                },
                "backchannel_logout_uri",
            ),
            (
                NewClient {
                    post_logout_redirect_uris: vec!["https://app.lan/bye#x".into()],
                    ..new("a")
                },
                "post_logout_redirect_uris",
            ),
            (
                NewClient {
                    post_logout_redirect_uris: vec!["https://x/".into(); MAX_LISTED + 1],
                    ..new("a")
                },
                "post_logout_redirect_uris",
            ),
            // Every URI counts toward MAX_URI_BYTES; the one that takes
            // the total over is named.
            (
                NewClient {
                    redirect_uris: vec![format!("https://x/{}", "a".repeat(1000)); 4],
                    post_logout_redirect_uris: vec![format!("https://x/{}", "a".repeat(100))],
                    ..new("a")
                },
                "post_logout_redirect_uris",
            ),
            (
                NewClient {
                    redirect_uris: vec![format!("https://x/{}", "a".repeat(1000)); 4],
                    frontchannel_logout_uri: Some(format!("https://x/{}", "a".repeat(100))),
                    ..new("a")
                },
                "frontchannel_logout_uri",
            ),
            (
                NewClient {
                    redirect_uris: vec![format!("https://x/{}", "a".repeat(1000)); 4],
                    backchannel_logout_uri: Some(format!("https://x/{}", "a".repeat(100))),
                    ..new("a")
                },
                "backchannel_logout_uri",
            ),
        ];
        for (bad, field) in cases {
            match r.create(&bad, 1) {
                Err(RegistryError::Invalid(e)) => assert_eq!(e.field, field, "{e}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!(store.client_list().expect("list").is_empty());
        // A loopback redirect with any port, a custom scheme: as the file.
        let native = r
            .create(
                &NewClient {
                    redirect_uris: vec![
                        "http://127.0.0.1/cb".into(),
                        "app.immich:///oauth-callback".into(),
                    ],
                    ..new("native")
                },
                1,
            )
            .expect("made");
        assert!(
            native
                .client
                .redirect_uri("http://127.0.0.1:51234/cb")
                .is_some()
        );
        assert!(
            native
                .client
                .redirect_uri("http://127.0.0.1:51234/cb/x")
                .is_none()
        );
        assert!(
            native
                .client
                .redirect_uri("app.immich:///oauth-callback/")
                .is_none()
        );
    }

    #[test]
    fn a_made_clients_logout_settings_are_kept_and_used_as_the_files_are() {
        let (_dir, store) = store();
        let file = configured();
        let r = Registry::new(&file, &store);
        let made = r
            .create(
                &NewClient {
                    redirect_uris: vec!["http://app.lan/cb".into()],
                    frontchannel_logout_uri: Some("http://app.lan/fc".into()),
                    frontchannel_logout_session_required: false,
                    backchannel_logout_uri: Some("https://app.lan/bc".into()),
                    post_logout_redirect_uris: vec![
                        "https://app.lan/bye".into(),
                        "app.native:/bye".into(),
                    ],
                    ..new("app")
                },
                1,
            )
            .expect("http to a host of an http redirect URI, as the file");
        let found = r.find("app").expect("find").expect("there");
        assert_eq!(
            found.frontchannel_logout_uri,
            made.client.frontchannel_logout_uri
        );
        assert_eq!(
            found.frontchannel_logout_uri.as_deref(),
            Some("http://app.lan/fc")
        );
        assert!(!found.frontchannel_logout_session_required);
        assert_eq!(
            found.backchannel_logout_uri.as_deref(),
            Some("https://app.lan/bc")
        );
        assert!(found.backchannel_logout_session_required);
        assert!(found.post_logout_redirect_uri("app.native:/bye"));
        assert!(!found.post_logout_redirect_uri("https://app.lan/bye/"));
        // None given: none kept, `iss` and `sid` wanted as the file's are.
        let plain = r.create(&new("plain"), 1).expect("made").client;
        assert!(plain.frontchannel_logout_uri.is_none() && plain.backchannel_logout_uri.is_none());
        assert!(plain.post_logout_redirect_uris.is_empty());
        assert!(plain.frontchannel_logout_session_required);
    }

    #[test]
    fn a_rotated_secret_replaces_the_old_one_at_once() {
        let (_dir, store) = store();
        let file = configured();
        let r = Registry::new(&file, &store);
        let old = r.create(&new("app"), 1).expect("made").secret.expect("s");
        let fresh = r.rotate_secret("app", 2).expect("rotated");
        let found = r.find("app").expect("find").expect("there");
        assert!(!found.verify_secret(&old));
        assert!(found.verify_secret(&fresh));
        assert!(matches!(
            r.rotate_secret("grafana", 3),
            Err(RegistryError::Configured(_))
        ));
        assert!(matches!(
            r.rotate_secret("nobody", 3),
            Err(RegistryError::Unknown(_))
        ));
        r.create(
            &NewClient {
                public: true,
                ..new("spa")
            },
            1,
        )
        .expect("public");
        assert!(matches!(
            r.rotate_secret("spa", 3),
            Err(RegistryError::Public(_))
        ));
        assert!(r.find("spa").expect("find").expect("there").is_public());
    }

    #[test]
    fn a_stored_client_the_file_gained_is_hidden_listed_and_deleted_alone() {
        let (_dir, store) = store();
        // Made before the file had the id.
        assert!(
            store
                .client_create(&client_row("grafana", Some([1; 32]), 1))
                .expect("row")
        );
        assert!(
            store
                .client_create(&client_row("app", Some([2; 32]), 1))
                .expect("row")
        );
        let file = configured();
        let r = Registry::new(&file, &store);
        let found = r.find("grafana").expect("find").expect("there");
        assert!(matches!(found, Cow::Borrowed(_)), "the file wins");
        let listing = r.list().expect("list");
        assert_eq!(listing.configured.len(), 1);
        let flags: Vec<(&str, bool)> = listing
            .stored
            .iter()
            .map(|s| (s.row.id.as_str(), s.shadowed))
            .collect();
        assert_eq!(flags, [("app", false), ("grafana", true)]);
        let ids: Vec<String> = r.all().expect("all").iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids, ["grafana", "app"], "the hidden row is not used");
        r.delete("grafana").expect("the stored row goes");
        assert!(matches!(
            r.delete("grafana"),
            Err(RegistryError::Configured(_))
        ));
        r.delete("app").expect("deleted");
        assert!(matches!(r.delete("app"), Err(RegistryError::Unknown(_))));
        assert!(r.find("app").expect("find").is_none());
    }

    #[test]
    fn a_row_edited_out_of_the_rules_is_a_store_fault_not_a_client() {
        let (_dir, store) = store();
        let mut row = client_row("app", Some([1; 32]), 1);
        row.redirect_uris = vec!["javascript:alert(1)".into()];
        assert!(store.client_create(&row).expect("row"));
        let file = configured();
        let r = Registry::new(&file, &store);
        assert!(matches!(
            r.find("app"),
            Err(OidcError::Db(DbError::Invalid(_)))
        ));
        // Still listed, so it can be deleted; not in use.
        assert_eq!(r.list().expect("list").stored.len(), 1);
        let in_use: Vec<String> = r.all().expect("all").iter().map(|c| c.id.clone()).collect();
        assert_eq!(in_use, ["grafana"]);
        r.delete("app").expect("deleted");
    }
}
