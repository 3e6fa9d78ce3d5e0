//! `/admin`, an area with its own navigation: the overview (`overview`),
//! the users (`users`), the groups and their members (`groups`), every
//! session (`sessions`), every token (`tokens`), the OpenID Connect
//! clients (`clients`), invites (`invites`), the audit log (`audit`); who
//! may use it and
//! what every action passes first (`act`), and the password an action
//! asks for again (`reauth`). Administrators only; the last enabled
//! administrator cannot be removed. This file declares the area's paths;
//! the files beside it hold the handlers.

mod act;
mod audit;
mod clients;
mod groups;
mod invites;
mod overview;
mod reauth;
mod sessions;
mod tokens;
mod users;

use super::router::{Route, Token};

/// `/admin` and its sections.
pub(super) const ROUTES: &[Route] = &[
    Route::at("/admin").get(overview::get_overview).token_page(),
    Route::at("/admin/users")
        .get(users::get_users)
        .form(Token::Session, users::post_create)
        .token_page(),
    Route::at("/admin/users/password").form(Token::Session, users::post_password),
    Route::at("/admin/users/names").form(Token::Session, users::post_names),
    Route::at("/admin/users/disable").form(Token::Session, users::post_disable),
    Route::at("/admin/users/enable").form(Token::Session, users::post_enable),
    Route::at("/admin/users/grant-admin").form(Token::Session, users::post_grant_admin),
    Route::at("/admin/users/revoke-admin").form(Token::Session, users::post_revoke_admin),
    Route::at("/admin/users/delete")
        .get(users::get_delete_user)
        .form(Token::Session, users::post_delete)
        .token_page(),
    Route::at("/admin/users/reset-2fa")
        .get(users::get_reset_2fa)
        .form(Token::Session, users::post_reset_2fa)
        .token_page(),
    Route::at("/admin/groups")
        .get(groups::get_groups)
        .form(Token::Session, groups::post_create)
        .token_page(),
    Route::at("/admin/groups/members")
        .get(groups::get_members)
        .token_page(),
    Route::at("/admin/groups/rename").form(Token::Session, groups::post_rename),
    Route::at("/admin/groups/delete")
        .get(groups::get_delete_group)
        .form(Token::Session, groups::post_delete)
        .token_page(),
    Route::at("/admin/groups/add").form(Token::Session, groups::post_add),
    Route::at("/admin/groups/remove").form(Token::Session, groups::post_remove),
    Route::at("/admin/sessions")
        .get(sessions::get_sessions)
        .token_page(),
    Route::at("/admin/sessions/end").form(Token::Session, sessions::post_end_session),
    Route::at("/admin/tokens")
        .get(tokens::get_tokens)
        .token_page(),
    Route::at("/admin/tokens/revoke").form(Token::Session, tokens::post_revoke),
    Route::at("/admin/clients")
        .get(clients::get_clients)
        .form(Token::Session, clients::post_create)
        .token_page(),
    Route::at("/admin/clients/rotate")
        .get(clients::get_rotate)
        .form(Token::Session, clients::post_rotate)
        .token_page(),
    Route::at("/admin/clients/delete")
        .get(clients::get_delete)
        .form(Token::Session, clients::post_delete)
        .token_page(),
    Route::at("/admin/invites")
        .get(invites::get_invites)
        .form(Token::Session, invites::post_create)
        .token_page(),
    Route::at("/admin/invites/revoke").form(Token::Session, invites::post_revoke),
    Route::at("/admin/users/reset-link")
        .get(users::get_reset_link)
        .form(Token::Session, users::post_reset_link)
        .token_page(),
    Route::at("/admin/users/reset-link/revoke").form(Token::Session, users::post_revoke_reset_link),
    Route::at("/admin/audit").get(audit::get_audit).token_page(),
    Route::at("/admin/audit.jsonl").get(audit::get_audit_jsonl),
];
