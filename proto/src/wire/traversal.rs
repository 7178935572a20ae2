//! Traversal control messages ([`TraversalMsg`]), carried inside the
//! transport control channel as the one `ControlMsg::Traversal` variant.
//!
//! Placeholder: the traversal work defines the real messages here. Until
//! then the enum has a single reserved variant so the control channel's
//! shape (and its fuzz target) is final.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A traversal control message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraversalMsg {
    /// Reserved; carries nothing and is ignored by receivers.
    Reserved,
}

/// Why a traversal message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TraversalMsgError {
    /// Not a valid postcard encoding of a message.
    #[error("malformed traversal message")]
    Malformed,
}

impl TraversalMsgError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-traversal-msg"
    }
}

impl TraversalMsg {
    /// Checks the bounds serde cannot express.
    pub fn validate(&self) -> Result<(), TraversalMsgError> {
        match self {
            Self::Reserved => Ok(()),
        }
    }
}
