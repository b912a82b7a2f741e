//! The config file: the validated `Config`, the raw serde types and their defaults, and the checks between them.
//!
//! `Raw*` types mirror the YAML (every key defaulted, unknown keys refused); `Config::from_yaml`
//! turns them into the validated `Config`, resolving relative paths against the config file's
//! folder and applying the environment overrides. Every problem of a file is reported at once:
//! unknown keys, values of the wrong type and values out of range alike. Credentials never live here.

mod check;
mod error;
pub mod ranges;
mod raw;
mod read;
mod reload;
mod types;

pub use error::ConfigError;
pub use reload::{RELOADED_KEYS, RESTART_ONLY_KEYS, Reloaded};
pub(crate) use types::{
    AtlasSettings, LimitSettings, LogSettings, MetricsSettings, PruneConfig, RateLimitSettings,
    ReconcileSettings, RetrySettings,
};
pub use types::{Config, LeadershipSettings, LogFormat};

/// Where the config is read from when `--config` is not given and `$ATLAS_LINKD_CONFIG` is unset.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/atlas-linkd/config.yaml";
/// The environment variable naming the config file.
pub(crate) const CONFIG_ENV: &str = "ATLAS_LINKD_CONFIG";
/// The environment variable that overrides `atlas.base_url` (the name MongoDB's own tools use).
pub(crate) const BASE_URL_ENV: &str = "MONGODB_ATLAS_BASE_URL";

// `reconcile.settle_secs` defaults to `atlas.timeout_secs`: any valid timeout must be a valid settle.
const _: () = assert!(
    *ranges::TIMEOUT_SECS.start() >= *ranges::SETTLE_SECS.start()
        && *ranges::TIMEOUT_SECS.end() <= *ranges::SETTLE_SECS.end()
);
