//! The ledger on the HTTP endpoint, over real loopback TCP: pages, and
//! event streams that resume by `Last-Event-ID` with no gap and no
//! duplicate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use relay_proto::SecretKey;
use serde_json::Value;
use tokio::net::TcpStream;

use super::ledger::HttpLedger;
use super::sse::LAST_EVENT_ID;
use super::*;
use crate::ledger::Ledger;
use crate::testutil::{temp_dir, traversal_event as event};

/// Generous bound on every network step on the real clock; no test relies
/// on it. (On a paused clock there is none: time jumps while a test waits
/// for the network.)
const STEP: Option<Duration> = Some(Duration::from_secs(20));
const DAY: Duration = Duration::from_secs(24 * 3600);

struct Node(HttpLedger);

impl HttpSource for Node {
    fn status_json(&self) -> String {
        "{}".into()
    }
    fn metrics_text(&self) -> String {
        let mut out = crate::metrics::text::TextWriter::new();
        self.0.metrics(&mut out);
        out.finish()
    }
    fn ledger(&self) -> Option<&HttpLedger> {
        Some(&self.0)
    }
}

/// A ledger with `n` entries behind an endpoint whose time bounds are far
/// beyond any test (the clock may be paused and jump).
async fn serve(name: &str, n: u64, max_streams: usize) -> (Ledger, Arc<Node>, SocketAddr) {
    let ledger = Ledger::open(&temp_dir(name), SecretKey::from_bytes(&[1; 32])).unwrap();
    for i in 0..n {
        ledger.append_at(i, event(i)).await.unwrap();
    }
    let node = Arc::new(Node(
        HttpLedger::new(ledger.clone()).with_stream_limits(max_streams, 7 * DAY),
    ));
    let server = HttpServer::bind(&HttpOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        allow_remote: false,
        token_file: None,
    })
    .await
    .unwrap()
    .with_head_timeout(DAY);
    let addr = server.local_addr();
    tokio::spawn(server.serve(node.clone()));
    (ledger, node, addr)
}

async fn within<T>(step: Option<Duration>, f: impl std::future::Future<Output = T>) -> T {
    match step {
        Some(step) => tokio::time::timeout(step, f).await.expect("step timed out"),
        None => f.await,
    }
}

async fn get(
    step: Option<Duration>,
    addr: SocketAddr,
    path: &str,
    last_event_id: Option<&str>,
) -> Response<Incoming> {
    within(step, async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::get(path).header("host", "localhost");
        if let Some(id) = last_event_id {
            req = req.header(LAST_EVENT_ID, id);
        }
        sender
            .send_request(req.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap()
    })
    .await
}

/// Reads an event stream: `(id, data)` per event; comments are skipped.
struct Events {
    step: Option<Duration>,
    body: Incoming,
    text: String,
    ready: VecDeque<(String, String)>,
}

impl Events {
    fn new(step: Option<Duration>, response: Response<Incoming>) -> Self {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            step,
            body: response.into_body(),
            text: String::new(),
            ready: VecDeque::new(),
        }
    }

    async fn next(&mut self) -> (String, String) {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return e;
            }
            let frame = within(self.step, self.body.frame())
                .await
                .expect("stream ended")
                .unwrap();
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.text.push_str(std::str::from_utf8(&data).unwrap());
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let (mut id, mut data) = (None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if let Some(id) = id {
                    self.ready.push_back((id, data));
                }
            }
        }
    }

    /// The next event's id, checked against its data's cursor.
    async fn next_id(&mut self) -> u64 {
        let (id, data) = self.next().await;
        let v: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["cursor"], id.as_str());
        id.parse().unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_resuming_by_last_event_id_misses_nothing_and_gets_nothing_twice() {
    let (ledger, node, addr) = serve("http-sse-resume", 5, 4).await;

    // Read three of the five, then disconnect.
    let mut first = Events::new(None, get(None, addr, "/ledger/events", None).await);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(first.next_id().await);
    }
    assert_eq!(node.0.stats().opened(), 1);
    drop(first);

    // Entries keep coming while the client is away.
    for i in 5..10 {
        ledger.append_at(i, event(i)).await.unwrap();
    }
    let last = seen.last().unwrap().to_string();
    let mut resumed = Events::new(None, get(None, addr, "/ledger/events", Some(&last)).await);
    // ...and while it replays what it missed.
    let writer = {
        let l = ledger.clone();
        tokio::spawn(async move {
            for i in 10..20 {
                l.append_at(i, event(i)).await.unwrap();
            }
        })
    };
    while seen.len() < 20 {
        seen.push(resumed.next_id().await);
    }
    writer.await.unwrap();
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());

    // A streamed answer outlives the exchange's time bound: two days on,
    // the stream is still there and the next entry arrives, once.
    tokio::time::sleep(2 * DAY).await;
    ledger.append_at(20, event(20)).await.unwrap();
    assert_eq!(resumed.next_id().await, 21);

    // `?after=` resumes the same way when there is no Last-Event-ID.
    let mut after = Events::new(None, get(None, addr, "/ledger/events?after=19", None).await);
    assert_eq!(after.next_id().await, 20);
    assert_eq!(after.next_id().await, 21);
    ledger.close();
}

#[tokio::test]
async fn pages_filters_and_bad_cursors() {
    let (ledger, node, addr) = serve("http-ledger-page", 5, 4).await;
    let r = get(STEP, addr, "/ledger?after=2&limit=2", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let cursors: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cursor"].as_str().unwrap())
        .collect();
    assert_eq!(cursors, ["3", "4"]);
    assert_eq!(v["cursor"], "4");
    assert_eq!(v["entries"][0]["kind"], "traversal-outcome");

    for (path, id, status) in [
        ("/ledger?after=x", None, 400),
        ("/ledger?follow=1", None, 400),
        ("/ledger?kind=nope", None, 400),
        ("/ledger/events?after=-1", None, 400),
        ("/ledger/events", Some("not-a-cursor"), 400),
    ] {
        let r = get(STEP, addr, path, id).await;
        assert_eq!(r.status(), status, "{path} {id:?}");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["kind"], "bad-request", "{path}");
    }
    assert_eq!(node.0.stats().opened(), 0);

    // Filters apply to the stream too.
    let mut only_kind = Events::new(
        STEP,
        get(
            STEP,
            addr,
            "/ledger/events?kind=traversal-outcome&after=4",
            None,
        )
        .await,
    );
    assert_eq!(only_kind.next_id().await, 5);
    let none = get(STEP, addr, "/ledger/events?kind=node-announcement", None).await;
    assert_eq!(none.status(), 200);
    ledger.close();
}

#[tokio::test]
async fn event_streams_are_capped_and_counted() {
    let (ledger, node, addr) = serve("http-sse-cap", 1, 2).await;
    let mut a = Events::new(STEP, get(STEP, addr, "/ledger/events", None).await);
    let mut b = Events::new(STEP, get(STEP, addr, "/ledger/events", None).await);
    assert_eq!((a.next_id().await, b.next_id().await), (1, 1));
    let r = get(STEP, addr, "/ledger/events", None).await;
    assert_eq!(r.status(), 503);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["kind"], "busy");
    let s = node.0.stats();
    assert_eq!((s.open(), s.opened(), s.refused()), (2, 2, 1));
    let metrics = node.metrics_text();
    assert!(
        metrics.contains("relay_node_http_sse_clients 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relay_node_http_sse_refused_total 1\n"),
        "{metrics}"
    );
    ledger.close();
}
