//! Client-streaming and duplex calls served by a peer process through the
//! local API's `rpc-serve` stream: two in-process nodes on loopback; `b`
//! serves the stream service over an in-memory pipe whose other end this
//! test drives as the process (frames of `relay_proto::wire::rpc_serve`);
//! `a` makes the calls with the Rust API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use relay_node::api::frames::FrameStream;
use relay_node::api::router::StreamService;
use relay_node::api::rpc_serve::RpcServe;
use relay_node::subsystems::rpc_remote_requests::REQUEST_WINDOW;
use relay_proto::wire::rpc::Trailer;
use relay_proto::wire::rpc_serve::ServeFrame;
use relay_rpc::Code;
use tokio_util::sync::CancellationToken;

mod rpc_common;
use rpc_common::{pair, to, within, Node};

/// The serving process's end of `b`'s `rpc-serve` stream.
struct Process(FrameStream);

impl Process {
    /// Serves `first` (the JSON first frame) through `node`.
    async fn serve(node: &Node, first: &str) -> Self {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let service = RpcServe(node.rpc.clone());
        tokio::spawn(service.serve(FrameStream::new(Box::new(theirs), CancellationToken::new())));
        let mut s = FrameStream::new(Box::new(ours), CancellationToken::new());
        s.send(first.as_bytes()).await.unwrap();
        let answer = within(s.recv()).await.unwrap().unwrap();
        assert!(answer.starts_with(br#"{"node_id""#) || answer.starts_with(br#"{"ok""#));
        Self(s)
    }

    async fn recv(&mut self) -> Vec<u8> {
        within(self.0.recv())
            .await
            .unwrap()
            .expect("the node closed")
    }

    async fn send(&mut self, frame: &ServeFrame<'_>) {
        let mut out = Vec::new();
        frame.encode(&mut out).unwrap();
        self.0.send(&out).await.unwrap();
    }
}

/// The call id and method of a `request` frame, checking its body is empty
/// (the requests are streamed).
fn request(payload: &[u8]) -> (u32, String) {
    match ServeFrame::decode(payload).unwrap() {
        ServeFrame::Request {
            call, header, body, ..
        } => {
            assert!(body.is_empty(), "a streamed call's request has no body");
            (call, header.method)
        }
        other => panic!("not a request: {other:?}"),
    }
}

#[tokio::test]
async fn a_process_serves_a_client_streaming_call() {
    let (a, b) = pair().await;
    let mut p = Process::serve(
        &b,
        r#"{"op":"serve","service":"sum","methods":["add","one"],"stream_requests":["add"]}"#,
    )
    .await;
    let count = 3 * REQUEST_WINDOW as u64;
    let caller = tokio::spawn({
        let rpc = a.rpc.clone();
        let b = b.id();
        async move {
            let mut call = rpc.open("sum", "add", &to(b)).await.unwrap();
            // More than the window: the rest waits for the process's credit.
            for i in 1..=count {
                call.send(i.to_string().as_bytes()).await.unwrap();
            }
            call.finish();
            let reply = call.recv().await.unwrap().unwrap();
            assert!(call.recv().await.unwrap().is_none());
            reply
        }
    });
    let (id, method) = request(&p.recv().await);
    assert_eq!(method, "add");
    let mut sum = 0u64;
    loop {
        match ServeFrame::decode(&p.recv().await).unwrap() {
            ServeFrame::RequestItem { call, body } => {
                assert_eq!(call, id);
                sum += std::str::from_utf8(body).unwrap().parse::<u64>().unwrap();
                p.send(&ServeFrame::Credit { call, count: 1 }).await;
            }
            ServeFrame::RequestsEnd { call } => {
                assert_eq!(call, id);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sum, count * (count + 1) / 2);
    let answer = sum.to_string();
    p.send(&ServeFrame::Reply {
        call: id,
        body: answer.as_bytes(),
    })
    .await;
    assert_eq!(within(caller).await.unwrap(), answer.as_bytes());

    // A method not declared as streaming still gets its request in the
    // `request` frame, as before.
    let caller = tokio::spawn({
        let rpc = a.rpc.clone();
        let b = b.id();
        async move {
            rpc.call("sum", "one", bytes::Bytes::from_static(b"x"), &to(b))
                .await
        }
    });
    match ServeFrame::decode(&p.recv().await).unwrap() {
        ServeFrame::Request { call, body, .. } => {
            assert_eq!(body, b"x");
            let end = Trailer::new(Code::NotFound, "no x");
            p.send(&ServeFrame::End { call, trailer: end }).await;
        }
        other => panic!("unexpected {other:?}"),
    }
    let e = within(caller).await.unwrap().unwrap_err();
    assert_eq!(e.to_string(), "not-found: no x");
}

#[tokio::test]
async fn a_process_serves_a_duplex_call() {
    let (a, b) = pair().await;
    let mut p = Process::serve(
        &b,
        r#"{"op":"serve","service":"chat","stream_requests":["talk"]}"#,
    )
    .await;
    let mut call = within(a.rpc.open("chat", "talk", &to(b.id())))
        .await
        .unwrap();
    let (id, _) = request(&p.recv().await);
    // The process speaks first, before any request.
    p.send(&ServeFrame::Item {
        call: id,
        body: b"hello",
    })
    .await;
    assert_eq!(&within(call.recv()).await.unwrap().unwrap()[..], b"hello");
    // Each request is answered before the next is sent: the answers flow
    // while the requests are still open.
    for word in ["a", "b", "c"] {
        within(call.send(word.as_bytes())).await.unwrap();
        let frame = p.recv().await;
        let ServeFrame::RequestItem { call: c, body } = ServeFrame::decode(&frame).unwrap() else {
            panic!("not a request item")
        };
        assert_eq!((c, body), (id, word.as_bytes()));
        let upper = word.to_uppercase();
        p.send(&ServeFrame::Credit { call: id, count: 1 }).await;
        p.send(&ServeFrame::Item {
            call: id,
            body: upper.as_bytes(),
        })
        .await;
        let got = within(call.recv()).await.unwrap().unwrap();
        assert_eq!(&got[..], upper.as_bytes());
    }
    call.finish();
    assert_eq!(
        ServeFrame::decode(&p.recv().await).unwrap(),
        ServeFrame::RequestsEnd { call: id }
    );
    p.send(&ServeFrame::End {
        call: id,
        trailer: Trailer::new(Code::Ok, ""),
    })
    .await;
    assert!(within(call.recv()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_caller_that_gives_up_mid_stream_cancels_the_process_call() {
    let (a, b) = pair().await;
    let mut p = Process::serve(
        &b,
        r#"{"op":"serve","service":"up","stream_requests":["load"]}"#,
    )
    .await;
    let mut call = within(a.rpc.open("up", "load", &to(b.id()))).await.unwrap();
    let (id, _) = request(&p.recv().await);
    within(call.send(b"part")).await.unwrap();
    assert!(matches!(
        ServeFrame::decode(&p.recv().await).unwrap(),
        ServeFrame::RequestItem { .. }
    ));
    drop(call);
    match ServeFrame::decode(&p.recv().await).unwrap() {
        ServeFrame::Cancel { call, .. } => assert_eq!(call, id),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_frame_that_does_not_decode_closes_the_serving_connection() {
    let (a, b) = pair().await;
    let mut p = Process::serve(
        &b,
        r#"{"op":"serve","service":"bad","stream_requests":["up"]}"#,
    )
    .await;
    // A credit of zero is refused: the node closes the connection and
    // withdraws the service, so calls fail at once.
    p.0.send(&[0x14, 0, 0, 0, 1, 0, 0, 0, 0]).await.unwrap();
    assert!(within(p.0.recv()).await.unwrap().is_none());
    let e = within(a.rpc.call("bad", "up", bytes::Bytes::new(), &to(b.id())))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Unavailable, "{e}");
}
