//! Reading answers into memory with a cap enforced while reading.

use crate::error::{parse_error_body, redact, Error, Result};
use bytes::{Bytes, BytesMut};

/// The largest error body we read to find the registry's error codes.
pub(crate) const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Reads the whole body, failing as soon as it passes `limit` bytes (whatever
/// `Content-Length` claimed).
pub(crate) async fn read_capped(mut resp: reqwest::Response, limit: u64) -> Result<Bytes> {
    let url = resp.url().clone();
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(Error::TooLarge {
            url: redact(&url),
            limit,
        });
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Error::transport(&url, e))? {
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(Error::TooLarge {
                url: redact(&url),
                limit,
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Turns an error answer into [`Error::Registry`] with the parsed error body.
pub(crate) async fn error_from(resp: reqwest::Response) -> Error {
    let status = resp.status().as_u16();
    let url = redact(resp.url());
    let errors = match read_capped(resp, MAX_ERROR_BODY).await {
        Ok(b) => parse_error_body(&b),
        Err(_) => Vec::new(),
    };
    Error::Registry {
        status,
        url,
        errors,
    }
}

/// Returns the answer when its status is one of `ok`, else the registry error.
pub(crate) async fn expect_status(
    resp: reqwest::Response,
    ok: &[u16],
) -> Result<reqwest::Response> {
    if ok.contains(&resp.status().as_u16()) {
        Ok(resp)
    } else {
        Err(error_from(resp).await)
    }
}
