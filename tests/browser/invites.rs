//! An invite in Chromium, from the admin page to a signed-in new user
//! with a passkey: the administrator (who, under `two_factor =
//! "required"`, signs in with an authenticator code) makes an invite with
//! a group on `/admin/invites` and reads its link once; signed out, the
//! same browser opens the link as the invitee, picks a name and a
//! password, is sent to set up a second factor before anything else,
//! registers a passkey with the virtual authenticator, and lands signed
//! in, in the group; then makes a sign-in code for another device on
//! `/account`. On `http://localhost`, a secure context.

use crate::helpers::TestApp;
use crate::webdriver::Driver;

pub fn an_invite_leads_from_the_admin_page_to_a_signed_in_user_with_a_passkey(
    chromedriver: &str,
    chromium: &str,
    shots: &std::path::Path,
) {
    let app = TestApp::spawn_with(&[("two_factor", "required")]);
    let root = app.add_user("root", "correct horse", true);
    let users = &app.state().users;
    users
        .create_group(&gatehouse::users::groups::GroupName::parse("staff").expect("name"))
        .expect("group");
    // root's authenticator, set up beforehand.
    let factors = users.factors();
    let enrolment = factors.start_totp(root.id, "root").expect("start");
    let seed = totp_rs::Secret::try_from_base32(&enrolment.secret)
        .expect("base32")
        .as_bytes()
        .to_vec();
    let code = |t: u64| gatehouse::users::factors::code_at(&seed, t).expect("code");
    let now = || {
        // Out of the last seconds of a step, so the code typed is current.
        loop {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            if t % 30 < 25 {
                return t;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    };
    assert!(
        factors
            .confirm_totp(root.id, &enrolment.sealed, &code(now() - 30))
            .expect("confirm")
    );

    let base = app.base.replace("127.0.0.1", "localhost");
    let b = Driver::start(chromedriver, chromium);
    b.window(1280, 900);
    let authenticator = b.add_virtual_authenticator();

    // The administrator signs in with the password and a code.
    b.goto(&format!("{base}/login"));
    b.type_into("#username", "root");
    b.type_into("#password", "correct horse");
    b.click("#login-submit");
    b.wait_for_path("/login/second");
    b.type_into("#code", &code(now()));
    b.click("#code-submit");
    b.wait_for_path("/");

    // The invites section, from the admin area's navigation.
    b.goto(&format!("{base}/admin"));
    b.click("#admin-nav-invites");
    b.wait_for_path("/admin/invites");
    assert_eq!(b.count("#no-invites"), 1);
    b.type_into("#invite-groups", "staff");
    b.shots(shots, "admin-invites-form");
    b.click("#invite-submit");
    b.wait_for_path("/admin/invites");
    b.wait_for("#new-invite");
    let link = b.eval("return document.querySelector('#new-invite').value;");
    let link = link.as_str().expect("the invite's link").to_owned();
    assert!(link.starts_with(&format!("{base}/invite/")), "{link}");
    assert_eq!(b.count("#invites tbody tr"), 1);
    assert!(b.text("#invites tbody tr").contains("staff"));
    b.shots(shots, "admin-invites");
    // Shown once: the page again lists it without the link.
    b.goto(&format!("{base}/admin/invites"));
    assert_eq!(b.count("#new-invite"), 0);
    assert!(b.text("#invites tbody tr .uses-left").contains("1 of 1"));

    // Signed out, the same browser is the invitee.
    b.goto(&format!("{base}/logout"));
    b.click("#logout-submit");
    b.wait_for_path("/login");
    b.goto(&link);
    b.wait_for("#invite-form");
    assert!(b.text("#invite-groups").contains("staff"));
    b.shots(shots, "invite");
    b.type_into("#username", "newcomer");
    b.type_into("#password", "a good long password");
    b.type_into("#password2", "a good long password");
    b.click("#invite-submit");
    // The policy asks for a second factor before anything else.
    b.wait_for_path("/login/enrol");
    assert_eq!(b.count("#enrol-required"), 1);
    b.shots(shots, "invite-enrol");
    b.click("#enrol-passkey-submit");
    b.wait_for("#recovery-codes");
    assert_eq!(b.count("#recovery-codes li"), 10);
    assert_eq!(b.authenticator_credentials(&authenticator).len(), 1);
    b.shots(shots, "invite-recovery-codes");
    b.click("#continue");
    b.wait_for_path("/?done=registered");
    assert_eq!(b.text("#welcome"), "Welcome, newcomer");
    assert!(b.text("#notice").contains("ready"));
    b.shots(shots, "invite-welcome");

    let newcomer = users.get_by_name("newcomer").expect("made");
    assert_eq!(newcomer.groups, ["staff"]);
    assert!(!newcomer.is_admin);
    let summary = factors.summary(newcomer.id).expect("summary");
    assert_eq!(summary.passkeys, 1);
    // The link is used up.
    b.goto(&link);
    b.wait_for("#link-error");
    b.screenshot(&shots.join("invite-used.png"));

    // The new user makes a sign-in code for another device on /account.
    b.goto(&format!("{base}/account"));
    b.click("#signin-link-make");
    b.wait_for("#new-signin-code");
    let code = b.text("#new-signin-code");
    assert_eq!(code.len(), 9, "{code}");
    b.shots(shots, "account-signin-code");
}
