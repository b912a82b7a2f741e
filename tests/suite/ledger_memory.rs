//! The ledger rows a pass plans from are kept in memory by the writer: after passes with creates,
//! adoptions, failures and remote-state updates, that copy equals a fresh read of SQLite.

use crate::support::harness::harness;
use crate::support::test_env;
use atlas_linkd::reconcile::PassOptions;
use atlas_linkd::wiring;
use fake_atlas::FakeConfig;

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
