//! Raw UDP loopback one-way throughput: one thread blasts 1200-byte
//! datagrams at a receiver thread, which counts what arrives.
//!
//! An unthrottled sender overruns the receiver's socket buffer (default
//! rmem) and most of its work is thrown away, so by default the sender keeps
//! at most `window` datagrams in flight beyond what the receiver has counted
//! (a shared counter, no packets): the figure is then what the loopback path
//! can carry rather than how fast the kernel drops. `window = 0` blasts
//! without limit.
//!
//! Two I/O styles:
//! - [`Io::Plain`]: one `send`/`recv` syscall per datagram (std sockets);
//! - [`Io::Batched`]: the batching quinn itself uses, through `quinn-udp`:
//!   GSO sends of up to 10 datagrams (quinn's own cap) and GRO/`recvmmsg`
//!   receives. This is the fair ceiling for a quinn-based stack.

use std::io::IoSliceMut;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};

/// The datagram payload size.
pub const DATAGRAM: usize = 1200;
/// quinn's cap on datagrams per GSO send.
const GSO_SEGMENTS: usize = 10;
/// Receive buffers per batched `recv` call.
const RECV_BATCH: usize = 8;

/// The I/O style of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// One syscall per datagram.
    Plain,
    /// GSO sends and GRO/recvmmsg receives via quinn-udp.
    Batched,
}

/// What one raw UDP run saw.
#[derive(Debug, Clone, Copy)]
pub struct UdpResult {
    /// Datagrams the sender handed to the kernel.
    pub sent: u64,
    /// Datagrams the receiver got.
    pub received: u64,
    /// From the first to the last datagram received.
    pub elapsed: Duration,
}

impl UdpResult {
    /// Received payload megabytes (1e6) per second.
    pub fn received_mb_per_s(&self) -> f64 {
        (self.received * DATAGRAM as u64) as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }

    /// Fraction of sent datagrams lost, in percent.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        100.0 * (self.sent - self.received.min(self.sent)) as f64 / self.sent as f64
    }
}

/// How far the sender may run ahead of the receiver's count.
#[derive(Debug, Clone)]
struct Window {
    limit: u64,
    received: Arc<AtomicU64>,
}

impl Window {
    /// Waits until `sent + n` datagrams keep within the limit.
    fn admit(&self, sent: u64, n: u64) {
        if self.limit == 0 {
            return;
        }
        while sent + n > self.received.load(Ordering::Relaxed) + self.limit {
            std::thread::yield_now();
        }
    }
}

/// Sends `datagrams` datagrams one way over loopback, at most `window`
/// ahead of the receiver (0: no limit).
pub fn run(io: Io, datagrams: u64, window: u64) -> UdpResult {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let receiver = UdpSocket::bind(loopback).unwrap();
    let receiver_addr = receiver.local_addr().unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let window = Window {
        limit: window,
        received: Arc::new(AtomicU64::new(0)),
    };

    let sender_done = done.clone();
    let sender_window = window.clone();
    let sender = std::thread::spawn(move || {
        let socket = UdpSocket::bind(loopback).unwrap();
        socket.connect(receiver_addr).unwrap();
        let sent = match io {
            Io::Plain => send_plain(&socket, datagrams, &sender_window),
            Io::Batched => send_batched(&socket, receiver_addr, datagrams, &sender_window),
        };
        sender_done.store(true, Ordering::SeqCst);
        sent
    });

    let (received, elapsed) = match io {
        Io::Plain => recv_plain(&receiver, datagrams, &done, &window.received),
        Io::Batched => recv_batched(&receiver, datagrams, &done, &window.received),
    };
    let sent = sender.join().unwrap();
    UdpResult {
        sent,
        received,
        elapsed,
    }
}

fn send_plain(socket: &UdpSocket, datagrams: u64, window: &Window) -> u64 {
    let buf = [0x5au8; DATAGRAM];
    let mut sent = 0u64;
    while sent < datagrams {
        window.admit(sent, 1);
        // A failed send drops the datagram, as a full kernel queue would.
        let _ = socket.send(&buf);
        sent += 1;
    }
    sent
}

fn send_batched(
    socket: &UdpSocket,
    destination: SocketAddr,
    datagrams: u64,
    window: &Window,
) -> u64 {
    let state = UdpSocketState::new(UdpSockRef::from(socket)).unwrap();
    let segments = state.max_gso_segments().clamp(1, GSO_SEGMENTS);
    let buf = vec![0x5au8; DATAGRAM * segments];
    let mut sent = 0u64;
    while sent < datagrams {
        let n = (datagrams - sent).min(segments as u64) as usize;
        window.admit(sent, n as u64);
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: &buf[..n * DATAGRAM],
            segment_size: (n > 1).then_some(DATAGRAM),
            src_ip: None,
        };
        // A failed send drops the batch, as a full kernel queue would.
        let _ = state.send(UdpSockRef::from(socket), &transmit);
        sent += n as u64;
    }
    sent
}

/// Counts until every datagram arrived or the sender is done and the
/// socket stays quiet for the read timeout. Returns (count, first..last).
fn recv_plain(
    socket: &UdpSocket,
    datagrams: u64,
    done: &AtomicBool,
    counter: &AtomicU64,
) -> (u64, Duration) {
    let mut buf = [0u8; 2048];
    let mut clock = Clock::default();
    while clock.received < datagrams {
        match socket.recv(&mut buf) {
            Ok(_) => {
                clock.got(1);
                counter.store(clock.received, Ordering::Relaxed);
            }
            Err(_) if done.load(Ordering::SeqCst) => break,
            Err(_) => continue,
        }
    }
    (clock.received, clock.elapsed())
}

fn recv_batched(
    socket: &UdpSocket,
    datagrams: u64,
    done: &AtomicBool,
    counter: &AtomicU64,
) -> (u64, Duration) {
    let state = UdpSocketState::new(UdpSockRef::from(socket)).unwrap();
    let per_buf = state.gro_segments().max(1) * 1500;
    let mut storage = vec![0u8; per_buf * RECV_BATCH];
    let mut meta = [RecvMeta::default(); RECV_BATCH];
    let mut clock = Clock::default();
    while clock.received < datagrams {
        let mut bufs: Vec<IoSliceMut<'_>> =
            storage.chunks_mut(per_buf).map(IoSliceMut::new).collect();
        match state.recv(UdpSockRef::from(socket), &mut bufs, &mut meta) {
            Ok(n) => {
                let count: usize = meta[..n]
                    .iter()
                    .map(|m| m.len.div_ceil(m.stride.max(1)))
                    .sum();
                clock.got(count as u64);
                counter.store(clock.received, Ordering::Relaxed);
            }
            Err(_) if done.load(Ordering::SeqCst) => break,
            Err(_) => continue,
        }
    }
    (clock.received, clock.elapsed())
}

/// Receive count and the times of the first and last arrival.
#[derive(Default)]
struct Clock {
    received: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Clock {
    fn got(&mut self, n: u64) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.received += n;
    }

    fn elapsed(&self) -> Duration {
        match (self.first, self.last) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        }
    }
}
