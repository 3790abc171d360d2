//! The console's two static files, compiled into the binary.
//!
//! - `htmx-2.0.11.min.js`: htmx 2.0.11 (BSD-2-Clause), vendored unmodified from the npm package
//!   `htmx.org@2.0.11` (`dist/htmx.min.js`, 52,182 bytes, SHA-256
//!   `d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717`). Rebuild: `npm pack
//!   htmx.org@2` in a scratch directory, untar, copy `package/dist/htmx.min.js` to
//!   `src/console/assets/`, update the version, size and checksum here and in the test below.
//!   A unit test checks the checksum, so the file cannot change unnoticed.
//! - `console.css`: the one stylesheet (ours).
//!
//! Both are served with a year-long immutable cache; pages link them with `?v=` and the content's
//! hash, so a new build is fetched at once, and with Subresource Integrity.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The vendored htmx, as published.
const HTMX: &[u8] = include_bytes!("assets/htmx.min.js");
pub(crate) const HTMX_NAME: &str = "htmx-2.0.11.min.js";
const CSS: &[u8] = include_bytes!("assets/console.css");
pub(crate) const CSS_NAME: &str = "console.css";

/// One embedded file: its bytes, type, and the link attributes pages use.
pub(crate) struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    /// `/console/assets/<name>?v=<first 16 hex of SHA-256>`.
    pub(crate) href: String,
    /// `sha256-<base64>` for the `integrity` attribute.
    pub(crate) integrity: String,
    etag: String,
}

fn asset(name: &str, bytes: &'static [u8], content_type: &'static str) -> Asset {
    let digest = Sha256::digest(bytes);
    let hex = hex::encode(digest);
    Asset {
        bytes,
        content_type,
        href: format!("/console/assets/{name}?v={}", &hex[..16]),
        integrity: format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        ),
        etag: format!("\"{}\"", &hex[..32]),
    }
}

pub(crate) static HTMX_ASSET: LazyLock<Asset> =
    LazyLock::new(|| asset(HTMX_NAME, HTMX, "text/javascript; charset=utf-8"));
pub(crate) static CSS_ASSET: LazyLock<Asset> =
    LazyLock::new(|| asset(CSS_NAME, CSS, "text/css; charset=utf-8"));

pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let a: &Asset = match name.as_str() {
        HTMX_NAME => &HTMX_ASSET,
        CSS_NAME => &CSS_ASSET,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut r = a.bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        h.insert(header::ETAG, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of [`HTMX`] as published on npm.
    const HTMX_SHA256: &str = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717";

    #[test]
    fn the_vendored_htmx_is_the_published_file() {
        assert_eq!(hex::encode(Sha256::digest(HTMX)), HTMX_SHA256);
        assert!(
            HTMX_ASSET
                .href
                .starts_with("/console/assets/htmx-2.0.11.min.js?v=")
        );
        assert!(CSS_ASSET.integrity.starts_with("sha256-"));
    }
}
