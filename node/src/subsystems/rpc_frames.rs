//! nRPC frames taken out of the chunks a call's stream delivers
//! ([`FrameBuffer`]): a frame inside one chunk is sliced from it without a
//! copy; only a frame cut across chunks is gathered. Each frame's head is
//! checked against its bound before its payload is waited for.

use bytes::{Buf, Bytes, BytesMut};
use relay_proto::wire::rpc::{
    CallHeader, FrameHead, Trailer, FRAME_HEADER, FRAME_HEAD_LEN, FRAME_MESSAGE,
};
use relay_rpc::{Code, Status};

/// A frame read from a call's stream.
#[derive(Debug)]
pub enum Inbound {
    /// The call header.
    Header(CallHeader),
    /// A body message.
    Message(Bytes),
    /// The trailer: the call's status.
    Trailer(Result<(), Status>),
    /// The sender finished its half.
    End,
}

/// The bytes of a call's stream read and not yet taken as frames.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    /// The rest of the last chunk, while it starts at a frame: frames are
    /// sliced out of it.
    ready: Bytes,
    /// A frame cut across chunks, gathered here (`ready` is empty then).
    carry: BytesMut,
}

impl FrameBuffer {
    /// Bytes held.
    pub fn len(&self) -> usize {
        self.ready.len() + self.carry.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A chunk read: kept as it is when nothing is held, else gathered
    /// behind what is.
    pub fn push(&mut self, chunk: Bytes) {
        if self.is_empty() {
            self.ready = chunk;
            return;
        }
        if !self.ready.is_empty() {
            let ready = std::mem::take(&mut self.ready);
            self.carry.reserve(ready.len() + chunk.len());
            self.carry.extend_from_slice(&ready);
        }
        self.carry.extend_from_slice(&chunk);
    }

    /// The first whole frame held, taken out; `None` until one is whole.
    /// Messages over `max_message` bytes are refused from their head.
    pub fn parse(&mut self, max_message: usize) -> Result<Option<Inbound>, Status> {
        let gathered = !self.carry.is_empty();
        let buf: &[u8] = if gathered { &self.carry } else { &self.ready };
        let Some(head) = buf.first_chunk::<FRAME_HEAD_LEN>() else {
            return Ok(None);
        };
        let head = FrameHead::parse(*head, max_message).map_err(bad)?;
        if buf.len() < FRAME_HEAD_LEN + head.len {
            return Ok(None);
        }
        let payload = if gathered {
            self.carry.advance(FRAME_HEAD_LEN);
            self.carry.split_to(head.len).freeze()
        } else {
            self.ready.advance(FRAME_HEAD_LEN);
            self.ready.split_to(head.len)
        };
        Ok(Some(match head.kind {
            FRAME_HEADER => Inbound::Header(CallHeader::decode(&payload).map_err(bad)?),
            FRAME_MESSAGE => Inbound::Message(payload),
            _ if Trailer::is_plain_ok(&payload) => Inbound::Trailer(Ok(())),
            _ => {
                let status = Status::from_trailer(Trailer::decode(&payload).map_err(bad)?);
                Inbound::Trailer(if status.is_ok() { Ok(()) } else { Err(status) })
            }
        }))
    }

    /// What the stream's end means after what is held (no whole frame).
    pub fn end(&self) -> Result<Inbound, Status> {
        let left = self.len();
        if left == 0 {
            Ok(Inbound::End)
        } else if left < FRAME_HEAD_LEN {
            Err(Status::new(
                Code::Transport,
                "stream ended inside a frame head",
            ))
        } else {
            Err(Status::new(Code::Transport, "stream ended inside a frame"))
        }
    }
}

fn bad(e: impl std::fmt::Display) -> Status {
    Status::new(Code::Transport, format!("bad frame: {e}"))
}

#[cfg(test)]
mod tests {
    use relay_proto::wire::rpc::{message_head, OK_TRAILER};

    use super::*;

    /// A header, three messages (one empty, one long), a failed trailer
    /// and the plain ok trailer, back to back.
    fn stream() -> Vec<u8> {
        let mut out = Vec::new();
        let header = CallHeader {
            service: "echo".into(),
            method: "echo".into(),
            ..CallHeader::default()
        };
        header.encode(&mut out).unwrap();
        for m in [&b"hello"[..], b"", &[7u8; 300][..]] {
            out.extend_from_slice(&message_head(m.len()).unwrap());
            out.extend_from_slice(m);
        }
        Trailer::new(Code::Unavailable, "busy")
            .encode(&mut out)
            .unwrap();
        out.extend_from_slice(&OK_TRAILER);
        out
    }

    fn describe(frame: &Inbound) -> String {
        match frame {
            Inbound::Header(h) => format!("header {}.{}", h.service, h.method),
            Inbound::Message(m) => format!("message {} {:?}", m.len(), m.first()),
            Inbound::Trailer(Ok(())) => "ok".into(),
            Inbound::Trailer(Err(s)) => format!("status {s}"),
            Inbound::End => "end".into(),
        }
    }

    /// Every frame, in order, from `bytes` delivered in chunks cut at
    /// `cuts`.
    fn frames(bytes: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut buf = FrameBuffer::default();
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            buf.push(Bytes::copy_from_slice(&bytes[at..cut]));
            at = cut;
            while let Some(frame) = buf.parse(1024).unwrap() {
                out.push(describe(&frame));
            }
        }
        out.push(describe(&buf.end().unwrap()));
        out
    }

    #[test]
    fn frames_are_the_same_wherever_the_chunks_are_cut() {
        let bytes = stream();
        let whole = frames(&bytes, &[]);
        assert_eq!(
            whole,
            [
                "header echo.echo",
                "message 5 Some(104)",
                "message 0 None",
                "message 300 Some(7)",
                "status unavailable: busy",
                "ok",
                "end"
            ]
        );
        for one in 0..=bytes.len() {
            assert_eq!(frames(&bytes, &[one]), whole, "cut at {one}");
        }
        let mut seed = 7u64;
        for _ in 0..500 {
            let mut cuts: Vec<usize> = (0..4)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 33) as usize % (bytes.len() + 1)
                })
                .collect();
            cuts.sort_unstable();
            assert_eq!(frames(&bytes, &cuts), whole, "cuts {cuts:?}");
        }
    }

    #[test]
    fn a_frame_within_one_chunk_is_not_copied() {
        let mut buf = FrameBuffer::default();
        let chunk = Bytes::from(stream());
        buf.push(chunk.clone());
        buf.parse(1024).unwrap();
        let Some(Inbound::Message(m)) = buf.parse(1024).unwrap() else {
            panic!("a message");
        };
        let inside = chunk.as_ptr_range();
        assert!(inside.contains(&m.as_ptr()), "sliced from the chunk");
    }

    #[test]
    fn an_end_inside_a_frame_and_a_message_over_its_bound_are_errors() {
        let bytes = stream();
        for (cut, want) in [
            (3, "stream ended inside a frame head"),
            (9, "stream ended inside a frame"),
        ] {
            let mut buf = FrameBuffer::default();
            buf.push(Bytes::copy_from_slice(&bytes[..cut]));
            assert!(buf.parse(1024).unwrap().is_none());
            assert_eq!(buf.end().unwrap_err().detail, want);
        }
        let mut buf = FrameBuffer::default();
        buf.push(Bytes::copy_from_slice(&bytes));
        buf.parse(100).unwrap();
        buf.parse(100).unwrap();
        buf.parse(100).unwrap();
        let e = buf.parse(100).unwrap_err();
        assert_eq!(e.code, Code::Transport, "{e}");
    }
}
