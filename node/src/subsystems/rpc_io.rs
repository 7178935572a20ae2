//! nRPC frames on a call's QUIC stream: reading one frame at a time
//! (bounded before anything is allocated) and mapping stream failures to
//! statuses. The frames themselves are `relay_proto::wire::rpc`.

use bytes::Bytes;
use quinn::{ReadError, ReadExactError, VarInt, WriteError};
use relay_proto::wire::rpc::{
    CallHeader, FrameHead, Trailer, FRAME_HEADER, FRAME_HEAD_LEN, FRAME_MESSAGE, RESET_CANCELLED,
    RESET_PROTOCOL,
};
use relay_rpc::{Code, Status};
use relay_transport::mux::ProtocolId;
use relay_transport::{RecvStream, SendStream};

/// nRPC's protocol id on the mux.
pub const RPC: ProtocolId = ProtocolId::new(4);

/// A frame read from a call's stream.
#[derive(Debug)]
pub enum Inbound {
    /// The call header.
    Header(CallHeader),
    /// A body message.
    Message(Bytes),
    /// The trailer.
    Trailer(Trailer),
    /// The sender finished its half.
    End,
}

/// Reads the next frame; messages over `max_message` bytes are refused.
pub async fn read_frame(recv: &mut RecvStream, max_message: usize) -> Result<Inbound, Status> {
    let mut head = [0u8; FRAME_HEAD_LEN];
    match recv.read_exact(&mut head).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(Inbound::End),
        Err(ReadExactError::FinishedEarly(_)) => {
            return Err(Status::new(
                Code::Transport,
                "stream ended inside a frame head",
            ))
        }
        Err(ReadExactError::ReadError(e)) => return Err(read_error(&e)),
    }
    let head = FrameHead::parse(head, max_message)
        .map_err(|e| Status::new(Code::Transport, format!("bad frame: {e}")))?;
    let mut payload = vec![0u8; head.len];
    match recv.read_exact(&mut payload).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(_)) => {
            return Err(Status::new(Code::Transport, "stream ended inside a frame"))
        }
        Err(ReadExactError::ReadError(e)) => return Err(read_error(&e)),
    }
    let bad = |e| Status::new(Code::Transport, format!("bad frame: {e}"));
    Ok(match head.kind {
        FRAME_HEADER => Inbound::Header(CallHeader::decode(&payload).map_err(bad)?),
        FRAME_MESSAGE => Inbound::Message(Bytes::from(payload)),
        _ => Inbound::Trailer(Trailer::decode(&payload).map_err(bad)?),
    })
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
    let trailer = match result {
        Ok(()) => Trailer::new(Code::Ok, ""),
        Err(s) => s.to_trailer(),
    };
    // A status's trailer always encodes (to_trailer enforces the bounds).
    let _ = trailer.encode(out);
}

/// Writes `buf` and finishes the stream.
pub async fn write_and_finish(send: &mut SendStream, buf: &[u8]) -> Result<(), Status> {
    send.write_all(buf).await.map_err(|e| write_error(&e))?;
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
