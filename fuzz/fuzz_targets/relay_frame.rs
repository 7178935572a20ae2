//! Relay frame parsing is total; whatever parses must emit back to the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::relay::RelayFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = RelayFrame::parse(data) {
        let _ = frame.peer_id();
        let mut out = Vec::new();
        assert!(frame.emit_to_vec(&mut out).is_ok());
        assert_eq!(out, data);
    }
});
