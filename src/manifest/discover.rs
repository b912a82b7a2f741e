//! Discovery: which files are manifests, walking the directories the config names (and, of the
//! symbolic links in them, only those to folders inside the configured paths).

use super::problem::file_problem;
use super::read::{ReadLimits, Reader};
use super::{Problem, Problems};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
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

/// Where the walk is: the files found, the problems, and the folders already walked (a link back
/// up the tree must not loop).
struct Walk<'r, 'a> {
    reader: &'r Reader<'a>,
    out: Vec<PathBuf>,
    problems: Vec<Problem>,
    walked: HashSet<(u64, u64)>,
}

impl Walk<'_, '_> {
    fn dir(&mut self, dir: &Path) {
        // A folder seen before (through a link) is not walked again.
        if let Ok(meta) = std::fs::metadata(dir)
            && !self.walked.insert((meta.dev(), meta.ino()))
        {
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.problems.push(file_problem(
                    dir,
                    format!("cannot list this manifest directory: {e}; check its permissions"),
                ));
                return;
            }
        };
        for entry in entries {
            let (path, kind) = match entry.and_then(|e| Ok((e.path(), e.file_type()?))) {
                Ok(found) => found,
                Err(e) => {
                    self.problems.push(file_problem(
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
            if kind.is_dir() {
                self.dir(&path);
            } else if kind.is_symlink() {
                self.link(path);
            } else if is_yaml(&path) {
                // FIFOs, sockets and devices too: the reader refuses them by name, without opening
                // them, rather than leave a file the user meant as a manifest silently unread.
                self.out.push(path);
            }
        }
    }

    /// A symbolic link met in the walk. A link to a folder is walked only when the folder lies inside
    /// a configured path; a link to anything else is listed (by its `*.yaml` name) and the reader
    /// decides. A link to nothing is skipped, as it always was.
    fn link(&mut self, path: PathBuf) {
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        if !meta.is_dir() {
            if is_yaml(&path) {
                self.out.push(path);
            }
            return;
        }
        match std::fs::canonicalize(&path) {
            Ok(real) if self.reader.inside_roots(&real) && !self.reader.in_credentials(&real) => {
                self.dir(&path);
            }
            Ok(_) => self.problems.push(file_problem(
                &path,
                "is a symbolic link to a folder outside every configured manifest path: atlas-linkd \
                 does not follow it; copy the manifests into the folder, or list the folder in the \
                 config's `manifests`"
                    .into(),
            )),
            Err(e) => self.problems.push(file_problem(
                &path,
                format!("cannot list this manifest directory: {e}"),
            )),
        }
    }
}

/// The manifest files named by `paths`: files as given, directories searched (recursively, skipping
/// hidden entries) for `*.yaml` and `*.yml`. Sorted, without repeats. A missing path is a problem,
/// and so is a link to a folder outside `paths`.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problems> {
    discover_with(&Reader::new(paths, &ReadLimits::default()))
}

pub(super) fn discover_with(reader: &Reader<'_>) -> Result<Vec<PathBuf>, Problems> {
    let mut walk = Walk {
        reader,
        out: Vec::new(),
        problems: Vec::new(),
        walked: HashSet::new(),
    };
    for path in reader.paths() {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk.dir(path),
            Ok(_) => walk.out.push(path.clone()),
            Err(e) => walk.problems.push(file_problem(
                path,
                format!(
                    "cannot read this manifest path: {e}; fix or remove it in the config's `manifests` list"
                ),
            )),
        }
    }
    let Walk {
        mut out, problems, ..
    } = walk;
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    out.sort();
    out.dedup();
    Ok(out)
}
