//! Wire codecs: the frames and messages nodes exchange, parsed and emitted
//! without I/O. Every decoder returns a typed error and never panics.
//!
//! - [`relay`]: relay frames on the UDP port (first bytes `0x01`, `0x02`);
//! - [`control`]: the transport control channel carried in QUIC datagrams
//!   (prefix `0x00`; application datagrams use `0x01`);
//! - [`probe`]: traversal probes on the UDP port (first bytes `0x10`, `0x11`);
//! - [`traversal`]: traversal messages, one variant of the control channel;
//! - [`natpmp`], [`pcp`]: port-mapping requests to and responses from the
//!   default gateway (RFC 6886, RFC 6887);
//! - [`rpc`]: nRPC call frames on a call's stream, and the spec of a
//!   `service-registration` (docs/RPC.md).
//! - [`rpc_serve`]: the local API frames a peer process serves nRPC
//!   calls with (docs/LOCAL_API.md).
//! - [`channels_stream`]: the local API frames a peer process subscribes
//!   and publishes with (docs/LOCAL_API.md).
//! - [`rpc_call`]: the local API frames a peer process makes a streaming
//!   nRPC call with (docs/LOCAL_API.md).
//! - [`rpc_calls`]: the local API frames a peer process makes many unary
//!   nRPC calls with over one connection (docs/LOCAL_API.md).
//! - [`channel`]: pub/sub channel frames (mux protocol id 3).

pub mod channel;
pub mod channels_stream;
pub mod control;
pub mod natpmp;
pub mod pcp;
pub mod probe;
pub mod relay;
pub mod rpc;
pub mod rpc_call;
pub mod rpc_calls;
pub mod rpc_serve;
pub mod traversal;
