//! The path socket: a quinn `AsyncUdpSocket` that shows quinn one stable
//! mapped address per peer and picks the real path underneath.
//!
//! STUB: being written.
