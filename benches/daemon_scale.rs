//! The real binary (`target/release/atlas-linkd`, a child process) against the fake Atlas in this
//! process, at three scales: `cargo bench --bench daemon_scale [-- small|100k|1m]` (no argument: all
//! three, about six minutes on 2 cores).
//!
//! Prints figures, asserts only that the scenario did what it says (no creates where none are due,
//! one per edit or save, no duplicates). Every memory figure is the child's: `VmRSS`/`VmHWM` from
//! /proc/PID/status for the daemon, `/usr/bin/time -f %M` (the kernel's `ru_maxrss`) for `--once`.
//! CPU time comes from /proc/PID/stat in clock ticks (10 ms at the usual `CLK_TCK` of 100).
//!
//! - `small`: 100 links (4 projects × 25) that the daemon's start-up pass creates; then 30 s idle
//!   (RSS, CPU, API calls) and ten saves of a new one-link file: time from the rename into the watched
//!   directory to the fake holding that link (the debounce, 250 ms, is part of it).
//! - `100k`: 100,000 links, 1,000 projects × 100, in 20 files (15 MB of YAML), converged beforehand:
//!   the fake holds every connection (inserted directly) and the ledger records each as adopted with
//!   its id (written directly by this process), so a pass has nothing to create. Then a no-op `--once`
//!   (wall, peak RSS); the daemon: start-up to the first pass done, RSS after it and after 30 s idle
//!   (and that window's CPU), ten one-file edits (a big file rewritten with one link added, each
//!   waited for until its pass ends) and the RSS after them against idle, ten saves of a new one-link
//!   file as in `small`.
//! - `1m`: 1,000,000 links, 10,000 projects × 100, in 200 files (the `100k` files' shape, ten times
//!   as many), converged the same way; a no-op `--once`, twice: wall and peak RSS. The creating pass
//!   at this scale is not run: at the executor's 1,400 creates/s it would take twelve minutes.
//! - `1m-hold` (only when named): the `1m` state with the fake kept up until Ctrl-C, and the command
//!   line of a `--once` against it, to run by hand under a profiler.
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

use anyhow::{Context, Result, bail, ensure};
use fake_atlas::{FakeAtlas, FakeConfig};
use std::path::Path;
use std::time::{Duration, Instant};

mod support;
use support::daemon::{Daemon, OnceRun, free_port, once_measured, write_config};
use support::{Scale, mb, pid_cpu_ticks, tick, write_adopted_ledger};

const IDLE_WINDOW: Duration = Duration::from_secs(30);
const EDITS: usize = 10;
const SAVES: usize = 10;
/// No resync during a measurement: every pass is one the benchmark caused.
const DAEMON_EXTRA: &str = "reconcile:\n  resync_interval_secs: 86400\n";
const NOW: i64 = 1_700_000_000;

const SCALE_100K: Scale = Scale {
    files: 20,
    projects: 1_000,
    links: 100,
};
const SCALE_1M: Scale = Scale {
    files: 200,
    projects: 10_000,
    links: 100,
};

fn main() {
    // `cargo bench` passes `--bench`; anything else picks the scenarios.
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| picked.is_empty() || picked.iter().any(|p| p == name);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        if want("small") {
            small().await.context("scenario small")?;
        }
        if want("100k") {
            hundred_k().await.context("scenario 100k")?;
        }
        if want("1m") {
            one_million().await.context("scenario 1m")?;
        }
        // Only when named: the 1m state and fake kept up for runs by hand (profiling).
        if picked.iter().any(|p| p == "1m-hold") {
            one_million_held().await.context("scenario 1m-hold")?;
        }
        anyhow::Ok(())
    });
    if let Err(e) = result {
        eprintln!("daemon_scale failed: {e:#}");
        std::process::exit(1);
    }
}

async fn fake() -> Result<FakeAtlas> {
    // No bucket: the rate limit is not what these scenarios measure.
    Ok(FakeAtlas::start(FakeConfig {
        bucket: None,
        ..FakeConfig::default()
    })
    .await?)
}

fn median_range(samples: &[Duration]) -> String {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    if n == 0 {
        return "no samples".into();
    }
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    format!(
        "median {median:.0} ms, range {:.0}–{:.0} ms ({n} samples)",
        ms[0],
        ms[n - 1]
    )
}

/// Writes `text` to `dir/name` atomically: a temp file outside the watched directory, renamed in.
fn save_atomically(dir: &Path, scratch: &Path, name: &str, text: &str) -> Result<Instant> {
    let tmp = scratch.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    let at = Instant::now();
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(at)
}

/// CPU and API calls of the daemon over `IDLE_WINDOW`, and its RSS at the end.
async fn idle_window(daemon: &Daemon, fake: &FakeAtlas, what: &str) -> Result<u64> {
    let calls_before = fake.counters().total_requests();
    let ticks_before = pid_cpu_ticks(daemon.pid());
    // A measurement window, not a synchronisation: the daemon is meant to do nothing during it.
    tokio::time::sleep(IDLE_WINDOW).await;
    let ticks = pid_cpu_ticks(daemon.pid()).saturating_sub(ticks_before);
    let calls = fake.counters().total_requests() - calls_before;
    let rss = daemon.rss_kib().context("the daemon's VmRSS")?;
    let cpu = tick() * u32::try_from(ticks).unwrap_or(u32::MAX);
    println!(
        "  idle {what} ({} s window): CPU {} ticks = {:.2} s = {:.3} % of one core (resolution {:.3} %); \
         API calls {calls}; RSS at the end {:.1} MB",
        IDLE_WINDOW.as_secs(),
        ticks,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / IDLE_WINDOW.as_secs_f64() * 100.0,
        tick().as_secs_f64() / IDLE_WINDOW.as_secs_f64() * 100.0,
        mb(Some(rss))
    );
    ensure!(calls == 0, "an idle daemon made {calls} API calls");
    Ok(rss)
}

/// Ten saves of a one-link file for a new project; the time from each rename to the fake holding the
/// link, polled every millisecond. Each save's pass ends before the next save.
async fn saves(
    daemon: &mut Daemon,
    fake: &FakeAtlas,
    dir: &Path,
    first_project: usize,
) -> Result<Vec<Duration>> {
    let manifests = dir.join("manifests");
    let mut samples = Vec::new();
    for i in 0..SAVES {
        let group = Scale::project_id(first_project + i);
        let yaml = format!(
            "projects:\n  - groupId: \"{group}\"\n    links:\n      - {{name: saved-{i}, provider: AWS, vendor: S3, \
             region: us-east-1, serviceEndpointId: com.amazonaws.us-east-1.s3-saved-{i}}}\n"
        );
        let passes = daemon
            .passes()
            .await
            .context("the metrics endpoint answers")?;
        let saved = save_atomically(&manifests, dir, &format!("saved-{i}.yaml"), &yaml)?;
        let deadline = saved + Duration::from_secs(60);
        while fake.connections(&group).is_empty() {
            if Instant::now() > deadline {
                bail!(
                    "save {i}: no create within 60 s\n--- log tail\n{}",
                    support::daemon::tail(&daemon.log(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(saved.elapsed());
        daemon
            .wait_passes_beyond(passes, Duration::from_secs(60))
            .await?;
    }
    Ok(samples)
}

async fn small() -> Result<()> {
    println!(
        "== small: 100 links (4 projects × 25), created by the daemon's start-up pass; fake in this process"
    );
    let fake = fake().await?;
    let dir = tempfile::tempdir()?;
    support::write_s3_manifest(dir.path(), 0x5c_0000_0000, 4, 25);
    let port = free_port()?;
    let config = write_config(dir.path(), &fake.base_url(), Some(port), DAEMON_EXTRA)?;
    let mut daemon = Daemon::spawn(&config, port, dir.path().join("daemon.log"))?;
    daemon
        .wait_passes_beyond(0.0, Duration::from_secs(60))
        .await?;
    println!(
        "  start-up to first pass done: {:.0} ms (100 creates); RSS after it {:.1} MB",
        daemon.started.elapsed().as_secs_f64() * 1e3,
        mb(daemon.rss_kib())
    );
    ensure!(fake.counters().creates_committed == 100, "100 creates");
    idle_window(&daemon, &fake, "daemon, 100 links converged").await?;
    let samples = saves(&mut daemon, &fake, dir.path(), 0x5d_0000_0000).await?;
    println!(
        "  save of a new one-link file (rename) to the fake holding that link: {} (the debounce included; a file renamed into place needs no second read)",
        median_range(&samples)
    );
    println!(
        "  daemon RSS after the saves {:.1} MB, peak (VmHWM) {:.1} MB",
        mb(daemon.rss_kib()),
        mb(daemon.hwm_kib())
    );
    drop(daemon);
    fake.shutdown().await;
    Ok(())
}

/// Writes the manifests of `scale` into `dir/manifests`, inserts every link into the fake and records
/// it as adopted with the fake's id in `dir/ledger.db`: the converged state, without a creating pass.
async fn converged_state(dir: &Path, scale: Scale, fake: &FakeAtlas) -> Result<()> {
    let started = Instant::now();
    let manifests = dir.join("manifests");
    std::fs::create_dir(&manifests)?;
    let bytes = scale.write(&manifests)?;
    let desired = {
        let manifests = manifests.clone();
        tokio::task::spawn_blocking(move || atlas_linkd::manifest::load(&[manifests]))
            .await?
            .map_err(|p| anyhow::anyhow!("unexpected problems: {p}"))?
    };
    ensure!(desired.link_count() == scale.link_count());
    let mut ids = Vec::with_capacity(desired.link_count());
    for link in desired.links() {
        let body: serde_json::Value = serde_json::from_str(&link.spec.to_json())?;
        ids.push(fake.insert(link.key.group_id.as_str(), body));
    }
    let ledger = dir.join("ledger.db");
    tokio::task::spawn_blocking(move || {
        write_adopted_ledger(&ledger, &desired, NOW, |i, _| ids[i].clone())
    })
    .await??;
    println!(
        "  set-up: {} files, {:.1} MB of YAML; {} connections inserted into the fake and {} ledger rows \
         written (adopted, DONE) by this process in {:.1} s",
        scale.files,
        bytes as f64 / 1e6,
        scale.link_count(),
        scale.link_count(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A no-op `--once` over the converged state: fails unless it exits 0 without a create.
async fn noop_once(dir: &Path, fake: &FakeAtlas, what: &str) -> Result<OnceRun> {
    let creates = fake.counters().requests_of("create");
    let config = write_config(dir, &fake.base_url(), None, "")?;
    let run = once_measured(dir, &config, Duration::from_secs(600)).await?;
    ensure!(
        run.exit_code == Some(0),
        "--once exited {:?}\n{}\n{}",
        run.exit_code,
        run.stdout,
        support::daemon::tail(&run.stderr, 20)
    );
    ensure!(
        fake.counters().requests_of("create") == creates,
        "the no-op --once created"
    );
    println!(
        "  no-op --once, {what}: wall {:.2} s (process start to exit), peak RSS {:.1} MB (/usr/bin/time %M; \
         VmHWM sampled every 5 ms: {:.1} MB)",
        run.wall.as_secs_f64(),
        mb(Some(run.max_rss_kib)),
        mb(run.sampled_hwm_kib)
    );
    print_phases(&run.stderr);
    Ok(run)
}

/// The `atlas_linkd::phases` lines of a run's log, as a table (none unless `RUST_LOG` enables them).
fn print_phases(stderr: &str) {
    for line in stderr
        .lines()
        .filter(|l| l.contains("\"atlas_linkd::phases\""))
    {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        println!(
            "    {:<24} {:>7} ms  RSS {:>5} MB  peak {:>5} MB",
            v["phase"].as_str().unwrap_or("?"),
            v["elapsed_ms"],
            v["rss_mb"],
            v["hwm_mb"]
        );
    }
}

async fn hundred_k() -> Result<()> {
    println!(
        "== 100k: 100,000 links, 1,000 projects × 100, 20 files; converged beforehand; fake in this process"
    );
    let fake = fake().await?;
    let dir = tempfile::tempdir()?;
    converged_state(dir.path(), SCALE_100K, &fake).await?;
    noop_once(
        dir.path(),
        &fake,
        "100,000 links (lists all 1,000 projects)",
    )
    .await?;

    let port = free_port()?;
    let config = write_config(dir.path(), &fake.base_url(), Some(port), DAEMON_EXTRA)?;
    let mut daemon = Daemon::spawn(&config, port, dir.path().join("daemon.log"))?;
    daemon
        .wait_passes_beyond(0.0, Duration::from_secs(600))
        .await?;
    let startup = daemon.started.elapsed();
    let after_first = daemon.rss_kib().context("VmRSS")?;
    let pass = daemon.last_pass().context("a pass-done log line")?;
    ensure!(
        pass["created"] == 0 && pass["unchanged"] == SCALE_100K.link_count(),
        "the start-up pass was not a no-op: {pass}"
    );
    println!(
        "  daemon start-up (spawn) to first pass done: {:.2} s (the pass lists all 1,000 projects; 0 created, \
         {} unchanged); RSS right after it {:.1} MB, peak so far (VmHWM) {:.1} MB",
        startup.as_secs_f64(),
        pass["unchanged"],
        mb(Some(after_first)),
        mb(daemon.hwm_kib())
    );
    let idle = idle_window(&daemon, &fake, "daemon, 100,000 links converged").await?;

    let manifests = dir.path().join("manifests");
    let mut edit_times = Vec::new();
    let mut rss_after = Vec::new();
    for e in 0..EDITS {
        let creates = fake.counters().creates_committed;
        let passes = daemon.passes().await.context("metrics")?;
        let text = SCALE_100K.file_text(e, 1);
        let saved = save_atomically(&manifests, dir.path(), &Scale::file_name(e), &text)?;
        daemon
            .wait_passes_beyond(passes, Duration::from_secs(120))
            .await?;
        edit_times.push(saved.elapsed());
        rss_after.push(daemon.rss_kib().context("VmRSS")?);
        ensure!(
            fake.counters().creates_committed == creates + 1,
            "edit {e} did not create its one new link"
        );
    }
    let after_edits = *rss_after.last().context("ten edits")?;
    println!(
        "  ten one-file edits (a 0.77 MB file rewritten by rename with one link added; one create each): \
         rename to pass done {}",
        median_range(&edit_times)
    );
    println!(
        "  RSS after each edit's pass, MB: {}",
        rss_after
            .iter()
            .map(|k| format!("{:.0}", mb(Some(*k))))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  RSS after the ten edits {:.1} MB = {:+.0} % of idle ({:.1} MB)",
        mb(Some(after_edits)),
        (after_edits as f64 / idle as f64 - 1.0) * 100.0,
        mb(Some(idle))
    );

    let samples = saves(&mut daemon, &fake, dir.path(), 0x5e_0000_0000).await?;
    println!(
        "  save of a new one-link file (rename) to the fake holding that link: {} (the debounce included; a file renamed into place needs no second read)",
        median_range(&samples)
    );
    println!(
        "  daemon RSS after the saves {:.1} MB; peak over the whole run (VmHWM) {:.1} MB",
        mb(daemon.rss_kib()),
        mb(daemon.hwm_kib())
    );
    let c = fake.counters();
    ensure!(
        c.creates_committed == (EDITS + SAVES) as u64 && c.duplicates == 0,
        "creates {} (want {}), duplicates {}",
        c.creates_committed,
        EDITS + SAVES,
        c.duplicates
    );
    drop(daemon);
    fake.shutdown().await;
    Ok(())
}

async fn one_million() -> Result<()> {
    println!(
        "== 1m: 1,000,000 links, 10,000 projects × 100, 200 files; converged beforehand; fake in this process"
    );
    let fake = fake().await?;
    let dir = tempfile::tempdir()?;
    converged_state(dir.path(), SCALE_1M, &fake).await?;
    for run in 1..=2 {
        noop_once(
            dir.path(),
            &fake,
            &format!("1,000,000 links (lists all 10,000 projects), run {run}"),
        )
        .await?;
    }
    fake.shutdown().await;
    Ok(())
}

/// The `1m` state with the fake kept up until Ctrl-C, for `--once` runs by hand (under `perf`,
/// `heaptrack`, `/usr/bin/time`): prints the command to run.
async fn one_million_held() -> Result<()> {
    let fake = fake().await?;
    let dir = tempfile::tempdir()?;
    converged_state(dir.path(), SCALE_1M, &fake).await?;
    let config = write_config(dir.path(), &fake.base_url(), None, "")?;
    println!(
        "  held: MONGODB_ATLAS_CLIENT_ID={} MONGODB_ATLAS_CLIENT_SECRET={} {} --config {} --once\n  (Ctrl-C ends it)",
        support::env("MONGODB_ATLAS_CLIENT_ID").unwrap_or_default(),
        support::env("MONGODB_ATLAS_CLIENT_SECRET").unwrap_or_default(),
        env!("CARGO_BIN_EXE_atlas-linkd"),
        config.display()
    );
    tokio::signal::ctrl_c().await?;
    fake.shutdown().await;
    Ok(())
}
