//! Ledger entry decoding is total and bounded; whatever decodes must
//! re-encode to the same bytes (one entry has one encoding), and checking
//! its signature and hash must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::ledger::Entry;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = Entry::decode(data) {
        assert_eq!(entry.encode(), data);
        let _ = entry.verify_signature();
        let _ = entry.hash();
        let _ = entry.body().expect("a decoded entry's body decodes");
    }
});
