//! Wire codecs: the frames and messages nodes exchange, parsed and emitted
//! without I/O. Every decoder returns a typed error and never panics.

pub mod probe;
pub mod traversal;
