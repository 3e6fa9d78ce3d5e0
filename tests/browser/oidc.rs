//! Signing in to an OpenID Connect client in Chromium: the browser opens
//! the client's authorization request, is sent to gatehouse's sign-in page
//! (which names the app), signs in with the password or with a passkey
//! alone, and lands back at the client's redirect URI with a code, the
//! same `state` and `iss`. The client (a tiny listener the test runs) then
//! redeems the code at the token endpoint for an ID token. Signing out of
//! gatehouse then loads the client's front-channel logout URI (with `iss`
//! and `sid`) in a hidden frame of the signed-out page, and the browser
//! goes on to the sign-in page.
//!
//! The browser follows gatehouse's redirects to `public_url`, so the server
//! listens on a port picked beforehand and `public_url` is
//! `http://localhost:<that port>` (`localhost`: passkeys need a host name
//! and a secure context).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use sha2::Digest as _;

use crate::helpers::{Browser, TestApp, enc};
use crate::webdriver::Driver;

const SECRET: &str = "wiki-secret-0123456789-abcdefghijkl";
const VERIFIER: &str = "a-verifier-of-at-least-43-characters-0123456789";

/// The client's side: a listener on `127.0.0.1:0` answering every request
/// `200 ok` and keeping each request line.
struct Client {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Client {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("client listens");
        let addr = listener.local_addr().expect("client address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopped) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let kept = Arc::clone(&kept);
                // A connection of its own each: Chromium may open one it
                // sends nothing on.
                std::thread::spawn(move || answer(stream, &kept));
            }
        });
        Self {
            addr,
            requests,
            stop,
        }
    }

    fn redirect_uri(&self) -> String {
        format!("http://{}/cb", self.addr)
    }

    fn frontchannel_logout_uri(&self) -> String {
        format!("http://{}/front", self.addr)
    }

    /// Waits for the browser's request to the redirect URI and returns its
    /// query parameters.
    fn callback(&self, b: &Driver) -> Vec<(String, String)> {
        self.request_to("/cb", b)
    }

    /// Waits for the browser's request to `path` and returns its query
    /// parameters.
    fn request_to(&self, path: &str, b: &Driver) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let start = format!("GET {path}?");
        loop {
            let line = self
                .requests
                .lock()
                .expect("requests")
                .iter()
                .find(|l| l.starts_with(&start))
                .cloned();
            if let Some(line) = line {
                let target = line.split(' ').nth(1).expect("a request target");
                let query = target.split_once('?').map_or("", |(_, q)| q);
                return openidconnect::url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "the client got no request to {path}; the browser is at {}",
                b.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn answer(stream: TcpStream, requests: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    // The rest of the head.
    let mut header = String::new();
    while reader.read_line(&mut header).unwrap_or(0) > 2 {
        header.clear();
    }
    requests
        .lock()
        .expect("requests")
        .push(line.trim_end().to_owned());
    let _ = reader.get_mut().write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    );
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// gatehouse with one confidential client, "The Wiki", sent back to
/// `client`; alice signs in with "correct horse". Returns the app and its
/// issuer.
fn spawn(client: &Client) -> (TestApp, String) {
    let port = free_port();
    let issuer = format!("http://localhost:{port}");
    let toml = format!(
        "public_url = \"{issuer}\"\n\n[[clients]]\nid = \"wiki\"\nname = \"The Wiki\"\n\
         secret = \"{SECRET}\"\nredirect_uris = [\"{}\"]\nfrontchannel_logout_uri = \"{}\"\n",
        client.redirect_uri(),
        client.frontchannel_logout_uri()
    );
    let app = TestApp::spawn_with_file(&toml, &[("listen", &format!("127.0.0.1:{port}"))]);
    app.add_user("alice", "correct horse", false);
    (app, issuer)
}

/// The authorization request for `wiki` (scope openid profile, PKCE S256 of
/// [`VERIFIER`]).
fn authorize_url(issuer: &str, client: &Client, state: &str) -> String {
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER));
    format!(
        "{issuer}/oidc/authorize?client_id=wiki&response_type=code&scope={}&redirect_uri={}\
         &code_challenge={challenge}&code_challenge_method=S256&state={state}",
        enc("openid profile"),
        enc(&client.redirect_uri()),
    )
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Checks the callback (`code`, the same `state`, `iss`), redeems the code
/// with `client_secret_basic` and returns the ID token's claims.
fn redeem(app: &TestApp, issuer: &str, client: &Client, b: &Driver, state: &str) -> Value {
    let params = client.callback(b);
    assert_eq!(param(&params, "state"), Some(state), "{params:?}");
    assert_eq!(param(&params, "iss"), Some(issuer), "{params:?}");
    assert_eq!(param(&params, "error"), None, "{params:?}");
    let code = param(&params, "code").expect("a code");
    let basic = STANDARD.encode(format!("wiki:{SECRET}"));
    let resp = Browser::new(&app.base).post_form_with(
        "/oidc/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &client.redirect_uri()),
            ("code_verifier", VERIFIER),
        ],
        &[("Authorization", &format!("Basic {basic}"))],
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    let body: Value = serde_json::from_str(&resp.body).expect("token JSON");
    let id_token = body["id_token"].as_str().expect("an id_token");
    let payload = id_token.split('.').nth(1).expect("a JWT");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("claims JSON");
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], "wiki");
    assert_eq!(claims["preferred_username"], "alice");
    claims
}

fn amr(claims: &Value) -> Vec<&str> {
    claims["amr"]
        .as_array()
        .expect("amr")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

pub fn a_password_sign_in_lands_back_at_the_client_with_a_code(
    chromedriver: &str,
    chromium: &str,
    shots: &std::path::Path,
) {
    let client = Client::start();
    let (app, issuer) = spawn(&client);
    let b = Driver::start(chromedriver, chromium);
    b.window(1280, 900);

    b.goto(&authorize_url(&issuer, &client, "s-password"));
    b.wait_for("#login-app");
    assert!(
        b.url().starts_with(&format!("{issuer}/login?next=")),
        "{}",
        b.url()
    );
    assert_eq!(b.text("#login-app"), "to continue to The Wiki");
    b.shots(shots, "login-oidc");
    b.type_into("#username", "alice");
    b.type_into("#password", "correct horse");
    b.click("#login-submit");

    let claims = redeem(&app, &issuer, &client, &b, "s-password");
    assert!(b.url().starts_with(&client.redirect_uri()), "{}", b.url());
    assert_eq!(amr(&claims), ["pwd"], "{claims}");

    // Signing out of gatehouse signs the browser out of the client too
    // (front-channel logout): the signed-out page loads the client's
    // logout URI in a hidden frame, `iss` and `sid` added (its policy lets
    // it frame exactly that origin), and goes on to the sign-in page once
    // the frame has loaded, before its three seconds are up.
    b.goto(&format!("{issuer}/logout"));
    b.wait_for("#logout-submit");
    let started = Instant::now();
    b.click("#logout-submit");
    let front = client.request_to("/front", &b);
    assert_eq!(param(&front, "iss"), Some(issuer.as_str()), "{front:?}");
    assert_eq!(param(&front, "sid"), claims["sid"].as_str(), "{front:?}");
    b.wait_for_path("/login");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "the signed-out page went on after {took:?}, not when its frame loaded"
    );
}

pub fn a_passkey_sign_in_lands_back_at_the_client_with_a_code(
    chromedriver: &str,
    chromium: &str,
    shots: &std::path::Path,
) {
    let client = Client::start();
    let (app, issuer) = spawn(&client);
    let b = Driver::start(chromedriver, chromium);
    b.window(1280, 900);
    let authenticator = b.add_virtual_authenticator();

    // Register a passkey on /account (as in the passkeys test), then sign
    // out.
    b.goto(&format!("{issuer}/login"));
    b.type_into("#username", "alice");
    b.type_into("#password", "correct horse");
    b.click("#login-submit");
    b.wait_for_path("/");
    b.goto(&format!("{issuer}/account#two-factor"));
    b.type_into("#passkey-name", "laptop");
    b.click("#passkey-register-submit");
    b.wait_for("#recovery-codes");
    assert_eq!(b.authenticator_credentials(&authenticator).len(), 1);
    b.click("#continue");
    b.wait_for("#passkeys");
    b.goto(&format!("{issuer}/logout"));
    b.click("#logout-submit");
    b.wait_for_path("/login");

    // The app's sign-in, with the passkey alone.
    b.goto(&authorize_url(&issuer, &client, "s-passkey"));
    b.wait_for("#login-app");
    assert_eq!(b.text("#login-app"), "to continue to The Wiki");
    b.screenshot(&shots.join("login-oidc-passkey.png"));
    b.click("#passkey-login-submit");

    let claims = redeem(&app, &issuer, &client, &b, "s-passkey");
    assert!(b.url().starts_with(&client.redirect_uri()), "{}", b.url());
    let amr = amr(&claims);
    assert!(amr.contains(&"hwk"), "{claims}");
    assert!(!amr.contains(&"pwd"), "{claims}");
    assert_eq!(claims["acr"], "mfa", "{claims}");
}
