//! Links that stand in for e-mail: invites (used up to their limit, raced
//! for the last use, expired, revoked, with preset groups, for a named
//! user, with the second factor the policy asks for), reset links (once,
//! ending the other sessions and tokens, replaced by a newer one, with a
//! new second factor for a lost phone), sign-in links for a new device
//! (once, from another client, by code or link, carrying the maker's
//! factors and no more); forged, overlong and encoded tokens, guessing,
//! the headers of token pages, what the database file and the request log
//! hold, and the command line.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::cli::{fails, gatehouse, ok};
use crate::factors::{code_at, enrol, password_step, second, secret_of, unix_now};
use crate::helpers::{
    Browser, Resp, SCRIPTED_CLICK, TestApp, assert_redirects_to, through_password_step,
};

/// The value of the input whose id is `id`.
fn value_of(page: &Resp, id: &str) -> String {
    let marker = format!("id=\"{id}\" value=\"");
    let at = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {}", page.body));
    let rest = &page.body[at + marker.len()..];
    rest[..rest.find('"').expect("its end")].replace("&amp;", "&")
}

/// The path of a link (what follows the origin), from its whole address.
fn path_of(url: &str, prefix: &str) -> String {
    let at = url.find(prefix).unwrap_or_else(|| panic!("{url}"));
    url[at..].to_owned()
}

/// A server with `root`, an administrator, signed in in the browser
/// returned.
fn with_root(settings: &[(&str, &str)]) -> (TestApp, Browser) {
    let app = TestApp::spawn_with(settings);
    app.add_user("root", "correct horse", true);
    let root = app.browser();
    assert_eq!(root.login("root", "correct horse").status, 303);
    (app, root)
}

/// Makes an invite on `/admin/invites` with `fields`: the page's answer.
fn make_invite_answer(root: &Browser, fields: &[(&str, &str)]) -> Resp {
    let page = root.get("/admin/invites");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf().expect("csrf");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    root.post_form("/admin/invites", &all)
}

/// Makes an invite on `/admin/invites` with `fields`: its path.
fn make_invite(root: &Browser, fields: &[(&str, &str)]) -> String {
    let made = make_invite_answer(root, fields);
    assert_eq!(made.status, 200, "{}", made.body);
    path_of(&value_of(&made, "new-invite"), "/invite/")
}

/// Opens invite `path` in `b` and sends the form: the answer.
fn use_invite(b: &Browser, path: &str, name: &str, password: &str) -> Resp {
    let page = b.get(path);
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf().expect("csrf");
    b.post_form(
        path,
        &[
            ("csrf", &csrf),
            ("username", name),
            ("password", password),
            ("password2", password),
        ],
    )
}

/// The headers every answer under a token's path carries.
#[track_caller]
fn assert_token_headers(r: &Resp) {
    assert_eq!(r.header("Referrer-Policy"), Some("no-referrer"), "{r:?}");
    assert_eq!(r.header("Cache-Control"), Some("no-store"), "{r:?}");
}

fn groups_of(app: &TestApp, name: &str) -> Vec<String> {
    app.state().users.get_by_name(name).expect("user").groups
}

#[test]
fn an_invite_is_used_up_to_its_limit_then_refused_with_its_groups_applied() {
    let (app, root) = with_root(&[]);
    let users = &app.state().users;
    for g in ["ops", "dev"] {
        users
            .create_group(&gatehouse::users::groups::GroupName::parse(g).expect("name"))
            .expect("group");
    }
    let path = make_invite(
        &root,
        &[("uses", "2"), ("expires", "7d"), ("groups", "ops, dev")],
    );
    // Shown once: the list names it without its link.
    let token = path.trim_start_matches("/invite/").to_owned();
    let listed = root.get("/admin/invites");
    assert!(!listed.body.contains(&token));
    assert!(listed.body.contains("2 of 2"), "{}", listed.body);

    for name in ["ann", "bea"] {
        let b = app.browser();
        let page = b.get(&path);
        assert_token_headers(&page);
        assert!(page.body.contains("ops, dev") || page.body.contains("dev, ops"));
        let done = use_invite(&b, &path, name, "a good password");
        assert_redirects_to(&done, "/?done=registered");
        assert_token_headers(&done);
        let home = b.get("/");
        assert_eq!(home.status, 200);
        assert!(home.body.contains(name), "signed in as {name}");
        let mut groups = groups_of(&app, name);
        groups.sort();
        assert_eq!(groups, ["dev", "ops"], "preset groups applied");
        assert!(!app.state().users.get_by_name(name).expect("u").is_admin);
    }
    // The third is refused, and made nobody.
    let late = app.browser();
    let page = late.get(&path);
    assert_eq!(page.status, 404, "{}", page.body);
    assert_token_headers(&page);
    assert!(page.body.contains("id=\"link-error\""));
    assert!(users.find_by_name("cid").expect("find").is_none());
    assert!(root.get("/admin/invites").body.contains("0 of 2"));
    // A form fetched before it was used up is refused all the same.
    assert!(users.count().expect("count") == 3);
}

#[test]
fn two_invitees_racing_for_the_last_use_get_one_account() {
    let (app, root) = with_root(&[("login_max_failures", "100")]);
    let path = make_invite(&root, &[("uses", "1"), ("expires", "1d")]);
    let racers = 8;
    let barrier = Arc::new(Barrier::new(racers));
    let answers: Vec<(String, u16)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..racers)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let b = app.browser();
                let path = path.clone();
                s.spawn(move || {
                    let page = b.get(&path);
                    assert_eq!(page.status, 200);
                    let csrf = page.csrf().expect("csrf");
                    let name = format!("racer{i}");
                    barrier.wait();
                    let r = b.post_form(
                        &path,
                        &[
                            ("csrf", &csrf),
                            ("username", &name),
                            ("password", "a good password"),
                            ("password2", "a good password"),
                        ],
                    );
                    (name, r.status)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racer"))
            .collect()
    });
    let won: Vec<_> = answers.iter().filter(|(_, s)| *s == 303).collect();
    assert_eq!(won.len(), 1, "exactly one gets the last use: {answers:?}");
    assert!(
        answers.iter().all(|(_, s)| [303, 404].contains(s)),
        "{answers:?}"
    );
    let made: Vec<_> = (0..racers)
        .filter(|i| {
            app.state()
                .users
                .find_by_name(&format!("racer{i}"))
                .expect("find")
                .is_some()
        })
        .collect();
    assert_eq!(made.len(), 1, "one account made: {made:?}");
}

#[test]
fn expired_and_revoked_invites_are_refused() {
    let (app, root) = with_root(&[]);
    let now = gatehouse::clock::now();
    let new = |expires_at| gatehouse::users::links::NewInvite {
        created_by: "root".into(),
        expires_at,
        uses: 5,
        groups: Vec::new(),
        user: None,
    };
    let (soon, _) = app
        .state()
        .users
        .create_invite(&new(now + 1_000), now)
        .expect("invite");
    let b = app.browser();
    assert_eq!(b.get(&format!("/invite/{soon}")).status, 200);
    let csrf = b.get(&format!("/invite/{soon}")).csrf().expect("csrf");
    std::thread::sleep(Duration::from_millis(1_100));
    let expired = b.post_form(
        &format!("/invite/{soon}"),
        &[
            ("csrf", &csrf),
            ("username", "ann"),
            ("password", "a good password"),
            ("password2", "a good password"),
        ],
    );
    assert_eq!(expired.status, 404, "{}", expired.body);
    assert!(app.state().users.find_by_name("ann").expect("f").is_none());

    // Revoked on the admin page: refused from the next request on.
    let path = make_invite(&root, &[("uses", "3"), ("expires", "1d")]);
    assert_eq!(app.browser().get(&path).status, 200);
    let listed = root.get("/admin/invites");
    let id = listed
        .body
        .split("id=\"revoke-invite-")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a revoke button")
        .to_owned();
    let csrf = listed.csrf().expect("csrf");
    let revoked = root.post_form("/admin/invites/revoke", &[("csrf", &csrf), ("id", &id)]);
    assert_redirects_to(&revoked, "/admin/invites?done=invite-revoked");
    assert_eq!(app.browser().get(&path).status, 404);
    let again = root.post_form("/admin/invites/revoke", &[("csrf", &csrf), ("id", &id)]);
    assert_eq!(again.status, 404);
}

#[test]
fn an_invite_refuses_admins_and_bad_fields_on_the_page_without_a_500() {
    let (app, root) = with_root(&[]);
    for fields in [
        &[("uses", "1"), ("expires", "7d"), ("groups", "admins")][..],
        &[("uses", "1"), ("expires", "7d"), ("groups", "nope")],
        &[("uses", "0"), ("expires", "7d")],
        &[("uses", "1001"), ("expires", "7d")],
        &[("uses", "-1"), ("expires", "7d")],
        &[("uses", "99999999999999999999"), ("expires", "7d")],
        &[("uses", "1"), ("expires", "999d")],
        &[("uses", "2"), ("expires", "7d"), ("username", "dan")],
        &[("uses", "1"), ("expires", "7d"), ("username", "bad name")],
        &[("uses", "1"), ("expires", "7d"), ("username", "root")],
    ] {
        let r = make_invite_answer(&root, fields);
        assert!(
            r.status == 400 || r.status == 409,
            "{fields:?}: {} {}",
            r.status,
            r.body
        );
        assert!(r.body.contains("id=\"error\""), "{fields:?}");
    }
    // A NUL (which PostgreSQL refuses in text) is no name: 4xx, not 500.
    let r = make_invite_answer(
        &root,
        &[("uses", "1"), ("expires", "7d"), ("groups", "a\0b")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(root.get("/admin/users/reset-link?username=%00").status, 404);
    let csrf = root.get("/admin/users").csrf().expect("csrf");
    let r = root.post_form(
        "/admin/users/reset-link",
        &[("csrf", &csrf), ("username", "\0"), ("expires", "1h")],
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        root.get("/admin/invites")
            .body
            .contains("id=\"no-invites\"")
    );
    assert!(app.state().users.find_by_name("dan").expect("f").is_none());
    // Not for anyone but an administrator.
    app.add_user("bob", "correct horse", false);
    let bob = app.browser();
    bob.login("bob", "correct horse");
    assert_eq!(bob.get("/admin/invites").status, 403);
}

#[test]
fn an_invite_for_a_named_user_makes_them_at_once_and_only_sets_their_password() {
    let (app, root) = with_root(&[]);
    let path = make_invite(
        &root,
        &[("uses", "1"), ("expires", "7d"), ("username", "dan")],
    );
    let dan = app.state().users.get_by_name("dan").expect("made at once");
    assert!(root.get("/admin/invites").body.contains("dan"));
    // No password signs dan in meanwhile.
    assert_eq!(app.browser().login("dan", "").status, 401);
    let b = app.browser();
    let page = b.get(&path);
    assert_eq!(page.text_of("invite-name").as_deref(), Some("dan"));
    // The name field, if sent, is not read: the invite names its user.
    let done = use_invite(&b, &path, "mallory", "dans password");
    assert_redirects_to(&done, "/?done=registered");
    assert!(b.get("/").body.contains("dan"));
    assert!(
        app.state()
            .users
            .find_by_name("mallory")
            .expect("f")
            .is_none()
    );
    assert_eq!(
        app.state().users.get_by_name("dan").expect("dan").id,
        dan.id
    );
    assert_eq!(app.browser().login("dan", "dans password").status, 303);
    assert_eq!(app.browser().get(&path).status, 404, "used once");
}

#[test]
fn the_second_factor_is_set_up_at_the_invite_when_the_policy_requires_it() {
    let app = TestApp::spawn_with(&[("two_factor", "required")]);
    let token = app
        .state()
        .users
        .create_invite(
            &gatehouse::users::links::NewInvite {
                created_by: "root".into(),
                expires_at: gatehouse::clock::now() + 60_000,
                uses: 1,
                groups: Vec::new(),
                user: None,
            },
            gatehouse::clock::now(),
        )
        .expect("invite")
        .0;
    let b = app.browser();
    let done = use_invite(&b, &format!("/invite/{token}"), "eve", "a good password");
    assert_redirects_to(&done, "/login/enrol");
    // Signed in nowhere until the factor is set up.
    assert_eq!(b.get("/").status, 303);
    assert_eq!(b.get("/api/session").status, 401);
    let page = b.get("/login/enrol");
    assert_eq!(page.status, 200, "{}", page.body);
    let (_, seed) = secret_of(&page);
    let csrf = page.csrf().expect("csrf");
    let set = b.post_form(
        "/login/enrol",
        &[("csrf", &csrf), ("code", &code_at(&seed, unix_now()))],
    );
    assert_eq!(set.status, 200, "the recovery codes: {}", set.body);
    let session: serde_json::Value =
        serde_json::from_str(&b.get("/api/session").body).expect("json");
    assert_eq!(session["user"]["name"], "eve", "{session}");
    assert_eq!(session["methods"], serde_json::json!(["pwd", "otp"]));
}

/// Makes a reset link for `name` on the admin page: the link's path.
fn make_reset_link(root: &Browser, name: &str, fields: &[(&str, &str)]) -> String {
    let page = root.get(&format!("/admin/users/reset-link?username={name}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf().expect("csrf");
    let mut all = vec![("csrf", csrf.as_str()), ("username", name)];
    all.extend_from_slice(fields);
    let made = root.post_form("/admin/users/reset-link", &all);
    assert_eq!(made.status, 200, "{}", made.body);
    path_of(&value_of(&made, "new-reset-link"), "/reset/")
}

/// Sets `password` through reset link `path` in `b`: the answer.
fn use_reset(b: &Browser, path: &str, password: &str) -> Resp {
    let page = b.get(path);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_token_headers(&page);
    let csrf = page.csrf().expect("csrf");
    b.post_form(
        path,
        &[
            ("csrf", &csrf),
            ("password", password),
            ("password2", password),
        ],
    )
}

/// A live OpenID Connect grant of `user` to an app, as a sign-in to it
/// leaves.
fn granted(app: &TestApp, user: &gatehouse::users::User) {
    use gatehouse::oidc::store::{CodeRow, GrantId, GrantRow, TokenKind, TokenRow};
    let now = gatehouse::clock::now();
    let grant = GrantRow {
        id: GrantId::random(),
        client_id: "wiki".into(),
        user_id: user.id,
        sid: "a-session".into(),
        scopes: "openid".into(),
        nonce: None,
        auth_time: now,
        methods: "pwd".into(),
        created_at: now,
        expires_at: now + 60_000,
    };
    let code = CodeRow {
        hash: [7; 32],
        grant_id: grant.id,
        redirect_uri: "https://wiki.lan/cb".into(),
        challenge: None,
        expires_at: now + 30_000,
    };
    let grants = &app.state().grants;
    grants.code_create(&grant, &code).expect("grant");
    let token = TokenRow {
        hash: ACCESS,
        grant_id: grant.id,
        kind: TokenKind::Access,
        scopes: "openid".into(),
        created_at: now,
        expires_at: now + 60_000,
        used_at: None,
    };
    assert!(grants.token_create(&token).expect("token"));
    assert!(grants.token_find(&ACCESS).expect("find").is_some());
}

/// The hash of the access token [`granted`] stores.
const ACCESS: [u8; 32] = [9; 32];

fn bearer(app: &TestApp, token: &str) -> u16 {
    app.browser()
        .get_with(
            "/auth/verify",
            &[("Authorization", &format!("Bearer {token}"))],
        )
        .status
}

#[test]
fn a_reset_link_works_once_and_ends_the_other_sessions_and_tokens() {
    let (app, root) = with_root(&[]);
    let bob = app.add_user("bob", "bobs old password", false);
    let laptop = app.browser();
    assert_eq!(laptop.login("bob", "bobs old password").status, 303);
    let token = app
        .state()
        .users
        .tokens()
        .create(
            &bob,
            &gatehouse::users::tokens::NewToken {
                name: "script".into(),
                ..Default::default()
            },
            gatehouse::clock::now(),
        )
        .expect("token")
        .0;
    assert_eq!(bearer(&app, &token), 200);
    // An app bob signed in to through gatehouse (an OpenID Connect grant).
    granted(&app, &bob);
    let path = make_reset_link(&root, "bob", &[("expires", "1h")]);
    // The users page says one waits, without the link.
    let users = root.get("/admin/users");
    assert!(users.body.contains("id=\"revoke-reset-link-bob\""));
    assert!(!users.body.contains(path.trim_start_matches("/reset/")));

    let phone = app.browser();
    assert_eq!(
        phone.get(&path).text_of("reset-name").as_deref(),
        Some("bob")
    );
    // The rules of every password: refused, link not spent.
    let page = phone.get(&path);
    let csrf = page.csrf().expect("csrf");
    let short = phone.post_form(
        &path,
        &[
            ("csrf", &csrf),
            ("password", "short"),
            ("password2", "short"),
        ],
    );
    assert_eq!(short.status, 400);
    let differ = phone.post_form(
        &path,
        &[
            ("csrf", &csrf),
            ("password", "one password"),
            ("password2", "another one"),
        ],
    );
    assert_eq!(differ.status, 400);
    let done = use_reset(&phone, &path, "bobs new password");
    assert_redirects_to(&done, "/?done=password-set");
    assert_token_headers(&done);
    assert!(phone.get("/").body.contains("bob"), "signed in as bob");
    // The laptop's session and the token ended; the old password too.
    assert_redirects_to(&laptop.get("/account"), "/login?next=%2Faccount");
    assert_eq!(bearer(&app, &token), 401);
    assert!(
        app.state()
            .grants
            .token_find(&ACCESS)
            .expect("find")
            .is_none(),
        "the apps' tokens ended"
    );
    assert_eq!(app.browser().login("bob", "bobs old password").status, 401);
    assert_eq!(app.browser().login("bob", "bobs new password").status, 303);
    // Once only.
    let again = app.browser().get(&path);
    assert_eq!(again.status, 404);
    assert_token_headers(&again);
    assert!(
        !root
            .get("/admin/users")
            .body
            .contains("revoke-reset-link-bob")
    );
}

#[test]
fn a_newer_reset_link_replaces_the_older_and_one_can_be_revoked() {
    let (app, root) = with_root(&[]);
    app.add_user("bob", "bobs old password", false);
    let first = make_reset_link(&root, "bob", &[("expires", "15m")]);
    let second = make_reset_link(&root, "bob", &[("expires", "4h")]);
    assert_ne!(first, second);
    assert_eq!(app.browser().get(&first).status, 404, "replaced");
    assert_eq!(app.browser().get(&second).status, 200);
    // Revoked from the users page.
    let page = root.get("/admin/users");
    let csrf = page.csrf().expect("csrf");
    let revoked = root.post_form(
        "/admin/users/reset-link/revoke",
        &[("csrf", &csrf), ("username", "bob")],
    );
    assert_redirects_to(&revoked, "/admin/users?done=reset-link-revoked");
    assert_eq!(app.browser().get(&second).status, 404);
    // A bad expiry, no such user: 4xx, never a 500.
    let form = root.get("/admin/users/reset-link?username=bob");
    let csrf = form.csrf().expect("csrf");
    let bad = root.post_form(
        "/admin/users/reset-link",
        &[("csrf", &csrf), ("username", "bob"), ("expires", "99y")],
    );
    assert_eq!(bad.status, 400);
    let nobody = root.post_form(
        "/admin/users/reset-link",
        &[("csrf", &csrf), ("username", "nobody"), ("expires", "1h")],
    );
    assert_eq!(nobody.status, 404);
    assert_eq!(
        root.get("/admin/users/reset-link?username=nobody").status,
        404
    );
}

#[test]
fn a_reset_link_for_a_lost_phone_keeps_the_old_factor_until_a_new_one_is_set() {
    let dir = tempfile::tempdir().expect("dir");
    let app = TestApp::spawn_in(dir, Vec::new());
    app.add_user("bob", "bobs old password", false);
    let b = app.browser();
    b.login("bob", "bobs old password");
    let (old_seed, old_codes) = enrol(&b);
    // The command line makes the link (the box's owner needs no factor).
    let out = ok(&gatehouse(
        app.dir.path(),
        &["user", "reset-link", "bob", "--new-factor"],
        None,
    ));
    let path = path_of(out.trim(), "/reset/");
    let phone = app.browser();
    let page = phone.get(&path);
    assert!(page.body.contains("id=\"reset-new-factor\""));
    let done = use_reset(&phone, &path, "bobs new password");
    assert_redirects_to(&done, "/login/enrol");
    let bob = app.state().users.get_by_name("bob").expect("bob");
    let factors = app.state().users.factors();
    assert!(
        factors.summary(bob.id).expect("s").totp,
        "the old factor stays until the new one is set"
    );
    assert_eq!(b.get("/account").status, 303, "the other session ended");
    // Signed in nowhere meanwhile.
    assert_eq!(phone.get("/api/session").status, 401);
    let enrol_page = phone.get("/login/enrol");
    assert_eq!(enrol_page.status, 200, "{}", enrol_page.body);
    let (_, new_seed) = secret_of(&enrol_page);
    assert_ne!(new_seed, old_seed);
    let csrf = enrol_page.csrf().expect("csrf");
    let set = phone.post_form(
        "/login/enrol",
        &[("csrf", &csrf), ("code", &code_at(&new_seed, unix_now()))],
    );
    assert_eq!(set.status, 200, "new recovery codes: {}", set.body);
    let session: serde_json::Value =
        serde_json::from_str(&phone.get("/api/session").body).expect("json");
    assert_eq!(session["user"]["name"], "bob");
    // The old factor and recovery codes are gone; the new ones work.
    let t = unix_now();
    let other = app.browser();
    password_step_with(&other, "bob", "bobs new password");
    assert_eq!(second(&other, "code", &code_at(&old_seed, t)).status, 401);
    assert_eq!(second(&other, "recovery", &old_codes[0]).status, 401);
    // The step the set-up used is spent: the next one (skew) signs in.
    assert_redirects_to(&second(&other, "code", &code_at(&new_seed, t + 30)), "/");
}

#[test]
fn a_reset_link_asks_for_the_users_second_factor_and_no_link_signs_in_as_someone_else() {
    let (app, root) = with_root(&[]);
    app.add_user("bob", "bobs old password", false);
    let b = app.browser();
    b.login("bob", "bobs old password");
    let (seed, _) = enrol(&b);
    // root signed in with the password alone: may not make one for bob,
    // who has a second factor (as root may not set bob's password).
    let page = root.get("/admin/users/reset-link?username=bob");
    assert!(page.body.contains("id=\"reset-link-new-factor\""));
    let csrf = page.csrf().expect("csrf");
    let refused = root.post_form(
        "/admin/users/reset-link",
        &[
            ("csrf", &csrf),
            ("username", "bob"),
            ("expires", "1h"),
            ("new_factor", "1"),
        ],
    );
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(!refused.body.contains("new-reset-link"));
    // The box's owner may; whoever uses the link still meets bob's
    // factor: the new password alone signs in nowhere.
    let out = ok(&gatehouse(
        app.dir.path(),
        &["user", "reset-link", "bob"],
        None,
    ));
    let path = path_of(out.trim(), "/reset/");
    let user = app.browser();
    assert_redirects_to(
        &use_reset(&user, &path, "bobs new password"),
        "/login/second",
    );
    assert_eq!(user.get("/api/session").status, 401);
    assert_eq!(user.get("/account").status, 303);
    assert_redirects_to(
        &second(&user, "code", &code_at(&seed, unix_now())),
        "/?done=password-set",
    );
    let session: serde_json::Value =
        serde_json::from_str(&user.get("/api/session").body).expect("json");
    assert_eq!(session["user"]["name"], "bob");
    assert_eq!(session["methods"], serde_json::json!(["pwd", "otp"]));
}

/// The password step for `name` with `password`: on to the second step.
fn password_step_with(b: &Browser, name: &str, password: &str) {
    assert_redirects_to(&b.login(name, password), "/login/second");
}

/// Makes a sign-in link on `/account` in `b`: its code and path.
fn make_signin_link(b: &Browser) -> (String, String) {
    let csrf = b.get("/account").csrf().expect("csrf");
    let made = b.post_form("/account/signin-links", &[("csrf", &csrf)]);
    assert_eq!(made.status, 200, "{}", made.body);
    let code = made.text_of("new-signin-code").expect("a code");
    let path = path_of(&value_of(&made, "new-signin-link"), "/login/link/");
    (code, path)
}

/// Types `code` at `/login/code` in `b`.
fn type_code(b: &Browser, code: &str) -> Resp {
    let page = b.get("/login/code");
    assert_eq!(page.status, 200);
    let csrf = page.csrf().expect("csrf");
    b.post_form("/login/code", &[("csrf", &csrf), ("code", code)])
}

#[test]
fn a_device_sign_in_link_works_once_from_another_client_and_is_refused_after() {
    // Every refusal below counts against 127.0.0.1, which all clients here
    // share.
    let app = TestApp::spawn_with(&[("login_max_failures", "50")]);
    app.add_user("alice", "correct horse", false);
    let laptop = app.browser();
    laptop.login("alice", "correct horse");
    let (code, path) = make_signin_link(&laptop);
    assert_eq!(code.len(), 9, "{code}");
    // Shown once.
    let account = laptop.get("/account");
    assert!(!account.body.contains(&code));
    assert!(account.body.contains("not yet"));

    // Typed on a phone, in lower case with a space: signed in as alice.
    let mut phone = app.browser();
    phone.headers.push((
        "User-Agent".into(),
        "Mozilla/5.0 (Linux; Android 14) Firefox/130.0".into(),
    ));
    let typed = code.to_lowercase().replace('-', " ");
    let done = type_code(&phone, &typed);
    assert_redirects_to(&done, "/");
    let session: serde_json::Value =
        serde_json::from_str(&phone.get("/api/session").body).expect("json");
    assert_eq!(session["user"]["name"], "alice");
    assert_eq!(session["methods"], serde_json::json!(["pwd", "link"]));
    // Once: the code, and its link, are refused after.
    let thief = app.browser();
    let again = type_code(&thief, &code);
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(thief.get("/api/session").status, 401);
    assert_eq!(thief.get(&path).status, 404);
    // The account page says when and from where it was used.
    let account = laptop.get("/account");
    let row = &account.body[account.body.find("id=\"signin-links\"").expect("table")..];
    assert!(row.contains("Firefox on Android"), "{row}");
    assert!(row.contains("127.0.0.1"), "{row}");

    // A second one by its link: the page names whom it signs in, and a
    // GET uses nothing.
    let (_, path) = make_signin_link(&laptop);
    let tablet = app.browser();
    let page = tablet.get(&path);
    assert_eq!(page.status, 200);
    assert_token_headers(&page);
    assert_eq!(page.text_of("link-name").as_deref(), Some("alice"));
    assert_eq!(tablet.get(&path).status, 200, "a GET uses nothing");
    let csrf = page.csrf().expect("csrf");
    let signed = tablet.post_form(&path, &[("csrf", &csrf)]);
    assert_redirects_to(&signed, "/");
    assert_token_headers(&signed);
    assert_eq!(tablet.get("/account").status, 200);
    assert_eq!(tablet.post_form(&path, &[("csrf", &csrf)]).status, 404);

    // Revoked before use: refused.
    let (code, path) = make_signin_link(&laptop);
    let account = laptop.get("/account");
    let id = account
        .body
        .split("id=\"revoke-signin-link-")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a revoke button")
        .to_owned();
    let csrf = account.csrf().expect("csrf");
    let revoked = laptop.post_form(
        "/account/signin-links/revoke",
        &[("csrf", &csrf), ("id", &id)],
    );
    assert_redirects_to(&revoked, "/account?done=signin-link-revoked");
    assert_eq!(type_code(&app.browser(), &code).status, 400);
    assert_eq!(app.browser().get(&path).status, 404);
    // Nobody else's to revoke.
    app.add_user("mallory", "correct horse", false);
    let mallory = app.browser();
    mallory.login("mallory", "correct horse");
    let (_, _) = make_signin_link(&laptop);
    let theirs = laptop
        .get("/account")
        .body
        .split("id=\"revoke-signin-link-")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a revoke button")
        .to_owned();
    let csrf = mallory.get("/account").csrf().expect("csrf");
    let refused = mallory.post_form(
        "/account/signin-links/revoke",
        &[("csrf", &csrf), ("id", &theirs)],
    );
    assert_eq!(refused.status, 404);
}

#[test]
fn a_sign_in_link_signs_in_as_its_maker_did_and_no_better() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let laptop = app.browser();
    laptop.login("alice", "correct horse");
    let (seed, _) = enrol(&laptop);
    laptop.logout();
    // With her second factor: the link carries it.
    password_step(&laptop, "alice");
    assert_redirects_to(&second(&laptop, "code", &code_at(&seed, unix_now())), "/");
    let (code, _) = make_signin_link(&laptop);
    let phone = app.browser();
    assert_redirects_to(&type_code(&phone, &code), "/");
    let session: serde_json::Value =
        serde_json::from_str(&phone.get("/api/session").body).expect("json");
    assert_eq!(
        session["methods"],
        serde_json::json!(["pwd", "otp", "link"])
    );
    // No recent password: an administrator's action would ask for it, and
    // a link made from this session does not stack `link`.
    let (code, _) = make_signin_link(&phone);
    let tablet = app.browser();
    assert_redirects_to(&type_code(&tablet, &code), "/");
    let session: serde_json::Value =
        serde_json::from_str(&tablet.get("/api/session").body).expect("json");
    assert_eq!(
        session["methods"],
        serde_json::json!(["pwd", "otp", "link"])
    );
    // A session that gave no second factor, of a user who has one (set
    // up elsewhere since it signed in), makes none: it would sign the new
    // device in as less than the user is.
    app.add_user("carol", "correct horse", false);
    let carol = app.browser();
    carol.login("carol", "correct horse");
    crate::factors::factor_from_before(&app, "carol");
    let csrf = carol.get("/account").csrf().expect("csrf");
    let refused = carol.post_form("/account/signin-links", &[("csrf", &csrf)]);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(!refused.body.contains("new-signin-code"));
    // A new password ends a link not yet used.
    let (code, _) = make_signin_link(&laptop);
    let alice = app.state().users.get_by_name("alice").expect("alice");
    std::thread::sleep(Duration::from_millis(2));
    app.state()
        .users
        .set_password(alice.id, "another password")
        .expect("set");
    assert_eq!(type_code(&app.browser(), &code).status, 400);
}

#[test]
fn forged_overlong_and_encoded_tokens_get_4xx_never_500_and_guessing_is_throttled() {
    let app = TestApp::spawn_with(&[("login_max_failures", "1000")]);
    app.add_user("bob", "correct horse", false);
    let real = app
        .state()
        .users
        .create_invite(
            &gatehouse::users::links::NewInvite {
                created_by: String::new(),
                expires_at: gatehouse::clock::now() + 60_000,
                uses: 1,
                groups: Vec::new(),
                user: None,
            },
            gatehouse::clock::now(),
        )
        .expect("invite")
        .0;
    let b = app.browser();
    let csrf = b.get("/login").csrf().expect("csrf");
    let forged = "A".repeat(43);
    let long = "A".repeat(4000);
    let encoded: String = real.bytes().map(|c| format!("%{c:02X}")).collect();
    let tails = [
        String::new(),
        "x".into(),
        forged,
        format!("{real}A"),
        real[..42].to_owned(),
        long,
        "%00".into(),
        "%ff%fe".into(),
        "..%2f..%2fadmin".into(),
        format!("{}%2F", &real[..42]),
        "\u{e9}".into(),
        format!("{real}/x"),
    ];
    let mut wrong = Vec::new();
    for prefix in ["/invite/", "/reset/", "/login/link/"] {
        for tail in &tails {
            let path = format!("{prefix}{}", tail.replace('\u{e9}', "%C3%A9"));
            let got = b.get(&path);
            let posted = b.post_form(
                &path,
                &[
                    ("csrf", &csrf),
                    ("username", "eve"),
                    ("password", "a good password"),
                    ("password2", "a good password"),
                ],
            );
            for (method, r) in [("GET", &got), ("POST", &posted)] {
                let fine = (400..500).contains(&r.status)
                    || (prefix == "/invite/" && tail.starts_with(&real) && r.status == 200);
                if !fine {
                    wrong.push(format!("{method} {path}: {}", r.status));
                }
                if (400..500).contains(&r.status) && r.status != 414 {
                    assert_token_headers(r);
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The encoded token is the same token: it opens the same invite.
    assert_eq!(b.get(&format!("/invite/{encoded}")).status, 200);
    assert!(app.state().users.find_by_name("eve").expect("f").is_none());
    // Codes: malformed, overlong, unknown.
    for code in ["", "x", "BCDF-GHJK", &"B".repeat(10_000), "\u{0}\u{1}"] {
        let r = b.post_form("/login/code", &[("csrf", &csrf), ("code", code)]);
        assert_eq!(r.status, 400, "{code:?}");
    }
}

#[test]
fn guessed_links_and_codes_are_throttled_per_address() {
    let app = TestApp::spawn();
    app.add_user("alice", "correct horse", false);
    let laptop = app.browser();
    laptop.login("alice", "correct horse");
    let (code, _) = make_signin_link(&laptop);
    let guesser = app.browser();
    let csrf = guesser.get("/login/code").csrf().expect("csrf");
    let mut statuses = Vec::new();
    for i in 0..8 {
        let guess = format!("BCDF-GH{}{}", (b'2' + (i % 8)) as char, 'K');
        let r = guesser.post_form("/login/code", &[("csrf", &csrf), ("code", &guess)]);
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.header("Retry-After").is_some());
        }
    }
    assert_eq!(&statuses[..5], &[400; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Locked, even the right code tells nothing, and is not used.
    let r = guesser.post_form("/login/code", &[("csrf", &csrf), ("code", &code)]);
    assert_eq!(r.status, 429);
    assert_eq!(guesser.get("/api/session").status, 401);
    // Links from the same address are refused as well, without a lookup.
    let forged = format!("/invite/{}", "A".repeat(43));
    let r = guesser.get(&forged);
    assert_eq!(r.status, 429);
    assert_token_headers(&r);
}

#[test]
fn the_raw_database_file_holds_none_of_the_tokens_or_codes() {
    if !crate::helpers::on_sqlite("the_raw_database_file_holds_none_of_the_tokens_or_codes") {
        return;
    }
    let (app, root) = with_root(&[]);
    app.add_user("bob", "correct horse", false);
    let invite = make_invite(&root, &[("uses", "2"), ("expires", "7d")]);
    let named = make_invite(
        &root,
        &[("uses", "1"), ("expires", "7d"), ("username", "dan")],
    );
    let reset = make_reset_link(&root, "bob", &[("expires", "1h")]);
    let (code, link) = make_signin_link(&root);
    let (used_code, used_link) = make_signin_link(&root);
    assert_redirects_to(&type_code(&app.browser(), &used_code), "/");
    let secrets = [
        invite.trim_start_matches("/invite/").to_owned(),
        named.trim_start_matches("/invite/").to_owned(),
        reset.trim_start_matches("/reset/").to_owned(),
        link.trim_start_matches("/login/link/").to_owned(),
        used_link.trim_start_matches("/login/link/").to_owned(),
        code.clone(),
        code.replace('-', ""),
        used_code.clone(),
        used_code.replace('-', ""),
    ];
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let mut path = app.db_path().into_os_string();
        path.push(suffix);
        if let Ok(b) = std::fs::read(&path) {
            bytes.extend(b);
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "{s} is in the file");
    }
    // What is there are their hashes.
    let hash = gatehouse::users::links::hash(&secrets[0]);
    assert!(bytes.windows(32).any(|w| w == hash), "the invite's hash");
}

#[test]
fn the_request_log_never_prints_a_links_token() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    ok(&gatehouse(
        d,
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("correct horse\n"),
    ));
    let invite = ok(&gatehouse(d, &["invite", "create"], None))
        .trim()
        .to_owned();
    let reset = ok(&gatehouse(d, &["user", "reset-link", "root"], None))
        .trim()
        .to_owned();
    assert!(invite.starts_with("/invite/") && reset.starts_with("/reset/"));
    let secrets = [
        invite.trim_start_matches("/invite/").to_owned(),
        reset.trim_start_matches("/reset/").to_owned(),
    ];
    let mut child = crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA", d)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .env("GATEHOUSE_LOG_REQUESTS", "true")
        .envs(crate::helpers::backend_env(d))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let url = first.split_whitespace().last().expect("url").to_owned();
    std::thread::spawn(move || for _ in lines {});
    let mut stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    let b = Browser::new(&url);
    let encoded: String = secrets[0].bytes().map(|c| format!("%{c:02X}")).collect();
    for path in [
        invite.clone(),
        reset.clone(),
        format!("/%69nvite/{}", secrets[0]),
        format!("/invite/{encoded}"),
        format!("/INVITE/{}", secrets[0]),
        format!("/login/link/{}", secrets[1]),
    ] {
        let r = b.get(&path);
        assert!(r.status < 500, "{path}: {}", r.status);
    }
    // Other spellings of the paths route nowhere (404, 400), sent as they
    // are: their tokens stay out of the log too, and out of a Referer.
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    for path in [
        format!("//invite/{}", secrets[0]),
        format!("/./invite/{}", secrets[0]),
        format!("/x/../invite/{}", secrets[0]),
        format!("/invite;x/{}", secrets[0]),
        format!("/invite\\{}", secrets[0]),
        format!("/%2Finvite/{}", secrets[0]),
        format!("/%2e/reset/{}", secrets[1]),
        format!("//reset/{}", secrets[1]),
        format!("/login//link/{}", secrets[1]),
        format!("/./login/link/{}", secrets[1]),
    ] {
        let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        std::io::Write::write_all(
            &mut conn,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("send");
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        let head = answer
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 4"), "{path}: {head}");
        if head.starts_with("http/1.1 404") || head.starts_with("http/1.1 400") {
            assert!(
                head.contains("referrer-policy: no-referrer"),
                "{path}: {head}"
            );
        }
    }
    // A form without its token: refused (and logged) before the handler.
    let r = b.post_form_with(&invite, &[], &[("Sec-Fetch-Site", "cross-site")]);
    assert_eq!(r.status, 403);
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let log = log.join().expect("log");
    assert!(log.contains("path=\"/invite/[token]\""), "{log}");
    assert!(log.contains("path=\"/reset/[token]\""), "{log}");
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "a token in the log:\n{log}");
    }
}

#[test]
fn the_command_line_makes_lists_and_revokes_invites_and_reset_links() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_owned();
    ok(&gatehouse(
        &d,
        &["user", "add", "bob", "--password-stdin"],
        Some("correct horse\n"),
    ));
    ok(&gatehouse(&d, &["group", "add", "ops"], None));
    // Refused: admins, unknown groups, odd uses, a taken name, a bad expiry.
    for args in [
        &["invite", "create", "--groups", "admins"][..],
        &["invite", "create", "--groups", "nope"],
        &["invite", "create", "--uses", "0"],
        &["invite", "create", "--uses", "2", "--user", "dan"],
        &["invite", "create", "--user", "bob"],
        &["invite", "create", "--expires", "soon"],
        &["invite", "create", "--expires", "91d"],
        &["invite", "revoke", "999"],
        &["user", "reset-link", "nobody"],
        &["user", "reset-link", "bob", "--expires", "8d"],
    ] {
        fails(&gatehouse(&d, args, None));
    }
    let made = gatehouse(
        &d,
        &[
            "invite",
            "create",
            "--groups",
            "ops",
            "--uses",
            "3",
            "--expires",
            "2d",
        ],
        None,
    );
    let path = ok(&made).trim().to_owned();
    assert!(path.starts_with("/invite/"), "{path}");
    assert!(
        String::from_utf8_lossy(&made.stderr).contains("public_url"),
        "says the link is only a path"
    );
    let named = ok(&gatehouse(&d, &["invite", "create", "--user", "dan"], None))
        .trim()
        .to_owned();
    let list = ok(&gatehouse(&d, &["invite", "list"], None));
    let line = list.lines().find(|l| l.contains("ops")).expect("listed");
    assert!(
        line.contains("3/3") && line.contains("(command line)"),
        "{list}"
    );
    assert!(list.lines().any(|l| l.contains("dan")), "{list}");
    assert!(!list.contains(path.trim_start_matches("/invite/")));
    let id = line.split_whitespace().next().expect("id").to_owned();

    // With public_url set, the whole link.
    let whole = ok(&with_env(
        &d,
        ("GATEHOUSE_PUBLIC_URL", "https://auth.lan"),
        &["user", "reset-link", "bob", "--expires", "30m"],
    ));
    assert!(
        whole.trim().starts_with("https://auth.lan/reset/"),
        "{whole}"
    );

    // A server on the same data: the links work there.
    let app = TestApp::spawn_in(dir, Vec::new());
    let b = app.browser();
    assert_redirects_to(
        &use_invite(&b, &path, "ann", "a good password"),
        "/?done=registered",
    );
    assert_eq!(groups_of(&app, "ann"), ["ops"]);
    assert_redirects_to(
        &use_invite(&app.browser(), &named, "", "dans password"),
        "/?done=registered",
    );
    let reset = path_of(whole.trim(), "/reset/");
    assert_redirects_to(
        &use_reset(&app.browser(), &reset, "bobs new password"),
        "/?done=password-set",
    );
    // Revoked, and the reset link's --revoke.
    ok(&gatehouse(app.dir.path(), &["invite", "revoke", &id], None));
    assert_eq!(app.browser().get(&path).status, 404);
    let again = ok(&gatehouse(
        app.dir.path(),
        &["user", "reset-link", "bob"],
        None,
    ));
    let again = path_of(again.trim(), "/reset/");
    assert_eq!(app.browser().get(&again).status, 200);
    ok(&gatehouse(
        app.dir.path(),
        &["user", "reset-link", "bob", "--revoke"],
        None,
    ));
    assert_eq!(app.browser().get(&again).status, 404);
    fails(&gatehouse(
        app.dir.path(),
        &["user", "reset-link", "bob", "--revoke"],
        None,
    ));
}

/// The real binary on `dir` with one more setting from the environment.
fn with_env(dir: &std::path::Path, (k, v): (&str, &str), args: &[&str]) -> std::process::Output {
    crate::helpers::command(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env("GATEHOUSE_DATA", dir)
        .env("GATEHOUSE_BCRYPT_COST", "4")
        .envs(crate::helpers::backend_env(dir))
        .env(k, v)
        .stdin(Stdio::null())
        .output()
        .expect("run gatehouse")
}

#[test]
fn each_link_route_answers_another_method_with_405_and_its_allow_header() {
    let app = TestApp::spawn();
    let b = app.browser();
    let mut wrong = Vec::new();
    for path in [
        "/invite/x",
        "/reset/x",
        "/login/link/x",
        "/login/code",
        "/admin/invites",
        "/admin/users/reset-link",
    ] {
        let r = b.send_json("PUT", path, "{}", &[]);
        if r.status != 405 || r.header("allow") != Some("GET, HEAD, POST") {
            wrong.push(format!("PUT {path}: {} {:?}", r.status, r.header("allow")));
        }
    }
    for path in [
        "/admin/invites/revoke",
        "/admin/users/reset-link/revoke",
        "/account/signin-links",
        "/account/signin-links/revoke",
    ] {
        let r = b.get(path);
        if r.status != 405 || r.header("allow") != Some("POST") {
            wrong.push(format!("GET {path}: {} {:?}", r.status, r.header("allow")));
        }
    }
    // The prefixes alone are no route.
    for path in ["/invite", "/reset", "/login/link", "/invites/x"] {
        let r = b.get(path);
        if r.status != 404 {
            wrong.push(format!("GET {path}: {}", r.status));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_admin_link_forms_keep_their_fields_through_the_password_step() {
    // A click no person made meets the password step every time: what the
    // form asked for must be what is done after it.
    let (app, root) = with_root(&[]);
    app.add_user("bob", "correct horse", false);
    app.state()
        .users
        .create_group(&gatehouse::users::groups::GroupName::parse("ops").expect("name"))
        .expect("group");
    let through = |from: &str, action: &str, fields: &[(&str, &str)]| {
        let token = root.get(from).csrf().expect("csrf");
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        let step = root.post_form_with(action, &all, SCRIPTED_CLICK);
        assert_eq!(step.status, 200, "{action}: {step:?}");
        assert!(step.body.contains("id=\"reauth-form\""), "{action}");
        let again = through_password_step(&step, "correct horse");
        let again: Vec<(&str, &str)> = again
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        root.post_form_with(action, &again, SCRIPTED_CLICK)
    };
    let made = through(
        "/admin/invites",
        "/admin/invites",
        &[
            ("uses", "3"),
            ("expires", "30d"),
            ("groups", "ops"),
            ("username", ""),
        ],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    value_of(&made, "new-invite");
    let listed = app.state().users.invites().expect("list");
    assert_eq!(listed.len(), 1);
    let invite = &listed[0].invite;
    assert_eq!(
        (invite.uses, listed[0].group_names.clone()),
        (3, vec!["ops".to_owned()])
    );
    assert!(invite.expires_at - gatehouse::clock::now() > 29 * 24 * 3_600_000);
    let id = invite.id.to_string();
    let revoked = through("/admin/invites", "/admin/invites/revoke", &[("id", &id)]);
    assert_redirects_to(&revoked, "/admin/invites?done=invite-revoked");
    assert!(app.state().users.invites().expect("list").is_empty());

    let made = through(
        "/admin/users/reset-link?username=bob",
        "/admin/users/reset-link",
        &[("username", "bob"), ("expires", "4h"), ("new_factor", "1")],
    );
    assert_eq!(made.status, 200, "{}", made.body);
    value_of(&made, "new-reset-link");
    let links = app.state().users.reset_links().expect("list");
    assert_eq!(links.len(), 1);
    assert!(links[0].new_factor && links[0].username == "bob");
    assert!(links[0].expires_at - gatehouse::clock::now() > 3 * 3_600_000);
    let revoked = through(
        "/admin/users",
        "/admin/users/reset-link/revoke",
        &[("username", "bob")],
    );
    assert_redirects_to(&revoked, "/admin/users?done=reset-link-revoked");
    assert!(app.state().users.reset_links().expect("list").is_empty());
}

#[test]
fn a_burst_of_guesses_from_one_address_gets_no_more_checked_than_the_limit() {
    // All at once, each with its own form token: the address's slots are
    // taken before a guess is looked at (they were read, then counted
    // after: on PostgreSQL a burst had 65 of 100 checked).
    let app = TestApp::spawn();
    let guessers: Vec<(Browser, String)> = (0..30)
        .map(|_| {
            let b = app.browser();
            let csrf = b.get("/login/code").csrf().expect("csrf");
            (b, csrf)
        })
        .collect();
    let barrier = Arc::new(Barrier::new(guessers.len()));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = guessers
            .iter()
            .enumerate()
            .map(|(i, (b, csrf))| {
                let barrier = Arc::clone(&barrier);
                s.spawn(move || {
                    let guess = format!("BCDF-GH{}K", (b'2' + (i % 8) as u8) as char);
                    barrier.wait();
                    b.post_form("/login/code", &[("csrf", csrf), ("code", &guess)])
                        .status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    let checked = statuses.iter().filter(|s| **s == 400).count();
    assert!(checked <= 5, "{checked} checked: {statuses:?}");
    assert!(
        statuses.iter().all(|s| matches!(s, 400 | 429)),
        "{statuses:?}"
    );
}

#[test]
fn a_waiting_sign_in_link_ends_with_everything_that_ends_the_users_sessions() {
    let (app, root) = with_root(&[("login_max_failures", "50")]);
    app.add_user("alice", "correct horse", false);
    let laptop = app.browser();
    laptop.login("alice", "correct horse");
    let dead = |code: &str, why: &str| {
        let other = app.browser();
        let r = type_code(&other, code);
        assert_eq!(r.status, 400, "{why}: {r:?}");
        assert_eq!(other.get("/api/session").status, 401, "{why}");
    };
    // Signing out of the session that made it.
    let (code, _) = make_signin_link(&laptop);
    let csrf = laptop.get("/logout").csrf().expect("csrf");
    laptop.post_form("/logout", &[("csrf", &csrf)]);
    dead(&code, "sign-out");
    // Ending the other sessions (a stranger's, perhaps).
    laptop.login("alice", "correct horse");
    let (code, _) = make_signin_link(&laptop);
    let csrf = laptop.get("/account").csrf().expect("csrf");
    laptop.post_form("/account/sessions/end-others", &[("csrf", &csrf)]);
    dead(&code, "end the others");
    // Disabled, then enabled again.
    let (code, _) = make_signin_link(&laptop);
    let alice = app.state().users.get_by_name("alice").expect("alice");
    app.state()
        .accounts()
        .disable(None, &alice, false)
        .expect("disable");
    let alice = app.state().users.get_by_name("alice").expect("alice");
    app.state().accounts().enable(&alice).expect("enable");
    dead(&code, "disabled");
    // A second factor turned on: a link made before it would sign in
    // without one.
    laptop.login("alice", "correct horse");
    let (code, _) = make_signin_link(&laptop);
    enrol(&laptop);
    dead(&code, "a factor turned on");
    drop(root);
}

#[test]
fn an_invite_names_only_groups_that_were_there_when_it_was_made() {
    // SQLite gives a deleted group's id to the next group made.
    let (app, root) = with_root(&[]);
    let users = &app.state().users;
    let tmp = gatehouse::users::groups::GroupName::parse("tmpgrp").expect("name");
    users.create_group(&tmp).expect("group");
    let path = make_invite(
        &root,
        &[("groups", "tmpgrp"), ("uses", "1"), ("expires", "1d")],
    );
    let group = users.get_group("tmpgrp").expect("group");
    users.delete_group(&group).expect("delete");
    std::thread::sleep(Duration::from_millis(5));
    let finance = gatehouse::users::groups::GroupName::parse("finance").expect("name");
    users.create_group(&finance).expect("group");
    let b = app.browser();
    assert_eq!(
        use_invite(&b, &path, "newbie", "correct horse 1").status,
        303
    );
    assert!(
        groups_of(&app, "newbie").is_empty(),
        "{:?}",
        groups_of(&app, "newbie")
    );
}

#[test]
fn an_invite_for_a_user_made_an_administrator_meanwhile_does_not_work() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    ok(&gatehouse(
        d,
        &["user", "add", "root", "--admin", "--password-stdin"],
        Some("correct horse\n"),
    ));
    let invite = ok(&gatehouse(
        d,
        &["invite", "create", "--user", "frank"],
        None,
    ))
    .trim()
    .to_owned();
    ok(&gatehouse(
        d,
        &["user", "groups", "frank", "--add", "admins"],
        None,
    ));
    let app = TestApp::spawn_in(dir, Vec::new());
    let b = app.browser();
    let page = b.get(&invite);
    if page.status == 200 {
        let csrf = page.csrf().expect("csrf");
        let r = b.post_form(
            &invite,
            &[
                ("csrf", &csrf),
                ("password", "correct horse 1"),
                ("password2", "correct horse 1"),
            ],
        );
        assert_ne!(r.status, 303, "{r:?}");
    }
    assert_eq!(b.get("/api/session").status, 401);
    assert!(!matches!(
        app.state().users.authenticate("frank", "correct horse 1"),
        Ok(gatehouse::users::Login::Ok(_))
    ));
}

#[test]
fn a_user_makes_at_most_a_days_worth_of_sign_in_links() {
    let app = TestApp::spawn_with(&[("login_max_failures", "100")]);
    app.add_user("alice", "correct horse", false);
    let laptop = app.browser();
    laptop.login("alice", "correct horse");
    for _ in 0..20 {
        let (code, _) = make_signin_link(&laptop);
        // Used at once, so the five waiting are never the limit.
        let phone = app.browser();
        assert_eq!(type_code(&phone, &code).status, 303);
    }
    let csrf = laptop.get("/account").csrf().expect("csrf");
    let refused = laptop.post_form("/account/signin-links", &[("csrf", &csrf)]);
    assert!(
        (400..500).contains(&refused.status),
        "{}: {}",
        refused.status,
        refused.body
    );
    assert!(refused.body.contains("in the last day"), "{}", refused.body);
}
