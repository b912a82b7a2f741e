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
