//! The fake's memory: connections per project, token buckets, issued tokens and nonces, fault
//! bookkeeping and the counters tests read. Guarded by one mutex that is never held across an await.

use super::config::{BucketConfig, FakeConfig, FakeOp, Fault, Faults, ScriptedFault};
use super::validate;
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

pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(cfg: &BucketConfig, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(cfg.capacity),
            last: now,
        }
    }

    fn refill(&mut self, cfg: &BucketConfig, now: Instant) {
        let rate = rate_per_sec(cfg);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(cfg.capacity));
        self.last = now;
    }
}

fn rate_per_sec(cfg: &BucketConfig) -> f64 {
    if cfg.period_secs > 0.0 {
        f64::from(cfg.refill) / cfg.period_secs
    } else {
        f64::INFINITY
    }
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
}

/// What the bucket said.
pub(crate) enum Take {
    Ok,
    Empty { retry_after_secs: u64 },
}

/// Current `RateLimit-Limit` and `RateLimit-Remaining` of a project.
pub(crate) struct RateHeaders {
    pub limit: u32,
    pub remaining: u64,
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
        project.retry_window = Some((now, now + Duration::from_secs(retry_after_secs)));
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

    pub fn take_token(&mut self, group: &str, now: Instant) -> Take {
        let Some(cfg) = self.config.bucket else {
            return Take::Ok;
        };
        let project = self.projects.entry(group.to_owned()).or_default();
        let bucket = project.bucket.get_or_insert_with(|| Bucket::new(&cfg, now));
        bucket.refill(&cfg, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Take::Ok
        } else {
            let rate = rate_per_sec(&cfg);
            let wait = if rate > 0.0 {
                ((1.0 - bucket.tokens) / rate).ceil()
            } else {
                f64::from(u32::MAX)
            };
            Take::Empty {
                retry_after_secs: (wait as u64).max(1),
            }
        }
    }

    pub fn rate_headers(&mut self, group: &str, now: Instant) -> Option<RateHeaders> {
        let cfg = self.config.bucket?;
        let project = self.projects.entry(group.to_owned()).or_default();
        let bucket = project.bucket.get_or_insert_with(|| Bucket::new(&cfg, now));
        bucket.refill(&cfg, now);
        Some(RateHeaders {
            limit: cfg.capacity,
            remaining: bucket.tokens.max(0.0).floor() as u64,
        })
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
        let total = f.p_429 + f.p_500 + f.p_503 + f.p_drop_before + f.p_drop_after + f.p_slow;
        if total <= 0.0 {
            return None;
        }
        let (p_429, p_500, p_503, p_db, p_da, p_slow) = (
            f.p_429,
            f.p_500,
            f.p_503,
            f.p_drop_before,
            f.p_drop_after,
            f.p_slow,
        );
        let (retry_after_secs, slow_ms) = (f.retry_after_secs, f.slow_ms);
        let mut u = self.fault_rng.next_f64();
        let choices = [
            (p_429, Fault::RateLimited { retry_after_secs }),
            (p_500, Fault::ServerError),
            (p_503, Fault::Unavailable),
            (p_db, Fault::DropBeforeCommit),
            (p_da, Fault::DropAfterCommit),
            (p_slow, Fault::Slow { ms: slow_ms }),
        ];
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
            None if validate::awaits_domain(&conn.body) => "IDLE",
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
                    "DONE"
                }
            }
        };
        view.insert("state".into(), Value::String(state.into()));
        Value::Object(view)
    }

    pub fn snapshot(&self) -> Counters {
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
