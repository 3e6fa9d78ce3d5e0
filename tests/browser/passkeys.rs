//! Passkeys in Chromium, through its virtual authenticator: register one on
//! `/account`, use it after the password, sign in with it alone, and find
//! that a removed one no longer signs anyone in. On `http://localhost`,
//! which browsers count as a secure context.

use crate::helpers::TestApp;
use crate::webdriver::Driver;

pub fn a_passkey_registers_signs_in_as_second_step_and_alone(
    chromedriver: &str,
    chromium: &str,
    shots: &std::path::Path,
) {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let base = app.base.replace("127.0.0.1", "localhost");
    let b = Driver::start(chromedriver, chromium);
    b.window(1280, 900);
    let authenticator = b.add_virtual_authenticator();

    let sign_in_with_password = || {
        b.goto(&format!("{base}/login"));
        b.type_into("#username", "alice");
        b.type_into("#password", "correct horse");
        b.click("#login-submit");
    };
    let sign_out = || {
        b.goto(&format!("{base}/logout"));
        b.click("#logout-submit");
        b.wait_for_path("/login");
    };

    // Password only (no second factor yet).
    sign_in_with_password();
    b.wait_for_path("/");

    // The authenticator set-up page, for the screenshots (not confirmed).
    b.goto(&format!("{base}/account"));
    b.click("#totp-start");
    b.wait_for("#totp-qr svg");
    b.screenshot(&shots.join("totp-enrol.png"));

    // Register a passkey: the first factor, so recovery codes come once.
    b.goto(&format!("{base}/account#two-factor"));
    b.screenshot(&shots.join("account-two-factor.png"));
    b.find("#passkey-name");
    b.type_into("#passkey-name", " laptop");
    b.click("#passkey-register-submit");
    b.wait_for("#recovery-codes");
    assert_eq!(b.count("#recovery-codes li"), 10);
    b.screenshot(&shots.join("recovery-codes.png"));
    assert_eq!(b.authenticator_credentials(&authenticator).len(), 1);
    b.click("#continue");
    b.wait_for("#passkeys");
    assert_eq!(b.text("#passkeys .passkey-name"), "Passkey laptop");
    let factors = app
        .state()
        .users
        .factors()
        .summary(app.state().users.get_by_name("alice").expect("alice").id)
        .expect("summary");
    assert_eq!(factors.passkeys, 1);

    // Password, then the passkey as the second step.
    sign_out();
    sign_in_with_password();
    b.wait_for_path("/login/second");
    b.screenshot(&shots.join("second-step.png"));
    b.click("#second-passkey-submit");
    b.wait_for_path("/");
    assert_eq!(b.text("#welcome"), "Welcome, alice");

    // The passkey alone, with the page's one "remember me" ticked: the
    // passkey sign-in takes it too.
    sign_out();
    b.screenshot(&shots.join("login-passkey.png"));
    assert_eq!(b.count("input[type=checkbox][name=remember]"), 1);
    b.click("#remember");
    b.click("#passkey-login-submit");
    b.wait_for_path("/");
    assert_eq!(b.text("#welcome"), "Welcome, alice");
    let alice = app.state().users.get_by_name("alice").expect("alice").id;
    let sessions = app.stored_sessions();
    assert!(
        sessions
            .iter()
            .any(|r| r.user_id == Some(alice) && r.persistent),
        "the passkey sign-in was remembered: {:?}",
        sessions.iter().map(|r| r.persistent).collect::<Vec<_>>()
    );
    b.goto(&format!("{base}/account"));
    b.wait_for("#passkeys");
    assert!(
        !b.text("#passkeys tbody").contains("never"),
        "last used is shown"
    );

    // Removed on the account page: the authenticator still holds it, and
    // the server no longer takes it.
    b.click("#passkeys tbody button");
    b.wait_for("#remove-passkey-form");
    b.shots(shots, "account-remove-passkey");
    b.click("#remove-passkey-submit");
    b.wait_for("#no-passkeys");
    sign_out();
    b.click("#passkey-login-submit");
    b.wait_for_path("/login?passkey=failed");
    assert!(b.text("#login-error").contains("passkey"));
    b.goto(&format!("{base}/"));
    b.wait_for_path("/login?next=/");
}
