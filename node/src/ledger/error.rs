//! The ledger's errors, each with a stable kind printed first.

use std::path::PathBuf;

use relay_proto::ledger::EntryError;
use relay_proto::NodeId;

/// Why a ledger operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The database file is damaged or not a ledger. Nothing was written to
    /// it. Recovery (docs/LEDGER.md): stop the node, move the file aside,
    /// start again; the node re-syncs every feed from its peers.
    #[error(
        "ledger-corrupt: {path}: {detail}; stop the node, move the file aside and start it again \
         to re-sync the ledger from peers (docs/LEDGER.md)"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The disk is full: the operation was not committed, the ledger is
    /// unchanged.
    #[error("ledger-disk-full: {0}; nothing was written, free space and retry")]
    DiskFull(String),
    /// Another I/O failure; the operation was not committed.
    #[error("ledger-io: {0}")]
    Io(String),
    /// Another process holds the database.
    #[error("ledger-busy: {0} is open in another process")]
    Busy(PathBuf),
    /// The ledger was shut down.
    #[error("ledger-closed: the ledger is shut down")]
    Closed,
    /// A body or entry that cannot be written.
    #[error("invalid-entry: {0}")]
    Entry(#[from] EntryError),
    /// This node's own feed is flagged as forked; appends stop until an
    /// operator acts.
    #[error("ledger-forked: the feed of {0} is forked; see `ledger verify` and docs/LEDGER.md")]
    Forked(NodeId),
}

impl LedgerError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Corrupt { .. } => "ledger-corrupt",
            Self::DiskFull(_) => "ledger-disk-full",
            Self::Io(_) => "ledger-io",
            Self::Busy(_) => "ledger-busy",
            Self::Closed => "ledger-closed",
            Self::Entry(_) => "invalid-entry",
            Self::Forked(_) => "ledger-forked",
        }
    }

    /// Maps a redb error, telling a full disk and a damaged file apart.
    pub(crate) fn from_redb(path: &std::path::Path, err: impl Into<redb::Error>) -> Self {
        let err: redb::Error = err.into();
        match err {
            redb::Error::Corrupted(detail) => Self::Corrupt {
                path: path.to_owned(),
                detail,
            },
            redb::Error::UpgradeRequired(v) => Self::Corrupt {
                path: path.to_owned(),
                detail: format!("file format version {v} is not readable by this build"),
            },
            redb::Error::RepairAborted => Self::Corrupt {
                path: path.to_owned(),
                detail: "repair aborted".into(),
            },
            redb::Error::DatabaseAlreadyOpen => Self::Busy(path.to_owned()),
            redb::Error::Io(io) => Self::from_io(path, &io),
            redb::Error::PreviousIo => {
                Self::Io("an earlier write failed; reopen the ledger".into())
            }
            other => Self::Io(other.to_string()),
        }
    }

    pub(crate) fn from_io(path: &std::path::Path, io: &std::io::Error) -> Self {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        if io.kind() == std::io::ErrorKind::StorageFull
            || io.kind() == std::io::ErrorKind::QuotaExceeded
            || matches!(io.raw_os_error(), Some(ENOSPC | EDQUOT))
        {
            Self::DiskFull(format!("{}: {io}", path.display()))
        } else if io.kind() == std::io::ErrorKind::UnexpectedEof
            || io.kind() == std::io::ErrorKind::InvalidData
        {
            Self::Corrupt {
                path: path.to_owned(),
                detail: io.to_string(),
            }
        } else {
            Self::Io(format!("{}: {io}", path.display()))
        }
    }

    pub(crate) fn corrupt(path: &std::path::Path, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_owned(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_and_damage_are_told_apart() {
        let p = std::path::Path::new("/d/ledger.redb");
        let full = std::io::Error::from_raw_os_error(28);
        assert_eq!(LedgerError::from_io(p, &full).kind(), "ledger-disk-full");
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(LedgerError::from_io(p, &eof).kind(), "ledger-corrupt");
        let e = LedgerError::from_redb(p, redb::StorageError::Corrupted("bad page".into()));
        assert!(e
            .to_string()
            .starts_with("ledger-corrupt: /d/ledger.redb: bad page"));
    }
}
