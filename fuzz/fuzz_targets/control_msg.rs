//! Control message decoding is total and bounded; whatever decodes must
//! re-encode and decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::control::ControlMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ControlMsg::decode(data) {
        let bytes = msg.encode().expect("a decoded message encodes");
        assert_eq!(ControlMsg::decode(&bytes), Ok(msg));
    }
});
