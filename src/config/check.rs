//! Checking the raw values: ranges and the relations between keys, the base URL and the metrics
//! address, collected into one error; and `Config`'s constructors.

use super::error::Problem;
use super::raw::DEFAULT_RESERVE;
use super::read::{Read, read};
use super::{
    AtlasSettings, BASE_URL_ENV, CONFIG_ENV, Config, ConfigError, DEFAULT_CONFIG_PATH,
    LeadershipSettings, LimitSettings, LogSettings, MetricsSettings, PruneConfig,
    RateLimitSettings, ReconcileSettings, RetrySettings, ranges,
};
use crate::ledger::{LedgerLocation, SEND_MARGIN_SECS};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

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
struct Checker {
    problems: Vec<Problem>,
    /// Keys whose value could not be read (already reported): they hold defaults, which are not
    /// worth a message of their own.
    unreadable: HashSet<String>,
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

    /// Whether the key, or the section holding it, could not be read.
    fn is_unreadable(&self, key: &str) -> bool {
        self.unreadable.contains(key)
            || key
                .split_once('.')
                .is_some_and(|(section, _)| self.unreadable.contains(section))
    }

    /// Checks `value` against `range`; true when it is inside. The message names the value, the
    /// range and which way to move. False, with no message, for a key that could not be read.
    fn range(
        &mut self,
        key: &str,
        value: u64,
        range: &std::ops::RangeInclusive<u64>,
        unit: Unit,
    ) -> bool {
        if self.is_unreadable(key) {
            return false;
        }
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

/// `text` with anything between `://` and an `@` before the path replaced by `***`: the user info of
/// a URL (`user:password@`), which no message may repeat.
fn without_user_info(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let rest = &text[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &rest[at..]),
        None => text.to_owned(),
    }
}

/// The base URL, or `None` after recording why it cannot be used (every reason, at once).
fn check_base_url(c: &mut Checker, text: &str, key: &str) -> Option<reqwest::Url> {
    let shown = without_user_info(text);
    let url = match reqwest::Url::parse(text.trim()) {
        Ok(url) => url,
        Err(e) => {
            c.push(
                key,
                format!("`{shown}` is not a URL ({e}); use e.g. https://cloud.mongodb.com"),
            );
            return None;
        }
    };
    let mut usable = true;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            c.push(
                key,
                format!(
                    "`{shown}` uses plain http to a host that is not loopback; credentials would cross the network unencrypted: use https"
                ),
            );
            usable = false;
        }
        other => {
            c.push(key, format!("`{shown}` has scheme `{other}`; use https"));
            usable = false;
        }
    }
    if url.host().is_none() {
        c.push(key, format!("`{shown}` has no host"));
        usable = false;
    }
    // The client authenticates every call itself: credentials in the URL would go out as a second
    // `Authorization` header (and end up in logs that print the URL).
    if !url.username().is_empty() || url.password().is_some() {
        c.push(
            key,
            format!(
                "`{shown}` holds a user name or password (`user:password@`); remove it: credentials come from MONGODB_ATLAS_CLIENT_ID and MONGODB_ATLAS_CLIENT_SECRET (or the API key variables), never from the URL"
            ),
        );
        usable = false;
    }
    // Every call path replaces the query and drops the fragment, so neither would ever be sent.
    if url.query().is_some() {
        c.push(
            key,
            format!(
                "`{shown}` has a query (`?...`), which no call would send; remove it: the base URL is scheme, host, port and an optional path"
            ),
        );
        usable = false;
    }
    if url.fragment().is_some() {
        c.push(
            key,
            format!(
                "`{shown}` has a fragment (`#...`), which no call would send; remove it: the base URL is scheme, host, port and an optional path"
            ),
        );
        usable = false;
    }
    usable.then_some(url)
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
        let Read {
            raw,
            problems: unreadable,
            strict,
        } = read(text, source)?;
        let base = source.parent().unwrap_or(Path::new(""));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        // Past the parse, every value is checked and every problem collected before any is reported.
        // A key that could not be read holds its default, which is neither checked nor compared.
        let mut c = Checker {
            problems: Vec::new(),
            unreadable: unreadable.iter().map(|p| p.key.clone()).collect(),
        };
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
        c.range(
            "reconcile.ready_poll_secs",
            r.ready_poll_secs,
            &ranges::READY_POLL_SECS,
            Unit::Secs,
        );
        let debounce_ok = c.range(
            "reconcile.debounce_ms",
            r.debounce_ms,
            &ranges::DEBOUNCE_MS,
            Unit::Millis,
        );
        let max_wait_ok = c.range(
            "reconcile.debounce_max_wait_ms",
            r.debounce_max_wait_ms,
            &ranges::DEBOUNCE_MAX_WAIT_MS,
            Unit::Millis,
        );
        if debounce_ok && max_wait_ok && r.debounce_max_wait_ms < r.debounce_ms {
            c.push(
                "reconcile.debounce_max_wait_ms",
                format!(
                    "({} ms) is below reconcile.debounce_ms ({} ms): raise it or lower the debounce",
                    r.debounce_max_wait_ms, r.debounce_ms
                ),
            );
        }
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
                if settle_ok
                    && !c.is_unreadable("atlas.timeout_secs")
                    && settle < raw.atlas.timeout_secs
                {
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

        c.range(
            "prune.grace_secs",
            raw.prune.grace_secs,
            &ranges::PRUNE_GRACE_SECS,
            Unit::Secs,
        );
        c.range(
            "prune.max_per_pass",
            raw.prune.max_per_pass,
            &ranges::PRUNE_MAX_PER_PASS,
            Unit::Count,
        );

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

        c.range(
            "limits.manifest_file_max_bytes",
            raw.limits.manifest_file_max_bytes,
            &ranges::MANIFEST_FILE_MAX_BYTES,
            Unit::Count,
        );

        if raw.manifests.is_empty() {
            c.push(
                "manifests",
                "is empty: list at least one manifest file or directory",
            );
        }
        let ledger = match raw.ledger.to_str() {
            _ if raw.ledger.as_os_str().is_empty() => {
                c.push(
                    "ledger",
                    "is empty: give the ledger database's path, or a postgres:// URL",
                );
                None
            }
            Some(text) => match LedgerLocation::parse(text, resolve, env) {
                Ok(l) => Some(l),
                Err(e) => {
                    c.push("ledger", format!("(a PostgreSQL URL) {e}"));
                    None
                }
            },
            // Not UTF-8: a path all the same (a URL is always UTF-8).
            None => Some(LedgerLocation::File(resolve(&raw.ledger))),
        };
        let lp = &raw.leadership;
        let lease_ok = c.range(
            "leadership.lease_secs",
            lp.lease_secs,
            &ranges::LEASE_SECS,
            Unit::Secs,
        );
        let renew_ok = c.range(
            "leadership.renew_secs",
            lp.renew_secs,
            &ranges::RENEW_SECS,
            Unit::Secs,
        );
        // The active process stops sending one renewal period before its lease ends by its own
        // clock; three renewals per lease leave it two attempts before it has to stand down.
        if lease_ok && renew_ok && lp.renew_secs.saturating_mul(3) > lp.lease_secs {
            c.push(
                "leadership.renew_secs",
                format!(
                    "({} s) is more than a third of leadership.lease_secs ({} s): a lease must outlast three renewals; lower renew_secs or raise lease_secs",
                    lp.renew_secs, lp.lease_secs
                ),
            );
        }
        // On a shared ledger a create leaves at most `SEND_MARGIN_SECS` after its intent began, and
        // may reach Atlas up to the timeout after that: the settle window must cover both, or a
        // successor could list "absent" a create still coming.
        let shared = matches!(ledger, Some(LedgerLocation::Postgres(_)));
        let settle_secs = match (shared, r.settle_secs) {
            (true, None) => raw.atlas.timeout_secs.saturating_add(SEND_MARGIN_SECS),
            (true, Some(settle))
                if !c.is_unreadable("atlas.timeout_secs")
                    && settle < raw.atlas.timeout_secs.saturating_add(SEND_MARGIN_SECS) =>
            {
                c.push(
                    "reconcile.settle_secs",
                    format!(
                        "({settle} s) is shorter than atlas.timeout_secs ({} s) plus the {SEND_MARGIN_SECS} s a create may leave after its intent, on a PostgreSQL ledger: raise it to at least {} s, or leave it out",
                        raw.atlas.timeout_secs,
                        raw.atlas.timeout_secs.saturating_add(SEND_MARGIN_SECS)
                    ),
                );
                settle
            }
            _ => settle_secs,
        };
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

        if let Some(strict) = strict {
            let mut problems = unreadable;
            problems.append(&mut c.problems);
            // One problem alone keeps the parser's own error, with its exact line and column.
            return Err(if problems.len() == 1 {
                strict
            } else {
                ConfigError::Invalid {
                    path: source.to_path_buf(),
                    problems,
                }
            });
        }
        // Every `None` above recorded a problem, so this refuses exactly when something was wrong.
        let (Some(base_url), Some(listen), Some(ledger), true) =
            (base_url, listen, ledger, c.problems.is_empty())
        else {
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
            ledger,
            leadership: LeadershipSettings {
                lease_secs: raw.leadership.lease_secs,
                renew_secs: raw.leadership.renew_secs,
            },
            reconcile: ReconcileSettings {
                resync_interval_secs: raw.reconcile.resync_interval_secs,
                concurrency: raw.reconcile.concurrency,
                per_project_concurrency: raw.reconcile.per_project_concurrency,
                settle_secs,
                ready_poll_secs: raw.reconcile.ready_poll_secs,
                debounce_ms: raw.reconcile.debounce_ms,
                debounce_max_wait_ms: raw.reconcile.debounce_max_wait_ms,
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
            limits: LimitSettings {
                manifest_file_max_bytes: raw.limits.manifest_file_max_bytes,
            },
            prune: PruneConfig {
                enabled: raw.prune.enabled,
                grace_secs: raw.prune.grace_secs,
                // Checked above: within `PRUNE_MAX_PER_PASS`.
                max_per_pass: u32::try_from(raw.prune.max_per_pass).unwrap_or(u32::MAX),
            },
        })
    }
}
