//! The raw serde types: the YAML as written, every key defaulted, unknown keys refused.

use super::LogFormat;
use crate::model::AuthKind;
use serde::Deserialize;
use std::path::PathBuf;

/// `rate_limit.reserve` when the config leaves it out: 60 tokens, but never more than a twentieth of
/// the bucket, so a small configured bucket is not mostly reserved (or refused outright).
pub(super) const DEFAULT_RESERVE: u32 = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub(super) atlas: RawAtlas,
    pub(super) manifests: Vec<PathBuf>,
    pub(super) ledger: PathBuf,
    pub(super) leadership: RawLeadership,
    pub(super) reconcile: RawReconcile,
    pub(super) rate_limit: RawRateLimit,
    pub(super) retry: RawRetry,
    pub(super) metrics: RawMetrics,
    pub(super) log: RawLog,
    pub(super) limits: RawLimits,
    pub(super) prune: RawPrune,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            atlas: RawAtlas::default(),
            manifests: vec![PathBuf::from("manifests/")],
            ledger: PathBuf::from("/var/lib/atlas-linkd/ledger.db"),
            leadership: RawLeadership::default(),
            reconcile: RawReconcile::default(),
            rate_limit: RawRateLimit::default(),
            retry: RawRetry::default(),
            metrics: RawMetrics::default(),
            log: RawLog::default(),
            limits: RawLimits::default(),
            prune: RawPrune::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLeadership {
    pub(super) lease_secs: u64,
    pub(super) renew_secs: u64,
}

impl Default for RawLeadership {
    fn default() -> Self {
        RawLeadership {
            lease_secs: 15,
            renew_secs: 5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAtlas {
    pub(super) base_url: String,
    pub(super) auth: AuthKind,
    pub(super) timeout_secs: u64,
}

impl Default for RawAtlas {
    fn default() -> Self {
        RawAtlas {
            base_url: "https://cloud.mongodb.com".into(),
            auth: AuthKind::ServiceAccount,
            timeout_secs: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawReconcile {
    pub(super) resync_interval_secs: u64,
    pub(super) concurrency: usize,
    pub(super) per_project_concurrency: usize,
    /// Defaults to `atlas.timeout_secs`.
    pub(super) settle_secs: Option<u64>,
    pub(super) ready_poll_secs: u64,
    pub(super) debounce_ms: u64,
    pub(super) debounce_max_wait_ms: u64,
}

impl Default for RawReconcile {
    fn default() -> Self {
        RawReconcile {
            resync_interval_secs: 300,
            concurrency: 32,
            per_project_concurrency: 4,
            settle_secs: None,
            ready_poll_secs: 15,
            debounce_ms: 250,
            debounce_max_wait_ms: 2_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRateLimit {
    pub(super) capacity: u32,
    pub(super) refill: u32,
    pub(super) period_secs: u64,
    /// Defaults to `DEFAULT_RESERVE`, at most `capacity / 20`.
    pub(super) reserve: Option<u32>,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        RawRateLimit {
            capacity: 1200,
            refill: 500,
            period_secs: 60,
            reserve: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPrune {
    pub(super) enabled: bool,
    pub(super) grace_secs: u64,
    pub(super) max_per_pass: u64,
}

impl Default for RawPrune {
    fn default() -> Self {
        RawPrune {
            enabled: false,
            grace_secs: 3600,
            max_per_pass: 10,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRetry {
    pub(super) max_attempts: u32,
    pub(super) initial_backoff_ms: u64,
    pub(super) max_backoff_secs: u64,
    pub(super) failure_delay_secs: u64,
    pub(super) max_failure_delay_secs: u64,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            max_attempts: 6,
            initial_backoff_ms: 1000,
            max_backoff_secs: 60,
            failure_delay_secs: 300,
            max_failure_delay_secs: 21600,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMetrics {
    /// An explicit YAML null arrives as `None` and turns the endpoint off.
    pub(super) listen: Option<String>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: Some("127.0.0.1:9464".into()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub(super) format: LogFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub(super) manifest_file_max_bytes: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            manifest_file_max_bytes: crate::manifest::DEFAULT_MANIFEST_FILE_MAX_BYTES,
        }
    }
}
