//! A spawned `atlas-linkd` daemon, as the binary tests drive it: its log, its endpoint, signals, and
//! the waits on them (each polls with `eventually` until `DEADLINE`, then fails with the log); and a
//! socket standing in for systemd's, for its sd_notify messages.

use super::{eventually, lazy};
use std::cell::RefCell;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a wait on a daemon may take on a loaded 2-core machine before it fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// A running daemon; killed when dropped.
pub(crate) struct Daemon {
    child: Child,
    log: PathBuf,
    port: u16,
    http: reqwest::Client,
}

impl Daemon {
    /// Spawns `cmd` (the daemon's command line and environment, as the test wants them) with its
    /// stderr in the file `log`; `port` is its `metrics.listen` port.
    pub(crate) fn spawn(mut cmd: Command, log: PathBuf, port: u16) -> Daemon {
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        Daemon {
            child: cmd.spawn().unwrap(),
            log,
            port,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (`HUP`, `TERM`, ...) with `kill`.
    pub(crate) fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Its log so far.
    pub(crate) fn log(&self) -> String {
        read_log(&self.log)
    }

    /// One GET of its endpoint: status and body, or `None` when it did not answer.
    pub(crate) async fn get(&self, path: &str) -> Option<(u16, String)> {
        let resp = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    /// Its `/metrics`, or an empty text when it did not answer.
    pub(crate) async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of one sample, e.g. `atlas_linkd_creates_total{outcome="success"}`.
    pub(crate) async fn metric(&self, sample: &str) -> Option<f64> {
        sample_value(&self.metrics().await, sample)
    }

    /// Passes of any result so far.
    pub(crate) async fn passes(&self) -> f64 {
        let text = self.metrics().await;
        ["converged", "partial", "error"]
            .iter()
            .filter_map(|r| {
                sample_value(
                    &text,
                    &format!("atlas_linkd_reconcile_passes_total{{result=\"{r}\"}}"),
                )
            })
            .sum()
    }

    /// Polls until `sample` has `value`; fails with the metrics and the log after `DEADLINE`.
    pub(crate) async fn wait_metric(&self, sample: &str, value: f64) {
        let last = RefCell::new(String::new());
        let what = lazy(|| {
            format!(
                "{sample} to reach {value}\n--- metrics\n{}\n--- log\n{}",
                last.borrow(),
                self.log()
            )
        });
        eventually(what, DEADLINE, async || {
            let text = self.metrics().await;
            let reached = sample_value(&text, sample) == Some(value);
            *last.borrow_mut() = text;
            reached.then_some(())
        })
        .await;
    }

    /// Polls until more than `before` passes have ended.
    pub(crate) async fn wait_passes_beyond(&self, before: f64) {
        let what = lazy(|| format!("a pass after {before}\n--- log\n{}", self.log()));
        eventually(what, DEADLINE, async || {
            (self.passes().await > before).then_some(())
        })
        .await;
    }

    /// How it exited, if it has.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Polls until the daemon has exited, and returns how.
    pub(crate) async fn wait_exit(&mut self) -> ExitStatus {
        let log = self.log.clone();
        let child = &mut self.child;
        let what = lazy(|| format!("the daemon to exit\n--- log\n{}", read_log(&log)));
        eventually(what, DEADLINE, async || child.try_wait().unwrap()).await
    }

    /// Polls until a line of the log contains `needle`, and returns that line.
    pub(crate) async fn wait_log(&self, needle: &str) -> String {
        let what = lazy(|| format!("the log to say {needle:?}\n--- log\n{}", self.log()));
        eventually(what, DEADLINE, async || {
            self.log()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_owned)
        })
        .await
    }

    /// Polls `/readyz` until `f` accepts its status and body; returns the body.
    pub(crate) async fn wait_readyz(&self, what: &str, f: impl Fn(u16, &str) -> bool) -> String {
        let last = RefCell::new(None);
        let msg = lazy(|| {
            format!(
                "/readyz to be {what}; last: {:?}\n--- log\n{}",
                last.borrow(),
                self.log()
            )
        });
        eventually(msg, DEADLINE, async || {
            let got = self.get("/readyz").await;
            let ok = got.as_ref().is_some_and(|(s, b)| f(*s, b));
            let body = got.as_ref().map(|(_, b)| b.clone());
            *last.borrow_mut() = got;
            if ok { body } else { None }
        })
        .await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The value of `sample` (name and labels, as exposed) in a Prometheus text exposition.
pub(crate) fn sample_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(sample)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A socket standing in for systemd's `NOTIFY_SOCKET`: collects every datagram the daemon sends.
pub(crate) struct NotifySocket {
    _dir: tempfile::TempDir,
    /// The path to give the daemon as `NOTIFY_SOCKET`.
    pub(crate) path: PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotifySocket {
    pub(crate) fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (messages.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    m.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        NotifySocket {
            _dir: dir,
            path,
            messages,
            stop,
            thread: Some(thread),
        }
    }

    /// Every datagram so far, in order.
    pub(crate) fn all(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// The index of the first datagram from `from` on that `f` accepts.
    pub(crate) fn position(&self, from: usize, f: impl Fn(&str) -> bool) -> Option<usize> {
        self.all()
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, m)| f(m))
            .map(|(i, _)| i)
    }

    /// Polls until a datagram from `from` on is accepted by `f`; returns its index.
    pub(crate) async fn wait_for(
        &self,
        from: usize,
        what: &str,
        f: impl Fn(&str) -> bool,
    ) -> usize {
        let what = lazy(|| format!("{what} after message {from}: {:?}", self.all()));
        eventually(what, DEADLINE, async || self.position(from, &f)).await
    }

    /// The `STATUS=` lines so far.
    pub(crate) fn statuses(&self) -> Vec<String> {
        self.all()
            .iter()
            .filter_map(|m| m.strip_prefix("STATUS="))
            .map(|s| s.trim_end().to_owned())
            .collect()
    }

    /// How many datagrams carried `WATCHDOG=1`.
    pub(crate) fn watchdog_pings(&self) -> usize {
        self.all()
            .iter()
            .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
            .count()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
