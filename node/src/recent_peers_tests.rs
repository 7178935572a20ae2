//! Unit tests of [`RecentPeers`] on simulated time.

use super::*;
use relay_proto::SecretKey;

const DAY: u64 = 24 * 3600;

fn id(n: u8) -> NodeId {
    SecretKey::from_bytes(&[n; 32]).node_id()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn saved(n: u8, addr: &str, last_seen: u64) -> RecentPeer {
    RecentPeer {
        node_id: id(n),
        addr: sa(addr),
        last_seen,
    }
}

fn drain(core: &mut RecentPeers, now: Instant) -> Vec<RecentAction> {
    std::iter::from_fn(|| core.poll_action(now)).collect()
}

fn dial(n: u8, addr: &str) -> RecentAction {
    RecentAction::Dial {
        peer: id(n),
        addr: sa(addr),
    }
}

#[test]
fn start_dials_recent_peers_at_once_but_not_configured_or_stale_ones() {
    let t0 = Instant::now();
    let unix = 100 * DAY;
    let mut core = RecentPeers::default();
    core.handle_start(
        t0,
        unix,
        vec![
            saved(1, "198.51.100.10:7000", unix - 60),
            saved(2, "198.51.100.11:7000", unix - 8 * DAY),
            saved(3, "198.51.100.12:7000", unix - 30),
        ],
        |peer| *peer == id(3),
    );
    assert_eq!(core.poll_timeout(), Some(t0));
    assert_eq!(drain(&mut core, t0), vec![dial(1, "198.51.100.10:7000")]);
    // Nothing changed, nothing to save.
    assert_eq!(core.poll_timeout(), None);
}

#[test]
fn failed_dials_back_off_and_give_up_and_a_connection_ends_them() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut core = RecentPeers::default();
    let list = vec![
        saved(1, "198.51.100.10:7000", 1000),
        saved(2, "198.51.100.11:7000", 1000),
    ];
    core.handle_start(t0, 1000, list, |_| false);
    assert_eq!(drain(&mut core, t0).len(), 2);
    // One dial each runs: nothing due until an outcome.
    assert_eq!(core.poll_timeout(), None);
    core.handle_dial_failed(t0 + ms(100), &id(1));
    assert_eq!(core.poll_timeout(), Some(t0 + ms(350)));
    assert!(drain(&mut core, t0 + ms(349)).is_empty());
    assert_eq!(
        drain(&mut core, t0 + ms(350)),
        vec![dial(1, "198.51.100.10:7000")]
    );
    // 250 ms, 500 ms, 1 s: four attempts in all, then it stops.
    core.handle_dial_failed(t0 + ms(400), &id(1));
    assert_eq!(core.poll_timeout(), Some(t0 + ms(900)));
    drain(&mut core, t0 + ms(900));
    core.handle_dial_failed(t0 + ms(1000), &id(1));
    assert_eq!(core.poll_timeout(), Some(t0 + ms(2000)));
    drain(&mut core, t0 + ms(2000));
    core.handle_dial_failed(t0 + ms(2100), &id(1));
    assert_eq!(core.poll_timeout(), None);
    assert!(!core.dialing().any(|p| *p == id(1)));
    // Peer 2 dials us first: its dial is done, its address remembered.
    core.handle_connected(t0 + ms(50), 1001, id(2), Some(sa("198.51.100.99:7001")));
    assert!(!core.dialing().any(|p| *p == id(2)));
    core.handle_dial_failed(t0 + ms(60), &id(2));
    assert_eq!(core.poll_timeout(), Some(t0 + ms(1050)), "the save only");
}

#[test]
fn connections_are_remembered_and_saved_once_after_a_delay() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let config = RecentConfig {
        max_peers: 2,
        ..RecentConfig::default()
    };
    let mut core = RecentPeers::new(config);
    core.handle_connected(t0, 10, id(1), Some(sa("198.51.100.10:7000")));
    // A relayed connection has no address of the peer's own.
    core.handle_connected(t0, 10, id(9), None);
    core.handle_connected(t0 + ms(300), 11, id(2), Some(sa("198.51.100.11:7000")));
    assert_eq!(core.poll_timeout(), Some(t0 + ms(1000)));
    assert!(drain(&mut core, t0 + ms(999)).is_empty());
    let saved_list = vec![
        saved(2, "198.51.100.11:7000", 11),
        saved(1, "198.51.100.10:7000", 10),
    ];
    assert_eq!(
        drain(&mut core, t0 + ms(1000)),
        vec![RecentAction::Save(saved_list)]
    );
    // Saved: nothing left for the shutdown.
    assert_eq!(core.handle_shutdown(), None);
    // A third peer: the least recently seen goes.
    core.handle_connected(t0 + ms(2000), 12, id(3), Some(sa("198.51.100.12:7000")));
    let out = drain(&mut core, t0 + ms(3000));
    let RecentAction::Save(list) = &out[0] else {
        panic!("{out:?}");
    };
    let ids: Vec<NodeId> = list.iter().map(|p| p.node_id).collect();
    assert_eq!(ids, vec![id(3), id(2)]);
}

#[test]
fn shutdown_saves_only_a_pending_change() {
    let t0 = Instant::now();
    let mut core = RecentPeers::default();
    assert_eq!(core.handle_shutdown(), None);
    core.handle_connected(t0, 10, id(1), Some(sa("198.51.100.10:7000")));
    assert_eq!(
        core.handle_shutdown(),
        Some(vec![saved(1, "198.51.100.10:7000", 10)])
    );
    assert_eq!(core.poll_timeout(), None, "the delayed save is taken");
}
