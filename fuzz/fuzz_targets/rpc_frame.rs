//! nRPC call framing is total and bounded: any bytes decode to a frame
//! (call header, message, trailer), "need more", or a typed error; a
//! decoded header or trailer re-encodes to the same bytes; a trailer the
//! fast check takes for the plain `ok` decodes to exactly that. The service
//! spec of a `service-registration` is held to the same rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::wire::rpc::{
    decode_frame, Code, Frame, ServiceSpec, Trailer, FRAME_HEAD_LEN, OK_TRAILER,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((frame, used))) = decode_frame(data) {
        let mut out = Vec::new();
        match &frame {
            Frame::Header(h) => h.encode(&mut out).expect("a decoded header encodes"),
            Frame::Trailer(t) => t.encode(&mut out).expect("a decoded trailer encodes"),
            Frame::Message(_) => out.extend_from_slice(&data[..used]),
        }
        assert_eq!(&out[..], &data[..used]);
    }
    if Trailer::is_plain_ok(data) {
        let t = Trailer::decode(data).expect("the plain ok trailer decodes");
        assert_eq!(t, Trailer::new(Code::Ok, ""));
        assert_eq!(&OK_TRAILER[FRAME_HEAD_LEN..], data);
    }
    if let Ok(spec) = ServiceSpec::decode(data) {
        assert_eq!(spec.encode().expect("a decoded spec encodes"), data);
    }
});
