//! Reading HTTP response bodies with a size cap.
//!
//! `reqwest::Response::bytes()`/`json()` buffer whatever the peer sends before any size check can
//! run, so a misbehaving or hostile endpoint (a transmitter's JWKS, a poll answer, a webhook) could
//! make deprovd hold an arbitrarily large body. [`read_capped`] reads chunk by chunk and stops as
//! soon as the cap is passed. (The connector runtime has its own loop because it maps each failure
//! to a retry decision.)

/// Why a capped body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The body (announced or received) is longer than the cap; reading stopped there.
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
    /// The connection failed while reading.
    #[error("reading the response body: {0}")]
    Read(#[from] reqwest::Error),
    /// The body is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// The whole body of `resp`, or [`ReadError::TooLarge`] as soon as more than `max` bytes are
/// announced (`Content-Length`) or received — never buffering more than `max` plus one chunk.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The first `max` bytes of a body, for an error message: read chunk by chunk, the rest dropped with
/// the connection; a read error ends it early with what arrived. Unlike [`read_capped`], a longer body
/// is not an error — an excerpt is all the caller wants.
pub(crate) async fn read_prefix(mut resp: reqwest::Response, max: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = max - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    buf
}

/// As [`read_capped`], parsed as JSON.
pub(crate) async fn read_json_capped(
    resp: reqwest::Response,
    max: usize,
) -> Result<serde_json::Value, ReadError> {
    let body = read_capped(resp, max).await?;
    Ok(crate::json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Answers 200 with a chunked body: `chunks` chunks of `size` bytes, or endless chunks when
    /// `chunks` is `None`.
    async fn serve(chunks: Option<usize>, size: usize) -> String {
        crate::net::one_shot(move |mut s| async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("{size:x}\r\n{}\r\n", " ".repeat(size));
            let mut sent = 0;
            while chunks.is_none_or(|n| sent < n) {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    return; // the reader gave up: what the cap is for
                }
                sent += 1;
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
        })
        .await
    }

    async fn get(url: &str) -> reqwest::Response {
        reqwest::Client::new().get(url).send().await.unwrap()
    }

    #[tokio::test]
    async fn an_endless_body_stops_at_the_cap() {
        let url = serve(None, 1024).await;
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            read_capped(get(&url).await, 64 * 1024),
        )
        .await
        .expect("reading stops at the cap instead of waiting for the end");
        assert!(matches!(r, Err(ReadError::TooLarge(65536))), "{r:?}");
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let url = serve(Some(4), 1000).await;
        let body = read_capped(get(&url).await, 4000).await.unwrap();
        assert_eq!(body.len(), 4000);
        let url = serve(Some(4), 1000).await;
        assert!(matches!(
            read_capped(get(&url).await, 3999).await,
            Err(ReadError::TooLarge(3999))
        ));
    }

    #[tokio::test]
    async fn an_announced_length_over_the_cap_is_refused_before_reading() {
        let url = crate::net::one_shot(|mut s| async move {
            // Announces 10 MB, sends nothing more and keeps the connection open.
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10000000\r\n\r\n")
                .await;
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        })
        .await;
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            read_capped(get(&url).await, 1024),
        )
        .await
        .expect("refused from the header alone");
        assert!(matches!(r, Err(ReadError::TooLarge(1024))), "{r:?}");
    }
}
