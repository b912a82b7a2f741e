//! When a pass runs: the triggers (start-up, manifest changes, resync timer, SIGHUP, the end of a
//! settle window), coalesced by [`Triggers`] into one wake-up per pass; and when, between passes, a
//! readiness poll runs instead (a wake-up for nothing but [`Trigger::ReadyPoll`]), through the same
//! queue, so that a poll and a pass never run at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lock::LockExt;
use crate::reconcile::instant_at_unix;

/// Why a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Trigger {
    /// The first pass after start-up.
    Startup,
    /// A manifest file changed (or one still being written is due to be looked at again).
    FileChange,
    /// The resync timer fired.
    Resync,
    /// SIGHUP (or `systemctl reload`): reload the config, then run a pass.
    Reload,
    /// The settle window of a create that got no answer has ended: a listing can now decide it.
    Settle,
    /// Declared links are still `IDLE` or `WORKING`: list their projects again. Alone, it runs a
    /// readiness poll, not a pass; folded with another reason, the pass does instead.
    ReadyPoll,
    /// This process became the active one on a shared ledger (or stopped being it): a full pass,
    /// as at start-up, or the standby's status.
    Leadership,
}

impl Trigger {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::FileChange => "file-change",
            Trigger::Resync => "resync",
            Trigger::Reload => "reload",
            Trigger::Settle => "settle",
            Trigger::ReadyPoll => "ready-poll",
            Trigger::Leadership => "leadership",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every trigger that arrived since the previous [`Triggers::next`], collapsed into one wake-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wake {
    reasons: BTreeSet<Trigger>,
    /// The first manifest change among the reasons: the maximum wait of its burst counts from it.
    first_change: Option<Instant>,
}

impl Wake {
    pub(crate) fn contains(&self, t: Trigger) -> bool {
        self.reasons.contains(&t)
    }

    /// When the earliest manifest change behind this wake-up happened, if one is among the reasons.
    pub(crate) fn first_change(&self) -> Option<Instant> {
        self.first_change
    }

    /// Nothing but a readiness poll is due: list the pending projects, without a pass.
    pub(crate) fn is_ready_poll_only(&self) -> bool {
        self.reasons.len() == 1 && self.contains(Trigger::ReadyPoll)
    }

    /// The config must be re-read before this pass (a SIGHUP is among the reasons).
    pub(crate) fn needs_reload(&self) -> bool {
        self.contains(Trigger::Reload)
    }
}

impl std::fmt::Display for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.reasons.iter().map(|t| t.as_str()).collect();
        f.write_str(&names.join("+"))
    }
}

/// Coalesces wake-ups into "run a pass now". Clones share one queue.
///
/// Any number of triggers that arrive while a pass runs collapse into ONE follow-up pass, which carries
/// all their reasons (so a SIGHUP folded together with a file change still reloads the config).
#[derive(Clone, Debug, Default)]
pub(crate) struct Triggers {
    inner: Arc<TriggersInner>,
}

#[derive(Debug, Default)]
struct TriggersInner {
    pending: Mutex<Pending>,
    notify: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Pending {
    reasons: BTreeSet<Trigger>,
    first_change: Option<Instant>,
}

impl Triggers {
    pub(crate) fn new() -> Triggers {
        Triggers::default()
    }

    pub(crate) fn trigger(&self, why: Trigger) {
        self.lock().reasons.insert(why);
        // `notify_one` stores a permit when nobody waits, so a trigger between `take` and `notified()`
        // in `next` is not lost.
        self.inner.notify.notify_one();
    }

    /// [`Trigger::FileChange`] for a burst of changes that began at `at`.
    pub(crate) fn trigger_change(&self, at: Instant) {
        {
            let mut pending = self.lock();
            pending.reasons.insert(Trigger::FileChange);
            pending.first_change = Some(pending.first_change.map_or(at, |f| f.min(at)));
        }
        self.inner.notify.notify_one();
    }

    /// Waits until at least one trigger is pending, then takes all of them.
    pub(crate) async fn next(&self) -> Wake {
        loop {
            if let Some(w) = self.try_next() {
                return w;
            }
            self.inner.notify.notified().await;
        }
    }

    /// Drops `why` from the pending triggers, if it is there: a pass that just ran has made a
    /// pending readiness poll redundant. A wake-up left with no reason is not one: `next` waits on.
    pub(crate) fn withdraw(&self, why: Trigger) {
        self.lock().reasons.remove(&why);
    }

    /// Takes the pending triggers, if any, without waiting.
    pub(crate) fn try_next(&self) -> Option<Wake> {
        let Pending {
            reasons,
            first_change,
        } = std::mem::take(&mut *self.lock());
        (!reasons.is_empty()).then_some(Wake {
            reasons,
            first_change,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.pending.lock_or_recover()
    }

    /// Fires [`Trigger::Resync`] every `period` (first after one full period) until `shutdown`.
    /// Late ticks are delayed rather than bunched, so a long pass never queues a burst of resyncs.
    pub(crate) fn spawn_resync(
        &self,
        period: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        // The config already bounds the period (`config::ranges::RESYNC_INTERVAL_SECS`); clamping
        // here too keeps any caller from handing tokio a period whose `now + period` overflows and
        // panics, here or inside `Interval` at each tick. A zero period would panic `interval_at`.
        let longest = Duration::from_secs(*crate::config::ranges::RESYNC_INTERVAL_SECS.end());
        let period = period.clamp(Duration::from_millis(1), longest);
        tokio::spawn(async move {
            let Some(start) = tokio::time::Instant::now().checked_add(period) else {
                // Only a clock near the end of its range gets here: no resync beats a panic, and
                // the other triggers still start passes.
                tracing::warn!(
                    period_secs = period.as_secs(),
                    "the resync timer cannot be set this far ahead; periodic resyncs are off"
                );
                shutdown.cancelled().await;
                return;
            };
            let mut tick = tokio::time::interval_at(start, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => this.trigger(Trigger::Resync),
                }
            }
        })
    }

    /// Fires [`Trigger::Settle`] once at `at` (a wall-clock instant, unix seconds), unless `shutdown`.
    pub(crate) fn spawn_settle(
        &self,
        at_unix: i64,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let at = instant_at_unix(at_unix);
        self.spawn_after(tokio::time::sleep_until(at), shutdown, |t| {
            t.trigger(Trigger::Settle);
        })
    }

    /// Fires [`Trigger::FileChange`] once, `delay` from now (a burst starting then), unless
    /// `shutdown`: the follow-up pass for a manifest file that was still being written.
    pub(crate) fn spawn_recheck(
        &self,
        delay: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        self.spawn_after(tokio::time::sleep(delay), shutdown, |t| {
            t.trigger_change(Instant::now());
        })
    }

    /// Fires [`Trigger::ReadyPoll`] once, `delay` from now, unless `shutdown`.
    pub(crate) fn spawn_ready_poll(
        &self,
        delay: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        self.spawn_after(tokio::time::sleep(delay), shutdown, |t| {
            t.trigger(Trigger::ReadyPoll);
        })
    }

    /// Runs `fire` once `sleep` ends, unless `shutdown` comes first: the one-shot timers above.
    fn spawn_after(
        &self,
        sleep: tokio::time::Sleep,
        shutdown: CancellationToken,
        fire: impl FnOnce(&Triggers) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                () = sleep => fire(&this),
            }
        })
    }

    /// Turns every event of a manifest watcher (the instant its burst began) into
    /// [`Trigger::FileChange`] until the channel closes or `shutdown`.
    /// Wakes the loop each time the lease's role changes, until `stop`.
    pub(crate) fn spawn_leadership(
        &self,
        mut role: tokio::sync::watch::Receiver<crate::ledger::Role>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let triggers = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = role.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        triggers.trigger(Trigger::Leadership);
                    }
                }
            }
        })
    }

    pub(crate) fn spawn_forward(
        &self,
        mut events: mpsc::Receiver<Instant>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    ev = events.recv() => match ev {
                        Some(at) => this.trigger_change(at),
                        None => return,
                    },
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn triggers_during_a_pass_collapse_into_one_follow_up() {
        let t = Triggers::new();
        t.trigger(Trigger::Startup);
        let first = t.next().await;
        assert!(first.contains(Trigger::Startup));

        // A "pass" is running; several triggers arrive meanwhile.
        t.trigger(Trigger::FileChange);
        t.trigger(Trigger::FileChange);
        t.trigger(Trigger::Resync);
        t.trigger(Trigger::Reload);
        let follow_up = t.next().await;
        assert_eq!(
            follow_up.reasons.iter().copied().collect::<Vec<_>>(),
            vec![Trigger::FileChange, Trigger::Resync, Trigger::Reload]
        );
        assert!(follow_up.needs_reload());
        assert_eq!(follow_up.to_string(), "file-change+resync+reload");

        // Nothing more is pending: exactly one follow-up.
        assert!(t.try_next().is_none());
        let waited = tokio::time::timeout(Duration::from_secs(3600), t.next()).await;
        assert!(waited.is_err(), "no further pass without a new trigger");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_loop_wakes_on_a_trigger_from_another_task() {
        let t = Triggers::new();
        let t2 = t.clone();
        let waiter = tokio::spawn(async move { t2.next().await });
        tokio::task::yield_now().await;
        t.trigger(Trigger::FileChange);
        let w = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(w.contains(Trigger::FileChange));
        assert!(!w.needs_reload());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_carries_the_earliest_change_of_the_bursts_it_folds() {
        let t = Triggers::new();
        let early = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await;
        t.trigger_change(Instant::now());
        t.trigger_change(early);
        t.trigger(Trigger::Resync);
        let w = t.next().await;
        assert!(w.contains(Trigger::FileChange) && w.contains(Trigger::Resync));
        assert_eq!(w.first_change(), Some(early));
        // Taken with the wake: the next one starts afresh.
        t.trigger(Trigger::Resync);
        assert_eq!(t.next().await.first_change(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_recheck_fires_one_file_change_after_its_delay() {
        let t = Triggers::new();
        let stop = CancellationToken::new();
        let h = t.spawn_recheck(Duration::from_millis(250), stop.clone());
        assert!(
            tokio::time::timeout(Duration::from_millis(249), t.next())
                .await
                .is_err()
        );
        let w = tokio::time::timeout(Duration::from_millis(2), t.next())
            .await
            .expect("the recheck fires");
        assert!(w.contains(Trigger::FileChange));
        assert!(w.first_change().is_some());
        h.await.expect("the timer task ends");
        assert!(t.try_next().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_poll_alone_is_a_poll_and_a_withdrawn_one_wakes_nothing() {
        let t = Triggers::new();
        let stop = CancellationToken::new();
        let h = t.spawn_ready_poll(Duration::from_secs(15), stop.clone());
        assert!(
            tokio::time::timeout(Duration::from_secs(14), t.next())
                .await
                .is_err()
        );
        let w = tokio::time::timeout(Duration::from_secs(2), t.next())
            .await
            .expect("the poll timer fires");
        assert!(w.is_ready_poll_only());
        assert_eq!(w.to_string(), "ready-poll");
        h.await.expect("the timer task ends");

        // Folded with another reason, it is a pass.
        t.trigger(Trigger::ReadyPoll);
        t.trigger(Trigger::FileChange);
        let w = t.next().await;
        assert!(!w.is_ready_poll_only() && w.contains(Trigger::ReadyPoll));

        // Withdrawn (a pass ran meanwhile): the stored wake-up finds nothing and keeps waiting.
        t.trigger(Trigger::ReadyPoll);
        t.withdraw(Trigger::ReadyPoll);
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), t.next())
                .await
                .is_err()
        );

        // A cancelled timer never fires.
        let h = t.spawn_ready_poll(Duration::from_secs(1), stop.clone());
        stop.cancel();
        h.await.expect("the timer task ends");
        assert!(t.try_next().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_resync_period_does_not_panic_and_is_clamped() {
        let t = Triggers::new();
        let stop = CancellationToken::new();
        let h = t.spawn_resync(Duration::from_secs(u64::MAX), stop.clone());
        let week = Duration::from_secs(*crate::config::ranges::RESYNC_INTERVAL_SECS.end());
        assert!(
            tokio::time::timeout(week - Duration::from_secs(1), t.next())
                .await
                .is_err()
        );
        let w = tokio::time::timeout(Duration::from_secs(2), t.next())
            .await
            .expect("the clamped period (7 days) fires");
        assert!(w.contains(Trigger::Resync));
        stop.cancel();
        h.await.expect("the timer task ends without a panic");
    }

    #[tokio::test(start_paused = true)]
    async fn resync_timer_fires_each_period_and_stops_on_shutdown() {
        let t = Triggers::new();
        let stop = CancellationToken::new();
        let h = t.spawn_resync(Duration::from_secs(300), stop.clone());
        assert!(
            tokio::time::timeout(Duration::from_secs(299), t.next())
                .await
                .is_err()
        );
        let w = tokio::time::timeout(Duration::from_secs(2), t.next())
            .await
            .unwrap();
        assert!(w.contains(Trigger::Resync));
        // A long pass (three periods) yields one resync, not three.
        tokio::time::sleep(Duration::from_secs(900)).await;
        assert!(t.try_next().is_some());
        assert!(t.try_next().is_none());
        stop.cancel();
        h.await.unwrap();
    }
}
