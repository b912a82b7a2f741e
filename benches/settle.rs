//! Killed while Atlas is still committing: `cargo bench --bench settle`.
//!
//! Prints, does not assert. The fake's backend takes 2.5 s to commit a create; `--once` (the release
//! binary, a child process) is killed with `kill -9` while 12 creates are in flight at Atlas, and run
//! again at once. The figure is the rerun's wall time (process start to exit, as a cron job would see
//! it) against its settle window (`reconcile.settle_secs`, here the 5 s timeout): the rerun must wait
//! for the window before a listing may decide, and should not take much longer. Also printed: the
//! creates the rerun sent (0 is right) and the connections Atlas holds (12 is right).
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

use fake_atlas::{DuplicateMode, FakeAtlas, FakeConfig};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;

/// Project ids start here.
const BASE: u64 = 0x5a_0000_0000;
const RUNS: usize = 3;
const SETTLE_SECS: u64 = 5;

async fn run_once() {
    let fake = FakeAtlas::start(FakeConfig {
        commit_delay_ms: 2500,
        duplicates: DuplicateMode::Create,
        ..FakeConfig::default()
    })
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    support::write_s3_manifest(dir.path(), BASE, 3, 4);
    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "atlas:\n  base_url: {}\n  timeout_secs: {SETTLE_SECS}\nmanifests: [manifests/]\nledger: ledger.db\n\
             metrics:\n  listen: null\nreconcile:\n  concurrency: 12\n  per_project_concurrency: 4\n",
            fake.base_url()
        ),
    )
    .expect("write config");
    let once = || {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_atlas-linkd"));
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--once")
            .env_clear()
            .env(
                "MONGODB_ATLAS_CLIENT_ID",
                "mdb_sa_id_0123456789abcdef01234567",
            )
            .env("MONGODB_ATLAS_CLIENT_SECRET", "bench-secret")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd
    };
    let mut child = once().spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.pending_commits() < 12 {
        assert!(
            Instant::now() < deadline,
            "the creates never reached the fake"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().await.expect("kill -9");
    let sent_before = fake.counters().requests_of("create");
    let started = Instant::now();
    let status = once().status().await.expect("rerun");
    let wall = started.elapsed().as_secs_f64();
    let c = fake.counters();
    let held: usize = (0..3)
        .map(|p: usize| fake.connections(&support::project_id(BASE, p)).len())
        .sum();
    println!(
        "rerun exit {:?} in {wall:.2}s against a settle window of {SETTLE_SECS}s (ratio {:.2}); creates it sent: {}; connections in Atlas: {held}; duplicates: {}",
        status.code(),
        wall / SETTLE_SECS as f64,
        c.requests_of("create") - sent_before,
        c.duplicates
    );
    fake.shutdown().await;
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for _ in 0..RUNS {
            run_once().await;
        }
    });
}
