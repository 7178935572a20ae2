//! The mux's I/O: takes the streams peers open through the transport's
//! stream hook ([`Router::take_now`], on each connection's forwarding task)
//! and anything else from [`crate::Transport::accept`]; routes a stream
//! whose protocol id has arrived at once, reads any other's id on a task
//! of its own (bounded in number and in time), and hands the result to
//! the routing table. The loop itself never waits on a handler or on a
//! peer, so the transport's accept queue keeps draining: a stuck handler
//! cannot hold up another protocol, another peer, or the control messages
//! that share the connections.

use std::sync::Arc;
use std::time::Duration;

use relay_proto::NodeId;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::id::{
    read_header_rest, split_datagram, try_header_now, HeaderNow, PartialHeader, ProtocolId,
};
use super::pending::{Pending, PendingSlot};
use super::refuse::{reset_bi, stop_uni, Refusal};
use super::registry::{Registry, Routed};
use crate::{Incoming, StreamHook, Transport};

/// What the driver works with.
#[derive(Debug)]
pub(crate) struct Router {
    pub(crate) registry: Arc<Registry>,
    pub(crate) pending: Arc<Pending>,
    pub(crate) id_timeout: Duration,
}

/// Routes until the transport closes or `shutdown` turns true; then
/// removes `hook` (the mux's stream hook, installed on `transport`), so
/// streams opened after that wait in the accept queue, and closes the
/// routing table.
pub(crate) async fn run(
    transport: Transport,
    router: Arc<Router>,
    hook: StreamHook,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            incoming = transport.accept() => match incoming {
                Some(incoming) => router.dispatch(incoming, &mut readers),
                None => break,
            },
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    transport.remove_stream_hook(&hook);
    router.registry.close();
    readers.shutdown().await;
    tracing::debug!("mux stopped");
}

impl Router {
    /// The transport's stream hook: routes a stream whose id has arrived
    /// at once, and starts reading any other's id on a task of its own
    /// (bounded as those of the routing loop, but not aborted with it:
    /// each ends within the id timeout). Never waits, and leaves no stream
    /// to the accept queue (a datagram, which the transport does not hand
    /// it, would be left there).
    pub(crate) fn take_now(self: &Arc<Self>, incoming: Incoming) -> Option<Incoming> {
        if let Incoming::Datagram { .. } = incoming {
            return Some(incoming);
        }
        let from = incoming.from();
        let (incoming, partial) = self.route_now(incoming)?;
        let Some(slot) = self.pending.admit(from) else {
            self.refuse(Refusal::TooManyPending, incoming);
            return None;
        };
        let router = self.clone();
        tokio::spawn(async move { router.read_id(incoming, partial, slot).await });
        None
    }

    /// Routes a stream whose id has already arrived; hands back any other
    /// stream with the part of its id read so far (datagrams are left
    /// alone).
    fn route_now(&self, mut incoming: Incoming) -> Option<(Incoming, PartialHeader)> {
        let partial = match &mut incoming {
            Incoming::Bi { recv, .. } | Incoming::Uni { recv, .. } => try_header_now(recv),
            Incoming::Datagram { .. } => return Some((incoming, PartialHeader::default())),
        };
        // Usually the id came in the packet that opened the stream: route
        // it at once, without a reader task or a timer.
        match partial {
            HeaderNow::Read(Ok(id)) => self.route(id, incoming),
            HeaderNow::Read(Err(e)) => self.refuse(Refusal::BadHeader(e), incoming),
            HeaderNow::Wait(partial) => return Some((incoming, partial)),
        }
        None
    }

    /// Routes a datagram at once; starts reading a stream's id.
    fn dispatch(self: &Arc<Self>, incoming: Incoming, readers: &mut JoinSet<()>) {
        let from = incoming.from();
        if let Incoming::Datagram { data, .. } = &incoming {
            match split_datagram(data) {
                Ok((id, payload)) => {
                    self.route(
                        id,
                        Incoming::Datagram {
                            from,
                            data: payload,
                        },
                    );
                }
                Err(e) => self.refuse(Refusal::BadHeader(e), incoming),
            }
            return;
        }
        let Some((incoming, partial)) = self.route_now(incoming) else {
            return;
        };
        let Some(slot) = self.pending.admit(from) else {
            self.refuse(Refusal::TooManyPending, incoming);
            return;
        };
        let router = self.clone();
        readers.spawn(async move { router.read_id(incoming, partial, slot).await });
    }

    /// Reads the rest of a stream's protocol id within the id timeout,
    /// then routes it.
    async fn read_id(&self, mut incoming: Incoming, partial: PartialHeader, slot: PendingSlot) {
        let recv = match &mut incoming {
            Incoming::Bi { recv, .. } | Incoming::Uni { recv, .. } => recv,
            Incoming::Datagram { .. } => return,
        };
        let read = read_id_within(recv, partial, self.id_timeout).await;
        drop(slot);
        match read {
            Ok(id) => self.route(id, incoming),
            Err(refusal) => self.refuse(refusal, incoming),
        }
    }

    fn route(&self, id: ProtocolId, incoming: Incoming) {
        if let Routed::Refused(refusal, incoming) = self.registry.route(id, incoming) {
            self.refuse(refusal, incoming);
        }
    }

    /// Counts a refusal and tells the opener: a stream is reset and stopped
    /// with the refusal's code, a datagram dropped.
    fn refuse(&self, refusal: Refusal, incoming: Incoming) {
        self.registry.refusals.count(&refusal);
        log_refusal(incoming.from(), &refusal);
        let code = refusal.reset_code();
        match incoming {
            Incoming::Bi {
                mut send, mut recv, ..
            } => reset_bi(&mut send, &mut recv, code),
            Incoming::Uni { mut recv, .. } => stop_uni(&mut recv, code),
            Incoming::Datagram { .. } => {}
        }
    }
}

/// Reads the rest of a protocol id, giving up after `timeout`.
async fn read_id_within<R>(
    recv: &mut R,
    partial: PartialHeader,
    timeout: Duration,
) -> Result<ProtocolId, Refusal>
where
    R: tokio::io::AsyncRead + Unpin,
{
    match tokio::time::timeout(timeout, read_header_rest(recv, partial)).await {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(e)) => Err(Refusal::BadHeader(e)),
        Err(_) => Err(Refusal::IdTimeout(timeout.as_millis())),
    }
}

fn log_refusal(from: NodeId, refusal: &Refusal) {
    tracing::debug!(peer = %from.fmt_short(), kind = refusal.kind(), %refusal, "mux refused");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::mux::id::HeaderError;
    use tokio::io::AsyncWriteExt;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_times_out_after_the_id_timeout() {
        let (_writer, mut reader) = tokio::io::duplex(64);
        let started = tokio::time::Instant::now();
        let refusal = read_id_within(&mut reader, PartialHeader::default(), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(refusal, Refusal::IdTimeout(5000));
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn half_an_id_then_silence_times_out_too() {
        let (mut writer, mut reader) = tokio::io::duplex(64);
        writer.write_all(&[0x00]).await.unwrap();
        let refusal = read_id_within(&mut reader, PartialHeader::default(), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(refusal.kind(), "id-timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn an_id_in_time_is_read_and_the_rest_left() {
        let (mut writer, mut reader) = tokio::io::duplex(64);
        let late = tokio::spawn(async move {
            tokio::time::sleep(TIMEOUT - Duration::from_millis(1)).await;
            writer
                .write_all(&[0x00, 0x2a, b'r', b'e', b's', b't'])
                .await
                .unwrap();
            writer
        });
        let id = read_id_within(&mut reader, PartialHeader::default(), TIMEOUT)
            .await
            .unwrap();
        assert_eq!(id, ProtocolId::new(42));
        let _writer = late.await.unwrap();
        let mut rest = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut reader, &mut rest)
            .await
            .unwrap();
        assert_eq!(&rest, b"rest");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_ending_early_is_a_bad_header() {
        let (writer, mut reader) = tokio::io::duplex(64);
        drop(writer);
        let refusal = read_id_within(&mut reader, PartialHeader::default(), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(refusal, Refusal::BadHeader(HeaderError::Truncated(0)));
    }
}
