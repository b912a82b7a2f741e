//! The loader: last good versions, clashes, vanished paths (moved from the daemon), reading only what
//! changed, the same-tick write, and the merged state against a full merge after any edit sequence.

use super::*;
use crate::manifest::merge::{clashes, clashes_between};
use crate::manifest::parse_str;
use proptest::prelude::*;
use std::time::Duration;

const GROUP: &str = "32b6e34b3d91647abb20e7b8";
const GROUP_B: &str = "42b6e34b3d91647abb20e7b9";

fn file(name: &str, links: &[&str]) -> String {
    let mut y = format!(
        "projects:\n  - groupId: {GROUP}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n"
    );
    for (i, l) in links.iter().enumerate() {
        y.push_str(&format!(
            "      - name: {l}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-{name}{i:04}\n"
        ));
    }
    y
}

fn names(set: &ManifestSet) -> Vec<String> {
    let d = set.desired();
    d.projects
        .values()
        .flat_map(|p| p.links.keys().map(str::to_owned))
        .collect()
}

/// Sets the file's mtime well in the past, so that its metadata is trusted (not racy).
fn age(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

/// Makes the set believe `path`'s metadata is exactly what it saw when it last read the file, as
/// when a write lands within the same timestamp tick (a test cannot stop the file system's clock).
fn metadata_as_if_unchanged(set: &mut ManifestSet, path: &Path) {
    let now = Identity::of(&std::fs::metadata(path).unwrap());
    set.files
        .get_mut(path)
        .unwrap()
        .seen
        .as_mut()
        .unwrap()
        .identity = now;
}

#[test]
fn a_broken_file_keeps_its_last_good_links_and_a_deleted_file_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, file("a", &["a1", "a2"])).unwrap();
    std::fs::write(&b, file("b", &["b1"])).unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let mut set = ManifestSet::load(&paths).unwrap();
    assert_eq!(names(&set), ["a1", "a2", "b1"]);

    std::fs::write(&a, "projects: [ {groupId: nope").unwrap();
    std::fs::write(&b, file("b", &["b1", "b2"])).unwrap();
    let r = set.refresh(&paths);
    assert_eq!(r.invalid_files, 1);
    assert!(r.problems.iter().all(|p| p.file == a), "{:?}", r.problems);
    assert!(r.changed);
    assert_eq!(names(&set), ["a1", "a2", "b1", "b2"]);

    std::fs::write(&a, file("a", &["a1"])).unwrap();
    let r = set.refresh(&paths);
    assert_eq!(r.invalid_files, 0);
    assert_eq!(names(&set), ["a1", "b1", "b2"]);

    std::fs::remove_file(&b).unwrap();
    let r = set.refresh(&paths);
    assert_eq!(r.removed, vec![b.clone()]);
    assert_eq!(names(&set), ["a1"]);

    let r = set.refresh(&paths);
    assert!(!r.changed);
    assert_eq!(r.invalid_files, 0);
}

#[test]
fn a_clash_across_files_reverts_the_file_that_introduced_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, file("a", &["x"])).unwrap();
    std::fs::write(&b, file("b", &["y"])).unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let mut set = ManifestSet::load(&paths).unwrap();
    // b now also declares `x`: b's old version stays in use.
    std::fs::write(&b, file("b", &["x", "y"])).unwrap();
    let r = set.refresh(&paths);
    assert_eq!(r.invalid_files, 1);
    assert!(!r.problems.is_empty());
    assert_eq!(names(&set), ["x", "y"]);
    let d = set.desired();
    let spec = d
        .projects
        .values()
        .next()
        .unwrap()
        .links
        .get("x")
        .unwrap()
        .spec
        .service_endpoint_id
        .clone()
        .unwrap();
    assert!(spec.ends_with("vpce-svc-a0000"), "{spec}");
    // The clash stays reported while it lasts, and b's new version is taken once a gives `x` up.
    let r = set.refresh(&paths);
    assert_eq!(r.invalid_files, 1);
    assert!(r.problems.iter().any(|p| p.message.contains("used twice")));
    std::fs::write(&a, file("a", &["z"])).unwrap();
    let r = set.refresh(&paths);
    assert_eq!(r.invalid_files, 0, "{:?}", r.problems);
    assert_eq!(names(&set), ["x", "y", "z"]);
}

#[test]
fn start_up_refuses_any_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), file("a", &["a1"])).unwrap();
    std::fs::write(dir.path().join("b.yaml"), "projects: 3\n").unwrap();
    let err = ManifestSet::load(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(err.0.iter().any(|p| p.file.ends_with("b.yaml")));
}

#[test]
fn a_vanished_manifest_directory_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("m");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("a.yaml"), file("a", &["a1"])).unwrap();
    let paths = vec![sub.clone()];
    let mut set = ManifestSet::load(&paths).unwrap();
    std::fs::remove_dir_all(&sub).unwrap();
    let r = set.refresh(&paths);
    assert_eq!(r.invalid_files, 1);
    assert_eq!(names(&set), ["a1"]);
}

#[test]
fn only_files_whose_identity_changed_are_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, file("a", &["a1"])).unwrap();
    std::fs::write(&b, file("b", &["b1"])).unwrap();
    age(&a);
    age(&b);
    let paths = vec![dir.path().to_path_buf()];
    let mut set = ManifestSet::load(&paths).unwrap();
    let loaded = set.read_counts();
    assert_eq!(
        loaded,
        ReadCounts {
            reads: 2,
            parses: 2
        }
    );

    let r = set.refresh(&paths);
    assert!(!r.changed);
    assert_eq!(set.read_counts(), loaded, "nothing changed: nothing read");

    // An atomic save (a new inode) of b only.
    let tmp = dir.path().join(".b.tmp");
    std::fs::write(&tmp, file("b", &["b1", "b2"])).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    let r = set.refresh(&paths);
    assert!(r.changed);
    assert_eq!(names(&set), ["a1", "b1", "b2"]);
    assert_eq!(
        set.read_counts(),
        ReadCounts {
            reads: 3,
            parses: 3
        }
    );

    // A touch changes the mtime but not the bytes: read, not parsed.
    age(&b);
    let r = set.refresh(&paths);
    assert!(!r.changed);
    assert_eq!(
        set.read_counts(),
        ReadCounts {
            reads: 4,
            parses: 3
        }
    );
    let r = set.refresh(&paths);
    assert!(!r.changed);
    assert_eq!(
        set.read_counts(),
        ReadCounts {
            reads: 4,
            parses: 3
        }
    );

    // An in-place write of a.
    std::fs::write(&a, file("a", &["a1", "a9"])).unwrap();
    set.refresh(&paths);
    assert_eq!(names(&set), ["a1", "a9", "b1", "b2"]);
    assert_eq!(
        set.read_counts(),
        ReadCounts {
            reads: 5,
            parses: 4
        }
    );
}

#[test]
fn a_write_within_the_same_tick_as_the_read_is_still_seen() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    // Written just now: its mtime is within `RACY_NS` of the load's read.
    std::fs::write(&a, file("a", &["a1"])).unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let mut set = ManifestSet::load(&paths).unwrap();
    // Same size, other bytes; and the file system's clock did not tick: the metadata is exactly as
    // it was when the load read the file (forced here, since a test cannot stop the clock).
    std::fs::write(&a, file("a", &["a2"])).unwrap();
    metadata_as_if_unchanged(&mut set, &a);
    let r = set.refresh(&paths);
    assert!(r.changed);
    assert_eq!(names(&set), ["a2"]);

    // Once read while its mtime is old, the metadata alone is trusted: the same forced
    // "no change" is then not read (which is why a recent file is read again).
    age(&a);
    set.refresh(&paths);
    let before = set.read_counts();
    std::fs::write(&a, file("a", &["a3"])).unwrap();
    age(&a);
    metadata_as_if_unchanged(&mut set, &a);
    set.refresh(&paths);
    assert_eq!(set.read_counts(), before);
    assert_eq!(names(&set), ["a2"]);
}

#[test]
fn load_reports_every_file_problem_and_the_clashes_of_the_good_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), file("a", &["x"])).unwrap();
    std::fs::write(dir.path().join("b.yaml"), file("b", &["x"])).unwrap();
    std::fs::write(dir.path().join("c.yaml"), "projects: 3\n").unwrap();
    let err = load(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(err.0.iter().any(|p| p.file.ends_with("c.yaml")));
    let clash = err
        .0
        .iter()
        .find(|p| p.file.ends_with("b.yaml"))
        .expect("the clash, on the later file");
    assert!(clash.message.contains("used twice"), "{clash}");
}

// The merged state against a reference: the previous daemon's algorithm, which parsed every file on
// every refresh and merged all files' last good versions from scratch.

/// `(project, label, links)`; each link is `(name, spec variant)`.
type Generated = (usize, usize, Vec<(usize, usize)>);

#[derive(Debug, Clone)]
enum Op {
    /// `(project, label, links)` entries; each link is `(name, spec variant)`.
    Write(usize, Vec<Generated>),
    Invalid(usize),
    Delete(usize),
}

const FILES: [&str; 3] = ["a.yaml", "b.yaml", "c.yaml"];

fn render(entries: &[Generated]) -> String {
    let mut y = String::from("projects:\n");
    for (project, label, links) in entries {
        let group = [GROUP, GROUP_B][*project];
        y.push_str(&format!("  - groupId: {group}\n"));
        if *label > 0 {
            y.push_str(&format!("    name: label{label}\n"));
        }
        y.push_str("    defaults: {provider: AWS, vendor: S3, region: us-east-1}\n");
        if links.is_empty() {
            y.push_str("    links: []\n");
            continue;
        }
        y.push_str("    links:\n");
        for (name, variant) in links {
            y.push_str(&format!(
                "      - name: l{name}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-{variant:04}\n"
            ));
        }
    }
    y
}

fn op() -> impl Strategy<Value = Op> {
    let link = (0..5usize, 0..4usize);
    let entry = (0..2usize, 0..3usize, prop::collection::vec(link, 0..4));
    prop_oneof![
        6 => (0..3usize, prop::collection::vec(entry, 1..3)).prop_map(|(f, e)| Op::Write(f, e)),
        1 => (0..3usize).prop_map(Op::Invalid),
        1 => (0..3usize).prop_map(Op::Delete),
    ]
}

/// The previous daemon's refresh, on files parsed from scratch.
struct Reference {
    good: BTreeMap<PathBuf, FileManifest>,
}

impl Reference {
    fn refresh(&mut self, dir: &Path) -> (DesiredState, usize) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut next = self.good.clone();
        next.retain(|p, _| files.contains(p));
        let mut updated = Vec::new();
        let mut invalid = BTreeSet::new();
        for f in &files {
            match parse_file(f) {
                Ok(m) => {
                    if next.get(f) != Some(&m) {
                        next.insert(f.clone(), m);
                        updated.push(f.clone());
                    }
                }
                Err(_) => {
                    invalid.insert(f.clone());
                }
            }
        }
        if !clashes(next.values()).is_empty() {
            for f in &updated {
                match self.good.get(f) {
                    Some(old) => next.insert(f.clone(), old.clone()),
                    None => next.remove(f),
                };
                invalid.insert(f.clone());
            }
        }
        self.good = next;
        (
            combine(self.good.values().cloned().collect()),
            invalid.len(),
        )
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn the_merged_state_equals_a_full_merge_after_any_edits(ops in prop::collection::vec(op(), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let paths = vec![dir.path().to_path_buf()];
        let mut set = ManifestSet::load(&paths).unwrap();
        let mut reference = Reference { good: BTreeMap::new() };
        for op in ops {
            match &op {
                Op::Write(f, entries) => std::fs::write(dir.path().join(FILES[*f]), render(entries)).unwrap(),
                Op::Invalid(f) => std::fs::write(dir.path().join(FILES[*f]), "projects: [ {groupId: nope").unwrap(),
                Op::Delete(f) => {
                    let _ = std::fs::remove_file(dir.path().join(FILES[*f]));
                }
            }
            let r = set.refresh(&paths);
            let (want, invalid) = reference.refresh(dir.path());
            prop_assert_eq!(&*set.desired(), &want, "after {:?}", op);
            prop_assert_eq!(r.invalid_files, invalid, "after {:?}: {:?}", op, r.problems);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// The load compares only projects that several files declare: for files that each parse (and
    /// so are free of clashes within themselves), that finds exactly what comparing everything finds.
    #[test]
    fn clashes_between_files_are_every_clash_of_files_that_parse(
        files in prop::collection::vec(prop::collection::vec(
            (0..2usize, 0..3usize, prop::collection::vec((0..5usize, 0..4usize), 0..4)), 1..3), 1..4)
    ) {
        let parsed: Vec<FileManifest> = files
            .iter()
            .enumerate()
            .filter_map(|(i, entries)| parse_str(Path::new(FILES[i % 3]), &render(entries)).ok())
            .collect();
        let refs: Vec<&FileManifest> = parsed.iter().collect();
        prop_assert_eq!(clashes_between(&refs), clashes(refs.iter().copied()));
    }
}
