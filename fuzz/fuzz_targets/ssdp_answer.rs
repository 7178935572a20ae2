//! SSDP answer parsing is total, and a taken answer always points at the
//! host it came from.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use relay_transport::portmap::ssdp::parse_answer;

fuzz_target!(|data: &[u8]| {
    let src: SocketAddr = SocketAddr::from(([10, 1, 0, 1], 1900));
    if let Ok(url) = parse_answer(src, data) {
        assert_eq!(url.addr.ip(), src.ip());
        assert!(url.path.starts_with('/'));
    }
});
