//! The NAT lab: real processes in Linux network namespaces joined by veth
//! pairs, with nftables NAT routers in between (see docs/LAB.md).
//!
//! - [`cmd`]: running `ip`/`nft`/`conntrack`, and [`LabError`];
//! - [`netns`]: namespaces and veth pairs;
//! - [`nat`]: NAT presets, loss and rebinding as nftables rulesets;
//! - [`block`]: blocking the direct path between two sites;
//! - [`topology`]: building a [`Lab`] of public hosts and NATed sites;
//! - [`guard`]: serialization and teardown on drop, even on panic;
//! - [`skip`]: whether the lab can run here, and the `SKIPPED` line;
//! - [`udp`]: the `lab-udp` helper processes used to observe NATs;
//! - [`node`]: real `relay-node` processes inside lab namespaces;
//! - [`public`]: the relay and the second observer on the public hosts;
//! - [`stream`]: the `lab-stream` helper (a transport embedding the
//!   library) streaming numbered words between two sites;
//! - [`pingwatch`]: `ping --until-direct` with each pong timestamped;
//! - [`logtime`]: event times read back from a node's log;
//! - [`miniupnpd`]: Debian's miniupnpd (UPnP-IGD, NAT-PMP, PCP) in a lab
//!   router;
//! - [`mesh`]: the mesh users build: the public side and a node per site
//!   joined with the relay's ticket;
//! - [`cli_child`]: long-running CLI verbs (`sub`, `pub -`) read as they
//!   print;
//! - [`channel_check`]: channel tokens and lists through the CLI, and the
//!   in-order, exactly-once check of what a subscriber got.

pub mod block;
pub mod channel_check;
pub mod cli_child;
pub mod cmd;
pub mod guard;
pub mod logtime;
pub mod mesh;
pub mod miniupnpd;
pub mod nat;
pub mod netns;
pub mod node;
pub mod pingwatch;
pub mod public;
pub mod skip;
pub mod stream;
pub mod topology;
pub mod udp;

pub use cmd::{LabError, LabResult};
pub use nat::NatPreset;
pub use netns::Netns;
pub use node::LabNode;
pub use stream::{StreamProc, StreamSetup};
pub use topology::{Lab, PublicHost, Site};
pub use udp::{Received, UdpProc};
