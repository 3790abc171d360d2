//! JSON pointers (RFC 6901) with a `*` segment, and the extracts built from them.

use super::*;

/// `""`, `"/a/b/0"`, `"/a/*/id"`; `~0`/`~1` unescaped per RFC 6901.
pub(crate) fn parse_pointer(p: &str) -> Result<Vec<Seg>, SpecError> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(SpecError::Pointer(p.to_string()));
    };
    Ok(rest
        .split('/')
        .map(|s| {
            if s == "*" {
                Seg::Any
            } else {
                Seg::Key(s.replace("~1", "/").replace("~0", "~"))
            }
        })
        .collect())
}

pub(super) fn compile_extract(e: &ExtractSpec) -> Result<Extractor, SpecError> {
    match e {
        ExtractSpec::Pointer(p) => {
            if let Some(h) = p.strip_prefix("header:") {
                HeaderName::from_bytes(h.trim().as_bytes())
                    .map(Extractor::Header)
                    .map_err(|_| SpecError::HeaderName(h.to_string()))
            } else {
                parse_pointer(p).map(Extractor::Pointer)
            }
        }
        ExtractSpec::Project(p) => {
            let from = parse_pointer(&p.from)?;
            let mut fields = Vec::new();
            for (k, v) in &p.fields {
                fields.push((k.clone(), parse_pointer(v)?));
            }
            Ok(Extractor::Project { from, fields })
        }
    }
}
