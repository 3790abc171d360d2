//! The starter policies, compiled into the binary: what serves when `[policy] dir` is not set, so
//! `deprovd run` works from a lone binary in any directory, and what `deprovd policy init DIR` writes
//! out for editing. They are the files of the repository's `policies/` folder, byte for byte (a test
//! keeps them so), so their digest is the same whether served from here or from a checkout.

use std::path::{Path, PathBuf};

use super::bundle::{FileKind, Scan, SourceFile, digest_of};

/// One embedded file: its path relative to the bundle root and its bytes.
pub(crate) struct StarterFile {
    pub rel: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! starter {
    ($($rel:literal),* $(,)?) => {
        &[$(StarterFile { rel: $rel, bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/", $rel)) }),*]
    };
}

/// Every file of the starter set, as `policy init` writes it: the bundle (policies, tests, data)
/// plus its README and the sample alerts with their expected decisions.
pub(crate) const FILES: &[StarterFile] = starter!(
    "README.md",
    "data.yaml",
    "deprovd.rego",
    "deprovd_test.rego",
    "samples/alerts.jsonl",
    "samples/expected.jsonl",
);

/// What a log line or an error message calls the embedded bundle.
pub(crate) const EMBEDDED_NAME: &str = "the embedded starter policies";

/// The embedded bundle as if read from a directory: the same files [`super::bundle::scan`] would
/// pick from `policies/`, with the same digest.
pub(crate) fn scan() -> Scan {
    let mut files: Vec<SourceFile> = FILES
        .iter()
        .filter_map(|f| {
            let name = f.rel.rsplit('/').next().unwrap_or(f.rel);
            super::bundle::classify(name).map(|kind: FileKind| SourceFile {
                rel: f.rel.to_string(),
                kind,
                bytes: f.bytes.to_vec(),
            })
        })
        .collect();
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    let digest = digest_of(&files);
    Scan {
        files,
        digest,
        signature: None,
    }
}

/// Why `policy init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InitError {
    #[error(
        "`{}` already exists; nothing was written (pass --force to overwrite the starter files)",
        .0.display()
    )]
    Exists(PathBuf),
    #[error("cannot write `{}`: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Write the starter set under `dir` (created if missing) and return the paths written. Without
/// `force`, refuses before writing anything when any of the files already exists.
pub(crate) fn init(dir: &Path, force: bool) -> Result<Vec<PathBuf>, InitError> {
    let targets: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f.rel)).collect();
    if !force {
        if let Some(existing) = targets.iter().find(|p| p.exists()) {
            return Err(InitError::Exists(existing.clone()));
        }
    }
    for (file, path) in FILES.iter().zip(&targets) {
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, file.bytes)
        };
        write(path).map_err(|error| InitError::Write {
            path: path.clone(),
            error,
        })?;
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_set_is_the_checkout_s_policies_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let on_disk = super::super::bundle::scan(&root).unwrap();
        let embedded = scan();
        assert_eq!(
            embedded.digest, on_disk.digest,
            "embedded bundle differs from policies/"
        );
        assert_eq!(
            embedded.files.iter().map(|f| &f.rel).collect::<Vec<_>>(),
            on_disk.files.iter().map(|f| &f.rel).collect::<Vec<_>>()
        );
    }

    #[test]
    fn init_writes_a_bundle_that_loads_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("mine");
        let written = init(&target, false).unwrap();
        assert_eq!(written.len(), FILES.len());
        assert_eq!(
            super::super::bundle::scan(&target).unwrap().digest,
            scan().digest
        );
        let e = init(&target, false).unwrap_err();
        assert!(matches!(e, InitError::Exists(_)), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        std::fs::write(target.join("deprovd.rego"), "package changed").unwrap();
        init(&target, true).unwrap();
        assert_eq!(
            std::fs::read(target.join("deprovd.rego")).unwrap(),
            FILES
                .iter()
                .find(|f| f.rel == "deprovd.rego")
                .unwrap()
                .bytes
        );
    }
}
