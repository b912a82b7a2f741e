//! The loader's stability rule: a changed file is used only once it has been read twice, a window
//! apart, with the same content; until then its last good version stays in use.

use super::*;

const GROUP: &str = "32b6e34b3d91647abb20e7b8";
const WINDOW: Duration = Duration::from_millis(250);
const FULL: &str = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0";
const OTHER: &str = "com.amazonaws.vpce.us-east-1.vpce-svc-0fedcba9876543210";

fn head() -> String {
    format!(
        "projects:\n  - groupId: {GROUP}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n"
    )
}

fn link(name: &str, endpoint: &str) -> String {
    format!("      - name: {name}\n        serviceEndpointId: {endpoint}\n")
}

/// Every declared link as (name, serviceEndpointId).
fn links(set: &ManifestSet) -> Vec<(String, String)> {
    let d = set.desired();
    d.projects
        .values()
        .flat_map(|p| p.links.values())
        .map(|l| {
            (
                l.key.name.to_string(),
                l.spec.service_endpoint_id.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn at(t0: Instant, ms: u64) -> Settling {
    Settling {
        window: WINDOW,
        now: t0 + Duration::from_millis(ms),
    }
}

#[test]
fn a_new_file_written_with_a_pause_is_used_only_in_its_final_form() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, head() + &link("a1", FULL)).unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let mut set = ManifestSet::load(&paths).unwrap();
    let t0 = Instant::now();

    // Half a link: valid YAML, a truncated endpoint.
    std::fs::write(&b, head() + &link("b1", &OTHER[..30])).unwrap();
    let r = set.refresh_settled(&paths, at(t0, 0));
    assert_eq!(r.unsettled, vec![b.clone()]);
    assert_eq!(r.settle_in, Some(WINDOW));
    assert!(!r.changed);
    assert_eq!(r.invalid_files, 0);
    assert_eq!(links(&set), [("a1".to_owned(), FULL.to_owned())]);

    // The rest arrives before the second read: the window starts again.
    std::fs::write(&b, head() + &link("b1", OTHER)).unwrap();
    let r = set.refresh_settled(&paths, at(t0, 300));
    assert_eq!(r.unsettled, vec![b.clone()]);
    assert_eq!(r.settle_in, Some(WINDOW));
    assert_eq!(links(&set).len(), 1);

    // Unchanged, but not yet for a whole window.
    let r = set.refresh_settled(&paths, at(t0, 400));
    assert_eq!(r.unsettled, vec![b.clone()]);
    assert_eq!(r.settle_in, Some(Duration::from_millis(150)));
    assert_eq!(links(&set).len(), 1);

    // Unchanged for the window: used, in full.
    let r = set.refresh_settled(&paths, at(t0, 550));
    assert!(r.unsettled.is_empty() && r.settle_in.is_none(), "{r:?}");
    assert!(r.changed);
    assert_eq!(
        links(&set),
        [
            ("a1".to_owned(), FULL.to_owned()),
            ("b1".to_owned(), OTHER.to_owned())
        ]
    );
    // And it is not read as a change again.
    let r = set.refresh_settled(&paths, at(t0, 2_000));
    assert!(r.unsettled.is_empty() && !r.changed, "{r:?}");
}

#[test]
fn a_file_still_being_appended_keeps_its_last_good_version_without_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let good = head() + &link("a1", FULL);
    std::fs::write(&a, &good).unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let mut set = ManifestSet::load(&paths).unwrap();
    let t0 = Instant::now();

    // Each read finds more: never stable, never used, never reported as broken (a cut in the middle
    // of a key is not valid YAML, but it is not finished either).
    let mut text = good.clone();
    for (i, piece) in [
        "      - na",
        "me: a2\n        serviceEndpointId: com.ama",
        "zonaws",
    ]
    .iter()
    .enumerate()
    {
        text.push_str(piece);
        std::fs::write(&a, &text).unwrap();
        let r = set.refresh_settled(&paths, at(t0, 1_000 * i as u64));
        assert_eq!(r.unsettled, vec![a.clone()], "after piece {i}");
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.invalid_files, 0);
        assert!(!r.changed);
        assert_eq!(links(&set), [("a1".to_owned(), FULL.to_owned())]);
    }

    // Written back to the version in use: nothing pending any more, nothing changed.
    std::fs::write(&a, &good).unwrap();
    let r = set.refresh_settled(&paths, at(t0, 5_000));
    assert!(r.unsettled.is_empty() && !r.changed, "{r:?}");
    assert_eq!(links(&set), [("a1".to_owned(), FULL.to_owned())]);
}

#[test]
fn a_broken_file_is_reported_once_it_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, head() + &link("a1", FULL)).unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let mut set = ManifestSet::load(&paths).unwrap();
    let t0 = Instant::now();
    std::fs::write(&a, "projects: [ {groupId: nope").unwrap();
    let r = set.refresh_settled(&paths, at(t0, 0));
    assert!(r.problems.is_empty() && r.unsettled == vec![a.clone()]);
    let r = set.refresh_settled(&paths, at(t0, 250));
    assert!(r.unsettled.is_empty());
    assert_eq!(r.invalid_files, 1);
    assert!(r.problems.iter().all(|p| p.file == a) && !r.problems.is_empty());
    assert_eq!(links(&set).len(), 1, "the last good version stays in use");
}

#[test]
fn a_file_renamed_into_place_is_used_at_once_and_only_once_so() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, head() + &link("a1", FULL)).unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let mut set = ManifestSet::load(&paths).unwrap();
    let t0 = Instant::now();

    // Written beside, then renamed into place: whole before it had its name.
    let tmp = dir.path().join(".b.yaml.tmp");
    std::fs::write(&tmp, head() + &link("b1", OTHER)).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    set.mark_whole([b.clone()]);
    let r = set.refresh_settled(&paths, at(t0, 0));
    assert!(r.unsettled.is_empty(), "{:?}", r.unsettled);
    assert!(r.changed);
    assert_eq!(links(&set).len(), 2);

    // The mark is spent: a later write in place waits for the window again.
    std::fs::write(&b, head() + &link("b1", &FULL[..30])).unwrap();
    let r = set.refresh_settled(&paths, at(t0, 10));
    assert_eq!(r.unsettled, vec![b.clone()]);
    assert!(links(&set).contains(&("b1".to_owned(), OTHER.to_owned())));
}
