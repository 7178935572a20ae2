//! Ticket decoding is total; whatever decodes must re-encode and decode to
//! the same ticket.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::Ticket;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(ticket) = Ticket::decode(&text) {
        assert_eq!(Ticket::decode(&ticket.encode()), Ok(ticket));
    }
});
