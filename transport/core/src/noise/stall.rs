//! A client session that starts handshakes it never completes: its
//! message 1 frame announces a length and carries only part of it, so the
//! responder waits for the rest until its handshake times out. This is
//! what a half-open handshake flood sends; tests and benchmarks use it to
//! show the responder's admission control. It costs no Noise operation, so
//! a test can send hundreds per second. It answers Retry (as an attacker
//! at a real address would) and nothing else.

use std::any::Any;

use quinn_proto::crypto::{
    ExportKeyingMaterialError, HeaderKey, KeyPair, Keys, PacketKey, Session,
};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectionId, Side, TransportError};

use super::{keys, retry};

/// Length the stalled frame announces.
const ANNOUNCED: u16 = 200;
/// Bytes of it actually sent.
const SENT: usize = 60;

/// See the module docs.
pub(crate) struct StalledSession {
    version: u32,
    written: bool,
}

impl StalledSession {
    pub(crate) fn new(version: u32) -> Self {
        Self {
            version,
            written: false,
        }
    }
}

impl Session for StalledSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        keys::initial_keys(self.version, dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        None
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        None
    }

    fn early_crypto(&self) -> Option<(Box<dyn HeaderKey>, Box<dyn PacketKey>)> {
        None
    }

    fn early_data_accepted(&self) -> Option<bool> {
        Some(false)
    }

    fn is_handshaking(&self) -> bool {
        true
    }

    fn read_handshake(&mut self, _buf: &[u8]) -> Result<bool, TransportError> {
        Ok(false)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        Ok(None)
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        if !self.written {
            self.written = true;
            // Mode byte 0x01 (IK), the announced length, then too little.
            buf.push(0x01);
            buf.extend_from_slice(&ANNOUNCED.to_be_bytes());
            buf.extend(std::iter::repeat_n(0x5a, SENT));
        }
        None
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        None
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        retry::is_valid_retry(self.version, orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        _output: &mut [u8],
        _label: &[u8],
        _context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        Err(ExportKeyingMaterialError)
    }
}
