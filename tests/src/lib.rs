//! Shared helpers for the cross-crate and multi-process tests in `tests/`:
//! locating the `relay-node` binary ([`bin_path`]), unique temp directories
//! ([`tempdir`]), node processes that are always killed ([`process`]) and the
//! network-namespace NAT lab ([`lab`]).
//! The tests themselves live in `tests/tests/`.

pub mod bin_path;
pub mod lab;
pub mod process;
pub mod tempdir;

pub use bin_path::relay_node_bin;
pub use process::{run_cli, CliOutput, NodeProcess};
pub use tempdir::TempDir;
