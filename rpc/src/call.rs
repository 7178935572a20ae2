//! [`CallCore`]: one call's attempts, sans-IO.
//!
//! The driver creates a core with the call's [`CallConfig`] and the nodes
//! serving the service, then loops: [`CallCore::poll`] yields
//! [`Action`]s (start an attempt on a node, cancel one, done); the driver
//! performs them and reports each attempt's outcome with
//! [`CallCore::handle_result`]; between outcomes it sleeps until
//! [`CallCore::poll_timeout`]. Shared state (breakers, throttles, the
//! picker's position, the jitter source) lives in [`Resilience`], passed
//! to every method.
//!
//! Rules:
//! - nobody serves the service: `no-responders` at once;
//! - every serving node's breaker is open: `breaker-open` at once;
//! - a success ends the call and cancels the other attempts;
//! - a failure is retried per [`RetryPolicy`] (at most 5 attempts, backoff,
//!   throttle, pushback, never past the deadline), on a node not tried yet
//!   when there is one;
//! - an idempotent call with a [`HedgePolicy`] sends another copy to a
//!   different node when the first has no answer after the hedging delay
//!   (or failed with a retryable code); a call not marked idempotent is
//!   never hedged;
//! - the deadline ends the call with `timeout`, cancelling what runs.

use std::collections::VecDeque;
use std::time::Instant;

use relay_proto::wire::rpc::Code;
use relay_proto::NodeId;

use crate::breaker::Breakers;
use crate::deadline::Deadline;
use crate::hedge::HedgePolicy;
use crate::jitter::Jitter;
use crate::pick::{Candidate, Picker, Strategy};
use crate::retry::{RetryPolicy, Throttles};
use crate::status::Status;

/// An attempt's number within its call (0, 1, ...).
pub type AttemptId = u32;

/// What one call asks for (borrowed from the caller for the call's
/// length: a call allocates none of it).
#[derive(Debug, Clone, Copy)]
pub struct CallConfig<'a> {
    /// The service (the throttle's target).
    pub service: &'a str,
    /// When the call must be over.
    pub deadline: Deadline,
    /// Whether it may run more than once.
    pub idempotent: bool,
    /// Retries.
    pub retry: &'a RetryPolicy,
    /// Hedging (ignored unless `idempotent`).
    pub hedge: Option<HedgePolicy>,
    /// How nodes are picked.
    pub strategy: Strategy,
}

/// State shared by calls: breakers per peer, throttles per service, the
/// picker and the jitter source.
#[derive(Debug)]
pub struct Resilience<J> {
    /// Circuit breakers.
    pub breakers: Breakers,
    /// Retry throttles.
    pub throttles: Throttles,
    /// Node picking.
    pub picker: Picker,
    /// Backoff randomness.
    pub jitter: J,
}

impl<J: Jitter> Resilience<J> {
    /// Defaults, with `jitter`.
    pub fn new(jitter: J) -> Self {
        Self {
            breakers: Breakers::default(),
            throttles: Throttles::default(),
            picker: Picker::new(),
            jitter,
        }
    }
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a stream to `node` and run attempt `attempt` on it.
    Start {
        /// The attempt.
        attempt: AttemptId,
        /// The node.
        node: NodeId,
    },
    /// Cancel attempt `attempt` (reset its stream).
    Cancel {
        /// The attempt.
        attempt: AttemptId,
    },
    /// The call is over: the attempt whose answer counts, or the status.
    Done(Result<AttemptId, Status>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Retry,
    Hedge,
}

#[derive(Debug, Clone)]
struct Attempt {
    node: NodeId,
    live: bool,
}

/// One call's attempts. See the module docs.
#[derive(Debug)]
pub struct CallCore<'a> {
    config: CallConfig<'a>,
    candidates: Vec<Candidate>,
    attempts: Vec<Attempt>,
    out: VecDeque<Action>,
    next: Option<(Instant, Next)>,
    retries_since_pushback: u32,
    last_failure: Option<Status>,
    done: bool,
}

impl<'a> CallCore<'a> {
    /// A call at `now` to one of `candidates`; its first action (start, or
    /// done at once) is ready for [`Self::poll`].
    pub fn new<J: Jitter>(
        now: Instant,
        config: CallConfig<'a>,
        candidates: Vec<Candidate>,
        env: &mut Resilience<J>,
    ) -> Self {
        let mut core = Self {
            config,
            candidates,
            attempts: Vec::new(),
            out: VecDeque::new(),
            next: None,
            retries_since_pushback: 0,
            last_failure: None,
            done: false,
        };
        if core.candidates.is_empty() {
            let detail = format!("nobody serves {}", core.config.service);
            core.finish(env, Err(Status::new(Code::NoResponders, detail)));
        } else if core.config.deadline.expired(now) {
            core.finish(
                env,
                Err(Status::new(Code::Timeout, "deadline already passed")),
            );
        } else if !core.start(now, env, false) {
            core.give_up(env);
        }
        core
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> usize {
        self.attempts.len()
    }

    /// The node attempt `id` went to.
    pub fn node(&self, id: AttemptId) -> Option<NodeId> {
        self.attempts.get(id as usize).map(|a| a.node)
    }

    /// Whether the call is over (its `Done` may still be queued).
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn hedging(&self) -> Option<HedgePolicy> {
        self.config.hedge.filter(|_| self.config.idempotent)
    }

    fn budget(&self) -> usize {
        let retry = self.config.retry.attempts();
        let hedge = self.hedging().map_or(1, |h| h.attempts());
        retry.max(hedge) as usize
    }

    fn live(&self) -> impl Iterator<Item = (AttemptId, &Attempt)> {
        self.attempts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.live)
            .map(|(i, a)| (i as AttemptId, a))
    }

    /// Starts an attempt on a node; a hedge needs a node not tried yet.
    fn start<J: Jitter>(&mut self, now: Instant, env: &mut Resilience<J>, hedge: bool) -> bool {
        if self.attempts.len() >= self.budget() {
            return false;
        }
        let tried: Vec<NodeId> = self.attempts.iter().map(|a| a.node).collect();
        let strategy = self.config.strategy;
        let mut node = env
            .picker
            .pick(now, strategy, &self.candidates, &tried, &env.breakers);
        if node.is_none() && !hedge {
            node = env
                .picker
                .pick(now, strategy, &self.candidates, &[], &env.breakers);
        }
        let Some(node) = node else {
            return false;
        };
        if !env.breakers.acquire(now, &node) {
            return false;
        }
        let attempt = self.attempts.len() as AttemptId;
        self.attempts.push(Attempt { node, live: true });
        self.out.push_back(Action::Start { attempt, node });
        self.next = match self.hedging() {
            Some(h) if self.attempts.len() < h.attempts() as usize => {
                Some((now + h.delay, Next::Hedge))
            }
            _ => None,
        };
        true
    }

    /// No attempt runs and none can start: the last failure, or why not.
    fn give_up<J: Jitter>(&mut self, env: &mut Resilience<J>) {
        if self.live().next().is_some() {
            return;
        }
        let status = match self.last_failure.take() {
            Some(s) => s,
            None => {
                let detail = format!(
                    "every node serving {} has an open circuit breaker",
                    self.config.service
                );
                Status::new(Code::BreakerOpen, detail)
            }
        };
        self.finish(env, Err(status));
    }

    fn finish<J: Jitter>(&mut self, env: &mut Resilience<J>, result: Result<AttemptId, Status>) {
        let cancel: Vec<(AttemptId, NodeId)> = self.live().map(|(i, a)| (i, a.node)).collect();
        for (attempt, node) in cancel {
            if let Some(a) = self.attempts.get_mut(attempt as usize) {
                a.live = false;
            }
            env.breakers.release(&node);
            self.out.push_back(Action::Cancel { attempt });
        }
        self.next = None;
        self.done = true;
        self.out.push_back(Action::Done(result));
    }

    /// Attempt `attempt` ended at `now` with `result`.
    pub fn handle_result<J: Jitter>(
        &mut self,
        now: Instant,
        attempt: AttemptId,
        result: Result<(), Status>,
        env: &mut Resilience<J>,
    ) {
        if self.done {
            return;
        }
        let Some(a) = self.attempts.get_mut(attempt as usize).filter(|a| a.live) else {
            return;
        };
        a.live = false;
        let node = a.node;
        let service = self.config.service;
        let status = match result {
            Ok(()) => {
                env.breakers.record(now, node, false);
                env.throttles.record(service, true, false);
                self.finish(env, Ok(attempt));
                return;
            }
            Err(s) => s,
        };
        env.breakers.record(now, node, status.is_node_failure());
        let retryable_code = self.config.retry.retryable.contains(&status.code);
        env.throttles.record(service, false, retryable_code);
        let may_retry = self.config.retry.retryable(&status, self.config.idempotent);
        if !may_retry {
            self.finish(env, Err(status));
            return;
        }
        let pushback = status.retry_after;
        self.last_failure = Some(status);
        if self.attempts.len() >= self.budget() || !env.throttles.allows_retry(service) {
            self.next = None;
            self.give_up(env);
            return;
        }
        let delay = match pushback {
            Some(d) => {
                self.retries_since_pushback = 0;
                d
            }
            None if self.hedging().is_some() && self.live().next().is_some() => {
                // Another copy still runs: send the next one now.
                std::time::Duration::ZERO
            }
            None => {
                self.retries_since_pushback += 1;
                self.config
                    .retry
                    .backoff(self.retries_since_pushback, &mut env.jitter)
            }
        };
        let at = now + delay;
        if self.config.deadline.instant().is_some_and(|d| at >= d) {
            self.next = None;
            self.give_up(env);
            return;
        }
        self.next = Some((at, Next::Retry));
    }

    /// The caller cancelled the call at `now`.
    pub fn cancel<J: Jitter>(&mut self, env: &mut Resilience<J>) {
        if !self.done {
            self.finish(
                env,
                Err(Status::new(Code::Cancelled, "cancelled by the caller")),
            );
        }
    }

    /// The next action at `now`, if any.
    pub fn poll<J: Jitter>(&mut self, now: Instant, env: &mut Resilience<J>) -> Option<Action> {
        if let Some(a) = self.out.pop_front() {
            return Some(a);
        }
        if self.done {
            return None;
        }
        if self.config.deadline.expired(now) {
            let detail = match &self.last_failure {
                Some(s) => format!(
                    "deadline passed after {} attempts; last: {s}",
                    self.attempts.len()
                ),
                None => format!("deadline passed after {} attempts", self.attempts.len()),
            };
            self.finish(env, Err(Status::new(Code::Timeout, detail)));
            return self.out.pop_front();
        }
        if let Some((at, kind)) = self.next {
            if now >= at {
                self.next = None;
                let started = self.start(now, env, kind == Next::Hedge);
                if !started && kind == Next::Retry {
                    self.give_up(env);
                }
            }
        }
        self.out.pop_front()
    }

    /// When to poll again without an outcome (the next retry or hedge, or
    /// the deadline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let next = self.next.map(|(at, _)| at);
        match (next, self.config.deadline.instant()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
