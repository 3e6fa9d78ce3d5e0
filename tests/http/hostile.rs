//! Bad and hostile input: a clear 4xx, never a 500, and the server goes on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::helpers::{TestApp, assert_redirects_to};

/// Sends raw bytes and returns the status line's code.
fn raw(app: &TestApp, request: &[u8]) -> u16 {
    let addr = app.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request).expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_login_post_without_a_csrf_token_is_refused_and_changes_nothing() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    let resp = b.post_form(
        "/login",
        &[("username", "alice"), ("password", "correct horse")],
    );
    assert_eq!(resp.status, 403);
    assert!(resp.cookie("gatehouse_session").is_none());
    // With the cookie but a wrong token.
    b.get("/login");
    let resp = b.post_form(
        "/login",
        &[
            ("csrf", "nope"),
            ("username", "alice"),
            ("password", "correct horse"),
        ],
    );
    assert_eq!(resp.status, 403);
    assert_eq!(app.session_rows(), 0);
}

#[test]
fn a_logout_post_without_the_session_token_is_refused() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    b.login("alice", "correct horse");
    assert_eq!(b.post_form("/logout", &[]).status, 403);
    assert_eq!(b.post_form("/logout", &[("csrf", "forged")]).status, 403);
    assert_eq!(b.get("/auth/verify").status, 200, "the session survived");
}

#[test]
fn oversized_bodies_get_413_without_being_read() {
    let app = TestApp::spawn();
    let b = app.browser();
    b.get("/login");
    let resp = b.post_raw(
        "/login",
        "application/x-www-form-urlencoded",
        vec![b'a'; 64 * 1024 + 1],
    );
    assert_eq!(resp.status, 413);
    // A declared length of a gigabyte is refused up front, body unsent.
    let code = raw(
        &app,
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1073741824\r\n\r\n",
    );
    assert_eq!(code, 413);
    assert_eq!(b.get("/healthz").status, 200);
}

#[test]
fn malformed_forms_get_400_or_415() {
    let app = TestApp::spawn();
    let b = app.browser();
    b.get("/login");
    assert_eq!(
        b.post_raw(
            "/login",
            "application/x-www-form-urlencoded",
            b"a=%ff%fe".to_vec()
        )
        .status,
        400
    );
    assert_eq!(
        b.post_raw(
            "/login",
            "application/x-www-form-urlencoded",
            b"csrf=a&csrf=b".to_vec()
        )
        .status,
        400
    );
    assert_eq!(
        b.post_raw("/login", "text/plain", b"username=a".to_vec())
            .status,
        415
    );
    assert_eq!(
        b.post_raw("/login", "application/json", b"{}".to_vec())
            .status,
        415
    );
}

#[test]
fn an_overlong_username_is_a_clear_400() {
    let app = TestApp::spawn();
    let b = app.browser();
    let long = "a".repeat(10_000);
    let resp = b.login(&long, "whatever1");
    assert_eq!(resp.status, 400);
}

#[test]
fn odd_methods_and_paths_get_405_and_404() {
    let app = TestApp::spawn();
    assert_eq!(
        raw(
            &app,
            b"DELETE /login HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        ),
        405
    );
    assert_eq!(
        raw(
            &app,
            b"BREW / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        ),
        405
    );
    assert_eq!(raw(&app, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
    assert_eq!(raw(&app, b"GET /%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
    let b = app.browser();
    assert_eq!(b.get("/healthz").status, 200);
}

#[test]
fn many_and_huge_cookies_are_no_session() {
    let app = TestApp::spawn();
    let b = app.browser();
    for i in 0..200 {
        b.set_cookie(&format!("c{i}"), "v");
    }
    b.set_cookie("gatehouse_session", &"x".repeat(3000));
    let resp = b.get("/auth/verify");
    assert!(
        resp.status == 401 || resp.status == 431 || resp.status == 400,
        "{}",
        resp.status
    );
    assert_redirects_to(&app.browser().get("/"), "/login?next=/");
}

#[test]
fn a_non_ascii_header_does_not_stop_the_server() {
    let app = TestApp::spawn();
    // The HTTP parser underneath (tiny_http) keeps header values as ASCII:
    // anything else is a clear `400`, and the server carries on.
    let code = raw(
        &app,
        "GET /auth/verify HTTP/1.1\r\nHost: x\r\nCookie: gatehouse_session=\u{1F600}\r\n\r\n"
            .as_bytes(),
    );
    assert_eq!(code, 400);
    assert_eq!(app.browser().get("/healthz").status, 200);
}

#[test]
fn every_html_response_carries_the_security_headers() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    let strict = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";
    // The sign-in page's forms send the browser on to the app (or the
    // OpenID Connect client) by redirects, which browsers hold against
    // `form-action`: it has none.
    let sends_on = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'";
    let mut pages = vec![
        (b.get("/login"), sends_on),
        (b.get("/login?next=/admin"), sends_on),
        (b.get("/nope"), strict),
    ];
    b.login("alice", "correct horse");
    pages.push((b.get("/"), strict));
    pages.push((b.get("/logout"), strict));
    pages.push((b.get("/account"), strict));
    for (resp, csp) in &pages {
        assert_eq!(resp.header("content-security-policy"), Some(*csp));
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(resp.header("referrer-policy"), Some("same-origin"));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
    }
}

/// Every form route, whoever asks (anonymous, with a valid anonymous token
/// cookie, signed in as an administrator), refuses a POST whose form
/// carries no token, a forged one, or the wrong kind of token with `403`,
/// before anything else looks at what was sent (a route that checked the
/// token late answered `400` or `303` for a request it should have refused
/// outright), and nothing changes.
#[test]
fn every_form_route_refuses_a_post_without_its_csrf_token_first() {
    // With sign-up open, so that `/register` is a form route too, and the
    // OpenID Provider on (`public_url`), so that `/device` is.
    let app = TestApp::spawn_with(&[
        ("allow_registration", "true"),
        ("public_url", "http://gatehouse.test"),
    ]);
    app.add_user("root", "correct horse", true);
    app.add_user("bob", "bob's password", false);
    let anonymous = app.browser();
    let with_cookie = app.browser();
    with_cookie.get("/login").csrf().expect("a login form");
    let root = app.browser();
    assert_eq!(root.login("root", "correct horse").status, 303);
    // The anonymous token pair, next to a live session: it must not count
    // for a signed-in form.
    root.get("/login");
    let root_anon = root.cookie("gatehouse_csrf").expect("a token cookie");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (path, token) in gatehouse::web::form_routes() {
        // Every field any form reads, so a route that looked at them before
        // the token would act (or fail) on them.
        let fields = [
            ("username", "bob"),
            ("password", "a new password 1"),
            ("password2", "a new password 1"),
            ("current", "correct horse"),
            ("code", "123456"),
            ("name", "x"),
            ("credential", "{}"),
            ("session", "x"),
            ("token", "x"),
            ("next", "/"),
        ];
        for (who, b) in [
            ("anonymous", &anonymous),
            ("anonymous with a token cookie", &with_cookie),
            ("signed in", &root),
        ] {
            let none = b.post_form(path, &fields).status;
            if none != 403 {
                wrong.push(format!("{who} {path} without a token: {none}"));
            }
            let mut forged = vec![("csrf", "forged")];
            forged.extend_from_slice(&fields);
            let status = b.post_form(path, &forged).status;
            if status != 403 {
                wrong.push(format!("{who} {path} with a forged token: {status}"));
            }
        }
        if token == gatehouse::web::FormToken::Session {
            // A signed-in form takes the session's token, not the anonymous one.
            with_cookie.set_cookie("gatehouse_csrf", &root_anon);
            let token = with_cookie.get("/login").csrf().expect("a login form");
            let mut anon = vec![("csrf", token.as_str())];
            anon.extend_from_slice(&fields);
            let status = root.post_form(path, &anon).status;
            if status != 403 {
                wrong.push(format!(
                    "signed in {path} with the anonymous token: {status}"
                ));
            }
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} form routes");
    assert!(wrong.is_empty(), "not refused first:\n{}", wrong.join("\n"));
    // Nothing changed: root is still signed in and an administrator, bob
    // still signs in with his password.
    assert_eq!(root.get("/admin").status, 200);
    assert_eq!(app.browser().login("bob", "bob's password").status, 303);
}

/// Each route answers a method it does not take with `405` and an `Allow`
/// header naming exactly the methods it does take (pinned here so that a
/// change to how routes are declared keeps every answer as it was).
#[test]
fn every_route_answers_another_method_with_405_and_its_allow_header() {
    let app = TestApp::spawn_with(&[("allow_registration", "true")]);
    let b = app.browser();
    let get_only = [
        "/",
        "/healthz",
        "/account",
        "/admin",
        "/admin/sessions",
        "/auth/verify",
        "/auth/forward",
        "/api/session",
        "/api/openapi.yaml",
        "/assets/style.css",
    ];
    let get_and_post = [
        "/login",
        "/logout",
        "/setup",
        "/register",
        "/admin/users",
        "/admin/users/delete",
        "/admin/users/reset-2fa",
        "/account/totp/remove",
        "/account/passkeys/remove",
        "/login/second",
        "/login/enrol",
    ];
    let post_only = [
        "/login/passkey/options",
        "/login/passkey",
        "/login/second/passkey/options",
        "/login/second/passkey",
        "/login/enrol/passkey/options",
        "/login/enrol/passkey",
        "/account/sessions/end",
        "/account/sessions/end-others",
        "/account/password",
        "/account/totp",
        "/account/totp/confirm",
        "/account/recovery",
        "/account/passkeys/options",
        "/account/passkeys",
        "/admin/users/password",
        "/admin/users/disable",
        "/admin/users/enable",
        "/admin/users/grant-admin",
        "/admin/users/revoke-admin",
        "/admin/sessions/end",
        "/api/login",
        "/api/logout",
        "/api/login/second",
    ];
    let mut wrong = Vec::new();
    let mut check = |what: String, resp: crate::helpers::Resp, allow: &str| {
        if resp.status != 405 || resp.header("allow") != Some(allow) {
            wrong.push(format!(
                "{what}: {} Allow {:?}, not 405 Allow {allow:?}",
                resp.status,
                resp.header("allow")
            ));
        }
    };
    for path in get_only {
        check(
            format!("PUT {path}"),
            b.send_json("PUT", path, "{}", &[]),
            "GET, HEAD",
        );
        check(format!("POST {path}"), b.post_form(path, &[]), "GET, HEAD");
    }
    for path in get_and_post {
        let allow = "GET, HEAD, POST";
        check(
            format!("PUT {path}"),
            b.send_json("PUT", path, "{}", &[]),
            allow,
        );
    }
    for path in post_only {
        check(format!("GET {path}"), b.get(path), "POST");
        check(
            format!("PUT {path}"),
            b.send_json("PUT", path, "{}", &[]),
            "POST",
        );
    }
    check(
        "GET /api/session/data".to_owned(),
        b.get("/api/session/data"),
        "PATCH",
    );
    check(
        "POST /api/session/data".to_owned(),
        b.send_json("POST", "/api/session/data", "{}", &[]),
        "PATCH",
    );
    // A path no table declares is no route, whatever the method and
    // whatever it starts with.
    for path in ["/login/nope", "/account/nope", "/admin/nope", "/api/nope"] {
        for resp in [b.get(path), b.send_json("PUT", path, "{}", &[])] {
            if resp.status != 404 {
                wrong.push(format!("{path}: {}, not 404", resp.status));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
