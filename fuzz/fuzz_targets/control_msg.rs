//! Control channel decoding is total and bounded: a bare control message
//! (datagram prefix 0x00) and a reliable control frame (prefix 0x02, a
//! sequenced message or an acknowledgement). Whatever decodes must
//! re-encode and decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::control::{ControlMsg, ReliableFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ControlMsg::decode(data) {
        let bytes = msg.encode().expect("a decoded message encodes");
        assert_eq!(ControlMsg::decode(&bytes), Ok(msg));
    }
    if let Ok(frame) = ReliableFrame::decode(data) {
        let dgram = frame.encode_datagram().expect("a decoded frame encodes");
        assert_eq!(ReliableFrame::decode(&dgram[1..]), Ok(frame));
    }
});
