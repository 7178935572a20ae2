//! The length-prefixed message decoder (`mux::framing`) never panics and
//! never yields a message over its bound, however the bytes are split:
//! the first byte picks the chunk size, the rest is the stream. Every
//! message it yields re-encodes to the bytes it consumed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use relay_transport::mux::framing::{encode, FrameDecoder};

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new(MAX);
    let mut consumed = BytesMut::new();
    for part in stream.chunks(chunk) {
        decoder.extend(part);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    assert!(message.len() <= MAX);
                    encode(&message, MAX, &mut consumed).unwrap();
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(e.kind(), "too-long");
                    return;
                }
            }
        }
    }
    assert_eq!(&consumed[..], &stream[..consumed.len()]);
    if decoder.finish().is_ok() {
        assert_eq!(consumed.len(), stream.len());
    } else {
        assert!(consumed.len() < stream.len());
    }
});
