//! Signing in: the password (`login`), the second step after it
//! (`second`), the set-up a `required` policy asks for (`enrol`), a
//! passkey alone (`passkey`), and signing out (`login`). This file
//! declares the area's paths; the files beside it hold the handlers.

mod enrol;
mod login;
mod passkey;
mod second;

use super::router::{Route, Token};

/// The sign-in's paths: the password, the second step, the set-up a
/// `required` policy asks for, passkeys, and signing out.
pub(super) const ROUTES: &[Route] = &[
    Route::at("/login")
        .get(login::get_login)
        .form(Token::Anonymous, login::post_login),
    Route::at("/login/second")
        .get(second::get_second)
        .form(Token::Anonymous, second::post_second)
        .token_page(),
    Route::at("/login/enrol")
        .get(enrol::get_enrol)
        .form(Token::Anonymous, enrol::post_enrol)
        .token_page(),
    Route::at("/login/passkey/options")
        .form(Token::Anonymous, passkey::post_signin_options)
        .script(),
    Route::at("/login/passkey").form(Token::Anonymous, passkey::post_signin_passkey),
    Route::at("/login/second/passkey/options")
        .form(Token::Anonymous, second::post_second_options)
        .script(),
    Route::at("/login/second/passkey").form(Token::Anonymous, second::post_second_passkey),
    Route::at("/login/enrol/passkey/options")
        .form(Token::Anonymous, enrol::post_register_options)
        .script(),
    Route::at("/login/enrol/passkey").form(Token::Anonymous, enrol::post_register),
    Route::at("/logout")
        .get(login::get_logout)
        .form(Token::Session, login::post_logout)
        .token_page(),
];
