//! The client side of the `channels` frame stream, for the CLI's
//! `relay-node sub` and `relay-node pub`: a blocking Unix socket upgraded
//! with `GET /v1/stream/channels`, the JSON open frame, then binary frames
//! ([`relay_proto::wire::channels_stream`], docs/LOCAL_API.md): events
//! decoded into [`StreamEvent`]s, or messages out and acknowledgements
//! back. Many frames go per read and per write.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;

use relay_proto::frame_stream::{encode_frame, FrameDecoder, UPGRADE_PROTOCOL};
use relay_proto::wire::channels_stream::StreamFrame;
use relay_proto::NodeId;
use serde_json::Value;

use super::client::ClientError;
use super::error::{kind_for_status, ErrorBody};
use crate::datadir::DataDir;

/// Read chunk size.
const READ_CHUNK: usize = 64 * 1024;
/// Largest HTTP head or error body the client reads before the upgrade.
const MAX_HEAD: usize = 64 * 1024;

/// One event of a subscription, as the node sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A message.
    Message {
        /// Who published it.
        publisher: NodeId,
        /// Its sequence number from that publisher.
        seq: u64,
        /// The owner's clock when it took it (unix ms).
        ts: u64,
        /// The payload.
        data: Vec<u8>,
    },
    /// Messages `from..=to` of `publisher` were missed.
    Gap {
        /// Whose messages.
        publisher: NodeId,
        /// First missed.
        from: u64,
        /// Last missed.
        to: u64,
    },
}

/// A subscription or a publishing session over the frame stream (its
/// reading half; [`ChannelStream::writer`] gives the writing half).
#[derive(Debug)]
pub struct ChannelStream {
    sock: UnixStream,
    decoder: FrameDecoder,
    /// Frames read and not yet returned.
    ready: VecDeque<Vec<u8>>,
}

fn protocol(detail: impl Into<String>) -> ClientError {
    ClientError::Protocol(detail.into())
}

/// The `kind: detail` error of a JSON `{"error":{kind,detail}}` body.
fn remote(body: &[u8], fallback_kind: &str) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError::Remote {
            kind: e.error.kind,
            detail: e.error.detail,
        },
        Err(_) => ClientError::Remote {
            kind: fallback_kind.to_string(),
            detail: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

/// The frame in `frame`, or a `protocol` error naming what was expected.
fn decode<'a>(frame: &'a [u8], what: &str) -> Result<StreamFrame<'a>, ClientError> {
    StreamFrame::decode(frame).map_err(|e| protocol(format!("a bad {what} frame: {e}")))
}

/// Decodes one event frame; an end frame is the node's error.
pub fn decode_event(frame: &[u8]) -> Result<StreamEvent, ClientError> {
    match decode(frame, "channels")? {
        StreamFrame::Message {
            publisher,
            seq,
            ts,
            data,
        } => Ok(StreamEvent::Message {
            publisher,
            seq,
            ts,
            data: data.to_vec(),
        }),
        StreamFrame::Gap {
            publisher,
            from,
            to,
        } => Ok(StreamEvent::Gap {
            publisher,
            from,
            to,
        }),
        StreamFrame::End { error } => Err(remote(error.as_bytes(), "protocol")),
        StreamFrame::Ack { .. } => Err(protocol("an ack frame on a subscription")),
    }
}

impl ChannelStream {
    /// Connects to the node serving `dir`, upgrades, and opens with `open`
    /// (the `{"op":"sub",...}` or `{"op":"pub",...}` object); returns once
    /// the node said ok, or with its error (e.g. `token: required`).
    pub fn open(dir: &DataDir, open: &Value) -> Result<Self, ClientError> {
        let mut sock = match UnixStream::connect(dir.api_socket_path()) {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                return Err(ClientError::NotRunning {
                    dir: dir.to_string(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        sock.write_all(
            format!(
                "GET /v1/stream/channels HTTP/1.1\r\nHost: relay-node\r\n\
                 Connection: Upgrade\r\nUpgrade: {UPGRADE_PROTOCOL}\r\n\r\n"
            )
            .as_bytes(),
        )?;
        let rest = read_upgrade(&mut sock)?;
        let mut stream = Self {
            sock,
            decoder: FrameDecoder::default(),
            ready: VecDeque::new(),
        };
        stream.decoder.push(&rest);
        let mut first = Vec::new();
        encode_frame(
            &serde_json::to_vec(open).map_err(|e| protocol(e.to_string()))?,
            &mut first,
        )
        .map_err(|e| protocol(e.to_string()))?;
        stream.sock.write_all(&first)?;
        let answer = stream
            .frame()?
            .ok_or_else(|| protocol("the node closed the stream before answering"))?;
        match serde_json::from_slice::<Value>(&answer) {
            Ok(v) if v["ok"] == true => Ok(stream),
            _ => Err(remote(&answer, "protocol")),
        }
    }

    /// The next frame; `None` when the node closed the stream. Every
    /// frame one read completes is decoded at once.
    fn frame(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            while let Some(f) = self
                .decoder
                .next_frame()
                .map_err(|e| protocol(e.to_string()))?
            {
                self.ready.push_back(f);
            }
            if let Some(f) = self.ready.pop_front() {
                return Ok(Some(f));
            }
            let n = self.sock.read(&mut chunk)?;
            if n == 0 {
                return if self.decoder.buffered() == 0 {
                    Ok(None)
                } else {
                    Err(protocol("the stream ended inside a frame"))
                };
            }
            self.decoder.push(chunk.get(..n).unwrap_or_default());
        }
    }

    /// Events already read: [`Self::next_event`] returns them without
    /// waiting.
    pub fn pending(&self) -> usize {
        self.ready.len()
    }

    /// A second handle on the socket, to write messages from another
    /// thread while this one reads acknowledgements.
    pub fn writer(&self) -> Result<FrameWriter, ClientError> {
        Ok(FrameWriter {
            sock: self.sock.try_clone()?,
            out: Vec::new(),
        })
    }

    /// The next publish acknowledgement, (delivered, targets); `None` when
    /// the node closed the stream; the session's end is an error.
    pub fn next_ack(&mut self) -> Result<Option<(u32, u32)>, ClientError> {
        let Some(f) = self.frame()? else {
            return Ok(None);
        };
        match decode(&f, "ack")? {
            StreamFrame::Ack { delivered, targets } => Ok(Some((delivered, targets))),
            StreamFrame::End { error } => Err(remote(error.as_bytes(), "protocol")),
            _ => Err(protocol("an event frame on a publishing session")),
        }
    }

    /// The next event; `None` when the node closed the stream without an
    /// error; the subscription's end (`token: revoked`, ...) is an error.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, ClientError> {
        match self.frame()? {
            Some(f) => decode_event(&f).map(Some),
            None => Ok(None),
        }
    }
}

/// The writing half of a [`ChannelStream`]: frames are queued and
/// written together.
#[derive(Debug)]
pub struct FrameWriter {
    sock: UnixStream,
    out: Vec<u8>,
}

impl FrameWriter {
    /// Queues one frame.
    pub fn queue(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        encode_frame(payload, &mut self.out).map_err(|e| protocol(e.to_string()))
    }

    /// Bytes queued and not written yet.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Writes what is queued.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.sock.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    /// Writes what is queued and closes the writing side (the node then
    /// answers what is in flight and closes).
    pub fn finish(&mut self) -> Result<(), ClientError> {
        self.flush()?;
        self.sock.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    }

    /// Closes both directions at once (the reading half then ends).
    pub fn abort(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads the answer to the upgrade request: on `101`, the bytes read past
/// the head (the first frames); otherwise the node's error.
fn read_upgrade(sock: &mut UnixStream) -> Result<Vec<u8>, ClientError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(protocol("an answer head over the size limit"));
        }
        let n = sock.read(&mut chunk)?;
        if n == 0 {
            return Err(protocol("the node closed the connection"));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol("a bad answer head"))?;
    let mut rest = buf.split_off(end);
    if status == 101 {
        return Ok(rest);
    }
    // An error answer: its JSON body, by Content-Length.
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_HEAD);
    while rest.len() < length {
        let n = sock.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        rest.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    rest.truncate(length);
    Err(remote(&rest, kind_for_status(status)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::wire::channels_stream::{END, GAP, MESSAGE};
    use relay_proto::SecretKey;

    #[test]
    fn decodes_messages_gaps_and_ends_and_refuses_bad_frames() {
        let p = SecretKey::from_bytes(&[7; 32]).node_id();
        let mut m = vec![MESSAGE];
        m.extend_from_slice(p.as_bytes());
        m.extend_from_slice(&5u64.to_be_bytes());
        m.extend_from_slice(&9u64.to_be_bytes());
        m.extend_from_slice(b"hi");
        assert_eq!(
            decode_event(&m).unwrap(),
            StreamEvent::Message {
                publisher: p,
                seq: 5,
                ts: 9,
                data: b"hi".to_vec()
            }
        );
        let mut g = vec![GAP];
        g.extend_from_slice(p.as_bytes());
        g.extend_from_slice(&2u64.to_be_bytes());
        g.extend_from_slice(&4u64.to_be_bytes());
        assert_eq!(
            decode_event(&g).unwrap(),
            StreamEvent::Gap {
                publisher: p,
                from: 2,
                to: 4
            }
        );
        let mut end = vec![END];
        end.extend_from_slice(br#"{"error":{"kind":"token","detail":"revoked"}}"#);
        assert_eq!(
            decode_event(&end).unwrap_err().to_string(),
            "token: revoked"
        );
        let ack = [0x04, 0, 0, 0, 1, 0, 0, 0, 1];
        for bad in [
            &[][..],
            &[MESSAGE; 10][..],
            &g[..20],
            &[0x09, 1, 2][..],
            &ack,
        ] {
            assert_eq!(decode_event(bad).unwrap_err().kind(), "protocol");
        }
    }
}
