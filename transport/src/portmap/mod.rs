//! Port mapping on the async side. The sans-IO machine and its codecs are
//! `relay_transport_core::portmap`, re-exported here; this module adds
//! the default gateway lookup ([`gateway`], which reads
//! `/proc/net/route`) and the driver that runs the machine (its sockets,
//! its HTTP exchanges and its clock).

pub(crate) mod driver;
pub mod gateway;

pub use relay_transport_core::portmap::*;
