//! The JSON API, and its OpenAPI document checked against the server.

use serde_json::{Value, json};

use crate::helpers::{Browser, TestApp};

fn body(resp: &crate::helpers::Resp) -> Value {
    serde_json::from_str(&resp.body).unwrap_or_else(|_| panic!("not JSON: {resp:?}"))
}

fn api_login(b: &Browser, username: &str, password: &str) -> crate::helpers::Resp {
    b.send_json(
        "POST",
        "/api/login",
        &json!({"username": username, "password": password}).to_string(),
        &[],
    )
}

#[test]
fn login_session_data_and_logout_over_json() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    let resp = b.send_json(
        "POST",
        "/api/login",
        r#"{"username":"alice","password":"correct horse","remember":true}"#,
        &[],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let v = body(&resp);
    assert_eq!(
        v["user"],
        json!({"name": "alice", "admin": false, "groups": []})
    );
    assert!(v["expires_at"].as_str().expect("time").ends_with('Z'));
    assert!(
        resp.cookie("gatehouse_session")
            .expect("cookie")
            .contains("Max-Age=")
    );

    let s = body(&b.get("/api/session"));
    assert_eq!(s["user"]["name"], "alice");
    assert_eq!(s["remember"], true);
    assert_eq!(s["data"], json!({}));

    let merged = b.send_json(
        "PATCH",
        "/api/session/data",
        r#"{"theme":"dark","cart":[1,2]}"#,
        &[],
    );
    assert_eq!(merged.status, 200);
    assert_eq!(
        body(&merged)["data"],
        json!({"theme": "dark", "cart": [1, 2]})
    );
    let removed = b.send_json("PATCH", "/api/session/data", r#"{"cart":null}"#, &[]);
    assert_eq!(body(&removed)["data"], json!({"theme": "dark"}));
    assert_eq!(
        body(&b.get("/api/session"))["data"],
        json!({"theme": "dark"}),
        "the merge was stored"
    );

    let out = b.send_json("POST", "/api/logout", "", &[]);
    assert_eq!(out.status, 200);
    assert!(
        out.cookie("gatehouse_session")
            .expect("cleared")
            .contains("Max-Age=0")
    );
    assert_eq!(b.get("/api/session").status, 401);
    assert_eq!(app.session_rows(), 0);
}

#[test]
fn every_api_error_is_json_with_the_right_status() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    let cases = [
        (
            b.send_json("POST", "/api/login", "{\"username\": ", &[]),
            400,
        ),
        (
            b.send_json("POST", "/api/login", "{\"username\": 1}", &[]),
            400,
        ),
        (
            b.post_raw(
                "/api/login",
                "application/x-www-form-urlencoded",
                b"username=alice".to_vec(),
            ),
            415,
        ),
        (
            b.post_raw("/api/login", "application/json", vec![b'{'; 70 * 1024]),
            413,
        ),
        (api_login(&b, "alice", "wrong password"), 401),
        (api_login(&b, "nobody", "wrong password"), 401),
        (b.get("/api/session"), 401),
        (
            b.send_json("PATCH", "/api/session/data", "{\"a\":1}", &[]),
            401,
        ),
        (b.get("/api/login"), 405),
        (b.get("/api/nothing"), 404),
    ];
    for (resp, status) in cases {
        assert_eq!(resp.status, status, "{resp:?}");
        assert!(body(&resp)["error"].is_string(), "{resp:?}");
    }
    assert_eq!(
        body(&api_login(&b, "nobody", "x"))["error"],
        body(&api_login(&b, "alice", "x"))["error"],
        "no enumeration"
    );
}

#[test]
fn api_logins_are_throttled_with_retry_after() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    for _ in 0..5 {
        assert_eq!(api_login(&b, "alice", "wrong password").status, 401);
    }
    let locked = api_login(&b, "alice", "correct horse");
    assert_eq!(locked.status, 429);
    let v = body(&locked);
    assert!(v["retry_after"].as_u64().expect("seconds") >= 1);
    assert_eq!(
        locked.header("retry-after").map(str::to_owned),
        Some(v["retry_after"].to_string())
    );
}

#[test]
fn cross_site_origins_are_refused() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    let evil = [("Origin", "https://evil.example")];
    let resp = b.send_json(
        "POST",
        "/api/login",
        r#"{"username":"alice","password":"correct horse"}"#,
        &evil,
    );
    assert_eq!(resp.status, 403);
    assert!(resp.cookie("gatehouse_session").is_none());
    api_login(&b, "alice", "correct horse");
    assert_eq!(
        b.send_json("PATCH", "/api/session/data", r#"{"x":1}"#, &evil)
            .status,
        403
    );
    assert_eq!(b.send_json("POST", "/api/logout", "", &evil).status, 403);
    assert_eq!(b.get("/api/session").status, 200, "still signed in");
    let own = app.base.clone();
    assert_eq!(
        b.send_json(
            "PATCH",
            "/api/session/data",
            r#"{"x":1}"#,
            &[("Origin", &own)]
        )
        .status,
        200
    );
}

#[test]
fn data_patches_are_checked_and_size_limited() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    api_login(&b, "alice", "correct horse");
    assert_eq!(
        b.send_json("PATCH", "/api/session/data", "[1]", &[]).status,
        400
    );
    assert_eq!(
        b.send_json("PATCH", "/api/session/data", r#"{"a\"b":1}"#, &[])
            .status,
        400
    );
    let big = json!({"blob": "x".repeat(20 * 1024)}).to_string();
    assert_eq!(
        b.send_json("PATCH", "/api/session/data", &big, &[]).status,
        413
    );
    assert_eq!(
        body(&b.get("/api/session"))["data"],
        json!({}),
        "a refused patch changed nothing"
    );
}

#[test]
fn an_api_login_creates_no_row_until_it_succeeds() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    api_login(&b, "alice", "wrong password");
    b.get("/api/session");
    assert_eq!(app.session_rows(), 0);
}

/// Every request example in docs/openapi.yaml is sent, and the server must
/// answer with the status and the fields of the response example of the
/// same name. Example names starting with `signed-in` run in a session.
#[test]
fn the_server_answers_as_the_openapi_document_says() {
    let served = {
        let app = TestApp::spawn();
        app.browser().get("/api/openapi.yaml")
    };
    assert_eq!(served.status, 200);
    let doc: Value = serde_json::from_str(&served.body).expect("the document parses");
    assert_eq!(doc["openapi"], "3.0.3");
    let resolve = |v: &Value| -> Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let mut node = &doc;
                for part in r.trim_start_matches("#/").split('/') {
                    node = &node[part];
                }
                node.clone()
            }
            None => v.clone(),
        }
    };
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            // Response examples by name: name -> (status, value).
            let mut expected = std::collections::BTreeMap::new();
            for (status, response) in op["responses"].as_object().expect("responses") {
                let response = resolve(response);
                if let Some(examples) =
                    response["content"]["application/json"]["examples"].as_object()
                {
                    for (name, ex) in examples {
                        expected.insert(
                            name.clone(),
                            (status.parse::<u16>().expect("status"), ex["value"].clone()),
                        );
                    }
                }
            }
            let requests: Vec<(String, Option<Value>)> =
                match op["requestBody"]["content"]["application/json"]["examples"].as_object() {
                    Some(examples) => examples
                        .iter()
                        .map(|(n, e)| (n.clone(), Some(e["value"].clone())))
                        .collect(),
                    None => expected.keys().map(|n| (n.clone(), None)).collect(),
                };
            for (name, request) in requests {
                if name == "throttled" || name == "cross-site" || name == "not-json" {
                    continue; // shared responses, checked by the tests above
                }
                let (status, example) = expected
                    .get(&name)
                    .unwrap_or_else(|| panic!("{method} {path}: no response example named {name}"));
                let app = TestApp::spawn();
                app.add_user("alice", "correct horse", false);
                let b = app.browser();
                if name.starts_with("signed-in") {
                    assert_eq!(api_login(&b, "alice", "correct horse").status, 200);
                }
                let body_text = match &request {
                    Some(Value::String(raw)) => raw.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                let resp = match method.as_str() {
                    "get" => b.get(path),
                    m => b.send_json(&m.to_ascii_uppercase(), path, &body_text, &[]),
                };
                assert_eq!(
                    resp.status, *status,
                    "{method} {path} example {name}: {resp:?}"
                );
                let got = body(&resp);
                for key in example.as_object().expect("object example").keys() {
                    assert!(
                        got.get(key).is_some(),
                        "{method} {path} example {name}: no {key:?} in {got}"
                    );
                }
                if name == "signed-in-merge" {
                    assert_eq!(
                        got["data"], example["data"],
                        "the merge result differs from the document"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "only {checked} examples were checked");
}
