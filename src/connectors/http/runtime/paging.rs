//! Pagination: the next page of a step's request from SCIM indices, a next-link pointer, a page token,
//! an offset, or a `Link` header — only ever on the target's own origin.

use super::*;

/// Pagination stops here even if the target keeps offering pages.
pub(super) const MAX_PAGES: usize = 200;

impl HttpConnector {
    /// Set up `next` for the page after `resp`; `false` when there is none.
    pub(super) fn next_page(
        &self,
        paginate: &Paginate,
        resp: &Response,
        next: &mut reqwest::Request,
        endpoint: Option<&str>,
    ) -> Result<bool, Outcome> {
        match paginate {
            Paginate::Scim { count } => {
                let num = |p: &str| resp.json.pointer(p).and_then(Value::as_u64);
                let total = num("/totalResults").unwrap_or(0);
                let start = num("/startIndex").unwrap_or(1);
                let got = num("/itemsPerPage")
                    .or_else(|| {
                        resp.json
                            .pointer("/Resources")
                            .and_then(Value::as_array)
                            .map(|a| a.len() as u64)
                    })
                    .unwrap_or(0);
                let next_start = start + got;
                if got == 0 || next_start > total {
                    return Ok(false);
                }
                let url = next.url_mut();
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| k != "startIndex" && k != "count")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                url.query_pairs_mut()
                    .clear()
                    .extend_pairs(pairs)
                    .append_pair("startIndex", &next_start.to_string())
                    .append_pair("count", &count.to_string());
                Ok(true)
            }
            Paginate::NextLink { pointer } => {
                let link = match resp.json.pointer(pointer) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => return Ok(false),
                };
                self.follow(&link, next, endpoint)
            }
            Paginate::PageToken { pointer, param } => {
                let token = match resp.json.pointer(pointer) {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => return Ok(false),
                };
                set_query_param(next.url_mut(), param, &token);
                Ok(true)
            }
            Paginate::Offset { start, limit, size } => {
                let got = resp.json.as_array().map(Vec::len).unwrap_or(0) as u64;
                if got < u64::from(*size) {
                    return Ok(false);
                }
                let at = next
                    .url()
                    .query_pairs()
                    .find(|(k, _)| k == start.as_str())
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .unwrap_or(0);
                set_query_param(next.url_mut(), start, &(at + got).to_string());
                set_query_param(next.url_mut(), limit, &size.to_string());
                Ok(true)
            }
            Paginate::Link => {
                let link = resp
                    .headers
                    .get_all(LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(|v| link_with_rel(v, "next"));
                match link {
                    Some(link) => self.follow(&link, next, endpoint),
                    None => Ok(false),
                }
            }
        }
    }

    /// Point `next` at `link` (absolute, or relative to the current page) — only on the base URL's own
    /// origin: a target (or anyone who can inject a header or body into its answer) must not be able to
    /// make us send our credentials elsewhere.
    pub(super) fn follow(
        &self,
        link: &str,
        next: &mut reqwest::Request,
        endpoint: Option<&str>,
    ) -> Result<bool, Outcome> {
        let url = next.url().join(link).map_err(|e| Outcome::Failed {
            reason: format!("next-page link `{}` is not a URL: {e}", short(link)),
        })?;
        let (base_url, _, _) = self.target(endpoint)?;
        if url.origin() != base_url.origin() {
            return Err(Outcome::Failed {
                reason: format!(
                    "next-page link leaves the target ({}); refusing to send credentials there",
                    url.origin().ascii_serialization()
                ),
            });
        }
        *next.url_mut() = url;
        Ok(true)
    }
}

/// Set query parameter `name` to `value`, dropping any earlier value of it (a page's own token or
/// offset replaces the previous page's).
pub(super) fn set_query_param(url: &mut reqwest::Url, name: &str, value: &str) {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
}

/// The URL of the `Link` entry (RFC 8288) whose `rel` includes `rel`: `<https://x/p2>; rel="next"`.
/// Entries may share one header value, comma-separated.
pub(crate) fn link_with_rel(value: &str, rel: &str) -> Option<String> {
    let mut rest = value;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let url = &rest[start + 1..end];
        let after = &rest[end + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        for param in after[..params_end].split([';', ',']) {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case(rel))
            {
                return Some(url.trim().to_string());
            }
        }
        rest = &after[params_end..];
    }
}

/// Lists from later pages are appended; scalars keep the first page's value.
pub(super) fn merge_pages(
    mut first: Map<String, Value>,
    next: Map<String, Value>,
) -> Map<String, Value> {
    for (k, v) in next {
        match (first.get_mut(&k), v) {
            (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
            (Some(_), _) if k != "status" && k != "etag" => {}
            (_, v) => {
                first.insert(k, v);
            }
        }
    }
    first
}
