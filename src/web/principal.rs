//! Who is asking: the one place a request's [`Principal`] is built (the
//! user, their groups, how they proved it), for every caller that needs an
//! identity: forward auth, the built-in proxy, the start page, the pages
//! that need a signed-in user. `auth/access.rs` then decides what they
//! may have.
//!
//! A principal comes from the session cookie; where no session is signed
//! in, the gate ([`of_request`]) also takes `Authorization: Bearer` with a
//! personal access token, and `Authorization: Basic` with a token (or,
//! where the app allows it, the account password) as the password. The
//! pages and the JSON API take the cookie only ([`of_session`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rouille::Request;

use super::error::Result;
use super::state::State;
use crate::accounts::credentials::Proved;
use crate::auth::apps::{App, BasicAuth};
use crate::identity::{Credential, Principal, User};
use crate::session::Session;
use crate::users::factors::Policy;

/// Who a gate request is from.
#[derive(Debug)]
pub(super) enum Asker {
    /// No one: no session signed in, and no credentials for gatehouse.
    Nobody,
    /// A signed-in session's user, or a token's, or a Basic password's.
    Someone(Principal),
    /// Credentials that prove no one (malformed, unknown, expired,
    /// revoked, a wrong password, a password where only a token will do):
    /// all alike, so the answer says nothing about which.
    Refused,
}

/// The longest `Authorization` value read: a Basic pair of a 64-byte name
/// and a long passphrase fits, base64 and all.
const MAX_AUTHORIZATION: usize = 1024;

/// Credentials offered for gatehouse, as read from `Authorization`.
enum Offered {
    /// None gatehouse reads (no header, another scheme, or Basic for an
    /// app with `basic_auth = "off"`).
    None,
    Bearer(String),
    Basic(String, String),
    /// A header gatehouse should read but cannot: two of them, too long,
    /// bad base64, no `:`, not UTF-8.
    Malformed,
}

/// The credentials of `request`, for `app`.
#[inline]
fn offered(request: &Request, app: Option<&App>) -> Offered {
    let mut values = request
        .headers()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Authorization"))
        .map(|(_, v)| v);
    let Some(value) = values.next() else {
        return Offered::None;
    };
    // Two of them could be read two ways (gatehouse one, the app the
    // other), whatever their schemes; an empty one is no credential at
    // all. Either is refused like a bad token, never passed over.
    if values.next().is_some() || value.trim().is_empty() {
        return Offered::Malformed;
    }
    let value = value.trim_matches(' ');
    // The scheme ends at the first space; a tab there (`Bearer\tght_...`)
    // is not HTTP's syntax, but it is still a token offered: refused.
    let end = value.find([' ', '\t']).unwrap_or(value.len());
    let (scheme, rest) = value.split_at(end);
    let bearer = scheme.eq_ignore_ascii_case("Bearer");
    let basic = scheme.eq_ignore_ascii_case("Basic");
    let off = app.is_some_and(|a| a.basic_auth == BasicAuth::Off);
    if !bearer && (!basic || off) {
        return Offered::None;
    }
    if rest.starts_with('\t') || value.len() > MAX_AUTHORIZATION {
        return Offered::Malformed;
    }
    let rest = rest.trim_start_matches(' ');
    if bearer {
        return Offered::Bearer(rest.to_owned());
    }
    let Some(pair) = STANDARD
        .decode(rest)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return Offered::Malformed;
    };
    match pair.split_once(':') {
        Some((name, secret)) => Offered::Basic(name.to_owned(), secret.to_owned()),
        None => Offered::Malformed,
    }
}

/// Who a gate request for `app` is from: the signed-in session's user if
/// there is one (the `Authorization` header is then the app's, and passed
/// on unread), else whoever its `Authorization` header proves.
///
/// # Errors
///
/// Store errors; a busy hasher.
#[inline]
pub(super) fn of_request(
    state: &State,
    request: &Request,
    session: &Session<'_>,
    app: Option<&App>,
    ip: std::net::IpAddr,
) -> Result<Asker> {
    if let Some(p) = of_session(state, session)? {
        return Ok(Asker::Someone(p));
    }
    let offered = offered(request, app);
    if matches!(offered, Offered::None) {
        return Ok(Asker::Nobody);
    }
    // Credentials came: what they prove (or not) is recorded with where
    // they came from.
    let accounts = state.accounts().at(crate::users::audit::Origin::request(
        ip,
        request.header("User-Agent"),
    ));
    let guard = state.guard();
    let now = crate::clock::now();
    let proved = match offered {
        Offered::None => return Ok(Asker::Nobody),
        Offered::Malformed => accounts.check_token(&guard, "", None, ip, now)?,
        Offered::Bearer(token) => accounts.check_token(&guard, &token, None, ip, now)?,
        Offered::Basic(name, secret) if secret.starts_with(crate::users::tokens::PREFIX) => {
            accounts.check_token(&guard, &secret, Some(&name), ip, now)?
        }
        Offered::Basic(name, password) => {
            // Never where every sign-in needs a second factor: a
            // password alone would be a way round it.
            if app.is_some_and(|a| a.basic_auth == BasicAuth::Password)
                && state.two_factor != Policy::Required
            {
                accounts.check_basic_password(&guard, &name, &password, ip, now)?
            } else {
                // Only a token will do here: refused, and counted, like
                // a bad one.
                accounts.check_token(&guard, "", Some(&name), ip, now)?
            }
        }
    };
    Ok(match proved {
        Proved::Token(token, user) => {
            Asker::Someone(principal_for(user, Credential::Token(token.apps)))
        }
        Proved::Password(user) => Asker::Someone(principal_for(user, Credential::Basic)),
        Proved::Nothing => Asker::Refused,
    })
}

/// The signed-in, enabled user of this session as a principal, if any.
/// Read on every request, so a change of rights applies at once: from the
/// row the store read together with the session when it can (one read),
/// else from the users table (a session in Redis); either way only a row
/// with the session's stamp is its user (see [`Session::user`]).
///
/// Under `two_factor = "required"`, a session that signed in without a
/// second factor (made before the policy was set, or by an older version)
/// is signed in nowhere: it signs in again, and sets one up first if it
/// must. Every page, the gate and the API ask here, so none lets it pass.
///
/// # Errors
///
/// Store errors.
#[inline]
pub(super) fn of_session(state: &State, session: &Session<'_>) -> Result<Option<Principal>> {
    let methods = session_methods(session);
    if state.two_factor == Policy::Required && !crate::identity::two_factors(&methods) {
        return Ok(None);
    }
    let user = session
        .user(|id| state.users.find_by_id(id))?
        .filter(|u| !u.disabled);
    Ok(user.map(|user| principal_for(user, Credential::Session(methods))))
}

/// The principal of `user`, proved by `credential`: their groups read in
/// the one place they are. `check-config --explain` builds its asker here
/// too.
#[inline]
pub fn principal_for(user: User, credential: Credential) -> Principal {
    Principal {
        groups: groups_of(&user),
        user,
        credential,
    }
}

/// The groups a user is in: the one place they are taken, for the access
/// decision, `Remote-Groups` and the signed identity header alike. They
/// come with the user's row (read with the session in one statement), so
/// a change applies on the user's next request.
#[inline]
fn groups_of(user: &User) -> Vec<String> {
    user.groups.clone()
}

/// How the session signed in (`pwd`, `otp`, ...); empty when anonymous
/// or signed in before methods were recorded.
#[inline]
pub(super) fn session_methods(session: &Session<'_>) -> Vec<String> {
    if session.user_id().is_none() {
        return Vec::new();
    }
    session
        .get::<Vec<String>>(crate::accounts::METHODS)
        .unwrap_or_default()
}
