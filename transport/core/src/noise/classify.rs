//! Maps a failed connection attempt to a stable [`DialErrorKind`].

use quinn_proto::ConnectionError;
use quinn_proto::TransportErrorCode;

use super::{ALERT_MODE_MISMATCH, ALERT_MSG1_REJECTED, ALERT_MSG2_REJECTED};
use crate::DialErrorKind;

/// The stable kind of a connection failure.
///
/// - the responder rejected message 1 → `PeerKeyMismatch` (we dialed a key
///   it does not hold);
/// - we rejected message 2, or either side saw the other run with / without
///   a network key → `NetworkKeyMismatch`;
/// - version negotiation failed → `VersionMismatch`; idle timeout →
///   `Timeout`; any other close by the peer → `Refused`; our own endpoint
///   or connection closed → `EndpointClosed`; anything else → `Transport`.
pub fn classify_connect_error(e: &ConnectionError) -> DialErrorKind {
    let msg1 = TransportErrorCode::crypto(ALERT_MSG1_REJECTED);
    let msg2 = TransportErrorCode::crypto(ALERT_MSG2_REJECTED);
    let mode = TransportErrorCode::crypto(ALERT_MODE_MISMATCH);
    match e {
        ConnectionError::ConnectionClosed(close) if close.error_code == msg1 => {
            DialErrorKind::PeerKeyMismatch
        }
        ConnectionError::ConnectionClosed(close) if close.error_code == mode => {
            DialErrorKind::NetworkKeyMismatch
        }
        ConnectionError::TransportError(t) if t.code == msg2 || t.code == mode => {
            DialErrorKind::NetworkKeyMismatch
        }
        ConnectionError::VersionMismatch => DialErrorKind::VersionMismatch,
        ConnectionError::TimedOut => DialErrorKind::Timeout,
        ConnectionError::ConnectionClosed(_)
        | ConnectionError::ApplicationClosed(_)
        | ConnectionError::Reset => DialErrorKind::Refused,
        ConnectionError::LocallyClosed => DialErrorKind::EndpointClosed,
        ConnectionError::TransportError(_) | ConnectionError::CidsExhausted => {
            DialErrorKind::Transport
        }
    }
}

/// The stable kind of a failed *inbound* handshake, as the responder sees
/// it, or `None` when it is no handshake failure (a timeout, a close by
/// either side for another reason).
///
/// - we could not read message 1 (the initiator dialed a key we do not
///   hold, or claims another NodeId) → `PeerKeyMismatch`;
/// - the initiator could not read our message 2 (different network key),
///   or one side runs with a network key and the other without →
///   `NetworkKeyMismatch`.
pub fn classify_inbound_error(e: &ConnectionError) -> Option<DialErrorKind> {
    let msg1 = TransportErrorCode::crypto(ALERT_MSG1_REJECTED);
    let msg2 = TransportErrorCode::crypto(ALERT_MSG2_REJECTED);
    let mode = TransportErrorCode::crypto(ALERT_MODE_MISMATCH);
    match e {
        ConnectionError::TransportError(t) if t.code == msg1 => {
            Some(DialErrorKind::PeerKeyMismatch)
        }
        ConnectionError::TransportError(t) if t.code == mode => {
            Some(DialErrorKind::NetworkKeyMismatch)
        }
        ConnectionError::ConnectionClosed(c) if c.error_code == msg2 || c.error_code == mode => {
            Some(DialErrorKind::NetworkKeyMismatch)
        }
        _ => None,
    }
}

/// Whether the failure was detected by the peer (its close names the
/// alert). Failures we detect ourselves are already counted by our Noise
/// session; these are not.
pub fn failed_remotely(e: &ConnectionError) -> bool {
    matches!(e, ConnectionError::ConnectionClosed(_))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use quinn_proto::TransportError;

    fn closed(code: TransportErrorCode) -> ConnectionError {
        ConnectionError::ConnectionClosed(quinn_proto::ConnectionClose {
            error_code: code,
            frame_type: None,
            reason: bytes::Bytes::new(),
        })
    }

    fn local(code: TransportErrorCode) -> ConnectionError {
        ConnectionError::TransportError(TransportError {
            code,
            frame: None,
            reason: String::new(),
        })
    }

    #[test]
    fn inbound_kinds() {
        let c = TransportErrorCode::crypto;
        assert_eq!(
            classify_inbound_error(&local(c(ALERT_MSG1_REJECTED))),
            Some(DialErrorKind::PeerKeyMismatch)
        );
        assert_eq!(
            classify_inbound_error(&closed(c(ALERT_MSG2_REJECTED))),
            Some(DialErrorKind::NetworkKeyMismatch)
        );
        assert_eq!(
            classify_inbound_error(&local(c(ALERT_MODE_MISMATCH))),
            Some(DialErrorKind::NetworkKeyMismatch)
        );
        assert_eq!(
            classify_inbound_error(&closed(c(ALERT_MODE_MISMATCH))),
            Some(DialErrorKind::NetworkKeyMismatch)
        );
        assert_eq!(classify_inbound_error(&ConnectionError::TimedOut), None);
        assert_eq!(
            classify_inbound_error(&closed(TransportErrorCode::PROTOCOL_VIOLATION)),
            None
        );
        assert!(failed_remotely(&closed(c(ALERT_MSG2_REJECTED))));
        assert!(!failed_remotely(&local(c(ALERT_MSG1_REJECTED))));
    }

    #[test]
    fn kinds() {
        let c = TransportErrorCode::crypto;
        assert_eq!(
            classify_connect_error(&closed(c(ALERT_MSG1_REJECTED))),
            DialErrorKind::PeerKeyMismatch
        );
        assert_eq!(
            classify_connect_error(&local(c(ALERT_MSG2_REJECTED))),
            DialErrorKind::NetworkKeyMismatch
        );
        assert_eq!(
            classify_connect_error(&closed(c(ALERT_MODE_MISMATCH))),
            DialErrorKind::NetworkKeyMismatch
        );
        assert_eq!(
            classify_connect_error(&closed(TransportErrorCode::PROTOCOL_VIOLATION)),
            DialErrorKind::Refused
        );
        assert_eq!(
            classify_connect_error(&local(TransportErrorCode::PROTOCOL_VIOLATION)),
            DialErrorKind::Transport
        );
        assert_eq!(
            classify_connect_error(&ConnectionError::VersionMismatch),
            DialErrorKind::VersionMismatch
        );
        assert_eq!(
            classify_connect_error(&ConnectionError::TimedOut),
            DialErrorKind::Timeout
        );
        assert_eq!(
            classify_connect_error(&ConnectionError::LocallyClosed),
            DialErrorKind::EndpointClosed
        );
    }
}
