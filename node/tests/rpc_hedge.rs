//! Hedging end to end, three in-process nodes on loopback: `a` calls a
//! service that `b` (never answers) and `c` (answers at once) both serve.
//! An idempotent call is hedged to the other node, wins there, and the
//! loser's handler sees the cancellation; a call not marked idempotent is
//! run exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use relay_node::subsystem::{Subsystem, Tasks};
use relay_node::subsystems::rpc::Rpc;
use relay_node::subsystems::rpc_client::CallOptions;
use relay_node::subsystems::rpc_server::ServerCall;
use relay_node::subsystems::rpc_service::{handler, ServeOptions};
use relay_proto::ledger::body::ServiceRegistration;
use relay_proto::ledger::{Body, Entry, EntryHash};
use relay_proto::wire::rpc::ServiceSpec;
use relay_rpc::{Code, HedgePolicy, RetryPolicy};
use relay_transport::{Mux, MuxConfig, NetworkKey, SecretKey, Transport, TransportConfig};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

struct Node {
    secret: SecretKey,
    rpc: Rpc,
    mux: Mux,
    _tasks: Tasks,
}

async fn bind(key: &NetworkKey) -> Node {
    let secret = SecretKey::generate();
    let transport = Transport::bind(TransportConfig::new(
        secret.clone(),
        Some(key.clone()),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let mux = Mux::new(transport, MuxConfig::default());
    let rpc = Rpc::new(mux.clone(), None);
    let tasks = Tasks::new();
    rpc.register_protocols(&mux, &tasks).unwrap();
    mux.start();
    Node {
        secret,
        rpc,
        mux,
        _tasks: tasks,
    }
}

/// What `node` would append to the ledger when serving "svc".
fn registration(node: &Node) -> Entry {
    let spec = ServiceSpec::default().encode().unwrap();
    let body = Body::ServiceRegistration(ServiceRegistration {
        name: "svc".into(),
        withdrawn: false,
        spec,
    });
    Entry::sign(&node.secret, 1, EntryHash::ZERO, 0, &body).unwrap()
}

#[tokio::test]
async fn idempotent_calls_are_hedged_and_others_run_once() {
    let key = NetworkKey::generate();
    let (a, b, c) = (bind(&key).await, bind(&key).await, bind(&key).await);
    let runs = Arc::new(AtomicU64::new(0));
    let (cancelled, mut saw_cancel) = mpsc::unbounded_channel();
    let r = runs.clone();
    b.rpc
        .serve(
            "svc",
            ServeOptions::default(),
            handler(move |call: ServerCall| {
                let (r, cancelled) = (r.clone(), cancelled.clone());
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    call.cancelled().await;
                    let _ = cancelled.send(());
                    Ok(None)
                }
            }),
        )
        .unwrap();
    let r = runs.clone();
    c.rpc
        .serve(
            "svc",
            ServeOptions::default(),
            handler(move |_call: ServerCall| {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(Some(Bytes::from_static(b"from c")))
                }
            }),
        )
        .unwrap();
    for server in [&b, &c] {
        a.rpc.directory().apply(&registration(server));
        within(a.mux.transport().connect(
            server.mux.transport().node_id(),
            server.mux.transport().local_addrs()[0],
        ))
        .await
        .unwrap();
    }

    // Idempotent, hedged after 20 ms: whichever node goes first, c answers.
    for _ in 0..2 {
        let opts = CallOptions {
            idempotent: true,
            hedge: Some(HedgePolicy::default()),
            timeout: Duration::from_secs(10),
            ..CallOptions::default()
        };
        let reply = within(a.rpc.call("svc", "x", Bytes::new(), &opts))
            .await
            .unwrap();
        assert_eq!(&reply[..], b"from c");
    }
    // Every call that went to b first (at least one: round-robin) was
    // hedged to c, and b's handler saw the cancellation.
    let hedged = runs.load(Ordering::SeqCst) - 2;
    assert!((1..=2).contains(&hedged), "{hedged} hedged calls");
    for _ in 0..hedged {
        within(saw_cancel.recv()).await.unwrap();
    }

    // Not idempotent, same hedging policy: exactly one run per call.
    runs.store(0, Ordering::SeqCst);
    for _ in 0..2 {
        let opts = CallOptions {
            idempotent: false,
            hedge: Some(HedgePolicy {
                delay: Duration::from_millis(1),
                max_attempts: 5,
            }),
            retry: RetryPolicy::none(),
            timeout: Duration::from_millis(300),
            ..CallOptions::default()
        };
        let result = within(a.rpc.call("svc", "x", Bytes::new(), &opts)).await;
        if let Err(e) = result {
            assert_eq!(e.code, Code::Timeout, "{e}");
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
