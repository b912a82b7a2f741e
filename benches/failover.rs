//! The PostgreSQL ledger against SQLite, and takeovers: `cargo bench --bench failover`.
//!
//! Prints figures, asserts only that each scenario did what it says (every pass converged, every
//! link once). Needs Debian's `postgresql` (scripts/test installs it); starts its own throwaway
//! server (fsync on, as a real one; `synchronous_commit` on) in a temporary folder.
//!
//! 1. Passes through the library against the in-process fake (20 ms per call, no bucket), one run,
//!    SQLite and PostgreSQL alternating, twice each, the median of each reported:
//!    - a creating pass of 10,000 links (100 projects × 100) into an empty ledger, concurrency 32;
//!    - a no-op pass of 100,000 links (1,000 projects × 100), `--once`'s (every project listed), over
//!      a converged state: the fake holds every connection and the ledger records each as adopted.
//!
//!    The ratio is PostgreSQL's wall time over SQLite's, both measured in this one run.
//! 2. Takeover: two daemons (the release binary, lease 15 s, renewal 5 s) on one PostgreSQL ledger;
//!    the active one is killed (SIGKILL) and a manifest naming one new link is saved at once; the time
//!    from the kill to the fake receiving the successor's create of it, against `lease_secs +
//!    renew_secs` (20 s), three times.
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

use atlas_linkd::config::Config;
use atlas_linkd::ledger::{LedgerLocation, Take};
use atlas_linkd::manifest;
use atlas_linkd::metrics::Metrics;
use atlas_linkd::reconcile::PassOptions;
use atlas_linkd::wiring;
use fake_atlas::{FakeAtlas, FakeConfig};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

#[path = "../tests/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use postgres::TestPostgres;

const LATENCY_MS: u64 = 20;
const LEASE_SECS: u64 = 15;
const RENEW_SECS: u64 = 5;

fn config_text(base_url: &str, ledger: &str, extra: &str) -> String {
    format!(
        "atlas:\n  base_url: {base_url}\nmanifests: [manifests/]\nledger: {ledger}\n\
         rate_limit:\n  capacity: 1000000\n  refill: 1000000\n  period_secs: 1\n\
         reconcile:\n  concurrency: 32\n  per_project_concurrency: 4\n{extra}"
    )
}

fn load(dir: &Path, base_url: &str, ledger: &str, extra: &str) -> Config {
    let path = dir.join("config.yaml");
    std::fs::write(&path, config_text(base_url, ledger, extra)).unwrap();
    Config::load(&path, &support::env).unwrap()
}

/// One pass (`--once`'s options) through the library; its wall time.
async fn timed_pass(config: &Config, expect_created: usize) -> Duration {
    let desired = manifest::load(&config.manifests).unwrap();
    let reconciler = wiring::start(config, Metrics::new(), &support::env).unwrap();
    let options = PassOptions {
        list_all: true,
        wait_for_settle: true,
        ..PassOptions::default()
    };
    let started = Instant::now();
    let report = reconciler.run_pass(&desired, &options).await.unwrap();
    let wall = started.elapsed();
    reconciler.shutdown().await;
    assert!(report.converged(), "{}", report.to_text());
    assert_eq!(report.created.len(), expect_created, "{}", report.to_text());
    wall
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A creating pass of `projects × links` into a fresh ledger (`ledger` gives its config value).
async fn creating(projects: usize, links: usize, ledger: impl Fn() -> String) -> Duration {
    let fake = FakeAtlas::start(FakeConfig {
        latency_ms: LATENCY_MS,
        bucket: None,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    support::write_s3_manifest(dir.path(), 0xfa_0000_0000, projects, links);
    let config = load(dir.path(), &fake.base_url(), &ledger(), "");
    let wall = timed_pass(&config, projects * links).await;
    fake.shutdown().await;
    wall
}

/// The converged state of the declared links in `fake` and in each ledger `configs` name: every
/// connection inserted once, every row adopted, written through each ledger's own import.
async fn converge(configs: &[&Config], fake: &FakeAtlas) {
    let desired = manifest::load(&configs[0].manifests).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("staging.db");
    let mut ids = Vec::with_capacity(desired.link_count());
    for link in desired.links() {
        ids.push(fake.insert(
            link.key.group_id.as_str(),
            serde_json::from_str(&link.spec.to_json()).unwrap(),
        ));
    }
    support::write_adopted_ledger(&staging, &desired, 1_800_000_000, |i, _| ids[i].clone())
        .unwrap();
    let rows = LedgerLocation::File(staging)
        .read_only_records(&support::env)
        .unwrap();
    for config in configs {
        let lease = config.leadership.lease();
        let handle = config.ledger.open(&support::env, lease, Take::Now).unwrap();
        handle.import(rows.clone()).await.unwrap();
        handle.close().await.unwrap();
    }
}

async fn pass_ratios(pg: &TestPostgres) {
    println!("passes through the library against the in-process fake ({LATENCY_MS} ms per call):");
    let (mut sqlite, mut postgres) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        sqlite.push(creating(100, 100, || "ledger.db".to_owned()).await);
        postgres.push(creating(100, 100, || pg.new_database()).await);
    }
    let (s, p) = (median(sqlite), median(postgres));
    println!(
        "  creating pass, 10,000 links: SQLite {:.2} s, PostgreSQL {:.2} s: ratio {:.2} (median of 2 each, alternating)",
        s.as_secs_f64(),
        p.as_secs_f64(),
        p.as_secs_f64() / s.as_secs_f64()
    );

    let fake = FakeAtlas::start(FakeConfig {
        latency_ms: LATENCY_MS,
        bucket: None,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    support::write_s3_manifest(dir.path(), 0xfb_0000_0000, 1000, 100);
    let sqlite_config = load(dir.path(), &fake.base_url(), "ledger.db", "");
    let pg_config = load(dir.path(), &fake.base_url(), &pg.new_database(), "");
    let started = Instant::now();
    converge(&[&sqlite_config, &pg_config], &fake).await;
    println!(
        "  set-up of the no-op passes: 100,000 connections in the fake, 100,000 adopted rows in each ledger, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The first pass records the states and outputs the fake shows of every connection (100,000
    // writes): timed apart, since it is not a no-op.
    let (s, p) = (
        timed_pass(&sqlite_config, 0).await,
        timed_pass(&pg_config, 0).await,
    );
    println!(
        "  first pass over them, recording 100,000 states: SQLite {:.2} s, PostgreSQL {:.2} s: ratio {:.2}",
        s.as_secs_f64(),
        p.as_secs_f64(),
        p.as_secs_f64() / s.as_secs_f64()
    );
    let (mut sqlite, mut postgres) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        sqlite.push(timed_pass(&sqlite_config, 0).await);
        postgres.push(timed_pass(&pg_config, 0).await);
    }
    let (s, p) = (median(sqlite), median(postgres));
    println!(
        "  no-op pass, 100,000 links (every project listed): SQLite {:.2} s, PostgreSQL {:.2} s: ratio {:.2} (median of 2 each, alternating)",
        s.as_secs_f64(),
        p.as_secs_f64(),
        p.as_secs_f64() / s.as_secs_f64()
    );
    fake.shutdown().await;
}

/// A daemon of the release binary on `config`, its log in `log`.
fn daemon(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_atlas-linkd"))
        .arg("--config")
        .arg(config)
        .env_clear()
        .env(
            "MONGODB_ATLAS_CLIENT_ID",
            support::env("MONGODB_ATLAS_CLIENT_ID").unwrap(),
        )
        .env(
            "MONGODB_ATLAS_CLIENT_SECRET",
            support::env("MONGODB_ATLAS_CLIENT_SECRET").unwrap(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Polls `f` every 10 ms until it holds, for at most `deadline`.
async fn until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn takeovers(pg: &TestPostgres) {
    let fake = FakeAtlas::start(FakeConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    support::write_s3_manifest(dir.path(), 0xfc_0000_0000, 2, 5);
    let url = pg.new_database();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        config_text(
            &fake.base_url(),
            &url,
            &format!(
                "leadership:\n  lease_secs: {LEASE_SECS}\n  renew_secs: {RENEW_SECS}\nmetrics:\n  listen: null\n"
            ),
        ),
    )
    .unwrap();
    let committed = || fake.counters().creates_committed;
    let mut daemons = vec![
        daemon(&config, &dir.path().join("0.log")),
        daemon(&config, &dir.path().join("1.log")),
    ];
    until("the first pass", Duration::from_secs(60), || {
        committed() == 10
    })
    .await;
    println!(
        "takeover: two daemons on one PostgreSQL ledger, lease {LEASE_SECS} s, renewal {RENEW_SECS} s (bound {} s):",
        LEASE_SECS + RENEW_SECS
    );
    for round in 0..3 {
        // The active one is whichever holds the lease: the row names its pid.
        let holder = pg.sql(
            postgres::database_of(&url),
            "SELECT holder FROM atlas_linkd.lease",
        );
        let active = daemons
            .iter()
            .position(|d| holder.contains(&format!("pid {} ", d.id())))
            .unwrap();
        let before = committed();
        let killed = Instant::now();
        daemons[active].kill().unwrap();
        daemons[active].wait().unwrap();
        std::fs::write(
            dir.path().join(format!("manifests/new-{round}.yaml")),
            format!(
                "projects:\n  - groupId: {}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n      - name: new-{round}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-new{round}\n",
                support::project_id(0xfc_0000_0000, 0)
            ),
        )
        .unwrap();
        until("the successor's create", Duration::from_secs(120), || {
            committed() > before
        })
        .await;
        let took = killed.elapsed();
        println!(
            "  round {}: death to the successor's first create {:.1} s ({:.0}% of lease + renewal)",
            round + 1,
            took.as_secs_f64(),
            100.0 * took.as_secs_f64() / (LEASE_SECS + RENEW_SECS) as f64
        );
        // A new standby in the dead one's place.
        daemons[active] = daemon(&config, &dir.path().join(format!("{}.log", round + 2)));
    }
    for d in &mut daemons {
        let _ = d.kill();
        let _ = d.wait();
    }
    assert_eq!(fake.counters().duplicates, 0);
    fake.shutdown().await;
}

fn main() {
    // Started on this (the main) thread, which outlives the runtime: the server dies with the thread
    // that spawned it.
    let pg = TestPostgres::start_durable();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        pass_ratios(&pg).await;
        takeovers(&pg).await;
    });
}
