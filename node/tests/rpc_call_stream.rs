//! Client-streaming and duplex calls made by a peer process through the
//! local API's `rpc-call` stream: two in-process nodes on loopback; `a`
//! serves the stream service over an in-memory pipe whose other end this
//! test drives as the calling process (frames of
//! `relay_proto::wire::rpc_call`); `b` serves Rust handlers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use relay_node::api::frames::FrameStream;
use relay_node::api::router::StreamService;
use relay_node::api::rpc_call::RpcCall;
use relay_node::subsystems::rpc_server::ServerCall;
use relay_node::subsystems::rpc_service::{handler, ServeOptions};
use relay_proto::wire::rpc::Code;
use relay_proto::wire::rpc_call::CallFrame;
use relay_rpc::Status;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod rpc_common;
use rpc_common::{pair, within, Node};

/// `sum`: adds the request numbers (client streaming; `invalid-argument`
/// for a request that is not a number); `talk`: answers
/// each request with it upper-cased as it arrives (duplex); `hold`: tells
/// `seen` about each request and waits to be cancelled.
fn serve(b: &Node, seen: mpsc::Sender<String>) {
    let h = handler(move |mut call: ServerCall| {
        let seen = seen.clone();
        async move {
            match call.method() {
                "sum" => {
                    let mut sum = 0u64;
                    while let Some(m) = call.recv().await? {
                        let n = std::str::from_utf8(&m)
                            .ok()
                            .and_then(|t| t.parse::<u64>().ok());
                        sum +=
                            n.ok_or_else(|| Status::new(Code::InvalidArgument, "not a number"))?;
                    }
                    Ok(Some(Bytes::from(sum.to_string())))
                }
                "talk" => {
                    while let Some(m) = call.recv().await? {
                        let upper = String::from_utf8(m.to_vec()).unwrap().to_uppercase();
                        call.send(upper.as_bytes()).await?;
                    }
                    Ok(None)
                }
                _ => {
                    // Until the requests fail (the caller reset them).
                    while let Ok(Some(m)) = call.recv().await {
                        let _ = seen.send(String::from_utf8_lossy(&m).into()).await;
                    }
                    call.cancelled().await;
                    let _ = seen.send("cancelled".into()).await;
                    Err(Status::new(Code::Cancelled, "gone"))
                }
            }
        }
    });
    b.rpc.serve("words", ServeOptions::default(), h).unwrap();
}

/// The calling process's end of `a`'s `rpc-call` stream, after sending
/// the first frame `first`; the node's JSON answer.
async fn open(a: &Node, first: &str) -> (FrameStream, serde_json::Value) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let service = RpcCall(a.rpc.clone());
    tokio::spawn(service.serve(FrameStream::new(Box::new(theirs), CancellationToken::new())));
    let mut s = FrameStream::new(Box::new(ours), CancellationToken::new());
    s.send(first.as_bytes()).await.unwrap();
    let answer = within(s.recv()).await.unwrap().unwrap();
    (s, serde_json::from_slice(&answer).unwrap())
}

fn first(b: &Node, method: &str) -> String {
    format!(
        r#"{{"op":"call","service":"words","method":"{method}","node_id":"{}"}}"#,
        b.id()
    )
}

async fn put(s: &mut FrameStream, f: CallFrame<'_>) {
    let mut out = Vec::new();
    f.encode(&mut out).unwrap();
    s.send(&out).await.unwrap();
}

async fn next(s: &mut FrameStream) -> Vec<u8> {
    within(s.recv()).await.unwrap().expect("the node closed")
}

#[tokio::test]
async fn a_process_makes_a_client_streaming_call() {
    let (a, b) = pair().await;
    let (seen, _rx) = mpsc::channel(16);
    serve(&b, seen);
    let (mut s, answer) = open(&a, &first(&b, "sum")).await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["node_id"], b.id().to_string());
    for i in 1..=100u64 {
        put(&mut s, CallFrame::Send(i.to_string().as_bytes())).await;
    }
    put(&mut s, CallFrame::Finish).await;
    assert_eq!(
        CallFrame::decode(&next(&mut s).await).unwrap(),
        CallFrame::Message(b"5050")
    );
    match CallFrame::decode(&next(&mut s).await).unwrap() {
        CallFrame::End(t) => assert_eq!(t.code, Code::Ok),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        within(s.recv()).await.unwrap().is_none(),
        "closed after end"
    );
}

#[tokio::test]
async fn a_process_makes_a_duplex_call() {
    let (a, b) = pair().await;
    let (seen, _rx) = mpsc::channel(16);
    serve(&b, seen);
    let (mut s, answer) = open(&a, &first(&b, "talk")).await;
    assert_eq!(answer["ok"], true, "{answer}");
    // Each answer arrives before the next request is sent.
    for word in ["a", "bc", "def"] {
        put(&mut s, CallFrame::Send(word.as_bytes())).await;
        let upper = word.to_uppercase();
        assert_eq!(
            CallFrame::decode(&next(&mut s).await).unwrap(),
            CallFrame::Message(upper.as_bytes())
        );
    }
    put(&mut s, CallFrame::Finish).await;
    match CallFrame::decode(&next(&mut s).await).unwrap() {
        CallFrame::End(t) => assert_eq!(t.code, Code::Ok),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn errors_come_as_json_or_as_the_end_frame() {
    let (a, b) = pair().await;
    let (seen, _rx) = mpsc::channel(16);
    serve(&b, seen);
    let (_s, answer) = open(&a, r#"{"op":"call","service":"none","method":"x"}"#).await;
    assert_eq!(answer["error"]["kind"], "no-responders", "{answer}");
    let (_s, answer) = open(&a, r#"{"op":"call","service":"words"}"#).await;
    assert_eq!(answer["error"]["kind"], "bad-request", "{answer}");
    let (mut s, _) = open(&a, &first(&b, "sum")).await;
    put(&mut s, CallFrame::Send(b"not a number?")).await;
    put(&mut s, CallFrame::Finish).await;
    // The handler's status comes in the end frame.
    match CallFrame::decode(&next(&mut s).await).unwrap() {
        CallFrame::End(t) => assert_eq!(
            (t.code, t.detail.as_str()),
            (Code::InvalidArgument, "not a number")
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn closing_the_connection_cancels_the_call() {
    let (a, b) = pair().await;
    let (seen, mut rx) = mpsc::channel(16);
    serve(&b, seen);
    let (mut s, _) = open(&a, &first(&b, "hold")).await;
    put(&mut s, CallFrame::Send(b"one")).await;
    assert_eq!(within(rx.recv()).await.unwrap(), "one");
    drop(s);
    assert_eq!(within(rx.recv()).await.unwrap(), "cancelled");
}

#[tokio::test]
async fn a_message_after_finish_closes_the_calling_connection() {
    let (a, b) = pair().await;
    let (seen, _rx) = mpsc::channel(16);
    serve(&b, seen);
    let (mut s, _) = open(&a, &first(&b, "hold")).await;
    put(&mut s, CallFrame::Finish).await;
    put(&mut s, CallFrame::Send(b"late")).await;
    assert!(within(s.recv()).await.unwrap().is_none());
}
