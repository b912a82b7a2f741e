//! The validated configuration and its sections, as the rest of the daemon reads them.

use crate::ledger::LedgerLocation;
use crate::model::AuthKind;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The config file it came from.
    pub source: PathBuf,
    pub atlas: AtlasSettings,
    /// Manifest files and directories, resolved against the config file's folder.
    pub manifests: Vec<PathBuf>,
    /// The ledger: a SQLite file (resolved likewise), or a PostgreSQL database.
    pub ledger: LedgerLocation,
    /// `leadership.*`: the lease of a shared (PostgreSQL) ledger.
    pub leadership: LeadershipSettings,
    pub reconcile: ReconcileSettings,
    pub rate_limit: RateLimitSettings,
    pub retry: RetrySettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub limits: LimitSettings,
    pub prune: PruneConfig,
}

/// `leadership.*`: which one of the processes sharing a PostgreSQL ledger is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeadershipSettings {
    /// A lease not renewed for this long may be taken by a standby.
    pub lease_secs: u64,
    /// The active process renews its lease this often.
    pub renew_secs: u64,
}

impl LeadershipSettings {
    pub fn lease(&self) -> crate::ledger::LeaseSettings {
        crate::ledger::LeaseSettings {
            lease: std::time::Duration::from_secs(self.lease_secs),
            renew: std::time::Duration::from_secs(self.renew_secs),
        }
    }
}

/// `prune.*`: guarded prune of links atlas-linkd created or adopted and no manifest declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneConfig {
    /// Off by default: nothing is ever deleted unless this is set.
    pub enabled: bool,
    /// A link must have been undeclared this long before it is deleted.
    pub grace_secs: u64,
    /// Deletes per pass, all projects together.
    pub max_per_pass: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtlasSettings {
    pub base_url: reqwest::Url,
    pub auth: AuthKind,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    pub resync_interval_secs: u64,
    pub concurrency: usize,
    pub per_project_concurrency: usize,
    /// A create sent without an answer is in flight at Atlas this long after it was sent: only a
    /// listing that starts later may decide whether it was committed.
    pub settle_secs: u64,
    /// `--once --wait` lists each project whose declared links are not `DONE` yet this often.
    pub ready_poll_secs: u64,
    /// Daemon: how long the manifests must be quiet before a change starts a pass, and how long a
    /// changed file must keep the same content (read twice, this far apart) before it is used.
    pub debounce_ms: u64,
    /// Daemon: the longest a burst of changes may hold back its pass, counted from its first change,
    /// so that continuous writes cannot starve passes. At least `debounce_ms`.
    pub debounce_max_wait_ms: u64,
}

/// Per project; mirrors Atlas's "Streams" token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub capacity: u32,
    pub refill: u32,
    pub period_secs: u64,
    /// Tokens of the project's bucket left to other tools: our calls wait for refill rather than take them.
    /// Below `capacity`. Default: 60, or `capacity / 20` when that is less.
    pub reserve: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_secs: u64,
    /// A link whose create failed waits this long before a later pass tries it again, doubling with
    /// each further failure, so a bad link cannot eat the project's rate budget.
    pub failure_delay_secs: u64,
    pub max_failure_delay_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `None` turns the endpoint off.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// What the daemon accepts from the files it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// A manifest file larger than this is refused, unread.
    pub manifest_file_max_bytes: u64,
}

/// `log.format`: `auto` is human-readable on a terminal and JSON otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Auto,
    Text,
    Json,
}
