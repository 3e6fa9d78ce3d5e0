//! The layers of DESIGN.md, checked: every `crate::...` path in `src/`
//! points down the table below (or along one of the few sideways edges it
//! names), and no page module of `web/` imports another. A test, not a
//! convention, so the layers stay checked after a restructuring and not
//! just tidy on the day it lands.
//!
//! To add a module: give it a rank here. An import that does not fit is a
//! design question (move the type down, or pass it in from above), not a
//! line to add to `SIDEWAYS`.

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
/// layer never reaches into `auth`.
const SIDEWAYS: &[(&str, &str)] = &[("auth", "session")];

/// The page modules of `web/`: each imports `shared`, `state`, `views`,
/// `form`, `error` (and `gate` its `tunnel`), never another page.
const PAGES: &[&str] = &[
    "account",
    "admin",
    "api",
    "dashboard",
    "factors",
    "gate",
    "ops",
    "setup",
    "signin",
];

fn rank(module: &str) -> Option<u8> {
    RANKS.iter().find(|(m, _)| *m == module).map(|&(_, r)| r)
}

/// The top-level module a file of `src/` belongs to (`None` for the crate
/// roots, `lib.rs` and `main.rs`, which may use anything, and for this
/// file, whose test sources name forbidden imports on purpose).
fn module_of(path: &str) -> Option<&str> {
    let first = path.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "layers")).then_some(name)
}

/// The modules named by `crate::x` paths on the code lines of `text`
/// (comments and doc comments are not imports).
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

/// Every import in `files` (path under `src/`, text) that breaks the
/// layers, as `path:line: a -> b (why)`.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, text) in files {
        let Some(from) = module_of(path) else {
            continue;
        };
        let Some(from_rank) = rank(from) else {
            bad.push(format!("{path}: module {from} has no rank in layers.rs"));
            continue;
        };
        for (line, to) in uses(text) {
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
        // Page modules of web/ share helpers through shared.rs only.
        if let Some(page) = path
            .strip_prefix("web/")
            .and_then(|p| p.strip_suffix(".rs"))
            .filter(|p| PAGES.contains(p))
        {
            for (n, l) in text.lines().enumerate() {
                if l.trim_start().starts_with("//") {
                    continue;
                }
                for other in PAGES.iter().filter(|o| **o != page) {
                    let direct = format!("super::{other}::");
                    let listed = format!("super::{{{other}");
                    let web = format!("crate::web::{other}");
                    if l.contains(&direct) || l.contains(&listed) || l.contains(&web) {
                        bad.push(format!(
                            "{path}:{}: web page {page} imports page {other}",
                            n + 1
                        ));
                    }
                }
            }
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
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        read(&src, &src, &mut files);
        files
    }

    #[test]
    fn every_import_in_src_points_down_the_layers() {
        let files = tree();
        assert!(files.len() > 40, "read {} files", files.len());
        let bad = violations(&files);
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
    fn an_import_against_the_layers_is_caught() {
        let file = |path: &str, text: &str| vec![(path.to_owned(), text.to_owned())];
        // Upward: a store reaching into the web layer.
        let bad = violations(&file(
            "session/sqlite.rs",
            "use crate::web::State;\nfn f() {}\n",
        ));
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("session -> web (imports a layer above it)"));
        assert!(bad[0].starts_with("session/sqlite.rs:1:"));
        // A sibling that must not: session into auth (auth into session is allowed).
        assert_eq!(
            violations(&file(
                "session/engine.rs",
                "let t = crate::auth::throttle::X;"
            ))
            .len(),
            1
        );
        assert!(violations(&file("auth/csrf.rs", "use crate::session::SessionKey;")).is_empty());
        // A bottom helper reaching up, inside an expression.
        assert_eq!(
            violations(&file("clock.rs", "    crate::logging::line(\"x\");")).len(),
            1
        );
        // Comments and doc links are not imports.
        assert!(violations(&file("db/mod.rs", "/// see [`crate::session::Store`]")).is_empty());
        // A web page importing another page.
        let bad = violations(&file("web/admin.rs", "use super::account::session_rows;"));
        assert_eq!(bad, ["web/admin.rs:1: web page admin imports page account"]);
        assert!(violations(&file("web/admin.rs", "use super::shared::html;")).is_empty());
    }
}
