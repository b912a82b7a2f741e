//! The daemon's view of the manifests: the last good version of every file, so that a file which turns
//! invalid keeps its links declared (they are never orphaned by a typo) while the other files move on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::manifest::{self, FileManifest, Problem, Problems};
use crate::model::DesiredState;

/// The manifests as the daemon last accepted them.
#[derive(Debug, Default)]
pub(crate) struct ManifestSet {
    /// The last good parse of every file that is still on disk.
    good: BTreeMap<PathBuf, FileManifest>,
    desired: Arc<DesiredState>,
}

/// What one [`ManifestSet::refresh`] found.
#[derive(Debug, Default)]
pub(crate) struct Refresh {
    /// Files whose current content is not in use: invalid, clashing with another file, or unreadable
    /// paths. This is `atlas_linkd_manifest_errors`.
    pub(crate) invalid_files: usize,
    /// Every problem, for the log.
    pub(crate) problems: Vec<Problem>,
    /// Files that were in use and are gone from disk: their links are no longer declared.
    pub(crate) removed: Vec<PathBuf>,
    /// Whether the desired state differs from the one before.
    pub(crate) changed: bool,
}

impl ManifestSet {
    /// The start-up load: every file must be valid, since there is no earlier version to fall back on.
    pub(crate) fn load(paths: &[PathBuf]) -> Result<ManifestSet, Problems> {
        let files = manifest::discover(paths)?;
        let mut problems = Vec::new();
        let mut good = BTreeMap::new();
        for (path, result) in files.iter().zip(parse_many(&files)) {
            match result {
                Ok(m) => {
                    good.insert(path.clone(), m);
                }
                Err(Problems(p)) => problems.extend(p),
            }
        }
        let merged = manifest::merge(good.values());
        match merged {
            Ok(desired) if problems.is_empty() => Ok(ManifestSet {
                good,
                desired: Arc::new(desired),
            }),
            Ok(_) => Err(Problems(problems)),
            Err(Problems(p)) => {
                problems.extend(p);
                Err(Problems(problems))
            }
        }
    }

    /// The desired state of the files in use.
    pub(crate) fn desired(&self) -> Arc<DesiredState> {
        self.desired.clone()
    }

    /// Re-reads every manifest under `paths`. A file that parses replaces its last good version; one that
    /// does not keeps it (or, if it never parsed, contributes nothing); one that is gone from disk is
    /// dropped. Should the new versions clash across files (a link name declared twice), the files that
    /// changed in this refresh go back to their previous versions, and the clash is reported.
    pub(crate) fn refresh(&mut self, paths: &[PathBuf]) -> Refresh {
        let mut report = Refresh::default();
        let files = match manifest::discover(paths) {
            Ok(f) => f,
            Err(Problems(p)) => {
                // A configured path that vanished may be an unmounted volume as much as an intended
                // removal: keep every file's last good version until the paths resolve again.
                report.invalid_files = distinct_files(&p);
                report.problems = p;
                return report;
            }
        };
        let on_disk: BTreeSet<&PathBuf> = files.iter().collect();
        let mut next = self.good.clone();
        next.retain(|path, _| on_disk.contains(path));
        report.removed = self
            .good
            .keys()
            .filter(|p| !on_disk.contains(p))
            .cloned()
            .collect();

        let mut updated: Vec<PathBuf> = Vec::new();
        let mut invalid: BTreeSet<PathBuf> = BTreeSet::new();
        for (path, result) in files.iter().zip(parse_many(&files)) {
            match result {
                Ok(m) => {
                    if next.get(path) != Some(&m) {
                        next.insert(path.clone(), m);
                        updated.push(path.clone());
                    }
                }
                Err(Problems(p)) => {
                    invalid.insert(path.clone());
                    report.problems.extend(p);
                }
            }
        }

        if updated.is_empty() && report.removed.is_empty() {
            report.invalid_files = invalid.len();
            return report;
        }

        let desired = match manifest::merge(next.values()) {
            Ok(d) => d,
            Err(Problems(clash)) => {
                // Removing a file cannot create a clash, so the previous versions of the updated files
                // (which merged before) resolve it.
                for path in &updated {
                    match self.good.get(path) {
                        Some(old) => {
                            next.insert(path.clone(), old.clone());
                        }
                        None => {
                            next.remove(path);
                        }
                    }
                    invalid.insert(path.clone());
                }
                report.problems.extend(clash);
                match manifest::merge(next.values()) {
                    Ok(d) => d,
                    Err(Problems(p)) => {
                        // Unreachable in practice; keeping everything as it was is the safe answer.
                        report.problems.extend(p);
                        report.invalid_files = invalid.len();
                        return report;
                    }
                }
            }
        };
        report.invalid_files = invalid.len();
        report.changed = desired != *self.desired;
        self.good = next;
        self.desired = Arc::new(desired);
        report
    }
}

fn distinct_files(problems: &[Problem]) -> usize {
    problems
        .iter()
        .map(|p| &p.file)
        .collect::<BTreeSet<_>>()
        .len()
        .max(1)
}

/// Parses files on every core, keeping their order: a large manifest tree is CPU work.
fn parse_many(files: &[PathBuf]) -> Vec<Result<FileManifest, Problems>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(files.len());
    if workers <= 1 {
        return files.iter().map(|f| manifest::parse_file(f)).collect();
    }
    let chunk = files.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|f| manifest::parse_file(f))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for (h, part) in handles.into_iter().zip(files.chunks(chunk)) {
            match h.join() {
                Ok(results) => out.extend(results),
                // A parser panic is a bug; it must not take the daemon down, so the files count as
                // invalid and keep their last good versions.
                Err(_) => out.extend(part.iter().map(|f| {
                    Err(Problems(vec![Problem {
                        file: f.clone(),
                        line: None,
                        column: None,
                        path: String::new(),
                        link: None,
                        message: "internal error while parsing this file".into(),
                    }]))
                })),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "32b6e34b3d91647abb20e7b8";

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
            .flat_map(|p| p.links.keys().cloned())
            .collect()
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
        let spec = d.projects.values().next().unwrap().links["x"]
            .spec
            .service_endpoint_id
            .clone()
            .unwrap();
        assert!(spec.ends_with("vpce-svc-a0000"), "{spec}");
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
}
