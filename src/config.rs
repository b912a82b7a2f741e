//! The config file: raw serde types, defaults, and the validated `Config`.
//!
//! `Raw*` types mirror the YAML (every key defaulted, unknown keys refused); `Config::from_yaml`
//! turns them into the validated `Config`, resolving relative paths against the config file's
//! folder and applying the environment overrides. Credentials never live here.

pub use crate::model::AuthKind;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where the config is read from when `--config` is not given and `$ATLAS_LINKD_CONFIG` is unset.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/atlas-linkd/config.yaml";
/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "ATLAS_LINKD_CONFIG";
/// The environment variable that overrides `atlas.base_url` (the name MongoDB's own tools use).
pub const BASE_URL_ENV: &str = "MONGODB_ATLAS_BASE_URL";

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The config file it came from.
    pub source: PathBuf,
    pub atlas: AtlasSettings,
    /// Manifest files and directories, resolved against the config file's folder.
    pub manifests: Vec<PathBuf>,
    /// The SQLite ledger, resolved likewise.
    pub ledger: PathBuf,
    pub reconcile: ReconcileSettings,
    pub rate_limit: RateLimitSettings,
    pub retry: RetrySettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
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
}

/// Per project; mirrors Atlas's "Streams" token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub capacity: u32,
    pub refill: u32,
    pub period_secs: u64,
    /// Tokens of the project's bucket left to other tools: our calls wait for refill rather than take them.
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

/// `log.format`: `auto` is human-readable on a terminal and JSON otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Auto,
    Text,
    Json,
}

// ---------------------------------------------------------------------------------------------
// Raw serde types

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    atlas: RawAtlas,
    manifests: Vec<PathBuf>,
    ledger: PathBuf,
    reconcile: RawReconcile,
    rate_limit: RawRateLimit,
    retry: RawRetry,
    metrics: RawMetrics,
    log: RawLog,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            atlas: RawAtlas::default(),
            manifests: vec![PathBuf::from("manifests/")],
            ledger: PathBuf::from("/var/lib/atlas-linkd/ledger.db"),
            reconcile: RawReconcile::default(),
            rate_limit: RawRateLimit::default(),
            retry: RawRetry::default(),
            metrics: RawMetrics::default(),
            log: RawLog::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAtlas {
    base_url: String,
    auth: AuthKind,
    timeout_secs: u64,
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
struct RawReconcile {
    resync_interval_secs: u64,
    concurrency: usize,
    per_project_concurrency: usize,
    /// Defaults to `atlas.timeout_secs`.
    settle_secs: Option<u64>,
}

impl Default for RawReconcile {
    fn default() -> Self {
        RawReconcile {
            resync_interval_secs: 300,
            concurrency: 32,
            per_project_concurrency: 4,
            settle_secs: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRateLimit {
    capacity: u32,
    refill: u32,
    period_secs: u64,
    reserve: u32,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        RawRateLimit {
            capacity: 1200,
            refill: 500,
            period_secs: 60,
            reserve: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetry {
    max_attempts: u32,
    initial_backoff_ms: u64,
    max_backoff_secs: u64,
    failure_delay_secs: u64,
    max_failure_delay_secs: u64,
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
struct RawMetrics {
    /// An explicit YAML null arrives as `None` and turns the endpoint off.
    listen: Option<String>,
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
struct RawLog {
    format: LogFormat,
}

// ---------------------------------------------------------------------------------------------
// Errors

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// What is wrong with the config. Every message names the file and the key and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {}: {source}; pass --config FILE or set ATLAS_LINKD_CONFIG",
        path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}{}: unknown key `{key}`{}; remove it or check the documented config (config/config.yaml)",
        path.display(), at(*line, *column), suggestion_text(suggestion)
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        suggestion: Option<String>,
        line: Option<usize>,
        column: Option<usize>,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{}{}: {message}", path.display(), at(*line, *column))]
    Yaml {
        path: PathBuf,
        message: String,
        line: Option<usize>,
        column: Option<usize>,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{}: `{key}` {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a suggestion.
fn unknown_key(message: &str) -> Option<(String, Option<String>)> {
    let start = message.find("unknown field `")? + "unknown field `".len();
    let rest = &message[start..];
    let end = rest.find('`')?;
    let key = rest[..end].to_owned();
    let expected: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
    let lower = key.to_ascii_lowercase();
    let suggestion = expected
        .iter()
        .map(|k| {
            (
                strsim::normalized_damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_owned());
    Some((key, suggestion))
}

fn invalid(path: &Path, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        key: key.to_owned(),
        message: message.into(),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn positive(path: &Path, key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(invalid(
            path,
            key,
            "must be at least 1; set a positive number",
        ))
    } else {
        Ok(())
    }
}

impl Config {
    /// `$ATLAS_LINKD_CONFIG` if set, else `/etc/atlas-linkd/config.yaml`. (`--config` wins over both;
    /// the command line applies it.)
    pub fn default_path(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
        env(CONFIG_ENV)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text, path, env)
    }

    pub fn from_yaml(
        text: &str,
        source: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        // An empty file is a config of defaults; serde_yaml would call it a missing value.
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let loc = e.location();
                let (line, column) = (
                    loc.as_ref().map(|l| l.line()),
                    loc.as_ref().map(|l| l.column()),
                );
                let full = e.to_string();
                let message = match full.find(" at line ") {
                    Some(i) => full[..i].to_owned(),
                    None => full.clone(),
                };
                match unknown_key(&message) {
                    Some((key, suggestion)) => {
                        // serde_yaml prefixes nested errors with the path, e.g. `reconcile: `.
                        let key = match message.split_once(": unknown field") {
                            Some((prefix, _)) if !prefix.contains(' ') => format!("{prefix}.{key}"),
                            _ => key,
                        };
                        ConfigError::UnknownKey {
                            path: source.to_path_buf(),
                            key,
                            suggestion,
                            line,
                            column,
                            source: e,
                        }
                    }
                    None => ConfigError::Yaml {
                        path: source.to_path_buf(),
                        message: format!("{message}; fix the config file"),
                        line,
                        column,
                        source: e,
                    },
                }
            })?
        };
        let base = source.parent().unwrap_or(Path::new(""));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        let (url_text, url_key) = match env(BASE_URL_ENV).filter(|v| !v.trim().is_empty()) {
            Some(v) => (v, BASE_URL_ENV),
            None => (raw.atlas.base_url.clone(), "atlas.base_url"),
        };
        let base_url = reqwest::Url::parse(url_text.trim()).map_err(|e| {
            invalid(
                source,
                url_key,
                format!("`{url_text}` is not a URL ({e}); use e.g. https://cloud.mongodb.com"),
            )
        })?;
        match base_url.scheme() {
            "https" => {}
            "http" if is_loopback(&base_url) => {}
            "http" => {
                return Err(invalid(
                    source,
                    url_key,
                    format!(
                        "`{url_text}` uses plain http to a host that is not loopback; credentials would cross the network unencrypted: use https"
                    ),
                ));
            }
            other => {
                return Err(invalid(
                    source,
                    url_key,
                    format!("`{url_text}` has scheme `{other}`; use https"),
                ));
            }
        }
        if base_url.host().is_none() {
            return Err(invalid(
                source,
                url_key,
                format!("`{url_text}` has no host"),
            ));
        }

        positive(source, "atlas.timeout_secs", raw.atlas.timeout_secs)?;
        positive(
            source,
            "reconcile.resync_interval_secs",
            raw.reconcile.resync_interval_secs,
        )?;
        positive(
            source,
            "reconcile.concurrency",
            raw.reconcile.concurrency as u64,
        )?;
        positive(
            source,
            "reconcile.per_project_concurrency",
            raw.reconcile.per_project_concurrency as u64,
        )?;
        if raw.reconcile.per_project_concurrency > raw.reconcile.concurrency {
            return Err(invalid(
                source,
                "reconcile.per_project_concurrency",
                format!(
                    "({}) may not exceed reconcile.concurrency ({}): lower it or raise concurrency",
                    raw.reconcile.per_project_concurrency, raw.reconcile.concurrency
                ),
            ));
        }
        positive(
            source,
            "rate_limit.capacity",
            raw.rate_limit.capacity.into(),
        )?;
        positive(source, "rate_limit.refill", raw.rate_limit.refill.into())?;
        positive(source, "rate_limit.period_secs", raw.rate_limit.period_secs)?;
        positive(source, "retry.max_attempts", raw.retry.max_attempts.into())?;
        positive(
            source,
            "retry.initial_backoff_ms",
            raw.retry.initial_backoff_ms,
        )?;
        positive(source, "retry.max_backoff_secs", raw.retry.max_backoff_secs)?;
        if raw.retry.initial_backoff_ms > raw.retry.max_backoff_secs.saturating_mul(1000) {
            return Err(invalid(
                source,
                "retry.initial_backoff_ms",
                format!(
                    "({} ms) exceeds retry.max_backoff_secs ({} s): lower it or raise the maximum",
                    raw.retry.initial_backoff_ms, raw.retry.max_backoff_secs
                ),
            ));
        }
        if raw.manifests.is_empty() {
            return Err(invalid(
                source,
                "manifests",
                "is empty: list at least one manifest file or directory",
            ));
        }
        if raw.ledger.as_os_str().is_empty() {
            return Err(invalid(
                source,
                "ledger",
                "is empty: give the ledger database's path",
            ));
        }
        let listen = match raw.metrics.listen.as_deref().map(str::trim) {
            None => None,
            Some(addr) => Some(addr.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    source,
                    "metrics.listen",
                    format!(
                        "`{addr}` is not an address and port ({e}); write e.g. 127.0.0.1:9464, or null to turn the endpoint off"
                    ),
                )
            })?),
        };

        Ok(Config {
            source: source.to_path_buf(),
            atlas: AtlasSettings {
                base_url,
                auth: raw.atlas.auth,
                timeout_secs: raw.atlas.timeout_secs,
            },
            manifests: raw.manifests.iter().map(|p| resolve(p)).collect(),
            ledger: resolve(&raw.ledger),
            reconcile: ReconcileSettings {
                resync_interval_secs: raw.reconcile.resync_interval_secs,
                concurrency: raw.reconcile.concurrency,
                per_project_concurrency: raw.reconcile.per_project_concurrency,
                settle_secs: raw.reconcile.settle_secs.unwrap_or(raw.atlas.timeout_secs),
            },
            rate_limit: RateLimitSettings {
                capacity: raw.rate_limit.capacity,
                refill: raw.rate_limit.refill,
                period_secs: raw.rate_limit.period_secs,
                reserve: raw.rate_limit.reserve,
            },
            retry: RetrySettings {
                max_attempts: raw.retry.max_attempts,
                initial_backoff_ms: raw.retry.initial_backoff_ms,
                max_backoff_secs: raw.retry.max_backoff_secs,
                failure_delay_secs: raw.retry.failure_delay_secs,
                max_failure_delay_secs: raw.retry.max_failure_delay_secs,
            },
            metrics: MetricsSettings { listen },
            log: LogSettings {
                format: raw.log.format,
            },
        })
    }
}
