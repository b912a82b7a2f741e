//! The fake's memory: connections per project, issued tokens and nonces, fault bookkeeping, and
//! the counters and token buckets of `counters` and `bucket`. Guarded by one mutex that is never
//! held across an await.

mod bucket;
mod counters;
mod splitmix;

pub(crate) use bucket::RateHeaders;
pub use counters::Counters;
pub(crate) use splitmix::SplitMix;

use super::config::{DuplicateMode, FakeConfig, FakeOp, Fault, Faults, ScriptedFault};
use super::{outputs, validate};
use bucket::{Bucket, Replayed, Scale, far_future, other_rate};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) struct Stored {
    pub id: String,
    /// The create body as sent.
    pub body: Map<String, Value>,
    pub key: String,
    /// When `IDLE` began: the commit, or the PATCH that gave a pending connection its domain.
    pub lifecycle_from: Instant,
    pub deleted: Option<Instant>,
    /// Set: the connection ends `FAILED` with this `errorMessage` once its `IDLE` and `WORKING`
    /// time is over (at once when it is over already).
    pub fails: Option<String>,
    /// A stream connection uses it: a delete is refused with `STREAM_PRIVATE_LINK_IN_USE`.
    pub in_use: bool,
    /// The JSON of its view once settled (`DONE` or `FAILED` for good): listing a million settled
    /// connections would otherwise build and print each view again on every page (4 s of a 2-core
    /// benchmark's CPU). `forget_view` clears it when what settled it changes (the body, a failure).
    view_json: std::sync::Mutex<Option<std::sync::Arc<str>>>,
}

impl Stored {
    /// Drops the cached view, after a change of the body.
    pub(crate) fn forget_view(&mut self) {
        *self
            .view_json
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// The `errorMessage` of a connection `fail_when_contains` fails, unless `fail_message` says otherwise.
const DEFAULT_FAIL_MESSAGE: &str =
    "The private endpoint could not be provisioned (fake Atlas: fail_when_contains matched)";

#[derive(Default)]
pub(crate) struct Project {
    pub conns: Vec<Stored>,
    bucket: Option<Bucket>,
    /// The last 429 sent to this project: when, and the `Retry-After` it named.
    retry_window: Option<(Instant, Instant)>,
}

/// Calls that arrive this soon after a 429 were already on their way when it was sent.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(250);

pub(crate) struct TokenInfo {
    pub expires: Instant,
    pub revoked: bool,
}

pub(crate) struct NonceInfo {
    pub issued: Instant,
    pub uses: u64,
    pub seen_nc: HashSet<u64>,
}

pub(crate) struct Inner {
    pub config: FakeConfig,
    pub projects: HashMap<String, Project>,
    pub counters: Counters,
    in_flight: u64,
    in_flight_by_project: HashMap<String, u64>,
    op_calls: HashMap<(FakeOp, Option<String>), u64>,
    fault_rng: SplitMix,
    /// For ids, tokens and nonces: not from the fault seed, so that scripts do not shift them.
    id_rng: SplitMix,
    id_seq: u64,
    pub tokens: HashMap<String, TokenInfo>,
    pub nonces: HashMap<String, NonceInfo>,
    /// Creates that passed validation and wait for their commit (`commit_delay_ms`).
    pub pending_commits: u64,
}

/// What became of a create at commit time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Committed {
    /// Stored under this id.
    Created(String),
    /// Refused: the connection with this id is the same (`DuplicateMode::Conflict`).
    Duplicate(String),
}

/// What the bucket said.
pub(crate) enum Take {
    /// A token was taken (`None`: there is no rate limit, so no headers either).
    Ok(Option<RateHeaders>),
    Empty {
        retry_after_secs: u64,
        rate: RateHeaders,
    },
}

fn count_other_client(counters: &mut Counters, group: &str, replayed: Replayed) {
    if replayed.calls == 0 {
        return;
    }
    counters.other_client_calls += replayed.calls;
    counters.other_client_refused += replayed.refused;
    *counters
        .other_client_calls_by_project
        .entry(group.to_owned())
        .or_insert(0) += replayed.calls;
    if replayed.refused > 0 {
        *counters
            .other_client_refused_by_project
            .entry(group.to_owned())
            .or_insert(0) += replayed.refused;
    }
}

impl Inner {
    pub(crate) fn new(config: FakeConfig) -> Inner {
        let seed = config.faults.seed;
        let entropy = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::process::id())
        };
        Inner {
            config,
            projects: HashMap::new(),
            counters: Counters::default(),
            in_flight: 0,
            in_flight_by_project: HashMap::new(),
            op_calls: HashMap::new(),
            fault_rng: SplitMix::new(seed),
            id_rng: SplitMix::new(entropy),
            id_seq: 0,
            tokens: HashMap::new(),
            nonces: HashMap::new(),
            pending_commits: 0,
        }
    }

    pub(crate) fn set_faults(&mut self, faults: Faults) {
        self.fault_rng = SplitMix::new(faults.seed);
        self.config.faults = faults;
    }

    pub(crate) fn random_hex(&mut self, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes * 2);
        while out.len() < bytes * 2 {
            out.push_str(&format!("{:016x}", self.id_rng.next_u64()));
        }
        out.truncate(bytes * 2);
        out
    }

    /// A 24-hex id shaped like a MongoDB ObjectId: seconds, then randomness, then a sequence.
    pub(crate) fn new_id(&mut self) -> String {
        self.id_seq += 1;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let rand = self.id_rng.next_u64() & 0xFF_FFFF_FFFF;
        format!(
            "{:08x}{:010x}{:06x}",
            secs as u32,
            rand,
            self.id_seq & 0xFF_FFFF
        )
    }

    pub(crate) fn record(&mut self, op: &str, status: u16) {
        *self
            .counters
            .requests
            .entry(op.to_owned())
            .or_default()
            .entry(status)
            .or_insert(0) += 1;
        if status == 429 {
            self.counters.rate_limited += 1;
        }
        if status == 0 {
            self.counters.connections_dropped += 1;
        }
    }

    pub(crate) fn enter(&mut self, group: Option<&str>) {
        self.in_flight += 1;
        self.counters.peak_concurrent = self.counters.peak_concurrent.max(self.in_flight);
        if let Some(g) = group {
            let n = self.in_flight_by_project.entry(g.to_owned()).or_insert(0);
            *n += 1;
            let peak = self
                .counters
                .peak_concurrent_by_project
                .entry(g.to_owned())
                .or_insert(0);
            *peak = (*peak).max(*n);
        }
    }

    pub(crate) fn leave(&mut self, group: Option<&str>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(g) = group
            && let Some(n) = self.in_flight_by_project.get_mut(g)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Remembers a 429 sent to `group`, to spot calls that do not wait for its `Retry-After`.
    pub(crate) fn note_rate_limited(&mut self, group: &str, now: Instant, retry_after_secs: u64) {
        let project = self.projects.entry(group.to_owned()).or_default();
        // A scripted `Retry-After` can be anything; beyond the clock's range it never ends.
        let until = now
            .checked_add(Duration::from_secs(retry_after_secs))
            .unwrap_or_else(|| far_future(now));
        project.retry_window = Some((now, until));
    }

    /// Counts a call that arrives inside the last 429's `Retry-After` window.
    pub(crate) fn check_retry_after(&mut self, group: &str, now: Instant) {
        let early = self
            .projects
            .get(group)
            .and_then(|p| p.retry_window)
            .is_some_and(|(sent, until)| now > sent + IN_FLIGHT_GRACE && now < until);
        if early {
            self.counters.early_after_retry_after += 1;
        }
    }

    /// The project's bucket brought up to `now` (the other client's calls replayed), created on
    /// the first call to the project. `None` when there is no rate limit.
    fn touch_bucket(&mut self, group: &str, now: Instant) -> Option<(Scale, &mut Bucket)> {
        let scale = Scale::of(&self.config.bucket?);
        let per_sec = other_rate(self.config.other_client_per_sec);
        let project = self.projects.entry(group.to_owned()).or_default();
        let bucket = project
            .bucket
            .get_or_insert_with(|| Bucket::new(&scale, now));
        let replayed = bucket.catch_up(&scale, per_sec, now);
        count_other_client(&mut self.counters, group, replayed);
        Some((scale, bucket))
    }

    /// Takes a token for a call to `group`; the answer's rate headers say what was left right after.
    pub(crate) fn take_token(&mut self, group: &str, now: Instant) -> Take {
        let Some((scale, bucket)) = self.touch_bucket(group, now) else {
            return Take::Ok(None);
        };
        if bucket.take(&scale) {
            Take::Ok(Some(RateHeaders::of(&scale, bucket)))
        } else {
            Take::Empty {
                retry_after_secs: bucket.retry_after_secs(&scale),
                rate: RateHeaders::of(&scale, bucket),
            }
        }
    }

    /// The rate headers of a call that took no token (refused before the rate limit).
    pub(crate) fn rate_headers(&mut self, group: &str, now: Instant) -> Option<RateHeaders> {
        self.touch_bucket(group, now)
            .map(|(scale, bucket)| RateHeaders::of(&scale, bucket))
    }

    /// Counts this call and returns the fault it gets, if any: a script entry first, then chance.
    pub(crate) fn fault_for(&mut self, op: FakeOp, group: Option<&str>) -> Option<Fault> {
        let overall = {
            let n = self.op_calls.entry((op, None)).or_insert(0);
            *n += 1;
            *n
        };
        let in_group = group.map(|g| {
            let n = self.op_calls.entry((op, Some(g.to_owned()))).or_insert(0);
            *n += 1;
            *n
        });
        let script = &mut self.config.faults.script;
        let hit = script.iter().position(|s: &ScriptedFault| {
            s.operation == op
                && match &s.group_id {
                    None => s.nth == overall,
                    Some(g) => Some(g.as_str()) == group && Some(s.nth) == in_group,
                }
        });
        if let Some(i) = hit {
            return Some(script.remove(i).fault);
        }
        if !op.is_api() {
            return None;
        }
        let f = &self.config.faults;
        let create_only = |p: f64| if op == FakeOp::Create { p } else { 0.0 };
        let (retry_after_secs, slow_ms) = (f.retry_after_secs, f.slow_ms);
        let choices = [
            (f.p_429, Fault::RateLimited { retry_after_secs }),
            (f.p_500, Fault::ServerError),
            (f.p_503, Fault::Unavailable),
            (f.p_drop_before, Fault::DropBeforeCommit),
            (f.p_drop_after, Fault::DropAfterCommit),
            (f.p_slow, Fault::Slow { ms: slow_ms }),
            (create_only(f.p_reset_create), Fault::ResetThenCommit),
            (
                create_only(f.p_502_create),
                Fault::GatewayThenCommit { status: 502 },
            ),
            (
                create_only(f.p_504_create),
                Fault::GatewayThenCommit { status: 504 },
            ),
        ];
        // No draw when nothing can hit this call, so that create-only faults leave the sequence
        // other calls see unchanged.
        if choices.iter().map(|(p, _)| p).sum::<f64>() <= 0.0 {
            return None;
        }
        let mut u = self.fault_rng.next_f64();
        for (p, fault) in choices {
            if u < p {
                return Some(fault);
            }
            u -= p;
        }
        None
    }

    /// Forgets connections whose deletion has completed.
    pub(crate) fn purge(&mut self, group: &str, now: Instant) {
        let delete = Duration::from_millis(self.config.delete_ms);
        if let Some(p) = self.projects.get_mut(group) {
            p.conns.retain(|c| {
                c.deleted
                    .is_none_or(|d| now.saturating_duration_since(d) < delete)
            });
        }
    }

    /// Stores a connection; returns its id.
    pub(crate) fn commit(&mut self, group: &str, body: Map<String, Value>, now: Instant) -> String {
        let id = self.new_id();
        let key = validate::duplicate_key(&body);
        let text = Value::Object(body.clone()).to_string();
        let contains = |needle: &Option<String>| {
            needle
                .as_deref()
                .is_some_and(|needle| text.contains(needle))
        };
        let fails = contains(&self.config.fail_when_contains).then(|| {
            self.config
                .fail_message
                .clone()
                .unwrap_or_else(|| DEFAULT_FAIL_MESSAGE.to_owned())
        });
        let in_use = contains(&self.config.in_use_when_contains);
        self.projects
            .entry(group.to_owned())
            .or_default()
            .conns
            .push(Stored {
                id: id.clone(),
                body,
                key,
                lifecycle_from: now,
                deleted: None,
                fails,
                in_use,
                view_json: std::sync::Mutex::new(None),
            });
        id
    }

    /// The backend's half of a create: duplicates are judged now, at commit time, not when the
    /// create arrived.
    pub(crate) fn commit_create(
        &mut self,
        group: &str,
        body: Map<String, Value>,
        now: Instant,
    ) -> Committed {
        self.purge(group, now);
        let key = validate::duplicate_key(&body);
        if self.config.duplicates == DuplicateMode::Conflict
            && let Some(existing) = self.find_duplicate(group, &key)
        {
            return Committed::Duplicate(existing.id.clone());
        }
        let id = self.commit(group, body, now);
        self.counters.creates_committed += 1;
        *self
            .counters
            .creates_committed_by_project
            .entry(group.to_owned())
            .or_insert(0) += 1;
        Committed::Created(id)
    }

    /// The live (not being deleted) connection `id` of `group`.
    pub(crate) fn live_mut(&mut self, group: &str, id: &str) -> Option<&mut Stored> {
        self.projects
            .get_mut(group)?
            .conns
            .iter_mut()
            .find(|c| c.id == id && c.deleted.is_none())
    }

    /// A live (not being deleted) connection in `group` with the same normalised body.
    pub(crate) fn find_duplicate(&self, group: &str, key: &str) -> Option<&Stored> {
        self.projects
            .get(group)?
            .conns
            .iter()
            .find(|c| c.deleted.is_none() && c.key == key)
    }

    /// `view` as JSON text, from the cache when the connection is settled (see `Stored::view_json`).
    pub(crate) fn view_json(&self, conn: &Stored, now: Instant) -> std::sync::Arc<str> {
        let mut cache = conn
            .view_json
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A view is cached only once settled, and dropped when what settled it changes (a PATCH of
        // the body, a failure made to happen); a settled connection stays settled until then, so
        // the cache answers without settling it again (three lookups in the body per listing).
        if conn.deleted.is_none()
            && let Some(json) = &*cache
        {
            return json.clone();
        }
        let json: std::sync::Arc<str> = std::sync::Arc::from(self.view(conn, now).to_string());
        if self.is_settled(conn, now) {
            *cache = Some(json.clone());
        }
        json
    }

    /// Whether the connection has reached `DONE` or `FAILED` for good (until a PATCH or a failure
    /// made to happen): the states `view` gives once the `IDLE` and `WORKING` time is over.
    fn is_settled(&self, conn: &Stored, now: Instant) -> bool {
        if conn.deleted.is_some() || validate::awaits_domain(&conn.body) {
            return false;
        }
        let age = now.saturating_duration_since(conn.lifecycle_from);
        age >= Duration::from_millis(self.config.idle_ms)
            .saturating_add(Duration::from_millis(self.config.working_ms))
    }

    /// A connection as a get shows it.
    pub(crate) fn view(&self, conn: &Stored, now: Instant) -> Value {
        let mut view = validate::stored_view(&conn.body);
        view.insert("_id".into(), Value::String(conn.id.clone()));
        let state = match conn.deleted {
            Some(d) => {
                let half = Duration::from_millis(self.config.delete_ms / 2);
                if now.saturating_duration_since(d) < half {
                    "DELETE_REQUESTED"
                } else {
                    "DELETING"
                }
            }
            None if validate::awaits_domain(&conn.body) => {
                // The endpoint exists already: Confluent needs its id to produce the domain that
                // lets the connection go on, so it shows although the state stays IDLE.
                if let Some(provider) = view.get("provider").and_then(Value::as_str) {
                    let provider = provider.to_owned();
                    outputs::add(&mut view, &provider, &conn.id);
                }
                "IDLE"
            }
            None => {
                let age = now.saturating_duration_since(conn.lifecycle_from);
                let idle = Duration::from_millis(self.config.idle_ms);
                let working = idle + Duration::from_millis(self.config.working_ms);
                if age < idle {
                    "IDLE"
                } else if age < working {
                    "WORKING"
                } else if let Some(message) = &conn.fails {
                    view.insert("errorMessage".into(), Value::String(message.clone()));
                    "FAILED"
                } else {
                    if let Some(provider) = view.get("provider").and_then(Value::as_str) {
                        let provider = provider.to_owned();
                        outputs::add(&mut view, &provider, &conn.id);
                    }
                    "DONE"
                }
            }
        };
        view.insert("state".into(), Value::String(state.into()));
        Value::Object(view)
    }

    /// The counters as of `now`: the other client's calls due by then are replayed first, so the
    /// figures do not depend on when the projects were last called.
    pub(crate) fn snapshot(&mut self, now: Instant) -> Counters {
        if let Some(cfg) = self.config.bucket {
            let scale = Scale::of(&cfg);
            let per_sec = other_rate(self.config.other_client_per_sec);
            for (group, project) in &mut self.projects {
                if let Some(bucket) = project.bucket.as_mut() {
                    let replayed = bucket.catch_up(&scale, per_sec, now);
                    count_other_client(&mut self.counters, group, replayed);
                }
            }
        }
        let mut counters = self.counters.clone();
        let mut duplicates = 0;
        for p in self.projects.values() {
            let mut seen: HashMap<&str, u64> = HashMap::new();
            for c in p.conns.iter().filter(|c| c.deleted.is_none()) {
                *seen.entry(c.key.as_str()).or_insert(0) += 1;
            }
            duplicates += seen.values().filter(|&&n| n > 1).count() as u64;
        }
        counters.duplicates = duplicates;
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BucketConfig;

    #[test]
    fn rate_headers_show_whole_tokens_left_after_the_take_and_count_the_other_client() {
        let mut inner = Inner::new(FakeConfig {
            bucket: Some(BucketConfig {
                capacity: 10,
                refill: 1,
                period_secs: 3600.0,
            }),
            other_client_per_sec: 2.0,
            ..FakeConfig::default()
        });
        let g = "32b6e34b3d91647abb20e7b8";
        let t0 = Instant::now();
        let Take::Ok(Some(first)) = inner.take_token(g, t0) else {
            panic!("the first call gets a token");
        };
        assert_eq!(
            first,
            RateHeaders {
                limit: 10,
                remaining: 9
            }
        );
        // Two seconds on, the other client has made 4 calls: 9 - 4 = 5, and this call leaves 4.
        let Take::Ok(Some(second)) = inner.take_token(g, t0 + Duration::from_secs(2)) else {
            panic!("tokens are left");
        };
        assert_eq!(second.remaining, 4);
        // Ten seconds on: 16 more calls, of which 4 found a token.
        let Take::Empty { rate, .. } = inner.take_token(g, t0 + Duration::from_secs(10)) else {
            panic!("the other client drained the bucket");
        };
        assert_eq!(rate.remaining, 0);
        let c = inner.snapshot(t0 + Duration::from_secs(10));
        assert_eq!(c.other_client_calls, 20);
        assert_eq!(c.other_client_refused, 12);
        assert_eq!(c.other_client_calls_by_project[g], 20);
        assert_eq!(c.other_client_refused_by_project[g], 12);
        // Counting does not wait for the next call to the project.
        let c = inner.snapshot(t0 + Duration::from_secs(15));
        assert_eq!(c.other_client_calls, 30);
        assert_eq!(c.other_client_refused, 22);
    }
}
