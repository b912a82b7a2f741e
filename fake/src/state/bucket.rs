//! Atlas's per-project token bucket, in exact integers, shared with a simulated other client whose
//! calls are replayed only when someone looks; and the `RateLimit-*` figures an answer carries.

use crate::config::BucketConfig;
use std::time::Duration;
use tokio::time::Instant;

/// A bucket's figures in exact integers: one token is `unit` units (the refill period in
/// nanoseconds), and every nanosecond adds `refill` units. Floats would make whole-token counts
/// wobble at boundaries; integers make every answer reproducible.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scale {
    unit: u128,
    refill: u128,
    capacity: u128,
}

impl Scale {
    pub(super) fn of(cfg: &BucketConfig) -> Scale {
        let period_ns = if cfg.period_secs.is_finite() && cfg.period_secs > 0.0 {
            // `as` saturates; a period beyond u64 nanoseconds (585 years) never refills anyway.
            ((cfg.period_secs * 1e9).round() as u64).max(1)
        } else {
            0
        };
        if period_ns == 0 {
            // No period: an instant refill, so the bucket is always full.
            return Scale {
                unit: 1,
                refill: u128::MAX,
                capacity: u128::from(cfg.capacity),
            };
        }
        let unit = u128::from(period_ns);
        Scale {
            unit,
            refill: u128::from(cfg.refill),
            capacity: u128::from(cfg.capacity) * unit,
        }
    }
}

pub(crate) struct Bucket {
    units: u128,
    last: Instant,
    /// When the first call reached the project: the other client calls from then on.
    born: Instant,
    /// How many of the other client's calls have been replayed so far.
    other_calls: u64,
}

/// What replaying the other client's calls did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replayed {
    pub calls: u64,
    pub refused: u64,
}

impl Bucket {
    pub(super) fn new(scale: &Scale, now: Instant) -> Bucket {
        Bucket {
            units: scale.capacity,
            last: now,
            born: now,
            other_calls: 0,
        }
    }

    fn whole_tokens(&self, scale: &Scale) -> u64 {
        u64::try_from(self.units / scale.unit).unwrap_or(u64::MAX)
    }

    pub(super) fn take(&mut self, scale: &Scale) -> bool {
        if self.units >= scale.unit {
            self.units -= scale.unit;
            true
        } else {
            false
        }
    }

    /// Refills up to `now`. Callers race for the lock with instants read before it, so an instant
    /// older than the last refill adds nothing and does not move the bucket back in time.
    fn refill(&mut self, scale: &Scale, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(scale.refill))
            .min(scale.capacity);
        self.last = self.last.max(now);
    }

    /// Whole seconds until the bucket holds a token again (at least 1), as `Retry-After` says it.
    pub(super) fn retry_after_secs(&self, scale: &Scale) -> u64 {
        if scale.refill == 0 || scale.capacity < scale.unit {
            return u64::from(u32::MAX);
        }
        let need = scale.unit.saturating_sub(self.units);
        let ns = need.div_ceil(scale.refill);
        u64::try_from(ns.div_ceil(1_000_000_000))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The instant of the other client's `k`th call (1-based); `None` beyond the clock's range.
    fn other_call_at(&self, k: u64, per_sec: f64) -> Option<Instant> {
        Duration::try_from_secs_f64(k as f64 / per_sec)
            .ok()
            .and_then(|d| self.born.checked_add(d))
    }

    /// How many of the other client's calls fall at or before `t`: an estimate in floats, then
    /// settled against the exact call instants.
    fn other_calls_by(&self, t: Instant, per_sec: f64) -> u64 {
        let secs = t.saturating_duration_since(self.born).as_secs_f64();
        // `as` saturates, and a count that large is out of reach anyway.
        let mut n = (secs * per_sec).floor() as u64;
        while n > 0 && self.other_call_at(n, per_sec).is_none_or(|at| at > t) {
            n -= 1;
        }
        while n < u64::MAX && self.other_call_at(n + 1, per_sec).is_some_and(|at| at <= t) {
            n += 1;
        }
        n
    }

    /// Replays, in time order, the other client's calls due by `now` (each after refilling to its
    /// instant), then refills to `now`: what a real bucket shared with a client calling `per_sec`
    /// times a second would hold, computed only when someone looks.
    pub(super) fn catch_up(
        &mut self,
        scale: &Scale,
        per_sec: Option<f64>,
        now: Instant,
    ) -> Replayed {
        let mut done = Replayed::default();
        if let Some(per_sec) = per_sec {
            let due = self.other_calls_by(now, per_sec);
            // The shortest gap between two calls, once instants are rounded to nanoseconds.
            let min_gap_ns = ((1e9 / per_sec).floor() as u128).saturating_sub(1);
            while self.other_calls < due {
                let k = self.other_calls + 1;
                let Some(at) = self.other_call_at(k, per_sec) else {
                    break;
                };
                self.refill(scale, at);
                if self.units >= scale.capacity
                    && scale.capacity >= scale.unit
                    && min_gap_ns.saturating_mul(scale.refill) >= scale.unit
                {
                    // Refilled by at least a token between calls, a full bucket is full again before
                    // each of them: all succeed, and the last leaves one token less than full.
                    done.calls += due - self.other_calls;
                    self.other_calls = due;
                    self.units = scale.capacity - scale.unit;
                    if let Some(last) = self.other_call_at(due, per_sec) {
                        self.last = self.last.max(last);
                    }
                    break;
                }
                if self.take(scale) {
                    done.calls += 1;
                    self.other_calls = k;
                    continue;
                }
                // Empty: every call before the bucket holds a whole token again is refused. Skipping
                // them in one step keeps a long quiet spell from costing a loop turn per call.
                let last_refused = if scale.refill == 0 || scale.capacity < scale.unit {
                    due
                } else {
                    let wait = (scale.unit - self.units).div_ceil(scale.refill);
                    let refilled = u64::try_from(wait)
                        .ok()
                        .and_then(|ns| at.checked_add(Duration::from_nanos(ns)));
                    match refilled.and_then(|r| r.checked_sub(Duration::from_nanos(1))) {
                        Some(before) => self.other_calls_by(before, per_sec).clamp(k, due),
                        None => due,
                    }
                };
                let n = last_refused - k + 1;
                done.calls += n;
                done.refused += n;
                self.other_calls = last_refused;
            }
        }
        self.refill(scale, now);
        done
    }
}

/// An instant no test or run will reach: about a century from `now`, or `now` itself if even that
/// is beyond the clock.
pub(super) fn far_future(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600))
        .unwrap_or(now)
}

/// The other client's rate, if it calls at all.
pub(super) fn other_rate(per_sec: f64) -> Option<f64> {
    (per_sec.is_finite() && per_sec > 0.0).then_some(per_sec)
}

/// `RateLimit-Limit` and `RateLimit-Remaining` for one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateHeaders {
    pub limit: u32,
    /// Whole tokens left.
    pub remaining: u64,
}

impl RateHeaders {
    pub(super) fn of(scale: &Scale, bucket: &Bucket) -> RateHeaders {
        RateHeaders {
            limit: u32::try_from(scale.capacity / scale.unit).unwrap_or(u32::MAX),
            remaining: bucket.whole_tokens(scale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The other client's calls one by one, with no shortcut: what `catch_up` must agree with.
    struct Naive {
        bucket: Bucket,
        calls: u64,
        refused: u64,
    }

    impl Naive {
        fn advance(&mut self, scale: &Scale, per_sec: f64, now: Instant) {
            while let Some(at) = self
                .bucket
                .other_call_at(self.bucket.other_calls + 1, per_sec)
            {
                if at > now {
                    break;
                }
                self.bucket.refill(scale, at);
                if !self.bucket.take(scale) {
                    self.refused += 1;
                }
                self.calls += 1;
                self.bucket.other_calls += 1;
            }
            self.bucket.refill(scale, now);
        }
    }

    #[test]
    fn other_client_replay_matches_a_call_by_call_simulation() {
        let born = Instant::now();
        let cases = [
            // (capacity, refill, period, other per second, our calls per second)
            (10, 1, 3600.0, 20.0, 0.0),
            (1200, 500, 60.0, 3.0, 0.0),
            (1200, 500, 60.0, 3.0, 40.0),
            (1200, 500, 60.0, 25.0, 5.0),
            (5, 2, 1.0, 7.3, 1.1),
            (5, 2, 1.0, 2.0, 0.7),
            (3, 1, 0.7, 0.9, 0.0),
            (0, 1, 1.0, 2.0, 0.0),
            (50, 0, 1.0, 4.0, 0.5),
            (4, 1, 0.0, 9.0, 0.0),
        ];
        for (capacity, refill, period_secs, per_sec, ours) in cases {
            let scale = Scale::of(&BucketConfig {
                capacity,
                refill,
                period_secs,
            });
            let mut fast = Bucket::new(&scale, born);
            let mut naive = Naive {
                bucket: Bucket::new(&scale, born),
                calls: 0,
                refused: 0,
            };
            let mut total = Replayed::default();
            // Look at irregular moments over ten minutes; our own calls take tokens in between.
            let mut t = 0.0;
            while t < 600.0 {
                t += 0.37 + (t * 7.0) % 3.1;
                let now = born + Duration::from_secs_f64(t);
                let r = fast.catch_up(&scale, Some(per_sec), now);
                total.calls += r.calls;
                total.refused += r.refused;
                naive.advance(&scale, per_sec, now);
                let case = format!("{capacity}/{refill}/{period_secs}, {per_sec}/s, at {t}s");
                assert_eq!(total.calls, naive.calls, "{case}");
                assert_eq!(total.refused, naive.refused, "{case}");
                assert_eq!(fast.units, naive.bucket.units, "{case}");
                if ours > 0.0 && (t * ours).fract() < 0.5 {
                    assert_eq!(fast.take(&scale), naive.bucket.take(&scale), "{case}");
                }
            }
            assert!(
                total.calls >= (600.0 * per_sec) as u64,
                "every due call replayed"
            );
        }
    }

    #[test]
    fn a_long_quiet_spell_is_replayed_in_few_steps() {
        let scale = Scale::of(&BucketConfig::default());
        let born = Instant::now();
        let mut bucket = Bucket::new(&scale, born);
        // A week of 1000 calls a second against 500 a minute: almost all refused.
        let week = born + Duration::from_secs(7 * 24 * 3600);
        let started = std::time::Instant::now();
        let r = bucket.catch_up(&scale, Some(1000.0), week);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(r.calls, 7 * 24 * 3600 * 1000);
        let granted = r.calls - r.refused;
        let expected = 1200 + 7 * 24 * 3600 * 500 / 60;
        assert!(granted.abs_diff(expected) <= 2, "{granted} vs {expected}");
        // A slower client than the refill never finds the bucket empty.
        let mut bucket = Bucket::new(&scale, born);
        let r = bucket.catch_up(&scale, Some(5.0), week);
        assert_eq!((r.calls, r.refused), (7 * 24 * 3600 * 5, 0));
        assert_eq!(
            bucket.whole_tokens(&scale),
            1199,
            "its last call was at this very instant"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let scale = Scale::of(&BucketConfig {
            capacity: 1,
            refill: 1,
            period_secs: 55.0,
        });
        let t0 = Instant::now();
        let mut bucket = Bucket::new(&scale, t0);
        assert!(bucket.take(&scale));
        assert!(!bucket.take(&scale));
        assert_eq!(bucket.retry_after_secs(&scale), 55);
        bucket.refill(&scale, t0 + Duration::from_millis(100));
        assert_eq!(bucket.retry_after_secs(&scale), 55);
        bucket.refill(&scale, t0 + Duration::from_secs(54));
        assert_eq!(bucket.retry_after_secs(&scale), 1);
        // An instant older than the last refill changes nothing.
        bucket.refill(&scale, t0);
        assert_eq!(bucket.retry_after_secs(&scale), 1);
    }
}
