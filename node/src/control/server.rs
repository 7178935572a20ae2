//! The control socket server: binds `DIR/control.sock` and answers requests
//! with a [`ControlHandler`].

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::codec::{read_line, LineError};
use super::{Request, Response, MAX_LINE};

/// Most control connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Answers control requests.
pub trait ControlHandler: Send + Sync + 'static {
    /// Handles one request.
    fn handle(&self, request: Request) -> BoxFuture<'_, Response>;
}

/// A bound control socket; removes its file when dropped.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path` with mode 0600, replacing a stale socket file. Call only
    /// while holding the run lock: any existing file is then stale.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::debug!(path = %path.display(), "removed stale control socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves connections until the returned future is dropped; dropping it
    /// also drops every open connection.
    pub async fn serve(&self, handler: Arc<dyn ControlHandler>) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut tasks = JoinSet::new();
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            // Reap finished connections so the set stays small.
            while tasks.try_join_next().is_some() {}
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    tasks.spawn(async move {
                        serve_connection(stream, handler.as_ref()).await;
                        drop(permit);
                    });
                }
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers request lines on one connection until it closes.
async fn serve_connection(stream: UnixStream, handler: &dyn ControlHandler) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let (response, keep_going) = match read_line(&mut reader, MAX_LINE).await {
            Ok(None) => return,
            Ok(Some(line)) if line.trim().is_empty() => continue,
            Ok(Some(line)) => match serde_json::from_str::<Request>(&line) {
                Ok(request) => (handler.handle(request).await, true),
                Err(e) => (Response::error("bad-request", e.to_string()), true),
            },
            Err(LineError::Io(_)) => return,
            Err(e @ LineError::TooLong(_)) => (Response::error("too-long", e.to_string()), false),
            Err(e @ LineError::NotUtf8) => (Response::error("bad-request", e.to_string()), true),
        };
        let mut line = match serde_json::to_vec(&response) {
            Ok(line) => line,
            Err(_) => return,
        };
        line.push(b'\n');
        if write.write_all(&line).await.is_err() || !keep_going {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    struct Echo;
    impl ControlHandler for Echo {
        fn handle(&self, request: Request) -> BoxFuture<'_, Response> {
            Box::pin(async move {
                match request {
                    Request::Status => Response::ok(&serde_json::json!({"status": "fine"})),
                    Request::Ping { .. } | Request::Netcheck => {
                        Response::error("not-connected", "nobody")
                    }
                }
            })
        }
    }

    #[tokio::test]
    async fn answers_good_and_bad_requests() {
        let root = crate::testutil::temp_dir("ctl");
        let path = root.join("control.sock");
        std::fs::write(&path, b"stale").unwrap();
        let socket = ControlSocket::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let server = tokio::spawn(async move { socket.serve(Arc::new(Echo)).await });

        let stream = UnixStream::connect(&path).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"{\"op\":\"status\"}\nnot json\n\n{\"op\":\"status\"}\n")
            .await
            .unwrap();
        let r1: Response =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(r1.ok);
        let r2: Response =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(r2.error.unwrap().kind, "bad-request");
        let r3: Response =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(r3.ok);

        // An oversized line gets `too-long` and the connection is closed.
        let big = vec![b'x'; MAX_LINE + 10];
        write.write_all(&big).await.unwrap();
        let r4: Response =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(r4.error.unwrap().kind, "too-long");
        assert!(lines.next_line().await.unwrap().is_none());

        server.abort();
        let _ = server.await;
        // Dropping the socket removed its file.
        assert!(!path.exists());
        std::fs::remove_dir_all(root).unwrap();
    }
}
