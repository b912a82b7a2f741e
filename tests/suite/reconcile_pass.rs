//! The executor against the fake Atlas through the library: exactly once under every fault the fake
//! can inject, adoption, conflicts, rate limits and permanent errors.

use crate::support::harness::{group_id, harness};
use atlas_linkd::ledger::Ledger;
use atlas_linkd::model::Phase;
use fake_atlas::{BucketConfig, DuplicateMode, FakeConfig, FakeOp, Fault, Faults, ScriptedFault};

#[tokio::test]
async fn many_projects_are_created_once_and_a_second_pass_creates_nothing() {
    let h = harness(FakeConfig::default(), 12, 15, "").await;
    let first = h.pass().await;
    assert!(first.converged(), "{}", first.to_text());
    assert_eq!(first.created.len(), 180);
    h.assert_exactly_once();
    let creates = h.fake.counters().creates_committed;

    let second = h.pass().await;
    assert!(second.converged(), "{}", second.to_text());
    assert_eq!(second.created.len(), 0);
    assert_eq!(second.unchanged, 180);
    assert_eq!(
        h.fake.counters().creates_committed,
        creates,
        "the second pass created something"
    );
    let records = Ledger::open_read_only(&h.ledger_path())
        .unwrap()
        .records()
        .unwrap();
    assert_eq!(records.len(), 180);
    assert!(
        records
            .iter()
            .all(|r| r.phase == Phase::Created && r.atlas_id.is_some())
    );
}

#[tokio::test]
async fn existing_connections_are_adopted_and_a_409_is_counted_then_resolved() {
    let mut fake = FakeConfig::default();
    // Someone else creates the same connection at the moment ours arrives: Atlas answers 409.
    fake.faults.script.push(ScriptedFault {
        operation: FakeOp::Create,
        group_id: Some(group_id(1)),
        nth: 1,
        fault: Fault::ConcurrentCreate,
    });
    let h = harness(fake, 2, 5, "").await;
    // Two links of project 0 exist already.
    h.insert_existing(2);
    let report = h.pass().await;
    assert!(report.converged(), "{}", report.to_text());
    assert_eq!(report.conflicts, 1);
    assert_eq!(report.adopted.len(), 3, "{}", report.to_text());
    assert_eq!(report.created.len(), 7);
    assert_eq!(h.metrics.adoptions_total.get(), 3);
    assert_eq!(
        h.metrics
            .creates_total
            .with_label_values(&["conflict"])
            .get(),
        1
    );
    assert_eq!(
        h.metrics
            .creates_total
            .with_label_values(&["success"])
            .get(),
        7
    );
    h.assert_exactly_once();
}

#[tokio::test]
async fn silent_duplicates_and_heavy_faults_still_leave_every_link_exactly_once() {
    let fake = FakeConfig {
        duplicates: DuplicateMode::Create,
        faults: Faults {
            seed: 7,
            p_500: 0.10,
            p_503: 0.10,
            p_drop_before: 0.05,
            p_drop_after: 0.10,
            ..Faults::default()
        },
        ..FakeConfig::default()
    };
    let h = harness(
        fake,
        8,
        25,
        "retry:\n  max_attempts: 10\n  initial_backoff_ms: 5\n  max_backoff_secs: 1\n",
    )
    .await;
    let reports = h.converge(6).await;
    let last = reports.last().unwrap();
    assert!(
        last.converged(),
        "did not converge in {} passes:\n{}",
        reports.len(),
        last.to_text()
    );
    h.assert_exactly_once();
    assert_eq!(h.fake.counters().duplicates, 0);
    let records = Ledger::open_read_only(&h.ledger_path())
        .unwrap()
        .records()
        .unwrap();
    assert_eq!(records.len(), 200);
    for r in &records {
        let id = r.atlas_id.as_deref().unwrap();
        let remote = h.fake.connections(r.key.group_id.as_str());
        assert!(
            remote.iter().any(|c| c["_id"] == id),
            "{} records {id}, which the fake does not have",
            r.key
        );
    }
}

#[tokio::test]
async fn a_bucket_matching_the_config_sees_no_429() {
    let fake = FakeConfig {
        bucket: Some(BucketConfig {
            capacity: 20,
            refill: 20,
            period_secs: 1.0,
        }),
        ..FakeConfig::default()
    };
    let h = harness(
        fake,
        3,
        40,
        "rate_limit:\n  capacity: 20\n  refill: 20\n  period_secs: 1\n",
    )
    .await;
    let report = h.pass().await;
    assert!(report.converged(), "{}", report.to_text());
    assert_eq!(h.fake.counters().rate_limited, 0);
    assert_eq!(report.rate_limited, 0);
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_config_far_above_the_bucket_converges_counting_429s_and_honouring_retry_after() {
    // `RateLimit-Remaining` keeps us inside the small bucket, so the 429s come from the other
    // tools the fake pretends share it.
    let fake = FakeConfig {
        bucket: Some(BucketConfig {
            capacity: 10,
            refill: 10,
            period_secs: 1.0,
        }),
        faults: Faults {
            seed: 11,
            p_429: 0.08,
            retry_after_secs: 1,
            ..Faults::default()
        },
        ..FakeConfig::default()
    };
    let h = harness(fake, 2, 30, "").await;
    let report = h.pass().await;
    assert!(report.converged(), "{}", report.to_text());
    let sent = h.fake.counters().rate_limited;
    assert!(sent > 0, "no 429 was answered at all");
    assert_eq!(report.rate_limited, sent);
    assert_eq!(h.metrics.rate_limited_total.get(), sent);
    assert_eq!(
        h.fake.counters().early_after_retry_after,
        0,
        "a call came back before Retry-After"
    );
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_permanent_400_fails_only_its_links_and_names_atlas_reason() {
    let fake = FakeConfig {
        reject_when_contains: Some("vpce-svc-000100003".into()),
        ..FakeConfig::default()
    };
    let h = harness(fake, 2, 6, "").await;
    let report = h.pass().await;
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.failed.len(), 1, "{}", report.to_text());
    assert_eq!(report.failed[0].name, "link-3");
    assert!(
        report.failed[0].reason.contains("VALIDATION_ERROR"),
        "{}",
        report.failed[0].reason
    );
    assert_eq!(report.created.len(), 11);
    assert_eq!(
        h.metrics
            .creates_total
            .with_label_values(&["failure"])
            .get(),
        1
    );

    // The failed link waits before the next pass spends rate budget on it.
    let again = h.pass().await;
    assert_eq!(again.waiting.len(), 1, "{}", again.to_text());
    assert_eq!(again.created.len(), 0);
}

#[tokio::test]
async fn calls_in_flight_stay_within_the_global_and_per_project_caps() {
    let fake = FakeConfig {
        latency_ms: 40,
        ..FakeConfig::default()
    };
    let h = harness(
        fake,
        6,
        12,
        "reconcile:\n  concurrency: 5\n  per_project_concurrency: 2\n",
    )
    .await;
    let report = h.pass().await;
    assert!(report.converged(), "{}", report.to_text());
    let c = h.fake.counters();
    assert_eq!(
        c.peak_concurrent, 5,
        "the global cap was not reached or was exceeded"
    );
    assert!(
        c.peak_concurrent_by_project.values().all(|&n| n <= 2),
        "{:?}",
        c.peak_concurrent_by_project
    );
    assert!(c.peak_concurrent_by_project.values().any(|&n| n == 2));
}

#[tokio::test]
async fn a_new_policy_takes_effect_on_the_next_pass() {
    let fake = FakeConfig {
        latency_ms: 30,
        ..FakeConfig::default()
    };
    let h = harness(fake, 4, 6, "").await;
    let mut r = atlas_linkd::wiring::start(&h.config, h.metrics.clone(), &crate::support::test_env)
        .unwrap();
    let mut policy = atlas_linkd::reconcile::Policy::from_config(&h.config);
    policy.concurrency = 2;
    policy.per_project_concurrency = 1;
    r.set_policy(policy);
    let report = r
        .run_pass(&h.desired, &atlas_linkd::reconcile::PassOptions::default())
        .await
        .unwrap();
    r.shutdown().await;
    assert!(report.converged(), "{}", report.to_text());
    let c = h.fake.counters();
    assert_eq!(c.peak_concurrent, 2, "{c:?}");
    assert!(
        c.peak_concurrent_by_project.values().all(|&n| n == 1),
        "{c:?}"
    );
}
