#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn config(jitter_percent: u32) -> RedialConfig {
    RedialConfig {
        min: MS(100),
        max: MS(500),
        jitter_percent,
    }
}

/// Fails every dial and returns the waits in between.
fn waits(r: &mut Redial, mut now: Instant, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            assert!(r.poll_dial(now).is_some(), "a dial is due at {now:?}");
            let wait = r.handle_dial_failed(now, DialFailure::Other).unwrap();
            assert_eq!(r.poll_timeout(), Some(now + wait));
            assert_eq!(r.poll_dial(now + wait - MS(1)), None, "not before");
            now += wait;
            wait
        })
        .collect()
}

#[test]
fn first_dial_at_once_then_doubling_to_the_cap() {
    let t0 = Instant::now();
    let mut r = Redial::new(config(0), vec![addr(1)], 7, t0);
    assert_eq!(r.poll_timeout(), Some(t0));
    let seq = waits(&mut r, t0, 5);
    assert_eq!(seq, vec![MS(100), MS(200), MS(400), MS(500), MS(500)]);
}

#[test]
fn a_connection_resets_the_backoff() {
    let t0 = Instant::now();
    let mut r = Redial::new(config(0), vec![addr(1)], 7, t0);
    waits(&mut r, t0, 3);
    r.handle_connected();
    assert_eq!(r.poll_timeout(), None);
    let lost = t0 + MS(10_000);
    r.handle_disconnected(lost, Disconnect::Other);
    assert_eq!(r.poll_timeout(), Some(lost + MS(100)));
    assert_eq!(waits(&mut r, lost + MS(100), 2), vec![MS(200), MS(400)]);
}

#[test]
fn a_stateless_reset_redials_at_once() {
    let t0 = Instant::now();
    let mut r = Redial::new(config(20), vec![addr(1)], 7, t0);
    r.poll_dial(t0);
    r.handle_connected();
    let lost = t0 + MS(5_000);
    r.handle_disconnected(lost, Disconnect::Reset);
    assert_eq!(r.poll_timeout(), Some(lost));
    assert_eq!(r.poll_dial(lost), Some(addr(1)));
    // And if the restarted peer is not ready yet, the backoff starts low.
    let wait = r.handle_dial_failed(lost, DialFailure::Other).unwrap();
    assert!(wait <= MS(100) && wait >= MS(80), "{wait:?}");
}

#[test]
fn jitter_stays_within_its_share_below_the_cap_and_replays() {
    let t0 = Instant::now();
    let run = |seed| {
        let mut r = Redial::new(config(25), vec![addr(1)], seed, t0);
        waits(&mut r, t0, 40)
    };
    let a = run(1);
    assert_eq!(a, run(1), "same seed, same waits");
    assert_ne!(a, run(2), "another seed, other waits");
    let mut base = MS(100);
    for w in &a {
        assert!(*w <= base && *w >= base * 3 / 4, "{w:?} for {base:?}");
        base = (base * 2).min(MS(500));
    }
    // Jitter actually spreads the capped waits.
    let capped: std::collections::BTreeSet<_> = a[3..].iter().collect();
    assert!(capped.len() > 10, "{capped:?}");
}

#[test]
fn addresses_rotate_and_restart_when_replaced() {
    let t0 = Instant::now();
    let mut r = Redial::new(config(0), vec![addr(1), addr(2), addr(3)], 7, t0);
    let mut now = t0;
    let mut tried = Vec::new();
    for _ in 0..4 {
        tried.push(r.poll_dial(now).unwrap().port());
        now += r.handle_dial_failed(now, DialFailure::Other).unwrap();
    }
    assert_eq!(tried, vec![1, 2, 3, 1]);
    r.set_addrs(vec![addr(7), addr(8)]);
    assert_eq!(r.poll_dial(now), Some(addr(7)));
}

#[test]
fn closing_stops_and_identity_failures_skip_the_relay() {
    let t0 = Instant::now();
    let mut r = Redial::new(config(0), vec![addr(1)], 7, t0);
    assert!(r.try_relay(DialFailure::Other, true));
    assert!(!r.try_relay(DialFailure::Other, false));
    assert!(!r.try_relay(DialFailure::Identity, true));
    assert!(!r.try_relay(DialFailure::Closed, true));
    r.poll_dial(t0);
    assert_eq!(
        r.handle_dial_failed(t0, DialFailure::Identity),
        Some(MS(100))
    );
    r.poll_dial(t0 + MS(100));
    assert_eq!(r.handle_dial_failed(t0, DialFailure::Closed), None);
    assert!(r.is_stopped());
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.poll_dial(t0 + MS(100_000)), None);
}

#[test]
fn no_dial_while_connected_or_without_addresses() {
    let t0 = Instant::now();
    let mut r = Redial::new(config(0), vec![], 7, t0);
    assert_eq!(r.poll_dial(t0), None);
    r.set_addrs(vec![addr(1)]);
    assert_eq!(r.poll_dial(t0), Some(addr(1)));
    r.handle_connected();
    assert_eq!(r.poll_dial(t0 + MS(100_000)), None);
}

#[test]
fn a_max_below_min_uses_min() {
    let t0 = Instant::now();
    let c = RedialConfig {
        min: MS(300),
        max: MS(100),
        jitter_percent: 0,
    };
    let mut r = Redial::new(c, vec![addr(1)], 7, t0);
    assert_eq!(waits(&mut r, t0, 2), vec![MS(300), MS(300)]);
}
