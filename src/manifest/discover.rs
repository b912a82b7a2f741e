//! Discovery: which files are manifests, walking the directories the config names.

use super::problem::file_problem;
use super::{Problem, Problems};
use std::path::{Path, PathBuf};

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<Problem>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(file_problem(
                dir,
                format!("cannot list this manifest directory: {e}; check its permissions"),
            ));
            return;
        }
    };
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => {
                problems.push(file_problem(
                    dir,
                    format!("cannot list this manifest directory: {e}"),
                ));
                continue;
            }
        };
        // Editors, VCS and Kubernetes ConfigMap mounts keep their own files and dirs hidden.
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            walk_dir(&path, out, problems);
        } else if is_yaml(&path) && path.is_file() {
            out.push(path);
        }
    }
}

/// The manifest files named by `paths`: files as given, directories searched (recursively, skipping
/// hidden entries) for `*.yaml` and `*.yml`. Sorted, without repeats. A missing path is a problem.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problems> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk_dir(path, &mut out, &mut problems),
            Ok(_) => out.push(path.clone()),
            Err(e) => problems.push(file_problem(
                path,
                format!(
                    "cannot read this manifest path: {e}; fix or remove it in the config's `manifests` list"
                ),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    out.sort();
    out.dedup();
    Ok(out)
}
