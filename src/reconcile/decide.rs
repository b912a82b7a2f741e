//! The executor's error policy: what to do after each failed call, as one pure function.
//!
//! In the spirit of kube-runtime's `error_policy`: the action (a create, a page of a listing) says
//! what happened, `decide` says what comes next, and the loops in `reconcile` only carry it out.
//! No I/O and no clock: delays are relative, and the jittered backoff step is an input, so every
//! decision is reproducible and tested with plain data.

use crate::atlas::ErrorClass;
use std::time::Duration;

/// The kind of call that failed. Reads change nothing in Atlas; a create may have. An update (a
/// PATCH of `dnsDomain`) may have too, but sending it again sets the same domain, and a delete
/// repeated is harmless (202 again, or 404 once it is gone), so both are retried like a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    List,
    Update,
    Delete,
}

/// How often this call has failed so far in this pass, the failure being decided included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Attempts {
    /// Failures that count against `max_attempts` (5xx, timeouts, connection errors).
    pub(crate) failures: u32,
    /// 429s: Atlas said when to come back, so waiting is not failing, but not forever either.
    pub(crate) rate_limited: u32,
}

/// The limits `decide` applies; a slice of the executor's `Policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_attempts: u32,
    pub(crate) max_rate_limited: u32,
    /// The longest wait after a 429, whatever `Retry-After` says (a broken proxy can say 2099).
    pub(crate) max_backoff: Duration,
    /// How long an unanswered create may still be committed by Atlas after it was sent.
    pub(crate) settle: Duration,
}

/// What a listing that decides an uncertain create does when it shows no matching connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfAbsent {
    /// The create did not happen: send it again.
    CreateAgain,
    /// Give up for this pass and record why; a later pass tries again after the failure delay.
    GiveUp(&'static str),
}

/// What the executor does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait, then send the same call again.
    Retry { after: Duration },
    /// Atlas's bucket for the project is empty: no call to the project for this long, then retry.
    PauseProject { wait: Duration },
    /// The create may have been committed. Decide by a complete listing of the project that starts
    /// at least `after_sent` after the create was sent: adopt a match, else `if_absent`.
    Verify {
        after_sent: Duration,
        if_absent: IfAbsent,
    },
    /// Stop trying for this pass and record the failure.
    GiveUp,
}

/// Why a 409 that no listing explains is not retried at once.
pub(crate) const CONFLICT_UNEXPLAINED: &str =
    "Atlas answered 409 Conflict and no matching connection exists; will retry on a later pass";
/// Why an uncertain create that a listing does not show is not retried after the last attempt.
pub(crate) const AMBIGUOUS_EXHAUSTED: &str = "no answer from Atlas to the last create attempt, and a listing after the settle window shows no such connection";

/// The policy. `backoff` is the next step of the call's jittered exponential backoff.
pub(crate) fn decide(
    op: Op,
    class: &ErrorClass,
    attempts: Attempts,
    limits: &Limits,
    backoff: Duration,
) -> Next {
    match (op, class) {
        (_, ErrorClass::RateLimited { retry_after }) => {
            if attempts.rate_limited > limits.max_rate_limited {
                Next::GiveUp
            } else {
                let wait = retry_after
                    .unwrap_or(backoff)
                    .min(limits.max_backoff)
                    .max(Duration::from_millis(1));
                Next::PauseProject { wait }
            }
        }
        (_, ErrorClass::Auth | ErrorClass::Permanent) => Next::GiveUp,
        // Atlas refused our create, so it did not make one; but something conflicts, most likely
        // an equivalent connection (or a create of ours still being processed). A listing decides.
        (Op::Create, ErrorClass::Conflict) => Next::Verify {
            after_sent: Duration::ZERO,
            if_absent: IfAbsent::GiveUp(CONFLICT_UNEXPLAINED),
        },
        // The create may have reached Atlas and be committed later, even after we stopped waiting:
        // only a listing that starts once the settle window has passed can say it was not.
        (Op::Create, ErrorClass::Ambiguous) => Next::Verify {
            after_sent: limits.settle,
            if_absent: if attempts.failures >= limits.max_attempts {
                IfAbsent::GiveUp(AMBIGUOUS_EXHAUSTED)
            } else {
                IfAbsent::CreateAgain
            },
        },
        // Atlas refused the PATCH for a conflict it does not explain: a later pass tries again.
        (Op::Update, ErrorClass::Conflict) => Next::GiveUp,
        // Never sent (a connection error), a read, or an idempotent PATCH whose answer was lost (it
        // sets the same domain again): repeating it is harmless.
        (Op::Create, ErrorClass::Retryable)
        | (
            Op::List | Op::Delete,
            ErrorClass::Retryable | ErrorClass::Ambiguous | ErrorClass::Conflict,
        )
        | (Op::Update, ErrorClass::Retryable | ErrorClass::Ambiguous) => {
            if attempts.failures >= limits.max_attempts {
                Next::GiveUp
            } else {
                Next::Retry { after: backoff }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_attempts: 3,
        max_rate_limited: 5,
        max_backoff: Duration::from_secs(60),
        settle: Duration::from_secs(30),
    };
    const STEP: Duration = Duration::from_millis(1500);

    fn failures(n: u32) -> Attempts {
        Attempts {
            failures: n,
            rate_limited: 0,
        }
    }

    fn rate_limited(n: u32) -> Attempts {
        Attempts {
            failures: 0,
            rate_limited: n,
        }
    }

    fn limited(retry_after: Option<Duration>) -> ErrorClass {
        ErrorClass::RateLimited { retry_after }
    }

    #[test]
    fn a_delete_is_retried_like_a_read_and_a_refusal_is_final() {
        for class in [
            ErrorClass::Retryable,
            ErrorClass::Ambiguous,
            ErrorClass::Conflict,
        ] {
            assert_eq!(
                decide(Op::Delete, &class, failures(1), &LIMITS, STEP),
                Next::Retry { after: STEP }
            );
            assert_eq!(
                decide(Op::Delete, &class, failures(3), &LIMITS, STEP),
                Next::GiveUp
            );
        }
        // A 400 (in use, or any other refusal) is not retried within the pass.
        assert_eq!(
            decide(
                Op::Delete,
                &ErrorClass::Permanent,
                failures(1),
                &LIMITS,
                STEP
            ),
            Next::GiveUp
        );
    }

    #[test]
    fn a_429_pauses_the_project_for_retry_after() {
        for op in [Op::Create, Op::List, Op::Delete] {
            let next = decide(
                op,
                &limited(Some(Duration::from_secs(7))),
                rate_limited(1),
                &LIMITS,
                STEP,
            );
            assert_eq!(
                next,
                Next::PauseProject {
                    wait: Duration::from_secs(7)
                }
            );
        }
    }

    #[test]
    fn a_429_without_retry_after_waits_one_backoff_step() {
        let next = decide(Op::List, &limited(None), rate_limited(1), &LIMITS, STEP);
        assert_eq!(next, Next::PauseProject { wait: STEP });
    }

    #[test]
    fn a_huge_retry_after_is_capped_at_max_backoff() {
        let huge = Some(Duration::from_secs(u64::MAX));
        let next = decide(Op::Create, &limited(huge), rate_limited(1), &LIMITS, STEP);
        assert_eq!(
            next,
            Next::PauseProject {
                wait: LIMITS.max_backoff
            }
        );
    }

    #[test]
    fn a_zero_retry_after_still_waits_a_moment() {
        let next = decide(
            Op::List,
            &limited(Some(Duration::ZERO)),
            rate_limited(1),
            &LIMITS,
            STEP,
        );
        assert_eq!(
            next,
            Next::PauseProject {
                wait: Duration::from_millis(1)
            }
        );
    }

    #[test]
    fn too_many_429s_give_up_for_the_pass() {
        let at_limit = decide(Op::List, &limited(None), rate_limited(5), &LIMITS, STEP);
        assert!(matches!(at_limit, Next::PauseProject { .. }));
        let over = decide(Op::List, &limited(None), rate_limited(6), &LIMITS, STEP);
        assert_eq!(over, Next::GiveUp);
    }

    #[test]
    fn auth_and_permanent_errors_are_never_retried() {
        for op in [Op::Create, Op::List] {
            for class in [ErrorClass::Auth, ErrorClass::Permanent] {
                assert_eq!(decide(op, &class, failures(1), &LIMITS, STEP), Next::GiveUp);
            }
        }
    }

    #[test]
    fn an_ambiguous_create_is_decided_by_a_listing_after_the_settle_window() {
        let next = decide(
            Op::Create,
            &ErrorClass::Ambiguous,
            failures(1),
            &LIMITS,
            STEP,
        );
        assert_eq!(
            next,
            Next::Verify {
                after_sent: LIMITS.settle,
                if_absent: IfAbsent::CreateAgain
            }
        );
    }

    #[test]
    fn the_last_ambiguous_create_still_waits_for_the_settle_window_then_gives_up_if_absent() {
        let next = decide(
            Op::Create,
            &ErrorClass::Ambiguous,
            failures(3),
            &LIMITS,
            STEP,
        );
        assert_eq!(
            next,
            Next::Verify {
                after_sent: LIMITS.settle,
                if_absent: IfAbsent::GiveUp(AMBIGUOUS_EXHAUSTED)
            }
        );
    }

    #[test]
    fn a_409_is_decided_by_a_listing_at_once_and_never_creates_again_in_the_pass() {
        let next = decide(
            Op::Create,
            &ErrorClass::Conflict,
            failures(0),
            &LIMITS,
            STEP,
        );
        assert_eq!(
            next,
            Next::Verify {
                after_sent: Duration::ZERO,
                if_absent: IfAbsent::GiveUp(CONFLICT_UNEXPLAINED)
            }
        );
    }

    #[test]
    fn a_create_that_never_left_is_retried_until_attempts_run_out() {
        let first = decide(
            Op::Create,
            &ErrorClass::Retryable,
            failures(1),
            &LIMITS,
            STEP,
        );
        assert_eq!(first, Next::Retry { after: STEP });
        let last = decide(
            Op::Create,
            &ErrorClass::Retryable,
            failures(3),
            &LIMITS,
            STEP,
        );
        assert_eq!(last, Next::GiveUp);
    }

    #[test]
    fn a_failed_read_is_retried_whatever_its_class_until_attempts_run_out() {
        for class in [
            ErrorClass::Retryable,
            ErrorClass::Ambiguous,
            ErrorClass::Conflict,
        ] {
            assert_eq!(
                decide(Op::List, &class, failures(2), &LIMITS, STEP),
                Next::Retry { after: STEP }
            );
            assert_eq!(
                decide(Op::List, &class, failures(3), &LIMITS, STEP),
                Next::GiveUp
            );
        }
    }

    #[test]
    fn an_unanswered_update_is_simply_sent_again_and_a_refused_one_gives_up() {
        for class in [ErrorClass::Retryable, ErrorClass::Ambiguous] {
            assert_eq!(
                decide(Op::Update, &class, failures(1), &LIMITS, STEP),
                Next::Retry { after: STEP },
                "{class:?}"
            );
            assert_eq!(
                decide(Op::Update, &class, failures(3), &LIMITS, STEP),
                Next::GiveUp,
                "{class:?}"
            );
        }
        for class in [
            ErrorClass::Permanent,
            ErrorClass::Auth,
            ErrorClass::Conflict,
        ] {
            assert_eq!(
                decide(Op::Update, &class, failures(1), &LIMITS, STEP),
                Next::GiveUp,
                "{class:?}"
            );
        }
        assert!(matches!(
            decide(
                Op::Update,
                &ErrorClass::RateLimited { retry_after: None },
                rate_limited(1),
                &LIMITS,
                STEP
            ),
            Next::PauseProject { .. }
        ));
    }
}
