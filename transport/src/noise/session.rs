//! quinn's `crypto::Session` driven by a snow IK / IKpsk2 handshake.
//!
//! The key hand-over follows the only order quinn accepts (each side hands
//! over keys exactly twice):
//!
//! - client: writes message 1 into Initial and at once hands over the
//!   Handshake keys (from the Noise split after message 1); after reading
//!   message 2 it hands over the 1-RTT keys.
//! - server: after reading message 1 it hands over the same Handshake keys
//!   (writing nothing into Initial), then writes message 2 into the Handshake
//!   space with the 1-RTT keys, and stops handshaking.
//!
//! Everything each step needs is computed while reading (where errors can be
//! reported) and queued; `write_handshake` only pops the queue.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use quinn_proto::crypto::{
    ExportKeyingMaterialError, HeaderKey, KeyPair, Keys, PacketKey, Session,
};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectionId, Side, TransportError, TransportErrorCode};
use relay_proto::NodeId;
use ring::hkdf::{Prk, Salt, HKDF_SHA256};
use snow::HandshakeState;

use super::handshake::{
    build_state, decode_payload, encode_frame, encode_payload, Frame, FrameReader, Mode,
    PayloadKind, MAX_NOISE_MSG,
};
use super::keys::{self, derive_secret, SpaceSecrets};
use super::{retry, NoiseConfig, ALERT_MODE_MISMATCH, ALERT_MSG1_REJECTED, ALERT_MSG2_REJECTED};

const LABEL_HS_CLIENT: &[u8] = b"relay-node hs client";
const LABEL_HS_SERVER: &[u8] = b"relay-node hs server";
const LABEL_AP_CLIENT: &[u8] = b"relay-node ap client";
const LABEL_AP_SERVER: &[u8] = b"relay-node ap server";
const EXPORTER_SALT: &[u8] = b"relay-node exporter";

/// The vague reason that travels on the wire (Initial protection only).
const WIRE_REASON: &str = "handshake rejected";

/// What a Noise-in-QUIC connection negotiated, from
/// `quinn::Connection::handshake_data()`.
#[derive(Debug, Clone)]
pub struct NoiseHandshakeData {
    /// The authenticated peer.
    pub peer: NodeId,
}

/// One hand-over to quinn: CRYPTO bytes for the current space, then keys.
struct Step {
    bytes: Vec<u8>,
    keys: Keys,
}

/// Where the handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Client: message 1 sent, waiting for message 2.
    AwaitMsg2,
    /// Server: waiting for message 1.
    AwaitMsg1,
    /// Handshake finished (steps may still be queued).
    Done,
    /// Handshake failed; nothing more is accepted.
    Failed,
}

/// A Noise handshake plus the QUIC key schedule for one connection.
pub(crate) struct NoiseSession {
    side: Side,
    version: u32,
    config: Arc<NoiseConfig>,
    state: Option<HandshakeState>,
    phase: Phase,
    reader: FrameReader,
    steps: VecDeque<Step>,
    /// Our own transport parameters (server: sent in message 2).
    own_params: TransportParameters,
    peer_params: Option<TransportParameters>,
    /// The peer, once authenticated.
    peer: Option<NodeId>,
    /// Client: the NodeId we dialed.
    expected_peer: Option<NodeId>,
    /// The secrets of the next 1-RTT key phase.
    next_secrets: Option<SpaceSecrets>,
    next_calls: u64,
    exporter: Option<Prk>,
    handshake_data_reported: bool,
}

impl NoiseSession {
    /// Starts the initiator side and prepares message 1.
    pub(crate) fn client(
        config: Arc<NoiseConfig>,
        version: u32,
        peer: NodeId,
        params: &TransportParameters,
    ) -> Result<Self, snow::Error> {
        let mut state = build_state(&config, version, Some(&peer.to_x25519_public()))?;
        let payload = encode_payload(Some(&config.secret_key.node_id()), params);
        let mut msg = vec![0u8; MAX_NOISE_MSG];
        let n = state.write_message(&payload, &mut msg)?;
        msg.truncate(n);
        let mut bytes = Vec::with_capacity(n + 3);
        encode_frame(Mode::of(config.network_key.as_ref()), &msg, &mut bytes)
            .map_err(|_| snow::Error::Input)?;
        let secrets = handshake_secrets(&mut state).map_err(|_| snow::Error::Input)?;
        let keys = secrets
            .keys(Side::Client, None)
            .map_err(|_| snow::Error::Input)?;
        let mut session = Self::new(Side::Client, config, version, Some(state), *params);
        session.phase = Phase::AwaitMsg2;
        session.expected_peer = Some(peer);
        session.steps.push_back(Step { bytes, keys });
        Ok(session)
    }

    /// Starts the responder side. A snow setup failure is kept and reported
    /// when message 1 arrives.
    pub(crate) fn server(
        config: Arc<NoiseConfig>,
        version: u32,
        params: &TransportParameters,
    ) -> Self {
        let state = match build_state(&config, version, None) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "noise responder setup failed");
                None
            }
        };
        let mut session = Self::new(Side::Server, config, version, state, *params);
        session.phase = Phase::AwaitMsg1;
        session
    }

    fn new(
        side: Side,
        config: Arc<NoiseConfig>,
        version: u32,
        state: Option<HandshakeState>,
        own_params: TransportParameters,
    ) -> Self {
        Self {
            side,
            version,
            config,
            state,
            phase: Phase::Failed,
            reader: FrameReader::default(),
            steps: VecDeque::new(),
            own_params,
            peer_params: None,
            peer: None,
            expected_peer: None,
            next_secrets: None,
            next_calls: 0,
            exporter: None,
            handshake_data_reported: false,
        }
    }

    /// Records a failure: counted, detailed locally, vague on the wire.
    fn fail(&mut self, code: TransportErrorCode, detail: &str) -> TransportError {
        self.phase = Phase::Failed;
        self.state = None;
        self.config
            .stats
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(side = ?self.side, %detail, "noise handshake failed");
        TransportError {
            code,
            frame: None,
            reason: WIRE_REASON.into(),
        }
    }

    fn crypto_alert(&mut self, alert: u8, detail: &str) -> TransportError {
        self.fail(TransportErrorCode::crypto(alert), detail)
    }

    fn internal(&mut self, detail: &str) -> TransportError {
        self.fail(TransportErrorCode::INTERNAL_ERROR, detail)
    }

    /// Server: handles message 1 and queues both hand-overs.
    fn on_msg1(&mut self, frame: Frame) -> Result<(), TransportError> {
        let Some(mut state) = self.state.take() else {
            return Err(self.internal("responder state unavailable"));
        };
        let ours = Mode::of(self.config.network_key.as_ref());
        if frame.mode != ours {
            let detail = format!("initiator runs {:?}, we run {ours:?}", frame.mode);
            return Err(self.crypto_alert(ALERT_MODE_MISMATCH, &detail));
        }
        let mut payload = vec![0u8; MAX_NOISE_MSG];
        let n = match state.read_message(&frame.msg, &mut payload) {
            Ok(n) => n,
            Err(e) => {
                let detail = format!("cannot read message 1: {e}");
                return Err(self.crypto_alert(ALERT_MSG1_REJECTED, &detail));
            }
        };
        let decoded = match decode_payload(PayloadKind::Initiator, payload.get(..n).unwrap_or(&[]))
        {
            Ok(d) => d,
            Err(e) => {
                let detail = e.to_string();
                return Err(self.fail(TransportErrorCode::PROTOCOL_VIOLATION, &detail));
            }
        };
        let Some(claimed) = decoded.node_id else {
            return Err(self.internal("message 1 payload without node id"));
        };
        let static_matches = state
            .get_remote_static()
            .is_some_and(|rs| rs == claimed.to_x25519_public());
        if !static_matches {
            let detail = format!("initiator claims {claimed} but its static key differs");
            return Err(self.crypto_alert(ALERT_MSG1_REJECTED, &detail));
        }

        let hs_keys = match handshake_secrets(&mut state).and_then(|s| s.keys(Side::Server, None)) {
            Ok(k) => k,
            Err(_) => return Err(self.internal("handshake key derivation failed")),
        };

        let reply = encode_payload(None, &self.own_params);
        let mut msg = vec![0u8; MAX_NOISE_MSG];
        let n = match state.write_message(&reply, &mut msg) {
            Ok(n) => n,
            Err(e) => return Err(self.internal(&format!("cannot write message 2: {e}"))),
        };
        msg.truncate(n);
        let mut bytes = Vec::with_capacity(n + 3);
        if encode_frame(ours, &msg, &mut bytes).is_err() {
            return Err(self.internal("message 2 too long"));
        }
        let one_rtt = match self.finish(&mut state) {
            Ok(k) => k,
            Err(()) => return Err(self.internal("1-RTT key derivation failed")),
        };

        self.peer = Some(claimed);
        self.peer_params = Some(decoded.params);
        self.steps.push_back(Step {
            bytes: Vec::new(),
            keys: hs_keys,
        });
        self.steps.push_back(Step {
            bytes,
            keys: one_rtt,
        });
        Ok(())
    }

    /// Client: handles message 2 and queues the 1-RTT hand-over.
    fn on_msg2(&mut self, frame: Frame) -> Result<(), TransportError> {
        let Some(mut state) = self.state.take() else {
            return Err(self.internal("initiator state unavailable"));
        };
        let ours = Mode::of(self.config.network_key.as_ref());
        if frame.mode != ours {
            let detail = format!("responder runs {:?}, we run {ours:?}", frame.mode);
            return Err(self.crypto_alert(ALERT_MODE_MISMATCH, &detail));
        }
        let mut payload = vec![0u8; MAX_NOISE_MSG];
        let n = match state.read_message(&frame.msg, &mut payload) {
            Ok(n) => n,
            Err(e) => {
                let detail = format!("cannot read message 2 (network key?): {e}");
                return Err(self.crypto_alert(ALERT_MSG2_REJECTED, &detail));
            }
        };
        let decoded = match decode_payload(PayloadKind::Responder, payload.get(..n).unwrap_or(&[]))
        {
            Ok(d) => d,
            Err(e) => {
                let detail = e.to_string();
                return Err(self.fail(TransportErrorCode::PROTOCOL_VIOLATION, &detail));
            }
        };
        let one_rtt = match self.finish(&mut state) {
            Ok(k) => k,
            Err(()) => return Err(self.internal("1-RTT key derivation failed")),
        };
        self.peer = self.expected_peer;
        self.peer_params = Some(decoded.params);
        self.steps.push_back(Step {
            bytes: Vec::new(),
            keys: one_rtt,
        });
        Ok(())
    }

    /// After the last message: 1-RTT keys, next-phase secrets, exporter.
    fn finish(&mut self, state: &mut HandshakeState) -> Result<Keys, ()> {
        let (k1, k2) = state.dangerously_get_raw_split();
        let hash = state.get_handshake_hash().to_vec();
        let secrets = SpaceSecrets {
            client: derive_secret(&hash, &k1, LABEL_AP_CLIENT).map_err(|_| ())?,
            server: derive_secret(&hash, &k2, LABEL_AP_SERVER).map_err(|_| ())?,
        };
        let keys = secrets
            .keys(self.side, self.config.confidentiality_limit)
            .map_err(|_| ())?;
        self.next_secrets = Some(secrets.next().map_err(|_| ())?);
        self.exporter = Some(Salt::new(HKDF_SHA256, EXPORTER_SALT).extract(&hash));
        self.phase = Phase::Done;
        self.config.stats.handshakes.fetch_add(1, Ordering::Relaxed);
        Ok(keys)
    }
}

/// Handshake-space secrets from the Noise state after message 1.
fn handshake_secrets(state: &mut HandshakeState) -> Result<SpaceSecrets, ring::error::Unspecified> {
    let (k1, k2) = state.dangerously_get_raw_split();
    let hash = state.get_handshake_hash().to_vec();
    Ok(SpaceSecrets {
        client: derive_secret(&hash, &k1, LABEL_HS_CLIENT)?,
        server: derive_secret(&hash, &k2, LABEL_HS_SERVER)?,
    })
}

impl Session for NoiseSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        keys::initial_keys(self.version, dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        if !self.handshake_data_reported {
            return None;
        }
        let peer = self.peer?;
        Some(Box::new(NoiseHandshakeData { peer }))
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        self.peer.map(|p| Box::new(p) as Box<dyn Any>)
    }

    fn early_crypto(&self) -> Option<(Box<dyn HeaderKey>, Box<dyn PacketKey>)> {
        None
    }

    fn early_data_accepted(&self) -> Option<bool> {
        match self.side {
            Side::Client => Some(false),
            Side::Server => None,
        }
    }

    fn is_handshaking(&self) -> bool {
        !(self.phase == Phase::Done && self.steps.is_empty())
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        let frame = match self.reader.push(buf) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(false),
            Err(e) => {
                let detail = e.to_string();
                return Err(self.fail(TransportErrorCode::PROTOCOL_VIOLATION, &detail));
            }
        };
        match (self.side, self.phase) {
            (Side::Server, Phase::AwaitMsg1) => self.on_msg1(frame)?,
            (Side::Client, Phase::AwaitMsg2) => self.on_msg2(frame)?,
            _ => {
                return Err(self.fail(
                    TransportErrorCode::PROTOCOL_VIOLATION,
                    "handshake data in the wrong state",
                ))
            }
        }
        if self.handshake_data_reported {
            return Ok(false);
        }
        self.handshake_data_reported = true;
        Ok(true)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        Ok(self.peer_params)
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        let step = self.steps.pop_front()?;
        buf.extend_from_slice(&step.bytes);
        Some(step.keys)
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        let Some(current) = self.next_secrets.take() else {
            // Only reachable after a failed derivation: stay fail-closed
            // rather than let quinn see `None` during 1-RTT.
            return (self.phase == Phase::Done).then(keys::dead_packet_keys);
        };
        self.next_calls += 1;
        if self.next_calls > 1 {
            // The first call precomputes at the 1-RTT upgrade; every later
            // one is a key update.
            self.config
                .stats
                .key_updates
                .fetch_add(1, Ordering::Relaxed);
        }
        let keys = current.packet_keys(self.side, self.config.confidentiality_limit);
        match (keys, current.next()) {
            (Ok(keys), Ok(next)) => {
                self.next_secrets = Some(next);
                Some(keys)
            }
            _ => {
                tracing::error!("key update derivation failed; connection will stall");
                Some(keys::dead_packet_keys())
            }
        }
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        retry::is_valid_retry(self.version, orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        let prk = self.exporter.as_ref().ok_or(ExportKeyingMaterialError)?;
        let label_len = (label.len() as u64).to_be_bytes();
        let context_len = (context.len() as u64).to_be_bytes();
        keys::expand_into(prk, &[&label_len, label, &context_len, context], output)
            .map_err(|_| ExportKeyingMaterialError)
    }
}
