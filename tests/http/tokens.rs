//! Personal access tokens and Basic: a token made on `/account` opens the
//! gate (`/auth/verify`, `/auth/forward`, the built-in proxy) without a
//! cookie, as Bearer or as Basic's password; bad, expired, revoked and
//! other-app tokens get the same `401` with the challenges; revocation,
//! a new password and a disabled user end tokens on the next request;
//! the account password over Basic only where an app allows it and never
//! for a user with a second factor; bad credentials are throttled; the
//! command line makes, lists and revokes tokens.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::cli::{gatehouse, ok};
use crate::helpers::{Browser, Resp, TestApp};

/// An app behind the proxy that echoes who it was told the user is, and
/// whether an `Authorization` header reached it; `books` takes Basic
/// passwords, `wiki` tokens only, `vault` needs a second factor.
fn with_apps(
    settings: &[(&str, &str)],
) -> (TestApp, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let (addr, stop) = crate::helpers::upstream(|request| {
        let h = |n: &str| request.header(n).unwrap_or("-").to_owned();
        rouille::Response::json(&serde_json::json!({
            "user": h("Remote-User"),
            "methods": h("Remote-Auth-Methods"),
            "authorization": h("Authorization"),
        }))
    });
    let app = TestApp::spawn_with_file(
        &format!(
            r#"
[[apps]]
name = "books"
prefix = "/apps/books/"
upstream = "http://{addr}"
basic_auth = "password"

[[apps]]
name = "wiki"
prefix = "/apps/wiki/"
upstream = "http://{addr}"
[[apps.rules]]
paths = ["/health"]
policy = "bypass"

[[apps]]
name = "vault"
prefix = "/apps/vault/"
upstream = "http://{addr}"
two_factor = true
"#
        ),
        settings,
    );
    (app, stop)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(name: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{name}:{secret}")))
}

/// A browser with no cookies that sends `authorization`.
fn get(app: &TestApp, path: &str, authorization: &str) -> Resp {
    Browser::new(&app.base).get_with(path, &[("Authorization", authorization)])
}

/// A token for `name`, made through the store (`apps` empty: all).
fn token_for(app: &TestApp, name: &str, apps: &[&str], expires_at: Option<i64>) -> String {
    let users = &app.state().users;
    let user = users.get_by_name(name).expect("user");
    let new = gatehouse::users::tokens::NewToken {
        name: "test".into(),
        apps: apps.iter().map(|a| (*a).to_owned()).collect(),
        expires_at,
    };
    users
        .tokens()
        .create(&user, &new, gatehouse::clock::now())
        .expect("token")
        .0
}

/// Every `WWW-Authenticate` of an answer.
fn challenges(r: &Resp) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The `401` every refused credential gets: the same status, body and
/// challenges, and no cookie.
fn assert_challenged(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    assert_eq!(r.body, "a valid token is needed", "{what}");
    assert_eq!(
        challenges(r),
        [
            r#"Bearer realm="gatehouse""#,
            r#"Basic realm="gatehouse", charset="UTF-8""#
        ],
        "{what}"
    );
    assert!(r.set_cookies().is_empty(), "{what}: {:?}", r.set_cookies());
}

fn json(r: &Resp) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

#[test]
fn a_token_made_on_the_account_page_opens_the_gate_without_a_cookie() {
    let (app, stop) = with_apps(&[]);
    app.add_user("alice", "correct horse", false);
    app.add_user("root", "correct horse", true);
    let b = app.browser();
    assert_eq!(b.login("alice", "correct horse").status, 303);
    let csrf = b.get("/account").csrf().expect("csrf");
    let made = b.post_form(
        "/account/tokens",
        &[
            ("csrf", &csrf),
            ("name", "backup script"),
            ("app:wiki", "on"),
            ("app:books", "on"),
            ("expires", "30d"),
        ],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    let token = made
        .body
        .split("id=\"new-token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the new token is shown")
        .to_owned();
    assert!(token.starts_with("ght_") && token.len() == 47, "{token}");
    // Shown once: the page again lists it without it.
    let again = b.get("/account").body;
    assert!(again.contains("backup script") && !again.contains(&token));

    for authorization in [
        bearer(&token),
        basic("alice", &token),
        basic("ALICE", &token),
    ] {
        // Forward auth for a request that matches no app: a token for
        // some apps does not reach it.
        let r = get(&app, "/auth/verify", &authorization);
        assert_challenged(&r, "no app");
        let r = get(&app, "/apps/wiki/page", &authorization);
        assert_eq!(r.status, 200, "{authorization}: {}", r.body);
        let echo = json(&r);
        assert_eq!(echo["user"], "alice");
        assert_eq!(echo["methods"], "token");
        assert_eq!(echo["authorization"], "-", "the token is gatehouse's");
        assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
        // Not for vault: its token names wiki and books only.
        assert_challenged(&get(&app, "/apps/vault/", &authorization), "vault");
    }
    assert_eq!(app.session_rows(), 1, "only alice's browser session exists");
    // Listed on the account page and the admin page, with its last use.
    assert!(b.get("/account").body.contains("backup script"));
    let root = app.browser();
    assert_eq!(root.login("root", "correct horse").status, 303);
    let listed = root.get("/admin/tokens");
    assert_eq!(listed.status, 200);
    assert!(listed.body.contains("backup script") && listed.body.contains("alice"));
    assert!(!listed.body.contains(&token));
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn forward_auth_takes_bearer_and_basic_tokens() {
    let (app, stop) = with_apps(&[("trusted_proxies", "127.0.0.1/32")]);
    app.add_user("alice", "correct horse", false);
    let token = token_for(&app, "alice", &[], None);
    let ask = |path: &str, uri: &str, authorization: &str| {
        Browser::new(&app.base).get_with(
            path,
            &[
                ("Authorization", authorization),
                ("X-Forwarded-Uri", uri),
                ("X-Forwarded-Host", "localhost"),
                ("X-Forwarded-Proto", "http"),
            ],
        )
    };
    for path in ["/auth/verify", "/auth/forward"] {
        for authorization in [bearer(&token), basic("alice", &token)] {
            let r = ask(path, "/apps/wiki/x", &authorization);
            assert_eq!(r.status, 200, "{path} {authorization}: {}", r.body);
            assert_eq!(r.header("Remote-User"), Some("alice"));
            assert_eq!(r.header("Remote-Auth-Methods"), Some("token"));
            assert!(r.set_cookies().is_empty());
        }
        // A bad one: 401 with the challenge, never a redirect to sign in.
        let r = ask(path, "/apps/wiki/x", "Bearer ght_nope");
        assert_challenged(&r, path);
        // A bypassed path stays open whatever the header says.
        let r = ask(path, "/apps/wiki/health", "Bearer ght_nope");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        // A token never gives the second factor vault needs.
        let r = ask(path, "/apps/vault/", &bearer(&token));
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        // Nor in another case, which Caddy's `path` matcher sends to the
        // vault all the same (a hostile pass: it was judged by the default
        // policy, and passed).
        // Caddy lower-cases with Unicode's rules: the Kelvin sign is a `k`
        // to it (a second hostile pass).
        for other in [
            "/apps/VAULT/x",
            "/apps/Vault",
            "/APPS/vault/x",
            "/apps/boo%E2%84%AAs/x",
        ] {
            let r = ask(path, other, &bearer(&token));
            assert_eq!(r.status, 403, "{path} {other}: {}", r.body);
            assert!(
                r.body.contains("another case"),
                "{path} {other}: {}",
                r.body
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn every_bad_credential_gets_the_same_401() {
    let (app, stop) = with_apps(&[("login_max_failures", "1000")]);
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "correct horse", false);
    let good = token_for(&app, "alice", &[], None);
    let expired = token_for(&app, "alice", &[], Some(gatehouse::clock::now() - 1));
    let revoked = token_for(&app, "alice", &[], None);
    let users = &app.state().users;
    let alice = users.get_by_name("alice").expect("alice");
    let id = users.tokens().of_user(alice.id).expect("list")[0].id;
    users.tokens().revoke(id, None).expect("revoke");
    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let cases: Vec<(String, String)> = vec![
        ("empty bearer".into(), "Bearer".into()),
        ("bearer space".into(), "Bearer ".into()),
        ("short".into(), "Bearer ght_x".into()),
        (
            "not ours".into(),
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x".into(),
        ),
        ("tampered".into(), bearer(&tampered)),
        ("expired".into(), bearer(&expired)),
        ("revoked".into(), bearer(&revoked)),
        ("long".into(), format!("Bearer {}", "a".repeat(5000))),
        ("bad base64".into(), "Basic !!!!".into()),
        (
            "no colon".into(),
            format!("Basic {}", STANDARD.encode("alice")),
        ),
        (
            "not utf-8".into(),
            format!("Basic {}", STANDARD.encode([0xff, b':', 0xfe])),
        ),
        ("another's token".into(), basic("bob", &good)),
        (
            "password where tokens only".into(),
            basic("alice", "correct horse"),
        ),
        ("unknown name".into(), basic("nobody", "correct horse")),
        ("nul in the name".into(), basic("ali\0ce", "correct horse")),
        ("lower-case scheme, bad token".into(), "bearer ght_x".into()),
    ];
    for (what, authorization) in &cases {
        assert_challenged(&get(&app, "/apps/wiki/", authorization), what);
    }
    // The good one still works, also with the scheme in another case.
    assert_eq!(get(&app, "/apps/wiki/", &bearer(&good)).status, 200);
    assert_eq!(
        get(&app, "/apps/wiki/", &format!("bEaReR  {good}")).status,
        200
    );
    // Two headers could be read two ways: refused, whatever comes first
    // (a hostile pass: an empty or a Digest one first hid the token).
    for first in [bearer(&good), String::new(), "Digest x".into()] {
        let r = Browser::new(&app.base).get_with(
            "/apps/wiki/",
            &[("Authorization", &first), ("Authorization", &bearer(&good))],
        );
        assert_challenged(&r, &format!("two headers, first {first:?}"));
    }
    // A tab after the scheme is no HTTP, but still a token offered.
    assert_challenged(&get(&app, "/apps/wiki/", &format!("Bearer\t{good}")), "tab");
    assert_challenged(&get(&app, "/apps/wiki/", ""), "empty");
    // Another scheme is the app's: a browser without a session is sent
    // to sign in as usual (nothing of gatehouse's was offered).
    let r = get(&app, "/apps/wiki/", "Digest username=\"alice\"");
    assert_eq!(r.status, 401);
    assert!(challenges(&r).is_empty(), "{:?}", r.headers);
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn revoking_a_new_password_or_disabling_the_user_ends_tokens_at_once() {
    let (app, stop) = with_apps(&[]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    assert_eq!(b.login("alice", "correct horse").status, 303);
    // Revoked on the account page: refused on the next request.
    let token = token_for(&app, "alice", &[], None);
    assert_eq!(get(&app, "/apps/wiki/", &bearer(&token)).status, 200);
    let users = &app.state().users;
    let alice = users.get_by_name("alice").expect("alice");
    let id = users.tokens().of_user(alice.id).expect("list")[0].id;
    let csrf = b.get("/account").csrf().expect("csrf");
    let r = b.post_form(
        "/account/tokens/revoke",
        &[("csrf", &csrf), ("id", &id.to_string())],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_challenged(&get(&app, "/apps/wiki/", &bearer(&token)), "revoked");
    // Someone else's token cannot be revoked from one's own page.
    app.add_user("bob", "correct horse", false);
    let bobs = token_for(&app, "bob", &[], None);
    let bob = users.get_by_name("bob").expect("bob");
    let bob_id = users.tokens().of_user(bob.id).expect("list")[0].id;
    let r = b.post_form(
        "/account/tokens/revoke",
        &[("csrf", &csrf), ("id", &bob_id.to_string())],
    );
    assert_eq!(r.status, 404);
    assert_eq!(get(&app, "/apps/wiki/", &bearer(&bobs)).status, 200);
    // A new password ends every token, whichever way it was set.
    let token = token_for(&app, "alice", &[], None);
    assert_eq!(get(&app, "/apps/wiki/", &bearer(&token)).status, 200);
    users
        .set_password(alice.id, "a brand new password")
        .expect("password");
    assert_challenged(&get(&app, "/apps/wiki/", &bearer(&token)), "new password");
    // So does disabling the user, through every path; enabling them
    // again does not bring the tokens back.
    let token = token_for(&app, "bob", &[], None);
    users.set_disabled(bob.id, true).expect("disable");
    assert_challenged(&get(&app, "/apps/wiki/", &bearer(&token)), "disabled");
    users.set_disabled(bob.id, false).expect("enable");
    assert_challenged(&get(&app, "/apps/wiki/", &bearer(&token)), "enabled again");
    let token = token_for(&app, "bob", &[], None);
    users.disable(bob.id, true).expect("disable");
    users.set_disabled(bob.id, false).expect("enable");
    assert_challenged(&get(&app, "/apps/wiki/", &bearer(&token)), "enabled again");
    let bobs = token_for(&app, "bob", &[], None);
    // Deleting the user deletes their tokens.
    users.delete(bob.id).expect("delete");
    assert_challenged(&get(&app, "/apps/wiki/", &bearer(&token)), "deleted");
    assert_challenged(&get(&app, "/apps/wiki/", &bearer(&bobs)), "deleted");
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn the_account_password_over_basic_only_where_allowed_and_never_past_a_second_factor() {
    let (app, stop) = with_apps(&[]);
    app.add_user("alice", "correct horse", false);
    app.add_user("bob", "correct horse", false);
    let pair = basic("alice", "correct horse");
    // books takes passwords: the first request pays bcrypt, the next
    // ones are served from the cache.
    let r = get(&app, "/apps/books/", &pair);
    assert_eq!(r.status, 200, "{}", r.body);
    let echo = json(&r);
    assert_eq!(echo["user"], "alice");
    assert_eq!(echo["methods"], "pwd");
    assert_eq!(echo["authorization"], "-");
    assert!(r.set_cookies().is_empty());
    assert_eq!(app.state().users.basic_cache().len(), 1);
    for _ in 0..3 {
        assert_eq!(get(&app, "/apps/books/", &pair).status, 200);
    }
    // wiki takes tokens only.
    assert_challenged(&get(&app, "/apps/wiki/", &pair), "wiki");
    // A wrong password fails, also right after the right one was cached.
    assert_challenged(
        &get(&app, "/apps/books/", &basic("alice", "wrong horse")),
        "wrong",
    );
    // A new password ends the cached one at once.
    let users = &app.state().users;
    let alice = users.get_by_name("alice").expect("alice");
    users
        .set_password(alice.id, "a brand new password")
        .expect("password");
    assert_challenged(&get(&app, "/apps/books/", &pair), "old password");
    assert_eq!(
        get(
            &app,
            "/apps/books/",
            &basic("alice", "a brand new password")
        )
        .status,
        200
    );
    // A user with a second factor must use a token: the right password
    // alone is refused, cached or not.
    let bobs = basic("bob", "correct horse");
    assert_eq!(get(&app, "/apps/books/", &bobs).status, 200);
    crate::factors::factor_from_before(&app, "bob");
    assert_challenged(&get(&app, "/apps/books/", &bobs), "bob has a factor");
    let token = token_for(&app, "bob", &[], None);
    assert_eq!(get(&app, "/apps/books/", &basic("bob", &token)).status, 200);
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn the_password_over_basic_is_refused_where_every_sign_in_needs_a_second_factor() {
    let (app, stop) = with_apps(&[("two_factor", "required")]);
    app.add_user("alice", "correct horse", false);
    assert_challenged(
        &get(&app, "/apps/books/", &basic("alice", "correct horse")),
        "required",
    );
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn the_address_behind_a_proxy_is_read_from_every_forwarded_line() {
    let (app, stop) = with_apps(&[
        ("login_max_failures", "3"),
        ("trusted_proxies", "127.0.0.1/32"),
    ]);
    app.add_user("alice", "correct horse", false);
    let token = token_for(&app, "alice", &[], None);
    let from = |lines: &[&str], authorization: &str| {
        let mut headers = vec![("Authorization", authorization)];
        headers.extend(lines.iter().map(|l| ("X-Forwarded-For", *l)));
        Browser::new(&app.base).get_with("/apps/wiki/", &headers)
    };
    for i in 0..3 {
        let bad = format!("Bearer ght_{i:043}");
        assert_challenged(&from(&["2.2.2.2"], &bad), "guess");
    }
    assert_challenged(&from(&["2.2.2.2"], &bearer(&token)), "locked");
    // A proxy that adds a line of its own (HAProxy) vouches for the last
    // line: a first line of the client's choosing changes nothing.
    assert_challenged(
        &from(&["5.5.5.5", "2.2.2.2"], &bearer(&token)),
        "a second line",
    );
    assert_challenged(
        &from(&["garbage", "2.2.2.2"], &bearer(&token)),
        "garbage first",
    );
    assert_eq!(from(&["3.3.3.3"], &bearer(&token)).status, 200);
    assert_eq!(from(&["2.2.2.2", "3.3.3.3"], &bearer(&token)).status, 200);
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn bad_credentials_are_throttled_by_address() {
    let (app, stop) = with_apps(&[("login_max_failures", "3")]);
    app.add_user("alice", "correct horse", false);
    let token = token_for(&app, "alice", &[], None);
    for i in 0..3 {
        let bad = format!("Bearer ght_{:043}", i);
        assert_challenged(&get(&app, "/apps/wiki/", &bad), "guess");
    }
    // The address is locked now: even the good token waits.
    assert_challenged(&get(&app, "/apps/wiki/", &bearer(&token)), "locked");
    // A browser's session from elsewhere is not held up (the session is
    // asked first, and signs in from its own address in real life; here
    // it shows the lock is on credentials, not on the gate).
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn the_command_line_makes_lists_and_revokes_tokens() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    ok(&gatehouse(
        d,
        &["user", "add", "alice", "--password-stdin"],
        Some("correct horse\n"),
    ));
    let made = gatehouse(
        d,
        &[
            "token",
            "create",
            "alice",
            "--name",
            "monitor",
            "--apps",
            "wiki,books",
            "--expires",
            "90d",
        ],
        None,
    );
    let token = ok(&made).trim().to_owned();
    assert!(token.starts_with("ght_") && token.len() == 47, "{token}");
    let list = ok(&gatehouse(d, &["token", "list"], None));
    let line = list
        .lines()
        .find(|l| l.contains("monitor"))
        .expect("listed");
    assert!(
        line.contains("alice") && line.contains("wiki,books"),
        "{list}"
    );
    assert!(!list.contains(&token));
    let id = line.split_whitespace().next().expect("id");
    assert!(ok(&gatehouse(d, &["token", "revoke", id], None)).contains("revoked"));
    assert!(!ok(&gatehouse(d, &["token", "list", "alice"], None)).contains("monitor"));
    let again = gatehouse(d, &["token", "revoke", id], None);
    assert!(!again.status.success());
}

/// The fenced block of `lang` after `heading` in the README.
fn readme_block(heading: &str, lang: &str) -> String {
    let readme = include_str!("../../README.md");
    let after = readme.split(heading).nth(1).expect("the README section");
    let fence = format!("```{lang}\n");
    let block = after.split(&fence).nth(1).expect("the block");
    block.split("```").next().expect("its end").to_owned()
}

#[test]
fn the_readmes_worked_example_holds() {
    let heading = "## Who may open what";
    let toml = readme_block(heading, "toml");
    let app = TestApp::spawn_with_file(&toml, &[("trusted_proxies", "127.0.0.1/32")]);
    app.add_user("alice", "correct horse", false);
    let d = app.dir.path();
    let mut token = String::new();
    for line in readme_block(heading, "sh").lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        for command in line.split("&&") {
            let args: Vec<&str> = command.split_whitespace().skip(1).collect();
            let out = ok(&gatehouse(d, &args, None));
            if args.first() == Some(&"token") {
                token = out.trim().to_owned();
            }
        }
    }
    assert!(token.starts_with("ght_"), "{token}");
    let ask = |uri: &str, authorization: Option<&str>| {
        let mut headers = vec![("X-Forwarded-Host", "wiki.lan"), ("X-Forwarded-Uri", uri)];
        if let Some(a) = authorization {
            headers.push(("Authorization", a));
        }
        Browser::new(&app.base).get_with("/auth/verify", &headers)
    };
    let bearer = bearer(&token);
    assert_eq!(ask("/api/health", None).status, 200, "bypassed");
    assert_eq!(ask("/page", None).status, 401);
    let page = ask("/page", Some(&bearer));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("Remote-User"), Some("alice"));
    assert_eq!(page.header("Remote-Groups"), Some("ops"));
    assert_eq!(page.header("Remote-Auth-Methods"), Some("token"));
    let r = ask("/admin/x", Some(&bearer));
    assert_eq!(
        r.status, 403,
        "a token is never a second factor: {}",
        r.body
    );
    // The curl form of the same.
    assert_eq!(ask("/page", Some(&basic("alice", &token))).status, 200);
    let explained = ok(&gatehouse(
        d,
        &[
            "check-config",
            "--explain",
            "http://wiki.lan/admin/x",
            "--user",
            "alice",
        ],
        None,
    ));
    assert!(explained.contains("rule 2"), "{explained}");
}
