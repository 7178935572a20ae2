//! The `channels` frame stream (`GET /v1/stream/channels` + upgrade): the
//! high-rate data path for peer processes (docs/LOCAL_API.md, "Channels
//! routes"). The client's first frame is JSON: `{"op":"sub",...}` (the
//! options of `GET /v1/sub`) or `{"op":"pub","name","token"}`; the node
//! answers `{"ok":true}` or `{"error":{kind,detail}}` (and closes). Then:
//!
//! - sub: the node sends one binary frame per event, many per write: a
//!   message, a gap notice, or the end with a JSON error when the
//!   subscription ends;
//! - pub: each client frame is one message; the node answers each, in
//!   order, with an ack (delivered, targets), or the end with a JSON error
//!   (then closes). The frames of one read are published together (one
//!   lock of the hub); acknowledgements are written in batches.
//!
//! The binary frames are [`relay_proto::wire::channels_stream`]'s.

use std::collections::VecDeque;

use bytes::Bytes;
use relay_channels::SubEvent;
use relay_proto::wire::channels_stream::StreamFrame;
use serde::Deserialize;
use serde_json::{json, Value};

use super::channels::{ack, end_json, token_bytes, ChannelsApi, SubOptions};
use super::error::ApiError;
use super::frames::FrameStream;
use super::router::StreamService;
use crate::subsystem::BoxFuture;
use crate::subsystems::channels_acks::{AckRun, Acks};

/// Most frames of a `pub` stream published under one lock of the hub.
const PUB_BATCH: usize = 1024;

/// The first frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Open {
    Sub(SubOptions),
    Pub {
        name: String,
        #[serde(default)]
        token: Option<String>,
    },
}

/// The `channels` stream service.
#[derive(Debug, Clone)]
pub struct ChannelsStream(pub ChannelsApi);

fn error_json(e: &ApiError) -> Value {
    json!({"error": {"kind": e.kind(), "detail": e.detail()}})
}

/// The first frame, or a `bad-request` error.
fn parse_open(first: &[u8]) -> Result<Open, ApiError> {
    serde_json::from_slice::<Open>(first)
        .map_err(|e| ApiError::BadRequest(format!("bad first frame: {e}")))
}

/// Puts an acknowledgement frame in `out` (cleared first).
fn ack_frame(delivered: u32, targets: u32, out: &mut Vec<u8>) {
    out.clear();
    StreamFrame::Ack { delivered, targets }.encode(out);
}

/// Queues `count` acknowledgement frames (delivered, targets).
fn queue_acks(
    stream: &mut FrameStream,
    delivered: u32,
    targets: u32,
    count: u64,
    frame: &mut Vec<u8>,
) {
    ack_frame(delivered, targets, frame);
    for _ in 0..count {
        let _ = stream.queue(frame);
    }
}

/// Puts an end frame carrying `error` (JSON) in `out` (cleared first).
fn end_frame(error: &Value, out: &mut Vec<u8>) {
    out.clear();
    let error = serde_json::to_string(error).unwrap_or_default();
    StreamFrame::End { error: &error }.encode(out);
}

/// Answers the first frame with an error.
async fn refuse(stream: &mut FrameStream, e: &ApiError) {
    let _ = stream
        .send(&serde_json::to_vec(&error_json(e)).unwrap_or_default())
        .await;
}

/// Encodes `event` into `out` (empty for an event the client does not
/// see); false when it ends the subscription.
fn encode_event(event: &SubEvent, out: &mut Vec<u8>) -> bool {
    out.clear();
    let frame = match event {
        SubEvent::Message {
            publisher,
            seq,
            ts,
            data,
        } => StreamFrame::Message {
            publisher: *publisher,
            seq: *seq,
            ts: *ts,
            data,
        },
        SubEvent::Gap {
            publisher,
            from,
            to,
        } => StreamFrame::Gap {
            publisher: *publisher,
            from: *from,
            to: *to,
        },
        SubEvent::Denied(r) | SubEvent::Ended(r) => {
            end_frame(&end_json(*r), out);
            return false;
        }
        SubEvent::Accepted { .. } => return true,
    };
    frame.encode(out);
    true
}

async fn serve_sub(api: ChannelsApi, mut stream: FrameStream, options: SubOptions) {
    let (link, notify) = match api.open_subscription(&options).await {
        Ok(x) => x,
        Err(e) => return refuse(&mut stream, &e).await,
    };
    let mut frame = Vec::new();
    let mut live = stream.send(br#"{"ok":true}"#).await.is_ok();
    while live {
        let Some(events) = api.events(link) else {
            break;
        };
        if events.is_empty() {
            // Wait for events, or for the client to go away (it sends
            // nothing after its first frame: anything else ends it too).
            // Nothing is queued here, so the read's flush has nothing to
            // write and dropping it loses nothing.
            tokio::select! {
                () = notify.notified() => {}
                _ = stream.recv() => break,
            }
            continue;
        }
        for event in events {
            let more = encode_event(&event, &mut frame);
            if !frame.is_empty() && stream.queue(&frame).is_err() {
                live = false;
            }
            live &= more;
        }
        live &= stream.flush().await.is_ok();
    }
    api.close_subscription(link);
}

async fn serve_pub(api: ChannelsApi, mut stream: FrameStream, name: String, token: Option<String>) {
    let opened = async {
        let token = token_bytes(token.as_deref())?;
        let owner = api.owner_of(&name).await?;
        Ok::<_, ApiError>((token, owner))
    }
    .await;
    let (token, owner) = match opened {
        Ok(x) => x,
        Err(e) => return refuse(&mut stream, &e).await,
    };
    if stream.send(br#"{"ok":true}"#).await.is_err() {
        return;
    }
    let acks = Acks::new();
    // Messages queued and not answered yet.
    let mut outstanding = 0u64;
    let mut batch: VecDeque<Bytes> = VecDeque::new();
    let mut frame = Vec::new();
    let mut failed = None;
    loop {
        // Answers already in, in order; queued for the next write.
        while let Some(AckRun { count, result }) = acks.try_take() {
            outstanding = outstanding.saturating_sub(count);
            match result {
                Ok((d, t)) => queue_acks(&mut stream, d, t, count, &mut frame),
                Err(r) => {
                    failed = Some(super::channels::reason_error(r));
                    break;
                }
            }
        }
        if failed.is_some() {
            break;
        }
        // `recv` writes what is queued before it waits; the frames that
        // came in the same read go with it.
        let data = match stream.recv().await {
            Ok(Some(data)) => data,
            _ => break,
        };
        batch.push_back(Bytes::from(data));
        while batch.len() < PUB_BATCH {
            match stream.try_recv() {
                Ok(Some(data)) => batch.push_back(Bytes::from(data)),
                // A bad frame ends the stream at the next `recv`.
                Ok(None) | Err(_) => break,
            }
        }
        outstanding += batch.len() as u64;
        if let Err(e) = api
            .queue_publish_many(owner, &name, &token, &mut batch, Some(&acks))
            .await
        {
            failed = Some(e);
            break;
        }
    }
    // The client is done (or failed): answer what is still in flight.
    while failed.is_none() && outstanding > 0 {
        match ack(&acks).await {
            Ok((count, (d, t))) => {
                outstanding = outstanding.saturating_sub(count);
                queue_acks(&mut stream, d, t, count, &mut frame);
            }
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        end_frame(&error_json(&e), &mut frame);
        let _ = stream.queue(&frame);
    }
    let _ = stream.close().await;
}

impl StreamService for ChannelsStream {
    fn serve(&self, mut stream: FrameStream) -> BoxFuture<'static, ()> {
        let api = self.0.clone();
        Box::pin(async move {
            let first = match stream.recv().await {
                Ok(Some(f)) => f,
                _ => return,
            };
            match parse_open(&first) {
                Ok(Open::Sub(options)) => serve_sub(api, stream, options).await,
                Ok(Open::Pub { name, token }) => serve_pub(api, stream, name, token).await,
                Err(e) => refuse(&mut stream, &e).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::wire::channels_stream::{END, GAP, MESSAGE};
    use relay_proto::SecretKey;

    #[test]
    fn the_open_frame_parses_or_is_a_bad_request() {
        match parse_open(br#"{"op":"pub","name":"a/b","token":"rnk1x"}"#) {
            Ok(Open::Pub { name, token }) => {
                assert_eq!((name.as_str(), token.as_deref()), ("a/b", Some("rnk1x")));
            }
            other => panic!("{other:?}"),
        }
        match parse_open(br#"{"op":"sub","name":"a/b","start":"from-start"}"#) {
            Ok(Open::Sub(o)) => assert_eq!(o.start.as_deref(), Some("from-start")),
            other => panic!("{other:?}"),
        }
        let bad: [&[u8]; 9] = [
            b"",
            b"\xff\xfe",
            b"not json",
            b"{}",
            br#"{"op":"watch","name":"a"}"#,
            br#"{"op":"pub"}"#,
            br#"{"op":"sub","name":"a","count":3}"#,
            br#"{"op":"pub","name":7}"#,
            b"[1,2,3]",
        ];
        for first in bad {
            let e = parse_open(first).unwrap_err();
            assert_eq!(e.kind(), "bad-request", "{first:?}");
            assert!(e.to_string().starts_with("bad-request: bad first frame"));
        }
    }

    #[test]
    fn events_encode_as_the_proto_frames() {
        let publisher = SecretKey::from_bytes(&[7; 32]).node_id();
        let mut out = Vec::new();
        let message = SubEvent::Message {
            publisher,
            seq: 5,
            ts: 9,
            data: bytes::Bytes::from_static(b"hi"),
        };
        assert!(encode_event(&message, &mut out));
        assert_eq!(out[0], MESSAGE);
        assert_eq!(
            StreamFrame::decode(&out).unwrap(),
            StreamFrame::Message {
                publisher,
                seq: 5,
                ts: 9,
                data: b"hi"
            }
        );
        let gap = SubEvent::Gap {
            publisher,
            from: 2,
            to: 4,
        };
        assert!(encode_event(&gap, &mut out));
        assert_eq!(out[0], GAP);
        let ended = SubEvent::Ended(relay_proto::wire::channel::Reason::Removed);
        assert!(!encode_event(&ended, &mut out));
        assert_eq!(out[0], END);
        let Ok(StreamFrame::End { error }) = StreamFrame::decode(&out) else {
            panic!("{out:?}");
        };
        let v: Value = serde_json::from_str(error).unwrap();
        assert_eq!(v["error"]["kind"], "removed");
        assert!(encode_event(
            &SubEvent::Accepted { reliable: true },
            &mut out
        ));
        assert!(out.is_empty());
    }
}
