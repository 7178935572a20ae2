//! # relay-rpc: the nRPC call core
//!
//! nRPC lets a process call a named service anywhere in the mesh. This
//! crate is the part of it that decides: what a call's status is
//! ([`Status`], `kind: detail`), how long it may run ([`Deadline`]), which
//! node it goes to ([`pick`]), whether a failed attempt is retried and when
//! ([`retry`], gRFC A6), whether an idempotent call is hedged to a second
//! node ([`hedge`]), whether a peer's circuit is open ([`breaker`]), and
//! the latency figures services report ([`stats`]). [`call::CallCore`] ties
//! them together for one call.
//!
//! It is sans-IO: every method takes `now` and inputs and returns what to
//! do next (start an attempt, cancel one, wait until, done); randomness
//! comes from an injected [`Jitter`]. The node's `rpc` subsystem is the
//! driver: it opens the QUIC streams, writes the frames
//! (`relay_proto::wire::rpc`), reads the clock and feeds the results back.
//!
//! It must not know about sockets, QUIC, async runtimes, the ledger or the
//! clock.

pub mod breaker;
pub mod call;
pub mod deadline;
pub mod hedge;
pub mod jitter;
pub mod pick;
pub mod retry;
pub mod stats;
pub mod status;

pub use breaker::{Breaker, BreakerConfig, BreakerState, Breakers};
pub use call::{Action, AttemptId, CallConfig, CallCore, Resilience};
pub use deadline::Deadline;
pub use hedge::HedgePolicy;
pub use jitter::{Jitter, SplitMix64};
pub use pick::{Candidate, Path, Picker, Strategy};
pub use relay_proto::wire::rpc::Code;
pub use retry::{RetryPolicy, Throttle, ThrottleConfig, Throttles, MAX_ATTEMPTS};
pub use stats::{Latency, ServiceStats};
pub use status::{Status, NOT_SERVED};
