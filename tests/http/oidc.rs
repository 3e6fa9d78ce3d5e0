//! The OpenID Provider over HTTP, with a real relying-party library (the
//! `openidconnect` crate) on the other side: discovery read by it, a code
//! flow with PKCE through the real sign-in form, the ID token verified by
//! it against the JWKS (nonce and all), userinfo, both ways of sending the
//! client secret, refresh rotation and reuse, revocation, introspection,
//! logout ending the tokens, CORS; and the attacks, each refused with the
//! error the specifications name, no token, no `500`.
//!
//! The issuer is `http://gatehouse.test` (the server's port is only known
//! once it listens, and `public_url` is read before): the relying party's
//! HTTP client sends what it addresses there to the test server, as a
//! reverse proxy in front of gatehouse would.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::url::Url;
use openidconnect::{
    AccessToken, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest,
    HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl,
    RefreshToken, Scope, TokenResponse,
};
use serde_json::Value;

use crate::helpers::{Browser, Resp, TestApp, enc};

pub(crate) const ISSUER: &str = "http://gatehouse.test";
const APP_SECRET: &str = "app-secret-0123456789-abcdefghijkl";
const OTHER_SECRET: &str = "other-secret-0123456789-abcdefghij";
const OPS_SECRET: &str = "ops-secret-0123456789-abcdefghijklm";
const APP_CB: &str = "https://app.test/cb";

fn config() -> String {
    format!(
        r#"public_url = "{ISSUER}"

[[clients]]
id = "app"
name = "The App"
secret = "{APP_SECRET}"
redirect_uris = ["{APP_CB}"]
offline_access = true
post_logout_redirect_uris = ["https://app.test/bye"]
launch_url = "https://app.test/home"

[[clients]]
id = "other"
secret = "{OTHER_SECRET}"
redirect_uris = ["https://other.test/cb"]

[[clients]]
id = "spa"
redirect_uris = ["https://spa.test/cb"]

[[clients]]
id = "ops"
name = "Ops Console"
secret = "{OPS_SECRET}"
redirect_uris = ["https://ops.test/cb"]
groups = ["admins"]
launch_url = "https://ops.test/home"

[[clients]]
id = "es"
secret = "{APP_SECRET}"
redirect_uris = ["https://es.test/cb"]
signing_alg = "ES256"

[[clients]]
id = "ed"
secret = "{APP_SECRET}"
redirect_uris = ["https://ed.test/cb"]
signing_alg = "EdDSA"

[[clients]]
id = "vault"
secret = "{APP_SECRET}"
redirect_uris = ["https://vault.test/cb"]
two_factor = true

[[clients]]
id = "tv"
name = "Living Room TV"
redirect_uris = ["https://tv.test/cb"]
device_grant = true

[[clients]]
id = "ops-tv"
name = "Ops Wallboard"
redirect_uris = ["https://wall.test/cb"]
device_grant = true
groups = ["admins"]
"#
    )
}

fn spawn() -> TestApp {
    let app = TestApp::spawn_with_file(&config(), &[]);
    app.add_user("alice", "alice-password-1", false);
    app
}

#[derive(Debug)]
pub(crate) struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// The relying party's HTTP client: ureq, with the issuer's address sent
/// to the test server.
pub(crate) fn http(base: &str) -> impl Fn(HttpRequest) -> Result<HttpResponse, HttpError> {
    let base = base.to_owned();
    let agent = crate::helpers::agent();
    move |req: HttpRequest| {
        let uri = req.uri().to_string();
        let uri = match uri.strip_prefix(ISSUER) {
            Some(rest) => format!("{base}{rest}"),
            None => return Err(HttpError(format!("not the test issuer: {uri}"))),
        };
        let mut out = ureq::http::Request::builder()
            .method(req.method().as_str())
            .uri(uri);
        for (k, v) in req.headers() {
            out = out.header(k.as_str(), v.as_bytes());
        }
        let out = out
            .body(req.body().clone())
            .map_err(|e| HttpError(e.to_string()))?;
        let resp = agent.run(out).map_err(|e| HttpError(e.to_string()))?;
        let mut back = openidconnect::http::Response::builder().status(resp.status().as_u16());
        for (k, v) in resp.headers() {
            back = back.header(k.as_str(), v.as_bytes());
        }
        let body = resp
            .into_body()
            .read_to_vec()
            .map_err(|e| HttpError(e.to_string()))?;
        back.body(body).map_err(|e| HttpError(e.to_string()))
    }
}

pub(crate) fn metadata(app: &TestApp) -> CoreProviderMetadata {
    CoreProviderMetadata::discover(
        &IssuerUrl::new(ISSUER.to_owned()).expect("issuer"),
        &http(&app.base),
    )
    .expect("discovery read by the library")
}

/// The path (and query) of a URL under the issuer.
pub(crate) fn local(url: &str) -> String {
    url.strip_prefix(ISSUER)
        .unwrap_or_else(|| panic!("{url} is not under the issuer"))
        .to_owned()
}

/// A query parameter of a URL.
pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Follows an authorization request as a browser would: to the sign-in
/// page when signed out (posting the form, `next` and all), and back,
/// until gatehouse sends the browser away from itself. Returns that
/// last answer (a redirect to the client, or a page).
pub(crate) fn follow(browser: &Browser, path: &str) -> Resp {
    let mut at = path.to_owned();
    for _ in 0..6 {
        let resp = browser.get(&at);
        assert_ne!(resp.status, 500, "{resp:?}");
        let Some(location) = resp.header("location").map(str::to_owned) else {
            return resp;
        };
        if let Some(next) = location.strip_prefix("/login?next=") {
            let next = percent_encoding::percent_decode_str(next)
                .decode_utf8()
                .expect("utf-8")
                .into_owned();
            let form = browser.get(&location);
            let csrf = form.csrf().expect("the sign-in form has a token");
            let signed = browser.post_form(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("username", "alice"),
                    ("password", "alice-password-1"),
                    ("next", &next),
                ],
            );
            assert_eq!(signed.status, 303, "{signed:?}");
            at = signed.header("location").expect("location").to_owned();
        } else if location.starts_with('/') {
            at = location;
        } else {
            return resp;
        }
    }
    panic!("too many redirects from {path}");
}

/// A code for `client` by the raw protocol: `extra` are the request's
/// parameters beside `client_id`, `response_type` and `scope`.
fn code_for(browser: &Browser, client: &str, extra: &[(&str, &str)]) -> Resp {
    let mut path = format!("/oidc/authorize?client_id={client}&response_type=code&scope=openid");
    for (k, v) in extra {
        path.push_str(&format!("&{k}={}", enc(v)));
    }
    follow(browser, &path)
}

/// POSTs the token endpoint (Basic credentials when `basic` is given).
fn token(app: &TestApp, fields: &[(&str, &str)], basic: Option<(&str, &str)>) -> Resp {
    post(app, "/oidc/token", fields, basic)
}

pub(crate) fn post(
    app: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Resp {
    let b = Browser::new(&app.base);
    let header =
        basic.map(|(id, secret)| format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))));
    let headers: Vec<(&str, &str)> = header
        .as_deref()
        .map(|h| vec![("Authorization", h)])
        .unwrap_or_default();
    b.post_form_with(path, fields, &headers)
}

pub(crate) fn json(resp: &Resp) -> Value {
    serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("{e}: {resp:?}"))
}

#[track_caller]
pub(crate) fn assert_oauth_error(resp: &Resp, status: u16, error: &str) {
    assert_eq!(resp.status, status, "{resp:?}");
    assert_eq!(json(resp)["error"], error, "{resp:?}");
    assert!(!resp.body.contains("access_token"), "{resp:?}");
}

const VERIFIER: &str = "a-verifier-of-at-least-43-characters-0123456789";

fn challenge() -> String {
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER))
}

/// A code for `app` with an S256 challenge of [`VERIFIER`], and the
/// browser signed in that got it.
fn app_code(app: &TestApp) -> (Browser, String) {
    let browser = app.browser();
    let resp = code_for(
        &browser,
        "app",
        &[
            ("redirect_uri", APP_CB),
            ("state", "st"),
            ("code_challenge", &challenge()),
            ("code_challenge_method", "S256"),
        ],
    );
    let location = resp
        .header("location")
        .expect("back to the client")
        .to_owned();
    assert!(location.starts_with(APP_CB), "{location}");
    assert_eq!(param(&location, "state").as_deref(), Some("st"));
    assert_eq!(param(&location, "iss").as_deref(), Some(ISSUER));
    (browser, param(&location, "code").expect("a code"))
}

fn redeem(app: &TestApp, code: &str) -> Resp {
    token(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", APP_CB),
            ("code_verifier", VERIFIER),
        ],
        Some(("app", APP_SECRET)),
    )
}

fn userinfo(app: &TestApp, access: &str) -> Resp {
    Browser::new(&app.base).get_with(
        "/oidc/userinfo",
        &[("Authorization", &format!("Bearer {access}"))],
    )
}

#[test]
fn discovery_is_read_by_the_library_and_every_endpoint_it_names_is_a_route() {
    let app = spawn();
    let meta = metadata(&app);
    assert_eq!(meta.issuer().as_str(), ISSUER);
    let raw = json(&Browser::new(&app.base).get("/.well-known/openid-configuration"));
    for (field, value) in raw.as_object().expect("object") {
        let Some(url) = value
            .as_str()
            .filter(|_| field.ends_with("_endpoint") || field == "jwks_uri")
        else {
            continue;
        };
        let b = Browser::new(&app.base);
        let path = local(url);
        let get = b.get(&path);
        let post = b.post_form(&path, &[]);
        assert!(
            get.status != 404 || post.status != 404,
            "{field} {url}: {get:?} {post:?}"
        );
        assert_ne!(get.status, 500, "{field}");
        assert_ne!(post.status, 500, "{field}");
    }
    assert_eq!(
        raw["device_authorization_endpoint"],
        format!("{ISSUER}/oidc/device_authorization")
    );
    assert_eq!(raw["frontchannel_logout_supported"], true);
    assert_eq!(raw["backchannel_logout_supported"], true);
    // CORS on discovery, JWKS, token and userinfo, with preflight.
    let b = Browser::new(&app.base);
    for path in ["/.well-known/openid-configuration", "/oidc/jwks"] {
        let r = b.get_with(path, &[("Origin", "https://spa.test")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{path}");
        assert!(r.header("access-control-allow-credentials").is_none());
    }
    for path in ["/oidc/token", "/oidc/userinfo"] {
        let pre = crate::helpers::agent()
            .options(format!("{}{path}", app.base))
            .header("Origin", "https://spa.test")
            .header("Access-Control-Request-Method", "POST")
            .call()
            .expect("preflight");
        assert_eq!(pre.status().as_u16(), 204, "{path}");
        let h = |n: &str| {
            pre.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(h("access-control-allow-origin").as_deref(), Some("*"));
        assert!(h("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
        assert!(h("access-control-allow-headers").is_some_and(|m| m.contains("Authorization")));
    }
    let r = token(&app, &[("grant_type", "authorization_code")], None);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // Without public_url there is no provider and no route.
    let plain = TestApp::spawn();
    assert_eq!(
        Browser::new(&plain.base)
            .get("/.well-known/openid-configuration")
            .status,
        404
    );
}

#[test]
fn a_code_flow_with_pkce_through_the_sign_in_page_gives_a_verified_id_token_and_userinfo() {
    let app = spawn();
    let http = http(&app.base);
    let client = CoreClient::from_provider_metadata(
        metadata(&app),
        ClientId::new("app".into()),
        Some(ClientSecret::new(APP_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(APP_CB.into()).expect("redirect"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("groups".into()))
        .set_pkce_challenge(challenge)
        .url();
    let browser = app.browser();
    let back = follow(&browser, &local(url.as_str()));
    assert_eq!(back.status, 303, "{back:?}");
    let location = back.header("location").expect("location");
    assert!(location.starts_with(APP_CB), "{location}");
    assert_eq!(
        param(location, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    let code = param(location, "code").expect("code");
    // The library sends client_secret_basic by default.
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint known")
        .set_pkce_verifier(verifier)
        .request(&http)
        .expect("tokens");
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("signature, issuer, audience, expiry and nonce verified");
    assert_eq!(claims.issuer().as_str(), ISSUER);
    assert_ne!(
        claims.subject().as_str(),
        "alice",
        "sub is not the username"
    );
    // A wrong nonce is refused by the library.
    assert!(
        id_token
            .claims(&client.id_token_verifier(), &Nonce::new("other".into()))
            .is_err()
    );
    let raw = id_token.to_string();
    let payload = claims_of(&raw);
    assert!(
        payload["sid"].as_str().is_some_and(|s| !s.is_empty()),
        "{payload}"
    );
    // Userinfo, through the library.
    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .expect("userinfo endpoint known")
        .request(&http)
        .expect("userinfo");
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));
    // And by hand, with its cache and CORS headers; a bad token is a 401.
    let r = userinfo(&app, tokens.access_token().secret());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let bad = userinfo(&app, "x");
    assert_eq!(bad.status, 401);
    assert!(
        bad.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer"))
    );
    // No token reaches the log... the request log is off here; the code
    // and tokens never appear in a response header but the redirect's.
}

#[test]
fn client_secret_post_is_accepted_and_a_wrong_secret_is_invalid_client_401() {
    let app = spawn();
    let http = http(&app.base);
    let (_, code) = app_code(&app);
    let client = CoreClient::from_provider_metadata(
        metadata(&app),
        ClientId::new("app".into()),
        Some(ClientSecret::new(APP_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(APP_CB.into()).expect("redirect"))
    .set_auth_type(AuthType::RequestBody);
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint")
        .set_pkce_verifier(openidconnect::PkceCodeVerifier::new(VERIFIER.into()))
        .request(&http)
        .expect("client_secret_post accepted");
    assert!(!tokens.access_token().secret().is_empty());
    let (_, code) = app_code(&app);
    let wrong = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", APP_CB),
            ("code_verifier", VERIFIER),
        ],
        Some(("app", "not-the-secret")),
    );
    assert_oauth_error(&wrong, 401, "invalid_client");
    assert!(
        wrong
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic"))
    );
    assert_eq!(wrong.header("cache-control"), Some("no-store"));
    // The code was not used up by the refused request.
    assert_eq!(redeem(&app, &code).status, 200);
    // Both methods at once is a malformed request.
    let both = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_secret", APP_SECRET),
        ],
        Some(("app", APP_SECRET)),
    );
    assert_oauth_error(&both, 400, "invalid_request");
    // Unknown grant types and garbage bodies are 400s, never 500s.
    assert_oauth_error(
        &token(&app, &[("grant_type", "password")], None),
        400,
        "unsupported_grant_type",
    );
    let garbage =
        Browser::new(&app.base).post_raw("/oidc/token", "application/json", b"{}".to_vec());
    assert_oauth_error(&garbage, 400, "invalid_request");
}

#[test]
fn repeated_failed_client_authentication_is_throttled_per_address() {
    let app = spawn();
    let mut last = None;
    for _ in 0..8 {
        let r = token(
            &app,
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
            Some(("app", "wrong")),
        );
        assert_ne!(r.status, 500);
        last = Some(r);
    }
    let last = last.expect("tried");
    assert_eq!(last.status, 429, "{last:?}");
    assert!(last.header("retry-after").is_some());
}

#[test]
fn refresh_rotates_and_a_reused_refresh_token_ends_the_family() {
    let app = spawn();
    let http = http(&app.base);
    let client = CoreClient::from_provider_metadata(
        metadata(&app),
        ClientId::new("app".into()),
        Some(ClientSecret::new(APP_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(APP_CB.into()).expect("redirect"));
    let browser = app.browser();
    let resp = code_for(
        &browser,
        "app",
        &[
            ("redirect_uri", APP_CB),
            ("scope", "openid offline_access"),
            ("code_challenge", &challenge()),
            ("code_challenge_method", "S256"),
        ],
    );
    // `scope` given twice is a malformed request, shown as a page.
    assert_eq!(resp.status, 400, "{resp:?}");
    let path = format!(
        "/oidc/authorize?client_id=app&response_type=code&scope=openid%20offline_access&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
        enc(APP_CB),
        challenge()
    );
    let resp = follow(&browser, &path);
    let code = param(resp.header("location").expect("location"), "code").expect("code");
    let first = json(&redeem(&app, &code));
    let r1 = first["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let second = client
        .exchange_refresh_token(&RefreshToken::new(r1.clone()))
        .expect("token endpoint")
        .request(&http)
        .expect("refreshed");
    let r2 = second.refresh_token().expect("rotated").secret().clone();
    assert_ne!(r1, r2);
    let access2 = second.access_token().secret().clone();
    assert_eq!(userinfo(&app, &access2).status, 200);
    // The first refresh token again: refused, and the family ends.
    let reuse = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
        Some(("app", APP_SECRET)),
    );
    assert_oauth_error(&reuse, 400, "invalid_grant");
    let after = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
        Some(("app", APP_SECRET)),
    );
    assert_oauth_error(&after, 400, "invalid_grant");
    assert_eq!(userinfo(&app, &access2).status, 401);
    // Another client cannot use a refresh token it was not given.
    let _ = AccessToken::new(String::new());
}

#[test]
fn introspection_and_revocation_see_and_end_only_the_clients_own_tokens() {
    let app = spawn();
    let (_, code) = app_code(&app);
    let tokens = json(&redeem(&app, &code));
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let active = post(
        &app,
        "/oidc/introspect",
        &[("token", &access)],
        Some(("app", APP_SECRET)),
    );
    assert_eq!(active.status, 200, "{active:?}");
    let body = json(&active);
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], "app");
    assert_eq!(body["iss"], ISSUER);
    // Another client sees nothing, and cannot revoke it.
    let theirs = post(
        &app,
        "/oidc/introspect",
        &[("token", &access)],
        Some(("other", OTHER_SECRET)),
    );
    assert_eq!(json(&theirs), serde_json::json!({"active": false}));
    let revoked = post(
        &app,
        "/oidc/revoke",
        &[("token", &access)],
        Some(("other", OTHER_SECRET)),
    );
    assert_eq!(revoked.status, 200);
    assert_eq!(userinfo(&app, &access).status, 200);
    // Unauthenticated introspection is refused.
    let anon = post(&app, "/oidc/introspect", &[("token", &access)], None);
    assert_oauth_error(&anon, 401, "invalid_client");
    // The owner revokes it: gone everywhere.
    let revoked = post(
        &app,
        "/oidc/revoke",
        &[("token", &access), ("token_type_hint", "access_token")],
        Some(("app", APP_SECRET)),
    );
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(userinfo(&app, &access).status, 401);
    let gone = post(
        &app,
        "/oidc/introspect",
        &[("token", &access)],
        Some(("app", APP_SECRET)),
    );
    assert_eq!(json(&gone)["active"], false);
    // Revoking an unknown token is 200 too (RFC 7009 §2.2).
    let unknown = post(
        &app,
        "/oidc/revoke",
        &[("token", "nothing")],
        Some(("app", APP_SECRET)),
    );
    assert_eq!(unknown.status, 200);
    let missing = post(&app, "/oidc/revoke", &[], Some(("app", APP_SECRET)));
    assert_oauth_error(&missing, 400, "invalid_request");
}

#[test]
fn end_session_and_signing_out_end_the_sessions_tokens() {
    let app = spawn();
    // RP-initiated logout with the session's own ID token as the hint.
    let (browser, code) = app_code(&app);
    let tokens = json(&redeem(&app, &code));
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let id_token = tokens["id_token"].as_str().expect("id token").to_owned();
    assert_eq!(userinfo(&app, &access).status, 200);
    let out = browser.get(&format!(
        "/oidc/end_session?id_token_hint={}&post_logout_redirect_uri={}&state=bye",
        enc(&id_token),
        enc("https://app.test/bye")
    ));
    assert_eq!(out.status, 303, "{out:?}");
    assert_eq!(
        out.header("location"),
        Some("https://app.test/bye?state=bye")
    );
    assert_eq!(userinfo(&app, &access).status, 401);
    assert_eq!(browser.get("/").status, 303, "signed out of gatehouse too");
    // An unregistered post-logout URI is never a redirect target.
    let (browser, code) = app_code(&app);
    let tokens = json(&redeem(&app, &code));
    let id_token = tokens["id_token"].as_str().expect("id token").to_owned();
    let out = browser.get(&format!(
        "/oidc/end_session?id_token_hint={}&post_logout_redirect_uri={}",
        enc(&id_token),
        enc("https://evil.test/")
    ));
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/login"));
    // Without a hint, the user confirms with a button first.
    let (browser, code) = app_code(&app);
    let access = json(&redeem(&app, &code))["access_token"]
        .as_str()
        .expect("a")
        .to_owned();
    let page = browser.get("/oidc/end_session?client_id=app");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("id=\"end-session-form\""));
    assert_eq!(
        userinfo(&app, &access).status,
        200,
        "nothing ended by a GET alone"
    );
    let csrf = page.csrf().expect("token");
    let done = browser.post_form(
        "/oidc/end_session",
        &[("csrf", &csrf), ("confirm", "yes"), ("client_id", "app")],
    );
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(userinfo(&app, &access).status, 401);
    // Signing out of gatehouse ends the session's tokens as well.
    let (browser, code) = app_code(&app);
    let access = json(&redeem(&app, &code))["access_token"]
        .as_str()
        .expect("a")
        .to_owned();
    assert_eq!(userinfo(&app, &access).status, 200);
    browser.logout();
    assert_eq!(userinfo(&app, &access).status, 401);
}

#[test]
fn a_wrong_or_prefix_matched_redirect_uri_is_an_error_page_never_a_redirect() {
    let app = spawn();
    let browser = app.browser();
    for uri in [
        "https://evil.test/cb",
        "https://app.test/cb/../evil",
        "https://app.test/cbx",
        "https://app.test/cb?x=1",
        "https://app.test",
    ] {
        let r = code_for(&browser, "app", &[("redirect_uri", uri), ("state", "s")]);
        assert_eq!(r.status, 400, "{uri}: {r:?}");
        assert!(r.header("location").is_none(), "{uri}");
        assert!(r.body.contains("invalid_request"), "{uri}");
    }
    // A script's request (not a top-level navigation) gets no code, even
    // from a signed-in browser.
    let signed = app_code(&app).0;
    let path = format!(
        "/oidc/authorize?client_id=app&response_type=code&scope=openid&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
        enc(APP_CB),
        challenge()
    );
    let scripted = signed.get_with(
        &path,
        &[
            ("Sec-Fetch-Mode", "cors"),
            ("Sec-Fetch-Dest", "empty"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
    );
    assert_eq!(scripted.status, 403, "{scripted:?}");
    assert!(scripted.header("location").is_none());
    let navigated = signed.get_with(
        &path,
        &[
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Dest", "document"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    );
    assert_eq!(navigated.status, 303, "{navigated:?}");
    let unknown = code_for(&browser, "nobody", &[("redirect_uri", APP_CB)]);
    assert_eq!(unknown.status, 400);
    assert!(unknown.header("location").is_none());
}

#[test]
fn a_reused_code_is_refused_and_revokes_what_its_first_use_gave() {
    let app = spawn();
    let (_, code) = app_code(&app);
    let first = redeem(&app, &code);
    assert_eq!(first.status, 200);
    let access = json(&first)["access_token"].as_str().expect("a").to_owned();
    assert_oauth_error(&redeem(&app, &code), 400, "invalid_grant");
    assert_eq!(userinfo(&app, &access).status, 401);
}

#[test]
fn a_code_from_another_client_or_with_the_wrong_verifier_is_refused() {
    let app = spawn();
    let (_, code) = app_code(&app);
    let stolen = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", APP_CB),
            ("code_verifier", VERIFIER),
        ],
        Some(("other", OTHER_SECRET)),
    );
    assert_oauth_error(&stolen, 400, "invalid_grant");
    let wrong = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", APP_CB),
            (
                "code_verifier",
                "another-verifier-of-at-least-43-characters-012345",
            ),
        ],
        Some(("app", APP_SECRET)),
    );
    assert_oauth_error(&wrong, 400, "invalid_grant");
    let none = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", APP_CB),
        ],
        Some(("app", APP_SECRET)),
    );
    assert_oauth_error(&none, 400, "invalid_grant");
    let other_uri = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://other.test/cb"),
            ("code_verifier", VERIFIER),
        ],
        Some(("app", APP_SECRET)),
    );
    assert_oauth_error(&other_uri, 400, "invalid_grant");
    // None of that used the code up.
    assert_eq!(redeem(&app, &code).status, 200);
}

#[test]
fn a_public_client_must_use_s256_pkce() {
    let app = spawn();
    let browser = app.browser();
    let cb = "https://spa.test/cb";
    let without = code_for(&browser, "spa", &[("redirect_uri", cb), ("state", "s1")]);
    let location = without
        .header("location")
        .expect("back with an error")
        .to_owned();
    assert!(location.starts_with(cb), "{location}");
    assert_eq!(
        param(&location, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(param(&location, "state").as_deref(), Some("s1"));
    assert!(param(&location, "code").is_none());
    let plain = code_for(
        &browser,
        "spa",
        &[
            ("redirect_uri", cb),
            ("code_challenge", VERIFIER),
            ("code_challenge_method", "plain"),
        ],
    );
    let location = plain
        .header("location")
        .expect("back with an error")
        .to_owned();
    assert_eq!(
        param(&location, "error").as_deref(),
        Some("invalid_request")
    );
    assert!(param(&location, "code").is_none());
    // With S256 it works, and the public client redeems without a secret.
    let ok = code_for(
        &browser,
        "spa",
        &[
            ("redirect_uri", cb),
            ("code_challenge", &challenge()),
            ("code_challenge_method", "S256"),
        ],
    );
    let code = param(ok.header("location").expect("location"), "code").expect("code");
    let tokens = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &code),
            ("redirect_uri", cb),
            ("code_verifier", VERIFIER),
        ],
        None,
    );
    assert_eq!(tokens.status, 200, "{tokens:?}");
}

#[test]
fn a_user_outside_the_clients_groups_sees_a_refusal_page_and_no_code() {
    let app = spawn();
    let browser = app.browser();
    let r = code_for(
        &browser,
        "ops",
        &[("redirect_uri", "https://ops.test/cb"), ("state", "s")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.header("location").is_none());
    assert!(r.body.contains("Ops Console"), "the page names the app");
}

#[test]
fn the_reaper_removes_expired_codes() {
    if !crate::helpers::on_sqlite("the_reaper_removes_expired_codes") {
        return;
    }
    let app = TestApp::spawn_with_file(
        &config(),
        &[("oidc.code_lifetime", "1s"), ("reap_interval", "1s")],
    );
    app.add_user("alice", "alice-password-1", false);
    let _ = app_code(&app);
    let codes = || -> i64 {
        app.db()
            .query_row("SELECT count(*) FROM oidc_codes", [], |r| r.get(0))
            .expect("count")
    };
    assert_eq!(codes(), 1);
    let started = std::time::Instant::now();
    while codes() > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "the expired code is still there"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The real binary, its log (stderr) kept in a file, for the test that
/// reads the log.
struct Served {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Served {
    /// Stops the server (SIGTERM, as an operator would) and returns its log.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        for _ in 0..200 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).expect("the log")
    }
}

#[test]
fn codes_tokens_and_secrets_never_reach_the_log() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("gatehouse.toml"), config()).expect("config");
    crate::cli::ok(&crate::cli::gatehouse(
        dir.path(),
        &["user", "add", "alice", "--password-stdin"],
        Some("alice-password-1\n"),
    ));
    let log = dir.path().join("stderr.log");
    let mut child = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .env("GATEHOUSE_LOG_REQUESTS", "true")
        .envs(crate::helpers::backend_env(dir.path()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("serve");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let url = first.split_whitespace().last().expect("url").to_owned();
    std::thread::spawn(move || for _ in lines {});
    let served = Served { child, log };
    let app = TestApp {
        running: None,
        base: url,
        dir: tempfile::tempdir().expect("dir"),
        settings: Vec::new(),
    };

    let (browser, code) = app_code(&app);
    let tokens = json(&redeem(&app, &code));
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let id_token = tokens["id_token"].as_str().expect("id token").to_owned();
    assert_eq!(userinfo(&app, &access).status, 200);
    post(
        &app,
        "/oidc/introspect",
        &[("token", &access)],
        Some(("app", APP_SECRET)),
    );
    post(
        &app,
        "/oidc/revoke",
        &[("token", &access)],
        Some(("app", APP_SECRET)),
    );
    // A reused code, a wrong secret, a wrong verifier: each logged.
    assert_eq!(redeem(&app, &code).status, 400);
    let (_, code2) = app_code(&app);
    token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code2),
            ("redirect_uri", APP_CB),
            ("code_verifier", VERIFIER),
        ],
        Some(("app", "a-wrong-secret-0123456789-abcdefgh")),
    );
    let cookie = browser.cookie("gatehouse_session");
    browser.get(&format!(
        "/oidc/end_session?id_token_hint={}",
        enc(&id_token)
    ));
    let log = served.stop();

    assert!(log.contains("oidc provider on"), "{log}");
    assert!(log.contains("clients=9"), "{log}");
    assert!(
        log.contains("oidc client authentication failed client=\"app\""),
        "{log}"
    );
    assert!(log.contains("path=\"/oidc/token\""), "{log}");
    let mut secrets = vec![
        code.as_str(),
        code2.as_str(),
        access.as_str(),
        id_token.as_str(),
        APP_SECRET,
        "a-wrong-secret-0123456789-abcdefgh",
        VERIFIER,
    ];
    let challenge = challenge();
    secrets.push(&challenge);
    if let Some(c) = &cookie {
        secrets.push(c);
    }
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}

/// Starts a device authorization for `client`: (device code, user code).
fn device_start(app: &TestApp, client: &str) -> (String, String) {
    let r = post(
        app,
        "/oidc/device_authorization",
        &[("client_id", client), ("scope", "openid profile")],
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let body = json(&r);
    assert_eq!(body["verification_uri"], format!("{ISSUER}/device"));
    (
        body["device_code"]
            .as_str()
            .expect("device code")
            .to_owned(),
        body["user_code"].as_str().expect("user code").to_owned(),
    )
}

fn device_poll(app: &TestApp, client: &str, device_code: &str) -> Resp {
    token(
        app,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", client),
            ("device_code", device_code),
        ],
        None,
    )
}

/// The signed-in browser answers the code at `/device` (`allow` or `deny`).
fn device_answer(browser: &Browser, user_code: &str, action: &str) -> Resp {
    let page = browser.get(&format!("/device?user_code={}", enc(user_code)));
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = page.csrf().expect("the device page has a token");
    browser.post_form(
        "/device",
        &[
            ("csrf", &csrf),
            ("user_code", user_code),
            ("action", action),
        ],
    )
}

#[test]
fn the_device_grant_signs_in_a_device_once_the_signed_in_user_allows_it() {
    let app = spawn();
    let (device_code, user_code) = device_start(&app, "tv");
    // A signed-out visitor of the link is sent to sign in, and back.
    let browser = app.browser();
    let link = format!("/device?user_code={}", enc(&user_code));
    let r = browser.get(&link);
    assert_eq!(r.status, 303);
    assert!(
        r.header("location")
            .is_some_and(|l| l.starts_with("/login?next=")),
        "{r:?}"
    );
    assert_eq!(browser.login("alice", "alice-password-1").status, 303);
    let page = browser.get(&link);
    assert_eq!(
        page.text_of("device-app").as_deref(),
        Some("Sign in "),
        "{}",
        page.body
    );
    assert!(page.body.contains("Living Room TV"));
    // Before the answer: pending, then too fast.
    assert_oauth_error(
        &device_poll(&app, "tv", &device_code),
        400,
        "authorization_pending",
    );
    assert_oauth_error(&device_poll(&app, "tv", &device_code), 400, "slow_down");
    let done = device_answer(&browser, &user_code, "allow");
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done.body.contains("id=\"device-done\""));
    // The device polls again after its interval (5 s, plus 5 for the
    // slow_down) and gets its tokens, once.
    std::thread::sleep(std::time::Duration::from_secs(10));
    let tokens = device_poll(&app, "tv", &device_code);
    assert_eq!(tokens.status, 200, "{tokens:?}");
    let access = json(&tokens)["access_token"]
        .as_str()
        .expect("a")
        .to_owned();
    assert_eq!(
        json(&userinfo(&app, &access))["preferred_username"],
        "alice"
    );
    std::thread::sleep(std::time::Duration::from_secs(10));
    assert_oauth_error(&device_poll(&app, "tv", &device_code), 400, "invalid_grant");
    assert_eq!(userinfo(&app, &access).status, 401, "the reuse revoked it");
}

#[test]
fn a_declined_unknown_or_forbidden_device_code_gives_the_device_nothing() {
    let app = spawn();
    let browser = app.browser();
    browser.login("alice", "alice-password-1");
    let (device_code, user_code) = device_start(&app, "tv");
    assert_eq!(device_answer(&browser, &user_code, "deny").status, 200);
    assert_oauth_error(&device_poll(&app, "tv", &device_code), 400, "access_denied");
    // A user outside the client's groups cannot allow it.
    let (device_code, user_code) = device_start(&app, "ops-tv");
    let refused = device_answer(&browser, &user_code, "allow");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_oauth_error(
        &device_poll(&app, "ops-tv", &device_code),
        400,
        "authorization_pending",
    );
    // An unknown code is a 400 page, and counts against the address.
    let page = browser.get("/device");
    let csrf = page.csrf().expect("token");
    let unknown = browser.post_form(
        "/device",
        &[
            ("csrf", &csrf),
            ("user_code", "BCDF-GHJK"),
            ("action", "allow"),
        ],
    );
    assert_eq!(unknown.status, 400, "{unknown:?}");
    assert!(unknown.body.contains("id=\"device-error\""));
    // A client without the grant may not start one.
    let r = post(
        &app,
        "/oidc/device_authorization",
        &[("client_id", "spa")],
        None,
    );
    assert_oauth_error(&r, 400, "unauthorized_client");
    // Without the session's token the form is refused.
    let forged = browser.post_form("/device", &[("user_code", &user_code), ("action", "allow")]);
    assert_eq!(forged.status, 403);
    // Nor can a user outside the client's groups decline it.
    let refused = device_answer(&browser, &user_code, "deny");
    assert_eq!(refused.status, 403, "{refused:?}");
    let still = device_poll(&app, "ops-tv", &device_code);
    assert_eq!(still.status, 400, "{still:?}");
    assert!(
        matches!(
            json(&still)["error"].as_str(),
            Some("authorization_pending" | "slow_down")
        ),
        "still waiting, not declined: {still:?}"
    );
    // Codes guessed in the link count like codes typed: soon the address
    // is told nothing, not even the name of the app of a real code.
    let locked = (0..20).any(|_| {
        let r = browser.get("/device?user_code=BCDF-GHJK");
        assert!(matches!(r.status, 200 | 429), "{r:?}");
        r.status == 429
    });
    assert!(locked, "unknown codes in the link are throttled");
    let real = browser.get(&format!("/device?user_code={}", enc(&user_code)));
    assert_eq!(real.status, 429, "{real:?}");
    assert!(real.header("retry-after").is_some());
    assert!(!real.body.contains("Ops Wallboard"), "{}", real.body);
}

#[test]
fn a_request_too_long_to_carry_through_the_sign_in_is_a_page_not_a_lost_user() {
    let app = spawn();
    let browser = app.browser();
    let long = "s".repeat(1000);
    let r = browser.get(&format!(
        "/oidc/authorize?client_id=app&response_type=code&scope=openid&redirect_uri={}&state={long}&nonce={long}",
        enc(APP_CB)
    ));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.header("location").is_none());
    assert!(r.body.contains("too long"), "{}", r.body);
    // Over the provider's own limit on a parameter, it goes back to the
    // client with invalid_request.
    let longer = "s".repeat(1100);
    let r = browser.get(&format!(
        "/oidc/authorize?client_id=app&response_type=code&scope=openid&redirect_uri={}&nonce={longer}",
        enc(APP_CB)
    ));
    assert_eq!(r.status, 303, "{r:?}");
    let location = r.header("location").expect("location");
    assert_eq!(param(location, "error").as_deref(), Some("invalid_request"));
}

#[test]
fn es256_and_eddsa_id_tokens_verify_in_the_library_against_the_jwks() {
    use openidconnect::core::CoreJwsSigningAlgorithm;
    let app = spawn();
    let http = http(&app.base);
    let browser = app.browser();
    for (id, alg) in [
        ("es", CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        ("ed", CoreJwsSigningAlgorithm::EdDsa),
    ] {
        let cb = format!("https://{id}.test/cb");
        let client = CoreClient::from_provider_metadata(
            metadata(&app),
            ClientId::new(id.into()),
            Some(ClientSecret::new(APP_SECRET.into())),
        )
        .set_redirect_uri(RedirectUrl::new(cb.clone()).expect("redirect"));
        let (url, _, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .url();
        let back = follow(&browser, &local(url.as_str()));
        let location = back.header("location").expect("location");
        assert!(location.starts_with(&cb), "{location}");
        let code = param(location, "code").expect("code");
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .expect("token endpoint")
            .request(&http)
            .expect("tokens");
        let id_token = tokens.id_token().expect("id token");
        let verifier = client.id_token_verifier().set_allowed_algs([alg.clone()]);
        id_token
            .claims(&verifier, &nonce)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(id_token.signing_alg().expect("alg"), &alg);
        // Verified with the client's algorithm and no other.
        let rs256 = client
            .id_token_verifier()
            .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]);
        assert!(id_token.claims(&rs256, &nonce).is_err());
    }
}

#[test]
fn prompt_none_answers_without_a_page() {
    let app = spawn();
    let browser = app.browser();
    let path = format!(
        "/oidc/authorize?client_id=app&response_type=code&scope=openid&redirect_uri={}&state=q&prompt=none",
        enc(APP_CB)
    );
    // Signed out: straight back with login_required, no sign-in page.
    let r = browser.get(&path);
    assert_eq!(r.status, 303, "{r:?}");
    let location = r.header("location").expect("location");
    assert!(location.starts_with(APP_CB), "{location}");
    assert_eq!(param(location, "error").as_deref(), Some("login_required"));
    assert_eq!(param(location, "state").as_deref(), Some("q"));
    // Signed in: a code at once.
    browser.login("alice", "alice-password-1");
    let r = browser.get(&path);
    let location = r.header("location").expect("location");
    assert!(param(location, "code").is_some(), "{location}");
    // A client the user may not use: access_denied, without a page.
    let r = browser.get(&format!(
        "/oidc/authorize?client_id=ops&response_type=code&scope=openid&redirect_uri={}&prompt=none",
        enc("https://ops.test/cb")
    ));
    assert_eq!(r.status, 303, "{r:?}");
    let location = r.header("location").expect("location");
    assert_eq!(param(location, "error").as_deref(), Some("access_denied"));
    assert!(param(location, "code").is_none());
}

#[test]
fn a_client_that_needs_a_second_factor_gets_a_code_only_after_the_second_step() {
    use crate::factors::{code_at, factor_from_before, second, unix_now};
    let app = spawn();
    // A session that signed in with the password alone, before the
    // authenticator was set up, is sent to the second step, no code.
    let old = app.browser();
    assert_eq!(old.login("alice", "alice-password-1").status, 303);
    let seed = factor_from_before(&app, "alice");
    let path = format!(
        "/oidc/authorize?client_id=vault&response_type=code&scope=openid&redirect_uri={}&state=v&nonce=n",
        enc("https://vault.test/cb")
    );
    let r = old.get(&path);
    assert_eq!(r.status, 303, "{r:?}");
    let step = r.header("location").expect("location");
    assert!(step.starts_with("/login/second?next="), "{step}");
    // A fresh browser: the password, then the code, then back to finish.
    let b = app.browser();
    let r = b.get(&path);
    let location = r.header("location").expect("to sign in").to_owned();
    let next = percent_encoding::percent_decode_str(
        location
            .strip_prefix("/login?next=")
            .expect("the sign-in page"),
    )
    .decode_utf8()
    .expect("utf-8")
    .into_owned();
    let csrf = b.get(&location).csrf().expect("token");
    let r = b.post_form(
        "/login",
        &[
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", "alice-password-1"),
            ("next", &next),
        ],
    );
    assert_eq!(r.header("location"), Some("/login/second"), "{r:?}");
    let done = second(&b, "code", &code_at(&seed, unix_now()));
    assert_eq!(done.status, 303, "{done:?}");
    let back = follow(&b, done.header("location").expect("back to authorize"));
    let location = back.header("location").expect("to the client");
    assert!(location.starts_with("https://vault.test/cb"), "{location}");
    let code = param(location, "code").expect("code");
    let tokens = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://vault.test/cb"),
        ],
        Some(("vault", APP_SECRET)),
    );
    assert_eq!(tokens.status, 200, "{tokens:?}");
    let id_token = json(&tokens)["id_token"]
        .as_str()
        .expect("id token")
        .to_owned();
    let payload = claims_of(&id_token);
    let amr: Vec<&str> = payload["amr"]
        .as_array()
        .expect("amr")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        amr.contains(&"pwd") && amr.contains(&"otp") && amr.contains(&"mfa"),
        "{payload}"
    );
    assert_eq!(payload["acr"], "mfa", "{payload}");
    // With prompt=login, the password given again is all that is fresh:
    // the ID token says `pwd` alone, never a second factor it did not see.
    let r = b.get(&format!("{path}&prompt=login"));
    let to = r.header("location").expect("to the password").to_owned();
    assert!(to.starts_with("/oidc/reauth?next="), "{to}");
    let page = b.get(&to);
    let next = field_value(&page, "next");
    let again = b.post_form(
        "/oidc/reauth",
        &[
            ("csrf", &page.csrf().expect("token")),
            ("next", &next),
            ("reauth_password", "alice-password-1"),
        ],
    );
    let back = follow(&b, again.header("location").expect("back"));
    let code = param(back.header("location").expect("to the client"), "code").expect("code");
    let tokens = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://vault.test/cb"),
        ],
        Some(("vault", APP_SECRET)),
    );
    let payload = claims_of(json(&tokens)["id_token"].as_str().expect("id token"));
    assert_eq!(payload["amr"], serde_json::json!(["pwd"]), "{payload}");
    assert_eq!(payload["acr"], "pwd", "{payload}");
}

#[test]
fn the_sign_in_page_names_the_app_and_takes_its_login_hint() {
    let app = spawn();
    let browser = app.browser();
    let r = browser.get(&format!(
        "/oidc/authorize?client_id=app&response_type=code&scope=openid&redirect_uri={}&login_hint=alice",
        enc(APP_CB)
    ));
    let page = browser.get(r.header("location").expect("to sign in"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"login-app\""), "{}", page.body);
    assert!(
        page.body.contains("<strong>The App</strong>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("name=\"username\" value=\"alice\""),
        "{}",
        page.body
    );
    // An ordinary sign-in names no app.
    let plain = browser.get("/login?next=/account");
    assert!(!plain.body.contains("id=\"login-app\""));
}

fn account_post(b: &Browser, action: &str) -> Resp {
    let csrf = b.get("/account").csrf().expect("csrf on the account page");
    b.post_form(action, &[("csrf", csrf.as_str())])
}

fn admin_post(b: &Browser, action: &str, username: &str) -> Resp {
    let csrf = b
        .get("/admin/users")
        .csrf()
        .expect("csrf on the admin page");
    b.post_form(action, &[("csrf", csrf.as_str()), ("username", username)])
}

fn introspected(app: &TestApp, token: &str) -> bool {
    let resp = post(
        app,
        "/oidc/introspect",
        &[("token", token)],
        Some(("app", APP_SECRET)),
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    json(&resp)["active"].as_bool().expect("active")
}

/// The claims of an ID token, read without checking its signature (the
/// tests that verify it use the relying-party library).
pub(crate) fn claims_of(id_token: &str) -> Value {
    let payload = id_token.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64"),
    )
    .expect("JSON")
}

/// The `sid` claim of an ID token.
pub(crate) fn sid_of(id_token: &str) -> String {
    claims_of(id_token)["sid"].as_str().expect("sid").to_owned()
}

/// The value of the hidden form field `name` on a page.
fn field_value(page: &Resp, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.body.find(&marker).expect("the field");
    let rest = &page.body[at + marker.len()..];
    rest[..rest.find('"').expect("its end")].replace("&amp;", "&")
}

#[test]
fn every_way_a_session_ends_ends_the_tokens_it_gave_apps() {
    let app = spawn();
    app.add_user("root", "root-password-1", true);
    app.add_user("bob", "bob-password-12", false);
    let admin = app.browser();
    admin.login("root", "root-password-1");
    // "End all other sessions" on /account: the other session's app loses
    // its tokens; this session's app keeps them.
    let (_elsewhere, code) = app_code(&app);
    let there = json(&redeem(&app, &code))["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    // (The sign-in form's token, taken before alice signs in here, as a
    // second tab left at the sign-in page would hold it.)
    let here = app.browser();
    let form_token = here.get("/login").csrf().expect("the sign-in form's token");
    let code = code_for(
        &here,
        "app",
        &[
            ("redirect_uri", APP_CB),
            ("code_challenge", &challenge()),
            ("code_challenge_method", "S256"),
        ],
    );
    let code = param(code.header("location").expect("back"), "code").expect("code");
    let tokens = json(&redeem(&app, &code));
    let kept = tokens["access_token"].as_str().expect("access").to_owned();
    let alices_sid = sid_of(tokens["id_token"].as_str().expect("id token"));
    assert!(introspected(&app, &there));
    assert_eq!(
        account_post(&here, "/account/sessions/end-others").status,
        303
    );
    assert_eq!(userinfo(&app, &there).status, 401);
    assert!(!introspected(&app, &there));
    assert_eq!(userinfo(&app, &kept).status, 200);
    // Someone else signing in over this session replaces alice in this
    // browser, as signing out would: her app's tokens end, and bob's ID
    // tokens name a session of his own.
    let over = here.post_form(
        "/login",
        &[
            ("csrf", form_token.as_str()),
            ("username", "bob"),
            ("password", "bob-password-12"),
        ],
    );
    assert_eq!(over.status, 303, "{over:?}");
    assert_eq!(
        json(&here.get("/api/session"))["user"]["name"],
        "bob",
        "signed in as bob now"
    );
    assert_eq!(userinfo(&app, &kept).status, 401);
    let bobs = code_for(
        &here,
        "app",
        &[
            ("redirect_uri", APP_CB),
            ("code_challenge", &challenge()),
            ("code_challenge_method", "S256"),
        ],
    );
    let code = param(bobs.header("location").expect("back"), "code").expect("code");
    let tokens = json(&redeem(&app, &code));
    assert_ne!(
        sid_of(tokens["id_token"].as_str().expect("id token")),
        alices_sid
    );
    // An administrator disabling the user ends every token of theirs, and
    // enabling them again brings none back.
    let (_browser, code) = app_code(&app);
    let access = json(&redeem(&app, &code))["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    assert!(introspected(&app, &access));
    assert_eq!(
        admin_post(&admin, "/admin/users/disable", "alice").status,
        303
    );
    assert_eq!(userinfo(&app, &access).status, 401);
    assert!(!introspected(&app, &access));
    assert_eq!(
        admin_post(&admin, "/admin/users/enable", "alice").status,
        303
    );
    assert_eq!(userinfo(&app, &access).status, 401);
    assert!(!introspected(&app, &access));
}

#[test]
fn the_issuer_is_public_url_exactly_as_written() {
    // Proxmox and others compare the issuer byte for byte with the one
    // they were given: a trailing slash written stays, and no URL made
    // from it has a doubled one.
    let app = TestApp::spawn_with_file(
        &config().replace(
            &format!("public_url = \"{ISSUER}\""),
            &format!("public_url = \"{ISSUER}/\""),
        ),
        &[],
    );
    let d = json(&app.browser().get("/.well-known/openid-configuration"));
    assert_eq!(d["issuer"], format!("{ISSUER}/"));
    assert_eq!(d["token_endpoint"], format!("{ISSUER}/oidc/token"));
    assert_eq!(d["jwks_uri"], format!("{ISSUER}/oidc/jwks"));
}

#[test]
fn endpoints_for_programs_answer_every_refusal_in_json() {
    let app = spawn();
    let big = "x".repeat(70 * 1024);
    for path in ["/oidc/token", "/oidc/introspect", "/oidc/revoke"] {
        let r = post(&app, path, &[("token", &big)], Some(("app", APP_SECRET)));
        assert_eq!(r.status, 413, "{path}: {r:?}");
        assert_oauth_error(&r, 413, "invalid_request");
    }
    let r = app.browser().get("/oidc/token");
    assert_eq!(r.status, 405, "{r:?}");
    assert!(
        r.header("allow").is_some_and(|a| a.contains("POST")),
        "{r:?}"
    );
    assert_oauth_error(&r, 405, "invalid_request");
    // Pages stay pages.
    let r = app.browser().post_form("/oidc/authorize", &[("x", &big)]);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{r:?}"
    );
}

#[test]
fn the_account_page_lists_the_apps_signed_in_to_and_signs_out_of_each() {
    let app = spawn();
    let (browser, code) = app_code(&app);
    let access = json(&redeem(&app, &code))["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let page = browser.get("/account");
    assert!(page.body.contains("id=\"apps\""), "{}", page.body);
    assert!(page.body.contains("The App"), "{}", page.body);
    // Another user cannot sign alice out of it: their own grants only.
    app.add_user("bob", "bob-password-12", false);
    let bob = app.browser();
    bob.login("bob", "bob-password-12");
    assert!(!bob.get("/account").body.contains("id=\"apps\""));
    let csrf = bob.get("/account").csrf().expect("token");
    bob.post_form(
        "/account/apps/sign-out",
        &[("csrf", &csrf), ("client", "app")],
    );
    assert_eq!(userinfo(&app, &access).status, 200);
    // Without the session's token nothing happens.
    let forged = browser.post_form("/account/apps/sign-out", &[("client", "app")]);
    assert_eq!(forged.status, 403);
    assert_eq!(userinfo(&app, &access).status, 200);
    let csrf = page.csrf().expect("token");
    let out = browser.post_form(
        "/account/apps/sign-out",
        &[("csrf", &csrf), ("client", "app")],
    );
    assert_eq!(out.status, 303, "{out:?}");
    assert_eq!(userinfo(&app, &access).status, 401);
    let page = browser.get("/account");
    assert!(!page.body.contains("id=\"apps\""), "{}", page.body);
    assert_eq!(
        browser.get("/auth/verify").status,
        200,
        "still signed in to gatehouse"
    );
    // The start page links to the apps with a launch URL that alice may
    // use, and not to the others.
    let start = browser.get("/");
    assert!(
        start.body.contains("https://app.test/home"),
        "{}",
        start.body
    );
    assert!(
        !start.body.contains("https://ops.test/home"),
        "{}",
        start.body
    );
}

/// The `auth_time` claim of an ID token.
fn auth_time_of(id_token: &str) -> i64 {
    claims_of(id_token)["auth_time"]
        .as_i64()
        .expect("auth_time")
}

#[test]
fn prompt_login_and_max_age_ask_a_signed_in_user_for_the_password_again() {
    let app = spawn();
    let (browser, code) = app_code(&app);
    let first = auth_time_of(json(&redeem(&app, &code))["id_token"].as_str().expect("id"));
    // Seconds: the next sign-in must be later than the first.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for extra in [("prompt", "login"), ("max_age", "0")] {
        let asked = browser.get(&format!(
            "/oidc/authorize?client_id=app&response_type=code&scope=openid\
             &redirect_uri={}&code_challenge={}&code_challenge_method=S256&{}={}",
            enc(APP_CB),
            challenge(),
            extra.0,
            extra.1
        ));
        assert_eq!(asked.status, 303, "{extra:?}: {asked:?}");
        let to = asked.header("location").expect("somewhere").to_owned();
        assert!(to.starts_with("/oidc/reauth?next="), "{extra:?}: {to}");
        let page = browser.get(&to);
        assert_eq!(page.status, 200, "{page:?}");
        assert!(page.body.contains("id=\"reauth-app\""), "{}", page.body);
        assert!(page.body.contains("The App"), "{}", page.body);
        let csrf = page.csrf().expect("token");
        let next = field_value(&page, "next");
        // The request itself, opened again without the password (its URL
        // copied out of the address bar), is sent to give it: no code.
        let copied = browser.get(&next);
        assert_eq!(copied.status, 303, "{copied:?}");
        assert!(
            copied
                .header("location")
                .is_some_and(|l| l.starts_with("/oidc/reauth?next=")),
            "{extra:?}: {copied:?}"
        );
        let wrong = browser.post_form(
            "/oidc/reauth",
            &[
                ("csrf", &csrf),
                ("next", &next),
                ("reauth_password", "not it"),
            ],
        );
        assert_eq!(wrong.status, 403, "{wrong:?}");
        let forged = browser.post_form(
            "/oidc/reauth",
            &[("next", &next), ("reauth_password", "alice-password-1")],
        );
        assert_eq!(forged.status, 403, "no token, nothing");
        let right = browser.post_form(
            "/oidc/reauth",
            &[
                ("csrf", &csrf),
                ("next", &next),
                ("reauth_password", "alice-password-1"),
            ],
        );
        assert_eq!(right.status, 303, "{right:?}");
        let back = follow(&browser, right.header("location").expect("back"));
        let location = back.header("location").expect("to the app");
        assert!(location.starts_with(APP_CB), "{location}");
        let code = param(location, "code").expect("a code");
        let again = auth_time_of(json(&redeem(&app, &code))["id_token"].as_str().expect("id"));
        assert!(again > first, "{extra:?}: auth_time {again} after {first}");
    }
    // The page goes nowhere but an authorization request of a known app.
    for next in [
        "/admin",
        "https://evil.test/",
        "/oidc/authorize?client_id=nope",
    ] {
        let r = browser.get(&format!("/oidc/reauth?next={}", enc(next)));
        assert_eq!(r.status, 400, "{next}: {r:?}");
    }
}

#[test]
fn apps_are_told_the_name_and_address_and_whether_an_administrator_vouched_for_it() {
    let app = spawn();
    app.add_user("root", "root-password-1", true);
    let browser = app.browser();
    browser.login("alice", "alice-password-1");
    let claims = |browser: &Browser| {
        let r = follow(
            browser,
            &format!(
                "/oidc/authorize?client_id=app&response_type=code&scope={}&redirect_uri={}\
                 &code_challenge={}&code_challenge_method=S256",
                enc("openid profile email"),
                enc(APP_CB),
                challenge()
            ),
        );
        let code = param(r.header("location").expect("back"), "code").expect("code");
        let access = json(&redeem(&app, &code))["access_token"]
            .as_str()
            .expect("access")
            .to_owned();
        json(&userinfo(&app, &access))
    };
    let before = claims(&browser);
    assert_eq!(
        before["name"], "alice",
        "the username when there is no name"
    );
    assert!(before.get("email").is_none(), "{before}");
    // Typed by alice: apps are told it is not verified.
    let csrf = browser.get("/account").csrf().expect("token");
    let saved = browser.post_form(
        "/account/profile",
        &[
            ("csrf", &csrf),
            ("display_name", "Alice Liddell"),
            ("email", "alice@lan.test"),
        ],
    );
    assert_eq!(saved.status, 303, "{saved:?}");
    let typed = claims(&browser);
    assert_eq!(typed["name"], "Alice Liddell");
    assert_eq!(typed["email"], "alice@lan.test");
    assert_eq!(typed["email_verified"], false);
    let bad = browser.post_form(
        "/account/profile",
        &[("csrf", &csrf), ("email", "not an address")],
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    // An administrator who checked the address the user typed says so
    // (the box on the admin page), without changing it.
    let admin = app.browser();
    admin.login("root", "root-password-1");
    let page = admin.get("/admin/users");
    assert!(
        page.body
            .contains(r#"id="verified-alice" name="verified" value="1">"#),
        "unchecked box: {}",
        page.body
    );
    let csrf = page.csrf().expect("token");
    let names = |email: &str, verified: bool| {
        let mut form = vec![
            ("csrf", csrf.as_str()),
            ("username", "alice"),
            ("display_name", "Alice Liddell"),
            ("email", email),
        ];
        if verified {
            form.push(("verified", "1"));
        }
        let set = admin.post_form("/admin/users/names", &form);
        assert_eq!(set.status, 303, "{set:?}");
    };
    names("alice@lan.test", true);
    let vouched = claims(&browser);
    assert_eq!(vouched["email"], "alice@lan.test");
    assert_eq!(vouched["email_verified"], true);
    // Set by an administrator, box ticked: verified; left unticked: not.
    names("alice@example.org", false);
    assert_eq!(claims(&browser)["email_verified"], false);
    names("alice@example.org", true);
    let vouched = claims(&browser);
    assert_eq!(vouched["email"], "alice@example.org");
    assert_eq!(vouched["email_verified"], true);
    // Without the session's token, nothing changes.
    let forged = browser.post_form("/account/profile", &[("email", "evil@lan.test")]);
    assert_eq!(forged.status, 403);
    assert_eq!(claims(&browser)["email"], "alice@example.org");
}
