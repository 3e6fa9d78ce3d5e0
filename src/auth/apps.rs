//! The guarded apps: how each is reached (a path prefix under gatehouse
//! and/or its own host name), where the built-in proxy sends it, and the
//! rules it is guarded by; which app a request belongs to. Routing only:
//! who may pass is decided in [`super::access`].

use serde::Deserialize;

use super::access::{self, Access, Decision, Policy, Rule, Rules};
use super::path::{PathError, Target};
use crate::identity::Principal;

/// Where the built-in proxy sends an app's requests: `http://host:port/base`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port`.
    pub authority: String,
    /// Path prepended to forwarded paths, without a trailing `/` (may be empty).
    pub base: String,
}

impl Upstream {
    /// Parses `http://host[:port][/base]`.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("http://").ok_or_else(|| {
            format!("{s:?} must start with http:// (HTTPS upstreams are not supported)")
        })?;
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty()
            || authority.contains('@')
            || !authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            return Err(format!("{s:?} has no valid host"));
        }
        if base.contains(['?', '#']) {
            return Err(format!("{s:?} must not have a query or fragment"));
        }
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let port = authority.rsplit(':').next().unwrap_or_default();
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{s:?} has no valid port (1 to 65535)"));
        }
        Ok(Self {
            authority,
            base: base.trim_end_matches('/').to_owned(),
        })
    }
}

/// One guarded app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// Short name, shown on the dashboard.
    pub name: String,
    /// Path prefix under gatehouse, like `/apps/wiki/`.
    pub prefix: Option<String>,
    /// Its own host name, like `wiki.lan` (lower case, may carry a port).
    pub host: Option<String>,
    /// Where the built-in proxy sends it.
    pub upstream: Option<Upstream>,
    /// Who may use it (see [`super::access::decide`]).
    pub rules: Rules,
    /// Key for the signed identity header, if the upstream checks one.
    pub identity_key: Option<Vec<u8>>,
    /// A line about it for the start page.
    pub description: Option<String>,
    /// Its icon: a path on gatehouse's origin (the pages' security policy
    /// loads images from there only).
    pub icon: Option<String>,
    /// Left off the start page and the API's list of apps.
    pub hidden: bool,
    /// Whether the prefix matches paths without regard to (ASCII) case:
    /// set for an app whose upstream reads paths so, and (by
    /// [`Apps::new`]) for every app whose prefix lies under such an app's.
    pub case_insensitive: bool,
    /// What `Authorization: Basic` may carry for this app.
    pub basic_auth: BasicAuth,
}

/// What an app takes over `Authorization: Basic` (`basic_auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BasicAuth {
    /// A personal access token as the password (the default).
    #[default]
    Token,
    /// A token, or the account password of a user without a second
    /// factor.
    Password,
    /// Nothing: the header is the app's own, passed on unread.
    Off,
}

impl BasicAuth {
    /// The setting's value as written.
    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Password => "password",
            Self::Off => "off",
        }
    }
}

impl App {
    /// What follows this app's prefix in a normalised `path` (`/page` of
    /// `/apps/wiki/page`, `""` of `/apps/wiki`), if `path` is under it.
    /// Case-sensitive unless [`App::case_insensitive`].
    pub fn after_prefix<'p>(&self, path: &'p str) -> Option<&'p str> {
        let bare = self.prefix.as_deref()?.trim_end_matches('/');
        let head = path.get(..bare.len())?;
        let same = if self.case_insensitive {
            head.eq_ignore_ascii_case(bare)
        } else {
            head == bare
        };
        let rest = &path[bare.len()..];
        (same && (rest.is_empty() || rest.starts_with('/'))).then_some(rest)
    }

    /// Whether `path` is under this app's prefix in any ASCII case.
    fn under_prefix_any_case(&self, path: &str) -> bool {
        let Some(bare) = self.prefix.as_deref().map(|p| p.trim_end_matches('/')) else {
            return false;
        };
        path.get(..bare.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(bare))
            && matches!(path.as_bytes().get(bare.len()), None | Some(b'/'))
    }

    /// The path this app sees of a normalised request `path`: what
    /// follows its prefix (`/` for the prefix itself) when `path` is
    /// under it, else all of it (the app's own host). Access rules match
    /// on this, so one rule holds whichever way the app is reached.
    pub fn path_seen<'p>(&self, path: &'p str) -> &'p str {
        match self.after_prefix(path) {
            Some("") => "/",
            Some(rest) => rest,
            None => path,
        }
    }

    /// Where the dashboard links to.
    pub fn link(&self) -> String {
        match (&self.prefix, &self.host) {
            (Some(p), _) => p.clone(),
            (None, Some(h)) => format!("//{h}/"),
            (None, None) => "/".to_owned(),
        }
    }
}

/// An app as written in `gatehouse.toml`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    name: String,
    prefix: Option<String>,
    host: Option<String>,
    upstream: Option<String>,
    allow: Option<String>,
    users: Option<Vec<String>>,
    identity_key: Option<String>,
    #[serde(default)]
    two_factor: bool,
    #[serde(default)]
    case_insensitive: bool,
    description: Option<String>,
    icon: Option<String>,
    #[serde(default)]
    hidden: bool,
    basic_auth: Option<String>,
    /// `[[apps.rules]]`, tried in order before what `allow`/`users` say.
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

/// One `[[apps.rules]]` table as written. Every key is optional to serde
/// so that a missing `policy` is reported with the app and rule it
/// belongs to, not as a bare parse error.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    paths: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    networks: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    users: Option<Vec<String>>,
    policy: Option<String>,
}

impl RuleSpec {
    /// Validates into a [`Rule`]; an error names the field.
    fn build(&self) -> Result<Rule, (&'static str, String)> {
        let list = |field: &'static str, items: &Option<Vec<String>>| match items {
            Some(v) if v.is_empty() => Err((
                field,
                "the list is empty (leave the key out to match any)".to_owned(),
            )),
            Some(v) => Ok(v.clone()),
            None => Ok(Vec::new()),
        };
        let paths = list("paths", &self.paths)?;
        for p in &paths {
            // A pattern is compared with normalised paths, so one that is
            // not itself normal (`/a/../b`, `%7e`, `//x`, a query) could
            // never match what it seems to name: refused, with the form
            // that would.
            let normal = Target::parse(p).ok().filter(|t| t.query.is_none());
            match normal {
                Some(t) if t.path == *p => {}
                Some(t) => {
                    return Err((
                        "paths",
                        format!("{p:?} is not in normal form: write {:?}", t.path),
                    ));
                }
                None => {
                    return Err((
                        "paths",
                        format!(
                            "{p:?} is not a path (it must start with / and have no query, fragment, %2F, .. above the root or control characters)"
                        ),
                    ));
                }
            }
        }
        let methods = list("methods", &self.methods)?;
        let methods = methods
            .iter()
            .map(|m| {
                let ok = !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-');
                if ok {
                    Ok(m.to_ascii_uppercase())
                } else {
                    Err(("methods", format!("{m:?} is not an HTTP method")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let networks = list("networks", &self.networks)?
            .iter()
            .map(|n| super::proxy::parse_network(n).map_err(|e| ("networks", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let names = |field: &'static str, items: &Option<Vec<String>>| {
            let v = list(field, items)?;
            if let Some(bad) = v.iter().find(|n| {
                n.is_empty()
                    || n.contains(',')
                    || n.chars().any(|c| c.is_control() || c.is_whitespace())
            }) {
                return Err((field, format!("{bad:?} is not a name")));
            }
            Ok(v)
        };
        let groups = names("groups", &self.groups)?;
        let users = names("users", &self.users)?;
        let policy = match self.policy.as_deref() {
            Some("bypass") => Policy::Bypass,
            Some("deny") => Policy::Deny,
            Some("signed_in") => Policy::SignedIn,
            Some("two_factor") => Policy::TwoFactor,
            Some(other) => {
                return Err((
                    "policy",
                    format!("{other:?} is not bypass, deny, signed_in or two_factor"),
                ));
            }
            None => return Err(("policy", "every rule needs one".to_owned())),
        };
        if policy == Policy::Bypass && !(groups.is_empty() && users.is_empty()) {
            // A bypass lets in whoever has not signed in: naming users or
            // groups on it would promise a limit it cannot keep.
            return Err((
                "policy",
                "a bypass rule lets everyone in, so it cannot name users or groups".to_owned(),
            ));
        }
        Ok(Rule {
            paths,
            methods,
            networks,
            users,
            groups,
            policy,
        })
    }
}

/// Paths gatehouse serves itself; an app prefix may not shadow them.
const RESERVED: &[&str] = &[
    "/login",
    "/logout",
    "/account",
    "/admin",
    "/assets",
    "/auth",
    "/api",
    "/setup",
    "/register",
    "/healthz",
    "/metrics",
    // The OpenID Provider's endpoints (src/oidc/discovery.rs).
    "/oidc",
    "/device",
    "/.well-known",
];

/// A problem with one app's settings: which app, which field, what.
#[derive(Debug, PartialEq, Eq)]
pub struct AppConfigError {
    /// The app's name (or its position when it has none).
    pub app: String,
    /// The field (`rules[2].paths` for a rule's, counting from 1).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl AppSpec {
    /// Validates into an [`App`].
    ///
    /// # Errors
    ///
    /// The first bad field.
    pub fn build(&self) -> Result<App, AppConfigError> {
        let err = |field: &'static str, reason: String| AppConfigError {
            app: self.name.clone(),
            field: field.to_owned(),
            reason,
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_. ".contains(&b))
        {
            return Err(err(
                "name",
                "must be 1-64 letters, digits, spaces, '-', '_' or '.'".into(),
            ));
        }
        let prefix = match &self.prefix {
            None => None,
            Some(p) => {
                if !p.starts_with('/') || !p.ends_with('/') || p.len() < 3 || p.contains("//") {
                    return Err(err(
                        "prefix",
                        format!("{p:?} must look like /apps/wiki/ (leading and trailing slash)"),
                    ));
                }
                if p.bytes()
                    .any(|b| b.is_ascii_control() || b == b'?' || b == b'#' || b == b'\\')
                {
                    return Err(err(
                        "prefix",
                        format!("{p:?} contains characters not allowed in a path"),
                    ));
                }
                if let Some(r) = RESERVED.iter().find(|r| p.starts_with(&format!("{r}/"))) {
                    return Err(err(
                        "prefix",
                        format!("{p:?} is inside gatehouse's own {r}/"),
                    ));
                }
                Some(p.clone())
            }
        };
        let host = match &self.host {
            None => None,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                if h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
                {
                    return Err(err("host", format!("{h:?} is not a host name")));
                }
                Some(h)
            }
        };
        if prefix.is_none() && host.is_none() {
            return Err(err(
                "prefix",
                "an app needs a prefix, a host, or both".into(),
            ));
        }
        let upstream = match &self.upstream {
            None if prefix.is_some() => {
                return Err(err(
                    "upstream",
                    "an app with a prefix is served by the built-in proxy and needs an upstream"
                        .into(),
                ));
            }
            None => None,
            Some(u) => Some(Upstream::parse(u).map_err(|e| err("upstream", e))?),
        };
        let access = match (self.allow.as_deref(), &self.users) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "users",
                    "give either `allow` or `users`, not both".into(),
                ));
            }
            (None, Some(users)) if users.is_empty() => {
                return Err(err("users", "the list is empty".into()));
            }
            (None, Some(users)) => Access::Users(users.clone()),
            (None | Some("signed_in"), None) => Access::SignedIn,
            (Some("admins"), None) => Access::Admins,
            (Some(other), None) => {
                return Err(err(
                    "allow",
                    format!("{other:?} is not `signed_in` or `admins` (list names in `users`)"),
                ));
            }
        };
        let identity_key = match &self.identity_key {
            None => None,
            Some(k) if k.len() >= 32 => Some(k.as_bytes().to_vec()),
            Some(_) => return Err(err("identity_key", "must be at least 32 bytes long".into())),
        };
        let mut rules = Vec::new();
        for (i, spec) in self.rules.iter().enumerate() {
            let rule = spec.build().map_err(|(field, reason)| AppConfigError {
                app: self.name.clone(),
                field: format!("rules[{}].{field}", i + 1),
                reason,
            })?;
            rules.push(rule);
        }
        let description = match &self.description {
            Some(d) if d.chars().count() > 200 || d.chars().any(char::is_control) => {
                return Err(err(
                    "description",
                    "must be at most 200 characters, without control characters".into(),
                ));
            }
            d => d.clone(),
        };
        let icon = match &self.icon {
            // Only a path on gatehouse's own origin: the pages' security
            // policy (`default-src 'self'`) would block any other, and a
            // `javascript:` or `data:` URL never reaches a page.
            Some(i)
                if !i.starts_with('/')
                    || i.starts_with("//")
                    || i.len() > 512
                    || i.bytes()
                        .any(|b| b.is_ascii_control() || b" \"'<>\\".contains(&b)) =>
            {
                return Err(err(
                    "icon",
                    format!(
                        "{i:?} must be a path on gatehouse's origin, like /apps/wiki/favicon.png"
                    ),
                ));
            }
            i => i.clone(),
        };
        let basic_auth = match self.basic_auth.as_deref() {
            None | Some("token") => BasicAuth::Token,
            Some("password") => BasicAuth::Password,
            Some("off") => BasicAuth::Off,
            Some(other) => {
                return Err(err(
                    "basic_auth",
                    format!("{other:?} is not one of \"token\", \"password\", \"off\""),
                ));
            }
        };
        // The rules first, then what `allow`/`users`/`two_factor` say.
        let mut legacy = Rules::from_access(&access, self.two_factor);
        rules.append(&mut legacy.rules);
        let rules = Rules { rules, ..legacy };
        Ok(App {
            name: self.name.clone(),
            prefix,
            host,
            upstream,
            rules,
            identity_key,
            description,
            icon,
            hidden: self.hidden,
            case_insensitive: self.case_insensitive,
            basic_auth,
        })
    }
}

/// `path` as a proxy that matches paths without regard to case may read
/// it: escapes of bytes past ASCII decoded, and each character whose
/// lower or upper case is an ASCII letter read as that letter (Go's
/// `strings.ToLower`, which Caddy's `path` matcher uses, makes `İ` an `i`
/// and the Kelvin sign `K` a `k`; `ſ` is an `s` in upper case). Prefixes
/// are ASCII, so this is all a comparison with one needs. A path with
/// nothing past ASCII comes back as it is.
fn folded(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') && path.is_ascii() {
        return std::borrow::Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => match (hex(h), hex(l)) {
                (Some(h), Some(l)) if h >= 8 => {
                    decoded.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 3;
                    continue;
                }
                _ => decoded.push(b'%'),
            },
            (b, _, _) => decoded.push(b),
        }
        i += 1;
    }
    let letter = |c: Option<char>| c.filter(char::is_ascii_alphabetic);
    std::borrow::Cow::Owned(
        String::from_utf8_lossy(&decoded)
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    return c;
                }
                letter(c.to_lowercase().next())
                    .or_else(|| letter(c.to_uppercase().next()))
                    .unwrap_or(c)
            })
            .collect(),
    )
}

/// All apps and the default policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Apps {
    apps: Vec<App>,
    /// For requests that match no app, as configured.
    pub default: Option<Access>,
    /// The same as rules.
    default_rules: Rules,
}

impl Apps {
    /// Checks the set as a whole (unique names, prefixes and hosts), and
    /// passes `case_insensitive` on to every app whose prefix lies under
    /// the prefix of an app that has it: the outer app's upstream would
    /// serve `/apps/site/PRIVATE/` as its `private/` area, so the nested
    /// `/apps/site/private/` app must claim that spelling too.
    ///
    /// # Errors
    ///
    /// The first clash.
    pub fn new(mut apps: Vec<App>, default: Access) -> Result<Self, AppConfigError> {
        let folded: Vec<String> = apps
            .iter()
            .filter(|a| a.case_insensitive)
            .filter_map(|a| a.prefix.as_deref())
            .map(str::to_ascii_lowercase)
            .collect();
        for app in &mut apps {
            let inherits = app.prefix.as_deref().is_some_and(|p| {
                let p = p.to_ascii_lowercase();
                folded.iter().any(|outer| p.starts_with(outer.as_str()))
            });
            app.case_insensitive |= inherits;
            app.rules.fold_case = app.case_insensitive;
        }
        for (i, a) in apps.iter().enumerate() {
            for b in &apps[..i] {
                let clash = |field: &'static str, what: &str| AppConfigError {
                    app: a.name.clone(),
                    field: field.to_owned(),
                    reason: format!("{what} is also used by app {:?}", b.name),
                };
                if a.name.eq_ignore_ascii_case(&b.name) {
                    return Err(clash("name", "the name"));
                }
                let same_prefix = match (&a.prefix, &b.prefix) {
                    (Some(pa), Some(pb)) if a.case_insensitive || b.case_insensitive => {
                        pa.eq_ignore_ascii_case(pb)
                    }
                    (Some(pa), Some(pb)) => pa == pb,
                    _ => false,
                };
                if same_prefix {
                    return Err(clash("prefix", "the prefix"));
                }
                if a.host.is_some() && a.host == b.host {
                    return Err(clash("host", "the host"));
                }
            }
        }
        Ok(Self {
            apps,
            default_rules: Rules::from_access(&default, false),
            default: Some(default),
        })
    }

    /// Every app.
    pub fn all(&self) -> &[App] {
        &self.apps
    }

    /// The app whose host is `host` (`Host` header; compared in lower case,
    /// with or without the port).
    ///
    /// A fully qualified name's trailing dot (`wiki.lan.`) names the same
    /// host: a front proxy that sends `wiki.lan.` on to the wiki must not
    /// have it judged by `default_policy` instead of the wiki's rule.
    #[inline]
    pub fn by_host(&self, host: &str) -> Option<&App> {
        let host = host.trim().to_ascii_lowercase();
        let bare = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let (host, bare) = (host.trim_end_matches('.'), bare.trim_end_matches('.'));
        self.apps
            .iter()
            .find(|a| a.host.as_deref().is_some_and(|h| h == host || h == bare))
    }

    /// The app whose prefix `path` is under (the longest match). The prefix
    /// without its trailing slash also matches, so `/apps/wiki` finds wiki.
    /// Prefixes match case-sensitively, as most upstreams read paths,
    /// unless the app says `case_insensitive` (see [`App::after_prefix`]).
    #[inline]
    pub fn by_path(&self, path: &str) -> Option<&App> {
        self.apps
            .iter()
            .filter(|a| a.after_prefix(path).is_some())
            .max_by_key(|a| a.prefix.as_ref().map_or(0, String::len))
    }

    /// The app whose prefix a normalised target is under. `raw_path` is
    /// the path as it came: a `..` that took the path above the prefix it
    /// started under, or above the one it ends under, is refused rather
    /// than guessed at (`/apps/site/x/../private/` is not let into a nested
    /// `/apps/site/private/` app, `/apps/site/../../admin` not out of one).
    ///
    /// # Errors
    ///
    /// [`PathError::LeavesApp`].
    #[inline]
    pub fn by_target(&self, target: &Target, raw_path: &str) -> Result<Option<&App>, PathError> {
        let found = self.by_path(&target.path);
        for app in [self.by_path(raw_path), found].into_iter().flatten() {
            if app
                .prefix
                .as_deref()
                .is_some_and(|p| target.climbs_above(p))
            {
                return Err(PathError::LeavesApp);
            }
        }
        // Java servers (Tomcat, Jetty, Spring) drop `;parameters` from each
        // segment before they map a path, and take `..;` for `..`: a path
        // that lands in another app (or climbs out of its own) when read
        // that way is refused, so `/apps/site/private;x/` or
        // `/apps/site/x/..;/private/` cannot reach a nested prefix.
        if target.path.contains(';') {
            let bare: Vec<&str> = target
                .path
                .split('/')
                .map(|s| s.split(';').next().unwrap_or(""))
                .collect();
            let bare = Target::parse(&bare.join("/")).map_err(|_| PathError::LeavesApp)?;
            let same = match (self.by_path(&bare.path), found) {
                (None, None) => true,
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                _ => false,
            };
            let climbs = found
                .and_then(|a| a.prefix.as_deref())
                .is_some_and(|p| bare.climbs_above(p));
            if !same || climbs {
                return Err(PathError::LeavesApp);
            }
        }
        Ok(found)
    }

    /// The app a forwarded request is for: by host first, then by its
    /// normalised path (see [`Apps::by_target`]).
    ///
    /// A path under an app's prefix only in another case (`/apps/VAULT/x`
    /// for `/apps/vault/`) is refused: the proxy in front routes the
    /// request, and one that matches paths without regard to case (Caddy's
    /// `path` matcher) sends it to that app, while gatehouse would judge it
    /// by another app's rules or the default (a hostile pass let a token,
    /// which never gives a second factor, through Caddy into a
    /// `two_factor` app that way). The built-in proxy routes by itself, on
    /// the prefix as written, so it needs no such refusal.
    ///
    /// # Errors
    ///
    /// [`PathError::LeavesApp`], [`PathError::OtherCase`].
    #[inline]
    pub fn for_request(
        &self,
        host: Option<&str>,
        target: &Target,
        raw_path: &str,
    ) -> Result<Option<&App>, PathError> {
        if let Some(app) = host.and_then(|h| self.by_host(h)) {
            return Ok(Some(app));
        }
        let found = self.by_target(target, raw_path)?;
        let folded = folded(&target.path);
        let any_case = self
            .apps
            .iter()
            .filter(|a| a.under_prefix_any_case(&folded))
            .max_by_key(|a| a.prefix.as_ref().map_or(0, String::len));
        match any_case {
            Some(other) if !found.is_some_and(|f| std::ptr::eq(f, other)) => {
                Err(PathError::OtherCase)
            }
            _ => Ok(found),
        }
    }

    /// The path `app` sees of a request [`Apps::for_request`] found it for
    /// with `host`: all of `path` when the host is the app's, else what
    /// follows its prefix (see [`App::path_seen`]).
    pub fn path_seen<'p>(&self, app: &App, host: Option<&str>, path: &'p str) -> &'p str {
        let by_host = host
            .and_then(|h| self.by_host(h))
            .is_some_and(|a| std::ptr::eq(a, app));
        if by_host { path } else { app.path_seen(path) }
    }

    /// The rules a request for `app` is decided by (for `None`, what
    /// matches no app: `default_policy`).
    pub fn rules_for<'a>(&'a self, app: Option<&'a App>) -> &'a Rules {
        app.map_or(&self.default_rules, |a| &a.rules)
    }

    /// The apps `who` may open from the start page (and the API's list):
    /// not `hidden`, and open to them at their front page by the one
    /// access decision (one that still wants a second factor is listed:
    /// the sign-in asks for it on the way).
    pub fn open_to<'a>(
        &'a self,
        who: &'a Principal,
        client: std::net::IpAddr,
    ) -> impl Iterator<Item = &'a App> + 'a {
        self.apps.iter().filter(move |app| {
            let target = crate::identity::Target {
                app: Some(&app.name),
                path: "/",
                method: "GET",
                client,
            };
            !app.hidden
                && matches!(
                    access::decide(&app.rules, Some(who), &target).decision,
                    Decision::Allow | Decision::SecondFactor
                )
        })
    }

    /// Whether `host` belongs to a configured app (for cross-host return URLs).
    pub fn is_app_host(&self, host: &str) -> bool {
        self.by_host(host).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml: &str) -> AppSpec {
        toml::from_str(toml).expect("spec")
    }

    #[test]
    fn an_app_is_validated_field_by_field() {
        let app = spec("name = \"wiki\"\nprefix = \"/apps/wiki/\"\nupstream = \"http://127.0.0.1:3000/base/\"\nusers = [\"alice\"]")
            .build()
            .expect("valid");
        assert_eq!(
            app.upstream,
            Some(Upstream {
                authority: "127.0.0.1:3000".into(),
                base: "/base".into()
            })
        );
        assert_eq!(
            app.rules,
            Rules::from_access(&Access::Users(vec!["alice".into()]), false)
        );

        let cases = [
            ("name = \"wiki\"", "prefix"),
            (
                "name = \"wiki\"\nprefix = \"apps/wiki\"\nupstream = \"http://x\"",
                "prefix",
            ),
            (
                "name = \"wiki\"\nprefix = \"/login/x/\"\nupstream = \"http://x\"",
                "prefix",
            ),
            ("name = \"wiki\"\nprefix = \"/apps/wiki/\"", "upstream"),
            (
                "name = \"wiki\"\nprefix = \"/apps/wiki/\"\nupstream = \"https://x\"",
                "upstream",
            ),
            (
                "name = \"wiki\"\nhost = \"wiki.lan\"\nallow = \"everyone\"",
                "allow",
            ),
            (
                "name = \"wiki\"\nhost = \"wiki.lan\"\nallow = \"admins\"\nusers = [\"a\"]",
                "users",
            ),
            ("name = \"wiki\"\nhost = \"wiki lan\"", "host"),
            (
                "name = \"wiki\"\nhost = \"wiki.lan\"\nidentity_key = \"short\"",
                "identity_key",
            ),
            ("name = \"\"\nhost = \"wiki.lan\"", "name"),
            // The OpenID Provider's paths are gatehouse's own.
            (
                "name = \"wiki\"\nprefix = \"/oidc/x/\"\nupstream = \"http://x\"",
                "prefix",
            ),
            (
                "name = \"wiki\"\nprefix = \"/device/x/\"\nupstream = \"http://x\"",
                "prefix",
            ),
            (
                "name = \"wiki\"\nprefix = \"/.well-known/x/\"\nupstream = \"http://x\"",
                "prefix",
            ),
        ];
        for (toml, field) in cases {
            let e = spec(toml).build().expect_err(toml);
            assert_eq!(e.field, field, "{toml}: {e:?}");
        }
    }

    #[test]
    fn an_unknown_field_is_refused() {
        assert!(toml::from_str::<AppSpec>("name = \"x\"\nupstrem = \"http://x\"").is_err());
    }

    #[test]
    fn requests_find_their_app_by_host_then_longest_prefix() {
        let wiki = spec("name = \"wiki\"\nprefix = \"/apps/wiki/\"\nhost = \"wiki.lan\"\nupstream = \"http://127.0.0.1:1\"").build().expect("wiki");
        let docs = spec("name = \"docs\"\nprefix = \"/apps/wiki/docs/\"\nupstream = \"http://127.0.0.1:2\"\nallow = \"admins\"").build().expect("docs");
        let apps = Apps::new(vec![wiki, docs], Access::Nobody).expect("apps");
        assert_eq!(
            apps.by_host("Wiki.LAN:443").map(|a| a.name.as_str()),
            Some("wiki")
        );
        for dotted in ["wiki.lan.", "WIKI.lan.:8080"] {
            assert_eq!(
                apps.by_host(dotted).map(|a| a.name.as_str()),
                Some("wiki"),
                "{dotted}"
            );
        }
        assert!(apps.by_host("wiki.lan.x").is_none());
        assert_eq!(
            apps.by_path("/apps/wiki/page").map(|a| a.name.as_str()),
            Some("wiki")
        );
        assert_eq!(
            apps.by_path("/apps/wiki").map(|a| a.name.as_str()),
            Some("wiki")
        );
        assert_eq!(
            apps.by_path("/apps/wiki/docs/x").map(|a| a.name.as_str()),
            Some("docs")
        );
        assert_eq!(apps.by_path("/apps/wikipedia"), None);
        let t = |p: &str| Target::parse(p).expect("valid");
        assert_eq!(
            apps.for_request(Some("other.lan"), &t("/x"), "/x"),
            Ok(None)
        );
        // A prefix in another case, ASCII or as Caddy's Unicode lower
        // casing reads it, is refused; what matches as written is not.
        for other in [
            "/apps/WIKI/x",
            "/Apps/wiki",
            "/apps/w%C4%B0ki/x",
            "/apps/wi%E2%84%AAi/x",
            "/apps/wiki/doc%C5%BF/x",
            "/apps/w%C4%B1ki/",
        ] {
            let target = t(other);
            assert_eq!(
                apps.for_request(None, &target, other),
                Err(PathError::OtherCase),
                "{other}"
            );
        }
        for same in ["/apps/wiki/%C3%A9", "/apps/wiki/docs/x", "/x/%C4%B0"] {
            let target = t(same);
            assert!(apps.for_request(None, &target, same).is_ok(), "{same}");
        }
        assert_eq!(
            apps.rules_for(None),
            &Rules::from_access(&Access::Nobody, false),
            "deny by default"
        );
        assert_eq!(
            apps.rules_for(apps.by_path("/apps/wiki/docs/")),
            &Rules::from_access(&Access::Admins, false)
        );
        assert!(apps.is_app_host("wiki.lan"));
        assert!(!apps.is_app_host("evil.example"));
    }

    #[test]
    fn nested_prefixes_are_matched_on_the_normalised_path() {
        let site =
            spec("name = \"site\"\nprefix = \"/apps/site/\"\nupstream = \"http://127.0.0.1:1\"")
                .build()
                .expect("site");
        let private = spec("name = \"private\"\nprefix = \"/apps/site/private/\"\nupstream = \"http://127.0.0.1:1/private\"\nallow = \"admins\"").build().expect("private");
        let apps = Apps::new(vec![site, private], Access::Nobody).expect("apps");
        let find = |raw: &str| {
            let target = Target::parse(raw)?;
            let path = raw.split('?').next().unwrap_or(raw);
            apps.by_target(&target, path)
                .map(|a| a.map(|a| a.name.clone()))
        };
        assert_eq!(find("/apps/site/%70rivate/s"), Ok(Some("private".into())));
        assert_eq!(find("/apps/site//private/s"), Ok(Some("private".into())));
        assert_eq!(find("/apps/site/x/../private/s"), Err(PathError::LeavesApp));
        assert_eq!(find("/apps/site/private%2fs"), Err(PathError::EncodedSlash));
        assert_eq!(find("/apps/site/../../admin"), Err(PathError::LeavesApp));
        assert_eq!(find("/apps/site/a/../b"), Ok(Some("site".into())));
        assert_eq!(find("/apps/site/private/../x"), Err(PathError::LeavesApp));
        // Read as a Java server reads `;parameters`.
        assert_eq!(find("/apps/site/private;x/s"), Err(PathError::LeavesApp));
        assert_eq!(
            find("/apps/site/x/..;/private/s"),
            Err(PathError::LeavesApp)
        );
        assert_eq!(find("/apps/site/..;/..;/admin"), Err(PathError::LeavesApp));
        assert_eq!(find("/apps/site/private/..;/s"), Err(PathError::LeavesApp));
        assert_eq!(find("/apps/site/a;b/c"), Ok(Some("site".into())));
        assert_eq!(find("/apps/site/private/a;b"), Ok(Some("private".into())));
    }

    /// `/apps/site/` and its admins-only `/apps/site/private/`, with
    /// `case_insensitive` on the apps named in `insensitive`.
    fn site(insensitive: &[&str]) -> Apps {
        let flag = |name: &str| {
            if insensitive.contains(&name) {
                "\ncase_insensitive = true"
            } else {
                ""
            }
        };
        let site = spec(&format!(
            "name = \"site\"\nprefix = \"/apps/site/\"\nupstream = \"http://127.0.0.1:1\"{}",
            flag("site")
        ))
        .build()
        .expect("site");
        let private = spec(&format!(
            "name = \"private\"\nprefix = \"/apps/site/private/\"\nupstream = \"http://127.0.0.1:1/private\"\nallow = \"admins\"{}",
            flag("private")
        ))
        .build()
        .expect("private");
        Apps::new(vec![site, private], Access::Nobody).expect("apps")
    }

    fn name_of<'a>(apps: &'a Apps, path: &str) -> Option<&'a str> {
        apps.by_path(path).map(|a| a.name.as_str())
    }

    #[test]
    fn prefixes_match_case_sensitively_by_default() {
        let apps = site(&[]);
        assert_eq!(name_of(&apps, "/apps/site/private/x"), Some("private"));
        assert_eq!(name_of(&apps, "/apps/site/PRIVATE/x"), Some("site"));
        assert_eq!(name_of(&apps, "/apps/site/Private"), Some("site"));
        assert_eq!(name_of(&apps, "/APPS/SITE/x"), None);
        assert!(apps.all().iter().all(|a| !a.case_insensitive));
    }

    #[test]
    fn a_case_insensitive_app_claims_every_spelling_of_its_prefix_and_those_under_it() {
        // Said by the outer app (its upstream reads paths without regard
        // to case): the nested app inherits it.
        let apps = site(&["site"]);
        for path in [
            "/apps/site/PRIVATE/x",
            "/APPS/Site/Private/",
            "/apps/site/private",
        ] {
            assert_eq!(name_of(&apps, path), Some("private"), "{path}");
        }
        assert_eq!(name_of(&apps, "/APPS/SITE/x"), Some("site"));
        assert_eq!(name_of(&apps, "/apps/site/privatex"), Some("site"));
        assert!(apps.all().iter().all(|a| a.case_insensitive));
        // Said by the nested app alone: its prefix only.
        let apps = site(&["private"]);
        assert_eq!(name_of(&apps, "/apps/site/PRIVATE/x"), Some("private"));
        assert_eq!(name_of(&apps, "/APPS/SITE/x"), None);
    }

    #[test]
    fn what_follows_the_prefix_is_found_in_any_case_only_when_asked() {
        let apps = site(&["site"]);
        let private = apps.by_path("/apps/site/private/").expect("private");
        assert_eq!(private.after_prefix("/APPS/SITE/PRIVATE/a/B"), Some("/a/B"));
        assert_eq!(private.after_prefix("/apps/site/Private"), Some(""));
        assert_eq!(private.after_prefix("/apps/site/privatex"), None);
        assert_eq!(private.after_prefix("/apps/site"), None);
        let apps = site(&[]);
        let private = apps.by_path("/apps/site/private/").expect("private");
        assert_eq!(private.after_prefix("/apps/site/private/a"), Some("/a"));
        assert_eq!(private.after_prefix("/apps/site/PRIVATE/a"), None);
        // A path cut inside a multi-byte character is no match, not a panic.
        assert_eq!(private.after_prefix("/apps/site/privat\u{e9}"), None);
    }

    #[test]
    fn prefixes_that_differ_only_in_case_clash_when_either_app_ignores_case() {
        let app = |name: &str, prefix: &str, extra: &str| {
            spec(&format!(
                "name = \"{name}\"\nprefix = \"{prefix}\"\nupstream = \"http://127.0.0.1:1\"{extra}"
            ))
            .build()
            .expect("app")
        };
        let apart = vec![app("a", "/apps/wiki/", ""), app("b", "/apps/Wiki/", "")];
        assert!(Apps::new(apart, Access::Nobody).is_ok());
        let insensitive = "\ncase_insensitive = true";
        let same = vec![
            app("a", "/apps/wiki/", ""),
            app("b", "/apps/Wiki/", insensitive),
        ];
        let e = Apps::new(same, Access::Nobody).expect_err("clash");
        assert_eq!((e.app.as_str(), e.field.as_str()), ("b", "prefix"));
    }

    #[test]
    fn clashing_apps_are_refused() {
        let a = spec("name = \"a\"\nhost = \"x.lan\"").build().expect("a");
        let b = spec("name = \"b\"\nhost = \"x.lan\"").build().expect("b");
        let e = Apps::new(vec![a, b], Access::SignedIn).expect_err("clash");
        assert_eq!((e.app.as_str(), e.field.as_str()), ("b", "host"));
    }

    #[test]
    fn rules_come_before_what_allow_and_users_say() {
        let app = spec(
            "name = \"wiki\"\nhost = \"wiki.lan\"\nallow = \"admins\"\ntwo_factor = true\n\
             [[rules]]\npaths = [\"/api/health\", \"/static/*\"]\npolicy = \"bypass\"\n\
             [[rules]]\ngroups = [\"ops\"]\nmethods = [\"post\"]\nnetworks = [\"10.0.0.0/8\", \"::1\"]\npolicy = \"signed_in\"\n",
        )
        .build()
        .expect("valid");
        assert_eq!(app.rules.rules.len(), 3);
        assert_eq!(app.rules.rules[0].policy, Policy::Bypass);
        assert_eq!(app.rules.rules[1].methods, ["POST"]);
        assert_eq!(app.rules.rules[1].networks[1].to_string(), "::1/128");
        assert_eq!(app.rules.rules[2].groups, [crate::identity::ADMINS]);
        assert_eq!(app.rules.rules[2].policy, Policy::TwoFactor);
        assert_eq!(app.rules.default, Policy::Deny);
    }

    #[test]
    fn a_bad_rule_is_named_by_its_app_its_place_and_its_field() {
        let head = "name = \"wiki\"\nhost = \"wiki.lan\"\n[[rules]]\npolicy = \"bypass\"\npaths = [\"/ok\"]\n[[rules]]\n";
        for (rule, field) in [
            ("paths = [\"/a\"]", "rules[2].policy"),
            ("policy = \"open\"", "rules[2].policy"),
            ("policy = \"bypass\"\ngroups = [\"ops\"]", "rules[2].policy"),
            ("policy = \"deny\"\npaths = []", "rules[2].paths"),
            ("policy = \"deny\"\npaths = [\"api\"]", "rules[2].paths"),
            ("policy = \"deny\"\npaths = [\"/a/../b\"]", "rules[2].paths"),
            (
                "policy = \"deny\"\npaths = [\"/%7euser\"]",
                "rules[2].paths",
            ),
            ("policy = \"deny\"\npaths = [\"//a\"]", "rules[2].paths"),
            ("policy = \"deny\"\npaths = [\"/a?b\"]", "rules[2].paths"),
            (
                "policy = \"deny\"\nmethods = [\"GET /\"]",
                "rules[2].methods",
            ),
            (
                "policy = \"deny\"\nnetworks = [\"10.0.0.0/33\"]",
                "rules[2].networks",
            ),
            (
                "policy = \"deny\"\nnetworks = [\"intranet\"]",
                "rules[2].networks",
            ),
            ("policy = \"deny\"\ngroups = [\"a,b\"]", "rules[2].groups"),
            ("policy = \"deny\"\nusers = [\"\"]", "rules[2].users"),
        ] {
            let toml = format!("{head}{rule}\n");
            let e = spec(&toml).build().expect_err(&toml);
            assert_eq!(
                (e.app.as_str(), e.field.as_str()),
                ("wiki", field),
                "{rule}: {e:?}"
            );
        }
        assert!(
            toml::from_str::<AppSpec>(&format!("{head}policy = \"deny\"\npath = [\"/a\"]\n"))
                .is_err(),
            "an unknown key in a rule is refused"
        );
    }
}
