//! One manifest file: its validated form (`FileManifest`), and parsing and validating its text.

use super::lines::LineIndex;
use super::merge::clashes;
use super::problem::file_problem;
use super::problem::{quote, shorten_quoted};
use super::read::{ReadLimits, Reader};
use super::tags::explicit_tags;
use super::tree;
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
        declares: false,
    };
    let mut raw = Vec::new();
    if let Some(docs) = tree::documents(text) {
        for (i, doc) in docs.into_iter().enumerate() {
            ctx.doc = i;
            walk_document(&mut ctx, &doc, &mut raw);
        }
    } else {
        // What the quick build declined (see `tree`), serde_yaml parses, and reports the errors of.
        // Each document's tree is walked and dropped before the next is parsed.
        for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
            ctx.doc = i;
            match Value::deserialize(de) {
                Ok(doc) => walk_document(&mut ctx, &doc, &mut raw),
                Err(e) => {
                    ctx.pending.push(yaml_problem(i, &e, text));
                    // The parser cannot resynchronise after an error (and would repeat it forever).
                    break;
                }
            }
        }
    }
    // A file truncated to nothing (a crashed writer, a full disk), holding only comments, or whose
    // template rendered no `projects` would otherwise undeclare every link it held: prune would
    // delete them. A file that means "no links" says so.
    if !ctx.declares && ctx.pending.is_empty() {
        ctx.pending.push(Pending {
            doc: 0,
            path: String::new(),
            link: None,
            message: "the file declares no `projects` list (it is empty, or holds only comments \
                      or empty documents): refused, so that a truncated or unrendered file cannot \
                      undeclare its links; write `projects: []` to declare none"
                .to_owned(),
            line: None,
            column: None,
        });
    }
    // serde_yaml drops or resolves most explicit tags silently: refuse them, each at its place.
    for tag in explicit_tags(text) {
        ctx.pending.push(Pending {
            doc: 0,
            path: String::new(),
            link: None,
            message: format!(
                "explicit YAML tag `{}` is not allowed in a manifest (its meaning would be ignored): \
                 remove it, and quote the value if you mean it as text",
                quote(&tag.tag)
            ),
            line: Some(tag.line),
            column: Some(tag.column),
        });
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

/// The parser's message without its own " at line X column Y" (the problem carries those), and
/// what it quotes shortened.
fn yaml_message(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" at line ") {
        Some(i) => &s[..i],
        None => &s,
    };
    shorten_quoted(s)
}

/// The problem a YAML error of document `doc` makes, with two of the parser's errors made right:
/// a control character is placed where it is (the parser says line 1, column 1), and an integer too
/// large for 64 bits (a 24-digit all-numeric project id) gets the hint a shorter number gets.
fn yaml_problem(doc: usize, e: &serde_yaml::Error, text: &str) -> Pending {
    let loc = e.location();
    let mut p = Pending {
        doc,
        path: String::new(),
        link: None,
        message: format!("invalid YAML: {}", yaml_message(e)),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
    };
    let full = e.to_string();
    if full.contains("control characters are not allowed")
        && let Some((at, c)) = text.char_indices().find(|(_, c)| !yaml_allows(*c))
    {
        let (line, column) = line_column(&text[..at]);
        p.message = format!(
            "invalid YAML: the control character U+{:04X} is not allowed in YAML; remove it",
            u32::from(c)
        );
        (p.line, p.column) = (Some(line), Some(column));
    } else if let Some((path, number)) = huge_integer(&full) {
        p.path = path.to_owned();
        p.message = format!(
            "expected a string, found a number `{}` (too large for YAML's integers); quote it if you mean it as text",
            quote(number)
        );
    }
    p
}

/// Whether YAML allows `c` in a stream (YAML 1.1 `c-printable`, as the parser checks it).
fn yaml_allows(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7E}' | '\u{85}')
        || matches!(c, '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The path and digits of serde_yaml's error for an integer wider than 64 bits, which it reads as
/// a number but cannot hold: "projects[0].groupId: invalid type: integer `123…` as u128, ...".
fn huge_integer(message: &str) -> Option<(&str, &str)> {
    const MARK: &str = "invalid type: integer `";
    let at = message.find(MARK)?;
    let path = message[..at].strip_suffix(": ").unwrap_or("");
    let rest = &message[at + MARK.len()..];
    let number = &rest[..rest.find('`')?];
    let wide = rest[number.len()..].starts_with("` as u128")
        || rest[number.len()..].starts_with("` as i128");
    wide.then_some((path, number))
}

/// Reads and parses one manifest file, within the default limits (see `read`).
pub fn parse_file(path: &Path) -> Result<FileManifest, Problems> {
    let limits = ReadLimits::default();
    let paths = [path.to_path_buf()];
    match Reader::new(&paths, &limits).read(path) {
        Ok(bytes) => parse_bytes(path, bytes),
        Err(problems) => Err(problems),
    }
}

/// Parses one manifest file's bytes, which must be UTF-8 text.
pub(super) fn parse_bytes(path: &Path, bytes: Vec<u8>) -> Result<FileManifest, Problems> {
    match String::from_utf8(bytes) {
        Ok(text) => parse_str(path, &text),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            // Its end is where the bad byte is.
            let prefix = std::str::from_utf8(valid)
                .expect("the bytes before `valid_up_to` are valid UTF-8 by definition");
            let (line, column) = line_column(prefix);
            Err(Problems(vec![Problem {
                line: Some(line),
                column: Some(column),
                ..file_problem(
                    path,
                    "cannot read this manifest file: stream did not contain valid UTF-8; save it as UTF-8 text".into(),
                )
            }]))
        }
    }
}

/// The 1-based line and column (in characters) just past `before`.
fn line_column(before: &str) -> (usize, usize) {
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let last = before.rfind('\n').map_or(before, |i| &before[i + 1..]);
    (line, last.chars().count() + 1)
}
