//! nRPC between two in-process nodes on loopback: unary and streaming
//! calls, the server enforcing the deadline, cancellation reaching the
//! handler, admission control, and `no-responders` without a round trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rpc_common;

use std::time::Duration;

use bytes::Bytes;
use relay_node::subsystems::rpc_client::CallOptions;
use relay_node::subsystems::rpc_echo;
use relay_node::subsystems::rpc_io::{FrameReader, Inbound, RPC};
use relay_node::subsystems::rpc_server::ServerCall;
use relay_node::subsystems::rpc_service::{handler, ServeOptions};
use relay_proto::wire::rpc::CallHeader;
use relay_rpc::{Code, RetryPolicy, Status};
use relay_transport::NetworkKey;
use tokio::sync::mpsc;

use rpc_common::{to, within, Node};

/// `a` calls, `b` serves echo; connected.
async fn pair() -> (Node, Node) {
    let key = NetworkKey::generate();
    let a = Node::bind(key.clone()).await;
    let b = Node::bind(key).await;
    b.rpc
        .serve(rpc_echo::ECHO, rpc_echo::options(), rpc_echo::echo())
        .unwrap();
    within(
        a.mux
            .transport()
            .connect(b.id(), b.mux.transport().local_addrs()[0]),
    )
    .await
    .unwrap();
    (a, b)
}

#[tokio::test]
async fn unary_streaming_and_builtin_calls() {
    let (a, b) = pair().await;
    let reply = within(
        a.rpc
            .call("echo", "echo", Bytes::from_static(b"hi"), &to(b.id())),
    )
    .await
    .unwrap();
    assert_eq!(&reply[..], b"hi");

    let mut opts = to(b.id());
    opts.metadata = vec![("count".into(), "3".into())];
    let mut call = within(a.rpc.open("echo", "stream", &opts)).await.unwrap();
    call.send(b"item").await.unwrap();
    call.finish();
    let mut items = 0;
    while let Some(m) = within(call.recv()).await.unwrap() {
        assert_eq!(&m[..], b"item");
        items += 1;
    }
    assert_eq!(items, 3);

    let info = within(a.rpc.call("echo", "info", Bytes::new(), &to(b.id())))
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(info["node"], b.id().to_string());
    assert_eq!(info["methods"][0], "echo");
    let stats = within(a.rpc.call("echo", "stats", Bytes::new(), &to(b.id())))
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["calls"], 2);
    assert_eq!(stats["errors"], 0);

    let e = within(a.rpc.call("echo", "nope", Bytes::new(), &to(b.id())))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Unimplemented);
    // A streaming method called as unary says so, at once: not retried,
    // and not held against the node (its breaker stays closed).
    for _ in 0..6 {
        let call = a
            .rpc
            .call("echo", "stream", Bytes::from_static(b"x"), &opts);
        let e = within(call).await.unwrap_err();
        assert_eq!(e.code, Code::Unimplemented, "{e}");
        assert!(e.detail.contains("more than one response message"), "{e}");
    }
    let e = within(a.rpc.call("other", "x", Bytes::new(), &to(b.id())))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Unavailable, "{e}");
    assert_eq!(e.kind, "not-served", "{e}");
    // Its five attempts did not open b's breaker: b is well.
    let reply = within(
        a.rpc
            .call("echo", "echo", Bytes::from_static(b"still"), &to(b.id())),
    )
    .await
    .unwrap();
    assert_eq!(&reply[..], b"still");
}

#[tokio::test]
async fn no_responders_comes_back_at_once() {
    let (a, _b) = pair().await;
    let t = std::time::Instant::now();
    let e = a
        .rpc
        .call("inventory", "get", Bytes::new(), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::NoResponders);
    assert_eq!(e.to_string(), "no-responders: nobody serves inventory");
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn the_server_enforces_the_deadline_and_the_handler_sees_it() {
    let (a, b) = pair().await;
    let (saw, mut seen) = mpsc::unbounded_channel();
    b.rpc
        .serve(
            "slow",
            ServeOptions::default(),
            handler(move |call: ServerCall| {
                let saw = saw.clone();
                async move {
                    call.cancelled().await;
                    let _ = saw.send(call.method().to_string());
                    Ok(None)
                }
            }),
        )
        .unwrap();
    // A caller that states a 150 ms deadline but keeps waiting itself:
    // the server's timer fires and it answers `timeout`.
    let (mut send, recv) = within(a.mux.open_bi(b.id(), RPC)).await.unwrap();
    let mut buf = Vec::new();
    CallHeader {
        service: "slow".into(),
        method: "run".into(),
        deadline_ms: 150,
        idempotent: false,
        metadata: vec![],
    }
    .encode(&mut buf)
    .unwrap();
    send.write_all(&buf).await.unwrap();
    send.finish().unwrap();
    let trailer = match within(FrameReader::new(recv).next(1024)).await.unwrap() {
        Inbound::Trailer(Err(status)) => status,
        other => panic!("{other:?}"),
    };
    assert_eq!(trailer.code, Code::Timeout, "{trailer}");
    assert_eq!(within(seen.recv()).await.unwrap(), "run");

    // Through the API: the caller gets `timeout`.
    let opts = CallOptions {
        timeout: Duration::from_millis(200),
        ..to(b.id())
    };
    let e = within(a.rpc.call("slow", "run", Bytes::new(), &opts))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Timeout, "{e}");
    assert_eq!(within(seen.recv()).await.unwrap(), "run");
}

#[tokio::test]
async fn dropping_a_call_cancels_the_handler() {
    let (a, b) = pair().await;
    let (saw, mut seen) = mpsc::unbounded_channel();
    let (started, mut running) = mpsc::unbounded_channel();
    b.rpc
        .serve(
            "hold",
            ServeOptions::default(),
            handler(move |mut call: ServerCall| {
                let (saw, started) = (saw.clone(), started.clone());
                async move {
                    let _ = call.recv().await;
                    let _ = started.send(());
                    call.cancelled().await;
                    let _ = saw.send(());
                    Ok(None)
                }
            }),
        )
        .unwrap();
    let opts = CallOptions {
        timeout: Duration::from_secs(30),
        ..to(b.id())
    };
    let mut call = within(a.rpc.open("hold", "run", &opts)).await.unwrap();
    call.send(b"x").await.unwrap();
    within(running.recv()).await.unwrap();
    drop(call);
    within(seen.recv()).await.unwrap();
}

#[tokio::test]
async fn past_the_queue_calls_get_resource_exhausted_with_pushback() {
    let (a, b) = pair().await;
    let (started, mut running) = mpsc::unbounded_channel();
    let options = ServeOptions {
        concurrency: 1,
        queue: 0,
        retry_after: Duration::from_millis(75),
        ..ServeOptions::default()
    };
    b.rpc
        .serve(
            "one",
            options,
            handler(move |call: ServerCall| {
                let started = started.clone();
                async move {
                    let _ = started.send(());
                    call.cancelled().await;
                    Ok(None)
                }
            }),
        )
        .unwrap();
    let opts = CallOptions {
        retry: RetryPolicy::none(),
        ..to(b.id())
    };
    let first = {
        let rpc = a.rpc.clone();
        let opts = opts.clone();
        tokio::spawn(async move { rpc.call("one", "x", Bytes::new(), &opts).await })
    };
    within(running.recv()).await.unwrap();
    let e = within(a.rpc.call("one", "x", Bytes::new(), &opts))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::ResourceExhausted, "{e}");
    assert_eq!(e.retry_after, Some(Duration::from_millis(75)));
    first.abort();
}

#[tokio::test]
async fn a_node_calls_its_own_service_in_process() {
    let (_a, b) = pair().await;
    let opts = CallOptions::default();
    let reply = within(
        b.rpc
            .call("echo", "echo", Bytes::from_static(b"self"), &opts),
    )
    .await
    .unwrap();
    assert_eq!(&reply[..], b"self");
    let info = within(b.rpc.call("echo", "info", Bytes::new(), &opts))
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(info["node"], b.id().to_string());
    // The server's deadline applies in-process too.
    let short = CallOptions {
        timeout: Duration::from_millis(100),
        ..CallOptions::default()
    };
    let e = within(b.rpc.call("echo", "wait", Bytes::new(), &short))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Timeout, "{e}");
    let e = within(b.rpc.call("echo", "nope", Bytes::new(), &opts))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::Unimplemented, "{e}");
    // A streaming method called as unary, in-process as over the network.
    let e = within(
        b.rpc
            .call("echo", "stream", Bytes::from_static(b"x"), &opts),
    )
    .await
    .unwrap_err();
    assert!(e.detail.contains("more than one response message"), "{e}");
}

#[tokio::test]
async fn five_node_failures_open_the_breaker_shown_in_status() {
    let (a, b) = pair().await;
    b.rpc
        .serve(
            "broken",
            ServeOptions::default(),
            handler(|_call: ServerCall| async {
                Err(Status::new(Code::ServerError, "always fails"))
            }),
        )
        .unwrap();
    let opts = CallOptions {
        retry: RetryPolicy::none(),
        ..to(b.id())
    };
    for _ in 0..5 {
        let e = within(a.rpc.call("broken", "x", Bytes::new(), &opts))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "server-error: always fails");
    }
    let status = a.rpc.status_json();
    assert_eq!(status["breaker_thresholds"]["failure_threshold"], 5);
    assert_eq!(status["breakers"][0]["node_id"], b.id().to_string());
    assert_eq!(status["breakers"][0]["state"], "open");
    // Open: refused at once, without reaching b.
    let e = within(a.rpc.call("echo", "echo", Bytes::new(), &opts))
        .await
        .unwrap_err();
    assert_eq!(e.code, Code::BreakerOpen, "{e}");
    assert_eq!(status["failed"], 5);
}
