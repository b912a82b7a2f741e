//! The executor against the fake Atlas through the library: exactly once under every fault the fake
//! can inject, adoption, conflicts, rate limits and permanent errors.

use crate::support::harness::{Harness, group_id, harness};
use crate::support::{eventually, test_env};
use atlas_linkd::ledger::{Ledger, NotHeld};
use atlas_linkd::model::Phase;
use atlas_linkd::reconcile::{PassError, PassOptions};
use atlas_linkd::wiring;
use fake_atlas::{BucketConfig, DuplicateMode, FakeConfig, FakeOp, Fault, Faults, ScriptedFault};
use std::time::Duration;

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

/// A listing that ended with its last page asks for no further slot or token. A bucket of four that
/// refills once an hour leaves our mirror a burst of two (one token of headroom and one for the
/// round trip are kept back): one for the listing, one for the create, so the pass ends at once. A
/// phantom admission after the last page once took the create's token, and the create waited an hour.
#[tokio::test]
async fn the_end_of_a_listing_costs_no_token_of_the_bucket() {
    let fake = FakeConfig {
        bucket: Some(BucketConfig {
            capacity: 4,
            refill: 1,
            period_secs: 3600.0,
        }),
        ..FakeConfig::default()
    };
    let h = harness(
        fake,
        1,
        1,
        "rate_limit:\n  capacity: 4\n  refill: 1\n  period_secs: 3600\n  reserve: 0\n",
    )
    .await;
    let report = tokio::time::timeout(Duration::from_secs(60), h.pass())
        .await
        .expect("the create waited for a token the listing should not have taken");
    assert!(report.converged(), "{}", report.to_text());
    assert_eq!(report.created.len(), 1);
    let requests = h.fake.counters().requests;
    assert_eq!(requests["list"][&200], 1);
    assert_eq!(requests["create"][&200], 1);
    assert_eq!(h.fake.counters().rate_limited, 0);
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

/// The first listing of project 0 gets `fault`.
fn first_listing_of_project_0(fault: Fault) -> FakeConfig {
    let mut fake = FakeConfig::default();
    fake.faults.script.push(ScriptedFault {
        operation: FakeOp::List,
        group_id: Some(group_id(0)),
        nth: 1,
        fault,
    });
    fake
}

/// Polls until the fake holds `n` connections in project `p`.
async fn wait_for_connections(h: &Harness, p: usize, n: usize) {
    let group = group_id(p);
    eventually(
        format!("{n} connections in project {p}"),
        Duration::from_secs(60),
        async || (h.fake.connections(&group).len() == n).then_some(()),
    )
    .await;
}

/// Issue 12, case 4: a project whose listing waits out a long `Retry-After` holds no other project's
/// creates back. Project 1's ten creates all complete while project 0 is still paused.
#[tokio::test]
async fn a_project_paused_by_a_long_retry_after_holds_no_other_project_back() {
    let fake = first_listing_of_project_0(Fault::RateLimited {
        retry_after_secs: 3600,
    });
    let h = harness(
        fake,
        2,
        10,
        "retry:\n  max_attempts: 8\n  initial_backoff_ms: 20\n  max_backoff_secs: 3600\n",
    )
    .await;
    let r = wiring::start(&h.config, h.metrics.clone(), &test_env).unwrap();
    let options = PassOptions {
        list_all: true,
        wait_for_settle: true,
        ..PassOptions::default()
    };
    let cancel = options.cancel.clone();
    // Boxed, so that it can be dropped before the reconciler shuts down.
    let mut pass = Box::pin(r.run_pass(&h.desired, &options));
    tokio::select! {
        result = &mut pass => panic!("the pass ended while project 0 was paused for an hour: {:?}",
            result.map(|r| r.to_text())),
        () = wait_for_connections(&h, 1, 10) => {}
    }
    assert!(h.fake.connections(&group_id(0)).is_empty());
    assert_eq!(h.fake.counters().rate_limited, 1);

    // Still paused: a signal ends the pass, with project 1 created and project 0 not attempted.
    cancel.cancel();
    let report = (&mut pass).await.unwrap();
    let text = report.to_text();
    assert_eq!(report.created.len(), 10, "{text}");
    assert!(
        report
            .created
            .iter()
            .all(|k| k.group_id.as_str() == group_id(1))
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["interrupted"], true, "{text}");
    let not_attempted = json["notAttempted"].as_array().unwrap();
    assert_eq!(not_attempted.len(), 10, "{text}");
    assert!(
        not_attempted
            .iter()
            .all(|f| f["groupId"] == group_id(0).as_str()),
        "{text}"
    );
    drop(pass);
    r.shutdown().await;
    assert!(h.fake.connections(&group_id(0)).is_empty());
}

/// Issue 12, case 7: a pass over a ledger whose state folder was deleted sends no create, and says
/// why, naming the ledger and its lock.
#[tokio::test]
async fn a_pass_over_a_deleted_state_folder_sends_no_create() {
    let h = harness(FakeConfig::default(), 2, 5, "").await;
    let r = wiring::start(&h.config, h.metrics.clone(), &test_env).unwrap();
    std::fs::remove_dir_all(h.ledger_path().parent().unwrap()).unwrap();
    let options = PassOptions {
        list_all: true,
        wait_for_settle: true,
        ..PassOptions::default()
    };
    let err = r.run_pass(&h.desired, &options).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, PassError::NotHeld(NotHeld::Replaced(_))),
        "{text}"
    );
    assert!(
        text.contains(&h.ledger_path().display().to_string()),
        "{text}"
    );
    let lock = atlas_linkd::ledger::lock_path(&h.ledger_path());
    assert!(text.contains(&lock.display().to_string()), "{text}");
    assert_eq!(h.fake.counters().creates_committed, 0);
    r.shutdown().await;
}

/// Issue 12, case 7, in the middle of a pass: project 0's listing is slow; the state folder is
/// deleted once project 1 is created; project 0's creates are then never sent.
#[tokio::test]
async fn a_state_folder_deleted_mid_pass_stops_the_creates_of_the_projects_still_listing() {
    let fake = first_listing_of_project_0(Fault::Slow { ms: 10_000 });
    let h = harness(fake, 2, 5, "").await;
    let r = wiring::start(&h.config, h.metrics.clone(), &test_env).unwrap();
    let options = PassOptions {
        list_all: true,
        wait_for_settle: true,
        ..PassOptions::default()
    };
    // Boxed, so that it can be dropped before the reconciler shuts down.
    let mut pass = Box::pin(r.run_pass(&h.desired, &options));
    tokio::select! {
        result = &mut pass => panic!("the pass ended before project 0 was listed: {:?}",
            result.map(|r| r.to_text())),
        () = wait_for_connections(&h, 1, 5) => {}
    }
    assert!(
        h.fake.connections(&group_id(0)).is_empty(),
        "project 0's listing came back before project 1 was created"
    );
    std::fs::remove_dir_all(h.ledger_path().parent().unwrap()).unwrap();
    let err = (&mut pass).await.unwrap_err();
    drop(pass);
    assert!(
        matches!(err, PassError::NotHeld(NotHeld::Replaced(_))),
        "{err}"
    );
    assert!(h.fake.connections(&group_id(0)).is_empty());
    assert_eq!(h.fake.counters().creates_committed, 5);
    r.shutdown().await;
}
