//! Parsing of an HTTP/1.x request head (request line and headers), sans-IO.
//! Only what the read-only endpoint needs is kept: the method, the path
//! (query and fragment dropped) and the `Authorization` header. Anything
//! malformed is an error with the status code to answer, never a panic.

use thiserror::Error;

/// Largest request head accepted, terminating blank line included.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, as sent (methods are case-sensitive).
    pub method: String,
    /// The path, without query or fragment.
    pub path: String,
    /// The `Authorization` header's value, if present.
    pub authorization: Option<String>,
}

/// Why a head was refused, with the status code to answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeadError {
    /// Malformed: 400.
    #[error("bad request: {0}")]
    Malformed(&'static str),
    /// Over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] lines: 431.
    #[error("request head too large")]
    TooLarge,
    /// Not HTTP/1.0 or HTTP/1.1: 505.
    #[error("HTTP version not supported")]
    Version,
}

impl HeadError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) => 400,
            Self::TooLarge => 431,
            Self::Version => 505,
        }
    }
}

/// Where the head ends in `buf`: the index just past the blank line
/// (`\r\n\r\n`, or a bare `\n\n`), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Parses a complete head (as delimited by [`head_end`]).
pub fn parse_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    if head.len() > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let (method, path) = parse_request_line(request_line)?;
    let mut authorization = None;
    let mut count = 0;
    for line in lines {
        if line.is_empty() {
            break;
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("header line without a colon"))?;
        if !is_token(name) {
            return Err(HeadError::Malformed("bad header name"));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(HeadError::Malformed("control character in a header value"));
        }
        if name.eq_ignore_ascii_case("authorization") {
            if authorization.is_some() {
                return Err(HeadError::Malformed("more than one Authorization header"));
            }
            authorization = Some(value.trim().to_string());
        }
    }
    Ok(RequestHead {
        method: method.to_string(),
        path,
        authorization,
    })
}

fn parse_request_line(line: &str) -> Result<(&str, String), HeadError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if !is_token(method) {
        return Err(HeadError::Malformed("bad method"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => return Err(HeadError::Version),
        _ => return Err(HeadError::Malformed("bad HTTP version")),
    }
    if !target.starts_with('/') || target.chars().any(|c| c.is_control()) {
        return Err(HeadError::Malformed("target is not an absolute path"));
    }
    let end = target.find(['?', '#']).unwrap_or(target.len());
    Ok((method, target[..end].to_string()))
}

/// RFC 9110 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_heads() {
        let h = parse_head(
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nauthorization:  Bearer abc \r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, "/metrics");
        assert_eq!(h.authorization.as_deref(), Some("Bearer abc"));
        let h = parse_head(b"HEAD /status HTTP/1.0\n\n").unwrap();
        assert_eq!((h.method.as_str(), h.path.as_str()), ("HEAD", "/status"));
        assert!(h.authorization.is_none());
    }

    #[test]
    fn bad_heads_are_400() {
        for bad in [
            &b"\r\n\r\n"[..],
            b"GET\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET * HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / FTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: \x01\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            let e = parse_head(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn other_versions_are_505() {
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n").unwrap_err().status(),
            505
        );
    }

    #[test]
    fn too_large_is_431() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many).unwrap_err().status(), 431);
        let big = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(parse_head(&big).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn head_end_finds_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        assert_eq!(head_end(b""), None);
        assert_eq!(head_end(b"\n"), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    [b'G', b' ', b'/', b'\r', b'\n', b':', b'H', 0xff, b'1'][seed as usize % 9]
                })
                .collect();
            let _ = head_end(&bytes);
            let _ = parse_head(&bytes);
        }
    }
}
