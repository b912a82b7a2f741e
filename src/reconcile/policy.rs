//! How fast and how hard a pass pushes (`Policy`), and the shape of a project's bucket as we mirror it.

use super::decide;
use crate::config::Config;
use crate::plan::{PlanSettings, PruneSettings};
use backon::{BackoffBuilder, ExponentialBuilder};
use governor::Quota;
use std::num::NonZeroU32;
use std::time::Duration;

/// How fast and how hard a pass pushes: derived from the config, kept apart from the actions.
#[derive(Debug, Clone)]
pub struct Policy {
    pub concurrency: usize,
    pub per_project_concurrency: usize,
    /// Atlas's per-project bucket as we mirror it: `capacity` burst, `refill` tokens per `period`.
    pub(crate) bucket_capacity: u32,
    pub(crate) bucket_refill: u32,
    pub(crate) bucket_period: Duration,
    /// Attempts per call for errors that may pass (5xx, timeouts, connection errors). 429s do not count:
    /// Atlas said when to come back, so waiting is not failing.
    pub(crate) max_attempts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    /// How many 429s in a row one call accepts before it gives up for this pass.
    pub(crate) max_rate_limited: u32,
    /// A link that failed waits this long before the next pass tries it again, doubling per failure.
    pub(crate) failure_delay: Duration,
    pub(crate) max_failure_delay: Duration,
    /// A create sent without an answer may be committed by Atlas until this long after it was sent.
    pub(crate) settle: Duration,
    /// Tokens of each project's bucket left to the other tools of the project.
    pub(crate) reserve: u32,
    /// Guarded prune (`prune.*`).
    pub(crate) prune: PruneSettings,
}

impl Policy {
    pub fn from_config(config: &Config) -> Policy {
        Policy {
            concurrency: config.reconcile.concurrency.max(1),
            per_project_concurrency: config.reconcile.per_project_concurrency.max(1),
            bucket_capacity: config.rate_limit.capacity,
            bucket_refill: config.rate_limit.refill,
            bucket_period: Duration::from_secs(config.rate_limit.period_secs),
            max_attempts: config.retry.max_attempts.max(1),
            initial_backoff: Duration::from_millis(config.retry.initial_backoff_ms),
            max_backoff: Duration::from_secs(config.retry.max_backoff_secs),
            max_rate_limited: 50,
            failure_delay: Duration::from_secs(config.retry.failure_delay_secs),
            max_failure_delay: Duration::from_secs(config.retry.max_failure_delay_secs),
            settle: Duration::from_secs(config.reconcile.settle_secs),
            reserve: config.rate_limit.reserve,
            prune: prune_settings(config),
        }
    }

    /// What the planner needs of the policy.
    pub(crate) fn plan_settings(&self) -> PlanSettings {
        PlanSettings::from_settle_secs(self.settle.as_secs()).with_prune(self.prune)
    }

    pub(super) fn limits(&self) -> decide::Limits {
        decide::Limits {
            max_attempts: self.max_attempts,
            max_rate_limited: self.max_rate_limited,
            max_backoff: self.max_backoff,
            settle: self.settle,
        }
    }

    pub(super) fn bucket_shape(&self) -> BucketShape {
        let refill = self.bucket_refill.max(1);
        BucketShape {
            // The reserve is left to other tools even when nobody tells us what they spent.
            capacity: self.bucket_capacity.saturating_sub(self.reserve).max(1),
            per_token: (self.bucket_period / refill).max(Duration::from_nanos(1)),
        }
    }

    /// Delays between attempts of one call: exponential with jitter, capped.
    pub(super) fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff.max(self.initial_backoff))
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// How long a link that has now failed `attempts` times waits before a pass retries it.
    pub(super) fn failure_wait(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.failure_delay
            .saturating_mul(factor)
            .min(self.max_failure_delay.max(self.failure_delay))
    }
}

/// The planner's prune settings from `prune.*`; a grace past `i64::MAX` seconds is as good as forever.
pub(crate) fn prune_settings(config: &Config) -> PruneSettings {
    PruneSettings {
        enabled: config.prune.enabled,
        grace_secs: i64::try_from(config.prune.grace_secs).unwrap_or(i64::MAX),
        max_per_pass: config.prune.max_per_pass,
    }
}

/// A project's bucket as configured: `capacity` tokens, one more every `per_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BucketShape {
    pub(super) capacity: u32,
    pub(super) per_token: Duration,
}

impl BucketShape {
    /// Our mirror of the bucket, given how long the project's first call took from send to answer.
    ///
    /// Its burst is a little under Atlas's capacity. After an idle spell both buckets are full, and
    /// Atlas's refill restarts when our first call *arrives*, ours when it is *sent*; calls that then
    /// reach Atlas sooner after their send than that first one did would find it short. The headroom
    /// is one token plus the refill of one round trip of the first call: at Atlas's rate (a token
    /// every 120 ms) that is two or three of its 1,200.
    pub(super) fn quota(self, round_trip: Duration) -> Quota {
        let round_trip_tokens = round_trip
            .as_nanos()
            .div_ceil(self.per_token.as_nanos().max(1));
        let headroom = 1 + u32::try_from(round_trip_tokens).unwrap_or(u32::MAX);
        let burst = NonZeroU32::new(self.capacity.saturating_sub(headroom).max(1))
            .unwrap_or(NonZeroU32::MIN);
        // `with_period` refuses only a zero period, which `bucket_shape` rules out.
        Quota::with_period(self.per_token)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            concurrency: 32,
            per_project_concurrency: 4,
            bucket_capacity: 1200,
            bucket_refill: 500,
            bucket_period: Duration::from_secs(60),
            max_attempts: 6,
            initial_backoff: Duration::from_millis(1000),
            max_backoff: Duration::from_secs(60),
            max_rate_limited: 50,
            failure_delay: Duration::from_secs(300),
            max_failure_delay: Duration::from_secs(21600),
            settle: Duration::from_secs(30),
            reserve: 0,
            prune: PruneSettings::OFF,
        }
    }

    #[test]
    fn the_bucket_keeps_one_token_plus_a_round_trip_of_headroom() {
        let shape = policy().bucket_shape();
        assert_eq!(shape.per_token, Duration::from_millis(120));
        // 200 ms of round trip is two tokens' worth at 120 ms each, plus the one.
        assert_eq!(
            shape.quota(Duration::from_millis(200)).burst_size().get(),
            1197
        );
        assert_eq!(shape.quota(Duration::ZERO).burst_size().get(), 1199);
        let tiny = BucketShape {
            capacity: 2,
            per_token: Duration::from_millis(10),
        };
        assert_eq!(tiny.quota(Duration::from_secs(5)).burst_size().get(), 1);
    }

    #[test]
    fn the_reserve_is_kept_out_of_our_mirror_bucket() {
        let p = Policy {
            reserve: 60,
            ..policy()
        };
        assert_eq!(
            p.bucket_shape().quota(Duration::ZERO).burst_size().get(),
            1139
        );
    }

    #[test]
    fn a_failed_link_waits_longer_after_each_failure_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.failure_wait(1), Duration::from_secs(300));
        assert_eq!(p.failure_wait(2), Duration::from_secs(600));
        assert_eq!(p.failure_wait(3), Duration::from_secs(1200));
        assert_eq!(p.failure_wait(50), Duration::from_secs(21600));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut p = policy();
        p.initial_backoff = Duration::from_millis(100);
        p.max_backoff = Duration::from_secs(1);
        let delays: Vec<Duration> = p.backoff().take(8).collect();
        assert!(delays[0] >= Duration::from_millis(100));
        // Jitter adds at most the delay itself.
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[7] >= Duration::from_secs(1));
    }
}
