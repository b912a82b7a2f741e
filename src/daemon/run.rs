//! The daemon's main loop: start-up checks, one pass per coalesced wake-up, readiness polls between
//! passes while declared links are on their way to `DONE`, SIGHUP reloads, the status reported to
//! systemd and Prometheus, and the orderly shutdown.
//!
//! Start-up refuses (exit 2) on anything that would leave it unable to do its job: an invalid config,
//! an invalid manifest (there is no last good version yet to fall back on), missing credentials, a ledger
//! held by another process, a metrics address that cannot be bound. Once running, nothing a user edits
//! stops it: a broken manifest keeps its last good version, a broken config on SIGHUP keeps the old one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::ready::ReadyCount;
use super::{
    ManifestWatcher, Notifier, SignalEvent, Signals, Trigger, Triggers, Wake, watch_manifests,
};
use crate::config::{Config, Reloaded};
use crate::endpoint::{self, Readiness};
use crate::exit::{Exit, refuse_while as refuse};
use crate::ledger::{NotHeld, Role, Take};
use crate::lock::LockExt;
use crate::logging::init_logging;
use crate::manifest::{ManifestSet, ReadLimits, Refresh, Settling};
use crate::metrics::{Metrics, pass_result};
use crate::model::DesiredState;
use crate::progress::LogProgress;
use crate::reconcile::Unlisted;
use crate::reconcile::{PassError, PassOptions, Policy, Reconciler, now_unix};
use crate::report::{PassReport, format_unix};
use crate::wiring;

/// How long a shutdown waits for the metrics endpoint's open requests.
const ENDPOINT_DRAIN_SECS: u64 = 5;

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// The error and its causes on one line, for a log field.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn warn_notify(result: Result<(), super::DaemonError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Runs the daemon until SIGTERM/SIGINT, then drains and exits 0. Exit 2 when it cannot start (see
/// the module documentation); exit 1 when a second SIGTERM/SIGINT cuts the drain short, or when the
/// ledger or its lock file was deleted or replaced under it (systemd restarts it, and the restart
/// takes the lock again).
///
/// The shutdown: the pass or readiness poll running admits no new call and ends once its calls in
/// flight are recorded; the background timers (watcher events, resync, the next readiness poll, the
/// watchdog) stop and are awaited; the endpoint drains; the reconciler closes the ledger.
pub(crate) async fn run(config_path: PathBuf) -> ExitCode {
    let config = match Config::load(&config_path, &env) {
        Ok(c) => c,
        Err(e) => return refuse("cannot start", &e),
    };
    init_logging(config.log.format, false);
    // Before anything opens a descriptor: the endpoint's connection cap is sized from the limit.
    let nofile = endpoint::raise_nofile_limit();
    // Installed first so a SIGTERM during start-up is not fatal mid-way: it is seen by the loop.
    let signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => return refuse("cannot start", &e),
    };
    let notifier = Notifier::from_env();
    let metrics = Metrics::new();

    let paths = config.manifests.clone();
    let limits = ReadLimits::new(config.limits.manifest_file_max_bytes);
    let loaded = tokio::task::spawn_blocking(move || ManifestSet::load_with(&paths, limits)).await;
    let manifests = match loaded {
        Ok(Ok(set)) => set,
        Ok(Err(problems)) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!(
                "atlas-linkd: error: cannot start: {} problem(s) in the manifests; fix them (`atlas-linkd validate` lists them) and start again",
                problems.len()
            );
            return Exit::NotAttempted.into();
        }
        Err(e) => return refuse("cannot start: loading the manifests failed", &e),
    };
    // Built after the first load: a change in between is still seen, because every pass looks at
    // every file (and reads those whose identity changed).
    let (debounce, max_wait) = debounce(&config);
    let (watcher, events) = match watch_manifests(&config.manifests, debounce, max_wait) {
        Ok(w) => w,
        Err(e) => return refuse("cannot start", &e),
    };

    // On a shared ledger the daemon starts as a standby and becomes active once it holds the lease.
    let reconciler = match wiring::start_taking(&config, metrics.clone(), &env, Take::Background) {
        Ok(r) => r,
        Err(e) => return refuse("cannot start", &e),
    };

    let readiness = Readiness::default();
    let endpoint_stop = CancellationToken::new();
    let endpoint_task = match config.metrics.listen {
        Some(listen) => match endpoint::bind(listen, metrics.clone(), readiness.clone()).await {
            Ok(ep) => {
                tracing::info!(addr = %ep.addr, max_connections = ep.max_connections(),
                    open_files_limit = nofile, "serving /metrics, /healthz and /readyz");
                if let Some(warning) = endpoint::exposure_warning(listen) {
                    tracing::warn!("{warning}");
                }
                let stop = endpoint_stop.clone();
                Some(tokio::spawn(async move {
                    if let Err(e) = ep.serve(stop).await {
                        tracing::error!(error = %chain(&e), "the metrics endpoint stopped");
                    }
                }))
            }
            Err(e) => {
                reconciler.shutdown().await;
                return refuse("cannot start", &e);
            }
        },
        None => None,
    };

    let triggers = Triggers::new();
    let background = CancellationToken::new();
    let forward_stop = background.child_token();
    let forward = triggers.spawn_forward(events, forward_stop.clone());
    let resync_stop = background.child_token();
    let resync = triggers.spawn_resync(resync_period(&config), resync_stop.clone());
    let watchdog = notifier.spawn_watchdog(background.clone());
    let leadership = match reconciler.ledger().lease() {
        Some(lease) => Some(triggers.spawn_leadership(lease.role(), background.child_token())),
        None => {
            metrics.leader.set(1);
            None
        }
    };

    // Dropped before the first refresh: see `Daemon::manifests`.
    let desired = manifests.desired();
    readiness.set_ready(true, "");
    warn_notify(notifier.ready());
    warn_notify(notifier.status(&format!(
        "{} links declared in {} project(s); first pass starting",
        desired.link_count(),
        desired.projects.len()
    )));
    tracing::info!(
        config = %config.source.display(),
        links = desired.link_count(),
        projects = desired.projects.len(),
        ledger = %config.ledger,
        "atlas-linkd started"
    );
    drop(desired);
    triggers.trigger(Trigger::Startup);

    let mut daemon = Daemon {
        config,
        config_path,
        manifests: Arc::new(Mutex::new(manifests)),
        reconciler,
        metrics,
        readiness: readiness.clone(),
        notifier: notifier.clone(),
        triggers,
        background: background.clone(),
        watcher,
        forward_stop,
        resync_stop,
        settle: None,
        recheck: None,
        starved_retry: None,
        last_converged: None,
        ledger_replaced: false,
        transitions_seen: 0,
        ready_poll: None,
        unlisted: Unlisted::default(),
        ready_count: ReadyCount::default(),
        status_base: String::new(),
    };
    let signals = daemon.run_loop(signals).await;

    // A second SIGTERM/SIGINT during the drain exits at once.
    let mut signals = signals;
    tokio::spawn(async move {
        loop {
            if signals.recv().await == SignalEvent::ExitNow {
                eprintln!("atlas-linkd: second signal: exiting without finishing the shutdown");
                std::process::exit(Exit::NotConverged.code().into());
            }
        }
    });

    if !daemon.ledger_replaced {
        readiness.set_ready(false, "shutting down");
    }
    background.cancel();
    let Daemon {
        reconciler,
        watcher,
        ledger_replaced,
        ready_poll,
        ..
    } = daemon;
    drop(watcher);
    for task in [
        Some(forward),
        Some(resync),
        ready_poll,
        watchdog,
        leadership,
    ]
    .into_iter()
    .flatten()
    {
        let _ = task.await;
    }
    endpoint_stop.cancel();
    if let Some(task) = endpoint_task
        && tokio::time::timeout(Duration::from_secs(ENDPOINT_DRAIN_SECS), task)
            .await
            .is_err()
    {
        tracing::warn!("the metrics endpoint did not stop in time; leaving it");
    }
    reconciler.shutdown().await;
    if ledger_replaced {
        tracing::error!(
            "atlas-linkd stopped: its ledger was replaced; exiting 1 so that a restart takes the lock again"
        );
        return Exit::NotConverged.into();
    }
    tracing::info!("atlas-linkd stopped");
    Exit::Converged.into()
}

/// How soon a pass follows one that ran out of descriptors, or whose changes the ledger refused.
const STARVED_RETRY_SECS: i64 = 2;

/// Whether an error's text is the OS saying the process (EMFILE) or the system (ENFILE) has no
/// descriptor left. Errors reach the daemon as text (manifest problems, failure reasons), and the OS's
/// wording ends with the errno.
fn out_of_descriptors(text: &str) -> bool {
    text.contains("(os error 24)") || text.contains("(os error 23)")
}

fn resync_period(config: &Config) -> Duration {
    Duration::from_secs(config.reconcile.resync_interval_secs.max(1))
}

/// The watcher's quiet period (also how long a changed file must stay the same before it is used),
/// and the longest a burst of changes may hold back its pass.
fn debounce(config: &Config) -> (Duration, Duration) {
    let r = &config.reconcile;
    (
        Duration::from_millis(r.debounce_ms),
        Duration::from_millis(r.debounce_max_wait_ms),
    )
}

struct Daemon {
    config: Config,
    config_path: PathBuf,
    /// Shared with the blocking task that re-reads the files. Its desired state is taken for a pass
    /// and let go at the pass's end, never kept between passes: a refresh updates it in place, which
    /// copies all of it (100,000 links) when another holder remains.
    manifests: Arc<Mutex<ManifestSet>>,
    reconciler: Reconciler,
    metrics: Metrics,
    readiness: Readiness,
    notifier: Notifier,
    triggers: Triggers,
    background: CancellationToken,
    watcher: ManifestWatcher,
    forward_stop: CancellationToken,
    resync_stop: CancellationToken,
    /// The pass scheduled for the end of a settle window, if any (replaced by each pass's report).
    settle: Option<tokio::task::JoinHandle<()>>,
    /// The pass scheduled to look again at manifest files that were still being written, if any.
    recheck: Option<tokio::task::JoinHandle<()>>,
    /// The pass scheduled after one that ran out of descriptors or had changes refused, if any.
    starved_retry: Option<tokio::task::JoinHandle<()>>,
    last_converged: Option<i64>,
    /// The ledger or its lock file is no longer the one this process holds: no further pass runs,
    /// and the daemon exits 1.
    ledger_replaced: bool,
    /// The lease's transitions already counted in `atlas_linkd_leader_transitions_total`.
    transitions_seen: u64,
    /// The timer of the next readiness poll, while declared links are on their way to `DONE`.
    ready_poll: Option<tokio::task::JoinHandle<()>>,
    /// Connections the readiness polls' listings no longer showed; forgotten at each pass.
    unlisted: Unlisted,
    /// Where the declared links stood at the last pass or poll.
    ready_count: ReadyCount,
    /// The STATUS line of the last pass; each poll sends it again with its own detail.
    status_base: String,
}

impl Daemon {
    /// Passes until the first SIGTERM/SIGINT; returns the signal stream for the shutdown to keep
    /// listening on.
    async fn run_loop(&mut self, mut signals: Signals) -> Signals {
        loop {
            let wake = tokio::select! {
                ev = signals.recv() => match ev {
                    SignalEvent::Reload => {
                        self.triggers.trigger(Trigger::Reload);
                        continue;
                    }
                    SignalEvent::Shutdown | SignalEvent::ExitNow => {
                        self.stopping("idle");
                        return signals;
                    }
                },
                wake = self.triggers.next() => wake,
            };
            if wake.needs_reload() {
                // Logged by `reload`; the pass that follows runs on whatever config is in force.
                let _outcome = self.reload();
            }
            // Inotify watches follow inodes: a root replaced in a way the watcher missed is watched
            // again from here. The watcher re-arms by itself when it sees a root replaced.
            if wake.needs_reload() || wake.contains(Trigger::Resync) {
                self.watcher.rearm().await;
            }
            let cancel = CancellationToken::new();
            let mut stop = false;
            let triggers = self.triggers.clone();
            let notifier = self.notifier.clone();
            // A readiness poll runs here, in the pass's place, so the two never run at once and a
            // signal stops either the same way.
            let poll_only = wake.is_ready_poll_only();
            let pass = async {
                if poll_only {
                    self.ready_poll(&cancel).await
                } else {
                    self.pass(&wake, cancel.clone()).await
                }
            };
            tokio::pin!(pass);
            let ledger_replaced = loop {
                tokio::select! {
                    replaced = &mut pass => break replaced,
                    ev = signals.recv() => match ev {
                        SignalEvent::Reload => triggers.trigger(Trigger::Reload),
                        SignalEvent::Shutdown => {
                            tracing::info!("stopping: no new calls; waiting for the calls in flight (signal again to exit at once)");
                            warn_notify(notifier.stopping());
                            cancel.cancel();
                            stop = true;
                        }
                        SignalEvent::ExitNow => {
                            eprintln!("atlas-linkd: second signal: exiting without waiting for the calls in flight");
                            std::process::exit(Exit::NotConverged.code().into());
                        }
                    },
                }
            };
            if stop || ledger_replaced {
                return signals;
            }
        }
    }

    /// On a shared ledger whose lease this process does not hold: who is active (or that nobody
    /// is yet). `None` when this process may pass: it holds the lease, or the ledger is SQLite.
    /// Brings the leadership metrics up to date on the way.
    fn standby(&mut self) -> Option<String> {
        let lease = self.reconciler.ledger().lease()?.clone();
        let transitions = lease.transitions();
        self.metrics
            .leader_transitions_total
            .inc_by(transitions.saturating_sub(self.transitions_seen));
        self.transitions_seen = transitions;
        let active = lease.epoch().is_some();
        self.metrics.leader.set(i64::from(active));
        if active {
            return None;
        }
        Some(match &*lease.role().borrow() {
            Role::Standby {
                holder: Some(holder),
            } if !holder.is_empty() => holder.clone(),
            _ => "none yet".to_owned(),
        })
    }

    /// Reports a standby: ready (it is ready to take over; a 503 would stall every rolling update
    /// of a two-replica Deployment), with the active holder named.
    fn stand_by(&mut self, active: &str) {
        let status = format!("standby; active: {active}");
        self.readiness.set_ready(true, "");
        self.readiness.set_detail(status.clone());
        if let Some(old) = self.ready_poll.take() {
            old.abort();
        }
        self.status_base = status.clone();
        warn_notify(self.notifier.status(&status));
    }

    /// The lease was lost during a pass: nothing more is sent, and the daemon stands by.
    fn step_down(&mut self, wake: &Wake) {
        tracing::error!(trigger = %wake,
            "the ledger's lease is no longer this process's: the pass stopped creating; standing by");
        self.metrics
            .reconcile_passes_total
            .with_label_values(&[pass_result::ERROR])
            .inc();
        let active = self.standby().unwrap_or_else(|| "none yet".to_owned());
        self.stand_by(&active);
    }

    fn count_ledger_error(&self) {
        self.metrics
            .ledger_errors_total
            .with_label_values(&[self.config.ledger.store()])
            .inc();
    }

    fn stopping(&self, during: &str) {
        tracing::info!(during, "stopping");
        warn_notify(self.notifier.stopping());
    }

    /// One pass: re-read the manifests, reconcile, report. True when the daemon must stop because
    /// its ledger was replaced.
    async fn pass(&mut self, wake: &Wake, cancel: CancellationToken) -> bool {
        if let Some(active) = self.standby() {
            self.stand_by(&active);
            return false;
        }
        let started = Instant::now();
        warn_notify(self.notifier.status(&format!(
            "pass running ({wake}); {}",
            self.last_status_tail()
        )));
        let (refresh, desired) = self.refresh_manifests(wake, &cancel).await;
        // Whatever becomes of the pass, a file still being written is looked at again once it may be
        // stable: its writer may have stopped, and then no other event comes.
        if let Some(old) = self.recheck.take() {
            old.abort();
        }
        if let Some(wait) = refresh.settle_in {
            self.recheck = Some(
                self.triggers
                    .spawn_recheck(wait, self.background.child_token()),
            );
        }
        let mut starved = refresh
            .problems
            .iter()
            .any(|p| out_of_descriptors(&p.to_string()));
        self.metrics
            .manifest_errors
            .set(i64::try_from(refresh.invalid_files).unwrap_or(i64::MAX));

        // Start-up, resync and reload passes list every managed project: they refresh the recorded
        // Atlas states and notice connections deleted behind our back. A file change only needs the
        // projects with something to create.
        let list_all = wake.contains(Trigger::Startup)
            || wake.contains(Trigger::Leadership)
            || wake.contains(Trigger::Resync)
            || wake.contains(Trigger::Reload);
        let options = PassOptions {
            list_all,
            // The daemon does not hold a pass open for a settle window: it runs a follow-up pass.
            wait_for_settle: false,
            cancel: cancel.clone(),
            progress: Some(Arc::new(LogProgress::new())),
        };
        let result = self.reconciler.run_pass(&desired, &options).await;
        drop(desired);
        crate::memory::release_free_memory();
        let elapsed = started.elapsed();
        self.metrics
            .reconcile_duration_seconds
            .observe(elapsed.as_secs_f64());
        let mut refused = false;
        match result {
            Ok(report) => {
                // A write the ledger refused, or one it could not take (the database down), is
                // tried again shortly, on rows read again.
                refused = !report.ledger_refused.is_empty() || report.ledger_errors > 0;
                if report.ledger_errors > 0 {
                    self.metrics
                        .ledger_errors_total
                        .with_label_values(&[self.config.ledger.store()])
                        .inc_by(report.ledger_errors);
                }
                starved |= report
                    .failed
                    .iter()
                    .chain(&report.not_attempted)
                    .any(|f| out_of_descriptors(&f.reason));
                self.after_pass(wake, &report, &refresh, elapsed);
            }
            Err(PassError::NotHeld(NotHeld::Replaced(e))) => {
                // Another process may hold a fresh lock at the same path: this one must not create
                // again, and a restart (exit 1; systemd's `Restart=on-failure`) takes the lock anew.
                let reason = chain(&e);
                tracing::error!(trigger = %wake, ledger = %e.ledger.display(), lock = %e.lock.display(),
                    error = %reason, "stopping: the ledger was deleted or replaced under the daemon");
                self.metrics
                    .reconcile_passes_total
                    .with_label_values(&[pass_result::ERROR])
                    .inc();
                self.readiness
                    .set_ready(false, format!("stopping: {reason}"));
                warn_notify(self.notifier.status(&format!("stopping: {reason}")));
                warn_notify(self.notifier.stopping());
                self.ledger_replaced = true;
            }
            Err(PassError::NotHeld(NotHeld::LeaseLost { .. })) => {
                self.step_down(wake);
            }
            Err(PassError::Ledger(e)) if e.is_fenced() => {
                self.step_down(wake);
            }
            Err(e) => {
                let reason = chain(&e);
                starved |= out_of_descriptors(&reason);
                if let PassError::Ledger(ledger) = &e {
                    self.count_ledger_error();
                    // The database is down or restarting: try again shortly, as for descriptors.
                    starved |= ledger.is_unreachable();
                }
                tracing::error!(trigger = %wake, error = %reason, "pass failed");
                self.metrics
                    .reconcile_passes_total
                    .with_label_values(&[pass_result::ERROR])
                    .inc();
                self.readiness
                    .set_ready(false, format!("the last pass failed: {reason}"));
                self.status_base =
                    format!("last pass FAILED at {}: {reason}", format_unix(now_unix()));
            }
        }
        // Nothing else would wake the daemon for what failed for want of descriptors (a re-read file,
        // a create) until the next resync: try again shortly, once they may be back.
        if (starved || refused) && self.starved_retry.as_ref().is_none_or(|t| t.is_finished()) {
            if starved {
                tracing::warn!(
                    retry_in_secs = STARVED_RETRY_SECS,
                    "the process ran out of open files during the pass; another pass follows shortly"
                );
            } else {
                tracing::warn!(
                    retry_in_secs = STARVED_RETRY_SECS,
                    "the ledger refused or could not take changes of the pass; another pass follows shortly, on rows read again"
                );
            }
            self.starved_retry = Some(self.triggers.spawn_settle(
                now_unix().saturating_add(STARVED_RETRY_SECS),
                self.background.child_token(),
            ));
        }
        if !self.ledger_replaced && !cancel.is_cancelled() && self.standby().is_none() {
            // The pass listed what it listed: the polls' count of missing connections starts over.
            self.unlisted.clear();
            self.track_readiness().await;
        }
        self.ledger_replaced
    }

    /// A readiness poll: lists each project that has declared links still `IDLE`, `WORKING` or not
    /// listed yet (one list per project, through its gate), records what the listings show, and
    /// updates what the daemon reports. No pass: nothing is planned or created. Never stops the
    /// daemon (a ledger that cannot be read ends the polling until the next pass, which decides).
    async fn ready_poll(&mut self, cancel: &CancellationToken) -> bool {
        // A standby spends none of the shared rate budget.
        if self.standby().is_some() {
            return false;
        }
        let desired = self.manifests.lock_or_recover().desired();
        let records = match self.reconciler.ledger().snapshot().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %chain(&e), "readiness poll: cannot read the ledger; polling stops until the next pass");
                return false;
            }
        };
        // From the rows as they are now: a link may have settled since the last look.
        let mut groups = ReadyCount::of(&desired, &records, &self.unlisted.gone()).projects;
        drop(desired);
        // A project paused by a 429 would hold the loop, and with it any pass a manifest change
        // asks for, until its pause ends: a poll leaves it to the next poll instead.
        for paused in self.metrics.paused_projects() {
            if let Some(g) = groups
                .iter()
                .find(|g| g.as_str() == paused.group_id)
                .cloned()
            {
                tracing::debug!(project = %g, until = %format_unix(paused.until_unix),
                    "readiness poll: the project is paused by Atlas's rate limit; listing it at a later poll");
                groups.remove(&g);
            }
        }
        if groups.is_empty() {
            self.track_readiness().await;
            return false;
        }
        let started = Instant::now();
        let refreshed = match self.reconciler.refresh_projects(groups, cancel).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %chain(&e), "readiness poll: cannot record the listings in the ledger; polling stops until the next pass");
                return false;
            }
        };
        if cancel.is_cancelled() {
            return false;
        }
        for (group, e) in &refreshed.failures {
            tracing::warn!(project = %group, error = %e, "readiness poll: could not list the project; trying again at the next poll");
        }
        self.unlisted.observe(&records, &refreshed.listed);
        tracing::debug!(
            projects = refreshed.listed.len(),
            failed = refreshed.failures.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "readiness poll done"
        );
        self.track_readiness().await;
        false
    }

    /// After a pass or a poll: where the declared links stand, from the ledger, in
    /// `atlas_linkd_remote_links{state}`, `/readyz`'s detail and the STATUS line; and the next
    /// readiness poll scheduled while some are still on their way to `DONE`, none otherwise.
    async fn track_readiness(&mut self) {
        let desired = self.manifests.lock_or_recover().desired();
        let count = match self.reconciler.ledger().snapshot().await {
            Ok(records) => {
                self.reconciler.set_remote_links_gauge(&desired, &records);
                ReadyCount::of(&desired, &records, &self.unlisted.gone())
            }
            Err(e) => {
                tracing::error!(error = %chain(&e), "cannot read the ledger to track readiness; polling stops until the next pass");
                ReadyCount::default()
            }
        };
        drop(desired);
        let poll_secs = self.config.reconcile.ready_poll_secs.max(1);
        if count.pending > 0 && self.ready_count.pending == 0 {
            tracing::info!(
                links = count.pending,
                projects = count.projects.len(),
                poll_secs,
                "declared links are not DONE yet; listing their projects until they settle"
            );
        } else if count.pending == 0 && self.ready_count.pending > 0 {
            tracing::info!(
                failed = count.failed,
                "every declared link has settled; readiness polls stop"
            );
        }
        let detail = count.detail();
        self.readiness
            .set_detail(detail.clone().unwrap_or_default());
        let status = match &detail {
            Some(d) if !self.status_base.is_empty() => format!("{}; {d}", self.status_base),
            Some(d) => d.clone(),
            None => self.status_base.clone(),
        };
        warn_notify(self.notifier.status(&status));

        if let Some(old) = self.ready_poll.take() {
            old.abort();
        }
        // A poll that came due during this pass would only repeat its listings.
        self.triggers.withdraw(Trigger::ReadyPoll);
        if count.pending > 0 {
            self.ready_poll = Some(self.triggers.spawn_ready_poll(
                Duration::from_secs(poll_secs),
                self.background.child_token(),
            ));
        }
        self.ready_count = count;
    }

    fn after_pass(
        &mut self,
        wake: &Wake,
        report: &PassReport,
        refresh: &Refresh,
        elapsed: Duration,
    ) {
        let converged = report.converged();
        let result = if converged {
            pass_result::CONVERGED
        } else {
            pass_result::PARTIAL
        };
        self.metrics
            .reconcile_passes_total
            .with_label_values(&[result])
            .inc();
        let now = now_unix();
        if converged {
            self.metrics
                .last_converged_timestamp_seconds
                .set(now as f64);
            self.last_converged = Some(now);
        }
        match report.ledger_refused.first() {
            None if report.ledger_errors > 0 => self.readiness.set_ready(
                false,
                format!(
                    "{} ledger write(s) of the last pass failed ({}); another pass follows shortly",
                    report.ledger_errors,
                    self.config.ledger
                ),
            ),
            None => self.readiness.set_ready(true, ""),
            Some(first) => self.readiness.set_ready(
                false,
                format!(
                    "the ledger refused {} change(s) of the last pass, which planned from rows it does not hold; the rows are read again for the next pass (first: {}/{}: {})",
                    report.ledger_refused.len(),
                    first.group_id,
                    first.name,
                    first.reason
                ),
            ),
        }
        // Creates that got no answer are decided by a pass after their settle window, and a link
        // left waiting (a failed create's retry, prune's grace, a refused delete's retry) is acted
        // on by a pass once it is due: one timer for the earliest is enough, since that pass
        // schedules the next.
        if let Some(old) = self.settle.take() {
            old.abort();
        }
        if let Some(at) = report.follow_up_unix {
            tracing::info!(in_flight = report.in_flight.len(), at = %format_unix(at),
                "creates without an answer may still be committed by Atlas; a pass after their settle window decides them");
        }
        let next = [report.follow_up_unix, report.due_unix]
            .into_iter()
            .flatten()
            .min();
        if let Some(at) = next {
            self.settle = Some(
                self.triggers
                    .spawn_settle(at.saturating_add(1), self.background.child_token()),
            );
        }
        let good =
            report.created.len() + report.adopted.len() + report.renamed.len() + report.unchanged;
        tracing::info!(
            trigger = %wake,
            result,
            declared = report.desired,
            created = report.created.len(),
            adopted = report.adopted.len(),
            unchanged = report.unchanged,
            failed = report.failed.len(),
            waiting = report.waiting.len(),
            not_attempted = report.not_attempted.len(),
            conflicted = report.conflicted.len(),
            in_flight = report.in_flight.len(),
            unverified = report.unverified.len(),
            changed = report.changed.len(),
            orphaned = report.orphaned.len(),
            conflicts = report.conflicts,
            api_calls = report.api_calls,
            rate_limited = report.rate_limited,
            interrupted = report.interrupted,
            invalid_manifest_files = refresh.invalid_files,
            duration_ms = elapsed.as_millis() as u64,
            "pass done: {good}/{} links converged",
            report.desired
        );
        if !report.orphaned.is_empty() {
            tracing::warn!(
                orphaned = report.orphaned.len(),
                "links in the ledger are no longer declared and left in place: prune is off, or they were never created (see `atlas-linkd plan`)"
            );
        }
        let mut status = format!(
            "{good}/{} links converged, last pass {}",
            report.desired,
            format_unix(now)
        );
        if !converged {
            status.push_str(&format!(
                " ({} failed, {} waiting, {} not attempted, {} conflicts, {} in flight, {} unverified)",
                report.failed.len(),
                report.waiting.len(),
                report.not_attempted.len(),
                report.conflicted.len(),
                report.in_flight.len(),
                report.unverified.len()
            ));
        }
        if refresh.invalid_files > 0 {
            status.push_str(&format!(
                "; {} manifest file(s) invalid, last good version in use",
                refresh.invalid_files
            ));
        }
        // Sent by `track_readiness`, with the links not yet DONE.
        self.status_base = status;
    }

    fn last_status_tail(&self) -> String {
        match self.last_converged {
            Some(t) => format!("last converged {}", format_unix(t)),
            None => "not converged yet".to_owned(),
        }
    }

    /// Refreshes the manifests off the async threads, logging each problem; returns the desired state
    /// for this pass.
    ///
    /// A changed file is used only once two reads a debounce apart find the same content (it may be
    /// half written). While one is not, this waits and reads again, up to the maximum wait counted
    /// from the burst's first change; a file still unsettled then keeps its last good version for
    /// this pass, and `settle_in` in the answer says when to look again.
    async fn refresh_manifests(
        &mut self,
        wake: &Wake,
        cancel: &CancellationToken,
    ) -> (Refresh, Arc<DesiredState>) {
        let (window, max_wait) = debounce(&self.config);
        let now = tokio::time::Instant::now();
        let first = wake.first_change().unwrap_or(now);
        let deadline = first.checked_add(max_wait).unwrap_or(now);
        let mut removed = Vec::new();
        let mut changed = false;
        let (refresh, desired) = loop {
            let (mut refresh, desired) = self.refresh_once(window).await;
            removed.append(&mut refresh.removed);
            changed |= refresh.changed;
            let Some(wait) = refresh.settle_in else {
                break (refresh, desired);
            };
            let now = tokio::time::Instant::now();
            if now >= deadline || cancel.is_cancelled() {
                break (refresh, desired);
            }
            // Not held while waiting: the next refresh updates it in place.
            drop(desired);
            let until = now.checked_add(wait).unwrap_or(deadline).min(deadline);
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = cancel.cancelled() => {}
            }
        };
        let refresh = Refresh {
            removed,
            changed,
            ..refresh
        };
        if !refresh.unsettled.is_empty() {
            let files: Vec<String> = refresh
                .unsettled
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            tracing::warn!(
                files = files.join(", "),
                debounce_ms = window.as_millis() as u64,
                "manifest file(s) still being written; their last good versions stay in use until their content has been unchanged for the debounce window (a pass follows then)"
            );
        }
        for p in &refresh.problems {
            tracing::error!(
                file = %p.file.display(),
                problem = %p,
                "manifest problem; this file's last good version stays in use"
            );
        }
        for f in &refresh.removed {
            tracing::info!(file = %f.display(), "manifest file removed; its links are no longer declared (never deleted)");
        }
        if refresh.changed {
            tracing::info!(
                links = desired.link_count(),
                projects = desired.projects.len(),
                "manifests changed"
            );
        }
        (refresh, desired)
    }

    /// One refresh of the manifests, with `window` as the stability window.
    async fn refresh_once(&self, window: Duration) -> (Refresh, Arc<DesiredState>) {
        let set = self.manifests.clone();
        let paths = self.config.manifests.clone();
        let limits = ReadLimits::new(self.config.limits.manifest_file_max_bytes);
        // Files renamed into place since the last look were whole before they had their name.
        let whole = self.watcher.take_whole_arrivals();
        let joined = tokio::task::spawn_blocking(move || {
            let mut set = set.lock_or_recover();
            set.set_limits(limits);
            set.mark_whole(whole);
            let settling = Settling {
                window,
                now: std::time::Instant::now(),
            };
            let refresh = set.refresh_settled(&paths, settling);
            (refresh, set.desired())
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "re-reading the manifests failed; keeping the last good versions");
                let desired = self.manifests.lock_or_recover().desired();
                let refresh = Refresh {
                    invalid_files: 1,
                    ..Refresh::default()
                };
                (refresh, desired)
            }
        }
    }

    /// SIGHUP: re-read the config. An invalid one is refused and the running one kept; settings that
    /// only apply at start-up are named in a warning and keep their running values
    /// (`Config::reloaded` classifies every setting).
    fn reload(&mut self) -> ReloadOutcome {
        warn_notify(self.notifier.reloading());
        let outcome = match Config::load(&self.config_path, &env) {
            Ok(new) => self.apply(new),
            Err(e) => ReloadOutcome::Refused(chain(&e)),
        };
        match &outcome {
            ReloadOutcome::Applied { restart_only } => {
                if !restart_only.is_empty() {
                    tracing::warn!(
                        settings = restart_only.join(", "),
                        "these settings changed but apply only at start-up; restart atlas-linkd to use them (running values kept)"
                    );
                }
                tracing::info!(config = %self.config.source.display(), "config reloaded");
            }
            ReloadOutcome::Refused(reason) => tracing::error!(
                config = %self.config_path.display(),
                error = %reason,
                "refusing the new config; still running on the previous one"
            ),
        }
        warn_notify(self.notifier.ready());
        outcome
    }

    fn apply(&mut self, new: Config) -> ReloadOutcome {
        // Said again on each reload, whether or not the address changed: the warning is about what
        // the config asks for, and a reload is when an operator reads the log.
        if let Some(warning) = new.metrics.listen.and_then(endpoint::exposure_warning) {
            tracing::warn!("{warning}");
        }
        let old = &self.config;
        let Reloaded {
            config: effective,
            restart_only,
        } = old.reloaded(new);

        if effective.manifests != old.manifests || debounce(&effective) != debounce(old) {
            let (quiet, max_wait) = debounce(&effective);
            match watch_manifests(&effective.manifests, quiet, max_wait) {
                Ok((watcher, events)) => {
                    self.forward_stop.cancel();
                    self.forward_stop = self.background.child_token();
                    self.triggers
                        .spawn_forward(events, self.forward_stop.clone());
                    self.watcher = watcher;
                }
                Err(e) => {
                    return ReloadOutcome::Refused(format!(
                        "its manifests cannot be watched: {}",
                        chain(&e)
                    ));
                }
            }
        }
        // The whole policy (limits, retries, settle window, prune) comes from the config: rebuilt on
        // every reload, so no section can be left out of it.
        self.reconciler.set_policy(Policy::from_config(&effective));
        if effective.reconcile.resync_interval_secs != old.reconcile.resync_interval_secs {
            self.resync_stop.cancel();
            self.resync_stop = self.background.child_token();
            self.triggers
                .spawn_resync(resync_period(&effective), self.resync_stop.clone());
        }
        self.config = effective;
        ReloadOutcome::Applied { restart_only }
    }
}

/// What a SIGHUP did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReloadOutcome {
    /// The new config runs; these restart-only settings changed and keep their running values.
    Applied { restart_only: Vec<&'static str> },
    /// The new config was refused, for this reason; the running one is kept.
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_wording_of_emfile_and_enfile_is_recognised() {
        for errno in [libc::EMFILE, libc::ENFILE] {
            let text = format!(
                "cannot read this manifest file: {}",
                std::io::Error::from_raw_os_error(errno)
            );
            assert!(out_of_descriptors(&text), "{text}");
        }
        let other = std::io::Error::from_raw_os_error(libc::EACCES).to_string();
        assert!(!out_of_descriptors(&other), "{other}");
    }
}
