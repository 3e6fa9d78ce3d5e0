//! The provider's flows end to end, on the real stores (SQLite always,
//! PostgreSQL when `GATEHOUSE_TEST_POSTGRES` is set): a code flow with
//! PKCE whose ID token a verifier that shares no code with the signer
//! accepts, refresh rotation, the device grant, introspection, revocation,
//! sign-out; and the attacks: forged, replayed, expired, wrong client,
//! wrong redirect, PKCE downgrades, users outside a client's groups.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::claims::{Profile, at_hash};
use super::clients::{ClientSpec, Clients};
use super::grants::{
    Authentication, AuthorizationError, AuthorizationRequest, ClientCredentials, Decision,
    Introspection, TokenResponse, s256,
};
use super::store::Store;
use super::{Alg, OidcError, OidcOptions, Provider, testing};
use crate::clock::Millis;
use crate::identity::UserId;

const ISSUER: &str = "https://auth.lan";
const APP_SECRET: &str = "app-secret-0123456789-abcdefghij";
const OTHER_SECRET: &str = "other-secret-0123456789-abcdefghij";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

const CLIENTS: &str = r#"
[[clients]]
id = "app"
secret = "app-secret-0123456789-abcdefghij"
redirect_uris = ["https://app.lan/cb"]
offline_access = true
frontchannel_logout_uri = "https://app.lan/logout"
post_logout_redirect_uris = ["https://app.lan/bye"]
[clients.claims]
role = { from_groups = { admins = "Admin" }, default = "Viewer" }

[[clients]]
id = "other"
secret = "other-secret-0123456789-abcdefghij"
redirect_uris = ["https://app.lan/cb"]
offline_access = true

[[clients]]
id = "spa"
redirect_uris = ["http://127.0.0.1/cb", "app.immich:///oauth-callback"]
signing_alg = "ES256"

[[clients]]
id = "admin-tool"
secret = "admin-secret-0123456789-abcdefghij"
redirect_uris = ["https://tool.lan/cb"]
groups = ["admins"]
two_factor = true
signing_alg = "EdDSA"
claims_in_id_token = false

[[clients]]
id = "tv"
redirect_uris = ["https://tv.lan/cb"]
device_grant = true
offline_access = true
"#;

struct Fixture {
    provider: Provider,
    alice: UserId,
    bob: UserId,
    _dir: Option<tempfile::TempDir>,
}

fn clients() -> Clients {
    #[derive(Deserialize)]
    struct File {
        clients: Vec<ClientSpec>,
    }
    let file: File = toml::from_str(CLIENTS).expect("TOML");
    Clients::new(
        file.clients
            .iter()
            .map(|c| c.build().expect("valid client"))
            .collect(),
    )
    .expect("unique")
}

fn provider(store: Arc<dyn Store>) -> Provider {
    Provider::new(
        ISSUER,
        clients(),
        OidcOptions::default(),
        store,
        &[b"a server secret of at least 32 bytes".to_vec()],
    )
}

/// A fixture on each backend there is.
fn each(check: impl Fn(&Fixture)) {
    let (dir, pool) = testing::sqlite_pool();
    let (alice, bob) = (testing::user(&pool, "alice"), testing::user(&pool, "bob"));
    check(&Fixture {
        provider: provider(Arc::new(super::SqliteOidc(pool))),
        alice,
        bob,
        _dir: Some(dir),
    });
    if let Some(url) = crate::db::postgres::test_url() {
        let url = crate::db::postgres::scratch_schema(&url).expect("schema");
        let pool = crate::db::postgres::open_for_tests(&url, 4).expect("open");
        let mut ids = Vec::new();
        for name in ["alice", "bob"] {
            let row = pool
                .get()
                .expect("conn")
                .query_one(
                    "INSERT INTO users (username, password_hash, created_at, password_changed_at) \
                     VALUES ($1, 'x', 0, 0) RETURNING id",
                    &[&name],
                )
                .expect("user");
            ids.push(row.get::<_, i64>(0));
        }
        check(&Fixture {
            provider: provider(Arc::new(super::PostgresOidc(pool))),
            alice: ids[0],
            bob: ids[1],
            _dir: None,
        });
    }
}

fn now() -> Millis {
    crate::clock::now()
}

fn alice_profile() -> Profile {
    Profile {
        username: "alice".into(),
        name: Some("Alice Liddell".into()),
        email: Some("alice@lan".into()),
        email_verified: true,
        groups: vec!["admins".into(), "staff".into()],
    }
}

fn signed_in(user: UserId, methods: &[&str]) -> Authentication {
    Authentication {
        user_id: user,
        sid: "sid-of-alices-session".into(),
        auth_time: now() - 5_000,
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        proved: None,
        groups: vec!["admins".into(), "staff".into()],
    }
}

fn request(client: &str, redirect: &str) -> AuthorizationRequest {
    AuthorizationRequest {
        client_id: Some(client.into()),
        redirect_uri: Some(redirect.into()),
        response_type: Some("code".into()),
        scope: Some("openid profile email groups offline_access".into()),
        state: Some("xyz state".into()),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: Some(CHALLENGE.into()),
        code_challenge_method: Some("S256".into()),
        ..Default::default()
    }
}

/// The `code` in a redirect URL (and checks `state` and `iss` came too).
fn code_of(url: &str) -> String {
    let query = url.split_once('?').expect("a query").1;
    let get = |k: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .map(|v| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .expect("UTF-8")
                    .into_owned()
            })
    };
    assert_eq!(get("iss").as_deref(), Some(ISSUER), "{url}");
    get("code").expect("a code")
}

/// Runs the authorization step for `client` as alice and returns the code.
fn code_for(f: &Fixture, client: &str, redirect: &str, methods: &[&str]) -> String {
    let p = &f.provider;
    let authz = p
        .authorization(&request(client, redirect))
        .expect("a valid request");
    let auth = signed_in(f.alice, methods);
    let url = p
        .issue_code(&authz, &auth, now() - 10_000, now())
        .expect("a code");
    assert!(url.starts_with(&format!("{redirect}?code=")), "{url}");
    assert!(url.contains("&state=xyz%20state&"), "{url}");
    code_of(&url)
}

fn creds(id: &str, secret: &str) -> ClientCredentials {
    ClientCredentials {
        basic: Some((id.into(), secret.into())),
        ..Default::default()
    }
}

fn profile_ok(_: UserId) -> Result<Option<Profile>, OidcError> {
    Ok(Some(alice_profile()))
}

/// Exchanges `code` as the `app` client.
fn exchange(f: &Fixture, code: &str) -> Result<TokenResponse, OidcError> {
    let p = &f.provider;
    let app = p
        .authenticate_client(&creds("app", APP_SECRET))
        .expect("authenticated");
    p.exchange_code(
        &app,
        code,
        "https://app.lan/cb",
        Some(VERIFIER),
        profile_ok,
        now(),
    )
}

fn is(e: &OidcError, code: &str) -> bool {
    e.code() == code
}

#[test]
fn a_code_flow_with_pkce_gives_an_id_token_an_independent_verifier_accepts() {
    each(|f| {
        let p = &f.provider;
        let authz = p
            .authorization(&request("app", "https://app.lan/cb"))
            .expect("valid");
        assert!(matches!(
            p.decide(&authz, None, now(), now()).expect("decide"),
            Decision::SignIn
        ));
        let code = code_for(f, "app", "https://app.lan/cb", &["pwd", "otp"]);
        let tokens = exchange(f, &code).expect("tokens");
        assert!(tokens.refresh_token.is_some(), "offline_access granted");
        assert_eq!(tokens.expires_in, 3600);
        assert_eq!(
            tokens.to_json()["token_type"],
            json!("Bearer"),
            "RFC 6749 §5.1"
        );
        let id_token = tokens.id_token.clone().expect("an ID token");
        let jwks = p.keys().jwks().expect("jwks");
        let claims = testing::verify_independently(&id_token, &jwks);
        assert_eq!(claims["iss"], json!(ISSUER));
        assert_eq!(claims["aud"], json!("app"));
        assert_eq!(claims["nonce"], json!("n-0S6_WzA2Mj"));
        assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
        assert_eq!(claims["acr"], json!("mfa"));
        assert_eq!(claims["sid"], json!("sid-of-alices-session"));
        assert_eq!(claims["preferred_username"], json!("alice"));
        assert_eq!(claims["name"], json!("Alice Liddell"));
        assert_eq!(claims["email"], json!("alice@lan"));
        assert_eq!(claims["email_verified"], json!(true));
        assert_eq!(claims["groups"], json!(["admins", "staff"]));
        assert_eq!(claims["role"], json!("Admin"));
        assert_eq!(
            claims["at_hash"],
            json!(at_hash(Alg::Rs256, &tokens.access_token))
        );
        let sub = claims["sub"].as_str().expect("sub").to_owned();
        assert!(sub.len() >= 22 && !sub.contains("alice"), "{sub}");
        let (iat, exp) = (
            claims["iat"].as_i64().expect("iat"),
            claims["exp"].as_i64().expect("exp"),
        );
        assert_eq!(exp - iat, 3600);
        assert!(claims["auth_time"].as_i64().expect("auth_time") <= iat);
        // jsonwebtoken's own validation (issuer, audience, expiry) against
        // the key as the JWKS publishes it.
        let header = jsonwebtoken::decode_header(&id_token).expect("header");
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
            jwks["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .find(|k| k["kid"].as_str() == header.kid.as_deref())
                .expect("the kid is published")
                .clone(),
        )
        .expect("a JWK");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&["app"]);
        v.set_issuer(&[ISSUER]);
        jsonwebtoken::decode::<Value>(
            &id_token,
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("key"),
            &v,
        )
        .expect("valid for jsonwebtoken too");
        v.set_audience(&["other"]);
        assert!(
            jsonwebtoken::decode::<Value>(
                &id_token,
                &jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("key"),
                &v
            )
            .is_err(),
            "not for another audience"
        );
        // Userinfo says the same, with the same stable sub.
        let granted = p
            .userinfo_grant(&tokens.access_token, now())
            .expect("a live token");
        let info = p.userinfo(&granted, &alice_profile()).expect("userinfo");
        assert_eq!(info["sub"], json!(sub));
        assert_eq!(info["email"], json!("alice@lan"));
        assert_eq!(info["role"], json!("Admin"));
        assert_eq!(p.subject(f.alice).expect("sub"), sub);
        assert_ne!(p.subject(f.bob).expect("sub"), sub);
    });
}

#[test]
fn es256_and_eddsa_clients_get_tokens_signed_so_and_lean_tokens_when_asked() {
    each(|f| {
        let p = &f.provider;
        let code = code_for(f, "spa", "http://127.0.0.1:49152/cb", &["pwd"]);
        let spa = p
            .authenticate_client(&ClientCredentials {
                client_id: Some("spa".into()),
                ..Default::default()
            })
            .expect("a public client by its id");
        let tokens = p
            .exchange_code(
                &spa,
                &code,
                "http://127.0.0.1:49152/cb",
                Some(VERIFIER),
                profile_ok,
                now(),
            )
            .expect("tokens");
        assert!(
            tokens.refresh_token.is_none(),
            "spa may not have refresh tokens"
        );
        assert!(!tokens.scope.contains("offline_access"), "{}", tokens.scope);
        let jwks = p.keys().jwks().expect("jwks");
        let claims = testing::verify_independently(&tokens.id_token.expect("id"), &jwks);
        assert_eq!(claims["amr"], json!(["pwd"]));
        assert_eq!(claims["acr"], json!("pwd"));
        assert_eq!(
            claims["at_hash"],
            json!(at_hash(Alg::Es256, &tokens.access_token))
        );

        let code = code_for(f, "admin-tool", "https://tool.lan/cb", &["passkey"]);
        let tool = p
            .authenticate_client(&ClientCredentials {
                client_id: Some("admin-tool".into()),
                client_secret: Some("admin-secret-0123456789-abcdefghij".into()),
                ..Default::default()
            })
            .expect("client_secret_post");
        let tokens = p
            .exchange_code(
                &tool,
                &code,
                "https://tool.lan/cb",
                Some(VERIFIER),
                profile_ok,
                now(),
            )
            .expect("tokens");
        let jwks = p.keys().jwks().expect("jwks");
        let claims = testing::verify_independently(&tokens.id_token.expect("id"), &jwks);
        assert_eq!(claims["amr"], json!(["hwk", "mfa"]));
        assert!(claims.get("email").is_none(), "claims_in_id_token = false");
        assert!(claims.get("groups").is_none());
        assert_eq!(
            claims["at_hash"],
            json!(at_hash(Alg::EdDsa, &tokens.access_token))
        );
    });
}

#[test]
fn a_reused_code_is_refused_and_revokes_what_its_first_use_issued() {
    each(|f| {
        let p = &f.provider;
        let code = code_for(f, "app", "https://app.lan/cb", &["pwd"]);
        let first = exchange(f, &code).expect("first use");
        let e = exchange(f, &code).expect_err("second use");
        assert!(is(&e, "invalid_grant"), "{e}");
        assert!(p.userinfo_grant(&first.access_token, now()).is_err());
        let app = p.clients().find("app").expect("app");
        let e = p
            .refresh(
                app,
                &first.refresh_token.expect("r"),
                None,
                profile_ok,
                now(),
            )
            .expect_err("revoked");
        assert!(is(&e, "invalid_grant"), "{e}");
    });
}

#[test]
fn a_code_is_bound_to_its_client_redirect_uri_and_verifier_and_a_mismatch_uses_nothing_up() {
    each(|f| {
        let p = &f.provider;
        let code = code_for(f, "app", "https://app.lan/cb", &["pwd"]);
        let other = p
            .authenticate_client(&creds("other", OTHER_SECRET))
            .expect("other");
        let other = &*other;
        let app = p.clients().find("app").expect("app");
        for (client, redirect, verifier) in [
            (other, "https://app.lan/cb", Some(VERIFIER)),
            (app, "https://app.lan/cb/", Some(VERIFIER)),
            (app, "https://app.lan/c", Some(VERIFIER)),
            (app, "https://app.lan/cb", None),
            (app, "https://app.lan/cb", Some(&"x".repeat(43))),
        ] {
            let e = p
                .exchange_code(client, &code, redirect, verifier, profile_ok, now())
                .expect_err("mismatch");
            assert!(
                is(&e, "invalid_grant"),
                "{} {redirect} {verifier:?}: {e}",
                client.id
            );
        }
        let e = p
            .exchange_code(
                app,
                &code,
                "https://app.lan/cb",
                Some("short"),
                profile_ok,
                now(),
            )
            .expect_err("malformed verifier");
        assert!(is(&e, "invalid_request"), "{e}");
        exchange(f, &code).expect("the right client still redeems it");
        // Forged codes are unknown.
        for forged in ["", "x", &"A".repeat(43), &format!("{code}x"), "../../etc"] {
            let e = exchange(f, forged).expect_err("forged");
            assert!(is(&e, "invalid_grant"), "{forged}: {e}");
        }
    });
}

#[test]
fn a_code_expires_within_a_minute() {
    each(|f| {
        let code = code_for(f, "app", "https://app.lan/cb", &["pwd"]);
        let p = &f.provider;
        let app = p.clients().find("app").expect("app");
        let later = now() + 31_000;
        let e = p
            .exchange_code(
                app,
                &code,
                "https://app.lan/cb",
                Some(VERIFIER),
                profile_ok,
                later,
            )
            .expect_err("expired");
        assert!(is(&e, "invalid_grant"), "{e}");
    });
}

#[test]
fn pkce_is_required_of_public_clients_and_plain_is_refused() {
    each(|f| {
        let p = &f.provider;
        let redirect_error = |req: AuthorizationRequest| match p.authorization(&req) {
            Err(AuthorizationError::Redirect { error, .. }) => error.code(),
            other => panic!("{other:?}"),
        };
        // RFC 7636 Appendix B.
        assert_eq!(s256(VERIFIER).as_deref(), Some(CHALLENGE));
        assert_eq!(s256("too-short"), None);
        assert_eq!(s256(&format!("{VERIFIER}+")), None);
        let mut no_pkce = request("spa", "app.immich:///oauth-callback");
        no_pkce.code_challenge = None;
        no_pkce.code_challenge_method = None;
        assert_eq!(redirect_error(no_pkce.clone()), "invalid_request");
        // The confidential client may go without (pkce = optional).
        let mut app = no_pkce.clone();
        app.client_id = Some("app".into());
        app.redirect_uri = Some("https://app.lan/cb".into());
        p.authorization(&app).expect("optional");
        for (challenge, method) in [
            (Some(VERIFIER), Some("plain")),
            (Some(CHALLENGE), None),
            (Some(CHALLENGE), Some("s256")),
            (None, Some("S256")),
            (Some("short"), Some("S256")),
            (Some(&*format!("{CHALLENGE}=")), Some("S256")),
        ] {
            let mut req = request("spa", "app.immich:///oauth-callback");
            req.code_challenge = challenge.map(str::to_owned);
            req.code_challenge_method = method.map(str::to_owned);
            assert_eq!(
                redirect_error(req),
                "invalid_request",
                "{challenge:?} {method:?}"
            );
        }
        // A verifier where no challenge was made is a downgrade: refused.
        let authz = p.authorization(&app).expect("valid");
        let url = p
            .issue_code(&authz, &signed_in(f.alice, &["pwd"]), 0, now())
            .expect("code");
        let e = exchange(f, &code_of(&url)).expect_err("verifier without challenge");
        assert!(is(&e, "invalid_grant"), "{e}");
        let error = AuthorizationError::Redirect {
            redirect_uri: "app.immich:///oauth-callback".into(),
            state: Some("s 1".into()),
            error: OidcError::InvalidRequest("x".into()),
        };
        let url = error.redirect_url(ISSUER).expect("a redirect");
        assert!(
            url.starts_with(
                "app.immich:///oauth-callback?error=invalid_request&error_description="
            ) && url.ends_with("&state=s%201&iss=https%3A%2F%2Fauth.lan"),
            "{url}"
        );
    });
}

#[test]
fn an_unknown_client_or_redirect_uri_is_shown_never_redirected_to() {
    each(|f| {
        let p = &f.provider;
        for (client, redirect) in [
            ("nobody", "https://app.lan/cb"),
            ("app", "https://app.lan/cb/../evil"),
            ("app", "https://app.lan/cbx"),
            ("app", "https://evil.lan/cb"),
            ("spa", "http://127.0.0.1:8080/cb/x"),
            ("spa", "http://localhost:8080/cb"),
        ] {
            match p.authorization(&request(client, redirect)) {
                Err(AuthorizationError::Show(_)) => {}
                other => panic!("{client} {redirect}: {other:?}"),
            }
        }
        let mut no_redirect = request("app", "x");
        no_redirect.redirect_uri = None;
        assert!(matches!(
            p.authorization(&no_redirect),
            Err(AuthorizationError::Show(_))
        ));
        let mut implicit = request("app", "https://app.lan/cb");
        implicit.response_type = Some("id_token token".into());
        match p.authorization(&implicit) {
            Err(AuthorizationError::Redirect { error, .. }) => {
                assert_eq!(error.code(), "unsupported_response_type");
            }
            other => panic!("{other:?}"),
        }
        let mut no_openid = request("app", "https://app.lan/cb");
        no_openid.scope = Some("profile".into());
        assert!(matches!(
            p.authorization(&no_openid),
            Err(AuthorizationError::Redirect {
                error: OidcError::InvalidScope(_),
                ..
            })
        ));
    });
}

#[test]
fn a_user_outside_the_clients_groups_is_refused_and_gets_no_code() {
    each(|f| {
        let p = &f.provider;
        let authz = p
            .authorization(&request("admin-tool", "https://tool.lan/cb"))
            .expect("valid");
        let mut bob = signed_in(f.bob, &["pwd", "otp"]);
        bob.groups = vec!["staff".into()];
        assert!(matches!(
            p.decide(&authz, Some(&bob), 0, now()).expect("decide"),
            Decision::Refuse
        ));
        let e = p.issue_code(&authz, &bob, 0, now()).expect_err("no code");
        assert!(is(&e, "access_denied"), "{e}");
        // In the group, but with the password alone: a second factor first.
        let alice = signed_in(f.alice, &["pwd"]);
        assert!(matches!(
            p.decide(&authz, Some(&alice), 0, now()).expect("decide"),
            Decision::SecondFactor
        ));
        assert!(p.issue_code(&authz, &alice, 0, now()).is_err());
        let mut silent = request("admin-tool", "https://tool.lan/cb");
        silent.prompt = Some("none".into());
        let silent = p.authorization(&silent).expect("valid");
        assert!(matches!(
            p.decide(&silent, Some(&alice), 0, now()).expect("decide"),
            Decision::Redirect(OidcError::LoginRequired(_))
        ));
        assert!(matches!(
            p.decide(&silent, None, 0, now()).expect("decide"),
            Decision::Redirect(OidcError::LoginRequired(_))
        ));
        // A user removed from the group between code and token gets nothing.
        let code = code_for(f, "admin-tool", "https://tool.lan/cb", &["pwd", "otp"]);
        let tool = p.clients().find("admin-tool").expect("tool");
        let e = p
            .exchange_code(
                tool,
                &code,
                "https://tool.lan/cb",
                Some(VERIFIER),
                |_| {
                    Ok(Some(Profile {
                        groups: vec![],
                        ..alice_profile()
                    }))
                },
                now(),
            )
            .expect_err("no longer a member");
        assert!(is(&e, "invalid_grant"), "{e}");
        // Tokens given while a member stop working when the user leaves
        // the group: userinfo refuses them, introspection calls them
        // inactive.
        let code = code_for(f, "admin-tool", "https://tool.lan/cb", &["pwd", "otp"]);
        let t = p
            .exchange_code(
                tool,
                &code,
                "https://tool.lan/cb",
                Some(VERIFIER),
                profile_ok,
                now(),
            )
            .expect("a member");
        let outside = Profile {
            groups: vec!["other".into()],
            ..alice_profile()
        };
        let granted = p.userinfo_grant(&t.access_token, now()).expect("live");
        p.userinfo(&granted, &alice_profile()).expect("a member");
        let e = p
            .userinfo(&granted, &outside)
            .expect_err("no longer a member");
        assert!(is(&e, "invalid_token"), "{e}");
        assert!(matches!(
            p.introspect(tool, &t.access_token, profile_ok, now())
                .expect("asked"),
            Introspection::Active { .. }
        ));
        assert_eq!(
            p.introspect(tool, &t.access_token, |_| Ok(Some(outside.clone())), now())
                .expect("asked"),
            Introspection::Inactive
        );
    });
}

#[test]
fn max_age_and_prompt_login_send_the_user_to_sign_in_again() {
    each(|f| {
        let p = &f.provider;
        let mut req = request("app", "https://app.lan/cb");
        req.max_age = Some("1".into());
        let authz = p.authorization(&req).expect("valid");
        let auth = signed_in(f.alice, &["pwd"]);
        assert!(matches!(
            p.decide(&authz, Some(&auth), 0, now()).expect("decide"),
            Decision::SignIn
        ));
        req.max_age = Some("-1".into());
        assert!(p.authorization(&req).is_err());
        req.max_age = None;
        req.prompt = Some("login".into());
        let authz = p.authorization(&req).expect("valid");
        assert!(matches!(
            p.decide(&authz, Some(&auth), now(), now()).expect("decide"),
            Decision::SignIn
        ));
        assert!(matches!(
            p.decide(&authz, Some(&auth), auth.auth_time - 1, now())
                .expect("decide"),
            Decision::IssueCode
        ));
        req.prompt = Some("none login".into());
        assert!(p.authorization(&req).is_err());
    });
}

#[test]
fn a_disabled_user_gets_no_tokens_and_the_grant_is_revoked() {
    each(|f| {
        let p = &f.provider;
        let code = code_for(f, "app", "https://app.lan/cb", &["pwd"]);
        let app = p.clients().find("app").expect("app");
        let e = p
            .exchange_code(
                app,
                &code,
                "https://app.lan/cb",
                Some(VERIFIER),
                |_| Ok(None),
                now(),
            )
            .expect_err("disabled");
        assert!(is(&e, "invalid_grant"), "{e}");
        assert!(exchange(f, &code).is_err(), "and the code is gone");
    });
}

#[test]
fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    each(|f| {
        let p = &f.provider;
        let app = p.clients().find("app").expect("app");
        let first =
            exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("tokens");
        let r1 = first.refresh_token.clone().expect("r1");
        let second = p
            .refresh(app, &r1, None, profile_ok, now())
            .expect("rotated");
        let r2 = second.refresh_token.clone().expect("r2");
        assert_ne!(r1, r2);
        let claims = testing::verify_independently(
            &second.id_token.clone().expect("id"),
            &p.keys().jwks().expect("jwks"),
        );
        assert!(
            claims.get("nonce").is_none(),
            "a refresh's ID token has no nonce"
        );
        assert_eq!(claims["sid"], json!("sid-of-alices-session"));
        p.userinfo_grant(&second.access_token, now()).expect("live");
        // Narrower scope is fine; wider is refused and the token kept.
        let e = p
            .refresh(app, &r2, Some("openid admin"), profile_ok, now())
            .expect_err("wider");
        assert!(is(&e, "invalid_scope"), "{e}");
        let other = p.clients().find("other").expect("other");
        let e = p
            .refresh(other, &r2, None, profile_ok, now())
            .expect_err("other client");
        assert!(is(&e, "invalid_grant"), "{e}");
        let third = p
            .refresh(app, &r2, Some("openid offline_access"), profile_ok, now())
            .expect("narrower");
        assert_eq!(third.scope, "openid offline_access");
        // r1 again: a replay. The whole family ends, r3 and every access token.
        let e = p
            .refresh(app, &r1, None, profile_ok, now())
            .expect_err("replay");
        assert!(is(&e, "invalid_grant"), "{e}");
        let r3 = third.refresh_token.expect("r3");
        assert!(p.refresh(app, &r3, None, profile_ok, now()).is_err());
        for access in [
            &first.access_token,
            &second.access_token,
            &third.access_token,
        ] {
            assert!(p.userinfo_grant(access, now()).is_err());
        }
        // An expired refresh token is refused without revoking anything.
        let fresh = exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("t");
        let r = fresh.refresh_token.expect("r");
        let far = now() + 31 * 86_400_000;
        let e = p
            .refresh(app, &r, None, profile_ok, far)
            .expect_err("expired");
        assert!(is(&e, "invalid_grant"), "{e}");
        p.refresh(app, &r, None, profile_ok, now())
            .expect("still good today");
        // An access token is no refresh token.
        let e = p
            .refresh(app, &fresh.access_token, None, profile_ok, now())
            .expect_err("not a refresh token");
        assert!(is(&e, "invalid_grant"), "{e}");
    });
}

#[test]
fn signing_out_ends_every_token_of_the_session_and_names_the_logout_uris() {
    each(|f| {
        let p = &f.provider;
        let tokens = exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("t");
        let frames = p.end_session("sid-of-alices-session").expect("signed out");
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(
            frames[0].url,
            "https://app.lan/logout?iss=https%3A%2F%2Fauth.lan&sid=sid-of-alices-session"
        );
        assert_eq!(frames[0].origin, "https://app.lan");
        assert_eq!(frames[0].client_name, "app");
        assert!(p.userinfo_grant(&tokens.access_token, now()).is_err());
        let app = p.clients().find("app").expect("app");
        assert!(
            p.refresh(
                app,
                &tokens.refresh_token.expect("r"),
                None,
                profile_ok,
                now()
            )
            .is_err()
        );
        assert!(
            p.end_session("sid-of-alices-session")
                .expect("again")
                .is_empty()
        );
        // Revoked per user and client from the account page.
        exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("t");
        assert_eq!(p.revoke_user(f.alice, Some("app")).expect("revoked"), 1);
    });
}

#[test]
fn an_ended_session_queues_a_logout_token_that_verifies_and_never_passes_for_an_id_token() {
    each(|f| {
        let p = &f.provider;
        let t = exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("t");
        let id_claims = testing::verify_independently(
            &t.id_token.expect("id"),
            &p.keys().jwks().expect("jwks"),
        );
        p.end_session("sid-of-alices-session").expect("signed out");
        let at = now();
        let row = p
            .store()
            .logout_claim(at, at + 30_000, &[])
            .expect("claim")
            .expect("queued with the grants' end");
        assert_eq!(
            (row.client_id.as_str(), row.sid.as_str()),
            ("app", "sid-of-alices-session")
        );
        assert_eq!(json!(row.subject), id_claims["sub"], "the ID token's sub");
        let app = p.clients().find("app").expect("app");
        let token = p
            .logout_token(app, &row.subject, &row.sid, at)
            .expect("signed");
        let claims = testing::verify_independently(&token, &p.keys().jwks().expect("jwks"));
        use base64::Engine as _;
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').next().expect("header"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(header["typ"], "logout+jwt");
        assert_eq!(header["alg"], "RS256");
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["aud"], "app");
        assert_eq!(claims["sub"], id_claims["sub"]);
        assert_eq!(claims["sid"], "sid-of-alices-session");
        assert_eq!(claims["sid"], id_claims["sid"]);
        assert_eq!(
            claims["events"],
            json!({"http://schemas.openid.net/event/backchannel-logout": {}})
        );
        assert!(claims.get("nonce").is_none(), "{claims}");
        let iat = claims["iat"].as_i64().expect("iat");
        assert_eq!(iat, at / 1000);
        assert_eq!(claims["exp"].as_i64().expect("exp"), iat + 120);
        assert_eq!(claims["jti"].as_str().expect("jti").len(), 22);
        let again = p
            .logout_token(app, &row.subject, &row.sid, at)
            .expect("signed");
        assert_ne!(
            testing::verify_independently(&again, &p.keys().jwks().expect("jwks"))["jti"],
            claims["jti"],
            "a fresh jti each time"
        );
        // Cross-JWT confusion: a logout token is no `id_token_hint`.
        assert!(p.keys().verify(&token).is_err());
        // The grants' other ends queue notices too; the account page's
        // revocation of one app among them.
        exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("t");
        p.store()
            .logout_delete(&row.client_id, &row.sid)
            .expect("sent");
        assert_eq!(p.revoke_user(f.alice, Some("app")).expect("revoked"), 1);
        assert!(
            p.store()
                .logout_claim(now(), now() + 30_000, &[])
                .expect("claim")
                .is_some()
        );
    });
}

/// A provider whose clients' back-channel URIs are a stub's at `port`.
fn backchannel_provider(port: u16) -> (tempfile::TempDir, Provider, UserId) {
    #[derive(Deserialize)]
    struct File {
        clients: Vec<ClientSpec>,
    }
    let file: File = toml::from_str(&format!(
        r#"
[[clients]]
id = "told"
secret = "{APP_SECRET}"
redirect_uris = ["https://told.lan/cb"]
backchannel_logout_uri = "http://127.0.0.1:{port}/backchannel"
signing_alg = "EdDSA"

[[clients]]
id = "quiet"
secret = "{APP_SECRET}"
redirect_uris = ["https://quiet.lan/cb"]
"#
    ))
    .expect("TOML");
    let clients = Clients::new(
        file.clients
            .iter()
            .map(|c| c.build().expect("valid"))
            .collect(),
    )
    .expect("unique");
    let (dir, pool) = testing::sqlite_pool();
    let alice = testing::user(&pool, "alice");
    let p = Provider::new(
        ISSUER,
        clients,
        OidcOptions::default(),
        Arc::new(super::SqliteOidc(pool)),
        &[b"a server secret of at least 32 bytes".to_vec()],
    );
    (dir, p, alice)
}

/// A grant of `user` to `client` under `sid` (as a code would make it).
fn grant_to(p: &Provider, user: UserId, client: &str, sid: &str) {
    let g = super::store::GrantRow {
        id: super::store::GrantId::random(),
        client_id: client.into(),
        user_id: user,
        sid: sid.into(),
        scopes: "openid".into(),
        nonce: None,
        auth_time: now(),
        methods: "pwd".into(),
        created_at: now(),
        expires_at: now() + 60_000,
    };
    let code = super::store::CodeRow {
        hash: crate::crypto::random_bytes(),
        grant_id: g.id,
        redirect_uri: "https://told.lan/cb".into(),
        challenge: None,
        expires_at: now() + 60_000,
    };
    p.store().code_create(&g, &code).expect("grant");
}

#[test]
fn the_sender_posts_the_token_retries_a_failure_twice_and_drops_a_refusal() {
    use std::sync::atomic::{AtomicU16, Ordering};
    let status = Arc::new(AtomicU16::new(200));
    let (port, seen) = testing::stub_client(Arc::clone(&status));
    let (_dir, p, alice) = backchannel_provider(port);
    let sub = p.subject(alice).expect("sub");
    let sender = super::logout::Sender::new(p.clone());
    assert!(!sender.deliver_one().expect("nothing queued"));
    // Sent: one form POST with the token, and the notice is done.
    grant_to(&p, alice, "told", "s1");
    grant_to(&p, alice, "quiet", "s1");
    p.end_session("s1").expect("ended");
    assert!(sender.deliver_one().expect("one"));
    assert!(sender.deliver_one().expect("the other"));
    assert!(!sender.deliver_one().expect("none left"));
    assert_eq!(p.store().logout_next().expect("next"), None);
    {
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.len(), 1, "the client without a URI is told nothing");
        let (head, body) = &seen[0];
        assert!(head.starts_with("POST /backchannel HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/x-www-form-urlencoded"),
            "{head}"
        );
        let token = body.strip_prefix("logout_token=").expect("one field");
        assert!(!token.contains('&'));
        let claims = testing::verify_independently(token, &p.keys().jwks().expect("jwks"));
        assert_eq!(claims["sub"], json!(sub));
        assert_eq!(claims["aud"], "told");
        assert_eq!(claims["sid"], "s1");
    }
    // A 5xx is tried again later, twice, then given up.
    status.store(503, Ordering::SeqCst);
    grant_to(&p, alice, "told", "s2");
    p.end_session("s2").expect("ended");
    for attempt in 1..=3 {
        let before = now();
        assert!(sender.deliver_one().expect("tried"), "attempt {attempt}");
        match p.store().logout_next().expect("next") {
            Some(at) if attempt < 3 => {
                let wait = if attempt == 1 { 5_000 } else { 30_000 };
                assert!(at >= before + wait && at <= now() + wait, "{attempt}: {at}");
                assert!(!sender.deliver_one().expect("not due yet"));
                p.store().logout_retry("told", "s2", now()).expect("due");
            }
            None if attempt == 3 => {}
            other => panic!("attempt {attempt}: {other:?}"),
        }
    }
    assert_eq!(seen.lock().expect("seen").len(), 4);
    // A 4xx (the client refused the token) is not tried again.
    status.store(400, Ordering::SeqCst);
    grant_to(&p, alice, "told", "s3");
    p.end_session("s3").expect("ended");
    assert!(sender.deliver_one().expect("tried"));
    assert_eq!(p.store().logout_next().expect("next"), None);
    assert_eq!(seen.lock().expect("seen").len(), 5);
    // A client that is not there (nothing listens): tried again later.
    drop(seen);
    let (_dir, p, alice) = backchannel_provider(closed_port());
    p.subject(alice).expect("sub");
    grant_to(&p, alice, "told", "s4");
    p.end_session("s4").expect("ended");
    let sender = super::logout::Sender::new(p.clone());
    assert!(sender.deliver_one().expect("tried"));
    assert!(p.store().logout_next().expect("next").is_some());
}

/// A loopback port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn two_redemptions_of_one_code_at_once_give_tokens_at_most_once_and_revoke_them() {
    each(|f| {
        for _ in 0..3 {
            let code = code_for(f, "app", "https://app.lan/cb", &["pwd"]);
            let won: Vec<TokenResponse> = std::thread::scope(|s| {
                let racers: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| match exchange(f, &code) {
                            Ok(t) => Some(t),
                            Err(e) if is(&e, "invalid_grant") => None,
                            Err(e) => panic!("{e:?}"),
                        })
                    })
                    .collect();
                racers
                    .into_iter()
                    .filter_map(|h| h.join().expect("no panic"))
                    .collect()
            });
            // The losers saw the code used, which revokes the grant: the
            // one that got through (if it got its tokens stored before the
            // revocation) holds tokens that no longer work.
            assert!(won.len() <= 1, "{} redemptions", won.len());
            for t in &won {
                assert!(f.provider.userinfo_grant(&t.access_token, now()).is_err());
            }
        }
    });
}

#[test]
fn two_uses_of_one_refresh_token_at_once_rotate_it_at_most_once() {
    each(|f| {
        let p = &f.provider;
        let app = p.clients().find("app").expect("app");
        for _ in 0..3 {
            let first =
                exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("tokens");
            let r = first.refresh_token.expect("refresh token");
            let won: Vec<TokenResponse> = std::thread::scope(|s| {
                let racers: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| match p.refresh(app, &r, None, profile_ok, now()) {
                            Ok(t) => Some(t),
                            Err(e) if is(&e, "invalid_grant") => None,
                            Err(e) => panic!("{e:?}"),
                        })
                    })
                    .collect();
                racers
                    .into_iter()
                    .filter_map(|h| h.join().expect("no panic"))
                    .collect()
            });
            // A reuse revokes the family: what the winner got works no more.
            assert!(won.len() <= 1, "{} rotations", won.len());
            for t in &won {
                assert!(p.userinfo_grant(&t.access_token, now()).is_err());
            }
        }
    });
}

#[test]
fn client_authentication_takes_basic_or_post_and_nothing_less() {
    each(|f| {
        let p = &f.provider;
        let err = |c: ClientCredentials| p.authenticate_client(&c).expect_err("refused").code();
        assert_eq!(
            p.authenticate_client(&creds("app", APP_SECRET))
                .expect("basic")
                .id,
            "app"
        );
        let post = ClientCredentials {
            client_id: Some("app".into()),
            client_secret: Some(APP_SECRET.into()),
            ..Default::default()
        };
        assert_eq!(p.authenticate_client(&post).expect("post").id, "app");
        assert_eq!(err(creds("app", "wrong")), "invalid_client");
        assert_eq!(err(creds("app", OTHER_SECRET)), "invalid_client");
        assert_eq!(err(creds("nobody", APP_SECRET)), "invalid_client");
        assert_eq!(
            err(ClientCredentials {
                client_id: Some("app".into()),
                ..Default::default()
            }),
            "invalid_client",
            "a confidential client without its secret"
        );
        assert_eq!(
            err(ClientCredentials {
                client_secret: Some(APP_SECRET.into()),
                ..creds("app", APP_SECRET)
            }),
            "invalid_request",
            "two methods at once"
        );
        assert_eq!(
            err(ClientCredentials {
                client_id: Some("other".into()),
                ..creds("app", APP_SECRET)
            }),
            "invalid_request"
        );
        assert_eq!(err(creds("spa", "anything")), "invalid_client");
        assert_eq!(err(ClientCredentials::default()), "invalid_client");
    });
}

#[test]
fn the_device_grant_waits_for_the_user_and_gives_tokens_once() {
    each(|f| {
        let p = &f.provider;
        let tv = p.clients().find("tv").expect("tv");
        let app = p.clients().find("app").expect("app");
        assert!(is(
            &p.device_start(app, None, now()).expect_err("off"),
            "unauthorized_client"
        ));
        let t0 = now();
        let start = p
            .device_start(tv, Some("openid profile offline_access"), t0)
            .expect("started");
        assert_eq!(start.verification_uri, "https://auth.lan/device");
        assert!(start.verification_uri_complete.ends_with(&start.user_code));
        assert_eq!(start.user_code.len(), 9);
        assert_eq!((start.expires_in, start.interval), (600, 5));
        let poll = |at: Millis| p.device_token(tv, &start.device_code, profile_ok, at);
        assert!(is(&poll(t0).expect_err("pending"), "authorization_pending"));
        assert!(is(&poll(t0 + 1000).expect_err("too fast"), "slow_down"));
        let typed = start.user_code.to_lowercase().replace('-', " ");
        let pending = p
            .device_pending(&typed, t0)
            .expect("read")
            .expect("pending");
        assert_eq!(pending.client_name, "tv");
        assert!(p.device_pending("not a code", t0).expect("read").is_none());
        let mut bob = signed_in(f.bob, &["pwd"]);
        bob.groups.clear();
        assert!(p.device_approve(&typed, &bob, t0).expect("approved"));
        assert!(!p.device_approve(&typed, &bob, t0).expect("once"));
        // Another client cannot collect it with the device code.
        let e = p
            .device_token(app, &start.device_code, profile_ok, t0 + 60_000)
            .expect_err("app");
        assert!(is(&e, "unauthorized_client"), "{e}");
        let tokens = poll(t0 + 60_000).expect("tokens");
        assert!(tokens.refresh_token.is_some());
        let claims = testing::verify_independently(
            &tokens.id_token.expect("id"),
            &p.keys().jwks().expect("jwks"),
        );
        assert_eq!(claims["aud"], json!("tv"));
        let e = poll(t0 + 120_000).expect_err("collected");
        assert!(is(&e, "invalid_grant"), "{e}");
        assert!(
            p.userinfo_grant(&tokens.access_token, now()).is_err(),
            "a replay revokes"
        );
        // Declined, and run out.
        let start = p.device_start(tv, None, t0).expect("started");
        assert!(p.device_deny(&start.user_code, &[], t0).expect("denied"));
        let e = p
            .device_token(tv, &start.device_code, profile_ok, t0 + 10_000)
            .expect_err("no");
        assert!(is(&e, "access_denied"), "{e}");
        let start = p.device_start(tv, None, t0).expect("started");
        let e = p
            .device_token(tv, &start.device_code, profile_ok, t0 + 601_000)
            .expect_err("late");
        assert!(is(&e, "expired_token"), "{e}");
        assert!(
            !p.device_approve(
                &start.user_code,
                &signed_in(f.alice, &["pwd"]),
                t0 + 601_000
            )
            .expect("late")
        );
        let e = p
            .device_token(tv, &"A".repeat(43), profile_ok, t0)
            .expect_err("forged");
        assert!(is(&e, "invalid_grant"), "{e}");
    });
}

#[test]
fn introspection_and_revocation_answer_only_the_tokens_own_client() {
    each(|f| {
        let p = &f.provider;
        let app = p.clients().find("app").expect("app");
        let other = p.clients().find("other").expect("other");
        let t = exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("t");
        match p
            .introspect(app, &t.access_token, profile_ok, now())
            .expect("asked")
        {
            Introspection::Active { client_id, sub, .. } => {
                assert_eq!(client_id, "app");
                assert_eq!(sub, p.subject(f.alice).expect("sub"));
            }
            Introspection::Inactive => panic!("active"),
        }
        // A user who may no longer sign in (disabled) has no live tokens.
        assert_eq!(
            p.introspect(app, &t.access_token, |_| Ok(None), now())
                .expect("asked"),
            Introspection::Inactive
        );
        assert_eq!(
            p.introspect(other, &t.access_token, profile_ok, now())
                .expect("asked"),
            Introspection::Inactive
        );
        assert_eq!(
            p.introspect(app, &t.access_token, profile_ok, now() + 3_601_000)
                .expect("asked"),
            Introspection::Inactive
        );
        assert_eq!(
            p.introspect(app, "forged", profile_ok, now())
                .expect("asked")
                .to_json(),
            json!({"active": false})
        );
        // Another client's revocation does nothing.
        p.revoke(other, &t.access_token).expect("answered");
        p.userinfo_grant(&t.access_token, now())
            .expect("still live");
        p.revoke(app, &t.access_token).expect("revoked");
        assert!(p.userinfo_grant(&t.access_token, now()).is_err());
        // Revoking the refresh token ends the grant's access tokens too.
        let t = exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("t");
        p.revoke(app, &t.refresh_token.clone().expect("r"))
            .expect("revoked");
        assert!(p.userinfo_grant(&t.access_token, now()).is_err());
        assert!(
            p.refresh(app, &t.refresh_token.expect("r"), None, profile_ok, now())
                .is_err()
        );
        p.revoke(app, "nothing").expect("unknown tokens are fine");
        let spa = p.clients().find("spa").expect("spa");
        let e = p
            .introspect(spa, &t.access_token, profile_ok, now())
            .expect_err("public");
        assert!(is(&e, "unauthorized_client"), "{e}");
    });
}

#[test]
fn forged_and_expired_tokens_are_refused() {
    each(|f| {
        let p = &f.provider;
        let t = exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("t");
        assert!(is(
            &p.userinfo_grant(&"A".repeat(43), now())
                .expect_err("forged"),
            "invalid_token"
        ));
        assert!(p.userinfo_grant("", now()).is_err());
        assert!(
            p.userinfo_grant(&t.refresh_token.clone().expect("r"), now())
                .is_err(),
            "not an access token"
        );
        assert!(
            p.userinfo_grant(&t.access_token, now() + 3_600_001)
                .is_err(),
            "expired"
        );
        // An ID token: tampered, re-signed with another key under the same
        // kid, or with `none`, does not verify.
        let id = t.id_token.expect("id");
        p.keys().verify(&id).expect("the real one verifies");
        let parts: Vec<&str> = id.split('.').collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value =
            serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("json");
        claims["sub"] = json!("someone-else");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(claims.to_string()),
            parts[2]
        );
        assert!(p.keys().verify(&tampered).is_err());
        let header: Value =
            serde_json::from_slice(&b64.decode(parts[0]).expect("b64")).expect("json");
        let none = format!(
            "{}.{}.",
            b64.encode(json!({"alg": "none", "kid": header["kid"]}).to_string()),
            parts[1]
        );
        assert!(p.keys().verify(&none).is_err());
        let (_dir, store) = testing::sqlite_store();
        let impostor = super::KeyRing::new(store, &[b"z".repeat(32)], Duration::from_secs(60));
        let forged = impostor
            .signing_key(Alg::Rs256)
            .expect("key")
            .sign(&claims)
            .expect("signed");
        let forged_parts: Vec<&str> = forged.split('.').collect();
        let same_kid = format!("{}.{}.{}", parts[0], forged_parts[1], forged_parts[2]);
        assert!(p.keys().verify(&same_kid).is_err());
        assert!(p.keys().verify(&forged).is_err(), "an unknown kid");
    });
}

#[test]
fn post_logout_redirects_go_only_to_registered_uris() {
    each(|f| {
        let p = &f.provider;
        let t = exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("t");
        let id = t.id_token.expect("id");
        assert_eq!(
            p.post_logout_redirect(None, Some(&id), "https://app.lan/bye", Some("s 1")),
            Some("https://app.lan/bye?state=s%201".into())
        );
        assert_eq!(
            p.post_logout_redirect(Some("app"), None, "https://app.lan/bye", None),
            Some("https://app.lan/bye".into())
        );
        for (client, hint, uri) in [
            (None, None, "https://app.lan/bye"),
            (Some("app"), None, "https://app.lan/bye/"),
            (Some("app"), None, "https://evil.lan/"),
            (Some("other"), Some(id.as_str()), "https://app.lan/bye"),
            (None, Some("forged.token.here"), "https://app.lan/bye"),
        ] {
            assert_eq!(
                p.post_logout_redirect(client, hint, uri, None),
                None,
                "{client:?} {uri}"
            );
        }
    });
}

#[test]
fn the_discovery_document_has_every_required_field_and_the_issuer_exactly() {
    let (_dir, store) = testing::sqlite_store();
    for issuer in ["https://auth.lan", "https://auth.lan/sso"] {
        let p = Provider::new(
            issuer,
            clients(),
            OidcOptions::default(),
            Arc::clone(&store),
            &[],
        );
        let d = p.discovery();
        assert_eq!(d["issuer"], json!(issuer), "exactly as configured");
        // Discovery 1.0 §3: REQUIRED.
        for field in [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "response_types_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
        ] {
            assert!(d.get(field).is_some_and(|v| !v.is_null()), "{field}");
        }
        assert_eq!(
            d["authorization_endpoint"],
            json!(format!("{issuer}/oidc/authorize"))
        );
        assert_eq!(d["response_types_supported"], json!(["code"]));
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            d["id_token_signing_alg_values_supported"],
            json!(["RS256", "ES256", "EdDSA"])
        );
        assert_eq!(
            d["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "none"])
        );
        for field in [
            "userinfo_endpoint",
            "end_session_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
            "device_authorization_endpoint",
            "scopes_supported",
            "claims_supported",
            "grant_types_supported",
        ] {
            assert!(d.get(field).is_some(), "{field}");
        }
        assert!(
            d["claims_supported"]
                .as_array()
                .expect("list")
                .contains(&json!("role"))
        );
        assert!(!d.to_string().contains("implicit"));
    }
    let trailing = Provider::new(
        "https://auth.lan/",
        clients(),
        OidcOptions::default(),
        store,
        &[],
    );
    let d = trailing.discovery();
    assert_eq!(d["issuer"], json!("https://auth.lan/"), "no slash removed");
    assert_eq!(
        d["token_endpoint"],
        json!("https://auth.lan/oidc/token"),
        "none doubled"
    );
}

#[test]
fn the_reaper_removes_what_ran_out() {
    each(|f| {
        let p = &f.provider;
        let t = exchange(f, &code_for(f, "app", "https://app.lan/cb", &["pwd"])).expect("t");
        let later = now() + 31 * 86_400_000 + 1;
        let mut total = 0;
        loop {
            let n = p.reap(later, 2).expect("reaped");
            total += n;
            if n == 0 {
                break;
            }
        }
        assert!(total >= 4, "code, access, refresh, grant: {total}");
        use sha2::Digest as _;
        let hash: [u8; 32] = sha2::Sha256::digest(t.access_token.as_bytes()).into();
        assert!(p.store().token_find(&hash).expect("find").is_none());
    });
}

#[test]
fn a_made_clients_logout_uris_are_used_and_one_the_store_cannot_give_is_tried_later() {
    use std::sync::atomic::AtomicU16;
    let (port, seen) = testing::stub_client(Arc::new(AtomicU16::new(200)));
    let (_dir, p, alice) = backchannel_provider(port);
    p.subject(alice).expect("sub");
    // A client made by an administrator with both URIs: framed and told
    // as the file's are.
    p.registry()
        .create(
            &super::NewClient {
                id: "made".into(),
                redirect_uris: vec!["https://made.lan/cb".into()],
                frontchannel_logout_uri: Some(format!("http://127.0.0.1:{port}/front")),
                backchannel_logout_uri: Some(format!("http://127.0.0.1:{port}/backchannel")),
                ..super::NewClient::default()
            },
            now(),
        )
        .expect("made");
    grant_to(&p, alice, "made", "s1");
    let frames = p.end_session("s1").expect("ended");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(
        frames[0]
            .url
            .starts_with(&format!("http://127.0.0.1:{port}/front?iss=")),
        "{frames:?}"
    );
    let sender = super::logout::Sender::new(p.clone());
    assert!(sender.deliver_one().expect("tried"));
    assert_eq!(seen.lock().expect("seen").len(), 1);
    assert_eq!(p.store().logout_next().expect("next"), None, "sent");
    // A stored row that no longer passes the rules (edited by hand): the
    // store cannot give the client. The session still ends, its frame is
    // left out (logged), and its notice waits for a later try.
    let mut row = super::store::conformance::client_row("broken", Some([7; 32]), now());
    row.redirect_uris = vec!["javascript:alert(1)".into()];
    row.frontchannel_logout_uri = Some(format!("http://127.0.0.1:{port}/front"));
    row.backchannel_logout_uri = Some(format!("http://127.0.0.1:{port}/backchannel"));
    assert!(p.store().client_create(&row).expect("row"));
    assert!(p.client("broken").is_err());
    grant_to(&p, alice, "broken", "s2");
    assert_eq!(p.end_session("s2").expect("ended"), []);
    assert!(sender.deliver_one().expect("tried"));
    assert!(
        p.store().logout_next().expect("next").is_some(),
        "tried again later"
    );
    assert_eq!(seen.lock().expect("seen").len(), 1, "nothing sent");
}
