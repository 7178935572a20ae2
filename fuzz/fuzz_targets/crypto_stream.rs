//! Arbitrary CRYPTO stream bytes fed to a Noise responder session: framing,
//! Noise decryption and payload decoding must fail cleanly, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    relay_transport::noise::fuzz_responder(data);
});
