//! Relay frame parsing is total; whatever parses must emit back to the same
//! bytes, and checking its authentication (tag, replay window) must fail
//! cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::relay::RelayFrame;
use relay_transport::relay::auth::FrameKeys;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = RelayFrame::parse(data) {
        let _ = frame.peer_id();
        let mut out = Vec::new();
        assert!(frame.emit_to_vec(&mut out).is_ok());
        assert_eq!(out, data);
        let keys = FrameKeys::from_bytes([1; 16], [2; 16]);
        if let Some((_, mut opener)) = keys.relay() {
            assert!(opener.open(&frame).is_err(), "a forged tag never verifies");
        }
    }
});
