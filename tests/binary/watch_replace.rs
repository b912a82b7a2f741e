//! The daemon's manifest watcher through the real binary (issue 12, cases 8 and 10): a manifest root
//! replaced by each common deploy style (delete and recreate, swap by rename, symlink switch) is
//! watched again without waiting for a resync, and SIGHUP re-arms the watcher; a file written with a
//! pause is used only in its final form, and continuous writes neither starve passes nor get a
//! partial link created.

use crate::support::daemon::{Daemon, sample_value};
use crate::support::harness::{self, Harness, free_port, group_id, harness};
use crate::support::{eventually, lazy};
use fake_atlas::FakeConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

/// The harness's config with the metrics endpoint on `port`, fast retries, `manifests` as the one
/// manifest path, resyncs an hour apart (so only the watcher can start a pass), and `extra` under
/// `reconcile:`.
fn write_config(h: &Harness, port: u16, manifests: &str, reconcile: &str) {
    std::fs::write(
        &h.config_path,
        format!(
            "atlas:\n  base_url: {}\n  timeout_secs: 5\nmanifests: [{manifests}]\nledger: state/ledger.db\n\
             metrics:\n  listen: 127.0.0.1:{port}\nlog:\n  format: json\n\
             retry:\n  max_attempts: 8\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n\
             reconcile:\n  resync_interval_secs: 3600\n{reconcile}",
            h.fake.base_url()
        ),
    )
    .unwrap();
}

/// The start of a manifest for test project `project`, up to its `links:` key.
fn head(project: usize) -> String {
    format!(
        "projects:\n  - groupId: {}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n",
        group_id(project)
    )
}

/// The serviceEndpointId of link `l` of test project `project` (distinct for every pair).
fn endpoint(project: usize, l: usize) -> String {
    format!("com.amazonaws.vpce.us-east-1.vpce-svc-x{project:03}{l:06}")
}

fn link(project: usize, l: usize) -> String {
    format!(
        "      - name: extra-{l}\n        serviceEndpointId: {}\n",
        endpoint(project, l)
    )
}

/// Waits until the fake has committed `n` creates in all.
async fn wait_creates(h: &Harness, d: &Daemon, n: u64) {
    let what = lazy(|| {
        format!(
            "{n} creates (have {})\n--- log\n{}",
            h.fake.counters().creates_committed,
            d.log()
        )
    });
    eventually(what, DEADLINE, async || {
        (h.fake.counters().creates_committed >= n).then_some(())
    })
    .await;
}

/// A daemon converged on the harness's 2 links, watching `manifests` (relative to the config).
async fn started(h: &Harness, manifests: &str) -> Daemon {
    let port = free_port();
    write_config(h, port, manifests, "");
    let d = start(h, port);
    wait_creates(h, &d, 2).await;
    d.wait_passes_beyond(0.0).await;
    d
}

/// After the root was replaced: the pass that notices it ends, then a later edit adds a link in a new
/// file, and it is created long before the hour-long resync could have found it.
async fn a_later_edit_is_seen(h: &Harness, d: &Daemon, passes_before: f64, root: &Path) {
    d.wait_passes_beyond(passes_before).await;
    std::fs::write(root.join("later.yaml"), head(7) + &link(7, 0)).unwrap();
    wait_creates(h, d, 3).await;
    let made = h.fake.connections(&group_id(7));
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["serviceEndpointId"], endpoint(7, 0).as_str());
}

/// Copies the regular files of `from` into `to` (created).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The daemon on `h`'s config, its log in `daemon.log`.
fn start(h: &Harness, port: u16) -> Daemon {
    Daemon::spawn(
        harness::binary(&h.config_path),
        h.dir.path().join("daemon.log"),
        port,
    )
}

#[tokio::test]
async fn a_manifest_root_deleted_and_recreated_is_watched_again() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let m = h.dir.path().join("manifests");
    let d = started(&h, "manifests/").await;
    let saved = h.dir.path().join("saved");
    copy_dir(&m, &saved);
    let passes = d.passes().await;
    // `rm -rf manifests && mkdir manifests && cp saved/* manifests/`.
    std::fs::remove_dir_all(&m).unwrap();
    copy_dir(&saved, &m);
    a_later_edit_is_seen(&h, &d, passes, &m).await;
}

#[tokio::test]
async fn a_manifest_root_swapped_by_rename_is_watched_again() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let m = h.dir.path().join("manifests");
    let d = started(&h, "manifests/").await;
    let next = h.dir.path().join("manifests.new");
    copy_dir(&m, &next);
    let passes = d.passes().await;
    // `mv manifests manifests.old && mv manifests.new manifests`.
    std::fs::rename(&m, h.dir.path().join("manifests.old")).unwrap();
    std::fs::rename(&next, &m).unwrap();
    a_later_edit_is_seen(&h, &d, passes, &m).await;
}

/// Moves the harness's manifests to `releases/v1` and points the symlink `link` (in the harness's
/// folder) at it; returns the releases folder.
fn releases(h: &Harness, link: &str) -> PathBuf {
    let releases = h.dir.path().join("releases");
    std::fs::create_dir(&releases).unwrap();
    std::fs::rename(h.dir.path().join("manifests"), releases.join("v1")).unwrap();
    std::os::unix::fs::symlink(releases.join("v1"), h.dir.path().join(link)).unwrap();
    releases
}

/// `ln -sfn TARGET LINK.tmp && mv -T LINK.tmp LINK`: the atomic symlink switch of deploy tools.
fn switch_symlink(link: &Path, target: &Path) {
    let tmp = link.with_extension("tmp");
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

#[tokio::test]
async fn a_manifest_root_symlink_switched_is_watched_again() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let releases = releases(&h, "manifests");
    let d = started(&h, "manifests/").await;
    copy_dir(&releases.join("v1"), &releases.join("v2"));
    let passes = d.passes().await;
    let m = h.dir.path().join("manifests");
    switch_symlink(&m, &releases.join("v2"));
    a_later_edit_is_seen(&h, &d, passes, &m).await;
}

#[tokio::test]
async fn sighup_re_arms_the_watcher() {
    // The symlink switched is an ancestor of the root, whose folder nothing watches: only a re-arm
    // can follow it.
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let releases = h.dir.path().join("releases");
    std::fs::create_dir_all(releases.join("v1")).unwrap();
    std::fs::rename(
        h.dir.path().join("manifests"),
        releases.join("v1").join("manifests"),
    )
    .unwrap();
    let site = h.dir.path().join("site");
    std::os::unix::fs::symlink(releases.join("v1"), &site).unwrap();
    let d = started(&h, "site/manifests/").await;
    copy_dir(
        &releases.join("v1").join("manifests"),
        &releases.join("v2").join("manifests"),
    );
    switch_symlink(&site, &releases.join("v2"));
    let passes = d.passes().await;
    d.signal("HUP");
    a_later_edit_is_seen(&h, &d, passes, &site.join("manifests")).await;
}

#[tokio::test]
async fn a_file_written_with_a_pause_creates_its_link_once_in_full() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let port = free_port();
    write_config(
        &h,
        port,
        "manifests/",
        "  debounce_ms: 1000\n  debounce_max_wait_ms: 5000\n",
    );
    let d = start(&h, port);
    wait_creates(&h, &d, 2).await;
    let full = endpoint(7, 0);
    let cut = full.len() - 6;
    let f = h.dir.path().join("manifests").join("half.yaml");
    // Half a link (valid YAML, a truncated serviceEndpointId), then a pause longer than the debounce
    // but shorter than the debounce and the second read's window together, then the rest. The pause
    // is the writer's, not a synchronisation.
    std::fs::write(
        &f,
        format!(
            "{}      - name: extra-0\n        serviceEndpointId: {}",
            head(7),
            &full[..cut]
        ),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut file = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
    std::io::Write::write_all(&mut file, format!("{}\n", &full[cut..]).as_bytes()).unwrap();
    drop(file);

    wait_creates(&h, &d, 3).await;
    let made = h.fake.connections(&group_id(7));
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["serviceEndpointId"], full.as_str());
    assert_eq!(h.fake.counters().requests_of("create"), 3);
    // Nothing is left "changed": the link in use is the one created.
    let passes = d.passes().await;
    d.signal("HUP");
    d.wait_passes_beyond(passes).await;
    let text = d.metrics().await;
    assert_eq!(
        sample_value(&text, "atlas_linkd_links{status=\"changed\"}").unwrap_or(0.0),
        0.0,
        "{text}"
    );
    assert_eq!(h.fake.counters().creates_committed, 3);
}

#[tokio::test]
async fn continuous_writes_get_a_pass_every_max_wait_and_no_partial_link() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let port = free_port();
    write_config(
        &h,
        port,
        "manifests/",
        "  debounce_ms: 300\n  debounce_max_wait_ms: 1000\n",
    );
    let d = start(&h, port);
    wait_creates(&h, &d, 2).await;
    d.wait_passes_beyond(0.0).await;

    // A writer appending every 50 ms for 6 s, each link in two writes: between them the file holds a
    // valid link with a truncated serviceEndpointId.
    let f = h.dir.path().join("manifests").join("stream.yaml");
    let writing = Duration::from_secs(6);
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut file = std::fs::File::create(&f).unwrap();
        file.write_all(head(7).as_bytes()).unwrap();
        let start = std::time::Instant::now();
        let mut links = 0;
        while start.elapsed() < writing {
            let full = endpoint(7, links);
            let cut = full.len() - 6;
            file.write_all(
                format!(
                    "      - name: extra-{links}\n        serviceEndpointId: {}",
                    &full[..cut]
                )
                .as_bytes(),
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            file.write_all(format!("{}\n", &full[cut..]).as_bytes())
                .unwrap();
            links += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        links
    });
    let passes_before = d.passes().await;
    let links = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    let passes_during = d.passes().await - passes_before;
    // A pass at least every maximum wait (1 s), plus the time a pass takes: 6 s of writes promise
    // about 5; 3 leaves room for a slow machine. Without a maximum wait, none comes until the writes
    // stop.
    assert!(
        passes_during >= 3.0,
        "{passes_during} passes in 6 s of continuous writes\n{}",
        d.log()
    );

    // Once the writes stop, every link is created once, in full; none was ever created cut.
    wait_creates(&h, &d, 2 + links as u64).await;
    let made = h.fake.connections(&group_id(7));
    let mut got: Vec<String> = made
        .iter()
        .map(|c| c["serviceEndpointId"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let want: Vec<String> = (0..links).map(|l| endpoint(7, l)).collect();
    assert_eq!(got, want);
    assert_eq!(h.fake.counters().creates_committed, 2 + links as u64);
    assert_eq!(h.fake.counters().duplicates, 0);
}
