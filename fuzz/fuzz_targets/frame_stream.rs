//! The local API's frame decoder is total for any byte stream split at any
//! point; every frame it returns re-encodes to the bytes it consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::frame_stream::{encode_frame, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split).min(rest.len());
    let (a, b) = rest.split_at(cut);
    let mut dec = FrameDecoder::new(4096);
    let mut consumed = Vec::new();
    for part in [a, b] {
        dec.push(part);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= 4096);
                    assert!(encode_frame(&frame, &mut consumed).is_ok());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(&consumed[..], &rest[..consumed.len()]);
});
