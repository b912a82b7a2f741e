//! The reconcile executor: one pass from plan to Atlas, parallel, rate-limited, retrying, exactly once.
//!
//! A pass is level-triggered: it never asks why it was woken. It reads the ledger, plans, lists every
//! project that has something to create (a listing is the only proof that a connection does not exist
//! yet), plans again with those listings, then carries the plan out:
//!
//! - every API call, lists included, takes a token from its project's `governor` limiter shaped like
//!   Atlas's bucket, and holds a slot of the global and the per-project concurrency caps while in flight;
//! - a 429 pauses the whole project until `Retry-After`, not just the call that got it;
//! - an intent is durable in the ledger before a create is sent; an outcome that could have changed Atlas
//!   without telling us (timeout, dropped connection, 5xx on create, 409) is resolved by listing the project
//!   and adopting the match before anything is created again;
//! - each outcome reaches the ledger before it reaches the report or the metrics.
//!
//! - a create that got no answer (reset, timeout, gateway 5xx) may still be committed by Atlas: it is in
//!   flight at Atlas until `sent + settle_secs`, and only a listing that starts after that instant
//!   decides it; `--once` waits for that window, the daemon schedules a follow-up pass at its end.
//!
//! What comes after each failed call is decided by one pure function, `decide::decide`; the loops
//! here only carry its `Next` out. How fast and hard a pass pushes (caps, bucket, backoff) is `Policy`.

mod budget;
pub(crate) mod decide;

use crate::atlas::{
    ApiError, AtlasClient, ClientBuildError, ClientSettings, Credentials, CredentialsError,
    ErrorClass, Observer, Operation,
};
use crate::config::Config;
use crate::ledger::{Change, Ledger, LedgerError, LedgerHandle, Phase, Record};
use crate::metrics::{self, Metrics};
use crate::model::{DesiredLink, DesiredState, GroupId, LinkKey, RemoteConnection};
use crate::plan::{self, Action, CreateReason, Listings, PlanSettings, RemoteListing};
use crate::report::{FailedLink, PassReport};
use backon::{BackoffBuilder, ExponentialBuilder};
use budget::Budget;
use decide::{Attempts, IfAbsent, Next, Op};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How fast and how hard a pass pushes: derived from the config, kept apart from the actions.
#[derive(Debug, Clone)]
pub struct Policy {
    pub concurrency: usize,
    pub per_project_concurrency: usize,
    /// Atlas's per-project bucket as we mirror it: `capacity` burst, `refill` tokens per `period`.
    pub bucket_capacity: u32,
    pub bucket_refill: u32,
    pub bucket_period: Duration,
    /// Attempts per call for errors that may pass (5xx, timeouts, connection errors). 429s do not count:
    /// Atlas said when to come back, so waiting is not failing.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How many 429s in a row one call accepts before it gives up for this pass.
    pub max_rate_limited: u32,
    /// A link that failed waits this long before the next pass tries it again, doubling per failure.
    pub failure_delay: Duration,
    pub max_failure_delay: Duration,
    /// A create sent without an answer may be committed by Atlas until this long after it was sent.
    pub settle: Duration,
    /// Tokens of each project's bucket left to the other tools of the project.
    pub reserve: u32,
}

impl Policy {
    pub fn from_config(config: &Config) -> Policy {
        Policy {
            concurrency: config.reconcile.concurrency.max(1),
            per_project_concurrency: config.reconcile.per_project_concurrency.max(1),
            bucket_capacity: config.rate_limit.capacity,
            bucket_refill: config.rate_limit.refill,
            bucket_period: Duration::from_secs(config.rate_limit.period_secs),
            max_attempts: config.retry.max_attempts.max(1),
            initial_backoff: Duration::from_millis(config.retry.initial_backoff_ms),
            max_backoff: Duration::from_secs(config.retry.max_backoff_secs),
            max_rate_limited: 50,
            failure_delay: Duration::from_secs(config.retry.failure_delay_secs),
            max_failure_delay: Duration::from_secs(config.retry.max_failure_delay_secs),
            settle: Duration::from_secs(config.reconcile.settle_secs),
            reserve: config.rate_limit.reserve,
        }
    }

    /// What the planner needs of the policy.
    pub fn plan_settings(&self) -> PlanSettings {
        PlanSettings::from_settle_secs(self.settle.as_secs())
    }

    fn limits(&self) -> decide::Limits {
        decide::Limits {
            max_attempts: self.max_attempts,
            max_rate_limited: self.max_rate_limited,
            max_backoff: self.max_backoff,
            settle: self.settle,
        }
    }

    fn bucket_shape(&self) -> BucketShape {
        let refill = self.bucket_refill.max(1);
        BucketShape {
            // The reserve is left to other tools even when nobody tells us what they spent.
            capacity: self.bucket_capacity.saturating_sub(self.reserve).max(1),
            per_token: (self.bucket_period / refill).max(Duration::from_nanos(1)),
        }
    }

    /// Delays between attempts of one call: exponential with jitter, capped.
    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff.max(self.initial_backoff))
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// How long a link that has now failed `attempts` times waits before a pass retries it.
    fn failure_wait(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.failure_delay
            .saturating_mul(factor)
            .min(self.max_failure_delay.max(self.failure_delay))
    }
}

/// A project's bucket as configured: `capacity` tokens, one more every `per_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BucketShape {
    capacity: u32,
    per_token: Duration,
}

impl BucketShape {
    /// Our mirror of the bucket, given how long the project's first call took from send to answer.
    ///
    /// Its burst is a little under Atlas's capacity. After an idle spell both buckets are full, and
    /// Atlas's refill restarts when our first call *arrives*, ours when it is *sent*; calls that then
    /// reach Atlas sooner after their send than that first one did would find it short. The headroom
    /// is one token plus the refill of one round trip of the first call: at Atlas's rate (a token
    /// every 120 ms) that is two or three of its 1,200.
    fn quota(self, round_trip: Duration) -> Quota {
        let round_trip_tokens = round_trip
            .as_nanos()
            .div_ceil(self.per_token.as_nanos().max(1));
        let headroom = 1 + u32::try_from(round_trip_tokens).unwrap_or(u32::MAX);
        let burst = NonZeroU32::new(self.capacity.saturating_sub(headroom).max(1))
            .unwrap_or(NonZeroU32::MIN);
        // `with_period` refuses only a zero period, which `bucket_shape` rules out.
        Quota::with_period(self.per_token)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// What a caller asks of one pass.
#[derive(Clone, Default)]
pub struct PassOptions {
    /// List every managed project, not only those with something to create: the daemon's resync, which
    /// refreshes each connection's Atlas state and notices connections that disappeared.
    pub list_all: bool,
    /// Wait within the pass for creates in flight at Atlas to settle, then decide them by a listing
    /// (`--once`). Without it (the daemon), such links are reported in flight and the report says when
    /// a follow-up pass can decide them.
    pub wait_for_settle: bool,
    /// Stop starting calls; in-flight calls finish and are recorded.
    pub cancel: CancellationToken,
    pub progress: Option<Arc<dyn Progress>>,
}

/// Progress of the creates of a pass, for a progress bar or periodic log lines.
pub trait Progress: Send + Sync {
    fn start(&self, total: u64);
    fn advance(&self, done: u64);
    fn finish(&self);
}

/// Why the executor could not be set up. Nothing was attempted: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

/// The Atlas client the config describes, with credentials from the environment (or `$CREDENTIALS_DIRECTORY`).
pub fn client_from_config(
    config: &Config,
    observer: Option<Arc<dyn Observer>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AtlasClient, StartError> {
    let credentials = Credentials::from_env(config.atlas.auth, env)?;
    let settings = ClientSettings {
        base_url: config.atlas.base_url.clone(),
        timeout: Duration::from_secs(config.atlas.timeout_secs),
        user_agent: format!("atlas-linkd/{}", env!("CARGO_PKG_VERSION")),
    };
    Ok(AtlasClient::new(settings, credentials, observer)?)
}

/// Everything a pass needs, from the config: credentials, client, the ledger (locked), the metrics hook.
pub fn start(
    config: &Config,
    metrics: Metrics,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Reconciler, StartError> {
    let (observer, counters) = MetricsObserver::new(metrics.clone());
    let client = client_from_config(config, Some(observer), env)?;
    let ledger = LedgerHandle::spawn(Ledger::open(&config.ledger)?);
    Ok(Reconciler::new(
        client,
        ledger,
        metrics,
        Policy::from_config(config),
        counters,
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("could not read the ledger")]
    Ledger(#[from] LedgerError),
}

/// The executor. Long-lived in the daemon: its per-project limiters outlive a pass, as Atlas's buckets do.
pub struct Reconciler {
    client: AtlasClient,
    ledger: LedgerHandle,
    metrics: Metrics,
    policy: Policy,
    global: Arc<Semaphore>,
    projects: Mutex<HashMap<GroupId, Arc<ProjectGate>>>,
    counters: Arc<CallCounters>,
}

/// Counts of API calls, so a pass can report its own share. Fed by the client's observer hook.
#[derive(Debug, Default)]
pub struct CallCounters {
    requests: AtomicU64,
    rate_limited: AtomicU64,
}

/// The client's observer: every HTTP exchange becomes metrics and counts.
pub struct MetricsObserver {
    metrics: Metrics,
    counters: Arc<CallCounters>,
}

impl MetricsObserver {
    pub fn new(metrics: Metrics) -> (Arc<MetricsObserver>, Arc<CallCounters>) {
        let counters = Arc::new(CallCounters::default());
        let observer = Arc::new(MetricsObserver {
            metrics,
            counters: counters.clone(),
        });
        (observer, counters)
    }
}

impl Observer for MetricsObserver {
    fn on_response(
        &self,
        op: Operation,
        _group_id: Option<&GroupId>,
        status: &str,
        elapsed: Duration,
    ) {
        self.metrics
            .api_requests_total
            .with_label_values(&[op.as_str(), status])
            .inc();
        self.metrics
            .api_request_duration_seconds
            .with_label_values(&[op.as_str()])
            .observe(elapsed.as_secs_f64());
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if status == "429" {
            self.metrics.rate_limited_total.inc();
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A project's bucket. On the same clock as tokio and the OS (`Instant`): governor's default TSC
/// clock can run fast on virtual machines, and a bucket that runs ahead of Atlas's earns 429s.
type Limiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;

/// One project's share of Atlas: its token bucket, its concurrency cap, its 429 pause, and the
/// last listing taken to resolve uncertain outcomes (shared so concurrent doubts cost one listing).
///
/// The bucket starts when the answer to the project's first call arrives, not when that call is
/// sent. Atlas's bucket (for a project nobody else is calling) started when it received the call,
/// which is earlier, so our view of the refill lags Atlas's and never runs ahead of it: a bucket of
/// ours that matches Atlas's then never earns a 429. Starting ours first, even by the few
/// milliseconds of a token fetch, would let it run ahead, and every 429 costs a whole second of
/// `Retry-After`.
struct ProjectGate {
    shape: BucketShape,
    limiter: std::sync::OnceLock<Limiter>,
    /// Held by the one call that starts the bucket, until its answer arrives.
    first_call: Arc<tokio::sync::Mutex<()>>,
    slots: Semaphore,
    /// What Atlas last said is left in the project's bucket (shared with other tools).
    budget: Budget,
    paused_until: Mutex<Option<tokio::time::Instant>>,
    verify: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Vec<RemoteConnection>>)>>,
}

/// Held while one API call is in flight.
struct CallPermit<'a> {
    gate: &'a ProjectGate,
    /// Set for the project's first call: the bucket starts when this permit is dropped.
    first_call: Option<tokio::sync::OwnedMutexGuard<()>>,
    sent: Instant,
    _project: tokio::sync::SemaphorePermit<'a>,
    _global: tokio::sync::SemaphorePermit<'a>,
}

impl CallPermit<'_> {
    /// The answer's `RateLimit-Remaining`, if it carried one, corrects our view of the shared bucket.
    fn observe(&self, rate_limit: &crate::atlas::RateLimitInfo) {
        if let Some(remaining) = rate_limit.remaining {
            self.gate
                .budget
                .observe(remaining, rate_limit.limit, Instant::now());
        }
    }
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        self.gate.budget.finished();
        if self.first_call.take().is_some() {
            let quota = self.gate.shape.quota(self.sent.elapsed());
            let limiter = RateLimiter::direct_with_clock(quota, MonotonicClock);
            // The first call spent a token of Atlas's bucket.
            let _ = limiter.check();
            let _ = self.gate.limiter.set(limiter);
        }
    }
}

impl ProjectGate {
    /// Takes a token, or, for the project's first call, the right to make it (see the type's docs).
    async fn take_token(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        if let Some(limiter) = self.limiter.get() {
            limiter.until_ready().await;
            return None;
        }
        let guard = self.first_call.clone().lock_owned().await;
        match self.limiter.get() {
            // Another call started the bucket while this one waited.
            Some(limiter) => {
                drop(guard);
                limiter.until_ready().await;
                None
            }
            None => Some(guard),
        }
    }

    /// After a 429: Atlas's bucket is empty, so ours is emptied too, and refills from now.
    fn drain(&self) {
        if let Some(limiter) = self.limiter.get() {
            while limiter.check().is_ok() {}
        }
        self.budget.emptied(Instant::now());
    }

    // A poisoned lock holds a plain instant that no panic can leave half-written: use it.
    fn pause(&self, until: tokio::time::Instant) {
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    fn paused_until(&self) -> Option<tokio::time::Instant> {
        *self.paused_until.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a call was abandoned for this pass.
enum Abandon {
    Cancelled,
    Failed(ApiError),
}

/// Seconds since the Unix epoch: the only clock the ledger and plan see.
pub fn now_unix() -> i64 {
    unix_since_epoch().as_secs() as i64
}

/// Seconds since the epoch rounded UP: a create's `sent_unix`, so that `sent_unix + settle_secs` is
/// never earlier than the real end of its settle window.
fn now_unix_ceil() -> i64 {
    let t = unix_since_epoch();
    (t.as_secs() as i64).saturating_add(i64::from(t.subsec_nanos() > 0))
}

fn unix_since_epoch() -> Duration {
    // A clock before 1970 is a broken host; 0 makes every window look past, which only waits less
    // than it should where the clock is already meaningless.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The monotonic instant at which the wall clock reads `unix` (now, if that has passed).
pub(crate) fn instant_at_unix(unix: i64) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let ahead = (unix as f64 - unix_since_epoch().as_secs_f64()).clamp(0.0, 86_400.0 * 366.0);
    now.checked_add(Duration::from_secs_f64(ahead))
        .unwrap_or(now)
}

/// A create the plan asks for, before the pass hands it to a task.
struct Job {
    link: Box<DesiredLink>,
    reason: CreateReason,
    in_flight_until: Option<i64>,
}

/// One link to create, with what its create needs to know of the pass.
struct CreateJob<'a> {
    link: &'a DesiredLink,
    reason: CreateReason,
    /// Failures the ledger already counts for this link: the wait after a new failure grows with them.
    prior_attempts: u32,
    /// An earlier create of this link may still be committed by Atlas until this instant (unix
    /// seconds): nothing is sent before a listing that starts after it has decided.
    in_flight_until: Option<i64>,
    claimed: &'a Mutex<HashSet<String>>,
    conflicts: &'a AtomicU64,
}

/// A create whose outcome is not known yet, and how a listing will decide it.
#[derive(Debug, Clone, Copy)]
struct Doubt {
    /// The listing that decides must start no earlier than this.
    since: tokio::time::Instant,
    /// `since` on the wall clock, for the report and the ledger's follow-up.
    until_unix: i64,
    if_absent: IfAbsent,
    /// A 409 started it: a match found is adopted (it was there before us), not "created".
    after_conflict: bool,
}

/// The result of one link's create, as the pass reports it.
enum CreateOutcome {
    Created,
    /// The create's outcome was uncertain (or a 409); a listing found the connection, so it is recorded.
    Verified {
        after_conflict: bool,
    },
    Failed(String),
    /// A connection that shares the link's identity but differs elsewhere exists: neither adopted
    /// nor created beside.
    NearMatch(String),
    /// Possibly committed by Atlas, and no listing could tell: the next pass decides.
    Undecided(String),
    /// Possibly committed by Atlas, and the pass does not wait (the daemon): decided after this.
    InFlight {
        until_unix: i64,
    },
    Interrupted,
}

impl Reconciler {
    pub fn new(
        client: AtlasClient,
        ledger: LedgerHandle,
        metrics: Metrics,
        policy: Policy,
        counters: Arc<CallCounters>,
    ) -> Reconciler {
        Reconciler {
            client,
            ledger,
            metrics,
            global: Arc::new(Semaphore::new(policy.concurrency)),
            policy,
            projects: Mutex::new(HashMap::new()),
            counters,
        }
    }

    /// Revokes the OAuth token (if any) and closes the ledger, flushing what is queued.
    pub async fn shutdown(self) {
        self.client.shutdown().await;
        if let Err(e) = self.ledger.close().await {
            tracing::error!(error = %e, "closing the ledger failed");
        }
    }

    /// Applies a reloaded config's limits between passes (the daemon's SIGHUP). A project's bucket and
    /// slots are rebuilt only when their shape changed, since they mirror Atlas's live bucket; a rebuilt
    /// bucket starts full, and a 429 from Atlas then paces us if it was not.
    pub fn set_policy(&mut self, policy: Policy) {
        let projects_changed = policy.per_project_concurrency
            != self.policy.per_project_concurrency
            || policy.bucket_capacity != self.policy.bucket_capacity
            || policy.bucket_refill != self.policy.bucket_refill
            || policy.bucket_period != self.policy.bucket_period;
        if policy.concurrency != self.policy.concurrency {
            self.global = Arc::new(Semaphore::new(policy.concurrency));
        }
        if projects_changed {
            match self.projects.get_mut() {
                Ok(p) => p.clear(),
                Err(poisoned) => poisoned.into_inner().clear(),
            }
        }
        self.policy = policy;
    }

    pub fn client(&self) -> &AtlasClient {
        &self.client
    }

    pub fn ledger(&self) -> &LedgerHandle {
        &self.ledger
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn gate(&self, group: &GroupId) -> Arc<ProjectGate> {
        let mut projects = match self.projects.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        projects
            .entry(group.clone())
            .or_insert_with(|| {
                Arc::new(ProjectGate {
                    shape: self.policy.bucket_shape(),
                    limiter: std::sync::OnceLock::new(),
                    first_call: Arc::new(tokio::sync::Mutex::new(())),
                    slots: Semaphore::new(self.policy.per_project_concurrency),
                    budget: Budget::new(
                        self.policy.bucket_capacity,
                        self.policy.bucket_refill,
                        self.policy.bucket_period,
                        self.policy.reserve,
                    ),
                    paused_until: Mutex::new(None),
                    verify: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    /// Waits for everything one API call to `group` needs: the project's slot, its 429 pause, a token
    /// from its bucket, then a global slot. The order matters: a project that is waiting for tokens
    /// must not sit on global slots other projects could use.
    async fn admit<'a>(
        &'a self,
        gate: &'a ProjectGate,
        cancel: &CancellationToken,
    ) -> Option<CallPermit<'a>> {
        let project = tokio::select! {
            p = gate.slots.acquire() => p.ok()?,
            _ = cancel.cancelled() => return None,
        };
        let mut first_call = None;
        loop {
            while let Some(until) = gate.paused_until() {
                if until <= tokio::time::Instant::now() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = cancel.cancelled() => return None,
                }
            }
            // The one call that starts the bucket keeps that right across a second round.
            if first_call.is_none() {
                first_call = tokio::select! {
                    first = gate.take_token() => first,
                    _ = cancel.cancelled() => return None,
                };
            }
            // Then what Atlas says is left, less the reserve for the project's other tools.
            while let Err(wait) = gate.budget.try_send(Instant::now()) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return None,
                }
            }
            let global = tokio::select! {
                g = self.global.acquire() => g.ok(),
                _ = cancel.cancelled() => None,
            };
            let Some(global) = global else {
                // The call that `try_send` counted will not be sent after all.
                gate.budget.finished();
                return None;
            };
            // A 429 may have paused the project while this call waited: it waits out the pause too.
            if gate
                .paused_until()
                .is_some_and(|until| until > tokio::time::Instant::now())
            {
                gate.budget.finished();
                drop(global);
                continue;
            }
            return Some(CallPermit {
                gate,
                first_call,
                sent: Instant::now(),
                _project: project,
                _global: global,
            });
        }
    }

    /// Sleeps unless cancelled; false when cancelled.
    async fn wait(&self, delay: Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = cancel.cancelled() => false,
        }
    }

    fn count_retry(&self, reason: &str) {
        self.metrics
            .api_retries_total
            .with_label_values(&[reason])
            .inc();
    }

    /// After a 429: Atlas's bucket is empty; no call to the project until `wait` has passed.
    fn pause_project(&self, gate: &ProjectGate, group: &GroupId, wait: Duration) {
        self.count_retry("rate_limited");
        gate.drain();
        let now = tokio::time::Instant::now();
        // `decide` caps `wait` at `max_backoff`; the fallback only guards the arithmetic.
        let until = now.checked_add(wait).unwrap_or(now);
        tracing::info!(project = %group, wait_ms = wait.as_millis() as u64,
            until = %crate::report::format_unix(now_unix().saturating_add(wait.as_secs() as i64)),
            "Atlas's rate limit for the project is exhausted; pausing its calls");
        gate.pause(until);
    }

    /// Lists one project completely, each page under the project's gate and the error policy.
    /// Any page that cannot be had fails the whole listing: a partial listing proves nothing.
    async fn list_project(
        &self,
        group: &GroupId,
        cancel: &CancellationToken,
    ) -> Result<Vec<RemoteConnection>, Abandon> {
        let gate = self.gate(group);
        let mut pager = self.client.pager(group);
        let mut backoff = self.policy.backoff();
        let mut attempts = Attempts::default();
        loop {
            let result = {
                let Some(permit) = self.admit(&gate, cancel).await else {
                    return Err(Abandon::Cancelled);
                };
                let result = pager.next_page().await;
                permit.observe(&match &result {
                    Ok(_) => pager.rate_limit(),
                    Err(e) => e.rate_limit,
                });
                result
            };
            let e = match result {
                Ok(Some(_)) => {
                    attempts = Attempts::default();
                    backoff = self.policy.backoff();
                    continue;
                }
                Ok(None) => return Ok(pager.into_items()),
                Err(e) => e,
            };
            count_attempt(&mut attempts, &e.class);
            let step = backoff.next().unwrap_or(self.policy.max_backoff);
            match decide::decide(Op::List, &e.class, attempts, &self.policy.limits(), step) {
                Next::PauseProject { wait } => self.pause_project(&gate, group, wait),
                Next::Retry { after } => {
                    self.count_retry(retry_reason(&e));
                    tracing::debug!(project = %group, error = %e, ?after, "listing failed; retrying");
                    if !self.wait(after, cancel).await {
                        return Err(Abandon::Cancelled);
                    }
                }
                Next::GiveUp | Next::Verify { .. } => return Err(Abandon::Failed(e)),
            }
        }
    }

    /// A complete listing of `group` that started no earlier than `since`: one another task already
    /// took, else a new one, after waiting for `since`. Concurrent doubts in one project therefore
    /// cost one listing, not one each.
    async fn verify_listing(
        &self,
        group: &GroupId,
        since: tokio::time::Instant,
        cancel: &CancellationToken,
    ) -> Result<Arc<Vec<RemoteConnection>>, Abandon> {
        let gate = self.gate(group);
        let mut cached = gate.verify.lock().await;
        if let Some((taken, listing)) = cached.as_ref()
            && *taken >= since
        {
            return Ok(listing.clone());
        }
        let wait = since.saturating_duration_since(tokio::time::Instant::now());
        if !wait.is_zero() {
            tracing::warn!(project = %group, wait_secs = wait.as_secs_f64().ceil() as u64,
                "waiting for the settle window of creates that got no answer: Atlas may still commit them, so only a listing after it can tell");
            if !self.wait(wait, cancel).await {
                return Err(Abandon::Cancelled);
            }
        }
        let started = tokio::time::Instant::now();
        let listing = Arc::new(self.list_project(group, cancel).await?);
        *cached = Some((started, listing.clone()));
        Ok(listing)
    }

    /// One pass. Errors only when the ledger cannot be read; everything else is in the report.
    pub async fn run_pass(
        &self,
        desired: &DesiredState,
        options: &PassOptions,
    ) -> Result<PassReport, PassError> {
        let started = Instant::now();
        // One clock for the whole pass, read before any listing starts: every plan of the pass sees
        // the same links as due, and a window that ends by `now` ended before the listings began.
        let now = now_unix();
        let requests_before = self.counters.requests.load(Ordering::Relaxed);
        let rate_limited_before = self.counters.rate_limited.load(Ordering::Relaxed);
        let cancel = &options.cancel;
        let mut report = PassReport::new(now, desired.link_count());

        let records = self.ledger.records().await?;
        let settings = self.policy.plan_settings();
        let first = plan::plan(desired, &records, &Listings::new(), now, &settings);
        let mut to_list: BTreeSet<GroupId> = first.projects_to_list();
        if options.list_all {
            to_list.extend(desired.projects.keys().cloned());
            to_list.extend(records.iter().map(|r| r.key.group_id.clone()));
        }

        let (listings, list_failures) = self.list_projects(&to_list, cancel).await;
        let plan = plan::plan(desired, &records, &listings, now, &settings);
        self.record_remote_states(&records, &listings, now).await?;

        // Ids that a record already holds, or that this pass adopts or creates: never adopted twice.
        let claimed: Arc<Mutex<HashSet<String>>> = Arc::new(Mutex::new(
            records.iter().filter_map(|r| r.atlas_id.clone()).collect(),
        ));
        let prior_attempts: HashMap<&LinkKey, u32> =
            records.iter().map(|r| (&r.key, r.attempts)).collect();

        let mut jobs: BTreeMap<GroupId, Vec<Job>> = BTreeMap::new();
        let mut adoptions = Vec::new();
        for action in plan.actions {
            match action {
                Action::Create { link, reason } => {
                    // The guard of "never a duplicate": a create needs a complete listing of its
                    // project from this pass, whatever the plan says.
                    let group = &link.key.group_id;
                    if !listings.contains_key(group) {
                        let why = match list_failures.get(group) {
                            Some(why) => format!("not created: listing the project failed: {why}"),
                            None => {
                                "not created: the project was not listed in this pass".to_owned()
                            }
                        };
                        report.not_attempted.push(FailedLink::new(&link.key, why));
                    } else {
                        jobs.entry(group.clone()).or_default().push(Job {
                            link,
                            reason,
                            in_flight_until: None,
                        });
                    }
                }
                Action::Adopt { link, remote } => adoptions.push((link, remote)),
                Action::Unchanged { key, .. } => match list_failures.get(&key.group_id) {
                    // `--once` promises every link was seen in a listing of this pass.
                    Some(why) if options.list_all => report.unverified.push(FailedLink::new(
                        &key,
                        format!("not verified: listing the project failed: {why}"),
                    )),
                    _ => report.unchanged += 1,
                },
                Action::Changed {
                    key,
                    recorded,
                    desired,
                    ..
                } => {
                    tracing::warn!(link = %key, recorded = %recorded.short(), desired = %desired.short(),
                        "the manifest changed a link that already exists; atlas-linkd never deletes or recreates it");
                    report.changed.push(key);
                }
                Action::Orphaned { key, .. } => {
                    tracing::warn!(link = %key, "recorded in the ledger but no longer declared; left in place");
                    report.orphaned.push(key);
                }
                Action::Waiting {
                    key,
                    until_unix,
                    last_error,
                    ..
                } => report.waiting.push(FailedLink::new(
                    &key,
                    format!(
                        "waiting until {} after failure: {}",
                        crate::report::format_unix(until_unix),
                        last_error.unwrap_or_default()
                    ),
                )),
                Action::Conflict {
                    link,
                    remote_id,
                    fields,
                } => {
                    let why = near_match_reason(&remote_id, &fields);
                    tracing::error!(link = %link.key, "{why}");
                    report.conflicted.push(FailedLink::new(&link.key, why));
                }
                Action::InFlight { link, until_unix } => {
                    if options.wait_for_settle {
                        // Decided by a listing after the window, inside this pass.
                        jobs.entry(link.key.group_id.clone())
                            .or_default()
                            .push(Job {
                                link,
                                reason: CreateReason::Resume,
                                in_flight_until: Some(until_unix),
                            });
                    } else {
                        report.add_in_flight(&link.key, until_unix);
                    }
                }
            }
        }

        // Concurrently, so the ledger commits them in a few transactions rather than one each.
        futures::future::try_join_all(
            adoptions
                .iter()
                .map(|(link, remote)| self.record_adoption(link, remote)),
        )
        .await?;
        for (link, remote) in adoptions {
            claimed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(remote.id.clone());
            tracing::info!(link = %link.key, atlas_id = %remote.id, "adopted an existing connection");
            report.adopted.push(link.key);
        }

        let total: usize = jobs.values().map(Vec::len).sum();
        if let Some(p) = &options.progress {
            p.start(total as u64);
        }
        let done = AtomicU64::new(0);
        let conflicts = AtomicU64::new(0);
        let mut projects = FuturesUnordered::new();
        for (_group, links) in jobs {
            let claimed = claimed.clone();
            let (done, conflicts, prior_attempts) = (&done, &conflicts, &prior_attempts);
            projects.push(async move {
                let per_project = self.policy.per_project_concurrency;
                futures::stream::iter(links)
                    .map(|job| {
                        let claimed = claimed.clone();
                        async move {
                            let create = CreateJob {
                                link: &job.link,
                                reason: job.reason,
                                prior_attempts: prior_attempts
                                    .get(&job.link.key)
                                    .copied()
                                    .unwrap_or(0),
                                in_flight_until: job.in_flight_until,
                                claimed: &claimed,
                                conflicts,
                            };
                            let outcome = self.create_one(create, options).await;
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            if let Some(p) = &options.progress {
                                p.advance(n);
                            }
                            (job.link.key, outcome)
                        }
                    })
                    .buffer_unordered(per_project)
                    .collect::<Vec<_>>()
                    .await
            });
        }
        while let Some(results) = projects.next().await {
            for (key, outcome) in results {
                match outcome {
                    Ok(CreateOutcome::Created) => report.created.push(key),
                    Ok(CreateOutcome::Verified { after_conflict }) => {
                        if after_conflict {
                            report.adopted.push(key);
                        } else {
                            report.created.push(key);
                        }
                    }
                    Ok(CreateOutcome::Failed(reason)) => {
                        report.failed.push(FailedLink::new(&key, reason))
                    }
                    Ok(CreateOutcome::NearMatch(reason)) => {
                        report.conflicted.push(FailedLink::new(&key, reason))
                    }
                    Ok(CreateOutcome::Undecided(reason)) => {
                        report.unverified.push(FailedLink::new(&key, reason))
                    }
                    Ok(CreateOutcome::InFlight { until_unix }) => {
                        report.add_in_flight(&key, until_unix)
                    }
                    Ok(CreateOutcome::Interrupted) => report.not_attempted.push(FailedLink::new(
                        &key,
                        "interrupted before its create completed".to_string(),
                    )),
                    Err(e) => {
                        report
                            .failed
                            .push(FailedLink::new(&key, format!("ledger write failed: {e}")));
                    }
                }
            }
        }
        if let Some(p) = &options.progress {
            p.finish();
        }

        report.conflicts = conflicts.load(Ordering::Relaxed);
        report.interrupted = cancel.is_cancelled();
        report.api_calls = self.counters.requests.load(Ordering::Relaxed) - requests_before;
        report.rate_limited =
            self.counters.rate_limited.load(Ordering::Relaxed) - rate_limited_before;
        report.duration = started.elapsed();
        report.sort();
        self.update_gauges(desired, &report).await;
        Ok(report)
    }

    /// Lists `groups` in parallel. Returns complete listings, and why each other project could not be listed.
    async fn list_projects(
        &self,
        groups: &BTreeSet<GroupId>,
        cancel: &CancellationToken,
    ) -> (Listings, BTreeMap<GroupId, String>) {
        let mut listings = Listings::new();
        let mut failures = BTreeMap::new();
        let mut tasks: FuturesUnordered<_> = groups
            .iter()
            .map(|group| async move { (group, self.list_project(group, cancel).await) })
            .collect();
        while let Some((group, result)) = tasks.next().await {
            match result {
                Ok(connections) => {
                    listings.insert(group.clone(), RemoteListing { connections });
                }
                Err(Abandon::Cancelled) => {
                    failures.insert(group.clone(), "interrupted".to_string());
                }
                Err(Abandon::Failed(e)) => {
                    tracing::error!(project = %group, error = %e, "could not list the project's connections");
                    failures.insert(group.clone(), e.to_string());
                }
            }
        }
        (listings, failures)
    }

    /// Records the Atlas state of every recorded connection that a listing shows, where it changed.
    async fn record_remote_states(
        &self,
        records: &[Record],
        listings: &Listings,
        now: i64,
    ) -> Result<(), LedgerError> {
        let by_id: HashMap<&str, &RemoteConnection> = listings
            .values()
            .flat_map(|l| l.connections.iter())
            .map(|c| (c.id.as_str(), c))
            .collect();
        let changes = records.iter().filter_map(|record| {
            let id = record.atlas_id.as_deref()?;
            // Only a listing of the record's own project speaks for it.
            listings.get(&record.key.group_id)?;
            let remote = by_id.get(id)?;
            let state = remote.state.as_ref()?;
            let changed = record.remote_state.as_ref() != Some(state)
                || record.remote_error != remote.error_message
                || record.outputs != remote.outputs;
            changed.then(|| Change::RemoteState {
                key: record.key.clone(),
                state: state.clone(),
                error: remote.error_message.clone(),
                outputs: remote.outputs.clone(),
                at_unix: now,
            })
        });
        // Concurrently, so the ledger commits them in a few transactions rather than one each.
        futures::future::try_join_all(changes.map(|c| self.ledger.apply(c))).await?;
        Ok(())
    }

    /// Creates one link, exactly once. See the module documentation for the protocol.
    async fn create_one(
        &self,
        job: CreateJob<'_>,
        options: &PassOptions,
    ) -> Result<CreateOutcome, LedgerError> {
        let CreateJob {
            link,
            reason,
            prior_attempts,
            in_flight_until,
            claimed,
            conflicts,
        } = job;
        let cancel = &options.cancel;
        let group = &link.key.group_id;
        let gate = self.gate(group);
        if cancel.is_cancelled() {
            return Ok(CreateOutcome::Interrupted);
        }
        tracing::debug!(link = %link.key, ?reason, "creating");

        let mut backoff = self.policy.backoff();
        let mut attempts = Attempts::default();
        // Set while an earlier attempt may have created the connection: nothing is sent again until
        // a listing that starts after its settle window shows it absent.
        let mut doubt = in_flight_until.map(|until_unix| Doubt {
            since: instant_at_unix(until_unix),
            until_unix,
            if_absent: IfAbsent::CreateAgain,
            after_conflict: false,
        });
        loop {
            if let Some(d) = doubt.take() {
                if !options.wait_for_settle && d.since > tokio::time::Instant::now() {
                    return Ok(CreateOutcome::InFlight {
                        until_unix: d.until_unix,
                    });
                }
                let listing = match self.verify_listing(group, d.since, cancel).await {
                    Ok(listing) => listing,
                    Err(Abandon::Cancelled) => return Ok(CreateOutcome::Interrupted),
                    Err(Abandon::Failed(e)) => {
                        // Still in doubt, which is not a failure of the link: the intent (with its
                        // `sent_unix`) stays, so the next pass lists first and decides, without the
                        // failure delay.
                        return Ok(CreateOutcome::Undecided(format!(
                            "a create got no answer, and the project could not be listed to check whether Atlas committed it (the next pass lists first): {e}"
                        )));
                    }
                };
                if let Some(remote) = self.claim_match(link, &listing, claimed) {
                    return self.record_verified(link, &remote, d.after_conflict).await;
                }
                if let Some(why) = near_match_in(link, &listing, claimed) {
                    tracing::error!(link = %link.key, "{why}");
                    return Ok(CreateOutcome::NearMatch(why));
                }
                match d.if_absent {
                    IfAbsent::CreateAgain => {}
                    IfAbsent::GiveUp(why) => {
                        if !d.after_conflict {
                            self.count_create(metrics::outcome::FAILURE);
                        }
                        return self
                            .record_failure(link, prior_attempts, why.to_owned())
                            .await;
                    }
                }
            }

            let (result, sent, sent_unix) = {
                let Some(permit) = self.admit(&gate, cancel).await else {
                    return Ok(CreateOutcome::Interrupted);
                };
                // Durable before the request leaves, and stamped as late as possible: the settle
                // window of an unanswered create counts from here.
                let sent_unix = now_unix_ceil();
                self.ledger
                    .apply(Change::Intent {
                        key: link.key.clone(),
                        spec: link.spec.clone(),
                        fingerprint: link.fingerprint,
                        at_unix: sent_unix,
                    })
                    .await?;
                let sent = tokio::time::Instant::now();
                let result = self.client.create(group, &link.spec).await;
                permit.observe(match &result {
                    Ok(answer) => &answer.rate_limit,
                    Err(e) => &e.rate_limit,
                });
                (result, sent, sent_unix)
            };
            let e = match result {
                Ok(answer) => {
                    let id = answer.value.id;
                    self.ledger
                        .apply(Change::Created {
                            key: link.key.clone(),
                            atlas_id: id.clone(),
                            at_unix: now_unix(),
                        })
                        .await?;
                    claimed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id.clone());
                    self.count_create(metrics::outcome::SUCCESS);
                    tracing::info!(link = %link.key, atlas_id = %id, "created");
                    return Ok(CreateOutcome::Created);
                }
                Err(e) => e,
            };
            if e.class == ErrorClass::Conflict {
                conflicts.fetch_add(1, Ordering::Relaxed);
                self.count_create(metrics::outcome::CONFLICT);
            }
            count_attempt(&mut attempts, &e.class);
            let step = backoff.next().unwrap_or(self.policy.max_backoff);
            match decide::decide(Op::Create, &e.class, attempts, &self.policy.limits(), step) {
                Next::PauseProject { wait } => self.pause_project(&gate, group, wait),
                Next::Retry { after } => {
                    self.count_retry(retry_reason(&e));
                    if !self.wait(after, cancel).await {
                        return Ok(CreateOutcome::Interrupted);
                    }
                }
                Next::Verify {
                    after_sent,
                    if_absent,
                } => {
                    let after_conflict = e.class == ErrorClass::Conflict;
                    if after_conflict {
                        tracing::warn!(link = %link.key, error = %e, "409 Conflict; listing the project to resolve it");
                    } else {
                        self.count_retry("ambiguous");
                        tracing::warn!(link = %link.key, error = %e, settle_secs = after_sent.as_secs(),
                            "the create may have reached Atlas; deciding by a listing after its settle window");
                    }
                    doubt = Some(Doubt {
                        since: sent.checked_add(after_sent).unwrap_or(sent),
                        until_unix: sent_unix.saturating_add(after_sent.as_secs() as i64),
                        if_absent,
                        after_conflict,
                    });
                }
                Next::GiveUp => return self.give_up(link, prior_attempts, &e).await,
            }
        }
    }

    fn count_create(&self, outcome: &str) {
        self.metrics
            .creates_total
            .with_label_values(&[outcome])
            .inc();
    }

    /// The first unclaimed listed connection that matches `link`, now claimed by it.
    fn claim_match(
        &self,
        link: &DesiredLink,
        listing: &[RemoteConnection],
        claimed: &Mutex<HashSet<String>>,
    ) -> Option<RemoteConnection> {
        let mut claimed = match claimed.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let remote = listing
            .iter()
            .find(|c| !claimed.contains(&c.id) && link.spec.matches(c))?;
        claimed.insert(remote.id.clone());
        Some(remote.clone())
    }

    /// Records an existing connection as `link`'s, without a create.
    async fn record_adoption(
        &self,
        link: &DesiredLink,
        remote: &RemoteConnection,
    ) -> Result<(), LedgerError> {
        self.ledger
            .apply(Change::Adopted {
                key: link.key.clone(),
                spec: link.spec.clone(),
                fingerprint: link.fingerprint,
                atlas_id: remote.id.clone(),
                remote_state: remote.state.clone(),
                remote_error: remote.error_message.clone(),
                outputs: remote.outputs.clone(),
                at_unix: now_unix(),
            })
            .await?;
        self.metrics.adoptions_total.inc();
        Ok(())
    }

    /// A listing showed the connection an uncertain create (or a 409) was about: record it.
    async fn record_verified(
        &self,
        link: &DesiredLink,
        remote: &RemoteConnection,
        after_conflict: bool,
    ) -> Result<CreateOutcome, LedgerError> {
        if after_conflict {
            // We did not make it (Atlas refused our create): it was there already.
            self.record_adoption(link, remote).await?;
            tracing::info!(link = %link.key, atlas_id = %remote.id, "409 resolved: adopted the existing connection");
        } else {
            self.ledger
                .apply(Change::Created {
                    key: link.key.clone(),
                    atlas_id: remote.id.clone(),
                    at_unix: now_unix(),
                })
                .await?;
            self.count_create(metrics::outcome::SUCCESS);
            tracing::info!(link = %link.key, atlas_id = %remote.id, "created (confirmed by listing after an uncertain answer)");
        }
        Ok(CreateOutcome::Verified { after_conflict })
    }

    async fn give_up(
        &self,
        link: &DesiredLink,
        prior_attempts: u32,
        e: &ApiError,
    ) -> Result<CreateOutcome, LedgerError> {
        self.count_create(metrics::outcome::FAILURE);
        tracing::error!(link = %link.key, error = %e, "create failed");
        self.record_failure(link, prior_attempts, e.to_string())
            .await
    }

    async fn record_failure(
        &self,
        link: &DesiredLink,
        prior_attempts: u32,
        reason: String,
    ) -> Result<CreateOutcome, LedgerError> {
        let attempts = prior_attempts.saturating_add(1);
        let now = now_unix();
        let wait = self.policy.failure_wait(attempts);
        self.ledger
            .apply(Change::Failed {
                key: link.key.clone(),
                spec: link.spec.clone(),
                fingerprint: link.fingerprint,
                error: reason.clone(),
                next_attempt_unix: now.saturating_add(wait.as_secs() as i64),
                at_unix: now,
            })
            .await?;
        Ok(CreateOutcome::Failed(reason))
    }

    /// `atlas_linkd_links{status}` and `atlas_linkd_remote_links{state}` after a pass.
    async fn update_gauges(&self, desired: &DesiredState, report: &PassReport) {
        let m = &self.metrics;
        let set = |status: &str, n: usize| m.links.with_label_values(&[status]).set(n as i64);
        set(metrics::link_status::DESIRED, desired.link_count());
        set(
            metrics::link_status::CONVERGED,
            report.created.len() + report.adopted.len() + report.unchanged,
        );
        set(
            metrics::link_status::PENDING,
            report.not_attempted.len() + report.in_flight.len() + report.unverified.len(),
        );
        set(metrics::link_status::CONFLICT, report.conflicted.len());
        set(
            metrics::link_status::FAILED,
            report.failed.len() + report.waiting.len(),
        );
        set(metrics::link_status::CHANGED, report.changed.len());
        set(metrics::link_status::ORPHANED, report.orphaned.len());

        if let Ok(records) = self.ledger.records().await {
            let mut states: BTreeMap<String, i64> = BTreeMap::new();
            for r in records.iter().filter(|r| {
                matches!(r.phase, Phase::Created | Phase::Adopted) && desired.get(&r.key).is_some()
            }) {
                let state = r
                    .remote_state
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "UNKNOWN".to_string());
                *states.entry(state).or_default() += 1;
            }
            m.set_remote_states(states.iter().map(|(s, n)| (s.as_str(), *n)));
        }
    }
}

/// Counts a failed attempt where `decide` expects it.
fn count_attempt(attempts: &mut Attempts, class: &ErrorClass) {
    match class {
        ErrorClass::RateLimited { .. } => {
            attempts.rate_limited = attempts.rate_limited.saturating_add(1)
        }
        _ => attempts.failures = attempts.failures.saturating_add(1),
    }
}

/// Why `link` may not be created: the first unclaimed connection in `listing` that shares its
/// identity but differs in other fields. Never adopted, never created beside.
fn near_match_in(
    link: &DesiredLink,
    listing: &[RemoteConnection],
    claimed: &Mutex<HashSet<String>>,
) -> Option<String> {
    let claimed = claimed.lock().unwrap_or_else(|e| e.into_inner());
    listing
        .iter()
        .filter(|c| !claimed.contains(&c.id))
        .find_map(|c| {
            let fields = link.spec.near_match(c)?;
            Some(near_match_reason(&c.id, &fields))
        })
}

/// The report's words for a near-match conflict.
pub(crate) fn near_match_reason(remote_id: &str, fields: &[&str]) -> String {
    format!(
        "conflict: connection {remote_id} points at the same far end but differs in {}; \
         atlas-linkd neither adopts it nor creates another beside it: make the manifest say what \
         Atlas has, or delete the connection in Atlas",
        fields.join(", ")
    )
}

fn retry_reason(e: &ApiError) -> &'static str {
    match e.status {
        Some(s) if s >= 500 => "server_error",
        Some(_) => "other",
        None => "connection",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            concurrency: 32,
            per_project_concurrency: 4,
            bucket_capacity: 1200,
            bucket_refill: 500,
            bucket_period: Duration::from_secs(60),
            max_attempts: 6,
            initial_backoff: Duration::from_millis(1000),
            max_backoff: Duration::from_secs(60),
            max_rate_limited: 50,
            failure_delay: Duration::from_secs(300),
            max_failure_delay: Duration::from_secs(21600),
            settle: Duration::from_secs(30),
            reserve: 0,
        }
    }

    #[test]
    fn the_bucket_keeps_one_token_plus_a_round_trip_of_headroom() {
        let shape = policy().bucket_shape();
        assert_eq!(shape.per_token, Duration::from_millis(120));
        // 200 ms of round trip is two tokens' worth at 120 ms each, plus the one.
        assert_eq!(
            shape.quota(Duration::from_millis(200)).burst_size().get(),
            1197
        );
        assert_eq!(shape.quota(Duration::ZERO).burst_size().get(), 1199);
        let tiny = BucketShape {
            capacity: 2,
            per_token: Duration::from_millis(10),
        };
        assert_eq!(tiny.quota(Duration::from_secs(5)).burst_size().get(), 1);
    }

    #[test]
    fn the_reserve_is_kept_out_of_our_mirror_bucket() {
        let p = Policy {
            reserve: 60,
            ..policy()
        };
        assert_eq!(
            p.bucket_shape().quota(Duration::ZERO).burst_size().get(),
            1139
        );
    }

    #[test]
    fn a_failed_link_waits_longer_after_each_failure_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.failure_wait(1), Duration::from_secs(300));
        assert_eq!(p.failure_wait(2), Duration::from_secs(600));
        assert_eq!(p.failure_wait(3), Duration::from_secs(1200));
        assert_eq!(p.failure_wait(50), Duration::from_secs(21600));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut p = policy();
        p.initial_backoff = Duration::from_millis(100);
        p.max_backoff = Duration::from_secs(1);
        let delays: Vec<Duration> = p.backoff().take(8).collect();
        assert!(delays[0] >= Duration::from_millis(100));
        // Jitter adds at most the delay itself.
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[7] >= Duration::from_secs(1));
    }
}
