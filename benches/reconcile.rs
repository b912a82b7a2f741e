//! Executor throughput against the in-process fake Atlas: `cargo bench --bench reconcile`.
//!
//! Prints, does not assert (shared machines are noisy). Scenarios, all with 20 ms fake latency:
//! 1. 10,000 links / 100 projects, concurrency 32: creates per second against the bound concurrency / latency.
//! 2. the same links at concurrency 1 (a 300-link sample, it would take minutes otherwise): the speed-up.
//! 3. a 50-token bucket refilling 50/s per project, in the fake and in the config alike: wall time against
//!    the bucket's ideal, and the 429s received (target: none).

use atlas_linkd::config::Config;
use atlas_linkd::manifest;
use atlas_linkd::metrics::Metrics;
use atlas_linkd::reconcile::{self, PassOptions};
use fake_atlas::{BucketConfig, FakeAtlas, FakeConfig};
use std::time::{Duration, Instant};

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
    let dir = tempfile::tempdir().expect("temp dir");
    support::write_s3_manifest(dir.path(), 0xbe_0000_0000, projects, links);
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "atlas:\n  base_url: {}\nmanifests: [manifests/]\nledger: ledger.db\nmetrics:\n  listen: null\n{config_extra}",
            fake.base_url()
        ),
    )
    .expect("write config");
    let config = Config::load(&config_path, &support::env).expect("config");
    let desired = manifest::load(&config.manifests).expect("manifests");
    let metrics = Metrics::new();
    let reconciler = reconcile::start(&config, metrics.clone(), &support::env).expect("start");
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
    fake.shutdown().await;
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
        let a = run(
            100,
            100,
            no_bucket.clone(),
            &format!("{unlimited}reconcile:\n  concurrency: {c}\n  per_project_concurrency: 4\n"),
        )
        .await;
        let rate_a = a.created as f64 / a.wall.as_secs_f64();
        let bound = c as f64 / (LATENCY_MS as f64 / 1000.0);
        let measured_bound = c as f64 / a.create_latency.as_secs_f64();
        println!(
            "concurrency {c}: {} creates in {:.2}s = {rate_a:.0}/s; bound {bound:.0}/s; ratio {:.2} ({} API calls; CPU {:.2}s)",
            a.created,
            a.wall.as_secs_f64(),
            rate_a / bound,
            a.api_calls,
            a.cpu_secs
        );
        println!(
            "  mean create call {:.1} ms as the client saw it: bound at that latency {measured_bound:.0}/s, ratio {:.2}",
            a.create_latency.as_secs_f64() * 1000.0,
            rate_a / measured_bound
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
        println!("peak RSS: {:.0} MB", peak_rss_mb());
    });
}
