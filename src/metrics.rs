//! Every Prometheus metric atlas-linkd exports: names, help texts, labels, and the text exposition.
//!
//! Metric names are part of the contract (DESIGN.md); they are spelled here and nowhere else.
//! Label values are bounded: operations, outcomes, statuses and states are small fixed sets,
//! never link names; `unmanaged_links` and `duplicate_connections` alone are labelled by project
//! (a group id), so their series are bounded by the managed projects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::atlas::Operation;
use crate::lock::LockExt;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The prefix of every metric of ours.
pub(crate) const NAMESPACE: &str = "atlas_linkd";

/// Outcomes of `atlas_linkd_creates_total`.
pub mod outcome {
    pub const SUCCESS: &str = "success";
    pub const CONFLICT: &str = "conflict";
    pub const FAILURE: &str = "failure";
}

/// Outcomes of `atlas_linkd_updates_total` (in-place `dnsDomain` updates).
pub mod update_outcome {
    /// Atlas took the PATCH and the ledger records the declared spec.
    pub const UPDATED: &str = "updated";
    /// Only `dnsDomain` differs, but the listing shows the connection in a state in which Atlas
    /// refuses the PATCH (past `IDLE`, with a domain): reported `changed`, nothing sent.
    pub const REFUSED: &str = "refused";
    /// The PATCH was sent and failed (given up for this pass).
    pub const FAILED: &str = "failed";
    pub const ALL: [&str; 3] = [UPDATED, REFUSED, FAILED];
}

/// Outcomes of `atlas_linkd_deletes_total` (guarded prune).
pub mod delete_outcome {
    /// Atlas accepted the delete (202).
    pub const DELETED: &str = "deleted";
    /// Atlas answered 404: the connection was gone already; its record is dropped.
    pub const GONE: &str = "gone";
    /// 400 `STREAM_PRIVATE_LINK_IN_USE`: a stream connection still uses it; tried again later.
    pub const IN_USE: &str = "in_use";
    /// Any other failure; tried again after the failure delay.
    pub const FAILED: &str = "failed";
    pub const ALL: [&str; 4] = [DELETED, GONE, IN_USE, FAILED];
}

/// Reasons of `atlas_linkd_api_retries_total`: every value the executor emits, and no other.
pub(crate) mod retry_reason {
    /// A 429: the project is paused until `Retry-After`, then the call is sent again.
    pub(crate) const RATE_LIMITED: &str = "rate_limited";
    /// A 5xx on a call that changes nothing (a listing), sent again after a backoff.
    pub(crate) const SERVER_ERROR: &str = "server_error";
    /// No HTTP answer at all (connection refused or reset, a timeout), sent again after a backoff.
    pub(crate) const CONNECTION: &str = "connection";
    /// A create that may have reached Atlas without an answer: decided by a listing after its settle
    /// window, and sent again only if that listing shows nothing.
    pub(crate) const AMBIGUOUS: &str = "ambiguous";
    /// Another answer that `decide` retries (a 409 on a listing page).
    pub(crate) const OTHER: &str = "other";
}

/// Statuses of `atlas_linkd_links`.
pub mod link_status {
    pub(crate) const DESIRED: &str = "desired";
    pub(crate) const CONVERGED: &str = "converged";
    pub(crate) const PENDING: &str = "pending";
    pub(crate) const FAILED: &str = "failed";
    pub(crate) const CHANGED: &str = "changed";
    pub(crate) const ORPHANED: &str = "orphaned";
    /// Declared links that a near-match in Atlas keeps from being created or adopted.
    pub(crate) const CONFLICT: &str = "conflict";
    pub const ALL: [&str; 7] = [
        DESIRED, CONVERGED, PENDING, FAILED, CHANGED, ORPHANED, CONFLICT,
    ];
}

/// Results of `atlas_linkd_reconcile_passes_total`.
pub mod pass_result {
    /// Every declared link converged.
    pub(crate) const CONVERGED: &str = "converged";
    /// The pass ran; some links did not converge.
    pub(crate) const PARTIAL: &str = "partial";
    /// The pass could not run (manifests unreadable, ledger error).
    pub(crate) const ERROR: &str = "error";
    pub const ALL: [&str; 3] = [CONVERGED, PARTIAL, ERROR];
}

/// Every metric, registered in one private registry (plus the process collector on Linux).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub creates_total: IntCounterVec,
    pub adoptions_total: IntCounter,
    pub updates_total: IntCounterVec,
    pub deletes_total: IntCounterVec,
    /// Per project (`project` = group id): bounded by the managed projects.
    pub unmanaged_links: IntGaugeVec,
    /// Per project, as `unmanaged_links`.
    pub duplicate_connections: IntGaugeVec,
    /// The projects `unmanaged_links` and `duplicate_connections` have series for, so that a
    /// project no longer managed loses its.
    unmanaged_projects: Arc<Mutex<BTreeSet<String>>>,
    pub api_requests_total: IntCounterVec,
    pub api_request_duration_seconds: HistogramVec,
    pub api_retries_total: IntCounterVec,
    pub rate_limited_total: IntCounter,
    pub links: IntGaugeVec,
    pub(crate) remote_links: IntGaugeVec,
    pub reconcile_passes_total: IntCounterVec,
    pub reconcile_duration_seconds: Histogram,
    pub last_converged_timestamp_seconds: Gauge,
    pub manifest_errors: IntGauge,
    /// 1 on the process that may create (the lease holder of a shared ledger; always, on SQLite).
    pub leader: IntGauge,
    pub leader_transitions_total: IntCounter,
    /// By `store` (`sqlite`, `postgres`): passes, polls and writes the ledger failed.
    pub ledger_errors_total: IntCounterVec,
    paused_projects: IntGauge,
    conditions: Arc<Conditions>,
}

/// Live conditions that both the metrics and `/readyz` show: the projects a 429 paused, and whether
/// Atlas refuses our credentials. Shared by every clone of `Metrics`, which is how the executor (which
/// sees them) reaches the endpoint (which shows them).
#[derive(Debug, Default)]
struct Conditions {
    /// By groupId, so it holds at most one entry per project; expired pauses are dropped when read.
    pauses: Mutex<BTreeMap<String, Pause>>,
    auth_refused: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Pause {
    until: tokio::time::Instant,
    until_unix: i64,
}

/// A project whose calls wait for the end of a pause that a 429's `Retry-After` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedProject {
    pub group_id: String,
    /// When the pause ends, in unix seconds.
    pub until_unix: i64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

impl Metrics {
    pub fn new() -> Metrics {
        // Every name below is a constant and every label set is fixed, so construction and registration
        // can only fail on a programming error (a duplicate name), which the unit tests catch.
        Self::try_new().expect("metric definitions are valid")
    }

    fn try_new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let creates_total = IntCounterVec::new(
            opts(
                "creates_total",
                "Create calls by final outcome: success (200), conflict (409), failure (given up).",
            ),
            &["outcome"],
        )?;
        let updates_total = IntCounterVec::new(
            opts(
                "updates_total",
                "In-place dnsDomain updates by outcome: updated (PATCH taken and recorded), refused (the connection is past IDLE with a domain; reported changed, nothing sent), failed (PATCH given up for the pass).",
            ),
            &["outcome"],
        )?;
        let adoptions_total = IntCounter::with_opts(opts(
            "adoptions_total",
            "Declared links found already present in Atlas and recorded without a create.",
        ))?;
        let deletes_total = IntCounterVec::new(
            opts(
                "deletes_total",
                "Deletes by guarded prune, by outcome: deleted (202), gone (404), in_use (STREAM_PRIVATE_LINK_IN_USE), failed.",
            ),
            &["outcome"],
        )?;
        let unmanaged_links = IntGaugeVec::new(
            opts(
                "unmanaged_links",
                "Connections listed in a managed project that no manifest declares and the ledger does not hold, by project (as of its last complete listing). Never deleted.",
            ),
            &["project"],
        )?;
        let duplicate_connections = IntGaugeVec::new(
            opts(
                "duplicate_connections",
                "Connections listed in a managed project that are exact copies of a declared link whose record already holds another connection, by project (as of its last complete listing). Billed; never deleted by atlas-linkd.",
            ),
            &["project"],
        )?;
        let api_requests_total = IntCounterVec::new(
            opts(
                "api_requests_total",
                "Atlas API requests by operation and HTTP status (or error kind when no status came back).",
            ),
            &["operation", "status"],
        )?;
        let api_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "api_request_duration_seconds",
                "Atlas API request latency by operation.",
            )
            .namespace(NAMESPACE)
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["operation"],
        )?;
        let api_retries_total = IntCounterVec::new(
            opts(
                "api_retries_total",
                "Atlas API calls retried, by reason (rate_limited, server_error, connection, ambiguous, other).",
            ),
            &["reason"],
        )?;
        let rate_limited_total = IntCounter::with_opts(opts(
            "rate_limited_total",
            "429 answers received from Atlas.",
        ))?;
        let links = IntGaugeVec::new(
            opts(
                "links",
                "Declared and recorded links by status after the last pass.",
            ),
            &["status"],
        )?;
        let remote_links = IntGaugeVec::new(
            opts(
                "remote_links",
                "Managed connections by the state Atlas last reported.",
            ),
            &["state"],
        )?;
        let reconcile_passes_total = IntCounterVec::new(
            opts(
                "reconcile_passes_total",
                "Reconcile passes by result: converged, partial, error.",
            ),
            &["result"],
        )?;
        let reconcile_duration_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "reconcile_duration_seconds",
                "Wall time of reconcile passes.",
            )
            .namespace(NAMESPACE)
            .buckets(vec![
                0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
        )?;
        let last_converged_timestamp_seconds = Gauge::with_opts(opts(
            "last_converged_timestamp_seconds",
            "Unix time at the end of the last pass in which every declared link converged.",
        ))?;
        let manifest_errors = IntGauge::with_opts(opts(
            "manifest_errors",
            "Manifest files that are currently invalid (their last good version stays in force).",
        ))?;
        let leader = IntGauge::with_opts(opts(
            "leader",
            "1 while this process is the active one (it holds the lease of a shared PostgreSQL ledger; always on SQLite), 0 on a standby.",
        ))?;
        let leader_transitions_total = IntCounter::with_opts(opts(
            "leader_transitions_total",
            "Times this process became active or stopped being active on a shared ledger.",
        ))?;
        let ledger_errors_total = IntCounterVec::new(
            opts(
                "ledger_errors_total",
                "Ledger operations (a pass's reads and writes, a readiness poll's) that failed, by store.",
            ),
            &["store"],
        )?;
        let paused_projects = IntGauge::with_opts(opts(
            "paused_projects",
            "Projects whose calls are paused because Atlas answered 429 (until its Retry-After, capped at retry.max_backoff_secs); /readyz names them.",
        ))?;
        let build_info = IntGaugeVec::new(
            opts("build_info", "Always 1; the version label names the build."),
            &["version"],
        )?;

        registry.register(Box::new(creates_total.clone()))?;
        registry.register(Box::new(adoptions_total.clone()))?;
        registry.register(Box::new(updates_total.clone()))?;
        registry.register(Box::new(deletes_total.clone()))?;
        registry.register(Box::new(unmanaged_links.clone()))?;
        registry.register(Box::new(duplicate_connections.clone()))?;
        registry.register(Box::new(api_requests_total.clone()))?;
        registry.register(Box::new(api_request_duration_seconds.clone()))?;
        registry.register(Box::new(api_retries_total.clone()))?;
        registry.register(Box::new(rate_limited_total.clone()))?;
        registry.register(Box::new(links.clone()))?;
        registry.register(Box::new(remote_links.clone()))?;
        registry.register(Box::new(reconcile_passes_total.clone()))?;
        registry.register(Box::new(reconcile_duration_seconds.clone()))?;
        registry.register(Box::new(last_converged_timestamp_seconds.clone()))?;
        registry.register(Box::new(manifest_errors.clone()))?;
        registry.register(Box::new(paused_projects.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(leader_transitions_total.clone()))?;
        registry.register(Box::new(ledger_errors_total.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        // Series that exist from the start, so dashboards and `rate()` see zeros rather than gaps.
        for o in [outcome::SUCCESS, outcome::CONFLICT, outcome::FAILURE] {
            creates_total.with_label_values(&[o]);
        }
        for o in update_outcome::ALL {
            updates_total.with_label_values(&[o]);
        }
        for o in delete_outcome::ALL {
            deletes_total.with_label_values(&[o]);
        }
        for s in link_status::ALL {
            links.with_label_values(&[s]).set(0);
        }
        for r in pass_result::ALL {
            reconcile_passes_total.with_label_values(&[r]);
        }
        for store in ["sqlite", "postgres"] {
            ledger_errors_total.with_label_values(&[store]);
        }
        // Registered and set once; nothing updates it, so the struct need not keep it.
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        Ok(Metrics {
            registry,
            creates_total,
            adoptions_total,
            updates_total,
            deletes_total,
            unmanaged_links,
            duplicate_connections,
            unmanaged_projects: Arc::default(),
            api_requests_total,
            api_request_duration_seconds,
            api_retries_total,
            rate_limited_total,
            links,
            remote_links,
            reconcile_passes_total,
            reconcile_duration_seconds,
            last_converged_timestamp_seconds,
            manifest_errors,
            leader,
            leader_transitions_total,
            ledger_errors_total,
            paused_projects,
            conditions: Arc::new(Conditions::default()),
        })
    }

    /// Records that `group_id`'s calls are paused until `until` (`until_unix` in unix seconds). True
    /// when this starts a pause or makes it longer, false when a pause already covers it (concurrent
    /// 429s of one project), so the caller logs each pause once.
    pub fn note_pause(&self, group_id: &str, until: tokio::time::Instant, until_unix: i64) -> bool {
        let now = tokio::time::Instant::now();
        let mut pauses = self.conditions.pauses.lock_or_recover();
        pauses.retain(|_, p| p.until > now);
        let longer = pauses.get(group_id).is_none_or(|p| p.until < until);
        if longer {
            pauses.insert(group_id.to_owned(), Pause { until, until_unix });
        }
        self.paused_projects
            .set(i64::try_from(pauses.len()).unwrap_or(i64::MAX));
        longer
    }

    /// The projects paused now, by groupId; also brings `atlas_linkd_paused_projects` up to date, since
    /// pauses end by themselves, with nothing to tell the gauge.
    pub fn paused_projects(&self) -> Vec<PausedProject> {
        let now = tokio::time::Instant::now();
        let mut pauses = self.conditions.pauses.lock_or_recover();
        pauses.retain(|_, p| p.until > now);
        self.paused_projects
            .set(i64::try_from(pauses.len()).unwrap_or(i64::MAX));
        pauses
            .iter()
            .map(|(g, p)| PausedProject {
                group_id: g.clone(),
                until_unix: p.until_unix,
            })
            .collect()
    }

    /// Follows Atlas's answers to tell whether it refuses our credentials: a 401 (to a token request, or
    /// to a call after the one token refresh) says so, and only an API call that succeeds says otherwise.
    /// A token granted is not enough: Atlas may still refuse the calls made with it. A 403 is not a
    /// refusal of the credentials (they were accepted, and lack a role in one project) and a revoke at
    /// shutdown proves nothing either way.
    pub fn observe_answer(&self, op: Operation, status: &str) {
        match (op, status) {
            (Operation::Revoke, _) => {}
            (_, "401") => self.conditions.auth_refused.store(true, Ordering::Relaxed),
            (
                Operation::List
                | Operation::Get
                | Operation::Create
                | Operation::Update
                | Operation::Delete,
                s,
            ) if s.starts_with('2') => {
                self.conditions.auth_refused.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Whether Atlas's last word on our credentials was a refusal (see [`Metrics::observe_answer`]).
    pub fn auth_refused(&self) -> bool {
        self.conditions.auth_refused.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        // Drops the pauses that ended since the last look, so the gauge is current.
        let _ = self.paused_projects();
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on metric families that violate the text format, which ours cannot.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf)
            .expect("the text format is UTF-8: names and label values are Rust strings")
    }

    /// Sets `atlas_linkd_unmanaged_links{project}` from a complete listing of `project`.
    pub(crate) fn set_unmanaged(&self, project: &str, n: usize) {
        self.set_per_project(&self.unmanaged_links, project, n);
    }

    /// Sets `atlas_linkd_duplicate_connections{project}` from a complete listing of `project`.
    pub(crate) fn set_duplicates(&self, project: &str, n: usize) {
        self.set_per_project(&self.duplicate_connections, project, n);
    }

    /// One of the gauges labelled by project, whose series `retain_unmanaged` drops with it.
    fn set_per_project(&self, gauge: &IntGaugeVec, project: &str, n: usize) {
        self.unmanaged_projects
            .lock_or_recover()
            .insert(project.to_owned());
        gauge
            .with_label_values(&[project])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Drops the `atlas_linkd_unmanaged_links` and `atlas_linkd_duplicate_connections` series of
    /// projects that `managed` no longer holds.
    pub(crate) fn retain_unmanaged(&self, managed: impl Fn(&str) -> bool) {
        self.unmanaged_projects.lock_or_recover().retain(|p| {
            let keep = managed(p);
            if !keep {
                let _ = self.unmanaged_links.remove_label_values(&[p]);
                let _ = self.duplicate_connections.remove_label_values(&[p]);
            }
            keep
        });
    }

    /// Sets `atlas_linkd_remote_links{state}` from a full count, clearing states no longer seen.
    pub fn set_remote_states<'a>(&self, counts: impl IntoIterator<Item = (&'a str, i64)>) {
        self.remote_links.reset();
        for (state, n) in counts {
            self.remote_links.with_label_values(&[state]).set(n);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmanaged_series_go_with_their_project() {
        let m = Metrics::new();
        m.set_unmanaged("aaaaaaaaaaaaaaaaaaaaaaaa", 1);
        m.set_duplicates("aaaaaaaaaaaaaaaaaaaaaaaa", 2);
        m.set_unmanaged("bbbbbbbbbbbbbbbbbbbbbbbb", 3);
        m.retain_unmanaged(|p| p.starts_with('b'));
        let text = m.render();
        assert!(!text.contains("aaaaaaaaaaaaaaaaaaaaaaaa"), "{text}");
        assert!(
            text.contains(r#"atlas_linkd_unmanaged_links{project="bbbbbbbbbbbbbbbbbbbbbbbb"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"atlas_linkd_deletes_total{outcome="in_use"} 0"#));
    }

    #[test]
    fn every_contract_metric_is_exposed() {
        let m = Metrics::new();
        m.adoptions_total.inc();
        m.api_requests_total
            .with_label_values(&["create", "200"])
            .inc();
        m.api_request_duration_seconds
            .with_label_values(&["create"])
            .observe(0.02);
        m.api_retries_total
            .with_label_values(&[retry_reason::CONNECTION])
            .inc();
        m.remote_links.with_label_values(&["DONE"]).set(1);
        m.set_unmanaged("32b6e34b3d91647abb20e7b8", 2);
        m.set_duplicates("32b6e34b3d91647abb20e7b8", 1);
        m.reconcile_duration_seconds.observe(1.0);
        let text = m.render();
        for name in [
            "atlas_linkd_creates_total",
            "atlas_linkd_deletes_total",
            "atlas_linkd_unmanaged_links",
            "atlas_linkd_duplicate_connections",
            "atlas_linkd_adoptions_total",
            "atlas_linkd_updates_total",
            "atlas_linkd_api_requests_total",
            "atlas_linkd_api_request_duration_seconds",
            "atlas_linkd_api_retries_total",
            "atlas_linkd_rate_limited_total",
            "atlas_linkd_links",
            "atlas_linkd_remote_links",
            "atlas_linkd_reconcile_passes_total",
            "atlas_linkd_reconcile_duration_seconds",
            "atlas_linkd_last_converged_timestamp_seconds",
            "atlas_linkd_manifest_errors",
            "atlas_linkd_paused_projects",
            "atlas_linkd_leader",
            "atlas_linkd_leader_transitions_total",
            "atlas_linkd_ledger_errors_total",
            "atlas_linkd_build_info",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from:\n{text}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_counts_until_it_ends_and_only_a_longer_one_is_new() {
        let m = Metrics::new();
        let now = tokio::time::Instant::now();
        let soon = now + std::time::Duration::from_secs(10);
        assert!(m.note_pause("g1", soon, 1_000));
        assert!(!m.note_pause("g1", soon, 1_000), "the same pause again");
        assert!(m.note_pause("g1", soon + std::time::Duration::from_secs(5), 1_005));
        assert!(m.note_pause("g2", soon, 1_000));
        assert!(m.render().contains("atlas_linkd_paused_projects 2\n"));
        assert_eq!(
            m.paused_projects(),
            vec![
                PausedProject {
                    group_id: "g1".into(),
                    until_unix: 1_005
                },
                PausedProject {
                    group_id: "g2".into(),
                    until_unix: 1_000
                }
            ]
        );
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        assert_eq!(m.paused_projects().len(), 1);
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        assert!(m.paused_projects().is_empty());
        assert!(m.render().contains("atlas_linkd_paused_projects 0\n"));
    }

    #[test]
    fn a_401_marks_the_credentials_refused_until_an_api_call_succeeds() {
        let m = Metrics::new();
        assert!(!m.auth_refused());
        m.observe_answer(Operation::Token, "401");
        assert!(m.auth_refused());
        m.observe_answer(Operation::Token, "200");
        assert!(m.auth_refused(), "a token is not enough");
        m.observe_answer(Operation::List, "403");
        m.observe_answer(Operation::Revoke, "200");
        assert!(m.auth_refused());
        m.observe_answer(Operation::List, "200");
        assert!(!m.auth_refused());
        m.observe_answer(Operation::Create, "401");
        assert!(m.auth_refused());
        m.observe_answer(Operation::Create, "202");
        assert!(!m.auth_refused());
    }
}
