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

use std::fmt;

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
    /// Users it is for (names compared without regard to case).
    pub users: Vec<String>,
    /// Groups it is for: the asker must be in one of them.
    pub groups: Vec<String>,
    /// What it does.
    pub policy: Policy,
}

impl Rule {
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
}

impl Default for Rules {
    /// Any signed-in user, no rules.
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: Policy::SignedIn,
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
        };
        match access {
            Access::SignedIn => Self {
                rules: Vec::new(),
                default: signed_in,
            },
            Access::Admins => only(Rule {
                users: Vec::new(),
                groups: vec![ADMINS.to_owned()],
                policy: signed_in,
            }),
            Access::Users(names) => only(Rule {
                users: names.clone(),
                groups: Vec::new(),
                policy: signed_in,
            }),
            Access::Nobody => Self {
                rules: Vec::new(),
                default: Policy::Deny,
            },
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (what, items) in [("users", &self.users), ("groups", &self.groups)] {
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
pub fn decide(rules: &Rules, who: Option<&Principal>, target: &Target<'_>) -> Verdict {
    let _ = target;
    for (i, rule) in rules.rules.iter().enumerate() {
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

/// What `policy` makes of `who`.
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
        for credential in [Credential::Token, Credential::Basic] {
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
}
