//! `mux::BufferedSendStream` over a real connection on loopback: many
//! small writes arrive whole and in order, and what `write_all` took goes
//! out with no flush and no finish.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use relay_transport::mux::BufferedSendStream;
use relay_transport::{Incoming, Transport};
use support::*;

/// Two connected transports; the second accepts.
async fn pair() -> (Transport, Transport) {
    let a = transport(None).await;
    let b = transport(None).await;
    within(a.connect(b.node_id(), addr(&b))).await.unwrap();
    (a, b)
}

/// The next uni stream `t` accepts.
async fn accept_uni(t: &Transport) -> quinn::RecvStream {
    within(async {
        loop {
            match t.accept().await {
                Some(Incoming::Uni { recv, .. }) => return recv,
                Some(_) => {}
                None => panic!("transport closed"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn many_small_writes_arrive_whole_and_in_order() {
    let (a, b) = pair().await;
    let mut send = BufferedSendStream::new(a.open_uni(b.node_id()).await.unwrap());
    let mut sent = Vec::new();
    for i in 0..20_000u32 {
        let message = pattern(4 + (i % 64) as usize, i as u8);
        send.write_all(&message).await.unwrap();
        sent.extend_from_slice(&message);
    }
    send.finish().unwrap();
    let mut recv = accept_uni(&b).await;
    let got = within(recv.read_to_end(16 << 20)).await.unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "the bytes arrive in the order written");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn written_bytes_go_out_without_flush_or_finish() {
    let (a, b) = pair().await;
    let mut send = BufferedSendStream::new(a.open_uni(b.node_id()).await.unwrap());
    // The first small write goes straight to quinn; the next ones are
    // buffered. None is flushed and the stream stays open.
    let messages: Vec<Vec<u8>> = (0..3).map(|i| pattern(64, i)).collect();
    for m in &messages {
        send.write_all(m).await.unwrap();
    }
    let mut recv = accept_uni(&b).await;
    let mut got = vec![0u8; 3 * 64];
    within(recv.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, messages.concat());
    send.finish().unwrap();
    a.close().await;
    b.close().await;
}
