//! Second factors over HTTP: authenticator codes computed from the
//! enrolled secret, recovery codes, the pending state between password and
//! second step, the `required` policy, per-app `two_factor`, the JSON API,
//! the administrator's reset, and what the database file holds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::helpers::{Browser, Resp, TestApp, assert_redirects_to};

/// Seconds since the epoch, waiting out the last 3 s of a 30 s step so a
/// code computed now is still for the step the server sees.
pub(crate) fn unix_now() -> u64 {
    loop {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        if t % 30 < 27 {
            return t;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub(crate) fn code_at(seed: &[u8], t: u64) -> String {
    gatehouse::users::factors::code_at(seed, t).expect("code")
}

/// A code for `seed` that is none of the codes for `avoid` (so it is
/// surely wrong then).
fn code_unlike(seed: &[u8], t: u64, avoid: &[u64]) -> String {
    let mut at = t + 3600;
    loop {
        let c = code_at(seed, at);
        if avoid.iter().all(|a| code_at(seed, *a) != c) {
            return c;
        }
        at += 30;
    }
}

/// A code surely wrong at `t`: none of the three the server accepts then.
pub(crate) fn wrong_code(seed: &[u8], t: u64) -> String {
    code_unlike(seed, t, &[t - 30, t, t + 30])
}

/// alice, with an authenticator set up and signed out again: her browser,
/// her seed and her recovery codes.
fn enrolled_alice(app: &TestApp) -> (Browser, Vec<u8>, Vec<String>) {
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let (seed, codes) = enrol(&b);
    b.logout();
    (b, seed, codes)
}

/// The secret the set-up page shows, decoded.
pub(crate) fn secret_of(page: &Resp) -> (String, Vec<u8>) {
    let at = page
        .body
        .find("data-secret=\"")
        .expect("the page shows the secret");
    let rest = &page.body[at + "data-secret=\"".len()..];
    let b32 = rest[..rest.find('"').expect("end")].to_owned();
    let seed = totp_rs::Secret::try_from_base32(&b32)
        .expect("base32")
        .as_bytes()
        .to_vec();
    (b32, seed)
}

/// The recovery codes on the page that shows them once.
fn recovery_codes(page: &Resp) -> Vec<String> {
    let list = &page.body[page
        .body
        .find("id=\"recovery-codes\"")
        .expect("codes shown")..];
    let list = &list[..list.find("</ol>").expect("end of list")];
    list.split("<code>")
        .skip(1)
        .map(|c| c[..c.find("</code>").expect("code end")].to_owned())
        .collect()
}

/// Turns on an authenticator for the signed-in `b` on `/account`: its seed
/// and the recovery codes shown.
pub(crate) fn enrol(b: &Browser) -> (Vec<u8>, Vec<String>) {
    let account = b.get("/account");
    assert_eq!(account.status, 200);
    assert!(account.body.contains("id=\"totp-off\""), "{}", account.body);
    let csrf = account.csrf().expect("csrf");
    let setup = b.post_form("/account/totp", &[("csrf", &csrf)]);
    assert_eq!(setup.status, 200, "{}", setup.body);
    assert!(setup.body.contains("<svg"), "a QR code is drawn");
    assert!(!setup.body.contains("<script>"), "no inline script");
    let (_, seed) = secret_of(&setup);
    let t = unix_now();
    let wrong = wrong_code(&seed, t);
    let refused = b.post_form(
        "/account/totp/confirm",
        &[("csrf", &csrf), ("code", &wrong)],
    );
    assert_eq!(refused.status, 400, "a wrong code does not turn it on");
    assert!(b.get("/account").body.contains("id=\"totp-off\""));
    // The code from a step ago still counts (skew), and is then used up.
    let shown = b.post_form(
        "/account/totp/confirm",
        &[("csrf", &csrf), ("code", &code_at(&seed, t - 30))],
    );
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.header("Cache-Control"), Some("no-store"));
    let codes = recovery_codes(&shown);
    assert_eq!(codes.len(), 10, "{codes:?}");
    let account = b.get("/account");
    assert!(account.body.contains("id=\"totp-on\""));
    assert!(account.body.contains("10 codes left"), "{}", account.body);
    (seed, codes)
}

/// Sets up an authenticator for `name` behind the web's back, as one set
/// up before turning one on ended the password-only sessions: those
/// sessions are then still there. Returns its seed.
pub(crate) fn factor_from_before(app: &TestApp, name: &str) -> Vec<u8> {
    let user = app.state().users.get_by_name(name).expect("user");
    let factors = app.state().users.factors();
    let e = factors.start_totp(user.id, name).expect("start");
    let seed = totp_rs::Secret::try_from_base32(&e.secret)
        .expect("base32")
        .as_bytes()
        .to_vec();
    assert!(
        factors
            .confirm_totp(user.id, &e.sealed, &code_at(&seed, unix_now() - 30))
            .expect("confirm")
    );
    seed
}

/// Signs in with the password: the answer sends `b` to the second step.
pub(crate) fn password_step(b: &Browser, name: &str) {
    let resp = b.login(name, "correct horse");
    assert_redirects_to(&resp, "/login/second");
}

/// Posts a code (or `recovery`) to the second step.
pub(crate) fn second(b: &Browser, field: &str, value: &str) -> Resp {
    let page = b.get("/login/second");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf().expect("csrf");
    b.post_form("/login/second", &[("csrf", &csrf), (field, value)])
}

fn methods(b: &Browser) -> Value {
    let resp = b.get("/api/session");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let v: Value = serde_json::from_str(&resp.body).expect("json");
    v["methods"].clone()
}

#[test]
fn sign_in_needs_the_password_and_a_fresh_code() {
    let app = TestApp::spawn();
    let (b, seed, _) = enrolled_alice(&app);

    // The password alone leads to the second step, signed in nowhere.
    password_step(&b, "alice");
    let before = b.cookie("gatehouse_session");
    let t = unix_now();
    let wrong = second(&b, "code", &wrong_code(&seed, t));
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("id=\"second-error\""));
    let ok = second(&b, "code", &code_at(&seed, t));
    assert_redirects_to(&ok, "/");
    assert_ne!(b.cookie("gatehouse_session"), before, "a new session id");
    assert_eq!(methods(&b), serde_json::json!(["pwd", "otp"]));
    b.logout();

    // The same code again: refused, even with the right password.
    password_step(&b, "alice");
    assert_eq!(second(&b, "code", &code_at(&seed, t)).status, 401);
    // Two steps ahead is too far; one step ahead is skew.
    let t = unix_now();
    let two_ahead = code_at(&seed, t + 60);
    if ![t - 30, t, t + 30]
        .iter()
        .any(|s| code_at(&seed, *s) == two_ahead)
    {
        assert_eq!(second(&b, "code", &two_ahead).status, 401);
    }
    assert_redirects_to(&second(&b, "code", &code_at(&seed, t + 30)), "/");
    assert_eq!(b.get("/account").status, 200);
}

#[test]
fn the_pending_state_passes_nowhere_and_survives_only_a_few_wrong_codes() {
    let app = TestApp::spawn_with(&[("login_max_failures", "50")]);
    let (b, seed, _) = enrolled_alice(&app);

    password_step(&b, "alice");
    assert_eq!(b.get("/auth/verify").status, 401);
    assert_eq!(b.get("/api/session").status, 401);
    assert_eq!(b.get("/account").status, 303);
    assert_eq!(b.get("/").status, 303);
    assert_eq!(b.get("/admin").status, 303);

    // Five wrong codes end the pending sign-in: the right one is then too late.
    let t = unix_now();
    let wrong = wrong_code(&seed, t);
    for _ in 0..5 {
        assert_eq!(second(&b, "code", &wrong).status, 401);
    }
    assert_redirects_to(&b.get("/login/second"), "/login");
    let page = b.get("/login");
    let csrf = page.csrf().expect("csrf");
    let late = b.post_form(
        "/login/second",
        &[("csrf", &csrf), ("code", &code_at(&seed, t))],
    );
    assert_redirects_to(&late, "/login");
    assert_eq!(b.get("/auth/verify").status, 401);
}

#[test]
fn wrong_codes_are_throttled_like_passwords() {
    let app = TestApp::spawn_with(&[("metrics", "true")]);
    let (b, seed, _) = enrolled_alice(&app);
    let t = unix_now();
    let wrong = wrong_code(&seed, t);
    // Two wrong codes per sign-in: the right password in between does not
    // wash the count out (it clears it only when no second step follows),
    // and the fifth failure locks the name.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        password_step(&b, "alice");
        for _ in 0..2 {
            statuses.push(second(&b, "code", &wrong).status);
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429], "{statuses:?}");
    // Counted on the stable login lines' reason.
    let metrics = b.get("/metrics").body;
    assert!(metrics.contains("wrong_code"), "{metrics}");
    // Locked: the password waits too.
    let again = b.login("alice", "correct horse");
    assert_eq!(again.status, 429, "the username is locked: {}", again.body);
}

#[test]
fn a_recovery_code_works_once_and_says_how_many_are_left() {
    let app = TestApp::spawn();
    let (b, _, codes) = enrolled_alice(&app);

    password_step(&b, "alice");
    let used = second(&b, "recovery", &codes[3].to_uppercase());
    assert_eq!(used.status, 200, "{}", used.body);
    assert!(
        used.text_of("recovery-left")
            .is_some_and(|t| t.contains("9 recovery codes")),
        "{}",
        used.body
    );
    assert_eq!(methods(&b), serde_json::json!(["pwd", "recovery"]));
    b.logout();

    password_step(&b, "alice");
    assert_eq!(second(&b, "recovery", &codes[3]).status, 401);
    assert_eq!(second(&b, "recovery", &codes[4]).status, 200);

    // New codes replace the old ones.
    let account = b.get("/account");
    assert!(account.body.contains("8 codes left"), "{}", account.body);
    let csrf = account.csrf().expect("csrf");
    let fresh = recovery_codes(&b.post_form("/account/recovery", &[("csrf", &csrf)]));
    assert_eq!(fresh.len(), 10);
    b.logout();
    password_step(&b, "alice");
    assert_eq!(second(&b, "recovery", &codes[5]).status, 401);
    assert_eq!(second(&b, "recovery", &fresh[0]).status, 200);
}

#[test]
fn remember_me_and_next_survive_the_second_step() {
    let app = TestApp::spawn();
    let (b, seed, _) = enrolled_alice(&app);

    let form = b.get("/login?next=/account");
    let csrf = form.csrf().expect("csrf");
    let resp = b.post_form(
        "/login",
        &[
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", "correct horse"),
            ("remember", "1"),
            ("next", "/account"),
        ],
    );
    assert_redirects_to(&resp, "/login/second");
    assert!(
        resp.cookie("gatehouse_session")
            .is_none_or(|c| !c.contains("Max-Age")),
        "no lasting cookie before the second step: {resp:?}"
    );
    let done = second(&b, "code", &code_at(&seed, unix_now()));
    assert_redirects_to(&done, "/account");
    let cookie = done.cookie("gatehouse_session").expect("a new cookie");
    assert!(cookie.contains("Max-Age="), "remember-me: {cookie}");
}

#[test]
fn a_user_with_a_second_factor_cannot_add_one_from_a_password_only_session() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let old = app.browser();
    old.login("alice", "correct horse");
    factor_from_before(&app, "alice");

    // The older session signed in with the password alone: it may not
    // change the factors (a password thief would add their own).
    let account = old.get("/account");
    assert!(account.body.contains("id=\"step-up\""), "{}", account.body);
    let csrf = account.csrf().expect("csrf");
    for path in ["/account/totp", "/account/totp/remove", "/account/recovery"] {
        let refused = old.post_form(path, &[("csrf", &csrf)]);
        assert_redirects_to(&refused, "/login/second?next=/account");
    }
    // Nor see the confirm step of a removal.
    assert_redirects_to(
        &old.get("/account/totp/remove"),
        "/login/second?next=/account",
    );
    let alice = app.state().users.get_by_name("alice").expect("alice");
    let factors = app.state().users.factors().summary(alice.id).expect("s");
    assert!(factors.totp && factors.recovery_left == 0, "{factors:?}");
}

#[test]
fn turning_off_the_authenticator_goes_through_a_confirm_step() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    enrol(&b);
    // The account page asks for the confirm step; it posts no removal.
    let account = b.get("/account");
    assert!(
        account.body.contains("id=\"totp-remove\""),
        "{}",
        account.body
    );
    assert!(
        account
            .body
            .contains("<form method=\"get\" action=\"/account/totp/remove\">")
    );
    assert!(
        !account
            .body
            .contains("method=\"post\" action=\"/account/totp/remove\"")
    );
    let confirm = b.get("/account/totp/remove");
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("id=\"turn-off-totp-form\""),
        "{}",
        confirm.body
    );
    assert!(
        confirm
            .body
            .contains("method=\"post\" action=\"/account/totp/remove\"")
    );
    assert!(confirm.body.contains("class=\"danger solid\""));
    let csrf = confirm.csrf().expect("csrf");
    let done = b.post_form("/account/totp/remove", &[("csrf", &csrf)]);
    assert_redirects_to(&done, "/account?done=totp-removed#two-factor");
    assert!(b.get("/account").body.contains("id=\"totp-off\""));
    // With none left, there is nothing to confirm.
    assert_redirects_to(&b.get("/account/totp/remove"), "/account#two-factor");
}

#[test]
fn the_api_signs_in_in_two_calls() {
    let app = TestApp::spawn();
    let (_, seed, _) = enrolled_alice(&app);

    let api = app.browser();
    let first = api.send_json(
        "POST",
        "/api/login",
        r#"{"username":"alice","password":"correct horse"}"#,
        &[],
    );
    assert_eq!(first.status, 202, "{}", first.body);
    let v: Value = serde_json::from_str(&first.body).expect("json");
    assert_eq!(v["second_factor"], true);
    assert_eq!(api.get("/api/session").status, 401);
    let t = unix_now();
    let wrong = wrong_code(&seed, t);
    let refused = api.send_json(
        "POST",
        "/api/login/second",
        &format!(r#"{{"code":"{wrong}"}}"#),
        &[],
    );
    assert_eq!(refused.status, 401, "{}", refused.body);
    let ok = api.send_json(
        "POST",
        "/api/login/second",
        &format!(r#"{{"code":"{}"}}"#, code_at(&seed, t)),
        &[],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v: Value = serde_json::from_str(&ok.body).expect("json");
    assert_eq!(v["user"]["name"], "alice");
    assert_eq!(v["methods"], serde_json::json!(["pwd", "otp"]));
    assert_eq!(methods(&api), serde_json::json!(["pwd", "otp"]));
    // Nothing pending any more.
    let late = api.send_json("POST", "/api/login/second", r#"{"code":"123456"}"#, &[]);
    assert_eq!(late.status, 401);
    assert_eq!(
        api.send_json("POST", "/api/login/second", r#"{"code":1}"#, &[])
            .status,
        400
    );
}

#[test]
fn an_administrators_reset_removes_the_factors_and_ends_the_sessions() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    app.add_user("root", "correct horse", true);
    let b = app.browser();
    b.login("alice", "correct horse");
    enrol(&b);
    let root = app.browser();
    root.login("root", "correct horse");
    // Resetting the factors of a user who has one takes an administrator
    // who gave a second factor too.
    enrol(&root);
    let admin = root.get("/admin/users");
    assert!(admin.body.contains("authenticator app"), "{}", admin.body);
    // The list leads to a confirm step, which cannot be undone: the list
    // itself posts no reset.
    assert!(
        admin
            .body
            .contains("href=\"/admin/users/reset-2fa?username=alice\"")
    );
    assert!(!admin.body.contains("action=\"/admin/users/reset-2fa\""));
    let confirm = root.get("/admin/users/reset-2fa?username=alice");
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("id=\"reset-2fa-form\""),
        "{}",
        confirm.body
    );
    assert!(confirm.body.contains("action=\"/admin/users/reset-2fa\""));
    assert_eq!(
        root.get("/admin/users/reset-2fa?username=nobody").status,
        404
    );
    let csrf = confirm.csrf().expect("csrf");
    let done = root.post_form(
        "/admin/users/reset-2fa",
        &[("csrf", &csrf), ("username", "alice")],
    );
    assert_redirects_to(&done, "/admin/users?done=factors-reset");
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(b.get("/account").status, 303, "alice was signed out");
    // Her password alone signs her in again.
    assert_redirects_to(&b.login("alice", "correct horse"), "/");
    assert!(b.get("/account").body.contains("id=\"totp-off\""));

    // The same from the command line.
    enrol(&b);
    let out = crate::cli::gatehouse(app.dir.path(), &["user", "reset-2fa", "alice"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ended 1 session"));
    assert_eq!(b.get("/account").status, 303);
    assert_redirects_to(&b.login("alice", "correct horse"), "/");
}

#[test]
fn required_sends_a_user_without_a_factor_to_set_one_up_first() {
    let app = TestApp::spawn_with(&[("two_factor", "required")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    let resp = b.login_with("alice", "correct horse", &[("next", "/account")]);
    assert_redirects_to(&resp, "/login/enrol");
    // Nowhere else first.
    assert_eq!(b.get("/").status, 303);
    assert_eq!(b.get("/auth/verify").status, 401);
    assert_redirects_to(&b.get("/login/second"), "/login/enrol");
    let page = b.get("/login/enrol");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"enrol-required\""));
    let (_, seed) = secret_of(&page);
    // The same secret while the set-up is open.
    assert_eq!(secret_of(&b.get("/login/enrol")).1, seed);
    let csrf = page.csrf().expect("csrf");
    let t = unix_now();
    let wrong = wrong_code(&seed, t);
    assert_eq!(
        b.post_form("/login/enrol", &[("csrf", &csrf), ("code", &wrong)])
            .status,
        400
    );
    let done = b.post_form(
        "/login/enrol",
        &[("csrf", &csrf), ("code", &code_at(&seed, t))],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(recovery_codes(&done).len(), 10);
    assert!(done.body.contains("href=\"/account\""), "continue to next");
    assert_eq!(b.get("/account").status, 200);
    assert_eq!(methods(&b), serde_json::json!(["pwd", "otp"]));
    b.logout();
    password_step(&b, "alice");
}

#[test]
fn an_app_with_two_factor_refuses_a_password_only_session_until_the_second_step() {
    let app = TestApp::spawn_with_file(
        r#"
[[apps]]
name = "vault"
host = "vault.lan"
two_factor = true

[[apps]]
name = "wiki"
host = "wiki.lan"
"#,
        &[("trusted_proxies", "127.0.0.0/8")],
    );
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let verify = |host: &str| {
        b.get_with(
            "/auth/verify",
            &[("X-Forwarded-Host", host), ("X-Original-URI", "/")],
        )
    };
    assert_eq!(verify("wiki.lan").status, 200);
    assert_eq!(
        verify("wiki.lan").header("Remote-Auth-Methods"),
        Some("pwd")
    );
    assert_eq!(verify("vault.lan").status, 401);
    // nginx sends the browser to /login, which sends it on to the second
    // step; with no factor yet, that page says to set one up.
    let login = b.get("/login?next=http://vault.lan/");
    assert_redirects_to(&login, "/login/second?next=http%3A%2F%2Fvault.lan%2F");
    // A query right after the host is still the app (it looped once).
    let login = b.get("/login?next=http://vault.lan?x=1");
    assert_redirects_to(&login, "/login/second?next=http%3A%2F%2Fvault.lan%3Fx%3D1");
    let page = b.get("/login/second?next=http://vault.lan/");
    assert!(page.body.contains("id=\"needs-factor\""), "{}", page.body);

    // Setting one up on /account is a second factor for this session.
    let (seed, _) = enrol(&b);
    assert_eq!(verify("vault.lan").status, 200);
    assert_eq!(
        verify("vault.lan").header("Remote-Auth-Methods"),
        Some("pwd,otp")
    );

    // A new password-only sign-in cannot happen for her now; an older
    // session that had only the password steps up and goes back.
    let old = app.browser();
    old.login("alice", "correct horse");
    let t = unix_now();
    let done = second(&old, "code", &code_at(&seed, t));
    assert_redirects_to(&done, "/");
    let verify_old = old.get_with(
        "/auth/verify",
        &[("X-Forwarded-Host", "vault.lan"), ("X-Original-URI", "/")],
    );
    assert_eq!(verify_old.status, 200);
}

#[test]
fn a_password_only_session_steps_up_and_is_sent_back() {
    let app = TestApp::spawn_with_file(
        r#"
[[apps]]
name = "vault"
host = "vault.lan"
two_factor = true
"#,
        &[("trusted_proxies", "127.0.0.0/8")],
    );
    app.add_user("alice", "correct horse", false);
    // A session from before the authenticator was set up.
    let old = app.browser();
    old.login("alice", "correct horse");
    let seed = factor_from_before(&app, "alice");

    let forward = old.get_with(
        "/auth/forward",
        &[
            ("X-Forwarded-Host", "vault.lan"),
            ("X-Forwarded-Uri", "/notes"),
        ],
    );
    assert_eq!(forward.status, 302, "{forward:?}");
    let to = forward.header("Location").expect("location").to_owned();
    let path = to.trim_start_matches(&old.base);
    let login = old.get(path);
    let step = login
        .header("Location")
        .expect("on to the second step")
        .to_owned();
    assert!(step.starts_with("/login/second?next="), "{step}");
    let page = old.get(&step);
    assert_eq!(page.status, 200);
    let csrf = page.csrf().expect("csrf");
    let next = page.body[page.body.find("name=\"next\" value=\"").expect("next") + 19..]
        .split('"')
        .next()
        .expect("value")
        .to_owned();
    let done = old.post_form(
        "/login/second",
        &[
            ("csrf", &csrf),
            ("next", &next),
            ("code", &code_at(&seed, unix_now())),
        ],
    );
    assert_redirects_to(&done, "http://vault.lan/notes");
    let forward = old.get_with(
        "/auth/forward",
        &[
            ("X-Forwarded-Host", "vault.lan"),
            ("X-Forwarded-Uri", "/notes"),
        ],
    );
    assert_eq!(forward.status, 200);
}

#[test]
fn the_database_holds_no_seed_and_no_recovery_code_in_the_clear() {
    if !crate::helpers::on_sqlite("the_database_holds_no_seed") {
        return;
    }
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let account = b.get("/account");
    let csrf = account.csrf().expect("csrf");
    let setup = b.post_form("/account/totp", &[("csrf", &csrf)]);
    let (b32, seed) = secret_of(&setup);
    let t = unix_now();
    let shown = b.post_form(
        "/account/totp/confirm",
        &[("csrf", &csrf), ("code", &code_at(&seed, t))],
    );
    let codes = recovery_codes(&shown);
    assert_eq!(codes.len(), 10);
    // The seed is stored (sealed): there is a row, and it is not the seed.
    let stored: Vec<u8> = app
        .db()
        .query_row("SELECT seed FROM totp", [], |r| r.get(0))
        .expect("a totp row");
    assert!(stored.len() > seed.len());
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", app.db_path().display());
        if let Ok(b) = std::fs::read(&path) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty());
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(&seed), "the raw seed");
    assert!(!contains(b32.as_bytes()), "the base32 seed");
    for c in &codes {
        assert!(!contains(c.as_bytes()), "{c}");
        assert!(!contains(c.replace('-', "").as_bytes()), "{c}");
    }
    // Sanity: the file does hold what it should (the test can fail).
    assert!(contains(b"alice"));
}

#[test]
fn signing_in_as_someone_else_keeps_the_first_user_until_the_second_step() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let (seed, _) = enrol(&b);
    b.logout();

    b.login("bob", "correct horse");
    assert_eq!(
        b.get("/login?next=/").status,
        303,
        "a signed-in visitor is sent on"
    );
    // Bob's browser posts alice's password (a form from another tab):
    // pending, and still bob until the second step.
    let form = app.browser().get("/login");
    let anon = form.csrf().expect("csrf");
    if let Some(c) = form.cookie("gatehouse_csrf") {
        let value = c
            .split(';')
            .next()
            .unwrap_or("")
            .trim_start_matches("gatehouse_csrf=");
        b.set_cookie("gatehouse_csrf", value);
    }
    let resp = b.post_form(
        "/login",
        &[
            ("csrf", &anon),
            ("username", "alice"),
            ("password", "correct horse"),
        ],
    );
    assert_redirects_to(&resp, "/login/second");
    assert_eq!(b.get("/auth/verify").header("Remote-User"), Some("bob"));
    let done = second(&b, "code", &code_at(&seed, unix_now()));
    assert_redirects_to(&done, "/");
    assert_eq!(b.get("/auth/verify").header("Remote-User"), Some("alice"));
    assert_eq!(methods(&b), serde_json::json!(["pwd", "otp"]));
}

#[test]
fn a_sign_in_sent_to_set_up_cannot_add_a_factor_once_the_owner_has_one() {
    let app = TestApp::spawn_with(&[("two_factor", "required")]);
    app.add_user("bob", "correct horse", false);
    // The attacker, with the password only, waits at the set-up.
    let attacker = app.browser();
    assert_redirects_to(&attacker.login("bob", "correct horse"), "/login/enrol");
    let theirs = attacker.get("/login/enrol");
    let (_, their_seed) = secret_of(&theirs);
    let their_csrf = theirs.csrf().expect("csrf");

    // The owner sets up an authenticator.
    let owner = app.browser();
    assert_redirects_to(&owner.login("bob", "correct horse"), "/login/enrol");
    let page = owner.get("/login/enrol");
    let (_, seed) = secret_of(&page);
    let csrf = page.csrf().expect("csrf");
    let t = unix_now();
    let done = owner.post_form(
        "/login/enrol",
        &[("csrf", &csrf), ("code", &code_at(&seed, t))],
    );
    assert_eq!(done.status, 200, "{}", done.body);

    // Now the attacker's set-up is a second step they cannot give.
    assert_redirects_to(&attacker.get("/login/enrol"), "/login/second");
    let late = attacker.post_form(
        "/login/enrol",
        &[("csrf", &their_csrf), ("code", &code_at(&their_seed, t))],
    );
    assert_redirects_to(&late, "/login");
    let options = attacker.post_form("/login/enrol/passkey/options", &[("csrf", &their_csrf)]);
    assert_eq!(options.status, 400, "{}", options.body);
    assert_eq!(attacker.get("/auth/verify").status, 401);
    // The owner's authenticator is still the one in force.
    let again = app.browser();
    password_step(&again, "bob");
    assert_eq!(
        second(&again, "code", &code_at(&their_seed, unix_now())).status,
        401
    );
    let t = unix_now();
    assert_redirects_to(&second(&again, "code", &code_at(&seed, t + 30)), "/");
}

#[test]
fn a_new_password_ends_a_sign_in_waiting_for_its_second_step() {
    let app = TestApp::spawn();
    let alice = app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let (seed, _) = enrol(&b);
    b.logout();

    let attacker = app.browser();
    password_step(&attacker, "alice");
    app.state()
        .users
        .set_password(alice.id, "a brand new password")
        .expect("new password");
    assert_redirects_to(&attacker.get("/login/second"), "/login");
    let csrf = attacker.get("/login").csrf().expect("csrf");
    let late = attacker.post_form(
        "/login/second",
        &[("csrf", &csrf), ("code", &code_at(&seed, unix_now()))],
    );
    assert_redirects_to(&late, "/login");
    assert_eq!(attacker.get("/auth/verify").status, 401);
}

#[test]
fn an_administrator_with_a_factor_acts_only_from_a_session_that_gave_it() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "correct horse", false);
    // A session from before the authenticator was set up.
    let old = app.browser();
    old.login("root", "correct horse");
    factor_from_before(&app, "root");

    let csrf = old.get("/admin/users").csrf().expect("csrf");
    for (path, fields) in [
        ("/admin/users/reset-2fa", vec![("username", "root")]),
        ("/admin/users/grant-admin", vec![("username", "bob")]),
    ] {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(fields);
        assert_redirects_to(&old.post_form(path, &all), "/login/second?next=/admin");
    }
    let root = app.state().users.get_by_name("root").expect("root");
    assert!(
        app.state()
            .users
            .factors()
            .summary(root.id)
            .expect("s")
            .totp
    );
    assert!(!app.state().users.get_by_name("bob").expect("bob").is_admin);
}
