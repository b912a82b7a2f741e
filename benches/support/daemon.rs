//! The real binary as a child process of a benchmark: its config, a running daemon watched through its
//! metrics endpoint and /proc, and a `--once` run measured by `/usr/bin/time`. Children are killed
//! when their handle is dropped, so a failing benchmark leaves nothing running.

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often a wait polls the daemon's metrics endpoint.
const POLL: Duration = Duration::from_millis(10);

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Writes `dir/config.yaml`: Atlas at `base_url`, manifests in `dir/manifests/`, the ledger in
/// `dir/ledger.db`, JSON logs, the metrics endpoint on `metrics_port` (none without), and `extra`.
pub(crate) fn write_config(
    dir: &Path,
    base_url: &str,
    metrics_port: Option<u16>,
    extra: &str,
) -> Result<PathBuf> {
    let listen = metrics_port.map_or("null".to_owned(), |p| format!("127.0.0.1:{p}"));
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "atlas:\n  base_url: {base_url}\n  timeout_secs: 30\nmanifests: [manifests/]\nledger: ledger.db\n\
             metrics:\n  listen: {listen}\nlog:\n  format: json\n{extra}"
        ),
    )?;
    Ok(path)
}

/// `atlas-linkd --config CONFIG`, stdin closed, an empty environment but for `PATH` and the
/// credentials the fake accepts.
pub(crate) fn binary(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atlas-linkd"));
    cmd.arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    // `RUST_LOG=info,atlas_linkd::phases=debug cargo bench …` shows where a `--once` spends its time.
    for key in [
        "MONGODB_ATLAS_CLIENT_ID",
        "MONGODB_ATLAS_CLIENT_SECRET",
        "RUST_LOG",
        "MALLOC_ARENA_MAX",
    ] {
        if let Some(value) = super::env(key) {
            cmd.env(key, value);
        }
    }
    cmd
}

/// A running daemon; killed when dropped.
pub(crate) struct Daemon {
    child: Child,
    log: PathBuf,
    port: u16,
    http: reqwest::Client,
    pub(crate) started: Instant,
}

impl Daemon {
    /// Starts the daemon on `config`, whose metrics endpoint listens on `port`; stderr goes to `log`.
    pub(crate) fn spawn(config: &Path, port: u16, log: PathBuf) -> Result<Daemon> {
        let mut cmd = binary(config);
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).context("create the daemon's log")?);
        let started = Instant::now();
        let child = cmd.spawn().context("start atlas-linkd")?;
        Ok(Daemon {
            child,
            log,
            port,
            http: reqwest::Client::new(),
            started,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's resident set now, KiB.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        super::pid_status_kib(self.pid(), "VmRSS:")
    }

    /// The daemon's peak resident set so far, KiB.
    pub(crate) fn hwm_kib(&self) -> Option<u64> {
        super::pid_status_kib(self.pid(), "VmHWM:")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The fields of the last "pass done" log line (JSON logs).
    pub(crate) fn last_pass(&self) -> Option<serde_json::Value> {
        self.log()
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            // The JSON logs are flattened: the message and the fields are top-level keys.
            .find(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("pass done"))
            })
    }

    async fn metrics(&self) -> Option<String> {
        let resp = self
            .http
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        resp.text().await.ok()
    }

    /// Passes of any result so far; `None` while the endpoint does not answer.
    pub(crate) async fn passes(&self) -> Option<f64> {
        let text = self.metrics().await?;
        Some(
            ["converged", "partial", "error"]
                .iter()
                .filter_map(|r| {
                    sample_value(
                        &text,
                        &format!("atlas_linkd_reconcile_passes_total{{result=\"{r}\"}}"),
                    )
                })
                .sum(),
        )
    }

    /// Polls until more than `before` passes have ended; fails after `deadline` or if the daemon exits.
    pub(crate) async fn wait_passes_beyond(
        &mut self,
        before: f64,
        deadline: Duration,
    ) -> Result<f64> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(n) = self.passes().await
                && n > before
            {
                return Ok(n);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the daemon exited ({status})\n--- log\n{}", self.log());
            }
            if Instant::now() > end {
                bail!(
                    "no pass beyond {before} within {deadline:?}\n--- log tail\n{}",
                    tail(&self.log(), 20)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn sample_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(sample)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What one measured `--once` run did.
pub(crate) struct OnceRun {
    /// Process start to exit, as the parent saw it.
    pub(crate) wall: Duration,
    /// The child's peak resident set (`/usr/bin/time -f %M`: the kernel's `ru_maxrss` of the waited-for
    /// process), KiB.
    pub(crate) max_rss_kib: u64,
    /// The highest `VmHWM` read from /proc every 5 ms while it ran, KiB: a cross-check of
    /// `max_rss_kib` that can only miss the growth of its last few milliseconds.
    pub(crate) sampled_hwm_kib: Option<u64>,
    pub(crate) exit_code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// A process group that is killed when dropped: `/usr/bin/time` and the binary under it.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // The group's id is its leader's pid (`process_group(0)`), and we made that leader.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(format!("-{}", self.0.id()))
                .status();
            let _ = self.0.wait();
        }
    }
}

/// Runs `atlas-linkd --config CONFIG --once` under `/usr/bin/time`, in its own process group (killed
/// if the benchmark fails before it ends); fails after `deadline`.
pub(crate) async fn once_measured(
    dir: &Path,
    config: &Path,
    deadline: Duration,
) -> Result<OnceRun> {
    let time_out = dir.join("time.out");
    let (out, err) = (dir.join("once.stdout"), dir.join("once.stderr"));
    let inner = binary(config);
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&time_out)
        .arg(inner.get_program())
        .args(inner.get_args())
        .arg("--once")
        .env_clear()
        .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?)
        .process_group(0);
    let started = Instant::now();
    let mut group = Group(
        cmd.spawn()
            .context("start /usr/bin/time atlas-linkd --once")?,
    );
    let time_pid = group.0.id();
    let mut binary_pid: Option<u32> = None;
    let mut sampled_hwm_kib: Option<u64> = None;
    let status = loop {
        if let Some(status) = group.0.try_wait()? {
            break status;
        }
        if binary_pid.is_none() {
            binary_pid =
                std::fs::read_to_string(format!("/proc/{time_pid}/task/{time_pid}/children"))
                    .ok()
                    .and_then(|c| c.split_whitespace().next()?.parse().ok());
        }
        if let Some(hwm) = binary_pid.and_then(|pid| super::pid_status_kib(pid, "VmHWM:")) {
            sampled_hwm_kib = sampled_hwm_kib.max(Some(hwm));
        }
        if started.elapsed() > deadline {
            bail!("--once did not end within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let wall = started.elapsed();
    let time_text = std::fs::read_to_string(&time_out).context("read /usr/bin/time's output")?;
    // `time` prints "Command exited with non-zero status N" before the format's line when it does.
    let max_rss_kib = time_text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .with_context(|| format!("no %M in /usr/bin/time's output: {time_text:?}"))?;
    Ok(OnceRun {
        wall,
        max_rss_kib,
        sampled_hwm_kib,
        exit_code: status.code(),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    })
}
