//! The framed workload through relay-node's coalescing writer
//! ([`relay_transport::mux::writer::FramedWriter`]) and framed reader:
//! the same 64-byte messages as [`crate::workloads::framed`], on one
//! unidirectional stream of a relay-node connection, with the writer's
//! default bounds.

use std::time::{Duration, Instant};

use relay_transport::mux::coalesce::CoalesceConfig;
use relay_transport::mux::reader::FramedReader;
use relay_transport::mux::writer::FramedWriter;

use crate::stacks::{Conn, RelaySide};
use crate::workloads::MESSAGE;

/// Sends `count` messages through the writer; returns the time until the
/// reader had the last one.
pub async fn framed(client: &RelaySide, server: &RelaySide, count: u64) -> Duration {
    let config = CoalesceConfig::default();
    let server = server.clone();
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut reader = FramedReader::new(server.accept_uni().await.unwrap(), config.max_message);
        let mut n = 0u64;
        while let Some(message) = reader.next().await.unwrap() {
            assert_eq!(message.len(), MESSAGE);
            n += 1;
        }
        (n, Instant::now())
    });
    let stream = client.transport.open_uni(client.peer).await.unwrap();
    let writer = FramedWriter::new(stream, config);
    let message = [0x42u8; MESSAGE];
    for _ in 0..count {
        writer.send(&message).await.unwrap();
    }
    writer.finish().await.unwrap();
    let (n, end) = reader.await.unwrap();
    assert_eq!(n, count, "reader got every message");
    end - start
}
