//! Clashes between links (within and across files) and merging clash-free files into the desired state.

use super::parse::parse_file;
use super::{FileManifest, LinkManifest, Problem, Problems, ProjectManifest, discover};
use crate::model::{DesiredLink, DesiredProject, DesiredState, Fingerprint, FxMap, GroupId};
use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

fn link_path(p: &ProjectManifest, l: &LinkManifest) -> String {
    format!("projects[{}].links[{}]", p.index, l.index)
}

fn location(file: &Path, line: Option<usize>, path: &str) -> String {
    match line {
        Some(l) => format!("{}:{l} ({path})", file.display()),
        None => format!("{} ({path})", file.display()),
    }
}

/// Where a link or project entry was first seen, for clash messages.
type Seen<'a> = (&'a Path, &'a ProjectManifest, &'a LinkManifest);

/// Reports what clashes within and between files: a link name used twice in a project, two links
/// of a project asking for the same connection, a project given two different names.
///
/// Borrows everything: keys are references and paths are only formatted for a problem, so a
/// check of 100,000 links allocates little more than its hash tables.
pub(super) fn clashes<'a>(files: impl IntoIterator<Item = &'a FileManifest>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut by_spec: FxMap<(&GroupId, Fingerprint), Seen<'a>> = FxMap::default();
    let mut where_named: FxMap<(&GroupId, &str), Seen<'a>> = FxMap::default();
    let mut labels: FxMap<&GroupId, (&str, &Path, &ProjectManifest)> = FxMap::default();
    for f in files {
        for p in &f.projects {
            if let Some(label) = &p.label {
                match labels.get(&p.group_id) {
                    Some((other, ofile, op)) if other != label => {
                        problems.push(Problem {
                            file: f.file.clone(),
                            line: p.line,
                            column: None,
                            path: format!("{}.name", p.path()),
                            link: None,
                            message: format!(
                                "project {} is named `{label}` here but `{other}` at {}: use one name",
                                p.group_id,
                                location(ofile, op.line, &op.path())
                            ),
                        });
                    }
                    Some(_) => {}
                    None => {
                        labels.insert(&p.group_id, (label, &f.file, p));
                    }
                }
            }
            where_named.reserve(p.links.len());
            by_spec.reserve(p.links.len());
            for l in &p.links {
                let key = &l.link.key;
                let seen: Seen<'a> = (&f.file, p, l);
                match where_named.entry((&p.group_id, &key.name)) {
                    Entry::Occupied(o) => {
                        let (ofile, op, ol) = *o.get();
                        problems.push(Problem {
                            file: f.file.clone(),
                            line: l.link.source.line,
                            column: None,
                            path: format!("{}.name", link_path(p, l)),
                            link: Some(key.name.clone()),
                            message: format!(
                                "link name used twice in project {}: also at {}; rename one",
                                p.group_id,
                                location(ofile, ol.link.source.line, &link_path(op, ol))
                            ),
                        });
                        continue;
                    }
                    Entry::Vacant(v) => {
                        v.insert(seen);
                    }
                }
                match by_spec.entry((&p.group_id, l.link.fingerprint)) {
                    Entry::Occupied(o) => {
                        let (ofile, op, ol) = *o.get();
                        problems.push(Problem {
                            file: f.file.clone(),
                            line: l.link.source.line,
                            column: None,
                            path: link_path(p, l),
                            link: Some(key.name.clone()),
                            message: format!(
                                "asks for the same connection as link `{}` at {}: Atlas would get it twice; remove one",
                                ol.link.key.name,
                                location(ofile, ol.link.source.line, &link_path(op, ol))
                            ),
                        });
                    }
                    Entry::Vacant(v) => {
                        v.insert(seen);
                    }
                }
            }
        }
    }
    problems
}

/// Moves the links of files that are known to be free of clashes into one desired state.
fn combine(files: impl IntoIterator<Item = FileManifest>) -> DesiredState {
    // Each project's map is built in one go from all its links: `BTreeMap::from_iter` packs its
    // nodes full, where inserting one by one in name order leaves them about half empty (with
    // 100,000 links, about 25 MB of the desired state's 81 MB).
    type Gathered = (Option<String>, Vec<(String, DesiredLink)>);
    let mut projects: BTreeMap<GroupId, Gathered> = BTreeMap::new();
    for f in files {
        for p in f.projects {
            let (label, links) = projects.entry(p.group_id).or_default();
            if label.is_none() {
                *label = p.label;
            }
            links.extend(
                p.links
                    .into_iter()
                    .map(|l| (l.link.key.name.clone(), l.link)),
            );
        }
    }
    DesiredState {
        projects: projects
            .into_iter()
            .map(|(group, (label, links))| {
                let links = links.into_iter().collect();
                (group, DesiredProject { label, links })
            })
            .collect(),
    }
}

/// Merges validated files into the desired state, with the checks that span files.
pub(crate) fn merge<'a>(
    files: impl IntoIterator<Item = &'a FileManifest>,
) -> Result<DesiredState, Problems> {
    let files: Vec<&FileManifest> = files.into_iter().collect();
    let problems = clashes(files.iter().copied());
    if problems.is_empty() {
        Ok(combine(files.into_iter().cloned()))
    } else {
        Err(Problems(problems))
    }
}

/// Finds, parses and merges every manifest under `paths`, reporting every problem of every file.
pub fn load(paths: &[PathBuf]) -> Result<DesiredState, Problems> {
    let files = discover(paths)?;
    let mut problems = Vec::new();
    let mut good = Vec::with_capacity(files.len());
    // One file at a time, on this thread. Parsing on two threads was no faster on the shared 2-core
    // machine (the allocator, not the parser, is the bottleneck) and each thread's malloc arena kept
    // its share of freed YAML trees interleaved with the links: 129 MB resident after loading
    // 100,000 links, against 81 MB sequentially (`cargo bench --bench load`).
    for result in files.iter().map(|f| parse_file(f)) {
        match result {
            Ok(m) => good.push(m),
            Err(Problems(p)) => problems.extend(p),
        }
    }
    // Clashes between the good files are worth reporting even when others are broken.
    problems.extend(clashes(&good));
    if problems.is_empty() {
        Ok(combine(good))
    } else {
        Err(Problems(problems))
    }
}
