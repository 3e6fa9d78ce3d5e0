//! gatehouse's own pages against a script on the same origin (a prefix-mode
//! app): fetch metadata decides what is a person's navigation, and admin
//! actions want the password again after `admin_reauth`.

use crate::helpers::{Resp, TestApp, assert_redirects_to};

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
    let csrf = admin.get("/admin").csrf().expect("token");
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
    let csrf = admin.get_with("/admin", NAVIGATION).csrf().expect("token");
    let resp = admin.post_form_with(
        "/admin/users/grant-admin",
        &[("csrf", &csrf), ("username", "bob")],
        NAVIGATION,
    );
    assert_redirects_to(&resp, "/admin?done=admin-granted");
    assert!(is_admin(&app, "bob"));
    // A reload's re-submission is the browser's own navigation (`none`).
    let resp = admin.post_form_with(
        "/admin/users/revoke-admin",
        &[("csrf", &csrf), ("username", "bob")],
        &[
            ("Sec-Fetch-Site", "none"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", "document"),
        ],
    );
    assert_redirects_to(&resp, "/admin?done=admin-revoked");
    // curl and old browsers send none of it: the CSRF token decides.
    let resp = admin.post_form(
        "/admin/users/grant-admin",
        &[("csrf", &csrf), ("username", "bob")],
    );
    assert_redirects_to(&resp, "/admin?done=admin-granted");
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
    let csrf = admin.get("/admin").csrf().expect("token");
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
    for page in [
        "/admin",
        "/account",
        "/logout",
        "/admin/users/delete?username=bob",
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
