//! `/account`: the page (`page`), ending one's sessions and signing out
//! of apps (`sessions`),
//! changing one's password (`password`), one's display name and e-mail
//! address (`profile`), one's second factors
//! (`factors`), one's personal access tokens (`tokens`) and sign-in
//! links for a new device (`links`). This file declares the area's paths;
//! the files beside it hold the handlers.

mod factors;
mod links;
mod page;
mod password;
mod profile;
mod sessions;
mod tokens;

use super::router::{Route, Token};

/// `/account` and its forms: sessions, the password, second factors.
pub(super) const ROUTES: &[Route] = &[
    Route::at("/account").get(page::get_account).token_page(),
    Route::at("/account/sessions/end").form(Token::Session, sessions::post_end_session),
    Route::at("/account/sessions/end-others").form(Token::Session, sessions::post_end_others),
    Route::at("/account/apps/sign-out").form(Token::Session, sessions::post_app_sign_out),
    Route::at("/account/password").form(Token::Session, password::post_password),
    Route::at("/account/profile").form(Token::Session, profile::post_profile),
    Route::at("/account/totp").form(Token::Session, factors::post_totp_start),
    Route::at("/account/totp/confirm").form(Token::Session, factors::post_totp_confirm),
    Route::at("/account/totp/remove")
        .get(factors::get_totp_remove)
        .form(Token::Session, factors::post_totp_remove)
        .token_page(),
    Route::at("/account/tokens").form(Token::Session, tokens::post_create),
    Route::at("/account/tokens/revoke").form(Token::Session, tokens::post_revoke),
    Route::at("/account/signin-links").form(Token::Session, links::post_create),
    Route::at("/account/signin-links/revoke").form(Token::Session, links::post_revoke),
    Route::at("/account/recovery").form(Token::Session, factors::post_recovery),
    Route::at("/account/passkeys/options")
        .form(Token::Session, factors::post_register_options)
        .script(),
    Route::at("/account/passkeys").form(Token::Session, factors::post_register),
    Route::at("/account/passkeys/remove")
        .get(factors::get_passkey_remove)
        .form(Token::Session, factors::post_passkey_remove)
        .token_page(),
];
