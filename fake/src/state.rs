//! The fake's memory: connections per project, token buckets, issued tokens and nonces, fault
//! bookkeeping and the counters tests read. Guarded by one mutex that is never held across an await.

use super::config::{
    BucketConfig, DuplicateMode, FakeConfig, FakeOp, Fault, Faults, ScriptedFault,
};
use super::{outputs, validate};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// A snapshot of what the fake has seen and done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Requests by operation (`list`, `get`, `create`, `delete`, `update`, `token`, `revoke`,
    /// `other`) and HTTP status; status `0` counts connections dropped without an answer.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Creates that took effect (also those whose answer was then dropped).
    pub creates_committed: u64,
    pub creates_committed_by_project: BTreeMap<String, u64>,
    /// Distinct specs that exist more than once (not counting connections being deleted) in a project.
    pub duplicates: u64,
    pub peak_concurrent: u64,
    pub peak_concurrent_by_project: BTreeMap<String, u64>,
    /// Every 429 sent, from the bucket or injected.
    pub rate_limited: u64,
    pub tokens_issued: u64,
    pub tokens_revoked: u64,
    pub digest_challenges: u64,
    pub connections_dropped: u64,
    /// Calls to a project that arrived after a 429 and before its `Retry-After` was up (beyond a short
    /// grace for calls already in flight): a client that honours `Retry-After` keeps this at 0.
    pub early_after_retry_after: u64,
    /// Calls made by the simulated other client (`FakeConfig::other_client_per_sec`), which share
    /// each project's bucket...
    pub other_client_calls: u64,
    /// ...and those of them the bucket refused (a 429 that tool does not retry: its run fails).
    pub other_client_refused: u64,
    pub other_client_calls_by_project: BTreeMap<String, u64>,
    pub other_client_refused_by_project: BTreeMap<String, u64>,
}

impl Counters {
    /// Requests of `op` answered with `status` (`0`: dropped).
    pub fn requests_with(&self, op: &str, status: u16) -> u64 {
        self.requests
            .get(op)
            .and_then(|by| by.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Every request of `op`, whatever the answer.
    pub fn requests_of(&self, op: &str) -> u64 {
        self.requests
            .get(op)
            .map(|by| by.values().sum())
            .unwrap_or(0)
    }

    pub fn total_requests(&self) -> u64 {
        self.requests.values().flat_map(|by| by.values()).sum()
    }
}

/// A bucket's figures in exact integers: one token is `unit` units (the refill period in
/// nanoseconds), and every nanosecond adds `refill` units. Floats would make whole-token counts
/// wobble at boundaries; integers make every answer reproducible.
#[derive(Debug, Clone, Copy)]
struct Scale {
    unit: u128,
    refill: u128,
    capacity: u128,
}

impl Scale {
    fn of(cfg: &BucketConfig) -> Scale {
        let period_ns = if cfg.period_secs.is_finite() && cfg.period_secs > 0.0 {
            // `as` saturates; a period beyond u64 nanoseconds (585 years) never refills anyway.
            ((cfg.period_secs * 1e9).round() as u64).max(1)
        } else {
            0
        };
        if period_ns == 0 {
            // No period: an instant refill, so the bucket is always full.
            return Scale {
                unit: 1,
                refill: u128::MAX,
                capacity: u128::from(cfg.capacity),
            };
        }
        let unit = u128::from(period_ns);
        Scale {
            unit,
            refill: u128::from(cfg.refill),
            capacity: u128::from(cfg.capacity) * unit,
        }
    }
}

pub(crate) struct Bucket {
    units: u128,
    last: Instant,
    /// When the first call reached the project: the other client calls from then on.
    born: Instant,
    /// How many of the other client's calls have been replayed so far.
    other_calls: u64,
}

/// What replaying the other client's calls did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replayed {
    pub calls: u64,
    pub refused: u64,
}

impl Bucket {
    fn new(scale: &Scale, now: Instant) -> Bucket {
        Bucket {
            units: scale.capacity,
            last: now,
            born: now,
            other_calls: 0,
        }
    }

    fn whole_tokens(&self, scale: &Scale) -> u64 {
        u64::try_from(self.units / scale.unit).unwrap_or(u64::MAX)
    }

    fn take(&mut self, scale: &Scale) -> bool {
        if self.units >= scale.unit {
            self.units -= scale.unit;
            true
        } else {
            false
        }
    }

    /// Refills up to `now`. Callers race for the lock with instants read before it, so an instant
    /// older than the last refill adds nothing and does not move the bucket back in time.
    fn refill(&mut self, scale: &Scale, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(scale.refill))
            .min(scale.capacity);
        self.last = self.last.max(now);
    }

    /// Whole seconds until the bucket holds a token again (at least 1), as `Retry-After` says it.
    fn retry_after_secs(&self, scale: &Scale) -> u64 {
        if scale.refill == 0 || scale.capacity < scale.unit {
            return u64::from(u32::MAX);
        }
        let need = scale.unit.saturating_sub(self.units);
        let ns = need.div_ceil(scale.refill);
        u64::try_from(ns.div_ceil(1_000_000_000))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The instant of the other client's `k`th call (1-based); `None` beyond the clock's range.
    fn other_call_at(&self, k: u64, per_sec: f64) -> Option<Instant> {
        Duration::try_from_secs_f64(k as f64 / per_sec)
            .ok()
            .and_then(|d| self.born.checked_add(d))
    }

    /// How many of the other client's calls fall at or before `t`: an estimate in floats, then
    /// settled against the exact call instants.
    fn other_calls_by(&self, t: Instant, per_sec: f64) -> u64 {
        let secs = t.saturating_duration_since(self.born).as_secs_f64();
        // `as` saturates, and a count that large is out of reach anyway.
        let mut n = (secs * per_sec).floor() as u64;
        while n > 0 && self.other_call_at(n, per_sec).is_none_or(|at| at > t) {
            n -= 1;
        }
        while n < u64::MAX && self.other_call_at(n + 1, per_sec).is_some_and(|at| at <= t) {
            n += 1;
        }
        n
    }

    /// Replays, in time order, the other client's calls due by `now` (each after refilling to its
    /// instant), then refills to `now`: what a real bucket shared with a client calling `per_sec`
    /// times a second would hold, computed only when someone looks.
    fn catch_up(&mut self, scale: &Scale, per_sec: Option<f64>, now: Instant) -> Replayed {
        let mut done = Replayed::default();
        if let Some(per_sec) = per_sec {
            let due = self.other_calls_by(now, per_sec);
            // The shortest gap between two calls, once instants are rounded to nanoseconds.
            let min_gap_ns = ((1e9 / per_sec).floor() as u128).saturating_sub(1);
            while self.other_calls < due {
                let k = self.other_calls + 1;
                let Some(at) = self.other_call_at(k, per_sec) else {
                    break;
                };
                self.refill(scale, at);
                if self.units >= scale.capacity
                    && scale.capacity >= scale.unit
                    && min_gap_ns.saturating_mul(scale.refill) >= scale.unit
                {
                    // Refilled by at least a token between calls, a full bucket is full again before
                    // each of them: all succeed, and the last leaves one token less than full.
                    done.calls += due - self.other_calls;
                    self.other_calls = due;
                    self.units = scale.capacity - scale.unit;
                    if let Some(last) = self.other_call_at(due, per_sec) {
                        self.last = self.last.max(last);
                    }
                    break;
                }
                if self.take(scale) {
                    done.calls += 1;
                    self.other_calls = k;
                    continue;
                }
                // Empty: every call before the bucket holds a whole token again is refused. Skipping
                // them in one step keeps a long quiet spell from costing a loop turn per call.
                let last_refused = if scale.refill == 0 || scale.capacity < scale.unit {
                    due
                } else {
                    let wait = (scale.unit - self.units).div_ceil(scale.refill);
                    let refilled = u64::try_from(wait)
                        .ok()
                        .and_then(|ns| at.checked_add(Duration::from_nanos(ns)));
                    match refilled.and_then(|r| r.checked_sub(Duration::from_nanos(1))) {
                        Some(before) => self.other_calls_by(before, per_sec).clamp(k, due),
                        None => due,
                    }
                };
                let n = last_refused - k + 1;
                done.calls += n;
                done.refused += n;
                self.other_calls = last_refused;
            }
        }
        self.refill(scale, now);
        done
    }
}

/// An instant no test or run will reach: about a century from `now`, or `now` itself if even that
/// is beyond the clock.
fn far_future(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600))
        .unwrap_or(now)
}

/// The other client's rate, if it calls at all.
fn other_rate(per_sec: f64) -> Option<f64> {
    (per_sec.is_finite() && per_sec > 0.0).then_some(per_sec)
}

pub(crate) struct Stored {
    pub id: String,
    /// The create body as sent.
    pub body: Map<String, Value>,
    pub key: String,
    /// When `IDLE` began: the commit, or the PATCH that gave a pending connection its domain.
    pub lifecycle_from: Instant,
    pub deleted: Option<Instant>,
    pub fails: bool,
}

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

/// A small deterministic generator (SplitMix64): seeded faults replay exactly.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
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

/// `RateLimit-Limit` and `RateLimit-Remaining` for one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateHeaders {
    pub limit: u32,
    /// Whole tokens left.
    pub remaining: u64,
}

impl RateHeaders {
    fn of(scale: &Scale, bucket: &Bucket) -> RateHeaders {
        RateHeaders {
            limit: u32::try_from(scale.capacity / scale.unit).unwrap_or(u32::MAX),
            remaining: bucket.whole_tokens(scale),
        }
    }
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
    pub fn new(config: FakeConfig) -> Inner {
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

    pub fn set_faults(&mut self, faults: Faults) {
        self.fault_rng = SplitMix::new(faults.seed);
        self.config.faults = faults;
    }

    pub fn random_hex(&mut self, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes * 2);
        while out.len() < bytes * 2 {
            out.push_str(&format!("{:016x}", self.id_rng.next_u64()));
        }
        out.truncate(bytes * 2);
        out
    }

    /// A 24-hex id shaped like a MongoDB ObjectId: seconds, then randomness, then a sequence.
    pub fn new_id(&mut self) -> String {
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

    pub fn record(&mut self, op: &str, status: u16) {
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

    pub fn enter(&mut self, group: Option<&str>) {
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

    pub fn leave(&mut self, group: Option<&str>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(g) = group
            && let Some(n) = self.in_flight_by_project.get_mut(g)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Remembers a 429 sent to `group`, to spot calls that do not wait for its `Retry-After`.
    pub fn note_rate_limited(&mut self, group: &str, now: Instant, retry_after_secs: u64) {
        let project = self.projects.entry(group.to_owned()).or_default();
        // A scripted `Retry-After` can be anything; beyond the clock's range it never ends.
        let until = now
            .checked_add(Duration::from_secs(retry_after_secs))
            .unwrap_or_else(|| far_future(now));
        project.retry_window = Some((now, until));
    }

    /// Counts a call that arrives inside the last 429's `Retry-After` window.
    pub fn check_retry_after(&mut self, group: &str, now: Instant) {
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
    pub fn take_token(&mut self, group: &str, now: Instant) -> Take {
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
    pub fn rate_headers(&mut self, group: &str, now: Instant) -> Option<RateHeaders> {
        self.touch_bucket(group, now)
            .map(|(scale, bucket)| RateHeaders::of(&scale, bucket))
    }

    /// Counts this call and returns the fault it gets, if any: a script entry first, then chance.
    pub fn fault_for(&mut self, op: FakeOp, group: Option<&str>) -> Option<Fault> {
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
    pub fn purge(&mut self, group: &str, now: Instant) {
        let delete = Duration::from_millis(self.config.delete_ms);
        if let Some(p) = self.projects.get_mut(group) {
            p.conns.retain(|c| {
                c.deleted
                    .is_none_or(|d| now.saturating_duration_since(d) < delete)
            });
        }
    }

    /// Stores a connection; returns its id.
    pub fn commit(&mut self, group: &str, body: Map<String, Value>, now: Instant) -> String {
        let id = self.new_id();
        let key = validate::duplicate_key(&body);
        let fails = self
            .config
            .fail_when_contains
            .as_deref()
            .is_some_and(|needle| Value::Object(body.clone()).to_string().contains(needle));
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
            });
        id
    }

    /// The backend's half of a create: duplicates are judged now, at commit time, not when the
    /// create arrived.
    pub fn commit_create(
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

    /// A live (not being deleted) connection in `group` with the same normalised body.
    pub fn find_duplicate(&self, group: &str, key: &str) -> Option<&Stored> {
        self.projects
            .get(group)?
            .conns
            .iter()
            .find(|c| c.deleted.is_none() && c.key == key)
    }

    /// A connection as a get shows it.
    pub fn view(&self, conn: &Stored, now: Instant) -> Value {
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
                } else if conn.fails {
                    view.insert(
                        "errorMessage".into(),
                        Value::String(
                            "The private endpoint could not be provisioned (fake Atlas: fail_when_contains matched)"
                                .into(),
                        ),
                    );
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
    pub fn snapshot(&mut self, now: Instant) -> Counters {
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

    /// The other client's calls one by one, with no shortcut: what `catch_up` must agree with.
    struct Naive {
        bucket: Bucket,
        calls: u64,
        refused: u64,
    }

    impl Naive {
        fn advance(&mut self, scale: &Scale, per_sec: f64, now: Instant) {
            while let Some(at) = self
                .bucket
                .other_call_at(self.bucket.other_calls + 1, per_sec)
            {
                if at > now {
                    break;
                }
                self.bucket.refill(scale, at);
                if !self.bucket.take(scale) {
                    self.refused += 1;
                }
                self.calls += 1;
                self.bucket.other_calls += 1;
            }
            self.bucket.refill(scale, now);
        }
    }

    #[test]
    fn other_client_replay_matches_a_call_by_call_simulation() {
        let born = Instant::now();
        let cases = [
            // (capacity, refill, period, other per second, our calls per second)
            (10, 1, 3600.0, 20.0, 0.0),
            (1200, 500, 60.0, 3.0, 0.0),
            (1200, 500, 60.0, 3.0, 40.0),
            (1200, 500, 60.0, 25.0, 5.0),
            (5, 2, 1.0, 7.3, 1.1),
            (5, 2, 1.0, 2.0, 0.7),
            (3, 1, 0.7, 0.9, 0.0),
            (0, 1, 1.0, 2.0, 0.0),
            (50, 0, 1.0, 4.0, 0.5),
            (4, 1, 0.0, 9.0, 0.0),
        ];
        for (capacity, refill, period_secs, per_sec, ours) in cases {
            let scale = Scale::of(&BucketConfig {
                capacity,
                refill,
                period_secs,
            });
            let mut fast = Bucket::new(&scale, born);
            let mut naive = Naive {
                bucket: Bucket::new(&scale, born),
                calls: 0,
                refused: 0,
            };
            let mut total = Replayed::default();
            // Look at irregular moments over ten minutes; our own calls take tokens in between.
            let mut t = 0.0;
            while t < 600.0 {
                t += 0.37 + (t * 7.0) % 3.1;
                let now = born + Duration::from_secs_f64(t);
                let r = fast.catch_up(&scale, Some(per_sec), now);
                total.calls += r.calls;
                total.refused += r.refused;
                naive.advance(&scale, per_sec, now);
                let case = format!("{capacity}/{refill}/{period_secs}, {per_sec}/s, at {t}s");
                assert_eq!(total.calls, naive.calls, "{case}");
                assert_eq!(total.refused, naive.refused, "{case}");
                assert_eq!(fast.units, naive.bucket.units, "{case}");
                if ours > 0.0 && (t * ours).fract() < 0.5 {
                    assert_eq!(fast.take(&scale), naive.bucket.take(&scale), "{case}");
                }
            }
            assert!(
                total.calls >= (600.0 * per_sec) as u64,
                "every due call replayed"
            );
        }
    }

    #[test]
    fn a_long_quiet_spell_is_replayed_in_few_steps() {
        let scale = Scale::of(&BucketConfig::default());
        let born = Instant::now();
        let mut bucket = Bucket::new(&scale, born);
        // A week of 1000 calls a second against 500 a minute: almost all refused.
        let week = born + Duration::from_secs(7 * 24 * 3600);
        let started = std::time::Instant::now();
        let r = bucket.catch_up(&scale, Some(1000.0), week);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(r.calls, 7 * 24 * 3600 * 1000);
        let granted = r.calls - r.refused;
        let expected = 1200 + 7 * 24 * 3600 * 500 / 60;
        assert!(granted.abs_diff(expected) <= 2, "{granted} vs {expected}");
        // A slower client than the refill never finds the bucket empty.
        let mut bucket = Bucket::new(&scale, born);
        let r = bucket.catch_up(&scale, Some(5.0), week);
        assert_eq!((r.calls, r.refused), (7 * 24 * 3600 * 5, 0));
        assert_eq!(
            bucket.whole_tokens(&scale),
            1199,
            "its last call was at this very instant"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let scale = Scale::of(&BucketConfig {
            capacity: 1,
            refill: 1,
            period_secs: 55.0,
        });
        let t0 = Instant::now();
        let mut bucket = Bucket::new(&scale, t0);
        assert!(bucket.take(&scale));
        assert!(!bucket.take(&scale));
        assert_eq!(bucket.retry_after_secs(&scale), 55);
        bucket.refill(&scale, t0 + Duration::from_millis(100));
        assert_eq!(bucket.retry_after_secs(&scale), 55);
        bucket.refill(&scale, t0 + Duration::from_secs(54));
        assert_eq!(bucket.retry_after_secs(&scale), 1);
        // An instant older than the last refill changes nothing.
        bucket.refill(&scale, t0);
        assert_eq!(bucket.retry_after_secs(&scale), 1);
    }

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
