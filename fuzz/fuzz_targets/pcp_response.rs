//! PCP response decoding is total; whatever parses emits a response that
//! parses back to the same value (options are not kept).
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::pcp::{MapRequest, PcpResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = PcpResponse::parse(data) {
        assert_eq!(PcpResponse::parse(&response.emit()), Ok(response));
    }
    if let Some(request) = MapRequest::parse(data) {
        assert_eq!(MapRequest::parse(&request.emit()), Some(request));
    }
});
