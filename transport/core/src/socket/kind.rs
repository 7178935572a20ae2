//! The kind of a peer's path, as reported upward.

/// Which kind of path carries a peer's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// A known address, reached directly.
    Direct,
    /// Through a relay node.
    Relayed,
    /// No usable path.
    None,
}

impl PathKind {
    /// Stable text: "direct" | "relayed" | "none".
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Relayed => "relayed",
            Self::None => "none",
        }
    }
}
