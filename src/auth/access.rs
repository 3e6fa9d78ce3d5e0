//! The one access decision: may this [`Principal`] (or an anonymous
//! visitor) have this [`Target`], by the app's [`Rules`]? Forward auth, the
//! built-in proxy, the start page, the sign-in page's next step and
//! `check-config --explain` all ask [`decide`]; no other code decides who
//! may pass. Pure: plain data in, a [`Verdict`] with its reason out.
//!
//! An app's rules are tried in order and the first that matches decides;
//! when none does, the app's default policy does. A rule matches when each
//! condition it states holds (the path, the method, the client's network,
//! and who is asking: a user or group); a condition it leaves out holds
//! for every request.
//!
//! Paths are matched on the normalised path (percent-decoding of what
//! needs none, dot segments resolved, slashes collapsed: `auth/path.rs`),
//! the one the built-in proxy forwards and forward auth is told, so
//! `/api/health/../admin`, `%2e%2e` or `//admin` cannot reach a bypassed
//! rule's neighbour. A path with `;parameters` is also read as Java
//! servers read it (each segment's `;...` dropped, `..;` as `..`), and the
//! stricter of the two decisions stands: `/static/..;/admin` is not a
//! static file to a Tomcat behind the gate.

use std::fmt;

use ipnet::IpNet;

use crate::identity::{ADMINS, Principal, Target};

/// What the settings say about who may pass (`default_policy`, and an
/// app's `allow`/`users` keys): read into [`Rules`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any signed-in user (the default).
    SignedIn,
    /// Administrators only.
    Admins,
    /// These users only (names compared without regard to case).
    Users(Vec<String>),
    /// Nobody (the `deny` default policy).
    Nobody,
}

/// What a matching rule (or the default) does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Let it through, signed in or not.
    Bypass,
    /// Refuse it, whoever asks.
    Deny,
    /// Any signed-in user.
    SignedIn,
    /// A signed-in user whose session gave a second factor.
    TwoFactor,
}

impl Policy {
    /// The policy's name as the settings spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Deny => "deny",
            Self::SignedIn => "signed_in",
            Self::TwoFactor => "two_factor",
        }
    }
}

/// One rule: the conditions it states (an empty list states none) and
/// its policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Globs on the normalised path (`*` matches any run of characters,
    /// `/` included); one must match.
    pub paths: Vec<String>,
    /// Methods (compared without regard to case); one must match.
    pub methods: Vec<String>,
    /// Networks the client address (after `trusted_proxies`) must be in.
    pub networks: Vec<IpNet>,
    /// Users it is for (names compared without regard to case).
    pub users: Vec<String>,
    /// Groups it is for: the asker must be in one of them.
    pub groups: Vec<String>,
    /// What it does.
    pub policy: Policy,
}

impl Rule {
    /// A rule with no conditions (it matches every request).
    pub fn any(policy: Policy) -> Self {
        Self {
            paths: Vec::new(),
            methods: Vec::new(),
            networks: Vec::new(),
            users: Vec::new(),
            groups: Vec::new(),
            policy,
        }
    }

    /// Whether the request conditions (path, method, network) hold.
    fn matches_request(&self, path: &str, fold_case: bool, target: &Target<'_>) -> bool {
        let path_ok = self.paths.is_empty() || self.paths.iter().any(|g| glob(g, path, fold_case));
        let method_ok = self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(target.method));
        // An IPv4-mapped IPv6 address (a dual-stack socket's IPv4 peer) is
        // the IPv4 address it carries.
        let client = target.client.to_canonical();
        let network_ok =
            self.networks.is_empty() || self.networks.iter().any(|n| n.contains(&client));
        path_ok && method_ok && network_ok
    }

    /// Whether the rule says who it is for: then an anonymous request
    /// cannot be matched until it signs in.
    fn names_someone(&self) -> bool {
        !self.users.is_empty() || !self.groups.is_empty()
    }

    /// Whether `who` is someone this rule is for.
    fn is_for(&self, who: &Principal) -> bool {
        let by_user = self.users.is_empty()
            || self
                .users
                .iter()
                .any(|u| u.eq_ignore_ascii_case(&who.user.username));
        let by_group = self.groups.is_empty() || self.groups.iter().any(|g| who.in_group(g));
        by_user && by_group
    }
}

/// An app's rules and its default policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Tried in order; the first that matches decides.
    pub rules: Vec<Rule>,
    /// What decides when no rule matches.
    pub default: Policy,
    /// Whether paths match without regard to ASCII case (an app whose
    /// upstream reads paths so: `/ADMIN/` is its `/admin/`).
    pub fold_case: bool,
}

impl Default for Rules {
    /// Any signed-in user, no rules.
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: Policy::SignedIn,
            fold_case: false,
        }
    }
}

impl Rules {
    /// The rules that `allow`/`users` (or `default_policy`) and
    /// `two_factor` mean: one rule for the named users or the
    /// administrators, then `deny`; or, for any signed-in user, no rule and
    /// that default.
    pub fn from_access(access: &Access, two_factor: bool) -> Self {
        let signed_in = if two_factor {
            Policy::TwoFactor
        } else {
            Policy::SignedIn
        };
        let only = |rule: Rule| Self {
            rules: vec![rule],
            default: Policy::Deny,
            fold_case: false,
        };
        match access {
            Access::SignedIn => Self {
                rules: Vec::new(),
                default: signed_in,
                fold_case: false,
            },
            Access::Admins => only(Rule {
                groups: vec![ADMINS.to_owned()],
                ..Rule::any(signed_in)
            }),
            Access::Users(names) => only(Rule {
                users: names.clone(),
                ..Rule::any(signed_in)
            }),
            Access::Nobody => Self {
                rules: Vec::new(),
                default: Policy::Deny,
                fold_case: false,
            },
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        let networks: Vec<String> = self.networks.iter().map(ToString::to_string).collect();
        for (what, items) in [
            ("paths", &self.paths),
            ("methods", &self.methods),
            ("networks", &networks),
            ("users", &self.users),
            ("groups", &self.groups),
        ] {
            if !items.is_empty() {
                write!(
                    f,
                    "{}{what} {}",
                    if any { " " } else { "" },
                    items.join(",")
                )?;
                any = true;
            }
        }
        if !any {
            f.write_str("any request")?;
        }
        write!(f, ": {}", self.policy.name())
    }
}

impl fmt::Display for Rules {
    /// The rules in order, then the default: `rule 1 (users alice:
    /// signed_in), otherwise deny`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules.iter().enumerate() {
            write!(f, "rule {} ({rule}), ", i + 1)?;
        }
        write!(f, "otherwise {}", self.default.name())
    }
}

/// What becomes of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It may pass.
    Allow,
    /// Whoever asks must sign in first (or again).
    SignIn,
    /// The session must add a second factor first.
    SecondFactor,
    /// It may not pass.
    Deny,
}

impl Decision {
    /// How much it holds back: `Allow` least, `Deny` most. Where a request
    /// may be read two ways, the stricter reading decides.
    pub fn strictness(self) -> u8 {
        match self {
            Self::Allow => 0,
            Self::SecondFactor => 1,
            Self::SignIn => 2,
            Self::Deny => 3,
        }
    }
}

/// The headers by which frameworks (Rails, Laravel, Express's
/// method-override, Symfony, many Java ones) let a `GET` or `POST` act as
/// another method. An upstream that honours one runs that method, so a
/// request carrying one is judged as both methods, and the stricter
/// answer stands.
pub const METHOD_OVERRIDES: &[&str] = &[
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
];

/// Which part of the rules decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecidedBy {
    /// The rule at this index (from 0, as `[[apps.rules]]` lists them).
    Rule(usize),
    /// The app's default policy (or `default_policy`).
    Default,
}

/// The decision and why: for the log and for `check-config --explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What becomes of the request.
    pub decision: Decision,
    /// Which rule, or the default.
    pub by: DecidedBy,
    /// That rule's policy.
    pub policy: Policy,
    /// Why, in words.
    pub why: &'static str,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decision = match self.decision {
            Decision::Allow => "allow",
            Decision::SignIn => "sign in",
            Decision::SecondFactor => "second factor",
            Decision::Deny => "deny",
        };
        match self.by {
            DecidedBy::Rule(i) => write!(f, "{decision}: rule {} ", i + 1)?,
            DecidedBy::Default => write!(f, "{decision}: the default ")?,
        }
        write!(f, "(policy {}): {}", self.policy.name(), self.why)
    }
}

/// Decides whether `who` (`None`: not signed in) may have `target`, by
/// `rules`. The first rule whose conditions hold decides; a rule that
/// names users or groups cannot be matched by an anonymous request, which
/// is then sent to sign in (it may be someone the rule is for).
///
/// A path with `;` is decided twice, as it is and as a Java server reads
/// it, and the stricter verdict stands (see the module docs).
#[inline]
pub fn decide(rules: &Rules, who: Option<&Principal>, target: &Target<'_>) -> Verdict {
    let first = decide_on(rules, who, target, target.path);
    if !target.path.contains(';') {
        return first;
    }
    let Some(bare) = without_parameters(target.path) else {
        return Verdict {
            decision: Decision::Deny,
            by: first.by,
            policy: Policy::Deny,
            why: "read without its ;parameters the path climbs above the root",
        };
    };
    let second = decide_on(rules, who, target, &bare);
    if severity(second.decision) > severity(first.decision) {
        second
    } else {
        first
    }
}

/// How strict a decision is: a path read two ways gets the stricter.
fn severity(decision: Decision) -> u8 {
    match decision {
        Decision::Allow => 0,
        Decision::SecondFactor => 1,
        Decision::SignIn => 2,
        Decision::Deny => 3,
    }
}

/// `path` as Java servers (Tomcat, Jetty, Spring) read it: each segment's
/// `;parameters` dropped, then dot segments resolved again (`..;` is
/// `..`); `None` when that climbs above the root.
fn without_parameters(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for segment in path.split('/').skip(1) {
        match segment.split(';').next().unwrap_or("") {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            s => out.push(s),
        }
    }
    let trailing = path.ends_with('/') || path.ends_with("/.;") || path.ends_with("/..;");
    let mut joined = format!("/{}", out.join("/"));
    if trailing && joined.len() > 1 {
        joined.push('/');
    }
    Some(joined)
}

#[inline]
fn decide_on(rules: &Rules, who: Option<&Principal>, target: &Target<'_>, path: &str) -> Verdict {
    // A token made for other apps proves nothing here: the request is
    // judged as anonymous (a bypass still lets it through; anything else
    // asks it to authenticate).
    let who = who.filter(|p| p.reaches(target.app));
    for (i, rule) in rules.rules.iter().enumerate() {
        if !rule.matches_request(path, rules.fold_case, target) {
            continue;
        }
        let policy = rule.policy;
        if rule.names_someone() {
            match who {
                None => {
                    return Verdict {
                        decision: Decision::SignIn,
                        by: DecidedBy::Rule(i),
                        policy,
                        why: "the rule names who it is for: sign in to be matched",
                    };
                }
                Some(p) if !rule.is_for(p) => continue,
                Some(_) => {}
            }
        }
        return apply(policy, DecidedBy::Rule(i), who);
    }
    apply(rules.default, DecidedBy::Default, who)
}

/// Whether a user in `groups`, signed in with `methods`, may use an
/// OpenID Connect client open to `client_groups` (empty: anyone) that
/// needs a second factor when `two_factor`: `Deny` for someone outside
/// the client's groups, `SecondFactor` for a sign-in without one, else
/// `Allow`. The provider asks here at the authorization, at every token
/// refresh (groups only: the refresh carries no sign-in) and at a device
/// code's approval, so the rule for a client lives beside the rules for
/// an app.
pub fn client_decision(
    client_groups: &[String],
    two_factor: bool,
    groups: &[String],
    methods: &[String],
) -> Decision {
    let member = client_groups.is_empty()
        || client_groups
            .iter()
            .any(|g| groups.iter().any(|h| h.eq_ignore_ascii_case(g)));
    if !member {
        Decision::Deny
    } else if two_factor && !crate::identity::two_factors(methods) {
        Decision::SecondFactor
    } else {
        Decision::Allow
    }
}

/// Whether `path` matches `pattern`, where `*` matches any run of
/// characters (`/` included) and everything else itself (in any ASCII
/// case when `fold_case`).
pub fn glob(pattern: &str, path: &str, fold_case: bool) -> bool {
    let (p, s) = (pattern.as_bytes(), path.as_bytes());
    let same = |a: u8, b: u8| {
        if fold_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // The classic two-pointer match with one backtrack point: linear in
    // practice, never exponential, whatever the pattern.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && same(p[pi], s[si]) {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// What `policy` makes of `who`.
#[inline]
fn apply(policy: Policy, by: DecidedBy, who: Option<&Principal>) -> Verdict {
    let (decision, why) = match (policy, who) {
        (Policy::Bypass, _) => (Decision::Allow, "open to everyone, signed in or not"),
        (Policy::Deny, _) => (Decision::Deny, "closed to everyone"),
        (Policy::SignedIn | Policy::TwoFactor, None) => (Decision::SignIn, "not signed in"),
        (Policy::SignedIn, Some(_)) => (Decision::Allow, "signed in"),
        (Policy::TwoFactor, Some(p)) if p.second_factor() => {
            (Decision::Allow, "signed in with a second factor")
        }
        (Policy::TwoFactor, Some(_)) => (
            Decision::SecondFactor,
            "signed in without a second factor, which this policy needs",
        ),
    };
    Verdict {
        decision,
        by,
        policy,
        why,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::identity::{Credential, User};

    fn who(name: &str, groups: &[&str], methods: &[&str]) -> Principal {
        Principal {
            user: User {
                id: 1,
                username: name.to_owned(),
                is_admin: groups.contains(&ADMINS),
                disabled: false,
                created_at: 0,
                password_changed_at: 0,
                stamp: String::new(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            },
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            credential: Credential::Session(methods.iter().map(|m| (*m).to_owned()).collect()),
        }
    }

    const GET_ROOT: Target<'static> = Target {
        app: Some("wiki"),
        path: "/",
        method: "GET",
        client: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };

    #[test]
    fn the_allow_and_users_keys_decide_as_they_always_have() {
        use Decision::{Allow, Deny, SecondFactor, SignIn};
        let alice = who("alice", &[], &["pwd"]);
        let root = who("root", &[ADMINS], &["pwd"]);
        let alice_otp = who("Alice", &[], &["pwd", "otp"]);
        let cases: &[(Access, bool, Option<&Principal>, Decision)] = &[
            (Access::SignedIn, false, None, SignIn),
            (Access::SignedIn, false, Some(&alice), Allow),
            (Access::SignedIn, true, Some(&alice), SecondFactor),
            (Access::SignedIn, true, Some(&alice_otp), Allow),
            (Access::Admins, false, None, SignIn),
            (Access::Admins, false, Some(&alice), Deny),
            (Access::Admins, false, Some(&root), Allow),
            (Access::Admins, true, Some(&root), SecondFactor),
            (
                Access::Users(vec!["ALICE".into()]),
                false,
                Some(&alice),
                Allow,
            ),
            (
                Access::Users(vec!["alice".into()]),
                false,
                Some(&root),
                Deny,
            ),
            (
                Access::Users(vec!["alice".into()]),
                true,
                Some(&alice_otp),
                Allow,
            ),
            (Access::Users(vec!["alice".into()]), true, Some(&root), Deny),
            (Access::Nobody, false, None, Deny),
            (Access::Nobody, false, Some(&root), Deny),
        ];
        for (access, two_factor, principal, expected) in cases {
            let rules = Rules::from_access(access, *two_factor);
            let verdict = decide(&rules, *principal, &GET_ROOT);
            assert_eq!(
                verdict.decision,
                *expected,
                "{access:?} two_factor={two_factor} {:?}: {verdict}",
                principal.map(|p| &p.user.username)
            );
        }
    }

    #[test]
    fn a_token_or_basic_request_never_counts_as_a_second_factor() {
        let rules = Rules::from_access(&Access::SignedIn, true);
        for credential in [Credential::Token(Vec::new()), Credential::Basic] {
            let p = Principal {
                credential,
                ..who("alice", &[], &[])
            };
            assert_eq!(
                decide(&rules, Some(&p), &GET_ROOT).decision,
                Decision::SecondFactor
            );
        }
    }

    /// Rules as `[[apps.rules]]` would give them, for the table below.
    fn rule(
        paths: &[&str],
        methods: &[&str],
        networks: &[&str],
        groups: &[&str],
        policy: Policy,
    ) -> Rule {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Rule {
            paths: strings(paths),
            methods: strings(methods),
            networks: networks.iter().map(|n| n.parse().expect("net")).collect(),
            groups: strings(groups),
            ..Rule::any(policy)
        }
    }

    #[test]
    fn rules_decide_in_order_on_the_normalised_path_method_network_and_groups() {
        use Decision::{Allow, Deny, SecondFactor, SignIn};
        use Policy::{Bypass, SignedIn, TwoFactor};
        let rules = Rules {
            rules: vec![
                rule(&["/api/health", "/static/*"], &[], &[], &[], Bypass),
                rule(&["/admin*"], &[], &[], &[], Policy::Deny),
                rule(
                    &[],
                    &["POST", "PUT", "DELETE"],
                    &["10.0.0.0/8"],
                    &["ops"],
                    TwoFactor,
                ),
                rule(&[], &["POST", "PUT", "DELETE"], &[], &[], Policy::Deny),
                rule(&["/ops/*"], &[], &[], &["ops"], SignedIn),
                rule(&["/ops/*"], &[], &[], &[], Policy::Deny),
            ],
            default: SignedIn,
            fold_case: false,
        };
        let ops = who("olga", &["ops"], &["pwd"]);
        let ops_otp = who("olga", &["OPS"], &["pwd", "otp"]);
        let alice = who("alice", &[], &["pwd"]);
        let lan = "10.1.2.3";
        let away = "192.0.2.7";
        // (what the proxy was asked for, normalised as auth/path.rs does,
        // method, client, who, decision)
        let cases: &[(&str, &str, &str, Option<&Principal>, Decision)] = &[
            ("/api/health", "GET", away, None, Allow),
            ("/static/css/site.css", "GET", away, None, Allow),
            ("/static/", "GET", away, None, Allow),
            ("/static", "GET", away, None, SignIn),
            ("/api/healthz", "GET", away, None, SignIn),
            ("/api/health/x", "GET", away, None, SignIn),
            // Dot segments, encodings and doubled slashes are gone before
            // the rules see the path: none reaches a bypass's neighbour.
            ("/api/health/../../admin", "GET", away, Some(&alice), Deny),
            ("/api/health/..", "GET", away, None, SignIn),
            ("/static/%2e%2e/admin", "GET", away, Some(&alice), Deny),
            ("/static/x/%2E%2E/%2e%2e/admin", "GET", away, None, Deny),
            ("//admin", "GET", away, Some(&alice), Deny),
            ("/static//../admin/x", "GET", away, Some(&alice), Deny),
            ("/%61dmin", "GET", away, Some(&alice), Deny),
            // `;parameters`: as a Java server reads them too.
            ("/static/..;/admin", "GET", away, None, Deny),
            ("/static/..;/ops/x", "GET", away, None, SignIn),
            ("/static/x;v=1/y.css", "GET", away, None, Allow),
            ("/api/health;x", "GET", away, None, SignIn),
            ("/admin;x/../static/a", "GET", away, None, Allow),
            ("/static/..;/..;/x", "GET", away, None, Deny),
            // Case matters unless the app folds it.
            ("/ADMIN", "GET", away, Some(&alice), Allow),
            ("/Static/x", "GET", away, None, SignIn),
            // Methods, networks and groups, in order.
            ("/page", "POST", lan, Some(&ops), SecondFactor),
            ("/page", "post", lan, Some(&ops_otp), Allow),
            ("/page", "POST", away, Some(&ops_otp), Deny),
            ("/page", "POST", "::ffff:10.0.0.9", Some(&ops_otp), Allow),
            ("/page", "DELETE", lan, Some(&alice), Deny),
            ("/page", "POST", lan, None, SignIn),
            ("/page", "GET", lan, Some(&alice), Allow),
            ("/page", "GET", lan, None, SignIn),
            ("/ops/x", "GET", away, Some(&ops), Allow),
            ("/ops/x", "GET", away, Some(&alice), Deny),
            ("/ops/x", "GET", away, None, SignIn),
            ("/api/health", "DELETE", away, None, Allow),
        ];
        for (raw, method, client, principal, expected) in cases {
            let normal = crate::auth::path::Target::parse(raw).expect(raw);
            let target = Target {
                app: Some("wiki"),
                path: &normal.path,
                method,
                client: client.parse().expect("ip"),
            };
            let verdict = decide(&rules, *principal, &target);
            assert_eq!(
                verdict.decision,
                *expected,
                "{method} {raw} (read as {}) from {client} by {:?}: {verdict}",
                normal.path,
                principal.map(|p| &p.user.username)
            );
        }
        let folded = Rules {
            fold_case: true,
            ..rules
        };
        let target = Target {
            path: "/ADMIN/x",
            ..GET_ROOT
        };
        assert_eq!(decide(&folded, Some(&alice), &target).decision, Deny);
    }

    #[test]
    fn the_verdict_says_which_rule_decided_and_why() {
        let rules = Rules {
            rules: vec![
                rule(&["/health"], &[], &[], &[], Policy::Bypass),
                rule(&[], &[], &[], &["ops"], Policy::TwoFactor),
            ],
            default: Policy::Deny,
            fold_case: false,
        };
        let v = decide(&rules, Some(&who("olga", &["ops"], &["pwd"])), &GET_ROOT);
        assert_eq!(v.by, DecidedBy::Rule(1));
        assert_eq!(
            v.to_string(),
            "second factor: rule 2 (policy two_factor): signed in without a second factor, which this policy needs"
        );
        let v = decide(&rules, Some(&who("alice", &[], &["pwd"])), &GET_ROOT);
        assert_eq!(v.by, DecidedBy::Default);
        assert_eq!(v.decision, Decision::Deny);
    }

    #[test]
    fn globs_match_runs_of_any_characters_and_nothing_else() {
        for (pattern, path, fold, expected) in [
            ("/static/*", "/static/a/b.css", false, true),
            ("/static/*", "/static", false, false),
            ("/api/*/health", "/api/v1/health", false, true),
            ("/api/*/health", "/api/v1/healthz", false, false),
            ("*", "/anything", false, true),
            ("/a*b*c", "/aXbYc", false, true),
            ("/a*b*c", "/aXbY", false, false),
            ("/Admin", "/admin", false, false),
            ("/Admin", "/admin", true, true),
            ("/x", "/x/", false, false),
        ] {
            assert_eq!(glob(pattern, path, fold), expected, "{pattern} {path}");
        }
        // A pattern built to backtrack does not take exponential time.
        let long = format!("/{}", "a".repeat(5000));
        assert!(!glob("/*a*a*a*a*a*a*a*b", &long, false));
    }

    #[test]
    fn a_client_is_open_to_its_groups_and_asks_for_its_second_factor() {
        let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let ops = v(&["ops"]);
        assert_eq!(client_decision(&[], false, &[], &[]), Decision::Allow);
        assert_eq!(
            client_decision(&ops, false, &v(&["OPS"]), &[]),
            Decision::Allow
        );
        assert_eq!(
            client_decision(&ops, false, &v(&["opsx", "op"]), &[]),
            Decision::Deny
        );
        assert_eq!(client_decision(&ops, false, &[], &[]), Decision::Deny);
        assert_eq!(
            client_decision(&ops, true, &ops, &v(&["pwd"])),
            Decision::SecondFactor
        );
        assert_eq!(
            client_decision(&ops, true, &ops, &v(&["pwd", "otp"])),
            Decision::Allow
        );
        // Outside the groups is refused before any second factor is asked.
        assert_eq!(
            client_decision(&ops, true, &[], &v(&["pwd"])),
            Decision::Deny
        );
    }
}
