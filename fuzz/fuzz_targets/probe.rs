//! Probe frame decoding (0x10 / 0x11) is total and canonical: whatever
//! parses emits back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::probe::ProbeFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = ProbeFrame::parse(data) {
        let bytes = frame.to_bytes().expect("a parsed frame emits");
        assert_eq!(&bytes[..], data);
    }
});
