//! The relay ledger's data: signed, hash-chained entries in per-origin
//! feeds ([`entry`]), the kinds and their bodies ([`body`]), the canonical
//! codec they share ([`codec`]) and the replication messages ([`wire`]).
//!
//! Pure data like the rest of this crate: storage and replication live in
//! the node. docs/LEDGER.md describes the whole ledger.

pub mod body;
pub mod codec;
pub mod entry;
pub mod membership;
pub mod wire;

pub use body::{Body, EntryKind, RetentionClass};
pub use entry::{Entry, EntryError, EntryHash};
pub use membership::MemberProof;
pub use wire::{LedgerMsg, LedgerMsgError, VectorItem};
