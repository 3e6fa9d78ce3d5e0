//! The audit log: every kind of security event, caused through the page,
//! the JSON API or the command line that causes it, and read back through
//! `/admin/audit` (its JSON lines export, and the page) or `gatehouse
//! audit`; who may read it (administrators; users their own, on
//! `/account`); a restart; the trim after `audit_retention`; hostile
//! filters, cursors and user agents; and a flood of failures that must
//! neither slow the gate nor grow the table past its budget.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::authenticator::Authenticator;
use crate::cli::{fails, gatehouse, ok};
use crate::factors::{code_at, enrol, password_step, second, unix_now, wrong_code};
use crate::helpers::{Browser, Resp, TestApp, assert_redirects_to, enc};

/// A server with `settings`, its administrator `root` signed in.
fn with_root(settings: &[(&str, &str)]) -> (TestApp, Browser) {
    let app = TestApp::spawn_with(settings);
    app.add_user("root", "correct horse", true);
    let root = app.browser();
    assert_redirects_to(&root.login("root", "correct horse"), "/");
    (app, root)
}

/// Every event `/admin/audit.jsonl?{query}` gives `admin`, newest first.
fn events(admin: &Browser, query: &str) -> Vec<Value> {
    let r = admin.get(&format!("/admin/audit.jsonl?{query}"));
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/x-ndjson; charset=utf-8")
    );
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    r.body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The events of `kind` (newest first).
fn of_kind(admin: &Browser, kind: &str) -> Vec<Value> {
    events(admin, &format!("kind={kind}"))
}

/// The one newest event of `kind`.
fn newest(admin: &Browser, kind: &str) -> Value {
    of_kind(admin, kind)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {kind} event"))
}

/// `field` of `event` as text (`""` for null).
fn s<'a>(event: &'a Value, field: &str) -> &'a str {
    event[field].as_str().unwrap_or("")
}

/// Asserts `event` is `kind` with `outcome`, by `actor` to `subject`,
/// and its detail holds every one of `detail`.
#[track_caller]
fn assert_event(
    event: &Value,
    kind: &str,
    outcome: &str,
    (actor, subject): (Option<&str>, Option<&str>),
    detail: &[&str],
) {
    assert_eq!(s(event, "kind"), kind, "{event}");
    assert_eq!(s(event, "outcome"), outcome, "{event}");
    assert_eq!(event["actor"].as_str(), actor, "{event}");
    assert_eq!(event["subject"].as_str(), subject, "{event}");
    for d in detail {
        assert!(s(event, "detail").contains(d), "{d:?} in {event}");
    }
    assert!(s(event, "at").ends_with('Z'), "{event}");
}

/// An administrator's form post, with the token from the users page.
fn admin_post(b: &Browser, action: &str, fields: &[(&str, &str)]) -> Resp {
    let csrf = b
        .get("/admin/users")
        .csrf()
        .expect("csrf on the admin page");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all)
}

/// A signed-in user's form post, with the token from the account page.
fn account_post(b: &Browser, action: &str, fields: &[(&str, &str)]) -> Resp {
    let csrf = b.get("/account").csrf().expect("csrf on the account page");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all)
}

/// A browser that says it is `agent`.
fn browser_as(app: &TestApp, agent: &str) -> Browser {
    let mut b = app.browser();
    b.headers.push(("User-Agent".into(), agent.into()));
    b
}

/// `gatehouse audit ARGS --json` on `app`'s data: the events it prints.
fn cli_events(app: &TestApp, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    ok(&gatehouse(app.dir.path(), &all, None))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn password_sign_ins_are_recorded_with_outcome_reason_address_and_agent() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    app.add_user("carol", "correct horse", false);
    assert_redirects_to(
        &admin_post(&root, "/admin/users/disable", &[("username", "carol")]),
        "/admin/users?done=user-disabled",
    );
    let b = browser_as(&app, "AuditTester/1.0 (X11; Linux)");
    assert_eq!(b.login("alice", "wrong one").status, 401);
    assert_eq!(b.login("nobody-at-all", "whatever").status, 401);
    assert_eq!(b.login("carol", "correct horse").status, 401);
    assert_redirects_to(&b.login("alice", "correct horse"), "/");
    let api = browser_as(&app, "ScriptClient/2");
    let signed = api.send_json(
        "POST",
        "/api/login",
        r#"{"username":"alice","password":"correct horse"}"#,
        &[],
    );
    assert_eq!(signed.status, 200, "{}", signed.body);

    let alice = events(&root, "kind=sign_in&user=alice");
    assert_eq!(alice.len(), 3, "{alice:?}");
    assert_event(
        &alice[0],
        "sign_in",
        "ok",
        (Some("alice"), Some("alice")),
        &["method=password", "methods=pwd", "via=api"],
    );
    assert_eq!(s(&alice[0], "user_agent"), "ScriptClient/2");
    assert_event(
        &alice[1],
        "sign_in",
        "ok",
        (Some("alice"), Some("alice")),
        &["method=password"],
    );
    assert!(!s(&alice[1], "detail").contains("via="), "{}", alice[1]);
    assert_eq!(s(&alice[1], "ip"), "127.0.0.1");
    assert_eq!(s(&alice[1], "user_agent"), "AuditTester/1.0 (X11; Linux)");
    assert_event(
        &alice[2],
        "sign_in",
        "failed",
        (None, Some("alice")),
        &["method=password", "reason=wrong_password"],
    );
    let unknown = events(&root, "kind=sign_in&user=nobody-at-all");
    assert_event(
        &unknown[0],
        "sign_in",
        "failed",
        (None, Some("nobody-at-all")),
        &["reason=unknown_user"],
    );
    let disabled = events(&root, "kind=sign_in&outcome=failed&user=carol");
    assert_event(
        &disabled[0],
        "sign_in",
        "failed",
        (None, Some("carol")),
        &["reason=disabled"],
    );
    // The page shows them too, each row by its id.
    let page = root.get("/admin/audit?kind=sign_in&user=alice");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("Cache-Control"), Some("no-store"));
    for e in &alice {
        assert!(
            page.body.contains(&format!("id=\"audit-{}\"", e["id"])),
            "{}",
            page.body
        );
    }
    assert!(page.body.contains("AuditTester/1.0"));
}

#[test]
fn a_second_step_is_recorded_pending_then_failed_or_ok() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let (seed, _) = enrol(&b);
    b.logout();
    password_step(&b, "alice");
    let t = unix_now();
    assert_eq!(second(&b, "code", &wrong_code(&seed, t)).status, 401);
    assert_redirects_to(&second(&b, "code", &code_at(&seed, t)), "/");

    let signed = events(&root, "user=alice&kind=sign_in");
    assert_event(
        &signed[0],
        "sign_in",
        "pending",
        (None, Some("alice")),
        &["method=password", "then=second_step"],
    );
    let steps = of_kind(&root, "second_step");
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_event(
        &steps[0],
        "second_step",
        "ok",
        (Some("alice"), Some("alice")),
        &["method=otp", "methods=pwd,otp"],
    );
    assert_event(
        &steps[1],
        "second_step",
        "failed",
        (None, Some("alice")),
        &["method=otp", "reason=wrong_code"],
    );
    // The same through the API, with a recovery code that is wrong.
    let api = app.browser();
    let first = api.send_json(
        "POST",
        "/api/login",
        r#"{"username":"alice","password":"correct horse"}"#,
        &[],
    );
    assert_eq!(first.status, 202, "{}", first.body);
    let wrong = api.send_json(
        "POST",
        "/api/login/second",
        r#"{"recovery_code":"nope-nope"}"#,
        &[],
    );
    assert_eq!(wrong.status, 401);
    assert_event(
        &newest(&root, "second_step"),
        "second_step",
        "failed",
        (None, Some("alice")),
        &["method=recovery", "reason=wrong_code"],
    );
}

#[test]
fn passkeys_are_recorded_when_added_used_refused_and_removed() {
    let (app, root) = with_root(&[("public_url", "http://localhost")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let mut key = Authenticator::new(21);
    let csrf = b.get("/account").csrf().expect("csrf");
    let options = b.post_form("/account/passkeys/options", &[("csrf", &csrf)]);
    assert_eq!(options.status, 200, "{}", options.body);
    let made = b.post_form(
        "/account/passkeys",
        &[
            ("csrf", &csrf),
            ("name", "laptop"),
            ("credential", &key.create(&options.body)),
        ],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    assert_event(
        &newest(&root, "factor_added"),
        "factor_added",
        "ok",
        (Some("alice"), Some("alice")),
        &["factor=passkey", "name=laptop", "recovery_codes=new"],
    );
    b.logout();

    let anon = app.browser();
    let csrf = anon.get("/login").csrf().expect("csrf");
    let options = anon.post_form("/login/passkey/options", &[("csrf", &csrf)]);
    let answer = key.get(&options.body);
    assert_redirects_to(
        &anon.post_form(
            "/login/passkey",
            &[("csrf", &csrf), ("credential", &answer)],
        ),
        "/",
    );
    assert_event(
        &events(&root, "kind=sign_in&user=alice")[0],
        "sign_in",
        "ok",
        (Some("alice"), Some("alice")),
        &["method=passkey"],
    );
    // The same answer again: refused, and recorded as a failed passkey.
    let thief = app.browser();
    thief.set_cookie(
        "gatehouse_passkey",
        &anon.cookie("gatehouse_passkey").unwrap_or_default(),
    );
    let csrf = thief.get("/login").csrf().expect("csrf");
    let options = thief.post_form("/login/passkey/options", &[("csrf", &csrf)]);
    assert_eq!(options.status, 200);
    assert_redirects_to(
        &thief.post_form(
            "/login/passkey",
            &[("csrf", &csrf), ("credential", &answer)],
        ),
        "/login?passkey=failed",
    );
    let failed = events(&root, "kind=sign_in&outcome=failed");
    assert!(
        failed
            .iter()
            .any(|e| s(e, "detail").contains("method=passkey reason=wrong_passkey")),
        "{failed:?}"
    );

    // Removed from the account page.
    let user = app.state().users.get_by_name("alice").expect("alice");
    let id = app
        .state()
        .users
        .factors()
        .passkeys(user.id)
        .expect("passkeys")[0]
        .id
        .to_string();
    let removed = account_post(&anon, "/account/passkeys/remove", &[("id", &id)]);
    assert_eq!(removed.status, 303, "{}", removed.body);
    assert_event(
        &newest(&root, "factor_removed"),
        "factor_removed",
        "ok",
        (Some("alice"), Some("alice")),
        &["factor=passkey"],
    );
}

#[test]
fn authenticator_and_recovery_codes_are_recorded_added_removed_and_reset() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    enrol(&b);
    assert_event(
        &newest(&root, "factor_added"),
        "factor_added",
        "ok",
        (Some("alice"), Some("alice")),
        &["factor=totp", "recovery_codes=new"],
    );
    let codes = account_post(&b, "/account/recovery", &[]);
    assert_eq!(codes.status, 200, "{}", codes.body);
    assert_event(
        &newest(&root, "factor_added"),
        "factor_added",
        "ok",
        (Some("alice"), Some("alice")),
        &["factor=recovery_codes"],
    );
    assert_eq!(account_post(&b, "/account/totp/remove", &[]).status, 303);
    assert_event(
        &newest(&root, "factor_removed"),
        "factor_removed",
        "ok",
        (Some("alice"), Some("alice")),
        &["factor=totp"],
    );
    // An administrator's reset of what she has left (her recovery codes),
    // by one whose session gave a second factor, as the rule asks; then
    // the command line's.
    enrol(&root);
    let confirm = root.get("/admin/users/reset-2fa?username=alice");
    let csrf = confirm.csrf().expect("csrf");
    assert_redirects_to(
        &root.post_form(
            "/admin/users/reset-2fa",
            &[("csrf", &csrf), ("username", "alice")],
        ),
        "/admin/users?done=factors-reset",
    );
    assert_event(
        &newest(&root, "factors_reset"),
        "factors_reset",
        "ok",
        (Some("root"), Some("alice")),
        &["sessions_ended=1"],
    );
    ok(&gatehouse(
        app.dir.path(),
        &["user", "reset-2fa", "alice"],
        None,
    ));
    assert_event(
        &newest(&root, "factors_reset"),
        "factors_reset",
        "ok",
        (None, Some("alice")),
        &["via=cli"],
    );
}

#[test]
fn tokens_are_recorded_made_used_once_an_hour_refused_and_revoked() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let made = account_post(
        &b,
        "/account/tokens",
        &[("name", "backup script"), ("expires", "30d")],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    let token = made
        .body
        .split("id=\"new-token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the new token is shown")
        .to_owned();
    let created = newest(&root, "token_created");
    assert_event(
        &created,
        "token_created",
        "ok",
        (Some("alice"), Some("alice")),
        // A name of more than one word is quoted: it cannot read as more
        // fields (`x via=cli`).
        &["name=\"backup script\"", "apps=*"],
    );
    assert!(
        !created.to_string().contains(&token),
        "the token itself is never recorded"
    );
    // Used five times at the gate: one record (a script's every request
    // is no row each).
    let script = app.browser();
    for _ in 0..5 {
        let r = script.get_with(
            "/auth/verify",
            &[("Authorization", &format!("Bearer {token}"))],
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let used: Vec<Value> = events(&root, "kind=sign_in&user=alice")
        .into_iter()
        .filter(|e| s(e, "detail").contains("method=token"))
        .collect();
    assert_eq!(used.len(), 1, "{used:?}");
    assert_event(
        &used[0],
        "sign_in",
        "ok",
        (Some("alice"), Some("alice")),
        &["method=token token="],
    );
    // A bad token is refused and recorded.
    let bad = format!("Bearer ght_{}", "x".repeat(43));
    assert_eq!(
        script
            .get_with("/auth/verify", &[("Authorization", &bad)])
            .status,
        401
    );
    assert_event(
        &newest(&root, "sign_in"),
        "sign_in",
        "failed",
        (None, None),
        &["method=token", "reason=unknown_token"],
    );
    // Revoked by its user.
    let id = s(&created, "detail")
        .split("token=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("the token's id")
        .to_owned();
    assert_redirects_to(
        &account_post(&b, "/account/tokens/revoke", &[("id", &id)]),
        "/account?done=token-revoked",
    );
    assert_event(
        &newest(&root, "token_revoked"),
        "token_revoked",
        "ok",
        (Some("alice"), Some("alice")),
        &[&format!("token={id}")],
    );
    // Made at the command line, revoked by an administrator.
    let out = ok(&gatehouse(
        app.dir.path(),
        &["token", "create", "alice", "--name", "monitor"],
        None,
    ));
    assert!(out.starts_with("ght_"));
    let by_cli = newest(&root, "token_created");
    assert_event(
        &by_cli,
        "token_created",
        "ok",
        (None, Some("alice")),
        &["name=monitor", "via=cli"],
    );
    let id = s(&by_cli, "detail")
        .split("token=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("id")
        .to_owned();
    let csrf = root.get("/admin/tokens").csrf().expect("csrf");
    assert_eq!(
        root.post_form("/admin/tokens/revoke", &[("csrf", &csrf), ("id", &id)])
            .status,
        303
    );
    assert_event(
        &newest(&root, "token_revoked"),
        "token_revoked",
        "ok",
        (Some("root"), Some("alice")),
        &[&format!("token={id}")],
    );
}

#[test]
fn basic_passwords_at_the_gate_are_recorded_once_an_hour_and_failures_each() {
    let (upstream, stop) = crate::helpers::upstream(|_| rouille::Response::text("app"));
    let app = TestApp::spawn_with_file(
        &format!(
            "[[apps]]\nname = \"books\"\nprefix = \"/apps/books/\"\nupstream = \"http://{upstream}\"\nbasic_auth = \"password\"\n"
        ),
        &[],
    );
    app.add_user("root", "correct horse", true);
    app.add_user("alice", "correct horse", false);
    let root = app.browser();
    root.login("root", "correct horse");
    let basic = |name: &str, password: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"))
        )
    };
    let client = app.browser();
    for _ in 0..3 {
        let r = client.get_with(
            "/apps/books/",
            &[("Authorization", &basic("alice", "correct horse"))],
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = client.get_with(
        "/apps/books/",
        &[("Authorization", &basic("alice", "not it"))],
    );
    assert_eq!(r.status, 401);
    let alice = events(&root, "kind=sign_in&user=alice");
    assert_eq!(alice.len(), 2, "{alice:?}");
    assert_event(
        &alice[0],
        "sign_in",
        "failed",
        (None, Some("alice")),
        &["method=basic", "reason=wrong_password"],
    );
    assert_event(
        &alice[1],
        "sign_in",
        "ok",
        (Some("alice"), Some("alice")),
        &["method=basic"],
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn a_directory_sign_in_is_recorded_as_the_directorys() {
    let Some(slapd) = crate::slapd::Slapd::start("audit::directory") else {
        return;
    };
    let settings: Vec<(String, String)> = [
        ("ldap.url", slapd.ldaps_url()),
        ("ldap.ca_file", slapd.ca_file.display().to_string()),
        ("ldap.base_dn", "dc=example,dc=org".to_owned()),
        ("ldap.bind_dn", crate::slapd::SERVICE_DN.to_owned()),
        (
            "ldap.bind_password",
            crate::slapd::SERVICE_PASSWORD.to_owned(),
        ),
        ("ldap.connect_timeout", "10s".to_owned()),
        ("ldap.operation_timeout", "10s".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let app = TestApp::spawn_in(tempfile::tempdir().expect("dir"), settings);
    app.add_user("root", "correct horse", true);
    let root = app.browser();
    root.login("root", "correct horse");
    assert_eq!(app.browser().login("alice", "alice-password").status, 303);
    assert_eq!(app.browser().login("alice", "not hers").status, 401);
    let alice = events(&root, "kind=sign_in&user=alice");
    assert_event(
        &alice[0],
        "sign_in",
        "failed",
        (None, Some("alice")),
        &["reason=wrong_password"],
    );
    assert_event(
        &alice[1],
        "sign_in",
        "ok",
        (Some("alice"), Some("alice")),
        &["method=directory"],
    );
    // A local user's is a password's.
    assert_event(
        &events(&root, "kind=sign_in&user=root")[0],
        "sign_in",
        "ok",
        (Some("root"), Some("root")),
        &["method=password"],
    );
}

#[test]
fn an_administrators_password_confirmation_is_recorded_right_and_wrong() {
    let (app, root) = with_root(&[("admin_reauth", "0s")]);
    app.add_user("alice", "correct horse", false);
    let wrong = admin_post(
        &root,
        "/admin/users/disable",
        &[("username", "alice"), ("reauth_password", "not mine")],
    );
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let right = admin_post(
        &root,
        "/admin/users/disable",
        &[("username", "alice"), ("reauth_password", "correct horse")],
    );
    assert_redirects_to(&right, "/admin/users?done=user-disabled");
    let confirmed = of_kind(&root, "password_confirmed");
    assert_eq!(confirmed.len(), 2, "{confirmed:?}");
    assert_event(
        &confirmed[0],
        "password_confirmed",
        "ok",
        (Some("root"), Some("root")),
        &["for=admin"],
    );
    assert_event(
        &confirmed[1],
        "password_confirmed",
        "failed",
        (None, Some("root")),
        &["reason=wrong_confirm_password"],
    );
    // A wrong current password on the account page is one too.
    let alice = app.browser();
    app.add_user("bob", "correct horse", false);
    alice.login("bob", "correct horse");
    let refused = account_post(
        &alice,
        "/account/password",
        &[
            ("current", "not it"),
            ("password", "another horse"),
            ("password2", "another horse"),
        ],
    );
    assert_eq!(refused.status, 403);
    assert_event(
        &newest(&root, "password_confirmed"),
        "password_confirmed",
        "failed",
        (None, Some("bob")),
        &["reason=wrong_current_password"],
    );
}

#[test]
fn signing_out_is_recorded_from_the_page_and_the_api() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    assert_redirects_to(&b.logout(), "/login");
    assert_event(
        &newest(&root, "sign_out"),
        "sign_out",
        "ok",
        (Some("alice"), Some("alice")),
        &[],
    );
    b.login("alice", "correct horse");
    let out = b.send_json("POST", "/api/logout", "{}", &[]);
    assert_eq!(out.status, 200, "{}", out.body);
    let outs = of_kind(&root, "sign_out");
    assert_eq!(outs.len(), 2);
    assert_event(
        &outs[0],
        "sign_out",
        "ok",
        (Some("alice"), Some("alice")),
        &["via=api"],
    );
    // An anonymous sign-out records nothing.
    assert_eq!(b.send_json("POST", "/api/logout", "{}", &[]).status, 200);
    assert_eq!(of_kind(&root, "sign_out").len(), 2);
}

#[test]
fn ended_sessions_say_who_ended_them() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    let phone = app.browser();
    let laptop = app.browser();
    let tablet = app.browser();
    for b in [&phone, &laptop, &tablet] {
        b.login("alice", "correct horse");
    }
    // Her own: another one, then every other.
    let page = laptop.get("/account");
    let handle = page
        .body
        .split("<tr id=\"session-")
        .skip(1)
        .find(|row| !row.split('>').next().unwrap_or("").contains("current"))
        .and_then(|row| row.split('"').next())
        .expect("another session")
        .to_owned();
    let ended = account_post(&laptop, "/account/sessions/end", &[("handle", &handle)]);
    assert_eq!(ended.status, 303);
    assert_event(
        &newest(&root, "session_ended"),
        "session_ended",
        "ok",
        (Some("alice"), Some("alice")),
        &["by=self", "count=1"],
    );
    tablet.login("alice", "correct horse");
    assert_redirects_to(
        &account_post(&laptop, "/account/sessions/end-others", &[]),
        "/account?done=others-ended",
    );
    let mine = newest(&root, "session_ended");
    assert_event(
        &mine,
        "session_ended",
        "ok",
        (Some("alice"), Some("alice")),
        &["by=self", "which=others"],
    );
    // An administrator's.
    let listed = root.get("/admin/sessions");
    let theirs = listed
        .body
        .split("<tr id=\"session-")
        .skip(1)
        .find(|row| row.contains("<td>alice</td>"))
        .and_then(|row| row.split('"').next())
        .expect("alice's session")
        .to_owned();
    let csrf = listed.csrf().expect("csrf");
    assert_redirects_to(
        &root.post_form(
            "/admin/sessions/end",
            &[("csrf", &csrf), ("handle", &theirs)],
        ),
        "/admin/sessions?done=session-ended",
    );
    assert_event(
        &newest(&root, "session_ended"),
        "session_ended",
        "ok",
        (Some("root"), Some("alice")),
        &["by=admin", &format!("session={theirs}")],
    );
    // The box's owner's.
    laptop.login("alice", "correct horse");
    ok(&gatehouse(
        app.dir.path(),
        &["session", "revoke", "--user", "alice"],
        None,
    ));
    assert_event(
        &newest(&root, "session_ended"),
        "session_ended",
        "ok",
        (None, Some("alice")),
        &["by=owner", "which=all", "via=cli"],
    );
}

#[test]
fn password_changes_are_recorded_by_whoever_made_them() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    let changed = account_post(
        &b,
        "/account/password",
        &[
            ("current", "correct horse"),
            ("password", "another horse"),
            ("password2", "another horse"),
        ],
    );
    assert_redirects_to(&changed, "/account?done=password-changed");
    assert_event(
        &newest(&root, "password_changed"),
        "password_changed",
        "ok",
        (Some("alice"), Some("alice")),
        &["sessions_ended=0"],
    );
    assert_redirects_to(
        &admin_post(
            &root,
            "/admin/users/password",
            &[("username", "alice"), ("password", "a third horse")],
        ),
        "/admin/users?done=password-reset",
    );
    assert_event(
        &newest(&root, "password_changed"),
        "password_changed",
        "ok",
        (Some("root"), Some("alice")),
        &["sessions_ended=1"],
    );
    ok(&gatehouse(
        app.dir.path(),
        &["user", "passwd", "alice", "--password-stdin"],
        Some("a fourth horse\n"),
    ));
    assert_event(
        &newest(&root, "password_changed"),
        "password_changed",
        "ok",
        (None, Some("alice")),
        &["via=cli"],
    );
}

#[test]
fn users_are_recorded_created_disabled_enabled_promoted_demoted_and_deleted() {
    let (app, root) = with_root(&[("allow_registration", "true")]);
    assert_redirects_to(
        &admin_post(
            &root,
            "/admin/users",
            &[("username", "alice"), ("password", "correct horse")],
        ),
        "/admin/users?done=user-created",
    );
    assert_event(
        &newest(&root, "user_created"),
        "user_created",
        "ok",
        (Some("root"), Some("alice")),
        &["role=user"],
    );
    for (action, kind) in [
        ("/admin/users/disable", "user_disabled"),
        ("/admin/users/enable", "user_enabled"),
        ("/admin/users/grant-admin", "user_promoted"),
        ("/admin/users/revoke-admin", "user_demoted"),
    ] {
        let r = admin_post(&root, action, &[("username", "alice")]);
        assert_eq!(r.status, 303, "{action}: {}", r.body);
        assert_event(
            &newest(&root, kind),
            kind,
            "ok",
            (Some("root"), Some("alice")),
            &[],
        );
    }
    // Into and out of `admins` on the groups page is the same.
    let csrf = root.get("/admin/groups").csrf().expect("csrf");
    let added = root.post_form(
        "/admin/groups/add",
        &[("csrf", &csrf), ("group", "admins"), ("username", "alice")],
    );
    assert_eq!(added.status, 303, "{}", added.body);
    assert_event(
        &newest(&root, "user_promoted"),
        "user_promoted",
        "ok",
        (Some("root"), Some("alice")),
        &["group=admins"],
    );
    assert_eq!(of_kind(&root, "group_member_added").len(), 0);
    let removed = root.post_form(
        "/admin/groups/remove",
        &[("csrf", &csrf), ("group", "admins"), ("username", "alice")],
    );
    assert_eq!(removed.status, 303, "{}", removed.body);
    assert_eq!(of_kind(&root, "user_demoted").len(), 2);
    assert_redirects_to(
        &admin_post(
            &root,
            "/admin/users/delete",
            &[("username", "alice"), ("confirm", "yes")],
        ),
        "/admin/users?done=user-deleted",
    );
    assert_event(
        &newest(&root, "user_deleted"),
        "user_deleted",
        "ok",
        (Some("root"), Some("alice")),
        &[],
    );
    // Signing up makes a user with no one behind it; the command line,
    // the box's owner.
    let newbie = app.browser();
    let csrf = newbie.get("/register").csrf().expect("csrf");
    let made = newbie.post_form(
        "/register",
        &[
            ("csrf", &csrf),
            ("username", "newbie"),
            ("password", "long enough"),
            ("password2", "long enough"),
        ],
    );
    assert_eq!(made.status, 303, "{}", made.body);
    assert_event(
        &newest(&root, "user_created"),
        "user_created",
        "ok",
        (None, Some("newbie")),
        &["role=user"],
    );
    ok(&gatehouse(
        app.dir.path(),
        &["user", "add", "bob", "--admin", "--password-stdin"],
        Some("correct horse\n"),
    ));
    assert_event(
        &newest(&root, "user_created"),
        "user_created",
        "ok",
        (None, Some("bob")),
        &["role=admin", "via=cli"],
    );
    ok(&gatehouse(
        app.dir.path(),
        &["user", "disable", "bob"],
        None,
    ));
    assert_event(
        &newest(&root, "user_disabled"),
        "user_disabled",
        "ok",
        (None, Some("bob")),
        &["via=cli"],
    );
}

#[test]
fn groups_are_recorded_created_renamed_filled_emptied_and_deleted() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    let csrf = root.get("/admin/groups").csrf().expect("csrf");
    let post = |action: &str, fields: &[(&str, &str)]| {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        let r = root.post_form(action, &all);
        assert_eq!(r.status, 303, "{action}: {}", r.body);
    };
    post("/admin/groups", &[("name", "ops")]);
    assert_event(
        &newest(&root, "group_created"),
        "group_created",
        "ok",
        (Some("root"), None),
        &["group=ops"],
    );
    post("/admin/groups/rename", &[("group", "ops"), ("name", "sre")]);
    assert_event(
        &newest(&root, "group_renamed"),
        "group_renamed",
        "ok",
        (Some("root"), None),
        &["group=ops", "name=sre"],
    );
    post(
        "/admin/groups/add",
        &[("group", "sre"), ("username", "alice")],
    );
    assert_event(
        &newest(&root, "group_member_added"),
        "group_member_added",
        "ok",
        (Some("root"), Some("alice")),
        &["group=sre"],
    );
    // Added again: nothing changed, nothing recorded.
    post(
        "/admin/groups/add",
        &[("group", "sre"), ("username", "alice")],
    );
    assert_eq!(of_kind(&root, "group_member_added").len(), 1);
    post(
        "/admin/groups/remove",
        &[("group", "sre"), ("username", "alice")],
    );
    assert_event(
        &newest(&root, "group_member_removed"),
        "group_member_removed",
        "ok",
        (Some("root"), Some("alice")),
        &["group=sre"],
    );
    post(
        "/admin/groups/delete",
        &[("group", "sre"), ("confirm", "yes")],
    );
    assert_event(
        &newest(&root, "group_deleted"),
        "group_deleted",
        "ok",
        (Some("root"), None),
        &["group=sre"],
    );
    ok(&gatehouse(app.dir.path(), &["group", "add", "dev"], None));
    assert_event(
        &newest(&root, "group_created"),
        "group_created",
        "ok",
        (None, None),
        &["group=dev", "via=cli"],
    );
    // The user filter finds what was done to alice, not the groups alone.
    let hers: Vec<String> = events(&root, "user=alice")
        .iter()
        .map(|e| s(e, "kind").to_owned())
        .collect();
    assert!(hers.contains(&"group_member_added".to_owned()), "{hers:?}");
    assert!(!hers.contains(&"group_created".to_owned()), "{hers:?}");
}

#[test]
fn a_configuration_reload_is_recorded_and_read_at_the_command_line() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("dir");
    let mut child = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .envs(crate::helpers::backend_env(dir.path()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let (_, url) = crate::raw::served_url(&mut child);
    let log = crate::raw::collect_log(&mut child);
    assert!(url.starts_with("http://"), "{url}");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log
        .lock()
        .expect("log")
        .iter()
        .any(|l| l.contains("reload: no certificate"))
    {
        assert!(Instant::now() < deadline, "no reload logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Read while the server runs, from the same store.
    let out = gatehouse(
        dir.path(),
        &["audit", "--kind", "config_reloaded", "--json"],
        None,
    );
    let lines: Vec<Value> = ok(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_event(
        &lines[0],
        "config_reloaded",
        "ok",
        (None, None),
        &["tls=none", "via=sighup"],
    );
    let table = ok(&gatehouse(
        dir.path(),
        &["audit", "--kind", "config_reloaded"],
        None,
    ));
    assert!(table.contains("config_reloaded"), "{table}");
    assert!(table.contains("1 event(s)"), "{table}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The value of `key=` in `event`'s detail.
fn detail_of(event: &Value, key: &str) -> String {
    let prefix = format!("{key}=");
    s(event, "detail")
        .split(' ')
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {event}"))
        .to_owned()
}

/// The value of the `<input>` whose id is `id`, unescaped.
fn shown(page: &Resp, id: &str) -> String {
    let at = page
        .body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {}", page.body));
    let rest = &page.body[at..];
    let rest = &rest[rest.find("value=\"").expect("a value") + "value=\"".len()..];
    rest[..rest.find('"').expect("its end")]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The path of a link (from `prefix` on) in `text`.
fn link_path(text: &str, prefix: &str) -> String {
    let at = text.find(prefix).unwrap_or_else(|| panic!("{text}"));
    text[at..].trim().to_owned()
}

/// Asserts no row of the log holds `secret` (a link's token, a code, a
/// client's secret).
#[track_caller]
fn nowhere_in_the_log(admin: &Browser, secret: &str) {
    let all = admin.get("/admin/audit.jsonl");
    assert_eq!(all.status, 200);
    assert!(!all.body.contains(secret), "{secret} in {}", all.body);
}

/// Makes an invite on `/admin/invites` with `fields`: its path.
fn make_invite(root: &Browser, fields: &[(&str, &str)]) -> String {
    let csrf = root.get("/admin/invites").csrf().expect("csrf");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let made = root.post_form("/admin/invites", &all);
    assert_eq!(made.status, 200, "{}", made.body);
    link_path(&shown(&made, "new-invite"), "/invite/")
}

/// Uses invite `path` in `b`, as `name` (not read for a named user's).
fn use_invite(b: &Browser, path: &str, name: &str, password: &str) -> Resp {
    let csrf = b.get(path).csrf().expect("csrf on the invite page");
    b.post_form(
        path,
        &[
            ("csrf", &csrf),
            ("username", name),
            ("password", password),
            ("password2", password),
        ],
    )
}

#[test]
fn invites_are_recorded_made_used_and_revoked_by_whoever_did_it() {
    let (app, root) = with_root(&[]);
    ok(&gatehouse(app.dir.path(), &["group", "add", "dev"], None));
    // Made on the page: root did it, for no one yet.
    let path = make_invite(
        &root,
        &[("uses", "2"), ("expires", "7d"), ("groups", "dev")],
    );
    let token = path.trim_start_matches("/invite/").to_owned();
    let made = newest(&root, "invite_created");
    assert_event(
        &made,
        "invite_created",
        "ok",
        (Some("root"), None),
        &["uses=2", "groups=dev", "expires=20"],
    );
    let id = detail_of(&made, "invite");
    // Used: the account it made (as a sign-up: no one behind it but the
    // invitee) and the use, from the invitee's address and browser.
    let invitee = browser_as(&app, "InviteeBrowser/3");
    assert_redirects_to(
        &use_invite(&invitee, &path, "newbie", "long enough"),
        "/?done=registered",
    );
    let created = newest(&root, "user_created");
    assert_event(
        &created,
        "user_created",
        "ok",
        (None, Some("newbie")),
        &["role=user", &format!("invite={id}"), "made_by=root"],
    );
    assert_eq!(s(&created, "user_agent"), "InviteeBrowser/3");
    let used = newest(&root, "invite_used");
    assert_event(
        &used,
        "invite_used",
        "ok",
        (Some("newbie"), Some("newbie")),
        &[&format!("invite={id}"), "made_by=root"],
    );
    assert_eq!(s(&used, "ip"), "127.0.0.1");
    assert_eq!(s(&used, "user_agent"), "InviteeBrowser/3");
    // A name taken, or a password refused, is no use: nothing recorded.
    assert_eq!(
        use_invite(&app.browser(), &path, "newbie", "long enough").status,
        409
    );
    assert_eq!(
        use_invite(&app.browser(), &path, "other", "short").status,
        400
    );
    assert_eq!(of_kind(&root, "invite_used").len(), 1);
    // Revoked on the page.
    let csrf = root.get("/admin/invites").csrf().expect("csrf");
    assert_redirects_to(
        &root.post_form("/admin/invites/revoke", &[("csrf", &csrf), ("id", &id)]),
        "/admin/invites?done=invite-revoked",
    );
    assert_event(
        &newest(&root, "invite_revoked"),
        "invite_revoked",
        "ok",
        (Some("root"), None),
        &[&format!("invite={id}")],
    );
    // Revoked again: not found, nothing recorded.
    assert_eq!(
        root.post_form("/admin/invites/revoke", &[("csrf", &csrf), ("id", &id)])
            .status,
        404
    );
    assert_eq!(of_kind(&root, "invite_revoked").len(), 1);
    nowhere_in_the_log(&root, &token);

    // For a named user: dan is made at once, by root; the invite is for
    // him; using it sets his first password.
    let path = make_invite(
        &root,
        &[("uses", "1"), ("expires", "1d"), ("username", "dan")],
    );
    assert_event(
        &newest(&root, "user_created"),
        "user_created",
        "ok",
        (Some("root"), Some("dan")),
        &["role=user", "invite="],
    );
    let made = newest(&root, "invite_created");
    assert_event(
        &made,
        "invite_created",
        "ok",
        (Some("root"), Some("dan")),
        &["uses=1", "groups=-"],
    );
    let id = detail_of(&made, "invite");
    assert_redirects_to(
        &use_invite(&app.browser(), &path, "", "dans password"),
        "/?done=registered",
    );
    assert_event(
        &newest(&root, "password_changed"),
        "password_changed",
        "ok",
        (Some("dan"), Some("dan")),
        &["first=yes", &format!("invite={id}"), "made_by=root"],
    );
    assert_event(
        &newest(&root, "invite_used"),
        "invite_used",
        "ok",
        (Some("dan"), Some("dan")),
        &[&format!("invite={id}")],
    );
    assert_eq!(
        events(&root, "kind=user_created&user=dan").len(),
        1,
        "made once, by root"
    );

    // At the command line: the box's owner, no one named.
    let out = ok(&gatehouse(
        app.dir.path(),
        &["invite", "create", "--user", "erin", "--expires", "1d"],
        None,
    ));
    let erin_path = link_path(&out, "/invite/");
    let cli_made = cli_events(&app, &["--kind", "invite_created", "--limit", "1"]);
    assert_event(
        &cli_made[0],
        "invite_created",
        "ok",
        (None, Some("erin")),
        &["uses=1", "via=cli"],
    );
    assert_event(
        &cli_events(&app, &["--kind", "user_created", "--limit", "1"])[0],
        "user_created",
        "ok",
        (None, Some("erin")),
        &["role=user", "via=cli"],
    );
    let erin_invite = detail_of(&cli_made[0], "invite");
    ok(&gatehouse(
        app.dir.path(),
        &["invite", "revoke", &erin_invite],
        None,
    ));
    assert_event(
        &cli_events(&app, &["--kind", "invite_revoked", "--limit", "1"])[0],
        "invite_revoked",
        "ok",
        (None, Some("erin")),
        &[&format!("invite={erin_invite}"), "via=cli"],
    );
    assert_eq!(app.browser().get(&erin_path).status, 404);
    // An invite the command line made says so when used.
    let out = ok(&gatehouse(app.dir.path(), &["invite", "create"], None));
    assert_redirects_to(
        &use_invite(
            &app.browser(),
            &link_path(&out, "/invite/"),
            "frank",
            "long enough",
        ),
        "/?done=registered",
    );
    assert_event(
        &newest(&root, "invite_used"),
        "invite_used",
        "ok",
        (Some("frank"), Some("frank")),
        &["made_by=(cli)"],
    );
}

#[test]
fn reset_links_are_recorded_made_used_and_revoked_with_the_password_they_set() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    let make = |expires: &str| {
        let csrf = root
            .get("/admin/users/reset-link?username=alice")
            .csrf()
            .expect("csrf");
        let made = root.post_form(
            "/admin/users/reset-link",
            &[("csrf", &csrf), ("username", "alice"), ("expires", expires)],
        );
        assert_eq!(made.status, 200, "{}", made.body);
        link_path(&shown(&made, "new-reset-link"), "/reset/")
    };
    // Made on the page: root did it, to alice.
    let path = make("1h");
    let made = newest(&root, "reset_link_created");
    assert_event(
        &made,
        "reset_link_created",
        "ok",
        (Some("root"), Some("alice")),
        &["link=", "expires=20", "new_factor=no"],
    );
    // Revoked on the page.
    assert_redirects_to(
        &admin_post(
            &root,
            "/admin/users/reset-link/revoke",
            &[("username", "alice")],
        ),
        "/admin/users?done=reset-link-revoked",
    );
    assert_event(
        &newest(&root, "reset_link_revoked"),
        "reset_link_revoked",
        "ok",
        (Some("root"), Some("alice")),
        &[],
    );
    assert_eq!(app.browser().get(&path).status, 404);
    // Nothing to revoke: not found, nothing recorded.
    assert_eq!(
        admin_post(
            &root,
            "/admin/users/reset-link/revoke",
            &[("username", "alice")],
        )
        .status,
        404
    );
    assert_eq!(of_kind(&root, "reset_link_revoked").len(), 1);
    nowhere_in_the_log(&root, path.trim_start_matches("/reset/"));

    // Made at the command line, used by alice's browser: the new
    // password (by alice, through the link the box's owner made), then
    // the sign-in it gives.
    let out = ok(&gatehouse(
        app.dir.path(),
        &["user", "reset-link", "alice", "--expires", "15m"],
        None,
    ));
    let path = link_path(&out, "/reset/");
    let by_cli = cli_events(&app, &["--kind", "reset_link_created", "--limit", "1"]);
    assert_event(
        &by_cli[0],
        "reset_link_created",
        "ok",
        (None, Some("alice")),
        &["new_factor=no", "via=cli"],
    );
    let link = detail_of(&by_cli[0], "link");
    let phone = browser_as(&app, "AlicesPhone/9");
    let csrf = phone.get(&path).csrf().expect("csrf");
    assert_redirects_to(
        &phone.post_form(
            &path,
            &[
                ("csrf", &csrf),
                ("password", "a new horse"),
                ("password2", "a new horse"),
            ],
        ),
        "/?done=password-set",
    );
    let reset = newest(&root, "password_reset");
    assert_event(
        &reset,
        "password_reset",
        "ok",
        (Some("alice"), Some("alice")),
        &[&format!("link={link}"), "made_by=(cli)", "new_factor=no"],
    );
    assert_eq!(s(&reset, "user_agent"), "AlicesPhone/9");
    assert_eq!(s(&reset, "ip"), "127.0.0.1");
    let signed = newest(&root, "sign_in");
    assert_event(
        &signed,
        "sign_in",
        "ok",
        (Some("alice"), Some("alice")),
        &["method=reset_link", "methods=pwd"],
    );
    assert_eq!(s(&signed, "user_agent"), "AlicesPhone/9");
    // Used again: refused, nothing more recorded.
    assert_eq!(phone.get(&path).status, 404);
    assert_eq!(of_kind(&root, "password_reset").len(), 1);
    nowhere_in_the_log(&root, path.trim_start_matches("/reset/"));
    // Revoked at the command line.
    ok(&gatehouse(
        app.dir.path(),
        &["user", "reset-link", "alice"],
        None,
    ));
    ok(&gatehouse(
        app.dir.path(),
        &["user", "reset-link", "alice", "--revoke"],
        None,
    ));
    assert_event(
        &cli_events(&app, &["--kind", "reset_link_revoked", "--limit", "1"])[0],
        "reset_link_revoked",
        "ok",
        (None, Some("alice")),
        &["via=cli"],
    );
}

#[test]
fn factors_replaced_through_a_reset_link_are_recorded_reset_then_added() {
    let (app, root) = with_root(&[]);
    app.add_user("bob", "correct horse", false);
    let b = app.browser();
    b.login("bob", "correct horse");
    enrol(&b);
    let out = ok(&gatehouse(
        app.dir.path(),
        &["user", "reset-link", "bob", "--new-factor"],
        None,
    ));
    assert_event(
        &newest(&root, "reset_link_created"),
        "reset_link_created",
        "ok",
        (None, Some("bob")),
        &["new_factor=yes", "via=cli"],
    );
    let path = link_path(&out, "/reset/");
    let phone = browser_as(&app, "BobsNewPhone/1");
    let csrf = phone.get(&path).csrf().expect("csrf");
    assert_redirects_to(
        &phone.post_form(
            &path,
            &[
                ("csrf", &csrf),
                ("password", "bobs new password"),
                ("password2", "bobs new password"),
            ],
        ),
        "/login/enrol",
    );
    assert_event(
        &newest(&root, "password_reset"),
        "password_reset",
        "ok",
        (Some("bob"), Some("bob")),
        &["new_factor=yes", "made_by=(cli)"],
    );
    // The old factor stays until the new one is set: nothing reset yet.
    assert_eq!(of_kind(&root, "factors_reset").len(), 0);
    let page = phone.get("/login/enrol");
    let (_, seed) = crate::factors::secret_of(&page);
    let csrf = page.csrf().expect("csrf");
    let set = phone.post_form(
        "/login/enrol",
        &[("csrf", &csrf), ("code", &code_at(&seed, unix_now()))],
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let bobs = events(&root, "user=bob");
    let kinds: Vec<&str> = bobs.iter().map(|e| s(e, "kind")).collect();
    let reset_at = kinds
        .iter()
        .position(|k| *k == "factors_reset")
        .unwrap_or_else(|| panic!("{kinds:?}"));
    assert_event(
        &bobs[reset_at],
        "factors_reset",
        "ok",
        (Some("bob"), Some("bob")),
        &["through=reset_link", "kept=totp", "recovery_codes=new"],
    );
    assert_eq!(s(&bobs[reset_at], "user_agent"), "BobsNewPhone/1");
    // The new factor is recorded added, after the old ones went.
    let added_at = kinds
        .iter()
        .position(|k| *k == "factor_added")
        .expect("factor_added");
    assert!(added_at < reset_at, "{kinds:?}");
    assert_event(
        &bobs[added_at],
        "factor_added",
        "ok",
        (Some("bob"), Some("bob")),
        &["factor=totp"],
    );
}

#[test]
fn sign_in_links_are_recorded_made_revoked_used_and_guessed() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    let laptop = browser_as(&app, "AlicesLaptop/2");
    laptop.login("alice", "correct horse");
    let make = || {
        let made = account_post(&laptop, "/account/signin-links", &[]);
        assert_eq!(made.status, 200, "{}", made.body);
        let code = made.text_of("new-signin-code").expect("a code");
        (
            code,
            link_path(&shown(&made, "new-signin-link"), "/login/link/"),
        )
    };
    let (first_code, _) = make();
    let made = newest(&root, "signin_link_created");
    assert_event(
        &made,
        "signin_link_created",
        "ok",
        (Some("alice"), Some("alice")),
        &["link=", "methods=pwd"],
    );
    assert_eq!(s(&made, "user_agent"), "AlicesLaptop/2");
    let id = detail_of(&made, "link");
    // The page shows the new kinds by their labels.
    let page = root.get("/admin/audit?kind=signin_link_created");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-kind=\"signin_link_created\""));
    assert!(page.body.contains("Sign-in link made"), "{}", page.body);
    // Revoked by alice.
    assert_redirects_to(
        &account_post(&laptop, "/account/signin-links/revoke", &[("id", &id)]),
        "/account?done=signin-link-revoked",
    );
    assert_event(
        &newest(&root, "signin_link_revoked"),
        "signin_link_revoked",
        "ok",
        (Some("alice"), Some("alice")),
        &[&format!("link={id}")],
    );
    assert!(
        root.get("/admin/audit?kind=signin_link_revoked")
            .body
            .contains("Sign-in link revoked")
    );
    // Someone else's, or gone: not found, nothing recorded.
    app.add_user("mallory", "correct horse", false);
    let mallory = app.browser();
    mallory.login("mallory", "correct horse");
    let (code, path) = make();
    let theirs = detail_of(&newest(&root, "signin_link_created"), "link");
    assert_eq!(
        account_post(&mallory, "/account/signin-links/revoke", &[("id", &theirs)]).status,
        404
    );
    assert_eq!(of_kind(&root, "signin_link_revoked").len(), 1);
    // Used by its code on another device: the sign-in, as alice, by link.
    let tablet = browser_as(&app, "AlicesTablet/5");
    let csrf = tablet.get("/login/code").csrf().expect("csrf");
    assert_redirects_to(
        &tablet.post_form("/login/code", &[("csrf", &csrf), ("code", &code)]),
        "/",
    );
    let signed = newest(&root, "sign_in");
    assert_event(
        &signed,
        "sign_in",
        "ok",
        (Some("alice"), Some("alice")),
        &["method=link", "methods=pwd,link"],
    );
    assert_eq!(s(&signed, "user_agent"), "AlicesTablet/5");
    assert_eq!(s(&signed, "ip"), "127.0.0.1");
    for secret in [&first_code, &code, path.trim_start_matches("/login/link/")] {
        nowhere_in_the_log(&root, secret);
    }

    // Guesses: each link or code that does not work is a failed sign-in
    // with its reason and which kind of link, by no one known; once the
    // address is throttled, no more rows.
    let guesser = browser_as(&app, "Guesser/0");
    let forged = "A".repeat(43);
    assert_eq!(guesser.get(&format!("/invite/{forged}")).status, 404);
    assert_eq!(guesser.get(&format!("/reset/{forged}")).status, 404);
    let csrf = guesser.get("/login/code").csrf().expect("csrf");
    let mut answered = vec![404, 404];
    for _ in 0..8 {
        answered.push(
            guesser
                .post_form("/login/code", &[("csrf", &csrf), ("code", "BCDF-GHJK")])
                .status,
        );
    }
    let refused = answered.iter().filter(|s| **s != 429).count();
    assert!(answered.contains(&429), "throttled at last: {answered:?}");
    let failed = events(&root, "kind=sign_in&outcome=failed");
    let guesses: Vec<&Value> = failed
        .iter()
        .filter(|e| s(e, "detail").contains("reason=unknown_link"))
        .collect();
    assert_eq!(guesses.len(), refused, "{guesses:?}");
    for g in &guesses {
        assert_event(
            g,
            "sign_in",
            "failed",
            (None, None),
            &["reason=unknown_link"],
        );
        assert_eq!(s(g, "user_agent"), "Guesser/0");
    }
    let methods: Vec<String> = guesses.iter().map(|g| detail_of(g, "method")).collect();
    assert_eq!(
        methods.last().map(String::as_str),
        Some("invite"),
        "{methods:?}"
    );
    assert!(methods.contains(&"reset_link".to_owned()), "{methods:?}");
    assert_eq!(methods[0], "link", "{methods:?}");
}

#[test]
fn openid_clients_are_recorded_made_given_a_new_secret_and_deleted() {
    let app = TestApp::spawn_with_file(&format!("public_url = \"{}\"\n", crate::oidc::ISSUER), &[]);
    app.add_user("root", "correct horse", true);
    let root = browser_as(&app, "RootsBrowser/1");
    assert_redirects_to(&root.login("root", "correct horse"), "/");
    let submit = |action: &str, fields: &[(&str, &str)]| {
        let csrf = root.get("/admin/clients").csrf().expect("csrf");
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        root.post_form(action, &all)
    };
    let made = submit(
        "/admin/clients",
        &[
            ("client_id", "wiki"),
            ("client_name", "The Wiki"),
            ("redirect_uris", "https://wiki.test/cb"),
            ("client_type", "confidential"),
            ("pkce", "optional"),
            ("signing_alg", "RS256"),
        ],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    let secret = shown(&made, "made-client-secret");
    let created = newest(&root, "client_created");
    assert_event(
        &created,
        "client_created",
        "ok",
        (Some("root"), None),
        &["client=wiki", "type=confidential"],
    );
    assert_eq!(s(&created, "user_agent"), "RootsBrowser/1");
    // Refused (a bad redirect URI): nothing made, nothing recorded.
    let refused = submit(
        "/admin/clients",
        &[
            ("client_id", "bad"),
            ("redirect_uris", "https://x/*"),
            ("client_type", "public"),
            ("pkce", "required"),
            ("signing_alg", "RS256"),
        ],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(of_kind(&root, "client_created").len(), 1);
    // A new secret.
    let rotated = submit(
        "/admin/clients/rotate",
        &[("client_id", "wiki"), ("confirm", "yes")],
    );
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_secret = shown(&rotated, "made-client-secret");
    assert_event(
        &newest(&root, "client_changed"),
        "client_changed",
        "ok",
        (Some("root"), None),
        &["client=wiki", "change=secret"],
    );
    // Deleted.
    assert_redirects_to(
        &submit(
            "/admin/clients/delete",
            &[("client_id", "wiki"), ("confirm", "yes")],
        ),
        "/admin/clients?done=client-deleted",
    );
    assert_event(
        &newest(&root, "client_revoked"),
        "client_revoked",
        "ok",
        (Some("root"), None),
        &["client=wiki"],
    );
    // Gone: not found, nothing more recorded.
    assert_eq!(
        submit(
            "/admin/clients/delete",
            &[("client_id", "wiki"), ("confirm", "yes")],
        )
        .status,
        404
    );
    assert_eq!(of_kind(&root, "client_revoked").len(), 1);
    nowhere_in_the_log(&root, &secret);
    nowhere_in_the_log(&root, &new_secret);

    // At the command line, with an id that is more than one word (quoted,
    // so it cannot read as more fields).
    let out = ok(&gatehouse(
        app.dir.path(),
        &[
            "oidc",
            "client",
            "create",
            "--id",
            "cli app change=none",
            "--redirect-uri",
            "https://cli.test/cb",
        ],
        None,
    ));
    let cli_secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client secret: "))
        .expect("a secret")
        .to_owned();
    assert_event(
        &cli_events(&app, &["--kind", "client_created", "--limit", "1"])[0],
        "client_created",
        "ok",
        (None, None),
        &[
            "client=\"cli app change=none\"",
            "type=confidential",
            "via=cli",
        ],
    );
    let out = ok(&gatehouse(
        app.dir.path(),
        &["oidc", "client", "rotate-secret", "cli app change=none"],
        None,
    ));
    let cli_new = out
        .lines()
        .find_map(|l| l.strip_prefix("client secret: "))
        .expect("a secret")
        .to_owned();
    assert_event(
        &cli_events(&app, &["--kind", "client_changed", "--limit", "1"])[0],
        "client_changed",
        "ok",
        (None, None),
        &["client=\"cli app change=none\"", "change=secret", "via=cli"],
    );
    // A public client has no secret to rotate: refused, not recorded.
    ok(&gatehouse(
        app.dir.path(),
        &[
            "oidc",
            "client",
            "create",
            "--id",
            "spa",
            "--public",
            "--redirect-uri",
            "https://spa.test/cb",
        ],
        None,
    ));
    fails(&gatehouse(
        app.dir.path(),
        &["oidc", "client", "rotate-secret", "spa"],
        None,
    ));
    assert_eq!(of_kind(&root, "client_changed").len(), 2);
    assert_event(
        &newest(&root, "client_created"),
        "client_created",
        "ok",
        (None, None),
        &["client=spa", "type=public", "via=cli"],
    );
    ok(&gatehouse(
        app.dir.path(),
        &["oidc", "client", "delete", "cli app change=none"],
        None,
    ));
    assert_event(
        &cli_events(&app, &["--kind", "client_revoked", "--limit", "1"])[0],
        "client_revoked",
        "ok",
        (None, None),
        &["client=\"cli app change=none\"", "via=cli"],
    );
    nowhere_in_the_log(&root, &cli_secret);
    nowhere_in_the_log(&root, &cli_new);
}

#[test]
fn the_filter_offers_every_kind() {
    use gatehouse::users::audit::Kind;
    let (_app, root) = with_root(&[]);
    let page = root.get("/admin/audit");
    for kind in Kind::ALL {
        assert!(
            page.body
                .contains(&format!("<option value=\"{}\"", kind.as_str())),
            "{}",
            kind.as_str()
        );
    }
    for kind in ["signin_link_created", "signin_link_revoked"] {
        assert_eq!(root.get(&format!("/admin/audit?kind={kind}")).status, 200);
    }
}

#[test]
fn only_administrators_read_the_log_and_users_see_their_own_on_the_account_page() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "correct horse", false);
    // A stranger tries alice's name, another bob's.
    assert_eq!(
        browser_as(&app, "StrangerAgent/6")
            .login("alice", "guess")
            .status,
        401
    );
    assert_eq!(
        browser_as(&app, "OtherAgent/7")
            .login("bob", "guess")
            .status,
        401
    );
    let alice = browser_as(&app, "AliceLaptop/1");
    alice.login("alice", "correct horse");
    for path in [
        "/admin/audit",
        "/admin/audit.jsonl",
        "/admin/audit?user=bob",
        "/admin/audit.jsonl?kind=sign_in&user=bob",
    ] {
        let r = alice.get(path);
        assert_eq!(r.status, 403, "{path}");
        assert!(!r.body.contains("OtherAgent"), "{path}");
    }
    // Anonymous visitors are sent to sign in.
    let anon = app.browser();
    for path in ["/admin/audit", "/admin/audit.jsonl"] {
        let r = anon.get(path);
        assert_eq!(r.status, 303, "{path}");
        assert!(
            r.header("Location")
                .is_some_and(|l| l.starts_with("/login?next=")),
            "{path}"
        );
    }
    // Her own: the stranger's attempt (from where, with what), her
    // sign-in; nothing of bob's.
    let page = alice.get("/account");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"activity\""), "{}", page.body);
    assert!(page.body.contains("StrangerAgent/6"), "{}", page.body);
    assert!(
        page.body
            .contains("data-kind=\"sign_in\" data-outcome=\"failed\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("data-kind=\"sign_in\" data-outcome=\"ok\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("OtherAgent"), "{}", page.body);
    // A change an administrator made names them.
    assert_eq!(
        admin_post(&root, "/admin/users/grant-admin", &[("username", "bob")]).status,
        303
    );
    assert_eq!(
        admin_post(
            &root,
            "/admin/users/password",
            &[("username", "alice"), ("password", "brand new horse")]
        )
        .status,
        303
    );
    alice.login("alice", "brand new horse");
    let page = alice.get("/account");
    assert!(page.body.contains("by root"), "{}", page.body);
    assert!(!page.body.contains("user_promoted"), "{}", page.body);
    // A new account of an old name does not inherit its history.
    assert_eq!(
        admin_post(
            &root,
            "/admin/users/delete",
            &[("username", "bob"), ("confirm", "yes")]
        )
        .status,
        303
    );
    std::thread::sleep(Duration::from_millis(5));
    app.add_user("bob", "correct horse", false);
    let bob = app.browser();
    bob.login("bob", "correct horse");
    let page = bob.get("/account");
    assert!(!page.body.contains("OtherAgent"), "{}", page.body);
    assert!(
        !page.body.contains("data-outcome=\"failed\""),
        "{}",
        page.body
    );
}

#[test]
fn the_log_survives_a_restart() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    assert_eq!(app.browser().login("alice", "guess").status, 401);
    let before = events(&root, "");
    assert_eq!(
        before.len(),
        2,
        "root's sign-in, alice's failure: {before:?}"
    );
    let app = app.restart();
    let root = app.browser();
    root.login("root", "correct horse");
    let after = events(&root, "");
    assert_eq!(after.len(), before.len() + 1, "one more sign-in");
    assert_eq!(&after[1..], &before[..]);
    assert_eq!(cli_events(&app, &["--limit", "0"]), after);
}

#[test]
fn rows_older_than_audit_retention_are_trimmed_by_the_reaper() {
    let (app, root) = with_root(&[("audit_retention", "3s"), ("reap_interval", "1s")]);
    app.add_user("alice", "correct horse", false);
    for _ in 0..3 {
        assert_eq!(app.browser().login("alice", "guess").status, 401);
    }
    assert_eq!(events(&root, "user=alice").len(), 3);
    // Wait for them to pass the retention and a reaper round to see it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = events(&root, "user=alice");
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "never trimmed: {left:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    // What is newer stays.
    assert_eq!(app.browser().login("alice", "guess").status, 401);
    assert_eq!(events(&root, "user=alice").len(), 1);
}

#[test]
fn pages_hold_fifty_newest_first_and_the_cursor_walks_every_row_once() {
    let (app, root) = with_root(&[]);
    let audit = app.state().users.audit();
    let origin = gatehouse::users::audit::Origin::cli();
    for i in 0..120 {
        audit.record(
            &origin,
            &gatehouse::users::audit::Event::ok(
                gatehouse::users::audit::Kind::GroupCreated,
                None,
                None,
            )
            .detail(format!("group=g{i}")),
        );
    }
    let mut seen = Vec::new();
    let mut path = "/admin/audit?kind=group_created".to_owned();
    let mut pages = 0;
    loop {
        let page = root.get(&path);
        assert_eq!(page.status, 200, "{}", page.body);
        let rows = page.body.matches("<tr id=\"audit-").count();
        pages += 1;
        assert!(rows <= 50);
        for chunk in page.body.split("<td class=\"audit-detail\">").skip(1) {
            seen.push(chunk.split('<').next().unwrap_or("").to_owned());
        }
        match page
            .body
            .split("id=\"audit-older\" href=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        {
            Some(next) => {
                assert_eq!(rows, 50);
                assert!(page.body.contains("id=\"audit-newest\"") || pages == 1);
                path = next.replace("&amp;", "&");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..120)
        .rev()
        .map(|i| format!("group=g{i} via=cli"))
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn hostile_filters_get_a_400_or_an_empty_page_never_a_500() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    assert_eq!(app.browser().login("alice", "guess").status, 401);
    let huge = "a".repeat(20_000);
    let cases: Vec<(String, u16)> = vec![
        ("user=".to_owned() + &enc("' OR 1=1 --"), 200),
        ("user=".to_owned() + &enc("alice' --"), 200),
        ("user=".to_owned() + &enc("%_%"), 200),
        ("user=".to_owned() + &enc("\"; DROP TABLE audit; --"), 200),
        ("user=".to_owned() + &enc("ålîçé\u{202e}\u{0}"), 200),
        ("user=%00".to_owned(), 200),
        ("user=%ff%fe".to_owned(), 200),
        ("user=".to_owned() + &"b".repeat(64), 200),
        ("user=".to_owned() + &"b".repeat(65), 400),
        ("user=".to_owned() + &huge, 400),
        ("kind=sign_in%27%20OR%201%3D1".to_owned(), 400),
        ("kind=".to_owned() + &huge, 400),
        ("kind=SIGN_IN".to_owned(), 400),
        ("outcome=maybe".to_owned(), 400),
        ("since=yesterday".to_owned(), 400),
        ("since=2026-02-30".to_owned(), 400),
        ("since=99999999999999999999d".to_owned(), 400),
        ("since=-1d".to_owned(), 400),
        ("since=1d%3B%20DROP%20TABLE%20audit".to_owned(), 400),
        ("until=".to_owned() + &enc("２０２６-０１-３１"), 400),
        ("since=".to_owned() + &huge, 400),
        ("after=1-2-3".to_owned(), 400),
        ("after=-1".to_owned(), 400),
        ("after=99999999999999999999-1".to_owned(), 400),
        ("after=1%2E5-2".to_owned(), 400),
        ("after=".to_owned() + &enc("1-1 OR 1=1"), 400),
        ("after=0-0".to_owned(), 200),
        (
            "after=9223372036854775807-9223372036854775807".to_owned(),
            200,
        ),
        ("since=2099-01-01".to_owned(), 200),
        ("since=1d&until=1970-01-01".to_owned(), 200),
        (
            "user=alice&user=root&kind=sign_in&kind=bogus".to_owned(),
            200,
        ),
        ("page=-1&unknown=%00".to_owned(), 200),
    ];
    for (query, status) in &cases {
        for path in ["/admin/audit", "/admin/audit.jsonl"] {
            let r = root.get(&format!("{path}?{query}"));
            // 400 stands for any refusal: a query past the request line's
            // cap is a 414 before it is read.
            let fits = if *status == 400 {
                (400..500).contains(&r.status)
            } else {
                r.status == *status
            };
            assert!(
                fits,
                "{path}?{}: {} {}",
                &query[..query.len().min(80)],
                r.status,
                &r.body[..r.body.len().min(300)]
            );
        }
    }
    // A hostile value matched nothing, and the log is all there.
    assert!(events(&root, &format!("user={}", enc("' OR 1=1 --"))).is_empty());
    assert!(!events(&root, "user=alice").is_empty());
    assert!(events(&root, "since=2099-01-01").is_empty());
    // The same at the command line: refused with a message, no panic.
    for args in [
        &["audit", "--since", "yesterday"][..],
        &["audit", "--kind", "nope"],
        &["audit", "--outcome", "maybe"],
        &["audit", "--until", "2026-13-01"],
    ] {
        let err = fails(&gatehouse(app.dir.path(), args, None));
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(cli_events(&app, &["--user", "' OR 1=1 --"]).is_empty());
    let alice = cli_events(
        &app,
        &["--user", "ALICE", "--since", "1h", "--kind", "sign_in"],
    );
    assert_eq!(alice.len(), 1, "{alice:?}");
}

#[test]
fn a_hostile_user_agent_is_stored_cleaned_and_bounded() {
    let (app, root) = with_root(&[]);
    app.add_user("alice", "correct horse", false);
    // The one control character the front door lets into a header (a
    // tab: it refuses a header with any other, and any byte past ASCII,
    // with a 400 before a handler runs; the store's unit tests clean the
    // rest, and bidi marks).
    let tabbed = browser_as(&app, "\tEvil\tAgent\t1.0");
    assert_eq!(tabbed.login("alice", "guess").status, 401);
    let stored = newest(&root, "sign_in");
    assert_eq!(s(&stored, "user_agent"), "EvilAgent1.0", "{stored}");
    // 10 KB of it: kept to 256 characters.
    let long = browser_as(&app, &format!("Long/{}", "x".repeat(10 * 1024)));
    assert_eq!(long.login("alice", "guess").status, 401);
    let stored = newest(&root, "sign_in");
    let ua = s(&stored, "user_agent");
    assert_eq!(ua.chars().count(), 256, "{ua}");
    assert!(ua.starts_with("Long/xxx"));
    // The pages show it escaped, cut, and the log is readable.
    let page = root.get("/admin/audit?kind=sign_in");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(&"x".repeat(300)));
    assert!(!page.body.contains('\u{1b}'));
}

#[test]
fn a_flood_of_bad_credentials_neither_slows_the_gate_nor_grows_the_table_past_its_budget() {
    // Every request from another address (127.0.0.1 is a trusted proxy),
    // as a botnet spreads them: the throttle lets each address try.
    let (app, root) = with_root(&[("trusted_proxies", "127.0.0.1"), ("reap_interval", "1s")]);
    let flood = app.browser();
    let started = Instant::now();
    let n = 600;
    for i in 0..n {
        let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
        let r = flood.get_with(
            "/auth/verify",
            &[
                ("Authorization", "Bearer ght_flood"),
                ("X-Forwarded-For", &ip),
            ],
        );
        assert_eq!(r.status, 401);
    }
    let took = started.elapsed();
    // What the budget let through: the burst, and what it refilled while
    // the flood ran (2 a second), never one row per request.
    let failed = events(&root, "kind=sign_in&outcome=failed");
    let budget = 300 + (took.as_secs_f64() * 2.0).ceil() as usize + 1;
    assert!(
        failed.len() <= budget && failed.len() < n,
        "{} rows for {n} requests in {took:?}",
        failed.len()
    );
    // The rest are counted, in a row each reaper round (once a second
    // here): every one of them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counted = of_kind(&root, "not_recorded");
        let count: usize = counted
            .iter()
            .map(|e| {
                s(e, "detail")
                    .strip_prefix("count=")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|c| c.parse::<usize>().ok())
                    .expect("a count")
            })
            .sum();
        assert!(count + failed.len() <= n, "{counted:?}");
        if count + failed.len() == n {
            // One row a reaper round (a second here), not one a failure.
            let rounds = started.elapsed().as_secs() as usize + 2;
            assert!(
                counted.len() <= rounds,
                "{} rows: {counted:?}",
                counted.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{count} counted, {} recorded, of {n}",
            failed.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // A cookie's request is not slowed or written by any of it.
    let t = Instant::now();
    for _ in 0..50 {
        assert_eq!(root.get("/auth/verify").status, 200);
    }
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(
        events(&root, "kind=sign_in&user=root").len(),
        1,
        "checking a cookie records nothing"
    );
}

#[test]
fn an_audit_row_that_cannot_be_written_is_logged_and_the_action_stands() {
    use std::process::Stdio;
    if !crate::helpers::on_sqlite("audit::an_audit_row_that_cannot_be_written") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    ok(&gatehouse(
        dir.path(),
        &["user", "add", "alice", "--password-stdin"],
        Some("correct horse\n"),
    ));
    // From now on the audit table refuses every row, as a full disk
    // would (the rest of the file still takes writes).
    rusqlite::Connection::open(dir.path().join("gatehouse.db"))
        .expect("open")
        .execute_batch(
            "CREATE TRIGGER audit_full BEFORE INSERT ON audit \
             BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
        )
        .expect("trigger");
    let mut child = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let (_, url) = crate::raw::served_url(&mut child);
    let log = crate::raw::collect_log(&mut child);
    let b = Browser::new(&url);
    // The actions stand: a wrong password is the usual 401, the right one
    // signs in, signing out signs out.
    assert_eq!(b.login("alice", "wrong").status, 401);
    assert_redirects_to(&b.login("alice", "correct horse"), "/");
    assert_eq!(b.get("/auth/verify").status, 200);
    assert_redirects_to(&b.logout(), "/login");
    assert_eq!(b.get("/auth/verify").status, 401);
    // And each lost row is logged with what it said.
    let deadline = Instant::now() + Duration::from_secs(20);
    for needle in [
        "audit not recorded kind=sign_in outcome=failed actor=\"-\" subject=\"alice\"",
        "audit not recorded kind=sign_in outcome=ok actor=\"alice\" subject=\"alice\"",
        "audit not recorded kind=sign_out outcome=ok",
    ] {
        while !log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains(needle) && l.contains("disk is full"))
        {
            assert!(
                Instant::now() < deadline,
                "not logged: {needle}\n{:?}",
                log.lock().expect("log")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
