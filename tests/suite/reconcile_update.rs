//! dnsDomain updates through the executor against the fake: a PATCH whose answer is lost is sent
//! again, and one that took effect before its answer was lost is recognised by a get and recorded.

use crate::support::harness::{Harness, group_id, harness};
use atlas_linkd::ledger::Ledger;
use atlas_linkd::manifest;
use fake_atlas::{FakeConfig, FakeOp, Fault, ScriptedFault};

const DOMAIN: &str = "use1.dom7x2q.confluent.cloud";

/// Replaces the harness's manifest with one AWS CONFLUENT link (with `dns_domain` if given) and
/// reloads what it declares.
fn declare(h: &mut Harness, dns_domain: Option<&str>) {
    let domain = dns_domain
        .map(|d| format!("        dnsDomain: {d}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "projects:\n  - groupId: {}\n    name: p\n    links:\n      - name: orders-confluent\n        provider: AWS\n        vendor: CONFLUENT\n        region: us-east-1\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-0c0f1d2e3a4b5c6d7\n        dnsSubDomain: []\n{domain}",
        group_id(0)
    );
    std::fs::write(h.dir.path().join("manifests").join("links.yaml"), yaml).unwrap();
    h.desired = manifest::load(&h.config.manifests).unwrap();
}

fn updates(h: &Harness) -> u64 {
    h.fake
        .counters()
        .requests
        .get("update")
        .map(|by_status| by_status.values().sum())
        .unwrap_or(0)
}

/// Created without a domain, then declared with one; `fault` hits the first PATCH.
async fn update_with_fault(fault: Fault) -> Harness {
    let mut h = harness(FakeConfig::default(), 1, 1, "").await;
    declare(&mut h, None);
    let first = h.pass().await;
    assert_eq!(first.created.len(), 1, "{}", first.to_text());
    declare(&mut h, Some(DOMAIN));
    h.fake.script(ScriptedFault {
        operation: FakeOp::Update,
        group_id: None,
        nth: 1,
        fault,
    });
    let second = h.pass().await;
    assert_eq!(second.updated.len(), 1, "{}", second.to_text());
    assert!(second.converged(), "{}", second.to_text());
    let conns = h.fake.connections(&group_id(0));
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["dnsDomain"], DOMAIN);
    let records = Ledger::open_read_only(&h.ledger_path())
        .unwrap()
        .records()
        .unwrap();
    let declared = h.desired.links().next().unwrap().fingerprint;
    assert_eq!(records[0].fingerprint, declared);
    assert_eq!(
        h.metrics
            .updates_total
            .with_label_values(&["updated"])
            .get(),
        1
    );
    assert_eq!(
        h.metrics.updates_total.with_label_values(&["failed"]).get(),
        0
    );
    h
}

#[tokio::test]
async fn a_patch_answered_500_is_sent_again() {
    let h = update_with_fault(Fault::ServerError).await;
    assert_eq!(updates(&h), 2);
}

#[tokio::test]
async fn a_patch_that_took_effect_before_its_answer_was_lost_is_recorded_after_a_get() {
    // The repeat finds the connection past IDLE with its domain and is refused (400); a get shows
    // the declared domain, so the update happened.
    let h = update_with_fault(Fault::DropAfterCommit).await;
    let requests = h.fake.counters().requests;
    assert_eq!(
        requests["update"],
        std::collections::BTreeMap::from([(0, 1), (400, 1)]),
        "one dropped, one refused"
    );
    assert_eq!(requests["get"].values().sum::<u64>(), 1);
    let third = h.pass().await;
    assert!(
        third.updated.is_empty() && third.unchanged == 1,
        "{}",
        third.to_text()
    );
    assert_eq!(updates(&h), 2);
}

#[tokio::test]
async fn a_daemon_pass_that_lists_only_what_it_must_still_lists_a_project_with_a_domain_change() {
    let mut h = harness(FakeConfig::default(), 1, 1, "").await;
    declare(&mut h, None);
    assert_eq!(h.pass().await.created.len(), 1);
    declare(&mut h, Some(DOMAIN));
    // The daemon's ordinary pass: no resync, so only projects the first plan asks for are listed.
    let r = atlas_linkd::wiring::start(&h.config, h.metrics.clone(), &crate::support::test_env)
        .unwrap();
    let options = atlas_linkd::reconcile::PassOptions::default();
    let report = r.run_pass(&h.desired, &options).await.unwrap();
    r.shutdown().await;
    assert_eq!(report.updated.len(), 1, "{}", report.to_text());
    assert_eq!(updates(&h), 1);
    assert_eq!(h.fake.connections(&group_id(0))[0]["dnsDomain"], DOMAIN);
}
