//! Every Prometheus metric atlas-linkd exports: names, help texts, labels, and the text exposition.
//!
//! Metric names are part of the contract (DESIGN.md); they are spelled here and nowhere else.
//! Label values are bounded: operations, outcomes, statuses and states are small fixed sets,
//! never link names.

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
        let adoptions_total = IntCounter::with_opts(opts(
            "adoptions_total",
            "Declared links found already present in Atlas and recorded without a create.",
        ))?;
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
        let build_info = IntGaugeVec::new(
            opts("build_info", "Always 1; the version label names the build."),
            &["version"],
        )?;

        registry.register(Box::new(creates_total.clone()))?;
        registry.register(Box::new(adoptions_total.clone()))?;
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
        registry.register(Box::new(build_info.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        // Series that exist from the start, so dashboards and `rate()` see zeros rather than gaps.
        for o in [outcome::SUCCESS, outcome::CONFLICT, outcome::FAILURE] {
            creates_total.with_label_values(&[o]);
        }
        for s in link_status::ALL {
            links.with_label_values(&[s]).set(0);
        }
        for r in pass_result::ALL {
            reconcile_passes_total.with_label_values(&[r]);
        }
        // Registered and set once; nothing updates it, so the struct need not keep it.
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        Ok(Metrics {
            registry,
            creates_total,
            adoptions_total,
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
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on metric families that violate the text format, which ours cannot.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf)
            .expect("the text format is UTF-8: names and label values are Rust strings")
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
        m.reconcile_duration_seconds.observe(1.0);
        let text = m.render();
        for name in [
            "atlas_linkd_creates_total",
            "atlas_linkd_adoptions_total",
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
            "atlas_linkd_build_info",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from:\n{text}"
            );
        }
    }
}
