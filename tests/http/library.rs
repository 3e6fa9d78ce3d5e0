//! The library's documented surface is what `docs/library.md` shows:
//! every name `src/lib.rs` re-exports, every documented method of
//! the session layer and its CSRF tokens, and no other gatehouse name; the
//! server's modules stay hidden; the guide's example is the crate docs'
//! (compiled) example, word for word.

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The library guide, `docs/library.md`.
fn library_section() -> String {
    read("docs/library.md")
}

/// The section's code: fenced blocks and `inline` spans.
fn code_of(section: &str) -> String {
    let mut code = String::new();
    for (i, part) in section.split("```").enumerate() {
        if i % 2 == 1 {
            // Comments in a block are prose.
            for line in part.lines() {
                code.push_str(line.split("//").next().unwrap_or(""));
                code.push('\n');
            }
        } else {
            for (j, span) in part.split('`').enumerate() {
                if j % 2 == 1 {
                    code.push_str(span);
                    code.push('\n');
                }
            }
        }
    }
    code
}

fn identifiers(code: &str) -> BTreeSet<String> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
        .map(str::to_owned)
        .collect()
}

/// The names `src/lib.rs` re-exports with `pub use`.
fn surface() -> BTreeSet<String> {
    let lib = read("src/lib.rs");
    let mut names = BTreeSet::new();
    for statement in lib.split(';') {
        let Some(at) = statement.find("\npub use ") else {
            continue;
        };
        let path = &statement[at + "\npub use ".len()..];
        let tail = match path.find('{') {
            Some(open) => &path[open + 1..path.rfind('}').expect("a closing brace")],
            None => path.rsplit("::").next().expect("a name"),
        };
        for name in tail.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            names.insert(name.to_owned());
        }
    }
    names
}

/// The `pub fn`s of `file` not marked `#[doc(hidden)]`.
fn documented_fns(file: &str) -> Vec<String> {
    let source = read(file);
    let lines: Vec<&str> = source.lines().collect();
    let mut fns = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("pub fn ") else {
            continue;
        };
        let hidden = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with("#["))
            .any(|l| l.contains("doc(hidden)"));
        if !hidden {
            let name = rest.split(['(', '<']).next().expect("a name");
            fns.push(name.to_owned());
        }
    }
    fns
}

#[test]
fn every_documented_name_is_in_the_readme_library_section_and_nothing_else() {
    let section = library_section();
    let shown = identifiers(&code_of(&section));
    let surface = surface();
    assert!(surface.contains("SessionLayer") && surface.contains("csrf"));
    let missing: Vec<_> = surface.iter().filter(|n| !shown.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "documented but not in docs/library.md: {missing:?}"
    );
    // Type-like (CamelCase) names the section shows that are not gatehouse's.
    let foreign = ["Request", "Response", "Duration", "Secure", "Default"];
    let camel = |n: &str| {
        n.starts_with(|c: char| c.is_ascii_uppercase())
            && n.contains(|c: char| c.is_ascii_lowercase())
    };
    let extra: Vec<_> = shown
        .iter()
        .filter(|n| camel(n) && !surface.contains(*n) && !foreign.contains(&n.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "in docs/library.md but not documented: {extra:?}"
    );
    // Items named through a re-exported module exist there.
    let code = code_of(&section);
    for (module, file) in [
        ("csrf", "src/web/layer/csrf.rs"),
        ("conformance", "src/session/conformance.rs"),
    ] {
        let source = read(file);
        for item in code.split(&format!("{module}::")).skip(1) {
            let name = item
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .expect("a name");
            let declared = ["fn", "const", "struct"]
                .iter()
                .any(|kind| source.contains(&format!("pub {kind} {name}")));
            assert!(
                declared,
                "docs/library.md names {module}::{name}, which {file} lacks"
            );
        }
    }
    for file in ["src/web/layer/mod.rs", "src/web/layer/csrf.rs"] {
        for name in documented_fns(file) {
            assert!(
                shown.contains(&name),
                "{file}: `{name}` is documented but not in docs/library.md"
            );
        }
    }
}

#[test]
fn the_server_modules_are_hidden_from_the_docs() {
    let lib = read("src/lib.rs");
    let lines: Vec<&str> = lib.lines().collect();
    let mut modules = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("pub mod ") {
            modules += 1;
            assert_eq!(
                i.checked_sub(1).map(|p| lines[p]),
                Some("#[doc(hidden)]"),
                "{line} is documented: re-export the library's items instead"
            );
        }
    }
    assert!(modules > 0);
}

#[test]
fn the_readme_example_is_the_compiled_crate_doc_example() {
    let section = library_section();
    let readme_example = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a rust block in the library section");
    let lib = read("src/lib.rs");
    let docs: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        docs.contains(&format!("```no_run\n{readme_example}\n```")),
        "docs/library.md's example differs from the one in src/lib.rs's docs"
    );
}
