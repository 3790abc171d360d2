//! The layering written in `src/lib.rs`'s Layout doc holds: every `crate::` path in non-test code of
//! `src/` names a module in a layer strictly below the module it is written in. A module that
//! reaches sideways or up (an import cycle in the making) fails this test with the file and path.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `module → layer` from the ```text block of lib.rs's Layout section (`layer N  a b c`).
fn layer_table(lib: &str) -> BTreeMap<String, usize> {
    let mut table = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim_start_matches("//!").trim().strip_prefix("layer ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let n: usize = words
            .next()
            .and_then(|w| w.parse().ok())
            .expect("layer number");
        for m in words {
            assert!(
                table.insert(m.to_string(), n).is_none(),
                "`{m}` listed twice"
            );
        }
    }
    assert!(!table.is_empty(), "no layer table in lib.rs");
    table
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments and without `#[cfg(test)]` items (a test may build anything).
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut lines = src.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if t.starts_with("#[cfg(test)]") {
            // Skip the next item: up to its matching closing brace (or `;` for a one-line item).
            let mut depth = 0i32;
            let mut opened = false;
            for l in lines.by_ref() {
                for c in l.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if (opened && depth <= 0) || (!opened && l.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every top-level module named by a `crate::` path in `code`, including grouped ones
/// (`crate::{a::X, b}`).
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn modules_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let table = layer_table(&fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(&own) = table.get(&top) else {
            violations.push(format!(
                "src/{rel}: module `{top}` is missing from lib.rs's layer table"
            ));
            continue;
        };
        for used in crate_paths(&code_only(&fs::read_to_string(&file).unwrap())) {
            if used == top {
                continue;
            }
            match table.get(&used) {
                Some(&l) if l < own => {}
                Some(&l) => violations.push(format!(
                    "src/{rel}: `{top}` (layer {own}) uses `crate::{used}` (layer {l}): a module may use only lower layers"
                )),
                None => {} // a re-exported item or macro at the crate root, not a module
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn every_module_declared_in_lib_rs_is_in_the_table() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let table = layer_table(&lib);
    for line in lib.lines() {
        if let Some(m) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
        {
            let m = m.trim_end_matches(';');
            assert!(
                table.contains_key(m),
                "`{m}` is declared in lib.rs but not in its layer table"
            );
        }
    }
}

#[test]
fn the_checker_sees_upward_paths() {
    // The parser itself: a grouped import, a plain path, comments and test items.
    let code = code_only(
        "use crate::{ledger::X, api};\n// crate::cli\n#[cfg(test)]\nmod tests {\n use crate::app;\n}\nfn f() { crate::pipeline::run(); }\n",
    );
    assert_eq!(crate_paths(&code), ["ledger", "api", "pipeline"]);
}
