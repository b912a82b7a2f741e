//! dnsDomain updates through the real binary against the fake (issue 9): the AWS Confluent
//! Enterprise flow (create without the domain, add it to the manifest, one PATCH and no second
//! create), and a domain change on a connection past `IDLE` reported `changed` with no PATCH.

use crate::support::harness::{Harness, binary, group_id, harness, once};
use atlas_linkd::ledger::Ledger;
use atlas_linkd::manifest;
use atlas_linkd::model::Fingerprint;
use fake_atlas::FakeConfig;
use serde_json::Value;
use std::process::Output;

const ENDPOINT: &str = "com.amazonaws.vpce.us-east-1.vpce-svc-0c0f1d2e3a4b5c6d7";
const DOMAIN: &str = "use1.dom7x2q.confluent.cloud";
const OTHER_DOMAIN: &str = "use1.other9.confluent.cloud";

/// Replaces the harness's manifest with one AWS CONFLUENT link, with `dns_domain` if given.
fn declare(h: &Harness, dns_domain: Option<&str>) {
    let domain = dns_domain
        .map(|d| format!("        dnsDomain: {d}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "projects:\n  - groupId: {}\n    name: confluent-project\n    links:\n      - name: orders-confluent\n        provider: AWS\n        vendor: CONFLUENT\n        region: us-east-1\n        serviceEndpointId: {ENDPOINT}\n        dnsSubDomain: []\n{domain}",
        group_id(0)
    );
    std::fs::write(h.dir.path().join("manifests").join("links.yaml"), yaml).unwrap();
}

fn explain(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn once_ok(h: &Harness, args: &[&str]) -> String {
    let out = once(&h.config_path).args(args).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Requests the fake answered with `status` for `op` (`create`, `update`, ...).
fn answered(h: &Harness, op: &str, status: u16) -> u64 {
    h.fake
        .counters()
        .requests
        .get(op)
        .and_then(|by_status| by_status.get(&status))
        .copied()
        .unwrap_or(0)
}

/// Every request of `op`, whatever its answer.
fn sent(h: &Harness, op: &str) -> u64 {
    h.fake
        .counters()
        .requests
        .get(op)
        .map(|by_status| by_status.values().sum())
        .unwrap_or(0)
}

fn the_connection(h: &Harness) -> Value {
    let conns = h.fake.connections(&group_id(0));
    assert_eq!(conns.len(), 1, "{conns:?}");
    conns.into_iter().next().unwrap()
}

/// The fingerprint the manifest declares now for the one link, and the ledger's.
fn fingerprints(h: &Harness) -> (Fingerprint, Fingerprint) {
    let desired = manifest::load(&h.config.manifests).unwrap();
    let link = desired.links().next().unwrap();
    let records = Ledger::open_read_only(&h.ledger_path())
        .unwrap()
        .records()
        .unwrap();
    assert_eq!(records.len(), 1);
    (link.fingerprint, records[0].fingerprint)
}

#[tokio::test]
async fn a_confluent_link_created_without_a_domain_gets_it_by_one_patch_and_no_second_create() {
    let h = harness(FakeConfig::default(), 1, 1, "").await;
    declare(&h, None);
    once_ok(&h, &[]).await;
    assert_eq!(answered(&h, "create", 200), 1);
    let created = the_connection(&h);
    // Pending at Atlas until it has a domain.
    assert_eq!(created["state"], "IDLE", "{created}");
    assert!(created["dnsDomain"].is_null(), "{created}");

    // Confluent produced the domain; the manifest now says it.
    declare(&h, Some(DOMAIN));
    // Async: the fake serves from this test's runtime.
    let plan = tokio::process::Command::from(binary(&h.config_path))
        .args(["plan", "--output", "json"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", explain(&plan));
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["counts"]["update"], 1, "{plan:#}");
    assert_eq!(plan["counts"]["create"], 0, "{plan:#}");
    assert_eq!(plan["actions"][0]["action"], "update", "{plan:#}");
    assert_eq!(plan["actions"][0]["atlasId"], created["_id"], "{plan:#}");
    assert_eq!(plan["actions"][0]["dnsDomain"], DOMAIN, "{plan:#}");
    assert_eq!(sent(&h, "update"), 0, "plan changes nothing");

    let report_file = h.dir.path().join("report.json");
    let metrics_file = h.dir.path().join("metrics.prom");
    let stdout = once_ok(
        &h,
        &[
            "--report-file",
            report_file.to_str().unwrap(),
            "--metrics-file",
            metrics_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(stdout.contains(" 1 updated,"), "{stdout}");
    assert_eq!(sent(&h, "update"), 1, "exactly one PATCH");
    assert_eq!(answered(&h, "update", 200), 1);
    assert_eq!(sent(&h, "create"), 1, "no second create");
    let updated = the_connection(&h);
    assert_eq!(updated["_id"], created["_id"]);
    assert_eq!(updated["dnsDomain"], DOMAIN, "{updated}");
    let (declared, recorded) = fingerprints(&h);
    assert_eq!(recorded, declared, "the ledger records the new fingerprint");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(
        report["updated"][0]["name"], "orders-confluent",
        "{report:#}"
    );
    assert_eq!(report["changed"], serde_json::json!([]), "{report:#}");
    let metrics = std::fs::read_to_string(&metrics_file).unwrap();
    assert!(
        metrics.contains("atlas_linkd_updates_total{outcome=\"updated\"} 1"),
        "{metrics}"
    );

    // Nothing left to do.
    let stdout = once_ok(&h, &[]).await;
    assert!(stdout.contains(" 0 updated,"), "{stdout}");
    assert!(stdout.contains(" 1 unchanged,"), "{stdout}");
    assert_eq!(sent(&h, "update"), 1);
    assert_eq!(sent(&h, "create"), 1);
    assert_eq!(h.fake.counters().duplicates, 0);
}

#[tokio::test]
async fn a_domain_change_on_a_done_connection_is_reported_changed_with_the_reason_and_sends_no_patch()
 {
    let h = harness(FakeConfig::default(), 1, 1, "").await;
    declare(&h, Some(DOMAIN));
    once_ok(&h, &[]).await;
    assert_eq!(the_connection(&h)["state"], "DONE");
    let (_, recorded_before) = fingerprints(&h);

    declare(&h, Some(OTHER_DOMAIN));
    let report_file = h.dir.path().join("report.json");
    let metrics_file = h.dir.path().join("metrics.prom");
    // Changed links exist with their old spec and count as converged, as before.
    let stdout = once_ok(
        &h,
        &[
            "--report-file",
            report_file.to_str().unwrap(),
            "--metrics-file",
            metrics_file.to_str().unwrap(),
        ],
    )
    .await;
    let reason =
        "dnsDomain can be updated only while the connection is IDLE or has no domain; it is DONE";
    assert!(
        stdout.contains(&format!(
            "changed: {}/orders-confluent: {reason}",
            group_id(0)
        )),
        "{stdout}"
    );
    assert_eq!(sent(&h, "update"), 0, "no PATCH");
    assert_eq!(sent(&h, "create"), 1);
    assert_eq!(the_connection(&h)["dnsDomain"], DOMAIN);
    let (declared, recorded) = fingerprints(&h);
    assert_eq!(
        recorded, recorded_before,
        "the ledger keeps what Atlas holds"
    );
    assert_ne!(recorded, declared);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(report["changed"][0]["reason"], reason, "{report:#}");
    assert_eq!(report["updated"], serde_json::json!([]), "{report:#}");
    let metrics = std::fs::read_to_string(&metrics_file).unwrap();
    assert!(
        metrics.contains("atlas_linkd_updates_total{outcome=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("atlas_linkd_updates_total{outcome=\"updated\"} 0"),
        "{metrics}"
    );
}
