//! The HTTP endpoint: `/metrics` (Prometheus text exposition), `/healthz` (process alive) and `/readyz`
//! (config loaded and the last pass did not fail outright).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The content type of the Prometheus text format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the endpoint could not be bound or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "cannot listen for /metrics on {addr}: {source}; pick a free address in the config's \
         `metrics.listen` (or set it to null to turn the endpoint off)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the /metrics endpoint on {addr} stopped serving: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct ReadyState {
    ready: bool,
    reason: String,
}

/// Whether `/readyz` answers 200, and if not, the one-line reason it gives. Clones share one state.
///
/// It starts not ready ("config not loaded yet"): the daemon marks it ready once the first load is done.
#[derive(Clone, Debug)]
pub struct Readiness {
    inner: Arc<RwLock<ReadyState>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            inner: Arc::new(RwLock::new(ReadyState {
                ready: false,
                reason: "config not loaded yet".to_owned(),
            })),
        }
    }
}

impl Readiness {
    /// Sets readiness. The reason is shown by `/readyz` when not ready; line breaks are flattened so
    /// the answer stays one line.
    pub fn set_ready(&self, ready: bool, reason: impl Into<String>) {
        let reason = reason.into().replace(['\r', '\n'], " ");
        // A poisoned lock only means a writer panicked mid-assignment of two plain fields; the data is
        // still a valid state, so keep serving it rather than propagating the panic.
        let mut state = self.inner.write().unwrap_or_else(|e| e.into_inner());
        state.ready = ready;
        state.reason = reason;
    }

    pub fn is_ready(&self) -> bool {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).ready
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Readiness,
}

/// A bound, not yet serving, endpoint. `addr` is the address actually bound (useful with port 0).
pub struct Endpoint {
    pub addr: SocketAddr,
    listener: TcpListener,
    router: Router,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Binds the listening socket now, so that a busy port is reported at start-up (before `READY=1`)
/// rather than from a background task.
pub async fn bind(
    listen: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
) -> Result<Endpoint, EndpointError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| EndpointError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EndpointError::Bind {
            addr: listen,
            source,
        })?;
    Ok(Endpoint {
        addr,
        listener,
        router: router(metrics, readiness),
    })
}

/// The routes, separate from the socket so they can be exercised without one.
pub(crate) fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness })
}

impl Endpoint {
    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), EndpointError> {
        let addr = self.addr;
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|source| EndpointError::Serve { addr, source })
    }
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> Response {
    plain(StatusCode::OK, "ok\n".to_owned())
}

async fn readyz(State(state): State<AppState>) -> Response {
    // Read both fields under one lock so the status and the reason agree.
    let (ready, reason) = {
        let s = state
            .readiness
            .inner
            .read()
            .unwrap_or_else(|e| e.into_inner());
        (s.ready, s.reason.clone())
    };
    if ready {
        plain(StatusCode::OK, "ready\n".to_owned())
    } else {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
    }
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
