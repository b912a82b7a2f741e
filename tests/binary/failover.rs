//! One active process among several on a shared PostgreSQL ledger, through the real binary, a real
//! (throwaway) PostgreSQL and a fake Atlas whose backend commits 2 s after each create: the active
//! daemon killed or frozen with creates in flight, the database restarted or cut off mid-pass, and
//! two `--once` at the same time. Whatever happens, every link exists exactly once.

use crate::support::daemon::{DEADLINE, Daemon};
use crate::support::harness::{self, Harness, free_port, harness};
use crate::support::postgres::TestPostgres;
use crate::support::proxy::Proxy;
use crate::support::{eventually, lazy};
use fake_atlas::{DuplicateMode, FakeConfig};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// The lease and its renewal, short so that takeovers happen within a test's patience: a standby
/// takes over at most `LEASE_SECS + RENEW_SECS` after the active process last renewed.
const LEASE_SECS: u64 = 6;
const RENEW_SECS: u64 = 2;

/// A fake Atlas whose backend commits 2 s after a create, and which makes a second connection
/// rather than refuse one (so a duplicate would show), `projects` × `links` declared links.
async fn world(projects: usize, links: usize) -> Harness {
    let fake = FakeConfig {
        commit_delay_ms: 2000,
        duplicates: DuplicateMode::Create,
        ..FakeConfig::default()
    };
    harness(fake, projects, links, "").await
}

/// A config for one process on the shared ledger `url`, serving its endpoint on `port`, sending
/// up to `per_project` creates to a project at once.
fn config(h: &Harness, name: &str, url: &str, port: u16, per_project: usize) -> PathBuf {
    let path = h.dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "atlas:\n  base_url: {}\n  timeout_secs: 4\nmanifests: [manifests/]\nledger: {url}\n\
             leadership:\n  lease_secs: {LEASE_SECS}\n  renew_secs: {RENEW_SECS}\n\
             reconcile:\n  concurrency: 32\n  per_project_concurrency: {per_project}\n\
             metrics:\n  listen: 127.0.0.1:{port}\nlog:\n  format: json\n\
             retry:\n  max_attempts: 6\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n",
            h.fake.base_url()
        ),
    )
    .unwrap();
    path
}

fn daemon(h: &Harness, name: &str, url: &str) -> Daemon {
    daemon_with(h, name, url, 8)
}

/// A daemon sending up to `per_project` creates to a project at once.
fn daemon_with(h: &Harness, name: &str, url: &str, per_project: usize) -> Daemon {
    let port = free_port();
    let config = config(h, name, url, port, per_project);
    Daemon::spawn(
        harness::binary(&config),
        h.dir.path().join(format!("{name}.log")),
        port,
    )
}

async fn leader(d: &Daemon) -> Option<f64> {
    d.metric("atlas_linkd_leader").await
}

/// Polls until `d` is the active process.
async fn wait_active(d: &Daemon) {
    d.wait_metric("atlas_linkd_leader", 1.0).await;
}

/// Polls until `d` reports itself a standby: ready, and saying so.
async fn wait_standby(d: &Daemon) -> String {
    d.wait_readyz("200 and standby", |s, b| s == 200 && b.contains("standby"))
        .await
}

/// Create requests the fake answered (one whose client was gone by the answer is not counted).
fn creates_answered(h: &Harness) -> u64 {
    h.fake.counters().requests_of("create")
}

/// Polls until every declared link exists once in the fake, committed, nothing pending.
async fn wait_exactly_once(h: &Harness, logs: &[&Daemon]) {
    let want = h.desired.link_count() as u64;
    let what = lazy(|| {
        let logs: Vec<String> = logs.iter().map(|d| d.log()).collect();
        format!(
            "{want} links committed once each; counters {:?}\n--- logs\n{}",
            h.fake.counters(),
            logs.join("\n---\n")
        )
    });
    eventually(what, DEADLINE * 2, async || {
        (h.fake.pending_commits() == 0 && h.fake.counters().creates_committed >= want).then_some(())
    })
    .await;
    h.assert_exactly_once();
    assert_eq!(h.fake.counters().duplicates, 0);
}

/// Two daemons on one ledger: the active one is killed (SIGKILL) with 20 creates in flight at
/// Atlas; the standby takes over, waits out the settle window of every intent it finds, adopts what
/// Atlas committed, and every link exists exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_daemon_killed_with_creates_in_flight_leaves_every_link_exactly_once() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let h = world(4, 5).await;
    let mut a = daemon(&h, "a", &url);
    wait_active(&a).await;
    let b = daemon(&h, "b", &url);
    let standby = wait_standby(&b).await;
    assert!(standby.contains("active:"), "{standby}");
    assert_eq!(leader(&b).await, Some(0.0));

    eventually(
        lazy(|| format!("20 creates in flight at the fake\n--- log a\n{}", a.log())),
        DEADLINE,
        async || (h.fake.pending_commits() == 20).then_some(()),
    )
    .await;
    a.signal("KILL");
    let _ = a.wait_exit().await;
    assert_eq!(
        h.fake.counters().creates_committed,
        0,
        "killed before any commit"
    );
    // The killed process's creates were never answered: any answered from here on are the
    // successor's.
    let answered = creates_answered(&h);

    wait_active(&b).await;
    wait_exactly_once(&h, &[&b]).await;
    assert_eq!(h.fake.counters().creates_committed, 20);
    assert_eq!(
        creates_answered(&h),
        answered,
        "the successor created nothing again\n--- log b\n{}",
        b.log()
    );
    assert_eq!(
        b.metric("atlas_linkd_leader_transitions_total").await,
        Some(1.0)
    );
}

/// The active daemon frozen (SIGSTOP) for longer than its lease, with creates in flight and more
/// queued: the standby takes over and converges; thawed (SIGCONT), the old one finds its lease gone
/// by its own clock, sends none of its queued creates, and stands by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_active_daemon_is_replaced_and_sends_nothing_once_thawed() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let h = world(2, 5).await;
    // One create at a time per project: four of each project's five wait their turn.
    let a = daemon_with(&h, "a", &url, 1);
    wait_active(&a).await;
    let b = daemon(&h, "b", &url);
    wait_standby(&b).await;
    eventually(
        lazy(|| format!("creates in flight\n--- log a\n{}", a.log())),
        DEADLINE,
        async || (h.fake.pending_commits() > 0).then_some(()),
    )
    .await;
    a.signal("STOP");
    wait_active(&b).await;
    wait_exactly_once(&h, &[&b]).await;
    let committed = h.fake.counters().creates_committed;

    a.signal("CONT");
    wait_standby(&a).await;
    assert_eq!(leader(&a).await, Some(0.0));
    // B is still the active one, and the old one sent nothing since the thaw: a create it sent
    // would be pending at the fake, or committed beside its link.
    assert_eq!(leader(&b).await, Some(1.0));
    assert_eq!(h.fake.pending_commits(), 0, "--- log a\n{}", a.log());
    assert_eq!(h.fake.counters().creates_committed, committed);
    h.assert_exactly_once();
}

/// PostgreSQL restarted (an immediate stop: a crash) while creates are in flight: the daemon
/// stands down, connects again, takes the lease back, and converges with nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_pass_loses_nothing_and_doubles_nothing() {
    let mut pg = TestPostgres::start();
    let url = pg.new_database();
    let h = world(3, 5).await;
    let a = daemon(&h, "a", &url);
    wait_active(&a).await;
    eventually(
        lazy(|| format!("creates in flight\n--- log a\n{}", a.log())),
        DEADLINE,
        async || (h.fake.pending_commits() > 0).then_some(()),
    )
    .await;
    pg.stop_immediately();
    // Down for longer than the lease: the daemon must stop creating and stand by meanwhile.
    a.wait_readyz("not active while the database is down", |_, b| {
        b.contains("standby") || b.contains("ledger")
    })
    .await;
    pg.start_again();
    wait_active(&a).await;
    wait_exactly_once(&h, &[&a]).await;
    assert!(
        a.metric("atlas_linkd_leader_transitions_total")
            .await
            .is_some_and(|t| t >= 1.0)
    );
}

/// The connection to the database cut (a proxy in front of it, stopped): the active process
/// stops creating within its lease; links declared meanwhile are created, once, after the
/// connection comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_stops_creating_within_the_lease() {
    let pg = TestPostgres::start();
    let db_url = pg.new_database();
    let db = crate::support::postgres::database_of(&db_url).to_owned();
    let proxy = Proxy::start(format!("127.0.0.1:{}", pg.port()).parse().unwrap()).await;
    let url = pg.url_via(proxy.port(), &db);
    let h = world(1, 2).await;
    let a = daemon(&h, "a", &url);
    wait_active(&a).await;
    wait_exactly_once(&h, &[&a]).await;
    let committed = h.fake.counters().creates_committed;

    proxy.cut();
    let cut_at = std::time::Instant::now();
    a.wait_metric("atlas_linkd_leader", 0.0).await;
    assert!(
        cut_at.elapsed() <= Duration::from_secs(LEASE_SECS + RENEW_SECS + 2),
        "stood down {:?} after the cut",
        cut_at.elapsed()
    );
    // Two more links while cut off: created once the connection is back, not before.
    harness::write_manifest(h.dir.path(), 1, 4);
    a.wait_readyz("a standby", |s, b| s == 200 && b.contains("standby"))
        .await;
    assert_eq!(h.fake.pending_commits(), 0, "--- log\n{}", a.log());
    assert_eq!(h.fake.counters().creates_committed, committed);

    proxy.restore();
    wait_active(&a).await;
    let h = Harness {
        desired: atlas_linkd::manifest::load(&h.config.manifests).unwrap(),
        ..h
    };
    wait_exactly_once(&h, &[&a]).await;
}

/// Two `--once` at the same time on one ledger: one runs; the other exits 2 naming the holder, or,
/// with `--wait-for-lease`, waits for the first to finish and then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_once_runs_at_the_same_time_one_runs_the_other_refuses_or_waits() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let h = world(2, 4).await;
    // One create at a time per project: the first run holds the lease for four commits of 2 s.
    let first_config = config(&h, "first", &url, free_port(), 1);
    let second_config = config(&h, "second", &url, free_port(), 1);
    let mut first = harness::once(&first_config).spawn().unwrap();
    // The first holds the lease while its creates are in flight (its pass waits 2 s for each).
    eventually("the first run's creates in flight", DEADLINE, async || {
        (h.fake.pending_commits() > 0).then_some(())
    })
    .await;
    let refused: Output = harness::once(&second_config).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is active on the ledger"), "{stderr}");
    assert!(stderr.contains("pid"), "names the holder: {stderr}");

    let waiting = harness::once(&second_config)
        .args(["--wait-for-lease", "90s"])
        .output();
    let (first_status, waited) = tokio::join!(first.wait(), waiting);
    assert_eq!(first_status.unwrap().code(), Some(0));
    let waited = waited.unwrap();
    assert_eq!(
        waited.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    h.assert_exactly_once();
    assert_eq!(
        h.fake.counters().creates_committed,
        h.desired.link_count() as u64
    );
}

/// What befalls the processes in one case of the property below.
#[derive(Debug, Clone)]
enum Event {
    /// SIGKILL to process `i`, then a new one in its place (as `Restart=` would).
    Kill(usize),
    /// SIGSTOP to process `i` for the lease and `extra_ms` more, then SIGCONT.
    Freeze(usize, u64),
    /// PostgreSQL stopped at once (a crash), down `down_ms`, then started again.
    RestartDatabase { down_ms: u64 },
}

fn event(processes: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        (0..processes).prop_map(Event::Kill),
        (0..processes, 0u64..3000).prop_map(|(i, extra)| Event::Freeze(i, extra)),
        (200u64..3000).prop_map(|down_ms| Event::RestartDatabase { down_ms }),
    ]
}

/// Each case: two or three daemons on one ledger, creates going (one at a time per project, each
/// committed 1 s after it is sent), and a few kills, freezes and database restarts at random
/// moments. Afterwards every link exists exactly once and one survivor is active.
async fn failover_case(pg: &mut TestPostgres, processes: usize, events: Vec<(Event, u64)>) {
    let url = pg.new_database();
    let fake = FakeConfig {
        commit_delay_ms: 1000,
        duplicates: DuplicateMode::Create,
        ..FakeConfig::default()
    };
    let h = harness(fake, 2, 4, "").await;
    let mut daemons: Vec<Daemon> = (0..processes)
        .map(|i| daemon_with(&h, &format!("p{i}"), &url, 1))
        .collect();
    let mut started = processes;
    for (event, after_ms) in events {
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        match event {
            Event::Kill(i) => {
                daemons[i].signal("KILL");
                let _ = daemons[i].wait_exit().await;
                daemons[i] = daemon_with(&h, &format!("p{started}"), &url, 1);
                started += 1;
            }
            Event::Freeze(i, extra_ms) => {
                daemons[i].signal("STOP");
                // The freeze is the event itself: it must outlast the lease.
                tokio::time::sleep(Duration::from_millis(LEASE_SECS * 1000 + extra_ms)).await;
                daemons[i].signal("CONT");
            }
            Event::RestartDatabase { down_ms } => {
                pg.stop_immediately();
                tokio::time::sleep(Duration::from_millis(down_ms)).await;
                pg.start_again();
            }
        }
    }
    let logs: Vec<&Daemon> = daemons.iter().collect();
    wait_exactly_once(&h, &logs).await;
    let what = lazy(|| "one active survivor".to_owned());
    eventually(what, DEADLINE, async || {
        let mut active = 0;
        for d in &daemons {
            if leader(d).await == Some(1.0) {
                active += 1;
            }
        }
        (active == 1).then_some(())
    })
    .await;
}

/// Random kill, freeze and database-restart points among two or three processes never yield a
/// duplicate, and the survivors converge. Three cases in the suite (each takes 15 to 40 s);
/// `ATLAS_LINKD_FAILOVER_CASES=N` runs more.
#[test]
fn random_kills_freezes_and_restarts_never_duplicate_and_converge() {
    let cases = std::env::var("ATLAS_LINKD_FAILOVER_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let mut pg = TestPostgres::start();
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        // A shrink step costs a whole case: the failing case is reported as it is.
        max_shrink_iters: 0,
        ..ProptestConfig::default()
    });
    let strategy = (2usize..=3).prop_flat_map(|processes| {
        (
            Just(processes),
            proptest::collection::vec((event(processes), 0u64..3000), 1..=3),
        )
    });
    let pg = std::cell::RefCell::new(&mut pg);
    runner
        .run(&strategy, |(processes, events)| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(failover_case(&mut pg.borrow_mut(), processes, events));
            Ok(())
        })
        .unwrap();
}
