//! Arbitrary frames and control messages into a traversal core that has a
//! peer and a punch in progress: it never panics, never answers with more
//! reply bytes than it was sent in frames, and sends binding-lifetime
//! probes (`BindingCheck` answers, mapping checks) only to the IP it
//! observes a peer at. It has an alternate port (mapping checks), and
//! frames arrive on it too.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::traversal::TraversalMsg;
use relay_proto::SecretKey;
use relay_transport::traversal::mapcheck::ALT_PORT;
use relay_transport::traversal::{ConnectionInfo, Traversal, TraversalConfig, TraversalTransmit};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let me = SecretKey::from_bytes(&[1; 32]).node_id();
    let peer = SecretKey::from_bytes(&[2; 32]).node_id();
    let intro = SecretKey::from_bytes(&[3; 32]).node_id();
    let mut core = Traversal::new(me, TraversalConfig::default(), [0; 32]);
    core.handle_alt_port(Some(7001));
    let src: SocketAddr = "203.0.113.7:4000".parse().expect("addr");
    for (node, observed) in [(peer, None), (intro, Some(src))] {
        core.handle_connection(
            now,
            node,
            ConnectionInfo {
                probe_key: [9; 32],
                observed,
                rtt: Duration::from_millis(50),
            },
        );
    }
    let _ = core.request_direct(now, peer, Some(intro));
    while core.poll_transmit().is_some() {}
    let mut inbound = 0usize;
    // Chunks: first byte picks the input kind, then a length byte.
    let mut rest = data;
    let mut t = now;
    while rest.len() >= 2 {
        let (kind, len) = (rest[0], rest[1] as usize);
        let body = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        t += Duration::from_millis(u64::from(kind));
        match kind % 4 {
            0 => {
                inbound += body.len();
                core.handle_frame(t, src, body);
            }
            3 => {
                // A probe port (birthday probing) the core may or may not
                // own, or the alternate port: the same rules hold.
                inbound += body.len();
                let port = if kind & 0x80 != 0 {
                    ALT_PORT
                } else {
                    u32::from(kind)
                };
                core.handle_port_frame(t, port, src, body);
            }
            1 => {
                if let Ok(msg) = TraversalMsg::decode(body) {
                    core.handle_control(t, intro, msg);
                }
            }
            _ => core.handle_timeout(t),
        }
    }
    // Every reply (0x11) answers one valid inbound probe of the same size.
    // Binding-lifetime probes (0x10 with flag 0x04: answers to
    // `BindingCheck`s and our own measurement's) only ever go to the one IP
    // a peer is observed at.
    let mut replied = 0usize;
    while let Some(tx) = core.poll_transmit() {
        let (dst, data) = match tx {
            TraversalTransmit::Frame { dst, data }
            | TraversalTransmit::PortFrame { dst, data, .. } => (dst, data),
            TraversalTransmit::Control { .. } => continue,
        };
        if data.first() == Some(&0x11) {
            replied += data.len();
        }
        if data.first() == Some(&0x10) && data.get(1).is_some_and(|f| f & 0x04 != 0) {
            assert_eq!(dst.ip(), src.ip(), "binding probe to {dst}");
        }
    }
    assert!(replied <= inbound, "replies {replied} > inbound {inbound}");
});
