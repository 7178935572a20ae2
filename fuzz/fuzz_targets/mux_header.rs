//! The mux's protocol-id header is total on datagrams: whatever splits must
//! frame back to the same bytes, and anything shorter than the header is a
//! typed error.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use relay_transport::mux::{frame_datagram, split_datagram, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    match split_datagram(&bytes) {
        Ok((id, payload)) => {
            assert_eq!(frame_datagram(id, &payload), bytes);
            assert_eq!(&id.to_header()[..], &data[..HEADER_LEN]);
        }
        Err(e) => {
            assert!(data.len() < HEADER_LEN);
            assert_eq!(e.kind(), "bad-header");
        }
    }
});
