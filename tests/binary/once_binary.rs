//! The real binary's `--once` against an in-process fake Atlas: exit codes, crash safety, the metrics file.

use crate::support::harness::{harness, once};
use crate::support::{CLIENT_SECRET, eventually};
use atlas_linkd::ledger::Ledger;
use atlas_linkd::model::Phase;
use fake_atlas::{DuplicateMode, FakeConfig};
use std::process::Stdio;
use std::time::Duration;

#[tokio::test]
async fn an_invalid_manifest_exits_2_without_a_single_api_call() {
    let h = harness(FakeConfig::default(), 2, 3, "").await;
    std::fs::write(
        h.dir.path().join("manifests").join("broken.yaml"),
        "projects:\n  - groupId: 0123\n    links:\n      - name: x\n        provider: AWS\n        vendor: MSK\n        arn: nope\n",
    )
    .unwrap();
    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    assert!(stderr.contains("arn"), "{stderr}");
    assert_eq!(h.fake.counters().total_requests(), 0);
}

#[tokio::test]
async fn converged_run_exits_0_and_writes_the_metrics_file() {
    let h = harness(FakeConfig::default(), 3, 4, "").await;
    let metrics_file = h.dir.path().join("textfile").join("atlas_linkd.prom");
    std::fs::create_dir_all(metrics_file.parent().unwrap()).unwrap();
    let out = once(&h.config_path)
        .arg("--metrics-file")
        .arg(&metrics_file)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("12 created"), "{stdout}");
    let text = std::fs::read_to_string(&metrics_file).unwrap();
    assert!(
        text.contains("atlas_linkd_creates_total{outcome=\"success\"} 12"),
        "{text}"
    );
    // No temporary files left beside it.
    let entries = std::fs::read_dir(metrics_file.parent().unwrap())
        .unwrap()
        .count();
    assert_eq!(entries, 1);
}

#[tokio::test]
async fn killed_mid_pass_then_run_again_every_link_exists_exactly_once() {
    // Atlas may create a duplicate rather than refuse it: the rerun must not rely on a 409.
    let fake = FakeConfig {
        latency_ms: 150,
        duplicates: DuplicateMode::Create,
        ..FakeConfig::default()
    };
    let h = harness(
        fake,
        4,
        25,
        "reconcile:\n  concurrency: 8\n  per_project_concurrency: 2\n",
    )
    .await;
    let mut child = once(&h.config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(
        "the pass to get going",
        Duration::from_secs(30),
        async || (h.fake.counters().creates_committed >= 10).then_some(()),
    )
    .await;
    child.kill().await.unwrap(); // SIGKILL, then reaped

    assert!(
        h.fake.counters().creates_committed < 100,
        "the pass finished before it was killed"
    );

    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    h.assert_exactly_once();
    let records = Ledger::open_read_only(&h.ledger_path())
        .unwrap()
        .records()
        .unwrap();
    assert_eq!(records.len(), 100);
    for r in &records {
        assert!(
            matches!(r.phase, Phase::Created | Phase::Adopted),
            "{} is {:?}",
            r.key,
            r.phase
        );
        let id = r.atlas_id.as_deref().unwrap();
        assert!(
            h.fake
                .connections(r.key.group_id.as_str())
                .iter()
                .any(|c| c["_id"] == id)
        );
    }
}

#[tokio::test]
async fn a_second_process_on_the_same_ledger_exits_2_naming_the_holder() {
    let fake = FakeConfig {
        latency_ms: 300,
        ..FakeConfig::default()
    };
    let h = harness(
        fake,
        1,
        40,
        "reconcile:\n  concurrency: 1\n  per_project_concurrency: 1\n",
    )
    .await;
    let mut first = once(&h.config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(
        "a first committed create",
        Duration::from_secs(30),
        async || (h.fake.counters().creates_committed >= 1).then_some(()),
    )
    .await;
    let pid = first.id().unwrap();
    let out = once(&h.config_path).output().await.unwrap();
    first.kill().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&pid.to_string()),
        "does not name pid {pid}: {stderr}"
    );
}

#[tokio::test]
async fn missing_credentials_exit_2_naming_what_to_set() {
    let h = harness(FakeConfig::default(), 1, 1, "").await;
    let out = once(&h.config_path)
        .env_remove("MONGODB_ATLAS_CLIENT_ID")
        .env_remove("MONGODB_ATLAS_CLIENT_SECRET")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MONGODB_ATLAS_CLIENT_ID"));
    assert_eq!(h.fake.counters().total_requests(), 0);
}

#[tokio::test]
async fn sigterm_drains_in_flight_creates_records_them_and_exits_1() {
    let fake = FakeConfig {
        latency_ms: 300,
        ..FakeConfig::default()
    };
    let h = harness(
        fake,
        2,
        30,
        "reconcile:\n  concurrency: 4\n  per_project_concurrency: 2\n",
    )
    .await;
    let child = once(&h.config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    eventually("4 committed creates", Duration::from_secs(30), async || {
        (h.fake.counters().creates_committed >= 4).then_some(())
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("interrupted"), "{stdout}");
    // Every connection the fake holds is recorded; nothing was left unrecorded by the drain.
    let committed = h.fake.counters().creates_committed;
    assert!(committed < 60, "the pass finished before the signal");
    let records = Ledger::open_read_only(&h.ledger_path())
        .unwrap()
        .records()
        .unwrap();
    let created: Vec<_> = records
        .iter()
        .filter(|r| r.phase == Phase::Created)
        .collect();
    assert_eq!(created.len() as u64, committed, "{stdout}");
    for group in h.desired.projects.keys() {
        for c in h.fake.connections(group.as_str()) {
            assert!(
                created
                    .iter()
                    .any(|r| r.atlas_id.as_deref() == c["_id"].as_str()),
                "{c} is not in the ledger"
            );
        }
    }
}

#[tokio::test]
async fn trace_logs_of_a_whole_run_hold_no_secret_token_or_authorization_header() {
    let fake = FakeConfig {
        faults: fake_atlas::Faults {
            seed: 3,
            p_500: 0.2,
            ..Default::default()
        },
        ..FakeConfig::default()
    };
    let h = harness(fake, 2, 5, "").await;
    let out = once(&h.config_path)
        .env("RUST_LOG", "trace")
        .output()
        .await
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.len() > 10_000, "trace logging did not happen: {all}");
    for needle in [CLIENT_SECRET, "Bearer", "Basic ", "authorization: "] {
        assert!(!all.contains(needle), "`{needle}` appears in the output");
    }
    assert!(
        !all.to_ascii_lowercase().contains("access_token"),
        "a token body was logged"
    );
}
