//! The allowed range of every number in the config, inclusive. Generous for an operator, and small
//! enough that adding any of them to an `Instant` (or `secs * 1000`) is nowhere near overflow: a value
//! read from a file never reaches the timer code unchecked.

use std::ops::RangeInclusive;

const HOUR: u64 = 3_600;
const DAY: u64 = 24 * HOUR;

/// `atlas.timeout_secs`: one HTTP call, connection and body included.
pub const TIMEOUT_SECS: RangeInclusive<u64> = 1..=HOUR;
/// `reconcile.resync_interval_secs`: a week without a full pass is already a long time.
pub const RESYNC_INTERVAL_SECS: RangeInclusive<u64> = 1..=7 * DAY;
/// `reconcile.debounce_ms`: how long the manifests must be quiet (and a changed file unchanged)
/// before a pass acts on them.
pub const DEBOUNCE_MS: RangeInclusive<u64> = 10..=60_000;
/// `reconcile.debounce_max_wait_ms` (and at least `reconcile.debounce_ms`): the longest a burst of
/// changes may hold back its pass.
pub const DEBOUNCE_MAX_WAIT_MS: RangeInclusive<u64> = 10..=HOUR * 1_000;
/// `reconcile.concurrency`: calls in flight, all projects together.
pub const CONCURRENCY: RangeInclusive<u64> = 1..=1_024;
/// `reconcile.per_project_concurrency` (and at most `reconcile.concurrency`).
pub const PER_PROJECT_CONCURRENCY: RangeInclusive<u64> = 1..=1_024;
/// `reconcile.ready_poll_secs`: how often `--once --wait` and the daemon's readiness polls list a project
/// whose links are not `DONE` yet. An hour between looks would make a wait pointless.
pub const READY_POLL_SECS: RangeInclusive<u64> = 1..=HOUR;
/// `reconcile.settle_secs`.
/// `leadership.lease_secs`.
pub const LEASE_SECS: RangeInclusive<u64> = 3..=HOUR;
/// `leadership.renew_secs`.
pub const RENEW_SECS: RangeInclusive<u64> = 1..=20 * 60;
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
/// `limits.manifest_file_max_bytes`: 1 KiB (a few links) to 1 GiB (millions; the file is held in
/// memory while it is parsed).
pub const MANIFEST_FILE_MAX_BYTES: RangeInclusive<u64> = 1_024..=1_073_741_824;
/// `prune.grace_secs`: 0 (no grace) to 30 days.
pub const PRUNE_GRACE_SECS: RangeInclusive<u64> = 0..=30 * DAY;
/// `prune.max_per_pass`: deletes per pass, all projects together.
pub const PRUNE_MAX_PER_PASS: RangeInclusive<u64> = 1..=10_000;
/// `retry.max_failure_delay_secs` (and at least `retry.failure_delay_secs`).
pub const MAX_FAILURE_DELAY_SECS: RangeInclusive<u64> = 1..=30 * DAY;
