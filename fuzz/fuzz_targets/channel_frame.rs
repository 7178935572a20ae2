//! Channel frame decoding is total and bounded; whatever decodes must
//! re-encode and decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::channel::ChannelFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = ChannelFrame::decode(data) {
        let bytes = frame.encode().expect("a decoded frame encodes");
        assert_eq!(ChannelFrame::decode(&bytes), Ok(frame));
    }
});
