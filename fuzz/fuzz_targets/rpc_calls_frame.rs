//! The local API's `rpc-calls` frames are total: any bytes decode to a
//! frame or a typed error, and a decoded frame re-encodes to the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::rpc_calls::CallsFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = CallsFrame::decode(data) {
        let mut out = Vec::new();
        frame.encode(&mut out).expect("a decoded frame encodes");
        assert_eq!(&out[..], data);
    }
});
