//! The workloads of the iroh comparison, written once over [`Conn`] so each
//! stack runs the same code:
//!
//! - **bulk**: 64 KiB writes on one unidirectional stream;
//! - **framed**: 64-byte messages, each behind a 4-byte big-endian length,
//!   one `write_all` per message on one unidirectional stream; the receiver
//!   parses the frames out of the chunks it reads;
//! - **echo**: 64-byte requests, one bidirectional stream per request (open,
//!   write, finish; the peer reads to the end and echoes), `c` callers at
//!   once.

use std::time::{Duration, Instant};

use crate::stacks::{Conn, Rx, Tx};

/// Size of each application write in the bulk run.
pub const BULK_WRITE: usize = 64 * 1024;
/// Payload of a framed message and of an echo request.
pub const MESSAGE: usize = 64;
/// Length prefix of a framed message.
pub const PREFIX: usize = 4;

/// Counts length-prefixed frames in a byte stream, across chunk borders.
#[derive(Debug, Default)]
pub struct FrameCounter {
    /// Bytes of the current prefix seen so far.
    prefix: Vec<u8>,
    /// Payload bytes still to skip.
    skip: usize,
    /// Whole frames seen.
    pub frames: u64,
}

impl FrameCounter {
    /// Feeds the next chunk.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(chunk.len());
                self.skip -= n;
                chunk = &chunk[n..];
                if self.skip == 0 {
                    self.frames += 1;
                }
                continue;
            }
            let n = (PREFIX - self.prefix.len()).min(chunk.len());
            self.prefix.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.prefix.len() == PREFIX {
                let len = u32::from_be_bytes(self.prefix[..].try_into().unwrap()) as usize;
                self.prefix.clear();
                self.skip = len;
                if len == 0 {
                    self.frames += 1;
                }
            }
        }
    }
}

/// Reads `recv` to its end, feeding every chunk to `on_chunk`; returns when
/// the last byte arrived.
async fn drain<R: Rx>(mut recv: R, mut on_chunk: impl FnMut(&[u8])) -> Instant {
    while let Some(chunk) = recv.next_chunk().await {
        on_chunk(&chunk);
    }
    Instant::now()
}

/// Sends `total` bytes in [`BULK_WRITE`] writes from `client` to `server`;
/// returns the time until the receiver had the last byte.
pub async fn bulk<C: Conn>(client: &C, server: &C, total: u64) -> Duration {
    let server = server.clone();
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        let end = drain(server.accept_uni().await.unwrap(), |c| n += c.len() as u64).await;
        (n, end)
    });
    let mut send = client.open_uni().await;
    let buf = vec![0x5au8; BULK_WRITE];
    let mut left = total;
    while left > 0 {
        let k = left.min(BULK_WRITE as u64) as usize;
        send.write_all(&buf[..k]).await;
        left -= k as u64;
    }
    send.finish();
    let (n, end) = reader.await.unwrap();
    assert_eq!(n, total, "receiver got every byte");
    end - start
}

/// Sends `count` framed [`MESSAGE`]-byte messages, one `write_all` each;
/// returns the time until the receiver had parsed the last one.
pub async fn framed<C: Conn>(client: &C, server: &C, count: u64) -> Duration {
    let server = server.clone();
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut frames = FrameCounter::default();
        let end = drain(server.accept_uni().await.unwrap(), |c| frames.feed(c)).await;
        (frames.frames, end)
    });
    let mut send = client.open_uni().await;
    let mut message = [0x42u8; PREFIX + MESSAGE];
    message[..PREFIX].copy_from_slice(&(MESSAGE as u32).to_be_bytes());
    for _ in 0..count {
        send.write_all(&message).await;
    }
    send.finish();
    let (n, end) = reader.await.unwrap();
    assert_eq!(n, count, "receiver parsed every message");
    end - start
}

/// Serves echo on `server`: each bidirectional stream's request comes back.
/// Abort the handle to stop.
pub fn echo_server<C: Conn>(server: &C) -> tokio::task::JoinHandle<()> {
    let server = server.clone();
    tokio::spawn(async move {
        while let Some((mut send, mut recv)) = server.accept_bi().await {
            tokio::spawn(async move {
                let request = recv.read_all(MESSAGE).await;
                send.write_all(&request).await;
                send.finish();
            });
        }
    })
}

/// One echo call on a fresh bidirectional stream.
async fn call<C: Conn>(client: &C, request: &[u8]) {
    let (mut send, mut recv) = client.open_bi().await;
    send.write_all(request).await;
    send.finish();
    let response = recv.read_all(MESSAGE).await;
    assert_eq!(response.len(), request.len());
}

/// `calls` echo calls one after another; each one's latency.
pub async fn echo_latencies<C: Conn>(client: &C, calls: usize) -> Vec<Duration> {
    let request = [0x17u8; MESSAGE];
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        call(client, &request).await;
        times.push(start.elapsed());
    }
    times
}

/// `callers` tasks making `calls_each` echo calls each; returns the time
/// for all of them.
pub async fn echo_concurrent<C: Conn>(client: &C, callers: usize, calls_each: usize) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let request = [0x17u8; MESSAGE];
                for _ in 0..calls_each {
                    call(&client, &request).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}
