//! A bucket shared with another tool: `cargo bench --bench shared_bucket`.
//!
//! Prints, does not assert (shared machines are noisy). Issue 8's scenario: 3 projects × 60 links,
//! the fake's per-project bucket 20 tokens + 20/s, and a simulated other tool (Terraform, the UI)
//! spending 10 tokens/s of each project's bucket. The config mirrors the bucket, with a reserve of
//! 1 token (5% of 20). Figures cover one `--once`-style pass through the library (one listing and 60
//! creates per project), against the fake in the same process:
//! - our calls and the share of them answered 429;
//! - wall time against the ideal of the refill left to us: per project, the 61 calls less the
//!   bucket's 20 at the start, at 20 - 10 = 10 tokens/s (a computed bound, not a measurement);
//! - the other tool's calls, and how many of them the bucket refused.
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

use atlas_linkd::config::Config;
use atlas_linkd::manifest;
use atlas_linkd::metrics::Metrics;
use atlas_linkd::reconcile::PassOptions;
use atlas_linkd::wiring;
use fake_atlas::{BucketConfig, FakeAtlas, FakeConfig};
use std::time::Instant;

mod support;

/// Project ids start here.
const BASE: u64 = 0x5b_0000_0000;
const PROJECTS: usize = 3;
const LINKS: usize = 60;
const CAPACITY: f64 = 20.0;
const REFILL_PER_SEC: f64 = 20.0;
const OTHER_PER_SEC: f64 = 10.0;
const RUNS: usize = 3;

async fn run_once() {
    let fake = FakeAtlas::start(FakeConfig {
        bucket: Some(BucketConfig {
            capacity: CAPACITY as u32,
            refill: REFILL_PER_SEC as u32,
            period_secs: 1.0,
        }),
        other_client_per_sec: OTHER_PER_SEC,
        ..FakeConfig::default()
    })
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    support::write_s3_manifest(dir.path(), BASE, PROJECTS, LINKS);
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "atlas:\n  base_url: {}\nmanifests: [manifests/]\nledger: ledger.db\nmetrics:\n  listen: null\n\
             rate_limit:\n  capacity: 20\n  refill: 20\n  period_secs: 1\n  reserve: 1\n",
            fake.base_url()
        ),
    )
    .expect("write config");
    let config = Config::load(&config_path, &support::env).expect("config");
    let desired = manifest::load(&config.manifests).expect("manifests");
    let reconciler = wiring::start(&config, Metrics::new(), &support::env).expect("start");
    let options = PassOptions {
        list_all: true,
        wait_for_settle: true,
        ..PassOptions::default()
    };
    let started = Instant::now();
    let report = reconciler.run_pass(&desired, &options).await.expect("pass");
    let wall = started.elapsed().as_secs_f64();
    reconciler.shutdown().await;
    assert!(report.converged(), "{}", report.to_text());
    let c = fake.counters();
    fake.shutdown().await;

    let ideal = ((LINKS + 1) as f64 - CAPACITY).max(0.0) / (REFILL_PER_SEC - OTHER_PER_SEC);
    println!(
        "our calls {}, answered 429: {} ({:.1}%); wall {wall:.2}s against the ideal {ideal:.2}s (ratio {:.2}); \
         the other tool: {} calls, {} refused ({:.1}%)",
        report.api_calls,
        report.rate_limited,
        100.0 * report.rate_limited as f64 / report.api_calls.max(1) as f64,
        wall / ideal,
        c.other_client_calls,
        c.other_client_refused,
        100.0 * c.other_client_refused as f64 / c.other_client_calls.max(1) as f64,
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for _ in 0..RUNS {
            run_once().await;
        }
    });
}
