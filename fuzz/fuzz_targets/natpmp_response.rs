//! NAT-PMP response decoding is total; whatever parses emits a response
//! that parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::natpmp::{NatPmpRequest, NatPmpResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = NatPmpResponse::parse(data) {
        assert_eq!(NatPmpResponse::parse(&response.emit()), Ok(response));
    }
    let _ = NatPmpRequest::parse(data);
});
