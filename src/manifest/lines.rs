//! The line index: a light, conservative scan of block-style YAML that maps document paths to lines.

use super::walk::{Pending, RawProject};
use crate::model::{FxMap, FxSet};

/// Lines (and columns) of the paths a file's problems and links need.
#[derive(Default)]
pub(super) struct LineIndex {
    pub(super) paths: FxMap<(usize, String), (usize, usize)>,
    pub(super) links: FxMap<(usize, usize, usize), usize>,
    pub(super) projects: FxMap<(usize, usize), usize>,
}

impl LineIndex {
    pub(super) fn build(text: &str, pending: &[Pending], raw: &[(usize, RawProject)]) -> LineIndex {
        let mut wanted: FxSet<(usize, &str)> = FxSet::default();
        for p in pending.iter().filter(|p| p.line.is_none()) {
            // A missing field has no line of its own; its parent's line is where to add it.
            let mut path = p.path.as_str();
            loop {
                wanted.insert((p.doc, path));
                match path.rfind(['.', '[']) {
                    Some(i) => path = &path[..i],
                    None => break,
                }
            }
        }
        let mut index = LineIndex::default();
        if wanted.is_empty() && raw.is_empty() {
            return index;
        }
        let want_projects: FxSet<usize> = raw.iter().map(|(d, _)| *d).collect();
        let mut buf = String::new();
        let docs = scan(text, |doc, frames, line, col| {
            if let [
                Frame {
                    seg: Seg::Key("projects"),
                    ..
                },
                Frame {
                    seg: Seg::Index(p), ..
                },
                Frame {
                    seg: Seg::Key("links"),
                    ..
                },
                Frame {
                    seg: Seg::Index(l), ..
                },
            ] = frames
                && want_projects.contains(&doc)
            {
                index.links.insert((doc, *p, *l), line);
            }
            if let [
                Frame {
                    seg: Seg::Key("projects"),
                    ..
                },
                Frame {
                    seg: Seg::Index(p), ..
                },
            ] = frames
                && want_projects.contains(&doc)
            {
                index.projects.insert((doc, *p), line);
            }
            if wanted.is_empty() {
                return;
            }
            buf.clear();
            for (i, f) in frames.iter().enumerate() {
                match f.seg {
                    Seg::Key(k) => {
                        if i > 0 {
                            buf.push('.');
                        }
                        buf.push_str(k);
                    }
                    Seg::Index(n) => {
                        buf.push('[');
                        buf.push_str(&n.to_string());
                        buf.push(']');
                    }
                }
            }
            if wanted.contains(&(doc, buf.as_str())) {
                index.paths.entry((doc, buf.clone())).or_insert((line, col));
            }
        });
        // If the scan saw a different number of documents than the parser, its lines cannot be trusted.
        let parsed_docs = raw.iter().map(|(d, _)| d + 1).max().unwrap_or(0);
        let pending_docs = pending.iter().map(|p| p.doc + 1).max().unwrap_or(0);
        match docs {
            Some(n) if n >= parsed_docs.max(pending_docs) => index,
            _ => LineIndex::default(),
        }
    }

    pub(super) fn find(&self, doc: usize, path: &str) -> (Option<usize>, Option<usize>) {
        if let Some(&(line, col)) = self.paths.get(&(doc, path.to_owned())) {
            return (Some(line), Some(col));
        }
        // A missing key has no line; its parent's (the mapping to add it to) is where the fix goes.
        // Only the immediate parent: a distant ancestor's line would mislead.
        if let Some(i) = path.rfind(['.', '['])
            && let Some(&(line, _)) = self.paths.get(&(doc, path[..i].to_owned()))
        {
            return (Some(line), None);
        }
        (None, None)
    }

    pub(super) fn link_line(&self, doc: usize, project: usize, link: usize) -> Option<usize> {
        self.links.get(&(doc, project, link)).copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seg<'t> {
    Key(&'t str),
    Index(usize),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Frame<'t> {
    pub(super) col: usize,
    pub(super) seg: Seg<'t>,
}

pub(super) enum KeyParse<'t> {
    Key(&'t str, &'t str),
    NotKey,
    Unsupported,
}

pub(super) fn parse_key(rest: &str) -> KeyParse<'_> {
    if rest.starts_with([
        '"', '\'', '?', '[', '{', '&', '*', '!', '|', '>', '%', '@', '`',
    ]) {
        // Quoted keys, flow collections, anchors and the like: leave them to the real parser.
        return match rest.find(": ") {
            Some(_) => KeyParse::Unsupported,
            None if rest.ends_with(':') => KeyParse::Unsupported,
            None => KeyParse::NotKey,
        };
    }
    let bytes = rest.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            return KeyParse::NotKey;
        }
        if b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
            let key = rest[..i].trim_end();
            if key.is_empty() || key == "<<" {
                return KeyParse::Unsupported;
            }
            return KeyParse::Key(key, rest[i + 1..].trim_start());
        }
    }
    KeyParse::NotKey
}

/// Whether a scalar value on one line is complete there (no multi-line quotes, flows, or block
/// scalars), and whether it opens a block scalar.
pub(super) enum ValueShape {
    Done,
    BlockScalar,
    Unsupported,
}

pub(super) fn value_shape(v: &str) -> ValueShape {
    let v = v.trim();
    if v.is_empty() || v.starts_with('#') {
        return ValueShape::Done;
    }
    match v.as_bytes()[0] {
        b'|' | b'>' => ValueShape::BlockScalar,
        b'&' | b'*' | b'!' => ValueShape::Unsupported,
        b'"' => {
            let body = &v[1..];
            let mut escaped = false;
            for c in body.chars() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => return ValueShape::Done,
                    _ => escaped = false,
                }
            }
            ValueShape::Unsupported
        }
        b'\'' => {
            if v.len() >= 2 && v[1..].contains('\'') {
                ValueShape::Done
            } else {
                ValueShape::Unsupported
            }
        }
        b'[' | b'{' => {
            let mut depth = 0i32;
            let mut quote: Option<char> = None;
            for c in v.chars() {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '"' | '\'') => quote = Some(c),
                    (None, '[' | '{') => depth += 1,
                    (None, ']' | '}') => depth -= 1,
                    _ => {}
                }
            }
            if depth == 0 && quote.is_none() {
                ValueShape::Done
            } else {
                ValueShape::Unsupported
            }
        }
        _ => ValueShape::Done,
    }
}

/// Walks block-style YAML line by line, calling `f(document, path frames, line, column)` for every
/// key and sequence item it recognises. On anything it does not fully understand (multi-line
/// scalars, flow collections across lines, anchors, tabs) it skips the rest of that document rather
/// than guess. Returns the number of documents, or `None` when even that is uncertain.
pub(super) fn scan<'t>(
    text: &'t str,
    mut f: impl FnMut(usize, &[Frame<'t>], usize, usize),
) -> Option<usize> {
    let mut doc = 0usize;
    let mut started = false;
    let mut seen_marker = false;
    let mut skip_doc = false;
    let mut block_scalar: Option<usize> = None;
    let mut stack: Vec<Frame<'t>> = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.starts_with("---") && (line.len() == 3 || line[3..].starts_with([' ', '\t'])) {
            if started || seen_marker {
                doc += 1;
            }
            seen_marker = true;
            started = false;
            stack.clear();
            block_scalar = None;
            let rest = line[3..].trim();
            skip_doc = !(rest.is_empty() || rest.starts_with('#'));
            if skip_doc {
                started = true;
            }
            continue;
        }
        if line.starts_with("...") || line.starts_with('%') {
            return None;
        }
        let trimmed = line.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        started = true;
        let col = line.len() - trimmed.len();
        if let Some(parent) = block_scalar {
            if col > parent {
                continue;
            }
            block_scalar = None;
        }
        if skip_doc {
            continue;
        }
        if trimmed.starts_with('\t') {
            skip_doc = true;
            continue;
        }
        let mut c = col;
        let mut rest = trimmed;
        let mut after_dash = false;
        loop {
            if rest == "-" || rest.starts_with("- ") {
                let mut index = 0;
                while let Some(top) = stack.last() {
                    if top.col > c {
                        stack.pop();
                    } else if top.col == c && matches!(top.seg, Seg::Index(_)) {
                        if let Seg::Index(i) = top.seg {
                            index = i + 1;
                        }
                        stack.pop();
                    } else {
                        break;
                    }
                }
                stack.push(Frame {
                    col: c,
                    seg: Seg::Index(index),
                });
                f(doc, &stack, line_no, c + 1);
                let after = &rest[1..];
                let content = after.trim_start_matches(' ');
                c += 1 + (after.len() - content.len());
                rest = content;
                after_dash = true;
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                continue;
            }
            match parse_key(rest) {
                KeyParse::Key(key, value) => {
                    while stack.last().is_some_and(|top| top.col >= c) {
                        stack.pop();
                    }
                    stack.push(Frame {
                        col: c,
                        seg: Seg::Key(key),
                    });
                    f(doc, &stack, line_no, c + 1);
                    match value_shape(value) {
                        ValueShape::Done => {}
                        ValueShape::BlockScalar => block_scalar = Some(c),
                        ValueShape::Unsupported => skip_doc = true,
                    }
                }
                KeyParse::NotKey if after_dash => match value_shape(rest) {
                    ValueShape::Done => {}
                    ValueShape::BlockScalar => block_scalar = stack.last().map(|t| t.col),
                    ValueShape::Unsupported => skip_doc = true,
                },
                KeyParse::NotKey | KeyParse::Unsupported => skip_doc = true,
            }
            break;
        }
        if skip_doc {
            stack.clear();
        }
    }
    Some(if started || seen_marker { doc + 1 } else { doc })
}
