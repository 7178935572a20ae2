//! Write-readiness for the path socket: one [`quinn::UdpPoller`] per
//! interested quinn task, each holding its own readiness future so every
//! waiting task gets its own wake-up.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

type WritableFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>;

/// Polls the real UDP socket for writability.
pub(super) struct WritePoller {
    io: Arc<tokio::net::UdpSocket>,
    pending: Option<WritableFuture>,
}

impl WritePoller {
    pub(super) fn new(io: Arc<tokio::net::UdpSocket>) -> Self {
        Self { io, pending: None }
    }
}

impl fmt::Debug for WritePoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritePoller")
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

impl quinn::UdpPoller for WritePoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let fut = this.pending.get_or_insert_with(|| {
            let io = this.io.clone();
            Box::pin(async move { io.writable().await })
        });
        let result = fut.as_mut().poll(cx);
        if result.is_ready() {
            this.pending = None;
        }
        result
    }
}
