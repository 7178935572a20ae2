//! The pure parts of the path socket: the table that shows quinn one
//! stable mapped address per peer and keeps the real path behind it
//! ([`mapping`]), and the routing of packets by connection ID when a NAT
//! rebinds a peer ([`rebind`]). The socket itself, which does the I/O,
//! is `relay_transport::socket::PathSocket`.

mod kind;
pub mod mapping;
pub mod rebind;

pub use kind::PathKind;
pub use mapping::{is_mapped, Path};
