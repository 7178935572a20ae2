//! Ledger replication message decoding is total and bounded; whatever
//! decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::ledger::LedgerMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = LedgerMsg::decode(data) {
        assert_eq!(msg.encode(), data);
    }
});
