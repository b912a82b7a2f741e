//! The `demo` command: the bundled fake Atlas, the example manifests, and one real pass against them.
//!
//! It needs no credentials and no network: the fake listens on loopback, the manifests are compiled in,
//! and the config and ledger live in a temporary directory that is removed afterwards. The fake is set
//! up with a little trouble so the pass shows what the daemon does about it: a connection that already
//! exists (adopted), a 409 from a concurrent create (counted, then adopted), a few 429s (the project is
//! paused for `Retry-After`), a 503 on a create (listed, then created once), and a dropped connection.

use crate::config::{Config, LogFormat};
use crate::exit::Exit;
use crate::logging::init_logging;
use crate::manifest;
use crate::metrics::Metrics;
use crate::once::run_once_pass;
use crate::wiring;
use fake_atlas::{FakeAtlas, FakeConfig, FakeOp, Fault, ScriptedFault};
use std::io::IsTerminal;
use std::process::ExitCode;

/// The example manifests of `config/manifests/`, compiled in so the demo runs from anywhere.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "analytics.yaml",
        include_str!("../config/manifests/analytics.yaml"),
    ),
    (
        "payments.yaml",
        include_str!("../config/manifests/payments.yaml"),
    ),
    (
        "shared/payments-extra.yml",
        include_str!("../config/manifests/shared/payments-extra.yml"),
    ),
];

/// Credentials for the fake, which accepts any well-formed ones. The real environment is not read, so
/// a user's real Atlas credentials or base URL cannot leak into the demo.
fn demo_env(key: &str) -> Option<String> {
    match key {
        "MONGODB_ATLAS_CLIENT_ID" => Some("mdb_sa_id_000000000000000000000000".into()),
        "MONGODB_ATLAS_CLIENT_SECRET" => Some("demo-secret-not-a-real-one".into()),
        _ => None,
    }
}

pub(crate) async fn run() -> ExitCode {
    let show_bar = std::io::stderr().is_terminal();
    init_logging(LogFormat::Auto, show_bar);
    match run_inner(show_bar).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("atlas-linkd demo: error: {e:#}");
            Exit::NotAttempted.into()
        }
    }
}

async fn run_inner(show_bar: bool) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests)?;
    for (name, text) in EXAMPLES {
        let path = manifests.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    let desired = manifest::load(std::slice::from_ref(&manifests))
        .map_err(|p| anyhow::anyhow!("the bundled example manifests are invalid:\n{p}"))?;

    let mut fake_config = FakeConfig {
        latency_ms: 10,
        ..FakeConfig::default()
    };
    let projects: Vec<_> = desired.projects.keys().cloned().collect();
    // Trouble, spread over the projects so each kind shows up once.
    if let Some(g) = projects.first() {
        fake_config.faults.script.push(ScriptedFault {
            operation: FakeOp::Create,
            group_id: Some(g.to_string()),
            nth: 1,
            fault: Fault::RateLimited {
                retry_after_secs: 1,
            },
        });
    }
    if let Some(g) = projects.get(1) {
        fake_config.faults.script.push(ScriptedFault {
            operation: FakeOp::Create,
            group_id: Some(g.to_string()),
            nth: 1,
            fault: Fault::Unavailable,
        });
        fake_config.faults.script.push(ScriptedFault {
            operation: FakeOp::Create,
            group_id: Some(g.to_string()),
            nth: 2,
            fault: Fault::DropAfterCommit,
        });
    }
    if let Some(g) = projects.get(2).or(projects.last()) {
        fake_config.faults.script.push(ScriptedFault {
            operation: FakeOp::Create,
            group_id: Some(g.to_string()),
            nth: 2,
            fault: Fault::ConcurrentCreate,
        });
    }
    let fake = FakeAtlas::start(fake_config).await?;
    // A connection someone made by hand before atlas-linkd managed this project: adopted, not created again.
    if let Some(link) = desired.links().next() {
        fake.insert(
            link.key.group_id.as_str(),
            serde_json::from_str(&link.spec.to_json())?,
        );
    }

    let config_path = dir.path().join("config.yaml");
    std::fs::write(
        &config_path,
        format!(
            "atlas:\n  base_url: {}\nmanifests: [manifests/]\nledger: ledger.db\nretry:\n  initial_backoff_ms: 200\n  max_backoff_secs: 2\nmetrics:\n  listen: null\n",
            fake.base_url()
        ),
    )?;
    let config = Config::load(&config_path, &demo_env)?;
    let metrics = Metrics::new();
    let reconciler = wiring::start(&config, metrics.clone(), &demo_env)?;

    outln!(
        "demo: fake Atlas on {}, {} links in {} projects, ledger {}",
        fake.base_url(),
        desired.link_count(),
        desired.projects.len(),
        config.ledger
    );
    let code = run_once_pass(&reconciler, &desired, show_bar).await;
    reconciler.shutdown().await;

    let c = fake.counters();
    let creates = |status: u16| c.requests_with("create", status);
    outln!(
        "\nfake Atlas: {} connections committed, {} duplicates; answered creates with {} × 200, {} × 409, {} × 429, {} × 503, {} dropped; {} lists",
        c.creates_committed,
        c.duplicates,
        creates(200),
        creates(409),
        creates(429),
        creates(503),
        creates(0),
        c.requests_of("list"),
    );
    outln!("\nmetrics (excerpt):");
    for line in metrics.render().lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("atlas_linkd_creates_total")
                || l.starts_with("atlas_linkd_adoptions_total")
                || l.starts_with("atlas_linkd_rate_limited_total")
                || l.starts_with("atlas_linkd_api_retries_total")
                || l.starts_with("atlas_linkd_links"))
    }) {
        outln!("  {line}");
    }
    fake.shutdown().await;
    Ok(code)
}
