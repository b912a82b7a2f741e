//! The HTTP endpoint: `/metrics` (Prometheus text exposition), `/healthz` (process alive) and `/readyz`
//! (config loaded, the last pass did not fail outright, Atlas accepts the credentials; paused projects
//! listed), served so that idle or slow clients cannot take the daemon's descriptors.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::lock::LockExt;
use crate::metrics::Metrics;
use crate::report::format_unix;

/// The content type of the Prometheus text format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a client has to send a request's whole head, counted from when the server starts waiting
/// for it: from the connection's start, and again after each answer (so this is the keep-alive idle
/// timeout too). A client that says nothing for this long is only holding a descriptor. Longer than
/// Prometheus's usual scrape interval (15 s), so its keep-alive connection is not closed between
/// scrapes, where the close would race its reuse; past the cap, idle connections are closed anyway.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections the endpoint holds at once, whatever the descriptor limit. Prometheus needs
/// one per scraper.
pub const MAX_CONNECTIONS: usize = 128;

/// The largest read buffer of a connection (hyper's minimum is 8 KiB): a request head to these routes
/// is a few hundred bytes, and the buffer is what an idle connection costs in memory.
const MAX_BUF_SIZE: usize = 16 * 1024;

/// How long a failure to accept (out of descriptors) waits before trying again, unless a connection
/// closes first: long enough not to spin, short enough to answer soon after descriptors are back.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How often at most the endpoint warns that it is full or cannot accept.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The connection cap for a process allowed `nofile` open descriptors: [`MAX_CONNECTIONS`], but never
/// more than a quarter of the limit, so that the daemon's own work (manifest reads, the ledger, the
/// connections to Atlas, the watcher, sd_notify) always has descriptors left, however many clients
/// connect.
pub fn connection_cap(nofile: u64) -> usize {
    let quarter = usize::try_from(nofile / 4).unwrap_or(usize::MAX);
    quarter.clamp(1, MAX_CONNECTIONS)
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`), if it can be read.
pub fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a valid pointer to a local.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

/// Raises the soft limit on open descriptors to the hard limit, so that a burst of clients or files
/// cannot use up the few the default soft limit (often 1,024) allows. Returns the soft limit in force
/// afterwards. A refusal (systemd's `SystemCallFilter=~@resources` makes it `EPERM`; the unit sets
/// `LimitNOFILE=` instead) leaves the limit as it was.
pub fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `setrlimit` reads one `rlimit` through a valid pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(lim.rlim_max);
        }
        tracing::debug!(error = %std::io::Error::last_os_error(), soft = lim.rlim_cur, hard = lim.rlim_max,
            "cannot raise the soft limit on open files; keeping it");
    }
    Some(lim.rlim_cur)
}

/// The warning to log when the endpoint listens beyond loopback: it has no authentication, so anyone
/// who can reach the address reads the metrics (project ids, counts, error rates).
pub fn exposure_warning(listen: SocketAddr) -> Option<String> {
    (!listen.ip().is_loopback()).then(|| {
        format!(
            "metrics.listen {listen} is not a loopback address: /metrics, /healthz and /readyz have no \
             authentication, so anyone who can reach it can read them; prefer 127.0.0.1 (or ::1) and a \
             local Prometheus or a reverse proxy, or restrict the port with a firewall"
        )
    })
}

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
    /// Progress shown under the verdict, ready or not (links not `DONE` yet): not a fault.
    detail: String,
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
                detail: String::new(),
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

    /// Sets the progress line `/readyz` shows under its verdict without changing it (empty: none),
    /// flattened to one line like the reason.
    pub fn set_detail(&self, detail: impl Into<String>) {
        let detail = detail.into().replace(['\r', '\n'], " ");
        let mut state = self.inner.write().unwrap_or_else(|e| e.into_inner());
        state.detail = detail;
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
    max_connections: usize,
    header_read_timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout", &self.header_read_timeout)
            .finish()
    }
}

/// Binds the listening socket now, so that a busy port is reported at start-up (before `READY=1`)
/// rather than from a background task. The connection cap follows the descriptor limit in force now
/// ([`connection_cap`]).
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
        max_connections: connection_cap(nofile_limit().unwrap_or(1024)),
        header_read_timeout: HEADER_READ_TIMEOUT,
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
    /// The most connections held at once (at least 1).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Sets the connection cap (at least 1) and the header-read (and keep-alive idle) timeout; for
    /// tests, which cannot wait the defaults out.
    pub fn with_limits(
        mut self,
        max_connections: usize,
        header_read_timeout: Duration,
    ) -> Endpoint {
        self.max_connections = max_connections.max(1);
        self.header_read_timeout = header_read_timeout;
        self
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
    ///
    /// A hostile local user must not be able to take the daemon's descriptors (or its scrapes) away by
    /// opening connections and saying nothing. So a client has [`HEADER_READ_TIMEOUT`] to send each
    /// request's head, and at most `max_connections` connections are held: a connection past the cap
    /// closes the oldest one that is between requests (a new scrape then gets its answer however many
    /// idle connections others open), and when every one is mid-request, the new one is closed at once
    /// rather than held. Failures to accept (out of descriptors) are waited out, never fatal.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), EndpointError> {
        let Endpoint {
            addr,
            listener,
            router,
            max_connections,
            header_read_timeout,
        } = self;
        let live = Arc::new(Live::default());
        let tracker = TaskTracker::new();
        let mut warned: Option<Instant> = None;
        let mut warn = |message: &str, error: Option<&std::io::Error>| {
            if warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
                warned = Some(Instant::now());
                match error {
                    Some(e) => tracing::warn!(%addr, max_connections, error = %e, "{message}"),
                    None => tracing::warn!(%addr, max_connections, "{message}"),
                }
            }
        };
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) or memory: the pending connection stays in the
                    // backlog; try again once a connection of ours closes, or shortly.
                    warn(
                        "the metrics endpoint cannot accept a connection; retrying",
                        Some(&e),
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = live.closed.notified() => {}
                        _ = tokio::time::sleep(ACCEPT_RETRY) => {}
                    }
                    continue;
                }
            };
            let Some(conn) = live.admit(max_connections) else {
                warn(
                    "the metrics endpoint is at its connection cap and every connection is mid-request; closing new connections at once",
                    None,
                );
                drop(stream);
                continue;
            };
            if conn.evicted_another {
                warn(
                    "the metrics endpoint is at its connection cap; closing the oldest idle connection for each new one",
                    None,
                );
            }
            tracker.spawn(serve_connection(
                stream,
                router.clone(),
                conn.slot,
                live.clone(),
                header_read_timeout,
                shutdown.clone(),
            ));
        }
        drop(listener);
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}

/// Errors of one pending connection (it was reset before we accepted it), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// The connections being served, oldest first.
#[derive(Default)]
struct Live {
    conns: Mutex<Conns>,
    /// Told each time a connection ends: an accept waiting for a descriptor can try again.
    closed: tokio::sync::Notify,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    by_age: BTreeMap<u64, Arc<Slot>>,
}

/// One connection's entry: whether a request is being answered, and how to close it.
struct Slot {
    id: u64,
    busy: AtomicBool,
    evict: CancellationToken,
}

struct Admitted {
    slot: Arc<Slot>,
    evicted_another: bool,
}

impl Live {
    /// A slot for a new connection; at the cap, the oldest idle connection is closed to make room, and
    /// `None` says every connection is mid-request.
    fn admit(&self, cap: usize) -> Option<Admitted> {
        let mut conns = self.conns.lock_or_recover();
        let mut evicted_another = false;
        if conns.by_age.len() >= cap {
            let idle = conns
                .by_age
                .iter()
                .find(|(_, s)| !s.busy.load(Ordering::Acquire))
                .map(|(&id, _)| id)?;
            if let Some(old) = conns.by_age.remove(&idle) {
                old.evict.cancel();
            }
            evicted_another = true;
        }
        let id = conns.next_id;
        conns.next_id += 1;
        let slot = Arc::new(Slot {
            id,
            busy: AtomicBool::new(false),
            evict: CancellationToken::new(),
        });
        conns.by_age.insert(id, slot.clone());
        Some(Admitted {
            slot,
            evicted_another,
        })
    }

    fn release(&self, slot: &Slot) {
        self.conns.lock_or_recover().by_age.remove(&slot.id);
        self.closed.notify_one();
    }
}

/// Serves one connection until the client closes it, the header-read timeout closes it, the cap evicts
/// it (the future is dropped, which closes the socket), or the endpoint shuts down (in-flight requests
/// are answered first).
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    slot: Arc<Slot>,
    live: Arc<Live>,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let service_slot = slot.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let slot = service_slot.clone();
        let mut router = router.clone();
        async move {
            slot.busy.store(true, Ordering::Release);
            let response = router.call(request).await;
            slot.busy.store(false, Ordering::Release);
            Ok::<_, Infallible>(match response {
                Ok(r) => r,
                Err(never) => match never {},
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_BUF_SIZE)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        // A header-read timeout or a client gone mid-request ends here too: nothing to tell anyone.
        _ = connection.as_mut() => {}
        _ = slot.evict.cancelled() => {}
        // Only a request being answered is worth waiting for: one not sent yet could hold the
        // shutdown for the whole header-read timeout.
        _ = shutdown.cancelled() => if slot.busy.load(Ordering::Acquire) {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(header_read_timeout, connection.as_mut()).await;
        }
    }
    live.release(&slot);
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

/// What `/readyz` says when Atlas refuses our credentials.
pub const AUTH_REFUSED_REASON: &str = "Atlas refuses the credentials (HTTP 401): check the service \
     account's client id and secret (MONGODB_ATLAS_CLIENT_ID / MONGODB_ATLAS_CLIENT_SECRET, or the \
     client-id / client-secret files in $CREDENTIALS_DIRECTORY) or the API key pair for auth: api_key, \
     and that they were not deleted, revoked or expired; ready again once a call succeeds";

async fn readyz(State(state): State<AppState>) -> Response {
    // Read the fields under one lock so the status, the reason and the detail agree.
    let (ready, reason, detail) = {
        let s = state
            .readiness
            .inner
            .read()
            .unwrap_or_else(|e| e.into_inner());
        (s.ready, s.reason.clone(), s.detail.clone())
    };
    let (status, mut body) = if !ready {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
    } else if state.metrics.auth_refused() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {AUTH_REFUSED_REASON}\n"),
        )
    } else {
        (StatusCode::OK, "ready\n".to_owned())
    };
    if !detail.is_empty() {
        body.push_str(&detail);
        body.push('\n');
    }
    // A pause is Atlas's rate limit at work, not a fault, so it does not make the daemon unready; but
    // it holds back every call to the project, so it is shown.
    for p in state.metrics.paused_projects() {
        body.push_str(&format!(
            "paused: project {} until {} (Atlas answered 429 Too Many Requests)\n",
            p.group_id,
            format_unix(p.until_unix)
        ));
    }
    plain(status, body)
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn readyz_answer(readiness: &Readiness) -> (StatusCode, String) {
        let state = AppState {
            metrics: Metrics::new(),
            readiness: readiness.clone(),
        };
        let resp = readyz(State(state)).await;
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
            .await
            .expect("a small in-memory body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_shows_the_detail_under_its_verdict_without_changing_it() {
        let r = Readiness::default();
        r.set_ready(true, "");
        r.set_detail("not yet DONE: 3 links in 2 projects\nsecond line");
        let (status, body) = readyz_answer(&r).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "ready\nnot yet DONE: 3 links in 2 projects second line\n"
        );
        // A new verdict keeps the detail; an empty detail removes it.
        r.set_ready(false, "the last pass failed: boom");
        let (status, body) = readyz_answer(&r).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.ends_with("not yet DONE: 3 links in 2 projects second line\n"),
            "{body}"
        );
        r.set_ready(true, "");
        r.set_detail("");
        assert_eq!(readyz_answer(&r).await.1, "ready\n");
    }

    #[test]
    fn the_cap_leaves_three_quarters_of_the_descriptors_to_the_daemon() {
        assert_eq!(connection_cap(1024), MAX_CONNECTIONS);
        assert_eq!(connection_cap(256), 64);
        assert_eq!(connection_cap(65_536), MAX_CONNECTIONS);
        assert_eq!(connection_cap(0), 1);
        assert_eq!(connection_cap(u64::MAX), MAX_CONNECTIONS);
    }

    #[test]
    fn only_an_address_beyond_loopback_is_warned_about() {
        for quiet in ["127.0.0.1:9464", "[::1]:9464", "127.0.0.2:1"] {
            assert_eq!(exposure_warning(quiet.parse().unwrap()), None, "{quiet}");
        }
        for loud in ["0.0.0.0:9464", "[::]:9464", "192.0.2.7:9464"] {
            let w = exposure_warning(loud.parse().unwrap()).expect(loud);
            assert!(w.contains(loud), "{w}");
            assert!(w.contains("no authentication"), "{w}");
        }
    }

    #[test]
    fn past_the_cap_the_oldest_idle_connection_goes_and_a_busy_one_stays() {
        let live = Live::default();
        let a = live.admit(2).unwrap();
        let b = live.admit(2).unwrap();
        assert!(!a.evicted_another && !b.evicted_another);
        a.slot.busy.store(true, Ordering::Release);
        // `a` is older but mid-request: `b` goes.
        let c = live.admit(2).unwrap();
        assert!(c.evicted_another);
        assert!(b.slot.evict.is_cancelled() && !a.slot.evict.is_cancelled());
        c.slot.busy.store(true, Ordering::Release);
        // Every connection mid-request: the new one is refused.
        assert!(live.admit(2).is_none());
        live.release(&a.slot);
        assert!(live.admit(2).is_some());
    }
}
