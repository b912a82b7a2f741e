//! The manifest watcher on a real temp directory: one event per save, bursts debounced (up to a
//! maximum wait), noise ignored, and a replaced root watched again.

use std::path::Path;
use std::time::{Duration, Instant};

use atlas_linkd::daemon::watch_manifests;
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant as TokioInstant;

const DEBOUNCE: Duration = Duration::from_millis(200);
/// Long enough not to cut the bursts of the tests that are not about it.
const MAX_WAIT: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(10);

async fn expect_event(rx: &mut Receiver<TokioInstant>) -> TokioInstant {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("an event within the deadline")
        .expect("channel open")
}

/// No event arrives within several debounce windows (the debounce is what could still emit one).
async fn expect_quiet(rx: &mut Receiver<TokioInstant>) {
    let r = tokio::time::timeout(DEBOUNCE * 5, rx.recv()).await;
    assert!(r.is_err(), "unexpected extra event");
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap();
}

#[tokio::test]
async fn a_new_yaml_file_gives_exactly_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let (_guard, mut rx) =
        watch_manifests(&[dir.path().to_path_buf()], DEBOUNCE, MAX_WAIT).unwrap();
    write(&dir.path().join("a.yaml"), "projects: []\n");
    expect_event(&mut rx).await;
    expect_quiet(&mut rx).await;
}

#[tokio::test]
async fn a_burst_of_writes_is_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("b.yml");
    write(&f, "projects: []\n");
    let (_guard, mut rx) =
        watch_manifests(&[dir.path().to_path_buf()], DEBOUNCE, MAX_WAIT).unwrap();
    let start = Instant::now();
    for i in 0..20 {
        write(&f, &format!("# {i}\nprojects: []\n"));
    }
    assert!(start.elapsed() < DEBOUNCE, "burst took too long to be one");
    expect_event(&mut rx).await;
    expect_quiet(&mut rx).await;
}

#[tokio::test]
async fn hidden_and_non_yaml_files_are_ignored_but_reads_too() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    write(&f, "projects: []\n");
    let (_guard, mut rx) =
        watch_manifests(&[dir.path().to_path_buf()], DEBOUNCE, MAX_WAIT).unwrap();
    write(&dir.path().join(".c.yaml.swp"), "x");
    write(&dir.path().join("notes.txt"), "x");
    write(&dir.path().join("c.yaml~"), "x");
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    write(&dir.path().join(".git").join("x.yaml"), "x");
    // Reading a manifest (as the loader does) must not trigger a pass.
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "projects: []\n");
    expect_quiet(&mut rx).await;
    // The watcher is still alive: a real change is seen.
    write(&f, "projects: [] # edited\n");
    expect_event(&mut rx).await;
}

#[tokio::test]
async fn a_watched_file_replaced_by_rename_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.yaml");
    write(&f, "projects: []\n");
    let (_guard, mut rx) = watch_manifests(std::slice::from_ref(&f), DEBOUNCE, MAX_WAIT).unwrap();
    // An unrelated file in the same directory is not ours.
    write(&dir.path().join("other.yaml"), "projects: []\n");
    expect_quiet(&mut rx).await;
    // How editors save: write a temp file, rename it over the original.
    let tmp = dir.path().join(".m.yaml.tmp");
    write(&tmp, "projects: [] # saved\n");
    std::fs::rename(&tmp, &f).unwrap();
    expect_event(&mut rx).await;
    expect_quiet(&mut rx).await;
}

#[tokio::test]
async fn a_missing_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = watch_manifests(std::slice::from_ref(&missing), DEBOUNCE, MAX_WAIT).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

/// Takes every event until the watcher has been quiet for several debounce windows.
async fn drain(rx: &mut Receiver<TokioInstant>) {
    while tokio::time::timeout(DEBOUNCE * 5, rx.recv()).await.is_ok() {}
}

#[tokio::test]
async fn continuous_writes_still_give_an_event_every_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("stream.yaml");
    write(&f, "projects: []\n");
    let max_wait = Duration::from_millis(600);
    let (_guard, mut rx) =
        watch_manifests(&[dir.path().to_path_buf()], DEBOUNCE, max_wait).unwrap();
    // A writer that never pauses as long as the debounce: without the maximum wait, no burst ends.
    let writing = Duration::from_millis(3_000);
    let writer = {
        let f = f.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut i = 0u32;
            while start.elapsed() < writing {
                let text = format!("projects: []\n# {i}\n");
                std::fs::write(&f, text).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = TokioInstant::now();
    let mut events = Vec::new();
    while started.elapsed() < writing {
        if let Ok(Some(at)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
            events.push(at);
        }
    }
    writer.join().unwrap();
    // 3 s of writes, one event per 600 ms burst at the latest: 4 at the very least, with room for a
    // slow machine.
    assert!(
        events.len() >= 3,
        "only {} events in 3 s of writes",
        events.len()
    );
    // Each event carries the start of its burst: later bursts started later.
    for pair in events.windows(2) {
        assert!(pair[1] > pair[0]);
    }
    drain(&mut rx).await;
}

/// A root folder `manifests` inside `dir`, with one file.
fn root(dir: &Path) -> std::path::PathBuf {
    let m = dir.join("manifests");
    std::fs::create_dir(&m).unwrap();
    write(&m.join("a.yaml"), "projects: []\n");
    m
}

#[tokio::test]
async fn a_root_deleted_and_recreated_is_watched_again() {
    let dir = tempfile::tempdir().unwrap();
    let m = root(dir.path());
    let (_guard, mut rx) = watch_manifests(std::slice::from_ref(&m), DEBOUNCE, MAX_WAIT).unwrap();
    std::fs::remove_dir_all(&m).unwrap();
    std::fs::create_dir(&m).unwrap();
    write(&m.join("a.yaml"), "projects: []\n");
    expect_event(&mut rx).await;
    drain(&mut rx).await;
    // A later edit in the new folder.
    write(&m.join("b.yaml"), "projects: []\n");
    expect_event(&mut rx).await;
}

#[tokio::test]
async fn a_root_swapped_by_rename_is_watched_again_and_the_old_one_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let m = root(dir.path());
    let next = dir.path().join("manifests.new");
    std::fs::create_dir(&next).unwrap();
    write(&next.join("a.yaml"), "projects: [] # v2\n");
    let (_guard, mut rx) = watch_manifests(std::slice::from_ref(&m), DEBOUNCE, MAX_WAIT).unwrap();
    let old = dir.path().join("manifests.old");
    std::fs::rename(&m, &old).unwrap();
    std::fs::rename(&next, &m).unwrap();
    expect_event(&mut rx).await;
    drain(&mut rx).await;
    write(&m.join("b.yaml"), "projects: []\n");
    expect_event(&mut rx).await;
    drain(&mut rx).await;
    // The retired folder is not ours any more.
    write(&old.join("c.yaml"), "projects: []\n");
    expect_quiet(&mut rx).await;
}

#[tokio::test]
async fn a_root_symlink_switched_is_watched_again_and_the_old_target_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let releases = dir.path().join("releases");
    let (v1, v2) = (releases.join("v1"), releases.join("v2"));
    for v in [&v1, &v2] {
        std::fs::create_dir_all(v).unwrap();
        write(&v.join("a.yaml"), "projects: []\n");
    }
    let m = dir.path().join("manifests");
    std::os::unix::fs::symlink(&v1, &m).unwrap();
    let (_guard, mut rx) = watch_manifests(std::slice::from_ref(&m), DEBOUNCE, MAX_WAIT).unwrap();
    // `ln -sfn releases/v2 manifests.tmp && mv -T manifests.tmp manifests`.
    let tmp = dir.path().join("manifests.tmp");
    std::os::unix::fs::symlink(&v2, &tmp).unwrap();
    std::fs::rename(&tmp, &m).unwrap();
    expect_event(&mut rx).await;
    drain(&mut rx).await;
    write(&m.join("b.yaml"), "projects: []\n");
    expect_event(&mut rx).await;
    drain(&mut rx).await;
    write(&v1.join("c.yaml"), "projects: []\n");
    expect_quiet(&mut rx).await;
}

#[tokio::test]
async fn a_file_root_symlink_switched_is_watched_again() {
    // As a Kubernetes ConfigMap mount names a key: a symlink into a folder that a deploy replaces.
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (dir.path().join("v1"), dir.path().join("v2"));
    for v in [&v1, &v2] {
        std::fs::create_dir(v).unwrap();
        write(&v.join("links.yaml"), "projects: []\n");
    }
    let f = dir.path().join("links.yaml");
    std::os::unix::fs::symlink(v1.join("links.yaml"), &f).unwrap();
    let (_guard, mut rx) = watch_manifests(std::slice::from_ref(&f), DEBOUNCE, MAX_WAIT).unwrap();
    let tmp = dir.path().join("links.yaml.tmp");
    std::os::unix::fs::symlink(v2.join("links.yaml"), &tmp).unwrap();
    std::fs::rename(&tmp, &f).unwrap();
    expect_event(&mut rx).await;
    drain(&mut rx).await;
    write(&v2.join("links.yaml"), "projects: [] # edited\n");
    expect_event(&mut rx).await;
    drain(&mut rx).await;
    write(&v1.join("links.yaml"), "projects: [] # retired\n");
    expect_quiet(&mut rx).await;
}
