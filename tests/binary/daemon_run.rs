//! The real binary as a daemon against an in-process fake Atlas: passes at start-up, on manifest changes
//! and on resync, last-good manifests, SIGHUP, SIGTERM draining, the ledger lock, sd_notify, and the
//! live `/metrics` through promtool, and an idle daemon that makes no API calls. The figures (save to
//! first create, idle RSS and CPU) are `cargo bench --bench daemon_scale -- small`.

use crate::support::daemon::{Daemon, NotifySocket};
use crate::support::fake::{ACCEPT, bearer_token};
use crate::support::harness::{self, Harness, free_port, group_id, harness};
use crate::support::{eventually, lazy};
use atlas_linkd::ledger::Ledger;
use atlas_linkd::model::Phase;
use fake_atlas::FakeConfig;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

/// Rewrites the harness's config: the metrics endpoint on `port`, fast retries, and `extra`.
fn write_config(h: &Harness, port: u16, extra: &str) {
    std::fs::write(
        &h.config_path,
        format!(
            "atlas:\n  base_url: {}\n  timeout_secs: 5\nmanifests: [manifests/]\nledger: state/ledger.db\n\
             metrics:\n  listen: 127.0.0.1:{port}\nlog:\n  format: json\n\
             retry:\n  max_attempts: 8\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n{extra}",
            h.fake.base_url()
        ),
    )
    .unwrap();
}

/// A manifest with `links` S3 links in test project `project`.
fn project_yaml(project: usize, links: usize) -> String {
    let mut y = format!(
        "projects:\n  - groupId: {}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n",
        group_id(project)
    );
    for l in 0..links {
        y.push_str(&format!(
            "      - name: extra-{l}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-x{project:03}{l:04}\n"
        ));
    }
    y
}

/// The daemon on `h`'s config, its log in `NAME.log`, with `env` added to the test environment.
fn start(h: &Harness, port: u16, name: &str, env: &[(&str, &str)]) -> Daemon {
    let mut cmd = harness::binary(&h.config_path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Daemon::spawn(cmd, h.dir.path().join(format!("{name}.log")), port)
}

#[tokio::test]
async fn follows_manifest_changes_keeps_broken_files_and_serves_promtool_clean_metrics() {
    let h = harness(FakeConfig::default(), 2, 3, "").await;
    let port = free_port();
    write_config(&h, port, "");
    let mut d = start(&h, port, "daemon", &[]);

    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 6.0)
        .await;
    assert_eq!(h.fake.counters().creates_committed, 6);
    h.assert_exactly_once();
    assert_eq!(d.get("/healthz").await.unwrap().0, 200);
    assert_eq!(d.get("/readyz").await.unwrap().0, 200);
    d.wait_metric(
        "atlas_linkd_reconcile_passes_total{result=\"converged\"}",
        1.0,
    )
    .await;
    assert!(
        d.metric("atlas_linkd_last_converged_timestamp_seconds")
            .await
            .unwrap()
            > 1.0e9
    );

    // promtool on the live exposition.
    let text = d.metrics().await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package `prometheus`)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "{complaints}\n{text}"
    );

    // A new file converges without a restart.
    let manifests = h.dir.path().join("manifests");
    let extra = manifests.join("extra.yaml");
    let creates_before = h.fake.counters().requests_of("create");
    std::fs::write(&extra, project_yaml(7, 2)).unwrap();
    let what = lazy(|| format!("a create after the save\n{}", d.log()));
    eventually(what, DEADLINE, async || {
        (h.fake.counters().requests_of("create") != creates_before).then_some(())
    })
    .await;
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 8.0)
        .await;
    d.wait_metric("atlas_linkd_links{status=\"desired\"}", 8.0)
        .await;

    // A file that breaks keeps its links: nothing orphaned, one manifest error.
    let links = manifests.join("links.yaml");
    let good = std::fs::read_to_string(&links).unwrap();
    let passes = d.passes().await;
    std::fs::write(
        &links,
        good.replace("vendor: S3", "vendor: S3, colour: blue"),
    )
    .unwrap();
    d.wait_metric("atlas_linkd_manifest_errors", 1.0).await;
    d.wait_passes_beyond(passes).await;
    assert_eq!(
        d.metric("atlas_linkd_links{status=\"orphaned\"}").await,
        Some(0.0)
    );
    assert_eq!(
        d.metric("atlas_linkd_links{status=\"desired\"}").await,
        Some(8.0)
    );
    assert!(d.log().contains("colour"), "the problem is logged");
    assert_eq!(d.get("/readyz").await.unwrap().0, 200);

    // Fixing it clears the error.
    std::fs::write(&links, &good).unwrap();
    d.wait_metric("atlas_linkd_manifest_errors", 0.0).await;

    // A deleted file's links are orphaned, never deleted.
    std::fs::remove_file(&extra).unwrap();
    d.wait_metric("atlas_linkd_links{status=\"orphaned\"}", 2.0)
        .await;
    d.wait_metric("atlas_linkd_links{status=\"desired\"}", 6.0)
        .await;
    assert_eq!(h.fake.connections(&group_id(7)).len(), 2);
    assert_eq!(h.fake.counters().creates_committed, 8);

    d.signal("TERM");
    assert_eq!(d.wait_exit().await.code(), Some(0), "{}", d.log());
}

#[tokio::test]
async fn sigterm_during_a_slow_pass_exits_0_with_every_started_create_recorded() {
    let fake = FakeConfig {
        latency_ms: 300,
        ..FakeConfig::default()
    };
    let h = harness(fake, 1, 40, "").await;
    let port = free_port();
    write_config(
        &h,
        port,
        "reconcile:\n  concurrency: 4\n  per_project_concurrency: 4\n",
    );
    let mut d = start(&h, port, "daemon", &[]);
    let what = lazy(|| format!("4 creates\n{}", d.log()));
    eventually(what, DEADLINE, async || {
        (h.fake.counters().creates_committed >= 4).then_some(())
    })
    .await;
    d.signal("TERM");
    let status = d.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", d.log());
    let log = d.log();
    assert!(log.contains("stopping"), "{log}");

    let held = h.fake.connections(&group_id(0));
    assert!(
        held.len() < 40,
        "the pass finished before the signal: {}",
        held.len()
    );
    let records = Ledger::open_read_only(&h.ledger_path())
        .unwrap()
        .records()
        .unwrap();
    for c in &held {
        let id = c["_id"].as_str().unwrap();
        let r = records
            .iter()
            .find(|r| r.atlas_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("connection {id} held by Atlas is not in the ledger"));
        assert!(
            matches!(r.phase, Phase::Created | Phase::Adopted),
            "{} is {:?}",
            r.key,
            r.phase
        );
    }
    // The OAuth token was revoked on the way out.
    assert!(h.fake.counters().tokens_revoked >= 1);
}

#[tokio::test]
async fn a_second_daemon_on_the_same_ledger_exits_2_naming_the_pid() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let port = free_port();
    write_config(&h, port, "");
    let first = start(&h, port, "first", &[]);
    first
        .wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 2.0)
        .await;
    let mut second = start(&h, port, "second", &[]);
    let status = second.wait_exit().await;
    assert_eq!(status.code(), Some(2), "{}", second.log());
    let log = second.log();
    assert!(
        log.contains(&format!("pid {}", first.pid())),
        "does not name pid {}: {log}",
        first.pid()
    );
    // The first one is unaffected.
    assert_eq!(first.get("/readyz").await.unwrap().0, 200);
}

#[tokio::test]
async fn speaks_sd_notify_and_survives_a_sighup_with_a_broken_config() {
    let h = harness(FakeConfig::default(), 1, 3, "").await;
    let port = free_port();
    write_config(&h, port, "");
    let notify = NotifySocket::bind();
    let socket = notify.path.to_str().unwrap().to_owned();
    // systemd also sets WATCHDOG_PID, which a test cannot know before the spawn; absent means "for us".
    let mut d = start(
        &h,
        port,
        "daemon",
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "200000")],
    );

    let ready = notify.wait_for(0, "READY=1", |m| m == "READY=1\n").await;
    let converged = notify
        .wait_for(0, "a converged STATUS", |m| {
            m.starts_with("STATUS=3/3 links converged, last pass ")
        })
        .await;
    assert!(ready < converged, "{:?}", notify.all());
    // The watchdog pings at half of WATCHDOG_USEC.
    let first_ping = notify
        .wait_for(0, "WATCHDOG=1", |m| m == "WATCHDOG=1\n")
        .await;
    notify
        .wait_for(first_ping + 1, "a second WATCHDOG=1", |m| {
            m == "WATCHDOG=1\n"
        })
        .await;

    // A good reload: RELOADING=1 (with MONOTONIC_USEC), then READY=1. The new resync interval takes
    // effect; the new timeout needs a restart, which a warning says.
    write_config(&h, port, "reconcile:\n  resync_interval_secs: 1\n");
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    std::fs::write(
        &h.config_path,
        text.replace("timeout_secs: 5", "timeout_secs: 7"),
    )
    .unwrap();
    let mark = notify.all().len();
    d.signal("HUP");
    let reloading = notify
        .wait_for(mark, "RELOADING=1", |m| {
            m.starts_with("RELOADING=1\nMONOTONIC_USEC=")
        })
        .await;
    notify
        .wait_for(reloading + 1, "READY=1 after the reload", |m| {
            m == "READY=1\n"
        })
        .await;
    d.wait_log("config reloaded").await;
    assert!(d.log().contains("atlas.timeout_secs"), "{}", d.log());
    // Resyncs now come every second without any other trigger.
    let passes = d.passes().await;
    d.wait_passes_beyond(passes + 1.0).await;

    // A broken config is refused; the daemon keeps running on the old one.
    std::fs::write(&h.config_path, "atlas: [this is not a mapping\n").unwrap();
    let mark = notify.all().len();
    d.signal("HUP");
    let reloading = notify
        .wait_for(mark, "RELOADING=1", |m| m.starts_with("RELOADING=1\n"))
        .await;
    notify
        .wait_for(reloading + 1, "READY=1 after the refused reload", |m| {
            m == "READY=1\n"
        })
        .await;
    d.wait_log("refusing the new config").await;
    assert_eq!(d.get("/readyz").await.unwrap().0, 200);
    assert!(d.try_wait().is_none(), "the daemon exited");
    // Still reconciling on the old config: a new file is created.
    std::fs::write(
        h.dir.path().join("manifests").join("more.yaml"),
        project_yaml(3, 1),
    )
    .unwrap();
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 4.0)
        .await;

    let mark = notify.all().len();
    d.signal("TERM");
    assert_eq!(d.wait_exit().await.code(), Some(0), "{}", d.log());
    notify
        .wait_for(mark, "STOPPING=1", |m| m == "STOPPING=1\n")
        .await;
}

#[tokio::test]
async fn resync_records_remote_states_and_recreates_a_deleted_connection() {
    let fake = FakeConfig {
        idle_ms: 200,
        working_ms: 200,
        // Link 1 of project 0 (serviceEndpointId ...vpce-svc-000000001) ends FAILED.
        fail_when_contains: Some("vpce-svc-000000001".into()),
        ..FakeConfig::default()
    };
    let h = harness(fake, 1, 4, "").await;
    let port = free_port();
    write_config(&h, port, "reconcile:\n  resync_interval_secs: 1\n");
    let d = start(&h, port, "daemon", &[]);
    d.wait_metric("atlas_linkd_remote_links{state=\"DONE\"}", 3.0)
        .await;
    d.wait_metric("atlas_linkd_remote_links{state=\"FAILED\"}", 1.0)
        .await;

    // Delete a DONE connection behind the daemon's back, through the API.
    let group = group_id(0);
    let victim = h
        .fake
        .connections(&group)
        .into_iter()
        .find(|c| c["state"] == "DONE")
        .unwrap();
    delete_in_fake(&h, &group, victim["_id"].as_str().unwrap()).await;
    assert_eq!(h.fake.connections(&group).len(), 3);

    let what = lazy(|| format!("the deleted link to be recreated\n{}", d.log()));
    eventually(what, DEADLINE, async || {
        (h.fake.counters().creates_committed >= 5).then_some(())
    })
    .await;
    let now = h.fake.connections(&group);
    assert_eq!(now.len(), 4);
    assert_eq!(
        now.iter()
            .filter(|c| c["serviceEndpointId"] == victim["serviceEndpointId"])
            .count(),
        1
    );
    assert_eq!(h.fake.counters().duplicates, 0);
    d.wait_metric("atlas_linkd_remote_links{state=\"DONE\"}", 3.0)
        .await;
}

async fn delete_in_fake(h: &Harness, group: &str, id: &str) {
    let http = reqwest::Client::new();
    let token = bearer_token(&http, &h.fake).await;
    let resp = http
        .delete(format!(
            "{}/api/atlas/v2/groups/{group}/streams/privateLinkConnections/{id}",
            h.fake.base_url()
        ))
        .bearer_auth(token)
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
}

#[tokio::test]
async fn an_idle_daemon_makes_no_api_calls() {
    let h = harness(FakeConfig::default(), 4, 25, "").await;
    let port = free_port();
    write_config(&h, port, "");
    let d = start(&h, port, "daemon", &[]);
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 100.0)
        .await;
    d.wait_metric(
        "atlas_linkd_reconcile_passes_total{result=\"converged\"}",
        1.0,
    )
    .await;
    let calls_before = h.fake.counters().total_requests();
    let window = Duration::from_secs(10);
    // A measurement window, not a synchronisation: the daemon is meant to do nothing during it.
    tokio::time::sleep(window).await;
    assert_eq!(
        h.fake.counters().total_requests(),
        calls_before,
        "an idle daemon (resync 300 s) makes no API calls"
    );
    assert_eq!(d.get("/healthz").await.unwrap().0, 200);
}

#[tokio::test]
async fn a_second_sigterm_exits_at_once_with_status_1() {
    let fake = FakeConfig {
        latency_ms: 300,
        ..FakeConfig::default()
    };
    let h = harness(fake, 1, 20, "").await;
    let port = free_port();
    write_config(
        &h,
        port,
        "reconcile:\n  concurrency: 1\n  per_project_concurrency: 1\n",
    );
    let mut d = start(&h, port, "daemon", &[]);
    let what = lazy(|| format!("a first create\n{}", d.log()));
    eventually(what, DEADLINE, async || {
        (h.fake.counters().creates_committed >= 1).then_some(())
    })
    .await;
    d.signal("TERM");
    d.wait_log("stopping").await;
    d.signal("INT");
    assert_eq!(d.wait_exit().await.code(), Some(1), "{}", d.log());
}

#[tokio::test]
async fn refuses_to_start_with_exit_2_on_an_invalid_manifest_or_a_busy_metrics_port() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    write_config(&h, port, "");

    let mut d = start(&h, port, "busy", &[]);
    assert_eq!(d.wait_exit().await.code(), Some(2), "{}", d.log());
    assert!(d.log().contains("metrics.listen"), "{}", d.log());

    let broken = h.dir.path().join("manifests").join("broken.yaml");
    std::fs::write(&broken, "projects:\n  - groupId: 0123\n    links: []\n").unwrap();
    let mut d = start(&h, free_port(), "invalid", &[]);
    assert_eq!(d.wait_exit().await.code(), Some(2), "{}", d.log());
    assert!(d.log().contains("broken.yaml"), "{}", d.log());
    // Neither attempt reached Atlas.
    assert_eq!(h.fake.counters().requests_of("create"), 0);
    assert_eq!(h.fake.counters().requests_of("list"), 0);
}
