//! `--once --wait` through the real binary against an in-process fake whose connections go `IDLE`,
//! `WORKING`, then `DONE` (or `FAILED`) after short delays: it ends 0 only once every link is
//! `DONE`, listing each project at most once per poll; 1 with Atlas's message on `FAILED`; 1 at the
//! deadline naming the links not ready; 1 on a signal; it never waits after a pass that did not
//! converge; and nonsense durations are refused with 2 before any call.

use crate::support::eventually;
use crate::support::harness::{Harness, group_id, harness, once};
use atlas_linkd::ledger::Ledger;
use atlas_linkd::model::RemoteState;
use fake_atlas::FakeConfig;
use serde_json::Value;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Each poll of the wait lists once a second.
const POLL: &str = "reconcile:\n  ready_poll_secs: 1\n";

fn explain(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn lifecycle(idle_ms: u64, working_ms: u64) -> FakeConfig {
    FakeConfig {
        idle_ms,
        working_ms,
        ..FakeConfig::default()
    }
}

fn lists(h: &Harness) -> u64 {
    h.fake.counters().requests_with("list", 200)
}

#[tokio::test]
async fn wait_ends_0_only_once_every_link_is_done_with_one_list_per_project_per_poll() {
    let (projects, links) = (2, 3);
    let h = harness(lifecycle(1_000, 1_000), projects, links, POLL).await;
    let outputs = h.dir.path().join("outputs.json");
    let metrics = h.dir.path().join("linkd.prom");
    let started = Instant::now();
    let out = once(&h.config_path)
        .args(["--wait", "1m", "--outputs-file"])
        .arg(&outputs)
        .arg("--metrics-file")
        .arg(&metrics)
        .output()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("wait: all 6 declared links are DONE"),
        "{}",
        explain(&out)
    );
    // At the fake: every connection is DONE, none is left IDLE or WORKING.
    for p in 0..projects {
        let remote = h.fake.connections(&group_id(p));
        assert_eq!(remote.len(), links);
        for c in &remote {
            assert_eq!(c["state"], "DONE", "{c}");
        }
    }
    // Connections are IDLE right after the pass, so the wait had to poll: the pass's one list per
    // project, then one per project per poll (a poll a second), never one call per link.
    let listed = lists(&h);
    let polls_at_most = elapsed.as_secs() + 1;
    assert!(
        listed >= 2 * projects as u64,
        "{listed} lists: the wait never listed"
    );
    assert!(
        listed <= projects as u64 * (1 + polls_at_most),
        "{listed} lists in {elapsed:?}: more than one per project per poll"
    );
    assert_eq!(h.fake.counters().requests_with("get", 200), 0, "no gets");
    // The outputs file is written after the wait: it holds the final states and outputs.
    let entries: Value = serde_json::from_str(&std::fs::read_to_string(&outputs).unwrap()).unwrap();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), projects * links);
    for e in entries {
        assert_eq!(e["state"], "DONE", "{e}");
        assert!(
            e["interfaceEndpointId"]
                .as_str()
                .is_some_and(|id| id.starts_with("vpce-")),
            "{e}"
        );
    }
    // So is the metrics file: the remote states are the ones the wait ended with.
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.lines()
            .any(|l| l == "atlas_linkd_remote_links{state=\"DONE\"} 6"),
        "{prom}"
    );
    assert!(!prom.contains("state=\"UNKNOWN\""), "{prom}");
}

#[tokio::test]
async fn wait_ends_1_at_once_with_atlas_message_when_a_link_fails() {
    let fake = FakeConfig {
        // Link 2 of project 1 ends FAILED; the others DONE.
        fail_when_contains: Some("vpce-svc-000100002".into()),
        fail_message: Some("Endpoint service rejected the connection request".into()),
        ..lifecycle(500, 500)
    };
    let h = harness(fake, 2, 3, POLL).await;
    let started = Instant::now();
    let out = once(&h.config_path)
        .args(["--wait", "10m"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the failure ended the wait, not the deadline"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pass converged"), "{}", explain(&out));
    assert!(
        stdout.contains(&format!(
            "{}/link-2: FAILED: Endpoint service rejected the connection request",
            group_id(1)
        )),
        "{}",
        explain(&out)
    );
    // Only the failed link is named.
    assert_eq!(stdout.matches(": FAILED").count(), 1, "{stdout}");
}

#[tokio::test]
async fn wait_ends_1_at_the_deadline_naming_each_link_not_ready_with_its_state() {
    // Connections stay IDLE for ten minutes.
    let h = harness(lifecycle(600_000, 0), 1, 2, POLL).await;
    let outputs = h.dir.path().join("outputs.json");
    let started = Instant::now();
    let out = once(&h.config_path)
        .args(["--wait", "3s", "--outputs-file"])
        .arg(&outputs)
        .output()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("wait: the deadline of 3s passed: 2 of 2 declared links are not DONE"),
        "{}",
        explain(&out)
    );
    for l in 0..2 {
        let line = format!("  {}/link-{l}: IDLE\n", group_id(0));
        assert!(stdout.contains(&line), "{line:?} in\n{stdout}");
    }
    // Polled while waiting: the pass's list, then about one a second.
    let listed = lists(&h);
    assert!((3..=2 + elapsed.as_secs()).contains(&listed), "{listed}");
    let entries: Value = serde_json::from_str(&std::fs::read_to_string(&outputs).unwrap()).unwrap();
    assert_eq!(entries[0]["state"], "IDLE");
}

#[tokio::test]
async fn a_signal_during_the_wait_ends_it_promptly_with_1() {
    let h = harness(lifecycle(600_000, 0), 1, 1, POLL).await;
    let child = once(&h.config_path)
        .args(["--wait", "10m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    // The pass lists once; a second list is the wait's first poll, and its state is in the ledger
    // once the poll has recorded it (a signal before that would find the link not listed yet).
    eventually(
        "the wait's first poll recorded",
        Duration::from_secs(60),
        async || {
            let idle = Ledger::read_only_records(&h.ledger_path())
                .ok()?
                .iter()
                .any(|r| r.remote_state == Some(RemoteState::Idle));
            (lists(&h) >= 2 && idle).then_some(())
        },
    )
    .await;
    let signalled = Instant::now();
    let st = std::process::Command::new("kill")
        .arg("-INT")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the wait did not stop on SIGINT")
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(signalled.elapsed() < Duration::from_secs(10));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("wait: interrupted: 1 of 1 declared links are not DONE"),
        "{}",
        explain(&out)
    );
    assert!(
        stdout.contains(&format!("{}/link-0: IDLE", group_id(0))),
        "{}",
        explain(&out)
    );
}

#[tokio::test]
async fn a_pass_that_did_not_converge_is_not_followed_by_a_wait() {
    let fake = FakeConfig {
        reject_when_contains: Some("vpce-svc-000000001".into()),
        ..lifecycle(600_000, 0)
    };
    let h = harness(fake, 1, 2, POLL).await;
    let started = Instant::now();
    let out = once(&h.config_path)
        .args(["--wait", "10m"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(started.elapsed() < Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pass NOT converged"), "{stdout}");
    assert!(
        stdout.contains("wait: not waiting: the pass did not converge"),
        "{stdout}"
    );
    assert_eq!(lists(&h), 1, "only the pass listed");
}

#[tokio::test]
async fn nonsense_durations_are_refused_with_2_before_any_call() {
    let h = harness(FakeConfig::default(), 1, 1, POLL).await;
    for nonsense in ["45", "soon", "0s", "-5m", "8d", "1h30"] {
        let out = once(&h.config_path)
            .arg(format!("--wait={nonsense}"))
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{nonsense}: {}", explain(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--wait"), "{nonsense}: {stderr}");
    }
    // --wait belongs to --once.
    let out = tokio::process::Command::from(crate::support::harness::binary(&h.config_path))
        .args(["--wait", "45m", "validate"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    assert_eq!(h.fake.counters().total_requests(), 0);
}

#[tokio::test]
async fn a_connection_deleted_outside_during_the_wait_ends_it_with_1() {
    let h = harness(lifecycle(600_000, 0), 1, 2, POLL).await;
    let child = once(&h.config_path)
        .args(["--wait", "10m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(
        "the wait's first poll",
        Duration::from_secs(60),
        async || (lists(&h) >= 2).then_some(()),
    )
    .await;
    let group = group_id(0);
    let first = h.fake.connections(&group)[0]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(h.fake.remove(&group, &first));
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the wait went on after its connection was deleted")
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{group}/link-0: GONE: Atlas no longer lists connection {first}"
        )),
        "{}",
        explain(&out)
    );
}
