//! The directory as a source of users, against a real OpenLDAP (`slapd.rs`):
//! sign-in by binding (right and wrong passwords, unknown and ambiguous
//! names, filter injection), groups read by search and by `memberOf`, the
//! Active Directory preset on an AD-shaped tree (binary `objectGUID`,
//! `userAccountControl`), disabled entries, TLS (a CA file; a certificate
//! for another name or from an unknown CA refused), a stopped or paused
//! directory, sync's read by stable id, and `gatehouse ldap test|sync`.

use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use gatehouse::config::Config;
use gatehouse::users::Username;
use gatehouse::users::directory::{Directory, DirectoryError, Found, Outcome};
use gatehouse::users::source::{Change, External, Profile, Source};

use crate::slapd::{AD_SERVICE_DN, ERIN_GUID, SERVICE_DN, SERVICE_PASSWORD, Slapd};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// The `ldap.*` settings for the OpenLDAP-shaped tree over ldaps with the
/// test CA, with `changes` on top (an empty value removes a setting).
fn settings(slapd: &Slapd, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let ca = slapd.ca_file.display().to_string();
    let mut s: BTreeMap<String, String> = [
        ("ldap.url", slapd.ldaps_url()),
        ("ldap.ca_file", ca),
        ("ldap.base_dn", "dc=example,dc=org".to_owned()),
        ("ldap.bind_dn", SERVICE_DN.to_owned()),
        ("ldap.bind_password", SERVICE_PASSWORD.to_owned()),
        ("ldap.connect_timeout", "10s".to_owned()),
        ("ldap.operation_timeout", "10s".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in changes {
        if v.is_empty() {
            s.remove(*k);
        } else {
            s.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    s.into_iter().collect()
}

/// The same for the Active Directory-shaped tree.
fn ad_settings(slapd: &Slapd, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = vec![
        ("ldap.kind", "active_directory"),
        ("ldap.base_dn", "dc=corp,dc=example"),
        ("ldap.bind_dn", AD_SERVICE_DN),
    ];
    all.extend_from_slice(changes);
    settings(slapd, &all)
}

fn config(dir: &std::path::Path, settings: &[(String, String)]) -> Config {
    crate::helpers::config(dir, settings)
}

fn directory(settings: &[(String, String)]) -> Directory {
    let dir = tempfile::tempdir().expect("dir");
    let settings = config(dir.path(), settings)
        .ldap
        .expect("a directory is configured");
    Directory::new(settings).expect("client")
}

fn ok(outcome: Outcome) -> gatehouse::users::directory::Entry {
    match outcome {
        Outcome::Ok(entry) => entry,
        other => panic!("expected a sign-in, got {other:?}"),
    }
}

fn name(s: &str) -> Username {
    Username::parse(s).expect("a valid name")
}

#[test]
fn a_directory_password_signs_in_and_a_wrong_one_or_an_unknown_name_does_not() {
    let Some(slapd) = Slapd::start("ldap::sign_in") else {
        return;
    };
    let d = directory(&settings(&slapd, &[]));
    let alice = ok(d.authenticate("alice", "alice-password").expect("answer"));
    assert_eq!(alice.dn, "uid=alice,ou=people,dc=example,dc=org");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert_eq!(alice.id.len(), 36, "an entryUUID: {}", alice.id);
    assert_eq!(alice.groups, ["admins", "staff"]);
    assert!(!alice.disabled);
    // Any case finds her; the directory's spelling is kept.
    assert_eq!(
        ok(d.authenticate("ALICE", "alice-password").expect("answer")).username,
        "alice"
    );
    assert_eq!(
        d.authenticate("alice", "bob-password").expect("answer"),
        Outcome::WrongPassword
    );
    assert_eq!(
        d.authenticate("alice", "Alice-password").expect("answer"),
        Outcome::WrongPassword
    );
    assert_eq!(
        d.authenticate("nobody", "alice-password").expect("answer"),
        Outcome::UnknownUser
    );
    // An empty password is an unauthenticated bind, which a directory may
    // answer with success: refused before any bind.
    assert_eq!(
        d.authenticate("alice", "").expect("answer"),
        Outcome::WrongPassword
    );
    // Two entries called "twin": neither signs in, with either password.
    assert_eq!(
        d.authenticate("twin", "twin-password").expect("answer"),
        Outcome::UnknownUser
    );
    assert_eq!(d.lookup(&name("twin")).expect("answer"), Found::Several);
}

#[test]
fn filter_injection_names_are_refused_and_never_match_another_entry() {
    let Some(slapd) = Slapd::start("ldap::injection") else {
        return;
    };
    let d = directory(&settings(&slapd, &[]));
    for attempt in [
        "*",
        "*)(uid=*",
        "alice)(uid=*",
        "alice)(|(uid=*",
        ")(",
        "\0",
        "alice\0",
        "\\",
        "\\2a",
        "al*",
        "*alice*",
        "alice\u{0})(objectClass=*",
        "alïce",
    ] {
        for password in ["alice-password", "bob-password"] {
            assert_eq!(
                d.authenticate(attempt, password).expect("answer"),
                Outcome::UnknownUser,
                "{attempt:?}"
            );
        }
        assert!(Username::parse(attempt).is_err(), "{attempt:?}");
    }
    // The escaping holds where the value is not a username: a user under
    // an OU whose name has filter specials gets exactly their groups by
    // the group search (`{dn}` escaped), not everyone's or none.
    let dave = ok(d.authenticate("dave", "dave-password").expect("answer"));
    assert!(dave.dn.contains("R(D) * Ops"), "{}", dave.dn);
    assert_eq!(dave.groups, ["R&D, Europe", "staff"]);
}

#[test]
fn groups_are_read_by_search_and_by_member_of() {
    let Some(slapd) = Slapd::start("ldap::groups") else {
        return;
    };
    // OpenLDAP's preset: a search for groupOfNames / groupOfUniqueNames.
    let d = directory(&settings(&slapd, &[]));
    let bob = ok(d.authenticate("bob", "bob-password").expect("answer"));
    assert_eq!(bob.groups, ["R&D, Europe", "staff"]);
    // Only the listed groups count, and the admin group makes an admin.
    let d = directory(&settings(
        &slapd,
        &[
            ("ldap.groups", "Staff, admins"),
            ("ldap.admin_group", "Admins"),
        ],
    ));
    let s = d.settings();
    let alice = ok(d.authenticate("alice", "alice-password").expect("answer"));
    assert_eq!(s.kept_groups(&alice.groups), ["admins", "staff"]);
    assert!(s.is_admin(&alice.groups));
    let bob = ok(d.authenticate("bob", "bob-password").expect("answer"));
    assert_eq!(s.kept_groups(&bob.groups), ["staff"]);
    assert!(!s.is_admin(&bob.groups));
    // Active Directory's preset: memberOf, kept by the directory; a group
    // name with a comma comes out of its DN whole.
    let d = directory(&ad_settings(&slapd, &[]));
    let erin = ok(d.authenticate("erin", "erin-password").expect("answer"));
    assert_eq!(erin.groups, ["Domain Admins", "IT, Europe"]);
    // And the same tree by search, with a filter of our own.
    let d = directory(&ad_settings(
        &slapd,
        &[
            ("ldap.group_lookup", "search"),
            ("ldap.group_filter", "(&(objectClass=group)(member={dn}))"),
        ],
    ));
    let erin = ok(d.authenticate("erin", "erin-password").expect("answer"));
    assert_eq!(erin.groups, ["Domain Admins", "IT, Europe"]);
}

#[test]
fn the_active_directory_preset_reads_an_ad_shaped_tree() {
    let Some(slapd) = Slapd::start("ldap::active_directory") else {
        return;
    };
    let d = directory(&ad_settings(&slapd, &[]));
    let erin = ok(d.authenticate("Erin", "erin-password").expect("answer"));
    assert_eq!(erin.dn, "cn=Erin Example,ou=Users,dc=corp,dc=example");
    assert_eq!(erin.username, "erin");
    assert_eq!(erin.display_name.as_deref(), Some("Erin Example"));
    assert_eq!(erin.email.as_deref(), Some("erin@corp.example"));
    // The binary objectGUID, as text that depends only on its bytes.
    assert_eq!(
        erin.id,
        gatehouse::users::directory::escape::id_text(&ERIN_GUID)
    );
    assert!(erin.id.starts_with("hex:109a00ff28292a5c"), "{}", erin.id);
    assert_eq!(
        d.authenticate("erin", "wrong").expect("answer"),
        Outcome::WrongPassword
    );
    // userAccountControl's disabled bit: the right password, yet refused.
    assert_eq!(
        d.authenticate("frank", "frank-password").expect("answer"),
        Outcome::Disabled
    );
    assert_eq!(
        d.authenticate("frank", "wrong").expect("answer"),
        Outcome::WrongPassword,
        "disabled is told only to the right password"
    );
    let Found::One(frank) = d.lookup(&name("frank")).expect("answer") else {
        panic!("frank is there");
    };
    assert!(frank.disabled);
    // Found again by the GUID, whose bytes include `(`, `)`, `*` and `\`:
    // escaped in the filter, they match exactly this entry.
    let found = d
        .find_by_ids(&[
            erin.id.clone(),
            "hex:00112233".into(),
            "not-an-id at all".into(),
        ])
        .expect("answer");
    assert_eq!(
        found[0].as_ref().map(|e| e.dn.as_str()),
        Some(erin.dn.as_str())
    );
    assert!(found[1].is_none() && found[2].is_none(), "{found:?}");
}

#[test]
fn a_locked_openldap_account_is_disabled() {
    let Some(slapd) = Slapd::start("ldap::locked") else {
        return;
    };
    let d = directory(&settings(&slapd, &[]));
    let Found::One(carol) = d.lookup(&name("carol")).expect("answer") else {
        panic!("carol is there");
    };
    assert!(carol.disabled, "pwdAccountLockedTime marks her disabled");
    let outcome = d.authenticate("carol", "carol-password").expect("answer");
    // The password policy refuses her bind itself, or the disabled filter
    // refuses her after it: either way she does not sign in.
    assert!(
        matches!(outcome, Outcome::Disabled | Outcome::WrongPassword),
        "{outcome:?}"
    );
    let Found::One(alice) = d.lookup(&name("alice")).expect("answer") else {
        panic!("alice is there");
    };
    assert!(!alice.disabled);
    // With no disabled filter, the lock is not read.
    let d = directory(&settings(&slapd, &[("ldap.disabled_filter", "none")]));
    let Found::One(carol) = d.lookup(&name("carol")).expect("answer") else {
        panic!("carol is there");
    };
    assert!(!carol.disabled);
}

#[test]
fn a_paused_or_stopped_directory_is_unreachable_within_the_timeout() {
    let Some(mut slapd) = Slapd::start("ldap::outage") else {
        return;
    };
    let d = directory(&settings(
        &slapd,
        &[
            // Short enough to wait out, long enough for a loaded machine
            // to sign in while the directory is up.
            ("ldap.connect_timeout", "3s"),
            ("ldap.operation_timeout", "3s"),
            ("ldap.max_connections", "1"),
        ],
    ));
    ok(d.authenticate("alice", "alice-password").expect("up"));
    // Paused: it accepts connections (the kernel does) and never answers.
    let pid =
        rustix::process::Pid::from_raw(i32::try_from(slapd.pid()).expect("pid")).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("pause");
    let started = Instant::now();
    let err = d
        .authenticate("alice", "alice-password")
        .expect_err("paused");
    let took = started.elapsed();
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("resume");
    assert!(matches!(err, DirectoryError::Unreachable(_)), "{err:?}");
    assert!(err.is_outage());
    assert!(err.to_string().contains("timed out"), "{err}");
    // 3s to connect and 3s for the operation: far less than this, even
    // on a loaded machine; the point is that it ends.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // Back: it answers again (the turn the paused sign-in held was
    // given back).
    ok(d.authenticate("alice", "alice-password").expect("resumed"));
    slapd.stop();
    let err = d
        .authenticate("alice", "alice-password")
        .expect_err("stopped");
    assert!(matches!(err, DirectoryError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("cannot be reached"), "{err}");
    assert!(matches!(d.check(), Err(DirectoryError::Unreachable(_))));
}

#[test]
fn tls_with_the_ca_file_works_and_another_name_or_an_unknown_ca_is_refused() {
    let Some(slapd) = Slapd::start("ldap::tls") else {
        return;
    };
    // ldaps and StartTLS to the name on the certificate, trusting the CA.
    for url in [slapd.ldaps_url(), slapd.starttls_url()] {
        let d = directory(&settings(&slapd, &[("ldap.url", &url)]));
        d.check().unwrap_or_else(|e| panic!("{url}: {e}"));
        ok(d.authenticate("alice", "alice-password").expect(&url));
    }
    // The certificate names localhost, not 127.0.0.1.
    for url in [
        format!("ldaps://127.0.0.1:{}", slapd.tls_port),
        slapd.ldap_url(),
    ] {
        let d = directory(&settings(&slapd, &[("ldap.url", &url)]));
        let err = d.check().expect_err("another name");
        assert!(
            matches!(err, DirectoryError::Unreachable(_)),
            "{url}: {err:?}"
        );
        assert!(
            err.to_string().contains("certificate not valid for name"),
            "{url}: {err}"
        );
    }
    // Without the CA file only the system's CAs are trusted: not ours.
    let dir = tempfile::tempdir().expect("dir");
    let system = config(dir.path(), &settings(&slapd, &[("ldap.ca_file", "")]))
        .ldap
        .expect("configured");
    match Directory::new(system) {
        // A machine without any CA certificates refuses sooner.
        Err(DirectoryError::Tls(_)) => {}
        Err(e) => panic!("{e:?}"),
        Ok(d) => {
            let err = d.check().expect_err("an unknown CA");
            assert!(matches!(err, DirectoryError::Unreachable(_)), "{err:?}");
            assert!(err.to_string().contains("UnknownIssuer"), "{err}");
        }
    }
    // Plain LDAP only when asked for.
    let d = directory(&settings(
        &slapd,
        &[
            ("ldap.url", &slapd.ldap_url()),
            ("ldap.insecure", "true"),
            ("ldap.ca_file", ""),
        ],
    ));
    ok(d.authenticate("alice", "alice-password").expect("plain"));
}

#[test]
fn a_refused_service_account_is_an_outage_not_a_wrong_password() {
    let Some(slapd) = Slapd::start("ldap::service_account") else {
        return;
    };
    let d = directory(&settings(&slapd, &[("ldap.bind_password", "not-it")]));
    let err = d
        .authenticate("alice", "alice-password")
        .expect_err("refused");
    assert!(matches!(err, DirectoryError::ServiceAccount(_)), "{err:?}");
    assert!(err.is_outage());
    assert!(!err.to_string().contains("not-it"), "{err}");
    // This directory lets nobody search anonymously (it hides the base
    // DN): a configuration to fix, said as such, not "unknown user".
    let d = directory(&settings(
        &slapd,
        &[("ldap.bind_dn", ""), ("ldap.bind_password", "")],
    ));
    let err = d
        .authenticate("alice", "alice-password")
        .expect_err("refused");
    assert!(matches!(err, DirectoryError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("noSuchObject"), "{err}");
    assert!(err.is_outage());
}

#[test]
fn sync_finds_users_by_their_stable_id_through_renames_and_removals() {
    let Some(slapd) = Slapd::start("ldap::by_id") else {
        return;
    };
    let d = directory(&settings(&slapd, &[]));
    let alice = ok(d.authenticate("alice", "alice-password").expect("answer"));
    let bob = ok(d.authenticate("bob", "bob-password").expect("answer"));
    // Bob is renamed robert; alice leaves.
    let mut admin = slapd.admin("dc=example,dc=org");
    admin
        .modifydn(&bob.dn, "uid=robert", true, None)
        .expect("rename")
        .success()
        .expect("renamed");
    drop(admin);
    slapd.delete("dc=example,dc=org", &alice.dn);
    let found = d
        .find_by_ids(&[alice.id.clone(), bob.id.clone()])
        .expect("answer");
    assert!(found[0].is_none(), "alice is gone: {:?}", found[0]);
    let robert = found[1].as_ref().expect("bob, renamed");
    assert_eq!(robert.username, "robert");
    assert_eq!(robert.id, bob.id);
    // The same user locally: found by id, renamed, not made anew.
    let dir = tempfile::tempdir().expect("dir");
    let users = gatehouse::app::open_backends(
        &config(dir.path(), &[]),
        gatehouse::db::ForeignWal::MoveAside,
    )
    .expect("backends")
    .users;
    let old = External {
        id: &bob.id,
        username: &name(&bob.username),
        display_name: bob.display_name.as_deref(),
        email: bob.email.as_deref(),
    };
    let (made, change) = users.upsert_external(Source::Ldap, &old).expect("made");
    assert_eq!(change, Change::Created);
    let new = External {
        username: &name(&robert.username),
        ..old
    };
    let (after, change) = users.upsert_external(Source::Ldap, &new).expect("renamed");
    assert_eq!((after.id, change), (made.id, Change::Updated));
    assert_eq!(after.username, "robert");
}

/// Runs the binary on `dir` with `settings` as environment variables.
fn gatehouse(dir: &std::path::Path, settings: &[(String, String)], args: &[&str]) -> Output {
    let mut env = crate::helpers::backend_env(dir);
    env.extend(
        settings
            .iter()
            .map(|(k, v)| (gatehouse::config::env_name(k), v.clone())),
    );
    crate::helpers::command(BIN)
        .args(args)
        .env("GATEHOUSE_DATA", dir)
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("run gatehouse")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The value on a `label:` line of `ldap test`'s output.
fn line<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no {label}: line in\n{text}"))
        .trim()
}

#[test]
fn ldap_test_shows_what_gatehouse_reads_and_never_the_bind_password() {
    let Some(slapd) = Slapd::start("ldap::cli_test") else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(&slapd, &[("ldap.admin_group", "admins")]);
    let text = stdout(&gatehouse(dir.path(), &s, &["ldap", "test", "alice"]));
    assert_eq!(
        line(&text, "entry"),
        "uid=alice,ou=people,dc=example,dc=org"
    );
    assert_eq!(line(&text, "username"), "alice (uid)");
    assert_eq!(line(&text, "display name"), "Alice Liddell (cn)");
    assert_eq!(line(&text, "e-mail"), "alice@example.org (mail)");
    assert!(
        line(&text, "groups").starts_with("admins, staff (search: "),
        "{text}"
    );
    assert_eq!(
        line(&text, "administrator"),
        "yes (ldap.admin_group = admins)"
    );
    assert_eq!(line(&text, "disabled"), "no ((pwdAccountLockedTime=*))");
    assert_eq!(
        line(&text, "gatehouse user"),
        "none yet (made at the first sign-in)"
    );
    assert!(
        line(&text, "directory").contains("TLS, openldap preset"),
        "{text}"
    );
    let carol = stdout(&gatehouse(dir.path(), &s, &["ldap", "test", "carol"]));
    assert!(line(&carol, "disabled").starts_with("yes"), "{carol}");
    assert_eq!(
        line(&carol, "administrator"),
        "no (ldap.admin_group = admins)"
    );
    // The AD-shaped tree: sAMAccountName, memberOf.
    let ad = ad_settings(&slapd, &[]);
    let erin = stdout(&gatehouse(dir.path(), &ad, &["ldap", "test", "erin"]));
    assert_eq!(
        line(&erin, "groups"),
        "Domain Admins, IT, Europe (memberOf)"
    );
    assert!(line(&erin, "id").starts_with("hex:109a00ff"), "{erin}");
    let check = stdout(&gatehouse(dir.path(), &s, &["check-config"]));
    for shown in [&text, &carol, &erin, &check] {
        assert!(!shown.contains(SERVICE_PASSWORD), "{shown}");
    }
    assert!(check.contains("ldap.bind_password"), "{check}");
    // Names that cannot be usernames never reach the directory; unknown
    // and ambiguous names are said so.
    for bad in ["*", "alice)(uid=*", "\\", "a b"] {
        let err = stderr(&gatehouse(dir.path(), &s, &["ldap", "test", bad]));
        assert!(err.contains("username"), "{bad:?}: {err}");
    }
    let err = stderr(&gatehouse(dir.path(), &s, &["ldap", "test", "nobody"]));
    assert!(err.contains("no entry"), "{err}");
    let err = stderr(&gatehouse(dir.path(), &s, &["ldap", "test", "twin"]));
    assert!(err.contains("several entries"), "{err}");
    // A wrong service password is said as such, without the password.
    let wrong = settings(&slapd, &[("ldap.bind_password", "wrong-svc-pw")]);
    let err = stderr(&gatehouse(dir.path(), &wrong, &["ldap", "test", "alice"]));
    assert!(err.contains("service account"), "{err}");
    assert!(!err.contains("wrong-svc-pw"), "{err}");
    // No directory configured.
    let err = stderr(&gatehouse(dir.path(), &[], &["ldap", "test", "alice"]));
    assert!(err.contains("no directory is configured"), "{err}");
}

#[test]
fn ldap_sync_lists_users_whose_entry_is_gone_disabled_or_changed() {
    let Some(slapd) = Slapd::start("ldap::cli_sync") else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(&slapd, &[]);
    let d = directory(&s);
    let users = gatehouse::app::open_backends(
        &config(dir.path(), &s),
        gatehouse::db::ForeignWal::MoveAside,
    )
    .expect("backends")
    .users;
    // As sign-ins would have made them: alice (whose display name has
    // changed since), carol (locked since), and someone whose entry is gone.
    let Found::One(alice) = d.lookup(&name("alice")).expect("answer") else {
        panic!("alice");
    };
    let Found::One(carol) = d.lookup(&name("carol")).expect("answer") else {
        panic!("carol");
    };
    for (entry, display) in [(&alice, "Alice Old"), (&carol, "Carol Locked")] {
        let user = External {
            id: &entry.id,
            username: &name(&entry.username),
            display_name: Some(display),
            email: entry.email.as_deref(),
        };
        users.upsert_external(Source::Ldap, &user).expect("made");
    }
    let ghost = External {
        id: "5e0f7c1a-0000-4000-8000-000000000000",
        username: &name("ghost"),
        display_name: None,
        email: None,
    };
    users.upsert_external(Source::Ldap, &ghost).expect("made");
    // A local user is none of sync's business.
    users
        .create(&name("localadmin"), "password1", true)
        .expect("local");
    drop(users);
    let text = stdout(&gatehouse(dir.path(), &s, &["ldap", "sync", "--dry-run"]));
    let row = |who: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(who))
            .unwrap_or_else(|| panic!("no line for {who} in\n{text}"))
    };
    assert!(row("ghost").contains("gone from the directory"), "{text}");
    assert!(row("carol").contains("disabled in the directory"), "{text}");
    assert!(
        row("alice").contains("display name -> Alice Liddell"),
        "{text}"
    );
    assert!(!text.contains("localadmin"), "{text}");
    assert!(text.contains("3 directory user(s): 3 to change"), "{text}");
    // --dry-run only lists: the users are as they were.
    let users = gatehouse::app::open_backends(
        &config(dir.path(), &s),
        gatehouse::db::ForeignWal::MoveAside,
    )
    .expect("backends")
    .users;
    let ghost = users.find_by_name("ghost").expect("find").expect("kept");
    assert!(!ghost.disabled);
    assert_eq!(
        users.profile(ghost.id).expect("profile").map(|p| p.source),
        Some(Source::Ldap)
    );
    drop(users);
    // Without it, the changes are made: ghost and carol disabled, alice's
    // display name and groups brought in step (staff; the directory's
    // "admins" is not gatehouse's without `ldap.admin_group`).
    let text = stdout(&gatehouse(dir.path(), &s, &["ldap", "sync"]));
    assert!(
        row_of(&text, "ghost").contains("disabled and signed out"),
        "{text}"
    );
    assert!(
        row_of(&text, "carol").contains("disabled and signed out"),
        "{text}"
    );
    assert!(
        row_of(&text, "alice").contains("updated: display name -> Alice Liddell"),
        "{text}"
    );
    assert!(text.contains("3 directory user(s): 3 changed"), "{text}");
    let users = gatehouse::app::open_backends(
        &config(dir.path(), &s),
        gatehouse::db::ForeignWal::MoveAside,
    )
    .expect("backends")
    .users;
    assert!(
        users
            .find_by_name("ghost")
            .expect("find")
            .expect("kept")
            .disabled
    );
    assert!(
        users
            .find_by_name("carol")
            .expect("find")
            .expect("kept")
            .disabled
    );
    let alice = users.find_by_name("alice").expect("find").expect("kept");
    assert!(!alice.disabled);
    assert_eq!(alice.groups, ["staff"]);
    assert_eq!(
        users
            .profile(alice.id)
            .expect("profile")
            .and_then(|p| p.display_name)
            .as_deref(),
        Some("Alice Liddell")
    );
    drop(users);
    // Again: nothing left to do.
    let text = stdout(&gatehouse(dir.path(), &s, &["ldap", "sync"]));
    assert!(
        text.contains("3 directory user(s): 0 changed, 3 unchanged"),
        "{text}"
    );
}

/// The line of `ldap sync`'s output for `who`.
fn row_of<'a>(text: &'a str, who: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(who))
        .unwrap_or_else(|| panic!("no line for {who} in\n{text}"))
}

#[test]
fn migrate_store_keeps_where_directory_users_come_from() {
    let Some(postgres) = gatehouse::db::postgres::test_url() else {
        return;
    };
    if !crate::helpers::on_sqlite("ldap::migrate_store") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let users = gatehouse::app::open_backends(
        &config(dir.path(), &[]),
        gatehouse::db::ForeignWal::MoveAside,
    )
    .expect("backends")
    .users;
    let (made, _) = users
        .upsert_external(
            Source::Ldap,
            &External {
                id: "id-of-hanna",
                username: &name("hanna"),
                display_name: Some("Hanna"),
                email: Some("hanna@example.org"),
            },
        )
        .expect("made");
    drop(users);
    let schema = gatehouse::db::postgres::scratch_schema(&postgres).expect("schema");
    let file = dir.path().join("gatehouse.db");
    let shared = vec![("database".to_owned(), schema.clone())];
    let out = crate::helpers::command(BIN)
        .args(["migrate-store", "--from", file.to_str().expect("utf-8")])
        .env("GATEHOUSE_DATA", dir.path())
        .env("GATEHOUSE_DATABASE", &schema)
        .output()
        .expect("run");
    assert!(stdout(&out).contains("copied 1 users"));
    let moved = gatehouse::app::open_backends(
        &config(dir.path(), &shared),
        gatehouse::db::ForeignWal::MoveAside,
    )
    .expect("backends")
    .users;
    assert_eq!(
        moved.profile(made.id).expect("profile"),
        Some(Profile {
            source: Source::Ldap,
            external_id: Some("id-of-hanna".into()),
            display_name: Some("Hanna".into()),
            email: Some("hanna@example.org".into()),
            email_verified: false,
        })
    );
    assert_eq!(
        moved
            .find_by_external(Source::Ldap, "id-of-hanna")
            .expect("find")
            .map(|u| u.id),
        Some(made.id)
    );
}

#[test]
fn ldap_without_tls_is_warned_about_at_start_and_in_check_config() {
    let dir = tempfile::tempdir().expect("dir");
    let insecure = vec![
        ("ldap.url".to_owned(), "ldap://127.0.0.1:1".to_owned()),
        ("ldap.insecure".to_owned(), "true".to_owned()),
        ("ldap.base_dn".to_owned(), "dc=example,dc=org".to_owned()),
    ];
    let check = stdout(&gatehouse(dir.path(), &insecure, &["check-config"]));
    assert!(check.contains("warning: ldap.insecure = true"), "{check}");
    // serve says it on stderr before it listens (the directory is not
    // contacted at start: it is down here, and the server starts anyway).
    let mut env = crate::helpers::backend_env(dir.path());
    env.extend(
        insecure
            .iter()
            .map(|(k, v)| (gatehouse::config::env_name(k), v.clone())),
    );
    let mut child = crate::helpers::command(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GATEHOUSE_DATA", dir.path())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).expect("a line");
    assert!(first.contains("listening on"), "{first}");
    let _ = child.kill();
    let done = child.wait_with_output().expect("stopped");
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(
        log.contains("warning: ldap.insecure = true") && log.contains("without TLS"),
        "{log}"
    );
    // With TLS (the default), no such warning.
    let tls = vec![
        ("ldap.url".to_owned(), "ldaps://ldap.lan".to_owned()),
        ("ldap.base_dn".to_owned(), "dc=example,dc=org".to_owned()),
    ];
    let check = stdout(&gatehouse(dir.path(), &tls, &["check-config"]));
    assert!(!check.contains("warning"), "{check}");
    assert!(check.contains("ldaps://ldap.lan"), "{check}");
}

#[test]
fn directory_users_sign_in_with_their_groups_and_an_outage_spares_local_users() {
    let Some(mut slapd) = Slapd::start("ldap::server_sign_in") else {
        return;
    };
    let mut settings = settings(&slapd, &[("ldap.admin_group", "admins")]);
    settings.push(("login_max_failures".to_owned(), "100".to_owned()));
    // An app that takes passwords over Basic, echoing who it was told.
    let (upstream, stop_upstream) = crate::helpers::upstream(|request| {
        rouille::Response::text(request.header("Remote-User").unwrap_or("-").to_owned())
    });
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        format!(
            "[[apps]]\nname = \"books\"\nprefix = \"/apps/books/\"\nupstream = \"http://{upstream}\"\nbasic_auth = \"password\"\n"
        ),
    )
    .expect("config");
    let app = crate::helpers::TestApp::spawn_in(dir, settings);
    app.add_user("root", "correct horse", true);
    // A local user named like a directory entry stays the local user.
    app.add_user("dave", "local horse", false);
    assert_eq!(app.browser().get("/healthz").body, "ok");
    // Through the sign-in page, with the directory's password: made here
    // as a directory user, with the directory's groups (admins by
    // `ldap.admin_group`).
    let alice = app.browser();
    assert_eq!(alice.login("alice", "alice-password").status, 303);
    let verify = alice.get("/auth/verify");
    assert_eq!(verify.status, 200);
    assert_eq!(verify.header("Remote-User"), Some("alice"));
    assert_eq!(verify.header("Remote-Groups"), Some("admins,staff"));
    let users = &app.state().users;
    let made = users.get_by_name("alice").expect("made");
    let profile = users.profile(made.id).expect("read").expect("a profile");
    assert_eq!(profile.source, Source::Ldap);
    assert_eq!(profile.display_name.as_deref(), Some("Alice Liddell"));
    // A group named "ad<TAB>mins" (and one "st<DEL>aff"): skipped, never
    // read as `admins` (a hostile pass became an administrator so).
    let mut conn = slapd.admin("dc=example,dc=org");
    for (rdn, cn) in [("evil", "ad\tmins"), ("evil2", "st\u{7f}aff2")] {
        slapd.add(
            &mut conn,
            &format!("description={rdn},ou=groups,dc=example,dc=org"),
            &[
                ("objectClass", &[b"groupOfNames".as_slice()]),
                ("cn", &[cn.as_bytes()]),
                ("description", &[rdn.as_bytes()]),
                (
                    "member",
                    &[b"uid=bob,ou=people,dc=example,dc=org".as_slice()],
                ),
            ],
        );
    }
    // bob: staff, and "R&D, Europe", which cannot be a group name here.
    let bob = app.browser();
    assert_eq!(bob.login("BOB", "bob-password").status, 303);
    assert_eq!(bob.get("/auth/verify").header("Remote-User"), Some("bob"));
    assert_eq!(
        bob.get("/auth/verify").header("Remote-Groups"),
        Some("staff")
    );
    // Wrong passwords and unknown names look alike, and filter
    // injection finds no one.
    for (name, password) in [
        ("alice", "bob-password"),
        ("nobody", "alice-password"),
        ("*", "alice-password"),
        ("alice)(uid=*", "alice-password"),
        ("twin", "twin-password"),
    ] {
        let r = app.browser().login(name, password);
        assert_eq!(r.status, 401, "{name}: {}", r.body);
    }
    // Basic with the directory's password, where the app takes passwords:
    // bound once, then remembered for a minute.
    let basic = |name: &str, password: &str| {
        use base64::Engine as _;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
        crate::helpers::Browser::new(&app.base).get_with(
            "/apps/books/",
            &[("Authorization", &format!("Basic {pair}"))],
        )
    };
    let r = basic("bob", "bob-password");
    assert_eq!((r.status, r.body.as_str()), (200, "bob"));
    // And the JSON API's sign-in.
    let api = app.browser();
    let r = api.send_json(
        "POST",
        "/api/login",
        r#"{"username":"alice","password":"alice-password"}"#,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api.get("/auth/verify").header("Remote-User"), Some("alice"));
    let r = api.send_json(
        "POST",
        "/api/login",
        r#"{"username":"alice","password":"bob-password"}"#,
        &[],
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(basic("bob", "alice-password").status, 401);
    // A directory user's name taken by a local user stays the local
    // user's: the directory's password is no way in as them.
    assert_eq!(app.browser().login("dave", "dave-password").status, 401);
    let dave = app.browser();
    assert_eq!(dave.login("dave", "local horse").status, 303);
    assert_eq!(dave.get("/auth/verify").header("Remote-Groups"), Some(""));
    // A directory user's password is the directory's: the account page
    // says so and sets none here (a local hash would take over from the
    // directory, its disabling and its password changes).
    let csrf = alice.get("/account").csrf().expect("csrf");
    let r = alice.post_form(
        "/account/password",
        &[
            ("csrf", &csrf),
            ("username", "alice"),
            ("current", "alice-password"),
            ("password", "a brand new password"),
            ("password2", "a brand new password"),
        ],
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("directory"), "{}", r.body);
    assert_eq!(
        app.browser().login("alice", "a brand new password").status,
        401
    );
    // Nor does an administrator's reset (409, said on the page; it was a
    // 500 before a hostile pass).
    let root = app.browser();
    assert_eq!(root.login("root", "correct horse").status, 303);
    let csrf = root.get("/admin/users").csrf().expect("csrf");
    let r = root.post_form(
        "/admin/users/password",
        &[
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", "a brand new password"),
        ],
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("directory"), "{}", r.body);
    // The directory goes away: directory users get a clear 503, the
    // local administrator signs in, sessions already made keep working.
    slapd.stop();
    let r = app.browser().login("bob", "bob-password");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("directory cannot be reached"), "{}", r.body);
    // /healthz names it, and stays 200: gatehouse serves local users.
    let health = app.browser().get("/healthz");
    assert_eq!(health.status, 200);
    assert!(
        health.body.contains("directory cannot be reached"),
        "{}",
        health.body
    );
    assert_eq!(app.browser().login("root", "correct horse").status, 303);
    assert_eq!(alice.get("/auth/verify").status, 200);
    // bob's Basic pair, verified a moment ago, goes on for its minute; a
    // pair never verified cannot be checked (503, not a wrong password).
    assert_eq!(basic("bob", "bob-password").status, 200);
    assert_eq!(basic("alice", "alice-password").status, 503);
    stop_upstream.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Not a test: a throw-away directory for a pass by hand (`cargo test
/// --test http ldap::a_directory_to_try_by_hand -- --ignored --nocapture`):
/// prints its URLs, the CA file and the service account, and serves
/// until the file named by `GATEHOUSE_SLAPD_STOP` (default
/// `/tmp/gatehouse-slapd-stop`) exists.
#[test]
#[ignore = "serves a directory for trying by hand"]
fn a_directory_to_try_by_hand() {
    let Some(slapd) = Slapd::start("ldap::by_hand") else {
        return;
    };
    let stop = std::env::var("GATEHOUSE_SLAPD_STOP")
        .unwrap_or_else(|_| "/tmp/gatehouse-slapd-stop".to_owned());
    println!(
        "ldap: {}\nldaps: {}\nca_file: {}\nbind_dn: {SERVICE_DN}\nbind_password: {SERVICE_PASSWORD}\nbase_dn: dc=example,dc=org\nusers: alice, bob, carol (locked), twin (x2), dave; password: NAME-password",
        slapd.ldap_url(),
        slapd.ldaps_url(),
        slapd.ca_file.display()
    );
    while !std::path::Path::new(&stop).exists() {
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_server_signs_out_a_user_removed_from_the_directory_at_the_next_sync() {
    let Some(slapd) = Slapd::start("ldap::periodic_sync") else {
        return;
    };
    let mut settings = settings(&slapd, &[("ldap.sync_interval", "1s")]);
    settings.push(("login_max_failures".to_owned(), "100".to_owned()));
    let app = crate::helpers::TestApp::spawn_in(tempfile::tempdir().expect("dir"), settings);
    let alice = app.browser();
    assert_eq!(alice.login("alice", "alice-password").status, 303);
    let bob = app.browser();
    assert_eq!(bob.login("bob", "bob-password").status, 303);
    let users = &app.state().users;
    let made = users.get_by_name("alice").expect("made");
    let (token, _) = users
        .tokens()
        .create(
            &made,
            &gatehouse::users::tokens::NewToken {
                name: "script".into(),
                ..Default::default()
            },
            gatehouse::clock::now(),
        )
        .expect("token");
    let by_token = || {
        crate::helpers::Browser::new(&app.base)
            .get_with(
                "/auth/verify",
                &[("Authorization", &format!("Bearer {token}"))],
            )
            .status
    };
    assert_eq!(by_token(), 200);
    slapd.delete("dc=example,dc=org", "uid=alice,ou=people,dc=example,dc=org");
    let deadline = Instant::now() + Duration::from_secs(15);
    while alice.get("/auth/verify").status == 200 {
        assert!(Instant::now() < deadline, "alice is still signed in");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(by_token(), 401, "her token ended with her sessions");
    assert!(users.get_by_name("alice").expect("kept").disabled);
    assert_eq!(alice.login("alice", "alice-password").status, 401);
    // bob is still in the directory, and still signed in.
    assert_eq!(bob.get("/auth/verify").status, 200);
}
