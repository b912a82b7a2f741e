//! Never a duplicate against a slow, real Atlas, and "converged" only after a look: each case of
//! issue 8, through the real binary against a fake that commits after the client has gone.

use crate::support::harness::{self, group_id, harness, once};
use crate::support::{eventually, test_env};
use atlas_linkd::ledger::{Change, Ledger};
use atlas_linkd::model::{GroupId, LinkKey};
use atlas_linkd::reconcile::{self, PassOptions};
use atlas_linkd::wiring;
use fake_atlas::{DuplicateMode, FakeConfig, FakeOp, Fault, Faults, ScriptedFault};
use serde_json::json;
use std::process::{Output, Stdio};
use std::time::Duration;

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write_links(dir: &std::path::Path, yaml: &str) {
    std::fs::write(dir.join("manifests").join("links.yaml"), yaml).unwrap();
}

/// Case 1: Atlas takes 2.5 s to commit; the process is killed with 12 creates in flight at Atlas and
/// run again at once. The rerun must wait for the settle window before it believes a listing.
#[tokio::test]
async fn killed_while_atlas_is_still_committing_then_run_again_at_once_creates_nothing_twice() {
    let fake = FakeConfig {
        commit_delay_ms: 2500,
        // Atlas may create a second connection rather than refuse it.
        duplicates: DuplicateMode::Create,
        ..FakeConfig::default()
    };
    let h = harness(
        fake,
        3,
        4,
        "reconcile:\n  concurrency: 12\n  per_project_concurrency: 4\n",
    )
    .await;
    let mut child = once(&h.config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(
        "12 creates to reach the fake's backend",
        Duration::from_secs(30),
        async || (h.fake.pending_commits() == 12).then_some(()),
    )
    .await;
    child.kill().await.unwrap(); // SIGKILL, then reaped
    assert_eq!(h.fake.counters().creates_committed, 0);

    let sent_before = h.fake.counters().requests_of("create");
    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The rerun sent no create: it waited out the settle window and found all 12 committed.
    assert_eq!(
        h.fake.counters().requests_of("create"),
        sent_before,
        "{}",
        text(&out)
    );
    assert_eq!(h.fake.counters().creates_committed, 12);
    assert_eq!(h.fake.pending_commits(), 0);
    assert_eq!(h.fake.counters().duplicates, 0);
    h.assert_exactly_once();
}

/// Case 2: a gateway resets a quarter of the creates while the backend still commits each 0.8 s later.
#[tokio::test]
async fn resets_while_atlas_goes_on_working_leave_every_link_exactly_once() {
    let fake = FakeConfig {
        commit_delay_ms: 800,
        duplicates: DuplicateMode::Create,
        faults: Faults {
            seed: 25,
            p_reset_create: 0.25,
            ..Faults::default()
        },
        ..FakeConfig::default()
    };
    let h = harness(fake, 2, 20, "reconcile:\n  per_project_concurrency: 8\n").await;
    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        h.fake.counters().connections_dropped > 0,
        "no create was reset: the case did not happen"
    );
    eventually("no pending commit", Duration::from_secs(10), async || {
        (h.fake.pending_commits() == 0).then_some(())
    })
    .await;
    assert_eq!(h.fake.counters().duplicates, 0);
    h.assert_exactly_once();
}

/// Case 2b: a 502 or 504 from a gateway whose backend commits anyway is settled the same way.
#[tokio::test]
async fn gateway_timeouts_whose_backend_commits_anyway_leave_every_link_exactly_once() {
    let fake = FakeConfig {
        commit_delay_ms: 600,
        duplicates: DuplicateMode::Create,
        faults: Faults {
            seed: 5,
            p_502_create: 0.15,
            p_504_create: 0.15,
            ..Faults::default()
        },
        ..FakeConfig::default()
    };
    let h = harness(fake, 2, 10, "").await;
    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let c = h.fake.counters();
    assert!(
        c.requests_with("create", 502) + c.requests_with("create", 504) > 0,
        "no gateway error happened"
    );
    eventually("no pending commit", Duration::from_secs(10), async || {
        (h.fake.pending_commits() == 0).then_some(())
    })
    .await;
    assert_eq!(h.fake.counters().duplicates, 0);
    h.assert_exactly_once();
}

/// Case 3: someone else deletes two connections; `--once` must look before it says "converged".
#[tokio::test]
async fn once_looks_before_it_says_converged_and_recreates_what_was_deleted_behind_its_back() {
    let h = harness(FakeConfig::default(), 1, 20, "").await;
    let first = once(&h.config_path).output().await.unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let group = group_id(0);
    let remote = h.fake.connections(&group);
    for c in remote.iter().take(2) {
        assert!(h.fake.remove(&group, c["_id"].as_str().unwrap()));
    }
    assert_eq!(h.fake.connections(&group).len(), 18);

    let second = once(&h.config_path).output().await.unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("2 created"), "{stdout}");
    assert!(stdout.contains("18 unchanged"), "{stdout}");
    h.assert_exactly_once();
}

/// `--once` exits 1 when a managed project cannot be listed, even with nothing to create there.
#[tokio::test]
async fn once_exits_1_when_a_project_with_nothing_to_create_cannot_be_listed() {
    let h = harness(FakeConfig::default(), 2, 3, "retry:\n  max_attempts: 1\n").await;
    let first = once(&h.config_path).output().await.unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    h.fake.script(ScriptedFault {
        operation: FakeOp::List,
        group_id: Some(group_id(1)),
        nth: 2,
        fault: Fault::ServerError,
    });
    let second = once(&h.config_path).output().await.unwrap();
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("3 unverified"), "{stdout}");
}

/// Case 4: connections made elsewhere spell regions as Atlas echoes them; they are adopted.
#[tokio::test]
async fn regions_spelled_as_other_tools_sent_them_are_adopted_not_created_again() {
    let h = harness(FakeConfig::default(), 1, 1, "").await;
    let group = group_id(0);
    for (region, endpoint) in [
        ("us_east_2", "com.amazonaws.us-east-2.s3"),
        ("US_EAST_1", "com.amazonaws.us-east-1.s3"),
        ("US-WEST-2", "com.amazonaws.us-west-2.s3"),
    ] {
        h.fake.insert(
            &group,
            json!({"provider": "AWS", "vendor": "S3", "region": region, "serviceEndpointId": endpoint}),
        );
    }
    write_links(
        h.dir.path(),
        &format!(
            "projects:\n  - groupId: {group}\n    defaults: {{provider: AWS, vendor: S3}}\n    links:\n\
             \x20     - {{name: e2, region: us-east-2, serviceEndpointId: com.amazonaws.us-east-2.s3}}\n\
             \x20     - {{name: e1, region: us-east-1, serviceEndpointId: com.amazonaws.us-east-1.s3}}\n\
             \x20     - {{name: w2, region: us-west-2, serviceEndpointId: com.amazonaws.us-west-2.s3}}\n"
        ),
    );
    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 adopted"), "{stdout}");
    assert_eq!(h.fake.counters().requests_of("create"), 0);
    assert_eq!(h.fake.connections(&group).len(), 3);
}

/// Case 5: Atlas defaults MSK's `authenticationScheme` and returns it; a link asking another scheme
/// of the same cluster is a near-match conflict, never a second connection.
#[tokio::test]
async fn msk_authentication_scheme_is_matched_as_atlas_defaults_it_and_never_created_over() {
    let h = harness(FakeConfig::default(), 1, 1, "").await;
    let group = group_id(0);
    let arn = |c: &str| format!("arn:aws:kafka:us-east-1:123456789012:cluster/{c}/1");
    // Made by the UI: no scheme sent, so Atlas reads it back as SASL_SCRAM.
    h.fake.insert(
        &group,
        json!({"provider": "AWS", "vendor": "MSK", "arn": arn("orders"), "authenticationScheme": "SASL_SCRAM"}),
    );
    h.fake.insert(
        &group,
        json!({"provider": "AWS", "vendor": "MSK", "arn": arn("billing"), "authenticationScheme": "SASL_SCRAM"}),
    );
    write_links(
        h.dir.path(),
        &format!(
            "projects:\n  - groupId: {group}\n    defaults: {{provider: AWS, vendor: MSK}}\n    links:\n\
             \x20     - {{name: orders, arn: \"{}\", authenticationScheme: IAM}}\n\
             \x20     - {{name: billing, arn: \"{}\"}}\n",
            arn("orders"),
            arn("billing")
        ),
    );
    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 adopted"), "{stdout}");
    assert!(stdout.contains("1 conflicts"), "{stdout}");
    assert!(stdout.contains("orders"), "{stdout}");
    assert!(stdout.contains("authenticationScheme"), "{stdout}");
    assert_eq!(h.fake.counters().requests_of("create"), 0);
    assert_eq!(h.fake.connections(&group).len(), 2);
}

#[tokio::test]
async fn authentication_scheme_outside_msk_is_refused_by_validation() {
    let h = harness(FakeConfig::default(), 1, 1, "").await;
    write_links(
        h.dir.path(),
        &format!(
            "projects:\n  - groupId: {}\n    links:\n      - {{name: s3, provider: AWS, vendor: S3, region: us-east-1, serviceEndpointId: com.amazonaws.us-east-1.s3, authenticationScheme: IAM}}\n",
            group_id(0)
        ),
    );
    let mut cmd = harness::binary(&h.config_path);
    let out = cmd.arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("authenticationScheme"), "{stderr}");
    assert!(stderr.contains("MSK"), "{stderr}");
}

/// Case 6: today's rules: AWS Confluent Enterprise without `dnsDomain`, Kinesis with only `region`.
#[tokio::test]
async fn confluent_without_a_domain_and_kinesis_with_only_a_region_are_created() {
    let h = harness(FakeConfig::default(), 1, 1, "").await;
    let group = group_id(0);
    write_links(
        h.dir.path(),
        &format!(
            "projects:\n  - groupId: {group}\n    defaults: {{provider: AWS, region: us-east-1}}\n    links:\n\
             \x20     - {{name: confluent-enterprise, vendor: CONFLUENT, serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0, dnsSubDomain: []}}\n\
             \x20     - {{name: kinesis, vendor: KINESIS}}\n"
        ),
    );
    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 created"));
    assert_eq!(h.fake.connections(&group).len(), 2);
}

/// Case 7: another tool spends half of each project's refill; we leave it the reserve and take
/// what `RateLimit-Remaining` says is left, so both of us see few refusals. (The figures are
/// `cargo bench --bench shared_bucket`; this only checks the pass converges without a storm of 429s.)
#[tokio::test]
async fn a_bucket_shared_with_another_tool_converges_without_a_storm_of_429s() {
    let fake = FakeConfig {
        bucket: Some(fake_atlas::BucketConfig {
            capacity: 20,
            refill: 20,
            period_secs: 1.0,
        }),
        other_client_per_sec: 10.0,
        ..FakeConfig::default()
    };
    let h = harness(
        fake,
        3,
        60,
        "rate_limit:\n  capacity: 20\n  refill: 20\n  period_secs: 1\n  reserve: 2\n",
    )
    .await;
    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let c = h.fake.counters();
    let ours = c.total_requests() - c.requests_of("token") - c.requests_of("revoke");
    // Without the shared view a drain costs about one call in ten; a loose bound keeps this
    // from failing on a loaded machine while still catching a return of the storm.
    assert!(
        c.rate_limited * 20 <= ours,
        "{} of our {ours} calls got 429",
        c.rate_limited
    );
    h.assert_exactly_once();
}

/// Case 8: a broken proxy's `Retry-After: 18446744073709551615` must neither panic nor stall.
#[tokio::test]
async fn an_absurd_retry_after_neither_panics_nor_stalls_the_pass() {
    let h = harness(
        FakeConfig::default(),
        1,
        3,
        "retry:\n  max_attempts: 3\n  initial_backoff_ms: 10\n  max_backoff_secs: 1\n",
    )
    .await;
    h.fake.script(ScriptedFault {
        operation: FakeOp::Create,
        group_id: None,
        nth: 1,
        fault: Fault::RateLimited {
            retry_after_secs: u64::MAX,
        },
    });
    let out = tokio::time::timeout(Duration::from_secs(60), once(&h.config_path).output())
        .await
        .expect("the pass stalled")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_huge_resync_interval_is_refused_before_anything_runs() {
    let h = harness(FakeConfig::default(), 1, 1, "").await;
    let config = std::fs::read_to_string(&h.config_path).unwrap();
    std::fs::write(
        &h.config_path,
        format!("{config}reconcile:\n  resync_interval_secs: 18446744073709551615\n"),
    )
    .unwrap();
    let out = harness::binary(&h.config_path).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reconcile.resync_interval_secs"));
    assert_eq!(h.fake.counters().total_requests(), 0);
}

/// Case 9: one clock per pass. A failed link falls due while another project is being listed; a
/// second clock would plan it "retry" and create it in a project never listed in this pass.
#[tokio::test]
async fn a_link_that_falls_due_during_the_pass_is_not_created_without_a_listing() {
    let fake = FakeConfig {
        latency_ms: 1500,
        ..FakeConfig::default()
    };
    let h = harness(fake, 2, 1, "").await;
    let waiting = h.desired.projects[&GroupId::parse(&group_id(0)).unwrap()]
        .links
        .values()
        .next()
        .unwrap()
        .clone();
    // Project 0's link failed (ambiguously) long ago and is due again in one second; project 1's
    // link is new, so only project 1 is listed, which takes 1.5 s.
    let now = reconcile::now_unix();
    {
        let mut ledger = Ledger::open(&h.ledger_path()).unwrap();
        ledger
            .apply(&[
                Change::Intent {
                    key: waiting.key.clone(),
                    spec: waiting.spec.clone(),
                    fingerprint: waiting.fingerprint,
                    at_unix: now - 600,
                },
                Change::Failed {
                    key: waiting.key.clone(),
                    spec: waiting.spec.clone(),
                    fingerprint: waiting.fingerprint,
                    error: "no answer from Atlas".into(),
                    next_attempt_unix: now + 1,
                    at_unix: now - 600,
                },
            ])
            .unwrap();
        ledger.close().unwrap();
    }
    let r = wiring::start(&h.config, h.metrics.clone(), &test_env).unwrap();
    let options = PassOptions::default(); // a daemon pass after a file change: lists what it must
    let report = r.run_pass(&h.desired, &options).await.unwrap();
    r.shutdown().await;
    assert_eq!(
        report.created,
        vec![LinkKey::new(
            GroupId::parse(&group_id(1)).unwrap(),
            "link-0"
        )]
    );
    assert_eq!(report.waiting.len(), 1, "{}", report.to_text());
    assert!(
        h.fake.connections(&group_id(0)).is_empty(),
        "created in a project with no listing from this pass"
    );
}

/// The property behind cases 1 and 2: whatever the backend's delay (shorter than the settle
/// window), resets, 5xx, gateway errors and the moment of a `kill -9`, reruns of `--once` end with
/// every link exactly once.
mod schedules {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 6,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn random_delays_faults_and_kill_points_never_yield_a_duplicate(
            seed in any::<u64>(),
            commit_delay_ms in 0u64..2500,
            p_reset in 0.0f64..0.3,
            p_500 in 0.0f64..0.1,
            p_gateway in 0.0f64..0.1,
            kill_after_ms in proptest::option::of(0u64..3000),
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(schedule(seed, commit_delay_ms, p_reset, p_500, p_gateway, kill_after_ms));
        }
    }

    async fn schedule(
        seed: u64,
        commit_delay_ms: u64,
        p_reset: f64,
        p_500: f64,
        p_gateway: f64,
        kill_after_ms: Option<u64>,
    ) {
        let fake = FakeConfig {
            commit_delay_ms,
            duplicates: DuplicateMode::Create,
            faults: Faults {
                seed,
                p_500,
                p_reset_create: p_reset,
                p_504_create: p_gateway,
                ..Faults::default()
            },
            ..FakeConfig::default()
        };
        // settle_secs defaults to the timeout, set to 3 s below: longer than any delay drawn above.
        let h = harness(
            fake,
            2,
            8,
            "retry:\n  max_attempts: 4\n  initial_backoff_ms: 10\n  max_backoff_secs: 1\n",
        )
        .await;
        let config = std::fs::read_to_string(&h.config_path).unwrap();
        std::fs::write(
            &h.config_path,
            config.replace("timeout_secs: 5", "timeout_secs: 3"),
        )
        .unwrap();
        if let Some(ms) = kill_after_ms {
            let mut child = once(&h.config_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // A random kill point is the schedule under test, not a wait for something to happen.
            tokio::time::sleep(Duration::from_millis(ms)).await;
            child.kill().await.unwrap();
        }
        let mut last = None;
        for _ in 0..4 {
            let out = once(&h.config_path).output().await.unwrap();
            let done = out.status.code() == Some(0);
            last = Some(out);
            if done {
                break;
            }
        }
        let last = last.unwrap();
        assert_eq!(last.status.code(), Some(0), "{}", text(&last));
        eventually("no pending commit", Duration::from_secs(10), async || {
            (h.fake.pending_commits() == 0).then_some(())
        })
        .await;
        assert_eq!(h.fake.counters().duplicates, 0, "{}", text(&last));
        h.assert_exactly_once();
    }
}
