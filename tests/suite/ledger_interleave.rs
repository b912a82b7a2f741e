//! The ledger rows a `Reconciler` keeps in memory (the writer's copy, `LedgerHandle::snapshot`) equal
//! a fresh read of the ledger file after every step of a random interleaving of passes, readiness
//! polls, prune decisions, reloads and manifest edits, against the bundled fake Atlas with faults;
//! and, after a last quiet pass, the fake holds no far end twice.
//!
//! A `Poll` step is the daemon's readiness poll (`Reconciler::refresh_projects`) over every project
//! the ledger holds rows of.

use crate::support::harness::group_id;
use crate::support::test_env;
use atlas_linkd::config::Config;
use atlas_linkd::ledger::Ledger;
use atlas_linkd::manifest;
use atlas_linkd::metrics::Metrics;
use atlas_linkd::model::{DesiredState, GroupId, Phase, Record};
use atlas_linkd::reconcile::{PassOptions, Policy, Reconciler};
use atlas_linkd::wiring;
use fake_atlas::{DuplicateMode, FakeAtlas, FakeConfig, Faults};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

const PROJECTS: usize = 3;
const LINKS: usize = 4;
/// A grace long enough that no undeclared link is deleted during a case.
const LONG_GRACE_SECS: u64 = 86_400;

/// One step of a case.
#[derive(Debug, Clone)]
enum Step {
    /// A pass, as the daemon runs one (`settle` false), or as `--once` does (`settle` true).
    Pass { list_all: bool, settle: bool },
    /// A readiness poll's writes (see the module's doc).
    Poll,
    /// The manifests now declare link `l` of project `p` where bit `p * LINKS + l` of `declared`
    /// is set, under its second name where that bit of `renamed` is: flipping it renames the link
    /// (same far end).
    Edit { declared: u16, renamed: u16 },
    /// A reload with these `prune.*` settings.
    Reload {
        enabled: bool,
        long_grace: bool,
        max_per_pass: u32,
    },
    /// The fake's random faults from now on, probabilities in percent.
    Faults {
        seed: u64,
        p_500: u8,
        p_reset_create: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<bool>(), prop::bool::weighted(0.05))
            .prop_map(|(list_all, settle)| Step::Pass { list_all, settle }),
        2 => Just(Step::Poll),
        3 => (0u16..1 << (PROJECTS * LINKS), 0u16..1 << (PROJECTS * LINKS))
            .prop_map(|(declared, renamed)| Step::Edit { declared, renamed }),
        2 => (prop::bool::weighted(0.7), prop::bool::weighted(0.3), 1u32..=10).prop_map(
            |(enabled, long_grace, max_per_pass)| Step::Reload { enabled, long_grace, max_per_pass }
        ),
        2 => (any::<u64>(), 0u8..=20, 0u8..=10).prop_map(|(seed, p_500, p_reset_create)| {
            Step::Faults { seed, p_500, p_reset_create }
        }),
    ]
}

fn endpoint(p: usize, l: usize) -> String {
    format!("com.amazonaws.vpce.us-east-1.vpce-svc-{p:04}{l:05}")
}

/// Writes the manifest declaring the links `declared` sets, under the names `renamed` says (see
/// `Step::Edit`).
fn write_links(dir: &Path, declared: u16, renamed: u16) {
    let mut yaml = String::new();
    for p in 0..PROJECTS {
        let links: Vec<usize> = (0..LINKS)
            .filter(|l| declared & (1 << (p * LINKS + l)) != 0)
            .collect();
        if links.is_empty() {
            continue;
        }
        let _ = write!(
            yaml,
            "  - groupId: {}\n    name: project-{p}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n",
            group_id(p)
        );
        for l in links {
            let second = if renamed & (1 << (p * LINKS + l)) != 0 {
                "-b"
            } else {
                ""
            };
            let _ = write!(
                yaml,
                "      - name: link-{l}{second}\n        serviceEndpointId: {}\n",
                endpoint(p, l)
            );
        }
    }
    let yaml = if yaml.is_empty() {
        "projects: []\n".to_owned()
    } else {
        format!("projects:\n{yaml}")
    };
    let path = dir.join("manifests").join("links.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, yaml).unwrap();
}

/// Writes the config, with these `prune.*` settings, and loads it.
fn write_config(path: &Path, base_url: &str, enabled: bool, grace_secs: u64, max: u32) -> Config {
    std::fs::write(
        path,
        format!(
            "atlas:\n  base_url: {base_url}\n  timeout_secs: 1\nmanifests: [manifests/]\nledger: state/ledger.db\n\
             metrics:\n  listen: null\nreconcile:\n  settle_secs: 1\n\
             retry:\n  max_attempts: 3\n  initial_backoff_ms: 1\n  max_backoff_secs: 1\n  failure_delay_secs: 1\n  max_failure_delay_secs: 1\n\
             prune:\n  enabled: {enabled}\n  grace_secs: {grace_secs}\n  max_per_pass: {max}\n"
        ),
    )
    .unwrap();
    Config::load(path, &test_env).unwrap()
}

/// What a readiness poll writes: for each project with rows, a listing, and the Atlas state, error
/// and outputs it shows of each recorded connection, where they differ from the row.
async fn poll(r: &Reconciler) -> String {
    let records = r.ledger().snapshot().await.unwrap();
    let groups: BTreeSet<GroupId> = records.iter().map(|r| r.key.group_id.clone()).collect();
    drop(records);
    let refreshed = r
        .refresh_projects(groups, &CancellationToken::new())
        .await
        .unwrap();
    format!(
        " {} listed, {} not listed",
        refreshed.listed.len(),
        refreshed.failures.len()
    )
}

/// The rows in memory, compared with a fresh read of the file.
async fn same_as_file(r: &Reconciler, path: &Path, log: &[String]) -> Result<(), TestCaseError> {
    let memory = r.ledger().snapshot().await.unwrap();
    let disk = Ledger::read_only_records(path).unwrap();
    if *memory != disk {
        return Err(TestCaseError::fail(format!(
            "the rows in memory differ from the file after:\n{}\nmemory: {memory:#?}\nfile: {disk:#?}",
            log.join("\n")
        )));
    }
    Ok(())
}

fn load(config: &Config) -> DesiredState {
    manifest::load(&config.manifests).unwrap()
}

struct Case {
    fake: FakeAtlas,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    config: Config,
    ledger: PathBuf,
}

async fn start(declared: u16) -> Case {
    let fake = FakeAtlas::start(FakeConfig {
        duplicates: DuplicateMode::Create,
        commit_delay_ms: 0,
        // States move while a case runs, so polls and passes have something to record.
        idle_ms: 20,
        working_ms: 20,
        delete_ms: 20,
        // Besides plain creates: a link Atlas refuses (a `Failed` row), one whose connection ends
        // `FAILED` (a recorded error), and one whose delete is refused as in use.
        reject_when_contains: Some(endpoint(2, 3)),
        fail_when_contains: Some(endpoint(1, 2)),
        in_use_when_contains: Some(endpoint(0, 1)),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_links(dir.path(), declared, 0);
    let config_path = dir.path().join("config.yaml");
    let config = write_config(&config_path, &fake.base_url(), false, LONG_GRACE_SECS, 1);
    let ledger = config.ledger.file().unwrap().to_path_buf();
    Case {
        fake,
        dir,
        config_path,
        config,
        ledger,
    }
}

/// The live connections (not being deleted) of each far end, across the test's projects.
fn live_far_ends(fake: &FakeAtlas) -> BTreeMap<String, Vec<String>> {
    let mut ends: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in 0..PROJECTS {
        for c in fake.connections(&group_id(p)) {
            let state = c["state"].as_str().unwrap_or("");
            if matches!(state, "DELETE_REQUESTED" | "DELETING" | "DELETED") {
                continue;
            }
            let end = c["serviceEndpointId"].as_str().unwrap_or("").to_owned();
            ends.entry(end)
                .or_default()
                .push(format!("{} ({state})", c["_id"].as_str().unwrap_or("?")));
        }
    }
    ends
}

async fn run_case(declared: u16, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let case = start(declared).await;
    let mut desired = load(&case.config);
    let mut r = wiring::start(&case.config, Metrics::new(), &test_env).unwrap();
    let mut log = vec![format!("start: declared {declared:#05x}")];
    for (i, step) in steps.iter().enumerate() {
        let what = match step {
            Step::Pass { list_all, settle } => {
                let options = PassOptions {
                    list_all: *list_all,
                    wait_for_settle: *settle,
                    ..PassOptions::default()
                };
                let report = r.run_pass(&desired, &options).await.unwrap();
                report.to_text().trim_end().replace('\n', "\n    ")
            }
            Step::Poll => poll(&r).await,
            Step::Edit { declared, renamed } => {
                write_links(case.dir.path(), *declared, *renamed);
                desired = load(&case.config);
                format!("{} links declared", desired.links().count())
            }
            Step::Reload {
                enabled,
                long_grace,
                max_per_pass,
            } => {
                let grace = if *long_grace { LONG_GRACE_SECS } else { 0 };
                let config = write_config(
                    &case.config_path,
                    &case.fake.base_url(),
                    *enabled,
                    grace,
                    *max_per_pass,
                );
                r.set_policy(Policy::from_config(&config));
                String::new()
            }
            Step::Faults {
                seed,
                p_500,
                p_reset_create,
            } => {
                case.fake.set_faults(Faults {
                    seed: *seed,
                    p_500: f64::from(*p_500) / 100.0,
                    p_reset_create: f64::from(*p_reset_create) / 100.0,
                    ..Faults::default()
                });
                String::new()
            }
        };
        log.push(format!("{i}: {step:?}: {what}"));
        same_as_file(&r, &case.ledger, &log).await?;
    }

    // A last quiet pass decides whatever is still in flight; then no far end is held twice.
    case.fake.set_faults(Faults::default());
    let options = PassOptions {
        list_all: true,
        wait_for_settle: true,
        ..PassOptions::default()
    };
    let last = r.run_pass(&desired, &options).await.unwrap();
    log.push(format!(
        "last: {}",
        last.to_text().trim_end().replace('\n', "\n    ")
    ));
    same_as_file(&r, &case.ledger, &log).await?;
    let twice: Vec<_> = live_far_ends(&case.fake)
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    prop_assert!(
        twice.is_empty(),
        "far ends held more than once: {twice:?}\nafter:\n{}\nrows: {:#?}",
        log.join("\n"),
        r.ledger().snapshot().await.unwrap()
    );
    // Every declared link that the ledger holds a connection for points at a live connection of
    // its own far end.
    let records: Vec<Record> = Ledger::read_only_records(&case.ledger).unwrap();
    let ends = live_far_ends(&case.fake);
    for link in desired.links() {
        let Some(id) = records
            .iter()
            .find(|r| r.key == link.key && matches!(r.phase, Phase::Created | Phase::Adopted))
            .and_then(|r| r.atlas_id.as_deref())
        else {
            continue;
        };
        let end = link.spec.service_endpoint_id.as_deref().unwrap_or("");
        prop_assert!(
            ends.get(end)
                .is_some_and(|ids| ids.iter().any(|i| i.starts_with(id))),
            "{} records {id}, which is not a live connection of {end}: {ends:?}\nafter:\n{}",
            link.key,
            log.join("\n")
        );
    }
    r.shutdown().await;
    case.fake.shutdown().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever passes, polls, prune decisions, reloads, edits and faults come in whatever order, the
    /// rows the reconciler keeps in memory are the rows of the file after each of them.
    #[test]
    fn the_rows_in_memory_equal_the_file_after_every_step_against_a_faulty_atlas(
        declared in 0u16..1 << (PROJECTS * LINKS),
        steps in prop::collection::vec(step(), 6..=20),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_case(declared, steps))?;
    }
}
