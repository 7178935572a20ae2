//! The runtime the transport hands quinn: tokio's, except that quinn's
//! driver tasks (the endpoint's and each connection's) step back once
//! before they run each time they are woken.
//!
//! quinn wakes a connection's driver on every stream write. On a tokio
//! worker the woken driver takes the LIFO slot and runs as soon as the
//! writing task yields, before any other task that is ready: with many
//! streams writing at once (16 callers, one stream per request) each
//! write leaves in a packet and a `sendmsg` of its own, and the peer pays
//! a receive, a decryption and an ACK decision per packet. A driver that
//! first puts itself at the back of the run queue runs after those tasks
//! instead, and packs their frames into one packet (docs/PERFORMANCE.md
//! §9, "Syscalls per call").

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::{AsyncTimer, AsyncUdpSocket, Runtime};

/// quinn's tokio runtime with yielding drivers; see the module docs.
#[derive(Debug)]
pub(crate) struct DriverRuntime(pub(crate) quinn::TokioRuntime);

impl Runtime for DriverRuntime {
    fn new_timer(&self, at: std::time::Instant) -> Pin<Box<dyn AsyncTimer>> {
        self.0.new_timer(at)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.0.spawn(Box::pin(YieldFirst::new(future)));
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        self.0.wrap_udp_socket(socket)
    }

    fn now(&self) -> std::time::Instant {
        self.0.now()
    }
}

/// A driver that, each time it is woken, first reschedules itself behind
/// the tasks already queued on its worker, then runs.
struct YieldFirst {
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The last poll stepped back; this one runs the driver.
    yielded: bool,
}

impl YieldFirst {
    fn new(inner: Pin<Box<dyn Future<Output = ()> + Send>>) -> Self {
        Self {
            inner,
            yielded: false,
        }
    }
}

impl fmt::Debug for YieldFirst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YieldFirst")
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

impl Future for YieldFirst {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if !this.yielded {
            this.yielded = true;
            // A task woken while it runs goes to the back of its worker's
            // queue (tokio's yield), not the LIFO slot.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.yielded = false;
        this.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::YieldFirst;

    /// Records `name` in `order` when polled.
    async fn record(order: Arc<Mutex<Vec<&'static str>>>, name: &'static str) {
        order.lock().unwrap_or_else(|e| e.into_inner()).push(name);
    }

    /// A wrapped driver runs after a task queued behind it (a plain one
    /// would run first), and then runs to completion.
    #[tokio::test]
    async fn driver_runs_after_the_tasks_queued_behind_it() {
        for wrapped in [false, true] {
            let order = Arc::new(Mutex::new(Vec::new()));
            let driver = Box::pin(record(order.clone(), "driver"));
            let driver = if wrapped {
                tokio::spawn(YieldFirst::new(driver))
            } else {
                tokio::spawn(driver)
            };
            let other = tokio::spawn(record(order.clone(), "other"));
            assert!(driver.await.is_ok());
            assert!(other.await.is_ok());
            let order = order.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let expected = if wrapped {
                ["other", "driver"]
            } else {
                ["driver", "other"]
            };
            assert_eq!(order, expected, "wrapped: {wrapped}");
        }
    }
}
