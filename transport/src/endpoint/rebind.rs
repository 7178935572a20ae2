//! Following a NAT rebinding: moving a live connection's send path to the
//! new address its peer's packets arrive from, once quinn has accepted
//! them.
//!
//! The socket hands packets from an unknown address that carry one of our
//! connection IDs to quinn under the peer's mapped address and records the
//! address as a *rebind candidate* (see `socket/rebind.rs`). Such packets
//! are unauthenticated, so the candidate alone never moves anything.
//! [`Follower::check`] runs on the connection watcher's tick and moves the
//! send path to the candidate only when, between two ticks,
//!
//! - more packets arrived from the candidate address,
//! - none arrived from the current direct path (the old binding is dead),
//! - and quinn decoded more frames on this connection: frames are counted
//!   only after a packet decrypts, and on a direct path the candidate is
//!   the only source left, so quinn accepted the candidate's packets.
//!
//! A candidate seen while the current path still receives is dropped (late
//! or spoofed packets); fresh packets from there record a new one.
//!
//! The move goes through `paths::change`: same connection, same keys, no
//! new handshake, `since` unchanged, a PathChanged event.

use std::net::SocketAddr;

use relay_proto::NodeId;

use super::{paths, Shared};
use crate::socket::Path;

/// What the previous tick saw of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    real: SocketAddr,
    candidate_rx: u64,
    direct_rx: Option<u64>,
    frames: u64,
}

/// Per-connection rebinding state (lives in the connection watcher).
#[derive(Debug, Default)]
pub(crate) struct Follower {
    last: Option<Seen>,
}

/// Frames quinn decoded on `conn` (counted only for authenticated packets).
fn frames_decoded(conn: &quinn::Connection) -> u64 {
    let f = conn.stats().frame_rx;
    [
        f.acks,
        f.stream,
        f.ping,
        f.max_data,
        f.max_stream_data,
        f.datagram,
        f.new_connection_id,
        f.retire_connection_id,
        f.path_challenge,
        f.path_response,
        f.crypto,
    ]
    .iter()
    .fold(0u64, |a, b| a.saturating_add(*b))
}

impl Follower {
    /// One tick: follows `peer` to its rebind candidate when quinn has
    /// accepted packets from it (see the module docs).
    pub(crate) fn check(&mut self, shared: &Shared, peer: NodeId, conn: &quinn::Connection) {
        let Some(candidate) = shared.socket.rebind_candidate(&peer) else {
            self.last = None;
            return;
        };
        let Some(mapped) = shared.socket.mapped_addr(&peer) else {
            self.last = None;
            return;
        };
        if mapped != conn.remote_address() {
            self.last = None;
            return;
        }
        let current = match shared.socket.path(&mapped) {
            Some(Path::Direct(addr)) => addr,
            // Relayed paths are traversal's business.
            _ => {
                self.last = None;
                return;
            }
        };
        if current == candidate.real {
            shared.socket.clear_rebind_candidate(&peer);
            self.last = None;
            return;
        }
        let now = Seen {
            real: candidate.real,
            candidate_rx: candidate.received,
            direct_rx: shared.socket.direct_received(&peer),
            frames: frames_decoded(conn),
        };
        let follow = self.last.is_some_and(|last| {
            last.real == now.real
                && now.candidate_rx > last.candidate_rx
                && now.direct_rx == last.direct_rx
                && now.frames > last.frames
        });
        if !follow {
            let old_path_alive = self
                .last
                .is_some_and(|last| last.real == now.real && now.direct_rx != last.direct_rx);
            if old_path_alive {
                // The current path still carries the peer: the candidate
                // was stray (late or spoofed packets). Forget it; fresh
                // packets from there make a new one.
                shared.socket.clear_rebind_candidate(&peer);
                self.last = None;
            } else {
                if self.last.is_none() {
                    tracing::debug!(peer = %peer.fmt_short(), candidate = %now.real, "rebind candidate");
                }
                self.last = Some(now);
            }
            return;
        }
        self.last = None;
        shared.socket.clear_rebind_candidate(&peer);
        match paths::change(shared, peer, Path::Direct(candidate.real)) {
            Ok(()) => tracing::info!(
                peer = %peer.fmt_short(),
                from = %current,
                to = %candidate.real,
                "peer rebound: following its new address"
            ),
            Err(e) => {
                tracing::debug!(peer = %peer.fmt_short(), error = %e, "rebinding not followed")
            }
        }
    }
}
