//! Token decoding (the `rnk1` text form and the binary form under it) is
//! total; whatever decodes must re-encode to the same bytes and text, and
//! checking it must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::token::{check, NoRevocations, TokenChain};

fuzz_target!(|data: &[u8]| {
    if let Ok(chain) = TokenChain::decode(data) {
        assert_eq!(chain.encode(), data);
        assert_eq!(TokenChain::from_text(&chain.to_text()), Ok(chain.clone()));
        let _ = check(&chain, 0, &NoRevocations);
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(chain) = TokenChain::from_text(&text) {
        assert_eq!(chain.to_text(), text);
    }
});
