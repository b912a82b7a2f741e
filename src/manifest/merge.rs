//! Clashes between links (within and across files), their messages, and merging clash-free files into
//! the desired state.

use super::problem::quote;
use super::{FileManifest, LinkManifest, Problem, ProjectManifest};
use crate::model::{DesiredLink, DesiredProject, DesiredState, Fingerprint, FxMap, FxSet, GroupId};
use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::path::Path;

fn link_path(project: usize, link: usize) -> String {
    format!("projects[{project}].links[{link}]")
}

fn location(file: &Path, line: Option<usize>, path: &str) -> String {
    match line {
        Some(l) => format!("{}:{l} ({path})", file.display()),
        None => format!("{} ({path})", file.display()),
    }
}

/// Where one link is declared, for clash messages.
#[derive(Clone, Copy)]
pub(super) struct LinkAt<'a> {
    pub(super) file: &'a Path,
    /// Index of the project entry in its document's `projects` list.
    pub(super) project: usize,
    /// Index of the link in its project entry's `links` list.
    pub(super) link: usize,
    pub(super) line: Option<usize>,
    pub(super) name: &'a str,
}

impl<'a> LinkAt<'a> {
    fn of(file: &'a Path, p: &ProjectManifest, l: &'a LinkManifest) -> LinkAt<'a> {
        LinkAt {
            file,
            project: p.index,
            link: l.index,
            line: l.link.source.line,
            name: &l.link.key.name,
        }
    }

    fn path(&self) -> String {
        link_path(self.project, self.link)
    }
}

/// Where one labelled project entry is declared, for clash messages.
#[derive(Clone, Copy)]
pub(super) struct ProjectAt<'a> {
    pub(super) file: &'a Path,
    pub(super) index: usize,
    pub(super) line: Option<usize>,
    pub(super) label: &'a str,
}

impl ProjectAt<'_> {
    fn path(&self) -> String {
        format!("projects[{}]", self.index)
    }
}

/// `later` names its project differently from `first`, the first entry that named it.
pub(super) fn label_clash(group: &GroupId, later: ProjectAt<'_>, first: ProjectAt<'_>) -> Problem {
    Problem {
        file: later.file.to_path_buf(),
        line: later.line,
        column: None,
        path: format!("{}.name", later.path()),
        link: None,
        message: format!(
            "project {group} is named `{}` here but `{}` at {}: use one name",
            quote(later.label),
            quote(first.label),
            location(first.file, first.line, &first.path())
        ),
    }
}

/// `later` reuses the name of `first` in the same project.
pub(super) fn name_clash(group: &GroupId, later: LinkAt<'_>, first: LinkAt<'_>) -> Problem {
    Problem {
        file: later.file.to_path_buf(),
        line: later.line,
        column: None,
        path: format!("{}.name", later.path()),
        link: Some(later.name.to_owned()),
        message: format!(
            "link name used twice in project {group}: also at {}; rename one",
            location(first.file, first.line, &first.path())
        ),
    }
}

/// `later` asks for the same connection as `first` in the same project.
pub(super) fn spec_clash(later: LinkAt<'_>, first: LinkAt<'_>) -> Problem {
    Problem {
        file: later.file.to_path_buf(),
        line: later.line,
        column: None,
        path: later.path(),
        link: Some(later.name.to_owned()),
        message: format!(
            "asks for the same connection as link `{}` at {}: Atlas would get it twice; remove one",
            first.name,
            location(first.file, first.line, &first.path())
        ),
    }
}

/// Reports what clashes within and between files: a link name used twice in a project, two links
/// of a project asking for the same connection, a project given two different names.
///
/// Borrows everything: keys are references and paths are only formatted for a problem, so a
/// check of 100,000 links allocates little more than its hash tables.
pub(super) fn clashes<'a>(files: impl IntoIterator<Item = &'a FileManifest>) -> Vec<Problem> {
    clashes_in(files, |_| true)
}

/// [`clashes`] between files that are each free of clashes within themselves, as `parse_str` leaves
/// every `FileManifest` it returns: only a project that two or more files declare can clash then,
/// so only those projects are compared. With 1,000,000 links in projects of one file each this is
/// nothing, where comparing every link took a second and 200 MB of hash tables.
pub(super) fn clashes_between(files: &[&FileManifest]) -> Vec<Problem> {
    let mut first_file: FxMap<&GroupId, (usize, bool)> = FxMap::default();
    for (i, f) in files.iter().enumerate() {
        for p in &f.projects {
            first_file
                .entry(&p.group_id)
                .and_modify(|(first, shared)| *shared |= *first != i)
                .or_insert((i, false));
        }
    }
    let shared: FxSet<&GroupId> = first_file
        .into_iter()
        .filter(|(_, (_, shared))| *shared)
        .map(|(g, _)| g)
        .collect();
    if shared.is_empty() {
        return Vec::new();
    }
    clashes_in(files.iter().copied(), |g| shared.contains(g))
}

/// [`clashes`] among the projects that `compare` picks.
fn clashes_in<'a>(
    files: impl IntoIterator<Item = &'a FileManifest>,
    compare: impl Fn(&GroupId) -> bool,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut by_spec: FxMap<(&GroupId, Fingerprint), LinkAt<'a>> = FxMap::default();
    let mut where_named: FxMap<(&GroupId, &str), LinkAt<'a>> = FxMap::default();
    let mut labels: FxMap<&GroupId, ProjectAt<'a>> = FxMap::default();
    for f in files {
        for p in f.projects.iter().filter(|p| compare(&p.group_id)) {
            if let Some(label) = &p.label {
                let here = ProjectAt {
                    file: &f.file,
                    index: p.index,
                    line: p.line,
                    label,
                };
                match labels.get(&p.group_id) {
                    Some(first) if first.label != label => {
                        problems.push(label_clash(&p.group_id, here, *first));
                    }
                    Some(_) => {}
                    None => {
                        labels.insert(&p.group_id, here);
                    }
                }
            }
            where_named.reserve(p.links.len());
            by_spec.reserve(p.links.len());
            for l in &p.links {
                let here = LinkAt::of(&f.file, p, l);
                match where_named.entry((&p.group_id, &l.link.key.name)) {
                    Entry::Occupied(o) => {
                        problems.push(name_clash(&p.group_id, here, *o.get()));
                        continue;
                    }
                    Entry::Vacant(v) => {
                        v.insert(here);
                    }
                }
                match by_spec.entry((&p.group_id, l.link.fingerprint)) {
                    Entry::Occupied(o) => problems.push(spec_clash(here, *o.get())),
                    Entry::Vacant(v) => {
                        v.insert(here);
                    }
                }
            }
        }
    }
    problems
}

/// Moves the links of files that are known to be free of clashes into one desired state.
pub(super) fn combine(files: Vec<FileManifest>) -> DesiredState {
    // Each project's links are built into its set in one go (see `Links::from_iter`: packed
    // nodes), as soon as its last entry is reached: gathering every project's links first would
    // hold a second copy of every link at once.
    let mut entries_left: FxMap<GroupId, usize> = FxMap::default();
    for p in files.iter().flat_map(|f| &f.projects) {
        *entries_left.entry(p.group_id.clone()).or_default() += 1;
    }
    let mut gathered: FxMap<GroupId, Vec<DesiredLink>> = FxMap::default();
    let mut projects: BTreeMap<GroupId, DesiredProject> = BTreeMap::new();
    for f in files {
        for p in f.projects {
            let left = entries_left
                .get_mut(&p.group_id)
                .expect("every project entry was counted above");
            *left -= 1;
            let links = p.links.into_iter().map(|l| l.link);
            let project = projects.entry(p.group_id.clone()).or_default();
            if project.label.is_none() {
                project.label = p.label;
            }
            if *left > 0 {
                gathered.entry(p.group_id).or_default().extend(links);
            } else {
                project.links = match gathered.remove(&p.group_id) {
                    Some(mut earlier) => {
                        earlier.extend(links);
                        earlier.into_iter().collect()
                    }
                    None => links.collect(),
                };
            }
        }
    }
    DesiredState { projects }
}
