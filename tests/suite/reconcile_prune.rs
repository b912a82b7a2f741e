//! Guarded prune's deletes through the executor, against the fake's faults: a 5xx and a 429 are
//! retried within the pass (the 429 through the project's pause), and a delete whose answer is lost
//! after Atlas acted on it ends with the record dropped, not a failure.

use crate::support::harness::{Harness, group_id, harness, write_manifest};
use atlas_linkd::ledger::Ledger;
use atlas_linkd::manifest;
use fake_atlas::{FakeConfig, FakeOp, Fault, ScriptedFault};
use serde_json::Value;

const PRUNE: &str = "prune:\n  enabled: true\n  grace_secs: 0\n  max_per_pass: 10\n";

/// Declares only the first link of project 0 from now on.
fn keep_one(h: &mut Harness) {
    write_manifest(h.dir.path(), 1, 1);
    h.desired = manifest::load(&h.config.manifests).unwrap();
}

fn names(report: &Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

fn recorded(h: &Harness) -> Vec<String> {
    Ledger::open_read_only(&h.ledger_path())
        .unwrap()
        .records()
        .unwrap()
        .into_iter()
        .map(|r| r.key.name)
        .collect()
}

#[tokio::test]
async fn a_5xx_and_a_429_on_a_delete_are_retried_within_the_pass() {
    let mut h = harness(FakeConfig::default(), 1, 2, PRUNE).await;
    assert!(h.pass().await.converged());
    keep_one(&mut h);
    for (nth, fault) in [
        (1, Fault::ServerError),
        (
            2,
            Fault::RateLimited {
                retry_after_secs: 1,
            },
        ),
    ] {
        h.fake.script(ScriptedFault {
            operation: FakeOp::Delete,
            group_id: None,
            nth,
            fault,
        });
    }
    let report = h.pass().await;
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert!(report.converged(), "{json}");
    assert_eq!(names(&json, "deleted"), ["link-1"]);
    let counters = h.fake.counters();
    assert_eq!(counters.requests_with("delete", 500), 1);
    assert_eq!(counters.requests_with("delete", 429), 1);
    assert_eq!(counters.requests_with("delete", 202), 1);
    assert_eq!(counters.early_after_retry_after, 0);
    assert_eq!(h.fake.connections(&group_id(0)).len(), 1);
}

#[tokio::test]
async fn a_delete_whose_answer_is_lost_ends_with_the_record_dropped() {
    let mut h = harness(FakeConfig::default(), 1, 2, PRUNE).await;
    assert!(h.pass().await.converged());
    keep_one(&mut h);
    h.fake.script(ScriptedFault {
        operation: FakeOp::Delete,
        group_id: None,
        nth: 1,
        fault: Fault::DropAfterCommit,
    });
    let report = h.pass().await;
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    // The retry finds it gone (404): nothing failed, nothing left to delete, no row left.
    assert!(report.converged(), "{json}");
    assert!(names(&json, "failed").is_empty());
    assert_eq!(h.fake.connections(&group_id(0)).len(), 1);
    assert_eq!(recorded(&h), ["link-0"]);
    assert_eq!(h.fake.counters().requests_with("delete", 404), 1);
}
