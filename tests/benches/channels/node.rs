//! In-process nodes for the channels bench: a relay-node transport and mux
//! on loopback, the channels subsystem (its driver, hub and owner core, as
//! a node runs them), and a raw protocol whose receiver counts framed
//! messages on incoming unidirectional streams (the baseline).
//!
//! Every message is 64 bytes: its number (u64 BE, from 1), the time it
//! was sent (u64 BE, nanoseconds since [`base`]), then padding.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_channels::{Policy, SubEvent, SubscriptionConfig};
use relay_node::api::channels::ChannelsApi;
use relay_node::ledger::Ledger;
use relay_node::revocations_set::RevocationSet;
use relay_node::subsystem::{Subsystem, Tasks};
use relay_node::subsystems::channels::ChannelsSubsystem;
use relay_node::subsystems::channels_driver::{lock, unix_ms};
use relay_transport::mux::coalesce::CoalesceConfig;
use relay_transport::mux::reader::FramedReader;
use relay_transport::mux::writer::FramedWriter;
use relay_transport::mux::{ProtocolId, QueueConfig};
use relay_transport::{
    Incoming, Mux, MuxConfig, NetworkKey, NodeId, SecretKey, Transport, TransportConfig,
};
use tokio::sync::{mpsc, Notify};

/// Message size.
pub const MESSAGE: usize = 64;
/// Messages per call of the batched publish.
pub const PUBLISH_RUN: usize = 1024;
/// The baseline's protocol: framed messages on a uni stream.
const RAW: ProtocolId = ProtocolId::new(202);

/// The zero of the send times carried in messages.
pub fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Message number `n` (stamped with the time now when `stamp`).
pub fn payload(n: u64, stamp: bool) -> [u8; MESSAGE] {
    let mut m = [0x5a; MESSAGE];
    m[..8].copy_from_slice(&n.to_be_bytes());
    let sent = if stamp {
        base().elapsed().as_nanos() as u64
    } else {
        0
    };
    m[8..16].copy_from_slice(&sent.to_be_bytes());
    m
}

/// A message's number and its age now (zero when not stamped).
pub fn read_payload(m: &[u8]) -> (u64, Duration) {
    assert_eq!(m.len(), MESSAGE, "message size");
    let n = u64::from_be_bytes(m[..8].try_into().unwrap());
    let sent = u64::from_be_bytes(m[8..16].try_into().unwrap());
    let age = if sent == 0 {
        Duration::ZERO
    } else {
        base().elapsed().saturating_sub(Duration::from_nanos(sent))
    };
    (n, age)
}

/// What a receiver saw: messages, when the last came, their ages.
#[derive(Debug)]
pub struct Received {
    /// Messages received (all in order, checked).
    pub count: u64,
    /// When the last one came.
    pub end: Instant,
    /// Each stamped message's age at arrival.
    pub ages: Vec<Duration>,
}

/// One in-process node.
pub struct Node {
    /// The mux (and transport).
    pub mux: Mux,
    /// The channel operations.
    pub api: ChannelsApi,
    raw_done: tokio::sync::Mutex<mpsc::Receiver<Received>>,
    _channels: ChannelsSubsystem,
    _tasks: Tasks,
    _dir: relay_tests::TempDir,
}

impl Node {
    /// A node on loopback in mesh `key`.
    pub async fn start(key: &NetworkKey) -> Self {
        let secret = SecretKey::generate();
        let dir = relay_tests::TempDir::new("chb").unwrap();
        let ledger = Ledger::open(dir.path(), secret.clone()).unwrap();
        let transport = Transport::bind(TransportConfig::new(
            secret,
            Some(key.clone()),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .await
        .unwrap();
        let mux = Mux::new(transport, MuxConfig::default());
        let tasks = Tasks::new();
        let channels = ChannelsSubsystem::new(mux.clone(), ledger, RevocationSet::default());
        channels.register_protocols(&mux, &tasks).unwrap();
        let mut raw = mux.register(RAW, "raw", QueueConfig::default()).unwrap();
        let (done_tx, done_rx) = mpsc::channel(16);
        tasks.spawn("raw", async move {
            while let Some(incoming) = raw.next().await {
                if let Incoming::Uni { recv, .. } = incoming {
                    tokio::spawn(read_raw(FramedReader::new(recv, MESSAGE), done_tx.clone()));
                }
            }
        });
        mux.start();
        channels.start(&tasks);
        Self {
            mux,
            api: channels.api(),
            raw_done: tokio::sync::Mutex::new(done_rx),
            _channels: channels,
            _tasks: tasks,
            _dir: dir,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.mux.transport().node_id()
    }

    /// Connects to `other`.
    pub async fn connect(&self, other: &Node) {
        self.mux
            .transport()
            .connect(other.id(), other.mux.transport().local_addrs()[0])
            .await
            .unwrap();
    }

    /// Starts owning a reliable channel `name` (default policy).
    pub fn create(&self, name: &str) {
        lock(&self.api.hub)
            .owner_mut()
            .create(name, Policy::default(), unix_ms())
            .unwrap();
    }

    /// Subscribes to `name` at `owner` with `window` credit and waits until
    /// the owner accepted.
    pub async fn subscribe(&self, owner: NodeId, name: &str, window: u32) -> Sub {
        let config = SubscriptionConfig {
            window,
            ..SubscriptionConfig::default()
        };
        let (link, notify) = lock(&self.api.hub).subscribe(owner, name, Vec::new(), config);
        self.api.wake.notify_one();
        loop {
            match lock(&self.api.hub).take_events(link, 1).as_deref() {
                Some([SubEvent::Accepted { .. }]) => break,
                Some([]) => {}
                other => panic!("subscribe: {other:?}"),
            }
            notify.notified().await;
        }
        Sub {
            api: self.api.clone(),
            link,
            notify,
        }
    }

    /// The next raw stream's result.
    pub async fn raw_received(&self) -> Received {
        self.raw_done.lock().await.recv().await.unwrap()
    }

    /// Sends `count` framed messages to `to` on one new uni stream of the
    /// baseline protocol: through the coalescing writer, or with one
    /// `write_all` per framed message. `every` paces the messages.
    pub async fn raw_send(&self, to: NodeId, count: u64, coalesce: bool, every: Option<Duration>) {
        // Right after a connect the accepting side may not have the
        // connection yet: retry for a while.
        let mut tries = 0;
        let mut send = loop {
            match self.mux.open_uni(to, RAW).await {
                Ok(s) => break s,
                Err(_) if tries < 500 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("open_uni: {e}"),
            }
        };
        let mut tick = every.map(tokio::time::interval);
        let stamp = every.is_some();
        if coalesce {
            let writer = FramedWriter::new(send, CoalesceConfig::default());
            for n in 1..=count {
                if let Some(t) = &mut tick {
                    t.tick().await;
                }
                writer.send(&payload(n, stamp)).await.unwrap();
            }
            writer.finish().await.unwrap();
        } else {
            let mut framed = [0u8; 4 + MESSAGE];
            framed[..4].copy_from_slice(&(MESSAGE as u32).to_be_bytes());
            for n in 1..=count {
                if let Some(t) = &mut tick {
                    t.tick().await;
                }
                framed[4..].copy_from_slice(&payload(n, stamp));
                send.write_all(&framed).await.unwrap();
            }
            send.finish().unwrap();
        }
    }

    /// Publishes `count` messages on `name` at `owner` through the Rust
    /// API's batched publish, `ChannelsApi::queue_publish_many`: runs of
    /// [`PUBLISH_RUN`] messages, each run queued under one lock of the hub
    /// and one wake-up of the driver, waiting when the session's window is
    /// full. Each run is built in one buffer and published as slices of
    /// it, as a batching publisher does (the raw baseline allocates nothing
    /// per message either).
    pub async fn publish_batched(&self, owner: NodeId, name: &str, count: u64) {
        let mut batch = VecDeque::with_capacity(PUBLISH_RUN);
        let mut n = 1;
        while n <= count {
            let end = (n + PUBLISH_RUN as u64).min(count + 1);
            // The run's messages in one buffer, each a slice of it.
            let mut run = Vec::with_capacity(MESSAGE * PUBLISH_RUN);
            for i in n..end {
                run.extend_from_slice(&payload(i, false));
            }
            let run = Bytes::from(run);
            batch
                .extend((0..(end - n) as usize).map(|i| run.slice(i * MESSAGE..(i + 1) * MESSAGE)));
            n = end;
            self.api
                .queue_publish_many(owner, name, &[], &mut batch, None)
                .await
                .unwrap();
        }
    }

    /// Publishes `count` messages one call each (the local API's
    /// `queue_publish`), paced by `every`.
    pub async fn publish_each(
        &self,
        owner: NodeId,
        name: &str,
        count: u64,
        every: Option<Duration>,
    ) {
        let mut tick = every.map(tokio::time::interval);
        for n in 1..=count {
            if let Some(t) = &mut tick {
                t.tick().await;
            }
            let data = payload(n, every.is_some()).to_vec();
            self.api
                .queue_publish(owner, name, &[], data, None)
                .await
                .unwrap();
        }
    }
}

/// Counts (and checks the order of) framed messages on one stream.
async fn read_raw(mut reader: FramedReader, done: mpsc::Sender<Received>) {
    let mut count = 0;
    let mut ages = Vec::new();
    while let Some(m) = reader.next().await.unwrap() {
        let (n, age) = read_payload(&m);
        count += 1;
        assert_eq!(n, count, "raw stream order");
        if !age.is_zero() {
            ages.push(age);
        }
    }
    let _ = done
        .send(Received {
            count,
            end: Instant::now(),
            ages,
        })
        .await;
}

/// A live subscription.
pub struct Sub {
    api: ChannelsApi,
    link: u64,
    notify: Arc<Notify>,
}

impl Sub {
    /// Receives `count` messages, checking that they come in order with
    /// nothing missing (no gap, no other event).
    pub async fn receive(&self, count: u64) -> Received {
        let mut next = 1;
        let mut ages = Vec::new();
        while next <= count {
            let events = self.api.events(self.link).expect("subscription ended");
            if events.is_empty() {
                self.notify.notified().await;
                continue;
            }
            for event in events {
                match event {
                    SubEvent::Message { seq, data, .. } => {
                        let (n, age) = read_payload(&data);
                        assert_eq!((seq, n), (next, next), "channel order");
                        next += 1;
                        if !age.is_zero() {
                            ages.push(age);
                        }
                    }
                    other => panic!("unexpected event {other:?}"),
                }
            }
        }
        Received {
            count,
            end: Instant::now(),
            ages,
        }
    }

    /// Ends the subscription.
    pub fn close(self) {
        self.api.close_subscription(self.link);
    }
}

/// This process's resident set size, bytes.
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
