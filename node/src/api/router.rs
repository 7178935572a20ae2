//! The route table: `(method, path)` to a [`Handler`], and stream services
//! reached by upgrading `GET /v1/stream/{service}` to the frame stream.
//! Subsystems add their routes here when the node starts; the table is then
//! frozen and shared by every connection.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use relay_proto::frame_stream::UPGRADE_PROTOCOL;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::body::{empty, ApiResponse};
use super::error::ApiError;
use super::frames::FrameStream;
use crate::subsystem::BoxFuture;

/// Path prefix of every route.
pub const PREFIX: &str = "/v1/";
/// Path prefix of the stream services.
pub const STREAM_PREFIX: &str = "/v1/stream/";

/// A request as handlers see it.
pub type ApiRequest = Request<Incoming>;

/// What a handler gets besides the request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Permits for long-lived streams (events, frame streams).
    pub streams: Arc<Semaphore>,
    /// Owner of the tasks a request leaves running (a stream's feeder).
    pub tasks: TaskTracker,
    /// Cancelled when the node shuts down.
    pub shutdown: CancellationToken,
}

impl RequestContext {
    /// A context for tests and one-off servers.
    pub fn new(max_streams: usize) -> Self {
        Self {
            streams: Arc::new(Semaphore::new(max_streams)),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// A permit for one more long-lived stream, or `busy`.
    pub fn stream_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if self.shutdown.is_cancelled() {
            return Err(ApiError::ShuttingDown);
        }
        self.streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy("too many streams are open".into()))
    }
}

/// Answers one route.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request.
    fn call(
        &self,
        req: ApiRequest,
        ctx: RequestContext,
    ) -> BoxFuture<'static, Result<ApiResponse, ApiError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(ApiRequest, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ApiResponse, ApiError>> + Send + 'static,
{
    fn call(
        &self,
        req: ApiRequest,
        ctx: RequestContext,
    ) -> BoxFuture<'static, Result<ApiResponse, ApiError>> {
        Box::pin(self(req, ctx))
    }
}

/// Serves one upgraded frame stream.
pub trait StreamService: Send + Sync + 'static {
    /// Serves `stream` until it ends.
    fn serve(&self, stream: FrameStream) -> BoxFuture<'static, ()>;
}

/// Registering a route failed (a bug in a subsystem).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    /// The path does not start with `/v1/`, or is under the stream prefix.
    #[error("route: {0} is not a /v1/ path outside /v1/stream/")]
    BadPath(String),
    /// Two subsystems claim the same route.
    #[error("route: {method} {path} is registered twice")]
    Duplicate {
        /// The method.
        method: String,
        /// The path.
        path: String,
    },
    /// A stream service name is empty, has a `/`, or is taken.
    #[error("route: stream service {0:?} is invalid or registered twice")]
    Service(String),
}

impl RouteError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        "route"
    }
}

/// The route table.
#[derive(Default)]
pub struct Routes {
    routes: BTreeMap<String, BTreeMap<String, Arc<dyn Handler>>>,
    services: BTreeMap<String, Arc<dyn StreamService>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("routes", &self.list())
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Routes {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `method path`.
    pub fn route(
        &mut self,
        method: Method,
        path: &str,
        handler: impl Handler,
    ) -> Result<(), RouteError> {
        if !path.starts_with(PREFIX) || path.starts_with(STREAM_PREFIX) || path.contains('?') {
            return Err(RouteError::BadPath(path.to_string()));
        }
        let methods = self.routes.entry(path.to_string()).or_default();
        if methods.contains_key(method.as_str()) {
            return Err(RouteError::Duplicate {
                method: method.to_string(),
                path: path.to_string(),
            });
        }
        methods.insert(method.to_string(), Arc::new(handler));
        Ok(())
    }

    /// Adds `GET path`.
    pub fn get(&mut self, path: &str, handler: impl Handler) -> Result<(), RouteError> {
        self.route(Method::GET, path, handler)
    }

    /// Adds `POST path`.
    pub fn post(&mut self, path: &str, handler: impl Handler) -> Result<(), RouteError> {
        self.route(Method::POST, path, handler)
    }

    /// Adds the stream service `name` (`GET /v1/stream/{name}` + upgrade).
    pub fn stream(&mut self, name: &str, service: impl StreamService) -> Result<(), RouteError> {
        if name.is_empty() || name.contains('/') || self.services.contains_key(name) {
            return Err(RouteError::Service(name.to_string()));
        }
        self.services.insert(name.to_string(), Arc::new(service));
        Ok(())
    }

    /// Every `METHOD path`, sorted; stream services as `GET /v1/stream/{name}`.
    pub fn list(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .routes
            .iter()
            .flat_map(|(path, methods)| methods.keys().map(move |m| format!("{m} {path}")))
            .collect();
        out.extend(
            self.services
                .keys()
                .map(|name| format!("GET {STREAM_PREFIX}{name}")),
        );
        out
    }

    /// Answers `req`: the handler's response or the error's.
    pub async fn dispatch(&self, req: ApiRequest, ctx: RequestContext) -> ApiResponse {
        match self.try_dispatch(req, ctx).await {
            Ok(response) => response,
            Err(e) => super::body::error(&e),
        }
    }

    async fn try_dispatch(
        &self,
        req: ApiRequest,
        ctx: RequestContext,
    ) -> Result<ApiResponse, ApiError> {
        let path = req.uri().path().to_string();
        if let Some(name) = path.strip_prefix(STREAM_PREFIX) {
            return self.upgrade(name, req, ctx);
        }
        let Some(methods) = self.routes.get(&path) else {
            return Err(ApiError::NotFound(format!("no route {path}")));
        };
        match methods.get(req.method().as_str()) {
            Some(handler) => handler.call(req, ctx).await,
            None => Err(ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                path,
                allow: methods.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// `GET /v1/stream/{name}` with the upgrade headers: answers 101 and
    /// hands the upgraded connection to the service on a tracked task.
    fn upgrade(
        &self,
        name: &str,
        mut req: ApiRequest,
        ctx: RequestContext,
    ) -> Result<ApiResponse, ApiError> {
        let Some(service) = self.services.get(name).cloned() else {
            return Err(ApiError::NotFound(format!("no stream service {name:?}")));
        };
        if req.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                path: req.uri().path().to_string(),
                allow: "GET".into(),
            });
        }
        if !wants_upgrade(&req) {
            return Err(ApiError::UpgradeRequired(UPGRADE_PROTOCOL));
        }
        let permit = ctx.stream_permit()?;
        let upgrade = hyper::upgrade::on(&mut req);
        let shutdown = ctx.shutdown.clone();
        let service_name = name.to_string();
        ctx.tasks.spawn(async move {
            let _permit = permit;
            let upgraded = tokio::select! {
                () = shutdown.cancelled() => return,
                upgraded = upgrade => upgraded,
            };
            match upgraded {
                Ok(upgraded) => {
                    let io = hyper_util::rt::TokioIo::new(upgraded);
                    let stream = FrameStream::new(Box::new(io), shutdown.clone());
                    // A service stuck writing to a client that does not
                    // read still ends within the drain time of shutdown.
                    tokio::select! {
                        () = service.serve(stream) => {}
                        () = async {
                            shutdown.cancelled().await;
                            tokio::time::sleep(super::DRAIN_TIMEOUT).await;
                        } => {}
                    }
                }
                Err(e) => {
                    tracing::debug!(service = %service_name, error = %e, "stream upgrade failed");
                }
            }
        });
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
        Ok(response)
    }
}

/// `Connection: upgrade` (as one token) and `Upgrade: relay-node-frames/1`.
fn wants_upgrade<B>(req: &Request<B>) -> bool {
    let connection = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade = req
        .headers()
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(UPGRADE_PROTOCOL));
    connection && upgrade
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::body::ok;

    #[test]
    fn registration_rules() {
        let mut routes = Routes::new();
        let h = |_req: ApiRequest, _ctx: RequestContext| async { Ok(ok(&1)) };
        routes.get("/v1/a", h).unwrap();
        routes.post("/v1/a", h).unwrap();
        assert_eq!(
            routes.get("/v1/a", h).unwrap_err(),
            RouteError::Duplicate {
                method: "GET".into(),
                path: "/v1/a".into()
            }
        );
        assert!(matches!(routes.get("/a", h), Err(RouteError::BadPath(_))));
        assert!(matches!(
            routes.get("/v1/stream/x", h),
            Err(RouteError::BadPath(_))
        ));
        assert_eq!(routes.list(), vec!["GET /v1/a", "POST /v1/a"]);
    }

    #[test]
    fn upgrade_headers() {
        let req = |conn: &str, up: &str| {
            Request::get("/v1/stream/echo")
                .header(CONNECTION, conn)
                .header(UPGRADE, up)
                .body(())
                .unwrap()
        };
        assert!(wants_upgrade(&req("Upgrade", "relay-node-frames/1")));
        assert!(wants_upgrade(&req(
            "keep-alive, upgrade",
            "RELAY-NODE-FRAMES/1"
        )));
        assert!(!wants_upgrade(&req("keep-alive", "relay-node-frames/1")));
        assert!(!wants_upgrade(&req("upgrade", "websocket")));
    }

    #[test]
    fn stream_permits_run_out() {
        let ctx = RequestContext::new(1);
        let first = ctx.stream_permit().unwrap();
        assert_eq!(ctx.stream_permit().unwrap_err().kind(), "busy");
        drop(first);
        assert!(ctx.stream_permit().is_ok());
        ctx.shutdown.cancel();
        assert_eq!(ctx.stream_permit().unwrap_err().kind(), "shutting-down");
    }
}
