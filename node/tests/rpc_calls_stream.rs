//! Many unary calls made by a peer process over one connection, through
//! the local API's `rpc-calls` stream: two in-process nodes on loopback;
//! `a` serves the stream service over an in-memory pipe whose other end
//! this test drives as the calling process (frames of
//! `relay_proto::wire::rpc_calls`); `b` serves Rust handlers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use bytes::Bytes;
use relay_node::api::frames::FrameStream;
use relay_node::api::router::StreamService;
use relay_node::api::rpc_calls::{RpcCalls, MAX_IN_FLIGHT};
use relay_node::subsystems::rpc_server::ServerCall;
use relay_node::subsystems::rpc_service::{handler, ServeOptions};
use relay_proto::wire::rpc::Code;
use relay_proto::wire::rpc_calls::CallsFrame;
use relay_rpc::Status;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod rpc_common;
use rpc_common::{pair, within, Node};

/// `up`: the request upper-cased; `fail`: `invalid-argument`; `hold`:
/// tells `seen` about its request, waits to be cancelled, then tells
/// `seen` "cancelled".
fn serve(b: &Node, seen: mpsc::Sender<String>) {
    let h = handler(move |mut call: ServerCall| {
        let seen = seen.clone();
        async move {
            let request = call.recv().await?.unwrap_or_default();
            let text = String::from_utf8_lossy(&request).into_owned();
            match call.method() {
                "up" => Ok(Some(Bytes::from(text.to_uppercase()))),
                "fail" => Err(Status::new(Code::InvalidArgument, "no, thanks")),
                _ => {
                    let _ = seen.send(text).await;
                    call.cancelled().await;
                    let _ = seen.send("cancelled".into()).await;
                    Err(Status::new(Code::Cancelled, "gone"))
                }
            }
        }
    });
    let options = ServeOptions {
        concurrency: 1024,
        ..ServeOptions::default()
    };
    b.rpc.serve("words", options, h).unwrap();
}

/// The calling process's end of `a`'s `rpc-calls` stream, after sending
/// the first frame `first`; the node's JSON answer.
async fn open(a: &Node, first: &str) -> (FrameStream, serde_json::Value) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let service = RpcCalls(a.rpc.clone());
    tokio::spawn(service.serve(FrameStream::new(Box::new(theirs), CancellationToken::new())));
    let mut s = FrameStream::new(Box::new(ours), CancellationToken::new());
    s.send(first.as_bytes()).await.unwrap();
    let answer = within(s.recv()).await.unwrap().unwrap();
    (s, serde_json::from_slice(&answer).unwrap())
}

fn first(b: &Node) -> String {
    format!(
        r#"{{"op":"calls","service":"words","node_id":"{}"}}"#,
        b.id()
    )
}

fn queue(s: &mut FrameStream, f: CallsFrame<'_>) {
    let mut out = Vec::new();
    f.encode(&mut out).unwrap();
    s.queue(&out).unwrap();
}

async fn next(s: &mut FrameStream) -> Vec<u8> {
    within(s.recv()).await.unwrap().expect("the node closed")
}

/// A connection with call `id` of `hold` in flight, its handler running.
async fn holding(a: &Node, b: &Node, rx: &mut mpsc::Receiver<String>, id: u32) -> FrameStream {
    let (mut s, _) = open(a, &first(b)).await;
    queue(
        &mut s,
        CallsFrame::Call {
            id,
            method: "hold",
            body: b"one",
        },
    );
    s.flush().await.unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "one");
    s
}

#[tokio::test]
async fn many_calls_in_flight_on_one_connection_each_get_their_answer() {
    let (a, b) = pair().await;
    let (seen, _rx) = mpsc::channel(16);
    serve(&b, seen);
    let (mut s, answer) = open(&a, &first(&b)).await;
    assert_eq!(answer["ok"], true, "{answer}");
    // More calls than run at once: the node takes the rest as calls end.
    let calls = MAX_IN_FLIGHT as u32 * 2 + 7;
    for id in 0..calls {
        let (method, body) = if id % 10 == 3 {
            ("fail", String::new())
        } else {
            ("up", format!("word {id}"))
        };
        queue(
            &mut s,
            CallsFrame::Call {
                id,
                method,
                body: body.as_bytes(),
            },
        );
    }
    s.flush().await.unwrap();
    let mut answers = BTreeMap::new();
    while answers.len() < calls as usize {
        let frame = next(&mut s).await;
        let (id, answer) = match CallsFrame::decode(&frame).unwrap() {
            CallsFrame::Reply { id, body } => (id, Ok(String::from_utf8(body.to_vec()).unwrap())),
            CallsFrame::Error { id, trailer } => (id, Err((trailer.code, trailer.detail))),
            other => panic!("unexpected {other:?}"),
        };
        assert!(answers.insert(id, answer).is_none(), "two answers for {id}");
    }
    for (id, answer) in answers {
        if id % 10 == 3 {
            assert_eq!(
                answer,
                Err((Code::InvalidArgument, "no, thanks".to_string()))
            );
        } else {
            assert_eq!(answer, Ok(format!("WORD {id}")));
        }
    }
}

#[tokio::test]
async fn a_cancelled_call_is_answered_cancelled_and_its_handler_sees_it() {
    let (a, b) = pair().await;
    let (seen, mut rx) = mpsc::channel(16);
    serve(&b, seen);
    let mut s = holding(&a, &b, &mut rx, 5).await;
    queue(&mut s, CallsFrame::Cancel(5));
    // A cancel of a call not in flight is ignored.
    queue(&mut s, CallsFrame::Cancel(6));
    queue(
        &mut s,
        CallsFrame::Call {
            id: 6,
            method: "up",
            body: b"after",
        },
    );
    s.flush().await.unwrap();
    match CallsFrame::decode(&next(&mut s).await).unwrap() {
        CallsFrame::Error { id, trailer } => assert_eq!((id, trailer.code), (5, Code::Cancelled)),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(within(rx.recv()).await.unwrap(), "cancelled");
    assert_eq!(
        CallsFrame::decode(&next(&mut s).await).unwrap(),
        CallsFrame::Reply {
            id: 6,
            body: b"AFTER"
        }
    );
}

#[tokio::test]
async fn closing_the_connection_cancels_the_calls_in_flight() {
    let (a, b) = pair().await;
    let (seen, mut rx) = mpsc::channel(16);
    serve(&b, seen);
    let s = holding(&a, &b, &mut rx, 1).await;
    drop(s);
    assert_eq!(within(rx.recv()).await.unwrap(), "cancelled");
}

#[tokio::test]
async fn bad_openings_and_frames_are_refused() {
    let (a, b) = pair().await;
    let (seen, _rx) = mpsc::channel(16);
    serve(&b, seen);
    let (_s, answer) = open(&a, r#"{"op":"calls"}"#).await;
    assert_eq!(answer["error"]["kind"], "bad-request", "{answer}");
    let (_s, answer) = open(&a, r#"{"op":"calls","service":"words","node_id":"x"}"#).await;
    assert_eq!(answer["error"]["kind"], "invalid-node-id", "{answer}");

    // A call to a service nobody serves is answered with its status.
    let (mut s, answer) = open(&a, r#"{"op":"calls","service":"none"}"#).await;
    assert_eq!(answer["ok"], true, "{answer}");
    queue(
        &mut s,
        CallsFrame::Call {
            id: 1,
            method: "m",
            body: b"",
        },
    );
    s.flush().await.unwrap();
    match CallsFrame::decode(&next(&mut s).await).unwrap() {
        CallsFrame::Error { id, trailer } => {
            assert_eq!((id, trailer.kind.as_str()), (1, "no-responders"))
        }
        other => panic!("unexpected {other:?}"),
    }

    // An id already in flight, a node's frame and an undecodable frame
    // each close the connection.
    let (mut s, _) = open(&a, &first(&b)).await;
    for id in [9, 9] {
        queue(
            &mut s,
            CallsFrame::Call {
                id,
                method: "hold",
                body: b"x",
            },
        );
    }
    s.flush().await.unwrap();
    assert!(within(s.recv()).await.unwrap().is_none());
    let (mut s, _) = open(&a, &first(&b)).await;
    queue(&mut s, CallsFrame::Reply { id: 1, body: b"" });
    s.flush().await.unwrap();
    assert!(within(s.recv()).await.unwrap().is_none());
    let (mut s, _) = open(&a, &first(&b)).await;
    s.send(&[0x7f]).await.unwrap();
    assert!(within(s.recv()).await.unwrap().is_none());
}

/// A cancelled call's id may be used again at once: each answer belongs
/// to the call that has the id when it ends, even when the cancelled
/// call ended before the cancel took effect.
// Two workers: a call's task may end on the other while its cancel is
// handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_used_again_after_a_cancel_gets_the_new_calls_answer() {
    let (a, b) = pair().await;
    let (seen, _rx) = mpsc::channel(16);
    serve(&b, seen);
    let (mut s, _) = open(&a, &first(&b)).await;
    for round in 0..50u32 {
        let id = round % 3;
        let first_body = format!("first {round}");
        let second_body = format!("second {round}");
        queue(
            &mut s,
            CallsFrame::Call {
                id,
                method: "up",
                body: first_body.as_bytes(),
            },
        );
        queue(&mut s, CallsFrame::Cancel(id));
        queue(
            &mut s,
            CallsFrame::Call {
                id,
                method: "up",
                body: second_body.as_bytes(),
            },
        );
        s.flush().await.unwrap();
        let mut answers = Vec::new();
        while answers.len() < 2 {
            match CallsFrame::decode(&next(&mut s).await).unwrap() {
                CallsFrame::Reply { id: got, body } => {
                    assert_eq!(got, id);
                    answers.push(String::from_utf8(body.to_vec()).unwrap());
                }
                CallsFrame::Error { id: got, trailer } => {
                    assert_eq!((got, trailer.code), (id, Code::Cancelled));
                    answers.push("cancelled".into());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // The first call answered, or cancelled; then the second's answer.
        let first_answer = first_body.to_uppercase();
        assert!(
            answers[0] == first_answer || answers[0] == "cancelled",
            "round {round}: {answers:?}"
        );
        assert_eq!(answers[1], second_body.to_uppercase(), "round {round}");
    }
}
