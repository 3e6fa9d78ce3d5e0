//! gatehouse's own pages against a script on the same origin (a prefix-mode
//! app): fetch metadata decides what is a person's navigation, and admin
//! actions want the password again after `admin_reauth`.

use crate::helpers::{Resp, SCRIPTED_CLICK, TestApp, assert_redirects_to};

/// What Chromium sends for a `fetch()` from a page on the same origin.
const FETCH: &[(&str, &str)] = &[
    ("Sec-Fetch-Site", "same-origin"),
    ("Sec-Fetch-Mode", "cors"),
    ("Sec-Fetch-Dest", "empty"),
];

/// What Chromium sends when a person submits a form on gatehouse's page.
const NAVIGATION: &[(&str, &str)] = &[
    ("Sec-Fetch-Site", "same-origin"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Dest", "document"),
    ("Sec-Fetch-User", "?1"),
];

fn is_admin(app: &TestApp, name: &str) -> bool {
    app.state()
        .users
        .find_by_name(name)
        .expect("lookup")
        .expect("user exists")
        .is_admin
}

fn admin_and_bob() -> (TestApp, crate::helpers::Browser) {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "bobs password", false);
    let admin = app.browser();
    assert_eq!(admin.login("root", "correct horse").status, 303);
    (app, admin)
}

#[test]
fn a_fetch_shaped_admin_post_is_refused_even_with_a_valid_token_and_cookie() {
    let (app, admin) = admin_and_bob();
    let csrf = admin.get("/admin/users").csrf().expect("token");
    for mode in ["cors", "same-origin", "no-cors"] {
        let headers = [
            ("Sec-Fetch-Site", "same-origin"),
            ("Sec-Fetch-Mode", mode),
            ("Sec-Fetch-Dest", "empty"),
        ];
        let resp = admin.post_form_with(
            "/admin/users/grant-admin",
            &[("csrf", &csrf), ("username", "bob")],
            &headers,
        );
        assert_eq!(resp.status, 403, "{mode}: {resp:?}");
        assert!(!is_admin(&app, "bob"), "{mode}: bob was made an admin");
    }
    // The mode alone gives a script away.
    let resp = admin.post_form_with(
        "/admin/users/grant-admin",
        &[("csrf", &csrf), ("username", "bob")],
        &[("Sec-Fetch-Mode", "cors")],
    );
    assert_eq!(resp.status, 403);
    assert!(!is_admin(&app, "bob"));
    // The refusal did not sign the admin out.
    assert_eq!(admin.get("/admin").status, 200);
}

#[test]
fn a_navigation_shaped_admin_post_still_works_and_so_does_one_without_metadata() {
    let (app, admin) = admin_and_bob();
    let csrf = admin
        .get_with("/admin/users", NAVIGATION)
        .csrf()
        .expect("token");
    let resp = admin.post_form_with(
        "/admin/users/grant-admin",
        &[("csrf", &csrf), ("username", "bob")],
        NAVIGATION,
    );
    assert_redirects_to(&resp, "/admin/users?done=admin-granted");
    assert!(is_admin(&app, "bob"));
    // A reload's re-submission is the browser's own navigation (`none`).
    let resp = admin.post_form_with(
        "/admin/users/revoke-admin",
        &[("csrf", &csrf), ("username", "bob")],
        &[
            ("Sec-Fetch-Site", "none"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", "document"),
            ("Sec-Fetch-User", "?1"),
        ],
    );
    assert_redirects_to(&resp, "/admin/users?done=admin-revoked");
    // curl and old browsers send none of it: the CSRF token decides.
    let resp = admin.post_form(
        "/admin/users/grant-admin",
        &[("csrf", &csrf), ("username", "bob")],
    );
    assert_redirects_to(&resp, "/admin/users?done=admin-granted");
    let resp = admin.post_form(
        "/admin/users/revoke-admin",
        &[("csrf", "forged"), ("username", "bob")],
    );
    assert_eq!(resp.status, 403);
    assert!(is_admin(&app, "bob"));
}

#[test]
fn a_form_posted_into_a_frame_or_from_another_host_is_refused() {
    let (app, admin) = admin_and_bob();
    let csrf = admin.get("/admin/users").csrf().expect("token");
    let attempts: [&[(&str, &str)]; 3] = [
        &[
            ("Sec-Fetch-Site", "same-origin"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", "iframe"),
        ],
        // A host-mode app on a sibling host (wiki.lan next to auth.lan).
        &[
            ("Sec-Fetch-Site", "same-site"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", "document"),
        ],
        &[
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", "document"),
        ],
    ];
    for headers in attempts {
        let resp = admin.post_form_with(
            "/admin/users/grant-admin",
            &[("csrf", &csrf), ("username", "bob")],
            headers,
        );
        assert_eq!(resp.status, 403, "{headers:?}");
    }
    assert!(!is_admin(&app, "bob"));
}

fn refused_without_token(resp: &Resp) {
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_eq!(resp.csrf(), None, "the refusal carries no token");
}

#[test]
fn a_script_cannot_read_the_pages_that_carry_the_session_token() {
    let (_app, admin) = admin_and_bob();
    // The admin overview carries no form, and a script may not read it
    // either (it counts the users and their sessions).
    refused_without_token(&admin.get_with("/admin", FETCH));
    assert_eq!(admin.get_with("/admin", NAVIGATION).status, 200);
    for page in [
        "/admin/users",
        "/admin/sessions",
        "/account",
        "/logout",
        "/admin/users/delete?username=bob",
        "/admin/users/reset-2fa?username=bob",
    ] {
        refused_without_token(&admin.get_with(page, FETCH));
        refused_without_token(&admin.get_with(
            page,
            &[
                ("Sec-Fetch-Site", "same-origin"),
                ("Sec-Fetch-Mode", "navigate"),
                ("Sec-Fetch-Dest", "iframe"),
            ],
        ));
        let navigated = admin.get_with(page, NAVIGATION);
        assert_eq!(navigated.status, 200, "{page}");
        assert!(navigated.csrf().is_some(), "{page}");
        // A link from elsewhere (a mail, a chat) still opens the page.
        let linked = admin.get_with(
            page,
            &[
                ("Sec-Fetch-Site", "cross-site"),
                ("Sec-Fetch-Mode", "navigate"),
                ("Sec-Fetch-Dest", "document"),
            ],
        );
        assert_eq!(linked.status, 200, "{page}");
        assert_eq!(admin.get(page).status, 200, "{page} without metadata");
    }
}

#[test]
fn a_fetch_cannot_sign_out_or_change_a_password() {
    let (_app, admin) = admin_and_bob();
    let csrf = admin.get("/account").csrf().expect("token");
    let resp = admin.post_form_with("/logout", &[("csrf", &csrf)], FETCH);
    assert_eq!(resp.status, 403);
    let resp = admin.post_form_with(
        "/account/password",
        &[
            ("csrf", &csrf),
            ("current", "correct horse"),
            ("password", "a new password"),
            ("password2", "a new password"),
        ],
        FETCH,
    );
    assert_eq!(resp.status, 403);
    assert_eq!(admin.get("/auth/verify").status, 200, "still signed in");
    let other = crate::helpers::Browser::new(&admin.base);
    assert_eq!(other.login("root", "correct horse").status, 303);
}

/// The hidden fields of the confirmation form, as a browser would resend them.
fn confirm_fields(page: &Resp) -> Vec<(String, String)> {
    let form_at = page
        .body
        .find("id=\"reauth-form\"")
        .expect("the confirm form");
    let form = &page.body[form_at..];
    let form = &form[..form.find("</form>").expect("form end")];
    form.match_indices("<input type=\"hidden\" name=\"")
        .map(|(i, m)| {
            let rest = &form[i + m.len()..];
            let name = &rest[..rest.find('"').expect("name end")];
            let rest = &rest[rest.find("value=\"").expect("value") + "value=\"".len()..];
            let value = &rest[..rest.find('"').expect("value end")];
            (
                name.to_owned(),
                value.replace("&amp;", "&").replace("&quot;", "\""),
            )
        })
        .collect()
}

fn resend(b: &crate::helpers::Browser, action: &str, page: &Resp, password: &str) -> Resp {
    let mut fields = confirm_fields(page);
    fields.push(("reauth_password".to_owned(), password.to_owned()));
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post_form_with(action, &borrowed, NAVIGATION)
}

fn grant(b: &crate::helpers::Browser, action: &str, user: &str) -> Resp {
    let csrf = b.get("/admin/users").csrf().expect("token");
    b.post_form_with(action, &[("csrf", &csrf), ("username", user)], NAVIGATION)
}

#[test]
fn admin_actions_ask_for_the_password_again_after_admin_reauth() {
    let app = TestApp::spawn_with(&[("admin_reauth", "2s")]);
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "bobs password", false);
    let admin = app.browser();
    admin.login("root", "correct horse");
    // The sign-in itself is a confirmation.
    assert_redirects_to(
        &grant(&admin, "/admin/users/grant-admin", "bob"),
        "/admin/users?done=admin-granted",
    );
    std::thread::sleep(std::time::Duration::from_millis(2_200));

    let page = grant(&admin, "/admin/users/revoke-admin", "bob");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("id=\"reauth-form\""), "{}", page.body);
    assert!(page.body.contains("id=\"reauth-password\""));
    assert!(is_admin(&app, "bob"), "the action ran without the password");
    let fields = confirm_fields(&page);
    assert!(fields.contains(&("username".to_owned(), "bob".to_owned())));

    // Back with the password: the same action goes through.
    assert_redirects_to(
        &resend(&admin, "/admin/users/revoke-admin", &page, "correct horse"),
        "/admin/users?done=admin-revoked",
    );
    assert!(!is_admin(&app, "bob"));
    // And the confirmation holds for the next one.
    assert_redirects_to(
        &grant(&admin, "/admin/users/grant-admin", "bob"),
        "/admin/users?done=admin-granted",
    );
}

#[test]
fn every_admin_action_asks_when_admin_reauth_is_zero_and_carries_its_fields() {
    let app = TestApp::spawn_with(&[("admin_reauth", "0s")]);
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "bobs password", false);
    let admin = app.browser();
    admin.login("root", "correct horse");
    let csrf = admin.get("/admin/users").csrf().expect("token");
    // A password reset: the new password rides through the confirmation.
    let page = admin.post_form(
        "/admin/users/password",
        &[
            ("csrf", &csrf),
            ("username", "bob"),
            ("password", "bobs new pass"),
        ],
    );
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"reauth-form\""));
    assert_redirects_to(
        &resend(&admin, "/admin/users/password", &page, "correct horse"),
        "/admin/users?done=password-reset",
    );
    let bob = app.browser();
    assert_eq!(bob.login("bob", "bobs new pass").status, 303);
    // Ending bob's session from the admin page asks too.
    let handle = app
        .stored_sessions()
        .into_iter()
        .find(|r| r.user_id != Some(app.state().users.find_by_name("root").unwrap().unwrap().id))
        .expect("bob's session")
        .key
        .handle();
    let page = admin.post_form(
        "/admin/sessions/end",
        &[("csrf", &csrf), ("handle", &handle)],
    );
    assert!(page.body.contains("id=\"reauth-form\""));
    assert_eq!(
        bob.get("/auth/verify").status,
        200,
        "ended without the password"
    );
    assert_redirects_to(
        &resend(&admin, "/admin/sessions/end", &page, "correct horse"),
        "/admin/sessions?done=session-ended",
    );
    assert_eq!(bob.get("/auth/verify").status, 401);
    // Creating a user asks again: zero means every time.
    let page = admin.post_form(
        "/admin/users",
        &[
            ("csrf", &csrf),
            ("username", "carol"),
            ("password", "carols pass"),
        ],
    );
    assert!(page.body.contains("id=\"reauth-form\""));
    assert!(app.state().users.find_by_name("carol").unwrap().is_none());
}

#[test]
fn a_wrong_password_on_the_confirm_page_is_refused_and_throttled() {
    let app = TestApp::spawn_with(&[("admin_reauth", "0s"), ("login_max_failures", "3")]);
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "bobs password", false);
    let admin = app.browser();
    admin.login("root", "correct horse");
    let page = grant(&admin, "/admin/users/grant-admin", "bob");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let resp = resend(&admin, "/admin/users/grant-admin", &page, "wrong guess");
        statuses.push(resp.status);
        assert!(resp.body.contains("id=\"reauth-form\""));
        if resp.status == 429 {
            assert!(resp.header("retry-after").is_some());
        }
    }
    assert_eq!(&statuses[..3], &[403, 403, 403], "{statuses:?}");
    assert_eq!(statuses[3], 429, "{statuses:?}");
    // Locked out: even the right password waits.
    let resp = resend(&admin, "/admin/users/grant-admin", &page, "correct horse");
    assert_eq!(resp.status, 429);
    assert!(!is_admin(&app, "bob"));
    // A wrong guess never ends the admin's session.
    assert_eq!(admin.get("/auth/verify").status, 200);
}

#[test]
fn a_script_cannot_write_itself_a_confirmation_through_the_api() {
    let app = TestApp::spawn_with(&[("admin_reauth", "0s")]);
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "bobs password", false);
    let admin = app.browser();
    admin.login("root", "correct horse");
    let far = "{\"gatehouse:reauth_at\": 99999999999999}";
    let resp = admin.send_json("PATCH", "/api/session/data", far, &[]);
    assert_eq!(resp.status, 400, "{resp:?}");
    // Nor one from a moment ago.
    let now = gatehouse::clock::now();
    let resp = admin.send_json(
        "PATCH",
        "/api/session/data",
        &format!("{{\"gatehouse:reauth_at\": {now}}}"),
        &[],
    );
    assert_eq!(resp.status, 400);
    let page = grant(&admin, "/admin/users/grant-admin", "bob");
    assert!(page.body.contains("id=\"reauth-form\""));
    assert!(!is_admin(&app, "bob"));
    // Other keys are still the app's to use.
    let resp = admin.send_json("PATCH", "/api/session/data", "{\"theme\": \"dark\"}", &[]);
    assert_eq!(resp.status, 200);
}

#[test]
fn a_scripted_click_gets_the_password_page_even_right_after_sign_in() {
    let (app, admin) = admin_and_bob();
    let csrf = admin
        .get_with("/admin/users", NAVIGATION)
        .csrf()
        .expect("token");
    let page = admin.post_form_with(
        "/admin/users/grant-admin",
        &[("csrf", &csrf), ("username", "bob")],
        SCRIPTED_CLICK,
    );
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("id=\"reauth-form\""));
    assert!(!is_admin(&app, "bob"), "a script's click made bob an admin");
    // Safari sends no Sec-Fetch-User at all: its person confirms and goes on.
    let mut fields = confirm_fields(&page);
    fields.push(("reauth_password".to_owned(), "correct horse".to_owned()));
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_redirects_to(
        &admin.post_form_with("/admin/users/grant-admin", &borrowed, SCRIPTED_CLICK),
        "/admin/users?done=admin-granted",
    );
    assert!(is_admin(&app, "bob"));
    // A person's click right after goes straight through.
    assert_redirects_to(
        &admin.post_form_with(
            "/admin/users/revoke-admin",
            &[("csrf", &csrf), ("username", "bob")],
            NAVIGATION,
        ),
        "/admin/users?done=admin-revoked",
    );
}

/// Which routes look at fetch metadata, route by route (pinned so that a
/// change to how routes are declared keeps each rule where it was): the
/// pages that carry a CSRF token refuse a script's read, every form POST
/// refuses a script's send, and the JSON API and the passkey options
/// (fetched by the page's own script, with the form's token) do not ask.
#[test]
fn fetch_metadata_is_checked_route_by_route() {
    let (app, admin) = admin_and_bob();
    // Pages with a token: a script's read is refused (anonymous ones too).
    let anonymous = app.browser();
    for page in ["/login/second", "/login/enrol"] {
        assert_eq!(anonymous.get_with(page, FETCH).status, 403, "{page}");
        assert_eq!(anonymous.get(page).status, 303, "{page} without metadata");
    }
    // Pages without one: a script may read them.
    assert_eq!(anonymous.get_with("/login", FETCH).status, 200);
    assert_eq!(anonymous.get_with("/healthz", FETCH).status, 200);
    assert_eq!(admin.get_with("/", FETCH).status, 200);
    assert_eq!(admin.get_with("/api/session", FETCH).status, 200);
    // A form POST sent by a script is refused, with a valid token too.
    let token = anonymous.get("/login").csrf().expect("a login form");
    let resp = anonymous.post_form_with(
        "/login",
        &[
            ("csrf", &token),
            ("username", "bob"),
            ("password", "bobs password"),
        ],
        FETCH,
    );
    assert_eq!(resp.status, 403);
    // Also on a path that is no route.
    assert_eq!(
        anonymous
            .post_form_with("/nothing-here", &[("csrf", &token)], FETCH)
            .status,
        403
    );
    // The passkey options are the page script's: not refused for being
    // fetched (400 here: passkeys need a host name, not 127.0.0.1).
    for path in [
        "/login/passkey/options",
        "/login/second/passkey/options",
        "/login/enrol/passkey/options",
    ] {
        let resp = anonymous.post_form_with(path, &[("csrf", &token)], FETCH);
        assert_eq!(resp.status, 400, "{path}");
    }
    let session_token = admin.get("/account").csrf().expect("token");
    let resp = admin.post_form_with(
        "/account/passkeys/options",
        &[("csrf", &session_token)],
        FETCH,
    );
    assert_eq!(resp.status, 400);
    // The JSON API is left to its own checks.
    let resp = anonymous.send_json(
        "POST",
        "/api/login",
        r#"{"username":"bob","password":"wrong password"}"#,
        FETCH,
    );
    assert_eq!(resp.status, 401);
}
