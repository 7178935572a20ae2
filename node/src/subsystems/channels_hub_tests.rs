//! The hub without a network: loopback for this node's own channels,
//! routing by (owner, link), and resume after a reconnect.

use relay_channels::{Policy, SubEvent, SubscriptionConfig};
use relay_proto::wire::channel::{ChannelFrame, Reason, Start};
use relay_proto::SecretKey;

use super::channels_acks::{AckRun, Acks};
use super::channels_hub::Hub;
use crate::revocations_set::RevocationSet;

fn id(n: u8) -> relay_proto::NodeId {
    SecretKey::from_bytes(&[n; 32]).node_id()
}

#[test]
fn own_channels_loop_back_without_the_network() {
    let me = id(1);
    let mut hub = Hub::new(me, RevocationSet::new());
    hub.owner_mut().create("x", Policy::default(), 0).unwrap();
    let (link, _) = hub.subscribe(me, "x", vec![], SubscriptionConfig::default());
    assert!(hub.drain_out(0).is_empty());
    assert_eq!(
        hub.take_events(link, 10).unwrap(),
        vec![SubEvent::Accepted { reliable: true }]
    );
    let acks = Acks::new();
    hub.publish(me, "x", &[], b"hi".to_vec(), Some(&acks))
        .unwrap();
    assert!(hub.drain_out(0).is_empty());
    assert_eq!(
        acks.try_take(),
        Some(AckRun {
            count: 1,
            result: Ok((1, 1))
        })
    );
    let events = hub.take_events(link, 10).unwrap();
    assert!(
        matches!(&events[..], [SubEvent::Message { seq: 1, data, .. }] if data[..] == b"hi"[..])
    );
    hub.unsubscribe(link);
    assert!(hub.take_events(link, 10).is_none());
}

#[test]
fn remote_frames_reach_only_the_link_of_their_owner() {
    let (me, owner, stranger) = (id(1), id(2), id(3));
    let mut hub = Hub::new(me, RevocationSet::new());
    let (link, _) = hub.subscribe(owner, "y", vec![], SubscriptionConfig::default());
    let out = hub.drain_out(0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].peer, owner);
    assert!(matches!(out[0].frame, ChannelFrame::Subscribe { .. }));
    let accepted = ChannelFrame::Accepted {
        link,
        reliable: true,
        credit: 0,
        last_seq: 0,
    };
    hub.handle_frame(0, stranger, accepted.clone());
    assert_eq!(hub.take_events(link, 10).unwrap(), vec![]);
    hub.handle_frame(0, owner, accepted);
    let deliver = ChannelFrame::Deliver {
        link,
        publisher: stranger,
        seq: 7,
        ts: 0,
        data: Default::default(),
    };
    hub.handle_frame(0, owner, deliver);
    assert_eq!(hub.take_events(link, 10).unwrap().len(), 2);
    // A reconnect resumes after what was delivered.
    hub.peer_reset(&owner);
    let out = hub.drain_out(0);
    let resumed = out.iter().find_map(|t| match &t.frame {
        ChannelFrame::Subscribe { start, .. } => Some(start.clone()),
        _ => None,
    });
    assert!(matches!(resumed, Some(Start::After(c)) if c.len() == 1 && c[0].seq == 7));
}

#[test]
fn idle_publishing_sessions_are_bounded() {
    let me = id(1);
    let mut hub = Hub::new(me, RevocationSet::new());
    for i in 0..super::channels_hub::MAX_LOCAL_PUBS + 5 {
        let name = format!("c{i}");
        hub.owner_mut().create(&name, Policy::default(), 0).unwrap();
        let acks = Acks::new();
        hub.publish(me, &name, &[], vec![1], Some(&acks)).unwrap();
        assert!(hub.drain_out(0).is_empty());
        assert_eq!(
            acks.try_take(),
            Some(AckRun {
                count: 1,
                result: Ok((0, 0))
            })
        );
    }
    assert_eq!(hub.local_links().1, super::channels_hub::MAX_LOCAL_PUBS);
    // The owner saw the evicted sessions close.
    assert_eq!(hub.owner().links(), super::channels_hub::MAX_LOCAL_PUBS);
}

/// The owner checks tokens against the node's one revocation set: a
/// revocation the set learned from the ledger refuses new links, and
/// `revoke` ends the live ones it covers.
#[tokio::test]
async fn tokens_are_checked_against_the_nodes_revocation_set() {
    use relay_channels::{Action, Authorizer, TokenAuthorizer};
    use relay_proto::ledger::{body::TokenRevocation, Body};
    use relay_proto::token::{issue, ChannelPattern, Grant, Scope, Scopes};
    use relay_proto::wire::channel::{Backpressure, Reason, TokenKind};

    let owner = SecretKey::from_bytes(&[1; 32]);
    let me = owner.node_id();
    let peer = id(2);
    let set = RevocationSet::new();
    let mut hub = Hub::new(me, set.clone());
    let policy = Policy {
        require_token: true,
        ..Policy::default()
    };
    hub.owner_mut().create("g", policy, 0).unwrap();
    let now = crate::revocations_set::unix_ms();
    let grant = Grant {
        subject: peer,
        scopes: Scopes::of(&[Scope::Subscribe]),
        channel: ChannelPattern::parse("g").unwrap(),
        ttl_ms: 600_000,
        depth: None,
    };
    let token = issue(&owner, &grant, now).unwrap().encode();
    let subscribe = |link| ChannelFrame::Subscribe {
        link,
        name: "g".into(),
        token: token.clone(),
        queue: None,
        start: Start::Live,
        credit: 16,
        backpressure: Backpressure::Block,
    };
    let answers = |hub: &mut Hub| -> Vec<ChannelFrame> {
        hub.drain_out(now).into_iter().map(|t| t.frame).collect()
    };
    hub.handle_frame(now, peer, subscribe(1));
    assert!(matches!(
        &answers(&mut hub)[..],
        [ChannelFrame::Accepted { link: 1, .. }]
    ));

    // The owner revokes the token in its ledger; the set follows it.
    let key = TokenAuthorizer::with_revocations(me, set.clone())
        .check(&peer, "g", Action::Subscribe, &token, now)
        .unwrap()
        .token_ids[0];
    let ledger =
        crate::ledger::Ledger::open(&crate::testutil::temp_dir("hub-revoke"), owner).unwrap();
    let body = Body::TokenRevocation(TokenRevocation {
        token_id: key,
        expires_unix_ms: now + 600_000,
        reason: "test".into(),
    });
    let stored = ledger.append_at(now, body).await.unwrap();
    let revoked = set.apply(&stored.entry, now).unwrap();
    ledger.close();

    // A new link is refused at once; the live one ends when told.
    hub.handle_frame(now, peer, subscribe(2));
    let revoked_reason = Reason::Token(TokenKind::Revoked);
    assert_eq!(
        answers(&mut hub),
        vec![ChannelFrame::Denied {
            link: 2,
            reason: revoked_reason
        }]
    );
    assert_eq!(hub.revoke(revoked.id.revocation_key(), revoked.by), 1);
    assert_eq!(
        answers(&mut hub),
        vec![ChannelFrame::End {
            link: 1,
            reason: revoked_reason
        }]
    );
}

/// Messages taken together are answered in one run per publisher, in
/// order, through one acknowledgement from the owner; a publisher that
/// does not wait gets nothing; the session's end answers what waits.
#[test]
fn batched_publishes_are_answered_per_publisher_in_order() {
    let me = id(1);
    let mut hub = Hub::new(me, RevocationSet::new());
    hub.owner_mut().create("x", Policy::default(), 0).unwrap();
    let (link, _) = hub.subscribe(me, "x", vec![], SubscriptionConfig::default());
    assert!(hub.drain_out(0).is_empty());
    let (a, b) = (Acks::new(), Acks::new());
    let mut batch: std::collections::VecDeque<bytes::Bytes> =
        (0..3u8).map(|i| bytes::Bytes::from(vec![i])).collect();
    hub.publish_many(me, "x", &[], &mut batch, Some(&a))
        .unwrap();
    assert!(batch.is_empty());
    hub.publish(me, "x", &[], vec![3], None).unwrap();
    hub.publish(me, "x", &[], vec![4], Some(&b)).unwrap();
    hub.publish(me, "x", &[], vec![5], Some(&a)).unwrap();
    assert!(hub.drain_out(0).is_empty());
    let runs = |acks: &Acks| std::iter::from_fn(|| acks.try_take()).collect::<Vec<_>>();
    let ok = |count| AckRun {
        count,
        result: Ok((1, 1)),
    };
    assert_eq!(runs(&a), vec![ok(4)], "1-3 and 6, merged in its queue");
    assert_eq!(runs(&b), vec![ok(1)]);
    let events = hub.take_events(link, 10).unwrap();
    assert_eq!(
        events.len(),
        7,
        "accepted, every message delivered: {events:?}"
    );

    // Messages waiting when the session ends: their publisher learns why.
    hub.owner_mut().remove("x").unwrap();
    assert!(hub.drain_out(0).is_empty());
    hub.publish(me, "x", &[], vec![6], Some(&a)).unwrap();
    hub.publish(me, "x", &[], vec![7], Some(&a)).unwrap();
    assert!(hub.drain_out(0).is_empty());
    assert_eq!(
        runs(&a),
        vec![AckRun {
            count: 2,
            result: Err(Reason::NoSuchChannel)
        }]
    );
}
