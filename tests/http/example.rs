//! The express-session tutorial example, driven over HTTP with each store.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};

use crate::helpers::{Browser, assert_redirects_to};

/// `target/<profile>/examples/express_tutorial`, built by `cargo test`.
fn example_binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_gatehouse"));
    bin.parent()
        .expect("target dir")
        .join("examples")
        .join("express_tutorial")
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(store: &str, dir: &std::path::Path) -> (Running, String) {
    let mut child = crate::helpers::command(example_binary())
        .env("PORT", "0")
        .env("SESSION_STORE", store)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example runs (cargo test builds it)");
    let line = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .next()
        .expect("a line")
        .expect("utf-8");
    let url = line.trim_start_matches("listening on ").to_owned();
    (Running(child), url)
}

#[test]
fn the_tutorial_example_logs_in_counts_visits_and_logs_out_on_every_store() {
    let mut stores = vec!["sqlite".to_owned(), "memory".into(), "cookie".into()];
    // The tutorial connects as connect-redis does, without a CA file: a
    // test server over TLS with a private CA is left to the suite.
    stores.extend(gatehouse::db::redis::test_url().filter(|u| u.starts_with("redis://")));
    for store in &stores {
        let dir = tempfile::tempdir().expect("dir");
        let (_running, url) = start(store, dir.path());
        let store = gatehouse::config::mask_password(store);
        let b = Browser::new(&url);
        let form = b.get("/");
        assert!(
            form.body.contains("action=\"/login\""),
            "{store}: {}",
            form.body
        );
        assert!(
            form.cookie("gatehouse_session").is_none(),
            "{store}: lazy sessions"
        );
        let token = form.csrf().expect("the login form carries a CSRF token");
        assert!(
            form.cookie(gatehouse::csrf::COOKIE).is_some(),
            "{store}: the token's cookie"
        );
        let alice = [("username", "alice"), ("password", "wonderland")];
        // Another site's form cannot sign the visitor in: no token, a
        // guessed one, or the token without its cookie are all refused.
        assert_eq!(b.post_form("/login", &alice).status, 403, "{store}");
        let guessed = [alice[0], alice[1], ("csrf", "guessed")];
        assert_eq!(b.post_form("/login", &guessed).status, 403, "{store}");
        let with_token = [alice[0], alice[1], ("csrf", token.as_str())];
        assert_eq!(
            Browser::new(&url).post_form("/login", &with_token).status,
            403,
            "{store}: a token without its cookie"
        );
        assert!(
            b.get("/").body.contains("action=\"/login\""),
            "{store}: a refused POST signed in"
        );
        assert_eq!(
            b.post_form(
                "/login",
                &[
                    ("username", "alice"),
                    ("password", "nope"),
                    ("csrf", token.as_str())
                ]
            )
            .status,
            401
        );
        let ok = b.post_form("/login", &with_token);
        assert_redirects_to(&ok, "/");
        for n in 1..=3 {
            let page = b.get("/");
            assert!(
                page.body.contains("Welcome, alice"),
                "{store}: {}",
                page.body
            );
            assert!(
                page.body.contains(&format!("visited {n} times")),
                "{store}: {}",
                page.body
            );
        }
        let thief = b.clone_cookies();
        let welcome = b.get("/");
        let token = welcome
            .csrf()
            .expect("the logout form carries a CSRF token");
        assert_eq!(b.post_form("/logout", &[]).status, 403, "{store}");
        assert!(
            b.get("/").body.contains("Welcome, alice"),
            "{store}: a refused logout signed out"
        );
        assert_redirects_to(&b.post_form("/logout", &[("csrf", &token)]), "/");
        assert!(
            b.get("/").body.contains("action=\"/login\""),
            "{store}: still signed in"
        );
        if store != "cookie" {
            // Server-side stores revoke at once; the cookie store cannot (documented).
            assert!(
                thief.get("/").body.contains("action=\"/login\""),
                "{store}: a replayed cookie still works"
            );
        }
    }
    assert!(example_binary().exists());
}
