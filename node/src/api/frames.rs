//! The upgraded side of `GET /v1/stream/{service}`: frames in both
//! directions (u32 big-endian length, then the payload; see
//! [`relay_proto::frame_stream`]). Outgoing frames are queued and written
//! together, so a busy stream carries many frames per write.

use relay_proto::frame_stream::{encode_frame, FrameDecoder, FrameError};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::router::StreamService;
use crate::subsystem::BoxFuture;

/// Read chunk size.
const READ_CHUNK: usize = 64 * 1024;

/// The byte stream under a frame stream.
pub trait StreamIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> StreamIo for T {}

/// A frame stream failed.
#[derive(Debug, Error)]
pub enum FrameStreamError {
    /// The peer sent a frame over the limit.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended inside a frame.
    #[error("truncated: the stream ended inside a frame")]
    Truncated,
    /// The connection failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameStreamError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Frame(e) => e.kind(),
            Self::Truncated => "truncated",
            Self::Io(_) => "io",
        }
    }
}

/// Both directions of one upgraded connection.
pub struct FrameStream {
    io: Box<dyn StreamIo>,
    decoder: FrameDecoder,
    /// The read buffer (kept: a read per frame must not allocate).
    chunk: Vec<u8>,
    out: Vec<u8>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for FrameStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameStream")
            .field("buffered_in", &self.decoder.buffered())
            .field("queued_out", &self.out.len())
            .finish()
    }
}

impl FrameStream {
    /// A frame stream over `io`; it reads as ended once `shutdown` fires.
    pub fn new(io: Box<dyn StreamIo>, shutdown: CancellationToken) -> Self {
        Self {
            io,
            decoder: FrameDecoder::default(),
            chunk: Vec::new(),
            out: Vec::new(),
            shutdown,
        }
    }

    /// The next frame; `None` when the client closed cleanly or the node is
    /// stopping. Queued frames are flushed before waiting for input.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, FrameStreamError> {
        if self.chunk.len() != READ_CHUNK {
            self.chunk = vec![0u8; READ_CHUNK];
        }
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            self.flush().await?;
            let n = tokio::select! {
                () = self.shutdown.cancelled() => return Ok(None),
                n = self.io.read(&mut self.chunk) => n?,
            };
            if n == 0 {
                return if self.decoder.buffered() == 0 {
                    Ok(None)
                } else {
                    Err(FrameStreamError::Truncated)
                };
            }
            self.decoder.push(self.chunk.get(..n).unwrap_or_default());
        }
    }

    /// The next frame already read, without waiting or writing (`None`
    /// when none is complete yet).
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>, FrameStreamError> {
        Ok(self.decoder.next_frame()?)
    }

    /// Queues one frame; it is written by the next [`Self::flush`] or
    /// [`Self::recv`].
    pub fn queue(&mut self, payload: &[u8]) -> Result<(), FrameStreamError> {
        Ok(encode_frame(payload, &mut self.out)?)
    }

    /// Writes every queued frame.
    pub async fn flush(&mut self) -> Result<(), FrameStreamError> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
            self.io.flush().await?;
        }
        Ok(())
    }

    /// Queues and writes one frame.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), FrameStreamError> {
        self.queue(payload)?;
        self.flush().await
    }

    /// Queues and writes the JSON error frame of an opening that failed,
    /// `{"error":{"kind","detail"}}`.
    pub async fn send_error(&mut self, kind: &str, detail: &str) -> Result<(), FrameStreamError> {
        let error = serde_json::json!({"error": {"kind": kind, "detail": detail}});
        self.send(&serde_json::to_vec(&error).unwrap_or_default())
            .await
    }

    /// Flushes and closes the write side.
    pub async fn close(mut self) -> Result<(), FrameStreamError> {
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }
}

/// The `echo` service: every frame back, unchanged and in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl StreamService for Echo {
    fn serve(&self, mut stream: FrameStream) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                match stream.recv().await {
                    Ok(Some(frame)) => {
                        if stream.queue(&frame).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = stream.close().await;
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "echo stream ended");
                        return;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echo_returns_frames_in_order() {
        let (client, server) = tokio::io::duplex(1024);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(Echo.serve(FrameStream::new(Box::new(server), shutdown)));
        let mut client = FrameStream::new(Box::new(client), CancellationToken::new());
        for i in 0..100u32 {
            client.queue(&i.to_be_bytes()).unwrap();
        }
        client.queue(&vec![7u8; 5000]).unwrap();
        client.flush().await.unwrap();
        for i in 0..100u32 {
            assert_eq!(client.recv().await.unwrap().unwrap(), i.to_be_bytes());
        }
        assert_eq!(client.recv().await.unwrap().unwrap(), vec![7u8; 5000]);
        client.close().await.unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_end_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut stream = FrameStream::new(Box::new(server), CancellationToken::new());
        client.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        assert_eq!(stream.recv().await.unwrap_err().kind(), "frame-too-large");

        let (mut client, server) = tokio::io::duplex(64);
        let mut stream = FrameStream::new(Box::new(server), CancellationToken::new());
        client.write_all(&[0, 0, 0, 5, 1]).await.unwrap();
        drop(client);
        assert_eq!(stream.recv().await.unwrap_err().kind(), "truncated");
    }

    #[tokio::test]
    async fn shutdown_ends_recv() {
        let (_client, server) = tokio::io::duplex(64);
        let shutdown = CancellationToken::new();
        let mut stream = FrameStream::new(Box::new(server), shutdown.clone());
        shutdown.cancel();
        assert!(stream.recv().await.unwrap().is_none());
    }
}
