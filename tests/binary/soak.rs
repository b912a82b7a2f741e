//! The daemon soak: the real binary against a faulty fake Atlas that accepts duplicates, with prune
//! on, readiness polls, manifest edits and reloads all at once, for `ATLAS_LINKD_SOAK_SECS` (45 s by
//! default). At the end Atlas must hold every declared link exactly once and nothing undeclared, no
//! far end may ever have had two live connections, every delete must be legitimate by the edit
//! timeline, and no pass may have failed. `cargo bench --bench soak` runs the same for longer and
//! prints its figures.

use crate::support::daemon::{DEADLINE, Daemon};
use crate::support::harness::{self, free_port, group_id};
use crate::support::lazy;
use fake_atlas::{DuplicateMode, FakeAtlas, FakeConfig, Faults};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

const PROJECTS: usize = 3;
/// Links per project that no edit touches.
const STEADY: usize = 8;
/// Links per project that edits declare and undeclare.
const CHURN: usize = 4;
const GRACE_SECS: u64 = 3;

fn far_end(project: usize, link: &str) -> String {
    format!("com.amazonaws.vpce.us-east-1.vpce-svc-soak{project:02}{link}")
}

/// The manifest of one project: its steady links and the churn links in `declared`.
fn project_yaml(project: usize, declared: &BTreeSet<usize>) -> String {
    let mut y = format!(
        "projects:\n  - groupId: {}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n",
        group_id(project)
    );
    let names = (0..STEADY)
        .map(|l| format!("steady-{l}"))
        .chain(declared.iter().map(|c| format!("churn-{c}")));
    for name in names {
        y.push_str(&format!(
            "      - name: {name}\n        serviceEndpointId: {}\n",
            far_end(project, &name)
        ));
    }
    y
}

fn write_project(dir: &Path, project: usize, declared: &BTreeSet<usize>) {
    std::fs::write(
        dir.join("manifests").join(format!("p{project}.yaml")),
        project_yaml(project, declared),
    )
    .unwrap();
}

/// What the watcher of the fake saw: when each far end was declared and undeclared, each
/// connection's far end, when each connection stopped being live, and the most live connections
/// one far end ever had at once.
#[derive(Default)]
struct Timeline {
    /// Far end -> (instant, declared) in order.
    edits: HashMap<String, Vec<(Instant, bool)>>,
    /// Connection id -> far end.
    far_end_of: HashMap<String, String>,
    /// Connection id -> when it was first seen not live (being deleted, or gone).
    deleted_at: BTreeMap<String, Instant>,
    /// Far end -> most live connections seen at once.
    most_live: HashMap<String, usize>,
    creates_seen: usize,
}

impl Timeline {
    fn edit(&mut self, end: String, declared: bool) {
        self.edits
            .entry(end)
            .or_default()
            .push((Instant::now(), declared));
    }

    fn declared_at(&self, end: &str, at: Instant) -> bool {
        self.edits.get(end).is_some_and(|e| {
            e.iter()
                .rev()
                .find(|(t, _)| *t <= at)
                .is_some_and(|(_, d)| *d)
        })
    }

    /// Whether deleting `end`'s connection at `at` follows from the edits: undeclared for the
    /// whole grace before it, up to the `slack` the daemon needs to see a new edit.
    fn delete_allowed(&self, end: &str, at: Instant, grace: Duration, slack: Duration) -> bool {
        let Some(edits) = self.edits.get(end) else {
            return false;
        };
        // The last undeclare before the delete, and no declare between it and the delete (but for
        // one so recent that the pass which deleted could not have seen it).
        let Some(undeclared) = edits
            .iter()
            .rev()
            .find(|(t, d)| *t <= at && !*d)
            .map(|(t, _)| *t)
        else {
            return false;
        };
        let redeclared = edits
            .iter()
            .any(|(t, d)| *d && *t > undeclared && *t + slack < at);
        // The ledger counts grace in whole seconds from a pass's clock: up to a second short.
        !redeclared && undeclared + grace <= at + Duration::from_secs(1)
    }

    fn observe(&mut self, fake: &FakeAtlas) {
        let now = Instant::now();
        let mut live: HashMap<String, usize> = HashMap::new();
        let mut seen = BTreeSet::new();
        for p in 0..PROJECTS {
            for c in fake.connections(&group_id(p)) {
                let id = c["_id"].as_str().unwrap().to_owned();
                let end = c["serviceEndpointId"].as_str().unwrap_or("").to_owned();
                if !self.far_end_of.contains_key(&id) {
                    self.creates_seen += 1;
                    self.far_end_of.insert(id.clone(), end.clone());
                }
                let deleting = matches!(
                    c["state"].as_str(),
                    Some("DELETE_REQUESTED" | "DELETING" | "DELETED")
                );
                if deleting {
                    self.deleted_at.entry(id.clone()).or_insert(now);
                } else {
                    *live.entry(end).or_default() += 1;
                }
                seen.insert(id);
            }
        }
        for id in self.far_end_of.keys() {
            if !seen.contains(id) {
                self.deleted_at.entry(id.clone()).or_insert(now);
            }
        }
        for (end, n) in live {
            let most = self.most_live.entry(end).or_default();
            *most = (*most).max(n);
        }
    }
}

/// Live connections per far end, all projects together.
fn live_far_ends(fake: &FakeAtlas) -> BTreeMap<String, usize> {
    let mut live = BTreeMap::new();
    for p in 0..PROJECTS {
        for c in fake.connections(&group_id(p)) {
            if !matches!(
                c["state"].as_str(),
                Some("DELETE_REQUESTED" | "DELETING" | "DELETED")
            ) {
                *live
                    .entry(c["serviceEndpointId"].as_str().unwrap_or("").to_owned())
                    .or_insert(0) += 1;
            }
        }
    }
    live
}

/// The far ends whose count of live connections differs: (wanted, held).
fn differences(
    want: &BTreeMap<String, usize>,
    have: &BTreeMap<String, usize>,
) -> BTreeMap<String, (usize, usize)> {
    want.keys()
        .chain(have.keys())
        .map(|end| {
            let counts = (
                want.get(end).copied().unwrap_or(0),
                have.get(end).copied().unwrap_or(0),
            );
            (end.clone(), counts)
        })
        .filter(|(_, (w, h))| w != h)
        .collect()
}

fn soak_secs() -> u64 {
    std::env::var("ATLAS_LINKD_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_under_faults_edits_polls_prune_and_reloads_keeps_atlas_exactly_as_declared() {
    let seed: u64 = std::env::var("ATLAS_LINKD_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let fake = FakeAtlas::start(FakeConfig {
        duplicates: DuplicateMode::Create,
        idle_ms: 1500,
        working_ms: 1500,
        delete_ms: 1000,
        // Faults on every call, and creates that Atlas commits although the client got no answer.
        faults: Faults {
            seed,
            p_500: 0.05,
            p_reset_create: 0.02,
            p_504_create: 0.02,
            ..Faults::default()
        },
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    let mut timeline = Timeline::default();
    let mut declared: Vec<BTreeSet<usize>> = vec![(0..CHURN).collect(); PROJECTS];
    for (p, d) in declared.iter().enumerate() {
        write_project(dir.path(), p, d);
        for l in 0..STEADY {
            timeline.edit(far_end(p, &format!("steady-{l}")), true);
        }
        for c in d {
            timeline.edit(far_end(p, &format!("churn-{c}")), true);
        }
    }
    let port = free_port();
    let config_path = dir.path().join("config.yaml");
    let config = |grace: u64| {
        format!(
            "atlas:\n  base_url: {}\n  timeout_secs: 3\nmanifests: [manifests/]\nledger: state/ledger.db\n\
             metrics:\n  listen: 127.0.0.1:{port}\nlog:\n  format: json\n\
             reconcile:\n  settle_secs: 3\n  ready_poll_secs: 1\n  resync_interval_secs: 2\n  debounce_ms: 100\n\
             retry:\n  max_attempts: 6\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n  failure_delay_secs: 1\n\
             prune:\n  enabled: true\n  grace_secs: {grace}\n  max_per_pass: 10\n",
            fake.base_url(),
        )
    };
    std::fs::write(&config_path, config(GRACE_SECS)).unwrap();
    let mut daemon = Daemon::spawn(
        harness::binary(&config_path),
        dir.path().join("daemon.log"),
        port,
    );

    // Edits: every 3 s one churn link of one project flips; every 7 s a SIGHUP (the config
    // rewritten the same); the fake watched every 50 ms throughout.
    let mut rng = seed;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let started = Instant::now();
    let end = started + Duration::from_secs(soak_secs());
    let mut next_edit = started + Duration::from_secs(3);
    let mut next_reload = started + Duration::from_secs(7);
    while Instant::now() < end {
        timeline.observe(&fake);
        if let Some(status) = daemon.try_wait() {
            panic!(
                "the daemon exited ({status}) during the soak:\n{}",
                daemon.log()
            );
        }
        let now = Instant::now();
        if now >= next_edit {
            let p = (next() % PROJECTS as u64) as usize;
            let c = (next() % CHURN as u64) as usize;
            let now_declared = if declared[p].remove(&c) {
                false
            } else {
                declared[p].insert(c);
                true
            };
            write_project(dir.path(), p, &declared[p]);
            timeline.edit(far_end(p, &format!("churn-{c}")), now_declared);
            next_edit = now + Duration::from_secs(3);
        }
        if now >= next_reload {
            std::fs::write(&config_path, config(GRACE_SECS)).unwrap();
            daemon.signal("HUP");
            next_reload = now + Duration::from_secs(7);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Quiet: the fake keeps its faults, the daemon converges by its resyncs and prune's grace.
    let want: BTreeMap<String, usize> = (0..PROJECTS)
        .flat_map(|p| {
            let d = &declared[p];
            (0..STEADY)
                .map(move |l| far_end(p, &format!("steady-{l}")))
                .chain(d.iter().map(move |c| far_end(p, &format!("churn-{c}"))))
        })
        .map(|e| (e, 1))
        .collect();
    let deadline = Instant::now() + DEADLINE + Duration::from_secs(GRACE_SECS);
    loop {
        timeline.observe(&fake);
        if live_far_ends(&fake) == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Atlas did not come to hold exactly the declared links (seed {seed}); far end: (want, have): {:?}\n{}",
            differences(&want, &live_far_ends(&fake)),
            lazy(|| daemon.log())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let duplicated: Vec<_> = timeline.most_live.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "far ends that had more than one live connection at once (seed {seed}): {duplicated:?}\n{}",
        daemon.log()
    );
    let slack = Duration::from_millis(1500);
    let grace = Duration::from_secs(GRACE_SECS);
    let wrong: Vec<_> = timeline
        .deleted_at
        .iter()
        .filter(|(id, at)| {
            let end = &timeline.far_end_of[*id];
            !timeline.delete_allowed(end, **at, grace, slack)
        })
        .map(|(id, at)| {
            let end = &timeline.far_end_of[id];
            (
                id.clone(),
                end.clone(),
                at.duration_since(started),
                timeline.declared_at(end, *at),
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "deletes the edits do not explain (seed {seed}; id, far end, when, declared then): {wrong:?}\n{}",
        daemon.log()
    );
    let errors = daemon
        .metric("atlas_linkd_reconcile_passes_total{result=\"error\"}")
        .await
        .unwrap_or(0.0);
    assert_eq!(
        errors,
        0.0,
        "failed passes (seed {seed}):\n{}",
        daemon.log()
    );
    let (status, body) = daemon.get("/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    daemon.signal("TERM");
    let status = daemon.wait_exit().await;
    assert!(status.success(), "{status}\n{}", daemon.log());
}
