//! A channel registration's spec (from any member's ledger feed) decodes
//! totally; whatever decodes re-encodes and decodes to the same policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_channels::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = Policy::decode_spec(data) {
        assert_eq!(Policy::decode_spec(&policy.encode_spec()), Ok(policy));
    }
});
