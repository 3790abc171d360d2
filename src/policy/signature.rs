//! Bundle signatures: a detached Ed25519 signature over the bundle's manifest, so that only reviewed
//! policies run where `[policy] verify_key` is set.
//!
//! The manifest is `deprovd-bundle-v1\n` followed by one `<sha256 hex>  <relative path>\n` line per
//! bundle file (every `*.rego`, `data.json`, `data.yaml`), sorted by path — the files the digest
//! covers. The signature (base64, one line) is the file `.signature` in the bundle directory; being
//! hidden, it is not itself part of the bundle. Keys: the private key is PKCS#8 PEM, the public key
//! its 32 raw bytes in base64. All Ed25519 work is `ring`'s (already linked through rustls).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use super::bundle::SourceFile;

/// The signature file inside a bundle directory.
pub(crate) const SIGNATURE_FILE: &str = ".signature";

/// Why a bundle could not be signed or verified.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{path}` is not an Ed25519 private key in PKCS#8 PEM (`deprovd policy keygen` writes one)"
    )]
    BadPrivateKey { path: PathBuf },
    #[error("`{path}` is not an Ed25519 public key (32 bytes, base64)")]
    BadPublicKey { path: PathBuf },
    #[error(
        "the bundle has no `{SIGNATURE_FILE}`: sign it with `deprovd policy sign DIR --key KEY`"
    )]
    Missing,
    #[error("`{SIGNATURE_FILE}` is not a base64 Ed25519 signature")]
    Malformed,
    #[error(
        "the signature does not match the bundle: a file changed after signing, or another key signed it"
    )]
    Mismatch,
    #[error("cannot generate a key pair")]
    Generate,
}

/// The signed message for `files` (in any order).
pub(crate) fn manifest(files: &[SourceFile]) -> Vec<u8> {
    let mut lines: Vec<(&str, String)> = files
        .iter()
        .map(|f| (f.rel.as_str(), hex::encode(Sha256::digest(&f.bytes))))
        .collect();
    lines.sort();
    let mut out = b"deprovd-bundle-v1\n".to_vec();
    for (rel, digest) in lines {
        out.extend_from_slice(format!("{digest}  {rel}\n").as_bytes());
    }
    out
}

/// A new key pair: (PKCS#8 PEM private key, base64 public key).
pub(crate) fn generate_key() -> Result<(String, String), SignatureError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SignatureError::Generate)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| SignatureError::Generate)?;
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    Ok((pem, STANDARD.encode(pair.public_key().as_ref())))
}

fn read(path: &Path) -> Result<Vec<u8>, SignatureError> {
    std::fs::read(path).map_err(|source| SignatureError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The public key in `path` (base64 of 32 bytes).
pub(crate) fn read_public_key(path: &Path) -> Result<Vec<u8>, SignatureError> {
    let text = read(path)?;
    let bad = || SignatureError::BadPublicKey {
        path: path.to_path_buf(),
    };
    let key = STANDARD
        .decode(String::from_utf8_lossy(&text).trim())
        .map_err(|_| bad())?;
    if key.len() == 32 { Ok(key) } else { Err(bad()) }
}

/// Sign the bundle in `dir` with the PEM private key at `key`; writes `dir/.signature` and returns
/// the signature.
pub(crate) fn sign_bundle(dir: &Path, key: &Path) -> Result<String, super::PolicyError> {
    let scan = super::bundle::scan(dir)?;
    let pem_text = read(key)?;
    let bad = || SignatureError::BadPrivateKey {
        path: key.to_path_buf(),
    };
    let block = pem::parse(&pem_text).map_err(|_| bad())?;
    let pair = Ed25519KeyPair::from_pkcs8(block.contents()).map_err(|_| bad())?;
    let signature = STANDARD.encode(pair.sign(&manifest(&scan.files)).as_ref());
    let path = dir.join(SIGNATURE_FILE);
    std::fs::write(&path, format!("{signature}\n"))
        .map_err(|source| SignatureError::Write { path, source })?;
    Ok(signature)
}

/// Check `signature` (the `.signature` file's bytes, if any) over `files` with `public_key`.
pub(crate) fn verify(
    files: &[SourceFile],
    signature: Option<&[u8]>,
    public_key: &[u8],
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?;
    let signature = STANDARD
        .decode(String::from_utf8_lossy(signature).trim())
        .map_err(|_| SignatureError::Malformed)?;
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&manifest(files), &signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// Verify the bundle in `dir` against the public key at `key` (`deprovd policy verify`).
pub(crate) fn verify_bundle(dir: &Path, key: &Path) -> Result<(), super::PolicyError> {
    let scan = super::bundle::scan(dir)?;
    let public = read_public_key(key)?;
    Ok(verify(&scan.files, scan.signature.as_deref(), &public)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bundles_verify_and_any_change_breaks_the_signature() {
        let keys = tempfile::tempdir().unwrap();
        let (private, public) = generate_key().unwrap();
        std::fs::write(keys.path().join("k.pem"), private).unwrap();
        std::fs::write(keys.path().join("k.pub"), public).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.rego"), "package deprovd\n").unwrap();
        std::fs::write(dir.path().join("data.yaml"), "a: 1\n").unwrap();
        let (kp, kpub) = (keys.path().join("k.pem"), keys.path().join("k.pub"));

        assert!(matches!(
            verify_bundle(dir.path(), &kpub),
            Err(super::super::PolicyError::Signature(
                SignatureError::Missing
            ))
        ));
        sign_bundle(dir.path(), &kp).unwrap();
        verify_bundle(dir.path(), &kpub).unwrap();

        std::fs::write(dir.path().join("data.yaml"), "a: 2\n").unwrap();
        assert!(matches!(
            verify_bundle(dir.path(), &kpub),
            Err(super::super::PolicyError::Signature(
                SignatureError::Mismatch
            ))
        ));
        // Another key's signature does not verify either.
        sign_bundle(dir.path(), &kp).unwrap();
        let (_, other) = generate_key().unwrap();
        std::fs::write(keys.path().join("other.pub"), other).unwrap();
        assert!(verify_bundle(dir.path(), &keys.path().join("other.pub")).is_err());
        verify_bundle(dir.path(), &kpub).unwrap();
    }

    #[test]
    fn manifest_is_sorted_sha256_lines() {
        let f = |rel: &str, b: &[u8]| SourceFile {
            rel: rel.into(),
            kind: super::super::bundle::FileKind::Rego,
            bytes: b.to_vec(),
        };
        let m = manifest(&[f("b.rego", b"x"), f("a.rego", b"")]);
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "deprovd-bundle-v1\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a.rego\n\
             2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881  b.rego\n"
        );
    }
}
