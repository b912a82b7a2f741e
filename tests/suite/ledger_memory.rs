//! The ledger's contract, on both stores (a SQLite file, a throwaway PostgreSQL): the rows a pass
//! plans from are kept in memory by the writer, and after every kind of write, in any order and
//! grouping, that copy equals a fresh read of the store.

use crate::support::harness::harness;
use crate::support::postgres::TestPostgres;
use crate::support::test_env;
use atlas_linkd::ledger::{Change, LeaseSettings, LedgerHandle, LedgerLocation, Take};
use atlas_linkd::model::{
    EndpointOutputs, GroupId, LinkKey, LinkSpec, Phase, Provider, RemoteState, Vendor,
};
use atlas_linkd::reconcile::PassOptions;
use atlas_linkd::wiring;
use fake_atlas::FakeConfig;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::time::Duration;

/// A ledger to hold to the contract: a SQLite file in a temporary folder, or a database of a
/// throwaway PostgreSQL server.
pub(crate) struct TestLedger {
    pub(crate) location: LedgerLocation,
    _dir: Option<tempfile::TempDir>,
}

/// A lease long enough that no test runs into its renewal.
pub(crate) const LEASE: LeaseSettings = LeaseSettings {
    lease: Duration::from_secs(30),
    renew: Duration::from_secs(5),
};

impl TestLedger {
    pub(crate) fn sqlite() -> TestLedger {
        let dir = tempfile::tempdir().unwrap();
        TestLedger {
            location: LedgerLocation::File(dir.path().join("ledger.db")),
            _dir: Some(dir),
        }
    }

    /// A new database of `pg`.
    pub(crate) fn postgres(pg: &TestPostgres) -> TestLedger {
        TestLedger {
            location: LedgerLocation::parse(&pg.new_database(), |p| p.to_path_buf(), &test_env)
                .unwrap(),
            _dir: None,
        }
    }

    /// Opened for writing: locked, or with the lease taken.
    pub(crate) fn open(&self) -> LedgerHandle {
        self.location.open(&test_env, LEASE, Take::Now).unwrap()
    }

    /// Every row, read afresh by another connection.
    pub(crate) fn read(&self) -> Vec<atlas_linkd::model::Record> {
        self.location.read_only_records(&test_env).unwrap()
    }
}

#[tokio::test]
async fn the_rows_in_memory_equal_a_fresh_read_after_every_kind_of_write() {
    let fake = FakeConfig {
        // One link of project 1 is refused: a `Failed` row.
        reject_when_contains: Some("vpce-svc-000100003".into()),
        ..FakeConfig::default()
    };
    let h = harness(fake, 2, 6, "").await;
    // Two links of project 0 exist already: `Adopted` rows.
    h.insert_existing(2);
    let r = wiring::start(&h.config, h.metrics.clone(), &test_env).unwrap();
    let options = PassOptions {
        list_all: true,
        wait_for_settle: true,
        ..PassOptions::default()
    };

    let first = r.run_pass(&h.desired, &options).await.unwrap();
    assert_eq!(first.adopted.len(), 2, "{}", first.to_text());
    assert_eq!(first.created.len(), 9, "{}", first.to_text());
    assert_eq!(first.failed.len(), 1, "{}", first.to_text());
    let memory = r.ledger().snapshot().await.unwrap();
    let disk = r.ledger().records().await.unwrap();
    assert_eq!(disk.len(), 12);
    assert_eq!(*memory, disk);
    drop(memory);

    // The next pass lists every project again and records the Atlas state of each created link.
    let second = r.run_pass(&h.desired, &options).await.unwrap();
    let memory = r.ledger().snapshot().await.unwrap();
    let disk = r.ledger().records().await.unwrap();
    assert!(
        disk.iter().filter(|r| r.remote_state.is_some()).count() >= 9,
        "{}\n{disk:?}",
        second.to_text()
    );
    assert_eq!(*memory, disk);
    r.shutdown().await;
}

/// One step of `the_rows_in_memory_equal_a_fresh_read_whatever_the_order_of_writes`.
#[derive(Debug, Clone)]
enum Step {
    /// A change of kind `kind` (0..11) to link `name` of project `group`, carrying `n`.
    Write {
        kind: u8,
        group: u8,
        name: u8,
        n: u8,
    },
    /// Several changes at once, so the writer commits them in one group.
    Burst(Vec<(u8, u8, u8, u8)>),
    /// A snapshot, compared with a fresh read, then let go.
    Look,
    /// A snapshot kept until the next `Release`, as a pass keeps its own.
    Hold,
    Release,
}

fn step() -> impl Strategy<Value = Step> {
    let write = (0u8..11, 0u8..3, 0u8..6, any::<u8>());
    prop_oneof![
        4 => write.prop_map(|(kind, group, name, n)| Step::Write { kind, group, name, n }),
        2 => proptest::collection::vec((0u8..11, 0u8..3, 0u8..6, any::<u8>()), 1..12)
            .prop_map(Step::Burst),
        2 => Just(Step::Look),
        1 => Just(Step::Hold),
        1 => Just(Step::Release),
    ]
}

fn change(kind: u8, group: u8, name: u8, n: u8) -> Change {
    let key = LinkKey::new(
        GroupId::parse(&format!("{:024x}", 0xb0 + u32::from(group))).unwrap(),
        format!("link-{name}"),
    );
    let mut spec = LinkSpec::new(Provider::Aws, Vendor::S3);
    spec.region = Some("us-east-1".into());
    spec.service_endpoint_id = Some(format!(
        "com.amazonaws.vpce.us-east-1.vpce-svc-{group}{name}{}",
        n % 2
    ));
    let fingerprint = spec.fingerprint();
    let at_unix = 1_000 + i64::from(n);
    let atlas_id = format!("{n:024x}");
    let outputs = EndpointOutputs {
        interface_endpoint_id: n.is_multiple_of(3).then(|| format!("vpce-{n}")),
        ..EndpointOutputs::default()
    };
    match kind {
        0 => Change::Intent {
            key,
            spec,
            fingerprint,
            at_unix,
        },
        1 => Change::Created {
            key,
            atlas_id,
            at_unix,
        },
        2 => Change::Adopted {
            key,
            spec,
            fingerprint,
            atlas_id,
            remote_state: Some(RemoteState::Idle),
            remote_error: None,
            outputs,
            at_unix,
        },
        3 => Change::Failed {
            key,
            spec,
            fingerprint,
            error: format!("failure {n}"),
            next_attempt_unix: at_unix + 60,
            at_unix,
        },
        4 => Change::RemoteState {
            key,
            atlas_id,
            state: if n.is_multiple_of(2) {
                RemoteState::Done
            } else {
                RemoteState::Working
            },
            error: None,
            outputs,
            at_unix,
        },
        5 => Change::SpecUpdated {
            key,
            spec,
            fingerprint,
            at_unix,
        },
        6 => Change::Undeclared {
            key,
            since_unix: n.is_multiple_of(2).then_some(at_unix),
            at_unix,
        },
        7 => Change::Deleting { key, at_unix },
        8 => Change::DeleteRefused {
            key,
            in_use: n.is_multiple_of(2),
            error: "in use".into(),
            next_attempt_unix: at_unix + 60,
            at_unix,
        },
        9 => Change::Forget { key },
        // From another name of the same project (`n` picks it), holding connection `atlas_id`.
        _ => {
            let from = LinkKey::new(key.group_id.clone(), format!("link-{}", n % 6));
            Change::Renamed {
                key,
                from,
                atlas_id,
                at_unix,
            }
        }
    }
}

/// Whatever writes come in whatever groups, and whoever holds an older snapshot meanwhile, the
/// writer's copy in memory is what the store holds: sorted, each key once, row for row.
async fn memory_equals_the_store(
    ledger: &TestLedger,
    steps: Vec<Step>,
) -> Result<(), TestCaseError> {
    let handle = ledger.open();
    // A first snapshot, so the writer keeps its copy from the start.
    drop(handle.snapshot().await.unwrap());
    let mut held = None;
    for step in steps {
        match step {
            Step::Write {
                kind,
                group,
                name,
                n,
            } => {
                // A change the ledger refuses (no row) is one of the cases.
                let _ = handle.apply(change(kind, group, name, n)).await;
            }
            Step::Burst(changes) => {
                let writes = changes
                    .into_iter()
                    .map(|(k, g, m, n)| handle.apply(change(k, g, m, n)));
                let _ = futures::future::join_all(writes).await;
            }
            Step::Look => {
                let memory = handle.snapshot().await.unwrap();
                prop_assert_eq!(&*memory, &ledger.read());
            }
            Step::Hold => held = Some(handle.snapshot().await.unwrap()),
            Step::Release => held = None,
        }
    }
    drop(held);
    let memory = handle.snapshot().await.unwrap();
    prop_assert_eq!(&*memory, &ledger.read());
    drop(memory);
    handle.close().await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_rows_in_memory_equal_a_fresh_read_whatever_the_order_of_writes(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(memory_equals_the_store(&TestLedger::sqlite(), steps))?;
    }
}

/// The same on PostgreSQL: one server, one database, the schema dropped between cases; fewer
/// cases, since each is a round trip per write.
#[test]
fn the_rows_in_memory_equal_a_fresh_read_on_postgres() {
    let pg = TestPostgres::start();
    let ledger = TestLedger::postgres(&pg);
    let db = crate::support::postgres::database_of(&ledger_url(&ledger)).to_owned();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runner
        .run(&proptest::collection::vec(step(), 1..40), |steps| {
            pg.sql(&db, "DROP SCHEMA IF EXISTS atlas_linkd CASCADE");
            rt.block_on(memory_equals_the_store(&ledger, steps))
        })
        .unwrap();
}

fn ledger_url(ledger: &TestLedger) -> String {
    match &ledger.location {
        LedgerLocation::Postgres(t) => t.to_string(),
        LedgerLocation::File(p) => p.display().to_string(),
    }
}

/// A rename writes two rows' worth: the old name goes and the new one comes, in memory as on disk;
/// a rename onto a name that has a row, or of a row that does not hold the connection, is refused.
#[tokio::test]
async fn a_rename_moves_the_row_in_memory_as_on_disk() {
    a_rename_moves_the_row(&TestLedger::sqlite()).await;
}

#[tokio::test]
async fn a_rename_moves_the_row_in_memory_as_on_postgres() {
    let pg = TestPostgres::start();
    a_rename_moves_the_row(&TestLedger::postgres(&pg)).await;
}

async fn a_rename_moves_the_row(store: &TestLedger) {
    let ledger = store.open();
    drop(ledger.snapshot().await.unwrap());
    let id = format!("{:024x}", 7);
    ledger.apply(change(0, 0, 1, 7)).await.unwrap();
    ledger.apply(change(1, 0, 1, 7)).await.unwrap();
    ledger.apply(change(0, 0, 2, 7)).await.unwrap();
    let key = |name: u8| {
        LinkKey::new(
            GroupId::parse(&format!("{:024x}", 0xb0)).unwrap(),
            format!("link-{name}"),
        )
    };
    let rename = |to: u8, from: u8, atlas_id: &str| Change::Renamed {
        key: key(to),
        from: key(from),
        atlas_id: atlas_id.to_owned(),
        at_unix: 2_000,
    };
    // Onto a name with a row that may hold a connection (link-2's intent), and of a row holding
    // another connection.
    assert!(ledger.apply(rename(2, 1, &id)).await.is_err());
    assert!(
        ledger
            .apply(rename(3, 1, "ffffffffffffffffffffffff"))
            .await
            .is_err()
    );
    ledger.apply(rename(3, 1, &id)).await.unwrap();
    // Onto a failed create's row, which holds nothing to keep: it is replaced.
    let other = format!("{:024x}", 9);
    ledger.apply(change(0, 0, 5, 9)).await.unwrap();
    ledger.apply(change(1, 0, 5, 9)).await.unwrap();
    ledger.apply(change(3, 0, 4, 9)).await.unwrap();
    ledger.apply(rename(4, 5, &other)).await.unwrap();
    let memory = ledger.snapshot().await.unwrap();
    let disk = store.read();
    assert_eq!(*memory, disk);
    let names: Vec<&str> = disk.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(names, ["link-2", "link-3", "link-4"]);
    assert_eq!(disk[1].atlas_id.as_deref(), Some(id.as_str()));
    assert_eq!(disk[2].atlas_id.as_deref(), Some(other.as_str()));
    assert_eq!(disk[2].phase, Phase::Created);
    drop(memory);
    ledger.close().await.unwrap();
}
