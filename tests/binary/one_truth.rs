//! The daemon keeps one truth, through the real binary: its rows in memory never drift from the
//! ledger file (no create again from a stale intent), a change the ledger refuses is surfaced and
//! the rows read again instead of failing every later pass, and a reload applies `prune.*` in both
//! directions.

use crate::support::daemon::{DEADLINE, Daemon};
use crate::support::eventually;
use crate::support::harness::{self, free_port, group_id};
use atlas_linkd::ledger::Ledger;
use atlas_linkd::model::Phase;
use fake_atlas::{DuplicateMode, FakeAtlas, FakeConfig, FakeOp, Fault, ScriptedFault};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

/// A folder with a config on `fake`, the metrics endpoint on `port`, and `extra` appended.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
}

impl Setup {
    fn new(fake: &FakeAtlas, extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
        let port = free_port();
        let config = dir.path().join("config.yaml");
        let s = Setup { dir, config, port };
        s.write_config(fake, extra);
        s
    }

    fn write_config(&self, fake: &FakeAtlas, extra: &str) {
        std::fs::write(
            &self.config,
            format!(
                "atlas:\n  base_url: {}\n  timeout_secs: 2\nmanifests: [manifests/]\nledger: state/ledger.db\n\
                 metrics:\n  listen: 127.0.0.1:{}\nlog:\n  format: json\n\
                 retry:\n  max_attempts: 4\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n{extra}",
                fake.base_url(),
                self.port
            ),
        )
        .unwrap();
    }

    /// Writes the manifest `name` with `links` (link name, far end) in project `project`.
    fn manifest(&self, name: &str, project: usize, links: &[(&str, &str)]) {
        std::fs::write(
            self.dir.path().join("manifests").join(name),
            yaml(project, links),
        )
        .unwrap();
    }

    fn start(&self, log: &str) -> Daemon {
        Daemon::spawn(
            harness::binary(&self.config),
            self.dir.path().join(log),
            self.port,
        )
    }

    fn ledger(&self) -> PathBuf {
        self.dir.path().join("state/ledger.db")
    }

    /// The binary with `args` on this config.
    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::from(harness::binary(&self.config));
        cmd.args(args).kill_on_drop(true);
        cmd.output().await.unwrap()
    }

    /// `--once`, its report in `report.json` and its metrics in `metrics.prom`.
    async fn once(&self) -> Output {
        let report = self.dir.path().join("report.json");
        let metrics = self.dir.path().join("metrics.prom");
        let (report, metrics) = (report.to_str().unwrap(), metrics.to_str().unwrap());
        self.run(&["--once", "--report-file", report, "--metrics-file", metrics])
            .await
    }

    /// The last `once`'s report.
    fn report(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("report.json")).unwrap())
            .unwrap()
    }

    /// The last `once`'s metrics.
    fn metrics(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("metrics.prom")).unwrap()
    }
}

fn yaml(project: usize, links: &[(&str, &str)]) -> String {
    let mut y = format!(
        "projects:\n  - groupId: {}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n",
        group_id(project)
    );
    for (name, end) in links {
        y.push_str(&format!(
            "      - name: {name}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-{end}\n"
        ));
    }
    y
}

fn live(fake: &FakeAtlas, project: usize) -> Vec<String> {
    let mut ends: Vec<String> = fake
        .connections(&group_id(project))
        .iter()
        .filter(|c| {
            !matches!(
                c["state"].as_str(),
                Some("DELETE_REQUESTED" | "DELETING" | "DELETED")
            )
        })
        .map(|c| c["serviceEndpointId"].as_str().unwrap().to_owned())
        .collect();
    ends.sort();
    ends
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn records(path: &Path) -> Vec<atlas_linkd::model::Record> {
    Ledger::read_only_records(path).unwrap()
}

fn creates_sent(fake: &FakeAtlas) -> u64 {
    fake.counters()
        .requests
        .get("create")
        .map_or(0, |by_status| by_status.values().sum())
}

fn deletes_sent(fake: &FakeAtlas) -> u64 {
    fake.counters()
        .requests
        .get("delete")
        .map_or(0, |by_status| by_status.values().sum())
}

/// Case 1 of the daemon's one truth: a create resumed from an intent and a new link's first create
/// in one pass. The rows in memory once kept the intent beside the created row (a row added while
/// others were still being looked up hid them), and the next pass created the link again.
#[tokio::test]
async fn a_resumed_create_beside_a_new_link_is_never_created_again() {
    let fake = FakeAtlas::start(FakeConfig {
        duplicates: DuplicateMode::Create,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    // The first create in project 2 gets a 500: in flight at Atlas for the settle window.
    fake.script(ScriptedFault {
        operation: FakeOp::Create,
        group_id: Some(group_id(2)),
        nth: 1,
        fault: Fault::ServerError,
    });
    let s = Setup::new(&fake, "reconcile:\n  settle_secs: 2\n");
    s.manifest("p2.yaml", 2, &[("zz-last", "p2last")]);
    let first = s.start("first.log");
    first
        .wait_metric(
            "atlas_linkd_reconcile_passes_total{result=\"partial\"}",
            1.0,
        )
        .await;
    first.signal("TERM");
    let mut first = first;
    assert!(first.wait_exit().await.success(), "{}", first.log());
    let rows = records(&s.ledger());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].phase, Phase::Intent, "{rows:?}");
    let window_ends = rows[0].sent_unix.unwrap() + 2;

    // A new link in a project that sorts first, and a start once the window is over: one pass
    // resumes the intent and creates the new link.
    s.manifest("p0.yaml", 0, &[("new", "p0new")]);
    eventually("the settle window to end", DEADLINE, async || {
        (unix_now() > window_ends).then_some(())
    })
    .await;
    let second = s.start("second.log");
    second
        .wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 2.0)
        .await;
    let passes = second.passes().await;
    // Two more passes, each listing every project.
    for _ in 0..2 {
        let before = second.passes().await;
        second.signal("HUP");
        second.wait_passes_beyond(before).await;
    }
    assert!(second.passes().await >= passes + 2.0);
    assert_eq!(
        live(&fake, 2),
        ["com.amazonaws.vpce.us-east-1.vpce-svc-p2last"]
    );
    assert_eq!(
        live(&fake, 0),
        ["com.amazonaws.vpce.us-east-1.vpce-svc-p0new"]
    );
    assert_eq!(creates_sent(&fake), 3, "{}", second.log());
    assert_eq!(
        second
            .metric("atlas_linkd_reconcile_passes_total{result=\"converged\"}")
            .await,
        Some(3.0),
        "{}",
        second.log()
    );
}

/// A change the ledger refuses (here: its row was deleted behind the daemon's back) is reported
/// by `/readyz`, the rows are read again, and the passes after it succeed: the daemon never wedges.
#[tokio::test]
async fn a_refused_change_turns_readyz_503_then_the_rows_are_read_again() {
    let fake = FakeAtlas::start(FakeConfig::default()).await.unwrap();
    let s = Setup::new(&fake, "");
    s.manifest("p0.yaml", 0, &[("a", "a"), ("b", "b")]);
    let d = s.start("daemon.log");
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 2.0)
        .await;
    d.wait_readyz("ready", |status, _| status == 200).await;

    // Another hand removes b's row; then b leaves the manifests, so the next pass marks it
    // undeclared, a change to a row the daemon still has in memory.
    let conn = rusqlite::Connection::open(s.ledger()).unwrap();
    conn.execute("DELETE FROM links WHERE name = 'b'", [])
        .unwrap();
    drop(conn);
    s.manifest("p0.yaml", 0, &[("a", "a")]);
    let body = d
        .wait_readyz("503 naming the refused change", |status, body| {
            status == 503 && body.contains("refused")
        })
        .await;
    assert!(body.contains(&format!("{}/b", group_id(0))), "{body}");
    // A pass follows shortly on rows read again, and succeeds.
    d.wait_readyz("ready again", |status, _| status == 200)
        .await;
    assert_eq!(
        d.metric("atlas_linkd_reconcile_passes_total{result=\"error\"}")
            .await
            .unwrap_or(0.0),
        0.0,
        "{}",
        d.log()
    );
    let before = d.passes().await;
    d.signal("HUP");
    d.wait_passes_beyond(before).await;
    assert_eq!(d.get("/readyz").await.unwrap().0, 200, "{}", d.log());
}

/// Case 2: `prune.*` follows a reload, off and on again.
#[tokio::test]
async fn a_reload_turns_prune_off_and_on_again() {
    let fake = FakeAtlas::start(FakeConfig::default()).await.unwrap();
    let on = "prune:\n  enabled: true\n  grace_secs: 0\n  max_per_pass: 10\n";
    let s = Setup::new(&fake, on);
    let all = [
        ("keep", "keep"),
        ("a", "a"),
        ("b", "b"),
        ("c", "c"),
        ("d", "d"),
    ];
    s.manifest("p0.yaml", 0, &all);
    let d = s.start("daemon.log");
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 5.0)
        .await;

    // Off, with a long grace and a cap of one, by reload; then four links leave the manifests.
    s.write_config(
        &fake,
        "prune:\n  enabled: false\n  grace_secs: 3600\n  max_per_pass: 1\n",
    );
    let before = d.passes().await;
    d.signal("HUP");
    d.wait_passes_beyond(before).await;
    let before = d.passes().await;
    s.manifest("p0.yaml", 0, &all[..1]);
    d.wait_passes_beyond(before).await;
    d.wait_metric("atlas_linkd_links{status=\"orphaned\"}", 4.0)
        .await;
    assert_eq!(deletes_sent(&fake), 0, "{}", d.log());
    assert_eq!(live(&fake, 0).len(), 5);

    // On again by reload: the next pass deletes them, one per pass at first (the cap), then all.
    s.write_config(
        &fake,
        "prune:\n  enabled: true\n  grace_secs: 0\n  max_per_pass: 1\n",
    );
    let before = d.passes().await;
    d.signal("HUP");
    d.wait_passes_beyond(before).await;
    assert_eq!(deletes_sent(&fake), 1, "{}", d.log());
    s.write_config(&fake, on);
    d.signal("HUP");
    eventually("every undeclared link deleted", DEADLINE, async || {
        (live(&fake, 0) == ["com.amazonaws.vpce.us-east-1.vpce-svc-keep"]).then_some(())
    })
    .await;
    assert_eq!(deletes_sent(&fake), 4, "{}", d.log());
}

/// Case 4: a manifest truncated to nothing, or left with only comments, is a problem, not a file
/// that declares nothing: `--once` exits 2 before any call, and the daemon keeps its last good
/// version, so prune deletes nothing. `projects: []` is how a file declares no links.
#[tokio::test]
async fn an_empty_file_is_refused_and_deletes_nothing() {
    let fake = FakeAtlas::start(FakeConfig::default()).await.unwrap();
    let s = Setup::new(
        &fake,
        "prune:\n  enabled: true\n  grace_secs: 0\n  max_per_pass: 10\n",
    );
    s.manifest("keep.yaml", 0, &[("keep", "keep")]);
    let team = [("a", "a"), ("b", "b"), ("c", "c")];
    s.manifest("team.yaml", 0, &team);
    let team_file = s.dir.path().join("manifests/team.yaml");

    let out = s.once().await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(live(&fake, 0).len(), 4);
    for text in [
        "",
        "  \n\n",
        "# the team's links moved\n# nothing here yet\n",
        "---\n",
    ] {
        std::fs::write(&team_file, text).unwrap();
        let requests = fake
            .counters()
            .requests
            .values()
            .flat_map(|m| m.values())
            .sum::<u64>();
        let out = s.once().await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(stderr.contains("team.yaml"), "{stderr}");
        assert!(stderr.contains("projects: []"), "{stderr}");
        let after = fake
            .counters()
            .requests
            .values()
            .flat_map(|m| m.values())
            .sum::<u64>();
        assert_eq!(after, requests, "no call for a refused manifest");
    }

    // The daemon: truncated while it runs, the file keeps its last good version.
    s.manifest("team.yaml", 0, &team);
    let d = s.start("daemon.log");
    d.wait_metric(
        "atlas_linkd_reconcile_passes_total{result=\"converged\"}",
        1.0,
    )
    .await;
    let before = d.passes().await;
    std::fs::write(&team_file, "").unwrap();
    d.wait_metric("atlas_linkd_manifest_errors", 1.0).await;
    d.wait_passes_beyond(before).await;
    let before = d.passes().await;
    d.signal("HUP");
    d.wait_passes_beyond(before).await;
    assert_eq!(deletes_sent(&fake), 0, "{}", d.log());
    assert_eq!(live(&fake, 0).len(), 4);

    // Said on purpose, the links go (prune on, grace 0).
    std::fs::write(&team_file, "projects: []\n").unwrap();
    d.wait_metric("atlas_linkd_manifest_errors", 0.0).await;
    eventually("the team's links pruned", DEADLINE, async || {
        (live(&fake, 0) == ["com.amazonaws.vpce.us-east-1.vpce-svc-keep"]).then_some(())
    })
    .await;
}

/// Case 3: a link renamed with the same spec keeps its connection. Its record moves to the new
/// name with no call to Atlas; prune (on, no grace) deletes nothing, and nothing is created.
#[tokio::test]
async fn a_renamed_link_moves_its_record_and_never_touches_atlas() {
    // Atlas answers 409 to an identical create, as the real one does.
    let fake = FakeAtlas::start(FakeConfig::default()).await.unwrap();
    let s = Setup::new(
        &fake,
        "prune:\n  enabled: true\n  grace_secs: 0\n  max_per_pass: 10\n",
    );
    s.manifest(
        "p0.yaml",
        0,
        &[("orders-old", "orders"), ("other", "other")],
    );
    let out = s.once().await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = records(&s.ledger())
        .into_iter()
        .find(|r| r.key.name == "orders-old")
        .and_then(|r| r.atlas_id)
        .unwrap();
    let creates = creates_sent(&fake);

    s.manifest("p0.yaml", 0, &[("orders", "orders"), ("other", "other")]);
    let out = s.once().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout.contains("renamed from orders-old"), "{stdout}");
    let json = s.report();
    assert_eq!(json["renamed"][0]["name"], "orders", "{json}");
    assert_eq!(json["renamed"][0]["renamedFrom"], "orders-old", "{json}");
    assert_eq!(json["deleted"], serde_json::json!([]), "{json}");
    assert_eq!(creates_sent(&fake), creates, "no create for a rename");
    assert_eq!(deletes_sent(&fake), 0, "no delete for a rename");
    let rows = records(&s.ledger());
    let names: Vec<&str> = rows.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(names, ["orders", "other"]);
    assert_eq!(rows[0].atlas_id.as_deref(), Some(id.as_str()));
    assert_eq!(live(&fake, 0).len(), 2);

    // And the next run finds it unchanged.
    let out = s.once().await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json = s.report();
    assert_eq!(json["unchanged"], 2, "{json}");
}

/// Case 5: a connection that exactly copies a declared link already held by a record (here, as
/// if Atlas committed a lost create after its settle window) is a duplicate: named in the report
/// and `plan`, counted in `atlas_linkd_duplicate_connections`, `--once` exits 1 while it exists,
/// and atlas-linkd never deletes it, prune on or not.
#[tokio::test]
async fn a_duplicate_connection_is_reported_counted_and_never_deleted() {
    let fake = FakeAtlas::start(FakeConfig::default()).await.unwrap();
    let s = Setup::new(
        &fake,
        "prune:\n  enabled: true\n  grace_secs: 0\n  max_per_pass: 10\n",
    );
    s.manifest("p0.yaml", 0, &[("orders", "orders"), ("other", "other")]);
    let out = s.once().await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let held = records(&s.ledger())
        .into_iter()
        .find(|r| r.key.name == "orders")
        .and_then(|r| r.atlas_id)
        .unwrap();
    let copy = fake.insert(
        &group_id(0),
        serde_json::json!({
            "provider": "AWS", "vendor": "S3", "region": "us-east-1",
            "serviceEndpointId": "com.amazonaws.vpce.us-east-1.vpce-svc-orders",
        }),
    );
    let series = format!(
        "atlas_linkd_duplicate_connections{{project=\"{}\"}}",
        group_id(0)
    );
    for _ in 0..2 {
        let out = s.once().await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains(&format!("duplicate: {}/orders", group_id(0))),
            "{stdout}"
        );
        let json = s.report();
        assert_eq!(json["duplicates"][0]["atlasId"], copy.as_str(), "{json}");
        assert_eq!(
            json["duplicates"][0]["heldAtlasId"],
            held.as_str(),
            "{json}"
        );
        assert_eq!(json["duplicates"][0]["name"], "orders", "{json}");
        assert_eq!(json["unmanaged"], serde_json::json!([]), "{json}");
        let text = s.metrics();
        assert!(text.contains(&format!("{series} 1")), "{text}");
        assert_eq!(deletes_sent(&fake), 0);
        assert_eq!(live(&fake, 0).len(), 3);
    }
    let out = s.run(&["plan", "--output", "json"]).await;
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["duplicates"][0]["atlasId"], copy.as_str(), "{plan}");

    // Deleted in Atlas by a person: converged again, and the series says 0.
    assert!(fake.remove(&group_id(0), &copy));
    let out = s.once().await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = s.metrics();
    assert!(text.contains(&format!("{series} 0")), "{text}");
}

/// The daemon runs a pass when prune's grace ends (and when a failed create's retry is due): the
/// delete comes then, not at the next resync.
#[tokio::test]
async fn the_daemon_deletes_when_the_grace_ends_not_at_the_next_resync() {
    let fake = FakeAtlas::start(FakeConfig::default()).await.unwrap();
    let s = Setup::new(
        &fake,
        "reconcile:\n  resync_interval_secs: 3600\nprune:\n  enabled: true\n  grace_secs: 2\n  max_per_pass: 10\n",
    );
    s.manifest("p0.yaml", 0, &[("keep", "keep"), ("gone", "gone")]);
    let d = s.start("daemon.log");
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 2.0)
        .await;
    s.manifest("p0.yaml", 0, &[("keep", "keep")]);
    eventually(
        "the undeclared link deleted after its grace",
        DEADLINE,
        async || (live(&fake, 0) == ["com.amazonaws.vpce.us-east-1.vpce-svc-keep"]).then_some(()),
    )
    .await;
    assert_eq!(deletes_sent(&fake), 1, "{}", d.log());
}
