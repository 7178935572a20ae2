//! Channel frame decoding is total and bounded; whatever decodes must
//! re-encode and decode to the same frame, and decoding from a shared
//! buffer (payloads as slices of it) gives the same result as copying.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::channel::ChannelFrame;

fuzz_target!(|data: &[u8]| {
    let shared = ChannelFrame::decode_shared(&bytes::Bytes::copy_from_slice(data));
    assert_eq!(shared, ChannelFrame::decode(data));
    if let Ok(frame) = ChannelFrame::decode(data) {
        let bytes = frame.encode().expect("a decoded frame encodes");
        assert_eq!(ChannelFrame::decode(&bytes), Ok(frame));
    }
});
