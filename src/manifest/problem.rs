//! What is wrong with the manifests: one `Problem`, located as precisely as the parser allows, and
//! `Problems`, every one of them.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with the manifests, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based.
    pub column: Option<usize>,
    /// Where in the document, e.g. `projects[0].links[3].arn`; empty for the file as a whole.
    pub path: String,
    /// The name of the link involved, if any.
    pub link: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(":")?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
        }
        if let Some(link) = &self.link {
            write!(f, " (link `{link}`)")?;
        }
        if !self.path.is_empty() || self.link.is_some() {
            f.write_str(":")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl Problems {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A problem with a file (or directory) as a whole.
pub(super) fn file_problem(file: &Path, message: String) -> Problem {
    Problem {
        file: file.to_path_buf(),
        line: None,
        column: None,
        path: String::new(),
        link: None,
        message,
    }
}

/// At most this many characters of a value are quoted in a message: enough to recognise a value
/// (a project id is 24), too few to print a secret or a line of a file that was never a manifest.
pub(super) const QUOTED_CHARS: usize = 32;

/// `value` as a message may quote it: its first `QUOTED_CHARS` characters, then `…` if there is
/// more, control characters escaped (a value must not forge a log line).
pub(super) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(QUOTED_CHARS * 4) + 3);
    for (i, c) in value.chars().enumerate() {
        if i == QUOTED_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A message of the YAML parser with each `"…"` or `` `…` `` it quotes shortened by [`quote`] (it
/// quotes keys and numbers of the file).
pub(super) fn shorten_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(512));
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let mark = &rest[open..=open];
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let Some(close) = rest.find(mark) else {
            out.push_str(&quote(rest));
            return out;
        };
        out.push_str(&quote(&rest[..close]));
        out.push_str(mark);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_keeps_short_values_and_cuts_long_ones_with_an_ellipsis() {
        assert_eq!(quote("us-east-1"), "us-east-1");
        let id = "32b6e34b3d91647abb20e7b8";
        assert_eq!(quote(id), id);
        let secret = "root:$6$saltsalt$0123456789abcdefghijklmnopqrstuvwxyz:19000:0:99999:7:::";
        let q = quote(secret);
        assert_eq!(q.chars().count(), QUOTED_CHARS + 1);
        assert!(q.ends_with('…') && secret.starts_with(q.trim_end_matches('…')));
        assert_eq!(quote("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }

    #[test]
    fn shorten_quoted_cuts_every_quoted_part_of_a_parser_message() {
        let long = "k".repeat(100);
        let m = shorten_quoted(&format!(
            "duplicate entry with key \"{long}\" and `{long}` end"
        ));
        assert_eq!(
            m,
            format!(
                "duplicate entry with key \"{k}…\" and `{k}…` end",
                k = "k".repeat(QUOTED_CHARS)
            )
        );
        assert_eq!(shorten_quoted("no quotes"), "no quotes");
        assert_eq!(shorten_quoted("open \"abc"), "open \"abc");
    }
}
