//! Reading requests within their limits: the head's size, the body's size
//! and arrival deadline, JSON bodies, query parameters and hex values.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use hyper::header::CONTENT_LENGTH;
use hyper::Request;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The size of a request head as it was sent, near enough: request line
/// and header lines with their separators.
pub fn head_size<B>(req: &Request<B>) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .fold(line, usize::saturating_add)
}

/// Reads the whole body: at most `max` bytes (else `body-too-large`), all
/// of it within `timeout` (else `request-timeout`).
pub async fn read_body<B>(req: Request<B>, max: usize, timeout: Duration) -> Result<Bytes, ApiError>
where
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX)) {
        return Err(ApiError::BodyTooLarge(max));
    }
    let limited = Limited::new(req.into_body(), max);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::RequestTimeout("body", timeout.as_millis())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::BodyTooLarge(max))
        }
        Ok(Err(e)) => Err(ApiError::BadRequest(format!("cannot read the body: {e}"))),
    }
}

/// Reads the body and decodes it as JSON.
pub async fn read_json<T, B>(req: Request<B>, max: usize, timeout: Duration) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    B: Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let bytes = read_body(req, max, timeout).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))
}

/// The value of query parameter `name` (first occurrence; no
/// percent-decoding: the API's parameters never need it).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Lowercase hex.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Hex (either case) to bytes; `None` for odd lengths or other characters.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(nibble(*hi)? << 4 | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn post(body: &'static [u8]) -> Request<Full<Bytes>> {
        Request::post("/v1/ping")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    }

    #[tokio::test]
    async fn bodies_within_limits() {
        let t = Duration::from_secs(5);
        assert_eq!(&read_body(post(b"abc"), 3, t).await.unwrap()[..], b"abc");
        assert_eq!(
            read_body(post(b"abcd"), 3, t).await.unwrap_err().kind(),
            "body-too-large"
        );
        let mut req = post(b"");
        req.headers_mut()
            .insert(CONTENT_LENGTH, "1000000".parse().unwrap());
        assert_eq!(
            read_body(req, 10, t).await.unwrap_err().kind(),
            "body-too-large"
        );
        let v: serde_json::Value = read_json(post(br#"{"a":1}"#), 64, t).await.unwrap();
        assert_eq!(v["a"], 1);
        let e = read_json::<serde_json::Value, _>(post(b"{nope"), 64, t)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "bad-request");
    }

    /// A body that never sends anything.
    struct Stall;

    impl Body for Stall {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_times_out() {
        let req = Request::post("/v1/ping").body(Stall).unwrap();
        let e = read_body(req, 64, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "request-timeout");
        assert_eq!(e.status().as_u16(), 408);
    }

    #[test]
    fn query_and_hex() {
        assert_eq!(query_param(Some("nonce=ab&x=1"), "nonce"), Some("ab"));
        assert_eq!(query_param(Some("x=1&nonce=cd"), "nonce"), Some("cd"));
        assert_eq!(query_param(Some("nonce"), "nonce"), Some(""));
        assert_eq!(query_param(Some("x=1"), "nonce"), None);
        assert_eq!(query_param(None, "nonce"), None);
        assert_eq!(hex_decode("00fFa1"), Some(vec![0x00, 0xff, 0xa1]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode(""), Some(vec![]));
        assert_eq!(hex_encode(&[0x00, 0xff, 0xa1]), "00ffa1");
    }
}
