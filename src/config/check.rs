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

/// The allowed range of every number in the config, inclusive. Generous for an operator, and small
/// enough that adding any of them to an `Instant` (or `secs * 1000`) is nowhere near overflow: a value
/// read from a file never reaches the timer code unchecked.
pub mod ranges {
    use std::ops::RangeInclusive;

    const HOUR: u64 = 3_600;
    const DAY: u64 = 24 * HOUR;

    /// `atlas.timeout_secs`: one HTTP call, connection and body included.
    pub const TIMEOUT_SECS: RangeInclusive<u64> = 1..=HOUR;
    /// `reconcile.resync_interval_secs`: a week without a full pass is already a long time.
    pub const RESYNC_INTERVAL_SECS: RangeInclusive<u64> = 1..=7 * DAY;
    /// `reconcile.concurrency`: calls in flight, all projects together.
    pub const CONCURRENCY: RangeInclusive<u64> = 1..=1_024;
    /// `reconcile.per_project_concurrency` (and at most `reconcile.concurrency`).
    pub const PER_PROJECT_CONCURRENCY: RangeInclusive<u64> = 1..=1_024;
    /// `reconcile.settle_secs`.
    pub const SETTLE_SECS: RangeInclusive<u64> = 1..=DAY;
    /// `rate_limit.capacity` (Atlas's is 1,200).
    pub const CAPACITY: RangeInclusive<u64> = 1..=10_000_000;
    /// `rate_limit.refill` (Atlas's is 500).
    pub const REFILL: RangeInclusive<u64> = 1..=10_000_000;
    /// `rate_limit.period_secs` (Atlas's is 60).
    pub const PERIOD_SECS: RangeInclusive<u64> = 1..=DAY;
    // `rate_limit.reserve` is 0 up to `rate_limit.capacity - 1`: a range that depends on capacity.
    /// `retry.max_attempts`, the first attempt included.
    pub const MAX_ATTEMPTS: RangeInclusive<u64> = 1..=100;
    /// `retry.initial_backoff_ms` (and at most `retry.max_backoff_secs`).
    pub const INITIAL_BACKOFF_MS: RangeInclusive<u64> = 1..=DAY * 1_000;
    /// `retry.max_backoff_secs`.
    pub const MAX_BACKOFF_SECS: RangeInclusive<u64> = 1..=DAY;
    /// `retry.failure_delay_secs`.
    pub const FAILURE_DELAY_SECS: RangeInclusive<u64> = 1..=30 * DAY;
    /// `retry.max_failure_delay_secs` (and at least `retry.failure_delay_secs`).
    pub const MAX_FAILURE_DELAY_SECS: RangeInclusive<u64> = 1..=30 * DAY;
}

// `reconcile.settle_secs` defaults to `atlas.timeout_secs`: any valid timeout must be a valid settle.
const _: () = assert!(
    *ranges::TIMEOUT_SECS.start() >= *ranges::SETTLE_SECS.start()
        && *ranges::TIMEOUT_SECS.end() <= *ranges::SETTLE_SECS.end()
);

/// `rate_limit.reserve` when the config leaves it out: 60 tokens, but never more than a twentieth of
/// the bucket, so a small configured bucket is not mostly reserved (or refused outright).
const DEFAULT_RESERVE: u32 = 60;

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
    /// Defaults to `DEFAULT_RESERVE`, at most `capacity / 20`.
    reserve: Option<u32>,
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
    /// Every invalid value of a file that parsed, one per line, each naming the file and the key, so
    /// one edit can fix them all. (Unknown keys and YAML errors stop the parse: one at a time.)
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        /// Never empty.
        problems: Vec<Problem>,
    },
}

/// One invalid value in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key (`retry.max_backoff_secs`), or the environment variable that set the value.
    pub key: String,
    /// What is wrong and what to do, worded to follow the key: "is 0, outside 1..=3600 ...".
    pub message: String,
}

impl Problem {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Problem {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: `{}` {}", path.display(), p.key, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The invalid values, when the file parsed but some of them are out of bounds.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
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

/// Collects every invalid value of one file, so the operator sees them all at once.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

/// How a number is shown in a range message.
#[derive(Clone, Copy)]
enum Unit {
    Count,
    Secs,
    Millis,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Unit::Count => "",
            Unit::Secs => " s",
            Unit::Millis => " ms",
        }
    }

    /// The upper bound in words ("7 days"), when that reads better than the raw number.
    fn words(self, n: u64) -> Option<String> {
        let secs = match self {
            Unit::Count => return None,
            Unit::Secs => n,
            Unit::Millis if n.is_multiple_of(1_000) => n / 1_000,
            Unit::Millis => return None,
        };
        let plural = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
        match secs {
            s if s >= 86_400 && s.is_multiple_of(86_400) => Some(plural(s / 86_400, "day")),
            s if s >= 3_600 && s.is_multiple_of(3_600) => Some(plural(s / 3_600, "hour")),
            s if s >= 60 && s.is_multiple_of(60) => Some(plural(s / 60, "minute")),
            _ => None,
        }
    }
}

impl Checker {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(key, message));
    }

    /// Checks `value` against `range`; true when it is inside. The message names the value, the
    /// range and which way to move.
    fn range(
        &mut self,
        key: &str,
        value: u64,
        range: &std::ops::RangeInclusive<u64>,
        unit: Unit,
    ) -> bool {
        let (lo, hi) = (*range.start(), *range.end());
        if range.contains(&value) {
            return true;
        }
        let u = unit.suffix();
        let words = unit
            .words(hi)
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        let advice = if value < lo {
            format!("raise it to at least {lo}{u}")
        } else {
            format!("lower it to at most {hi}{u}")
        };
        self.push(
            key,
            format!("is {value}{u}, outside the allowed range {lo}..={hi}{u}{words}: {advice}"),
        );
        false
    }

    fn into_error(self, path: &Path) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: self.problems,
        }
    }
}

/// The base URL, or `None` after recording why it cannot be used.
fn check_base_url(c: &mut Checker, text: &str, key: &str) -> Option<reqwest::Url> {
    let url = match reqwest::Url::parse(text.trim()) {
        Ok(url) => url,
        Err(e) => {
            c.push(
                key,
                format!("`{text}` is not a URL ({e}); use e.g. https://cloud.mongodb.com"),
            );
            return None;
        }
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            c.push(
                key,
                format!(
                    "`{text}` uses plain http to a host that is not loopback; credentials would cross the network unencrypted: use https"
                ),
            );
            return None;
        }
        other => {
            c.push(key, format!("`{text}` has scheme `{other}`; use https"));
            return None;
        }
    }
    if url.host().is_none() {
        c.push(key, format!("`{text}` has no host"));
        return None;
    }
    Some(url)
}

/// A `usize` setting as the `u64` the range checks take (saturating: a value too large for `u64`
/// is out of every range anyway).
fn wide(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
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

        // Past the parse, every value is checked and every problem collected before any is reported.
        let mut c = Checker::default();
        let (url_text, url_key) = match env(BASE_URL_ENV).filter(|v| !v.trim().is_empty()) {
            Some(v) => (v, BASE_URL_ENV),
            None => (raw.atlas.base_url.clone(), "atlas.base_url"),
        };
        let base_url = check_base_url(&mut c, &url_text, url_key);

        c.range(
            "atlas.timeout_secs",
            raw.atlas.timeout_secs,
            &ranges::TIMEOUT_SECS,
            Unit::Secs,
        );
        let r = &raw.reconcile;
        c.range(
            "reconcile.resync_interval_secs",
            r.resync_interval_secs,
            &ranges::RESYNC_INTERVAL_SECS,
            Unit::Secs,
        );
        let concurrency_ok = c.range(
            "reconcile.concurrency",
            wide(r.concurrency),
            &ranges::CONCURRENCY,
            Unit::Count,
        );
        let per_project_ok = c.range(
            "reconcile.per_project_concurrency",
            wide(r.per_project_concurrency),
            &ranges::PER_PROJECT_CONCURRENCY,
            Unit::Count,
        );
        // Relations are checked only between values that are each in range: one wrong value should
        // give one message, not one more per relation it takes part in.
        if concurrency_ok && per_project_ok && r.per_project_concurrency > r.concurrency {
            c.push(
                "reconcile.per_project_concurrency",
                format!(
                    "({}) may not exceed reconcile.concurrency ({}): lower it or raise concurrency",
                    r.per_project_concurrency, r.concurrency
                ),
            );
        }
        // An explicit settle is checked; the default, the timeout, was checked as the timeout (and
        // its range lies inside settle's).
        let settle_secs = match r.settle_secs {
            Some(settle) => {
                let settle_ok = c.range(
                    "reconcile.settle_secs",
                    settle,
                    &ranges::SETTLE_SECS,
                    Unit::Secs,
                );
                // A create may reach Atlas as late as the moment we stop waiting for its answer; a
                // window that ends before then would let a listing "prove" absent what is still coming.
                if settle_ok && settle < raw.atlas.timeout_secs {
                    c.push(
                        "reconcile.settle_secs",
                        format!(
                            "({settle} s) is shorter than atlas.timeout_secs ({} s): a create that timed out could still be committed after the window; raise it to at least the timeout, or leave it out to use the timeout",
                            raw.atlas.timeout_secs
                        ),
                    );
                }
                settle
            }
            None => raw.atlas.timeout_secs,
        };

        let rl = &raw.rate_limit;
        let capacity_ok = c.range(
            "rate_limit.capacity",
            rl.capacity.into(),
            &ranges::CAPACITY,
            Unit::Count,
        );
        c.range(
            "rate_limit.refill",
            rl.refill.into(),
            &ranges::REFILL,
            Unit::Count,
        );
        c.range(
            "rate_limit.period_secs",
            rl.period_secs,
            &ranges::PERIOD_SECS,
            Unit::Secs,
        );
        let reserve = rl
            .reserve
            .unwrap_or_else(|| DEFAULT_RESERVE.min(rl.capacity / 20));
        if capacity_ok && reserve >= rl.capacity {
            c.push(
                "rate_limit.reserve",
                format!(
                    "is {reserve}, outside the allowed range 0..={} (below rate_limit.capacity, {}): \
                     lower it or raise capacity; with the whole bucket left to other tools no call of \
                     ours could ever start",
                    rl.capacity - 1,
                    rl.capacity
                ),
            );
        }

        let rt = &raw.retry;
        c.range(
            "retry.max_attempts",
            rt.max_attempts.into(),
            &ranges::MAX_ATTEMPTS,
            Unit::Count,
        );
        let initial_ok = c.range(
            "retry.initial_backoff_ms",
            rt.initial_backoff_ms,
            &ranges::INITIAL_BACKOFF_MS,
            Unit::Millis,
        );
        let max_backoff_ok = c.range(
            "retry.max_backoff_secs",
            rt.max_backoff_secs,
            &ranges::MAX_BACKOFF_SECS,
            Unit::Secs,
        );
        // Both in range, so `max_backoff_secs * 1000` is at most 86,400,000.
        if initial_ok && max_backoff_ok && rt.initial_backoff_ms > rt.max_backoff_secs * 1000 {
            c.push(
                "retry.initial_backoff_ms",
                format!(
                    "({} ms) exceeds retry.max_backoff_secs ({} s): lower it or raise the maximum",
                    rt.initial_backoff_ms, rt.max_backoff_secs
                ),
            );
        }
        let failure_ok = c.range(
            "retry.failure_delay_secs",
            rt.failure_delay_secs,
            &ranges::FAILURE_DELAY_SECS,
            Unit::Secs,
        );
        let max_failure_ok = c.range(
            "retry.max_failure_delay_secs",
            rt.max_failure_delay_secs,
            &ranges::MAX_FAILURE_DELAY_SECS,
            Unit::Secs,
        );
        if failure_ok && max_failure_ok && rt.max_failure_delay_secs < rt.failure_delay_secs {
            c.push(
                "retry.max_failure_delay_secs",
                format!(
                    "({} s) is below retry.failure_delay_secs ({} s): raise it or lower the first delay",
                    rt.max_failure_delay_secs, rt.failure_delay_secs
                ),
            );
        }

        if raw.manifests.is_empty() {
            c.push(
                "manifests",
                "is empty: list at least one manifest file or directory",
            );
        }
        if raw.ledger.as_os_str().is_empty() {
            c.push("ledger", "is empty: give the ledger database's path");
        }
        let listen = match raw.metrics.listen.as_deref().map(str::trim) {
            None => Some(None),
            Some(addr) => match addr.parse::<SocketAddr>() {
                Ok(a) => Some(Some(a)),
                Err(e) => {
                    c.push(
                        "metrics.listen",
                        format!(
                            "`{addr}` is not an address and port ({e}); write e.g. 127.0.0.1:9464, or null to turn the endpoint off"
                        ),
                    );
                    None
                }
            },
        };

        // Every `None` above recorded a problem, so this refuses exactly when something was wrong.
        let (Some(base_url), Some(listen), true) = (base_url, listen, c.problems.is_empty()) else {
            return Err(c.into_error(source));
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
                settle_secs,
            },
            rate_limit: RateLimitSettings {
                capacity: raw.rate_limit.capacity,
                refill: raw.rate_limit.refill,
                period_secs: raw.rate_limit.period_secs,
                reserve,
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
