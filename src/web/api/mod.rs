//! The JSON API: the same flows as the pages, for front-end code:
//! signing in and out (`login`), the session and its data (`session`), the
//! apps the user may open (`apps`), the OpenAPI document (`openapi`), the
//! JSON answers and errors (`json`).
//!
//! Every endpoint takes and returns `application/json`; errors are
//! `{"error": "..."}`. Cross-site requests are refused by `Origin`, and a
//! body must be declared JSON, which a cross-site HTML form cannot do:
//! together they stand in for the pages' CSRF tokens.

mod apps;
mod json;
mod login;
mod openapi;
mod session;

use super::router::Route;

pub use json::error_response;
pub use openapi::OPENAPI;
pub use session::{MAX_DATA, RESERVED_PREFIX};

/// The JSON API's paths: scripts call them, with their own checks
/// (`Origin`, a JSON body) in place of a form's token.
pub(super) const ROUTES: &[Route] = &[
    Route::at("/api/login").post(login::post_login).script(),
    Route::at("/api/login/second")
        .post(login::post_login_second)
        .script(),
    Route::at("/api/logout").post(login::post_logout).script(),
    Route::at("/api/session").get(session::get_session).script(),
    Route::at("/api/session/data")
        .patch(session::patch_data)
        .script(),
    Route::at("/api/apps").get(apps::get_apps).script(),
    Route::at("/api/openapi.yaml")
        .get(openapi::openapi)
        .script(),
];
