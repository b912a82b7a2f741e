//! What Atlas says is left in a project's bucket, aged by refill and by our own calls since, so we
//! share the bucket with the other tools of the project instead of draining it.
//!
//! Atlas's "Streams" bucket is per project and shared by every tool that calls the project: the UI,
//! Terraform, CI starting processors. Our `governor` limiter mirrors the bucket's shape, but only
//! Atlas knows what the others spent. Every answer carries `RateLimit-Remaining`; this keeps our view
//! at or below it (less the calls of ours still on their way), and keeps `reserve` tokens for the
//! others, which do not retry a 429: our calls wait for refill rather than take the last ones.

use crate::lock::LockExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Budget {
    capacity: f64,
    /// Tokens per second.
    refill: f64,
    reserve: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Atlas's capacity where `RateLimit-Limit` says it is below the configured one (limits are not
    /// part of Atlas's contract and may change), and the reserve scaled down with it.
    capacity: f64,
    reserve: f64,
    /// Atlas's tokens as we last estimated them at `at`; `None` until an answer said.
    tokens: Option<f64>,
    at: Instant,
    /// Calls sent and not yet answered: Atlas may not have counted them in the last answer.
    in_flight: u32,
}

impl Budget {
    pub(crate) fn new(capacity: u32, refill: u32, period: Duration, reserve: u32) -> Budget {
        let secs = period.as_secs_f64().max(1e-3);
        Budget {
            capacity: f64::from(capacity),
            refill: f64::from(refill.max(1)) / secs,
            reserve: f64::from(reserve),
            state: Mutex::new(State {
                capacity: f64::from(capacity),
                reserve: f64::from(reserve),
                tokens: None,
                at: Instant::now(),
                in_flight: 0,
            }),
        }
    }

    /// Plain numbers that stay a usable estimate whatever a panicking holder did: `crate::lock`'s policy.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock_or_recover()
    }

    fn aged(&self, state: &State, now: Instant) -> Option<f64> {
        let elapsed = now.saturating_duration_since(state.at).as_secs_f64();
        state
            .tokens
            .map(|t| (t + elapsed * self.refill).min(state.capacity))
    }

    /// Claims a token for a call about to be sent, or says how long to wait first. Without any word
    /// from Atlas yet, the call may go (the mirror bucket paces it).
    pub(crate) fn try_send(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state();
        if let Some(tokens) = self.aged(&state, now) {
            let short = state.reserve + 1.0 - tokens;
            if short > 0.0 {
                return Err(Duration::from_secs_f64((short / self.refill).min(3600.0))
                    .max(Duration::from_millis(1)));
            }
            state.tokens = Some(tokens - 1.0);
            state.at = now;
        }
        state.in_flight = state.in_flight.saturating_add(1);
        Ok(())
    }

    /// An answer to one of our calls said `remaining` tokens are left (after that call), of
    /// `limit` when it said that too.
    pub(crate) fn observe(&self, remaining: u64, limit: Option<u64>, now: Instant) {
        let mut state = self.state();
        if let Some(limit) = limit.map(|l| l as f64).filter(|l| *l >= 1.0) {
            let capacity = limit.min(self.capacity);
            state.capacity = capacity;
            state.reserve = (self.reserve * capacity / self.capacity).floor();
        }
        // Other calls of ours are on their way and may not be counted yet: assume they will be.
        let others = state.in_flight.saturating_sub(1);
        state.tokens = Some((remaining as f64).min(state.capacity) - f64::from(others));
        state.at = now;
    }

    /// A 429: Atlas's bucket is empty now.
    pub(crate) fn emptied(&self, now: Instant) {
        let mut state = self.state();
        let others = state.in_flight.saturating_sub(1);
        state.tokens = Some(-f64::from(others));
        state.at = now;
    }

    /// One of our calls is over (answered or not).
    pub(crate) fn finished(&self) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(reserve: u32) -> Budget {
        // 20 tokens, 20 per second: a token every 50 ms.
        Budget::new(20, 20, Duration::from_secs(1), reserve)
    }

    #[test]
    fn without_a_word_from_atlas_calls_go() {
        let b = budget(5);
        let now = Instant::now();
        for _ in 0..50 {
            assert_eq!(b.try_send(now), Ok(()));
        }
    }

    #[test]
    fn calls_stop_at_the_reserve_and_wait_for_its_refill() {
        let b = budget(2);
        let now = Instant::now();
        b.try_send(now).unwrap();
        b.observe(5, None, now);
        b.finished();
        // 5 left: three may go (5, 4, 3 -> 2), then the reserve of 2 stays for the others.
        for _ in 0..3 {
            assert_eq!(b.try_send(now), Ok(()));
        }
        let wait = b.try_send(now).unwrap_err();
        assert_eq!(wait, Duration::from_millis(50));
        assert_eq!(b.try_send(now + wait), Ok(()));
    }

    #[test]
    fn our_view_never_exceeds_what_atlas_reports_less_calls_in_flight() {
        let b = budget(0);
        let now = Instant::now();
        for _ in 0..4 {
            b.try_send(now).unwrap();
        }
        // The first answer says 3 left; three more of ours are still on their way.
        b.observe(3, None, now);
        b.finished();
        assert!(b.try_send(now).is_err(), "3 - 3 in flight leaves nothing");
    }

    #[test]
    fn another_client_spending_shows_in_the_next_answer() {
        let b = budget(1);
        let t0 = Instant::now();
        b.try_send(t0).unwrap();
        b.observe(20, Some(20), t0);
        b.finished();
        // A second later our estimate is full again, but Atlas says another tool took most of it.
        let t1 = t0 + Duration::from_secs(1);
        b.try_send(t1).unwrap();
        b.observe(1, Some(20), t1);
        b.finished();
        assert!(b.try_send(t1).is_err());
    }

    #[test]
    fn a_429_empties_the_view() {
        let b = budget(0);
        let now = Instant::now();
        b.try_send(now).unwrap();
        b.observe(10, None, now);
        b.finished();
        b.try_send(now).unwrap();
        b.emptied(now);
        b.finished();
        assert_eq!(b.try_send(now), Err(Duration::from_millis(50)));
    }

    #[test]
    fn a_lower_limit_from_atlas_lowers_the_capacity_and_the_reserve() {
        // Configured 1,200 with a reserve of 60; Atlas says its bucket holds 10.
        let b = Budget::new(1200, 600, Duration::from_secs(60), 60);
        let t0 = Instant::now();
        b.try_send(t0).unwrap();
        b.observe(0, Some(10), t0);
        b.finished();
        // Ten tokens' refill later (a token per 100 ms) the bucket is full at 10, and the reserve
        // is 60 * 10 / 1200 = 0: all ten may go, not one more.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..10 {
            assert_eq!(b.try_send(later), Ok(()));
        }
        assert!(b.try_send(later).is_err());
    }

    #[test]
    fn refill_is_capped_at_capacity() {
        let b = budget(0);
        let t0 = Instant::now();
        b.try_send(t0).unwrap();
        b.observe(0, None, t0);
        b.finished();
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..20 {
            assert_eq!(b.try_send(later), Ok(()));
        }
        assert!(b.try_send(later).is_err());
    }
}
