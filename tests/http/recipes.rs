//! The OIDC recipes: every gatehouse block in docs/recipes/oidc loads.
//!
//! Each ```toml block of each `docs/recipes/oidc/*.md` becomes the
//! `gatehouse.toml` of a fresh data directory and goes through the real
//! binary's `check-config`, which refuses an unknown field or a bad value
//! naming the client and the field: a typo in a recipe fails here.

use std::path::{Path, PathBuf};

use crate::cli::{fails, gatehouse, ok};

/// Every recipe, in name order.
fn recipes() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/recipes/oidc");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    out.sort();
    out
}

/// The ```toml blocks of a Markdown text, in order.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == "```toml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start() == "```" => out.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "a ```toml block is not closed");
    out
}

/// The block as a whole configuration: `public_url` added when it lacks one.
fn config(block: &str) -> String {
    if block
        .lines()
        .any(|l| l.trim_start().starts_with("public_url"))
    {
        block.to_owned()
    } else {
        format!("public_url = \"https://auth.lan\"\n{block}")
    }
}

/// Runs `check-config` on `config` in a new data directory.
fn check(config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("gatehouse.toml"), config).expect("config");
    gatehouse(dir.path(), &["check-config"], None)
}

#[test]
fn every_recipe_block_is_a_valid_configuration() {
    let all = recipes();
    assert!(all.len() >= 11, "recipes: {all:?}");
    let mut checked = 0;
    for path in &all {
        let name = path.file_name().expect("name").to_string_lossy();
        let text = std::fs::read_to_string(path).expect("read");
        let blocks = toml_blocks(&text);
        if name != "README.md" {
            assert!(!blocks.is_empty(), "{name} has no ```toml block");
        }
        for (i, block) in blocks.iter().enumerate() {
            let out = check(&config(block));
            assert!(
                out.status.success(),
                "{name}, block {}: check-config failed:\n{}\n{block}",
                i + 1,
                String::from_utf8_lossy(&out.stderr)
            );
            let shown = ok(&out);
            // Every client of the block was loaded.
            let clients = block.lines().filter(|l| l.trim() == "[[clients]]").count();
            assert!(clients > 0, "{name}, block {}: no [[clients]]", i + 1);
            assert_eq!(
                shown.lines().filter(|l| l.starts_with("client \"")).count(),
                clients,
                "{name}, block {}:\n{shown}",
                i + 1
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} blocks");
}

#[test]
fn a_typo_in_a_recipe_block_is_caught() {
    // The check above would let a misspelt field through if check-config
    // ignored unknown keys; it does not.
    let path = recipes()
        .into_iter()
        .find(|p| p.ends_with("grafana.md"))
        .expect("grafana.md");
    let block = toml_blocks(&std::fs::read_to_string(path).expect("read"))
        .into_iter()
        .next()
        .expect("a block");
    for (right, wrong) in [
        ("redirect_uris", "redirect_uri"),
        ("launch_url", "launch_uri"),
        ("from_groups", "from_group"),
    ] {
        assert!(block.contains(right), "{right} not in {block}");
        let err = fails(&check(&config(&block.replacen(right, wrong, 1))));
        assert!(err.contains(wrong) || err.contains("claims"), "{err}");
    }
    let err = fails(&check(&config(&block).replacen(
        "public_url",
        "publc_url",
        1,
    )));
    assert!(err.contains("publc_url"), "{err}");
}
