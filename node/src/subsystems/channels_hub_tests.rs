//! The hub without a network: loopback for this node's own channels,
//! routing by (owner, link), and resume after a reconnect.

use relay_channels::{Policy, SubEvent, SubscriptionConfig};
use relay_proto::wire::channel::{ChannelFrame, Start};
use relay_proto::SecretKey;

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
    let mut ack = hub.publish(me, "x", &[], b"hi".to_vec()).unwrap();
    assert!(hub.drain_out(0).is_empty());
    assert_eq!(ack.try_recv().unwrap(), Ok((1, 1)));
    let events = hub.take_events(link, 10).unwrap();
    assert!(matches!(&events[..], [SubEvent::Message { seq: 1, data, .. }] if data == b"hi"));
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
        data: vec![],
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
        let mut ack = hub.publish(me, &name, &[], vec![1]).unwrap();
        assert!(hub.drain_out(0).is_empty());
        assert_eq!(ack.try_recv().unwrap(), Ok((0, 0)));
    }
    assert_eq!(hub.local_links().1, super::channels_hub::MAX_LOCAL_PUBS);
    // The owner saw the evicted sessions close.
    assert_eq!(hub.owner().links(), super::channels_hub::MAX_LOCAL_PUBS);
}
