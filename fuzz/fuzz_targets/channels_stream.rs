//! The local API's `channels` stream frames are total: any bytes decode to
//! a frame or a typed error, and a decoded frame re-encodes to the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::channels_stream::StreamFrame;

fuzz_target!(|data: &[u8]| {
    match StreamFrame::decode(data) {
        Ok(frame) => {
            let mut out = Vec::new();
            frame.encode(&mut out);
            assert_eq!(&out[..], data);
        }
        Err(e) => {
            // Displayed as `kind: detail`.
            assert!(e.to_string().starts_with(e.kind()));
        }
    }
});
