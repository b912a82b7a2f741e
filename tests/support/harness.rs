//! The harness: generated manifests, a config pointing at an in-process fake Atlas, one-call passes,
//! and the real binary run with the test environment.

use atlas_linkd::config::Config;
use atlas_linkd::manifest;
use atlas_linkd::metrics::Metrics;
use atlas_linkd::model::DesiredState;
use atlas_linkd::reconcile::PassOptions;
use atlas_linkd::report::PassReport;
use atlas_linkd::wiring;
use fake_atlas::{FakeAtlas, FakeConfig};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

use super::test_env;

/// The 24-hex id of test project `i`.
pub(crate) fn group_id(i: usize) -> String {
    format!("{:024x}", 0xa7_0000_0000_0000u64 + i as u64)
}

/// Writes `projects` × `links` AWS S3 links (each with a distinct endpoint) as a manifest in `dir`.
pub(crate) fn write_manifest(dir: &Path, projects: usize, links: usize) -> PathBuf {
    let mut yaml = String::from("projects:\n");
    for p in 0..projects {
        yaml.push_str(&format!(
            "  - groupId: {}\n    name: project-{p}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n",
            group_id(p)
        ));
        for l in 0..links {
            yaml.push_str(&format!(
                "      - name: link-{l}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-{p:04}{l:05}\n"
            ));
        }
    }
    let path = dir.join("manifests").join("links.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The real binary with `--config CONFIG`, stdin closed, and an empty environment but for `PATH` and
/// the credentials `test_env` gives (which the fake accepts and offline commands ignore).
pub(crate) fn binary(config: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_atlas-linkd"));
    cmd.arg("--config")
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::null());
    for key in ["MONGODB_ATLAS_CLIENT_ID", "MONGODB_ATLAS_CLIENT_SECRET"] {
        if let Some(value) = test_env(key) {
            cmd.env(key, value);
        }
    }
    cmd
}

pub(crate) struct Harness {
    pub(crate) fake: FakeAtlas,
    pub(crate) dir: TempDir,
    pub(crate) config_path: PathBuf,
    pub(crate) config: Config,
    pub(crate) desired: DesiredState,
    pub(crate) metrics: Metrics,
}

/// A fake Atlas, `projects` × `links` declared links, and a config whose extra YAML is `extra`
/// (appended; it may set `reconcile:`, `rate_limit:`, `retry:`).
pub(crate) async fn harness(
    fake: FakeConfig,
    projects: usize,
    links: usize,
    extra: &str,
) -> Harness {
    let fake = FakeAtlas::start(fake).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), projects, links);
    let config_path = dir.path().join("config.yaml");
    let retry = if extra.contains("retry:") {
        ""
    } else {
        "retry:\n  max_attempts: 8\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n"
    };
    std::fs::write(
        &config_path,
        format!(
            "atlas:\n  base_url: {}\n  timeout_secs: 5\nmanifests: [manifests/]\nledger: state/ledger.db\nmetrics:\n  listen: null\n{retry}{extra}",
            fake.base_url()
        ),
    )
    .unwrap();
    let config = Config::load(&config_path, &test_env).unwrap();
    let desired = manifest::load(&config.manifests).unwrap();
    Harness {
        fake,
        dir,
        config_path,
        config,
        desired,
        metrics: Metrics::new(),
    }
}

impl Harness {
    /// Puts the first `n` declared links of the first project into the fake, as if another tool (or an
    /// earlier run) had created them: a pass must adopt them, not create them again.
    pub(crate) fn insert_existing(&self, n: usize) {
        let project = self.desired.projects.values().next().unwrap();
        for link in project.links.values().take(n) {
            self.fake.insert(
                link.key.group_id.as_str(),
                serde_json::from_str(&link.spec.to_json()).unwrap(),
            );
        }
    }

    /// One pass through the library, with a fresh executor and the options `--once` uses.
    pub(crate) async fn pass(&self) -> PassReport {
        let r = wiring::start(&self.config, self.metrics.clone(), &test_env).unwrap();
        let options = PassOptions {
            list_all: true,
            wait_for_settle: true,
            ..PassOptions::default()
        };
        let report = r.run_pass(&self.desired, &options).await.unwrap();
        r.shutdown().await;
        report
    }

    /// Passes until one converges, at most `max` of them.
    pub(crate) async fn converge(&self, max: usize) -> Vec<PassReport> {
        let mut reports = Vec::new();
        for _ in 0..max {
            let report = self.pass().await;
            let done = report.converged();
            reports.push(report);
            if done {
                break;
            }
        }
        reports
    }

    /// Asserts that every declared link exists exactly once in the fake, and nothing else does.
    pub(crate) fn assert_exactly_once(&self) {
        for (group, project) in &self.desired.projects {
            let remote = self.fake.connections(group.as_str());
            for link in project.links.values() {
                let n = remote
                    .iter()
                    .filter(|c| {
                        c["serviceEndpointId"]
                            == link.spec.service_endpoint_id.as_deref().unwrap_or("")
                    })
                    .count();
                assert_eq!(n, 1, "{} exists {n} times in the fake", link.key);
            }
            assert_eq!(
                remote.len(),
                project.links.len(),
                "extra connections in {group}"
            );
        }
    }

    /// The SQLite ledger's file (the harness always writes one).
    pub(crate) fn ledger_path(&self) -> PathBuf {
        self.config
            .ledger
            .file()
            .expect("the harness's ledger is a SQLite file")
            .to_path_buf()
    }
}

/// A loopback port that was free a moment ago, for a program that takes its listen address on the
/// command line (the daemon's metrics, Prometheus) and so needs a number up front.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `binary(config) --once` as an async child that is killed if the test drops it.
pub(crate) fn once(config: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::from(binary(config));
    cmd.arg("--once").kill_on_drop(true);
    cmd
}
