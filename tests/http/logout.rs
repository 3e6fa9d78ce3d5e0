//! Signing out reaching the apps (OpenID Connect Front-Channel Logout 1.0
//! and Back-Channel Logout 1.0), with a real listener in the test standing
//! in for each client: the signed-out page frames each client's
//! front-channel URI with `iss` and `sid` and lets the page frame exactly
//! those origins; every way a session ends posts the client a logout token
//! that verifies against the JWKS and says who; a client that accepts and
//! never answers delays no sign-out and holds no threads; a client without
//! these URIs gets nothing; a URI that is not allowed stops check-config.
//! A client made on `/admin/clients` (through the password step) or with
//! `gatehouse oidc client create` is told the same ways, and sent on to
//! its own post-logout redirect URIs only.

use std::io::Read as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::helpers::{Browser, Resp, TestApp, enc};
use crate::oidc::{claims_of, follow, param};

const ISSUER: &str = "http://gatehouse.test";
const SECRET: &str = "logout-secret-0123456789-abcdefghij";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// [`ISSUER`] as a query value.
const ISSUER_IN_QUERY: &str = "http%3A%2F%2Fgatehouse.test";

/// One request a stand-in client received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    url: String,
    content_type: String,
    body: String,
}

/// A stand-in relying party on 127.0.0.1: answers `200` to everything and
/// keeps what it was sent.
struct Rp {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Rp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Rp {
    fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = Arc::clone(&seen);
        let (addr, stop) = crate::helpers::upstream(move |request| {
            let mut body = String::new();
            if let Some(mut data) = request.data() {
                let _ = data.read_to_string(&mut body);
            }
            log.lock().expect("log").push(Seen {
                method: request.method().to_owned(),
                url: request.raw_url().to_owned(),
                content_type: request.header("Content-Type").unwrap_or("").to_owned(),
                body,
            });
            rouille::Response::text("")
        });
        Self {
            port: addr.port(),
            seen,
            stop,
        }
    }

    /// The logout tokens posted to `/back` so far.
    fn tokens(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("seen")
            .iter()
            .filter(|s| s.url == "/back")
            .map(|s| {
                assert_eq!(s.method, "POST", "{s:?}");
                assert_eq!(s.content_type, "application/x-www-form-urlencoded", "{s:?}");
                s.body
                    .strip_prefix("logout_token=")
                    .filter(|t| !t.contains('&'))
                    .unwrap_or_else(|| panic!("one logout_token field: {s:?}"))
                    .to_owned()
            })
            .collect()
    }

    /// Waits (a few seconds at most) until `n` logout tokens came.
    fn wait_for_tokens(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let tokens = self.tokens();
            if tokens.len() >= n || Instant::now() > deadline {
                assert_eq!(tokens.len(), n, "{:?}", self.seen.lock().expect("seen"));
                return tokens;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A stand-in client that accepts connections and never answers: counts
/// what it holds open at once (a connection ends when gatehouse gives up
/// on it and closes it).
struct Hanging {
    port: u16,
    accepted: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
}

impl Hanging {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted: Arc<AtomicUsize> = Arc::default();
        let most_open: Arc<AtomicUsize> = Arc::default();
        let open: Arc<AtomicUsize> = Arc::default();
        let (a, m) = (Arc::clone(&accepted), Arc::clone(&most_open));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                // A connection gatehouse closed just before opening this
                // one may not have been seen closing yet: a moment for that.
                for _ in 0..50 {
                    if open.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now_open, Ordering::SeqCst);
                let open = Arc::clone(&open);
                std::thread::spawn(move || {
                    // Read (and never answer) until gatehouse hangs up.
                    let mut sink = [0u8; 4096];
                    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            accepted,
            most_open,
        }
    }
}

/// The configuration: `rp` takes both kinds of logout at the stand-in
/// on `port`; `nosid` only the front-channel, without `iss` and `sid`;
/// `quiet` neither; `extra` is added as it is.
fn config(port: u16, extra: &str) -> String {
    format!(
        r#"public_url = "{ISSUER}"

[[clients]]
id = "rp"
name = "Relying Party"
secret = "{SECRET}"
redirect_uris = ["https://rp.test/cb"]
frontchannel_logout_uri = "http://127.0.0.1:{port}/front?from=gatehouse"
backchannel_logout_uri = "http://127.0.0.1:{port}/back"
post_logout_redirect_uris = ["https://rp.test/bye"]

[[clients]]
id = "nosid"
secret = "{SECRET}"
redirect_uris = ["https://nosid.test/cb"]
frontchannel_logout_uri = "http://localhost:{port}/front-nosid"
frontchannel_logout_session_required = false

[[clients]]
id = "quiet"
secret = "{SECRET}"
redirect_uris = ["https://quiet.test/cb"]
{extra}"#
    )
}

fn spawn(rp: &Rp) -> TestApp {
    let app = TestApp::spawn_with_file(&config(rp.port, ""), &[]);
    app.add_user("alice", "alice-password-1", false);
    app
}

/// Signs `browser` in to `client` (as alice, through the sign-in page
/// when needed) and redeems the code: the token response.
fn sign_in_to(base: &str, browser: &Browser, client: &str) -> Value {
    sign_in_with(base, browser, client, SECRET)
}

/// [`sign_in_to`] a client whose secret is `secret`.
fn sign_in_with(base: &str, browser: &Browser, client: &str, secret: &str) -> Value {
    let redirect = format!("https://{client}.test/cb");
    let resp = follow(
        browser,
        &format!(
            "/oidc/authorize?client_id={client}&response_type=code&scope=openid&nonce=n-1&state=s&redirect_uri={}",
            enc(&redirect)
        ),
    );
    let location = resp.header("location").expect("back to the client");
    assert!(location.starts_with(&redirect), "{location}");
    let code = param(location, "code").expect("a code");
    let basic = format!("Basic {}", STANDARD.encode(format!("{client}:{secret}")));
    let tokens = Browser::new(base).post_form_with(
        "/oidc/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
        ],
        &[("Authorization", &basic)],
    );
    assert_eq!(tokens.status, 200, "{tokens:?}");
    serde_json::from_str(&tokens.body).expect("JSON")
}

fn id_token(tokens: &Value) -> &str {
    tokens["id_token"].as_str().expect("an ID token")
}

/// The header and claims of `token` once its RS256 signature verifies
/// with the key its `kid` names in the server's JWKS (RustCrypto's `rsa`,
/// sharing no code with the signer).
fn verified(base: &str, token: &str) -> (Value, Value) {
    use rsa::signature::Verifier as _;
    let jwks: Value =
        serde_json::from_str(&Browser::new(base).get("/oidc/jwks").body).expect("JWKS");
    let b64 = |s: &str| URL_SAFE_NO_PAD.decode(s).expect("base64url");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value = serde_json::from_slice(&b64(parts[0])).expect("header");
    let claims: Value = serde_json::from_slice(&b64(parts[1])).expect("claims");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the kid is in the JWKS");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(jwk["alg"], "RS256");
    let field = |n: &str| rsa::BigUint::from_bytes_be(&b64(jwk[n].as_str().expect("field")));
    let key = rsa::RsaPublicKey::new(field("n"), field("e")).expect("RSA key");
    let signature = rsa::pkcs1v15::Signature::try_from(&b64(parts[2])[..]).expect("RSA signature");
    rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(key)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the logout token's signature verifies against the JWKS");
    (header, claims)
}

/// Checks a logout token: signature, type and every claim, for the
/// session of `id_token` at `client`.
#[track_caller]
fn assert_logout_token(base: &str, token: &str, client: &str, id_token: &str) {
    let (header, claims) = verified(base, token);
    let id = claims_of(id_token);
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], client);
    assert_eq!(claims["sub"], id["sub"]);
    assert_eq!(claims["sid"], id["sid"]);
    assert_eq!(claims["events"], json!({ EVENT: {} }));
    assert!(claims.get("nonce").is_none(), "{claims}");
    let iat = claims["iat"].as_i64().expect("iat");
    let exp = claims["exp"].as_i64().expect("exp");
    assert!(exp > iat && exp - iat <= 300, "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
}

/// The `src` of each front-channel frame on a page, entities undone.
fn frames(page: &Resp) -> Vec<String> {
    page.body
        .match_indices("<iframe")
        .map(|(at, _)| {
            let tag = &page.body[at..at + page.body[at..].find('>').expect("tag end")];
            assert!(tag.contains(" hidden"), "{tag}");
            assert!(tag.contains("class=\"frontchannel\""), "{tag}");
            let src = &tag[tag.find("src=\"").expect("a src") + 5..];
            src[..src.find('"').expect("src end")].replace("&amp;", "&")
        })
        .collect()
}

/// The page policy every page has, and the one the signed-out page has.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

fn csp_headers(resp: &Resp) -> Vec<&str> {
    resp.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-security-policy"))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn signing_out_frames_each_clients_uri_with_iss_and_sid_and_posts_a_logout_token() {
    let rp = Rp::start();
    let app = spawn(&rp);
    let discovery: Value =
        serde_json::from_str(&app.browser().get("/.well-known/openid-configuration").body)
            .expect("JSON");
    for flag in [
        "frontchannel_logout_supported",
        "frontchannel_logout_session_supported",
        "backchannel_logout_supported",
        "backchannel_logout_session_supported",
    ] {
        assert_eq!(discovery[flag], true, "{flag}");
    }
    let browser = app.browser();
    let tokens = sign_in_to(&app.base, &browser, "rp");
    sign_in_to(&app.base, &browser, "nosid");
    sign_in_to(&app.base, &browser, "quiet");
    let sid = claims_of(id_token(&tokens))["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let page = browser.logout();
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("id=\"signed-out\""));
    // One frame per client with a front-channel URI: `rp`'s with `iss`
    // and `sid` added to its own query, `nosid`'s as registered; none for
    // `quiet`.
    let mut srcs = frames(&page);
    srcs.sort();
    assert_eq!(
        srcs,
        [
            format!(
                "http://127.0.0.1:{}/front?from=gatehouse&iss={ISSUER_IN_QUERY}&sid={sid}",
                rp.port
            ),
            format!("http://localhost:{}/front-nosid", rp.port),
        ]
    );
    // Exactly those origins may be framed, on this response only.
    assert_eq!(
        csp_headers(&page),
        [format!(
            "{CSP}; frame-src http://127.0.0.1:{port} http://localhost:{port}",
            port = rp.port
        )]
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(
        page.header("clear-site-data"),
        Some("\"cookies\", \"storage\"")
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(
        page.body
            .contains("<a href=\"/login\" id=\"signed-out-continue\">")
    );
    assert!(
        page.body
            .contains("<meta http-equiv=\"refresh\" content=\"5; url=/login\">")
    );
    assert!(page.body.contains("<script src=\"/assets/signed-out.js\">"));
    assert!(!page.body.contains("<script>"), "nothing inline");
    let script = app.browser().get("/assets/signed-out.js");
    assert_eq!(script.status, 200);
    assert!(
        script
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/javascript"))
    );
    // Signed out of gatehouse and of the apps' tokens; the next page
    // frames nothing again.
    let login = browser.get("/login");
    let policy = csp_headers(&login);
    assert_eq!(policy.len(), 1);
    assert!(!policy[0].contains("frame-src"), "{policy:?}");
    assert_eq!(browser.get("/").status, 303);
    let access = tokens["access_token"].as_str().expect("access");
    let userinfo = Browser::new(&app.base).get_with(
        "/oidc/userinfo",
        &[("Authorization", &format!("Bearer {access}"))],
    );
    assert_eq!(userinfo.status, 401);
    // The back channel: one logout token, for `rp` (the only client with
    // a back-channel URI), that verifies and names the session.
    let posted = rp.wait_for_tokens(1);
    assert_logout_token(&app.base, &posted[0], "rp", id_token(&tokens));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rp.tokens().len(), 1, "one notice per client and session");
    // A sign-out that signed in to no client with front-channel logout
    // answers as before, and tells nobody.
    let plain = app.browser();
    sign_in_to(&app.base, &plain, "quiet");
    let out = plain.logout();
    crate::helpers::assert_redirects_to(&out, "/login");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rp.tokens().len(), 1);
}

#[test]
fn end_session_frames_the_clients_then_goes_on_to_the_post_logout_redirect_uri() {
    let rp = Rp::start();
    let app = spawn(&rp);
    // With the session's own ID token as the hint: at once.
    let browser = app.browser();
    let tokens = sign_in_to(&app.base, &browser, "rp");
    let id = id_token(&tokens).to_owned();
    let sid = claims_of(&id)["sid"].as_str().expect("sid").to_owned();
    let page = browser.get(&format!(
        "/oidc/end_session?id_token_hint={}&post_logout_redirect_uri={}&state=bye",
        enc(&id),
        enc("https://rp.test/bye")
    ));
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        frames(&page),
        [format!(
            "http://127.0.0.1:{}/front?from=gatehouse&iss={ISSUER_IN_QUERY}&sid={sid}",
            rp.port
        )]
    );
    assert_eq!(
        csp_headers(&page),
        [format!("{CSP}; frame-src http://127.0.0.1:{}", rp.port)]
    );
    assert!(
        page.body
            .contains("<a href=\"https://rp.test/bye?state=bye\" id=\"signed-out-continue\">")
    );
    assert!(page.body.contains(
        "<meta http-equiv=\"refresh\" content=\"5; url=https://rp.test/bye?state=bye\">"
    ));
    assert_eq!(page.header("clear-site-data"), Some("\"cookies\""));
    assert_eq!(browser.get("/").status, 303, "signed out of gatehouse");
    let posted = rp.wait_for_tokens(1);
    assert_logout_token(&app.base, &posted[0], "rp", &id);
    // Without a hint the user confirms first; then the same.
    let browser = app.browser();
    let tokens = sign_in_to(&app.base, &browser, "rp");
    let confirm = browser.get("/oidc/end_session?client_id=rp");
    assert_eq!(confirm.status, 200);
    assert!(frames(&confirm).is_empty(), "nothing told before the click");
    let csrf = confirm.csrf().expect("token");
    let done = browser.post_form(
        "/oidc/end_session",
        &[("csrf", &csrf), ("confirm", "yes"), ("client_id", "rp")],
    );
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(frames(&done).len(), 1);
    assert!(
        done.body
            .contains("<a href=\"/login\" id=\"signed-out-continue\">")
    );
    let posted = rp.wait_for_tokens(2);
    assert_logout_token(&app.base, &posted[1], "rp", id_token(&tokens));
    // A logout token is no ID token: it does not serve as a hint.
    let browser = app.browser();
    sign_in_to(&app.base, &browser, "rp");
    let refused = browser.get(&format!(
        "/oidc/end_session?id_token_hint={}",
        enc(&posted[1])
    ));
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(browser.get("/account").status, 200, "still signed in");
}

/// The opaque handle of the session a page was rendered for.
fn handle_of_this_session(page: &Resp) -> String {
    let at = page
        .body
        .find("id=\"this-session\"")
        .expect("this session is marked");
    let row = page.body[..at].rfind("id=\"session-").expect("row");
    let rest = &page.body[row + "id=\"session-".len()..];
    rest[..rest.find('"').expect("end")].to_owned()
}

fn admin_post(b: &Browser, action: &str, fields: &[(&str, &str)]) -> Resp {
    let csrf = b
        .get("/admin/users")
        .csrf()
        .expect("csrf on the admin page");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all)
}

#[test]
fn ended_sessions_new_passwords_and_removed_users_post_logout_tokens() {
    let rp = Rp::start();
    let app = spawn(&rp);
    app.add_user("root", "root-password-1", true);
    let admin = app.browser();
    admin.login("root", "root-password-1");
    // An administrator ends one of alice's sessions.
    let ended = app.browser();
    let tokens = sign_in_to(&app.base, &ended, "rp");
    let handle = handle_of_this_session(&ended.get("/account"));
    let out = admin_post(&admin, "/admin/sessions/end", &[("handle", &handle)]);
    assert_eq!(out.status, 303, "{out:?}");
    let posted = rp.wait_for_tokens(1);
    assert_logout_token(&app.base, &posted[0], "rp", id_token(&tokens));
    // A new password ends her other sessions (their clients are told),
    // never the one it was set in.
    let here = app.browser();
    let kept = sign_in_to(&app.base, &here, "rp");
    let there = app.browser();
    let other = sign_in_to(&app.base, &there, "rp");
    let csrf = here.get("/account").csrf().expect("csrf");
    let changed = here.post_form(
        "/account/password",
        &[
            ("csrf", &csrf),
            ("current", "alice-password-1"),
            ("password", "alice-password-2"),
            ("password2", "alice-password-2"),
        ],
    );
    assert_eq!(changed.status, 303, "{changed:?}");
    let posted = rp.wait_for_tokens(2);
    assert_logout_token(&app.base, &posted[1], "rp", id_token(&other));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rp.tokens().len(), 2, "the session that stays is not told");
    let kept_sid = &claims_of(id_token(&kept))["sid"];
    assert!(
        rp.tokens()
            .iter()
            .all(|t| &verified(&app.base, t).1["sid"] != kept_sid)
    );
    // Disabling her ends the rest; deleting her ends a session made since
    // (enabled again), told with the `sub` she had.
    assert_eq!(
        admin_post(&admin, "/admin/users/disable", &[("username", "alice")]).status,
        303
    );
    let posted = rp.wait_for_tokens(3);
    assert_logout_token(&app.base, &posted[2], "rp", id_token(&kept));
    assert_eq!(
        admin_post(&admin, "/admin/users/enable", &[("username", "alice")]).status,
        303
    );
    let last = Browser::new(&app.base);
    last.login("alice", "alice-password-2");
    let redirect = "https://rp.test/cb";
    let resp = follow(
        &last,
        &format!(
            "/oidc/authorize?client_id=rp&response_type=code&scope=openid&redirect_uri={}",
            enc(redirect)
        ),
    );
    let code = param(resp.header("location").expect("back"), "code").expect("code");
    let basic = format!("Basic {}", STANDARD.encode(format!("rp:{SECRET}")));
    let final_tokens: Value = serde_json::from_str(
        &Browser::new(&app.base)
            .post_form_with(
                "/oidc/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                ],
                &[("Authorization", &basic)],
            )
            .body,
    )
    .expect("JSON");
    assert_eq!(
        admin_post(
            &admin,
            "/admin/users/delete",
            &[("username", "alice"), ("confirm", "yes")]
        )
        .status,
        303
    );
    let posted = rp.wait_for_tokens(4);
    assert_logout_token(&app.base, &posted[3], "rp", id_token(&final_tokens));
}

#[test]
fn a_command_run_beside_the_server_has_its_notices_sent_by_the_server() {
    let rp = Rp::start();
    let app = spawn(&rp);
    let browser = app.browser();
    let tokens = sign_in_to(&app.base, &browser, "rp");
    let out = crate::cli::ok(&crate::cli::gatehouse(
        app.dir.path(),
        &["user", "disable", "alice"],
        None,
    ));
    assert!(out.contains("disabled alice"), "{out}");
    // Queued in the database by the command, found by the server's
    // senders on their next look.
    let posted = rp.wait_for_tokens(1);
    assert_logout_token(&app.base, &posted[0], "rp", id_token(&tokens));
}

#[test]
fn a_client_that_never_answers_delays_no_sign_out_and_holds_no_threads() {
    if !crate::helpers::on_sqlite(
        "a_client_that_never_answers_delays_no_sign_out_and_holds_no_threads",
    ) {
        return;
    }
    use crate::raw::{collect_log, served_url};
    let rp = Rp::start();
    let hanging = Hanging::start();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        config(
            rp.port,
            &format!(
                r#"
[[clients]]
id = "hangs"
secret = "{SECRET}"
redirect_uris = ["https://hangs.test/cb"]
backchannel_logout_uri = "http://127.0.0.1:{}/back"
"#,
                hanging.port
            ),
        ),
    )
    .expect("config");
    crate::cli::ok(&crate::cli::gatehouse(
        dir.path(),
        &["user", "add", "alice", "--password-stdin"],
        Some("alice-password-1\n"),
    ));
    // The real binary as a child, so its threads can be counted alone.
    let mut child = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let log = collect_log(&mut child);
    let (_, base) = served_url(&mut child);
    let child = Kill(child);
    let threads = || {
        std::fs::read_dir(format!("/proc/{}/task", child.0.id()))
            .expect("the server's tasks")
            .count()
    };
    // One browser (one kept-alive connection), a new sign-in each round.
    let browser = Browser::new(&base);
    let round = |n: usize| {
        browser.jar.lock().expect("jar").clear();
        let told = sign_in_to(&base, &browser, "hangs");
        sign_in_to(&base, &browser, "rp");
        let started = Instant::now();
        let out = browser.logout();
        let took = started.elapsed();
        assert_eq!(out.status, 200, "round {n}: {out:?}");
        assert!(
            took < Duration::from_secs(2),
            "round {n}: the sign-out took {took:?} with a client that never answers"
        );
        told
    };
    let first = Instant::now();
    round(0);
    let before = threads();
    for n in 1..=8 {
        round(n);
    }
    // The client that answers is told of all nine sign-outs while the
    // other one hangs (one notice per client is in flight at a time).
    rp.wait_for_tokens(9);
    if first.elapsed() < Duration::from_secs(4) {
        // Well within the first delivery's timeout: nine notices queued
        // for the client that hangs, one connection made to it.
        assert_eq!(hanging.accepted.load(Ordering::SeqCst), 1);
    }
    let after = threads();
    assert!(
        after <= before + 2,
        "{before} threads before, {after} after eight notices to a client that never answers"
    );
    assert!(hanging.accepted.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        hanging.most_open.load(Ordering::SeqCst),
        1,
        "one connection at a time to the client that hangs"
    );
    // Given up on after its timeout, logged without the token.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !log
        .lock()
        .expect("log")
        .iter()
        .any(|l| l.contains("oidc backchannel logout failed client=\"hangs\""))
    {
        assert!(Instant::now() < deadline, "{:?}", log.lock().expect("log"));
        std::thread::sleep(Duration::from_millis(50));
    }
    for line in log.lock().expect("log").iter() {
        assert!(!line.contains("eyJ"), "a token in the log: {line}");
    }
}

#[test]
fn a_logout_uri_that_is_not_allowed_is_refused_by_check_config() {
    use crate::cli::{fails, gatehouse, ok};
    let dir = tempfile::tempdir().expect("dir");
    let write = |client: &str| {
        std::fs::write(
            dir.path().join("gatehouse.toml"),
            format!("public_url = \"https://auth.lan\"\n\n[[clients]]\nid = \"app\"\n{client}"),
        )
        .expect("config");
    };
    for (client, field) in [
        // Plain HTTP to another machine, for an app served over HTTPS.
        (
            "redirect_uris = [\"https://app.lan/cb\"]\nfrontchannel_logout_uri = \"http://app.lan/logout\"\n",
            "frontchannel_logout_uri",
        ),
        (
            "redirect_uris = [\"https://app.lan/cb\"]\nbackchannel_logout_uri = \"http://app.lan/logout\"\n",
            "backchannel_logout_uri",
        ),
        // HTTP to the host of an http redirect URI only, not its neighbour.
        (
            "redirect_uris = [\"http://app.lan/cb\"]\nfrontchannel_logout_uri = \"http://evil.lan/logout\"\n",
            "frontchannel_logout_uri",
        ),
        // Nothing a Content-Security-Policy cannot name exactly.
        (
            "redirect_uris = [\"https://app.lan/cb\"]\nfrontchannel_logout_uri = \"https://[::1]:8443/logout\"\n",
            "frontchannel_logout_uri",
        ),
        (
            "redirect_uris = [\"https://app.lan/cb\"]\nfrontchannel_logout_uri = \"https://app_1.lan/logout\"\n",
            "frontchannel_logout_uri",
        ),
        (
            "redirect_uris = [\"https://app.lan/cb\"]\nfrontchannel_logout_uri = \"https://app.lan:99999/logout\"\n",
            "frontchannel_logout_uri",
        ),
        (
            "redirect_uris = [\"https://app.lan/cb\"]\nfrontchannel_logout_uri = \"https://app.lan/logout#x\"\n",
            "frontchannel_logout_uri",
        ),
        (
            "redirect_uris = [\"https://app.lan/cb\"]\nfrontchannel_logout_uri = \"app.lan/logout\"\n",
            "frontchannel_logout_uri",
        ),
        (
            "redirect_uris = [\"https://app.lan/cb\"]\nfrontchannel_logout_session_required = \"yes\"\n",
            "frontchannel_logout_session_required",
        ),
    ] {
        write(client);
        let err = fails(&gatehouse(dir.path(), &["check-config"], None));
        assert!(err.contains(field), "{client}: {err}");
        assert!(
            err.contains("client \"app\"") || err.contains("[[clients]] number 1"),
            "{client}: {err}"
        );
    }
    for client in [
        "redirect_uris = [\"https://app.lan/cb\"]\nfrontchannel_logout_uri = \"https://app.lan/logout?x=1\"\nbackchannel_logout_uri = \"https://app.lan:8443/bc\"\n",
        "redirect_uris = [\"http://app.lan/cb\"]\nfrontchannel_logout_uri = \"http://APP.lan:8080/logout\"\nfrontchannel_logout_session_required = false\n",
        "redirect_uris = [\"https://app.lan/cb\"]\nbackchannel_logout_uri = \"http://127.0.0.1:9000/bc\"\nbackchannel_logout_session_required = false\n",
    ] {
        write(client);
        let shown = ok(&gatehouse(dir.path(), &["check-config"], None));
        assert!(shown.contains("logout_uri"), "{client}: {shown}");
    }
}

/// The value of the `<input>` with this `id` on a page.
fn input(resp: &Resp, id: &str) -> Option<String> {
    let at = resp.body.find(&format!("id=\"{id}\""))?;
    let rest = &resp.body[at..];
    let rest = &rest[rest.find("value=\"")? + "value=\"".len()..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

/// Makes a client on `/admin/clients` as root, started by a script's
/// click so the password step is asked for and its carried fields are
/// what makes the client: its secret, as shown.
fn make_on_admin(app: &TestApp, fields: &[(&str, &str)]) -> String {
    use crate::helpers::{SCRIPTED_CLICK, through_password_step};
    app.add_user("root", "root-password-1", true);
    let root = app.browser();
    assert_eq!(root.login("root", "root-password-1").status, 303);
    let csrf = root.get("/admin/clients").csrf().expect("the page's token");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let step = root.post_form_with("/admin/clients", &all, SCRIPTED_CLICK);
    assert_eq!(step.status, 200, "{step:?}");
    assert!(step.body.contains("id=\"reauth-form\""), "{step:?}");
    let again = through_password_step(&step, "root-password-1");
    let again: Vec<(&str, &str)> = again
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let made = root.post_form_with("/admin/clients", &again, SCRIPTED_CLICK);
    assert_eq!(made.status, 200, "{made:?}");
    assert_eq!(
        input(&made, "made-client-id").as_deref(),
        fields
            .iter()
            .find(|(k, _)| *k == "client_id")
            .map(|(_, v)| *v)
    );
    // The list shows its logout settings.
    for (k, v) in fields {
        if k.contains("logout_uri") || *k == "post_logout_redirect_uris" {
            for line in v.lines() {
                assert!(made.body.contains(line.trim()), "{k}: {line} not listed");
            }
        }
    }
    input(&made, "made-client-secret").expect("the secret is shown")
}

#[test]
fn a_client_made_on_the_admin_page_is_framed_sent_a_logout_token_and_redirected() {
    let rp = Rp::start();
    let app = spawn(&rp);
    let front = format!("http://127.0.0.1:{}/front-made?x=1", rp.port);
    let back = format!("http://127.0.0.1:{}/back", rp.port);
    let secret = make_on_admin(
        &app,
        &[
            ("client_id", "made"),
            ("client_name", "Made App"),
            ("redirect_uris", "https://made.test/cb"),
            ("client_type", "confidential"),
            ("pkce", "optional"),
            ("signing_alg", "RS256"),
            ("claims_in_id_token", "1"),
            ("frontchannel_logout_uri", &front),
            ("frontchannel_logout_session_required", "1"),
            ("backchannel_logout_uri", &back),
            ("backchannel_logout_session_required", "1"),
            (
                "post_logout_redirect_uris",
                "https://made.test/bye\r\nhttps://made.test/bye2",
            ),
        ],
    );
    // Signing out frames its front-channel URI (with `iss` and `sid`),
    // lets the page frame its origin, and posts it a logout token.
    let browser = app.browser();
    let tokens = sign_in_with(&app.base, &browser, "made", &secret);
    let sid = claims_of(id_token(&tokens))["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let page = browser.logout();
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        frames(&page),
        [format!("{front}&iss={ISSUER_IN_QUERY}&sid={sid}")]
    );
    assert_eq!(
        csp_headers(&page),
        [format!("{CSP}; frame-src http://127.0.0.1:{}", rp.port)]
    );
    let posted = rp.wait_for_tokens(1);
    assert_logout_token(&app.base, &posted[0], "made", id_token(&tokens));
    // end_session sends the browser on to a URI it registered (the
    // second line of the box), with `state`.
    let browser = app.browser();
    let tokens = sign_in_with(&app.base, &browser, "made", &secret);
    let id = id_token(&tokens).to_owned();
    let page = browser.get(&format!(
        "/oidc/end_session?id_token_hint={}&post_logout_redirect_uri={}&state=s1",
        enc(&id),
        enc("https://made.test/bye2")
    ));
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(frames(&page).len(), 1);
    assert!(
        page.body
            .contains("<a href=\"https://made.test/bye2?state=s1\" id=\"signed-out-continue\">"),
        "{}",
        page.body
    );
    let posted = rp.wait_for_tokens(2);
    assert_logout_token(&app.base, &posted[1], "made", &id);
    // Never to one it did not register (nor to the file's client's):
    // gatehouse's own page instead.
    for other in [
        "https://made.test/other",
        "https://made.test/bye/",
        "https://rp.test/bye",
    ] {
        let browser = app.browser();
        let tokens = sign_in_with(&app.base, &browser, "made", &secret);
        let page = browser.get(&format!(
            "/oidc/end_session?id_token_hint={}&post_logout_redirect_uri={}",
            enc(id_token(&tokens)),
            enc(other)
        ));
        assert_eq!(page.status, 200, "{other}: {page:?}");
        assert!(!page.body.contains(other), "{other}");
        assert!(
            page.body
                .contains("<a href=\"/login\" id=\"signed-out-continue\">"),
            "{other}"
        );
        assert_eq!(browser.get("/").status, 303, "{other}: signed out");
    }
    rp.wait_for_tokens(5);
}

#[test]
fn a_client_made_with_the_command_line_is_framed_sent_a_logout_token_and_redirected() {
    let rp = Rp::start();
    let app = spawn(&rp);
    let front = format!("http://localhost:{}/front-cli", rp.port);
    let back = format!("http://127.0.0.1:{}/back", rp.port);
    let out = crate::cli::ok(&crate::cli::gatehouse(
        app.dir.path(),
        &[
            "oidc",
            "client",
            "create",
            "--id",
            "cli",
            "--redirect-uri",
            "https://cli.test/cb",
            "--frontchannel-logout-uri",
            &front,
            "--frontchannel-logout-session-required=false",
            "--backchannel-logout-uri",
            &back,
            "--backchannel-logout-session-required",
            "--post-logout-redirect-uri",
            "https://cli.test/bye",
            "--post-logout-redirect-uri",
            "cli.native:/bye",
        ],
        None,
    ));
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client secret: "))
        .unwrap_or_else(|| panic!("no secret in {out}"))
        .to_owned();
    let row = app
        .state()
        .oidc
        .as_ref()
        .expect("provider")
        .registry()
        .find_stored("cli")
        .expect("find")
        .expect("made");
    assert!(!row.row.frontchannel_logout_session_required);
    assert!(row.row.backchannel_logout_session_required);
    assert_eq!(
        row.row.post_logout_redirect_uris,
        ["https://cli.test/bye", "cli.native:/bye"]
    );
    // Framed as registered (it asked for no `iss` and `sid`), told by
    // the back channel.
    let browser = app.browser();
    let tokens = sign_in_with(&app.base, &browser, "cli", &secret);
    let page = browser.logout();
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(frames(&page), std::slice::from_ref(&front));
    assert_eq!(
        csp_headers(&page),
        [format!("{CSP}; frame-src http://localhost:{}", rp.port)]
    );
    let posted = rp.wait_for_tokens(1);
    assert_logout_token(&app.base, &posted[0], "cli", id_token(&tokens));
    // Its post-logout redirect URIs, and only those.
    let browser = app.browser();
    let tokens = sign_in_with(&app.base, &browser, "cli", &secret);
    let page = browser.get(&format!(
        "/oidc/end_session?id_token_hint={}&post_logout_redirect_uri={}",
        enc(id_token(&tokens)),
        enc("cli.native:/bye")
    ));
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body
            .contains("<a href=\"cli.native:/bye\" id=\"signed-out-continue\">"),
        "{}",
        page.body
    );
    let browser = app.browser();
    let tokens = sign_in_with(&app.base, &browser, "cli", &secret);
    let page = browser.get(&format!(
        "/oidc/end_session?id_token_hint={}&post_logout_redirect_uri={}",
        enc(id_token(&tokens)),
        enc("https://cli.test/elsewhere")
    ));
    assert!(
        page.body
            .contains("<a href=\"/login\" id=\"signed-out-continue\">"),
        "{page:?}"
    );
    rp.wait_for_tokens(3);
}
