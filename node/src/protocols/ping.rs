//! Ping (protocol byte [`super::PROTO_PING`]): the initiator sends one frame
//! of [`FRAME_LEN`] random bytes and finishes its side; the responder echoes
//! the frame back and finishes. Frames over [`MAX_FRAME`] bytes reset the
//! stream. One ping is one stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_transport::{
    DialError, DialErrorKind, NodeId, PeerState, RecvStream, SendStream, StreamError, Transport,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{open_stream, reset, StreamProtocol, PROTO_PING, RESET_BAD_FRAME};
use crate::subsystem::BoxFuture;

/// Size of the frame the initiator sends.
pub const FRAME_LEN: usize = 16;
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 64;

/// The responder side.
#[derive(Debug, Clone, Copy, Default)]
pub struct PingProtocol;

impl StreamProtocol for PingProtocol {
    fn serve(
        &self,
        from: NodeId,
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let frame = match recv.read_to_end(MAX_FRAME).await {
                Ok(frame) => frame,
                Err(e) => {
                    tracing::debug!(peer = %from.fmt_short(), error = %e, "bad ping frame");
                    reset(&mut send, &mut recv, RESET_BAD_FRAME);
                    return;
                }
            };
            // A finished stream is still delivered after `send` is dropped.
            if send.write_all(&frame).await.is_ok() {
                let _ = send.finish();
            }
        })
    }
}

/// One answered ping, as `POST /v1/ping` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PongReport {
    /// The peer that answered.
    pub node_id: String,
    /// "direct" | "relayed" | "none": the path at the time of the pong.
    pub path: String,
    /// The real remote address of that path (direct paths).
    pub remote_addr: Option<String>,
    /// The relay's NodeId (relayed paths).
    #[serde(default)]
    pub via: Option<String>,
    /// Round-trip time in milliseconds (microsecond precision).
    pub rtt_ms: f64,
}

impl PongReport {
    /// The CLI's line: `pong from <id> via <path> <addr> in <ms> ms`, where
    /// `<addr>` is the relay's NodeId on a relayed path.
    pub fn line(&self) -> String {
        format!(
            "pong from {} via {} {} in {:.3} ms",
            self.node_id,
            self.path,
            self.remote_addr
                .as_deref()
                .or(self.via.as_deref())
                .unwrap_or("-"),
            self.rtt_ms
        )
    }
}

/// A ping failed.
#[derive(Debug, Error)]
pub enum PingError {
    /// Pinging ourselves is not meaningful.
    #[error("invalid-peer: {0} is this node")]
    SelfPing(String),
    /// No connection and no known address.
    #[error("not-connected: {0}")]
    NotConnected(String),
    /// Dialing the peer failed.
    #[error("{0}")]
    Dial(DialError),
    /// No pong in time.
    #[error("timeout: no pong from {peer} within {ms} ms")]
    Timeout {
        /// The peer.
        peer: String,
        /// The timeout.
        ms: u128,
    },
    /// The stream or connection failed.
    #[error("connection-lost: {0}")]
    ConnectionLost(String),
    /// The echo did not match.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl PingError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SelfPing(_) => "invalid-peer",
            Self::NotConnected(_) => "not-connected",
            Self::Dial(e) => e.kind.as_str(),
            Self::Timeout { .. } => "timeout",
            Self::ConnectionLost(_) => "connection-lost",
            Self::Protocol(_) => "protocol",
        }
    }

    /// The detail without the kind.
    pub fn detail(&self) -> String {
        let text = self.to_string();
        match text.split_once(": ") {
            Some((_, detail)) => detail.to_string(),
            None => text,
        }
    }
}

impl From<StreamError> for PingError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::NotConnected(d) => Self::NotConnected(format!(
                "no connection to {d} and no known address (pass --peer to run, or join with a ticket)"
            )),
            StreamError::ConnectionLost(d) | StreamError::Datagram(d) => Self::ConnectionLost(d),
        }
    }
}

/// Pings `peer` once. If it is not connected, dials it first: at
/// `known_addr` when given, else through a relay (any relay we use that
/// has `peer` as a client). The whole exchange, dial included, is bounded
/// by `timeout`.
pub async fn ping(
    transport: &Transport,
    peer: NodeId,
    known_addr: Option<SocketAddr>,
    timeout: Duration,
) -> Result<PongReport, PingError> {
    if peer == transport.node_id() {
        return Err(PingError::SelfPing(peer.to_string()));
    }
    let timed_out = || PingError::Timeout {
        peer: peer.to_string(),
        ms: timeout.as_millis(),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let connected = transport
        .peers()
        .iter()
        .any(|p| p.node_id == peer && p.state == PeerState::Connected);
    if !connected {
        let dial = transport.connect_best(peer, known_addr);
        match tokio::time::timeout_at(deadline, dial).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind == DialErrorKind::Timeout => return Err(timed_out()),
            Ok(Err(e)) if e.kind == DialErrorKind::NoRelay => {
                return Err(StreamError::NotConnected(peer.to_string()).into())
            }
            Ok(Err(e)) => return Err(PingError::Dial(e)),
            Err(_) => return Err(timed_out()),
        }
    }
    let rtt = tokio::time::timeout_at(deadline, exchange(transport, peer))
        .await
        .map_err(|_| timed_out())??;
    let info = transport.peers().into_iter().find(|p| p.node_id == peer);
    Ok(PongReport {
        node_id: peer.to_string(),
        path: info
            .as_ref()
            .map_or("none", |p| p.path.as_str())
            .to_string(),
        remote_addr: info
            .as_ref()
            .and_then(|p| p.remote_addr)
            .map(|a| a.to_string()),
        via: info.and_then(|p| p.via).map(|v| v.to_string()),
        rtt_ms: (rtt.as_secs_f64() * 1e6).round() / 1e3,
    })
}

/// One frame out, one echo back; returns the round-trip time.
async fn exchange(transport: &Transport, peer: NodeId) -> Result<Duration, PingError> {
    let frame: [u8; FRAME_LEN] = rand::random();
    let start = Instant::now();
    let (mut send, mut recv) = open_stream(transport, peer, PROTO_PING).await?;
    let lost = |e: &dyn std::fmt::Display| PingError::ConnectionLost(e.to_string());
    send.write_all(&frame).await.map_err(|e| lost(&e))?;
    send.finish().map_err(|e| lost(&e))?;
    let echo = recv.read_to_end(MAX_FRAME).await.map_err(|e| lost(&e))?;
    let rtt = start.elapsed();
    if echo != frame {
        return Err(PingError::Protocol(format!(
            "echo of {} bytes does not match the {FRAME_LEN}-byte ping",
            echo.len()
        )));
    }
    Ok(rtt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_line_format() {
        let pong = PongReport {
            node_id: "abc".into(),
            path: "direct".into(),
            remote_addr: Some("127.0.0.1:7420".into()),
            via: None,
            rtt_ms: 0.4567,
        };
        assert_eq!(
            pong.line(),
            "pong from abc via direct 127.0.0.1:7420 in 0.457 ms"
        );
        let relayed = PongReport {
            path: "relayed".into(),
            remote_addr: None,
            via: Some("rrr".into()),
            ..pong
        };
        assert_eq!(relayed.line(), "pong from abc via relayed rrr in 0.457 ms");
    }

    #[test]
    fn error_kinds_and_details() {
        let e = PingError::Timeout {
            peer: "p".into(),
            ms: 5,
        };
        assert_eq!(e.kind(), "timeout");
        assert_eq!(e.detail(), "no pong from p within 5 ms");
        let e = PingError::Dial(DialError::new(DialErrorKind::Refused, "closed"));
        assert_eq!(e.kind(), "refused");
        assert_eq!(e.detail(), "closed");
        let e: PingError = StreamError::NotConnected("x".into()).into();
        assert_eq!(e.kind(), "not-connected");
    }
}
