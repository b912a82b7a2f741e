//! The daemon tracks readiness between passes: against a fake whose connections go `IDLE`, then
//! `WORKING`, then `DONE` (or `FAILED`) after short delays, with resync an hour away and
//! `ready_poll_secs: 1`, the daemon lists the projects with pending links about once a second (one
//! list per project per poll, no gets), so `atlas_linkd_remote_links{state}`, `/readyz` and the
//! STATUS line show the links `DONE` within a few polls; the polls stop once every link has
//! settled, `FAILED` included; a manifest change while they run still gets its pass, after which
//! they go on; and a SIGTERM while they run stops the daemon promptly with 0.

use crate::support::daemon::{Daemon, NotifySocket};
use crate::support::harness::{self, Harness, free_port, group_id, harness};
use crate::support::{eventually, lazy};
use fake_atlas::FakeConfig;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// How long a daemon with nothing pending is watched for list calls: three polls' worth.
const QUIET_WINDOW: Duration = Duration::from_secs(3);

fn lifecycle(idle_ms: u64, working_ms: u64) -> FakeConfig {
    FakeConfig {
        idle_ms,
        working_ms,
        ..FakeConfig::default()
    }
}

/// The daemon's config: metrics on `port`, resync an hour away (so only readiness polls list
/// between passes), a poll a second.
fn write_config(h: &Harness, port: u16) {
    std::fs::write(
        &h.config_path,
        format!(
            "atlas:\n  base_url: {}\n  timeout_secs: 5\nmanifests: [manifests/]\nledger: state/ledger.db\n\
             metrics:\n  listen: 127.0.0.1:{port}\nlog:\n  format: json\n\
             retry:\n  max_attempts: 8\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n\
             reconcile:\n  resync_interval_secs: 3600\n  ready_poll_secs: 1\n",
            h.fake.base_url()
        ),
    )
    .unwrap();
}

fn lists(h: &Harness) -> u64 {
    h.fake.counters().requests_with("list", 200)
}

/// The daemon on `h`'s config, its log in `daemon.log`, speaking sd_notify to `notify` if given.
fn start(h: &Harness, port: u16, notify: Option<&NotifySocket>) -> Daemon {
    let mut cmd = harness::binary(&h.config_path);
    if let Some(n) = notify {
        cmd.env("NOTIFY_SOCKET", &n.path);
    }
    Daemon::spawn(cmd, h.dir.path().join("daemon.log"), port)
}

#[tokio::test]
async fn the_daemon_lists_pending_projects_each_poll_until_every_link_is_done_then_stops() {
    let (projects, links) = (2, 3);
    let h = harness(lifecycle(1_000, 1_000), projects, links, "").await;
    let port = free_port();
    write_config(&h, port);
    let notify = NotifySocket::bind();
    let started = Instant::now();
    let d = start(&h, port, Some(&notify));

    // Resync is an hour away: only the readiness polls can show the links DONE this soon.
    d.wait_metric("atlas_linkd_remote_links{state=\"DONE\"}", 6.0)
        .await;
    let elapsed = started.elapsed();
    let listed = lists(&h);
    assert_eq!(
        d.metric("atlas_linkd_reconcile_passes_total{result=\"converged\"}")
            .await,
        Some(1.0),
        "one pass, at start-up: the rest was polls\n{}",
        d.log()
    );
    assert_eq!(
        d.metric("atlas_linkd_remote_links{state=\"IDLE\"}").await,
        None
    );
    // The start-up pass's list per project, then one per project per poll (a poll a second), at
    // least two polls (IDLE 1 s, WORKING 1 s), never one call per link.
    assert!(
        listed >= 2 * projects as u64,
        "{listed} lists: nothing polled"
    );
    assert!(
        listed <= projects as u64 * (2 + elapsed.as_secs()),
        "{listed} lists in {elapsed:?}: more than one per project per poll"
    );
    assert_eq!(h.fake.counters().requests_with("get", 200), 0, "no gets");
    for p in 0..projects {
        for c in &h.fake.connections(&group_id(p)) {
            assert_eq!(c["state"], "DONE", "{c}");
        }
    }

    // Settled: /readyz is 200 without a pending line, and the polls have stopped.
    let body = d
        .wait_readyz("no pending line", |s, b| {
            s == 200 && !b.contains("not yet DONE")
        })
        .await;
    assert_eq!(body, "ready\n");
    let before = lists(&h);
    // A measurement window, not a synchronisation: the daemon is meant to list nothing during it.
    tokio::time::sleep(QUIET_WINDOW).await;
    assert_eq!(
        lists(&h),
        before,
        "polls go on after every link is DONE\n{}",
        d.log()
    );
    // The STATUS line said what was pending, then no longer.
    let statuses = notify.statuses();
    assert!(
        statuses.iter().any(|s| s.contains("6/6 links converged")
            && s.contains("; not yet DONE: 6 links in 2 projects")),
        "{statuses:?}"
    );
    let last = statuses.last().unwrap();
    assert!(
        last.starts_with("6/6 links converged, last pass ") && !last.contains("not yet DONE"),
        "{statuses:?}"
    );
    assert!(
        d.log().contains("every declared link has settled"),
        "{}",
        d.log()
    );
}

#[tokio::test]
async fn a_failed_link_stops_the_polling_for_it_and_readyz_stays_200() {
    let fake = FakeConfig {
        // Link 1 of project 0 ends FAILED; the others DONE.
        fail_when_contains: Some("vpce-svc-000000001".into()),
        fail_message: Some("Endpoint service rejected the connection request".into()),
        ..lifecycle(500, 500)
    };
    let h = harness(fake, 1, 3, "").await;
    let port = free_port();
    write_config(&h, port);
    let d = start(&h, port, None);

    d.wait_metric("atlas_linkd_remote_links{state=\"FAILED\"}", 1.0)
        .await;
    d.wait_metric("atlas_linkd_remote_links{state=\"DONE\"}", 2.0)
        .await;
    // FAILED is shown, as a settled link, not a pending one: readiness stays 200.
    let body = d
        .wait_readyz("the FAILED line without a pending one", |s, b| {
            s == 200 && b.contains("FAILED: 1 link") && !b.contains("not yet DONE")
        })
        .await;
    assert!(body.starts_with("ready\n"), "{body}");
    let before = lists(&h);
    // A measurement window, not a synchronisation: a FAILED link is never polled for.
    tokio::time::sleep(QUIET_WINDOW).await;
    assert_eq!(
        lists(&h),
        before,
        "polls go on for a FAILED link\n{}",
        d.log()
    );
}

#[tokio::test]
async fn pending_links_show_in_readyz_and_a_sigterm_stops_the_polling_daemon_promptly() {
    // Connections stay IDLE for ten minutes.
    let (projects, links) = (2, 2);
    let h = harness(lifecycle(600_000, 0), projects, links, "").await;
    let port = free_port();
    write_config(&h, port);
    let mut d = start(&h, port, None);

    let body = d
        .wait_readyz("the pending line", |s, b| {
            s == 200 && b.contains("not yet DONE")
        })
        .await;
    assert_eq!(body, "ready\nnot yet DONE: 4 links in 2 projects\n");
    d.wait_metric("atlas_linkd_remote_links{state=\"IDLE\"}", 4.0)
        .await;
    // Polls keep going while the links are IDLE: beyond the start-up pass's lists, two more polls.
    let pass_lists = projects as u64;
    let what = lazy(|| format!("two polls\n{}", d.log()));
    eventually(what, DEADLINE, async || {
        (lists(&h) >= pass_lists + 2 * projects as u64).then_some(())
    })
    .await;

    let signalled = Instant::now();
    d.signal("TERM");
    let status = d.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert!(d.log().contains("atlas-linkd stopped"), "{}", d.log());
}

#[tokio::test]
async fn a_manifest_change_while_polling_still_gets_its_pass_and_the_polls_follow_it() {
    // Connections stay IDLE for ten minutes: the polls never stop by themselves.
    let h = harness(lifecycle(600_000, 0), 1, 2, "").await;
    let port = free_port();
    write_config(&h, port);
    let d = start(&h, port, None);
    d.wait_readyz("two pending links", |s, b| {
        s == 200 && b.contains("not yet DONE: 2 links in 1 project\n")
    })
    .await;
    let what = lazy(|| format!("a poll after the pass\n{}", d.log()));
    eventually(what, DEADLINE, async || (lists(&h) >= 2).then_some(())).await;

    // A third link declared: its pass runs between two polls and creates it.
    harness::write_manifest(h.dir.path(), 1, 3);
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 3.0)
        .await;
    d.wait_readyz("three pending links", |s, b| {
        s == 200 && b.contains("not yet DONE: 3 links in 1 project\n")
    })
    .await;
    assert_eq!(h.fake.connections(&group_id(0)).len(), 3);
    // And the polls go on after that pass.
    let after = lists(&h);
    let what = lazy(|| format!("a poll after the second pass\n{}", d.log()));
    eventually(what, DEADLINE, async || (lists(&h) > after).then_some(())).await;
}
