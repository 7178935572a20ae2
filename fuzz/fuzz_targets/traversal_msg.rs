//! TraversalMsg decoding is total; whatever decodes re-encodes and decodes
//! to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::traversal::TraversalMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = TraversalMsg::decode(data) {
        let bytes = msg.encode().expect("a decoded message encodes");
        assert_eq!(TraversalMsg::decode(&bytes), Ok(msg));
    }
});
