//! The Noise handshake payload decoder must be total: any bytes give a
//! payload or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_transport::noise::{decode_payload, PayloadKind};

fuzz_target!(|data: &[u8]| {
    let _ = decode_payload(PayloadKind::Initiator, data);
    let _ = decode_payload(PayloadKind::Responder, data);
});
