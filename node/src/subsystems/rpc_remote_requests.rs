//! Streamed requests to a serving process (client streaming, duplex): the
//! caller's request messages after the call's `request` frame go to the
//! process as `request item` frames, then a `requests end` frame when the
//! caller finished sending.
//!
//! Flow control is a credit window per call: the node sends a request
//! item, or the requests end, only while the process has credit
//! ([`REQUEST_WINDOW`] at the start), each taking one; the process returns
//! credit with `credit` frames as its handler takes items. So a process
//! holds at most [`REQUEST_WINDOW`] unread frames per call, and a caller
//! that sends faster than the process reads is held back by its stream's
//! flow control (the node reads its next message only once it has credit
//! to forward it, so it holds none while it waits).

use std::sync::Arc;

use relay_proto::frame_stream::MAX_FRAME;
use relay_proto::wire::rpc_serve::ServeFrame;
use relay_rpc::{Code, Status};
use tokio::sync::{mpsc, Semaphore};

use super::rpc_server::Requests;

/// Request items one call may have sent to the process that it has not
/// taken yet (the credit a call starts with).
pub const REQUEST_WINDOW: usize = 4;

/// A call's credit: request items the node may still send.
#[derive(Debug, Clone)]
pub struct Credit(Arc<Semaphore>);

impl Default for Credit {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(REQUEST_WINDOW)))
    }
}

impl Credit {
    /// The process took `count` items; the window never grows past
    /// [`REQUEST_WINDOW`], whatever the process claims.
    pub fn give(&self, count: u32) {
        let room = REQUEST_WINDOW.saturating_sub(self.0.available_permits());
        let count = usize::try_from(count).unwrap_or(usize::MAX).min(room);
        self.0.add_permits(count);
    }

    /// Waits for one item's credit and takes it.
    async fn take(&self) -> Result<(), Status> {
        let permit = self
            .0
            .acquire()
            .await
            .map_err(|_| Status::new(Code::Unavailable, "the serving process disconnected"))?;
        permit.forget();
        Ok(())
    }

    /// Items the node may send now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

/// Forwards call `id`'s request messages to the process through `out`
/// until the caller finishes (then `requests end`); an error when the
/// caller's stream fails or the connection to the process ended.
pub async fn forward(
    mut requests: Requests,
    id: u32,
    out: mpsc::Sender<Vec<u8>>,
    credit: Credit,
) -> Result<(), Status> {
    loop {
        credit.take().await?;
        let Some(message) = requests.next().await? else {
            return send_frame(&out, ServeFrame::RequestsEnd { call: id }, 0).await;
        };
        let item = ServeFrame::RequestItem {
            call: id,
            body: &message,
        };
        send_frame(&out, item, message.len()).await?;
    }
}

/// Encodes `frame` (a body of `body_len` bytes) and queues it for the
/// serving process: `resource-exhausted` over the frame bound,
/// `unavailable` once the process disconnected.
pub async fn send_frame(
    out: &mpsc::Sender<Vec<u8>>,
    frame: ServeFrame<'_>,
    body_len: usize,
) -> Result<(), Status> {
    let mut bytes = Vec::with_capacity(body_len + 128);
    frame
        .encode(&mut bytes)
        .map_err(|e| Status::new(Code::CodecEncode, e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(Status::new(
            Code::ResourceExhausted,
            format!("a request to a serving process is at most {MAX_FRAME} bytes framed"),
        ));
    }
    out.send(bytes)
        .await
        .map_err(|_| Status::new(Code::Unavailable, "the serving process disconnected"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_never_exceeds_the_window() {
        let c = Credit::default();
        assert_eq!(c.available(), REQUEST_WINDOW);
        c.give(u32::MAX);
        assert_eq!(c.available(), REQUEST_WINDOW);
    }

    #[tokio::test]
    async fn taking_credit_waits_for_the_process() {
        let c = Credit::default();
        for _ in 0..REQUEST_WINDOW {
            c.take().await.unwrap();
        }
        assert_eq!(c.available(), 0);
        let waiting = c.clone();
        let mut taker = tokio::spawn(async move { waiting.take().await });
        tokio::task::yield_now().await;
        assert!(futures_now(&mut taker).await.is_none());
        c.give(1);
        taker.await.unwrap().unwrap();
        assert_eq!(c.available(), 0);
    }

    /// The task's result if it finished already.
    async fn futures_now<T>(task: &mut tokio::task::JoinHandle<T>) -> Option<T> {
        tokio::select! {
            biased;
            r = task => Some(r.unwrap()),
            () = std::future::ready(()) => None,
        }
    }
}
