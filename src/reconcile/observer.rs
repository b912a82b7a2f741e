//! The client's observer hook: every HTTP exchange with Atlas becomes metrics, and counts a pass can
//! report as its own share.

use crate::atlas::{Observer, Operation};
use crate::metrics::Metrics;
use crate::model::GroupId;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts of API calls, so a pass can report its own share. Fed by the client's observer hook.
#[derive(Debug, Default)]
pub(crate) struct CallCounters {
    pub(super) requests: AtomicU64,
    pub(super) rate_limited: AtomicU64,
}

/// The client's observer: every HTTP exchange becomes metrics and counts.
pub(crate) struct MetricsObserver {
    metrics: Metrics,
    counters: Arc<CallCounters>,
}

impl MetricsObserver {
    pub(crate) fn new(metrics: Metrics) -> (Arc<MetricsObserver>, Arc<CallCounters>) {
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
        self.metrics.observe_answer(op, status);
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if status == "429" {
            self.metrics.rate_limited_total.inc();
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }
}
