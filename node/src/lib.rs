//! # relay-node: the node process
//!
//! This crate composes a running node out of the lower layers and gives the
//! operator a CLI. It owns:
//!
//! - the **data directory** ([`datadir`]): identity and network key
//!   ([`keystore`], written atomically with mode 0600 by [`atomic`]),
//!   bootstrap peers from a join ticket ([`bootstrap`]), the single-instance
//!   lock ([`lock`]), `run`'s checks before any side effect
//!   ([`preflight`]), and the peers to dial again after a restart
//!   ([`recent_peers`]: the sans-IO core; [`recent_peers_store`],
//!   [`recent_peers_driver`]);
//! - the **verbs**: [`init`], [`invite`], [`run`], and the local API
//!   clients behind `status`, `netcheck`, `ping`, `members` and `ledger`
//!   ([`app`] wires them to
//!   [`cli`]);
//! - the **local API** ([`api`]): HTTP/1.1 over `DIR/api.sock` for the CLI
//!   and for users' programs (docs/LOCAL_API.md);
//! - the **subsystems** a running node is composed of ([`subsystem`]: what
//!   each registers, and the owner of the node's tasks; [`subsystems`]: the
//!   list), and the state it reports ([`service`]);
//! - the **relay ledger** ([`ledger`]): the redb store in the data dir,
//!   group-committed appends, retention, and the sans-IO replication core,
//!   run by the `ledger` subsystem; the `members` and `ledger` verbs print
//!   it ([`ledger_view`]);
//! - the **stream protocols** a node speaks to its peers, routed by their
//!   first byte ([`protocols`]; ping today);
//! - **permission tokens**: the `token` verbs ([`token_cmd`]) over
//!   `relay_proto::token`, and the live set of revoked tokens a running
//!   node builds from the ledger ([`revocations_set`], [`revocations`]),
//!   fed by the `revocations` subsystem ([`revocations_feed`]);
//! - the **operator surface**: the read-only HTTP endpoint ([`http`]),
//!   Prometheus metrics ([`metrics`]), `netcheck` ([`netcheck`]),
//!   `ping --until-direct` ([`until_direct`]) and the traversal state they
//!   and `status` show ([`traversal_view`]).
//!
//! ## What this layer must not know about
//!
//! How bytes are encrypted or carried: the Noise handshake, QUIC internals,
//! the path socket, NAT traversal and relaying all stay inside
//! `relay-transport`, which this crate uses only through its public API
//! (`Transport`, `PeerInfo`, `PeerEvent`, streams). Wire formats of
//! identities and tickets belong to `relay-proto`.

pub mod api;
pub mod app;
pub mod args;
pub mod atomic;
pub mod bootstrap;
pub mod channel_cmd;
pub mod cli;
pub mod datadir;
pub mod http;
pub mod init;
pub mod invite;
pub mod keystore;
pub mod ledger;
pub mod ledger_view;
pub mod lifetime_view;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod netcheck;
pub mod port_map_view;
pub mod preflight;
pub mod protocols;
pub mod recent_peers;
pub mod recent_peers_driver;
pub mod recent_peers_store;
pub mod revocations;
pub mod revocations_feed;
pub mod revocations_set;
pub mod rpc_cmd;
pub mod run;
pub mod service;
pub mod status;
pub mod subsystem;
pub mod subsystems;
pub mod timefmt;
pub mod token_cmd;
pub mod token_cmd_args;
pub mod token_cmd_revocations;
pub mod token_cmd_view;
pub mod traversal_view;
pub mod until_direct;

#[cfg(test)]
mod testutil;
