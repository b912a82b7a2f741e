//! The daemon soak: the real binary against a faulty fake Atlas that accepts duplicates, with prune
//! on, readiness polls, manifest edits and reloads all at once, for `ATLAS_LINKD_SOAK_SECS` (45 s by
//! default; the world it runs in is `support::soak`). At the end Atlas must hold every declared
//! link exactly once and nothing undeclared, no far end may ever have had two live connections,
//! every delete must be legitimate by the edit timeline, and no pass may have failed.
//! `cargo bench --bench soak` runs the same for ten minutes and prints its figures.

use crate::support::daemon::{DEADLINE, Daemon};
use crate::support::harness::{self, free_port};
use crate::support::lazy;
use crate::support::soak::{
    EDIT_EVERY, Edits, GRACE_SECS, RELOAD_EVERY, Timeline, WATCH_EVERY, config_yaml, differences,
    fake_config, live_far_ends,
};
use fake_atlas::FakeAtlas;
use std::time::Duration;
use tokio::time::Instant;

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
    let fake = FakeAtlas::start(fake_config(seed)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut timeline = Timeline::default();
    let mut edits = Edits::start(dir.path(), seed, &mut timeline).unwrap();
    let port = free_port();
    let config_path = dir.path().join("config.yaml");
    let config = config_yaml(&fake.base_url(), port);
    std::fs::write(&config_path, &config).unwrap();
    let mut daemon = Daemon::spawn(
        harness::binary(&config_path),
        dir.path().join("daemon.log"),
        port,
    );

    // Edits: every 3 s one churn link of one project flips; every 7 s a SIGHUP (the config
    // rewritten the same); the fake watched every 50 ms throughout.
    let started = Instant::now();
    let end = started + Duration::from_secs(soak_secs());
    let mut next_edit = started + EDIT_EVERY;
    let mut next_reload = started + RELOAD_EVERY;
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
            edits.flip(dir.path(), &mut timeline).unwrap();
            next_edit = now + EDIT_EVERY;
        }
        if now >= next_reload {
            std::fs::write(&config_path, &config).unwrap();
            daemon.signal("HUP");
            next_reload = now + RELOAD_EVERY;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }

    // Quiet: the fake keeps its faults, the daemon converges by its own passes and prune's grace.
    let want = edits.wanted();
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
        tokio::time::sleep(WATCH_EVERY).await;
    }

    let duplicated = timeline.duplicated();
    assert!(
        duplicated.is_empty(),
        "far ends that had more than one live connection at once (seed {seed}): {duplicated:?}\n{}",
        daemon.log()
    );
    let wrong = timeline.unexplained_deletes(started);
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
