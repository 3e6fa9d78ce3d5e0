//! Every key gatehouse keeps in a session's data, in one place. They all
//! sit under [`RESERVED_PREFIX`], which `PATCH /api/session/data` refuses:
//! a script of the app must not be able to write itself a sign-in, a
//! fresh password confirmation or a ceremony's state.

/// Session data keys under this prefix are gatehouse's; the API refuses them.
pub const RESERVED_PREFIX: &str = "gatehouse:";

/// A sign-in whose password was right, waiting for its second step. The
/// session stays anonymous meanwhile, so every page and gate treats it as
/// signed out.
pub const PENDING: &str = "gatehouse:pending";

/// How the session signed in (`pwd`, `otp`, `passkey`, `recovery`), in
/// order.
pub const METHODS: &str = "gatehouse:amr";

/// When this session's user last gave their password (or a passkey), in
/// milliseconds: what `admin_reauth` reads. Set by a sign-in and by the
/// admin page's "confirm your password", never by a code alone (a step-up
/// with a code proves the device, not the person at the keyboard now).
pub const REAUTH_AT: &str = "gatehouse:reauth_at";

/// The sealed seed of an authenticator being set up, until a code
/// confirms it.
pub const TOTP_ENROL: &str = "gatehouse:totp_enrol";

/// The passkey ceremony in progress for a session that exists anyway (a
/// second step, a set-up, the account page): its purpose and the opaque
/// state, good for one try.
pub const PASSKEY_STATE: &str = "gatehouse:passkey";

/// The session's `sid` for OpenID Connect: the one name every client it
/// signed in to knows it by (in their ID tokens and logout calls), random
/// and never the session id. Its grants end when the session does.
pub const OIDC_SID: &str = "gatehouse:oidc_sid";

/// An OpenID Connect request that asked for a fresh sign-in
/// (`prompt=login`, `max_age`): when it first asked, and its fingerprint,
/// kept across the round trip to the sign-in so a sign-in since then, and
/// only one, answers it.
pub const OIDC_FRESH: &str = "gatehouse:oidc_fresh";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_reserved_and_none_repeats() {
        let keys = [
            PENDING,
            METHODS,
            REAUTH_AT,
            TOTP_ENROL,
            PASSKEY_STATE,
            OIDC_SID,
        ];
        for key in keys {
            assert!(key.starts_with(RESERVED_PREFIX), "{key}");
            assert!(key.len() > RESERVED_PREFIX.len(), "{key}");
        }
        let mut unique = keys.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
    }
}
