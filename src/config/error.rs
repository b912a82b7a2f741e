//! `ConfigError`: what is wrong with the config, each message naming the file and the key; and
//! `Problem`, one of several found in one file.

use std::path::{Path, PathBuf};

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

pub(super) fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// What is wrong with the config. Every message names the file and the key and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {}: {source}; pass --config FILE or set ATLAS_LINKD_CONFIG",
        path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}{}: unknown key `{key}`{}; remove it or check the documented config (config/config.yaml)",
        path.display(), at(*line, *column), suggestion_text(suggestion)
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        suggestion: Option<String>,
        line: Option<usize>,
        column: Option<usize>,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{}{}: {message}", path.display(), at(*line, *column))]
    Yaml {
        path: PathBuf,
        message: String,
        line: Option<usize>,
        column: Option<usize>,
        #[source]
        source: serde_yaml::Error,
    },
    /// Every problem of a file that is valid YAML, one per line, each naming the file and the key
    /// (and the line, for unknown keys and values of the wrong type), so one edit can fix them all.
    /// An unknown key or a value of the wrong type that is the file's only problem is reported as
    /// `UnknownKey` or `Yaml` instead; a YAML syntax error stops the parse.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        /// Never empty.
        problems: Vec<Problem>,
    },
}

/// One problem in the config file: an unknown key, or a value that is of the wrong type or invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key (`retry.max_backoff_secs`), or the environment variable that set the value.
    pub key: String,
    /// What is wrong and what to do, worded to follow the key: "is 0, outside 1..=3600 ...".
    pub message: String,
    /// 1-based, where known: for an unknown key or a value of the wrong type, not for a value out
    /// of range.
    pub line: Option<usize>,
    /// 1-based, with `line`.
    pub column: Option<usize>,
}

impl Problem {
    pub(super) fn new(key: &str, message: impl Into<String>) -> Self {
        Problem {
            key: key.to_owned(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            format!(
                "{}{}: `{}` {}",
                path.display(),
                at(p.line, p.column),
                p.key,
                p.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The invalid values, when the file parsed but some of them are out of bounds.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a suggestion.
pub(super) fn unknown_key(message: &str) -> Option<(String, Option<String>)> {
    let start = message.find("unknown field `")? + "unknown field `".len();
    let rest = &message[start..];
    let end = rest.find('`')?;
    let key = rest[..end].to_owned();
    let expected: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
    let lower = key.to_ascii_lowercase();
    let suggestion = expected
        .iter()
        .map(|k| {
            (
                strsim::normalized_damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_owned());
    Some((key, suggestion))
}
