//! Bounded line framing for the control socket (async side).

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Reading one line failed.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line exceeded the limit; the stream can no longer be framed.
    #[error("too-long: request line exceeds {0} bytes")]
    TooLong(usize),
    /// The line is not UTF-8.
    #[error("bad-request: request is not UTF-8")]
    NotUtf8,
    /// The stream failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one `\n`-terminated line of at most `max` bytes (newline excluded).
/// `Ok(None)` at a clean end of stream. A final line without a newline is
/// returned as a line.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<String>, LineError> {
    let mut buf = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let n = (&mut *reader)
        .take(limit)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > max {
        return Err(LineError::TooLong(max));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| LineError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_and_limits() {
        let data = b"one\ntwo\r\nthree".to_vec();
        let mut r = tokio::io::BufReader::new(&data[..]);
        assert_eq!(read_line(&mut r, 16).await.unwrap().as_deref(), Some("one"));
        assert_eq!(read_line(&mut r, 16).await.unwrap().as_deref(), Some("two"));
        assert_eq!(
            read_line(&mut r, 16).await.unwrap().as_deref(),
            Some("three")
        );
        assert_eq!(read_line(&mut r, 16).await.unwrap(), None);

        let exact = b"12345678\n".to_vec();
        let mut r = tokio::io::BufReader::new(&exact[..]);
        assert_eq!(
            read_line(&mut r, 8).await.unwrap().as_deref(),
            Some("12345678")
        );

        let long = [b'x'; 100];
        let mut r = tokio::io::BufReader::new(&long[..]);
        assert!(matches!(
            read_line(&mut r, 8).await,
            Err(LineError::TooLong(8))
        ));

        let bad = b"\xff\xfe\n".to_vec();
        let mut r = tokio::io::BufReader::new(&bad[..]);
        assert!(matches!(
            read_line(&mut r, 8).await,
            Err(LineError::NotUtf8)
        ));
    }
}
