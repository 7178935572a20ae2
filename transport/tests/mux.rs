//! The protocol mux over real in-process transports on loopback: routing
//! of bi streams, uni streams and datagrams by protocol id, refusal of
//! unknown ids, isolation from a stalled handler, bounded id reads, open
//! by NodeId, and connection generations across a path change and a
//! reconnect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{ReadError, ReadToEndError, VarInt};
use relay_transport::mux::{
    ProtocolRx, StreamHandler, RESET_BUSY, RESET_ID_TIMEOUT, RESET_SHUTDOWN,
    RESET_TOO_MANY_PENDING, RESET_UNKNOWN_PROTOCOL,
};
use relay_transport::socket::Path;
use relay_transport::traversal::NatType;
use relay_transport::{
    ControlMsg, Incoming, Mux, MuxConfig, NodeId, PeerEvent, ProtocolId, QueueConfig, SecretKey,
    Transport, TraversalMsg,
};
use support::*;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const ECHO: ProtocolId = ProtocolId::new(0x0101);
const SINK: ProtocolId = ProtocolId::new(0x0102);
const STALL: ProtocolId = ProtocolId::new(0x0103);

/// A transport without traversal or port mapping (so traversal control
/// messages are left to the test), with `secret` as identity.
async fn node_with(secret: SecretKey) -> Transport {
    init_tracing();
    let mut c = config(secret, None);
    c.traversal = false;
    c.port_map.enabled = false;
    Transport::bind(c).await.unwrap()
}

async fn node() -> Transport {
    node_with(SecretKey::generate()).await
}

/// A mux routing on `t` (the tests register their protocols before any
/// peer connects).
fn started(t: Transport, config: MuxConfig) -> Mux {
    let mux = Mux::new(t, config);
    mux.start();
    mux
}

/// What a handler saw, besides the bi streams it echoed.
#[derive(Debug, PartialEq)]
enum Seen {
    Uni(NodeId, Vec<u8>),
    Datagram(NodeId, Bytes),
}

/// Serves `rx`: echoes bi streams, reports uni streams and datagrams.
fn serve_echo(mut rx: ProtocolRx) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        while let Some(item) = rx.next().await {
            let tx = tx.clone();
            tasks.spawn(async move {
                match item {
                    Incoming::Bi {
                        mut send, mut recv, ..
                    } => {
                        let data = recv.read_to_end(1 << 20).await.unwrap();
                        send.write_all(&data).await.unwrap();
                        send.finish().unwrap();
                        let _ = send.stopped().await;
                    }
                    Incoming::Uni { from, mut recv } => {
                        let data = recv.read_to_end(1 << 20).await.unwrap();
                        let _ = tx.send(Seen::Uni(from, data));
                    }
                    Incoming::Datagram { from, data } => {
                        let _ = tx.send(Seen::Datagram(from, data));
                    }
                }
            });
        }
    });
    seen
}

/// Sends `data` on a new ECHO stream (opened through the mux) and returns
/// the echo.
async fn mux_echo(mux: &Mux, peer: NodeId, data: &[u8]) -> Vec<u8> {
    within(async {
        let (mut send, mut recv) = mux.open_bi(peer, ECHO).await.unwrap();
        send.write_all(data).await.unwrap();
        send.finish().unwrap();
        recv.read_to_end(1 << 20).await.unwrap()
    })
    .await
}

fn reset_code(result: Result<Vec<u8>, ReadToEndError>) -> Option<VarInt> {
    match result {
        Err(ReadToEndError::Read(ReadError::Reset(code))) => Some(code),
        other => panic!("expected a reset, got {other:?}"),
    }
}

async fn connect(a: &Transport, b: &Transport) {
    within(a.connect(b.node_id(), addr(b))).await.unwrap();
}

#[tokio::test]
async fn bi_uni_and_datagrams_are_routed_by_protocol_id() {
    let a = node().await;
    let b = node().await;
    let a_mux = started(a.clone(), MuxConfig::default());
    let b_mux = started(b.clone(), MuxConfig::default());
    let mut echo_seen = serve_echo(
        b_mux
            .register(ECHO, "echo", QueueConfig::default())
            .unwrap(),
    );
    let mut sink_seen = serve_echo(
        b_mux
            .register(SINK, "sink", QueueConfig::default())
            .unwrap(),
    );
    connect(&a, &b).await;

    assert_eq!(mux_echo(&a_mux, b.node_id(), b"ping me").await, b"ping me");

    let mut uni = within(a_mux.open_uni(b.node_id(), SINK)).await.unwrap();
    uni.write_all(b"one way").await.unwrap();
    uni.finish().unwrap();
    assert_eq!(
        within(sink_seen.recv()).await.unwrap(),
        Seen::Uni(a.node_id(), b"one way".to_vec())
    );

    a_mux.send_datagram(b.node_id(), SINK, b"to sink").unwrap();
    assert_eq!(
        within(sink_seen.recv()).await.unwrap(),
        Seen::Datagram(a.node_id(), Bytes::from_static(b"to sink"))
    );
    a_mux.send_datagram(b.node_id(), ECHO, b"to echo").unwrap();
    assert_eq!(
        within(echo_seen.recv()).await.unwrap(),
        Seen::Datagram(a.node_id(), Bytes::from_static(b"to echo"))
    );

    let stats = b_mux.stats();
    let by_name = |name: &str| {
        stats
            .protocols
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("echo").streams_accepted, 1);
    assert_eq!(by_name("echo").datagrams_accepted, 1);
    assert_eq!(by_name("sink").streams_accepted, 1);
    assert_eq!(by_name("sink").datagrams_accepted, 1);
    assert_eq!(stats.unknown_protocol, 0);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn unknown_ids_are_refused_and_counted() {
    let a = node().await;
    let b = node().await;
    let a_mux = started(a.clone(), MuxConfig::default());
    let b_mux = started(b.clone(), MuxConfig::default());
    let mut echo_seen = serve_echo(
        b_mux
            .register(ECHO, "echo", QueueConfig::default())
            .unwrap(),
    );
    connect(&a, &b).await;
    let unknown = ProtocolId::new(0x7777);

    let (mut send, mut recv) = within(a_mux.open_bi(b.node_id(), unknown)).await.unwrap();
    // The refusal may overtake these.
    let _ = send.write_all(b"anyone?").await;
    let _ = send.finish();
    let code = reset_code(within(recv.read_to_end(1024)).await);
    assert_eq!(code, Some(VarInt::from_u32(RESET_UNKNOWN_PROTOCOL)));

    let mut uni = within(a_mux.open_uni(b.node_id(), unknown)).await.unwrap();
    let _ = uni.write_all(b"anyone?").await;
    let stopped = within(uni.stopped()).await.unwrap();
    assert_eq!(stopped, Some(VarInt::from_u32(RESET_UNKNOWN_PROTOCOL)));

    // An unknown datagram and a datagram too short for an id, then one the
    // handler sees: datagrams are routed in order, so both are counted by
    // the time it arrives.
    a_mux.send_datagram(b.node_id(), unknown, b"x").unwrap();
    a.send_datagram(b.node_id(), Bytes::from_static(b"\x01"))
        .unwrap();
    a_mux.send_datagram(b.node_id(), ECHO, b"last").unwrap();
    within(echo_seen.recv()).await.unwrap();

    let stats = b_mux.stats();
    assert_eq!(stats.unknown_protocol, 3, "bi, uni and datagram");
    assert_eq!(stats.bad_header, 1);
    // The connection is fine.
    assert_eq!(mux_echo(&a_mux, b.node_id(), b"still").await, b"still");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_stalled_handler_delays_no_other_protocol_peer_or_control_message() {
    let a = node().await;
    let b = node().await;
    let c = node().await;
    let a_mux = started(a.clone(), MuxConfig::default());
    let b_mux = started(b.clone(), MuxConfig::default());
    let c_mux = started(c.clone(), MuxConfig::default());
    let _echo_seen = serve_echo(
        b_mux
            .register(ECHO, "echo", QueueConfig::default())
            .unwrap(),
    );
    let small = QueueConfig {
        streams: 4,
        streams_per_peer: 2,
        datagrams: 8,
        datagrams_per_peer: 8,
    };
    // Registered and never read: its handler is stuck.
    let _stalled = b_mux.register(STALL, "stall", small).unwrap();
    let mut control = b.take_traversal_messages().unwrap();
    connect(&a, &b).await;
    connect(&c, &b).await;

    // Flood the stuck protocol with streams and datagrams, far more than
    // the transport's accept queue (1024) holds.
    let mut refused = JoinSet::new();
    for _ in 0..10 {
        let (mut send, mut recv) = within(a_mux.open_bi(b.node_id(), STALL)).await.unwrap();
        let _ = send.write_all(b"hold me").await;
        refused.spawn(async move {
            let code = recv.read_to_end(1024).await;
            drop(send);
            code
        });
    }
    for i in 0..3000u32 {
        // The send buffer may drop some; what arrives is more than enough.
        let _ = a_mux.send_datagram(b.node_id(), STALL, &i.to_be_bytes());
    }

    // Another protocol's stream, from the flooding peer and from another
    // peer, is served while the stuck one holds its queue.
    assert_eq!(mux_echo(&a_mux, b.node_id(), b"from a").await, b"from a");
    assert_eq!(mux_echo(&c_mux, b.node_id(), b"from c").await, b"from c");

    // A control message on the flooded connection still arrives.
    let msg = TraversalMsg::NatInfo { nat: NatType::Open };
    a.send_control(b.node_id(), &ControlMsg::Traversal(msg.clone()))
        .unwrap();
    let (from, got) = within(control.recv()).await.unwrap();
    assert_eq!((from, got), (a.node_id(), msg));

    // The stuck protocol kept a's share (2 streams); the other 8 were
    // refused as busy at once.
    let mut busy = 0;
    while busy < 8 {
        let code = reset_code(within(refused.join_next()).await.unwrap().unwrap());
        assert_eq!(code, Some(VarInt::from_u32(RESET_BUSY)));
        busy += 1;
    }
    let stats = b_mux.stats();
    let stall = stats.protocols.iter().find(|p| p.name == "stall").unwrap();
    assert_eq!(stall.streams_accepted, 2);
    assert_eq!(stall.streams_dropped, 8);
    assert_eq!(stall.datagrams_accepted, 8);
    assert!(stall.datagrams_dropped > 0, "{stall:?}");
    a.close().await;
    b.close().await;
    c.close().await;
}

#[tokio::test]
async fn streams_awaiting_their_id_are_bounded_per_peer() {
    let a = node().await;
    let b = node().await;
    let c = node().await;
    let c_mux = started(c.clone(), MuxConfig::default());
    let config = MuxConfig {
        max_pending_per_peer: 2,
        id_timeout: Duration::from_secs(60),
        ..MuxConfig::default()
    };
    let b_mux = started(b.clone(), config);
    let _echo_seen = serve_echo(
        b_mux
            .register(ECHO, "echo", QueueConfig::default())
            .unwrap(),
    );
    connect(&a, &b).await;
    connect(&c, &b).await;

    // Two streams send half an id, then wait.
    let header = ECHO.to_header();
    let mut halves = Vec::new();
    for _ in 0..2 {
        let (mut send, recv) = within(a.open_bi(b.node_id())).await.unwrap();
        send.write_all(&header[..1]).await.unwrap();
        halves.push((send, recv));
    }
    // a's third stream, half an id too, finds its share used up (streams
    // reach the mux in the order they were opened).
    let (mut send, mut recv) = within(a.open_bi(b.node_id())).await.unwrap();
    send.write_all(&header[..1]).await.unwrap();
    let code = reset_code(within(recv.read_to_end(1024)).await);
    assert_eq!(code, Some(VarInt::from_u32(RESET_TOO_MANY_PENDING)));
    assert_eq!(b_mux.stats().too_many_pending, 1);
    assert_eq!(b_mux.stats().pending, 2);
    drop(send);

    // A stream whose whole id has arrived waits for nothing: it takes no
    // share, and is served although a's share is used up.
    let (mut send, mut recv) = within(a.open_bi(b.node_id())).await.unwrap();
    send.write_all(&header).await.unwrap();
    send.write_all(b"whole").await.unwrap();
    send.finish().unwrap();
    assert_eq!(within(recv.read_to_end(1024)).await.unwrap(), b"whole");
    assert_eq!(b_mux.stats().pending, 2);

    // Another peer is not held up.
    assert_eq!(mux_echo(&c_mux, b.node_id(), b"from c").await, b"from c");

    // The waiting streams finish their ids and are served.
    for (mut send, mut recv) in halves {
        send.write_all(&header[1..]).await.unwrap();
        send.write_all(b"late").await.unwrap();
        send.finish().unwrap();
        assert_eq!(within(recv.read_to_end(1024)).await.unwrap(), b"late");
    }
    assert_eq!(b_mux.stats().pending, 0);
    a.close().await;
    b.close().await;
    c.close().await;
}

#[tokio::test]
async fn a_stream_without_its_id_in_time_is_reset() {
    let a = node().await;
    let b = node().await;
    let config = MuxConfig {
        id_timeout: Duration::from_millis(200),
        ..MuxConfig::default()
    };
    let b_mux = started(b.clone(), config);
    let _echo_seen = serve_echo(
        b_mux
            .register(ECHO, "echo", QueueConfig::default())
            .unwrap(),
    );
    connect(&a, &b).await;
    let (mut send, mut recv) = within(a.open_bi(b.node_id())).await.unwrap();
    send.write_all(&ECHO.to_header()[..1]).await.unwrap();
    let code = reset_code(within(recv.read_to_end(1024)).await);
    assert_eq!(code, Some(VarInt::from_u32(RESET_ID_TIMEOUT)));
    assert_eq!(b_mux.stats().id_timeout, 1);
    a.close().await;
    b.close().await;
}

fn generation_of(ev: &PeerEvent) -> u64 {
    match ev {
        PeerEvent::Connected { generation, .. } => *generation,
        other => panic!("not a Connected event: {other:?}"),
    }
}

fn is_connection_event(node: NodeId) -> impl FnMut(&PeerEvent) -> bool {
    move |ev| {
        matches!(ev,
            PeerEvent::Connected { node_id, .. }
            | PeerEvent::PathChanged { node_id, .. }
            | PeerEvent::Disconnected { node_id, .. } if *node_id == node)
    }
}

#[tokio::test]
async fn open_by_node_id_dials_and_generations_tell_a_reconnect_from_a_path_change() {
    let a = node().await;
    let b_secret = SecretKey::generate();
    let b = node_with(b_secret.clone()).await;
    let b_id = b.node_id();
    let a_mux = started(a.clone(), MuxConfig::default());
    let b_mux = started(b.clone(), MuxConfig::default());
    let _echo_seen = serve_echo(
        b_mux
            .register(ECHO, "echo", QueueConfig::default())
            .unwrap(),
    );
    let mut events = a.subscribe();

    // No connection yet: the mux dials the address it knows.
    assert!(a_mux.remember_addr(b_id, addr(&b)));
    let (mut send, mut recv) = within(a_mux.open_bi(b_id, ECHO)).await.unwrap();
    let first = generation_of(&event(&mut events, is_connection_event(b_id)).await);
    send.write_all(b"before ").await.unwrap();

    // A path change keeps the connection, its generation and its streams.
    a.set_path(b_id, Path::Direct(addr(&b))).unwrap();
    let ev = event(&mut events, is_connection_event(b_id)).await;
    assert!(matches!(ev, PeerEvent::PathChanged { .. }), "{ev:?}");
    send.write_all(b"after").await.unwrap();
    send.finish().unwrap();
    assert_eq!(
        within(recv.read_to_end(1024)).await.unwrap(),
        b"before after"
    );

    // B restarts elsewhere with the same identity: a new connection, a
    // new generation.
    b_mux.close();
    b.close().await;
    let ev = event(&mut events, is_connection_event(b_id)).await;
    assert!(matches!(ev, PeerEvent::Disconnected { .. }), "{ev:?}");
    let b2 = node_with(b_secret).await;
    let b2_mux = started(b2.clone(), MuxConfig::default());
    let _echo2 = serve_echo(
        b2_mux
            .register(ECHO, "echo", QueueConfig::default())
            .unwrap(),
    );
    assert!(a_mux.remember_addr(b_id, addr(&b2)));
    assert_eq!(mux_echo(&a_mux, b_id, b"again").await, b"again");
    let second = generation_of(&event(&mut events, is_connection_event(b_id)).await);
    assert!(second > first, "{second} > {first}");
    a.close().await;
    b2.close().await;
}

#[tokio::test]
async fn opening_without_address_or_relay_is_typed() {
    let a = node().await;
    let a_mux = started(a.clone(), MuxConfig::default());
    let stranger = SecretKey::generate().node_id();
    let err = within(a_mux.open_bi(stranger, ECHO)).await.unwrap_err();
    assert_eq!(err.kind(), "not-connected");
    let err = within(a_mux.open_uni(a.node_id(), ECHO)).await.unwrap_err();
    assert_eq!(err.kind(), "invalid-peer");
    a.close().await;
}

#[tokio::test]
async fn a_dropped_handler_resets_what_it_left_queued_and_unregisters() {
    let a = node().await;
    let b = node().await;
    let a_mux = started(a.clone(), MuxConfig::default());
    let b_mux = started(b.clone(), MuxConfig::default());
    let one = QueueConfig {
        streams: 1,
        streams_per_peer: 1,
        ..QueueConfig::default()
    };
    let sink = b_mux.register(SINK, "sink", one).unwrap();
    connect(&a, &b).await;

    // Two streams for a queue of one: one is queued, the other refused.
    let mut streams = JoinSet::new();
    for _ in 0..2 {
        let (mut send, mut recv) = within(a_mux.open_bi(b.node_id(), SINK)).await.unwrap();
        let _ = send.write_all(b"queued?").await;
        streams.spawn(async move {
            let code = recv.read_to_end(1024).await;
            drop(send);
            code
        });
    }
    let first = reset_code(within(streams.join_next()).await.unwrap().unwrap());
    assert_eq!(first, Some(VarInt::from_u32(RESET_BUSY)));

    // Dropping the handler resets the queued one and unregisters.
    drop(sink);
    let second = reset_code(within(streams.join_next()).await.unwrap().unwrap());
    assert_eq!(second, Some(VarInt::from_u32(RESET_SHUTDOWN)));
    assert!(!b_mux.is_registered(SINK));
    let (mut send, mut recv) = within(a_mux.open_bi(b.node_id(), SINK)).await.unwrap();
    let _ = send.write_all(b"anyone?").await;
    let code = reset_code(within(recv.read_to_end(1024)).await);
    assert_eq!(code, Some(VarInt::from_u32(RESET_UNKNOWN_PROTOCOL)));
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_stream_handler_takes_streams_at_once_and_what_it_hands_back_is_busy() {
    let a = node().await;
    let b = node().await;
    let a_mux = started(a.clone(), MuxConfig::default());
    let b_mux = Mux::new(b.clone(), MuxConfig::default());
    let taken = Arc::new(AtomicUsize::new(0));
    let handler: StreamHandler = {
        let taken = taken.clone();
        Arc::new(move |item: Incoming| match item {
            // The first three streams are echoed, later ones handed back.
            Incoming::Bi {
                mut send, mut recv, ..
            } if taken.fetch_add(1, Ordering::SeqCst) < 3 => {
                tokio::spawn(async move {
                    let data = recv.read_to_end(1 << 20).await.unwrap();
                    send.write_all(&data).await.unwrap();
                    send.finish().unwrap();
                    let _ = send.stopped().await;
                });
                Ok(())
            }
            other => Err(other),
        })
    };
    let _rx = b_mux
        .register_with_handler(ECHO, "echo", QueueConfig::default(), handler)
        .unwrap();
    b_mux.start();
    connect(&a, &b).await;

    // The id and the first bytes go in one write.
    let echoed = within(async {
        let (mut send, mut recv) = a_mux
            .open_bi_with(b.node_id(), ECHO, b"hello")
            .await
            .unwrap();
        send.finish().unwrap();
        recv.read_to_end(1 << 20).await.unwrap()
    })
    .await;
    assert_eq!(echoed, b"hello");

    // A request with room for the id goes as it is; one without room gets
    // the id in front.
    for (request, want) in [(b"..owned".to_vec(), &b"owned"[..]), (b"x".to_vec(), b"x")] {
        let echoed = within(async {
            let (mut send, mut recv) = a_mux
                .open_bi_owned(b.node_id(), ECHO, request)
                .await
                .unwrap();
            send.finish().unwrap();
            recv.read_to_end(1 << 20).await.unwrap()
        })
        .await;
        assert_eq!(echoed, want);
    }

    let refused = within(async {
        let (mut send, mut recv) = a_mux
            .open_bi_with(b.node_id(), ECHO, b"again")
            .await
            .unwrap();
        let _ = send.finish();
        recv.read_to_end(1 << 20).await
    })
    .await;
    assert_eq!(reset_code(refused), Some(VarInt::from_u32(RESET_BUSY)));
    let stats = b_mux.stats();
    let echo = stats.protocols.iter().find(|p| p.id == ECHO).unwrap();
    assert_eq!((echo.streams_accepted, echo.streams_dropped), (3, 1));
    assert_eq!(taken.load(Ordering::SeqCst), 4);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_mux_started_after_another_closed_takes_the_streams() {
    let a = node().await;
    let b = node().await;
    let a_mux = started(a.clone(), MuxConfig::default());
    let first = Mux::new(b.clone(), MuxConfig::default());
    let _first_seen = serve_echo(
        first
            .register(ECHO, "echo", QueueConfig::default())
            .unwrap(),
    );
    first.start();
    connect(&a, &b).await;
    assert_eq!(mux_echo(&a_mux, b.node_id(), b"one").await, b"one");

    // The first mux's routing ends on its own time; the second one's
    // stream hook replaces the first's at once, and the first, stopping,
    // removes only its own.
    first.close();
    let second = Mux::new(b.clone(), MuxConfig::default());
    let _second_seen = serve_echo(
        second
            .register(ECHO, "echo", QueueConfig::default())
            .unwrap(),
    );
    second.start();
    assert_eq!(mux_echo(&a_mux, b.node_id(), b"two").await, b"two");
    let echo = |mux: &Mux| {
        mux.stats()
            .protocols
            .iter()
            .find(|p| p.id == ECHO)
            .map_or(0, |p| p.streams_accepted)
    };
    assert_eq!(echo(&second), 1);
    a.close().await;
    b.close().await;
}
