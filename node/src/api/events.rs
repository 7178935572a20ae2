//! `GET /v1/events`: peer events as NDJSON, fed from the transport's event
//! broadcast by a task owned by the server, ended by the client leaving or
//! the node stopping.

use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use relay_transport::PeerEvent;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::body::{with_type, ApiResponse, ChannelBody, NDJSON};
use super::error::ApiError;
use super::router::RequestContext;

/// A `keepalive` line after this long without an event.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// Lines buffered for a slow client before the broadcast lags for it.
const BUFFERED_LINES: usize = 64;

/// The event's line, or `None` for events the API does not carry.
pub fn event_json(event: &PeerEvent) -> Option<Value> {
    match event {
        PeerEvent::Connected {
            node_id,
            path,
            remote_addr,
            ..
        } => Some(json!({
            "type": "connected",
            "node_id": node_id.to_string(),
            "path": path.as_str(),
            "remote_addr": remote_addr.map(|a| a.to_string()),
            // The transport's connection generation goes here once
            // `PeerEvent::Connected` carries it.
            "generation": Value::Null,
        })),
        PeerEvent::PathChanged {
            node_id,
            path,
            remote_addr,
        } => Some(json!({
            "type": "path-changed",
            "node_id": node_id.to_string(),
            "path": path.as_str(),
            "remote_addr": remote_addr.map(|a| a.to_string()),
        })),
        PeerEvent::Disconnected { node_id, reason } => Some(json!({
            "type": "disconnected",
            "node_id": node_id.to_string(),
            "reason": reason,
        })),
        _ => None,
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The streaming response for `events`, using a stream permit.
pub fn events_response(
    mut events: broadcast::Receiver<PeerEvent>,
    ctx: &RequestContext,
    keepalive: Duration,
) -> Result<ApiResponse, ApiError> {
    let permit = ctx.stream_permit()?;
    let (tx, rx) = mpsc::channel(BUFFERED_LINES);
    let shutdown = ctx.shutdown.clone();
    ctx.tasks.spawn(async move {
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                next = tokio::time::timeout(keepalive, events.recv()) => next,
            };
            let value = match next {
                Err(_) => json!({"type": "keepalive"}),
                Ok(Ok(event)) => match event_json(&event) {
                    Some(value) => value,
                    None => continue,
                },
                Ok(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    json!({"type": "lagged", "missed": missed})
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return,
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                sent = tx.send(line(&value)) => if sent.is_err() { return },
            }
        }
    });
    Ok(with_type(
        StatusCode::OK,
        NDJSON,
        http_body_util::BodyExt::boxed(ChannelBody::new(rx, permit)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use relay_proto::SecretKey;
    use relay_transport::PathKind;

    #[test]
    fn event_lines() {
        let id = SecretKey::generate().node_id();
        let v = event_json(&PeerEvent::Connected {
            node_id: id,
            path: PathKind::Direct,
            remote_addr: Some("127.0.0.1:5".parse().unwrap()),
        })
        .unwrap();
        assert_eq!(v["type"], "connected");
        assert_eq!(v["remote_addr"], "127.0.0.1:5");
        assert_eq!(v["generation"], Value::Null);
        let v = event_json(&PeerEvent::PathChanged {
            node_id: id,
            path: PathKind::Relayed,
            remote_addr: None,
        })
        .unwrap();
        assert_eq!(v["type"], "path-changed");
        assert_eq!(v["path"], "relayed");
        let v = event_json(&PeerEvent::Disconnected {
            node_id: id,
            reason: "timeout: idle".into(),
        })
        .unwrap();
        assert_eq!(v["reason"], "timeout: idle");
        assert!(event_json(&PeerEvent::ObservedAddr {
            node_id: id,
            addr: "127.0.0.1:5".parse().unwrap()
        })
        .is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn stream_carries_events_keepalives_and_ends_on_shutdown() {
        let (tx, rx) = broadcast::channel(16);
        let ctx = RequestContext::new(1);
        let response = events_response(rx, &ctx, KEEPALIVE).unwrap();
        assert_eq!(response.headers()["content-type"], NDJSON);
        // The one stream permit is taken.
        assert_eq!(
            events_response(tx.subscribe(), &ctx, KEEPALIVE)
                .unwrap_err()
                .kind(),
            "busy"
        );
        let id = SecretKey::generate().node_id();
        tx.send(PeerEvent::Disconnected {
            node_id: id,
            reason: "closed: bye".into(),
        })
        .unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let v: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(v["type"], "disconnected");
        // Nothing for 15 s: a keepalive line (the paused clock advances).
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&second[..], b"{\"type\":\"keepalive\"}\n");
        ctx.shutdown.cancel();
        assert!(body.frame().await.is_none());
        ctx.tasks.close();
        ctx.tasks.wait().await;
        drop(body);
        // The permit came back with the body.
        assert!(ctx.stream_permit().is_err(), "shutdown refuses new streams");
    }

    #[tokio::test]
    async fn a_slow_reader_gets_lagged() {
        let (tx, rx) = broadcast::channel(4);
        let ctx = RequestContext::new(1);
        let id = SecretKey::generate().node_id();
        // Fill the broadcast beyond its capacity before the feeder reads.
        for _ in 0..10 {
            tx.send(PeerEvent::Disconnected {
                node_id: id,
                reason: "x: y".into(),
            })
            .unwrap();
        }
        let response = events_response(rx, &ctx, KEEPALIVE).unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let v: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(v["type"], "lagged");
        assert_eq!(v["missed"], 6);
    }
}
