//! Subscriber and publisher sides across a reconnect, on simulated time:
//! resume by (publisher, seq), resend of unacknowledged publishes, and
//! de-duplication.

use relay_proto::wire::channel::{ChannelFrame, Start};

use crate::policy::{History, Policy};
use crate::testutil::{gaps, node, seqs, Net};
use crate::{OwnerConfig, Publication, PublishRefused, SubEvent, Subscription, SubscriptionConfig};

const CH: &str = "t";

fn net(history: History) -> Net {
    let mut n = Net::new(OwnerConfig::default());
    let policy = Policy {
        history,
        ..Policy::default()
    };
    n.owner.create(CH, policy, 0).unwrap();
    n
}

/// Peer `p`'s connection drops and comes back after `during` ran.
fn reconnect(n: &mut Net, p: u8, during: impl FnOnce(&mut Net)) {
    n.down.insert(node(p));
    n.owner.handle_peer_gone(&node(p));
    for ((peer, _), s) in &mut n.subs {
        if *peer == node(p) {
            s.handle_disconnect();
        }
    }
    for ((peer, _), x) in &mut n.pubs {
        if *peer == node(p) {
            x.handle_disconnect();
        }
    }
    during(n);
    n.down.remove(&node(p));
    for ((peer, _), s) in &mut n.subs {
        if *peer == node(p) {
            s.handle_reconnect();
        }
    }
    for ((peer, _), x) in &mut n.pubs {
        if *peer == node(p) {
            x.handle_reconnect();
        }
    }
    n.pump();
}

#[test]
fn a_subscriber_resumes_by_sequence_with_history() {
    let mut n = net(History::Last(100));
    n.sub(2, 1, CH, "", SubscriptionConfig::default());
    for _ in 0..3 {
        n.owner.try_publish(0, CH, vec![0]).unwrap();
    }
    n.pump();
    let mut got = seqs(&n.events(2, 1));
    reconnect(&mut n, 2, |n| {
        for _ in 0..4 {
            n.owner.try_publish(0, CH, vec![0]).unwrap();
        }
        n.pump();
    });
    n.owner.try_publish(0, CH, vec![0]).unwrap();
    n.pump();
    let events = n.events(2, 1);
    got.extend(seqs(&events));
    assert_eq!(got, (1..=8).collect::<Vec<u64>>());
    assert!(gaps(&events).is_empty());
    assert_eq!(n.subs[&(node(2), 1)].duplicates(), 0);
}

#[test]
fn without_history_a_resume_reports_what_it_missed() {
    let mut n = net(History::None);
    n.sub(2, 1, CH, "", SubscriptionConfig::default());
    n.owner.try_publish(0, CH, vec![0]).unwrap();
    n.pump();
    n.events(2, 1);
    reconnect(&mut n, 2, |n| {
        for _ in 0..3 {
            n.owner.try_publish(0, CH, vec![0]).unwrap();
        }
    });
    n.owner.try_publish(0, CH, vec![0]).unwrap();
    n.pump();
    let events = n.events(2, 1);
    assert_eq!(gaps(&events), [(2, 4)]);
    assert_eq!(seqs(&events), [5]);
}

#[test]
fn a_publisher_resends_only_what_the_owner_did_not_take() {
    let mut n = net(History::None);
    n.sub(2, 1, CH, "", SubscriptionConfig::default());
    n.publisher(3, 1, CH, "");
    for i in 0..3u8 {
        n.pubs
            .get_mut(&(node(3), 1))
            .unwrap()
            .try_publish(vec![i])
            .unwrap();
    }
    // The owner takes 1..3 but the acks are lost with the connection; 4
    // and 5 are published while it is down.
    for _ in 0..3 {
        if let Some(f) = n.pubs.get_mut(&(node(3), 1)).unwrap().poll_transmit() {
            n.owner.handle_frame(0, node(3), f);
        }
    }
    reconnect(&mut n, 3, |n| {
        n.pump();
        let p = n.pubs.get_mut(&(node(3), 1)).unwrap();
        p.try_publish(vec![3]).unwrap();
        p.try_publish(vec![4]).unwrap();
    });
    assert_eq!(n.pubs[&(node(3), 1)].unacked(), 0);
    let events = n.events(2, 1);
    assert_eq!(seqs(&events), [1, 2, 3, 4, 5]);
    assert_eq!(n.owner.channels()[0].stats.duplicates, 0);
}

#[test]
fn duplicates_are_dropped_and_still_return_credit() {
    let mut s = Subscription::new(
        1,
        CH,
        vec![],
        SubscriptionConfig {
            window: 2,
            start: Start::Live,
            ..SubscriptionConfig::default()
        },
    );
    assert!(matches!(
        s.poll_transmit(),
        Some(ChannelFrame::Subscribe { credit: 2, .. })
    ));
    s.handle_frame(ChannelFrame::Accepted {
        link: 1,
        reliable: true,
        credit: 0,
        last_seq: 0,
    });
    let deliver = |seq| ChannelFrame::Deliver {
        link: 1,
        publisher: node(5),
        seq,
        ts: 0,
        data: Default::default(),
    };
    s.handle_frame(deliver(1));
    s.handle_frame(deliver(1));
    assert_eq!(s.duplicates(), 1);
    // The duplicate's credit went back at once (window 2 / 2 = 1).
    assert_eq!(
        s.poll_transmit(),
        Some(ChannelFrame::Credit { link: 1, n: 1 })
    );
    s.handle_frame(deliver(4));
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(seqs(&events), [1, 4]);
    assert_eq!(gaps(&events), [(2, 3)]);
    assert_eq!(s.missed(), 2);
}

/// A reliable subscription on link 1 that the owner accepted from the
/// start, with no credit granted yet.
fn accepted_subscription() -> Subscription {
    let mut s = Subscription::new(1, CH, vec![], SubscriptionConfig::default());
    s.handle_frame(ChannelFrame::Accepted {
        link: 1,
        reliable: true,
        credit: 0,
        last_seq: 0,
    });
    s
}

#[test]
fn a_gap_over_the_whole_sequence_space_does_not_overflow() {
    let mut s = accepted_subscription();
    // An owner may claim any from..=to (the decoder only checks from <= to).
    s.handle_frame(ChannelFrame::Gap {
        link: 1,
        publisher: node(5),
        from: 0,
        to: u64::MAX,
    });
    assert_eq!(s.missed(), u64::MAX);
    s.handle_frame(ChannelFrame::Gap {
        link: 1,
        publisher: node(6),
        from: 1,
        to: 2,
    });
    assert_eq!(s.missed(), u64::MAX);
}

#[test]
fn an_owner_claiming_the_last_sequence_number_ends_publishing_without_a_panic() {
    let mut p = Publication::new(1, CH, vec![]);
    p.handle_frame(ChannelFrame::Accepted {
        link: 1,
        reliable: true,
        credit: 8,
        last_seq: u64::MAX,
    });
    // No sequence number is left above the one the owner says it took.
    assert_eq!(p.try_publish(vec![1]), Err(PublishRefused::Ended));
    let mut p = Publication::new(1, CH, vec![]);
    p.handle_frame(ChannelFrame::Accepted {
        link: 1,
        reliable: true,
        credit: 8,
        last_seq: u64::MAX - 2,
    });
    assert_eq!(p.try_publish(vec![1]), Ok(u64::MAX - 1));
    assert_eq!(p.try_publish(vec![2]), Err(PublishRefused::Ended));
}

#[test]
fn a_batch_is_its_messages_in_order_without_duplicates_or_missed_ones() {
    let mut s = accepted_subscription();
    let batch = |seq, n: u8| ChannelFrame::DeliverBatch {
        link: 1,
        publisher: node(5),
        seq,
        ts: 9,
        data: (0..n).map(|i| vec![i].into()).collect(),
    };
    s.handle_frame(batch(1, 3));
    // Overlapping the last one: 2 and 3 are duplicates.
    s.handle_frame(batch(2, 4));
    assert_eq!(s.duplicates(), 2);
    // Past a hole: a gap, then the messages.
    s.handle_frame(batch(8, 2));
    // Right after the last: taken at once.
    s.handle_frame(batch(10, 2));
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(seqs(&events), [1, 2, 3, 4, 5, 8, 9, 10, 11]);
    assert_eq!(gaps(&events), [(6, 7)]);
    let payloads: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            SubEvent::Message { data, ts: 9, .. } => Some(data[0]),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, [0, 1, 2, 2, 3, 0, 1, 0, 1]);
    // A batch ending at the last sequence number does not overflow.
    s.handle_frame(batch(u64::MAX - 1, 2));
    s.handle_frame(batch(u64::MAX, 1));
    assert_eq!(s.duplicates(), 3);
}

/// A session's messages go out only once accepted and within the window,
/// before the frames queued with them (a close follows what was published
/// before it); bare (`poll_publish`) or framed (`poll_transmit`), they are
/// the same messages.
#[test]
fn publishes_go_within_the_window_and_before_a_close() {
    let accept = |p: &mut Publication| {
        assert!(matches!(
            p.poll_transmit(),
            Some(ChannelFrame::Advertise { .. })
        ));
        p.handle_frame(ChannelFrame::Accepted {
            link: 1,
            reliable: true,
            credit: 2,
            last_seq: 0,
        });
    };
    let mut framed = Publication::new(1, CH, vec![]);
    let mut bare = Publication::new(1, CH, vec![]);
    for p in [&mut framed, &mut bare] {
        for n in 1..=3u8 {
            p.try_publish(vec![n]).unwrap();
        }
        // Not accepted yet: nothing goes.
        assert!(!p.has_publish());
        accept(p);
        assert!(p.has_publish());
        p.close();
    }

    let mut frames = Vec::new();
    while let Some(f) = framed.poll_transmit() {
        frames.push(f);
    }
    assert_eq!(
        frames,
        vec![
            ChannelFrame::Publish {
                link: 1,
                seq: 1,
                data: vec![1].into()
            },
            ChannelFrame::Publish {
                link: 1,
                seq: 2,
                data: vec![2].into()
            },
            ChannelFrame::Unsubscribe { link: 1 },
        ],
        "two within the window, then the close"
    );

    let mut run = Vec::new();
    while let Some(m) = bare.poll_publish() {
        run.push(m);
    }
    assert_eq!(run, vec![(1, vec![1].into()), (2, vec![2].into())]);
    assert_eq!(
        bare.poll_control(),
        Some(ChannelFrame::Unsubscribe { link: 1 })
    );
    // The third goes once the first is acknowledged.
    bare.handle_frame(ChannelFrame::PublishAck {
        link: 1,
        seq: 1,
        delivered: 1,
        targets: 1,
    });
    assert_eq!(bare.poll_publish(), Some((3, vec![3].into())));
    assert_eq!(bare.poll_publish(), None);
}
