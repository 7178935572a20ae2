//! The owner with subscribers and publishers on simulated time: tokens
//! and their verdict cache, delivery, backpressure and gaps, queue groups,
//! history, expiry, revocation, refresh, throttling, rate limits.

use bytes::Bytes;
use relay_proto::wire::channel::{Backpressure, ChannelFrame, Reason, Start, TokenKind};
use relay_proto::NodeId;

use crate::policy::{History, Policy};
use crate::testutil::{gaps, node, seqs, Net};
use crate::{OwnerConfig, PubEvent, PublishError, SubEvent, SubscriptionConfig};

const CH: &str = "news/eu";

fn net(policy: Policy) -> Net {
    net_with(policy, OwnerConfig::default())
}

fn net_with(policy: Policy, config: OwnerConfig) -> Net {
    let mut n = Net::new(config);
    n.owner.create(CH, policy, 0).unwrap();
    n
}

fn gated() -> Policy {
    Policy {
        require_token: true,
        ..Policy::default()
    }
}

fn window(w: u32, mode: Backpressure) -> SubscriptionConfig {
    SubscriptionConfig {
        window: w,
        backpressure: mode,
        ..SubscriptionConfig::default()
    }
}

fn denied(events: &[SubEvent]) -> Option<Reason> {
    events.iter().find_map(|e| match e {
        SubEvent::Denied(r) | SubEvent::Ended(r) => Some(*r),
        _ => None,
    })
}

#[test]
fn token_required_denied_without_or_with_a_bad_token() {
    let mut n = net(gated());
    n.sub(2, 1, CH, "", SubscriptionConfig::default());
    assert_eq!(
        denied(&n.events(2, 1)),
        Some(Reason::Token(TokenKind::Required))
    );
    n.sub(2, 2, CH, "bad:scope", SubscriptionConfig::default());
    assert_eq!(
        denied(&n.events(2, 2)),
        Some(Reason::Token(TokenKind::Scope))
    );
    n.sub(2, 3, "other", "ok:1:0", SubscriptionConfig::default());
    assert_eq!(denied(&n.events(2, 3)), Some(Reason::NoSuchChannel));
    n.sub(2, 4, CH, "ok:1:0", SubscriptionConfig::default());
    assert_eq!(n.events(2, 4), vec![SubEvent::Accepted { reliable: true }]);
    // The same link number again (a resume after a reconnect the owner has
    // not seen) replaces the link: accepted, still one subscription.
    let subscribers = |n: &Net| n.owner.channels()[0].stats.subscribers;
    assert_eq!(subscribers(&n), 1);
    let resubscribe = |n: &mut Net, token: &[u8]| {
        n.owner.handle_frame(
            0,
            node(2),
            ChannelFrame::Subscribe {
                link: 4,
                name: CH.into(),
                token: token.to_vec(),
                queue: None,
                start: Start::Live,
                credit: 1,
                backpressure: Backpressure::Block,
            },
        );
        n.owner.poll_transmit().map(|t| t.frame)
    };
    assert!(matches!(
        resubscribe(&mut n, b"ok:1:0"),
        Some(ChannelFrame::Accepted { link: 4, .. })
    ));
    assert_eq!(subscribers(&n), 1);
    // A link number taken again with a bad token is refused as any other
    // (and the old link is gone).
    assert!(matches!(
        resubscribe(&mut n, b"bad:scope"),
        Some(ChannelFrame::Denied {
            link: 4,
            reason: Reason::Token(TokenKind::Scope),
        })
    ));
    assert_eq!(subscribers(&n), 0);
}

#[test]
fn the_verdict_is_cached_no_check_per_message() {
    let mut n = net(gated());
    n.sub(2, 1, CH, "ok:1:0", SubscriptionConfig::default());
    n.publisher(3, 9, CH, "ok:2:0");
    let checks = *n.owner_auth_checks();
    assert_eq!(checks, 2);
    for i in 0..100u8 {
        n.queue_publish(3, 9, vec![i]);
    }
    n.pump();
    assert_eq!(seqs(&n.events(2, 1)).len(), 100);
    assert_eq!(*n.owner_auth_checks(), checks);
}

#[test]
fn the_owner_itself_needs_no_token() {
    let mut n = net(gated());
    n.sub(1, 1, CH, "", SubscriptionConfig::default());
    assert_eq!(n.events(1, 1), vec![SubEvent::Accepted { reliable: true }]);
    assert_eq!(n.owner.try_publish(0, CH, b"x".to_vec()), Ok((1, 1)));
    n.pump();
    assert_eq!(seqs(&n.events(1, 1)), [1]);
}

#[test]
fn reliable_delivery_in_order_none_missing_with_small_windows() {
    let mut n = net(Policy::default());
    n.sub(2, 1, CH, "", window(8, Backpressure::Block));
    n.publisher(3, 1, CH, "");
    let mut got = Vec::new();
    let mut next = 0u32;
    while got.len() < 10_000 {
        let p = n.pubs.get_mut(&(node(3), 1)).unwrap();
        while next < 10_000 && p.try_publish(next.to_be_bytes().to_vec()).is_ok() {
            next += 1;
        }
        n.pump();
        for e in n.events(2, 1) {
            if let SubEvent::Message { data, seq, .. } = e {
                assert_eq!(
                    u64::from(u32::from_be_bytes(data[..].try_into().unwrap())) + 1,
                    seq
                );
                got.push(seq);
            }
        }
    }
    assert_eq!(got, (1..=10_000).collect::<Vec<u64>>());
    let info = &n.owner.channels()[0];
    assert_eq!(info.stats.published, 10_000);
    assert_eq!(info.stats.dropped, 0);
}

#[test]
fn block_makes_publishers_wait_until_credit() {
    let config = OwnerConfig {
        sub_buffer: 4,
        pub_window: 3,
        ..OwnerConfig::default()
    };
    let mut n = net_with(Policy::default(), config);
    n.sub(2, 1, CH, "", window(2, Backpressure::Block));
    // The owner's own try_publish: 2 go out on credit, 4 are buffered.
    for _ in 0..6 {
        n.owner.try_publish(0, CH, vec![1]).unwrap();
    }
    assert_eq!(
        n.owner.try_publish(0, CH, vec![1]),
        Err(PublishError::WouldBlock)
    );
    // A remote publisher: its window fills and nothing is acknowledged.
    n.publisher(3, 1, CH, "");
    let p = n.pubs.get_mut(&(node(3), 1)).unwrap();
    for _ in 0..3 {
        p.try_publish(vec![2]).unwrap();
    }
    assert_eq!(
        p.try_publish(vec![2]),
        Err(crate::PublishRefused::WouldBlock)
    );
    n.pump();
    assert!(!n.pubs[&(node(3), 1)].can_publish());
    // The subscriber consumes: credit flows, publishers resume, no loss.
    let mut all = Vec::new();
    for _ in 0..10 {
        all.extend(n.events(2, 1));
    }
    assert_eq!(seqs(&all).len(), 9);
    assert!(gaps(&all).is_empty());
    assert!(n.pubs[&(node(3), 1)].can_publish());
    // Acknowledgements come per run of messages taken together.
    let acks = n.pub_events(3, 1);
    let acked: u64 = acks
        .iter()
        .map(|e| match e {
            PubEvent::Ack {
                from,
                seq,
                delivered: 1,
                targets: 1,
            } => seq - from + 1,
            _ => 0,
        })
        .sum();
    assert_eq!(acked, 3);
}

#[test]
fn drop_oldest_and_drop_newest_report_exact_gaps() {
    for (mode, want_seqs, want_gaps) in [
        (Backpressure::DropOldest, vec![1, 7, 8, 9, 10], vec![(2, 6)]),
        (Backpressure::DropNewest, vec![1, 2, 3, 4, 5], vec![(6, 10)]),
    ] {
        let config = OwnerConfig {
            sub_buffer: 4,
            ..OwnerConfig::default()
        };
        let mut n = net_with(Policy::default(), config);
        n.sub(2, 1, CH, "", window(1, mode));
        for _ in 0..10 {
            n.owner.try_publish(0, CH, vec![0]).unwrap();
        }
        n.pump();
        let events = n.events(2, 1);
        assert_eq!(seqs(&events), want_seqs, "{mode:?}");
        assert_eq!(gaps(&events), want_gaps, "{mode:?}");
        assert_eq!(n.owner.channels()[0].stats.dropped, 5);
        assert_eq!(n.subs[&(node(2), 1)].missed(), 5);
    }
}

#[test]
fn queue_group_gives_each_message_once_to_the_freest_member() {
    let mut n = net(Policy::default());
    let member = |w| SubscriptionConfig {
        group: Some("workers".into()),
        ..window(w, Backpressure::Block)
    };
    n.sub(2, 1, CH, "", member(2));
    n.sub(3, 1, CH, "", member(6));
    n.sub(4, 1, CH, "", SubscriptionConfig::default());
    for _ in 0..8 {
        let (delivered, targets) = n.owner.try_publish(0, CH, vec![0]).unwrap();
        assert_eq!((delivered, targets), (2, 2));
    }
    n.pump();
    // Member 3 had the most credit: it gets messages until its free credit
    // falls to member 2's; then they alternate.
    let a = seqs(&n.subs.get_mut(&(node(2), 1)).map(drain).unwrap());
    let b = seqs(&n.subs.get_mut(&(node(3), 1)).map(drain).unwrap());
    assert_eq!(a.len() + b.len(), 8);
    assert!(b.len() > a.len(), "{a:?} {b:?}");
    let mut all: Vec<u64> = a.iter().chain(&b).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=8).collect::<Vec<u64>>());
    assert_eq!(seqs(&n.events(4, 1)).len(), 8);
}

fn drain(s: &mut crate::Subscription) -> Vec<SubEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

#[test]
fn history_replays_then_goes_live_without_gap_or_duplicate() {
    let policy = Policy {
        history: History::Last(5),
        ..Policy::default()
    };
    let mut n = net(policy);
    for _ in 0..10 {
        n.owner.try_publish(0, CH, vec![0]).unwrap();
    }
    let from_start = SubscriptionConfig {
        start: Start::FromStart,
        ..window(3, Backpressure::Block)
    };
    n.sub(2, 1, CH, "", from_start);
    let last2 = SubscriptionConfig {
        start: Start::Last(2),
        ..SubscriptionConfig::default()
    };
    n.sub(3, 1, CH, "", last2);
    // Live messages arrive while the replay is still waiting for credit.
    n.owner.try_publish(0, CH, vec![0]).unwrap();
    n.owner.try_publish(0, CH, vec![0]).unwrap();
    n.pump();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.extend(seqs(&n.events(2, 1)));
    }
    assert_eq!(got, (6..=12).collect::<Vec<u64>>());
    assert_eq!(seqs(&n.events(3, 1)), [9, 10, 11, 12]);
    assert_eq!(n.owner.channels()[0].stats.retained, 5);
}

#[test]
fn duration_history_ages_out() {
    let policy = Policy {
        history: History::DurationMs(1000),
        ..Policy::default()
    };
    let mut n = net(policy);
    n.owner.try_publish(0, CH, vec![0]).unwrap();
    n.now = 600;
    n.owner.try_publish(600, CH, vec![0]).unwrap();
    assert_eq!(n.owner.poll_timeout(), Some(1000));
    n.advance(1000);
    let start = SubscriptionConfig {
        start: Start::FromStart,
        ..SubscriptionConfig::default()
    };
    n.sub(2, 1, CH, "", start);
    assert_eq!(seqs(&n.events(2, 1)), [2]);
}

#[test]
fn expiry_sweep_ends_subscriptions_with_token_expired() {
    let mut n = net(gated());
    n.sub(2, 1, CH, "ok:1:5000", SubscriptionConfig::default());
    n.sub(3, 1, CH, "ok:2:9000", SubscriptionConfig::default());
    n.events(2, 1);
    assert_eq!(n.owner.poll_timeout(), Some(5000));
    n.advance(4999);
    assert_eq!(n.events(2, 1), vec![]);
    n.advance(5000);
    assert_eq!(
        n.events(2, 1),
        vec![SubEvent::Ended(Reason::Token(TokenKind::Expired))]
    );
    assert!(n.subs[&(node(2), 1)].is_ended());
    assert!(!n.subs[&(node(3), 1)].is_ended());
    assert_eq!(n.owner.poll_timeout(), Some(9000));
}

#[test]
fn revocation_ends_only_the_links_it_covers() {
    let mut n = net(gated());
    n.sub(2, 1, CH, "ok:7:0", SubscriptionConfig::default());
    n.sub(3, 1, CH, "ok:8:0", SubscriptionConfig::default());
    n.publisher(4, 1, CH, "ok:7:0");
    n.events(2, 1);
    // Only an issuer of the chain can revoke it.
    assert_eq!(n.owner.handle_revocation(&[7; 32], &node(9)), 0);
    assert_eq!(n.owner.handle_revocation(&[7; 32], &node(1)), 2);
    n.pump();
    assert_eq!(
        n.events(2, 1),
        vec![SubEvent::Ended(Reason::Token(TokenKind::Revoked))]
    );
    assert!(n
        .pub_events(4, 1)
        .contains(&PubEvent::Ended(Reason::Token(TokenKind::Revoked))));
    assert!(!n.subs[&(node(3), 1)].is_ended());
    assert_eq!(n.owner.links(), 1);
}

#[test]
fn token_refresh_keeps_a_live_subscription_without_loss() {
    let mut n = net(gated());
    n.sub(2, 1, CH, "ok:1:5000", SubscriptionConfig::default());
    n.owner.try_publish(0, CH, vec![0]).unwrap();
    n.subs
        .get_mut(&(node(2), 1))
        .unwrap()
        .refresh(b"ok:2:20000".to_vec());
    n.owner.try_publish(0, CH, vec![0]).unwrap();
    n.pump();
    n.advance(6000);
    n.owner.try_publish(6000, CH, vec![0]).unwrap();
    n.pump();
    let events = n.events(2, 1);
    assert_eq!(seqs(&events), [1, 2, 3]);
    assert_eq!(denied(&events), None);
    // The old token's revocation no longer matters; the new one's does.
    assert_eq!(n.owner.handle_revocation(&[1; 32], &node(1)), 0);
    // A bad refresh ends it with its kind.
    n.subs
        .get_mut(&(node(2), 1))
        .unwrap()
        .refresh(b"bad:expired".to_vec());
    n.pump();
    assert_eq!(
        denied(&n.events(2, 1)),
        Some(Reason::Token(TokenKind::Expired))
    );
}

#[test]
fn auth_failures_are_throttled_per_peer() {
    let mut n = net(gated());
    for link in 0..5 {
        n.sub(
            2,
            link,
            CH,
            "bad:invalid-signature",
            SubscriptionConfig::default(),
        );
    }
    let checks = *n.owner_auth_checks();
    assert_eq!(checks, 5);
    n.sub(2, 10, CH, "ok:1:0", SubscriptionConfig::default());
    assert_eq!(denied(&n.events(2, 10)), Some(Reason::Throttled));
    assert_eq!(*n.owner_auth_checks(), checks, "no check while throttled");
    // Another peer is not affected.
    n.sub(3, 1, CH, "ok:1:0", SubscriptionConfig::default());
    assert_eq!(denied(&n.events(3, 1)), None);
    // The allowance comes back with time.
    n.advance(2000);
    n.sub(2, 11, CH, "ok:1:0", SubscriptionConfig::default());
    assert_eq!(denied(&n.events(2, 11)), None);
    assert_eq!(n.owner.denials().1, 1);
}

#[test]
fn max_rate_holds_publishers_until_the_bucket_refills() {
    let policy = Policy {
        max_rate: Some(10),
        ..Policy::default()
    };
    let mut n = net(policy);
    n.sub(2, 1, CH, "", SubscriptionConfig::default());
    for _ in 0..10 {
        n.owner.try_publish(0, CH, vec![0]).unwrap();
    }
    assert_eq!(
        n.owner.try_publish(0, CH, vec![0]),
        Err(PublishError::RateLimited { retry_at_ms: 100 })
    );
    n.publisher(3, 1, CH, "");
    n.queue_publish(3, 1, vec![1]);
    n.pump();
    assert_eq!(n.pubs[&(node(3), 1)].unacked(), 1);
    assert_eq!(n.owner.poll_timeout(), Some(100));
    n.advance(100);
    assert_eq!(n.pubs[&(node(3), 1)].unacked(), 0);
    assert_eq!(seqs(&n.events(2, 1)).len(), 11);
}

#[test]
fn best_effort_goes_unreliable_without_credit() {
    let policy = Policy {
        reliable: false,
        ..Policy::default()
    };
    let mut n = net(policy);
    n.sub(2, 1, CH, "", window(1, Backpressure::Block));
    for _ in 0..5 {
        n.owner.try_publish(0, CH, vec![0]).unwrap();
    }
    n.pump();
    let delivers: Vec<_> = n
        .sent
        .iter()
        .filter(|t| matches!(t.frame, ChannelFrame::Deliver { .. }))
        .collect();
    assert_eq!(delivers.len(), 5);
    assert!(delivers.iter().all(|t| !t.reliable));
    assert_eq!(n.events(2, 1)[0], SubEvent::Accepted { reliable: false });
}

#[test]
fn removing_a_channel_ends_its_links() {
    let mut n = net(Policy::default());
    n.sub(2, 1, CH, "", SubscriptionConfig::default());
    n.owner.remove(CH).unwrap();
    n.pump();
    assert_eq!(denied(&n.events(2, 1)), Some(Reason::Removed));
    assert_eq!(n.owner.links(), 0);
    assert!(n.owner.remove(CH).is_err());
    assert_eq!(
        n.owner.create("", Policy::default(), 0).unwrap_err().kind(),
        "invalid-name"
    );
}

#[test]
fn a_publisher_skipping_sequence_numbers_shows_as_a_gap() {
    let mut n = net(Policy::default());
    n.sub(2, 1, CH, "", SubscriptionConfig::default());
    let publish = |n: &mut Net, seq| {
        n.owner.handle_frame(
            0,
            node(3),
            ChannelFrame::Publish {
                link: 1,
                seq,
                data: Default::default(),
            },
        );
    };
    n.owner.handle_frame(0, node(3), advertise(5));
    // First seen at 5 (resumed after an owner restart): no gap; then 6 is
    // missing.
    publish(&mut n, 5);
    publish(&mut n, 7);
    publish(&mut n, 7);
    n.pump();
    let events = n.events(2, 1);
    assert_eq!(seqs(&events), [5, 7]);
    assert_eq!(gaps(&events), [(6, 6)]);
    assert_eq!(n.owner.channels()[0].stats.duplicates, 1);
}

/// The `PublishAck`s the owner sent to (peer, link), as (seq, delivered,
/// targets).
fn acks_to(n: &Net, peer: u8, link: u64) -> Vec<(u64, u32, u32)> {
    n.sent
        .iter()
        .filter(|t| t.peer == node(peer))
        .filter_map(|t| match t.frame {
            ChannelFrame::PublishAck {
                link: l,
                seq,
                delivered,
                targets,
            } if l == link => Some((seq, delivered, targets)),
            _ => None,
        })
        .collect()
}

/// An `Advertise` of a publishing session to `CH` on link 1, with no
/// token, whose next message is `next_seq`.
fn advertise(next_seq: u64) -> ChannelFrame {
    ChannelFrame::Advertise {
        link: 1,
        name: CH.into(),
        token: vec![],
        next_seq,
    }
}

/// A `Publish` of message `seq` (payload `[2]`) on link 1.
fn publish(seq: u64) -> ChannelFrame {
    ChannelFrame::Publish {
        link: 1,
        seq,
        data: vec![2].into(),
    }
}

/// A `Subscribe` on link 1 to `CH` from now on, with no token, a `block`
/// window of `credit`.
fn live_subscribe(credit: u32) -> ChannelFrame {
    ChannelFrame::Subscribe {
        link: 1,
        name: CH.into(),
        token: Vec::new(),
        queue: None,
        start: Start::Live,
        credit,
        backpressure: Backpressure::Block,
    }
}

/// Node 2 subscribed (link 1, a `block` window of `credit`) and node 3
/// with `count` messages queued to publish (link 1, payloads 0, 1, ...),
/// none taken by the owner yet.
fn queued_publishes(credit: u32, count: u8) -> Net {
    let mut n = net(Policy::default());
    n.sub(2, 1, CH, "", window(credit, Backpressure::Block));
    n.publisher(3, 1, CH, "");
    for i in 0..count {
        n.queue_publish(3, 1, vec![i]);
    }
    n
}

#[test]
fn one_publish_ack_per_run_of_messages_taken_together() {
    let mut n = queued_publishes(64, 5);
    n.pump();
    // Five messages taken in one turn: one acknowledgement for all.
    assert_eq!(acks_to(&n, 3, 1), vec![(5, 1, 1)]);
    assert_eq!(
        n.pub_events(3, 1),
        vec![
            PubEvent::Accepted,
            PubEvent::Ack {
                from: 1,
                seq: 5,
                delivered: 1,
                targets: 1
            }
        ]
    );
    assert_eq!(seqs(&n.events(2, 1)), vec![1, 2, 3, 4, 5]);

    // The counts change inside a turn (a second subscriber came): one
    // acknowledgement per run of equal counts, in order.
    n.sent.clear();
    n.owner.handle_frame(0, node(3), publish(6));
    n.owner.handle_frame(0, node(3), publish(7));
    n.owner.handle_frame(0, node(4), live_subscribe(64));
    n.owner.handle_frame(0, node(3), publish(8));
    n.owner.handle_frame(0, node(3), publish(9));
    // Taken, not acknowledged yet, when the channel goes: the
    // acknowledgement comes before the end.
    n.owner.remove(CH).unwrap();
    while let Some(t) = n.owner.poll_transmit() {
        n.sent.push(t);
    }
    assert_eq!(acks_to(&n, 3, 1), vec![(7, 1, 1), (9, 2, 2)]);
    let to_pub: Vec<&ChannelFrame> = n
        .sent
        .iter()
        .filter(|t| t.peer == node(3))
        .map(|t| &t.frame)
        .collect();
    assert!(
        matches!(
            to_pub.as_slice(),
            [
                ChannelFrame::PublishAck { seq: 7, .. },
                ChannelFrame::PublishAck { seq: 9, .. },
                ChannelFrame::End {
                    reason: Reason::Removed,
                    ..
                }
            ]
        ),
        "{to_pub:?}"
    );
}

/// The deliveries the owner sent to (peer, link), as (first seq, count).
fn deliveries_to(n: &Net, peer: u8, link: u64) -> Vec<(u64, usize)> {
    n.sent
        .iter()
        .filter(|t| t.peer == node(peer) && t.frame.link() == link)
        .filter_map(|t| match &t.frame {
            ChannelFrame::Deliver { seq, .. } => Some((*seq, 1)),
            ChannelFrame::DeliverBatch { seq, data, .. } => Some((*seq, data.len())),
            _ => None,
        })
        .collect()
}

#[test]
fn messages_taken_together_go_in_one_batch_within_the_credit() {
    let mut n = queued_publishes(8, 12);
    n.sent.clear();
    n.pump();
    // One turn: one frame with what the credit allows, one ack for all.
    assert_eq!(deliveries_to(&n, 2, 1), vec![(1, 8)]);
    assert_eq!(acks_to(&n, 3, 1), vec![(12, 1, 1)]);
    // The rest follows the returned credit, in order, nothing lost.
    let events = n.events(2, 1);
    assert_eq!(seqs(&events), (1..=12).collect::<Vec<u64>>());
    let payloads: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            SubEvent::Message { data, .. } => Some(data[0]),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, (0..12).collect::<Vec<u8>>());
    assert_eq!(deliveries_to(&n, 2, 1), vec![(1, 8), (9, 4)]);
    assert_eq!(n.owner.channels()[0].stats.delivered, 12);
}

#[test]
fn a_batch_breaks_at_another_publisher_and_at_another_time() {
    let mut n = net(Policy::default());
    n.sub(2, 1, CH, "", window(64, Backpressure::Block));
    n.publisher(3, 1, CH, "");
    n.sent.clear();
    for _ in 0..2 {
        n.owner.try_publish(0, CH, vec![0]).unwrap();
    }
    for _ in 0..3 {
        n.queue_publish(3, 1, vec![1]);
    }
    n.pump();
    n.now = 5;
    for _ in 0..2 {
        n.owner.handle_timeout(5);
        n.owner.try_publish(5, CH, vec![0]).unwrap();
    }
    n.pump();
    // The owner's 1-2, node 3's 1-3, then the owner's 3-4 (a later time).
    assert_eq!(deliveries_to(&n, 2, 1), vec![(1, 2), (1, 3), (3, 2)]);
    assert_eq!(seqs(&n.events(2, 1)), [1, 2, 1, 2, 3, 3, 4]);
}

#[test]
fn publishes_before_a_subscribe_in_one_turn_are_not_delivered_to_it() {
    let mut n = net(Policy::default());
    n.publisher(3, 1, CH, "");
    n.owner.handle_frame(0, node(3), publish(1));
    n.owner.handle_frame(0, node(2), live_subscribe(64));
    n.owner.handle_frame(0, node(3), publish(2));
    n.sent.clear();
    while let Some(t) = n.owner.poll_transmit() {
        n.sent.push(t);
    }
    assert_eq!(deliveries_to(&n, 2, 1), vec![(2, 1)]);
    assert_eq!(acks_to(&n, 3, 1), vec![(1, 0, 0), (2, 1, 1)]);
}

#[test]
fn a_turn_takes_no_more_than_a_block_subscriber_has_room_for() {
    let config = OwnerConfig {
        sub_buffer: 4,
        ..OwnerConfig::default()
    };
    let mut n = net_with(Policy::default(), config);
    n.sub(2, 1, CH, "", window(2, Backpressure::Block));
    n.publisher(3, 1, CH, "");
    let p = n.pubs.get_mut(&(node(3), 1)).unwrap();
    for _ in 0..10 {
        p.try_publish(vec![3]).unwrap();
    }
    n.pump();
    // 2 on credit, 4 buffered; the other 4 wait at the owner.
    assert_eq!(acks_to(&n, 3, 1), vec![(6, 1, 1)]);
    assert_eq!(deliveries_to(&n, 2, 1), vec![(1, 2)]);
    assert_eq!(n.pubs[&(node(3), 1)].unacked(), 4);
    let mut all = Vec::new();
    for _ in 0..10 {
        all.extend(n.events(2, 1));
    }
    assert_eq!(seqs(&all), (1..=10).collect::<Vec<u64>>());
    assert_eq!(n.owner.channels()[0].stats.dropped, 0);
    assert_eq!(n.pubs[&(node(3), 1)].unacked(), 0);
}

/// One net per way of handing the owner `seqs` from node 3's advertised
/// session (link 1) on `link`: single `Publish` frames, then one run. The
/// owner sends the same frames and the subscriber sees the same events,
/// including past the window (3) and on a link never advertised.
#[test]
fn a_publish_run_does_what_its_frames_do() {
    let config = OwnerConfig {
        pub_window: 3,
        ..OwnerConfig::default()
    };
    let cases: [(u64, &[u64]); 4] = [
        (1, &[1, 2, 3]),
        (1, &[1, 3, 3]),
        (1, &[1, 2, 3, 4, 5]),
        (9, &[1, 2]),
    ];
    for (link, seqs) in cases {
        let mut nets = [
            net_with(Policy::default(), config),
            net_with(Policy::default(), config),
        ];
        for n in &mut nets {
            n.sub(2, 1, CH, "", SubscriptionConfig::default());
            n.owner.handle_frame(0, node(3), advertise(1));
            n.pump();
        }
        let [single, run] = &mut nets;
        for &seq in seqs {
            single.owner.handle_frame(
                0,
                node(3),
                ChannelFrame::Publish {
                    link,
                    seq,
                    data: vec![2].into(),
                },
            );
        }
        run.owner.handle_publish_run(
            0,
            node(3),
            link,
            seqs.iter().map(|&s| (s, Bytes::from(vec![2]))),
        );
        single.pump();
        run.pump();
        assert_eq!(single.sent, run.sent, "link {link}, {seqs:?}");
        assert_eq!(
            single.events(2, 1),
            run.events(2, 1),
            "link {link}, {seqs:?}"
        );
        assert!(single.sent.iter().any(|t| matches!(
            t.frame,
            ChannelFrame::PublishAck { .. } | ChannelFrame::End { .. }
        )));
    }
}

/// This node's own publishing sessions get the wider local window; other
/// nodes' get `pub_window`, and a publish past it ends their session.
#[test]
fn local_sessions_get_the_local_window() {
    let config = OwnerConfig {
        pub_window: 3,
        local_pub_window: 5,
        ..OwnerConfig::default()
    };
    let mut n = net_with(Policy::default(), config);
    n.owner.handle_frame(0, node(1), advertise(1));
    n.owner.handle_frame(0, node(3), advertise(1));
    n.pump();
    let credit = |peer: NodeId| {
        n.sent.iter().find_map(|t| match t.frame {
            ChannelFrame::Accepted { credit, .. } if t.peer == peer => Some(credit),
            _ => None,
        })
    };
    assert_eq!(credit(node(1)), Some(5));
    assert_eq!(credit(node(3)), Some(3));

    // Five publishes in one turn: within the local window, past the other.
    for peer in [node(1), node(3)] {
        for seq in 1..=5 {
            n.owner.handle_frame(0, peer, publish(seq));
        }
    }
    n.pump();
    let ended = |peer: NodeId| {
        n.sent.iter().any(|t| {
            t.peer == peer
                && matches!(
                    t.frame,
                    ChannelFrame::End {
                        reason: Reason::Protocol,
                        ..
                    }
                )
        })
    };
    assert!(!ended(node(1)));
    assert!(ended(node(3)));
    assert_eq!(n.owner.channels()[0].stats.published, 5 + 3);
}
