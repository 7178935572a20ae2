//! The reliable channel on simulated time: two cores joined by a link with
//! a fixed one-way delay and seeded random loss.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use relay_proto::wire::control::{ControlMsg, ReliableFrame, DATAGRAM_RELIABLE};
use relay_proto::wire::traversal::{NatType, TraversalMsg};

use super::*;

const ONE_WAY: Duration = Duration::from_millis(20);
const RTT: Duration = Duration::from_millis(40);

fn msg(i: u64) -> ControlMsg {
    ControlMsg::Traversal(TraversalMsg::ReachRequest {
        req: i,
        target: relay_proto::SecretKey::from_bytes(&[7; 32]).node_id(),
    })
}

fn req_of(m: &ControlMsg) -> u64 {
    match m {
        ControlMsg::Traversal(TraversalMsg::ReachRequest { req, .. }) => *req,
        other => panic!("unexpected {other:?}"),
    }
}

/// Datagram in flight: arrival time, to side (0 or 1), bytes (prefix
/// stripped).
type InFlight = (Instant, usize, Vec<u8>);

/// Which frames a side's next send loses.
type DropRule = (usize, Box<dyn Fn(&ReliableFrame) -> bool>);

/// Two channels and the link between them.
struct Link {
    now: Instant,
    sides: [Reliable; 2],
    wire: VecDeque<InFlight>,
    rng: StdRng,
    loss: f64,
    /// Drop the next datagrams matching this (side sending, predicate).
    drop_next: Vec<DropRule>,
    /// (time, message) delivered at side 1.
    delivered: Vec<(Instant, ControlMsg)>,
    sent_datagrams: usize,
}

impl Link {
    fn new(loss: f64, seed: u64) -> Self {
        Self {
            now: Instant::now(),
            sides: [Reliable::new(), Reliable::new()],
            wire: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            loss,
            drop_next: Vec::new(),
            delivered: Vec::new(),
            sent_datagrams: 0,
        }
    }

    fn send(&mut self, m: ControlMsg) {
        let now = self.now;
        self.sides[0].send(now, RTT, m).unwrap();
        self.flush();
    }

    /// Moves every datagram either side wants to send onto the wire.
    fn flush(&mut self) {
        for from in 0..2 {
            while let Some(d) = self.sides[from].poll_transmit() {
                assert_eq!(d[0], DATAGRAM_RELIABLE);
                self.sent_datagrams += 1;
                let frame = ReliableFrame::decode(&d[1..]).unwrap();
                if let Some(i) = self
                    .drop_next
                    .iter()
                    .position(|(side, f)| *side == from && f(&frame))
                {
                    drop(self.drop_next.remove(i));
                    continue;
                }
                if self.rng.gen_bool(self.loss) {
                    continue;
                }
                self.wire
                    .push_back((self.now + ONE_WAY, 1 - from, d[1..].to_vec()));
            }
        }
        while let Some(m) = self.sides[1].poll_message() {
            self.delivered.push((self.now, m));
        }
        assert!(self.sides[0].poll_message().is_none());
    }

    /// Advances to the next event (arrival or timeout); false when there
    /// is none.
    fn step(&mut self) -> bool {
        let arrival = self.wire.iter().map(|(t, _, _)| *t).min();
        let timeout = self.sides.iter().filter_map(|s| s.poll_timeout()).min();
        let Some(next) = [arrival, timeout].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        let mut later = VecDeque::new();
        while let Some((t, to, data)) = self.wire.pop_front() {
            if t <= now {
                self.sides[to].handle_frame(now, RTT, &data).unwrap();
            } else {
                later.push_back((t, to, data));
            }
        }
        self.wire = later;
        for side in &mut self.sides {
            side.handle_timeout(now, RTT);
        }
        self.flush();
        true
    }

    fn run(&mut self) {
        let mut steps = 0;
        while self.step() {
            steps += 1;
            assert!(steps < 1_000_000, "no quiescence");
        }
    }
}

#[test]
fn lossless_delivers_in_order_once_without_retransmission() {
    let mut link = Link::new(0.0, 1);
    let start = link.now;
    for i in 0..10 {
        link.send(msg(i));
    }
    link.run();
    let reqs: Vec<u64> = link.delivered.iter().map(|(_, m)| req_of(m)).collect();
    assert_eq!(reqs, (0..10).collect::<Vec<_>>());
    assert!(link.delivered.iter().all(|(t, _)| *t == start + ONE_WAY));
    assert_eq!(link.sides[0].stats().retransmits, 0);
    assert_eq!(link.sides[0].unacked(), 0);
    assert_eq!(link.sides[0].poll_timeout(), None);
    assert_eq!(link.sides[1].stats().delivered, 10);
}

#[test]
fn a_lost_message_costs_one_retransmission_timeout() {
    let mut link = Link::new(0.0, 1);
    let start = link.now;
    link.drop_next.push((
        0,
        Box::new(|f| matches!(f, ReliableFrame::Msg { seq: 0, .. })),
    ));
    link.send(msg(0));
    link.run();
    assert_eq!(link.delivered.len(), 1);
    let took = link.delivered[0].0 - start;
    assert_eq!(took, rto(RTT) + ONE_WAY);
    // About an RTT, never seconds.
    assert!(rto(RTT) < RTT * 2 && rto(RTT) >= RTT, "{:?}", rto(RTT));
    assert_eq!(link.sides[0].stats().retransmits, 1);
}

#[test]
fn a_lost_ack_costs_one_retransmission_and_no_duplicate_delivery() {
    let mut link = Link::new(0.0, 1);
    link.drop_next
        .push((1, Box::new(|f| matches!(f, ReliableFrame::Ack { .. }))));
    link.send(msg(0));
    link.run();
    assert_eq!(link.delivered.len(), 1);
    assert_eq!(link.sides[0].stats().retransmits, 1);
    assert_eq!(link.sides[1].stats().duplicates, 1);
    assert_eq!(link.sides[0].unacked(), 0);
}

#[test]
fn later_messages_wait_for_a_lost_one_then_arrive_in_order() {
    let mut link = Link::new(0.0, 1);
    let start = link.now;
    link.drop_next.push((
        0,
        Box::new(|f| matches!(f, ReliableFrame::Msg { seq: 1, .. })),
    ));
    for i in 0..4 {
        link.send(msg(i));
    }
    link.run();
    let reqs: Vec<u64> = link.delivered.iter().map(|(_, m)| req_of(m)).collect();
    assert_eq!(reqs, vec![0, 1, 2, 3]);
    assert_eq!(link.delivered[0].0, start + ONE_WAY);
    for (t, _) in &link.delivered[1..] {
        assert_eq!(*t, start + rto(RTT) + ONE_WAY);
    }
    // The held ones were acknowledged selectively: only seq 1 went again.
    assert_eq!(link.sides[0].stats().retransmits, 1);
}

#[test]
fn repeated_loss_backs_off_up_to_the_cap() {
    let mut r = Reliable::new();
    let t0 = Instant::now();
    r.send(t0, RTT, msg(0)).unwrap();
    assert!(r.poll_transmit().is_some());
    let mut now = t0;
    let mut gaps = Vec::new();
    for _ in 0..12 {
        let next = r.poll_timeout().unwrap();
        gaps.push(next - now);
        now = next;
        r.handle_timeout(now, RTT);
        assert!(r.poll_transmit().is_some());
        assert!(r.poll_transmit().is_none());
    }
    assert_eq!(gaps[0], rto(RTT));
    assert_eq!(gaps[1], rto(RTT) * 2);
    assert_eq!(gaps[2], rto(RTT) * 4);
    assert!(gaps.iter().all(|g| *g <= MAX_BACKOFF));
    assert_eq!(*gaps.last().unwrap(), MAX_BACKOFF);
    assert_eq!(r.stats().retransmits, 12);
}

#[test]
fn rto_has_a_floor_and_follows_the_rtt() {
    assert_eq!(rto(Duration::ZERO), MIN_RTO);
    assert_eq!(rto(Duration::from_micros(300)), MIN_RTO);
    assert_eq!(rto(Duration::from_millis(100)), Duration::from_millis(160));
    // A path slower than the backoff cap still backs off from its own
    // timeout, never below it.
    let slow = Duration::from_secs(3);
    assert_eq!(backoff(slow, 5), rto(slow));
}

#[test]
fn random_loss_everything_arrives_once_in_order_with_bounded_state() {
    for seed in 0..20 {
        let mut link = Link::new(0.2, seed);
        let mut sent = 0;
        // Bursts beyond the send window, then drain.
        while sent < 300 {
            while sent < 300 && link.sides[0].queue.len() < MAX_QUEUED {
                link.send(msg(sent));
                sent += 1;
            }
            for _ in 0..50 {
                if !link.step() {
                    break;
                }
                assert!(link.sides[1].held.len() as u64 <= ACK_BITMAP_LEN);
                let on_wire = link.sides[0]
                    .queue
                    .iter()
                    .filter(|o| o.deadline.is_some() && !o.acked)
                    .count() as u64;
                assert!(on_wire <= SEND_WINDOW);
            }
        }
        link.run();
        let reqs: Vec<u64> = link.delivered.iter().map(|(_, m)| req_of(m)).collect();
        assert_eq!(reqs, (0..300).collect::<Vec<_>>(), "seed {seed}");
        assert!(link.sides[0].stats().retransmits > 0, "seed {seed}");
        assert_eq!(link.sides[0].unacked(), 0);
        assert!(link.sides[1].held.is_empty());
    }
}

#[test]
fn five_percent_loss_costs_a_message_at_most_a_few_timeouts() {
    // A message sent alone (as control messages mostly are) arrives within
    // one RTO per loss it suffers; at 5% loss nearly all within one.
    let mut within_one = 0;
    for seed in 0..400 {
        let mut link = Link::new(0.05, seed);
        let start = link.now;
        link.send(msg(0));
        link.run();
        let took = link.delivered[0].0 - start;
        if took <= rto(RTT) + ONE_WAY {
            within_one += 1;
        }
        assert!(took < Duration::from_secs(1), "seed {seed}: {took:?}");
    }
    assert!(within_one >= 390, "{within_one} of 400 within one timeout");
}

#[test]
fn queue_is_bounded() {
    let mut r = Reliable::new();
    let now = Instant::now();
    for i in 0..MAX_QUEUED as u64 {
        r.send(now, RTT, msg(i)).unwrap();
    }
    assert_eq!(r.send(now, RTT, msg(0)), Err(ReliableError::QueueFull));
    // Only the window went out.
    let mut n = 0;
    while r.poll_transmit().is_some() {
        n += 1;
    }
    assert_eq!(n as u64, SEND_WINDOW);
    assert_eq!(
        ReliableError::QueueFull.to_string().split(':').next(),
        Some("control-queue-full")
    );
}

#[test]
fn frames_beyond_the_window_and_bogus_acks_change_nothing() {
    let mut r = Reliable::new();
    let now = Instant::now();
    let far = ReliableFrame::Msg {
        seq: ACK_BITMAP_LEN + 1,
        msg: msg(1),
    }
    .encode_datagram()
    .unwrap();
    r.handle_frame(now, RTT, &far[1..]).unwrap();
    assert!(r.held.is_empty());
    assert!(r.poll_message().is_none());
    assert_eq!(r.stats().invalid, 1);
    // It still says where it is.
    let ack = r.poll_transmit().unwrap();
    assert_eq!(
        ReliableFrame::decode(&ack[1..]).unwrap(),
        ReliableFrame::Ack { next: 0, above: 0 }
    );
    // The last one inside the window is held and acknowledged by bit.
    let edge = ReliableFrame::Msg {
        seq: ACK_BITMAP_LEN,
        msg: msg(1),
    }
    .encode_datagram()
    .unwrap();
    r.handle_frame(now, RTT, &edge[1..]).unwrap();
    let ack = r.poll_transmit().unwrap();
    assert_eq!(
        ReliableFrame::decode(&ack[1..]).unwrap(),
        ReliableFrame::Ack {
            next: 0,
            above: 1 << 63
        }
    );
    // An ack of messages never sent.
    r.send(now, RTT, msg(0)).unwrap();
    let bogus = ReliableFrame::Ack { next: 5, above: 0 }
        .encode_datagram()
        .unwrap();
    r.handle_frame(now, RTT, &bogus[1..]).unwrap();
    assert_eq!(r.unacked(), 1);
    assert_eq!(r.stats().invalid, 2);
    // Malformed frames are typed errors.
    assert!(r.handle_frame(now, RTT, &[0xff, 0xff]).is_err());
    assert!(r.handle_frame(now, RTT, &[]).is_err());
}

#[test]
fn nat_info_round_trips_through_the_channel() {
    let mut link = Link::new(0.0, 3);
    let m = ControlMsg::Traversal(TraversalMsg::NatInfo {
        nat: NatType::Symmetric,
    });
    link.send(m.clone());
    link.run();
    assert_eq!(link.delivered[0].1, m);
}
