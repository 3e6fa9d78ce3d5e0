//! The `/account` page: the signed-in user's sessions, the password form
//! and the second-factor section, rendered (again, with a message, after a
//! refused change).

use rouille::{Request, Response};

use crate::accounts::two_factors;
use crate::auth::csrf;
use crate::auth::proxy::Client;
use crate::clock;
use crate::session::{Session, SessionKey};
use crate::users::User;
use crate::web::device::session_rows;
use crate::web::error::Result;
use crate::web::paging::{page_param, paged};
use crate::web::principal::session_methods;
use crate::web::respond::{html, notice};
use crate::web::signed_in::{signed_in, viewer};
use crate::web::state::{State, with_session};
use crate::web::views::{
    self, AccountView, AppRow, NamesView, PasskeyRow, SigninLinkRow, SigninLinksView, TokensView,
    TwoFactorView,
};

pub(super) fn render(
    state: &State,
    session: &Session<'_>,
    user: &User,
    key: &SessionKey,
    page: usize,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response> {
    render_with_token(state, session, user, key, (page, notice, error), None)
}

/// The page, with a token just made shown once.
pub(super) fn render_with_token(
    state: &State,
    session: &Session<'_>,
    user: &User,
    key: &SessionKey,
    messages: (usize, Option<&str>, Option<&str>),
    made: Option<String>,
) -> Result<Response> {
    render_with_made(state, session, user, key, messages, made, None)
}

/// The page, with a token or a sign-in link (its code, its address, its
/// expiry) just made shown once.
pub(super) fn render_with_made(
    state: &State,
    session: &Session<'_>,
    user: &User,
    key: &SessionKey,
    (page, notice, error): (usize, Option<&str>, Option<&str>),
    made: Option<String>,
    made_link: Option<(String, String, clock::Millis)>,
) -> Result<Response> {
    let now = clock::now();
    let tokens = TokensView {
        tokens: state.users.tokens().of_user(user.id)?,
        apps: state.apps.all().iter().map(|a| a.name.clone()).collect(),
        made,
    };
    let signin_links = SigninLinksView {
        links: state
            .users
            .signin_links(user.id)?
            .into_iter()
            .map(|link| SigninLinkRow {
                device: link
                    .used_at
                    .map(|_| crate::web::device::device(link.used_agent.as_deref())),
                link,
            })
            .collect(),
        made: made_link,
    };
    let factors = state.users.factors();
    let summary = factors.summary(user.id)?;
    let two_factor = TwoFactorView {
        totp: summary.totp,
        recovery_left: summary.recovery_left,
        passkeys: factors
            .passkeys(user.id)?
            .into_iter()
            .map(|p| PasskeyRow {
                id: p.id,
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            })
            .collect(),
        may_change: !summary.any() || two_factors(&session_methods(session)),
    };
    let records = state.engine().store().list(Some(user.id), now)?;
    let (records, sessions_pager) = paged(records, page);
    let token = csrf::session_token(state.engine().signer(), key);
    Ok(html(views::account_page(&AccountView {
        viewer: viewer(user),
        sessions: session_rows(&records, key, |_| None),
        sessions_pager,
        csrf: &token,
        notice,
        error,
        now,
        two_factor,
        tokens,
        apps: apps(state, user, now)?,
        names: names(state, user)?,
        signin_links,
        activity: activity(state, user)?,
    })))
}

/// How many of their own events the account page shows.
const ACTIVITY: usize = 20;

/// `user`'s latest events: those they are the subject of (their sign-ins,
/// failed attempts on their name, changes to their account, by whomever),
/// since their account was made: a name used before by another account
/// brings none of that one's.
fn activity(state: &State, user: &User) -> Result<Vec<crate::web::views::AuditRow>> {
    let filter = crate::users::audit::Filter {
        subject: Some(user.username.clone()),
        since: Some(user.created_at),
        ..crate::users::audit::Filter::default()
    };
    let rows = state.users.audit().page(&filter, ACTIVITY)?;
    Ok(crate::web::device::audit_rows(&rows))
}

pub(super) fn get_account(state: &State, request: &Request, client: &Client) -> Result<Response> {
    with_session(state, request, client, |session| {
        match signed_in(state, session, request)? {
            Ok(s) => render(
                state,
                session,
                &s.user,
                &s.key,
                page_param(request, "page")?,
                notice(request),
                None,
            ),
            Err(redirect) => Ok(redirect),
        }
    })
}

/// The names apps are told.
fn names(state: &State, user: &User) -> Result<NamesView> {
    let profile = state
        .users
        .profile(user.id)?
        .unwrap_or_else(crate::users::source::Profile::local);
    Ok(NamesView {
        vouched: profile.email_vouched(),
        directory: profile.source != crate::users::source::Source::Local,
        display_name: profile.display_name,
        email: profile.email,
    })
}

/// The OpenID Connect clients `user` holds live tokens of, the newest
/// sign-in of each (none without the provider, and none of a client no
/// longer configured).
fn apps(state: &State, user: &User, now: clock::Millis) -> Result<Vec<AppRow>> {
    let Some(provider) = &state.oidc else {
        return Ok(Vec::new());
    };
    let grants = provider
        .store()
        .grants_for_user(user.id, now)
        .map_err(crate::web::error::WebError::provider_fault)?;
    let mut rows: Vec<AppRow> = Vec::new();
    for g in grants {
        if rows.iter().any(|r| r.client_id == g.client_id) {
            continue;
        }
        if let Some(client) = provider
            .client(&g.client_id)
            .map_err(crate::web::error::WebError::provider_fault)?
        {
            rows.push(AppRow {
                client_id: g.client_id,
                name: client.name.clone(),
                since: g.created_at,
            });
        }
    }
    Ok(rows)
}
