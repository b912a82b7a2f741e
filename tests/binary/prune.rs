//! Guarded prune and unmanaged connections through the real binary (`--once` against the fake,
//! issue 9): an unmanaged connection is counted and never deleted; prune off deletes nothing; prune
//! on respects `grace_secs` and `max_per_pass`, skips a link in use (exit 0, reported), never
//! touches unmanaged or declared connections, and does nothing when no links are declared.

use crate::support::eventually;
use crate::support::harness::{Harness, binary, group_id, harness, write_manifest};
use atlas_linkd::ledger::Ledger;
use atlas_linkd::model::{Phase, Record};
use fake_atlas::FakeConfig;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PRUNE_ON: &str = "prune:\n  enabled: true\n  grace_secs: 0\n  max_per_pass: 10\n";

fn explain(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What one `--once` pass left behind: its status, its JSON report and its metrics.
struct Pass {
    out: Output,
    report: Value,
    metrics: String,
}

impl Pass {
    fn names(&self, list: &str) -> Vec<String> {
        let mut names: Vec<String> = self.report[list]
            .as_array()
            .unwrap_or_else(|| panic!("no list {list} in {}", self.report))
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    fn metric(&self, series: &str) -> f64 {
        self.metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{}", self.metrics))
    }
}

/// `--once` with a report file and a metrics file.
async fn once_pass(h: &Harness) -> Pass {
    let report_path = h.dir.path().join("report.json");
    let metrics_path = h.dir.path().join("metrics.prom");
    let mut cmd = tokio::process::Command::from(binary(&h.config_path));
    cmd.arg("--once")
        .arg("--report-file")
        .arg(&report_path)
        .arg("--metrics-file")
        .arg(&metrics_path)
        .kill_on_drop(true);
    let out = cmd.output().await.unwrap();
    let report = std::fs::read(&report_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("no report file: {}", explain(&out)));
    let metrics = std::fs::read_to_string(&metrics_path).unwrap_or_default();
    Pass {
        out,
        report,
        metrics,
    }
}

/// A pass that must end 0.
async fn converged(h: &Harness) -> Pass {
    let pass = once_pass(h).await;
    assert_eq!(pass.out.status.code(), Some(0), "{}", explain(&pass.out));
    pass
}

/// The ids of the fake's connections in project 0 that are not being deleted.
fn live(h: &Harness) -> Vec<String> {
    let mut ids: Vec<String> = h
        .fake
        .connections(&group_id(0))
        .iter()
        .filter(|c| {
            !matches!(
                c["state"].as_str(),
                Some("DELETE_REQUESTED" | "DELETING" | "DELETED")
            )
        })
        .map(|c| c["_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn records(h: &Harness) -> Vec<Record> {
    Ledger::open_read_only(&h.ledger_path())
        .unwrap()
        .records()
        .unwrap()
}

fn id_of(h: &Harness, name: &str) -> String {
    records(h)
        .into_iter()
        .find(|r| r.key.name == name)
        .and_then(|r| r.atlas_id)
        .unwrap_or_else(|| panic!("{name} is not recorded"))
}

/// Declares only the first `links` links of project 0 from now on.
fn declare(h: &Harness, links: usize) -> PathBuf {
    write_manifest(h.dir.path(), 1, links)
}

fn deletes_sent(h: &Harness) -> u64 {
    h.fake
        .counters()
        .requests
        .get("delete")
        .map_or(0, |by_status| by_status.values().sum())
}

/// `plan --output json`, asynchronously: the fake answers on this test's runtime.
async fn plan_json(h: &Harness) -> Value {
    let mut cmd = tokio::process::Command::from(binary(&h.config_path));
    cmd.args(["plan", "--output", "json"]).kill_on_drop(true);
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", explain(&out)))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A connection nobody declared or recorded, as the console or another tool would make it.
fn foreign(h: &Harness) -> String {
    h.fake.insert(
        &group_id(0),
        json!({
            "provider": "AWS", "vendor": "S3", "region": "us-east-1",
            "serviceEndpointId": "com.amazonaws.vpce.us-east-1.vpce-svc-made-by-hand",
            "state": "DONE"
        }),
    )
}

#[tokio::test]
async fn an_unmanaged_connection_is_counted_reported_and_never_deleted_even_with_prune_on() {
    let h = harness(FakeConfig::default(), 1, 2, PRUNE_ON).await;
    let stranger = foreign(&h);
    let first = converged(&h).await;
    assert_eq!(first.names("created").len(), 2, "{}", first.report);
    let unmanaged = first.report["unmanaged"].as_array().unwrap();
    assert_eq!(unmanaged.len(), 1, "{}", first.report);
    assert_eq!(unmanaged[0]["atlasId"], stranger.as_str());
    assert_eq!(unmanaged[0]["groupId"], group_id(0).as_str());
    assert_eq!(
        first.metric(&format!(
            "atlas_linkd_unmanaged_links{{project=\"{}\"}}",
            group_id(0)
        )),
        1.0
    );
    let text = String::from_utf8_lossy(&first.out.stdout);
    assert!(
        text.contains(&format!("unmanaged: {}/{stranger}", group_id(0))),
        "{text}"
    );

    // `plan` shows it too, in its own list.
    let plan = plan_json(&h).await;
    assert_eq!(plan["unmanaged"][0]["atlasId"], stranger.as_str());

    // Everything declared is dropped but one link: prune deletes the undeclared one we created,
    // never the stranger.
    declare(&h, 1);
    let second = converged(&h).await;
    assert_eq!(second.names("deleted"), ["link-1"], "{}", second.report);
    assert_eq!(second.report["unmanaged"][0]["atlasId"], stranger.as_str());
    let mut expected = vec![id_of(&h, "link-0"), stranger.clone()];
    expected.sort();
    assert_eq!(live(&h), expected);
    assert_eq!(deletes_sent(&h), 1);
}

#[tokio::test]
async fn prune_off_deletes_nothing_and_reports_the_orphans() {
    let h = harness(FakeConfig::default(), 1, 3, "").await;
    converged(&h).await;
    let before = live(&h);
    declare(&h, 1);
    let pass = converged(&h).await;
    assert_eq!(pass.names("orphaned"), ["link-1", "link-2"]);
    assert!(pass.names("deleted").is_empty());
    assert_eq!(live(&h), before);
    assert_eq!(deletes_sent(&h), 0);
    assert_eq!(
        pass.metric("atlas_linkd_deletes_total{outcome=\"deleted\"}"),
        0.0
    );
    // The grace would count from this pass, should prune be turned on later.
    let since: Vec<Option<i64>> = records(&h)
        .iter()
        .filter(|r| r.key.name != "link-0")
        .map(|r| r.prune.undeclared_since_unix)
        .collect();
    assert!(since.iter().all(Option::is_some), "{since:?}");
    // `plan` says why: prune is disabled.
    let plan = plan_json(&h).await;
    let holds: Vec<&Value> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "orphaned")
        .map(|a| &a["hold"]["reason"])
        .collect();
    assert_eq!(holds, [&json!("disabled"), &json!("disabled")]);
}

#[tokio::test]
async fn prune_on_waits_out_the_grace_then_deletes_at_most_max_per_pass() {
    let h = harness(
        FakeConfig::default(),
        1,
        5,
        "prune:\n  enabled: true\n  grace_secs: 1\n  max_per_pass: 2\n",
    )
    .await;
    converged(&h).await;
    let kept = id_of(&h, "link-0");
    declare(&h, 1);

    // First seen undeclared: within the grace, nothing is deleted.
    let first = converged(&h).await;
    assert_eq!(
        first.names("heldBack"),
        ["link-1", "link-2", "link-3", "link-4"]
    );
    assert!(
        first.report["heldBack"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("grace"),
        "{}",
        first.report
    );
    assert_eq!(deletes_sent(&h), 0);
    assert_eq!(live(&h).len(), 5);
    let since = records(&h)
        .iter()
        .filter_map(|r| r.prune.undeclared_since_unix)
        .max()
        .unwrap();
    eventually(
        "the grace period to end",
        Duration::from_secs(10),
        async || (unix_now() > since).then_some(()),
    )
    .await;

    // Past the grace: two deletes per pass, in key order; the rest held back by the cap.
    let second = converged(&h).await;
    assert_eq!(second.names("deleted"), ["link-1", "link-2"]);
    assert_eq!(second.names("heldBack"), ["link-3", "link-4"]);
    assert!(
        second.report["heldBack"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("max_per_pass")
    );
    assert_eq!(deletes_sent(&h), 2);
    assert_eq!(
        second.metric("atlas_linkd_deletes_total{outcome=\"deleted\"}"),
        2.0
    );
    let phases: Vec<(String, Phase)> = records(&h)
        .into_iter()
        .map(|r| (r.key.name, r.phase))
        .collect();
    assert_eq!(phases[1], ("link-1".to_owned(), Phase::Deleting));
    assert_eq!(phases[2], ("link-2".to_owned(), Phase::Deleting));

    let third = converged(&h).await;
    assert_eq!(third.names("deleted"), ["link-3", "link-4"]);
    assert_eq!(deletes_sent(&h), 4);
    // The connections deleted in the second pass are gone from the listing: their rows are dropped.
    let names: Vec<String> = records(&h).into_iter().map(|r| r.key.name).collect();
    assert_eq!(names, ["link-0", "link-3", "link-4"]);

    let fourth = converged(&h).await;
    assert!(fourth.names("deleted").is_empty());
    assert_eq!(deletes_sent(&h), 4);
    let names: Vec<String> = records(&h).into_iter().map(|r| r.key.name).collect();
    assert_eq!(names, ["link-0"]);
    // The declared link was never touched.
    assert_eq!(live(&h), [kept]);
}

#[tokio::test]
async fn max_per_pass_counts_the_deletes_of_all_projects_together() {
    let h = harness(
        FakeConfig::default(),
        2,
        3,
        "prune:\n  enabled: true\n  grace_secs: 0\n  max_per_pass: 3\n",
    )
    .await;
    converged(&h).await;
    // Two undeclared links in each project: four candidates, three deletes allowed.
    write_manifest(h.dir.path(), 2, 1);
    let first = converged(&h).await;
    assert_eq!(first.names("deleted").len(), 3, "{}", first.report);
    assert_eq!(first.names("heldBack").len(), 1, "{}", first.report);
    assert_eq!(deletes_sent(&h), 3);
    let second = converged(&h).await;
    assert_eq!(second.names("deleted").len(), 1, "{}", second.report);
    assert_eq!(deletes_sent(&h), 4);
    for p in 0..2 {
        assert_eq!(h.fake.connections(&group_id(p)).len(), 1, "project {p}");
    }
}

#[tokio::test]
async fn a_link_in_use_is_skipped_reported_and_deleted_once_free() {
    let h = harness(
        FakeConfig::default(),
        1,
        3,
        &format!("{PRUNE_ON}retry:\n  failure_delay_secs: 1\n  max_failure_delay_secs: 1\n"),
    )
    .await;
    converged(&h).await;
    let busy = id_of(&h, "link-1");
    assert!(h.fake.set_in_use(&group_id(0), &busy, true));
    declare(&h, 1);

    // In use is not a failure of the pass: exit 0, reported, the other orphan deleted.
    let first = converged(&h).await;
    assert_eq!(first.names("inUse"), ["link-1"], "{}", first.report);
    assert_eq!(first.names("deleted"), ["link-2"]);
    assert!(
        first.report["inUse"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("STREAM_PRIVATE_LINK_IN_USE")
    );
    assert_eq!(
        first.metric("atlas_linkd_deletes_total{outcome=\"in_use\"}"),
        1.0
    );
    assert!(live(&h).contains(&busy));
    assert_eq!(deletes_sent(&h), 2);
    let until = records(&h)
        .into_iter()
        .find(|r| r.key.name == "link-1")
        .and_then(|r| r.next_attempt_unix)
        .unwrap();

    // Freed at once, but tried again only after the failure delay.
    assert!(h.fake.set_in_use(&group_id(0), &busy, false));
    let early = once_pass(&h).await;
    if unix_now() < until {
        assert_eq!(early.names("inUse"), ["link-1"], "{}", early.report);
        assert_eq!(deletes_sent(&h), 2);
    }
    eventually(
        "the failure delay to end",
        Duration::from_secs(10),
        async || (unix_now() >= until).then_some(()),
    )
    .await;
    let later = converged(&h).await;
    assert_eq!(later.names("deleted"), ["link-1"], "{}", later.report);
    assert!(!live(&h).contains(&busy));
}

#[tokio::test]
async fn no_links_declared_at_all_deletes_nothing() {
    let h = harness(FakeConfig::default(), 1, 2, PRUNE_ON).await;
    converged(&h).await;
    let before = live(&h);
    // As if the manifest folder were unmounted: the project is still there, with no links.
    let path = declare(&h, 0);
    std::fs::write(&path, "projects: []\n").unwrap();
    let pass = once_pass(&h).await;
    assert_eq!(pass.out.status.code(), Some(0), "{}", explain(&pass.out));
    assert!(pass.names("deleted").is_empty(), "{}", pass.report);
    assert_eq!(pass.names("heldBack"), ["link-0", "link-1"]);
    assert!(
        pass.report["heldBack"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("declare no links")
    );
    assert_eq!(deletes_sent(&h), 0);
    assert_eq!(live(&h), before);
}
