//! The port-mapping state machine under arbitrary gateway datagrams, SSDP
//! answers, HTTP responses and clock steps: it never panics, and its
//! queues stay bounded by what it was fed.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use relay_transport::portmap::{Local, PortMapConfig, PortMapTransmit, PortMapper};

fuzz_target!(|data: &[u8]| {
    let local = Local {
        client_ip: Ipv4Addr::new(10, 1, 0, 2),
        internal_port: 7420,
        gateway: Some(SocketAddr::from(([10, 1, 0, 1], 5351))),
    };
    let mut m = PortMapper::new(PortMapConfig::default(), local, [7; 32]);
    let mut now = Instant::now();
    m.start(now);
    let mut last_http = 0u64;
    for chunk in data.chunks(64) {
        let (&op, body) = match chunk.split_first() {
            Some(x) => x,
            None => continue,
        };
        match op % 6 {
            0 => m.handle_gateway(now, body),
            1 => m.handle_ssdp(now, SocketAddr::from(([10, 1, 0, 1], 1900)), body),
            2 => m.handle_http(now, last_http, Ok(body)),
            3 => m.handle_gateway_unreachable(now),
            4 => {
                now += Duration::from_millis(u64::from(op) * 97);
                m.handle_timeout(now);
            }
            _ => m.release(now),
        }
        let mut sent = 0;
        while let Some(t) = m.poll_transmit() {
            if let PortMapTransmit::Http { id, .. } = t {
                last_http = id;
            }
            sent += 1;
            assert!(sent < 64);
        }
        while m.poll_event().is_some() {}
        let _ = m.status(now);
    }
});
