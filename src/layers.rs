//! The layers of DESIGN.md and the rooms of STYLE.md, checked:
//!
//! - every `crate::...` path in `src/` points down the table below (or
//!   along one of the few sideways edges it names);
//! - no file of `src/` depends on itself through others (no import circle),
//!   from the graph of which file uses which;
//! - the areas of `web/` (`signin/`, `account/`, `admin/`, `api/`,
//!   `setup.rs`, `ops.rs`, `dashboard.rs`, `gate/`) never import each
//!   other, only the shared modules beside them; and `web/views/` imports
//!   nothing from an area.
//!
//! A test, not a convention, so the layers stay checked after a
//! restructuring and not just tidy on the day it lands.
//!
//! To add a module: give it a rank here. An import that does not fit is a
//! design question (move the type down, or pass it in from above), not a
//! line to add to `SIDEWAYS`.
//!
//! # The file graph
//!
//! Each file's `crate::`, `super::` and `self::` paths (in `use` lines and
//! in code), and the paths through names a `use` brought in, are resolved
//! to the file that defines what they name, through the `pub use`
//! re-exports of a `mod.rs` (so `crate::web::WebError` is `web/error.rs`).
//! A folder's `mod.rs` (or `app.rs` for `app/`) holds its children: its
//! own references into them (`mod`, `pub use`, calling a child by name)
//! are not imports. A child may use its parent's items; so a parent and
//! its children refer to each other one way only, and any other pair of
//! files that use each other, directly or around a longer loop, is a
//! circle this test names.
//!
//! Comments, strings and character literals are blanked before reading, so
//! a doc link or a test's sample source is no import.

use std::collections::{BTreeMap, BTreeSet};

/// Each top-level module of `src/` and its rank: a module may use modules
/// of a lower rank only (DESIGN.md: `main -> cli -> app -> web -> accounts
/// -> {auth, oidc, session, users} -> db`, bottom helpers usable by all).
const RANKS: &[(&str, u8)] = &[
    ("cli", 9),
    ("app", 8),
    ("web", 7),
    // The validated settings: read by app, cli and web; made of the
    // engine's and the throttle's own option types.
    ("config", 6),
    ("accounts", 6),
    ("auth", 5),
    // The OpenID Provider's state and rules (its endpoints are web's).
    ("oidc", 5),
    ("session", 5),
    ("users", 5),
    // Below the guards and stores: pools and migrations.
    ("db", 4),
    // Certificates, and TLS to the backends, which the pools use.
    ("tls", 3),
    // The bottom helpers, in the one order they use each other.
    ("files", 3),
    ("identity", 2),
    ("logging", 2),
    ("clock", 1),
    ("crypto", 1),
];

/// Imports between modules of one rank that the design allows: the guards
/// of `auth` work on the session layer's keys and cookie options (CSRF
/// tokens bound to a session, the anonymous token's cookie); the session
/// layer never reaches into `auth`. The OpenID Provider asks `auth`'s one
/// access decision whether a client is open to a user
/// (`auth::access::client_decision`); `auth` never reaches into `oidc`.
const SIDEWAYS: &[(&str, &str)] = &[("auth", "session"), ("oidc", "auth")];

/// The areas of `web/`: a folder or a file each. An area uses the shared
/// modules of `web/` (`router`, `state`, `principal`, `signed_in`, `csrf`, `redirects`,
/// `respond`, `paging`, `device`, `totp`, `passkeys`, `views`, `form`,
/// `error`; the gate its `tunnel`), never another area.
const AREAS: &[&str] = &[
    "account",
    "admin",
    "api",
    "dashboard",
    "gate",
    "links",
    "oidc",
    "ops",
    "setup",
    "signin",
];

fn rank(module: &str) -> Option<u8> {
    RANKS.iter().find(|(m, _)| *m == module).map(|&(_, r)| r)
}

/// The top-level module a file of `src/` belongs to (`None` for the crate
/// roots, `lib.rs` and `main.rs`, which may use anything, and for this
/// file, which names every module in its tests).
fn module_of(path: &str) -> Option<&str> {
    let first = path.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "layers")).then_some(name)
}

/// `text` with comments, string and character literals blanked to spaces;
/// line breaks are kept, so line numbers still hold.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && ident(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
                out.push(' ');
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r'))) && !prev_ident && {
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            chars.get(start + hashes) == Some(&'"')
        } {
            // A raw string: r"..." or r#"..."#, never escaped.
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            let body = start + hashes + 1;
            for _ in i..body {
                out.push(' ');
            }
            i = body;
            while i < chars.len() {
                if chars[i] == '"'
                    && chars[i + 1..].iter().take_while(|&&h| h == '#').count() >= hashes
                {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), or a lifetime
            // ('a), which is left as it is.
            let end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&q| q == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The modules named by `crate::x` paths in `code` (comments and strings
/// already blanked), with their line numbers.
fn uses(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() && !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

/// Every `crate::` import in `files` (path under `src/`, text) that breaks
/// the ranks, as `path:line: a -> b (why)`.
fn rank_violations(files: &[(String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, text) in files {
        let Some(from) = module_of(path) else {
            continue;
        };
        let Some(from_rank) = rank(from) else {
            bad.push(format!("{path}: module {from} has no rank in layers.rs"));
            continue;
        };
        for (line, to) in uses(&code_only(text)) {
            if to == from {
                continue;
            }
            let Some(to_rank) = rank(&to) else {
                bad.push(format!(
                    "{path}:{line}: {from} -> {to} (no such ranked module)"
                ));
                continue;
            };
            let sideways = SIDEWAYS.contains(&(from, to.as_str()));
            if to_rank > from_rank || (to_rank == from_rank && !sideways) {
                bad.push(format!(
                    "{path}:{line}: {from} -> {to} ({})",
                    if to_rank > from_rank {
                        "imports a layer above it"
                    } else {
                        "imports a sibling it must not"
                    }
                ));
            }
        }
    }
    bad
}

/// One token of blanked source: a word (identifier or keyword), `::`, or
/// any other single character; with its line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Token {
    text: String,
    line: usize,
}

fn tokens(code: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c.is_alphanumeric() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token {
                    text: chars[start..i].iter().collect(),
                    line: n + 1,
                });
            } else if c == ':' && chars.get(i + 1) == Some(&':') {
                out.push(Token {
                    text: "::".to_owned(),
                    line: n + 1,
                });
                i += 2;
            } else {
                out.push(Token {
                    text: c.to_string(),
                    line: n + 1,
                });
                i += 1;
            }
        }
    }
    out
}

fn is_word(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// One path of a `use` tree: its segments (a glob ends in `*`) and the
/// name it is brought in as (`None` for a glob).
#[derive(Clone, Debug, PartialEq, Eq)]
struct UsePath {
    segments: Vec<String>,
    name: Option<String>,
}

/// The paths of a `use` tree (the tokens between `use` and `;`).
fn use_paths(tree: &[Token]) -> Vec<UsePath> {
    fn parse(tree: &[Token], mut i: usize, prefix: &[String], out: &mut Vec<UsePath>) -> usize {
        let mut segments = prefix.to_vec();
        loop {
            match tree.get(i).map(|t| t.text.as_str()) {
                Some("{") => {
                    i += 1;
                    loop {
                        match tree.get(i).map(|t| t.text.as_str()) {
                            Some("}") => return i + 1,
                            Some(",") => i += 1,
                            None => return i,
                            Some(_) => i = parse(tree, i, &segments, out),
                        }
                    }
                }
                Some("*") => {
                    segments.push("*".to_owned());
                    out.push(UsePath {
                        segments,
                        name: None,
                    });
                    return i + 1;
                }
                Some(word) if is_word(word) => {
                    segments.push(word.to_owned());
                    i += 1;
                    if tree.get(i).is_some_and(|t| t.text == "::") {
                        i += 1;
                        continue;
                    }
                    let mut name = segments.last().cloned();
                    if tree.get(i).is_some_and(|t| t.text == "as") {
                        name = tree.get(i + 1).map(|t| t.text.clone());
                        i += 2;
                    }
                    if segments.last().is_some_and(|s| s == "self") {
                        segments.pop();
                        if name.as_deref() == Some("self") {
                            name = segments.last().cloned();
                        }
                    }
                    out.push(UsePath { segments, name });
                    return i;
                }
                _ => return i + 1,
            }
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < tree.len() {
        let next = parse(tree, i, &[], &mut out);
        i = next.max(i + 1);
    }
    out
}

/// What one file says about names: its child modules, what it brings in
/// with `use` (and whether it re-exports it), the items it defines, and
/// every path in it, each from the module it is written in.
#[derive(Debug, Default)]
struct FileFacts {
    children: BTreeSet<String>,
    /// (scope, line, path, public): a `use` in `scope` (the file's module,
    /// and the inline modules it is written in).
    imports: Vec<(Vec<String>, usize, UsePath, bool)>,
    /// (scope, line, segments): a path in code starting with `crate`,
    /// `super`, `self`, or a name a `use` brought in.
    paths: Vec<(Vec<String>, usize, Vec<String>)>,
}

fn facts(module: &[String], code: &str) -> FileFacts {
    let toks = tokens(code);
    let mut f = FileFacts::default();
    // The inline modules we are in, with the depth their body opened at.
    let mut scope: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let here = |scope: &[(String, usize)]| {
        let mut m = module.to_vec();
        m.extend(scope.iter().map(|(name, _)| name.clone()));
        m
    };
    while i < toks.len() {
        let t = toks[i].text.as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                while scope.last().is_some_and(|(_, d)| *d > depth) {
                    scope.pop();
                }
            }
            "mod" if toks.get(i + 1).is_some_and(|n| is_word(&n.text)) => {
                let name = toks[i + 1].text.clone();
                match toks.get(i + 2).map(|t| t.text.as_str()) {
                    Some(";") if scope.is_empty() => {
                        f.children.insert(name);
                    }
                    Some("{") => {
                        scope.push((name, depth + 1));
                    }
                    _ => {}
                }
                i += 2;
                continue;
            }
            "use" => {
                let public = is_public(&toks[..i]);
                let end = toks[i..]
                    .iter()
                    .position(|t| t.text == ";")
                    .map_or(toks.len(), |p| i + p);
                let line = toks[i].line;
                for p in use_paths(&toks[i + 1..end]) {
                    f.imports.push((here(&scope), line, p, public));
                }
                i = end + 1;
                continue;
            }
            _ if is_word(t) && toks.get(i + 1).is_some_and(|n| n.text == "::") => {
                // The start of a path (not a later segment of one).
                let continues = i > 0 && toks[i - 1].text == "::";
                if !continues {
                    let mut segments = vec![t.to_owned()];
                    let mut j = i + 1;
                    while toks.get(j).is_some_and(|n| n.text == "::")
                        && toks.get(j + 1).is_some_and(|n| is_word(&n.text))
                    {
                        segments.push(toks[j + 1].text.clone());
                        j += 2;
                    }
                    f.paths.push((here(&scope), toks[i].line, segments));
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    f
}

/// Whether the tokens before a `use` make it public (`pub`, `pub(crate)`,
/// `pub(super)`, `pub(in path)`).
fn is_public(before: &[Token]) -> bool {
    match before.last().map(|t| t.text.as_str()) {
        Some("pub") => true,
        Some(")") => {
            let open = before.iter().rposition(|t| t.text == "(");
            open.is_some_and(|o| o > 0 && before[o - 1].text == "pub")
        }
        _ => false,
    }
}

/// The module a file of `src/` is: `web/mod.rs` is `web`, `web/signin/login.rs`
/// is `web::signin::login`, `lib.rs` the crate root.
fn module_path(path: &str) -> Vec<String> {
    let trimmed = path.strip_suffix(".rs").unwrap_or(path);
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") || parts == ["lib"] {
        parts.pop();
    }
    parts
}

/// The crate's files as a tree of modules, and what each file says.
struct Crate {
    /// Module path to file.
    files: BTreeMap<Vec<String>, String>,
    facts: BTreeMap<String, FileFacts>,
}

impl Crate {
    fn new(files: &[(String, String)]) -> Self {
        let mut c = Self {
            files: BTreeMap::new(),
            facts: BTreeMap::new(),
        };
        for (path, text) in files {
            if path == "main.rs" {
                continue; // the binary: another crate
            }
            let module = module_path(path);
            c.facts
                .insert(path.clone(), facts(&module, &code_only(text)));
            c.files.insert(module, path.clone());
        }
        c
    }

    /// The module a path starts from, written in `scope` (an absolute
    /// module path that may end in inline modules) of `file`, and the
    /// segments left to walk from there.
    fn start(
        &self,
        file: &str,
        scope: &[String],
        segments: &[String],
        hops: u8,
    ) -> Option<(Vec<String>, Vec<String>)> {
        if hops > 8 {
            return None;
        }
        let mut module = scope.to_vec();
        let mut rest = segments;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                module.clear();
                rest = &rest[1..];
            }
            Some("super" | "self") => {
                while let Some(first) = rest.first() {
                    match first.as_str() {
                        "super" => {
                            module.pop()?;
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = &rest[1..];
                }
            }
            Some(first) => {
                let facts = self.facts.get(file)?;
                // A child module of this file, by name (in the file's own
                // module, not in an inline one).
                if scope == self.module_of_file(file).as_slice() && facts.children.contains(first) {
                    return Some((module, rest.to_vec()));
                }
                // A name a `use` of this module (or an enclosing one of the
                // same file) brought in: its path, then the rest.
                let (s, _, p, _) = facts
                    .imports
                    .iter()
                    .filter(|(s, _, p, _)| p.name.as_deref() == Some(first) && scope.starts_with(s))
                    .max_by_key(|(s, ..)| s.len())?;
                let mut joined = p.segments.clone();
                joined.extend_from_slice(&rest[1..]);
                return self.start(file, s, &joined, hops + 1);
            }
            None => return None,
        }
        Some((module, rest.to_vec()))
    }

    fn module_of_file(&self, file: &str) -> Vec<String> {
        self.files
            .iter()
            .find(|(_, f)| f.as_str() == file)
            .map(|(m, _)| m.clone())
            .unwrap_or_default()
    }

    /// The file `segments` land on (the one that defines what they name),
    /// resolved from `scope` in `file`; `None` for paths outside the crate.
    fn resolve(
        &self,
        file: &str,
        scope: &[String],
        segments: &[String],
        hops: u8,
    ) -> Option<String> {
        if hops > 8 {
            return None;
        }
        let (mut module, rest) = self.start(file, scope, segments, hops)?;
        // Inline modules have no file: the file that holds them.
        while !self.files.contains_key(&module) {
            module.pop()?;
        }
        let mut rest = rest.iter();
        while let Some(seg) = rest.next() {
            if seg == "*" {
                break;
            }
            let mut child = module.clone();
            child.push(seg.clone());
            if self.files.contains_key(&child) {
                module = child;
                continue;
            }
            // An item of this module's file, perhaps re-exported from another.
            let here = &self.files[&module];
            let facts = &self.facts[here];
            let reexport = facts.imports.iter().find(|(s, _, p, public)| {
                *public && *s == module && p.name.as_deref() == Some(seg.as_str())
            });
            if let Some((_, _, p, _)) = reexport {
                let mut joined = p.segments.clone();
                joined.extend(rest.cloned());
                return self.resolve(here, &module, &joined, hops + 1);
            }
            return Some(here.clone());
        }
        Some(self.files[&module].clone())
    }

    /// Every edge of the file graph: (from, to, line), a parent's own
    /// references into its children left out (see the module docs).
    fn edges(&self) -> BTreeMap<(String, String), usize> {
        let mut edges = BTreeMap::new();
        for (file, facts) in &self.facts {
            let file_module = self.module_of_file(file);
            let refs = facts
                .imports
                .iter()
                .map(|(s, line, p, _)| (s, *line, &p.segments))
                .chain(facts.paths.iter().map(|(s, line, p)| (s, *line, p)));
            for (scope, line, segments) in refs {
                let Some(to) = self.resolve(file, scope, segments, 0) else {
                    continue;
                };
                if to == *file || self.module_of_file(&to).starts_with(&file_module) {
                    continue;
                }
                edges.entry((file.clone(), to)).or_insert(line);
            }
        }
        edges
    }
}

/// Every import circle among `files`, each as `a.rs:3 -> b.rs:7 -> a.rs`
/// (each file with the line of its first reference to the next).
fn circles(files: &[(String, String)]) -> Vec<String> {
    let edges = Crate::new(files).edges();
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from.as_str()).or_default().push(to.as_str());
    }
    // Strongly connected components (Tarjan), then one circle from each.
    struct Tarjan<'a> {
        next: &'a BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in self.next.get(v).map(Vec::as_slice).unwrap_or(&[]) {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.components.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        next: &next,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    let nodes: Vec<&str> = next.keys().copied().collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    let mut found = Vec::new();
    for component in &t.components {
        let inside: BTreeSet<&str> = component.iter().copied().collect();
        let start = *inside.iter().next().expect("a component has files");
        // A shortest way back to `start` within the component.
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        while let Some(v) = queue.pop_front() {
            for &w in next.get(v).map(Vec::as_slice).unwrap_or(&[]) {
                if !inside.contains(w) {
                    continue;
                }
                if w == start {
                    last = Some(v);
                    queue.clear();
                    break;
                }
                if !came_from.contains_key(w) {
                    came_from.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut back = Vec::new();
        let mut at = last.expect("a component is a circle");
        while at != start {
            back.push(at);
            at = came_from[at];
        }
        let mut way = vec![start];
        way.extend(back.iter().rev());
        way.push(start);
        let mut text = String::new();
        for pair in way.windows(2) {
            let line = edges[&(pair[0].to_owned(), pair[1].to_owned())];
            text.push_str(&format!("{}:{line} -> ", pair[0]));
        }
        text.push_str(start);
        found.push(text);
    }
    found
}

/// The area of `web/` a file belongs to, if it is in one.
fn area_of(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("web/")?;
    let first = rest.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    AREAS.iter().copied().find(|a| *a == name)
}

/// Every edge that leaves one area of `web/` for another, or goes from
/// `web/views/` into an area.
fn room_violations(files: &[(String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for ((from, to), line) in Crate::new(files).edges() {
        let Some(target) = area_of(&to) else {
            continue;
        };
        if from.starts_with("web/views/") {
            bad.push(format!(
                "{from}:{line}: the views import area {target} ({to})"
            ));
        } else if let Some(source) = area_of(&from)
            && source != target
        {
            bad.push(format!(
                "{from}:{line}: web area {source} imports area {target} ({to})"
            ));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn read(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src/ is readable")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                read(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(base)
                    .expect("under src/")
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&path).expect("a source file");
                out.push((rel, text));
            }
        }
    }

    fn tree() -> Vec<(String, String)> {
        let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../src"));
        let mut files = Vec::new();
        read(src, src, &mut files);
        files
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn every_import_in_src_points_down_the_layers() {
        let files = tree();
        assert!(files.len() > 40, "read {} files", files.len());
        let bad = rank_violations(&files);
        assert!(
            bad.is_empty(),
            "imports against the layers:\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn every_module_of_src_has_a_rank() {
        for (path, _) in tree() {
            if let Some(m) = module_of(&path) {
                assert!(rank(m).is_some(), "{path}: give {m} a rank in layers.rs");
            }
        }
    }

    #[test]
    fn no_file_of_src_depends_on_itself_through_others() {
        let found = circles(&tree());
        assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
    }

    #[test]
    fn the_areas_of_web_import_no_other_area_and_the_views_none() {
        let files = tree();
        for area in AREAS {
            assert!(
                files.iter().any(|(p, _)| area_of(p) == Some(area)),
                "no files for the area {area}"
            );
        }
        let bad = room_violations(&files);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    /// DESIGN.md, "Who is asking": `auth/access.rs` decides on plain data
    /// (it uses `identity` alone: no store, no HTTP), a `Principal` is
    /// built in `web/principal.rs` alone, and no other file reads the old
    /// inputs of an access decision (the admin flag, an app's rules) to
    /// decide who may pass.
    #[test]
    fn the_access_decision_is_made_in_one_place_on_plain_data() {
        let files = tree();
        let code = |path: &str| {
            let (_, text) = files
                .iter()
                .find(|(p, _)| p == path)
                .unwrap_or_else(|| panic!("{path} is missing"));
            code_only(text)
        };
        let access = code("auth/access.rs");
        // Its tests may build targets as auth/path.rs does; its code not.
        let access = access.split("#[cfg(test)]").next().unwrap_or("");
        let used: BTreeSet<String> = uses(access).into_iter().map(|(_, m)| m).collect();
        assert_eq!(
            used,
            BTreeSet::from(["identity".to_owned()]),
            "auth/access.rs uses only identity"
        );
        assert!(access.contains("pub fn decide("), "auth/access.rs decides");
        let mut bad = Vec::new();
        for (path, text) in &files {
            let code = code_only(text);
            // Everything below the tests of a file is its tests.
            let code = code.split("#[cfg(test)]").next().unwrap_or("");
            let builds_principal = code.contains("Principal {")
                && !code.contains("struct Principal {")
                && !code.contains("impl Principal {");
            if builds_principal && path != "web/principal.rs" {
                bad.push(format!("{path} builds a Principal (web/principal.rs does)"));
            }
            let reads_rules = code.contains(".rules.rules") || code.contains("access::apply");
            let in_gate = path.starts_with("web/gate/")
                || matches!(path.as_str(), "web/dashboard.rs" | "web/redirects.rs");
            if (reads_rules || (in_gate && code.contains("is_admin"))) && path != "auth/access.rs" {
                bad.push(format!(
                    "{path} decides who may pass outside auth/access.rs"
                ));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    /// Parents whose docs wait for their move: the files the open branches
    /// hold (app.rs, auth/throttle.rs) are not touched until they merge.
    const DOCS_LATER: &[&str] = &["app.rs", "auth/throttle.rs"];

    #[test]
    fn every_file_says_what_it_owns_and_every_parent_names_its_modules() {
        let mut bad = Vec::new();
        for (path, text) in tree() {
            if !text.starts_with("//!") {
                bad.push(format!("{path}: no `//!` doc saying what it owns"));
            }
            if DOCS_LATER.contains(&path.as_str()) || path == "lib.rs" || path == "main.rs" {
                continue;
            }
            let docs: String = text
                .lines()
                .filter_map(|l| l.strip_prefix("//!"))
                .collect::<Vec<_>>()
                .join("\n");
            for child in facts(&module_path(&path), &code_only(&text)).children {
                let named = [
                    format!("`{child}`"),
                    format!("{child}.rs"),
                    format!("{child}/"),
                    format!("`{child}::"),
                    format!("[`{child}`]"),
                ]
                .iter()
                .any(|form| docs.contains(form.as_str()));
                if !named {
                    bad.push(format!("{path}: its docs do not name its module {child}"));
                }
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn the_architecture_page_names_files_that_exist_and_every_folder() {
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let page = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md"))
            .expect("docs/ARCHITECTURE.md");
        let named: Vec<&str> = page
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| !t.contains(' ') && (t.ends_with(".rs") || t.ends_with('/')))
            .collect();
        let mut bad = Vec::new();
        for path in &named {
            if !root.join(path).exists() && !root.join("src").join(path).exists() {
                bad.push(format!("{path} is named but not there"));
            }
        }
        for (file, _) in tree() {
            if let Some((folder, _)) = file.rsplit_once('/') {
                let folder = format!("{folder}/");
                if !named.contains(&folder.as_str()) {
                    bad.push(format!("the folder {folder} is not named"));
                }
            }
        }
        bad.dedup();
        assert!(bad.is_empty(), "docs/ARCHITECTURE.md:\n{}", bad.join("\n"));
    }

    #[test]
    fn an_import_against_the_layers_is_caught() {
        let file = |path: &str, text: &str| files(&[(path, text)]);
        // Upward: a store reaching into the web layer.
        let bad = rank_violations(&file(
            "session/sqlite.rs",
            "use crate::web::State;\nfn f() {}\n",
        ));
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("session -> web (imports a layer above it)"));
        assert!(bad[0].starts_with("session/sqlite.rs:1:"));
        // A sibling that must not: session into auth (auth into session is allowed).
        assert_eq!(
            rank_violations(&file(
                "session/engine.rs",
                "let t = crate::auth::throttle::X;"
            ))
            .len(),
            1
        );
        assert!(
            rank_violations(&file("auth/csrf.rs", "use crate::session::SessionKey;")).is_empty()
        );
        // A bottom helper reaching up, inside an expression.
        assert_eq!(
            rank_violations(&file("clock.rs", "    crate::logging::line(\"x\");")).len(),
            1
        );
        // Comments, doc links and strings are not imports.
        assert!(
            rank_violations(&file("db/mod.rs", "/// see [`crate::session::Store`]")).is_empty()
        );
        assert!(
            rank_violations(&file(
                "db/mod.rs",
                "let s = \"crate::web::x\"; /* crate::web::y */ let r = r#\"crate::web::z\"#;"
            ))
            .is_empty()
        );
    }

    #[test]
    fn an_area_importing_another_is_caught_however_it_is_written() {
        let web = |extra: &[(&'static str, &'static str)]| {
            let mut list = vec![
                ("lib.rs", "mod web;\n"),
                (
                    "web/mod.rs",
                    "mod account;\nmod admin;\nmod device;\nmod views;\n",
                ),
                ("web/device.rs", "pub(super) fn device() {}\n"),
                (
                    "web/account/mod.rs",
                    "mod page;\npub(super) use page::rows;\n",
                ),
                ("web/account/page.rs", "pub(crate) fn rows() {}\n"),
                ("web/admin/mod.rs", "mod users;\n"),
                ("web/views/mod.rs", "mod admin;\n"),
            ];
            list.extend_from_slice(extra);
            files(&list)
        };
        for (text, to) in [
            ("use super::super::account::rows;", "web/account/page.rs"),
            ("use crate::web::account::rows;", "web/account/page.rs"),
            (
                "fn f() { crate::web::account::page::rows() }",
                "web/account/page.rs",
            ),
            ("use super::super::{device, account};", "web/account/mod.rs"),
            (
                "use super::super::account;\nfn f() { account::rows() }",
                "web/account/mod.rs",
            ),
        ] {
            let bad = room_violations(&web(&[("web/admin/users.rs", text)]));
            assert_eq!(
                bad.first().map(String::as_str),
                Some(
                    format!("web/admin/users.rs:1: web area admin imports area account ({to})")
                        .as_str()
                ),
                "{text}"
            );
        }
        // A name a `use` brought in is followed into the file it names.
        let bad = room_violations(&web(&[(
            "web/admin/users.rs",
            "use super::super::account;\nfn f() { account::rows() }",
        )]));
        assert!(
            bad.iter().any(|b| b.ends_with("(web/account/page.rs)")),
            "{bad:?}"
        );
        // The shared modules are fine; so is the area's own folder.
        assert!(
            room_violations(&web(&[(
                "web/admin/users.rs",
                "use super::super::device::device;"
            )]))
            .is_empty()
        );
        // The views import no area.
        let bad = room_violations(&web(&[(
            "web/views/admin.rs",
            "use crate::web::account::rows;",
        )]));
        assert_eq!(
            bad,
            ["web/views/admin.rs:1: the views import area account (web/account/page.rs)"]
        );
    }

    #[test]
    fn a_circle_is_caught_and_named_and_a_parent_with_its_children_is_none() {
        // Two siblings that use each other.
        let found = circles(&files(&[
            (
                "config/mod.rs",
                "mod table;\nmod layers;\npub use layers::Layers;\npub struct Config;\n",
            ),
            (
                "config/table.rs",
                "use super::Config;\nuse super::layers::Draft;\n",
            ),
            (
                "config/layers.rs",
                "pub struct Layers;\npub struct Draft;\n\nfn f() { super::table::x() }\n",
            ),
        ]));
        assert_eq!(
            found,
            ["config/layers.rs:4 -> config/table.rs:2 -> config/layers.rs"]
        );
        // Around three files, through a re-export and a name a `use` brought in.
        let found = circles(&files(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::b;\nfn f() { b::g() }\n"),
            ("b.rs", "pub fn g() { crate::c::h() }\n"),
            ("c/mod.rs", "mod inner;\npub use inner::h;\n"),
            ("c/inner.rs", "pub fn h() {}\nfn i() { crate::a::f() }\n"),
        ]));
        assert_eq!(found, ["a.rs:1 -> b.rs:1 -> c/inner.rs:2 -> a.rs"]);
        // A parent calling its children, which use the parent's items: one way.
        assert!(
            circles(&files(&[
                (
                    "cli/mod.rs",
                    "mod user;\npub struct Global;\nfn run() { user::user() }\n"
                ),
                (
                    "cli/user.rs",
                    "use super::Global;\npub(super) fn user() {}\n"
                ),
            ]))
            .is_empty()
        );
        // A test module's `super` is its own file.
        assert!(
            circles(&files(&[
                ("lib.rs", "mod x;\nmod z;\n"),
                ("x/mod.rs", "mod y;\nfn a() {}\n"),
                ("x/y.rs", "fn b() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    fn c() { super::b() }\n}\n"),
                ("z.rs", "fn d() { crate::x::y::b() }\n"),
            ]))
            .is_empty()
        );
    }

    #[test]
    fn use_trees_are_read_whole() {
        let toks = tokens("super::views::{self, LoginView as Login, nested::{a, b::*}}");
        let paths: Vec<(String, Option<String>)> = use_paths(&toks)
            .into_iter()
            .map(|p| (p.segments.join("::"), p.name))
            .collect();
        assert_eq!(
            paths,
            [
                ("super::views".to_owned(), Some("views".to_owned())),
                (
                    "super::views::LoginView".to_owned(),
                    Some("Login".to_owned())
                ),
                ("super::views::nested::a".to_owned(), Some("a".to_owned())),
                ("super::views::nested::b::*".to_owned(), None),
            ]
        );
        let blank = code_only("let c = '{'; let l: &'a str = \"}\"; // }\nlet d = '\\n';");
        assert!(!blank.contains('{') && !blank.contains('}'), "{blank}");
        assert!(blank.contains("&'a str"), "{blank}");
        assert_eq!(blank.lines().count(), 2);
    }
}
