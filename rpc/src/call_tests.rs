//! CallCore on simulated time.

use std::time::{Duration, Instant};

use relay_proto::wire::rpc::Code;
use relay_proto::{NodeId, SecretKey};

use super::*;
use crate::breaker::BreakerConfig;
use crate::jitter::SplitMix64;
use crate::pick::{Candidate, Path};
use crate::retry::ThrottleConfig;

fn id(n: u8) -> NodeId {
    SecretKey::from_bytes(&[n; 32]).node_id()
}

fn nodes(n: u8) -> Vec<Candidate> {
    (1..=n)
        .map(|i| Candidate {
            node: id(i),
            path: Path::Direct,
            rtt: None,
        })
        .collect()
}

static RETRY: std::sync::LazyLock<RetryPolicy> = std::sync::LazyLock::new(RetryPolicy::default);

fn config(t0: Instant, idempotent: bool, hedge: Option<HedgePolicy>) -> CallConfig<'static> {
    CallConfig {
        service: "svc",
        deadline: Deadline::after(t0, Duration::from_secs(10)),
        idempotent,
        retry: &RETRY,
        hedge,
        strategy: Strategy::RoundRobin,
    }
}

fn env() -> Resilience<SplitMix64> {
    Resilience::new(SplitMix64::new(42))
}

/// Drains the actions ready at `now`.
fn drain(core: &mut CallCore, now: Instant, env: &mut Resilience<SplitMix64>) -> Vec<Action> {
    std::iter::from_fn(|| core.poll(now, env)).collect()
}

fn started(actions: &[Action]) -> Vec<(AttemptId, NodeId)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { attempt, node } => Some((*attempt, *node)),
            _ => None,
        })
        .collect()
}

fn unavailable() -> Result<(), Status> {
    Err(Status::new(Code::Unavailable, "down"))
}

#[test]
fn nobody_serving_is_no_responders_at_once() {
    let t0 = Instant::now();
    let mut e = env();
    let mut core = CallCore::new(t0, config(t0, true, None), vec![], &mut e);
    match drain(&mut core, t0, &mut e).as_slice() {
        [Action::Done(Err(s))] => assert_eq!(s.code, Code::NoResponders),
        other => panic!("{other:?}"),
    }
}

#[test]
fn retries_at_most_five_attempts_with_growing_jittered_backoff() {
    let t0 = Instant::now();
    let mut e = env();
    let mut core = CallCore::new(t0, config(t0, false, None), nodes(3), &mut e);
    let mut now = t0;
    let mut starts = Vec::new();
    let mut waits = Vec::new();
    loop {
        let actions = drain(&mut core, now, &mut e);
        if let Some(Action::Done(r)) = actions.last() {
            let s = r.clone().unwrap_err();
            assert_eq!(s.code, Code::Unavailable);
            break;
        }
        let s = started(&actions);
        if let [(attempt, node)] = s.as_slice() {
            starts.push(*node);
            core.handle_result(now, *attempt, unavailable(), &mut e);
            continue;
        }
        let at = core.poll_timeout().unwrap();
        waits.push(at - now);
        now = at;
    }
    assert_eq!(starts.len(), 5);
    // Untried nodes first: the first three attempts go to three nodes.
    let mut first: Vec<_> = starts[..3].to_vec();
    first.sort();
    first.dedup();
    assert_eq!(first.len(), 3);
    // Retry n waits in [0, 10 ms * 2^(n-1)).
    assert_eq!(waits.len(), 4);
    for (n, w) in waits.iter().enumerate() {
        assert!(
            *w < Duration::from_millis(10 << n),
            "retry {}: {w:?}",
            n + 1
        );
    }
}

#[test]
fn non_retryable_codes_end_the_call_at_once() {
    let t0 = Instant::now();
    let mut e = env();
    let mut core = CallCore::new(t0, config(t0, true, None), nodes(2), &mut e);
    let s = started(&drain(&mut core, t0, &mut e));
    core.handle_result(
        t0,
        s[0].0,
        Err(Status::new(Code::InvalidArgument, "no")),
        &mut e,
    );
    assert!(matches!(
        drain(&mut core, t0, &mut e).as_slice(),
        [Action::Done(Err(s))] if s.code == Code::InvalidArgument
    ));
    assert_eq!(core.attempts(), 1);
}

#[test]
fn a_transport_failure_of_a_non_idempotent_call_is_not_retried() {
    let t0 = Instant::now();
    let mut e = env();
    let mut core = CallCore::new(t0, config(t0, false, None), nodes(2), &mut e);
    let s = started(&drain(&mut core, t0, &mut e));
    core.handle_result(
        t0,
        s[0].0,
        Err(Status::new(Code::Transport, "reset")),
        &mut e,
    );
    assert!(matches!(
        drain(&mut core, t0, &mut e).as_slice(),
        [Action::Done(Err(s))] if s.code == Code::Transport
    ));
    // Idempotent: retried.
    let mut core = CallCore::new(t0, config(t0, true, None), nodes(2), &mut e);
    let s = started(&drain(&mut core, t0, &mut e));
    core.handle_result(
        t0,
        s[0].0,
        Err(Status::new(Code::Transport, "reset")),
        &mut e,
    );
    assert!(drain(&mut core, t0, &mut e).is_empty());
    assert!(core.poll_timeout().is_some());
}

#[test]
fn server_pushback_sets_the_next_attempt_time() {
    let t0 = Instant::now();
    let mut e = env();
    let mut core = CallCore::new(t0, config(t0, false, None), nodes(1), &mut e);
    let s = started(&drain(&mut core, t0, &mut e));
    let busy = Status::new(Code::ResourceExhausted, "queue full")
        .with_retry_after(Duration::from_millis(300));
    core.handle_result(t0, s[0].0, Err(busy), &mut e);
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_millis(300)));
    assert!(drain(&mut core, t0 + Duration::from_millis(299), &mut e).is_empty());
    let s = started(&drain(&mut core, t0 + Duration::from_millis(300), &mut e));
    assert_eq!(s.len(), 1);
    // Pushback past the deadline: give up now.
    let mut short = config(t0, false, None);
    short.deadline = Deadline::after(t0, Duration::from_millis(100));
    let mut core = CallCore::new(t0, short, nodes(1), &mut e);
    let s = started(&drain(&mut core, t0, &mut e));
    let busy = Status::new(Code::ResourceExhausted, "queue full")
        .with_retry_after(Duration::from_millis(300));
    core.handle_result(t0, s[0].0, Err(busy), &mut e);
    assert!(matches!(
        drain(&mut core, t0, &mut e).as_slice(),
        [Action::Done(Err(s))] if s.code == Code::ResourceExhausted
    ));
}

#[test]
fn the_throttle_stops_retries_to_a_failing_target() {
    let t0 = Instant::now();
    let mut e = env();
    e.throttles = Throttles::new(ThrottleConfig {
        max_tokens: 4.0,
        token_ratio: 0.1,
    });
    // Two failed attempts take 4 -> 2 tokens: not above half.
    let mut core = CallCore::new(t0, config(t0, false, None), nodes(3), &mut e);
    let s = started(&drain(&mut core, t0, &mut e));
    core.handle_result(t0, s[0].0, unavailable(), &mut e);
    let at = core.poll_timeout().unwrap();
    let s = started(&drain(&mut core, at, &mut e));
    core.handle_result(at, s[0].0, unavailable(), &mut e);
    assert!(matches!(
        drain(&mut core, at, &mut e).as_slice(),
        [Action::Done(Err(s))] if s.code == Code::Unavailable
    ));
    assert_eq!(core.attempts(), 2);
    assert!(!e.throttles.allows_retry("svc"));
}

#[test]
fn the_deadline_ends_the_call_with_timeout_and_cancels_attempts() {
    let t0 = Instant::now();
    let mut e = env();
    let mut cfg = config(t0, false, None);
    cfg.deadline = Deadline::after(t0, Duration::from_millis(50));
    let mut core = CallCore::new(t0, cfg, nodes(1), &mut e);
    assert_eq!(started(&drain(&mut core, t0, &mut e)).len(), 1);
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_millis(50)));
    let end = drain(&mut core, t0 + Duration::from_millis(50), &mut e);
    assert_eq!(end[0], Action::Cancel { attempt: 0 });
    assert!(matches!(&end[1], Action::Done(Err(s)) if s.code == Code::Timeout));
}

#[test]
fn an_idempotent_call_is_hedged_to_another_node_and_the_loser_cancelled() {
    let t0 = Instant::now();
    let mut e = env();
    let hedge = HedgePolicy {
        delay: Duration::from_millis(20),
        max_attempts: 2,
    };
    let mut core = CallCore::new(t0, config(t0, true, Some(hedge)), nodes(2), &mut e);
    let first = started(&drain(&mut core, t0, &mut e));
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_millis(20)));
    assert!(drain(&mut core, t0 + Duration::from_millis(19), &mut e).is_empty());
    let t20 = t0 + Duration::from_millis(20);
    let second = started(&drain(&mut core, t20, &mut e));
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].1, second[0].1, "the hedge goes to another node");
    // No third copy.
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    core.handle_result(t20, second[0].0, Ok(()), &mut e);
    assert_eq!(
        drain(&mut core, t20, &mut e),
        vec![Action::Cancel { attempt: 0 }, Action::Done(Ok(1))]
    );
    // A late answer of the loser changes nothing.
    core.handle_result(t20, 0, Ok(()), &mut e);
    assert!(drain(&mut core, t20, &mut e).is_empty());
}

#[test]
fn a_non_idempotent_call_is_never_hedged() {
    let t0 = Instant::now();
    let mut e = env();
    let hedge = HedgePolicy {
        delay: Duration::from_millis(1),
        max_attempts: 5,
    };
    let mut core = CallCore::new(t0, config(t0, false, Some(hedge)), nodes(3), &mut e);
    let mut starts = started(&drain(&mut core, t0, &mut e)).len();
    let mut now = t0;
    // Step through the whole deadline: only the first attempt ever starts.
    while let Some(at) = core.poll_timeout() {
        now = at;
        starts += started(&drain(&mut core, now, &mut e)).len();
    }
    assert_eq!(starts, 1);
    assert!(now >= t0 + Duration::from_secs(10));
    assert!(core.is_done());
}

#[test]
fn open_breakers_are_skipped_and_all_open_is_breaker_open() {
    let t0 = Instant::now();
    let mut e = env();
    e.breakers = Breakers::new(BreakerConfig {
        failure_threshold: 1,
        ..BreakerConfig::default()
    });
    e.breakers.record(t0, id(1), true);
    let mut core = CallCore::new(t0, config(t0, true, None), nodes(2), &mut e);
    let s = started(&drain(&mut core, t0, &mut e));
    assert_eq!(s[0].1, id(2));
    core.handle_result(t0, s[0].0, Err(Status::new(Code::Transport, "x")), &mut e);
    // Both open now: the retry finds no node and the call ends.
    let at = core.poll_timeout().unwrap();
    let end = drain(&mut core, at, &mut e);
    assert!(matches!(end.as_slice(), [Action::Done(Err(s))] if s.code == Code::Transport));
    let mut core = CallCore::new(t0, config(t0, true, None), nodes(2), &mut e);
    assert!(matches!(
        drain(&mut core, t0, &mut e).as_slice(),
        [Action::Done(Err(s))] if s.code == Code::BreakerOpen
    ));
}
