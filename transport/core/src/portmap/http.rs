//! A minimal, bounded HTTP/1.1 client codec for UPnP-IGD: building a
//! request, and parsing a response the gateway sent (status line, headers,
//! body by `Content-Length`, chunked encoding, or up to the end of the
//! connection). Sans-IO; the driver does the TCP part.
//!
//! Everything is bounded: the head at [`MAX_HEAD`] bytes and
//! [`MAX_HEADERS`] headers, the whole response at [`MAX_RESPONSE`] bytes.
//! Anything beyond, or malformed, is a typed [`HttpError`], never a panic.
//! Requests always carry `Connection: close`, so the response ends where the
//! connection does.

use thiserror::Error;

/// Longest status line plus headers accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most headers accepted.
pub const MAX_HEADERS: usize = 64;
/// Longest whole response accepted (head and body).
pub const MAX_RESPONSE: usize = 64 * 1024;

/// Why a response was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpError {
    /// The head never ended, or is over [`MAX_HEAD`].
    #[error("HTTP head incomplete or over {MAX_HEAD} bytes")]
    Head,
    /// More than [`MAX_HEADERS`] headers.
    #[error("more than {MAX_HEADERS} HTTP headers")]
    TooManyHeaders,
    /// The status line is not `HTTP/1.x NNN ...`.
    #[error("bad HTTP status line")]
    StatusLine,
    /// A header line without a colon, or not UTF-8.
    #[error("bad HTTP header line")]
    Header,
    /// The body is shorter than `Content-Length` says.
    #[error("HTTP body truncated")]
    Truncated,
    /// Bad chunked encoding.
    #[error("bad HTTP chunked encoding")]
    Chunked,
    /// Over [`MAX_RESPONSE`].
    #[error("HTTP response over {MAX_RESPONSE} bytes")]
    TooLarge,
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Parses a whole response (everything read until the connection
    /// closed).
    pub fn parse(data: &[u8]) -> Result<Self, HttpError> {
        if data.len() > MAX_RESPONSE {
            return Err(HttpError::TooLarge);
        }
        let ((status_line, headers), rest) = parse_head(data)?;
        let status = parse_status(&status_line)?;
        let chunked = header(&headers, "transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            dechunk(rest)?
        } else if let Some(len) = header(&headers, "content-length") {
            let len: usize = len.trim().parse().map_err(|_| HttpError::Header)?;
            rest.get(..len).ok_or(HttpError::Truncated)?.to_vec()
        } else {
            rest.to_vec()
        };
        Ok(Self {
            status,
            headers,
            body,
        })
    }
}

/// The first header named `name` (case-insensitive) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A message head: the first line and the headers.
pub type Head = (String, Vec<(String, String)>);

/// Splits a message into its first line, its headers and what follows
/// the blank line. Used for SSDP answers too (HTTP over UDP).
pub fn parse_head(data: &[u8]) -> Result<(Head, &[u8]), HttpError> {
    let window = &data[..data.len().min(MAX_HEAD)];
    let end = find(window, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| find(window, b"\n\n").map(|i| (i, i + 2)))
        .ok_or(HttpError::Head)?;
    let head = std::str::from_utf8(&data[..end.0]).map_err(|_| HttpError::Header)?;
    let mut lines = head.lines();
    let first = lines.next().ok_or(HttpError::StatusLine)?.trim().to_owned();
    let mut headers = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(HttpError::TooManyHeaders);
        }
        let (name, value) = line.split_once(':').ok_or(HttpError::Header)?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(((first, headers), &data[end.1..]))
}

fn parse_status(line: &str) -> Result<u16, HttpError> {
    let mut parts = line.split_whitespace();
    let version = parts.next().ok_or(HttpError::StatusLine)?;
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::StatusLine);
    }
    let code = parts.next().ok_or(HttpError::StatusLine)?;
    if code.len() != 3 {
        return Err(HttpError::StatusLine);
    }
    code.parse().map_err(|_| HttpError::StatusLine)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or(HttpError::Chunked)?;
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| HttpError::Chunked)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| HttpError::Chunked)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if size > MAX_RESPONSE || body.len() + size > MAX_RESPONSE {
            return Err(HttpError::TooLarge);
        }
        let chunk = data.get(..size).ok_or(HttpError::Chunked)?;
        body.extend_from_slice(chunk);
        data = data.get(size..).ok_or(HttpError::Chunked)?;
        data = data.strip_prefix(b"\r\n").ok_or(HttpError::Chunked)?;
    }
}

/// An `http://host[:port]/path` URL, split. Only plain HTTP with an IP
/// literal host is accepted (gateways announce themselves that way; a
/// name would need DNS, which a port-mapping client has no business
/// doing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host and port.
    pub addr: std::net::SocketAddr,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses an absolute URL.
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.trim().strip_prefix("http://").or_else(|| {
            let lower = url.trim().get(..7)?.to_ascii_lowercase();
            (lower == "http://").then(|| &url.trim()[7..])
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = match authority.parse::<std::net::SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => std::net::SocketAddr::new(authority.parse().ok()?, 80),
        };
        if path.len() > 1024 {
            return None;
        }
        Some(Self {
            addr,
            path: path.to_owned(),
        })
    }

    /// `reference` resolved against this URL: absolute URLs as they are,
    /// `/path` on this host, anything else relative to this URL's
    /// directory.
    pub fn join(&self, reference: &str) -> Option<Self> {
        let reference = reference.trim();
        if reference.len() > 1024 {
            return None;
        }
        if reference.to_ascii_lowercase().starts_with("http://") {
            return Self::parse(reference);
        }
        let path = if reference.starts_with('/') {
            reference.to_owned()
        } else {
            let dir = match self.path.rfind('/') {
                Some(i) => &self.path[..=i],
                None => "/",
            };
            format!("{dir}{reference}")
        };
        Some(Self {
            addr: self.addr,
            path,
        })
    }
}

/// A GET request for `url`.
pub fn get_request(url: &HttpUrl) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: relay-node\r\n\r\n",
        url.path, url.addr
    )
    .into_bytes()
}

/// A SOAP POST of `body` for `action` of `service` to `url`.
pub fn soap_request(url: &HttpUrl, service: &str, action: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"{service}#{action}\"\r\nContent-Length: {}\r\n\r\n{body}",
        url.path,
        url.addr,
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_and_close_delimited() {
        let r = HttpResponse::parse(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/xml"));
        assert_eq!(r.body, b"hello");
        let r = HttpResponse::parse(b"HTTP/1.0 500 Internal\r\n\r\n<fault/>").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (500, &b"<fault/>"[..]));
    }

    #[test]
    fn chunked() {
        let r = HttpResponse::parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"hello world");
        assert_eq!(
            HttpResponse::parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(HttpError::Chunked)
        );
        assert_eq!(
            HttpResponse::parse(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\nab"
            ),
            Err(HttpError::TooLarge)
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(HttpResponse::parse(b""), Err(HttpError::Head));
        assert_eq!(
            HttpResponse::parse(b"SIP/2.0 200 OK\r\n\r\n"),
            Err(HttpError::StatusLine)
        );
        assert_eq!(
            HttpResponse::parse(b"HTTP/1.1 2000 OK\r\n\r\n"),
            Err(HttpError::StatusLine)
        );
        assert_eq!(
            HttpResponse::parse(b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n"),
            Err(HttpError::Header)
        );
        assert_eq!(
            HttpResponse::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            Err(HttpError::Truncated)
        );
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        let msg = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            HttpResponse::parse(msg.as_bytes()),
            Err(HttpError::TooManyHeaders)
        );
        assert_eq!(
            HttpResponse::parse(&vec![b'a'; MAX_RESPONSE + 1]),
            Err(HttpError::TooLarge)
        );
        assert_eq!(HttpResponse::parse(&[b'a'; 9000]), Err(HttpError::Head));
    }

    #[test]
    fn urls() {
        let base = HttpUrl::parse("http://10.1.0.1:5000/dir/rootDesc.xml").unwrap();
        assert_eq!(base.addr, "10.1.0.1:5000".parse().unwrap());
        assert_eq!(base.join("/ctl/IPConn").unwrap().path, "/ctl/IPConn");
        assert_eq!(base.join("ctl").unwrap().path, "/dir/ctl");
        let abs = base.join("http://10.1.0.1:6000/x").unwrap();
        assert_eq!(abs.addr.port(), 6000);
        assert_eq!(
            HttpUrl::parse("HTTP://10.0.0.1").unwrap().addr,
            "10.0.0.1:80".parse().unwrap()
        );
        assert_eq!(HttpUrl::parse("https://10.0.0.1/"), None);
        assert_eq!(HttpUrl::parse("http://gateway.local/"), None);
        let get = String::from_utf8(get_request(&base)).unwrap();
        assert!(get.starts_with("GET /dir/rootDesc.xml HTTP/1.1\r\nHost: 10.1.0.1:5000\r\n"));
        let post = String::from_utf8(soap_request(&base, "urn:x", "Act", "<b/>")).unwrap();
        assert!(post.contains("SOAPAction: \"urn:x#Act\"\r\n"));
        assert!(post.ends_with("Content-Length: 4\r\n\r\n<b/>"));
    }
}
