//! Executor throughput against the in-process fake Atlas: `cargo bench --bench reconcile`.
//!
//! Prints, does not assert (shared machines are noisy). Scenarios, all with 20 ms fake latency:
//! 0. the executor's own memory: 10,000 links / 100 projects at concurrency 32 against the fake in a
//!    child process (`atlas-linkd fake-atlas`), run first so that this process's peak RSS (VmHWM) is
//!    the executor's alone (plus this benchmark's few MB of runtime).
//! 1. the same with the fake in this process: creates per second against the bound concurrency /
//!    latency, the nominal one (32 / 20 ms) and the one at the create latency measured in scenario 2's
//!    own quiet run (a latency measured under scenario 1's load would make that ratio 1 by construction).
//! 2. the same links at concurrency 1 (a 300-link sample, it would take minutes otherwise): the speed-up.
//! 3. a 50-token bucket refilling 50/s per project, in the fake and in the config alike: wall time against
//!    the bucket's ideal, and the 429s received (target: none).
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

use atlas_linkd::config::Config;
use atlas_linkd::manifest;
use atlas_linkd::metrics::Metrics;
use atlas_linkd::reconcile::PassOptions;
use atlas_linkd::wiring;
use fake_atlas::{BucketConfig, FakeAtlas, FakeConfig};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

mod support;

fn cpu_secs() -> f64 {
    support::process_cpu().as_secs_f64()
}

fn peak_rss_mb() -> f64 {
    support::status_mb("VmHWM:")
}

const LATENCY_MS: u64 = 20;

struct Outcome {
    created: usize,
    /// Mean wall time of one create call as the client saw it (the fake's latency plus everything else).
    create_latency: Duration,
    wall: Duration,
    cpu_secs: f64,
    rate_limited: u64,
    api_calls: u64,
}

async fn run(projects: usize, links: usize, fake: FakeConfig, config_extra: &str) -> Outcome {
    let fake = FakeAtlas::start(fake).await.expect("fake starts");
    let outcome = run_against(&fake.base_url(), projects, links, config_extra).await;
    fake.shutdown().await;
    outcome
}

/// `atlas-linkd fake-atlas` with `args`, as a child process killed on drop, and its base URL.
async fn fake_process(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_atlas-linkd"))
        .arg("fake-atlas")
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start atlas-linkd fake-atlas");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("the fake prints its base URL");
    (child, line.trim().to_owned())
}

async fn run_against(base_url: &str, projects: usize, links: usize, config_extra: &str) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    support::write_s3_manifest(dir.path(), 0xbe_0000_0000, projects, links);
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "atlas:\n  base_url: {base_url}\nmanifests: [manifests/]\nledger: ledger.db\nmetrics:\n  listen: null\n{config_extra}"
        ),
    )
    .expect("write config");
    let config = Config::load(&config_path, &support::env).expect("config");
    let desired = manifest::load(&config.manifests).expect("manifests");
    let metrics = Metrics::new();
    let reconciler = wiring::start(&config, metrics.clone(), &support::env).expect("start");
    let started = Instant::now();
    let cpu_before = cpu_secs();
    let report = reconciler
        .run_pass(&desired, &PassOptions::default())
        .await
        .expect("pass");
    let wall = started.elapsed();
    let cpu = cpu_secs() - cpu_before;
    reconciler.shutdown().await;
    assert!(report.converged(), "{}", report.to_text());
    Outcome {
        created: report.created.len(),
        create_latency: {
            let h = metrics
                .api_request_duration_seconds
                .with_label_values(&["create"]);
            Duration::from_secs_f64(h.get_sample_sum() / h.get_sample_count().max(1) as f64)
        },
        wall,
        cpu_secs: cpu,
        rate_limited: report.rate_limited,
        api_calls: report.api_calls,
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let no_bucket = FakeConfig {
            latency_ms: LATENCY_MS,
            bucket: None,
            ..FakeConfig::default()
        };
        let unlimited = "rate_limit:\n  capacity: 1000000\n  refill: 1000000\n  period_secs: 1\n";

        let c = 32;
        let concurrency_c =
            format!("{unlimited}reconcile:\n  concurrency: {c}\n  per_project_concurrency: 4\n");

        let before = support::status_kib("VmRSS:");
        let (fake_child, base_url) =
            fake_process(&["--listen", "127.0.0.1:0", "--no-bucket", "--latency-ms", "20"]).await;
        let e = run_against(&base_url, 100, 100, &concurrency_c).await;
        drop(fake_child);
        println!(
            "executor alone (fake in a child process): {} creates at concurrency {c} in {:.2}s = {:.0}/s; \
             this process's RSS before {:.1} MB, peak (VmHWM) {:.1} MB",
            e.created,
            e.wall.as_secs_f64(),
            e.created as f64 / e.wall.as_secs_f64(),
            support::mb(before),
            peak_rss_mb()
        );

        let a = run(100, 100, no_bucket.clone(), &concurrency_c).await;
        let rate_a = a.created as f64 / a.wall.as_secs_f64();
        let bound = c as f64 / (LATENCY_MS as f64 / 1000.0);
        println!(
            "concurrency {c}: {} creates in {:.2}s = {rate_a:.0}/s; bound {bound:.0}/s; ratio {:.2} ({} API calls; CPU {:.2}s)",
            a.created,
            a.wall.as_secs_f64(),
            rate_a / bound,
            a.api_calls,
            a.cpu_secs
        );
        println!(
            "  (mean create call under this load {:.1} ms as the client saw it: a symptom of the load, not a bound)",
            a.create_latency.as_secs_f64() * 1000.0
        );

        let b = run(
            3,
            100,
            no_bucket,
            &format!("{unlimited}reconcile:\n  concurrency: 1\n  per_project_concurrency: 1\n"),
        )
        .await;
        let rate_b = b.created as f64 / b.wall.as_secs_f64();
        println!(
            "concurrency 1: {} creates in {:.2}s = {rate_b:.1}/s; speed-up of concurrency {c}: {:.1}x",
            b.created,
            b.wall.as_secs_f64(),
            rate_a / rate_b
        );
        // The latency of one create with nothing else in flight, from its own run: what concurrency
        // 32 could at best multiply.
        let quiet_bound = c as f64 / b.create_latency.as_secs_f64();
        println!(
            "  mean create call at concurrency 1 {:.1} ms: bound {c} / that = {quiet_bound:.0}/s; concurrency {c} reached {:.2} of it",
            b.create_latency.as_secs_f64() * 1000.0,
            rate_a / quiet_bound
        );

        let bucket = FakeConfig {
            latency_ms: LATENCY_MS,
            bucket: Some(BucketConfig {
                capacity: 50,
                refill: 50,
                period_secs: 1.0,
            }),
            ..FakeConfig::default()
        };
        for projects in [100usize, 20] {
            let links = 100usize;
            let d = run(
                projects,
                links,
                bucket.clone(),
                "rate_limit:\n  capacity: 50\n  refill: 50\n  period_secs: 1\nreconcile:\n  concurrency: 256\n  per_project_concurrency: 8\n",
            )
            .await;
            // Per project: one listing, then `links` creates; 50 tokens at once, the rest at 50 per second.
            let calls = (links + 1) as f64;
            let ideal = ((calls - 50.0).max(0.0) / 50.0) + LATENCY_MS as f64 / 1000.0;
            println!(
                "bucket 50 + 50/s per project, {} links / {projects} projects: {:.2}s against an ideal of {ideal:.2}s (ratio {:.2}); 429s received: {}; CPU {:.2}s",
                d.created,
                d.wall.as_secs_f64(),
                d.wall.as_secs_f64() / ideal,
                d.rate_limited,
                d.cpu_secs
            );
        }
        println!(
            "peak RSS of this process over all scenarios (executor and in-process fake): {:.0} MB",
            peak_rss_mb()
        );
    });
}
