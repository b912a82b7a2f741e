//! Reading the config's YAML into the raw types, with every unknown key and every value of the wrong
//! type reported, not just the first.
//!
//! serde stops at the first such problem. So the text is parsed strictly first (the common case,
//! a sound file, costs one parse); only when that fails is it read again key by key, each key
//! deserialised on its own, so that every bad one is found and the good ones keep their values
//! for the range checks.

use super::ConfigError;
use super::error::{Problem, suggestion_text, unknown_key};
use super::raw::RawConfig;
use serde_yaml::{Mapping, Value};
use std::borrow::Cow;
use std::path::Path;

/// The raw config, as far as it could be read.
pub(super) struct Read {
    /// Every readable value; defaults in place of the problems.
    pub(crate) raw: RawConfig,
    /// One per unknown key or value of the wrong type, in file order.
    pub(crate) problems: Vec<Problem>,
    /// The error the strict parse stopped at, when `problems` is not empty: the one to report
    /// when it is the file's only problem.
    pub(crate) strict: Option<ConfigError>,
}

/// Reads `text`. Fails only when nothing past the error can be read: a YAML syntax error, or a
/// file that is not a mapping of keys.
pub(super) fn read(text: &str, source: &Path) -> Result<Read, ConfigError> {
    // An empty file is a config of defaults; serde_yaml would call it a missing value.
    if text.trim().is_empty() {
        return Ok(clean(RawConfig::default()));
    }
    let strict = match serde_yaml::from_str::<RawConfig>(text) {
        Ok(raw) => return Ok(clean(raw)),
        Err(e) => strict_error(e, source),
    };
    let Ok(Value::Mapping(top)) = serde_yaml::from_str::<Value>(text) else {
        return Err(strict);
    };
    let mut problems = Vec::new();
    let mut kept = Mapping::new();
    for (key, value) in top {
        let name = key_str(&key).into_owned();
        let Err(e) = check(single(key.clone(), value.clone())) else {
            kept.insert(key, value);
            continue;
        };
        // A section (a known key that an empty mapping fits): keep its good keys, report each bad one.
        let is_section =
            |k: &Value| check(single(k.clone(), Value::Mapping(Mapping::new()))).is_ok();
        match value {
            Value::Mapping(section) if is_section(&key) => {
                let mut good = Mapping::new();
                for (field, v) in section {
                    let path = [name.as_str(), &key_str(&field)].join(".");
                    match check(single(key.clone(), single(field.clone(), v.clone()))) {
                        Ok(()) => {
                            good.insert(field, v);
                        }
                        Err(e) => problems.push(problem(text, &path, &e)),
                    }
                }
                kept.insert(key, Value::Mapping(good));
            }
            _ => problems.push(problem(text, &name, &e)),
        }
    }
    // No problem found key by key, or the good keys not reading together: the strict parse knows
    // better than this reading.
    let raw = match serde_yaml::from_value::<RawConfig>(Value::Mapping(kept)) {
        Ok(raw) if !problems.is_empty() => raw,
        _ => return Err(strict),
    };
    Ok(Read {
        raw,
        problems,
        strict: Some(strict),
    })
}

fn clean(raw: RawConfig) -> Read {
    Read {
        raw,
        problems: Vec::new(),
        strict: None,
    }
}

fn single(key: Value, value: Value) -> Value {
    let mut m = Mapping::new();
    m.insert(key, value);
    Value::Mapping(m)
}

/// Whether a config of this one key (others defaulted) reads.
fn check(one: Value) -> Result<(), serde_yaml::Error> {
    serde_yaml::from_value::<RawConfig>(one).map(drop)
}

fn key_str(k: &Value) -> Cow<'_, str> {
    match k {
        Value::String(s) => Cow::Borrowed(s),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        _ => Cow::Borrowed("<complex key>"),
    }
}

/// The parser's message without its own " at line X column Y" (the error carries those).
fn message_of(e: &serde_yaml::Error) -> String {
    let full = e.to_string();
    match full.find(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}

/// The problem of one key that does not read, on its own.
fn problem(text: &str, path: &str, e: &serde_yaml::Error) -> Problem {
    let message = message_of(e);
    let message = match unknown_key(&message) {
        Some((_, suggestion)) => format!(
            "is an unknown key{}; remove it or check the documented config (config/config.yaml)",
            suggestion_text(&suggestion)
        ),
        None => format!("cannot be read: {message}; fix the config file"),
    };
    let (line, column) = match locate(text, path) {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    Problem {
        line,
        column,
        ..Problem::new(path, message)
    }
}

/// The error of the strict parse, as reported when it is the file's only problem.
fn strict_error(e: serde_yaml::Error, source: &Path) -> ConfigError {
    let loc = e.location();
    let (line, column) = (
        loc.as_ref().map(|l| l.line()),
        loc.as_ref().map(|l| l.column()),
    );
    let message = message_of(&e);
    match unknown_key(&message) {
        Some((key, suggestion)) => {
            // serde_yaml prefixes nested errors with the path, e.g. `reconcile: `.
            let key = match message.split_once(": unknown field") {
                Some((prefix, _)) if !prefix.contains(' ') => format!("{prefix}.{key}"),
                _ => key,
            };
            ConfigError::UnknownKey {
                path: source.to_path_buf(),
                key,
                suggestion,
                line,
                column,
                source: e,
            }
        }
        None => ConfigError::Yaml {
            path: source.to_path_buf(),
            message: format!("{message}; fix the config file"),
            line,
            column,
            source: e,
        },
    }
}

/// The 1-based line and column of `section` or `section.key`, read plainly from block YAML or a
/// one-line flow mapping (`section: {key: 1}`). `None` when that reading does not find it: a line
/// shown must never be wrong.
fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let (section, key) = match path.split_once('.') {
        Some((s, k)) => (s, Some(k)),
        None => (path, None),
    };
    let lines: Vec<&str> = text.lines().collect();
    let starts_key = |s: &str, k: &str| s.strip_prefix(k).is_some_and(|r| r.starts_with(':'));
    let top = lines.iter().position(|l| starts_key(l, section))?;
    let Some(key) = key else {
        return Some((top + 1, 1));
    };
    let rest = &lines[top][section.len() + 1..];
    if let Some(open) = rest.find('{') {
        // One flow mapping on the section's line: the key follows `{` or `,`.
        let flow = &rest[open..];
        let at = flow.match_indices(key).find_map(|(i, _)| {
            let before = flow[..i].trim_end();
            let after = &flow[i + key.len()..];
            (before.ends_with(['{', ',']) && after.trim_start().starts_with(':')).then_some(i)
        })?;
        return Some((top + 1, section.len() + 1 + open + at + 1));
    }
    // A block mapping: the key among the section's direct children (those indented like the first).
    let mut indent = None;
    for (i, line) in lines.iter().enumerate().skip(top + 1) {
        let trimmed = line.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let col = line.len() - trimmed.len();
        if col == 0 {
            break;
        }
        if *indent.get_or_insert(col) == col && starts_key(trimmed, key) {
            return Some((i + 1, col + 1));
        }
    }
    None
}
