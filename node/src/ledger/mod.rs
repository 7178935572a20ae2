//! The relay ledger: each node's signed, durable feed, replicated across
//! the mesh (docs/LEDGER.md). Entries and messages are `relay_proto::ledger`.
//!
//! - [`handle`] holds [`Ledger`], the node's handle: group-committed appends,
//!   reads, subscriptions, verification;
//! - [`follow`] holds [`Follower`]: read-then-follow with no gap or duplicate;
//! - [`store`] is the redb file `DIR/ledger.redb`, retention, verification;
//! - [`journal`] holds the store's own appends not yet in its index tables;
//! - [`nonce_pool`] prepares signing nonces for the node's own appends;
//! - [`replica`] is the sans-IO replication core ([`Replica`]);
//! - [`members`] lists members from their latest announcements;
//! - [`membership`] decides whose feeds are accepted ([`MeshMembers`]);
//! - [`limits`] holds per-peer replication limits;
//! - [`mem_store`] is an in-memory store for simulations;
//! - [`retention`] states the bounds per kind;
//! - [`cursor`] defines opaque, monotonic positions in this node's ledger;
//! - [`error`] holds [`LedgerError`].
//!
//! The node's `ledger` subsystem (`crate::subsystems::ledger`) owns a
//! [`Ledger`] and a [`Replica`] and feeds the replica connection events,
//! stream bytes and the clock.

pub mod cursor;
pub mod error;
pub mod follow;
pub mod handle;
pub mod journal;
pub mod limits;
pub mod mem_store;
pub mod members;
pub mod membership;
pub mod nonce_pool;
pub mod replica;
pub mod retention;
pub mod store;

pub use cursor::Cursor;
pub use error::LedgerError;
pub use follow::Follower;
pub use handle::Ledger;
pub use limits::PeerLimits;
pub use mem_store::MemStore;
pub use members::{members, Member};
pub use membership::{Membership, MeshMembers};
pub use nonce_pool::{LocalSigner, NoncePool};
pub use replica::{Lag, Replica, ReplicaConfig, ReplicaStats, ReplicaStore, Transmit};
pub use retention::Retention;
pub use store::{Filter, LedgerStats, OriginState, RangeRead, Store, StoredEntry, VerifyReport};
