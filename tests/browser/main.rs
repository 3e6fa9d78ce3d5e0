//! End to end in a real browser: Debian's headless Chromium driven through
//! chromedriver. First-run setup, the dashboard and its visit counter, the
//! account page (ending another session, making a token), the admin page (its groups
//! among its sections), and signing out; signing in to an OpenID Connect
//! client (password, passkey) and landing back at it with a code; an
//! invite from the admin page to a signed-in new user with a passkey.
//! Screenshots of the main pages go to `target/screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium` and `chromium-driver`, which `.ci/run` installs). Without
//! them the test says so and passes, except under CI (`CI` set), where it
//! fails: CI must run it.

#[path = "../http/helpers.rs"]
#[allow(dead_code)]
mod helpers;
mod invites;
mod oidc;
mod passkeys;
mod same_origin;
mod webdriver;

use std::path::{Path, PathBuf};

use helpers::TestApp;
use webdriver::Driver;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Whether Chromium and chromedriver are there; without them a test says
/// so and passes, except under CI, which must run it.
fn browser_installed() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the browser test: install chromium and chromium-driver"
    );
    eprintln!("skipped: {CHROMIUM} or {CHROMEDRIVER} is not installed");
    false
}

#[test]
fn a_person_sets_up_signs_in_manages_sessions_and_signs_out_in_chromium() {
    if !browser_installed() {
        return;
    }
    let shots = screenshots();
    let app = TestApp::spawn();
    let setup = app
        .running
        .as_ref()
        .expect("running")
        .setup_url()
        .expect("setup url");
    let b = Driver::start(CHROMEDRIVER, CHROMIUM);
    b.window(1280, 900);

    // First run: create the administrator.
    b.goto(&setup);
    b.screenshot(&shots.join("setup.png"));
    b.type_into("#username", "root");
    b.type_into("#password", "correct horse battery");
    b.type_into("#password2", "correct horse battery");
    b.click("#setup-submit");
    b.wait_for_path("/?done=welcome");
    assert_eq!(b.text("#welcome"), "Welcome, root");
    assert_eq!(b.text("#visits"), "1");
    assert!(b.text("#notice").contains("ready"));

    // The visit count rises on reload.
    b.goto(&format!("{}/", app.base));
    assert_eq!(b.text("#visits"), "2");
    b.refresh();
    assert_eq!(b.text("#visits"), "3");
    b.screenshot(&shots.join("dashboard.png"));

    // Another device signs in; the account page lists both and ends it.
    let phone = app.browser();
    phone.login("root", "correct horse battery");
    assert_eq!(phone.get("/auth/verify").status, 200);
    b.click("#nav-account");
    b.wait_for_path("/account");
    assert_eq!(b.count("#sessions tbody tr"), 2);
    assert_eq!(b.count("#this-session"), 1);
    b.shots(&shots, "account");
    b.click("#sessions tbody tr:not(.current) button");
    b.wait_for_path("/account?done=session-ended");
    assert_eq!(b.count("#sessions tbody tr"), 1);
    assert_eq!(
        phone.get("/auth/verify").status,
        401,
        "the other device is still signed in"
    );

    // A token for a script, made on the account page and shown once.
    b.type_into("#token-name", "backup script");
    b.click("#token-submit");
    b.wait_for_path("/account/tokens");
    let token = b.eval("return document.querySelector('#new-token').value;");
    let token = token.as_str().expect("the new token").to_owned();
    assert!(token.starts_with("ght_"), "{token}");
    b.shots(&shots, "account-token");
    let script = || {
        app.browser()
            .get_with(
                "/auth/verify",
                &[("Authorization", &format!("Bearer {token}"))],
            )
            .status
    };
    assert_eq!(script(), 200, "the token opens the gate");
    assert_eq!(b.count("#tokens tbody tr"), 1);

    // The admin area: the overview, then each section from its navigation.
    b.click("#nav-admin");
    b.wait_for_path("/admin");
    assert_eq!(b.text("#count-users"), "1");
    b.shots(&shots, "admin");
    b.click("#admin-nav-users");
    b.wait_for_path("/admin/users");
    assert_eq!(b.count("#user-root"), 1);
    b.type_into("#new-username", "bob");
    b.type_into("#new-password", "bobs password");
    b.click("#create-user-submit");
    b.wait_for_path("/admin/users?done=user-created");
    assert_eq!(b.count("#user-bob"), 1);
    b.shots(&shots, "admin-users");
    // Groups: make one, put bob in it from its members page.
    b.click("#admin-nav-groups");
    b.wait_for_path("/admin/groups");
    assert_eq!(b.count("#group-admins"), 1);
    assert_eq!(b.count("#delete-group-admins"), 0, "admins is kept");
    b.type_into("#new-group", "ops");
    b.click("#create-group-submit");
    b.wait_for_path("/admin/groups?done=group-created");
    b.shots(&shots, "admin-groups");
    b.click("#members-ops");
    b.wait_for_path("/admin/groups/members?group=ops");
    b.type_into("#member-username", "bob");
    b.click("#add-member-submit");
    b.wait_for_path("/admin/groups/members?group=ops&done=member-added");
    assert_eq!(b.count("#member-bob"), 1);
    b.shots(&shots, "admin-group-members");
    b.click("#admin-nav-groups");
    b.wait_for_path("/admin/groups");
    b.click("#delete-group-ops");
    b.wait_for_path("/admin/groups/delete?group=ops");
    b.click("#delete-group-submit");
    b.wait_for_path("/admin/groups?done=group-deleted");
    assert_eq!(b.count("#group-ops"), 0);
    let other = app.browser();
    other.login("bob", "bobs password");
    b.click("#admin-nav-sessions");
    b.wait_for_path("/admin/sessions");
    assert_eq!(b.count("#sessions tbody tr"), 2);
    b.shots(&shots, "admin-sessions");
    // Every token, revocable by an administrator.
    b.click("#admin-nav-tokens");
    b.wait_for_path("/admin/tokens");
    assert_eq!(b.count("#tokens tbody tr"), 1);
    b.shots(&shots, "admin-tokens");
    b.click("#tokens tbody tr button");
    b.wait_for_path("/admin/tokens?done=token-revoked");
    assert_eq!(b.count("#no-tokens"), 1);
    assert_eq!(script(), 401, "a revoked token is refused at once");
    b.click("#admin-nav-overview");
    b.wait_for_path("/admin");
    assert_eq!(b.text("#count-users"), "2");

    // Sign out through the confirm page.
    b.click("#nav-logout");
    b.wait_for_path("/logout");
    b.click("#logout-submit");
    b.wait_for_path("/login");
    b.goto(&format!("{}/", app.base));
    b.wait_for_path("/login?next=/");
    b.shots(&shots, "login");

    // And back in with the sign-in form, "remember me" ticked.
    b.type_into("#username", "root");
    b.type_into("#password", "correct horse battery");
    b.click("#remember");
    b.click("#login-submit");
    b.wait_for_path("/");
    assert_eq!(
        b.text("#visits"),
        "1",
        "a new session starts counting afresh"
    );
}

#[test]
fn a_script_in_a_prefix_mode_app_cannot_make_a_user_an_administrator_in_chromium() {
    if !browser_installed() {
        return;
    }
    same_origin::a_script_in_a_prefix_mode_app_cannot_make_a_user_an_administrator(
        CHROMEDRIVER,
        CHROMIUM,
    );
}

#[test]
fn a_passkey_registers_signs_in_as_second_step_and_alone_in_chromium() {
    if !browser_installed() {
        return;
    }
    passkeys::a_passkey_registers_signs_in_as_second_step_and_alone(
        CHROMEDRIVER,
        CHROMIUM,
        &screenshots(),
    );
}

#[test]
fn a_password_sign_in_to_an_oidc_client_lands_back_with_a_code_in_chromium() {
    if !browser_installed() {
        return;
    }
    oidc::a_password_sign_in_lands_back_at_the_client_with_a_code(
        CHROMEDRIVER,
        CHROMIUM,
        &screenshots(),
    );
}

#[test]
fn a_passkey_sign_in_to_an_oidc_client_lands_back_with_a_code_in_chromium() {
    if !browser_installed() {
        return;
    }
    oidc::a_passkey_sign_in_lands_back_at_the_client_with_a_code(
        CHROMEDRIVER,
        CHROMIUM,
        &screenshots(),
    );
}

#[test]
fn an_invite_leads_from_the_admin_page_to_a_signed_in_user_with_a_passkey_in_chromium() {
    if !browser_installed() {
        return;
    }
    invites::an_invite_leads_from_the_admin_page_to_a_signed_in_user_with_a_passkey(
        CHROMEDRIVER,
        CHROMIUM,
        &screenshots(),
    );
}
