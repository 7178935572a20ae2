//! # relay-proto: the data every layer of relay-node agrees on
//!
//! This crate holds identities ([`NodeId`], [`SecretKey`], [`NetworkKey`]),
//! the join [`Ticket`] and the text codecs they use, the wire messages of
//! the transport ([`wire`]), the canonical encoding of signed data
//! ([`signing`]), the local API's frame stream ([`frame_stream`]) and the
//! relay ledger's signed entries and replication messages ([`ledger`]), and
//! the permission tokens that gate channels ([`token`]). It
//! is pure data: it parses, emits, signs and verifies.
//!
//! It must not know about sockets, async runtimes, QUIC, files or clocks.
//! Everything here is deterministic and safe to feed untrusted bytes: every
//! decoder returns a typed error and never panics.

mod base32;
mod error;
pub mod frame_stream;
mod keys;
pub mod ledger;
mod node_id;
mod prepared_nonce;
pub mod signing;
mod ticket;
pub mod token;
mod valid_keys;
pub mod wire;

pub use base32::{decode as base32_decode, encode as base32_encode, Base32Error};
pub use error::{ParseNodeIdError, ParseTicketError};
pub use keys::{NetworkKey, SecretKey};
pub use node_id::NodeId;
pub use prepared_nonce::{PreparedKey, PreparedNonce};
pub use ticket::Ticket;
