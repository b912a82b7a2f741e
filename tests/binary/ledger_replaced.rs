//! Issue 12, case 7: a state folder deleted under the running daemon. The daemon must stop creating
//! and exit 1 (so systemd restarts it and it takes the lock again), and a `--once` on the same paths
//! then converges with no duplicate at the fake.

use crate::support::harness::{self, Harness, group_id, harness};
use crate::support::{eventually, lazy};
use fake_atlas::FakeConfig;
use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

/// Killed if the test ends while it runs.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A second manifest, for project 0, with `n` links the first one does not declare.
fn write_extra_manifest(h: &Harness, n: usize) {
    let mut yaml = format!(
        "projects:\n  - groupId: {}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n",
        group_id(0)
    );
    for l in 0..n {
        yaml.push_str(&format!(
            "      - name: extra-{l}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-extra{l:05}\n"
        ));
    }
    // Written beside and renamed in, so the watcher never sees half a file.
    let tmp = h.dir.path().join("extra.yaml.tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, h.dir.path().join("manifests").join("extra.yaml")).unwrap();
}

/// How many connections of project 0 the fake holds per service endpoint (one per declared link).
fn per_endpoint(h: &Harness) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in h.fake.connections(&group_id(0)) {
        let endpoint = c["serviceEndpointId"].as_str().unwrap_or("").to_owned();
        *out.entry(endpoint).or_default() += 1;
    }
    out
}

#[tokio::test]
async fn a_state_folder_deleted_under_the_daemon_stops_it_with_1_and_a_later_once_makes_no_duplicate()
 {
    let h = harness(FakeConfig::default(), 1, 3, "").await;
    let log = h.dir.path().join("daemon.log");
    let mut daemon = Daemon(
        harness::binary(&h.config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(
        lazy(|| {
            format!(
                "the start-up pass to create 3 links\n--- log\n{}",
                read_log()
            )
        }),
        DEADLINE,
        async || read_log().contains("pass done").then_some(()),
    )
    .await;
    assert_eq!(h.fake.counters().creates_committed, 3, "{}", read_log());

    let state = h.ledger_path().parent().unwrap().to_owned();
    std::fs::remove_dir_all(&state).unwrap();
    write_extra_manifest(&h, 2);

    let status = eventually(
        lazy(|| format!("the daemon to exit\n--- log\n{}", read_log())),
        DEADLINE,
        async || daemon.0.try_wait().unwrap(),
    )
    .await;
    let text = read_log();
    assert_eq!(status.code(), Some(1), "{text}");
    assert_eq!(
        h.fake.counters().creates_committed,
        3,
        "the daemon created after its ledger was deleted\n{text}"
    );
    assert!(
        text.contains("the ledger was deleted or replaced under the daemon"),
        "{text}"
    );
    assert!(
        text.contains(&h.ledger_path().display().to_string()),
        "{text}"
    );
    let lock = atlas_linkd::ledger::lock_path(&h.ledger_path());
    assert!(text.contains(&lock.display().to_string()), "{text}");

    // The restart systemd would make, as a `--once` on the same paths: it rebuilds the ledger by
    // adopting the three and creates only the two new links.
    let out = harness::once(&h.config_path).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let counts = per_endpoint(&h);
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(
        counts.values().all(|&n| n == 1),
        "duplicate connections: {counts:?}"
    );
    assert_eq!(h.fake.counters().creates_committed, 5);
    assert_eq!(h.fake.counters().duplicates, 0);
}
