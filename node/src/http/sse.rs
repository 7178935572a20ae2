//! Server-sent events (the `text/event-stream` format of the HTML standard),
//! for resources that stream, such as the ledger's tail: each event carries
//! an `id:` (the cursor), and a client that reconnects sends the last one it
//! saw as `Last-Event-ID`, which [`last_event_id`] reads so the resource can
//! resume after it. The encoded events come from a bounded channel; the
//! stream ends when its sender is dropped.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::HeaderName;
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use super::router::{response, Body};
use crate::api::body::ChannelBody;

/// The `Content-Type` of an event stream.
pub const SSE: &str = "text/event-stream";
/// A comment line that keeps an idle stream (and proxies on its way) alive;
/// clients ignore it.
pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// The `Last-Event-ID` request header.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// Longest `Last-Event-ID` taken; a longer one is ignored.
pub const MAX_EVENT_ID: usize = 256;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `id:` field (the resume cursor), if any.
    pub id: Option<String>,
    /// The `event:` field (the event type), if any.
    pub event: Option<String>,
    /// The `data:`, one field per line.
    pub data: String,
}

impl SseEvent {
    /// An event with an id and data.
    pub fn new(id: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            id: Some(id.into()),
            event: None,
            data: data.into(),
        }
    }

    /// The event on the wire. Line breaks in `data` become separate `data:`
    /// lines; in `id` and `event` (single-line fields) they are removed, as
    /// is NUL from `id` (a client would ignore such an id).
    pub fn encode(&self) -> Bytes {
        let mut out = String::with_capacity(self.data.len() + 32);
        if let Some(id) = &self.id {
            out.push_str("id: ");
            out.extend(id.chars().filter(|c| !matches!(c, '\r' | '\n' | '\0')));
            out.push('\n');
        }
        if let Some(event) = &self.event {
            out.push_str("event: ");
            out.extend(event.chars().filter(|c| !matches!(c, '\r' | '\n')));
            out.push('\n');
        }
        let data = self.data.replace("\r\n", "\n").replace('\r', "\n");
        for line in data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        Bytes::from(out)
    }
}

/// The request's `Last-Event-ID`: where a reconnecting client wants to
/// resume. `None` when absent, empty, not UTF-8 or over [`MAX_EVENT_ID`].
pub fn last_event_id<B>(request: &Request<B>) -> Option<&str> {
    let value = request.headers().get(LAST_EVENT_ID)?;
    if value.len() > MAX_EVENT_ID {
        return None;
    }
    let id = value.to_str().ok()?.trim();
    (!id.is_empty()).then_some(id)
}

/// A `200 text/event-stream` response that sends each encoded event (or
/// comment) received on `events`, holds `guard` while the client is there,
/// and ends when every sender is gone.
pub fn sse_response<G>(events: mpsc::Receiver<Bytes>, guard: G) -> Response<Body>
where
    G: Unpin + Send + Sync + 'static,
{
    response(StatusCode::OK, SSE, ChannelBody::new(events, guard).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};

    #[test]
    fn encodes_fields_and_lines() {
        let e = SseEvent::new("42", "one\ntwo\r\nthree\rfour");
        assert_eq!(
            e.encode(),
            "id: 42\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
        );
        let e = SseEvent {
            id: Some("4\n2\0\r".into()),
            event: Some("entry\nid: 9".into()),
            data: String::new(),
        };
        assert_eq!(e.encode(), "id: 42\nevent: entryid: 9\ndata: \n\n");
        let e = SseEvent {
            data: "{\"a\":1}".into(),
            ..SseEvent::default()
        };
        assert_eq!(e.encode(), "data: {\"a\":1}\n\n");
    }

    #[test]
    fn reads_last_event_id() {
        let req = |v: Option<&[u8]>| {
            let mut b = Request::builder().uri("/tail");
            if let Some(v) = v {
                b = b.header(LAST_EVENT_ID, v);
            }
            b.body(()).unwrap()
        };
        assert_eq!(last_event_id(&req(Some(b"17"))), Some("17"));
        assert_eq!(last_event_id(&req(Some(b" 17 "))), Some("17"));
        assert_eq!(last_event_id(&req(None)), None);
        assert_eq!(last_event_id(&req(Some(b""))), None);
        assert_eq!(last_event_id(&req(Some(b"\xff\xfe"))), None);
        let long = vec![b'7'; MAX_EVENT_ID + 1];
        assert_eq!(last_event_id(&req(Some(&long))), None);
        let longest = vec![b'7'; MAX_EVENT_ID];
        assert_eq!(
            last_event_id(&req(Some(&longest))).map(str::len),
            Some(MAX_EVENT_ID)
        );
    }

    #[tokio::test]
    async fn streams_events_until_the_sender_goes() {
        let (tx, rx) = mpsc::channel(4);
        let r = sse_response(rx, ());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/event-stream");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        let mut body = r.into_body();
        tx.send(SseEvent::new("1", "a").encode()).await.unwrap();
        tx.send(SseEvent::new("2", "b").encode()).await.unwrap();
        let mut frames = Vec::new();
        for _ in 0..2 {
            let frame = body.frame().await.unwrap().unwrap();
            frames.push(frame.into_data().unwrap());
        }
        assert_eq!(frames, ["id: 1\ndata: a\n\n", "id: 2\ndata: b\n\n"]);
        drop(tx);
        assert!(body.frame().await.is_none());
    }
}
