//! Progress of the creates of a pass: the `Progress` hook the executor calls, and its two displays,
//! a progress bar on a terminal (`BarProgress`) and periodic log lines elsewhere (`LogProgress`).

use crate::lock::LockExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Progress of the creates of a pass, for a progress bar or periodic log lines.
pub trait Progress: Send + Sync {
    fn start(&self, total: u64);
    fn advance(&self, done: u64);
    fn finish(&self);
}

/// A progress bar on stderr: links done / total, rate, ETA.
pub(crate) struct BarProgress {
    bar: indicatif::ProgressBar,
}

impl Default for BarProgress {
    fn default() -> Self {
        BarProgress::new()
    }
}

impl BarProgress {
    pub(crate) fn new() -> BarProgress {
        let bar = indicatif::ProgressBar::hidden();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} links  {per_sec}  ETA {eta}",
        ) {
            bar.set_style(style);
        }
        BarProgress { bar }
    }
}

impl Progress for BarProgress {
    fn start(&self, total: u64) {
        self.bar.set_length(total);
        self.bar
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }
    fn advance(&self, done: u64) {
        self.bar.set_position(done);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Progress as log lines (off a terminal, and in the daemon): at most one every ten seconds.
/// Build one per pass: the rate it reports counts from its creation.
pub(crate) struct LogProgress {
    total: AtomicU64,
    started: Instant,
    last: Mutex<Instant>,
}

impl Default for LogProgress {
    fn default() -> Self {
        LogProgress::new()
    }
}

impl LogProgress {
    pub(crate) fn new() -> LogProgress {
        LogProgress {
            total: Default::default(),
            started: Instant::now(),
            last: Mutex::new(Instant::now()),
        }
    }
}

impl Progress for LogProgress {
    fn start(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if total > 0 {
            tracing::info!(total, "creating links");
        }
    }
    fn advance(&self, done: u64) {
        let mut last = self.last.lock_or_recover();
        if last.elapsed() >= Duration::from_secs(10) {
            *last = Instant::now();
            let total = self.total.load(Ordering::Relaxed);
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(done, total, rate_per_sec = format!("{rate:.1}"), "progress");
        }
    }
    fn finish(&self) {}
}
