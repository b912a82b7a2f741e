//! The executor's clocks: unix seconds for the ledger and the plan, and the way from a unix instant
//! back to tokio's monotonic clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch: the only clock the ledger and plan see.
pub fn now_unix() -> i64 {
    unix_since_epoch().as_secs() as i64
}

/// Seconds since the epoch rounded UP: a create's `sent_unix`, so that `sent_unix + settle_secs` is
/// never earlier than the real end of its settle window.
pub(super) fn now_unix_ceil() -> i64 {
    let t = unix_since_epoch();
    (t.as_secs() as i64).saturating_add(i64::from(t.subsec_nanos() > 0))
}

fn unix_since_epoch() -> Duration {
    // A clock before 1970 is a broken host; 0 makes every window look past, which only waits less
    // than it should where the clock is already meaningless.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The monotonic instant at which the wall clock reads `unix` (now, if that has passed).
pub(crate) fn instant_at_unix(unix: i64) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let ahead = (unix as f64 - unix_since_epoch().as_secs_f64()).clamp(0.0, 86_400.0 * 366.0);
    now.checked_add(Duration::from_secs_f64(ahead))
        .unwrap_or(now)
}
