//! Frame keys from a live quinn connection (the core derives them from
//! any exporter; see [`FrameKeys::from_exporter`]).

use super::auth::FrameKeys;

/// Frame keys of a connection.
pub trait ConnectionKeys: Sized {
    /// The keys of `conn`, or `None` before its handshake finished.
    fn from_connection(conn: &quinn::Connection) -> Option<Self>;
}

impl ConnectionKeys for FrameKeys {
    fn from_connection(conn: &quinn::Connection) -> Option<Self> {
        FrameKeys::from_exporter(|out, label, context| {
            conn.export_keying_material(out, label, context)
        })
    }
}
