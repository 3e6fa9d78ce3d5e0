//! One's display name and e-mail address on `/account`: what the apps
//! one signs in to through gatehouse are told (OpenID Connect `name` and
//! `email`). An address typed here is not verified (gatehouse sends no
//! mail): apps are told so. A directory user's names are the directory's.

use rouille::{Request, Response};

use crate::auth::proxy::Client;
use crate::users::UserError;
use crate::users::source::Vouch;
use crate::web::error::Result;
use crate::web::respond::{capitalise, see_other};
use crate::web::signed_in::signed_in_form;
use crate::web::state::State;

use super::page::render;

pub(super) fn post_profile(state: &State, request: &Request, client: &Client) -> Result<Response> {
    signed_in_form(state, request, client, |session, s, form| {
        let given = |field: &str| form.get(field).map(str::trim).filter(|v| !v.is_empty());
        match state.users.set_names(
            s.user.id,
            given("display_name"),
            given("email"),
            Vouch::User,
        ) {
            Ok(_) => Ok(see_other("/account?done=profile-saved")),
            Err(UserError::External) => Ok(render(
                state,
                session,
                &s.user,
                &s.key,
                1,
                None,
                Some("Your name and address are the directory's: change them there."),
            )?
            .with_status_code(409)),
            Err(e @ UserError::InvalidName(_)) => Ok(render(
                state,
                session,
                &s.user,
                &s.key,
                1,
                None,
                Some(&capitalise(&e.to_string())),
            )?
            .with_status_code(400)),
            Err(e) => Err(e.into()),
        }
    })
}
