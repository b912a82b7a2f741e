//! The daemon soak, for long: `cargo bench --bench soak` (10 minutes, or `ATLAS_LINKD_SOAK_SECS`),
//! `cargo bench --bench soak -- 120` (2 minutes). `ATLAS_LINKD_SOAK_SEED` repeats a run's faults and
//! edits.
//!
//! The scenario of the integration test `tests/binary/soak.rs`, run for minutes and measured: the
//! real binary (a child process) as a daemon against the fake Atlas in this process. The fake accepts
//! a duplicate create (so any duplicate the daemon makes shows), moves each connection through `IDLE`
//! and `WORKING` (1.5 s each) to `DONE`, keeps a deleted one visible for 1 s, and faults on every
//! call (5 % 500s; creates also 2 % connection resets and 2 % 504s, each committed all the same).
//! Three projects, one manifest file each, of 8 steady links no edit touches and 4 churn links that
//! edits declare and undeclare; prune is on (3 s grace). Every 3 s one churn link of a random project
//! flips (its file rewritten); every 7 s the config is rewritten unchanged and the daemon gets a
//! SIGHUP; every 50 ms the fake is read (live connections per far end, when each connection stopped
//! being live); every 10 s the daemon's RSS (`VmRSS`) and open files (`/proc/PID/fd`) are sampled.
//!
//! At the end the edits stop and the run waits (up to 60 s) for the fake to hold exactly the declared
//! far ends once each. Printed: edits, reloads, creates and deletes sent, connections ever created,
//! duplicates (far ends that ever had two live connections at once), deletes the edit timeline does
//! not explain (the test's rule), passes by result, convergence and how long it took, and the RSS and
//! open-files samples. Nothing about time is asserted; the exit status is 1 if a duplicate or an
//! unexplained delete happened. The run's folder (config, manifests, ledger, the daemon's JSON log)
//! is kept under `target/tmp/` and named in the output.
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

use anyhow::{Context, Result, bail};
use fake_atlas::FakeAtlas;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

mod support;
use support::daemon::{Daemon, free_port, sample_value, tail};
use support::mb;

/// The soak's world, shared with the integration test.
#[allow(dead_code)]
#[path = "../tests/support/soak.rs"]
mod soak;
use soak::{
    CHURN, EDIT_EVERY, Edits, PROJECTS, RELOAD_EVERY, STEADY, Timeline, WATCH_EVERY, config_yaml,
    differences, fake_config, far_end, group, link_name, live_far_ends,
};

const DEFAULT_SECS: u64 = 600;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);
const STOP_WITHIN: Duration = Duration::from_secs(30);
/// Log lines shown per far end or connection that went wrong.
const LOG_LINES: usize = 40;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run()) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak failed: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The first argument that is not an option (`cargo bench` passes `--bench`), else
/// `ATLAS_LINKD_SOAK_SECS`, else 10 minutes.
fn soak_secs() -> Result<u64> {
    if let Some(arg) = std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        return arg
            .parse()
            .with_context(|| format!("the duration {arg:?} is not a number of seconds"));
    }
    match std::env::var("ATLAS_LINKD_SOAK_SECS") {
        Ok(s) => s
            .parse()
            .with_context(|| format!("ATLAS_LINKD_SOAK_SECS={s:?} is not a number of seconds")),
        Err(_) => Ok(DEFAULT_SECS),
    }
}

fn seed() -> u64 {
    std::env::var("ATLAS_LINKD_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64
        })
}

/// One reading of the daemon from /proc.
struct Sample {
    at: Duration,
    rss_kib: Option<u64>,
    open_files: Option<usize>,
}

fn sample(pid: u32, at: Duration) -> Sample {
    Sample {
        at,
        rss_kib: support::pid_status_kib(pid, "VmRSS:"),
        open_files: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(Iterator::count),
    }
}

/// Sends `sig` (`HUP`, `TERM`) to `pid` with `kill`.
fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -{sig} {pid}: {status}");
    }
    Ok(())
}

/// Whether the daemon still runs: a process that has exited (a zombie until it is reaped) has no
/// `VmRSS` in /proc/PID/status.
fn running(daemon: &Daemon) -> bool {
    daemon.rss_kib().is_some()
}

async fn metrics_text(http: &reqwest::Client, port: u16) -> Option<String> {
    let resp = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    resp.text().await.ok()
}

/// A request count by answer: `total (200: n, 500: n, …)`; status 0 is a connection dropped.
fn by_status(by: Option<&BTreeMap<u16, u64>>) -> String {
    let Some(by) = by else {
        return "0".into();
    };
    let total: u64 = by.values().sum();
    let parts: Vec<String> = by
        .iter()
        .map(|(s, n)| {
            if *s == 0 {
                format!("dropped: {n}")
            } else {
                format!("{s}: {n}")
            }
        })
        .collect();
    format!("{total} ({})", parts.join(", "))
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn mb_text(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MB", mb(Some(k))))
}

fn files_text(n: Option<usize>) -> String {
    n.map_or("-".into(), |n| n.to_string())
}

/// The lines of `log` that contain any of `needles`, the last `LOG_LINES` of them.
fn log_lines(log: &str, needles: &[String]) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n.as_str())))
        .collect();
    tail(&lines.join("\n"), LOG_LINES)
}

async fn run() -> Result<bool> {
    let duration = Duration::from_secs(soak_secs()?);
    let seed = seed();
    let fake = FakeAtlas::start(fake_config(seed))
        .await
        .context("start the fake Atlas")?;

    // Kept after the run: the daemon's log is the evidence for anything that went wrong.
    let dir: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("soak-{seed}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("manifests"))
        .with_context(|| format!("create {}", dir.display()))?;
    let log_path = dir.join("daemon.log");
    println!(
        "== soak: {} s; seed {seed}; {PROJECTS} projects × ({STEADY} steady + {CHURN} churn) links; folder {}",
        duration.as_secs(),
        dir.display()
    );

    // Where each (project, link name) is, for the log lines of a far end that went wrong.
    let mut key_of: HashMap<String, String> = HashMap::new();
    let mut timeline = Timeline::default();
    let mut edits = Edits::start(&dir, seed, &mut timeline)?;
    for p in 0..PROJECTS {
        for (churn, count) in [(false, STEADY), (true, CHURN)] {
            for l in 0..count {
                let name = link_name(churn, l);
                key_of.insert(far_end(p, &name), format!("{}/{name}", group(p)));
            }
        }
    }
    let port = free_port()?;
    let config_path = dir.join("config.yaml");
    let config = config_yaml(&fake.base_url(), port);
    std::fs::write(&config_path, &config).context("write the config")?;
    let daemon = Daemon::spawn(&config_path, port, log_path.clone())?;
    let pid = daemon.pid();
    let http = reqwest::Client::builder().no_proxy().build()?;

    let started = Instant::now();
    let end = started + duration;
    let mut next_edit = started + EDIT_EVERY;
    let mut next_reload = started + RELOAD_EVERY;
    let mut next_sample = started;
    let mut samples: Vec<Sample> = Vec::new();
    let mut reloads = 0u64;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while Instant::now() < end {
        tick.tick().await;
        timeline.observe(&fake);
        if !running(&daemon) {
            bail!(
                "the daemon exited during the soak (seed {seed}); log {}\n--- log tail\n{}",
                log_path.display(),
                tail(&daemon.log(), 30)
            );
        }
        let now = Instant::now();
        if now >= next_sample {
            samples.push(sample(pid, now - started));
            next_sample += SAMPLE_EVERY;
        }
        if now >= next_edit {
            edits.flip(&dir, &mut timeline)?;
            next_edit += EDIT_EVERY;
        }
        if now >= next_reload {
            std::fs::write(&config_path, &config).context("rewrite the config")?;
            signal(pid, "HUP")?;
            reloads += 1;
            next_reload += RELOAD_EVERY;
        }
    }
    let edits_stopped = Instant::now();

    // Quiet: the fake keeps its faults; the daemon converges by its resyncs and prune's grace.
    let want = edits.wanted();
    let converged_after = loop {
        tick.tick().await;
        timeline.observe(&fake);
        if live_far_ends(&fake) == want {
            break Some(edits_stopped.elapsed());
        }
        if edits_stopped.elapsed() > CONVERGE_WITHIN || !running(&daemon) {
            break None;
        }
    };
    let still_different = differences(&want, &live_far_ends(&fake));
    let counters = fake.counters();
    let metrics = metrics_text(&http, port).await;
    let passes: Vec<(&str, Option<f64>)> = ["converged", "partial", "error"]
        .into_iter()
        .map(|r| {
            let sample_name = format!("atlas_linkd_reconcile_passes_total{{result=\"{r}\"}}");
            (
                r,
                metrics
                    .as_deref()
                    .and_then(|text| sample_value(text, &sample_name)),
            )
        })
        .collect();
    let failed_passes = passes
        .iter()
        .find(|(r, _)| *r == "error")
        .and_then(|(_, n)| *n);
    let last = sample(pid, started.elapsed());

    // A clean stop, as systemd would ask for it.
    let stopping = Instant::now();
    let stopped_after = if running(&daemon) {
        signal(pid, "TERM")?;
        loop {
            tick.tick().await;
            if !running(&daemon) {
                break Some(stopping.elapsed());
            }
            if stopping.elapsed() > STOP_WITHIN {
                break None;
            }
        }
    } else {
        None
    };

    let duplicated = timeline.duplicated();
    let unexplained = timeline.unexplained_deletes(started);

    println!(
        "  duration: {} of edits (asked {} s)",
        secs(edits_stopped - started),
        duration.as_secs()
    );
    println!(
        "  edits: {} ({} declares, {} undeclares); reloads (SIGHUP): {reloads}",
        edits.count,
        edits.declares,
        edits.count - edits.declares
    );
    println!(
        "  creates sent: {}; committed by the fake: {}",
        by_status(counters.requests.get("create")),
        counters.creates_committed
    );
    println!(
        "  connections ever created (distinct ids seen): {}",
        timeline.far_end_of.len()
    );
    println!(
        "  deletes sent: {}",
        by_status(counters.requests.get("delete"))
    );
    println!("  connections seen deleted: {}", timeline.deleted_at.len());
    println!("  API calls in all: {}", counters.total_requests());
    println!(
        "  duplicates (far ends with more than one live connection at once): {}",
        duplicated.len()
    );
    for (end, n) in &duplicated {
        println!("    {end}: {n} live at once");
    }
    println!(
        "  deletes the edit timeline does not explain: {}",
        unexplained.len()
    );
    for (id, end, at, was_declared) in &unexplained {
        println!(
            "    {id} ({end}) stopped being live at {}; declared then: {was_declared}",
            secs(*at)
        );
    }
    println!(
        "  failed passes: {}",
        failed_passes.map_or("unknown (no /metrics)".into(), |n| n.to_string())
    );
    let by_result: Vec<String> = passes
        .iter()
        .map(|(r, n)| format!("{r} {}", n.map_or("?".into(), |n| n.to_string())))
        .collect();
    println!("  passes by result: {}", by_result.join(", "));
    match converged_after {
        Some(d) => println!(
            "  converged at end: yes, {} after the edits stopped ({} far ends, each once)",
            secs(d),
            want.len()
        ),
        None => println!(
            "  converged at end: no, within {}; far end: (want, have): {still_different:?}",
            secs(CONVERGE_WITHIN)
        ),
    }
    match stopped_after {
        Some(d) => println!("  stopped on SIGTERM: yes, in {:.0} ms", support::ms(d)),
        None => println!("  stopped on SIGTERM: no, within {}", secs(STOP_WITHIN)),
    }

    let rss: Vec<u64> = samples
        .iter()
        .chain([&last])
        .filter_map(|s| s.rss_kib)
        .collect();
    let files: Vec<usize> = samples
        .iter()
        .chain([&last])
        .filter_map(|s| s.open_files)
        .collect();
    println!(
        "  RSS: min {}, max {}; open files: min {}, max {} ({} samples, every {} s, and one at the end)",
        mb_text(rss.iter().min().copied()),
        mb_text(rss.iter().max().copied()),
        files_text(files.iter().min().copied()),
        files_text(files.iter().max().copied()),
        samples.len(),
        SAMPLE_EVERY.as_secs()
    );
    println!("      time      RSS  open files");
    let per_minute = (60 / SAMPLE_EVERY.as_secs()) as usize;
    for s in samples.iter().step_by(per_minute).chain([&last]) {
        println!(
            "    {:>6}  {:>7}  {:>10}",
            format!("{:.0} s", s.at.as_secs_f64()),
            mb_text(s.rss_kib),
            files_text(s.open_files)
        );
    }
    println!("  daemon log: {}", log_path.display());

    let log = daemon.log();
    for end in duplicated.keys() {
        let mut needles = vec![(*end).to_owned()];
        needles.extend(key_of.get(*end).cloned());
        needles.extend(
            timeline
                .far_end_of
                .iter()
                .filter(|(_, e)| e.as_str() == *end)
                .map(|(id, _)| id.clone()),
        );
        println!(
            "--- log lines of duplicated far end {end}\n{}",
            log_lines(&log, &needles)
        );
    }
    for (id, end, _, _) in &unexplained {
        let mut needles = vec![id.clone()];
        needles.extend(key_of.get(end).cloned());
        println!(
            "--- log lines of connection {id} ({end})\n{}",
            log_lines(&log, &needles)
        );
    }
    if failed_passes.is_some_and(|n| n > 0.0) {
        println!(
            "--- log lines of failed passes\n{}",
            log_lines(&log, &["pass failed".to_owned()])
        );
    }
    let ok = duplicated.is_empty() && unexplained.is_empty();
    if !ok {
        println!(
            "soak: FAILED (seed {seed}): {} duplicated far ends, {} unexplained deletes",
            duplicated.len(),
            unexplained.len()
        );
    }
    Ok(ok)
}
