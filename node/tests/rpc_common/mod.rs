//! Shared by the tests of the local API's nRPC streams: in-process nodes
//! on loopback with nRPC running.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use relay_node::subsystem::{Subsystem, Tasks};
use relay_node::subsystems::rpc::Rpc;
use relay_node::subsystems::rpc_client::CallOptions;
use relay_transport::{Mux, MuxConfig, NetworkKey, NodeId, SecretKey, Transport, TransportConfig};

pub const STEP: Duration = Duration::from_secs(20);

pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

pub struct Node {
    pub rpc: Rpc,
    pub mux: Mux,
    _tasks: Tasks,
}

impl Node {
    pub async fn bind(key: NetworkKey) -> Self {
        let transport = Transport::bind(TransportConfig::new(
            SecretKey::generate(),
            Some(key),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .await
        .unwrap();
        let mux = Mux::new(transport, MuxConfig::default());
        let rpc = Rpc::new(mux.clone(), None);
        let tasks = Tasks::new();
        rpc.register_protocols(&mux, &tasks).unwrap();
        mux.start();
        rpc.start(&tasks);
        Self {
            rpc,
            mux,
            _tasks: tasks,
        }
    }

    pub fn id(&self) -> NodeId {
        self.mux.transport().node_id()
    }
}

/// Two connected nodes.
pub async fn pair() -> (Node, Node) {
    let key = NetworkKey::generate();
    let a = Node::bind(key.clone()).await;
    let b = Node::bind(key).await;
    within(
        a.mux
            .transport()
            .connect(b.id(), b.mux.transport().local_addrs()[0]),
    )
    .await
    .unwrap();
    (a, b)
}

/// Options calling only `node`.
pub fn to(node: NodeId) -> CallOptions {
    CallOptions {
        node: Some(node),
        ..CallOptions::default()
    }
}
