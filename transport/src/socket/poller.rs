//! Write-readiness for the path socket: one [`quinn::UdpPoller`] per
//! interested quinn task, each holding its own readiness future so every
//! waiting task gets its own wake-up.
//!
//! quinn asks the poller before every transmit, so the readiness future
//! lives in one reused allocation ([`ReusableBoxFuture`]) instead of a new
//! box per transmit (profile line "`WritePoller::poll_writable` →
//! `malloc`/`free`", docs/PERFORMANCE.md §9).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::sync::ReusableBoxFuture;

/// Polls the real UDP socket for writability.
pub(super) struct WritePoller {
    io: Arc<tokio::net::UdpSocket>,
    /// The readiness future; `armed` while it has not completed.
    pending: ReusableBoxFuture<'static, io::Result<()>>,
    armed: bool,
}

/// Resolves once `io` is writable.
async fn writable(io: Arc<tokio::net::UdpSocket>) -> io::Result<()> {
    io.writable().await
}

impl WritePoller {
    pub(super) fn new(io: Arc<tokio::net::UdpSocket>) -> Self {
        let pending = ReusableBoxFuture::new(writable(io.clone()));
        Self {
            io,
            pending,
            armed: false,
        }
    }
}

impl fmt::Debug for WritePoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritePoller")
            .field("pending", &self.armed)
            .finish()
    }
}

impl quinn::UdpPoller for WritePoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.armed {
            // Same future type each time: the allocation is reused.
            this.pending.set(writable(this.io.clone()));
            this.armed = true;
        }
        let result = this.pending.poll(cx);
        if result.is_ready() {
            this.armed = false;
        }
        result
    }
}
