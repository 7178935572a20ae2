//! NodeId parsing is strict and total; whatever parses must print back to
//! the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::NodeId;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = text.parse::<NodeId>() {
        assert_eq!(id.to_string(), text);
    }
});
