//! Usernames with control or format characters: refused at sign-in (the
//! same failure as a wrong password, counted by the throttle) and when a
//! user is created, never trimmed into someone else's name.

use crate::helpers::{TestApp, assert_redirects_to};

/// Names that are `alice` once trimmed, or look like her.
const DISGUISED: &[&str] = &[
    "\r\nalice",
    "alice\r\n",
    "\nalice",
    "\talice",
    "\0alice",
    "alice\0",
    "\u{85}alice",
    "\u{2028}alice",
    "alice\u{202e}",
    "\u{2066}alice\u{2069}",
    "\u{200b}alice",
    "\u{feff}alice",
];

#[test]
fn a_disguised_name_does_not_sign_in_as_the_user() {
    let app = TestApp::spawn_with(&[("login_max_failures", "1000")]);
    app.add_user("alice", "correct horse", false);
    for name in DISGUISED {
        let b = app.browser();
        let body = serde_json::json!({ "username": name, "password": "correct horse" });
        let api = b.send_json("POST", "/api/login", &body.to_string(), &[]);
        assert_eq!(api.status, 401, "{name:?}: {}", api.body);
        assert!(api.cookie("gatehouse_session").is_none(), "{name:?}");
        assert!(api.body.contains("wrong username or password"), "{name:?}");

        let page = b.login(name, "correct horse");
        assert_eq!(page.status, 401, "{name:?}");
        assert!(page.cookie("gatehouse_session").is_none(), "{name:?}");
        assert_eq!(b.get("/api/session").status, 401, "{name:?}");
    }
    // Plain spaces are a slip of the keyboard, and still sign in.
    assert_redirects_to(&app.browser().login(" alice ", "correct horse"), "/");
}

#[test]
fn disguised_names_are_counted_by_the_throttle() {
    let app = TestApp::spawn_with(&[("login_max_failures", "3")]);
    app.add_user("alice", "correct horse", false);
    let b = app.browser();
    for _ in 0..3 {
        assert_eq!(b.login("\r\nalice", "correct horse").status, 401);
    }
    let locked = b.login("\r\nalice", "correct horse");
    assert_eq!(locked.status, 429);
    assert!(locked.header("retry-after").is_some());
}

#[test]
fn a_disguised_name_cannot_be_created() {
    let app = TestApp::spawn();
    app.add_user("root", "correct horse", true);
    let admin = app.browser();
    admin.login("root", "correct horse");
    for name in DISGUISED
        .iter()
        .chain(&["\r\nbob", "bob\u{202e}", "\u{200d}bob"])
    {
        let csrf = admin
            .get("/admin/users")
            .csrf()
            .expect("csrf on the admin page");
        let resp = admin.post_form(
            "/admin/users",
            &[
                ("csrf", csrf.as_str()),
                ("username", name),
                ("password", "long enough"),
            ],
        );
        assert_eq!(resp.status, 400, "{name:?}");
    }
    let names: Vec<String> = app
        .state()
        .users
        .list()
        .expect("list")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["root"]);
}

#[test]
fn the_first_admin_cannot_have_a_disguised_name() {
    let app = TestApp::spawn();
    let url = app
        .running
        .as_ref()
        .expect("running")
        .setup_url()
        .expect("setup");
    let path = url.trim_start_matches(&app.base);
    let token = path.split("token=").nth(1).expect("token");
    let b = app.browser();
    let setup = |name: &str| {
        let csrf = b.get(path).csrf().expect("csrf on the setup page");
        b.post_form(
            "/setup",
            &[
                ("csrf", csrf.as_str()),
                ("token", token),
                ("username", name),
                ("password", "correct horse"),
                ("password2", "correct horse"),
            ],
        )
    };
    for name in ["\r\nroot", "root\u{202e}", "\0root"] {
        assert_eq!(setup(name).status, 400, "{name:?}");
        assert_eq!(app.state().users.count().expect("count"), 0);
    }
    // The same form with a plain name goes through.
    assert_redirects_to(&setup("root"), "/?done=welcome");
}

#[test]
fn the_command_line_cannot_add_a_disguised_name() {
    let dir = tempfile::tempdir().expect("dir");
    for name in ["\r\nbob", "bob\u{202e}", "\u{200b}bob", "bob\t"] {
        let mut child = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["user", "add", name, "--password-stdin"])
            .env("GATEHOUSE_DATA", dir.path())
            .env("GATEHOUSE_BCRYPT_COST", "4")
            .envs(crate::helpers::backend_env(dir.path()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run gatehouse");
        // It may refuse before reading the password.
        let _ =
            std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"correct horse\n");
        let out = child.wait_with_output().expect("wait");
        assert!(!out.status.success(), "{name:?} was added");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("username"),
            "{name:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
