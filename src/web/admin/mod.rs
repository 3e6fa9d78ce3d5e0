//! `/admin`: the page (`page`), the users (`users`), every session
//! (`sessions`), what every action passes first and how it is answered
//! (`act`), and the password an action asks for again (`reauth`).
//! Administrators only; the last enabled administrator cannot be removed.
//! This file declares the area's paths; the files beside it hold the
//! handlers.

mod act;
mod page;
mod reauth;
mod sessions;
mod users;

use super::router::{Route, Token};

/// `/admin` and its actions.
pub(super) const ROUTES: &[Route] = &[
    Route::at("/admin").get(page::get_admin).token_page(),
    Route::at("/admin/users").form(Token::Session, users::post_create),
    Route::at("/admin/users/password").form(Token::Session, users::post_password),
    Route::at("/admin/users/disable").form(Token::Session, users::post_disable),
    Route::at("/admin/users/enable").form(Token::Session, users::post_enable),
    Route::at("/admin/users/grant-admin").form(Token::Session, users::post_grant_admin),
    Route::at("/admin/users/revoke-admin").form(Token::Session, users::post_revoke_admin),
    Route::at("/admin/users/delete")
        .get(users::get_delete_user)
        .form(Token::Session, users::post_delete)
        .token_page(),
    Route::at("/admin/users/reset-2fa").form(Token::Session, users::post_reset_2fa),
    Route::at("/admin/sessions/end").form(Token::Session, sessions::post_end_session),
];
