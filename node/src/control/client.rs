//! The control socket client used by CLI verbs (blocking; one request per
//! call, several calls per connection).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::de::DeserializeOwned;
use thiserror::Error;

use super::{Request, Response, MAX_LINE};
use crate::datadir::DataDir;

/// How long the CLI waits for any single answer.
const READ_TIMEOUT: Duration = Duration::from_secs(90);

/// A control request failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No node is serving the data dir.
    #[error(
        "not-running: no relay-node is running for data dir {dir} (start it with relay-node run)"
    )]
    NotRunning {
        /// The data directory.
        dir: String,
    },
    /// The node answered with an error; printed as the node's own
    /// `kind: detail`.
    #[error("{kind}: {detail}")]
    Remote {
        /// Stable kind from the node.
        kind: String,
        /// Detail from the node.
        detail: String,
    },
    /// The answer could not be understood.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The socket failed.
    #[error("io: control socket: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// The stable kind.
    pub fn kind(&self) -> &str {
        match self {
            Self::NotRunning { .. } => "not-running",
            Self::Remote { kind, .. } => kind,
            Self::Protocol(_) => "protocol",
            Self::Io(_) => "io",
        }
    }
}

/// A connection to a running node.
#[derive(Debug)]
pub struct ControlClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    /// Connects to the node serving `dir`.
    pub fn connect(dir: &DataDir) -> Result<Self, ClientError> {
        let not_running = || ClientError::NotRunning {
            dir: dir.to_string(),
        };
        let stream = match UnixStream::connect(dir.control_socket_path()) {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(not_running())
            }
            Err(e) => return Err(e.into()),
        };
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one request and decodes the successful result as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, ClientError> {
        let mut line =
            serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        let mut answer = Vec::new();
        let limit = u64::try_from(MAX_LINE)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        std::io::Read::take(&mut self.reader, limit).read_until(b'\n', &mut answer)?;
        if answer.is_empty() {
            return Err(ClientError::Protocol(
                "the node closed the connection".into(),
            ));
        }
        let response: Response = serde_json::from_slice(&answer)
            .map_err(|e| ClientError::Protocol(format!("bad response: {e}")))?;
        match (response.ok, response.result, response.error) {
            (true, Some(result), _) => serde_json::from_value(result)
                .map_err(|e| ClientError::Protocol(format!("bad result: {e}"))),
            (false, _, Some(error)) => Err(ClientError::Remote {
                kind: error.kind,
                detail: error.detail,
            }),
            _ => Err(ClientError::Protocol(
                "response has neither result nor error".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_is_not_running() {
        let root = crate::testutil::temp_dir("client");
        let dir = DataDir::new(&root);
        let err = ControlClient::connect(&dir).unwrap_err();
        assert_eq!(err.kind(), "not-running");
        assert!(err
            .to_string()
            .starts_with("not-running: no relay-node is running for data dir "));
        // A stale socket file with no listener is also not-running.
        let listener = std::os::unix::net::UnixListener::bind(dir.control_socket_path()).unwrap();
        drop(listener);
        assert_eq!(
            ControlClient::connect(&dir).unwrap_err().kind(),
            "not-running"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
