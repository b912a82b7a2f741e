//! One manifest file: its validated form (`FileManifest`), and parsing and validating its text.

use super::lines::LineIndex;
use super::merge::clashes;
use super::problem::file_problem;
use super::walk::{FileCtx, Pending, walk_document};
use super::{Problem, Problems};
use crate::model::{DesiredLink, GroupId, Source};
use serde::Deserialize;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// The validated content of one manifest file: the projects of all its documents, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileManifest {
    pub(crate) file: PathBuf,
    pub projects: Vec<ProjectManifest>,
}

/// One `projects[i]` entry of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectManifest {
    pub(crate) group_id: GroupId,
    pub(crate) label: Option<String>,
    /// 0-based index of the YAML document in the file.
    pub(crate) document: usize,
    /// Index in the document's `projects` list.
    pub(crate) index: usize,
    pub(crate) line: Option<usize>,
    pub links: Vec<LinkManifest>,
}

/// One validated link with its position in its project entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkManifest {
    /// Index in the project entry's `links` list.
    pub(crate) index: usize,
    pub link: DesiredLink,
}

/// Parses and validates one manifest file's text. Checks within the file (unique link names and
/// specs per project, one label per project) are done here too, so a file that passes can only
/// clash with others in `merge`.
pub fn parse_str(file: &Path, text: &str) -> Result<FileManifest, Problems> {
    let mut ctx = FileCtx {
        pending: Vec::new(),
        doc: 0,
    };
    let mut raw = Vec::new();
    // Each document's tree is walked and dropped before the next is parsed.
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        ctx.doc = i;
        match Value::deserialize(de) {
            Ok(doc) => walk_document(&mut ctx, &doc, &mut raw),
            Err(e) => {
                let loc = e.location();
                ctx.pending.push(Pending {
                    doc: i,
                    path: String::new(),
                    link: None,
                    message: format!("invalid YAML: {}", yaml_message(&e)),
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                });
                // The parser cannot resynchronise after an error (and would repeat it forever).
                break;
            }
        }
    }

    let lines = LineIndex::build(text, &ctx.pending, &raw);
    let mut problems: Vec<Problem> = ctx
        .pending
        .into_iter()
        .map(|p| {
            let (line, column) = match p.line {
                Some(l) => (Some(l), p.column),
                None => lines.find(p.doc, &p.path),
            };
            Problem {
                file: file.to_path_buf(),
                line,
                column,
                path: p.path,
                link: p.link,
                message: p.message,
            }
        })
        .collect();

    let shared_file: std::sync::Arc<Path> = std::sync::Arc::from(file);
    let projects: Vec<ProjectManifest> = raw
        .into_iter()
        .map(|(doc, p)| {
            let links = p
                .links
                .into_iter()
                .map(|(li, key, spec)| {
                    let line = lines.link_line(doc, p.index, li);
                    LinkManifest {
                        index: li,
                        link: DesiredLink::new(
                            key,
                            spec,
                            Source {
                                file: shared_file.clone(),
                                line,
                            },
                        ),
                    }
                })
                .collect();
            ProjectManifest {
                line: lines.projects.get(&(doc, p.index)).copied(),
                group_id: p.group_id,
                label: p.label,
                document: doc,
                index: p.index,
                links,
            }
        })
        .collect();
    let manifest = FileManifest {
        file: file.to_path_buf(),
        projects,
    };
    problems.extend(clashes(std::iter::once(&manifest)));
    if problems.is_empty() {
        Ok(manifest)
    } else {
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(Problems(problems))
    }
}

/// The parser's message without its own " at line X column Y" (the problem carries those).
fn yaml_message(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Reads and parses one manifest file.
pub fn parse_file(path: &Path) -> Result<FileManifest, Problems> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(path, &text),
        Err(e) => Err(Problems(vec![file_problem(
            path,
            format!("cannot read this manifest file: {e}"),
        )])),
    }
}
