//! The fake's HTTP side: accepting loopback connections, handing each request to its route, and
//! dropping connections for real. `route` names the call, `api` runs Atlas's checks and faults,
//! `backend` does the work, `request` and `answer` read and write Atlas's wire format.

mod answer;
mod api;
mod backend;
mod request;
mod route;

use crate::config::FakeOp;
use crate::state::Inner;
use answer::error;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use route::{Route, route};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const MAX_BODY_BYTES: usize = 1 << 20;

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub addr: SocketAddr,
    /// The server's tasks: the backend's delayed commits run here, so shutdown waits for them.
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Shared {
    pub(crate) fn new(
        inner: Inner,
        addr: SocketAddr,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Shared {
        Shared {
            inner: Mutex::new(inner),
            addr,
            tracker,
            shutdown,
        }
    }

    /// A poisoned lock only means a panic elsewhere; the data is still the best we have.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the handler wants done with the request.
enum Outcome {
    Answer(Response<Body>),
    /// Close the TCP connection without a word.
    Drop,
}

/// Serves until `shutdown` fires; each connection in its own task, so it can be dropped alone.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(%error, "fake Atlas: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let drop_now = CancellationToken::new();
            let signal = drop_now.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                let signal = signal.clone();
                async move {
                    match handle(&shared, req).await {
                        Outcome::Answer(resp) => Ok::<_, Infallible>(resp),
                        Outcome::Drop => {
                            signal.cancel();
                            std::future::pending().await
                        }
                    }
                }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            // Returning drops `conn`, and with it the socket: the client sees the connection
            // close with no answer.
            tokio::select! {
                _ = conn => {}
                _ = drop_now.cancelled() => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// Decrements the in-flight gauges even when the connection is dropped mid-call.
struct InFlight<'a> {
    shared: &'a Shared,
    group: Option<String>,
}

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared, group: Option<String>) -> InFlight<'a> {
        shared.lock().enter(group.as_deref());
        InFlight { shared, group }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.shared.lock().leave(self.group.as_deref());
    }
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Outcome {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            shared.lock().record("other", 413);
            return Outcome::Answer(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "The request body is too large or could not be read.",
                &[],
            ));
        }
    };
    match route(&parts.method, parts.uri.path()) {
        Route::Token => api::oauth(shared, FakeOp::Token, &parts.headers, &body).await,
        Route::Revoke => api::oauth(shared, FakeOp::Revoke, &parts.headers, &body).await,
        Route::Api { op, group, id } => {
            api::api(shared, op, &group, id.as_deref(), &parts, &body).await
        }
        Route::MethodNotAllowed(op) => {
            shared.lock().record(op, 405);
            Outcome::Answer(error(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "This method is not allowed on this resource.",
                &[],
            ))
        }
        Route::NotFound => {
            shared.lock().record("other", 404);
            Outcome::Answer(error(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_FOUND",
                &format!("Cannot find resource {}.", parts.uri.path()),
                &[],
            ))
        }
    }
}
