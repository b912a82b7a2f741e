//! The daemon soak's world, shared by the soak test (`tests/binary/soak.rs`) and the soak benchmark
//! (`benches/soak.rs`, which includes this file by path): the projects and links, their manifests
//! and config, the faulty fake that accepts duplicates, and the `Timeline` that watches the fake and
//! judges each delete by the edit timeline. Nothing here asserts; each driver decides what a
//! finding means. Depends only on `fake_atlas`, `serde_json`, `tokio` and std.

use fake_atlas::{DuplicateMode, FakeAtlas, FakeConfig, Faults};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) const PROJECTS: usize = 3;
/// Links per project that no edit touches.
pub(crate) const STEADY: usize = 8;
/// Links per project that edits declare and undeclare.
pub(crate) const CHURN: usize = 4;
pub(crate) const GRACE_SECS: u64 = 3;
/// How long after an edit the daemon may still act on the manifests before it.
pub(crate) const SLACK: Duration = Duration::from_millis(1500);
pub(crate) const EDIT_EVERY: Duration = Duration::from_secs(3);
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(7);
pub(crate) const WATCH_EVERY: Duration = Duration::from_millis(50);

/// The 24-hex id of soak project `p`.
pub(crate) fn group(p: usize) -> String {
    format!("{:024x}", 0x50ac_0000_0000u64 + p as u64)
}

pub(crate) fn link_name(churn: bool, l: usize) -> String {
    if churn {
        format!("churn-{l}")
    } else {
        format!("steady-{l}")
    }
}

pub(crate) fn far_end(project: usize, link: &str) -> String {
    format!("com.amazonaws.vpce.us-east-1.vpce-svc-soak{project:02}{link}")
}

/// The manifest of one project: its steady links and the churn links in `declared`.
pub(crate) fn project_yaml(project: usize, declared: &BTreeSet<usize>) -> String {
    let mut y = format!(
        "projects:\n  - groupId: {}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n",
        group(project)
    );
    let names = (0..STEADY)
        .map(|l| link_name(false, l))
        .chain(declared.iter().map(|&c| link_name(true, c)));
    for name in names {
        y.push_str(&format!(
            "      - name: {name}\n        serviceEndpointId: {}\n",
            far_end(project, &name)
        ));
    }
    y
}

fn write_project(dir: &Path, project: usize, declared: &BTreeSet<usize>) -> std::io::Result<()> {
    std::fs::write(
        dir.join("manifests").join(format!("p{project}.yaml")),
        project_yaml(project, declared),
    )
}

/// The manifests in `dir`: the churn links each project declares now, and the edits that flip
/// them, each told to a `Timeline`.
pub(crate) struct Edits {
    declared: Vec<BTreeSet<usize>>,
    /// xorshift64: the edits of a seed are the same every run.
    rng: u64,
    pub(crate) count: u64,
    pub(crate) declares: u64,
}

impl Edits {
    /// Every link of every project declared: the manifests written and `timeline` told.
    pub(crate) fn start(dir: &Path, seed: u64, timeline: &mut Timeline) -> std::io::Result<Edits> {
        std::fs::create_dir_all(dir.join("manifests"))?;
        let edits = Edits {
            declared: vec![(0..CHURN).collect(); PROJECTS],
            rng: seed | 1,
            count: 0,
            declares: 0,
        };
        for (p, d) in edits.declared.iter().enumerate() {
            write_project(dir, p, d)?;
            for l in 0..STEADY {
                timeline.edit(far_end(p, &link_name(false, l)), true);
            }
            for &c in d {
                timeline.edit(far_end(p, &link_name(true, c)), true);
            }
        }
        Ok(edits)
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// One churn link of one project, drawn at random, flips: its file rewritten in place.
    pub(crate) fn flip(&mut self, dir: &Path, timeline: &mut Timeline) -> std::io::Result<()> {
        let p = (self.next() % PROJECTS as u64) as usize;
        let c = (self.next() % CHURN as u64) as usize;
        let now_declared = !self.declared[p].remove(&c);
        if now_declared {
            self.declared[p].insert(c);
            self.declares += 1;
        }
        write_project(dir, p, &self.declared[p])?;
        timeline.edit(far_end(p, &link_name(true, c)), now_declared);
        self.count += 1;
        Ok(())
    }

    /// The far ends declared now, each wanted once.
    pub(crate) fn wanted(&self) -> BTreeMap<String, usize> {
        (0..PROJECTS)
            .flat_map(|p| {
                (0..STEADY)
                    .map(move |l| far_end(p, &link_name(false, l)))
                    .chain(
                        self.declared[p]
                            .iter()
                            .map(move |&c| far_end(p, &link_name(true, c))),
                    )
            })
            .map(|e| (e, 1))
            .collect()
    }
}

/// The daemon's config: prune on with a short grace, fast settle windows, readiness polls and
/// resyncs, JSON logs, the metrics endpoint on `port`.
pub(crate) fn config_yaml(base_url: &str, port: u16) -> String {
    format!(
        "atlas:\n  base_url: {base_url}\n  timeout_secs: 3\nmanifests: [manifests/]\nledger: state/ledger.db\n\
         metrics:\n  listen: 127.0.0.1:{port}\nlog:\n  format: json\n\
         reconcile:\n  settle_secs: 3\n  ready_poll_secs: 1\n  resync_interval_secs: 2\n  debounce_ms: 100\n\
         retry:\n  max_attempts: 6\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n  failure_delay_secs: 1\n\
         prune:\n  enabled: true\n  grace_secs: {GRACE_SECS}\n  max_per_pass: 10\n"
    )
}

/// A fake that accepts a duplicate create (so any duplicate shows), brings connections to `DONE` in
/// 3 s (so readiness polls run), and fails calls at random: 500s on every call, and creates that it
/// commits although the client saw a reset or a 504.
pub(crate) fn fake_config(seed: u64) -> FakeConfig {
    FakeConfig {
        duplicates: DuplicateMode::Create,
        idle_ms: 1500,
        working_ms: 1500,
        delete_ms: 1000,
        faults: Faults {
            seed,
            p_500: 0.05,
            p_reset_create: 0.02,
            p_504_create: 0.02,
            ..Faults::default()
        },
        ..FakeConfig::default()
    }
}

/// Whether a connection the fake shows is no longer live.
fn deleting(c: &serde_json::Value) -> bool {
    matches!(
        c["state"].as_str(),
        Some("DELETE_REQUESTED" | "DELETING" | "DELETED")
    )
}

/// What a watcher of the fake saw: when each far end was declared and undeclared, each
/// connection's far end, when each connection stopped being live, and the most live connections
/// one far end ever had at once.
#[derive(Default)]
pub(crate) struct Timeline {
    /// Far end -> (instant, declared) in order.
    edits: HashMap<String, Vec<(Instant, bool)>>,
    /// Connection id -> far end.
    pub(crate) far_end_of: HashMap<String, String>,
    /// Connection id -> when it was first seen not live (being deleted, or gone).
    pub(crate) deleted_at: BTreeMap<String, Instant>,
    /// Far end -> most live connections seen at once.
    most_live: HashMap<String, usize>,
}

impl Timeline {
    pub(crate) fn edit(&mut self, end: String, declared: bool) {
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
    /// whole grace before it (up to a second short: the ledger counts grace in whole seconds from
    /// a pass's clock), and not declared again since, but for a declare so recent (within `SLACK`)
    /// that the pass which deleted could not have seen it.
    fn delete_allowed(&self, end: &str, at: Instant) -> bool {
        let Some(edits) = self.edits.get(end) else {
            return false;
        };
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
            .any(|(t, d)| *d && *t > undeclared && *t + SLACK < at);
        let grace = Duration::from_secs(GRACE_SECS);
        !redeclared && undeclared + grace <= at + Duration::from_secs(1)
    }

    /// One look at every project of the fake.
    pub(crate) fn observe(&mut self, fake: &FakeAtlas) {
        let now = Instant::now();
        let mut live: HashMap<String, usize> = HashMap::new();
        let mut seen = BTreeSet::new();
        for p in 0..PROJECTS {
            for c in fake.connections(&group(p)) {
                let Some(id) = c["_id"].as_str().map(str::to_owned) else {
                    continue;
                };
                let end = c["serviceEndpointId"].as_str().unwrap_or("").to_owned();
                self.far_end_of
                    .entry(id.clone())
                    .or_insert_with(|| end.clone());
                if deleting(&c) {
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

    /// Far ends that ever had more than one live connection at once, with the most they had.
    pub(crate) fn duplicated(&self) -> BTreeMap<&str, usize> {
        self.most_live
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(end, n)| (end.as_str(), *n))
            .collect()
    }

    /// Deletes the edits do not explain: (connection id, far end, when since `started`, whether
    /// the far end was declared then).
    pub(crate) fn unexplained_deletes(
        &self,
        started: Instant,
    ) -> Vec<(String, String, Duration, bool)> {
        self.deleted_at
            .iter()
            .filter_map(|(id, at)| {
                let end = self.far_end_of.get(id)?;
                (!self.delete_allowed(end, *at)).then(|| {
                    (
                        id.clone(),
                        end.clone(),
                        at.duration_since(started),
                        self.declared_at(end, *at),
                    )
                })
            })
            .collect()
    }
}

/// Live connections per far end, all projects together.
pub(crate) fn live_far_ends(fake: &FakeAtlas) -> BTreeMap<String, usize> {
    let mut live = BTreeMap::new();
    for p in 0..PROJECTS {
        for c in fake.connections(&group(p)) {
            if !deleting(&c) {
                *live
                    .entry(c["serviceEndpointId"].as_str().unwrap_or("").to_owned())
                    .or_insert(0) += 1;
            }
        }
    }
    live
}

/// The far ends whose count of live connections differs: (wanted, held).
pub(crate) fn differences(
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
