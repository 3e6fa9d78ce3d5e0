//! The directory (LDAP: OpenLDAP, Active Directory, Samba, lldap) as a
//! source of users. No HTTP types: `accounts` calls it for a sign-in, the
//! CLI for `gatehouse ldap test` and `ldap sync`.
//!
//! | file | job |
//! | --- | --- |
//! | `settings.rs` | the `[ldap]` settings, the presets per kind of directory, their checks |
//! | `escape.rs` | RFC 4515 filter and RFC 4514 DN escaping, filter templates, group names from DNs, ids as text |
//! | `client.rs` | the connection (TLS, timeouts, the cap on operations at once) and the operations: sign-in, look-up, sync's read |
//!
//! A user the directory vouches for becomes a local user with source
//! `ldap`, keyed by the entry's stable id (`users::source`), without a
//! local password: the directory checks it at every sign-in.

mod client;
pub mod escape;
pub mod settings;

pub use client::{Directory, DirectoryError, Entry, Found, Outcome};
pub use settings::{Kind, Lookup, Security, Settings};
