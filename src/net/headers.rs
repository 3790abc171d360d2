//! Rate-limit headers: when a target says to come back. Used by the connector runtime's retry
//! decisions and by notification delivery.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// When the target asked us to come back: `Retry-After` (delta-seconds or HTTP-date, RFC 9110 §10.2.3),
/// else a rate-limit reset header (`X-RateLimit-Reset` / `RateLimit-Reset`, CrowdStrike's
/// `X-RateLimit-RetryAfter`: epoch seconds when large, epoch milliseconds when larger still, otherwise
/// seconds from now). A date in the past means "now" (zero).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(v) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()) {
        if let Some(d) = parse_retry_after(v, now) {
            return Some(d);
        }
    }
    for name in [
        "x-ratelimit-reset",
        "ratelimit-reset",
        "x-rate-limit-reset",
        "x-ratelimit-retryafter",
    ] {
        if let Some(n) = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            // CrowdStrike's API reference calls X-RateLimit-RetryAfter milliseconds since the epoch while
            // its gateway sends seconds; both are read as the instant they name.
            if n > 100_000_000_000 {
                let at = SystemTime::UNIX_EPOCH + Duration::from_millis(n);
                return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
            }
            if n > 1_000_000_000 {
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs(n);
                return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
            }
            return Some(Duration::from_secs(n));
        }
    }
    None
}

/// One `Retry-After` value.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1445412490"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(10)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn crowdstrike_retry_after_header_names_an_instant_in_seconds_or_milliseconds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-retryafter",
            HeaderValue::from_static("1445412483"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
        h.insert(
            "x-ratelimit-retryafter",
            HeaderValue::from_static("1445412482500"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(2500)));
        h.insert(
            "x-ratelimit-retryafter",
            HeaderValue::from_static("1445412000"),
        );
        assert_eq!(
            retry_after(&h, now),
            Some(Duration::ZERO),
            "in the past: now"
        );
    }
}
