//! The bundled fake Atlas: the private link API on loopback, with rate limits and fault injection.
//!
//! It behaves like the real Atlas Admin API v2 for stream private link connections (status codes,
//! bodies, content types, paging, states, read-only outputs, per-project token buckets shared with
//! another client, both auth schemes, error shape with `X-Error-Code`, a backend that commits creates
//! whose client has gone, `dnsDomain` updates, chosen connections that end `FAILED` or whose delete
//! is refused as in use), so that a test passing against it means something. Tests, benchmarks, the
//! `demo` command and users (`atlas-linkd fake-atlas`) run it; it only ever binds loopback.
//!
//! It shares no code or tables with the product (its validation tables are its own), so that it
//! can catch the product's mistakes rather than repeat them. Being its own crate, which does not
//! depend on `atlas-linkd`, it cannot see the product at all.

mod auth;
mod cli;
mod config;
mod http;
mod outputs;
mod state;
mod validate;

pub use cli::{FakeArgs, serve};
pub use config::{
    BucketConfig, DuplicateMode, FakeAuth, FakeConfig, FakeOp, Fault, Faults, ScriptedFault,
};
pub use state::Counters;

use http::Shared;
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What can go wrong starting or running the fake.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("the fake Atlas only listens on loopback, not {addr}: use 127.0.0.1 or [::1]")]
    NotLoopback { addr: SocketAddr },
    #[error(
        "the fake Atlas cannot listen on {addr}: {source}; pick another port (0 lets the system choose)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the fake Atlas cannot wait for SIGINT/SIGTERM: {source}")]
    Signal {
        #[source]
        source: std::io::Error,
    },
    #[error("invalid fake Atlas option {option}: {problem}")]
    InvalidArgument {
        option: &'static str,
        problem: String,
    },
}

/// A running fake Atlas. Dropping it shuts it down.
pub struct FakeAtlas {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeAtlas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAtlas")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeAtlas {
    /// Starts on 127.0.0.1 with a port the system chooses.
    pub async fn start(config: FakeConfig) -> Result<FakeAtlas, FakeError> {
        FakeAtlas::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts on `addr`, which must be a loopback address.
    pub async fn start_on(addr: SocketAddr, config: FakeConfig) -> Result<FakeAtlas, FakeError> {
        if !addr.ip().is_loopback() {
            return Err(FakeError::NotLoopback { addr });
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| FakeError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| FakeError::Bind { addr, source })?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let shared = Arc::new(Shared::new(
            state::Inner::new(config),
            local,
            tracker.clone(),
            shutdown.clone(),
        ));
        let accept = tokio::spawn(http::accept_loop(
            listener,
            shared.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
        Ok(FakeAtlas {
            shared,
            addr: local,
            shutdown,
            tracker,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, to use as the Atlas base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the fake has seen and done so far.
    pub fn counters(&self) -> Counters {
        self.shared.lock().snapshot(tokio::time::Instant::now())
    }

    /// The project's connections as a get would show them (those being deleted included), in creation order.
    pub fn connections(&self, group_id: &str) -> Vec<Value> {
        let now = tokio::time::Instant::now();
        let mut inner = self.shared.lock();
        inner.purge(group_id, now);
        inner
            .projects
            .get(group_id)
            .map(|p| p.conns.iter().map(|c| inner.view(c, now)).collect())
            .unwrap_or_default()
    }

    /// Adds a connection that existed before the test, without validation or counters; returns its `_id`.
    /// A body that is not a JSON object is stored as an empty one.
    pub fn insert(&self, group_id: &str, body: Value) -> String {
        let map = match body {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        self.shared
            .lock()
            .commit(group_id, map, tokio::time::Instant::now())
    }

    /// Deletes a connection outright, as another tool whose delete completed long ago would; false
    /// when there is no such connection.
    pub fn remove(&self, group_id: &str, id: &str) -> bool {
        let mut inner = self.shared.lock();
        let Some(project) = inner.projects.get_mut(group_id) else {
            return false;
        };
        let before = project.conns.len();
        project.conns.retain(|c| c.id != id);
        project.conns.len() < before
    }

    /// Makes the live connection `id` end `FAILED` with `message` as its `errorMessage`, once its
    /// `IDLE` and `WORKING` time is over (at once when it is over already; an AWS Confluent
    /// connection still waiting for its domain stays `IDLE` until it gets one). False when there is no
    /// such connection.
    pub fn fail(&self, group_id: &str, id: &str, message: &str) -> bool {
        let mut inner = self.shared.lock();
        match inner.live_mut(group_id, id) {
            Some(c) => {
                c.fails = Some(message.to_owned());
                c.forget_view();
                true
            }
            None => false,
        }
    }

    /// Whether a stream connection uses the live connection `id`: while it does, a delete is refused
    /// with 400 `STREAM_PRIVATE_LINK_IN_USE` and changes nothing. False when there is no such connection.
    pub fn set_in_use(&self, group_id: &str, id: &str, in_use: bool) -> bool {
        let mut inner = self.shared.lock();
        match inner.live_mut(group_id, id) {
            Some(c) => {
                c.in_use = in_use;
                true
            }
            None => false,
        }
    }

    /// Creates that passed validation and wait for the backend's commit (`commit_delay_ms`),
    /// whether or not their client is still there.
    pub fn pending_commits(&self) -> u64 {
        self.shared.lock().pending_commits
    }

    /// Revokes every OAuth token issued so far, as an operator rotating a service account's secret
    /// would: the next call with one gets 401.
    pub fn revoke_all_tokens(&self) {
        let mut inner = self.shared.lock();
        let mut revoked = 0;
        for token in inner.tokens.values_mut().filter(|t| !t.revoked) {
            token.revoked = true;
            revoked += 1;
        }
        inner.counters.tokens_revoked += revoked;
    }

    /// Adds a scripted fault; its `nth` counts calls from the start of the server, not from now.
    pub fn script(&self, fault: ScriptedFault) {
        self.shared.lock().config.faults.script.push(fault);
    }

    /// Replaces the random faults (and the script) and restarts the generator from `faults.seed`.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().set_faults(faults);
    }

    /// Stops accepting, closes every connection and waits for the server's tasks to end. Commits
    /// still pending are abandoned: nobody can look at the fake's state any more.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for FakeAtlas {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
