//! `lab-udp`: a tiny UDP tool the NAT lab runs inside namespaces (via `ip
//! netns exec`) to observe what a NAT does.
//!
//! - `lab-udp echo BIND`: answers every datagram with
//!   `seen <source ip:port> <payload>`, so a sender behind a NAT learns its
//!   mapped address.
//! - `lab-udp agent BIND`: prints `recv <source> <payload>` for every
//!   datagram it receives and, for every stdin line `send <addr> <payload>`,
//!   sends `<payload>` to `<addr>` from the same socket. Exits when stdin
//!   closes.
//!
//! Both print `ready <local addr>` once bound. Payloads are one word.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["echo", bind] => echo(bind),
        ["agent", bind] => agent(bind),
        _ => Err("usage: lab-udp echo BIND | lab-udp agent BIND".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab-udp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bind(addr: &str) -> Result<UdpSocket, String> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let socket = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let local = socket
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    say(&format!("ready {local}"))?;
    Ok(socket)
}

fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

fn echo(addr: &str) -> Result<(), String> {
    let socket = bind(addr)?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .map_err(|e| format!("recv: {e}"))?;
        let payload = String::from_utf8_lossy(&buf[..n]);
        let reply = format!("seen {from} {payload}");
        // The reply may not reach a sender whose NAT filters us; that is
        // what the lab observes, not an error.
        let _ = socket.send_to(reply.as_bytes(), from);
    }
}

fn agent(addr: &str) -> Result<(), String> {
    let socket = bind(addr)?;
    let receiver = socket.try_clone().map_err(|e| format!("clone: {e}"))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = receiver.recv_from(&mut buf) {
            let payload = String::from_utf8_lossy(&buf[..n]).replace('\n', " ");
            if say(&format!("recv {from} {payload}")).is_err() {
                break;
            }
        }
    });
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("send"), Some(to), Some(payload)) => {
                let to: SocketAddr = to.parse().map_err(|e| format!("bad address {to}: {e}"))?;
                socket
                    .send_to(payload.as_bytes(), to)
                    .map_err(|e| format!("send to {to}: {e}"))?;
            }
            _ => return Err(format!("bad command: {line}")),
        }
    }
    Ok(())
}
