//! The daemon's building blocks: when a pass runs (start-up, manifest changes, resync timer, SIGHUP,
//! coalesced by [`Triggers`]), the manifest watcher, signal handling, and the systemd notify protocol.
//! The loop that uses them is in `run`; the last-good-version bookkeeping of the manifests in `manifests`.

pub mod manifests;
mod run;

pub use run::run;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use sd_notify::NotifyState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What went wrong in the daemon's plumbing.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "cannot watch {path} for manifest changes: {source}; check that it exists and is readable \
         (on Linux, raising fs.inotify.max_user_watches helps when the limit is reached)"
    )]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot install the handler for {signal}: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot send {message:?} to the service manager at NOTIFY_SOCKET={socket:?}: {source}")]
    Notify {
        socket: OsString,
        message: String,
        #[source]
        source: io::Error,
    },
}

// ---------------------------------------------------------------------------------------------------
// Triggers

/// Why a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// The first pass after start-up.
    Startup,
    /// A manifest file changed.
    FileChange,
    /// The resync timer fired.
    Resync,
    /// SIGHUP (or `systemctl reload`): reload the config, then run a pass.
    Reload,
    /// The settle window of a create that got no answer has ended: a listing can now decide it.
    Settle,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::FileChange => "file-change",
            Trigger::Resync => "resync",
            Trigger::Reload => "reload",
            Trigger::Settle => "settle",
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
pub struct Wake {
    reasons: BTreeSet<Trigger>,
}

impl Wake {
    pub fn contains(&self, t: Trigger) -> bool {
        self.reasons.contains(&t)
    }

    /// The config must be re-read before this pass (a SIGHUP is among the reasons).
    pub fn needs_reload(&self) -> bool {
        self.contains(Trigger::Reload)
    }

    pub fn reasons(&self) -> impl Iterator<Item = Trigger> + '_ {
        self.reasons.iter().copied()
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
pub struct Triggers {
    inner: Arc<TriggersInner>,
}

#[derive(Debug, Default)]
struct TriggersInner {
    pending: Mutex<BTreeSet<Trigger>>,
    notify: tokio::sync::Notify,
}

impl Triggers {
    pub fn new() -> Triggers {
        Triggers::default()
    }

    pub fn trigger(&self, why: Trigger) {
        self.lock().insert(why);
        // `notify_one` stores a permit when nobody waits, so a trigger between `take` and `notified()`
        // in `next` is not lost.
        self.inner.notify.notify_one();
    }

    /// Waits until at least one trigger is pending, then takes all of them.
    pub async fn next(&self) -> Wake {
        loop {
            if let Some(w) = self.try_next() {
                return w;
            }
            self.inner.notify.notified().await;
        }
    }

    /// Takes the pending triggers, if any, without waiting.
    pub fn try_next(&self) -> Option<Wake> {
        let reasons = std::mem::take(&mut *self.lock());
        (!reasons.is_empty()).then_some(Wake { reasons })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Trigger>> {
        // The set is valid whatever a panicking holder did, so poisoning is not worth propagating.
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fires [`Trigger::Resync`] every `period` (first after one full period) until `shutdown`.
    /// Late ticks are delayed rather than bunched, so a long pass never queues a burst of resyncs.
    pub fn spawn_resync(
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
    pub fn spawn_settle(
        &self,
        at_unix: i64,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let at = crate::reconcile::instant_at_unix(at_unix);
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep_until(at) => this.trigger(Trigger::Settle),
            }
        })
    }

    /// Turns every event of a manifest watcher into [`Trigger::FileChange`] until the channel closes
    /// or `shutdown`.
    pub fn spawn_forward(
        &self,
        mut events: mpsc::Receiver<()>,
        why: Trigger,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    ev = events.recv() => match ev {
                        Some(()) => this.trigger(why),
                        None => return,
                    },
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------------
// Manifest watcher

/// Keeps the file watcher and its debounce task alive; dropping it stops both.
pub struct ManifestWatcher {
    _watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ManifestWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManifestWatcher")
    }
}

impl Drop for ManifestWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one configured manifest path covers.
#[derive(Debug, Clone)]
enum Watched {
    /// An explicit file: only this path counts, whatever its extension.
    File(PathBuf),
    /// A directory: YAML files under it, outside hidden entries.
    Dir(PathBuf),
}

impl Watched {
    fn covers(&self, path: &Path) -> bool {
        match self {
            Watched::File(f) => path == f,
            Watched::Dir(d) => match path.strip_prefix(d) {
                Ok(rel) => relevant_in_dir(rel),
                Err(_) => false,
            },
        }
    }
}

fn relevant_in_dir(rel: &Path) -> bool {
    let parts: Vec<&std::ffi::OsStr> = rel.iter().collect();
    let Some((last, dirs)) = parts.split_last() else {
        return false;
    };
    let last = last.to_string_lossy();
    // Kubernetes mounts ConfigMaps as symlinks into a hidden `..data` directory that it swaps
    // atomically: that swap is the only event an update produces.
    if dirs.is_empty() && last == "..data" {
        return true;
    }
    if dirs.iter().any(|d| d.to_string_lossy().starts_with('.')) || last.starts_with('.') {
        return false;
    }
    // Editors' temp and backup files (`x.yaml~`, `4913`, `.x.yaml.swp`) fall out here.
    last.ends_with(".yaml") || last.ends_with(".yml")
}

fn event_matters(kind: &EventKind) -> bool {
    // Our own loader opens and reads the manifests: counting those accesses would make every pass
    // trigger the next one.
    !matches!(kind, EventKind::Access(_))
}

/// Watches manifest files and directories and sends `()` once per burst of relevant changes: the
/// first change starts a quiet period of `debounce`, every further change restarts it, and one event
/// goes out when it ends. The receiver holds at most one pending event (more would be redundant).
///
/// Files are watched through their parent directory, so an editor that writes a temp file and renames
/// it over the original is seen. Directories are watched recursively; hidden entries and files that
/// are not `*.yaml`/`*.yml` are ignored. Must be called inside a tokio runtime.
pub fn watch_manifests(
    paths: &[PathBuf],
    debounce: Duration,
) -> Result<(ManifestWatcher, mpsc::Receiver<()>), DaemonError> {
    let mut targets = Vec::new();
    let mut watch_points: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    for p in paths {
        // Canonical paths, because the watcher reports them that way (symlinked /tmp and the like).
        let canon = std::fs::canonicalize(p).map_err(|e| DaemonError::Watch {
            path: p.clone(),
            source: notify::Error::io(e),
        })?;
        if canon.is_dir() {
            watch_points.push((canon.clone(), RecursiveMode::Recursive));
            targets.push(Watched::Dir(canon));
        } else {
            let parent = canon
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/"));
            watch_points.push((parent, RecursiveMode::NonRecursive));
            targets.push(Watched::File(canon));
        }
    }

    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let filter = targets.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            Ok(ev) => {
                if event_matters(&ev.kind) && ev.paths.iter().any(|p| filter.iter().any(|t| t.covers(p)))
                {
                    let _ = raw_tx.send(());
                }
            }
            // A watcher error (queue overflow, a watched dir removed) may have hidden a change:
            // a pass is the safe answer.
            Err(e) => {
                tracing::warn!(error = %e, "manifest watcher reported an error; running a pass to be safe");
                let _ = raw_tx.send(());
            }
        }
    })
    .map_err(|source| DaemonError::Watch {
        path: paths.first().cloned().unwrap_or_default(),
        source,
    })?;

    watch_points.sort();
    watch_points.dedup();
    for (dir, mode) in &watch_points {
        watcher
            .watch(dir, *mode)
            .map_err(|source| DaemonError::Watch {
                path: dir.clone(),
                source,
            })?;
    }

    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(debounce, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            match tx.try_send(()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                Err(mpsc::error::TrySendError::Closed(())) => return,
            }
        }
    });

    Ok((
        ManifestWatcher {
            _watcher: watcher,
            task,
        },
        rx,
    ))
}

// ---------------------------------------------------------------------------------------------------
// Signals

/// What a received signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGHUP: reload the config and run a pass.
    Reload,
    /// The first SIGTERM or SIGINT: stop starting calls, drain, exit.
    Shutdown,
    /// A second SIGTERM or SIGINT: the operator insists; exit now.
    ExitNow,
}

/// The signals we handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Hup,
    Term,
    Int,
}

/// The pure part of signal handling: how many terminations were seen decides the answer.
#[derive(Debug, Default, Clone)]
pub struct SignalState {
    terminations: u32,
}

impl SignalState {
    pub fn on(&mut self, kind: SignalKind) -> SignalEvent {
        match kind {
            SignalKind::Hup => SignalEvent::Reload,
            SignalKind::Term | SignalKind::Int => {
                self.terminations = self.terminations.saturating_add(1);
                if self.terminations == 1 {
                    SignalEvent::Shutdown
                } else {
                    SignalEvent::ExitNow
                }
            }
        }
    }
}

/// SIGHUP, SIGTERM and SIGINT as [`SignalEvent`]s. Creating it replaces the default actions (so a
/// SIGTERM no longer kills the process outright) for the life of the process.
#[derive(Debug)]
pub struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    state: SignalState,
}

impl Signals {
    /// Must be called inside a tokio runtime.
    pub fn new() -> Result<Signals, DaemonError> {
        use tokio::signal::unix::{SignalKind as K, signal};
        let install = |kind: K, name: &'static str| {
            signal(kind).map_err(|source| DaemonError::Signal {
                signal: name,
                source,
            })
        };
        Ok(Signals {
            hup: install(K::hangup(), "SIGHUP")?,
            term: install(K::terminate(), "SIGTERM")?,
            int: install(K::interrupt(), "SIGINT")?,
            state: SignalState::default(),
        })
    }

    /// The next signal's meaning. Cancel-safe: usable in `tokio::select!`.
    pub async fn recv(&mut self) -> SignalEvent {
        let kind = tokio::select! {
            Some(()) = self.hup.recv() => SignalKind::Hup,
            Some(()) = self.term.recv() => SignalKind::Term,
            Some(()) = self.int.recv() => SignalKind::Int,
            // The streams only end if the runtime's signal driver goes away, i.e. at shutdown.
            else => SignalKind::Term,
        };
        self.state.on(kind)
    }
}

// ---------------------------------------------------------------------------------------------------
// sd_notify

/// Speaks systemd's notify protocol (`sd_notify(3)`). Without a socket, every call is a no-op, so the
/// daemon runs the same way outside systemd.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<OsString>,
    watchdog_usec: Option<u64>,
}

impl Notifier {
    /// A notifier for an explicit socket (a path, or `@name` for the abstract namespace) and
    /// watchdog timeout, as systemd would pass them in `NOTIFY_SOCKET` and `WATCHDOG_USEC`.
    pub fn new(socket: Option<impl Into<OsString>>, watchdog_usec: Option<u64>) -> Notifier {
        Notifier {
            socket: socket.map(Into::into).filter(|s| !s.is_empty()),
            watchdog_usec: watchdog_usec.filter(|&u| u > 0),
        }
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (the watchdog counts only when it is
    /// meant for this process).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let pid_ok = match std::env::var("WATCHDOG_PID") {
            Ok(p) => p.trim().parse::<u32>().ok() == Some(std::process::id()),
            Err(_) => true,
        };
        let watchdog_usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|_| pid_ok);
        Notifier::new(socket, watchdog_usec)
    }

    /// Whether a service manager listens.
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to send `WATCHDOG=1`: half the watchdog timeout, as `sd_watchdog_enabled(3)` advises.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_usec.map(|u| Duration::from_micros(u / 2))
    }

    pub fn ready(&self) -> Result<(), DaemonError> {
        self.send(&[NotifyState::Ready])
    }

    /// `RELOADING=1` with `MONOTONIC_USEC`, which systemd ≥ 253 requires for `Type=notify-reload` and
    /// uses to order the reload against the following `READY=1`.
    pub fn reloading(&self) -> Result<(), DaemonError> {
        if !self.is_enabled() {
            return Ok(());
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) -> Result<(), DaemonError> {
        self.send(&[NotifyState::Stopping])
    }

    /// A one-line status for `systemctl status`; line breaks would end the field, so they are flattened.
    pub fn status(&self, status: &str) -> Result<(), DaemonError> {
        let line = status.replace(['\r', '\n'], " ");
        self.send(&[NotifyState::Status(&line)])
    }

    pub fn watchdog(&self) -> Result<(), DaemonError> {
        self.send(&[NotifyState::Watchdog])
    }

    fn send(&self, states: &[NotifyState<'_>]) -> Result<(), DaemonError> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let message: String = states.iter().map(|s| format!("{s}\n")).collect();
        send_datagram(socket, message.as_bytes()).map_err(|source| DaemonError::Notify {
            socket: socket.clone(),
            message: message.trim_end().replace('\n', " "),
            source,
        })
    }

    /// Sends `WATCHDOG=1` every [`Notifier::watchdog_interval`] until `shutdown`; does nothing when
    /// the watchdog is off. The pings come from the runtime, so a wedged runtime stops them, which is
    /// what the watchdog is for.
    pub fn spawn_watchdog(
        &self,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let period = self.watchdog_interval().filter(|d| !d.is_zero())?;
        let this = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = this.watchdog() {
                            tracing::warn!(error = %e, "watchdog ping failed");
                        }
                    }
                }
            }
        }))
    }
}

fn send_datagram(socket: &OsString, msg: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    // A full receive queue must not stall the async runtime: better to drop one status line.
    sock.set_nonblocking(true)?;
    let bytes = socket.as_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg, &addr)?
    } else {
        sock.send_to(msg, Path::new(socket))?
    };
    if sent != msg.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to the notify socket",
        ));
    }
    Ok(())
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
            follow_up.reasons().collect::<Vec<_>>(),
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

    #[test]
    fn second_termination_means_exit_now() {
        let mut s = SignalState::default();
        assert_eq!(s.on(SignalKind::Hup), SignalEvent::Reload);
        assert_eq!(s.on(SignalKind::Term), SignalEvent::Shutdown);
        assert_eq!(s.on(SignalKind::Hup), SignalEvent::Reload);
        assert_eq!(s.on(SignalKind::Int), SignalEvent::ExitNow);
        assert_eq!(s.on(SignalKind::Term), SignalEvent::ExitNow);
    }

    // The only test in this binary that raises signals, so no other handler competes for them.
    #[tokio::test]
    async fn real_signals_map_to_events() {
        let mut sig = Signals::new().unwrap();
        let pid = std::process::id().to_string();
        for (name, want) in [
            ("-HUP", SignalEvent::Reload),
            ("-TERM", SignalEvent::Shutdown),
            ("-INT", SignalEvent::ExitNow),
        ] {
            let st = std::process::Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap();
            assert!(st.success());
            let got = tokio::time::timeout(Duration::from_secs(10), sig.recv())
                .await
                .unwrap();
            assert_eq!(got, want, "after kill {name}");
        }
    }

    #[test]
    fn yaml_filter_ignores_hidden_and_foreign_files() {
        let d = Watched::Dir(PathBuf::from("/m"));
        assert!(d.covers(Path::new("/m/a.yaml")));
        assert!(d.covers(Path::new("/m/sub/b.yml")));
        assert!(d.covers(Path::new("/m/..data")));
        assert!(!d.covers(Path::new("/m/.a.yaml.swp")));
        assert!(!d.covers(Path::new("/m/.hidden/a.yaml")));
        assert!(!d.covers(Path::new("/m/a.yaml~")));
        assert!(!d.covers(Path::new("/m/4913")));
        assert!(!d.covers(Path::new("/other/a.yaml")));
        assert!(!d.covers(Path::new("/m")));
        let f = Watched::File(PathBuf::from("/m/x.conf"));
        assert!(f.covers(Path::new("/m/x.conf")));
        assert!(!f.covers(Path::new("/m/y.yaml")));
    }

    #[test]
    fn notifier_without_socket_is_a_no_op() {
        let n = Notifier::new(None::<OsString>, None);
        assert!(!n.is_enabled());
        n.ready().unwrap();
        n.reloading().unwrap();
        n.status("x").unwrap();
        assert_eq!(n.watchdog_interval(), None);
        let n = Notifier::new(None::<OsString>, Some(30_000_000));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
    }
}
