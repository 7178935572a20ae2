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
    build_state, decode_payload, encode_frame, encode_payload, Frame, FrameReader,
    HandshakePayload, Mode, PayloadKind, MAX_NOISE_MSG,
};
use super::keys::{self, derive_secret, PacketSuite, SpaceSecrets};
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

/// Why an initiator could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// snow refused the setup or message 1.
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
    /// Message 1 does not fit a frame.
    #[error("{0}")]
    Frame(#[from] super::handshake::FrameError),
    /// Handshake key derivation failed.
    #[error("keys: handshake key derivation failed")]
    Keys,
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
    /// The 1-RTT packet suite (ChaCha20-Poly1305 until negotiated).
    suite: PacketSuite,
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
    ) -> Result<Self, StartError> {
        let mut state = build_state(&config, version, Some(&peer.to_x25519_public()))?;
        let payload = encode_payload(
            Some(&config.secret_key.node_id()),
            offered_suites(&config),
            params,
        );
        let mut msg = vec![0u8; message_capacity(payload.len())];
        let n = state.write_message(&payload, &mut msg)?;
        msg.truncate(n);
        let mut bytes = Vec::with_capacity(n + 3);
        encode_frame(Mode::of(config.network_key.as_ref()), &msg, &mut bytes)?;
        let keys = handshake_secrets(&mut state)
            .and_then(|s| s.keys(Side::Client, None))
            .map_err(|_| StartError::Keys)?;
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
            suite: PacketSuite::ChaCha20Poly1305,
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

    /// Reads one handshake message: checks the peer runs our mode, decrypts
    /// it (a failure is message 1's or message 2's alert) and decodes the
    /// payload.
    fn read_frame(
        &mut self,
        state: &mut HandshakeState,
        frame: &Frame,
        kind: PayloadKind,
    ) -> Result<HandshakePayload, TransportError> {
        let (peer, message, alert) = match kind {
            PayloadKind::Initiator => ("initiator", "message 1", ALERT_MSG1_REJECTED),
            PayloadKind::Responder => {
                ("responder", "message 2 (network key?)", ALERT_MSG2_REJECTED)
            }
        };
        let ours = Mode::of(self.config.network_key.as_ref());
        if frame.mode != ours {
            let detail = format!("{peer} runs {:?}, we run {ours:?}", frame.mode);
            return Err(self.crypto_alert(ALERT_MODE_MISMATCH, &detail));
        }
        let mut payload = vec![0u8; frame.msg.len()];
        let n = match state.read_message(&frame.msg, &mut payload) {
            Ok(n) => n,
            Err(e) => {
                let detail = format!("cannot read {message}: {e}");
                return Err(self.crypto_alert(alert, &detail));
            }
        };
        decode_payload(kind, payload.get(..n).unwrap_or(&[]))
            .map_err(|e| self.fail(TransportErrorCode::PROTOCOL_VIOLATION, &e.to_string()))
    }

    /// Server: handles message 1 and queues both hand-overs.
    fn on_msg1(&mut self, frame: Frame) -> Result<(), TransportError> {
        let Some(mut state) = self.state.take() else {
            return Err(self.internal("responder state unavailable"));
        };
        let ours = Mode::of(self.config.network_key.as_ref());
        let decoded = self.read_frame(&mut state, &frame, PayloadKind::Initiator)?;
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

        self.suite = choose_suite(decoded.suites, offered_suites(&self.config));
        let reply = encode_payload(None, self.suite.bit(), &self.own_params);
        let mut msg = vec![0u8; message_capacity(reply.len())];
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
        let decoded = self.read_frame(&mut state, &frame, PayloadKind::Responder)?;
        let offered = offered_suites(&self.config);
        match PacketSuite::from_bit(decoded.suites).filter(|s| s.bit() & offered != 0) {
            Some(suite) => self.suite = suite,
            None => {
                let detail = format!("payload: responder chose suites {:#04x}", decoded.suites);
                return Err(self.fail(TransportErrorCode::PROTOCOL_VIOLATION, &detail));
            }
        }
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
            suite: self.suite,
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

/// The packet suites we accept for 1-RTT, as payload bits:
/// ChaCha20-Poly1305 always, AES-256-GCM when the config allows it.
fn offered_suites(config: &NoiseConfig) -> u8 {
    let aes = if config.aes_gcm {
        PacketSuite::Aes256Gcm.bit()
    } else {
        0
    };
    PacketSuite::ChaCha20Poly1305.bit() | aes
}

/// The responder's pick: AES-256-GCM when both sides offer it, else
/// ChaCha20-Poly1305 (which every initiator offers; one that offers
/// neither still gets it and fails to talk, no worse than any mismatch).
fn choose_suite(theirs: u8, ours: u8) -> PacketSuite {
    let aes = PacketSuite::Aes256Gcm.bit();
    if theirs & ours & aes != 0 {
        PacketSuite::Aes256Gcm
    } else {
        PacketSuite::ChaCha20Poly1305
    }
}

/// Room for a Noise message carrying `payload`: the payload plus the IK
/// tokens (ephemeral 32, encrypted static 48, tags 16 each), capped at the
/// Noise maximum. Sized to the content so no peer makes us allocate more.
fn message_capacity(payload: usize) -> usize {
    payload.saturating_add(128).min(MAX_NOISE_MSG)
}

/// Handshake-space secrets from the Noise state after message 1.
fn handshake_secrets(state: &mut HandshakeState) -> Result<SpaceSecrets, ring::error::Unspecified> {
    let (k1, k2) = state.dangerously_get_raw_split();
    let hash = state.get_handshake_hash().to_vec();
    Ok(SpaceSecrets {
        client: derive_secret(&hash, &k1, LABEL_HS_CLIENT)?,
        server: derive_secret(&hash, &k2, LABEL_HS_SERVER)?,
        suite: PacketSuite::ChaCha20Poly1305,
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

/// Fuzzing hook: feeds arbitrary CRYPTO stream bytes (split in two reads at
/// a point chosen by the first byte) to a fresh responder, then drains what
/// it would hand to quinn. Must never panic.
#[doc(hidden)]
pub fn fuzz_responder(data: &[u8]) {
    let config = Arc::new(NoiseConfig::new(
        relay_proto::SecretKey::from_bytes(&[7; 32]),
        None,
    ));
    let Ok(params) = TransportParameters::read(Side::Client, &mut &[][..]) else {
        return;
    };
    let mut session = NoiseSession::server(config, super::QUIC_VERSION, &params);
    let cut = data.first().map_or(0, |&b| usize::from(b).min(data.len()));
    let (a, b) = data.split_at(cut);
    for part in [a, b] {
        if session.read_handshake(part).is_err() {
            break;
        }
    }
    let _ = session.transport_parameters();
    let _ = session.peer_identity();
    while session.write_handshake(&mut Vec::new()).is_some() {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use bytes::BytesMut;
    use relay_proto::{NetworkKey, SecretKey};

    use super::*;
    use crate::noise::QUIC_VERSION;

    fn params() -> TransportParameters {
        TransportParameters::read(Side::Server, &mut &[][..]).unwrap()
    }

    fn cfg(network_key: Option<NetworkKey>) -> Arc<NoiseConfig> {
        Arc::new(NoiseConfig::new(SecretKey::generate(), network_key))
    }

    /// `a` seals, `b` opens.
    fn interop(a: &dyn PacketKey, b: &dyn PacketKey) -> bool {
        let header = [0x40u8, 1, 2, 3];
        let mut buf = header.to_vec();
        buf.extend_from_slice(b"noise in quic");
        buf.extend_from_slice(&[0; 16]);
        a.encrypt(3, &mut buf, header.len());
        let mut body = BytesMut::from(&buf[header.len()..]);
        b.decrypt(3, &header, &mut body).is_ok() && &body[..] == b"noise in quic"
    }

    struct Done {
        client: NoiseSession,
        server: NoiseSession,
        client_1rtt: Keys,
        server_1rtt: Keys,
    }

    fn handshake(ccfg: Arc<NoiseConfig>, scfg: Arc<NoiseConfig>) -> Done {
        let server_id = scfg.secret_key.node_id();
        let mut c = NoiseSession::client(ccfg, QUIC_VERSION, server_id, &params()).unwrap();
        let mut s = NoiseSession::server(scfg, QUIC_VERSION, &params());
        assert!(c.is_handshaking() && s.is_handshaking());

        let mut m1 = Vec::new();
        let c_hs = c.write_handshake(&mut m1).unwrap();
        assert!(!m1.is_empty());
        assert!(c.write_handshake(&mut Vec::new()).is_none());

        assert!(s.read_handshake(&m1).unwrap());
        let mut nothing = Vec::new();
        let s_hs = s.write_handshake(&mut nothing).unwrap();
        assert!(nothing.is_empty(), "server writes nothing into Initial");
        assert!(interop(&*c_hs.packet.local, &*s_hs.packet.remote));
        assert!(interop(&*s_hs.packet.local, &*c_hs.packet.remote));

        let mut m2 = Vec::new();
        let server_1rtt = s.write_handshake(&mut m2).unwrap();
        assert!(!m2.is_empty());
        assert!(!s.is_handshaking());
        assert!(s.write_handshake(&mut Vec::new()).is_none());

        assert!(c.read_handshake(&m2).unwrap());
        let mut nothing = Vec::new();
        let client_1rtt = c.write_handshake(&mut nothing).unwrap();
        assert!(nothing.is_empty());
        assert!(!c.is_handshaking());
        Done {
            client: c,
            server: s,
            client_1rtt,
            server_1rtt,
        }
    }

    #[test]
    fn hand_over_order_keys_and_updates() {
        let nk = NetworkKey::generate();
        let mut ccfg = NoiseConfig::new(SecretKey::generate(), Some(nk.clone()));
        ccfg.confidentiality_limit = Some(12_345);
        let client_id = ccfg.secret_key.node_id();
        let scfg = cfg(Some(nk));
        let server_id = scfg.secret_key.node_id();
        let ccfg = Arc::new(ccfg);
        let mut d = handshake(ccfg.clone(), scfg.clone());

        assert!(interop(
            &*d.client_1rtt.packet.local,
            &*d.server_1rtt.packet.remote
        ));
        assert!(interop(
            &*d.server_1rtt.packet.local,
            &*d.client_1rtt.packet.remote
        ));
        assert_eq!(d.client_1rtt.packet.local.confidentiality_limit(), 12_345);
        assert_eq!(
            *d.client
                .peer_identity()
                .unwrap()
                .downcast::<NodeId>()
                .unwrap(),
            server_id
        );
        assert_eq!(
            *d.server
                .peer_identity()
                .unwrap()
                .downcast::<NodeId>()
                .unwrap(),
            client_id
        );
        assert!(d.client.transport_parameters().unwrap().is_some());
        assert!(d.server.transport_parameters().unwrap().is_some());

        // Precompute at upgrade, then one update on each side.
        let c1 = d.client.next_1rtt_keys().unwrap();
        let s1 = d.server.next_1rtt_keys().unwrap();
        assert!(interop(&*c1.local, &*s1.remote));
        assert!(!interop(&*c1.local, &*d.server_1rtt.packet.remote));
        let c2 = d.client.next_1rtt_keys().unwrap();
        let s2 = d.server.next_1rtt_keys().unwrap();
        assert!(interop(&*s2.local, &*c2.remote));
        assert_eq!(ccfg.stats.key_updates.load(Ordering::Relaxed), 1);
        assert_eq!(scfg.stats.key_updates.load(Ordering::Relaxed), 1);
        assert_eq!(ccfg.stats.handshakes.load(Ordering::Relaxed), 1);
        assert_eq!(scfg.stats.handshakes.load(Ordering::Relaxed), 1);

        let (mut a, mut b) = ([0u8; 48], [0u8; 48]);
        d.client.export_keying_material(&mut a, b"l", b"c").unwrap();
        d.server.export_keying_material(&mut b, b"l", b"c").unwrap();
        assert_eq!(a, b);
        let mut too_long = vec![0u8; 255 * 32 + 1];
        assert!(d
            .client
            .export_keying_material(&mut too_long, b"l", b"c")
            .is_err());
    }

    #[test]
    fn aes_gcm_only_when_both_offer_it() {
        let nk = NetworkKey::generate();
        for (client_aes, server_aes) in [(true, true), (true, false), (false, true), (false, false)]
        {
            let mut ccfg = NoiseConfig::new(SecretKey::generate(), Some(nk.clone()));
            ccfg.aes_gcm = client_aes;
            let mut scfg = NoiseConfig::new(SecretKey::generate(), Some(nk.clone()));
            scfg.aes_gcm = server_aes;
            let d = handshake(Arc::new(ccfg), Arc::new(scfg));
            assert!(interop(
                &*d.client_1rtt.packet.local,
                &*d.server_1rtt.packet.remote
            ));
            // The suites' confidentiality limits tell them apart.
            let want = if client_aes && server_aes {
                1 << 23
            } else {
                1 << 62
            };
            for key in [&d.client_1rtt.packet.local, &d.server_1rtt.packet.local] {
                assert_eq!(
                    key.confidentiality_limit(),
                    want,
                    "{client_aes} {server_aes}"
                );
            }
        }
    }

    #[test]
    fn exporter_unavailable_before_handshake() {
        let scfg = cfg(None);
        let c = NoiseSession::client(
            cfg(None),
            QUIC_VERSION,
            scfg.secret_key.node_id(),
            &params(),
        )
        .unwrap();
        assert!(c.export_keying_material(&mut [0u8; 8], b"l", b"").is_err());
        assert!(c.peer_identity().is_none());
    }

    #[test]
    fn garbage_crypto_data_is_an_error_never_a_panic() {
        let inputs: Vec<Vec<u8>> = vec![
            vec![0],
            vec![1, 0, 0],
            vec![2, 0, 1, 9],
            vec![1, 0, 200].into_iter().chain([7u8; 200]).collect(),
            vec![1, 0xff, 0xff]
                .into_iter()
                .chain([0u8; 65535])
                .collect(),
            vec![9; 4],
        ];
        for input in inputs {
            let mut s = NoiseSession::server(cfg(None), QUIC_VERSION, &params());
            assert!(s.read_handshake(&input).is_err(), "{:?}", &input[..3]);
            assert!(s.write_handshake(&mut Vec::new()).is_none());
            assert!(s.read_handshake(&input).is_err());
        }
        // A client reads no message 2 from garbage either (a complete frame
        // of 48 junk bytes).
        let scfg = cfg(None);
        let mut c = NoiseSession::client(
            cfg(None),
            QUIC_VERSION,
            scfg.secret_key.node_id(),
            &params(),
        )
        .unwrap();
        c.write_handshake(&mut Vec::new()).unwrap();
        let err = c.read_handshake(&[1, 0, 48].repeat(17)).unwrap_err();
        assert_eq!(err.code, TransportErrorCode::crypto(ALERT_MSG2_REJECTED));
        assert!(c.peer_identity().is_none());
    }

    #[test]
    fn initiator_claiming_another_node_id_is_rejected() {
        let liar = cfg(None);
        let scfg = cfg(None);
        let mut state = build_state(
            &liar,
            QUIC_VERSION,
            Some(&scfg.secret_key.node_id().to_x25519_public()),
        )
        .unwrap();
        let claimed = SecretKey::generate().node_id();
        let payload = encode_payload(Some(&claimed), 0x01, &params());
        let mut msg = vec![0u8; MAX_NOISE_MSG];
        let n = state.write_message(&payload, &mut msg).unwrap();
        let mut bytes = Vec::new();
        encode_frame(Mode::Ik, &msg[..n], &mut bytes).unwrap();

        let mut s = NoiseSession::server(scfg.clone(), QUIC_VERSION, &params());
        let err = s.read_handshake(&bytes).unwrap_err();
        assert_eq!(err.code, TransportErrorCode::crypto(ALERT_MSG1_REJECTED));
        assert_eq!(err.reason, WIRE_REASON);
        assert!(s.peer_identity().is_none());
        assert_eq!(scfg.stats.handshake_failures.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn message1_split_across_reads() {
        let scfg = cfg(None);
        let mut c = NoiseSession::client(
            cfg(None),
            QUIC_VERSION,
            scfg.secret_key.node_id(),
            &params(),
        )
        .unwrap();
        let mut m1 = Vec::new();
        c.write_handshake(&mut m1).unwrap();
        let mut s = NoiseSession::server(scfg, QUIC_VERSION, &params());
        for b in &m1[..m1.len() - 1] {
            assert!(!s.read_handshake(std::slice::from_ref(b)).unwrap());
        }
        assert!(s.read_handshake(&m1[m1.len() - 1..]).unwrap());
    }
}
