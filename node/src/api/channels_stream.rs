//! The `channels` frame stream (`GET /v1/stream/channels` + upgrade): the
//! high-rate data path for peer processes (docs/LOCAL_API.md, "Channels
//! routes"). The client's first frame is JSON: `{"op":"sub",...}` (the
//! options of `GET /v1/sub`) or `{"op":"pub","name","token"}`; the node
//! answers `{"ok":true}` or `{"error":{kind,detail}}` (and closes). Then:
//!
//! - sub: the node sends one binary frame per event, many per write:
//!   `0x01` publisher(32) seq(u64 BE) ts(u64 BE) data; `0x02` publisher(32)
//!   from(u64 BE) to(u64 BE) for a gap; `0x03` and a JSON error when the
//!   subscription ends;
//! - pub: each client frame is one message; the node answers each, in
//!   order, with `0x04` delivered(u32 BE) targets(u32 BE), or `0x03` and a
//!   JSON error (then closes). Acknowledgements are written in batches.

use std::collections::VecDeque;

use relay_channels::SubEvent;
use serde::Deserialize;
use serde_json::{json, Value};

use super::channels::{ack, end_json, token_bytes, ChannelsApi, SubOptions};
use super::error::ApiError;
use super::frames::FrameStream;
use super::router::StreamService;
use crate::subsystem::BoxFuture;
use crate::subsystems::channels_hub::AckRx;

/// Frame type: a message.
pub const MESSAGE: u8 = 0x01;
/// Frame type: a gap notice.
pub const GAP: u8 = 0x02;
/// Frame type: the end, with a JSON error.
pub const END: u8 = 0x03;
/// Frame type: a publish acknowledgement.
pub const ACK: u8 = 0x04;

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

/// An acknowledgement frame.
fn ack_frame(delivered: u32, targets: u32) -> [u8; 9] {
    let mut f = [ACK; 9];
    f[1..5].copy_from_slice(&delivered.to_be_bytes());
    f[5..].copy_from_slice(&targets.to_be_bytes());
    f
}

/// Answers the first frame with an error.
async fn refuse(stream: &mut FrameStream, e: &ApiError) {
    let _ = stream
        .send(&serde_json::to_vec(&error_json(e)).unwrap_or_default())
        .await;
}

fn encode_event(event: SubEvent, out: &mut Vec<u8>) -> bool {
    out.clear();
    match event {
        SubEvent::Message {
            publisher,
            seq,
            ts,
            data,
        } => {
            out.push(MESSAGE);
            out.extend_from_slice(publisher.as_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&data);
        }
        SubEvent::Gap {
            publisher,
            from,
            to,
        } => {
            out.push(GAP);
            out.extend_from_slice(publisher.as_bytes());
            out.extend_from_slice(&from.to_be_bytes());
            out.extend_from_slice(&to.to_be_bytes());
        }
        SubEvent::Denied(r) | SubEvent::Ended(r) => {
            out.push(END);
            out.extend(serde_json::to_vec(&end_json(r)).unwrap_or_default());
            return false;
        }
        SubEvent::Accepted { .. } => return true,
    }
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
            let more = encode_event(event, &mut frame);
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
    let mut pending: VecDeque<AckRx> = VecDeque::new();
    let mut failed = None;
    loop {
        // Acknowledgements already in, in order; queued for the next write.
        while let Some(rx) = pending.front_mut() {
            match rx.try_recv() {
                Ok(result) => {
                    pending.pop_front();
                    match result {
                        Ok((d, t)) => {
                            let _ = stream.queue(&ack_frame(d, t));
                        }
                        Err(r) => failed = Some(super::channels::reason_error(r)),
                    }
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => break,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    pending.pop_front();
                }
            }
        }
        if failed.is_some() {
            break;
        }
        // `recv` writes what is queued before it waits.
        let data = match stream.recv().await {
            Ok(Some(data)) => data,
            _ => break,
        };
        match api.queue_publish(owner, &name, &token, data).await {
            Ok(rx) => pending.push_back(rx),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    // The client is done (or failed): answer what is still in flight.
    for rx in pending {
        if failed.is_some() {
            break;
        }
        match ack(rx).await {
            Ok((d, t)) => {
                let _ = stream.queue(&ack_frame(d, t));
            }
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        let mut end = vec![END];
        end.extend(serde_json::to_vec(&error_json(&e)).unwrap_or_default());
        let _ = stream.queue(&end);
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
            match serde_json::from_slice::<Open>(&first) {
                Ok(Open::Sub(options)) => serve_sub(api, stream, options).await,
                Ok(Open::Pub { name, token }) => serve_pub(api, stream, name, token).await,
                Err(e) => {
                    let e = ApiError::BadRequest(format!("bad first frame: {e}"));
                    refuse(&mut stream, &e).await;
                }
            }
        })
    }
}
