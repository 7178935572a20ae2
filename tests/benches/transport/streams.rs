//! Stream workloads shared by the stock-quinn and relay-node runs: one-way
//! bulk on a unidirectional stream, and 64-byte request/response round trips
//! on one bidirectional stream. Both stacks hand out quinn streams, so the
//! same code measures both.

use std::future::Future;
use std::time::{Duration, Instant};

use quinn::{RecvStream, SendStream};
use tokio::task::JoinHandle;

/// Size of each application write in the bulk run.
const WRITE_CHUNK: usize = 64 * 1024;
/// Request and response size in the round-trip run.
pub const RTT_MESSAGE: usize = 64;

/// Writes `total` bytes on `send`; the peer's side of the stream is what
/// `recv` resolves to. Returns the time from the first write until the
/// receiver has read the last byte.
pub async fn bulk<F>(mut send: SendStream, recv: F, total: u64) -> Duration
where
    F: Future<Output = RecvStream> + Send + 'static,
{
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut recv = recv.await;
        let mut n = 0u64;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.unwrap() {
            n += chunk.bytes.len() as u64;
        }
        (n, Instant::now())
    });
    let buf = vec![0x5au8; WRITE_CHUNK];
    let mut left = total;
    while left > 0 {
        let k = left.min(WRITE_CHUNK as u64) as usize;
        send.write_all(&buf[..k]).await.unwrap();
        left -= k as u64;
    }
    send.finish().unwrap();
    let (n, end) = reader.await.unwrap();
    assert_eq!(n, total, "receiver got every byte");
    end - start
}

/// A bidirectional stream whose peer echoes every [`RTT_MESSAGE`]-byte
/// request.
#[derive(Debug)]
pub struct EchoStream {
    send: SendStream,
    recv: RecvStream,
    echo: JoinHandle<()>,
}

impl EchoStream {
    /// Starts the echo on the peer's halves (what `server` resolves to; a
    /// peer only sees the stream after the first request).
    pub fn new<F>(send: SendStream, recv: RecvStream, server: F) -> Self
    where
        F: Future<Output = (SendStream, RecvStream)> + Send + 'static,
    {
        let echo = tokio::spawn(async move {
            let (mut send, mut recv) = server.await;
            let mut buf = [0u8; RTT_MESSAGE];
            while recv.read_exact(&mut buf).await.is_ok() {
                send.write_all(&buf).await.unwrap();
            }
            let _ = send.finish();
        });
        Self { send, recv, echo }
    }

    /// Runs `rounds` request/response round trips; returns each one's time.
    pub async fn round_trips(&mut self, rounds: usize) -> Vec<Duration> {
        let request = [0x42u8; RTT_MESSAGE];
        let mut response = [0u8; RTT_MESSAGE];
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let start = Instant::now();
            self.send.write_all(&request).await.unwrap();
            self.recv.read_exact(&mut response).await.unwrap();
            times.push(start.elapsed());
        }
        times
    }

    /// Ends the stream and waits for the echo to finish.
    pub async fn finish(mut self) {
        self.send.finish().unwrap();
        self.echo.await.unwrap();
    }
}
