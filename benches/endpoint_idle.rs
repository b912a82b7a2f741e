//! `/metrics` latency and create latency of the real daemon while a local user holds 2,000 idle
//! connections to its endpoint, against the same measured in a separate run without them (issue 12,
//! case 2): `cargo bench --bench endpoint_idle`.
//!
//! The daemon (`target/release/atlas-linkd`, a child process) starts with its soft and hard limit on
//! open files at 1,024, the default a unit without `LimitNOFILE=` had; the fake Atlas runs in this
//! process. Each run, on its own daemon and fake:
//!
//! - `/metrics`: 200 scrapes, each on a new connection (as Prometheus after an idle timeout): the time
//!   from connect to the whole body read;
//! - create: 10 saves of a new one-link file (renamed into the watched folder): the time from the
//!   rename to the fake holding the link (the debounce included); each save's pass ends before
//!   the next save.
//!
//! With idle connections, 2,000 are opened before the measurements and kept open by this process to
//! the end; the daemon closes all but its cap of them (the oldest idle first), which is the point.
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

use anyhow::{Context, Result, bail, ensure};
use fake_atlas::{FakeAtlas, FakeConfig};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::daemon::{binary, free_port, sample_value, tail, write_config};

const IDLE: usize = 2_000;
const SCRAPES: usize = 200;
const SAVES: usize = 10;
/// The limit on open files the daemon starts with (soft and hard alike).
const NOFILE: u64 = 1_024;
const EXTRA: &str = "reconcile:\n  resync_interval_secs: 86400\n";

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("endpoint_idle: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    raise_own_nofile()?;
    println!(
        "== endpoint_idle: daemon with {NOFILE} open files (soft and hard); {SCRAPES} scrapes of /metrics on new connections, {SAVES} saves of a new one-link file"
    );
    let quiet = scenario(0).await?;
    let loaded = scenario(IDLE).await?;
    for (name, q, l) in [
        (
            "/metrics (connect to body read)",
            &quiet.scrapes,
            &loaded.scrapes,
        ),
        (
            "save to create at the fake",
            &quiet.creates,
            &loaded.creates,
        ),
    ] {
        println!("  {name}:");
        println!("    without idle connections: {}", summary(q));
        println!("    with {IDLE} idle connections: {}", summary(l));
    }
    println!(
        "  idle connections still open at the daemon at the end: {} of {IDLE} (its cap is {})",
        loaded.held,
        atlas_linkd::endpoint::connection_cap(NOFILE)
    );
    Ok(())
}

struct Figures {
    scrapes: Vec<Duration>,
    creates: Vec<Duration>,
    held: usize,
}

async fn scenario(idle: usize) -> Result<Figures> {
    let fake = FakeAtlas::start(FakeConfig::default()).await?;
    let dir = tempfile::tempdir()?;
    support::write_s3_manifest(dir.path(), 0x1d_0000_0000, 1, 2);
    let port = free_port()?;
    let config = write_config(dir.path(), &fake.base_url(), Some(port), EXTRA)?;
    let log = dir.path().join("daemon.log");
    let mut cmd = binary(&config);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    // SAFETY: `setrlimit` is async-signal-safe, and the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let daemon = Killed(cmd.spawn().context("start atlas-linkd")?);
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()?;
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let passes = async || -> Option<f64> {
        let text = http
            .get(&metrics_url)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
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
    };
    let wait_passes_beyond = async |before: f64| -> Result<()> {
        let end = Instant::now() + Duration::from_secs(60);
        while passes().await.is_none_or(|n| n <= before) {
            if Instant::now() > end {
                bail!(
                    "no pass beyond {before}\n--- log\n{}",
                    tail(&read_log(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    };
    wait_passes_beyond(0.0).await?;
    ensure!(
        fake.counters().creates_committed == 2,
        "the start-up pass created 2"
    );

    let mut held = Vec::with_capacity(idle);
    for _ in 0..idle {
        held.push(std::net::TcpStream::connect(("127.0.0.1", port))?);
    }

    let mut scrapes = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let started = Instant::now();
        let resp = http.get(&metrics_url).send().await?;
        ensure!(resp.status() == 200, "/metrics answered {}", resp.status());
        let body = resp.text().await?;
        scrapes.push(started.elapsed());
        ensure!(
            body.contains("atlas_linkd_creates_total"),
            "a whole exposition"
        );
    }

    let manifests = dir.path().join("manifests");
    let mut creates = Vec::with_capacity(SAVES);
    for i in 0..SAVES {
        let group = format!("{:024x}", 0x1e_0000_0000u64 + i as u64);
        let yaml = format!(
            "projects:\n  - groupId: \"{group}\"\n    links:\n      - {{name: saved-{i}, provider: AWS, vendor: S3, \
             region: us-east-1, serviceEndpointId: com.amazonaws.us-east-1.s3-saved-{i}}}\n"
        );
        let before = passes().await.context("the metrics endpoint answers")?;
        let saved = save_atomically(&manifests, dir.path(), &format!("saved-{i}.yaml"), &yaml)?;
        let deadline = saved + Duration::from_secs(60);
        while fake.connections(&group).is_empty() {
            if Instant::now() > deadline {
                bail!(
                    "save {i}: no create within 60 s\n--- log\n{}",
                    tail(&read_log(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        creates.push(saved.elapsed());
        wait_passes_beyond(before).await?;
    }
    let still_open = held.iter().filter(|s| is_open(s)).count();
    drop(held);
    drop(daemon);
    fake.shutdown().await;
    Ok(Figures {
        scrapes,
        creates,
        held: still_open,
    })
}

/// Whether the daemon still holds a connection: a peek that would block means it is open; an end of
/// stream means the daemon closed it.
fn is_open(stream: &std::net::TcpStream) -> bool {
    let mut buf = [0u8; 1];
    stream.set_nonblocking(true).is_ok()
        && matches!(stream.peek(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Writes `text` to `dir/name` atomically: a temp file outside the watched directory, renamed in.
fn save_atomically(dir: &Path, scratch: &Path, name: &str, text: &str) -> Result<Instant> {
    let tmp = scratch.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    let at = Instant::now();
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(at)
}

fn summary(samples: &[Duration]) -> String {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.2} ms, p90 {:.2} ms, max {:.2} ms (n = {})",
        at(0.5),
        at(0.9),
        at(1.0),
        ms.len()
    )
}

/// This process holds the idle connections: its soft limit goes up to its hard limit.
fn raise_own_nofile() -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a local struct.
    unsafe {
        ensure!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0,
            "getrlimit"
        );
        lim.rlim_cur = lim.rlim_max;
        ensure!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0, "setrlimit");
    }
    ensure!(
        lim.rlim_cur > IDLE as u64 + 200,
        "the hard limit on open files ({}) is too low for {IDLE} connections",
        lim.rlim_cur
    );
    Ok(())
}

/// A child killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
