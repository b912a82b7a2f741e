//! Progress of a pass: the `Progress` hook the executor calls, and its two displays, a progress bar
//! on a terminal (`BarProgress`, over every declared link, like the summary) and periodic log lines
//! elsewhere (`LogProgress`, over the creates); and the same two for `--once --wait`
//! (`WaitProgress`: links `DONE` / declared).

use crate::lock::LockExt;
use crate::logging::TERMINAL_BAR;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Progress of a pass, for a progress bar or periodic log lines.
pub trait Progress: Send + Sync {
    /// Once, when every project's plan is known: the pass's `declared` links (the summary's count), of
    /// which `creates` go through a create; the others are decided already (adopted, unchanged,
    /// waiting, ...). A project's creates start as soon as its own listing is complete, so some may
    /// have finished by then: they are counted at once.
    fn start(&self, declared: u64, creates: u64);
    /// `done` of the creates have ended, whatever their outcome.
    fn advance(&self, done: u64);
    fn finish(&self);
}

/// A progress bar on stderr: declared links decided / declared, rate, ETA. While it is drawn, log
/// lines are written around it (`logging::TERMINAL_BAR`).
pub(crate) struct BarProgress {
    bar: indicatif::ProgressBar,
    /// Declared links decided without a create: done from the start.
    decided: AtomicU64,
    /// Drawn on stderr; off screen in tests.
    on_stderr: bool,
}

impl Default for BarProgress {
    fn default() -> Self {
        BarProgress::new()
    }
}

impl BarProgress {
    pub(crate) fn new() -> BarProgress {
        BarProgress::with_screen(true)
    }

    fn with_screen(on_stderr: bool) -> BarProgress {
        let bar = indicatif::ProgressBar::hidden();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} links  {per_sec}  ETA {eta}",
        ) {
            bar.set_style(style);
        }
        BarProgress {
            bar,
            decided: AtomicU64::new(0),
            on_stderr,
        }
    }
}

impl Progress for BarProgress {
    fn start(&self, declared: u64, creates: u64) {
        let decided = declared.saturating_sub(creates);
        self.decided.store(decided, Ordering::Relaxed);
        self.bar.set_length(declared);
        self.bar.set_position(decided);
        if self.on_stderr {
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
            TERMINAL_BAR.set(Some(self.bar.clone()));
            self.bar.enable_steady_tick(Duration::from_millis(200));
        }
    }
    fn advance(&self, done: u64) {
        let position = self.decided.load(Ordering::Relaxed) + done;
        // A count smaller than the bar shows never moves it back. (The executor calls this from one
        // task as creates end, so counts come in order; this is a guard, not a lock.)
        if position > self.bar.position() {
            self.bar.set_position(position);
        }
    }
    fn finish(&self) {
        // Left on screen at its final count, above the summary. Log lines written between these
        // two calls still go around the (finished) bar; after them, straight below it.
        self.bar.finish();
        if self.on_stderr {
            TERMINAL_BAR.set(None);
        }
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
    fn start(&self, _declared: u64, creates: u64) {
        let total = creates;
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

/// Progress of `--once --wait`: after each poll, how many declared links are `DONE` and what the
/// others are (`IDLE: 2, WORKING: 1`). A bar on a terminal, a log line per poll elsewhere.
pub(crate) enum WaitProgress {
    Bar(indicatif::ProgressBar),
    Log,
}

impl WaitProgress {
    pub(crate) fn new(show_bar: bool) -> WaitProgress {
        if !show_bar {
            return WaitProgress::Log;
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} links DONE  {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        TERMINAL_BAR.set(Some(bar.clone()));
        bar.enable_steady_tick(Duration::from_millis(200));
        WaitProgress::Bar(bar)
    }

    pub(crate) fn poll(&self, ready: u64, total: u64, others: &str) {
        match self {
            WaitProgress::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(ready);
                bar.set_message(others.to_owned());
            }
            WaitProgress::Log => {
                tracing::info!(
                    ready,
                    total,
                    others,
                    "waiting for the declared links to be DONE"
                );
            }
        }
    }

    /// Leaves the bar on screen at its last count, above the wait's verdict.
    pub(crate) fn finish(&self) {
        if let WaitProgress::Bar(bar) = self {
            bar.abandon();
            TERMINAL_BAR.set(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::reconcile::PassOptions;
    use crate::report::PassReport;
    use fake_atlas::{FakeAtlas, FakeConfig, FakeOp, Fault, ScriptedFault};
    use std::sync::Arc;

    const SETTLED: &str = "5f0c1d2e3a4b5c6d7e8f9a0b";
    const DROPPED: &str = "6a7b8c9d0e1f2a3b4c5d6e7f";

    /// A `BarProgress` off screen, with what the executor told it and where the bar stood when the
    /// pass finished it (`finish` itself moves an unfinished bar to its end).
    struct Recorded {
        bar: BarProgress,
        started: Mutex<Option<(u64, u64)>>,
        at_finish: Mutex<Option<(Option<u64>, u64)>>,
    }

    impl Recorded {
        fn new() -> Recorded {
            Recorded {
                bar: BarProgress::with_screen(false),
                started: Mutex::new(None),
                at_finish: Mutex::new(None),
            }
        }
    }

    impl Progress for Recorded {
        fn start(&self, declared: u64, creates: u64) {
            *self.started.lock_or_recover() = Some((declared, creates));
            self.bar.start(declared, creates);
        }
        fn advance(&self, done: u64) {
            self.bar.advance(done);
        }
        fn finish(&self) {
            *self.at_finish.lock_or_recover() =
                Some((self.bar.bar.length(), self.bar.bar.position()));
            self.bar.finish();
        }
    }

    fn env(key: &str) -> Option<String> {
        match key {
            "MONGODB_ATLAS_CLIENT_ID" => Some("mdb_sa_id_000000000000000000000000".into()),
            "MONGODB_ATLAS_CLIENT_SECRET" => Some("test-secret".into()),
            _ => None,
        }
    }

    fn link(name: &str, endpoint: u32) -> String {
        format!(
            "      - name: {name}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-{endpoint:09}\n"
        )
    }

    /// One pass like the daemon's (no waiting for a settle window): two creates, an adoption, a
    /// permanent failure and a create left in flight.
    async fn pass_with_every_outcome(progress: Arc<dyn Progress>) -> PassReport {
        let mut fake = FakeConfig {
            reject_when_contains: Some("vpce-svc-000000099".into()),
            ..FakeConfig::default()
        };
        fake.faults.script.push(ScriptedFault {
            operation: FakeOp::Create,
            group_id: Some(DROPPED.into()),
            nth: 1,
            fault: Fault::DropBeforeCommit,
        });
        let fake = FakeAtlas::start(fake).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let defaults = "    defaults: {provider: AWS, vendor: S3, region: us-east-1}\n    links:\n";
        let manifest = format!(
            "projects:\n  - groupId: {SETTLED}\n{defaults}{}{}{}{}  - groupId: {DROPPED}\n{defaults}{}",
            link("existing", 1),
            link("new-1", 2),
            link("new-2", 3),
            link("refused", 99),
            link("dropped", 4),
        );
        std::fs::create_dir(dir.path().join("manifests")).unwrap();
        std::fs::write(dir.path().join("manifests/links.yaml"), manifest).unwrap();
        let desired = crate::manifest::load(&[dir.path().join("manifests")]).unwrap();
        let existing = desired.links().find(|l| l.key.name == "existing").unwrap();
        fake.insert(
            SETTLED,
            serde_json::from_str(&existing.spec.to_json()).unwrap(),
        );
        let config_path = dir.path().join("config.yaml");
        std::fs::write(
            &config_path,
            format!(
                "atlas:\n  base_url: {}\nmanifests: [manifests/]\nledger: ledger.db\nretry:\n  initial_backoff_ms: 5\n  max_backoff_secs: 1\nmetrics:\n  listen: null\n",
                fake.base_url()
            ),
        )
        .unwrap();
        let config = Config::load(&config_path, &env).unwrap();
        let reconciler = crate::wiring::start(&config, Metrics::new(), &env).unwrap();
        let options = PassOptions {
            progress: Some(progress),
            ..PassOptions::default()
        };
        let report = reconciler.run_pass(&desired, &options).await.unwrap();
        reconciler.shutdown().await;
        fake.shutdown().await;
        report
    }

    #[tokio::test]
    async fn the_bar_counts_the_declared_links_of_the_summary_and_ends_at_their_total() {
        let recorded = Arc::new(Recorded::new());
        let report = pass_with_every_outcome(recorded.clone()).await;

        let text = report.to_text();
        assert_eq!(report.desired, 5, "{text}");
        assert_eq!(report.created.len(), 2, "{text}");
        assert_eq!(report.adopted.len(), 1, "{text}");
        assert_eq!(report.failed.len(), 1, "{text}");
        assert_eq!(report.in_flight.len(), 1, "{text}");
        let declared = report.desired as u64;
        // The adoption is decided before any create; the other four go through one.
        assert_eq!(*recorded.started.lock_or_recover(), Some((declared, 4)));
        assert_eq!(
            *recorded.at_finish.lock_or_recover(),
            Some((Some(declared), declared)),
            "the bar's total and final position are not the summary's {declared} declared links"
        );
        assert!(recorded.bar.bar.is_finished());
        assert_eq!(recorded.bar.bar.position(), declared);
    }

    #[test]
    fn the_bar_starts_at_the_links_decided_without_a_create_and_never_goes_back() {
        let bar = BarProgress::with_screen(false);
        bar.start(24, 23);
        assert_eq!(bar.bar.length(), Some(24));
        assert_eq!(bar.bar.position(), 1);
        bar.advance(5);
        bar.advance(4);
        assert_eq!(bar.bar.position(), 6);
        bar.advance(23);
        assert_eq!(bar.bar.position(), 24);
        bar.finish();
        assert!(bar.bar.is_finished());
    }
}
