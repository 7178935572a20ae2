//! nRPC frames on a call's QUIC stream: reading one frame at a time
//! ([`FrameReader`], each frame bounded before its payload is waited for)
//! and mapping stream failures to statuses. The frames themselves are
//! `relay_proto::wire::rpc`.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use quinn::{ReadError, VarInt, WriteError};
use relay_proto::wire::rpc::{OK_TRAILER, RESET_CANCELLED, RESET_PROTOCOL};
use relay_rpc::{Code, Status};
use relay_transport::mux::ProtocolId;
use relay_transport::{RecvStream, SendStream};

use super::rpc_frames::FrameBuffer;
pub use super::rpc_frames::Inbound;

/// nRPC's protocol id on the mux.
pub const RPC: ProtocolId = ProtocolId::new(4);

/// Most bytes taken from the stream in one read: what is buffered beyond
/// the frame being read is at most this much.
pub const READ_CHUNK: usize = 64 * 1024;

/// A call's receive stream and the bytes read from it ahead of the next
/// frame. Frames are parsed out of whole chunks (one lock of the
/// connection per chunk, not two reads per frame), and a frame's head is
/// checked against its bound before its payload is waited for, so the
/// buffer holds at most one frame and one chunk. [`FrameReader::next`] is
/// cancel-safe.
///
/// After each frame that empties the buffer, whatever has already arrived
/// is taken without waiting: usually the end of the stream, which came
/// with the last frame. A stream read to its end is dropped quietly; one
/// dropped before (quinn cannot tell) makes quinn send the peer a
/// STOP_SENDING, and the peer answer it, for a call already over.
#[derive(Debug)]
pub struct FrameReader {
    recv: RecvStream,
    /// What was read and not yet taken as frames.
    buf: FrameBuffer,
    /// The stream's end was read (nothing follows `buf`).
    ended: bool,
    /// A read without waiting failed; reported once `buf` is drained.
    failed: Option<Status>,
}

impl FrameReader {
    /// Reads frames from `recv`.
    pub fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            buf: FrameBuffer::default(),
            ended: false,
            failed: None,
        }
    }

    /// The stream.
    pub fn stream(&mut self) -> &mut RecvStream {
        &mut self.recv
    }

    /// The next frame; messages over `max_message` bytes are refused.
    pub async fn next(&mut self, max_message: usize) -> Result<Inbound, Status> {
        loop {
            if let Some(frame) = self.buf.parse(max_message)? {
                self.take_arrived();
                return Ok(frame);
            }
            if let Some(e) = self.failed.take() {
                self.ended = true;
                return Err(e);
            }
            if self.ended {
                return self.buf.end();
            }
            match self.recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.buf.push(chunk.bytes),
                Ok(None) => self.ended = true,
                Err(e) => {
                    self.ended = true;
                    return Err(read_error(&e));
                }
            }
        }
    }

    /// With nothing buffered, takes what has already arrived, without
    /// waiting (one poll with a waker that does nothing; the next real
    /// read registers its own).
    fn take_arrived(&mut self) {
        if !self.buf.is_empty() || self.ended || self.failed.is_some() {
            return;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let polled = {
            let read = std::pin::pin!(self.recv.read_chunk(READ_CHUNK, true));
            read.poll(&mut cx)
        };
        match polled {
            Poll::Ready(Ok(Some(chunk))) => self.buf.push(chunk.bytes),
            Poll::Ready(Ok(None)) => self.ended = true,
            Poll::Ready(Err(e)) => self.failed = Some(read_error(&e)),
            Poll::Pending => {}
        }
    }
}

/// Polls `f` once, with a waker that does nothing: its output if it is
/// ready at once. A future polled again later registers its own waker
/// then; one dropped must be cancel-safe. Lets a call's driver skip the
/// timers it would otherwise set up around work that is already done
/// (each tokio timer, even one never registered, takes the runtime's
/// timer lock when dropped).
pub fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
    let f = std::pin::pin!(f);
    match f.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// The status of a failed read.
pub fn read_error(e: &ReadError) -> Status {
    match e {
        ReadError::Reset(code) if *code == VarInt::from_u32(RESET_CANCELLED) => {
            Status::new(Code::Cancelled, "the peer cancelled the call")
        }
        other => Status::new(Code::Transport, other.to_string()),
    }
}

/// The status of a failed write.
pub fn write_error(e: &WriteError) -> Status {
    match e {
        WriteError::Stopped(code) if *code == VarInt::from_u32(RESET_CANCELLED) => {
            Status::new(Code::Cancelled, "the peer cancelled the call")
        }
        other => Status::new(Code::Transport, other.to_string()),
    }
}

/// Appends a message frame.
pub fn put_message(out: &mut Vec<u8>, item: &[u8]) -> Result<(), Status> {
    let head = relay_proto::wire::rpc::message_head(item.len())
        .map_err(|e| Status::new(Code::CodecEncode, e.to_string()))?;
    out.extend_from_slice(&head);
    out.extend_from_slice(item);
    Ok(())
}

/// Appends the trailer of `result`.
pub fn put_trailer(out: &mut Vec<u8>, result: &Result<(), Status>) {
    match result {
        Ok(()) => out.extend_from_slice(&OK_TRAILER),
        // A status's trailer always encodes (to_trailer enforces the
        // bounds).
        Err(s) => {
            let _ = s.to_trailer().encode(out);
        }
    }
}

/// Writes `buf` (handed to quinn as it is, not copied) and finishes the
/// stream.
pub async fn write_and_finish(send: &mut SendStream, buf: Vec<u8>) -> Result<(), Status> {
    send.write_chunk(Bytes::from(buf))
        .await
        .map_err(|e| write_error(&e))?;
    let _ = send.finish();
    Ok(())
}

/// Abandons both halves with `code` (cancelled, or protocol error).
pub fn abandon(send: &mut SendStream, recv: &mut RecvStream, code: u32) {
    let code = VarInt::from_u32(code);
    let _ = send.reset(code);
    let _ = recv.stop(code);
}

/// Abandons both halves as a protocol error.
pub fn abandon_protocol(send: &mut SendStream, recv: &mut RecvStream) {
    abandon(send, recv, RESET_PROTOCOL);
}
