//! OpenID Connect clients made on `/admin/clients` (and with `gatehouse
//! oidc client ...`): made with the secret shown once and used by a real
//! relying-party library; a new secret refuses the old one at once; a
//! deleted client's tokens end; only an administrator with the page's
//! token may do any of it; bad, oversized and taken ids and redirect URIs
//! are refused with a clear 4xx and nothing stored; the secret is never
//! stored in the clear; and a second instance on the same store sees every
//! change at its next request.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreUserInfoClaims};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::Value;
use sha2::Digest as _;

use crate::helpers::{
    Browser, Resp, SCRIPTED_CLICK, TestApp, backend, backend_settings, enc, through_password_step,
};
use crate::oidc::{ISSUER, assert_oauth_error, follow, http, json, local, metadata, param, post};

const GRAFANA_SECRET: &str = "grafana-secret-0123456789-abcdefgh";
const ALICE: &str = "alice-password-1";
const ROOT: &str = "root-password-1";
const VERIFIER: &str = "a-verifier-of-at-least-43-characters-0123456789";

fn config() -> String {
    format!(
        r#"public_url = "{ISSUER}"

[[clients]]
id = "grafana"
name = "Grafana"
secret = "{GRAFANA_SECRET}"
redirect_uris = ["https://grafana.test/cb"]
"#
    )
}

/// A server with one client in gatehouse.toml, alice (the `follow`
/// helper signs her in) and root, an administrator.
fn spawn() -> TestApp {
    let app = TestApp::spawn_with_file(&config(), &[]);
    app.add_user("alice", ALICE, false);
    app.add_user("root", ROOT, true);
    app
}

fn admin(app: &TestApp) -> Browser {
    let b = app.browser();
    assert_eq!(b.login("root", ROOT).status, 303);
    b
}

/// The create form's fields for a confidential client.
fn fields<'a>(id: &'a str, redirect_uris: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_id", id),
        ("client_name", "The Wiki"),
        ("redirect_uris", redirect_uris),
        ("client_type", "confidential"),
        ("pkce", "optional"),
        ("signing_alg", "RS256"),
        ("claims_in_id_token", "1"),
        ("offline_access", "1"),
    ]
}

/// Posts `action` with the token of the clients page and `fields`.
fn submit(b: &Browser, action: &str, fields: &[(&str, &str)]) -> Resp {
    let csrf = b.get("/admin/clients").csrf().expect("the page's token");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post_form(action, &all)
}

/// The value of the `<input>` with this `id`, unescaped.
fn input(resp: &Resp, id: &str) -> Option<String> {
    let at = resp.body.find(&format!("id=\"{id}\""))?;
    let rest = &resp.body[at..];
    let rest = &rest[rest.find("value=\"")? + "value=\"".len()..];
    Some(
        rest[..rest.find('"')?]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Makes a confidential client on the page: its id and secret, as shown.
fn make(b: &Browser, fields: &[(&str, &str)]) -> (String, String) {
    let resp = submit(b, "/admin/clients", fields);
    assert_eq!(resp.status, 200, "{resp:?}");
    (
        input(&resp, "made-client-id").expect("the id is shown"),
        input(&resp, "made-client-secret").expect("the secret is shown"),
    )
}

/// The ids of the clients made here, as the store has them.
fn stored(app: &TestApp) -> Vec<String> {
    app.state()
        .oidc
        .as_ref()
        .expect("the provider is on")
        .registry()
        .list()
        .expect("list")
        .stored
        .into_iter()
        .map(|s| s.row.id)
        .collect()
}

fn challenge() -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        sha2::Sha256::digest(VERIFIER),
    )
}

/// A code for `id` (alice signed in on `browser`), with PKCE and the
/// `offline_access` scope.
fn code(browser: &Browser, id: &str, redirect_uri: &str) -> String {
    let resp = follow(
        browser,
        &format!(
            "/oidc/authorize?client_id={}&response_type=code&scope={}&redirect_uri={}\
             &code_challenge={}&code_challenge_method=S256",
            enc(id),
            enc("openid offline_access"),
            enc(redirect_uri),
            challenge()
        ),
    );
    let location = resp
        .header("location")
        .unwrap_or_else(|| panic!("{resp:?}"));
    assert!(location.starts_with(redirect_uri), "{location}");
    param(location, "code").expect("a code")
}

/// Redeems `code` with Basic credentials: the JSON answer.
fn redeem(app: &TestApp, id: &str, secret: &str, code: &str, redirect_uri: &str) -> Value {
    let resp = post(
        app,
        "/oidc/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", VERIFIER),
        ],
        Some((id, secret)),
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    json(&resp)
}

fn refresh(app: &TestApp, id: &str, secret: &str, token: &str) -> Resp {
    post(
        app,
        "/oidc/token",
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
        Some((id, secret)),
    )
}

fn introspect(app: &TestApp, id: &str, secret: &str, token: &str) -> Resp {
    post(
        app,
        "/oidc/introspect",
        &[("token", token)],
        Some((id, secret)),
    )
}

fn active(resp: &Resp) -> bool {
    assert_eq!(resp.status, 200, "{resp:?}");
    json(resp)["active"].as_bool().expect("active")
}

fn userinfo(app: &TestApp, access: &str) -> Resp {
    Browser::new(&app.base).get_with(
        "/oidc/userinfo",
        &[("Authorization", &format!("Bearer {access}"))],
    )
}

/// Whether the store still holds `token` (by its hash), whatever its client.
fn token_stored(app: &TestApp, token: &str) -> bool {
    let hash: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
    app.state()
        .grants
        .token_find(&hash)
        .expect("find")
        .is_some()
}

#[test]
fn a_client_made_on_the_page_signs_a_user_in_with_the_library_using_the_secret_shown_once() {
    let app = spawn();
    let root = admin(&app);
    let page = root.get("/admin/clients");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"admin-nav-clients\""));
    // The file's client is listed, without actions.
    let configured = &page.body[page
        .body
        .find("id=\"configured-clients\"")
        .expect("the file's clients")..];
    let configured = &configured[..configured.find("</table>").expect("end")];
    assert!(configured.contains("grafana"), "{configured}");
    assert!(!configured.contains("/admin/clients/"), "{configured}");

    let mut f = fields(
        "wiki",
        "https://wiki.test/cb\r\n\r\nhttp://127.0.0.1/cb\r\n",
    );
    f.push(("launch_url", "https://wiki.test/home"));
    let resp = submit(&root, "/admin/clients", &f);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(input(&resp, "made-client-id").as_deref(), Some("wiki"));
    let secret = input(&resp, "made-client-secret").expect("shown once");
    assert_eq!(secret.len(), 43, "256 random bits");
    // Not again.
    let again = root.get("/admin/clients");
    assert!(!again.body.contains(&secret));
    assert!(!again.body.contains("made-client-secret"));
    assert!(again.body.contains("The Wiki"));
    assert_eq!(stored(&app), ["wiki"]);
    // Never in the clear in the database (nor its hex hash: a blob).
    if crate::helpers::on_sqlite("secret_at_rest") {
        // The file and its write-ahead log, where a fresh write still is.
        let mut bytes = std::fs::read(app.db_path()).expect("the database file");
        if let Ok(wal) = std::fs::read(app.dir.path().join("gatehouse.db-wal")) {
            bytes.extend(wal);
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("wiki.test"), "the client is in these files");
        assert!(!text.contains(&secret), "the secret is stored in the clear");
    }

    // A full code flow with the library, the secret as shown.
    let http = http(&app.base);
    let client = CoreClient::from_provider_metadata(
        metadata(&app),
        ClientId::new("wiki".into()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new("https://wiki.test/cb".into()).expect("redirect"));
    let (pkce, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(pkce)
        .url();
    let browser = app.browser();
    let back = follow(&browser, &local(url.as_str()));
    let location = back.header("location").expect("back to the app");
    assert!(location.starts_with("https://wiki.test/cb?"), "{location}");
    assert_eq!(
        param(location, "state").as_deref(),
        Some(state.secret().as_str())
    );
    let tokens = client
        .exchange_code(AuthorizationCode::new(
            param(location, "code").expect("code"),
        ))
        .expect("token endpoint")
        .set_pkce_verifier(verifier)
        .request(&http)
        .expect("tokens for the secret shown");
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("verified against the JWKS");
    assert_eq!(claims.issuer().as_str(), ISSUER);
    assert!(
        tokens.refresh_token().is_some(),
        "offline_access was allowed"
    );
    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .expect("userinfo endpoint")
        .request(&http)
        .expect("userinfo");
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));
    // The loopback redirect, on any port.
    let loopback = code(&browser, "wiki", "http://127.0.0.1:51234/cb");
    redeem(
        &app,
        "wiki",
        &secret,
        &loopback,
        "http://127.0.0.1:51234/cb",
    );
    // The sign-in page names it; the start page links to it.
    assert!(
        browser
            .get("/")
            .body
            .contains("href=\"https://wiki.test/home\"")
    );
}

#[test]
fn a_new_secret_refuses_the_old_one_at_once_and_the_new_one_works() {
    let app = spawn();
    let root = admin(&app);
    let (id, old) = make(&root, &fields("wiki", "https://wiki.test/cb"));
    let browser = app.browser();
    let tokens = redeem(
        &app,
        &id,
        &old,
        &code(&browser, &id, "https://wiki.test/cb"),
        "https://wiki.test/cb",
    );
    let refresh_token = tokens["refresh_token"].as_str().expect("refresh");

    // The confirm step, then the new secret, shown once.
    let confirm = root.get("/admin/clients/rotate?client_id=wiki");
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("id=\"rotate-client-form\""));
    let resp = submit(
        &root,
        "/admin/clients/rotate",
        &[("client_id", "wiki"), ("confirm", "yes")],
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    let new = input(&resp, "made-client-secret").expect("the new secret");
    assert_ne!(new, old);
    assert!(!root.get("/admin/clients").body.contains(&new));

    assert_oauth_error(
        &refresh(&app, &id, &old, refresh_token),
        401,
        "invalid_client",
    );
    assert_oauth_error(
        &introspect(&app, &id, &old, refresh_token),
        401,
        "invalid_client",
    );
    // client_secret_post too.
    assert_oauth_error(
        &post(
            &app,
            "/oidc/introspect",
            &[
                ("token", refresh_token),
                ("client_id", &id),
                ("client_secret", &old),
            ],
            None,
        ),
        401,
        "invalid_client",
    );
    assert!(active(&introspect(&app, &id, &new, refresh_token)));
    let renewed = refresh(&app, &id, &new, refresh_token);
    assert_eq!(renewed.status, 200, "{renewed:?}");

    // Without the confirm step, for the file's client, an unknown one or a
    // public one: refused, nothing changed.
    let unconfirmed = submit(&root, "/admin/clients/rotate", &[("client_id", "wiki")]);
    assert_eq!(unconfirmed.status, 400);
    let file = submit(
        &root,
        "/admin/clients/rotate",
        &[("client_id", "grafana"), ("confirm", "yes")],
    );
    assert_eq!(file.status, 409, "{file:?}");
    assert!(file.body.contains("gatehouse.toml"));
    assert_eq!(
        root.get("/admin/clients/rotate?client_id=grafana").status,
        404
    );
    assert_eq!(
        submit(
            &root,
            "/admin/clients/rotate",
            &[("client_id", "nobody"), ("confirm", "yes")],
        )
        .status,
        404
    );
    let mut public = fields("spa", "https://spa.test/cb");
    public[3] = ("client_type", "public");
    let made = submit(&root, "/admin/clients", &public);
    assert_eq!(made.status, 200);
    assert_eq!(input(&made, "made-client-id").as_deref(), Some("spa"));
    assert!(input(&made, "made-client-secret").is_none(), "no secret");
    let spa = submit(
        &root,
        "/admin/clients/rotate",
        &[("client_id", "spa"), ("confirm", "yes")],
    );
    assert_eq!(spa.status, 409, "{spa:?}");
    // The secret of the last rotation is still the one.
    assert_eq!(introspect(&app, &id, &new, "x").status, 200);
}

#[test]
fn deleting_a_client_ends_its_grants_codes_and_tokens() {
    let app = spawn();
    let root = admin(&app);
    let (id, secret) = make(&root, &fields("wiki", "https://wiki.test/cb"));
    let browser = app.browser();
    let tokens = redeem(
        &app,
        &id,
        &secret,
        &code(&browser, &id, "https://wiki.test/cb"),
        "https://wiki.test/cb",
    );
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh_token = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let unused = code(&browser, &id, "https://wiki.test/cb");
    assert!(active(&introspect(&app, &id, &secret, &refresh_token)));
    assert_eq!(userinfo(&app, &access).status, 200);
    // Another client's tokens are not touched.
    let wiki2 = make(&root, &fields("wiki2", "https://wiki2.test/cb"));
    let other = redeem(
        &app,
        &wiki2.0,
        &wiki2.1,
        &code(&browser, &wiki2.0, "https://wiki2.test/cb"),
        "https://wiki2.test/cb",
    );
    let other_refresh = other["refresh_token"].as_str().expect("refresh");

    let confirm = root.get(&format!("/admin/clients/delete?client_id={id}"));
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("id=\"delete-client-form\""));
    let unconfirmed = submit(&root, "/admin/clients/delete", &[("client_id", "wiki")]);
    assert_eq!(unconfirmed.status, 400);
    assert_eq!(stored(&app), ["wiki", "wiki2"]);
    let done = submit(
        &root,
        "/admin/clients/delete",
        &[("client_id", "wiki"), ("confirm", "yes")],
    );
    crate::helpers::assert_redirects_to(&done, "/admin/clients?done=client-deleted");
    assert_eq!(stored(&app), ["wiki2"]);

    assert_oauth_error(
        &refresh(&app, &id, &secret, &refresh_token),
        401,
        "invalid_client",
    );
    assert_eq!(userinfo(&app, &access).status, 401);
    assert!(!token_stored(&app, &access) && !token_stored(&app, &refresh_token));
    // Made again under the same id: nothing of the old one comes back.
    let (_, again) = make(&root, &fields("wiki", "https://wiki.test/cb"));
    assert!(!active(&introspect(&app, &id, &again, &refresh_token)));
    assert!(!active(&introspect(&app, &id, &again, &access)));
    assert_oauth_error(
        &refresh(&app, &id, &again, &refresh_token),
        400,
        "invalid_grant",
    );
    let late = post(
        &app,
        "/oidc/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &unused),
            ("redirect_uri", "https://wiki.test/cb"),
            ("code_verifier", VERIFIER),
        ],
        Some((&id, &again)),
    );
    assert_oauth_error(&late, 400, "invalid_grant");
    assert!(active(&introspect(&app, &wiki2.0, &wiki2.1, other_refresh)));
    // The file's client cannot be deleted here; an unknown one is 404.
    let file = submit(
        &root,
        "/admin/clients/delete",
        &[("client_id", "grafana"), ("confirm", "yes")],
    );
    assert_eq!(file.status, 409, "{file:?}");
    assert_eq!(
        submit(
            &root,
            "/admin/clients/delete",
            &[("client_id", "nobody"), ("confirm", "yes")],
        )
        .status,
        404
    );
}

#[test]
fn only_an_administrator_with_the_pages_token_may_make_change_or_delete_a_client() {
    let app = spawn();
    let root = admin(&app);
    let (id, secret) = make(&root, &fields("wiki", "https://wiki.test/cb"));
    let alice = app.browser();
    assert_eq!(alice.login("alice", ALICE).status, 303);
    assert_eq!(alice.get("/admin/clients").status, 403);
    assert_eq!(
        alice.get("/admin/clients/delete?client_id=wiki").status,
        403
    );
    let hers = alice.get("/account").csrf().expect("her token");
    let anonymous = app.browser();
    assert_eq!(anonymous.get("/admin/clients").status, 303);
    for (action, extra) in [
        ("/admin/clients", vec![("client_id", "evil")]),
        (
            "/admin/clients/rotate",
            vec![("client_id", "wiki"), ("confirm", "yes")],
        ),
        (
            "/admin/clients/delete",
            vec![("client_id", "wiki"), ("confirm", "yes")],
        ),
    ] {
        let with = |b: &Browser, csrf: Option<&str>| {
            let mut all: Vec<(&str, &str)> = csrf.map(|c| vec![("csrf", c)]).unwrap_or_default();
            all.extend(extra.iter().copied());
            if action == "/admin/clients" {
                all.extend(fields("evil", "https://evil.test/cb").into_iter().skip(1));
            }
            b.post_form(action, &all)
        };
        // A user who is no administrator, with her own valid token.
        assert_eq!(with(&alice, Some(&hers)).status, 403, "{action}");
        // The administrator, with no token, a forged one, or hers.
        assert_eq!(with(&root, None).status, 403, "{action}");
        assert_eq!(with(&root, Some("forged")).status, 403, "{action}");
        assert_eq!(with(&root, Some(&hers)).status, 403, "{action}");
        assert_ne!(with(&anonymous, None).status, 200, "{action}");
    }
    assert_eq!(stored(&app), ["wiki"]);
    assert_eq!(
        introspect(&app, &id, &secret, "x").status,
        200,
        "the secret was not rotated"
    );

    // A script's click (a navigation no person started) meets the password
    // step, which carries the whole form through.
    let csrf = root.get("/admin/clients").csrf().expect("token");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend(fields("carried", "https://a.test/cb\r\nhttps://b.test/cb"));
    all.push(("allowed_groups", "admins\r\nops"));
    let step = root.post_form_with("/admin/clients", &all, SCRIPTED_CLICK);
    assert_eq!(step.status, 200, "{step:?}");
    assert!(step.body.contains("id=\"reauth-form\""));
    assert_eq!(stored(&app), ["wiki"], "nothing made without the password");
    let again = through_password_step(&step, ROOT);
    let borrowed: Vec<(&str, &str)> = again
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let made = root.post_form_with("/admin/clients", &borrowed, SCRIPTED_CLICK);
    assert_eq!(made.status, 200, "{made:?}");
    assert_eq!(input(&made, "made-client-id").as_deref(), Some("carried"));
    let listing = app
        .state()
        .oidc
        .as_ref()
        .expect("provider")
        .registry()
        .find_stored("carried")
        .expect("find")
        .expect("made");
    assert_eq!(
        listing.row.redirect_uris,
        ["https://a.test/cb", "https://b.test/cb"]
    );
    assert_eq!(listing.row.groups, ["admins", "ops"]);
    assert!(listing.row.offline_access && listing.row.claims_in_id_token);
}

#[test]
fn bad_redirect_uris_are_refused_with_a_clear_error_and_nothing_is_stored() {
    let app = spawn();
    let root = admin(&app);
    for bad in [
        "https://wiki.test/*",
        "https://wiki.test/cb*",
        "https://*.wiki.test/cb",
        "javascript:alert(1)",
        "data:text/html,x",
        "https://wiki.test/cb#frag",
        "/relative/cb",
        "https://",
        "https://user@wiki.test/cb",
        "https://wiki.test/a b",
        "",
        "   \r\n  ",
        "https://wiki.test/cb\r\nhttps://wiki.test/*",
    ] {
        let resp = submit(&root, "/admin/clients", &fields("wiki", bad));
        assert_eq!(resp.status, 400, "{bad:?}: {resp:?}");
        let error = resp.text_of("error").expect("an error is shown");
        assert!(error.starts_with("Redirect URIs:"), "{bad:?}: {error}");
        assert!(input(&resp, "made-client-secret").is_none());
        // What was typed is shown again.
        assert!(resp.body.contains("value=\"wiki\""), "{bad:?}");
    }
    assert!(stored(&app).is_empty());
    // A prefix of a registered URI, or one longer than it, is no match.
    let (id, _) = make(&root, &fields("wiki", "https://wiki.test/cb"));
    let browser = app.browser();
    for near in [
        "https://wiki.test/cb/evil",
        "https://wiki.test/c",
        "https://wiki.test/cb?x=1",
        "https://wiki.test.evil.test/cb",
    ] {
        let resp = follow(
            &browser,
            &format!(
                "/oidc/authorize?client_id={id}&response_type=code&scope=openid&redirect_uri={}",
                enc(near)
            ),
        );
        assert_eq!(resp.status, 400, "{near}: {resp:?}");
        assert!(resp.header("location").is_none(), "{near}");
    }
}

#[test]
fn ids_of_gatehouse_toml_and_ids_made_before_are_refused() {
    let app = spawn();
    let root = admin(&app);
    let file = submit(
        &root,
        "/admin/clients",
        &fields("grafana", "https://x.test/cb"),
    );
    assert_eq!(file.status, 409, "{file:?}");
    assert!(
        file.text_of("error")
            .expect("error")
            .contains("configured in gatehouse.toml")
    );
    assert!(stored(&app).is_empty());
    // The file's client still signs in with its own secret.
    assert_eq!(introspect(&app, "grafana", GRAFANA_SECRET, "x").status, 200);

    let (id, first) = make(&root, &fields("wiki", "https://wiki.test/cb"));
    let twice = submit(
        &root,
        "/admin/clients",
        &fields("wiki", "https://evil.test/cb"),
    );
    assert_eq!(twice.status, 409, "{twice:?}");
    assert!(
        twice
            .text_of("error")
            .expect("error")
            .contains("exists already")
    );
    assert_eq!(introspect(&app, &id, &first, "x").status, 200, "unchanged");
    let found = app
        .state()
        .oidc
        .as_ref()
        .expect("provider")
        .registry()
        .find_stored("wiki")
        .expect("find")
        .expect("there");
    assert_eq!(found.row.redirect_uris, ["https://wiki.test/cb"]);

    // An empty id gets a random one; any printable id the app insists on
    // works, exactly as typed (here with client_secret_post).
    let (random, _) = make(&root, &fields("", "https://r.test/cb"));
    assert_eq!(random.len(), 32, "{random}");
    let odd = "Wiki: Ünïcode 'id' \"%20\" <b>";
    let (odd_id, odd_secret) = make(&root, &fields(odd, "https://odd.test/cb"));
    assert_eq!(odd_id, odd);
    let by_post = post(
        &app,
        "/oidc/introspect",
        &[
            ("token", "x"),
            ("client_id", odd),
            ("client_secret", &odd_secret),
        ],
        None,
    );
    assert_eq!(by_post.status, 200, "{by_post:?}");
    let page = root.get("/admin/clients");
    assert!(!page.body.contains("<b>"), "the id is escaped on the page");
    assert_eq!(
        root.get(&format!("/admin/clients/delete?client_id={}", enc(odd)))
            .status,
        200
    );
}

#[test]
fn oversized_or_malformed_fields_get_a_4xx_and_never_a_500() {
    let app = spawn();
    let root = admin(&app);
    let long_id = "x".repeat(256);
    let huge_id = "x".repeat(20_000);
    let long_name = "n".repeat(101);
    let long_uri = format!("https://wiki.test/{}", "a".repeat(2000));
    let many_uris = (0..21)
        .map(|i| format!("https://wiki.test/{i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let many_groups = (0..21)
        .map(|i| format!("g{i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let long_group = "g".repeat(65);
    let cases: Vec<(&str, &str, u16)> = vec![
        ("client_id", &long_id, 400),
        ("client_id", &huge_id, 400),
        ("client_id", "bell\u{7}", 400),
        ("client_id", "tab\tinside", 400),
        ("client_name", &long_name, 400),
        ("client_name", "two\u{1b}[31mlines", 400),
        ("redirect_uris", &long_uri, 400),
        ("redirect_uris", &many_uris, 400),
        ("allowed_groups", &many_groups, 400),
        ("allowed_groups", &long_group, 400),
        ("launch_url", "ftp://wiki.test/", 400),
        ("launch_url", "javascript:alert(1)", 400),
        ("client_type", "secret-ish", 400),
        ("client_type", "", 400),
        ("signing_alg", "HS256", 400),
        ("signing_alg", "none", 400),
        ("pkce", "sometimes", 400),
    ];
    for (field, value, status) in cases {
        let mut f: Vec<(&str, &str)> = fields("wiki", "https://wiki.test/cb")
            .into_iter()
            .filter(|(k, _)| *k != field)
            .collect();
        f.push((field, value));
        let resp = submit(&root, "/admin/clients", &f);
        assert_eq!(resp.status, status, "{field}={:.40}: {resp:?}", value);
        assert!(resp.text_of("error").is_some(), "{field}: a message");
    }
    // A body over the limit, a field twice, bytes that are not UTF-8.
    let csrf = root.get("/admin/clients").csrf().expect("token");
    let big = "u".repeat(70 * 1024);
    let mut f = fields("wiki", &big);
    f.insert(0, ("csrf", &csrf));
    assert_eq!(root.post_form("/admin/clients", &f).status, 413);
    let mut twice = fields("wiki", "https://wiki.test/cb");
    twice.insert(0, ("csrf", &csrf));
    twice.push(("client_id", "other"));
    let resp = root.post_form("/admin/clients", &twice);
    assert!((400..500).contains(&resp.status), "{resp:?}");
    let mut raw = format!("csrf={csrf}&client_type=confidential&pkce=optional&signing_alg=RS256&redirect_uris=https%3A%2F%2Fw.test%2F&client_id=").into_bytes();
    raw.extend_from_slice(&[0xff, 0xfe]);
    let resp = root.post_raw("/admin/clients", "application/x-www-form-urlencoded", raw);
    assert!((400..500).contains(&resp.status), "{resp:?}");
    assert!(stored(&app).is_empty());
}

#[test]
fn a_made_clients_groups_are_enforced_with_a_refusal_page_naming_it() {
    let app = spawn();
    let root = admin(&app);
    let mut f = fields("ops", "https://ops.test/cb");
    f[1] = ("client_name", "Ops Console");
    f.push(("allowed_groups", "admins"));
    make(&root, &f);
    let refused = follow(
        &app.browser(),
        &format!(
            "/oidc/authorize?client_id=ops&response_type=code&scope=openid&redirect_uri={}",
            enc("https://ops.test/cb")
        ),
    );
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.body.contains("Ops Console"));
    assert!(refused.header("location").is_none());
}

#[test]
fn the_cli_makes_lists_rotates_and_deletes_clients_on_the_configured_store() {
    use crate::cli::{fails, gatehouse, ok};
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("gatehouse.toml"), config()).expect("config");
    let made = ok(&gatehouse(
        dir.path(),
        &[
            "oidc",
            "client",
            "create",
            "--id",
            "cli-app",
            "--name",
            "CLI App",
            "--redirect-uri",
            "https://cli.test/cb",
            "--redirect-uri",
            "http://127.0.0.1/cb",
            "--signing-alg",
            "ES256",
            "--offline-access",
        ],
        None,
    ));
    let secret_of = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("client secret: "))
            .unwrap_or_else(|| panic!("no secret in {out}"))
            .to_owned()
    };
    let first = secret_of(&made);
    assert!(made.contains("client id: cli-app"), "{made}");
    let listed = ok(&gatehouse(dir.path(), &["oidc", "client", "list"], None));
    assert!(!listed.contains(&first), "{listed}");
    let line = |id: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in {listed}"))
            .to_owned()
    };
    assert!(line("grafana").contains("gatehouse.toml"));
    assert!(line("cli-app").contains("made here"));
    assert!(line("cli-app").contains("confidential"));
    let public = ok(&gatehouse(
        dir.path(),
        &[
            "oidc",
            "client",
            "create",
            "--public",
            "--redirect-uri",
            "app.native:/cb",
        ],
        None,
    ));
    assert!(public.contains("a public client"), "{public}");
    assert!(!public.contains("client secret"), "{public}");
    // Refused: the file's id, a taken one, a bad redirect URI; nothing made.
    let err = fails(&gatehouse(
        dir.path(),
        &[
            "oidc",
            "client",
            "create",
            "--id",
            "grafana",
            "--redirect-uri",
            "https://x/",
        ],
        None,
    ));
    assert!(err.contains("configured in gatehouse.toml"), "{err}");
    let err = fails(&gatehouse(
        dir.path(),
        &[
            "oidc",
            "client",
            "create",
            "--id",
            "cli-app",
            "--redirect-uri",
            "https://x/",
        ],
        None,
    ));
    assert!(err.contains("exists already"), "{err}");
    let err = fails(&gatehouse(
        dir.path(),
        &[
            "oidc",
            "client",
            "create",
            "--id",
            "bad",
            "--redirect-uri",
            "https://x/*",
        ],
        None,
    ));
    assert!(err.contains("invalid redirect_uris"), "{err}");
    let rotated = ok(&gatehouse(
        dir.path(),
        &["oidc", "client", "rotate-secret", "cli-app"],
        None,
    ));
    let second = secret_of(&rotated);
    assert_ne!(first, second);
    let err = fails(&gatehouse(
        dir.path(),
        &["oidc", "client", "rotate-secret", "grafana"],
        None,
    ));
    assert!(err.contains("gatehouse.toml"), "{err}");

    // A server on that store takes the new secret, not the old one, and
    // publishes the ES256 key the CLI made.
    let mut app = TestApp::spawn_in(dir, Vec::new());
    assert_oauth_error(
        &introspect(&app, "cli-app", &first, "x"),
        401,
        "invalid_client",
    );
    assert_eq!(introspect(&app, "cli-app", &second, "x").status, 200);
    let jwks = json(&Browser::new(&app.base).get("/oidc/jwks"));
    assert!(
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["alg"] == "ES256"),
        "{jwks}"
    );
    if let Some(running) = app.running.take() {
        running.shutdown();
    }
    let deleted = crate::helpers::when_released(|| {
        gatehouse(
            app.dir.path(),
            &["oidc", "client", "delete", "cli-app"],
            None,
        )
    });
    assert!(ok(&deleted).contains("deleted client cli-app"));
    let err = fails(&gatehouse(
        app.dir.path(),
        &["oidc", "client", "delete", "cli-app"],
        None,
    ));
    assert!(err.contains("there is no client"), "{err}");
    let listed = ok(&gatehouse(
        app.dir.path(),
        &["oidc", "client", "list"],
        None,
    ));
    assert!(!listed.contains("cli-app"), "{listed}");
}

/// Two instances on one shared store with the provider on, or `None` on
/// SQLite (one file serves one instance).
fn pair(test: &str) -> Option<(TestApp, TestApp)> {
    if backend() == "sqlite" {
        eprintln!("{test}: skipped on sqlite: one file serves one instance");
        return None;
    }
    const SECRET: &str = "one-secret-for-both-instances-32-bytes-or-more";
    let a = TestApp::spawn_with(&[("secrets", SECRET), ("public_url", ISSUER)]);
    let mut shared = backend_settings(a.dir.path());
    shared.push(("secrets".into(), SECRET.into()));
    shared.push(("public_url".into(), ISSUER.into()));
    let b = TestApp::spawn_in(tempfile::tempdir().expect("temp dir"), shared);
    Some((a, b))
}

#[test]
fn a_client_made_on_one_instance_is_used_changed_and_ended_on_the_other_at_once() {
    let Some((a, b)) =
        pair("a_client_made_on_one_instance_is_used_changed_and_ended_on_the_other_at_once")
    else {
        return;
    };
    a.add_user("alice", ALICE, false);
    a.add_user("root", ROOT, true);
    let on_a = admin(&a);
    let (id, first) = make(&on_a, &fields("shared", "https://shared.test/cb"));
    // b uses it at once: a code flow there, with the secret a showed.
    let browser = b.browser();
    let tokens = redeem(
        &b,
        &id,
        &first,
        &code(&browser, &id, "https://shared.test/cb"),
        "https://shared.test/cb",
    );
    let refresh_token = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    assert!(admin(&b).get("/admin/clients").body.contains("shared"));
    // A new secret on b: a refuses the old one at once.
    let on_b = admin(&b);
    let rotated = submit(
        &on_b,
        "/admin/clients/rotate",
        &[("client_id", "shared"), ("confirm", "yes")],
    );
    let second = input(&rotated, "made-client-secret").expect("new secret");
    assert_oauth_error(&introspect(&a, &id, &first, &access), 401, "invalid_client");
    assert!(active(&introspect(&a, &id, &second, &access)));
    // Deleted on a: b refuses the client and its tokens at once.
    let done = submit(
        &on_a,
        "/admin/clients/delete",
        &[("client_id", "shared"), ("confirm", "yes")],
    );
    assert_eq!(done.status, 303);
    assert_oauth_error(
        &refresh(&b, &id, &second, &refresh_token),
        401,
        "invalid_client",
    );
    assert_eq!(userinfo(&b, &access).status, 401);
    assert!(!token_stored(&b, &refresh_token));
}

#[test]
fn bad_logout_uris_are_refused_with_a_clear_error_on_the_page_and_by_the_cli() {
    let app = spawn();
    let root = admin(&app);
    let long = format!("https://wiki.test/{}", "a".repeat(1100));
    let many = vec!["https://wiki.test/bye"; 21].join("\n");
    let four_long = [long.as_str(); 4].join("\n");
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "frontchannel_logout_uri",
            "https://wiki.test/logout#x",
            "Front-channel logout URI:",
        ),
        (
            "frontchannel_logout_uri",
            "ftp://wiki.test/logout",
            "Front-channel logout URI:",
        ),
        (
            "frontchannel_logout_uri",
            "javascript:alert(1)",
            "Front-channel logout URI:",
        ),
        (
            "frontchannel_logout_uri",
            "wiki.native:/logout",
            "Front-channel logout URI:",
        ),
        // Plain HTTP to a host no http redirect URI names.
        (
            "frontchannel_logout_uri",
            "http://wiki.test/logout",
            "Front-channel logout URI:",
        ),
        (
            "backchannel_logout_uri",
            "https://wiki.test/logout#x",
            "Back-channel logout URI:",
        ),
        (
            "backchannel_logout_uri",
            "data:text/html,x",
            "Back-channel logout URI:",
        ),
        (
            "backchannel_logout_uri",
            "http://other.test/logout",
            "Back-channel logout URI:",
        ),
        (
            "backchannel_logout_uri",
            "https://user@wiki.test/logout",
            "Back-channel logout URI:",
        ),
        (
            "post_logout_redirect_uris",
            "https://wiki.test/bye#x",
            "Post-logout redirect URIs:",
        ),
        (
            "post_logout_redirect_uris",
            "https://wiki.test/bye\njavascript:alert(1)",
            "Post-logout redirect URIs:",
        ),
        (
            "post_logout_redirect_uris",
            "https://*.wiki.test/bye",
            "Post-logout redirect URIs:",
        ),
        (
            "post_logout_redirect_uris",
            &many,
            "Post-logout redirect URIs:",
        ),
        // Over-long: the URIs together, and one on its own.
        (
            "post_logout_redirect_uris",
            &four_long,
            "Post-logout redirect URIs:",
        ),
    ];
    for (field, bad, said) in &cases {
        let mut all = fields("wiki", "https://wiki.test/cb");
        all.push((field, bad));
        let resp = submit(&root, "/admin/clients", &all);
        assert_eq!(resp.status, 400, "{field} {bad:?}: {resp:?}");
        let error = resp.text_of("error").expect("an error is shown");
        assert!(error.starts_with(said), "{field} {bad:?}: {error}");
        assert!(input(&resp, "made-client-secret").is_none());
    }
    // Redirect URIs and logout URIs count together.
    let three_long = [long.as_str(); 3].join("\n");
    let mut all = fields("wiki", &three_long);
    all.push(("backchannel_logout_uri", &long));
    let resp = submit(&root, "/admin/clients", &all);
    assert_eq!(resp.status, 400, "{resp:?}");
    let error = resp.text_of("error").expect("an error");
    assert!(error.starts_with("Back-channel logout URI:"), "{error}");
    assert!(error.contains("4096 bytes"), "{error}");
    assert!(stored(&app).is_empty(), "nothing made");

    // The command line refuses the same, naming the field.
    use crate::cli::{fails, gatehouse};
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("gatehouse.toml"), config()).expect("config");
    let flag = |field: &str| match field {
        "frontchannel_logout_uri" => "--frontchannel-logout-uri",
        "backchannel_logout_uri" => "--backchannel-logout-uri",
        _ => "--post-logout-redirect-uri",
    };
    for (field, bad, _) in cases.iter().filter(|(_, bad, _)| !bad.contains('\n')) {
        let err = fails(&gatehouse(
            dir.path(),
            &[
                "oidc",
                "client",
                "create",
                "--id",
                "wiki",
                "--redirect-uri",
                "https://wiki.test/cb",
                flag(field),
                bad,
            ],
            None,
        ));
        assert!(err.contains(&format!("invalid {field}")), "{bad:?}: {err}");
    }
    let mut args = vec![
        "oidc",
        "client",
        "create",
        "--id",
        "wiki",
        "--redirect-uri",
        "https://wiki.test/cb",
    ];
    for _ in 0..4 {
        args.extend(["--post-logout-redirect-uri", long.as_str()]);
    }
    let err = fails(&gatehouse(dir.path(), &args, None));
    assert!(
        err.contains("invalid post_logout_redirect_uris") && err.contains("4096 bytes"),
        "{err}"
    );
    let listed = crate::cli::ok(&gatehouse(dir.path(), &["oidc", "client", "list"], None));
    assert!(!listed.contains("wiki"), "{listed}");
}
